//! Expanding path globs over the filesystem: which files a rule's path
//! glob names right now, and in which directories files it would name may
//! appear later.
//!
//! Owns the bounds of that search: a glob is walked from its literal
//! prefix, component by component; `**` descends at most [`MAX_DEPTH`]
//! levels without following symlinks; a glob that starts with `**` (the
//! default pack's "anywhere" files) is searched from the root of each
//! user's home directory (not through it); every directory entry read is charged to a budget, so a
//! huge tree costs a bounded scan (what was cut short is reported).

use globset::{GlobBuilder, GlobMatcher};
use std::path::{Path, PathBuf};

/// `**` spans at most this many directories.
pub const MAX_DEPTH: usize = 8;

/// Directories are walked without descending into these (kernel objects,
/// not files a rule protects).
const SKIP: &[&str] = &["/proc", "/sys", "/dev"];

/// What one glob names now.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Found {
    /// Existing regular files (and symlinks to them) the glob matches.
    pub files: Vec<PathBuf>,
    /// Directories in which the glob's last component would match a new
    /// file, with that component's pattern.
    pub dirs: Vec<(PathBuf, String)>,
    /// The budget ran out: the result is partial.
    pub truncated: bool,
}

enum Comp {
    Lit(String),
    Glob(GlobMatcher, String),
    Any, // `**`
}

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '{', '\\'])
}

/// Expands `{a,b}` groups (nested too) into separate globs, so that a
/// group holding a `/` becomes whole paths.
pub fn expand_braces(g: &str) -> Vec<String> {
    let bytes = g.as_bytes();
    let mut depth = 0;
    let mut open = None;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\\' => continue,
            b'{' => {
                if depth == 0 {
                    open = Some(i);
                }
                depth += 1;
            }
            b'}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    let start = open.unwrap();
                    let (head, body, tail) = (&g[..start], &g[start + 1..i], &g[i + 1..]);
                    let mut alts = Vec::new();
                    let (mut d, mut from) = (0, 0);
                    for (j, c) in body.bytes().enumerate() {
                        match c {
                            b'{' => d += 1,
                            b'}' => d -= 1,
                            b',' if d == 0 => {
                                alts.push(&body[from..j]);
                                from = j + 1;
                            }
                            _ => {}
                        }
                    }
                    alts.push(&body[from..]);
                    return alts
                        .into_iter()
                        .flat_map(|a| expand_braces(&format!("{head}{a}{tail}")))
                        .collect();
                }
            }
            _ => {}
        }
    }
    vec![g.to_string()]
}

fn comps(glob: &str) -> Option<Vec<Comp>> {
    glob.split('/')
        .filter(|c| !c.is_empty())
        .map(|c| {
            Some(if c == "**" {
                Comp::Any
            } else if has_meta(c) {
                let m = GlobBuilder::new(c).literal_separator(true).backslash_escape(true).build().ok()?;
                Comp::Glob(m.compile_matcher(), c.to_string())
            } else {
                Comp::Lit(c.to_string())
            })
        })
        .collect()
}

struct Walker<'a> {
    budget: &'a mut usize,
    out: Found,
}

impl Walker<'_> {
    fn entries(&mut self, dir: &Path) -> Vec<(String, PathBuf)> {
        let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
        let mut v = Vec::new();
        for e in rd.flatten() {
            if *self.budget == 0 {
                self.out.truncated = true;
                break;
            }
            *self.budget -= 1;
            v.push((e.file_name().to_string_lossy().into_owned(), e.path()));
        }
        v
    }

    fn walk(&mut self, dir: &Path, comps: &[Comp], depth: usize) {
        if SKIP.iter().any(|s| dir == Path::new(s)) {
            return;
        }
        let Some((first, rest)) = comps.split_first() else { return };
        let last = rest.is_empty();
        match first {
            Comp::Lit(name) => {
                let p = dir.join(name);
                if last {
                    self.out.dirs.push((dir.to_path_buf(), name.clone()));
                    if p.is_file() {
                        self.out.files.push(p);
                    }
                } else if p.is_dir() {
                    self.walk(&p, rest, depth);
                }
            }
            Comp::Glob(m, text) => {
                if last {
                    self.out.dirs.push((dir.to_path_buf(), text.clone()));
                }
                for (name, p) in self.entries(dir) {
                    if !m.is_match(&name) {
                        continue;
                    }
                    if last {
                        if p.is_file() {
                            self.out.files.push(p);
                        }
                    } else if p.is_dir() {
                        self.walk(&p, rest, depth);
                    }
                }
            }
            Comp::Any => {
                if last {
                    return; // `x/**` names directories' whole contents: not enumerated
                }
                self.walk(dir, rest, depth);
                if depth >= MAX_DEPTH {
                    return;
                }
                for (_, p) in self.entries(dir) {
                    let is_real_dir = p.symlink_metadata().is_ok_and(|m| m.is_dir());
                    if is_real_dir {
                        self.walk(&p, comps, depth + 1);
                    }
                }
            }
        }
    }
}

/// The users' home directories: `/root`, `/home/*`, and the homes in
/// `/etc/passwd` that exist. Searched for globs that start with `**`.
pub fn homes() -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("/root")];
    if let Ok(rd) = std::fs::read_dir("/home") {
        v.extend(rd.flatten().map(|e| e.path()));
    }
    if let Ok(text) = std::fs::read_to_string("/etc/passwd") {
        for line in text.lines() {
            if let Some(h) = line.split(':').nth(5) {
                let h = PathBuf::from(h);
                if h.starts_with("/home") || h.starts_with("/root") || h.starts_with("/Users") {
                    v.push(h);
                }
            }
        }
    }
    v.retain(|h| h.is_dir());
    v.sort();
    v.dedup();
    v
}

/// What `glob` names now. `homes`: the roots of a glob that starts with
/// `**`; `budget`: directory entries that may still be read.
pub fn expand(glob: &str, homes: &[PathBuf], budget: &mut usize) -> Found {
    let mut w = Walker { budget, out: Found::default() };
    for g in expand_braces(glob) {
        let Some(cs) = comps(&g) else { continue };
        if g.starts_with('/') {
            w.walk(Path::new("/"), &cs, 0);
        } else if g.starts_with("**") {
            // "anywhere": from each home's root only (`~/.ssh/id_x`, not
            // `~/src/x/.ssh/id_x`). A walk of whole homes read 230,000
            // entries at every start on a developer's machine, and under
            // qemu's virtiofs it exhausted the file server's descriptors.
            // Files deeper down are the kernel's by path shape (shape.rs)
            // where the glob has one, else the agent's.
            let from_root = match cs.first() {
                Some(Comp::Any) => &cs[1..],
                _ => &cs[..],
            };
            for h in homes {
                w.walk(h, from_root, 0);
            }
        }
        // other relative globs cannot name a file on their own
    }
    w.out.files.sort();
    w.out.files.dedup();
    w.out.dirs.sort();
    w.out.dirs.dedup();
    w.out
}

/// A basename pattern the kernel can test: `prefix*suffix`, `prefix*`,
/// `*suffix`, `*`, or an exact name, each part at most `max` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NamePattern {
    pub prefix: String,
    pub suffix: String,
    pub exact: bool,
}

impl NamePattern {
    pub fn parse(p: &str, max: usize) -> Option<NamePattern> {
        let fits = |s: &str| s.len() <= max && !has_meta(s);
        match p.split_once('*') {
            None if fits(p) => Some(NamePattern { prefix: p.into(), suffix: String::new(), exact: true }),
            Some((a, b)) if fits(a) && fits(b) => {
                Some(NamePattern { prefix: a.into(), suffix: b.into(), exact: false })
            }
            _ => None,
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        if self.exact {
            return name == self.prefix;
        }
        name.len() >= self.prefix.len() + self.suffix.len()
            && name.starts_with(&self.prefix)
            && name.ends_with(&self.suffix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> PathBuf {
        let d = std::env::temp_dir().join(format!("ms-walk-{}-{:?}", std::process::id(), std::thread::current().id()));
        let _ = std::fs::remove_dir_all(&d);
        for f in ["a/.ssh/id_rsa", "a/.ssh/id_rsa.pub", "b/.ssh/config", "b/deep/x/y/.ssh/id_ed25519", "c/k"] {
            let p = d.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        d
    }

    #[test]
    fn globs_name_existing_files_and_directories_for_new_ones() {
        let d = tree();
        let root = d.display();
        let mut budget = 10_000;
        let f = expand(&format!("{root}/*/.ssh/id_*"), &[], &mut budget);
        assert_eq!(f.files, vec![d.join("a/.ssh/id_rsa"), d.join("a/.ssh/id_rsa.pub")]);
        assert_eq!(f.dirs, vec![(d.join("a/.ssh"), "id_*".into()), (d.join("b/.ssh"), "id_*".into())]);
        assert!(!f.truncated);
        // a leading `**`: from each home's root, not through the home
        // (deeper files are the kernel's by path shape)
        let f = expand("**/.ssh/id_*", &[d.join("a"), d.join("b")], &mut budget);
        assert_eq!(f.files, vec![d.join("a/.ssh/id_rsa"), d.join("a/.ssh/id_rsa.pub")]);
        let f = expand("**/.ssh/id_ed25519", &[d.join("b")], &mut budget);
        assert!(f.files.is_empty(), "{:?}", f.files);
        // `**` inside a glob still spans directories
        let f = expand(&format!("{root}/b/**/.ssh/id_ed25519"), &[], &mut budget);
        assert_eq!(f.files, vec![d.join("b/deep/x/y/.ssh/id_ed25519")]);
        // braces holding a slash become separate paths
        let f = expand(&format!("{root}/{{a/.ssh,c}}/{{id_rsa,k}}"), &[], &mut budget);
        assert_eq!(f.files, vec![d.join("a/.ssh/id_rsa"), d.join("c/k")]);
        // a literal path that does not exist yet still names its directory
        let f = expand(&format!("{root}/c/new"), &[], &mut budget);
        assert!(f.files.is_empty());
        assert_eq!(f.dirs, vec![(d.join("c"), "new".into())]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn budget_bounds_the_scan() {
        let d = tree();
        let mut budget = 2;
        let f = expand(&format!("{}/**/id_*", d.display()), &[], &mut budget);
        assert!(f.truncated);
        assert_eq!(budget, 0);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn name_patterns() {
        let p = NamePattern::parse("id_*", 32).unwrap();
        assert!(p.matches("id_rsa") && p.matches("id_") && !p.matches("xid_rsa"));
        let p = NamePattern::parse("*.pem", 32).unwrap();
        assert!(p.matches("a.pem") && !p.matches("a.pem.bak"));
        let p = NamePattern::parse("credentials", 32).unwrap();
        assert!(p.exact && p.matches("credentials") && !p.matches("credentials2"));
        assert_eq!(NamePattern::parse("*", 32).map(|p| p.matches("anything")), Some(true));
        assert!(NamePattern::parse("a*b*c", 32).is_none());
        assert!(NamePattern::parse("[ab]x", 32).is_none());
        assert!(NamePattern::parse(&"x".repeat(33), 32).is_none());
        assert_eq!(expand_braces("/a/{b,c/d}/{e,f}").len(), 4);
    }
}
