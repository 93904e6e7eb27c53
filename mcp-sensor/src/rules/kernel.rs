//! Which kill rules the kernel can decide, and what enforcement needs to
//! compile them into kernel maps (`crate::enforce`).
//!
//! A rule is kernel-decidable when everything it tests is known at the
//! syscall from the kernel object alone: the opened file (path, name,
//! identity), the executed file (path, name, identity), the connect's
//! address and port. Anything about the MCP session (server, tool, method,
//! `after_first_request`) or the process (exe of an opener, argv, uid) is
//! left to the agent, which decides on the event and kills by pidfd.

use std::net::IpAddr;

use super::compile::{Cond, Leaf};
use super::fields::{Action, EventKind, Field, KillScope};
use super::RuleSet;

/// How enforcement can decide one kill rule.
#[derive(Debug, Clone, PartialEq)]
pub enum KernelPlan {
    /// Files matching one of `paths` (path globs or literal paths) are the
    /// candidates; each is protected (by identity) only if the whole rule
    /// matches an open of it. `new_files`: the rule is nothing but these
    /// paths, so a file created later in a directory they cover can be
    /// recognised by its parent directory and name.
    Open { paths: Vec<String>, new_files: bool },
    /// Executables found in the usual bin directories, `$PATH`, and
    /// `paths` (the rule's own `exe`/`file` values) are the candidates;
    /// each is forbidden (by identity) if the whole rule matches an exec
    /// of it.
    Exec { paths: Vec<String> },
    /// Connects to one of `nets` (empty: any address) on one of `ports`
    /// (empty: any port) are refused.
    Connect { nets: Vec<(IpAddr, u8)>, ports: Vec<(u16, u16)> },
    /// The agent decides, on the event; `why` says what the kernel lacks.
    Agent { why: &'static str },
}

/// An enabled rule with `action: kill` (or `deny`).
#[derive(Debug, Clone)]
pub struct KillRule<'r> {
    /// Index in [`RuleSet::rules`]: what the kernel reports back.
    pub index: u32,
    pub id: &'r str,
    pub kind: EventKind,
    pub scope: KillScope,
    /// `false` for `action: deny`: the connect is refused, nobody killed.
    pub kill: bool,
    pub plan: KernelPlan,
}

fn leaf_field(l: &Leaf) -> Field {
    match l {
        Leaf::Str(f, _) | Leaf::Path(f, _) | Leaf::Regex(f, _) | Leaf::Enum(f, _) | Leaf::Bool(f, _) => *f,
        Leaf::Uid(_) => Field::Uid,
        Leaf::Addr(_) => Field::Addr,
        Leaf::Port(_) => Field::Port,
        Leaf::File(..) => Field::File,
    }
}

fn for_leaves<'c>(c: &'c Cond, f: &mut impl FnMut(&'c Leaf)) {
    match c {
        Cond::All(cs) | Cond::Any(cs) => cs.iter().for_each(|c| for_leaves(c, f)),
        Cond::Not(c) => for_leaves(c, f),
        Cond::Leaf(l) => f(l),
    }
}

/// The top-level conjuncts of a condition.
fn conjuncts(c: &Cond) -> Vec<&Cond> {
    match c {
        Cond::All(cs) => cs.iter().collect(),
        c => vec![c],
    }
}

fn kernel_fields(kind: EventKind) -> &'static [Field] {
    match kind {
        EventKind::Open => &[Field::Path, Field::File, Field::Basename, Field::Outcome],
        EventKind::Exec => &[Field::Exe, Field::ExeName, Field::File],
        EventKind::Connect => &[Field::Addr, Field::Port],
        _ => &[],
    }
}

fn globs_of(l: &Leaf) -> Option<Vec<String>> {
    match l {
        Leaf::Path(Field::Path | Field::Exe, m) | Leaf::File(m, _) => {
            Some(m.globs.iter().map(|g| g.glob().to_string()).collect())
        }
        _ => None,
    }
}

fn plan(kind: EventKind, cond: &Cond, except: &[Cond]) -> KernelPlan {
    let allowed = kernel_fields(kind);
    let mut ok = true;
    for c in std::iter::once(cond).chain(except) {
        for_leaves(c, &mut |l| ok &= allowed.contains(&leaf_field(l)));
    }
    if !ok {
        return KernelPlan::Agent { why: "it tests what the kernel does not see at the syscall (process, session or tool)" };
    }
    let top = conjuncts(cond);
    match kind {
        EventKind::Open => {
            let Some(paths) = top.iter().find_map(|c| match c {
                Cond::Leaf(l) => globs_of(l),
                _ => None,
            }) else {
                return KernelPlan::Agent { why: "it names no `path` or `file` to protect" };
            };
            let only_paths = top.iter().all(|c| {
                matches!(c, Cond::Leaf(Leaf::Path(Field::Path, _) | Leaf::File(..)))
            });
            KernelPlan::Open { paths, new_files: only_paths && except.is_empty() }
        }
        EventKind::Exec => {
            let mut paths = Vec::new();
            for_leaves(cond, &mut |l| paths.extend(globs_of(l).unwrap_or_default()));
            KernelPlan::Exec { paths }
        }
        EventKind::Connect => {
            let (mut nets, mut ports) = (None, None);
            for c in &top {
                match c {
                    Cond::Leaf(Leaf::Addr(s)) if nets.is_none() => nets = Some(s.nets().collect()),
                    Cond::Leaf(Leaf::Port(p)) if ports.is_none() => ports = Some(p.ranges().to_vec()),
                    _ => return KernelPlan::Agent { why: "only one `addr` and one `port` test, without `any`/`not`, compile to the kernel" },
                }
            }
            if !except.is_empty() {
                return KernelPlan::Agent { why: "its exceptions are decided by the agent" };
            }
            KernelPlan::Connect { nets: nets.unwrap_or_default(), ports: ports.unwrap_or_default() }
        }
        _ => KernelPlan::Agent { why: "only open, exec and connect happen at a syscall the kernel can stop" },
    }
}

impl RuleSet {
    /// Every enabled `action: kill` rule, with how it can be enforced.
    pub fn kill_rules(&self) -> Vec<KillRule<'_>> {
        let mut out = Vec::new();
        for (i, r) in self.compiled().iter().enumerate() {
            if !r.info.enabled || r.info.action == Action::Alert {
                continue;
            }
            let kinds = &r.info.kinds;
            let kind = kinds[0];
            let plan = if kinds.len() != 1 {
                KernelPlan::Agent { why: "a rule of several kinds is decided by the agent" }
            } else if r.after_first_request {
                KernelPlan::Agent { why: "`after_first_request` needs the MCP session" }
            } else {
                plan(kind, &r.cond, &r.except)
            };
            let kill = r.info.action == Action::Kill;
            out.push(KillRule { index: i as u32, id: &r.info.id, kind, scope: r.info.kill_scope, kill, plan });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::check;

    fn plans(yaml: &str) -> Vec<(String, KernelPlan)> {
        let set = check(&[("t.yaml", yaml)]).unwrap_or_else(|e| panic!("{e:?}"));
        set.kill_rules().into_iter().map(|k| (k.id.to_string(), k.plan)).collect()
    }

    const HEAD: &str = "description: d\n  severity: high\n  action: kill\n ";

    #[test]
    fn file_rules_compile_with_their_globs() {
        let p = plans(&format!(
            "- rule: a\n  {HEAD} kind: open\n  match:\n    path: [/h/*/.ssh/id_*, /etc/shadow]\n\
             - rule: b\n  {HEAD} kind: open\n  match:\n    path: /h/**/k\n  except:\n    - basename: '*.pub'\n\
             - rule: c\n  {HEAD} kind: open\n  match:\n    path: /x\n    tool: read\n\
             - rule: d\n  description: d\n  severity: high\n  kind: open\n  match:\n    path: /y\n"
        ));
        assert_eq!(p.len(), 3, "alert rules are not kill rules: {p:?}");
        assert_eq!(p[0].1, KernelPlan::Open { paths: vec!["/h/*/.ssh/id_*".into(), "/etc/shadow".into()], new_files: true });
        assert_eq!(p[1].1, KernelPlan::Open { paths: vec!["/h/**/k".into()], new_files: false });
        assert!(matches!(p[2].1, KernelPlan::Agent { .. }), "tool is session context: {:?}", p[2]);
    }

    #[test]
    fn exec_and_connect_rules() {
        let p = plans(&format!(
            "- rule: sh\n  {HEAD} kind: exec\n  match:\n    exe_name: [sh, dash]\n\
             - rule: arg\n  {HEAD} kind: exec\n  match:\n    argv_contains: -c\n\
             - rule: late\n  {HEAD} kind: exec\n  after_first_request: true\n  match:\n    exe_name: sh\n\
             - rule: md\n  {HEAD} kind: connect\n  match:\n    addr: [169.254.169.254, 10.0.0.0/8]\n    port: [80, 8000-8999]\n\
             - rule: anyport\n  {HEAD} kind: connect\n  match:\n    port: 25\n"
        ));
        assert_eq!(p[0].1, KernelPlan::Exec { paths: vec![] });
        assert!(matches!(p[1].1, KernelPlan::Agent { .. }));
        assert!(matches!(p[2].1, KernelPlan::Agent { .. }));
        let KernelPlan::Connect { nets, ports } = &p[3].1 else { panic!("{p:?}") };
        assert_eq!(nets, &vec![("169.254.169.254".parse().unwrap(), 32), ("10.0.0.0".parse().unwrap(), 8)]);
        assert_eq!(ports, &vec![(80, 80), (8000, 8999)]);
        assert_eq!(p[4].1, KernelPlan::Connect { nets: vec![], ports: vec![(25, 25)] });
    }
}
