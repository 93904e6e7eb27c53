//! Compiles the kernel-decidable kill rules of a rule set into the content
//! of the kernel's deny maps: protected files and forbidden executables by
//! identity, protected directories + name patterns for files that do not
//! exist yet, denied networks with their ports.
//!
//! Every candidate file is put through the whole rule (the engine's own
//! `evaluate`, on the event the kernel would report) before it is
//! protected, so exceptions and name tests hold in the kernel exactly as
//! they do in the agent. Pure apart from reading the filesystem.

use super::shape::Shapes;
use super::walk::{self, NamePattern};
use crate::abi;
use crate::event::{Body, Event};
use crate::rules::{EvalContext, FileId, KernelConds, KernelPlan, KillRule, RuleSet};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Directory entries one compile reads at most.
pub const SCAN_BUDGET: usize = 200_000;
/// Directories protected for new files at most (per compile).
pub const MAX_DIRS: usize = 4096;

/// What a deny entry decides: the rule (index in the rule set) and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub rule: u32,
    pub flags: u32,
}

impl Verdict {
    pub(super) fn of(k: &KillRule<'_>) -> Verdict {
        let c: &KernelConds = &k.conds;
        let mut flags = if k.kill { abi::VF_KILL } else { 0 };
        let bits = [
            (k.scope == crate::rules::KillScope::Tree, abi::VF_TREE),
            (c.write, abi::VF_WRITE),
            (!c.exempt_exe_names.is_empty() || !c.exempt_comms.is_empty() || !c.exempt_parent_exes.is_empty(), abi::VF_EXEMPT),
            (c.after_request, abi::VF_AFTER_REQ),
            (c.shell_cmd, abi::VF_SHELL_CMD),
            (!c.exempt_parent_exes.is_empty(), abi::VF_EXEMPT_PARENT),
        ];
        for (on, bit) in bits {
            if on {
                flags |= bit;
            }
        }
        Verdict { rule: k.index, flags }
    }
}

/// A process a rule excepts (the kernel's EXEMPT map).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Exempt {
    /// By the identity of its executable.
    Exe { id: FileId, rule: u32 },
    /// By comm (at most 15 bytes).
    Comm { comm: String, rule: u32 },
    /// By the identity of its parent's executable (`parent_exe`).
    Parent { id: FileId, rule: u32 },
}

/// One network of the deny trie: IPv6 (IPv4 mapped), prefix length in
/// that space, and every (ports, verdict) that applies to it.
#[derive(Debug, Clone, PartialEq)]
pub struct NetEntry {
    pub addr: [u8; 16],
    pub prefix: u8,
    pub ports: Vec<(u16, u16, Verdict)>,
}

/// The content of the deny maps.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tables {
    pub files: HashMap<FileId, Verdict>,
    pub dirs: HashMap<FileId, Vec<(NamePattern, Verdict)>>,
    pub exec: HashMap<FileId, Verdict>,
    pub nets: Vec<NetEntry>,
    /// Files by the shape of their path (`shape.rs`).
    pub shapes: Shapes,
    pub exempt: HashSet<Exempt>,
    /// Human-readable notes: rules left to the agent and why, scans cut short.
    pub notes: Vec<String>,
}

fn identity(p: &Path) -> Option<FileId> {
    std::fs::metadata(p).ok().map(|m| FileId::from_stat(m.dev(), m.ino()))
}

/// The event the kernel would report for an open of `path` or an exec of
/// `exe`, for evaluating a rule on it.
fn probe(body: Body, exe: Option<String>) -> Event {
    Event {
        ns_pid: None, container: None,
        ts: String::new(),
        ts_ns: 0,
        pid: 0,
        tid: 0,
        ppid: 0,
        uid: 0,
        comm: String::new(),
        exe,
        body,
        server: None,
        tool_call: None,
    }
}

/// `write`: an open for writing (rules that test `write: true` are put
/// through such an open; the kernel checks the open's flags itself).
pub(super) fn open_probe(path: &Path, write: bool) -> Event {
    probe(
        Body::Open {
            path: path.display().to_string(),
            resolved: true,
            flags: vec![if write { "O_WRONLY" } else { "O_RDONLY" }],
            ret: 3,
            error: None,
            dev: 0,
            ino: 0,
            canonical_path: None,
            path_length: None,
            syscall: "openat",
            file_flags: vec![],
        },
        None,
    )
}

fn exec_probe(exe: &Path) -> Event {
    let s = exe.display().to_string();
    probe(
        Body::Exec {
            filename: s.clone(),
            argv: vec![],
            cwd: "/".into(),
            script: None,
            dev: 0,
            ino: 0,
            exe_is: None,
            shell_mode: None,
            script_writable_by: None,
            parent_exe: None,
            argv_truncated: false,
            exe_length: None,
            file_flags: vec![],
        },
        Some(s),
    )
}

fn matches(set: &RuleSet, id: &str, ev: &Event) -> bool {
    set.evaluate(ev, &EvalContext { first_request_seen: true, ..Default::default() })
        .iter()
        .any(|m| m.id == id)
}

/// The first rule to claim an identity keeps it, unless a later one kills
/// the whole tree (the stronger verdict wins).
fn claim(map: &mut HashMap<FileId, Verdict>, id: FileId, v: Verdict) {
    let e = map.entry(id).or_insert(v);
    if v.flags & abi::VF_TREE != 0 && e.flags & abi::VF_TREE == 0 {
        *e = v;
    }
}

fn executables(extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = extra.to_vec();
    for d in crate::exe_is::path_dirs() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        out.extend(rd.flatten().map(|e| e.path()));
    }
    out.retain(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0));
    out
}

/// The executables (by identity) and comms rule `k` excepts.
fn exemptions(k: &KillRule<'_>, execs: &mut Option<Vec<PathBuf>>, out: &mut HashSet<Exempt>) {
    let c = &k.conds;
    for comm in c.exempt_comms.iter().filter(|c| c.len() < abi::COMM_LEN) {
        out.insert(Exempt::Comm { comm: comm.clone(), rule: k.index });
    }
    if c.exempt_exe_names.is_empty() {
        return;
    }
    let names = crate::rules::StrMatch::new(c.exempt_exe_names.iter().map(String::as_str));
    for p in execs.get_or_insert_with(|| executables(&[])).iter() {
        // the agent's exe_name is the resolved executable's name
        let exe = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
        let named = exe.file_name().and_then(|n| n.to_str()).is_some_and(|n| names.is_match(n));
        if let Some(id) = identity(&exe).filter(|_| named) {
            out.insert(Exempt::Exe { id, rule: k.index });
        }
    }
}

/// The parents' executables (by identity) rule `k` excepts: the files
/// its `parent_exe` globs name, where the name is the file's resolved
/// path (the agent matches the parent's resolved executable).
fn parent_exemptions(k: &KillRule<'_>, homes: &[PathBuf], budget: &mut usize, out: &mut HashSet<Exempt>) {
    for g in &k.conds.exempt_parent_exes {
        for f in walk::expand(g, homes, budget).files {
            if std::fs::canonicalize(&f).is_ok_and(|c| c == f) {
                if let Some(id) = identity(&f) {
                    out.insert(Exempt::Parent { id, rule: k.index });
                }
            }
        }
    }
}

/// IPv4 as `::ffff:a.b.c.d`, prefix + 96.
fn net_key(addr: IpAddr, prefix: u8) -> ([u8; 16], u8) {
    match addr {
        IpAddr::V4(a) => (a.to_ipv6_mapped().octets(), prefix + 96),
        IpAddr::V6(a) => (a.octets(), prefix),
    }
}

fn contains(net: &([u8; 16], u8), inner: &([u8; 16], u8)) -> bool {
    let (a, p) = (u128::from_be_bytes(net.0), net.1);
    let b = u128::from_be_bytes(inner.0);
    let mask = if p == 0 { 0 } else { u128::MAX << (128 - p as u32) };
    p <= inner.1 && a & mask == b & mask
}

/// Compiles `set`'s kill rules; `homes` are where `**/...` globs are
/// searched; `learned`: files the agent saw opened under a name a rule
/// names, which no scan found (rules/known.rs), claimed like found ones, so
/// the kernel and the alerts know the same identities.
pub fn compile(set: &RuleSet, homes: &[PathBuf], learned: &[PathBuf]) -> Tables {
    let mut t = Tables::default();
    let mut budget = SCAN_BUDGET;
    let mut execs: Option<Vec<PathBuf>> = None;
    let mut nets: BTreeMap<([u8; 16], u8), ()> = BTreeMap::new();
    let mut net_rules: Vec<(([u8; 16], u8), u16, u16, Verdict)> = Vec::new();
    let mut ndirs = 0;
    for k in set.kill_rules() {
        let v = Verdict::of(&k);
        exemptions(&k, &mut execs, &mut t.exempt);
        parent_exemptions(&k, homes, &mut budget, &mut t.exempt);
        if let Some(why) = k.conds.partial {
            t.notes.push(format!("rule `{}`: the kernel decides it in part; {why}", k.id));
        }
        match &k.plan {
            KernelPlan::Open { paths, new_files } => {
                match &k.conds.allow_names {
                    Some(allow) => {
                        let holds = |p: &str| matches(set, k.id, &open_probe(Path::new(p), k.conds.write));
                        t.notes.extend(t.shapes.add(k.id, paths, allow, v, &holds));
                    }
                    None => t.notes.push(format!("rule `{}`: its exceptions are not names; files outside the known homes are decided by the agent", k.id)),
                }
                for p in learned {
                    if let Some(id) = identity(p).filter(|_| matches(set, k.id, &open_probe(p, k.conds.write))) {
                        claim(&mut t.files, id, v);
                    }
                }
                for g in paths {
                    let f = walk::expand(g, homes, &mut budget);
                    if f.truncated {
                        t.notes.push(format!("rule `{}`: scan of `{g}` cut short after {SCAN_BUDGET} entries; files past it are decided by the agent", k.id));
                    }
                    for p in &f.files {
                        if let Some(id) = identity(p).filter(|_| matches(set, k.id, &open_probe(p, k.conds.write))) {
                            claim(&mut t.files, id, v);
                        }
                    }
                    if !new_files {
                        continue;
                    }
                    for (dir, last) in &f.dirs {
                        let Some(pat) = NamePattern::parse(last, abi::NAME_PART) else {
                            t.notes.push(format!("rule `{}`: new files named `{last}` are decided by the agent (the kernel tests `prefix*suffix` names of up to {} bytes)", k.id, abi::NAME_PART));
                            continue;
                        };
                        let Some(id) = identity(dir) else { continue };
                        let slots = t.dirs.entry(id).or_default();
                        if slots.iter().any(|(p, _)| *p == pat) {
                            continue;
                        }
                        if slots.len() >= abi::DIR_SLOTS as usize || ndirs >= MAX_DIRS {
                            t.notes.push(format!("rule `{}`: too many protected names in {}; new files there are decided by the agent", k.id, dir.display()));
                            continue;
                        }
                        slots.push((pat, v));
                        ndirs += 1;
                    }
                }
            }
            KernelPlan::Exec { paths } => {
                let mut extra = Vec::new();
                for g in paths {
                    extra.extend(walk::expand(g, homes, &mut budget).files);
                }
                let all = execs.get_or_insert_with(|| executables(&[]));
                for p in all.iter().chain(&extra) {
                    let exe = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                    if matches(set, k.id, &exec_probe(&exe)) {
                        if let Some(id) = identity(&exe) {
                            claim(&mut t.exec, id, v);
                        }
                    }
                }
            }
            KernelPlan::Connect { nets: cidrs, ports } => {
                let any: [(IpAddr, u8); 2] = [(IpAddr::V4(0.into()), 0), (IpAddr::V6(0.into()), 0)];
                let cidrs: Vec<(IpAddr, u8)> = if cidrs.is_empty() { any.to_vec() } else { cidrs.clone() };
                let ports = if ports.is_empty() { vec![(0, u16::MAX)] } else { ports.clone() };
                for (a, p) in cidrs {
                    let key = net_key(a, p);
                    nets.insert(key, ());
                    for &(lo, hi) in &ports {
                        net_rules.push((key, lo, hi, v));
                    }
                }
            }
            KernelPlan::Agent { why } => {
                t.notes.push(format!("rule `{}` is decided by the agent: {why}", k.id));
            }
        }
    }
    // The trie answers with the longest prefix only: give each network
    // the port rules of every network that contains it.
    for key in nets.keys() {
        let mut ports: Vec<(u16, u16, Verdict)> = net_rules
            .iter()
            .filter(|(n, ..)| contains(n, key))
            .map(|&(_, lo, hi, v)| (lo, hi, v))
            .collect();
        if ports.len() > abi::NET_PORTS as usize {
            t.notes.push(format!("more than {} port rules apply to one network; the rest are decided by the agent", abi::NET_PORTS));
            ports.truncate(abi::NET_PORTS as usize);
        }
        t.nets.push(NetEntry { addr: key.0, prefix: key.1, ports });
    }
    t.notes.sort();
    t.notes.dedup();
    t
}
