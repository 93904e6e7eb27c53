//! `run --log-stdout` (`log.stdout = true`): the daemon's event lines also
//! on its stdout, for DaemonSets whose collectors read container output.
//!
//! Owns the tee between the log file and stdout: stdout gets exactly the
//! bytes the file took, so its lines are the same lines as events.jsonl
//! (alerts included; `alerts.jsonl` is not copied again). Stdout is written
//! blocking, like the file: a reader that stops reading slows the pipeline
//! the way a slow disk does, and the ring and queue losses that follow are
//! counted. A stdout that fails (a closed pipe) never stops the log: its
//! lost lines are counted (`drops`: `stdout_write_failed`) and said once.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

static LOST: AtomicU64 = AtomicU64::new(0);

/// Event lines stdout could not take, since start.
pub fn lost_lines() -> u64 {
    LOST.load(Ordering::Relaxed)
}

fn say_lost(e: &io::Error) {
    crate::say!("mcp-sensor: copying event lines to stdout: {e} (they are in the log file; counted as `stdout_write_failed` drops)");
}

/// Writes to `inner`, then what it took to `copy` (stdout in the daemon).
pub struct Tee<W, C> {
    inner: W,
    copy: C,
}

impl<W: io::Write> Tee<W, io::Stdout> {
    pub fn stdout(inner: W) -> Self {
        Tee { inner, copy: io::stdout() }
    }
}

impl<W: io::Write, C: io::Write> Tee<W, C> {
    pub fn new(inner: W, copy: C) -> Self {
        Tee { inner, copy }
    }
}

impl<W: io::Write, C: io::Write> io::Write for Tee<W, C> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Err(e) = self.copy.write_all(&buf[..n]) {
            let lines = memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
            if LOST.fetch_add(lines, Ordering::Relaxed) == 0 {
                say_lost(&e);
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        let _ = self.copy.flush();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// Takes at most `room` bytes per write (a file's short writes).
    struct Short(Vec<u8>, usize);
    impl io::Write for Short {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.1);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_copy_gets_exactly_the_bytes_the_file_took() {
        let mut t = Tee::new(Short(Vec::new(), 7), Vec::new());
        t.write_all(b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n").unwrap();
        assert_eq!(t.inner.0, t.copy);
        assert_eq!(t.copy, b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
    }
}
