//! Servers already running when the daemon starts, found from /proc.
//!
//! Owns the startup plan: which running processes are clients (their pids
//! go to the kernel's CLIENTS map, so servers they start later are
//! children of a client) and which are candidate servers, with the same
//! rules the kernel applies at exec (discover.bpf.h): a child of a client
//! with a pipe or socket on stdin or stdout, or (with `stdio_pipes`) any
//! process with pipes or sockets on both. A candidate's root is the
//! topmost qualifying process below the nearest client, so `sh -c node
//! server.js` is one candidate rooted at `sh` with `node` in its tree.
//! Clients are never candidates, and neither is the daemon or any of its
//! ancestors. [`plan`] is pure; [`read_proc`] is the /proc side.

use super::How;
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    /// Start time, clock ticks since boot (stat field 22).
    pub start: u64,
    pub comm: String,
    /// Basename of /proc/PID/exe.
    pub exe_name: Option<String>,
    /// (kernel dev, inode) of fd 0 and fd 1 when each is a pipe or socket.
    pub fd0: Option<(u32, u64)>,
    pub fd1: Option<(u32, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub root: u32,
    pub how: How,
    /// Every process of its tree, the root first.
    pub members: Vec<u32>,
    /// The root's stdio pipes or sockets.
    pub channels: Vec<(u32, u64)>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub clients: Vec<u32>,
    pub candidates: Vec<Candidate>,
}

/// Whether a process is a known client, by comm or executable name (the
/// kernel compares at most 15 bytes of a comm).
pub fn is_client(p: &ProcInfo, clients: &HashSet<String>) -> bool {
    let short = |s: &str| s.char_indices().take_while(|(i, _)| *i < 15).map(|(_, c)| c).collect::<String>();
    clients.contains(&p.comm) || p.exe_name.as_deref().is_some_and(|e| clients.contains(&short(e)) || clients.contains(e))
}

/// Chains longer than this are cut (and a cycle cannot loop forever).
const MAX_DEPTH: usize = 64;

pub fn plan(procs: &[ProcInfo], clients: &HashSet<String>, stdio_pipes: bool, self_pid: u32) -> Plan {
    let by_pid: HashMap<u32, &ProcInfo> = procs.iter().map(|p| (p.pid, p)).collect();
    let is_c: HashSet<u32> = procs.iter().filter(|p| is_client(p, clients)).map(|p| p.pid).collect();
    // the daemon and its ancestors are never watched
    let mut excluded = HashSet::new();
    let mut cur = self_pid;
    for _ in 0..MAX_DEPTH {
        if !excluded.insert(cur) {
            break;
        }
        match by_pid.get(&cur) {
            Some(p) if p.ppid > 0 => cur = p.ppid,
            _ => break,
        }
    }
    let qualifies = |p: &ProcInfo| -> Option<How> {
        if is_c.contains(&p.pid) || excluded.contains(&p.pid) {
            return None;
        }
        if is_c.contains(&p.ppid) && (p.fd0.is_some() || p.fd1.is_some()) {
            Some(How::ClientChild)
        } else if stdio_pipes && p.fd0.is_some() && p.fd1.is_some() {
            Some(How::StdioPipes)
        } else {
            None
        }
    };

    let mut roots: HashMap<u32, Candidate> = HashMap::new();
    let mut order = Vec::new();
    for p in procs {
        if is_c.contains(&p.pid) || excluded.contains(&p.pid) || p.pid <= 1 {
            continue;
        }
        let mut top: Option<(&ProcInfo, How)> = None;
        let mut q = p;
        for _ in 0..MAX_DEPTH {
            if is_c.contains(&q.pid) || excluded.contains(&q.pid) || q.pid <= 1 {
                break;
            }
            if let Some(how) = qualifies(q) {
                top = Some((q, how));
            }
            match by_pid.get(&q.ppid) {
                Some(parent) => q = parent,
                None => break,
            }
        }
        let Some((root, how)) = top else { continue };
        let c = roots.entry(root.pid).or_insert_with(|| {
            order.push(root.pid);
            Candidate {
                root: root.pid,
                how,
                members: vec![root.pid],
                channels: [root.fd0, root.fd1].into_iter().flatten().fold(Vec::new(), |mut v, ch| {
                    if !v.contains(&ch) {
                        v.push(ch);
                    }
                    v
                }),
            }
        });
        if p.pid != root.pid {
            c.members.push(p.pid);
        }
    }
    let mut clients_v: Vec<u32> = is_c.into_iter().collect();
    clients_v.sort_unstable();
    Plan { clients: clients_v, candidates: order.into_iter().filter_map(|r| roots.remove(&r)).collect() }
}

/// (kernel dev, inode) of a pipe or socket open as `fd` in `pid`.
fn stream_fd(pid: u32, fd: u32) -> Option<(u32, u64)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let ft = md.file_type();
    (ft.is_fifo() || ft.is_socket()).then(|| (crate::abi::user_to_kdev(md.dev()), md.ino()))
}

/// Every process in /proc (those that exit while being read are skipped).
pub fn read_proc() -> std::io::Result<Vec<ProcInfo>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry.ok().and_then(|e| e.file_name().to_str()?.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // comm is in parentheses and may itself contain ") "
        let Some((head, rest)) = stat.rsplit_once(") ") else { continue };
        let comm = head.split_once(" (").map(|x| x.1).unwrap_or("").to_string();
        let ppid = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        // fields after comm start at 3 (state): starttime, 22, is the 20th
        let start = rest.split_whitespace().nth(19).and_then(|s| s.parse().ok()).unwrap_or(0);
        let exe_name = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        out.push(ProcInfo { pid, ppid, start, comm, exe_name, fd0: stream_fd(pid, 0), fd1: stream_fd(pid, 1) });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_reads_each_processs_start_time() {
        let me = std::process::id();
        let infos = read_proc().unwrap();
        let mine = infos.iter().find(|p| p.pid == me).expect("this process in /proc");
        let want = procfs::process::Process::myself().unwrap().stat().unwrap().starttime;
        assert_eq!(mine.start, want);
    }

    fn p(pid: u32, ppid: u32, comm: &str, fd0: bool, fd1: bool) -> ProcInfo {
        ProcInfo {
            pid,
            ppid,
            start: 0,
            comm: comm.into(),
            exe_name: Some(comm.into()),
            fd0: fd0.then_some((1, pid as u64 * 10)),
            fd1: fd1.then_some((1, pid as u64 * 10 + 1)),
        }
    }

    fn clients() -> HashSet<String> {
        ["claude".to_string(), "code".to_string()].into()
    }

    #[test]
    fn client_children_are_candidates_rooted_below_the_client() {
        let procs = vec![
            p(1, 0, "init", false, false),
            p(100, 1, "claude", false, false),
            p(101, 100, "sh", true, true),   // sh -c node server.js
            p(102, 101, "node", true, true), // the server, same pipes in reality
            p(103, 100, "bash", false, true),
            p(104, 100, "rg", false, false), // no pipe on stdin or stdout: not stdio
        ];
        let plan = plan(&procs, &clients(), false, 999);
        assert_eq!(plan.clients, vec![100]);
        assert_eq!(plan.candidates.len(), 2);
        let c = &plan.candidates[0];
        assert_eq!((c.root, c.how, c.members.clone()), (101, How::ClientChild, vec![101, 102]));
        assert_eq!(c.channels, vec![(1, 1010), (1, 1011)]);
        assert_eq!(plan.candidates[1].root, 103);
    }

    #[test]
    fn stdio_pipes_finds_servers_of_unknown_clients_only_when_enabled() {
        let procs = vec![
            p(10, 1, "python3", false, true), // an in-house agent
            p(11, 10, "node", true, true),    // its server
            p(12, 11, "git", false, false),   // a helper the server runs
        ];
        assert!(plan(&procs, &clients(), false, 999).candidates.is_empty());
        let plan = plan(&procs, &clients(), true, 999);
        assert_eq!(plan.candidates.len(), 1);
        let c = &plan.candidates[0];
        assert_eq!((c.root, c.how, c.members.clone()), (11, How::StdioPipes, vec![11, 12]));
    }

    #[test]
    fn clients_the_daemon_and_its_ancestors_are_never_candidates() {
        let procs = vec![
            p(20, 1, "systemd", true, true),
            p(21, 20, "mcp-sensor", true, true), // the daemon
            p(30, 1, "code", true, true),        // a client started with pipes
            p(31, 30, "code", true, true),       // its helper: also a client
            p(32, 31, "node", true, true),       // a server of the helper
        ];
        let plan = plan(&procs, &clients(), true, 21);
        assert_eq!(plan.clients, vec![30, 31]);
        let roots: Vec<u32> = plan.candidates.iter().map(|c| c.root).collect();
        assert_eq!(roots, vec![32]);
        assert_eq!(plan.candidates[0].how, How::ClientChild);
    }

    #[test]
    fn long_exe_names_match_on_the_kernel_comm_length() {
        let mut x = p(5, 1, "claude-desktop-", false, false);
        x.exe_name = Some("claude-desktop-bin".into());
        let set: HashSet<String> = ["claude-desktop-".to_string()].into();
        assert!(is_client(&x, &set));
    }

    #[test]
    fn reads_this_process_from_proc() {
        let all = read_proc().unwrap();
        let me = all.iter().find(|x| x.pid == std::process::id()).expect("own pid");
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert!(me.exe_name.is_some());
    }
}
