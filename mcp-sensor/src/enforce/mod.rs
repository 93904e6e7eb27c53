//! Enforcement (`--enforce`, rules with `action: kill`): owns turning kill
//! rules into kernel decisions, and the kills the agent makes itself.
//!
//! - `compile` + `walk`: the kill rules the kernel can decide (see
//!   `rules::KernelPlan`) become deny-map content; rescanned periodically
//!   so new files and new homes are covered without a restart.
//! - `kmaps`: those maps in the kernel, and the switch (off by default).
//! - `kill`: pidfd kills, process or whole server tree.
//!
//! The pipeline's API is [`Enforcer::decide`]: given an event the rules
//! matched with `action: kill`, it says what happened (`killed` /
//! `denied`, by the kernel or the agent, who died, how long after the
//! syscall). Without `--enforce` the pipeline never calls it: kill rules
//! then report `would_kill`.

mod alert;
mod compile;
mod kill;
mod kmaps;
mod profile;
pub mod shape;
mod uring;
pub mod walk;

pub use uring::is_killed_setup;
pub use alert::{act, install_and_report, unmatched_kernel_kill, RecordFacts, RESCAN_EVERY_REFRESHES};
pub use compile::{compile, Tables, Verdict, SCAN_BUDGET};
pub use profile::{profile, startup_line, EnforcedRule};
pub use kill::{kill as kill_target, kill_tree, proc_start_ns, same_start, Missed, Target};

use crate::abi::{self, ms_watch};
use crate::loader::{LoadError, Sensor};
use crate::procs::ProcTable;
use crate::rules::{KillScope, RuleSet};
use aya::maps::{HashMap as BpfHashMap, MapData};
use kmaps::KernelMaps;
use std::path::PathBuf;

/// The first cgroup2 mount, where the connect programs attach.
pub fn cgroup2_root() -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[2] == "cgroup2").then(|| f[1].replace("\\040", " "))
    })
}

/// [`Enforcer::kernel_counts`] by name, for the final `drops` line.
pub fn named_counts(counts: &[u64]) -> std::collections::BTreeMap<String, u64> {
    const NAMES: [(u32, &str); 11] = [
        (abi::ENF_KILL_OPEN, "kill_open"),
        (abi::ENF_KILL_EXEC, "kill_exec"),
        (abi::ENF_KILL_CONNECT, "kill_connect"),
        (abi::ENF_DENY_CONNECT, "deny_connect"),
        (abi::ENF_KILL_ROOT, "kill_server_root"),
        (abi::ENF_DENY_OPEN, "deny_open"),
        (abi::ENF_DENY_EXEC, "deny_exec"),
        (abi::ENF_KILL_URING, "kill_uring"),
        (abi::ENF_DENY_CHANGE, "deny_change"),
        (abi::ENF_KILL_CHANGE, "kill_change"),
        (abi::ENF_DENY_SEND, "deny_send"),
    ];
    NAMES.iter().map(|&(i, name)| (name.to_string(), counts.get(i as usize).copied().unwrap_or(0))).collect()
}

/// What the kernel did to the process of a record, from its header flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelDecision {
    /// Index of the deciding rule in the rule set.
    pub rule: Option<u32>,
    pub killed: bool,
    pub denied: bool,
    /// Kill scope tree: the rest of the server tree is the agent's to kill.
    pub tree: bool,
}

impl KernelDecision {
    pub fn from_flags(flags: u32) -> Option<KernelDecision> {
        if flags & (abi::F_KILLED | abi::F_DENIED) == 0 {
            return None;
        }
        let r = flags >> abi::F_RULE_SHIFT;
        Some(KernelDecision {
            rule: (r != 0).then(|| r - 1),
            killed: flags & abi::F_KILLED != 0,
            denied: flags & abi::F_DENIED != 0,
            tree: flags & abi::F_KILL_TREE != 0,
        })
    }
}

/// The process an event is about, and when it happened.
#[derive(Debug, Clone, Copy)]
pub struct Offender {
    pub pid: u32,
    /// Boot-time ns, from the record header.
    pub start_ns: u64,
    /// The event's kernel timestamp (boot-time ns).
    pub ts_ns: u64,
    /// The watched tree's root (the server), from the record header.
    pub session: u32,
}

/// What enforcement did about one matched kill rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// `killed` or `denied` (a refused connect whose rule does not kill).
    pub action: &'static str,
    /// `kernel_lsm`, `kernel_syscall_exit`, `kernel_cgroup` or `agent`
    /// (see `event::Alert::decided_by`).
    pub decided_by: &'static str,
    /// The processes that were sent SIGKILL: (pid, exe).
    pub killed: Vec<(u32, Option<String>)>,
    /// ns from the syscall's record to the kill or refusal: 0 when the
    /// kernel decided inside the syscall, measured from the event's
    /// timestamp for the agent.
    pub delay_ns: Option<u64>,
    /// The process ran after the syscall returned, before it was stopped.
    pub late: bool,
}

/// Which kernel mechanism a record's flags mean: a refusal of a connect is
/// the cgroup program's, of an open or exec BPF LSM's; a kill alone came
/// from a syscall's exit hook (or `sched_process_exec`, before the new
/// image's first instruction).
pub fn kernel_mechanism(k: &KernelDecision, connect: bool) -> &'static str {
    match (k.denied, connect) {
        (true, true) => "kernel_cgroup",
        (true, false) => "kernel_lsm",
        (false, _) => "kernel_syscall_exit",
    }
}

/// Copies of forbidden executables (found by content, `exe_is`) the
/// kernel is told to kill at most; more are counted and left to the agent.
pub const MAX_EXEC_COPIES: usize = 1024;

pub struct Enforcer {
    maps: KernelMaps,
    /// Copies found by content: kept in DENY_EXEC across rescans.
    copies: std::collections::HashMap<crate::rules::FileId, Verdict>,
    /// Copies not added because [`MAX_EXEC_COPIES`] was reached.
    pub copies_over_cap: u64,
    watched: BpfHashMap<MapData, u32, ms_watch>,
    /// Where `**/...` globs are searched; `None`: the users' homes, found
    /// again at every rescan (new homes are covered).
    pub homes: Option<Vec<PathBuf>>,
    /// Homes beyond those: the watched servers' `HOME`s (detect.rs).
    pub extra_homes: Vec<PathBuf>,
    /// Files opened under a name a kill rule may name that no scan found
    /// (rules/known.rs).
    pub learned_files: Vec<PathBuf>,
    /// Notes of the last compile, printed when they change.
    notes: Vec<String>,
}

impl Enforcer {
    /// Takes the enforcement maps out of a sensor loaded with
    /// `LoadOptions::enforce` and switches kernel enforcement on.
    pub fn new(sensor: &mut Sensor) -> Result<Enforcer, LoadError> {
        let mut maps = KernelMaps::take(sensor)?;
        maps.set_on(true).map_err(|source| LoadError::MapAccess { name: "ENF_CFG", source })?;
        Ok(Enforcer {
            maps,
            copies: Default::default(),
            copies_over_cap: 0,
            watched: sensor.watched_handle()?,
            homes: None,
            extra_homes: Vec::new(),
            learned_files: Vec::new(),
            notes: Vec::new(),
        })
    }

    /// Compiles `rules` into the kernel maps. Call before the watched
    /// process runs, on every rules reload, and periodically (rescan: files
    /// and homes that appeared since). Returns the compile's notes when
    /// they differ from the last ones (rules left to the agent, scans cut
    /// short), for the caller to print.
    pub fn install(&mut self, rules: &RuleSet) -> Result<Option<Vec<String>>, LoadError> {
        // the servers' HOMEs first: the scan's budget reaches them before
        // a large user home can use it up
        let mut homes = self.extra_homes.clone();
        for h in self.homes.clone().unwrap_or_else(walk::homes) {
            if !homes.contains(&h) {
                homes.push(h);
            }
        }
        let mut t = compile(rules, &homes, &self.learned_files);
        let notes = std::mem::take(&mut t.notes);
        for (id, v) in &self.copies {
            t.exec.entry(*id).or_insert(*v);
        }
        let ring = uring::cfg_value(rules, &t);
        self.maps.sync(t).map_err(|source| LoadError::MapAccess { name: "DENY_*", source })?;
        self.maps.set_uring(ring).map_err(|source| LoadError::MapAccess { name: "ENF_CFG", source })?;
        Ok((notes != self.notes).then(|| {
            self.notes = notes.clone();
            notes
        }))
    }

    /// A copy of a program kill rule `rule_id` forbids, recognised by its
    /// content after its exec (the agent killed that one): its identity
    /// goes into the kernel's exec deny map, so its next exec is stopped in
    /// the kernel. Only for rules the kernel decides execs for; `true` when
    /// added.
    pub fn deny_exec_copy(&mut self, rules: &RuleSet, rule_id: &str, id: crate::rules::FileId) -> bool {
        if self.copies.contains_key(&id) {
            return false;
        }
        let Some(k) = rules
            .kill_rules()
            .into_iter()
            .find(|k| k.id == rule_id && k.kill && matches!(k.plan, crate::rules::KernelPlan::Exec { .. }))
        else {
            return false;
        };
        if self.copies.len() >= MAX_EXEC_COPIES {
            self.copies_over_cap += 1;
            return false;
        }
        let v = Verdict::of(&k);
        match self.maps.add_exec(id, v) {
            Ok(()) => {
                self.copies.insert(id, v);
                true
            }
            Err(e) => {
                crate::say!("mcp-sensor: enforce: adding a copy of a forbidden executable to the kernel's exec deny map failed: {e} (the agent still kills it)");
                false
            }
        }
    }

    /// A file an open rule names, whose identity the agent just learned
    /// from an open (rules/known.rs): its verdicts go into the kernel's
    /// file deny map now, so a hard link or bind mount of it is stopped in
    /// the kernel from the next open on, not only after the next full
    /// compile (which keeps it: it is among `learned_files`). `true` when
    /// the kernel map has it.
    pub fn claim_learned(&mut self, rules: &RuleSet, path: &std::path::Path) -> bool {
        let Ok(m) = std::fs::metadata(path) else { return false };
        let id = crate::rules::FileId::from_stat(std::os::unix::fs::MetadataExt::dev(&m), std::os::unix::fs::MetadataExt::ino(&m));
        let t = compile(rules, &[], &[path.to_path_buf()]);
        let files: std::collections::HashMap<_, _> = t.files.into_iter().filter(|(k, _)| *k == id).collect();
        if files.is_empty() {
            return false;
        }
        if !self.learned_files.iter().any(|p| p == path) {
            self.learned_files.push(path.to_path_buf());
        }
        match self.maps.add_files(&files) {
            Ok(()) => true,
            Err(e) => {
                crate::say!("mcp-sensor: enforce: adding a learned file to the kernel's deny map failed: {e} (the agent still kills; the next compile retries)");
                false
            }
        }
    }

    /// The deny tables now in the kernel.
    pub fn tables(&self) -> &Tables {
        self.maps.current()
    }

    /// Kills and refusals the kernel counted (`abi::ENF_*`), including
    /// those whose records were lost to a full ring.
    pub fn kernel_counts(&self) -> Vec<u64> {
        self.maps.stats().unwrap_or_default()
    }

    /// The live members of watched tree `session`.
    fn tree(&self, session: u32) -> Vec<Target> {
        self.watched
            .iter()
            .flatten()
            .filter(|(_, w)| w.session == session)
            .map(|(pid, w)| Target { pid, start_ns: w.start_ns })
            .collect()
    }

    /// Acts on one kill rule that matched an event of `who`. `kernel` is the
    /// record's kernel decision, if any: the kernel already killed (or
    /// refused); the agent then only kills the rest of the tree for scope
    /// tree. Otherwise the agent kills, now.
    /// `connect`: the event is a connect (a refusal is then the cgroup
    /// program's).
    pub fn decide(&self, who: Offender, scope: KillScope, kernel: Option<KernelDecision>, connect: bool, procs: &ProcTable) -> Outcome {
        let hop = |pid: u32| (pid, procs.get(pid).and_then(|p| p.exe.clone()));
        let me = Target { pid: who.pid, start_ns: who.start_ns };
        let tree = scope == KillScope::Tree && who.session != 0;
        if let Some(k) = kernel {
            let mut killed = Vec::new();
            if k.killed {
                killed.push(hop(who.pid));
                if tree {
                    let rest = kill_tree(None, || self.tree(who.session).into_iter().filter(|t| t.pid != who.pid).collect());
                    killed.extend(rest.into_iter().map(hop));
                }
            }
            return Outcome {
                action: if k.killed { "killed" } else { "denied" },
                decided_by: kernel_mechanism(&k, connect),
                killed,
                delay_ns: Some(0),
                late: false,
            };
        }
        let pids = if tree {
            kill_tree(Some(me), || self.tree(who.session))
        } else {
            kill_target(me).map(|_| vec![who.pid]).unwrap_or_default()
        };
        let delay = pids.first().map(|_| crate::timefmt::Clock::boot_ns().saturating_sub(who.ts_ns));
        // the agent reads the event after the syscall returned: the
        // process has run since, whatever it did with the result
        Outcome { action: "killed", decided_by: "agent", killed: pids.into_iter().map(hop).collect(), delay_ns: delay, late: true }
    }
}

#[cfg(test)]
mod tests;
