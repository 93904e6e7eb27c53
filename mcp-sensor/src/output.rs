//! Outputs: where event lines go. Owns serialization and the sink.
//!
//! `exec` wraps an MCP server whose stdout is the protocol channel, so
//! `exec` never writes events to stdout: they go to a file (created 0600,
//! appended) or to stderr. Only the daemon, when asked (`run --log-stdout`,
//! `log.stdout`), also copies its log's lines to stdout (stdout_log.rs).
//!
//! Every line handed here also feeds the daemon's metrics and status board
//! (`metrics::observe`; a no-op outside `run`).
//!
//! A sink that fails (disk full, I/O error, a closed pipe) never stops the
//! sensor: each line that could not be handed over is counted in `lost`
//! (reported as the `log_write_failed` drop reason), lines already buffered
//! stay buffered for the next attempt, and nothing here panics.
//!
//! Two optional parts, set by the daemon: a second sink for alerts
//! (`alert` and `alert_summary` lines, also written to the main sink; see
//! logfile.rs: `alerts.jsonl` has its own rotation budget so a flood of
//! bulk events cannot rotate alerts away), and the per-server budget
//! (budget.rs) applied to bulk lines written with [`Output::emit_bulk`].

use crate::event::Event;
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub struct Output {
    sink: BufWriter<Box<dyn Write + Send>>,
    /// Lines that could not be written (disk full, ...): counted, said
    /// once on stderr, and the sensor keeps going.
    pub lost: u64,
    /// The last line emitted was accepted (false: it is among `lost`).
    pub last_ok: bool,
    /// Write or flush failures; the first one is said on stderr.
    errors: u64,
    pub lines: u64,
    path: Option<PathBuf>,
    /// The line being written: serialized here, then handed to the sink in
    /// one `write_all` (serde_json writes every token separately, and each
    /// write through the `BufWriter` costs more than a `Vec` push).
    line: Vec<u8>,
    /// `,"host":{...}}`: the host's identity, closing every line (empty:
    /// lines without it, as in unit tests).
    host_tail: Vec<u8>,
    /// Alert lines also go here (the daemon's `alerts.jsonl`).
    alerts: Option<BufWriter<Box<dyn Write + Send>>>,
    /// Alert lines the alerts sink could not take (`alert_log_write_failed`).
    pub alerts_lost: u64,
    /// The per-server budget on bulk lines; `None`: none.
    pub budget: Option<crate::budget::Budget>,
}

impl Output {
    /// `None` or `-`-less path: a file; `None` means stderr.
    pub fn open(path: Option<&Path>) -> io::Result<Self> {
        let (sink, path): (Box<dyn Write + Send>, _) = match path {
            Some(p) => {
                let f = OpenOptions::new().create(true).append(true).mode(0o600).open(p)?;
                (Box::new(f), Some(p.to_path_buf()))
            }
            None => (Box::new(io::stderr()), None),
        };
        Ok(Output { sink: BufWriter::with_capacity(256 << 10, sink), lost: 0, last_ok: true, errors: 0, lines: 0, path, line: Vec::new(), alerts: None, alerts_lost: 0, budget: None, host_tail: Vec::new() })
    }

    /// Any sink, named `path` in error messages (the daemon's rotating log).
    pub fn with_sink(path: PathBuf, w: Box<dyn Write + Send>) -> Self {
        Output { sink: BufWriter::with_capacity(256 << 10, w), lost: 0, last_ok: true, errors: 0, lines: 0, path: Some(path), line: Vec::new(), alerts: None, alerts_lost: 0, budget: None, host_tail: Vec::new() }
    }

    /// An in-memory sink, for tests.
    pub fn to_writer(w: Box<dyn Write + Send>) -> Self {
        Output { sink: BufWriter::new(w), lost: 0, last_ok: true, errors: 0, lines: 0, path: None, line: Vec::new(), alerts: None, alerts_lost: 0, budget: None, host_tail: Vec::new() }
    }

    /// Alert lines are also written to `w` from now on.
    pub fn alerts_to(&mut self, w: Box<dyn Write + Send>) {
        self.alerts = Some(BufWriter::with_capacity(64 << 10, w));
    }

    /// Every line from now on ends with a `host` object (identity.rs):
    /// which machine and which boot it comes from, once logs are collected.
    pub fn with_host(mut self, host: &crate::identity::Host) -> Self {
        self.host_tail = format!(",\"host\":{}}}", serde_json::to_string(host).unwrap_or_else(|_| "{}".into())).into_bytes();
        self
    }

    pub fn emit(&mut self, ev: &Event) {
        crate::metrics::observe(ev);
        self.line.clear();
        let res = serde_json::to_writer(&mut self.line, ev).map_err(io::Error::from);
        self.write_line(ev, res);
    }

    /// [`Output::emit`] for an event the per-server budget applies to
    /// (unless `exempt`: it raised an alert): past its server's budget the
    /// line is held back and counted (budget.rs), not written.
    pub fn emit_bulk(&mut self, ev: &Event, exempt: bool) {
        crate::metrics::observe(ev);
        self.line.clear();
        let res = serde_json::to_writer(&mut self.line, ev).map_err(io::Error::from);
        if res.is_ok() && !exempt && crate::budget::Budget::applies_to(ev) {
            if let Some(b) = self.budget.as_mut() {
                if !b.admit(ev, self.line.len() + 1) {
                    self.last_ok = true;
                    return;
                }
            }
        }
        self.write_line(ev, res);
    }

    fn write_line(&mut self, ev: &Event, res: io::Result<()>) {
        let serialized = res.is_ok();
        let res = res.and_then(|_| {
            if !self.host_tail.is_empty() && self.line.last() == Some(&b'}') {
                self.line.pop();
                self.line.extend_from_slice(&self.host_tail);
            }
            self.line.push(b'\n');
            self.sink.write_all(&self.line)
        });
        let alert = matches!(ev.body, crate::event::Body::Alert(_) | crate::event::Body::AlertSummary(_));
        if let Some(a) = self.alerts.as_mut().filter(|_| alert && serialized) {
            if a.write_all(&self.line).is_err() {
                self.alerts_lost += 1;
            }
        }
        self.last_ok = res.is_ok();
        match res {
            Ok(()) => self.lines += 1,
            Err(e) => {
                if self.lost == 0 {
                    crate::say!("mcp-sensor: the event buffer is full too: lines are now lost, and counted as `log_write_failed` drops");
                }
                self.lost += 1;
                self.failed(&e);
            }
        }
    }

    /// Hands buffered lines to the sink; what it refuses stays buffered.
    pub fn flush(&mut self) {
        if let Err(e) = self.sink.flush() {
            self.failed(&e);
        }
        if let Some(a) = self.alerts.as_mut() {
            if let Err(e) = a.flush() {
                if self.alerts_lost == 0 {
                    crate::say!("mcp-sensor: writing alerts to the alerts log: {e} (they are in the event log too; counted as `alert_log_write_failed`)");
                }
            }
        }
    }

    fn failed(&mut self, e: &io::Error) {
        if self.errors == 0 {
            crate::say!(
                "mcp-sensor: writing events to {}: {e} (lines wait in a {} KiB buffer; past that they are lost and counted as `log_write_failed` drops)",
                self.describe(),
                self.sink.capacity() >> 10
            );
        }
        self.errors += 1;
    }

    /// Whole lines still buffered (the sink refused them so far).
    pub fn pending_lines(&self) -> u64 {
        memchr::memchr_iter(b'\n', self.sink.buffer()).count() as u64
    }

    fn describe(&self) -> String {
        self.path.as_ref().map_or("stderr".into(), |p| p.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Accepts `room` bytes, then fails like a full disk (a short write first).
    struct Full {
        room: usize,
        got: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.got.lock().unwrap().extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn ev() -> Event {
        let d = crate::event::Drops { kernel: Default::default(), queue: 0, other: Default::default(), hint: None, is_final: false, enforced: None };
        Event { ts: "t".into(), ts_ns: 1, pid: 1, tid: 1, ppid: 0, uid: 0, comm: "x".into(), exe: None, ns_pid: None, container: None, body: crate::event::Body::Drops(d), server: None, tool_call: None }
    }

    #[test]
    fn a_full_sink_counts_lost_lines_and_keeps_what_it_buffered() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let mut out = Output::to_writer(Box::new(Full { room: 100, got: got.clone() }));
        out.sink = BufWriter::with_capacity(300, out.sink.into_inner().ok().unwrap());
        for _ in 0..50 {
            out.emit(&ev());
            out.flush();
        }
        assert!(out.lost > 0 && !out.last_ok);
        assert_eq!(out.lines + out.lost, 50, "every line is written, buffered or counted");
        let written = got.lock().unwrap().clone();
        assert_eq!(written.len(), 100, "the sink took what it had room for");
        // what was accepted but not written is still buffered, in order, not lost
        let buffered = out.sink.buffer().len() as u64;
        assert!(buffered > 0 && out.pending_lines() > 0);
    }

    #[test]
    fn every_line_names_its_host() {
        let got = Arc::new(Mutex::new(Vec::new()));
        let host = crate::identity::Host { name: "agent-1".into(), id: Some("m".into()), boot_id: Some("b".into()) };
        let mut out = Output::to_writer(Box::new(Full { room: 1 << 20, got: got.clone() })).with_host(&host);
        out.emit(&ev());
        out.flush();
        let line = String::from_utf8(got.lock().unwrap().clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(line.trim_end()).expect("one JSON object");
        assert_eq!(v["host"], serde_json::json!({"name": "agent-1", "id": "m", "boot_id": "b"}));
        assert_eq!(v["kind"], "drops", "the event's own fields are still there");
    }
}
