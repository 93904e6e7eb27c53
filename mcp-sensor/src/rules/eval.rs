//! Evaluation: runs one event through the compiled rules of its kind.
//!
//! Hot path (≥1M events/s target): rules are indexed by event kind, values
//! an event is tested on (glob candidates, parsed address, joined argv) are
//! computed at most once per event and only if some rule asks, and the
//! matches borrow from the rule set, so a benign event allocates nothing.
//!
//! A rename, link or symlink onto a name, or a truncate of a file, is
//! judged by the `kind: open` rules that require `write: true`, as an
//! open of that name for writing (rules/README.md, "Writes without an
//! open"): the persistence and tampering rules fire on them unchanged.

use std::cell::OnceCell;
use std::net::IpAddr;

use globset::Candidate;
use serde::Serialize;
use smallvec::SmallVec;

use super::compile::{CompiledRule, Cond, Leaf};
use super::fields::{Action, EventKind, Field, KillScope, Severity, FILE_FLAGS, OPEN_FLAGS, PROC_OWNERS};
use super::identity::FileIdentities;
use super::matchers::{parse_ip, PathMatch};
use crate::event::{Body, Direction, Event};

/// What the event alone does not say; the agent fills it per event.
#[derive(Debug, Clone, Copy, Default)]
pub struct EvalContext<'a> {
    /// The server's session has read its first request. Rules with
    /// `after_first_request: true` stay quiet until then, which silences
    /// launchers (`npx` runs servers through `sh -c`).
    pub first_request_seen: bool,
    /// The server's name; when `None`, `event.server.name` is used.
    pub server_name: Option<&'a str>,
    /// The server's command line, space-joined (`server_cmdline:`).
    pub server_cmdline: Option<&'a str>,
    /// Rpc events: the full text of the message, for `text_regex:`; when
    /// `None`, the event's `result` summary is searched instead.
    pub message_text: Option<&'a str>,
    /// Rpc events: tools redefined since this server at this version was
    /// last seen (rug pulls), from [`super::DescriptionStore::observe_tools_list`].
    pub changed_tools: &'a [String],
    /// Rpc events: tools redefined by a new server version (upgrades).
    pub upgraded_tools: &'a [String],
    /// Identities of the paths named in `file:` fields, resolved by the agent.
    pub identities: Option<&'a FileIdentities>,
    /// Whether a pid belongs to the event's server tree (`proc_owner:`),
    /// from the agent's process table. `None`: only the event's own
    /// process, its server's root and (below the root) its parent are
    /// known to be in the tree.
    pub tree: Option<ProcTree<'a>>,
}

/// The agent's answer to "is this pid in the event's server tree?".
#[derive(Clone, Copy)]
pub struct ProcTree<'a>(pub &'a dyn Fn(u32) -> bool);

impl std::fmt::Debug for ProcTree<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProcTree(..)")
    }
}

/// The pid a `/proc/<pid>/...` path names; `Some(None)` for `/proc/self`
/// and `/proc/thread-self` (the opener, by name). `None`: not a path
/// inside a process's `/proc` directory.
pub(crate) fn proc_pid(path: &str) -> Option<Option<u32>> {
    let rest = path.strip_prefix("/proc/")?;
    let (first, _) = rest.split_once('/')?;
    match first {
        "self" | "thread-self" => Some(None),
        n if n.bytes().all(|b| b.is_ascii_digit()) => n.parse().ok().map(Some),
        _ => None,
    }
}

/// A rule as loaded: what a match reports.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub severity: Severity,
    pub tags: Vec<String>,
    pub kinds: Vec<EventKind>,
    pub action: Action,
    pub kill_scope: KillScope,
    pub enabled: bool,
    /// Rules whose alert on the same event this rule's alert stands for
    /// (`supersedes:`, rules/README.md).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub supersedes: Vec<String>,
}

/// One rule that matched an event. Borrows from the [`RuleSet`].
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Match<'r> {
    pub id: &'r str,
    pub severity: Severity,
    pub action: Action,
    pub kill_scope: KillScope,
    pub description: &'r str,
    pub tags: &'r [String],
}

/// Matches of one event; two inline before it allocates.
pub type Matches<'r> = SmallVec<[Match<'r>; 2]>;

/// Compiled rules, ready to evaluate. Build with [`super::check`] or
/// [`super::load`]. `Send + Sync`: share one behind an `Arc`.
pub struct RuleSet {
    rules: Vec<CompiledRule>,
    by_kind: [Vec<Indexed>; EventKind::ALL.len()],
    /// Per kind, the union of the path globs that gated rules require:
    /// most opens match none, and one test then skips all of those rules.
    gates: [Option<PathMatch>; EventKind::ALL.len()],
    identity_paths: Vec<String>,
}

// The agent shares one set between threads; keep it that way.
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<RuleSet>();
};

#[derive(Clone, Copy)]
struct Indexed {
    rule: u32,
    /// The rule cannot match unless the kind's gate does.
    gated: bool,
    /// The rule requires `write: true`: it also judges renames, links,
    /// symlinks and truncates.
    writes: bool,
}

/// The condition cannot match without `write: true` (a top-level conjunct,
/// macros included).
fn requires_write(c: &Cond) -> bool {
    match c {
        Cond::Leaf(Leaf::Bool(Field::Write, true)) => true,
        Cond::All(cs) => cs.iter().any(requires_write),
        _ => false,
    }
}

/// The path globs a condition cannot match without (a top-level conjunct).
fn required_paths(c: &Cond) -> Option<&PathMatch> {
    match c {
        Cond::Leaf(Leaf::Path(Field::Path | Field::UnixPath, m)) => Some(m),
        Cond::All(cs) => cs.iter().find_map(required_paths),
        _ => None,
    }
}

impl RuleSet {
    pub(crate) fn new(rules: Vec<CompiledRule>, identity_paths: Vec<String>) -> RuleSet {
        let mut by_kind: [Vec<Indexed>; EventKind::ALL.len()] = Default::default();
        let mut gate_globs: [Vec<globset::Glob>; EventKind::ALL.len()] = Default::default();
        for (i, r) in rules.iter().enumerate().filter(|(_, r)| r.info.enabled) {
            let req = required_paths(&r.cond);
            for k in EventKind::ALL {
                if r.kinds & k.bit() != 0 {
                    by_kind[k as usize].push(Indexed {
                        rule: i as u32,
                        gated: req.is_some(),
                        writes: requires_write(&r.cond),
                    });
                    gate_globs[k as usize].extend(req.iter().flat_map(|m| m.globs.iter().cloned()));
                }
            }
        }
        let gates = gate_globs.map(|g| (!g.is_empty()).then(|| PathMatch::from_globs(g)));
        RuleSet {
            rules,
            by_kind,
            gates,
            identity_paths,
        }
    }

    /// Every rule, enabled or not, in definition order.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|r| &r.info)
    }

    /// A rule by id, enabled or not.
    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules().find(|r| r.id == id)
    }

    /// Whether an open of `path` could match a gated open rule: the path is
    /// one that some open rule names (its `path:` globs). The agent learns
    /// the identities of such files ([`super::KnownFiles`]).
    pub fn names_open_path(&self, path: &str) -> bool {
        self.gates[EventKind::Open as usize].as_ref().is_some_and(|g| g.is_match(&Candidate::new(path)))
    }

    /// The path globs open rules require (the open gate's globs), as
    /// written: the agent scans the homes for the files they name.
    pub fn open_path_globs(&self) -> Vec<&str> {
        self.gates[EventKind::Open as usize].as_ref().map_or_else(Vec::new, |g| g.globs.iter().map(|g| g.glob()).collect())
    }

    /// Paths named in `file:` fields: the agent stats them and passes the
    /// result as [`FileIdentities`] in [`EvalContext::identities`].
    pub fn identity_paths(&self) -> &[String] {
        &self.identity_paths
    }

    /// The programs `exe_is:` fields of enabled rules name (literal names,
    /// not globs), sorted: the agent finds their files (`exe_is.rs`).
    pub fn exe_is_names(&self) -> Vec<String> {
        fn walk(c: &Cond, out: &mut Vec<String>) {
            match c {
                Cond::All(cs) | Cond::Any(cs) => cs.iter().for_each(|c| walk(c, out)),
                Cond::Not(c) => walk(c, out),
                Cond::Leaf(Leaf::Str(Field::ExeIs, m)) => {
                    out.extend(m.values().filter(|v| !v.contains(['*', '?', '[', '{'])).map(str::to_owned))
                }
                Cond::Leaf(_) => {}
            }
        }
        let mut out = Vec::new();
        for r in self.rules.iter().filter(|r| r.info.enabled) {
            walk(&r.cond, &mut out);
        }
        out.sort();
        out.dedup();
        out
    }

    /// One alert per finding: each match of one event that another match
    /// of it `supersedes` is folded into that one (following chains: the
    /// compile refuses cycles), which is returned with the ids it stands
    /// for (`also_matched`). A superseded match that enforces where the
    /// other does not (a kill or deny rule folded into an alert rule, or a
    /// different action) is kept: folding never changes what is stopped.
    pub fn fold_superseded<'r>(&'r self, matches: &[Match<'r>]) -> Vec<(Match<'r>, Vec<&'r str>)> {
        let supersedes = |w: &Match<'r>| self.rule(w.id).map_or(&[][..], |r| r.supersedes.as_slice());
        let into = |m: &Match<'r>| {
            matches.iter().find(|w| {
                w.id != m.id && supersedes(w).iter().any(|s| s == m.id) && (m.action == Action::Alert || m.action == w.action)
            })
        };
        let root = |m: &Match<'r>| {
            let mut cur = *m;
            // bounded: a chain visits each match once (no cycles)
            for _ in 0..matches.len() {
                match into(&cur) {
                    Some(w) => cur = *w,
                    None => break,
                }
            }
            cur.id
        };
        let roots: Vec<&str> = matches.iter().map(root).collect();
        let mut out: Vec<(Match<'r>, Vec<&'r str>)> = Vec::new();
        for (m, r) in matches.iter().zip(&roots) {
            if *r == m.id {
                let also = matches.iter().zip(&roots).filter(|(o, ro)| **ro == m.id && o.id != m.id).map(|(o, _)| o.id).collect();
                out.push((*m, also));
            }
        }
        out
    }

    /// The rules that match `ev`.
    pub fn evaluate<'r>(&'r self, ev: &Event, ctx: &EvalContext<'_>) -> Matches<'r> {
        let mut out = Matches::new();
        let Some(kind) = kind_of(&ev.body) else {
            return out;
        };
        let view = View::new(ev, ctx);
        let gate = OnceCell::new();
        let change = view.change.is_some();
        for &Indexed { rule, gated, writes } in &self.by_kind[kind as usize] {
            let r = &self.rules[rule as usize];
            if (r.after_first_request && !ctx.first_request_seen) || (change && !writes) {
                continue;
            }
            if gated
                && !*gate.get_or_init(|| {
                    let g = self.gates[kind as usize].as_ref();
                    view.path_cand()
                        .is_some_and(|c| g.is_some_and(|g| g.is_match(c)))
                })
            {
                continue;
            }
            if view.cond(&r.cond) && !r.except.iter().any(|c| view.cond(c)) {
                out.push(Match {
                    id: &r.info.id,
                    severity: r.info.severity,
                    action: r.info.action,
                    kill_scope: r.info.kill_scope,
                    description: &r.info.description,
                    tags: &r.info.tags,
                });
            }
        }
        out
    }
}

fn kind_of(b: &Body) -> Option<EventKind> {
    Some(match b {
        Body::Exec { .. } => EventKind::Exec,
        // judged as writes of their path (see the module's doc)
        Body::Open { .. } | Body::Rename(_) | Body::Link(_) | Body::Symlink(_) | Body::Truncate(_) => EventKind::Open,
        Body::Connect { .. } => EventKind::Connect,
        Body::Rpc(_) => EventKind::Rpc,
        Body::Exit { .. } => EventKind::Exit,
        Body::IoUringSetup { .. } => EventKind::IoUringSetup,
        Body::Ptrace { .. } => EventKind::Ptrace,
        Body::Fork { .. } => EventKind::Fork,
        Body::Malformed { .. } => EventKind::Malformed,
        Body::Drops(_)
        | Body::Gap { .. }
        | Body::Alert(_)
        | Body::AlertSummary(_)
        | Body::Throttle(_)
        | Body::ServerFound { .. }
        | Body::SensorStart { .. }
        | Body::WatchEnd { .. } => return None,
    })
}

/// One event, with what rules test on it computed lazily, once.
struct View<'e> {
    ev: &'e Event,
    /// A rename, link, symlink or truncate, judged as a write of its path.
    change: Option<&'e crate::event::Change>,
    ctx: &'e EvalContext<'e>,
    exe: OnceCell<Option<Candidate<'e>>>,
    path: OnceCell<Option<Candidate<'e>>>,
    cmdline: OnceCell<String>,
    ip: OnceCell<Option<IpAddr>>,
    ident: OnceCell<&'e [u32]>,
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn names_mask(table: &[&str], names: &[&'static str], mask: u32) -> bool {
    names.iter().any(|n| {
        table
            .iter()
            .position(|t| t == n)
            .is_some_and(|i| mask & (1 << i) != 0)
    })
}

impl<'e> View<'e> {
    fn new(ev: &'e Event, ctx: &'e EvalContext<'e>) -> Self {
        View {
            ev,
            change: ev.body.change(),
            ctx,
            exe: OnceCell::new(),
            path: OnceCell::new(),
            cmdline: OnceCell::new(),
            ip: OnceCell::new(),
            ident: OnceCell::new(),
        }
    }

    fn cond(&self, c: &Cond) -> bool {
        match c {
            Cond::All(cs) => cs.iter().all(|c| self.cond(c)),
            Cond::Any(cs) => cs.iter().any(|c| self.cond(c)),
            Cond::Not(c) => !self.cond(c),
            Cond::Leaf(l) => self.leaf(l),
        }
    }

    fn server_name(&self) -> Option<&'e str> {
        self.ctx
            .server_name
            .or(self.ev.server.as_ref().map(|s| s.name.as_str()))
    }

    /// The tool (or method) in flight: every candidate must pass, so an
    /// allowlist never excuses an event that an unlisted call may have caused.
    fn in_flight(&self, tool: bool, f: impl Fn(&str) -> bool) -> bool {
        if let Body::Rpc(r) = &self.ev.body {
            return if tool {
                r.tool.as_deref()
            } else {
                r.method.as_deref()
            }
            .is_some_and(f);
        }
        let Some(tc) = &self.ev.tool_call else {
            return false;
        };
        let one = if tool {
            tc.name.as_deref()
        } else {
            tc.method.as_deref()
        };
        match one {
            Some(n) => f(n),
            None => {
                !tc.in_flight.is_empty()
                    && tc.in_flight.iter().all(|c| {
                        if tool {
                            c.tool.as_deref().is_some_and(&f)
                        } else {
                            f(&c.method)
                        }
                    })
            }
        }
    }

    fn exe_cand(&self) -> Option<&Candidate<'e>> {
        self.exe
            .get_or_init(|| self.ev.exe.as_deref().map(Candidate::new))
            .as_ref()
    }

    fn path_cand(&self) -> Option<&Candidate<'e>> {
        self.path
            .get_or_init(|| match &self.ev.body {
                Body::Open { path, .. } => Some(Candidate::new(path.as_str())),
                Body::Connect { path: Some(p), .. } => Some(Candidate::new(p.as_str())),
                b => b.change().map(|c| Candidate::new(c.path.as_str())),
            })
            .as_ref()
    }

    fn identity(&self) -> &'e [u32] {
        self.ident.get_or_init(|| {
            let (dev, ino) = match &self.ev.body {
                Body::Open { dev, ino, .. } | Body::Exec { dev, ino, .. } => (*dev, *ino),
                b => match b.change() {
                    Some(c) if c.ino != 0 => (c.dev, c.ino),
                    _ => return &[],
                },
            };
            // events carry stat(2)'s encoding of dev (decode), identities the
            // kernel's (`FileId`)
            let kdev = crate::abi::user_to_kdev(u64::from(dev));
            self.ctx.identities.map_or(&[][..], |t| t.lookup(kdev, ino))
        })
    }

    /// Whose `/proc` entry `path` is (`proc_owner:`); `None` outside
    /// `/proc/<pid>/`. The kernel reports `/proc/self/...` as the opener's
    /// pid; a thread id of a tree process is `tree` through the agent's
    /// answer (`ProcTree`), which looks thread ids up.
    fn proc_owner(&self, path: &str) -> Option<&'static str> {
        let Some(pid) = proc_pid(path)? else {
            return Some("self");
        };
        Some(self.owner(pid))
    }

    /// Whose process `pid` is, from the event's process: `self`, `tree`
    /// (its server's tree) or `foreign` (`proc_owner:`, `target_owner:`).
    fn owner(&self, pid: u32) -> &'static str {
        let ev = self.ev;
        if pid == ev.pid {
            return "self";
        }
        let root = ev.server.as_ref().map(|s| s.pid);
        let known = root == Some(pid)
            || (pid == ev.ppid && root.is_some_and(|r| r != ev.pid))
            || self.ctx.tree.is_some_and(|t| (t.0)(pid));
        if known {
            "tree"
        } else {
            "foreign"
        }
    }

    fn leaf(&self, l: &Leaf) -> bool {
        match self.change {
            Some(c) => self.change_leaf(c, l),
            None => self.event_leaf(l),
        }
    }

    /// A leaf on a change: the fields of an open of its path for writing.
    fn change_leaf(&self, c: &crate::event::Change, l: &Leaf) -> bool {
        match l {
            Leaf::Str(Field::Basename, m) => m.is_match(basename(&c.path)),
            Leaf::Path(Field::Path, m) => self.path_cand().is_some_and(|p| m.is_match(p)),
            Leaf::Enum(Field::FileFlags, mask) => names_mask(FILE_FLAGS, &c.file_flags, *mask),
            Leaf::Enum(Field::ProcOwner, mask) => self
                .proc_owner(&c.path)
                .is_some_and(|o| names_mask(PROC_OWNERS, &[o], *mask)),
            Leaf::Enum(Field::Outcome, mask) => mask & (if c.ret >= 0 { 1 } else { 2 }) != 0,
            Leaf::Bool(Field::Write, want) => *want,
            // open flags: a change has none
            Leaf::Enum(Field::Flags, _) => false,
            _ => self.event_leaf(l),
        }
    }

    fn event_leaf(&self, l: &Leaf) -> bool {
        let ev = self.ev;
        match l {
            Leaf::Str(f, m) => match (f, &ev.body) {
                (Field::Server, _) => self.server_name().is_some_and(|s| m.is_match(s)),
                (Field::ServerCmdline, _) => self.ctx.server_cmdline.is_some_and(|s| m.is_match(s)),
                (Field::Tool, _) => self.in_flight(true, |t| m.is_match(t)),
                (Field::Method, _) => self.in_flight(false, |t| m.is_match(t)),
                (Field::ExeName, _) => ev.exe.as_deref().is_some_and(|e| m.is_match(basename(e))),
                (Field::Comm, _) => m.is_match(&ev.comm),
                (Field::Syscall, Body::Ptrace { syscall, .. }) => m.is_match(syscall),
                (Field::ExeIs, Body::Exec { exe_is: Some(x), .. }) => m.is_match(&x.name),
                (Field::ArgvContains, Body::Exec { argv, .. }) => {
                    argv.iter().any(|a| m.is_match(a))
                }
                (Field::Basename, Body::Open { path, .. }) => m.is_match(basename(path)),
                (Field::Family, Body::Connect { family, .. }) => m.is_match(family),
                _ => false,
            },
            Leaf::Path(f, m) => match (f, &ev.body) {
                (Field::Exe, _) => self.exe_cand().is_some_and(|c| m.is_match(c)),
                (
                    Field::Script,
                    Body::Exec {
                        script: Some(s), ..
                    },
                ) => m.is_match(&Candidate::new(s.as_str())),
                (Field::ParentExe, Body::Exec { parent_exe: Some(p), .. }) => m.is_match(&Candidate::new(p.as_str())),
                (Field::Filename, Body::Exec { filename, .. }) => {
                    m.is_match(&Candidate::new(filename.as_str()))
                }
                (Field::Path, Body::Open { .. }) | (Field::UnixPath, Body::Connect { .. }) => {
                    self.path_cand().is_some_and(|c| m.is_match(c))
                }
                _ => false,
            },
            Leaf::Regex(f, re) => match (f, &ev.body) {
                (Field::ArgvRegex, Body::Exec { argv, .. }) => {
                    re.is_match(self.cmdline.get_or_init(|| argv.join(" ")))
                }
                (Field::TextRegex, Body::Rpc(r)) => self
                    .ctx
                    .message_text
                    .or(r.result.as_deref())
                    .is_some_and(|t| re.is_match(t)),
                _ => false,
            },
            Leaf::Enum(f, mask) => match (f, &ev.body) {
                (
                    Field::FileFlags,
                    Body::Exec { file_flags, .. } | Body::Open { file_flags, .. },
                ) => names_mask(FILE_FLAGS, file_flags, *mask),
                (Field::Flags, Body::Open { flags, .. }) => names_mask(OPEN_FLAGS, flags, *mask),
                (Field::ShellMode, Body::Exec { shell_mode: Some(m), .. }) => names_mask(crate::shell_run::SHELL_MODES, &[m], *mask),
                (Field::ScriptWritableBy, Body::Exec { script_writable_by: Some(w), .. }) => {
                    names_mask(crate::shell_run::WRITABLE_BY, &[w], *mask)
                }
                (Field::ProcOwner, Body::Open { path, .. }) => self
                    .proc_owner(path)
                    .is_some_and(|o| names_mask(PROC_OWNERS, &[o], *mask)),
                (Field::TargetOwner, Body::Ptrace { target_pid, .. }) => names_mask(PROC_OWNERS, &[self.owner(*target_pid)], *mask),
                (Field::Outcome, Body::Open { ret, .. } | Body::Connect { ret, .. } | Body::Ptrace { ret, .. }) => {
                    // -EINPROGRESS is a non-blocking connect under way, not a failure.
                    let ok = *ret >= 0
                        || *ret == -libc::EINPROGRESS && matches!(ev.body, Body::Connect { .. });
                    mask & (if ok { 1 } else { 2 }) != 0
                }
                (
                    Field::Direction,
                    Body::Rpc(crate::event::Rpc { direction, .. })
                    | Body::Malformed { direction, .. },
                ) => {
                    mask & (if *direction == Direction::ClientToServer {
                        1
                    } else {
                        2
                    }) != 0
                }
                (Field::Message, Body::Rpc(r)) => names_mask(
                    &["request", "response", "error", "notification"],
                    &[r.message],
                    *mask,
                ),
                _ => false,
            },
            Leaf::Bool(f, want) => match (f, &ev.body) {
                (Field::Write, Body::Open { flags, .. }) => {
                    flags
                        .iter()
                        .any(|f| matches!(*f, "O_WRONLY" | "O_RDWR" | "O_CREAT" | "O_TRUNC"))
                        == *want
                }
                (Field::IsError, Body::Rpc(r)) => {
                    r.is_error.unwrap_or(r.message == "error") == *want
                }
                (Field::DescriptionChanged, Body::Rpc(_)) => {
                    self.ctx.changed_tools.is_empty() != *want
                }
                (Field::DefinitionsUpgraded, Body::Rpc(_)) => {
                    self.ctx.upgraded_tools.is_empty() != *want
                }
                _ => false,
            },
            Leaf::Uid(u) => u.contains(&ev.uid),
            Leaf::Addr(s) => match &ev.body {
                Body::Connect { addr: Some(a), .. } => self
                    .ip
                    .get_or_init(|| parse_ip(a))
                    .is_some_and(|ip| s.contains(ip)),
                _ => false,
            },
            Leaf::Port(s) => {
                matches!(&ev.body, Body::Connect { port: Some(p), .. } if s.contains(*p))
            }
            Leaf::File(paths, ids) => {
                let by_path = match &ev.body {
                    Body::Open { .. } => self.path_cand().is_some_and(|c| paths.is_match(c)),
                    _ if self.change.is_some() => self.path_cand().is_some_and(|c| paths.is_match(c)),
                    Body::Exec { .. } => self.exe_cand().is_some_and(|c| paths.is_match(c)),
                    _ => false,
                };
                by_path || {
                    let found = self.identity();
                    !found.is_empty() && ids.iter().any(|i| found.contains(i))
                }
            }
        }
    }
}

// Read access for `kernel` (what enforcement can compile into kernel maps).
impl RuleSet {
    pub(crate) fn compiled(&self) -> &[CompiledRule] {
        &self.rules
    }
}
