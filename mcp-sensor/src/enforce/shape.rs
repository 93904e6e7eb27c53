//! Kill rules on files by the shape of their path, for the kernel to
//! recognise wherever the file is: `**/.ssh/*` is "a file whose directory
//! is named `.ssh`", under any home (in /etc/passwd or not), in any
//! container's tree, existing or not when the rules were compiled.
//!
//! A glob has a shape when it is `**/` followed by at most three
//! components: `name` (SHAPE_NAMES: that name in any directory),
//! `dir/pattern` or `up/dir/pattern` (SHAPE_DIRS: slots of name patterns
//! under every directory named `dir`, whose parent is named `up`). `dir`
//! and `up` are literal names, `pattern` is `name`, `prefix*suffix`, and
//! every part fits in `abi::NAME_PART` bytes. A rule's `basename`
//! exceptions become allow slots before its own patterns. Each shape is
//! put through the whole rule on a sample path first, so the kernel never
//! decides more than the rule says. Pure.

use super::compile::Verdict;
use super::walk::{expand_braces, NamePattern};
use crate::abi;
use std::collections::{BTreeMap, HashMap};

/// One slot of a directory shape (abi.h's `ms_dir_rule`).
#[derive(Debug, Clone, PartialEq)]
pub struct ShapeSlot {
    pub pat: NamePattern,
    pub v: Verdict,
    /// A name this slot matches is not protected by rule `v.rule`.
    pub allow: bool,
}

/// The shapes of a rule set: (directory name, its parent's name or "")
/// -> slots; file names protected in any directory.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Shapes {
    pub dirs: BTreeMap<(String, String), Vec<ShapeSlot>>,
    pub names: HashMap<String, Verdict>,
}

/// One glob's shape: `(up, dir, name)`, `up` and `dir` empty for a bare
/// name. `None`: not a shape the kernel can test.
pub fn parse(glob: &str) -> Option<(String, String, String)> {
    let rest = glob.strip_prefix("**/")?;
    let comps: Vec<&str> = rest.split('/').collect();
    let literal = |c: &str| !c.is_empty() && c.len() <= abi::NAME_PART && !c.contains(['*', '?', '[', '{', '\\']);
    let name = *comps.last()?;
    NamePattern::parse(name, abi::NAME_PART)?;
    match comps.as_slice() {
        [n] if literal(n) => Some((String::new(), String::new(), n.to_string())),
        [d, _] if literal(d) => Some((String::new(), d.to_string(), name.to_string())),
        [u, d, _] if literal(u) && literal(d) => Some((u.to_string(), d.to_string(), name.to_string())),
        _ => None,
    }
}

/// A path the shape describes, for putting the rule through it.
pub fn sample_path(up: &str, dir: &str, name: &NamePattern) -> String {
    let n = if name.exact { name.prefix.clone() } else { format!("{}x{}", name.prefix, name.suffix) };
    [("/ms-shape-sample", true), (up, !up.is_empty()), (dir, !dir.is_empty()), (&n, true)]
        .iter()
        .filter(|(_, keep)| *keep)
        .map(|(s, _)| *s)
        .collect::<Vec<_>>()
        .join("/")
}

impl Shapes {
    /// Adds rule `v.rule`'s globs; `allow`: its `basename` exceptions;
    /// `holds(path)`: the whole rule matches an open of `path`. Returns
    /// notes on what stays with identities and the agent.
    pub fn add(
        &mut self,
        id: &str,
        globs: &[String],
        allow: &[String],
        v: Verdict,
        holds: &dyn Fn(&str) -> bool,
    ) -> Vec<String> {
        let mut notes = Vec::new();
        let allow: Option<Vec<NamePattern>> = allow.iter().map(|a| NamePattern::parse(a, abi::NAME_PART)).collect();
        let Some(allow) = allow else {
            notes.push(format!("rule `{id}`: its name exceptions are not `prefix*suffix` patterns; files outside the known homes are decided by the agent"));
            return notes;
        };
        for g in globs.iter().flat_map(|g| expand_braces(g)) {
            let Some((up, dir, name)) = parse(&g) else { continue };
            let pat = NamePattern::parse(&name, abi::NAME_PART).expect("parse checked it");
            if !holds(&sample_path(&up, &dir, &pat)) {
                continue; // the rule excepts it: nothing to protect
            }
            if dir.is_empty() {
                if pat.exact {
                    self.names.entry(name).or_insert(v);
                }
                continue;
            }
            let slots = self.dirs.entry((dir.clone(), up.clone())).or_default();
            let mine = |s: &ShapeSlot| s.v.rule == v.rule;
            if slots.iter().any(|s| mine(s) && !s.allow && s.pat == pat) {
                continue;
            }
            let has_allows = slots.iter().any(|s| mine(s) && s.allow);
            let need = 1 + if has_allows { 0 } else { allow.len() };
            if slots.len() + need > abi::DIR_SLOTS as usize {
                notes.push(format!("rule `{id}`: too many name patterns for directories named `{dir}`; `{g}` outside the known homes is decided by the agent"));
                continue;
            }
            if !has_allows {
                slots.extend(allow.iter().map(|a| ShapeSlot { pat: a.clone(), v, allow: true }));
            }
            slots.push(ShapeSlot { pat, v, allow: false });
        }
        notes
    }
}

/// A stable pseudo identity for a directory shape (the kernel's DENY_DIRS
/// slots are keyed by it under `abi::SHAPE_DEV`); never 0.
pub fn shape_id(dir: &str, up: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (dir, up).hash(&mut h);
    h.finish() | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_with_a_shape() {
        assert_eq!(parse("**/.ssh/*"), Some(("".into(), ".ssh".into(), "*".into())));
        assert_eq!(parse("**/.netrc"), Some(("".into(), "".into(), ".netrc".into())));
        assert_eq!(parse("**/.config/gcloud/credentials.db"), Some((".config".into(), "gcloud".into(), "credentials.db".into())));
        assert_eq!(parse("**/.azure/msal_token_cache.*"), Some(("".into(), ".azure".into(), "msal_token_cache.*".into())));
        assert_eq!(parse("**/.claude/.credentials.json"), Some(("".into(), ".claude".into(), ".credentials.json".into())));
        assert_eq!(parse("**/.pypirc"), Some(("".into(), "".into(), ".pypirc".into())));
        for none in ["/etc/shadow", "**/.aws/sso/cache/*.json", "**/.password-store/**", "**/*/x", "**/a*/x", "**/.env.*x*"] {
            assert_eq!(parse(none), None, "{none}");
        }
        assert_eq!(sample_path("", ".ssh", &NamePattern::parse("id_*", 32).unwrap()), "/ms-shape-sample/.ssh/id_x");
    }

    #[test]
    fn allow_slots_come_first_once_per_rule() {
        let mut s = Shapes::default();
        let v = Verdict { rule: 0, flags: abi::VF_KILL };
        let w = Verdict { rule: 1, flags: abi::VF_KILL | abi::VF_WRITE };
        let allow = vec!["*.pub".to_string(), "known_hosts".to_string()];
        let notes = s.add("key", &["**/.ssh/*".into(), "**/.ssh/id_*".into()], &allow, v, &|_| true);
        assert!(notes.is_empty(), "{notes:?}");
        s.add("ak", &["**/.ssh/authorized_keys".into(), "**/.netrc".into()], &[], w, &|_| true);
        let slots = &s.dirs[&(".ssh".to_string(), String::new())];
        let shown: Vec<(String, bool, u32)> = slots.iter().map(|x| (format!("{}*{}", x.pat.prefix, x.pat.suffix), x.allow, x.v.rule)).collect();
        assert_eq!(
            shown,
            vec![
                ("*.pub".into(), true, 0),
                ("known_hosts*".into(), true, 0),
                ("*".into(), false, 0),
                ("id_*".into(), false, 0),
                ("authorized_keys*".into(), false, 1)
            ]
        );
        assert_eq!(s.names[".netrc"], w);
        // a shape the rule itself excepts is not protected
        let mut s = Shapes::default();
        s.add("x", &["**/.ssh/*.pub".into()], &[], v, &|p| !p.ends_with(".pub"));
        assert!(s.dirs.is_empty());
    }

    #[test]
    fn slots_are_bounded_with_a_note() {
        let mut s = Shapes::default();
        let v = Verdict { rule: 0, flags: abi::VF_KILL };
        let globs: Vec<String> = (0..20).map(|i| format!("**/.d/n{i}")).collect();
        let notes = s.add("many", &globs, &[], v, &|_| true);
        assert_eq!(s.dirs[&(".d".to_string(), String::new())].len(), abi::DIR_SLOTS as usize);
        assert_eq!(notes.len(), 20 - abi::DIR_SLOTS as usize);
        assert_ne!(shape_id(".ssh", ""), shape_id(".ssh", "x"));
    }
}
