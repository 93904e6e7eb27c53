//! Detection: the rule stage of the pipeline. Owns the active rule set,
//! the state rules need beyond one event (identities of the files rules
//! name, tool definitions remembered across sessions), and turning matches
//! into `alert` events with the process ancestry up to the MCP client.
//!
//! Known files (rules/known.rs): an open of a known file's inode under
//! another name gets the known name as `canonical_path` and is judged
//! under both names (`know`, `check_record`).
//!
//! Pure apart from what it does on purpose: it stats the paths rules name
//! (`refresh_identities`), scans the homes for known files (known_scan.rs)
//! and loads/saves the tool-definition store.

use crate::event::{Alert, Body, Event, Hop};
use crate::procs::ProcTable;
use crate::rules::{Action, ChangeKind, DescriptionStore, EvalContext, FileId, FileIdentities, KnownFiles, KnownSource, Match, ProcTree, RuleSet, ServerId, ToolChange};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// The tool-definition store's file name under `--state-dir`.
pub const TOOL_STORE: &str = "tool-definitions.json";

/// Hops of ancestry an alert reports at most.
const MAX_ANCESTRY: usize = 16;

/// What the session says about an event that the event does not.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    pub first_request_seen: bool,
    pub server_cmdline: Option<&'a str>,
    /// `serverInfo.version` from the handshake, when it was seen.
    pub server_version: Option<&'a str>,
}

pub struct Detector {
    rules: RuleSet,
    identities: FileIdentities,
    descriptions: DescriptionStore,
    /// Where tool definitions are kept between runs; `None`: memory only.
    store: Option<PathBuf>,
    /// Also write a one-line summary of each alert to stderr (a terminal);
    /// the pipeline does, for the first of each finding (aggregate.rs).
    pub summary: bool,
    pub alerts: u64,
    store_errors: u64,
    /// This event's redefined tools: all of them, the rug pulls' names,
    /// the upgrades' names.
    tool_changes: Vec<ToolChange>,
    changed: Vec<String>,
    upgraded: Vec<String>,
    /// `--enforce`: kill rules act (see crate::enforce); `None`: they
    /// report `would_kill`.
    pub enforcer: Option<crate::enforce::Enforcer>,
    refreshes: u64,
    /// Files open rules name, by identity (rules/known.rs).
    known: KnownFiles,
    /// Watched servers' `HOME`s beyond the users' homes, scanned too.
    extra_homes: Vec<PathBuf>,
    /// Server roots whose `HOME` was looked at (cleared when large).
    homes_checked: std::collections::HashSet<u32>,
    /// An identity was learned from an open: the kernel's set follows at
    /// the next refresh.
    kernel_stale: bool,
    /// The programs rules name in `exe_is:`, found on this system; the
    /// pipeline classifies each exec with it before the event is written.
    pub exe_is: crate::exe_is::Classifier,
}

/// Server roots remembered as checked for their `HOME`, at most.
const MAX_HOMES_CHECKED: usize = 4096;

impl Detector {
    /// `store`: the tool-definition file (created when first needed). A
    /// store that cannot be read is reported and replaced by an empty one:
    /// changes are then detected from this run on.
    pub fn new(rules: RuleSet, store: Option<PathBuf>) -> Self {
        let descriptions = match store.as_deref().map(std::fs::read_to_string) {
            Some(Ok(text)) => DescriptionStore::from_json(&text).unwrap_or_else(|e| {
                crate::say!(
                    "mcp-sensor: ignoring the tool-definition store {}: {e} (tool-description changes are detected from now on; delete the file to silence this)",
                    store.as_deref().unwrap().display()
                );
                DescriptionStore::new()
            }),
            _ => DescriptionStore::new(),
        };
        let exe_is = crate::exe_is::Classifier::new(&rules.exe_is_names());
        let mut d = Detector {
            exe_is,
            rules,
            identities: FileIdentities::default(),
            descriptions,
            store,
            summary: false,
            alerts: 0,
            store_errors: 0,
            tool_changes: Vec::new(),
            changed: Vec::new(),
            upgraded: Vec::new(),
            enforcer: None,
            refreshes: 0,
            known: KnownFiles::default(),
            extra_homes: Vec::new(),
            homes_checked: Default::default(),
            kernel_stale: false,
        };
        d.refresh_identities();
        d.scan_known();
        d
    }

    /// Switches enforcement on: the active rules' kernel part goes into the
    /// sensor's deny maps now (before any watched process runs), and the
    /// agent kills on the rest.
    pub fn enable_enforcement(&mut self, sensor: &mut crate::loader::Sensor) -> anyhow::Result<()> {
        use anyhow::Context;
        self.enforcer = Some(crate::enforce::Enforcer::new(sensor).context("switching enforcement on")?);
        self.install_enforcement();
        // which rules will stop what: on stderr now, in `sensor_start` next
        let p = crate::enforce::profile(&self.rules, Some(sensor.plan.lsm()));
        crate::say!("mcp-sensor: {}", crate::enforce::startup_line(&p));
        sensor.plan.enforced = Some(p);
        Ok(())
    }

    /// The rules of `--rules` (over the defaults) with the tool store in
    /// `--state-dir`, and the files to watch for reloads.
    pub fn from_args(args: &crate::cli::RulesArgs) -> anyhow::Result<(Detector, crate::rulefiles::RuleFiles)> {
        use anyhow::Context;
        let mut files = crate::rulefiles::RuleFiles::new(args.rules.clone());
        let rules = files
            .load()
            .map_err(|e| anyhow::anyhow!("{e}\nhint: `mcp-sensor rules check PATH...` validates rule files; see rules/README.md"))
            .context("loading rules")?;
        Ok((Detector::new(rules, Some(args.state_dir.join(TOOL_STORE))), files))
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Switches to a new rule set (a reload that passed validation).
    pub fn replace_rules(&mut self, rules: RuleSet) {
        self.rules = rules;
        let names = self.rules.exe_is_names();
        if names != self.exe_is.names() {
            self.exe_is = crate::exe_is::Classifier::new(&names);
        }
        self.refresh_identities();
        self.scan_known();
        self.install_enforcement(); // enforcement: the kernel maps follow the rules
    }

    /// Enforcement: compiles the kill rules into the kernel's deny maps
    /// again (rules changed, or files and homes appeared: a rescan).
    pub fn install_enforcement(&mut self) {
        self.kernel_stale = false;
        if let Some(e) = self.enforcer.as_mut() {
            // one identity set: what the agent learned, the kernel claims
            e.extra_homes = self.extra_homes.clone();
            e.learned_files = self.known.learned_from_opens().map(PathBuf::from).collect();
            crate::enforce::install_and_report(e, &self.rules);
        }
    }

    /// Scans the homes (the users' and the servers') for the files open
    /// rules name, replacing what the last scan found.
    fn scan_known(&mut self) {
        let homes = crate::known_scan::homes(&self.extra_homes);
        crate::known_scan::scan(&mut self.known, &self.rules, &homes);
    }

    /// Identities refused because the known-file table was full
    /// (`drops`: `known_files_full`).
    pub fn known_refused(&self) -> u64 {
        self.known.refused
    }

    /// Known files, before `ev` is written: an open of a path a rule names
    /// teaches its identity; an open of a known identity under another name
    /// gets the known name as `canonical_path`. The first event of watched
    /// tree `session` (its root's pid; 0: none) brings the root's `HOME`
    /// into the scan.
    pub fn know(&mut self, ev: &mut Event, session: u32) {
        if session != 0 {
            self.note_server_home(session);
        }
        // a failed open has no identity (0, 0); one BPF LSM refused has the file's
        let Body::Open { path, resolved: true, dev, ino, canonical_path, .. } = &mut ev.body else {
            return;
        };
        if *dev == 0 && *ino == 0 {
            return;
        }
        let id = FileId { dev: crate::abi::user_to_kdev(u64::from(*dev)), ino: *ino };
        if self.rules.names_open_path(path) {
            if self.known.learn(id, path, KnownSource::Open) {
                if let Some(e) = self.enforcer.as_mut() {
                    // the kernel claims this file now (one map entry); the
                    // full compile follows at the next refresh
                    e.claim_learned(&self.rules, std::path::Path::new(path.as_str()));
                    self.kernel_stale = true;
                }
            }
            return;
        }
        let Some(c) = self.known.canonical(id) else { return };
        if crate::known_scan::still_names(c, id) {
            *canonical_path = Some(c.to_string());
        } else {
            self.known.forget(id);
        }
    }

    fn note_server_home(&mut self, root: u32) {
        if self.homes_checked.len() >= MAX_HOMES_CHECKED {
            self.homes_checked.clear();
        }
        if !self.homes_checked.insert(root) {
            return;
        }
        let Some(home) = crate::known_scan::process_home(root) else { return };
        if self.extra_homes.contains(&home) || crate::enforce::walk::homes().contains(&home) {
            return;
        }
        self.extra_homes.push(home.clone());
        crate::known_scan::scan_more(&mut self.known, &self.rules, &[home]);
        if self.enforcer.is_some() {
            self.install_enforcement(); // before this event is judged
        }
    }

    /// Stats the files rules name by identity, so links and bind mounts of
    /// them match; files that appear later match once this runs again.
    pub fn refresh_identities(&mut self) {
        self.refreshes += 1;
        if self.refreshes % crate::enforce::RESCAN_EVERY_REFRESHES == 0 {
            self.scan_known();
            self.install_enforcement();
        } else if self.kernel_stale {
            self.install_enforcement();
        }
        self.identities = FileIdentities::resolve(self.rules.identity_paths(), |p| {
            std::fs::metadata(p).ok().map(|m| FileId::from_stat(m.dev(), m.ino()))
        });
    }

    /// Runs `ev` through the rules; each match becomes an `alert` event in `out`.
    pub fn check(&mut self, ev: &Event, facts: Facts<'_>, procs: &ProcTable, out: &mut Vec<Event>) {
        self.check_record(ev, facts, None, procs, out)
    }

    /// [`Detector::check`], knowing the kernel record behind `ev`: kill
    /// rules then act when enforcing (the kernel's decision in the record,
    /// else the agent's kill).
    pub fn check_record(
        &mut self,
        ev: &Event,
        facts: Facts<'_>,
        rec: Option<&crate::enforce::RecordFacts>,
        procs: &ProcTable,
        out: &mut Vec<Event>,
    ) {
        self.tool_changes.clear();
        self.changed.clear();
        self.upgraded.clear();
        let mut message_text = None;
        if let Body::Rpc(rpc) = &ev.body {
            message_text = rpc.text.as_deref();
            if let (Some(list), Some(server)) = (&rpc.tools_list, &ev.server) {
                let id = ServerId { name: &server.name, command: facts.server_cmdline.unwrap_or(""), version: facts.server_version };
                self.tool_changes = self.descriptions.observe_tools_list(id, list);
                for c in &self.tool_changes {
                    match c.kind {
                        ChangeKind::RugPull => self.changed.push(c.tool.clone()),
                        ChangeKind::Upgrade => self.upgraded.push(c.tool.clone()),
                    }
                }
                if self.descriptions.take_dirty() {
                    self.save_store();
                }
            }
        }
        let root = ev.server.as_ref().map(|s| s.pid);
        let in_tree = |pid: u32| root.is_some_and(|r| in_server_tree(procs, pid, r));
        let ctx = EvalContext {
            first_request_seen: facts.first_request_seen,
            server_name: None,
            server_cmdline: facts.server_cmdline,
            message_text,
            changed_tools: &self.changed,
            upgraded_tools: &self.upgraded,
            identities: Some(&self.identities),
            tree: Some(ProcTree(&in_tree)),
        };
        let first = out.len();
        let copy = self.enforcer.as_ref().and_then(|_| exec_copy(ev));
        let mut copy_kills: Vec<String> = Vec::new();
        let mut matches = self.rules.evaluate(ev, &ctx);
        if let Some(alias) = under_canonical_name(ev) {
            // the same file under the name rules know it by
            for m in self.rules.evaluate(&alias, &ctx) {
                if !matches.iter().any(|a| a.id == m.id) {
                    matches.push(m);
                }
            }
        }
        for (m, also) in self.rules.fold_superseded(&matches) {
            if copy.is_some() && m.action == crate::rules::Action::Kill {
                copy_kills.push(m.id.to_owned());
            }
            let mut alert = alert_event(ev, &m, procs);
            if let Body::Alert(a) = &mut alert.body {
                // every alert on the answer that redefined tools says which and how
                a.tool_changes = self.tool_changes.clone();
                a.also_matched = also.into_iter().map(str::to_owned).collect();
            }
            if let (Some(e), Some(rec)) = (self.enforcer.as_ref(), rec) {
                crate::enforce::act(e, rec, &m, &mut alert, procs);
            }
            self.alerts += 1;
            out.push(alert);
        }
        // a copy of a forbidden program: its next exec is the kernel's to stop
        if let (Some(e), Some(id)) = (self.enforcer.as_mut(), copy) {
            for r in &copy_kills {
                e.deny_exec_copy(&self.rules, r, id);
            }
        }
        // a kill the kernel made is reported even if no rule matched now
        // (the rules changed between the kernel's decision and this record)
        if let (Some(e), Some(rec)) = (self.enforcer.as_ref(), rec) {
            if let Some(a) = crate::enforce::unmatched_kernel_kill(e, &self.rules, rec, ev, &out[first..], procs) {
                self.alerts += 1;
                out.push(a);
            }
        }
    }

    fn save_store(&mut self) {
        let Some(path) = &self.store else { return };
        let tmp = path.with_extension("tmp");
        let res = (|| {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(self.descriptions.to_json().as_bytes())?;
            f.sync_data()?;
            std::fs::rename(&tmp, path)
        })();
        if let Err(e) = res {
            if self.store_errors == 0 {
                crate::say!(
                    "mcp-sensor: saving tool definitions to {}: {e} (rug pulls across runs go unnoticed; pick a writable --state-dir)",
                    path.display()
                );
            }
            self.store_errors += 1;
        }
    }
}

/// Whether `pid` (from a `/proc/<pid>/...` path) is in the server tree
/// rooted at `root`. A pid the table does not know may be a thread id:
/// `/proc/<tid>/environ` opens as well as the process's own; its thread
/// group is read from /proc (only for such paths, which rules rarely see).
/// The identity of an exec'd file known by its content (`exe_is.by ==
/// "content"`): a copy on disk, which kill rules may add to the kernel's
/// exec deny map. Not a memfd or deleted file (no later exec has it).
fn exec_copy(ev: &Event) -> Option<FileId> {
    match &ev.body {
        Body::Exec { exe_is: Some(x), dev, ino, file_flags, .. } if x.by == "content" && file_flags.is_empty() => {
            // events carry stat(2)'s encoding of dev, the kernel maps its own
            Some(FileId { dev: crate::abi::user_to_kdev(u64::from(*dev)), ino: *ino })
        }
        _ => None,
    }
}

fn in_server_tree(procs: &ProcTable, pid: u32, root: u32) -> bool {
    if procs.get(pid).is_some() {
        return procs.in_tree(pid, root);
    }
    let tgid = std::fs::read_to_string(format!("/proc/{pid}/status")).ok().and_then(|s| {
        s.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse::<u32>().ok())
    });
    tgid.is_some_and(|t| t != pid && procs.in_tree(t, root))
}

/// `ev`, an open with a `canonical_path`, as an open of that path.
fn under_canonical_name(ev: &Event) -> Option<Event> {
    let Body::Open { canonical_path: Some(c), .. } = &ev.body else { return None };
    let mut alias = ev.clone();
    if let Body::Open { path, .. } = &mut alias.body {
        *path = c.clone();
    }
    Some(alias)
}

/// What an alert says was done. Enforcement decisions replace `would_kill`.
fn action_name(m: &Match<'_>) -> &'static str {
    match m.action {
        Action::Alert => "alert",
        Action::Kill => "would_kill",
        Action::Deny => "would_deny",
    }
}

pub(crate) fn alert_event(ev: &Event, m: &Match<'_>, procs: &ProcTable) -> Event {
    let root = ev.server.as_ref().map(|s| s.pid);
    Event {
        body: Body::Alert(Box::new(Alert {
            alert_id: String::new(), // set by the aggregation (aggregate.rs)
            rule: m.id.to_string(),
            severity: m.severity.name(),
            action: action_name(m),
            description: m.description.to_string(),
            tags: m.tags.to_vec(),
            event: Box::new(ev.clone()),
            ancestry: ancestry(procs, ev.pid, root),
            decided_by: None,
            killed: Vec::new(),
            delay_ns: None,
            late: false,
            tool_changes: Vec::new(),
            also_matched: Vec::new(),
        })),
        tool_call: ev.tool_call.clone().or_else(|| message_call(ev)),
        ..ev.clone()
    }
}

/// An alert on a message names the request it is (or answers) as its call.
fn message_call(ev: &Event) -> Option<crate::event::ToolCallRef> {
    let Body::Rpc(r) = &ev.body else { return None };
    let id = r.id.clone()?;
    Some(crate::event::ToolCallRef {
        id: Some(id),
        name: r.tool.clone().or_else(|| r.method.clone()),
        method: r.method.clone(),
        arguments: r.arguments.clone(),
        in_flight: Vec::new(),
    })
}

/// The `mcp-sensor exec` process that is the server's parent, when it is
/// not this one (exec's watcher: exec_tree.rs); 0: this process.
static EXEC_FRONT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Names `pid` as the `mcp-sensor exec` process ancestry passes through.
pub fn set_exec_front(pid: u32) {
    EXEC_FRONT.store(pid, std::sync::atomic::Ordering::Relaxed);
}

/// The process and its parents up to the MCP client: past the server's
/// root, through `mcp-sensor exec` when it wraps the server and through
/// the launchers discovery watched on the way (a wrapper script rejected
/// for the banner it printed, whose child on the same pipes is the
/// server: its records carried a session), to the first process discovery
/// never watched: the client, or its parent when the client was itself a
/// candidate (its own stdio piped). Without a server, up to pid 1.
pub fn ancestry(procs: &ProcTable, pid: u32, server_root: Option<u32>) -> Vec<Hop> {
    let chain = procs.ancestry(pid, MAX_ANCESTRY);
    let me = match EXEC_FRONT.load(std::sync::atomic::Ordering::Relaxed) {
        0 => std::process::id(),
        front => front,
    };
    let mut out = Vec::with_capacity(chain.len());
    let mut past_root = false;
    for (pid, exe) in chain {
        if pid == 1 {
            break;
        }
        let launcher = procs.get(pid).is_some_and(|p| p.session != 0);
        out.push(Hop { pid, exe });
        if past_root && pid != me && !launcher {
            break; // the client
        }
        if Some(pid) == server_root {
            past_root = true;
        }
    }
    out
}

/// `mcp-sensor: ALERT high ssh-key-read: node[123] open /root/.ssh/id_rsa
/// (tools/call read_text_file id=3, server fs)`.
pub fn summary_line(alert: &Event) -> String {
    let Body::Alert(a) = &alert.body else { return String::new() };
    let ev = &a.event;
    let what = match &ev.body {
        Body::Exec { filename, .. } => format!("exec {filename}"),
        Body::Open { path, .. } => format!("open {path}"),
        Body::Connect { addr: Some(addr), port, .. } => format!("connect {addr}:{}", port.unwrap_or(0)),
        Body::Connect { path: Some(p), .. } => format!("connect {p}"),
        Body::Rpc(r) => format!("rpc {} {}", r.message, r.method.as_deref().unwrap_or("")),
        Body::Malformed { reason, .. } => format!("malformed: {reason}"),
        b => match b.change() {
            Some(c) => match &c.source {
                Some(s) => format!("{} {s} -> {}", c.op, c.path),
                None => format!("{} {}", c.op, c.path),
            },
            None => "event".to_string(),
        },
    };
    let call = match &ev.tool_call {
        Some(c) if c.id.is_some() => format!(
            " during {} {} id={}",
            c.method.as_deref().unwrap_or("?"),
            c.name.as_deref().unwrap_or("?"),
            c.id.as_ref().unwrap()
        ),
        Some(c) => format!(" during {} requests in flight", c.in_flight.len()),
        None => String::new(),
    };
    let server = ev.server.as_ref().map(|s| format!(" [server {}]", s.name)).unwrap_or_default();
    format!(
        "mcp-sensor: ALERT {} {} ({}): {}[{}] {what}{call}{server}",
        a.severity, a.rule, a.action, ev.comm, ev.pid
    )
}

#[cfg(test)]
#[path = "detect_tests.rs"]
mod tests;
