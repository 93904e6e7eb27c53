//! What the sensor commands make sure of before they touch anything:
//! that they run as root (said first, before any directory error), and,
//! for the daemon, that it alone uses its log and state directories.
//!
//! The hold is an flock(2) on `DIR/.mcp-sensor.lock`, which holds the
//! owner's pid for the message a second daemon prints. The kernel
//! releases the lock when the holder dies, however it dies (kill -9
//! included), so a stale lock file never blocks a restart.

use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The lock file's name in each directory the daemon holds.
pub const LOCK_NAME: &str = ".mcp-sensor.lock";

/// `command` (e.g. "run") loads eBPF programs: refuse early when not root.
pub fn require_root(command: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "`mcp-sensor {command}` needs root: it loads eBPF programs into the kernel \
             (run it with sudo, or as a root systemd service)"
        );
    }
    Ok(())
}

/// An exclusive hold on a directory, released on drop or process death.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    pub path: PathBuf,
}

/// Holds `dir` (created 0700 when missing) for this process, or says which
/// pid holds it. `what` names the directory's role in messages ("log").
pub fn lock_dir(dir: &Path, what: &str) -> Result<DirLock> {
    make_dir(dir, what)?;
    let path = dir.join(LOCK_NAME);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err).with_context(|| format!("locking {}", path.display()));
        }
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let holder = match text.trim().parse::<u32>() {
            Ok(pid) => format!("pid {pid}"),
            Err(_) => "another process".to_string(),
        };
        bail!(
            "another mcp-sensor daemon ({holder}) is already using the {what} directory {}: \
             stop it first, or give this one its own directory (lock: {})",
            dir.display(),
            path.display()
        );
    }
    // the pid is only for the message above: a write that fails (disk
    // full) does not weaken the lock, which is the flock itself
    let _ = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(DirLock { _file: file, path })
}

fn make_dir(dir: &Path, what: &str) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating the {what} directory {}", dir.display()))
}

/// Holds each directory once (the log and state directories may be one:
/// two holds of one file by one process would conflict).
pub fn lock_dirs(dirs: &[(&Path, &str)]) -> Result<Vec<DirLock>> {
    let mut held: Vec<(PathBuf, DirLock)> = Vec::new();
    for (dir, what) in dirs {
        make_dir(dir, what)?;
        let real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        if held.iter().all(|(d, _)| *d != real) {
            held.push((real, lock_dir(dir, what)?));
        }
    }
    Ok(held.into_iter().map(|(_, l)| l).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ms-service-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn a_second_hold_names_the_holder_and_a_released_one_is_free() {
        let d = tmp("lock");
        let held = lock_dir(&d, "log").unwrap();
        assert_eq!(std::fs::read_to_string(d.join(LOCK_NAME)).unwrap().trim(), std::process::id().to_string());
        // a second open file description conflicts, as a second process would
        let err = format!("{:#}", lock_dir(&d, "log").unwrap_err());
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        assert!(err.contains("log directory") && err.contains(&d.display().to_string()), "{err}");
        drop(held);
        lock_dir(&d, "log").expect("free again once released");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn one_directory_used_twice_is_held_once() {
        let d = tmp("same");
        let locks = lock_dirs(&[(&d, "log"), (&d.join("."), "state")]).unwrap();
        assert_eq!(locks.len(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
