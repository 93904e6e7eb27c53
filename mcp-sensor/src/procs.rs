//! The process table: who each pid is (exe, comm, parent) and what it
//! inherited, so every event line can say `exe`, `ppid` and ancestry.
//!
//! Owns process identity in userspace. Entries are keyed by pid but carry
//! the start time: a fork that reuses a pid replaces the old entry rather
//! than inheriting it. Seeded from /proc so processes that were running
//! before the agent started have ancestry too.

use crate::event::ToolCallRef;
use std::collections::HashMap;

/// How many entries the table holds at most; the oldest exited-and-
/// forgotten processes make room (live ones are never evicted first).
const MAX_PROCS: usize = 1 << 16;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    /// Boot-time ns; 0 when unknown.
    pub start_ns: u64,
    pub exe: Option<String>,
    pub comm: String,
    pub argv: Vec<String>,
    /// The request(s) in flight in its server when this process was
    /// forked: kept for its whole life (see correlate).
    pub origin: Option<ToolCallRef>,
    pub exited: bool,
    /// The kernel session (the server root's pid) its records carry; 0
    /// until one arrives. Kept across reparenting, unlike `ppid`.
    pub session: u32,
}

/// A process as /proc describes it; `None` when it exited while read.
fn from_proc(p: &procfs::process::Process) -> Option<Proc> {
    Some(from_stat(p, p.stat().ok()?))
}

/// [`from_proc`] with its stat already read.
fn from_stat(p: &procfs::process::Process, stat: procfs::process::Stat) -> Proc {
    Proc {
        pid: stat.pid as u32,
        ppid: stat.ppid as u32,
        start_ns: stat.starttime * (1_000_000_000 / procfs::ticks_per_second()),
        exe: p.exe().ok().map(|e| e.to_string_lossy().into_owned()),
        comm: stat.comm,
        argv: p.cmdline().unwrap_or_default(),
        origin: None,
        exited: false,
        session: 0,
    }
}

/// Start times from /proc have clock-tick (10 ms) resolution, the kernel's
/// have ns: compare at tick granularity.
pub(crate) fn same_start(a: u64, b: u64) -> bool {
    const TICK_NS: u64 = 10_000_000;
    a / TICK_NS == b / TICK_NS
}

#[derive(Debug, Default)]
pub struct ProcTable {
    procs: HashMap<u32, Proc>,
    /// (pid, start) of the entries that were exited at the last
    /// [`ProcTable::forget_exited`].
    exited_seen: Vec<(u32, u64)>,
}

impl ProcTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every process in /proc. Errors on single processes (they exit
    /// while we read) are skipped; only an unreadable /proc is an error.
    pub fn seed_from_proc(&mut self) -> procfs::ProcResult<usize> {
        let mut n = 0;
        for p in procfs::process::all_processes()?.flatten() {
            if let Some(p) = from_proc(&p) {
                self.insert(p);
                n += 1;
            }
        }
        Ok(n)
    }

    /// Reads `pid` from /proc into the table (a process found there after
    /// start: a candidate adopted late, discover/late.rs). False when it is
    /// gone.
    pub fn learn(&mut self, pid: u32) -> bool {
        let Some(p) = procfs::process::Process::new(pid as i32).ok().and_then(|p| from_proc(&p)) else { return false };
        self.insert(p);
        true
    }

    /// Reads from /proc the ancestors of `pid` the table does not know, or
    /// knows as another process (a recycled pid, by start time) or as
    /// exited: a client started after the agent, so an alert's ancestry
    /// reaches it. One stat per hop; stops at pid 1, after 64 hops, where
    /// a process is gone meanwhile, or at the first ancestor known as it is
    /// (same start, same parent: its own ancestors were learned with it, and
    /// one that exited since would have reparented it). A candidate's exec
    /// under a known parent costs one stat, not one per hop to pid 1, and
    /// none when the kernel gave the parent's start (`parent_start`,
    /// boot-time ns; 0: not known) and the table knows it as that process.
    pub fn learn_ancestors(&mut self, pid: u32, parent_start: u64) {
        let tick_ns = 1_000_000_000 / procfs::ticks_per_second();
        let mut cur = self.procs.get(&pid).map(|p| p.ppid).unwrap_or(0);
        if parent_start != 0 && self.procs.get(&cur).is_some_and(|k| !k.exited && same_start(k.start_ns, parent_start)) {
            return;
        }
        for _ in 0..64 {
            if cur <= 1 {
                return;
            }
            let Ok(p) = procfs::process::Process::new(cur as i32) else { return };
            let Ok(stat) = p.stat() else { return };
            let ppid = stat.ppid as u32;
            let known = self.procs.get_mut(&cur).filter(|k| !k.exited && same_start(k.start_ns, stat.starttime * tick_ns));
            match known {
                Some(k) if k.ppid == ppid => return,
                Some(k) => k.ppid = ppid, // reparented
                None => self.insert(from_stat(&p, stat)),
            }
            cur = ppid;
        }
    }

    pub fn insert(&mut self, p: Proc) {
        if self.procs.len() >= MAX_PROCS && !self.procs.contains_key(&p.pid) {
            self.evict_exited();
        }
        self.procs.insert(p.pid, p);
    }

    fn evict_exited(&mut self) {
        self.procs.retain(|_, p| !p.exited);
        if self.procs.len() >= MAX_PROCS {
            // nothing exited to forget: drop an arbitrary tenth rather than
            // grow without bound; their events still go out, with less context
            let drop: Vec<u32> = self.procs.keys().take(MAX_PROCS / 10).copied().collect();
            for pid in drop {
                self.procs.remove(&pid);
            }
        }
    }

    /// Forgets the processes that had already exited at the last call and
    /// that no live process names as its parent; returns how many. Called
    /// every few seconds, so an exited entry stays at least one period for
    /// records still in flight that name it (a child's fork, exec or
    /// alert ancestry), and as long as a child it did not see reparented
    /// lives. Without it, a storm of short-lived processes left its
    /// entries (and the table's capacity) until the table was full, at
    /// 65,536 entries: ~8 MB kept after they were all gone.
    pub fn forget_exited(&mut self) -> usize {
        let parents: std::collections::HashSet<u32> =
            self.procs.values().filter(|p| !p.exited).map(|p| p.ppid).collect();
        let mut n = 0;
        for (pid, start) in std::mem::take(&mut self.exited_seen) {
            let gone = self.procs.get(&pid).is_some_and(|p| p.exited && p.start_ns == start);
            if gone && !parents.contains(&pid) {
                self.procs.remove(&pid);
                n += 1;
            }
        }
        self.exited_seen = self.procs.values().filter(|p| p.exited).map(|p| (p.pid, p.start_ns)).collect();
        if self.procs.capacity() > 4 * self.procs.len().max(1024) {
            self.procs.shrink_to_fit();
        }
        n
    }

    pub fn get(&self, pid: u32) -> Option<&Proc> {
        self.procs.get(&pid)
    }

    pub fn get_mut(&mut self, pid: u32) -> Option<&mut Proc> {
        self.procs.get_mut(&pid)
    }

    /// A fork: the child starts as a copy of its parent's image and
    /// inherits its origin unless the caller passes a fresher one.
    pub fn on_fork(&mut self, parent: u32, child: u32, start_ns: u64, origin: Option<ToolCallRef>) {
        let (exe, comm, argv, inherited, session) = match self.procs.get(&parent) {
            Some(p) => (p.exe.clone(), p.comm.clone(), p.argv.clone(), p.origin.clone(), p.session),
            None => (None, String::new(), Vec::new(), None, 0),
        };
        self.insert(Proc {
            pid: child,
            ppid: parent,
            start_ns,
            exe,
            comm,
            argv,
            origin: inherited.or(origin),
            exited: false,
            session,
        });
    }

    /// Makes sure `pid` has an entry that is the process the kernel just
    /// described (same start time), creating or replacing it.
    pub fn observe(&mut self, pid: u32, ppid: u32, start_ns: u64, comm: &str) -> &mut Proc {
        let stale = self
            .procs
            .get(&pid)
            .is_some_and(|p| p.start_ns != 0 && start_ns != 0 && !same_start(p.start_ns, start_ns));
        if stale || !self.procs.contains_key(&pid) {
            self.insert(Proc { pid, ppid, start_ns, comm: comm.to_string(), ..Default::default() });
        }
        let p = self.procs.get_mut(&pid).expect("inserted above");
        p.ppid = ppid;
        if p.start_ns == 0 {
            p.start_ns = start_ns;
        }
        if p.comm != comm {
            p.comm = comm.to_string();
        }
        p
    }

    pub fn on_exec(&mut self, pid: u32, exe: String, argv: Vec<String>) {
        if let Some(p) = self.procs.get_mut(&pid) {
            p.exe = Some(exe);
            p.argv = argv;
        }
    }

    /// Marks the process exited; it stays readable until space is needed,
    /// because events of its children may still name it as parent.
    pub fn on_exit(&mut self, pid: u32) {
        if let Some(p) = self.procs.get_mut(&pid) {
            p.exited = true;
        }
    }

    /// Whether live process `pid` belongs to the server tree rooted at
    /// `root`: its records carry that session, or its ancestry reaches
    /// `root` (processes seeded from /proc before their first record). An
    /// exited entry is not a member: its pid may name another process now.
    pub fn in_tree(&self, pid: u32, root: u32) -> bool {
        let mut cur = pid;
        for _ in 0..64 {
            let Some(p) = self.procs.get(&cur) else { return false };
            if p.exited && cur == pid {
                return false;
            }
            if cur == root || (p.session != 0 && p.session == root) {
                return true;
            }
            if p.ppid == 0 || p.ppid == cur {
                return false;
            }
            cur = p.ppid;
        }
        false
    }

    /// (pid, exe) from `pid` up through its parents, at most `max` hops,
    /// stopping at pid 1 or an unknown parent.
    pub fn ancestry(&self, pid: u32, max: usize) -> Vec<(u32, Option<String>)> {
        let mut out = Vec::new();
        let mut cur = pid;
        while out.len() < max {
            let Some(p) = self.procs.get(&cur) else { break };
            out.push((p.pid, p.exe.clone()));
            if p.ppid == 0 || p.ppid == cur || cur == 1 {
                break;
            }
            cur = p.ppid;
        }
        out
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(id: i64) -> ToolCallRef {
        ToolCallRef {
            id: Some(json!(id)),
            name: Some("t".into()),
            method: Some("tools/call".into()),
            arguments: None,
            in_flight: vec![],
        }
    }

    #[test]
    fn fork_inherits_image_and_origin() {
        let mut t = ProcTable::new();
        t.observe(10, 1, 100, "node");
        t.on_exec(10, "/usr/bin/node".into(), vec!["node".into()]);
        t.on_fork(10, 11, 200, Some(call(1)));
        let c = t.get(11).unwrap();
        assert_eq!(c.exe.as_deref(), Some("/usr/bin/node"));
        assert_eq!(c.origin, Some(call(1)));
        // a grandchild forked later, while request 2 runs, keeps request 1
        t.on_fork(11, 12, 300, Some(call(2)));
        assert_eq!(t.get(12).unwrap().origin, Some(call(1)));
    }

    #[test]
    fn recycled_pid_does_not_inherit() {
        let mut t = ProcTable::new();
        t.on_fork(1, 50, 100_000_000, Some(call(7)));
        t.on_exit(50);
        // same pid, new start time: a different process
        let p = t.observe(50, 1, 999_000_000, "other");
        assert_eq!(p.origin, None);
        assert_eq!(p.start_ns, 999_000_000);
        assert!(!p.exited);
    }

    #[test]
    fn ancestry_walks_up_and_stops() {
        let mut t = ProcTable::new();
        t.observe(1, 0, 1, "init");
        t.on_exec(1, "/sbin/init".into(), vec![]);
        t.on_fork(1, 2, 2, None);
        t.on_exec(2, "/usr/bin/node".into(), vec![]);
        t.on_fork(2, 3, 3, None);
        t.on_exec(3, "/bin/sh".into(), vec![]);
        let a = t.ancestry(3, 10);
        let pids: Vec<u32> = a.iter().map(|x| x.0).collect();
        assert_eq!(pids, vec![3, 2, 1]);
        assert_eq!(a[0].1.as_deref(), Some("/bin/sh"));
        assert_eq!(t.ancestry(3, 2).len(), 2);
    }

    #[test]
    fn tree_membership_by_session_or_ancestry() {
        let mut t = ProcTable::new();
        t.observe(1, 0, 1, "init");
        t.observe(50, 1, 2, "client"); // the MCP client
        t.observe(100, 50, 3, "server").session = 100;
        t.on_fork(100, 101, 4, None); // inherits the session
        t.on_fork(101, 102, 5, None);
        t.observe(102, 1, 5, "daemon"); // double fork: reparented to init
        t.observe(200, 100, 6, "seeded"); // from /proc, no record yet
        assert!(t.in_tree(100, 100) && t.in_tree(101, 100) && t.in_tree(200, 100));
        assert!(t.in_tree(102, 100), "a reparented member keeps its session");
        assert!(!t.in_tree(50, 100), "the client is not in its server's tree");
        assert!(!t.in_tree(1, 100) && !t.in_tree(999, 100));
        t.on_exit(101);
        assert!(!t.in_tree(101, 100), "an exited member's pid may be another process now");
    }

    #[test]
    fn exited_processes_are_forgotten_one_period_later_unless_a_live_child_names_them() {
        let mut t = ProcTable::new();
        t.observe(1, 0, 1, "init");
        t.on_fork(1, 10, 2, None); // exits, a child lives on
        t.on_fork(10, 11, 3, None);
        t.on_fork(1, 20, 4, None); // exits, nothing left
        t.on_exit(10);
        t.on_exit(20);
        assert_eq!(t.forget_exited(), 0, "kept for a period: records may still name them");
        t.on_fork(1, 30, 5, None);
        t.on_exit(30); // exited after the last call
        assert_eq!(t.forget_exited(), 1);
        assert!(t.get(20).is_none() && t.get(30).is_some());
        assert!(t.get(10).is_some(), "its live child still names it");
        assert_eq!(t.ancestry(11, 8).iter().map(|a| a.0).collect::<Vec<_>>(), vec![11, 10, 1]);
        t.on_exit(11);
        t.forget_exited();
        t.forget_exited();
        assert!(t.get(10).is_none() && t.get(11).is_none() && t.get(30).is_none());
        // a pid recycled between two calls is the new process: kept
        t.on_fork(1, 40, 6, None);
        t.on_exit(40);
        t.forget_exited();
        t.observe(40, 1, 999_000_000, "new");
        t.forget_exited();
        assert_eq!(t.get(40).map(|p| p.comm.as_str()), Some("new"));
    }

    #[test]
    fn seeding_from_proc_finds_this_process() {
        let mut t = ProcTable::new();
        let n = t.seed_from_proc().expect("/proc readable");
        assert!(n > 0);
        let me = t.get(std::process::id()).expect("own pid seeded");
        assert!(me.exe.is_some());
        assert!(me.start_ns > 0);
    }

    #[test]
    fn ancestors_started_after_the_seed_are_read_from_proc() {
        // a child of this process that the table hears of only from the
        // kernel: its parent (this test) and grandparents come from /proc
        let mut t = ProcTable::new();
        let me = std::process::id();
        t.observe(u32::MAX - 1, me, 0, "child");
        t.learn_ancestors(u32::MAX - 1, 0);
        let a = t.ancestry(u32::MAX - 1, 64);
        assert_eq!(a.get(1).map(|h| h.0), Some(me), "{a:?}");
        let parent = std::os::unix::process::parent_id();
        assert!(parent <= 1 || a.iter().any(|h| h.0 == parent), "the test's parent is in {a:?}");
    }

    #[test]
    fn the_walk_stops_at_an_ancestor_known_as_it_is() {
        let mut t = ProcTable::new();
        let me = std::process::id();
        let parent = std::os::unix::process::parent_id();
        let mine = procfs::process::Process::new(me as i32).ok().and_then(|p| from_proc(&p)).unwrap();
        assert_eq!(mine.ppid, parent);
        t.insert(mine);
        // the parent as the table remembers it: not read again
        t.insert(Proc { pid: parent, ppid: 1, start_ns: 1, exe: Some("/remembered".into()), ..Default::default() });
        t.observe(u32::MAX - 1, me, 0, "child");
        t.learn_ancestors(u32::MAX - 1, 0);
        assert_eq!(t.get(parent).unwrap().exe.as_deref(), Some("/remembered"));
    }

    #[test]
    fn a_parent_known_by_the_kernels_start_time_is_not_read_again() {
        // the table remembers this process with a start time /proc would
        // contradict: only the kernel's agreeing start skips the read
        let me = std::process::id();
        let remembered = 5_000_000_000;
        for (given, kept) in [(remembered, true), (remembered + 1_000_000_000, false), (0, false)] {
            let mut t = ProcTable::new();
            t.insert(Proc { pid: me, ppid: 1, start_ns: remembered, exe: Some("/remembered".into()), ..Default::default() });
            t.observe(u32::MAX - 1, me, 0, "child");
            t.learn_ancestors(u32::MAX - 1, given);
            let exe = t.get(me).unwrap().exe.clone();
            assert_eq!(exe.as_deref() == Some("/remembered"), kept, "kernel's start {given}: {exe:?}");
        }
    }

    #[test]
    fn an_ancestor_known_under_a_recycled_pid_is_read_again() {
        let mut t = ProcTable::new();
        let me = std::process::id();
        // this process as the table might remember an older one with its pid
        t.insert(Proc { pid: me, ppid: 1, start_ns: 1, exe: Some("/stale".into()), ..Default::default() });
        t.observe(u32::MAX - 1, me, 0, "child");
        t.learn_ancestors(u32::MAX - 1, 0);
        let mine = t.get(me).unwrap();
        assert_ne!(mine.exe.as_deref(), Some("/stale"));
        assert_eq!(mine.ppid, std::os::unix::process::parent_id());
    }
}
