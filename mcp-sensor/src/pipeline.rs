//! Pipeline: one record at a time through decode -> process table ->
//! sessions/correlation -> output -> rules (alerts follow the event that
//! raised them). Owns the order of those steps.
//!
//! Pure apart from the sink: tests feed it hand-built records.

use crate::correlate::Sessions;
use crate::decode::{self, Record, SockAddr};
use crate::detect::Detector;
use crate::drops::{DropTracker, Totals};
use crate::event::{Body, Event};
use crate::output::Output;
use crate::procs::ProcTable;
use crate::timefmt::Clock;
use bytes::Bytes;

pub struct Pipeline {
    pub clock: Clock,
    pub procs: ProcTable,
    pub sessions: Sessions,
    pub out: Output,
    pub detect: Detector,
    alerts: Vec<Event>,
    drops: DropTracker,
    pub undecodable: u64,
    pub records: u64,
}

impl Pipeline {
    pub fn new(out: Output, procs: ProcTable, sessions: Sessions, detect: Detector) -> Self {
        Pipeline {
            clock: Clock::now(),
            procs,
            sessions,
            out,
            detect,
            alerts: Vec::new(),
            drops: DropTracker::default(),
            undecodable: 0,
            records: 0,
        }
    }

    pub fn on_raw(&mut self, raw: &Bytes) {
        self.records += 1;
        match decode::decode(raw) {
            Ok(rec) => self.on_record(rec),
            Err(e) => {
                if self.undecodable == 0 {
                    eprintln!("mcp-sensor: undecodable record: {e} (counting further ones)");
                }
                self.undecodable += 1;
            }
        }
    }

    pub fn on_record(&mut self, rec: Record) {
        let h = rec.header().clone();
        self.procs.observe(h.pid, h.ppid, h.start_ns, &h.comm);
        let body = match rec {
            Record::Fork { child_pid, child_start_ns, .. } => {
                let origin = self.sessions.attribution(h.session);
                self.procs.on_fork(h.pid, child_pid, child_start_ns, origin);
                Body::Fork { child_pid }
            }
            Record::Exec(e) => {
                let script = (h.flags & crate::abi::F_SCRIPT != 0).then(|| script_path(&e));
                self.procs.on_exec(h.pid, e.exe.clone(), e.argv.clone());
                Body::Exec {
                    filename: e.filename,
                    argv: e.argv,
                    cwd: e.cwd,
                    script,
                    dev: crate::abi::kdev_to_user(e.dev) as u32,
                    ino: e.ino,
                    argv_truncated: h.flags & crate::abi::F_ARGV_TRUNC != 0,
                    file_flags: decode::file_flags(h.flags),
                }
            }
            Record::Exit { status, .. } => {
                self.procs.on_exit(h.pid);
                let (code, signal) = decode::wait_status(status);
                Body::Exit { code, signal }
            }
            Record::Open(o) => Body::Open {
                resolved: h.flags & crate::abi::F_UNRESOLVED == 0,
                path: o.path,
                flags: decode::open_flags(o.flags),
                ret: o.ret,
                error: decode::ret_error(o.ret),
                dev: if o.ret >= 0 { crate::abi::kdev_to_user(o.dev) as u32 } else { 0 },
                ino: o.ino,
                syscall: decode::syscall_name(o.syscall),
                file_flags: decode::file_flags(h.flags),
            },
            Record::Connect { ret, addr, .. } => connect_body(ret, addr),
            Record::IoUring { fd, sq_entries, cq_entries, flags, .. } => {
                Body::IoUringSetup { fd, sq_entries, cq_entries, flags: decode::uring_flags(flags) }
            }
            Record::Stdio(s) => {
                let base = self.base(&h);
                for ev in self.sessions.on_stdio(s, base, &self.procs) {
                    self.publish(&ev, &h);
                }
                return;
            }
        };
        let mut ev = self.base(&h);
        ev.body = body;
        if let Some((server, call)) = self.sessions.context(h.session, h.pid, &self.procs) {
            ev.server = Some(server);
            ev.tool_call = call;
        }
        self.publish(&ev, &h);
    }

    /// Writes `ev`, then the alerts it raises.
    fn publish(&mut self, ev: &Event, h: &decode::Header) {
        self.out.emit(ev);
        let facts = self.sessions.facts(h.session).unwrap_or_default();
        // enforcement: the record's kernel decision and whom to kill
        let rec = crate::enforce::RecordFacts::of(h);
        self.detect.check_record(ev, facts, Some(&rec), &self.procs, &mut self.alerts);
        for a in self.alerts.drain(..) {
            self.out.emit(&a);
        }
    }

    /// An event with the common fields filled in from the header and the
    /// process table; the caller sets `body`.
    fn base(&self, h: &decode::Header) -> Event {
        Event {
            ts: self.clock.rfc3339(h.ts_ns),
            ts_ns: h.ts_ns,
            pid: h.pid,
            tid: h.tid,
            ppid: h.ppid,
            uid: h.uid,
            comm: h.comm.clone(),
            exe: self.procs.get(h.pid).and_then(|p| p.exe.clone()),
            body: Body::Exit { code: None, signal: None },
            server: None,
            tool_call: None,
        }
    }

    /// Emits a `drops` line for losses since the last report, if any.
    pub fn report_drops(&mut self, now: Totals) {
        if let Some(d) = self.drops.delta(now) {
            self.emit_drops(d);
        }
    }

    pub fn report_final_drops(&mut self, now: &Totals) {
        let d = self.drops.total(now);
        self.emit_drops(d);
    }

    fn emit_drops(&mut self, d: crate::event::Drops) {
        let pid = std::process::id();
        let now = Clock::boot_ns();
        let ev = Event {
            ts: self.clock.rfc3339(now),
            ts_ns: now,
            pid,
            tid: pid,
            ppid: std::os::unix::process::parent_id(),
            uid: 0,
            comm: "mcp-sensor".into(),
            exe: std::env::current_exe().ok().map(|p| p.display().to_string()),
            body: Body::Drops(d),
            server: None,
            tool_call: None,
        };
        self.out.emit(&ev);
        self.out.flush();
    }
}

/// The script an interpreter was started for: the caller's path, made
/// absolute against the cwd when relative.
fn script_path(e: &decode::Exec) -> String {
    if e.filename.starts_with('/') {
        e.filename.clone()
    } else {
        format!("{}/{}", e.cwd.trim_end_matches('/'), e.filename.trim_start_matches("./"))
    }
}

fn connect_body(ret: i32, addr: SockAddr) -> Body {
    let (family, addr, port, path) = match addr {
        SockAddr::Inet { addr, port } => ("inet".to_string(), Some(addr.to_string()), Some(port), None),
        SockAddr::Inet6 { addr, port } => ("inet6".to_string(), Some(addr.to_string()), Some(port), None),
        SockAddr::Unix { path } => ("unix".to_string(), None, None, Some(path)),
        SockAddr::Other { family } => (format!("af_{family}"), None, None, None),
    };
    Body::Connect { family, addr, port, path, ret, error: decode::ret_error(ret) }
}
