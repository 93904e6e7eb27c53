//! The daemon's durable event log: `DIR/events.jsonl`, rotated by size,
//! and its alerts log `DIR/alerts.jsonl` (every `alert` and
//! `alert_summary` line again, rotated by its own, smaller budget: a flood
//! of bulk events rotates `events.jsonl*` but never the alerts; `mcp-sensor
//! investigate DIR` reads both and shows each alert once).
//!
//! Owns the files on disk. The directory is created 0700 (tightened to
//! 0700 if it exists looser), files 0600, always opened for append: a
//! restart continues the live file, never truncates it. Past `max_size`
//! the live file becomes `events.jsonl.1` (`.1` becomes `.2`, ...; a higher
//! number is older) and files past `max_files` are deleted, so the log
//! takes at most about `max_files * max_size` bytes. Rotation happens only
//! right after a newline, so no line is ever split between two files.
//! `flush` also syncs the data to disk at most once a second: a crash of
//! the daemon loses nothing that was flushed (it is in the kernel's page
//! cache), a crash of the machine at most the last second.
//!
//! A write the filesystem refuses (disk full, I/O error) reports the whole
//! lines that did go in (a partial one is cut off again), so the caller
//! keeps the rest and the file never ends in a line torn by a full disk. Lines a run could not write at all, its final totals among them,
//! are recorded in a zero-byte marker, `DIR/.unwritten.<secs>.<lines>`
//! (creating it needs no data block, so it works on a full disk), which the
//! next start reports and removes ([`record_unwritten`], [`take_unwritten`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const LIVE_NAME: &str = "events.jsonl";
/// The alerts log's live file.
pub const ALERTS_NAME: &str = "alerts.jsonl";
const SYNC_EVERY: Duration = Duration::from_secs(1);

pub struct RotatingLog {
    dir: PathBuf,
    /// The live file's name ([`LIVE_NAME`] or [`ALERTS_NAME`]).
    name: &'static str,
    file: File,
    size: u64,
    max_size: u64,
    max_files: u32,
    /// The last byte written was a newline (or nothing was written).
    at_line_start: bool,
    dirty: bool,
    last_sync: Instant,
    pub rotations: u64,
}

impl RotatingLog {
    pub fn open(dir: &Path, max_size: u64, max_files: u32) -> io::Result<Self> {
        Self::open_named(dir, LIVE_NAME, max_size, max_files)
    }

    /// [`RotatingLog::open`] of the log whose live file is `DIR/name`.
    pub fn open_named(dir: &Path, name: &'static str, max_size: u64, max_files: u32) -> io::Result<Self> {
        prepare_dir(dir)?;
        let path = dir.join(name);
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        // a crash may have left a torn last line: start ours on a fresh one
        let at_line_start = size == 0 || last_byte(&path)? == Some(b'\n');
        let mut log = RotatingLog {
            dir: dir.to_path_buf(),
            name,
            file,
            size,
            max_size: max_size.max(1),
            max_files: max_files.max(1),
            at_line_start: true,
            dirty: false,
            last_sync: Instant::now(),
            rotations: 0,
        };
        if !at_line_start {
            log.write_all(b"\n")?;
        }
        Ok(log)
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(self.name)
    }

    /// New limits (config reload); they apply from the next write.
    pub fn set_limits(&mut self, max_size: u64, max_files: u32) {
        self.max_size = max_size.max(1);
        self.max_files = max_files.max(1);
    }

    /// One write: the bytes that went in (fewer than `b` on a full disk).
    /// A short write that ends inside a line is taken back to the line's
    /// start, so the file holds whole lines only and the caller keeps the
    /// line for its next attempt.
    fn write_raw(&mut self, b: &[u8]) -> io::Result<usize> {
        let mut n = self.file.write(b)?;
        if n < b.len() && !b[..n].ends_with(b"\n") {
            let keep = match memchr::memrchr(b'\n', &b[..n]) {
                Some(p) => p + 1,
                None if self.at_line_start => 0,
                None => n,
            };
            if keep < n && self.file.set_len(self.size + keep as u64).is_ok() {
                n = keep;
            }
            if n == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
        }
        self.size += n as u64;
        self.dirty |= n > 0;
        if let Some(&last) = b[..n].last() {
            self.at_line_start = last == b'\n';
        }
        Ok(n)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        let live = self.name;
        let name = |i: u32| self.dir.join(if i == 0 { live.to_string() } else { format!("{live}.{i}") });
        // the oldest kept is .(max_files-1); anything at or past max_files goes
        let _ = std::fs::remove_file(name(self.max_files));
        if self.max_files == 1 {
            let _ = std::fs::remove_file(name(0));
        }
        for i in (0..self.max_files.saturating_sub(1)).rev() {
            match std::fs::rename(name(i), name(i + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.file = open_append(&name(0))?;
        self.size = 0;
        self.rotations += 1;
        Ok(())
    }
}

impl Write for RotatingLog {
    /// Writes a prefix of `buf` (up to the newline at which the live file
    /// reaches its size limit, rotating first when it is there) and
    /// returns its length, as `write` does: `write_all` loops.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.at_line_start && self.size >= self.max_size {
            self.rotate()?;
        }
        let room = self.max_size.saturating_sub(self.size) as usize;
        // the first newline at or past the limit ends what goes in this file
        let cut = match buf.iter().skip(room.saturating_sub(1)).position(|&b| b == b'\n') {
            Some(p) if self.size + buf.len() as u64 >= self.max_size => room.saturating_sub(1) + p + 1,
            _ => buf.len(),
        };
        self.write_raw(&buf[..cut])
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.dirty && self.last_sync.elapsed() >= SYNC_EVERY {
            self.sync()?;
        }
        Ok(())
    }
}

impl RotatingLog {
    /// Data to disk now (at exit, and once a second from `flush`).
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.dirty = false;
        self.last_sync = Instant::now();
        Ok(())
    }
}

impl Drop for RotatingLog {
    fn drop(&mut self) {
        let _ = self.sync();
    }
}

const UNWRITTEN_PREFIX: &str = ".unwritten.";

/// Records that this run could not write `lines` lines to `dir` (its final
/// totals among them), for the next start to report.
pub fn record_unwritten(dir: &Path, lines: u64) -> io::Result<PathBuf> {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let path = dir.join(format!("{UNWRITTEN_PREFIX}{secs}.{lines}"));
    OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&path)?;
    Ok(path)
}

/// The markers [`record_unwritten`] left in `dir`, oldest first, as
/// (unix seconds, lines); they are removed.
pub fn take_unwritten(dir: &Path) -> Vec<(u64, u64)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((secs, lines)) = name.strip_prefix(UNWRITTEN_PREFIX).and_then(|r| r.split_once('.')) else { continue };
        if let (Ok(secs), Ok(lines)) = (secs.parse(), lines.parse()) {
            let _ = std::fs::remove_file(entry.path());
            found.push((secs, lines));
        }
    }
    found.sort();
    found
}

fn open_append(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    // an existing file keeps its mode on open: make sure it is ours alone
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(f)
}

fn prepare_dir(dir: &Path) -> io::Result<()> {
    match std::fs::create_dir_all(dir) {
        Ok(()) => {}
        Err(e) => return Err(io::Error::new(e.kind(), format!("creating {}: {e}", dir.display()))),
    }
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn last_byte(path: &Path) -> io::Result<Option<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    if f.metadata()?.len() == 0 {
        return Ok(None);
    }
    f.seek(SeekFrom::End(-1))?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b)?;
    Ok(Some(b[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ms-logfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn files(d: &Path) -> Vec<(String, String)> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(e.path()).unwrap())
            })
            .collect();
        v.sort();
        v
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn rotates_at_line_boundaries_and_keeps_a_bounded_number_of_files() {
        let d = tmp("rotate");
        let mut log = RotatingLog::open(&d, 20, 3).unwrap();
        for i in 0..10 {
            // lines of 8 bytes, written in pieces that straddle lines
            let line = format!("line-{i:02}\n");
            log.write_all(&line.as_bytes()[..3]).unwrap();
            log.write_all(&line.as_bytes()[3..]).unwrap();
        }
        log.flush().unwrap();
        drop(log);
        let f = files(&d);
        let names: Vec<_> = f.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(names, vec!["events.jsonl", "events.jsonl.1", "events.jsonl.2"]);
        // every file holds whole lines only; together they are the newest lines in order
        for (_, text) in &f {
            assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
            assert!(text.lines().all(|l| l.len() == 7 && l.starts_with("line-")), "{text:?}");
        }
        let all: String = [&f[2].1, &f[1].1, &f[0].1].into_iter().cloned().collect();
        let nums: Vec<u32> = all.lines().map(|l| l[5..].parse().unwrap()).collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
        assert_eq!(*nums.last().unwrap(), 9);
        assert!(nums[0] > 0, "the oldest lines were deleted: {nums:?}");
        for (n, _) in &f {
            assert_eq!(mode(&d.join(n)), 0o600, "{n}");
        }
        assert_eq!(mode(&d), 0o700);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_alerts_log_rotates_apart_from_the_event_log() {
        let d = tmp("alerts");
        let mut events = RotatingLog::open(&d, 20, 2).unwrap();
        let mut alerts = RotatingLog::open_named(&d, ALERTS_NAME, 1 << 20, 2).unwrap();
        alerts.write_all(b"alert-1\n").unwrap();
        for i in 0..100 {
            events.write_all(format!("flood-{i:03}\n").as_bytes()).unwrap();
        }
        drop((events, alerts));
        let names: Vec<_> = files(&d).into_iter().map(|x| x.0).collect();
        assert_eq!(names, vec!["alerts.jsonl", "events.jsonl", "events.jsonl.1"]);
        assert_eq!(std::fs::read_to_string(d.join(ALERTS_NAME)).unwrap(), "alert-1\n", "the flood rotated only its own log");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_big_write_is_split_after_newlines_only() {
        let d = tmp("big");
        let mut log = RotatingLog::open(&d, 10, 10).unwrap();
        log.write_all(b"aaaa\nbbbbbbbbbbbbbbbbbbbb\ncc\ndd\n").unwrap();
        drop(log);
        let f = files(&d);
        let texts: Vec<&str> = f.iter().map(|x| x.1.as_str()).collect();
        // live file is newest; a line longer than the limit stays whole
        // the file is closed after the newline at which it reaches 10 bytes:
        // a line longer than the limit stays whole
        assert_eq!(texts, vec!["cc\ndd\n", "aaaa\nbbbbbbbbbbbbbbbbbbbb\n"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// A sink that takes `room` bytes, then fails like a full disk.
    #[test]
    fn a_full_disk_writes_a_prefix_and_keeps_lines_whole() {
        let d = tmp("full");
        let mut log = RotatingLog::open(&d, 1 << 20, 2).unwrap();
        // /dev/full refuses every byte: the write says so, nothing counted as written
        log.file = OpenOptions::new().append(true).open("/dev/full").unwrap();
        let e = log.write(b"abc\n").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
        assert!(log.at_line_start, "nothing went in, so no line was started");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn unwritten_markers_are_reported_once_oldest_first() {
        let d = tmp("markers");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(".unwritten.20.7"), "").unwrap();
        let p = record_unwritten(&d, 3).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
        let got = take_unwritten(&d);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], (20, 7));
        assert_eq!(got[1].1, 3);
        assert!(take_unwritten(&d).is_empty(), "removed once reported");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn reopening_appends_and_repairs_a_torn_last_line() {
        let d = tmp("reopen");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(d.join(LIVE_NAME), "{\"a\":1}\n{\"torn\":").unwrap();
        std::fs::set_permissions(d.join(LIVE_NAME), std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut log = RotatingLog::open(&d, 1 << 20, 2).unwrap();
        log.write_all(b"{\"b\":2}\n").unwrap();
        drop(log);
        let text = std::fs::read_to_string(d.join(LIVE_NAME)).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"torn\":\n{\"b\":2}\n");
        assert_eq!(mode(&d.join(LIVE_NAME)), 0o600);
        assert_eq!(mode(&d), 0o700);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
