//! Kills by the agent, through pidfds: a pid is opened as a pidfd, then
//! checked to still be the process the event was about (its start time),
//! then signalled through the pidfd. A pid recycled between the event and
//! the kill is never signalled: either pidfd_open finds the new process and
//! the start time differs, or the pidfd holds the old one and the signal
//! goes to it (or fails with ESRCH if it already exited).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, AsRawFd};

/// A process as the kernel named it: pid and start time (boot-time ns;
/// 0 when unknown, e.g. a watched root before its first event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub pid: u32,
    pub start_ns: u64,
}

/// /proc start times have clock-tick resolution.
pub fn same_start(a: u64, b: u64) -> bool {
    const TICK_NS: u64 = 10_000_000;
    a / TICK_NS == b / TICK_NS
}

/// Start time of `pid` from /proc (boot-time ns), `None` if it is gone.
pub fn proc_start_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // fields after comm start at field 3; starttime is field 22
    let ticks: u64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * (1_000_000_000 / hz))
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; a non-negative return is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Why a kill did not happen.
#[derive(Debug)]
pub enum Missed {
    /// The process had already exited.
    Gone,
    /// The pid now belongs to another process.
    Recycled,
    Failed(io::Error),
}

/// SIGKILLs `t` if it is still the same process.
pub fn kill(t: Target) -> Result<(), Missed> {
    let fd = pidfd_open(t.pid).map_err(|e| match e.raw_os_error() {
        Some(libc::ESRCH) => Missed::Gone,
        _ => Missed::Failed(e),
    })?;
    if t.start_ns != 0 {
        match proc_start_ns(t.pid) {
            Some(s) if same_start(s, t.start_ns) => {}
            Some(_) => return Err(Missed::Recycled),
            None => return Err(Missed::Gone),
        }
    }
    // SAFETY: plain syscall on our pidfd; no siginfo.
    let r = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), libc::SIGKILL, std::ptr::null::<libc::siginfo_t>(), 0)
    };
    if r != 0 {
        let e = io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::ESRCH) { Missed::Gone } else { Missed::Failed(e) });
    }
    Ok(())
}

/// Kills `first`, then every member of a tree as `members()` lists it,
/// again until a listing shows no member not yet signalled (a process
/// forked between two listings is caught by the next one). Returns the
/// pids signalled, `first` first when it was.
pub fn kill_tree(first: Option<Target>, mut members: impl FnMut() -> Vec<Target>) -> Vec<u32> {
    let mut done: Vec<u32> = Vec::new();
    if let Some(t) = first {
        if kill(t).is_ok() {
            done.push(t.pid);
        }
    }
    let mut tried: Vec<Target> = first.into_iter().collect();
    for _ in 0..8 {
        let fresh: Vec<Target> = members().into_iter().filter(|m| !tried.contains(m)).collect();
        if fresh.is_empty() {
            break;
        }
        for t in fresh {
            if kill(t).is_ok() {
                done.push(t.pid);
            }
            tried.push(t);
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sleeper() -> std::process::Child {
        Command::new("sleep").arg("30").spawn().unwrap()
    }

    #[test]
    fn kills_the_process_it_was_told_about() {
        let mut c = sleeper();
        let pid = c.id();
        let start = proc_start_ns(pid).unwrap();
        kill(Target { pid, start_ns: start }).unwrap();
        let st = c.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(st.signal(), Some(libc::SIGKILL));
    }

    #[test]
    fn never_kills_a_recycled_pid() {
        let mut c = sleeper();
        let pid = c.id();
        let start = proc_start_ns(pid).unwrap();
        // the event was about an earlier process with this pid
        let r = kill(Target { pid, start_ns: start.saturating_sub(5_000_000_000) });
        assert!(matches!(r, Err(Missed::Recycled)), "{r:?}");
        assert!(c.try_wait().unwrap().is_none(), "still running");
        c.kill().unwrap();
        c.wait().unwrap();
        // and an exited one is reported gone
        assert!(matches!(kill(Target { pid, start_ns: start }), Err(Missed::Gone) | Err(Missed::Recycled)));
    }

    #[test]
    fn tree_kill_catches_members_listed_later() {
        let mut kids: Vec<_> = (0..3).map(|_| sleeper()).collect();
        let t: Vec<Target> = kids.iter().map(|c| Target { pid: c.id(), start_ns: proc_start_ns(c.id()).unwrap() }).collect();
        let mut calls = 0;
        // the third process appears ("forks") only in the second listing
        let killed = kill_tree(Some(t[0]), || {
            calls += 1;
            if calls == 1 { t[..2].to_vec() } else { t.clone() }
        });
        assert_eq!(killed, vec![t[0].pid, t[1].pid, t[2].pid]);
        assert_eq!(calls, 3, "listed until nothing new");
        for c in &mut kids {
            c.wait().unwrap();
        }
    }
}
