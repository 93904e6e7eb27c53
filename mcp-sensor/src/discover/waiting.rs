//! Whether a process waits on its stdin, read from /proc: what tells a
//! server waiting on its user from an idle process that merely holds
//! pipes, among candidates found in /proc ([`super::late`]'s eviction).
//!
//! A thread waits on stdin when it is blocked (proc(5),
//! /proc/PID/task/TID/syscall: the syscall number and its arguments) in a
//! read of a descriptor open on the same file as fd 0, or in `epoll_wait`
//! on an epoll instance that watches that file (proc(5),
//! /proc/PID/fdinfo: one `tfd:` line per watched file, with its `ino:`
//! and `sdev:`). An MCP server waiting on its client is one or the other:
//! Node's event loop polls fd 0 through epoll, the Python SDK reads it in
//! a worker thread. `poll`, `select` and io_uring keep their sets in user
//! memory, so a thread blocked in one may be waiting on stdin and is
//! taken to be; so is a process whose threads cannot be read. What cannot
//! be ruled out is kept: a wrong "waiting" costs a slot, a wrong "idle"
//! costs a server.

use std::os::unix::fs::MetadataExt;

/// What a blocked thread is waiting in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blocked {
    /// A read of this descriptor.
    Read(u64),
    /// `epoll_wait` on this epoll descriptor.
    Epoll(u64),
    /// A wait whose files cannot be told from here (poll, select, io_uring).
    Unknown,
    /// Anything else, or running.
    Other,
}

/// One /proc/PID/task/TID/syscall line: the syscall number and its first
/// argument; None while the thread runs (`running`) or is blocked outside
/// a syscall (`-1 ...`).
fn parse_syscall(line: &str) -> Option<(i64, u64)> {
    let mut f = line.split_whitespace();
    let nr: i64 = f.next()?.parse().ok()?;
    if nr < 0 {
        return None;
    }
    let arg0 = f.next().and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())?;
    Some((nr, arg0))
}

fn blocked_in(nr: i64, arg0: u64) -> Blocked {
    #[cfg(target_arch = "x86_64")]
    {
        if nr == libc::SYS_epoll_wait {
            return Blocked::Epoll(arg0);
        }
        if nr == libc::SYS_poll || nr == libc::SYS_select {
            return Blocked::Unknown;
        }
    }
    match nr {
        libc::SYS_read | libc::SYS_readv | libc::SYS_pread64 | libc::SYS_preadv | libc::SYS_preadv2 | libc::SYS_recvfrom | libc::SYS_recvmsg | libc::SYS_recvmmsg => {
            Blocked::Read(arg0)
        }
        libc::SYS_epoll_pwait | libc::SYS_epoll_pwait2 => Blocked::Epoll(arg0),
        libc::SYS_ppoll | libc::SYS_pselect6 | libc::SYS_io_uring_enter => Blocked::Unknown,
        _ => Blocked::Other,
    }
}

/// The kernel's encoding of a device number (`MKDEV`, as fdinfo's `sdev:`
/// prints it) from a `st_dev`.
fn kernel_dev(st_dev: u64) -> u64 {
    (u64::from(libc::major(st_dev)) << 20) | u64::from(libc::minor(st_dev))
}

/// Whether an epoll instance's fdinfo lists the file (`dev` in the
/// kernel's encoding, `ino`) among those it watches.
fn epoll_watches(fdinfo: &str, dev: u64, ino: u64) -> bool {
    fdinfo.lines().filter(|l| l.starts_with("tfd:")).any(|l| {
        let field = |name: &str| l.split_whitespace().find_map(|w| w.strip_prefix(name)).and_then(|v| u64::from_str_radix(v, 16).ok());
        field("ino:") == Some(ino) && field("sdev:") == Some(dev)
    })
}

/// Whether process `pid` has a thread blocked waiting on its stdin (see
/// the module doc). False when it has no fd 0 or is gone; true when a
/// thread's state cannot be read or its wait cannot be told.
pub fn waits_on_stdin(pid: u32) -> bool {
    let Ok(stdin) = std::fs::metadata(format!("/proc/{pid}/fd/0")) else { return false };
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return false };
    let same = |fd: u64| std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).is_ok_and(|m| m.dev() == stdin.dev() && m.ino() == stdin.ino());
    for t in tasks.flatten() {
        let line = match std::fs::read_to_string(t.path().join("syscall")) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // the thread ended
            Err(_) => return true,
        };
        let Some((nr, arg0)) = parse_syscall(&line) else { continue };
        match blocked_in(nr, arg0) {
            Blocked::Read(fd) if same(fd) => return true,
            Blocked::Epoll(fd) => match std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")) {
                Ok(info) if epoll_watches(&info, kernel_dev(stdin.dev()), stdin.ino()) => return true,
                Ok(_) => {}
                Err(_) => return true,
            },
            Blocked::Unknown => return true,
            Blocked::Read(_) | Blocked::Other => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    #[test]
    fn syscall_lines_give_the_number_and_first_argument_of_a_blocked_thread_only() {
        assert_eq!(parse_syscall("0 0x0 0x7ffd 0x2000 0x0 0x0 0x0 0x7ffd 0x7f12\n"), Some((0, 0)));
        assert_eq!(parse_syscall("281 0xd 0x7fff 0x400 0x1efa 0x0 0x8 0x7fff 0x7f17"), Some((281, 13)));
        assert_eq!(parse_syscall("running\n"), None);
        assert_eq!(parse_syscall("-1 0x7ffd 0x7f12\n"), None, "blocked outside a syscall");
        assert_eq!(parse_syscall(""), None);
    }

    #[test]
    fn reads_and_epoll_waits_name_their_descriptor_poll_and_select_cannot_be_told() {
        assert_eq!(blocked_in(libc::SYS_read, 0), Blocked::Read(0));
        assert_eq!(blocked_in(libc::SYS_recvmsg, 5), Blocked::Read(5));
        assert_eq!(blocked_in(libc::SYS_epoll_pwait, 13), Blocked::Epoll(13));
        assert_eq!(blocked_in(libc::SYS_ppoll, 0), Blocked::Unknown);
        assert_eq!(blocked_in(libc::SYS_clock_nanosleep, 0), Blocked::Other);
        assert_eq!(blocked_in(libc::SYS_wait4, 0), Blocked::Other);
        assert_eq!(blocked_in(libc::SYS_futex, 0), Blocked::Other);
    }

    #[test]
    fn an_epoll_instance_watches_a_file_when_a_tfd_line_names_its_inode_and_device() {
        // Node's event loop on 6.18, stdin a pipe: inode 0x92953d on pipefs (0xf)
        let info = "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1038\n\
                    tfd:       14 events:       19 data:                e  pos:0 ino:929542 sdev:f\n\
                    tfd:        0 events:       19 data:                0  pos:0 ino:92953d sdev:f\n";
        assert!(epoll_watches(info, 0xf, 0x92953d));
        assert!(!epoll_watches(info, 0xf, 0x92953e), "another pipe");
        assert!(!epoll_watches(info, 0x10, 0x92953d), "the same inode number on another file system");
        assert!(!epoll_watches("pos:\t0\nflags:\t02000002\nino:\t1038\n", 0xf, 0x92953d), "an empty set");
    }

    /// Polls until the main thread of `pid` is blocked in syscall `nr`
    /// with first argument `arg0`, or 10 s (a child needs a moment).
    fn blocks_in(pid: u32, nr: i64, arg0: u64) -> bool {
        blocks_in_any(pid, &[nr], arg0)
    }

    fn blocks_in_any(pid: u32, nrs: &[i64], arg0: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let line = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
            if parse_syscall(&line).is_some_and(|(n, a)| nrs.contains(&n) && a == arg0) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// `epoll_wait`'s number where there is one (x86_64), else `epoll_pwait`'s.
    fn epoll_wait_nr() -> i64 {
        #[cfg(target_arch = "x86_64")]
        return libc::SYS_epoll_wait;
        #[cfg(not(target_arch = "x86_64"))]
        return libc::SYS_epoll_pwait;
    }

    #[test]
    fn a_process_blocked_reading_its_piped_stdin_waits_on_it_one_asleep_does_not() {
        let mut reader = Command::new("cat").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let mut sleeper = Command::new("sleep").arg("60").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let r = blocks_in(reader.id(), libc::SYS_read, 0) && waits_on_stdin(reader.id());
        let s = blocks_in(sleeper.id(), libc::SYS_clock_nanosleep, 0) && !waits_on_stdin(sleeper.id());
        // a reader of another pipe than its stdin (fd 3, from a sleep) does
        // not wait on stdin
        let mut other = Command::new("bash")
            .args(["-c", "exec 3< <(sleep 30); read -u 3 x"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let o = blocks_in(other.id(), libc::SYS_read, 3) && !waits_on_stdin(other.id());
        // an event loop polling its stdin (Node's, through epoll): its
        // epoll instance (fd 3) watches fd 0
        let poll = "import select; e = select.epoll(); e.register(0, select.EPOLLIN); e.poll()";
        let mut looper = Command::new("python3").args(["-c", poll]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let l = blocks_in_any(looper.id(), &[libc::SYS_epoll_pwait, epoll_wait_nr()], 3);
        let l = l && waits_on_stdin(looper.id());
        let _ = (looper.kill(), looper.wait());
        let _ = (sleeper.kill(), other.kill(), reader.kill());
        let _ = (sleeper.wait(), other.wait());
        let mut rest = Vec::new();
        let _ = reader.stdout.take().unwrap().read_to_end(&mut rest);
        let _ = reader.wait();
        assert!(r, "cat blocked in read(0) on its stdin pipe waits on it");
        assert!(s, "sleep, blocked in clock_nanosleep, does not");
        assert!(o, "bash blocked reading fd 3 does not wait on its stdin");
        assert!(l, "python blocked in epoll_wait on an instance watching fd 0 waits on its stdin");
        assert!(!waits_on_stdin(u32::MAX), "no such process");
    }
}
