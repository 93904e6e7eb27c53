//! Which kill rules the kernel can decide, and what enforcement needs to
//! compile them into kernel maps (`crate::enforce`).
//!
//! A rule is kernel-decidable when everything it tests is known at the
//! syscall from the kernel object alone: the opened file (path, name,
//! identity, the shape of its path), the executed file (path, name,
//! identity), the connect's address and port, whether the session has read
//! its first request (`after_first_request`), and exceptions on the
//! process's executable or comm (compiled to identities). Anything else
//! about the MCP session (server, tool, method) or the process (argv, uid)
//! is left to the agent, which decides on the event and kills by pidfd.

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

/// What a kernel verdict tests besides the file, program or address
/// (abi.h's `MS_VF_*`), and what of the rule it leaves to the agent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KernelConds {
    /// Only once the session's server has read its first request (the
    /// kernel's FIRST_REQ, set by the stdio capture).
    pub after_request: bool,
    /// Open rules: only an open that can modify the file (`write: true`).
    pub write: bool,
    /// Processes the rule excepts by `exe_name` (names or globs): their
    /// executables' identities go in the kernel's EXEMPT map.
    pub exempt_exe_names: Vec<String>,
    /// Processes the rule excepts by `comm` (exact names).
    pub exempt_comms: Vec<String>,
    /// Exec rules: processes the rule excepts by their parent's
    /// executable (`parent_exe`, path globs): the identities of the files
    /// they name go in EXEMPT as parents (abi.h `MS_EXEMPT_PARENT`). The
    /// exception's other conditions (argv, shell_mode) are the agent's: the
    /// kernel spares every such child, the agent kills late what the whole
    /// exception does not cover.
    pub exempt_parent_exes: Vec<String>,
    /// Open rules: the names its `basename` exceptions except (allow slots
    /// before a directory-shape's patterns); `None`: an exception the
    /// kernel cannot put as names, so no shapes.
    pub allow_names: Option<Vec<String>>,
    /// Exec rules: an exception applies to shells' script runs only
    /// (`shell_mode: script`), which the kernel cannot judge (where the
    /// script lives, who owns it): the kernel kills only runs its argv
    /// shows are not script runs (a command string, stdin, interactive;
    /// abi.h `MS_VF_SHELL_CMD`); script runs are the agent's.
    pub shell_cmd: bool,
    /// The kernel decides part of the rule (an `any` branch testing what it
    /// does not see is the agent's): why.
    pub partial: Option<&'static str>,
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
    pub conds: KernelConds,
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

/// The top-level conjuncts of a condition, nested `All`s (macros) flattened.
fn conjuncts(c: &Cond) -> Vec<&Cond> {
    match c {
        Cond::All(cs) => cs.iter().flat_map(conjuncts).collect(),
        c => vec![c],
    }
}

/// The condition can never hold: an empty list (`server: $empty_list`), an
/// `any` of nothing, an exception row of an empty table.
fn never(c: &Cond) -> bool {
    match c {
        Cond::Any(cs) => cs.iter().all(never),
        Cond::All(cs) => cs.iter().any(never),
        Cond::Not(_) => false,
        Cond::Leaf(Leaf::Str(_, m)) => m.is_empty(),
        Cond::Leaf(_) => false,
    }
}

fn kernel_fields(kind: EventKind) -> &'static [Field] {
    match kind {
        EventKind::Open => &[Field::Path, Field::File, Field::Basename, Field::Outcome, Field::Write],
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

/// Non-kernel leaves only in `any` branches, never negated: the kernel
/// then decides the branches it sees (never more than the rule), the
/// agent the others. `Err`: a negated one (the kernel would decide more).
fn positive_partial(c: &Cond, allowed: &[Field], in_any: bool, neg: bool) -> Result<bool, ()> {
    match c {
        Cond::Leaf(l) if allowed.contains(&leaf_field(l)) => Ok(false),
        Cond::Leaf(_) if in_any && !neg => Ok(true),
        Cond::Leaf(_) => Err(()),
        Cond::Not(c) => positive_partial(c, allowed, in_any, !neg),
        Cond::All(cs) => cs.iter().try_fold(false, |acc, c| Ok(acc | positive_partial(c, allowed, in_any, neg)?)),
        Cond::Any(cs) => cs.iter().try_fold(false, |acc, c| Ok(acc | positive_partial(c, allowed, true, neg)?)),
    }
}

/// The exceptions as kernel conditions: process exceptions become
/// exemptions, `basename` ones allow names, empty ones nothing.
fn exceptions(kind: EventKind, except: &[Cond], conds: &mut KernelConds) -> Result<usize, &'static str> {
    let allowed = kernel_fields(kind);
    let mut file_excepts = 0;
    conds.allow_names = Some(Vec::new());
    for e in except {
        if never(e) {
            continue;
        }
        let one = match conjuncts(e).as_slice() {
            [Cond::Leaf(l)] => Some(l),
            _ => None,
        };
        let script_runs = 1u32 << crate::shell_run::SHELL_MODES.iter().position(|m| *m == "script").unwrap_or(0);
        let only_scripts = |c: &&Cond| matches!(c, Cond::Leaf(Leaf::Enum(Field::ShellMode, mask)) if *mask == script_runs);
        if kind == EventKind::Exec && conjuncts(e).iter().any(only_scripts) {
            conds.shell_cmd = true;
            continue;
        }
        let parent = conjuncts(e).into_iter().find_map(|c| match c {
            Cond::Leaf(Leaf::Path(Field::ParentExe, m)) => Some(m),
            _ => None,
        });
        if let (EventKind::Exec, Some(m)) = (kind, parent) {
            conds.exempt_parent_exes.extend(m.globs.iter().map(|g| g.glob().to_string()));
            continue;
        }
        match one {
            Some(Leaf::Str(Field::ExeName, m)) => {
                conds.exempt_exe_names.extend(m.values().map(str::to_owned));
                continue;
            }
            Some(Leaf::Str(Field::Comm, m)) if m.values().all(|v| !v.contains(['*', '?', '[', '{'])) => {
                conds.exempt_comms.extend(m.values().map(str::to_owned));
                continue;
            }
            Some(Leaf::Str(Field::Basename, m)) => {
                if let Some(a) = &mut conds.allow_names {
                    a.extend(m.values().map(str::to_owned));
                }
                file_excepts += 1;
                continue;
            }
            _ => {}
        }
        let mut ok = true;
        for_leaves(e, &mut |l| ok &= allowed.contains(&leaf_field(l)));
        if !ok {
            return Err("an exception tests what the kernel does not see (session, tool, argv)");
        }
        conds.allow_names = None;
        file_excepts += 1;
    }
    Ok(file_excepts)
}

fn plan(kind: EventKind, cond: &Cond, except: &[Cond], conds: &mut KernelConds) -> KernelPlan {
    let allowed = kernel_fields(kind);
    if !matches!(kind, EventKind::Open | EventKind::Exec | EventKind::Connect) {
        return KernelPlan::Agent { why: "only open, exec and connect happen at a syscall the kernel can stop" };
    }
    let file_excepts = if kind == EventKind::Connect {
        if except.iter().any(|e| !never(e)) {
            return KernelPlan::Agent { why: "its exceptions are decided by the agent" };
        }
        0
    } else {
        match exceptions(kind, except, conds) {
            Ok(n) => n,
            Err(why) => return KernelPlan::Agent { why },
        }
    };
    match positive_partial(cond, allowed, false, false) {
        Ok(false) => {}
        Ok(true) if kind == EventKind::Exec => {
            conds.partial = Some("branches testing comm, argv or exe_is (busybox shells, copies of a shell) are decided by the agent; a copy found by content is killed in the kernel from its next exec");
        }
        _ => return KernelPlan::Agent { why: "it tests what the kernel does not see at the syscall (process, session or tool)" },
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
            let mut only_paths = true;
            for c in &top {
                match c {
                    Cond::Leaf(Leaf::Path(Field::Path, _) | Leaf::File(..) | Leaf::Enum(Field::Outcome, _)) => {}
                    Cond::Leaf(Leaf::Bool(Field::Write, true)) => conds.write = true,
                    _ => only_paths = false,
                }
            }
            KernelPlan::Open { paths, new_files: only_paths && file_excepts == 0 }
        }
        EventKind::Exec => {
            let mut paths = Vec::new();
            for_leaves(cond, &mut |l| paths.extend(globs_of(l).unwrap_or_default()));
            KernelPlan::Exec { paths }
        }
        _ => {
            let (mut nets, mut ports) = (None, None);
            for c in &top {
                match c {
                    Cond::Leaf(Leaf::Addr(s)) if nets.is_none() => nets = Some(s.nets().collect()),
                    Cond::Leaf(Leaf::Port(p)) if ports.is_none() => ports = Some(p.ranges().to_vec()),
                    _ => return KernelPlan::Agent { why: "only one `addr` and one `port` test, without `any`/`not`, compile to the kernel" },
                }
            }
            KernelPlan::Connect { nets: nets.unwrap_or_default(), ports: ports.unwrap_or_default() }
        }
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
            let Some(&kind) = kinds.first() else { continue };
            let mut conds = KernelConds { after_request: r.after_first_request, ..Default::default() };
            let plan = if kinds.len() != 1 {
                KernelPlan::Agent { why: "a rule of several kinds is decided by the agent" }
            } else if r.after_first_request && kind == EventKind::Connect {
                KernelPlan::Agent { why: "`after_first_request` is known to the kernel for opens and execs only" }
            } else {
                plan(kind, &r.cond, &r.except, &mut conds)
            };
            let kill = r.info.action == Action::Kill;
            out.push(KillRule { index: i as u32, id: &r.info.id, kind, scope: r.info.kill_scope, kill, plan, conds });
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
    fn a_parent_exe_exception_exempts_by_the_parent_and_leaves_the_rest_to_the_agent() {
        let yaml = format!(
            "- rule: sh\n  {HEAD} kind: exec\n  match:\n    exe_name: sh\n  except:\n    - parent_exe: /usr/bin/direnv\n      argv_regex: 'stdlib'\n"
        );
        let set = check(&[("t.yaml", yaml.as_str())]).unwrap();
        let k = &set.kill_rules()[0];
        assert_eq!(k.plan, KernelPlan::Exec { paths: vec![] }, "{k:?}");
        assert_eq!(k.conds.exempt_parent_exes, ["/usr/bin/direnv"]);
        // argv alone is no parent: the agent's
        let yaml = format!("- rule: sh\n  {HEAD} kind: exec\n  match:\n    exe_name: sh\n  except:\n    - argv_regex: 'stdlib'\n");
        let set = check(&[("t.yaml", yaml.as_str())]).unwrap();
        assert!(matches!(set.kill_rules()[0].plan, KernelPlan::Agent { .. }));
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
        assert_eq!(p[2].1, KernelPlan::Exec { paths: vec![] }, "after_first_request is the kernel's too");
        let KernelPlan::Connect { nets, ports } = &p[3].1 else { panic!("{p:?}") };
        assert_eq!(nets, &vec![("169.254.169.254".parse().unwrap(), 32), ("10.0.0.0".parse().unwrap(), 8)]);
        assert_eq!(ports, &vec![(80, 80), (8000, 8999)]);
        assert_eq!(p[4].1, KernelPlan::Connect { nets: vec![], ports: vec![(25, 25)] });
    }
}
