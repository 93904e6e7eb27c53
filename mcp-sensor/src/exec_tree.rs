//! `exec`'s watch after CMD exits: the watched tree (CMD's pid as session)
//! lives on in whatever CMD left behind (a daemon that did setsid and a
//! double fork is still in it: children join in the kernel at fork), and
//! is watched and enforced on until its last process exits, bounded by
//! `--watch-after-exit` seconds.
//!
//! Two processes (exec_cmd.rs forks them): the *front*, which the MCP
//! client started, forks CMD and waits for it, and exits with CMD's status
//! as soon as the watch no longer needs the client's stdio; the *watcher*
//! (the same binary, forked before any thread exists, in a session of its
//! own) loads the programs, writes the events (the only writer of the
//! events file) and runs until the tree is gone. They speak over one pipe,
//! watcher to front, one byte a message ([`Note`]).

use aya::maps::{HashMap as BpfHashMap, MapData};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// How often the watcher looks at the watched set once CMD has exited.
const TREE_POLL: Duration = Duration::from_millis(50);

/// What the watcher tells the front.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// CMD is watched: release it.
    Ready = b'R' as isize,
    /// CMD exited and its tree lives on; the watcher let go of the
    /// client's stdio: exit now.
    Detached = b'D' as isize,
}

impl Note {
    fn from_byte(b: u8) -> Option<Note> {
        match b {
            b'R' => Some(Note::Ready),
            b'D' => Some(Note::Detached),
            _ => None,
        }
    }
}

/// The watcher's end of the pipe.
pub struct Notifier(Option<OwnedFd>);

/// The front's end of the pipe.
pub struct Listener(OwnedFd);

/// A pipe from watcher to front (close-on-exec: CMD never holds it).
pub fn channel() -> std::io::Result<(Listener, Notifier)> {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid 2-element array; on success both are ours.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh fds from pipe2, owned once each.
    unsafe { Ok((Listener(OwnedFd::from_raw_fd(fds[0])), Notifier(Some(OwnedFd::from_raw_fd(fds[1]))))) }
}

impl Notifier {
    /// Sends `n`; the front may be gone (killed): that is not an error.
    pub fn send(&mut self, n: Note) {
        if let Some(fd) = &self.0 {
            let b = n as u8;
            // SAFETY: one byte from a local into our pipe end.
            unsafe { libc::write(fd.as_raw_fd(), &b as *const u8 as *const libc::c_void, 1) };
        }
    }

    /// Closes the pipe: the front reads end of file.
    pub fn close(&mut self) {
        self.0 = None;
    }
}

impl Listener {
    /// The next note, or `None` at end of file (the watcher exited).
    pub fn recv(&self) -> Option<Note> {
        loop {
            let mut b = 0u8;
            // SAFETY: reading one byte into a local from our pipe end.
            let n = unsafe { libc::read(self.0.as_raw_fd(), &mut b as *mut u8 as *mut libc::c_void, 1) };
            if n == 1 {
                return Note::from_byte(b);
            }
            if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return None;
        }
    }
}

/// Points `fds` at /dev/null, so the watcher holds none of the client's
/// pipes: the client sees end of file when the server and the front are
/// gone, however long the watch goes on.
pub fn let_go_of(fds: &[i32]) -> std::io::Result<()> {
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    for &fd in fds {
        // SAFETY: dup2 onto a standard fd of our own.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Waits (blocking) until process `pid` has exited; returns at once when it
/// is already gone.
pub fn wait_gone(pid: u32) {
    // SAFETY: plain syscall; a non-negative return is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    if fd < 0 {
        return; // ESRCH: gone already
    }
    // SAFETY: fd is ours (above).
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one pollfd we own; a pidfd is readable once the process exited.
    while unsafe { libc::poll(&mut p, 1, -1) } < 0 {
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// The live processes of watched tree `session`: entries of the watched
/// set whose process still runs with the start time the kernel recorded
/// (an entry of a recycled pid is not the tree's).
pub fn live_members(watched: &BpfHashMap<MapData, u32, crate::abi::ms_watch>, session: u32) -> Vec<u32> {
    let mut pids: Vec<u32> = watched
        .iter()
        .flatten()
        .filter(|(_, w)| w.session == session)
        .filter(|(pid, w)| match crate::enforce::proc_start_ns(*pid) {
            Some(start) => w.start_ns == 0 || crate::enforce::same_start(start, w.start_ns),
            None => false,
        })
        .map(|(pid, _)| pid)
        .collect();
    pids.sort_unstable();
    pids
}

/// Why the watch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    /// `tree_empty` or `limit`.
    pub reason: &'static str,
    pub after_exit: Duration,
    /// Still running at the end (reason `limit`).
    pub remaining: Vec<u32>,
}

/// Waits, after CMD's exit, until `members()` is empty or `limit` has
/// passed. `detach` runs once, when the tree outlives CMD (before the
/// first wait).
pub async fn outlive(limit: Duration, mut members: impl FnMut() -> Vec<u32>, detach: impl FnOnce()) -> End {
    let exited = Instant::now();
    let mut left = members();
    if left.is_empty() {
        return End { reason: "tree_empty", after_exit: exited.elapsed(), remaining: left };
    }
    detach();
    loop {
        if exited.elapsed() >= limit {
            return End { reason: "limit", after_exit: exited.elapsed(), remaining: left };
        }
        tokio::time::sleep(TREE_POLL.min(limit.saturating_sub(exited.elapsed()))).await;
        left = members();
        if left.is_empty() {
            return End { reason: "tree_empty", after_exit: exited.elapsed(), remaining: left };
        }
    }
}

/// The `watch_end` line.
pub fn end_event(end: &End, server_pid: u32, clock: &crate::timefmt::Clock) -> crate::event::Event {
    let body = crate::event::Body::WatchEnd {
        reason: end.reason,
        server_pid,
        after_exit_ms: end.after_exit.as_millis() as u64,
        remaining: end.remaining.clone(),
    };
    crate::event::Event::own(body, clock)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap()
    }

    #[test]
    fn an_empty_tree_ends_at_once_without_detaching() {
        let mut detached = false;
        let end = rt().block_on(outlive(Duration::from_secs(60), Vec::new, || detached = true));
        assert_eq!(end.reason, "tree_empty");
        assert!(!detached, "nothing outlived CMD: the front waits for the final lines");
    }

    #[test]
    fn a_tree_that_outlives_cmd_detaches_then_ends_when_empty() {
        let mut polls = 0;
        let mut detached = 0;
        let end = rt().block_on(outlive(
            Duration::from_secs(60),
            || {
                polls += 1;
                if polls < 4 { vec![7, 9] } else { vec![] }
            },
            || detached += 1,
        ));
        assert_eq!((end.reason, detached, polls), ("tree_empty", 1, 4));
        assert!(end.remaining.is_empty());
    }

    #[test]
    fn the_limit_ends_the_watch_and_names_who_is_left() {
        let end = rt().block_on(outlive(Duration::from_millis(120), || vec![42], || {}));
        assert_eq!(end.reason, "limit");
        assert_eq!(end.remaining, vec![42]);
        assert!(end.after_exit >= Duration::from_millis(120), "{:?}", end.after_exit);
    }

    #[test]
    fn a_zero_limit_still_reports_who_is_left() {
        let end = rt().block_on(outlive(Duration::ZERO, || vec![5], || {}));
        assert_eq!((end.reason, end.remaining), ("limit", vec![5]));
    }

    #[test]
    fn notes_cross_the_pipe_and_end_of_file_is_none() {
        let (rx, mut tx) = channel().unwrap();
        tx.send(Note::Ready);
        tx.send(Note::Detached);
        tx.close();
        assert_eq!(rx.recv(), Some(Note::Ready));
        assert_eq!(rx.recv(), Some(Note::Detached));
        assert_eq!(rx.recv(), None);
    }
}
