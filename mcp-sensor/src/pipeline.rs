//! Pipeline: one record at a time through decode -> process table ->
//! sessions/correlation -> rules -> output (alerts follow the event that
//! raised them; repeats of a finding are counted into one alert by
//! aggregate.rs; bulk lines are subject to the per-server budget,
//! budget.rs). Owns the order of those steps.
//!
//! Pure apart from the sink: tests feed it hand-built records.

use crate::correlate::Sessions;
use crate::decode::{self, Record, SockAddr};
use crate::detect::Detector;
use crate::discover::{Gate, How, KernelAction};
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
    /// Processes running at start that discovery could not track (`run`:
    /// the kernel tables were full; a `drops` reason).
    pub startup_untracked: u64,
    /// Live sessions' first-request stamps the kernel's LRU FIRST_REQ
    /// evicted, restored by the agent (agent.rs; a `drops` reason).
    pub first_request_evicted: u64,
    /// Discovery (`run` only): holds candidate servers' events until they
    /// are known to be MCP. `None` in `exec`.
    pub gate: Option<Gate>,
    /// Enforcement: the record being processed (its kernel decision).
    rec: Option<crate::enforce::RecordFacts>,
    /// Kernel decisions on records whose events discovery held back, by
    /// (pid, ts_ns): a held event is published after later records, and
    /// its alert must still say the kernel killed or refused (without it,
    /// a key read killed in the kernel was reported as the agent's, late,
    /// whenever the first call came before the server's confirmation).
    /// Bounded by MAX_HELD_DECISIONS; taken when the event is published.
    held_decisions: std::collections::HashMap<(u32, u64), crate::enforce::RecordFacts>,
    /// Records' cgroup ids -> containers (identity.rs).
    places: crate::identity::Places,
    /// Held kernel decisions forgotten when their map was full and reset:
    /// those events' alerts may name the agent, not the kernel (a `drops`
    /// reason, `discovery_decisions_forgotten`).
    pub held_decisions_forgotten: u64,
    /// One alert line per finding; repeats counted (aggregate.rs).
    pub agg: crate::aggregate::Aggregator,
    /// OTLP trace export (`run` with `[export.otlp]`); `None`: off.
    pub export: Option<crate::export::Export>,
}

/// Kernel decisions kept for held events at most (a candidate rejected
/// with decisions pending leaves its entries until the map is reset).
const MAX_HELD_DECISIONS: usize = 4096;

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
            startup_untracked: 0,
            first_request_evicted: 0,
            records: 0,
            gate: None,
            rec: None,
            held_decisions: std::collections::HashMap::new(),
            places: crate::identity::Places::new(),
            held_decisions_forgotten: 0,
            agg: crate::aggregate::Aggregator::new(
                crate::timefmt::Clock::boot_ns(),
                crate::aggregate::WINDOW_NS,
                crate::aggregate::MAX_OPEN,
            ),
            export: None,
        }
    }

    /// What discovery needs done in the kernel's maps (the agent applies it).
    pub fn take_kernel_actions(&mut self) -> Vec<KernelAction> {
        let Some(g) = self.gate.as_mut() else { return Vec::new() };
        let actions = std::mem::take(&mut g.actions);
        for a in &actions {
            match a {
                KernelAction::Unwatch { session, .. } => self.sessions.forget(*session),
                KernelAction::Fold { from, .. } => self.sessions.forget(*from),
                KernelAction::Confirm { session, .. } => self.sessions.count_held_losses(*session),
            }
        }
        actions
    }

    /// Writes `ev` of `session`, unless discovery holds or drops it.
    fn deliver(&mut self, session: u32, ev: Event) {
        let decided = self.held_decisions.contains_key(&(ev.pid, ev.ts_ns));
        let ev = match self.gate.as_mut() {
            Some(g) => g.offer(session, ev, decided),
            None => Some(ev),
        };
        if let Some(ev) = ev {
            self.publish(ev, session);
        }
    }

    /// Discovery's view of a record before it becomes an event (`h`: its
    /// header, the session resolved through folds).
    fn discover(&mut self, rec: &Record, h: &decode::Header) {
        let Some(g) = self.gate.as_mut() else { return };
        match rec {
            Record::Exec(e) if h.pid == h.session => {
                if let Some(how) = How::from_flags(h.flags) {
                    g.add(h.session, how, h.flags & crate::abi::F_CAND_NESTED != 0);
                    self.sessions.register(h.session, e.argv.join(" "));
                    // its client started before us or since: ancestry up to it
                    self.procs.learn_ancestors(h.pid, e.parent_start_ns);
                }
            }
            Record::Fork { child_pid, .. } => g.member(h.session, *child_pid),
            // a late rejection of a candidate already folded is no news
            Record::ChanReject { byte, .. } if rec.header().session == h.session => g.reject_candidate(
                h.session,
                format!("its stdio began with {:?}, which no JSON-RPC message starts with", *byte as char),
            ),
            _ => {}
        }
    }

    /// Events of folded candidates that joined a confirmed server's tree.
    fn deliver_released(&mut self) {
        let Some(g) = self.gate.as_mut() else { return };
        for (session, mut ev) in g.take_released() {
            if ev.server.is_none() {
                ev.server = self.sessions.context(session, session, &self.procs).map(|c| c.0);
            }
            self.publish(ev, session);
        }
    }

    /// Channel messages of `session`: through discovery, which may confirm
    /// a candidate (its `server_found` line, dated at its first event,
    /// then what it held).
    fn deliver_channel(&mut self, session: u32, h: &decode::Header, evs: Vec<Event>) {
        let Some(g) = self.gate.as_mut() else {
            for ev in evs {
                self.publish(ev, session);
            }
            return;
        };
        let (found, evs) = g.on_channel(session, evs);
        let server = found.as_ref().and_then(|_| self.sessions.context(session, session, &self.procs)).map(|c| c.0);
        if let Some(f) = found {
            let mut line = self.base(h);
            let confirmed_ns = line.ts_ns;
            if let Some(first) = f.first_ns.filter(|&t| t < confirmed_ns) {
                line.ts_ns = first;
                line.ts = self.clock.rfc3339(first);
            }
            line.pid = session;
            line.tid = session;
            if let Some(p) = self.procs.get(session) {
                line.ppid = p.ppid;
                line.comm = p.comm.clone();
            }
            line.exe = self.procs.get(session).and_then(|p| p.exe.clone());
            let after_ms = confirmed_ns.saturating_sub(line.ts_ns) as f64 / 1e6;
            line.body = Body::ServerFound { how: f.how.as_str(), held: f.held, held_lost: f.lost, confirmed_after_ms: after_ms };
            line.server = server.clone();
            self.out.emit(&line);
        }
        for mut ev in evs {
            if ev.server.is_none() {
                ev.server = server.clone();
            }
            self.publish(ev, session);
        }
        self.deliver_released();
    }

    pub fn on_raw(&mut self, raw: &Bytes) {
        self.records += 1;
        match decode::decode(raw) {
            Ok(rec) => self.on_record(rec),
            Err(e) => {
                if self.undecodable == 0 {
                    crate::say!("mcp-sensor: undecodable record: {e} (counting further ones)");
                }
                self.undecodable += 1;
            }
        }
    }

    pub fn on_record(&mut self, rec: Record) {
        let mut h = rec.header().clone();
        let tagged = h.session;
        if let Some(g) = &self.gate {
            h.session = g.resolve(h.session);
        }
        let facts = crate::enforce::RecordFacts::of(&h);
        self.rec = Some(facts); // enforcement
        if self.gate.as_ref().is_some_and(|g| g.is_candidate(h.session) || g.is_rejected(h.session)) && crate::enforce::KernelDecision::from_flags(h.flags).is_some() {
            if self.held_decisions.len() >= MAX_HELD_DECISIONS {
                self.held_decisions_forgotten += self.held_decisions.len() as u64;
                self.held_decisions.clear();
            }
            self.held_decisions.insert((h.pid, h.ts_ns), facts);
        }
        self.procs.observe(h.pid, h.ppid, h.start_ns, &h.comm).session = h.session;
        self.discover(&rec, &h);
        self.deliver_released();
        let body = match rec {
            Record::Fork { child_pid, child_start_ns, .. } => {
                let origin = self.sessions.attribution(h.session);
                self.procs.on_fork(h.pid, child_pid, child_start_ns, origin);
                Body::Fork { child_pid }
            }
            Record::Exec(e) => {
                let dev = crate::abi::kdev_to_user(e.dev);
                let exe_is = self.detect.exe_is.classify(&crate::exe_is::ExecFacts {
                    pid: h.pid,
                    ppid: h.ppid,
                    exe: &e.exe,
                    dev,
                    ino: e.ino,
                    size: Some(e.size),
                    argv: &e.argv,
                    fileless: h.flags & (crate::abi::F_PSEUDO | crate::abi::F_DELETED) != 0,
                    refused: h.flags & crate::abi::F_DENIED != 0,
                });
                let shebang = (h.flags & crate::abi::F_SCRIPT != 0).then_some(e.filename.as_str());
                let is = exe_is.as_ref().map(|x| x.name.as_str());
                let (script, shell_mode, script_writable_by) =
                    crate::shell_run::exec_facts(&e.exe, is, &e.argv, &e.cwd, shebang, true);
                // the table's entry only if it is this parent, not an
                // earlier process with its (recycled) pid
                let parent = self.procs.get(h.ppid).filter(|p| crate::procs::same_start(p.start_ns, e.parent_start_ns));
                let parent_exe = parent.and_then(|p| p.exe.clone()).or_else(|| {
                    std::fs::read_link(format!("/proc/{}/exe", h.ppid)).ok().map(|p| p.display().to_string())
                });
                self.procs.on_exec(h.pid, e.exe.clone(), e.argv.clone());
                Body::Exec {
                    filename: e.filename,
                    argv: e.argv,
                    cwd: e.cwd,
                    script,
                    shell_mode,
                    script_writable_by,
                    parent_exe,
                    dev: dev as u32,
                    ino: e.ino,
                    exe_is,
                    argv_truncated: h.flags & crate::abi::F_ARGV_TRUNC != 0,
                    exe_length: e.exe_length,
                    file_flags: decode::file_flags(h.flags, e.invalid_utf8),
                }
            }
            Record::Exit { status, .. } => {
                self.procs.on_exit(h.pid);
                let (code, signal) = decode::wait_status(status);
                Body::Exit { code, signal }
            }
            Record::ChanReject { .. } => return,
            Record::Open(o) => Body::Open {
                resolved: h.flags & crate::abi::F_UNRESOLVED == 0,
                path: o.path,
                flags: decode::open_flags(o.flags),
                ret: o.ret,
                error: decode::ret_error(o.ret),
                // a failed open has no file; one BPF LSM refused names the file refused
                dev: if o.ret >= 0 || h.flags & crate::abi::F_DENIED != 0 { crate::abi::kdev_to_user(o.dev) as u32 } else { 0 },
                ino: o.ino,
                canonical_path: None, // set by the rule stage (detect: known files)
                path_length: o.path_length,
                syscall: decode::syscall_name(o.syscall),
                file_flags: decode::file_flags(h.flags, o.invalid_utf8),
            },
            Record::Change(c) => crate::fchange::body(*c),
            Record::Ptrace { ret, target, syscall, request, .. } => Body::Ptrace {
                syscall: decode::syscall_name(syscall),
                request: decode::ptrace_request(request),
                target_pid: target,
                ret,
                error: decode::ret_error(ret),
            },
            Record::Connect { ret, addr, via, .. } => connect_body(ret, addr, via),
            Record::IoUring { fd, sq_entries, cq_entries, flags, .. } => {
                Body::IoUringSetup { fd, sq_entries, cq_entries, flags: decode::uring_flags(flags) }
            }
            // a folded candidate's own channel (not MCP): already judged
            Record::Stdio(_) if tagged != h.session => return,
            // a rejected candidate's chunks still in the ring or queue when
            // it was rejected (the rest of the write its verdict came in,
            // writes before the kernel unwatched it): not MCP, and its
            // session is forgotten, so a fresh reassembler would take the
            // offset for a capture gap of an MCP channel (`stdio_gaps`)
            Record::Stdio(_) if self.gate.as_ref().is_some_and(|g| g.is_rejected(h.session)) => return,
            Record::Stdio(s) => {
                let base = self.base(&h);
                let candidate = self.gate.as_ref().is_some_and(|g| g.is_candidate(h.session));
                let evs = self.sessions.on_stdio_of(s, base, &self.procs, candidate);
                self.deliver_channel(h.session, &h, evs);
                return;
            }
        };
        let mut ev = self.base(&h);
        ev.body = body;
        if let Some((server, call)) = self.sessions.context(h.session, h.pid, &self.procs) {
            ev.server = Some(server);
            ev.tool_call = call;
        }
        let exit = matches!(ev.body, Body::Exit { .. });
        self.deliver(h.session, ev);
        if exit {
            if let Some(g) = self.gate.as_mut() {
                g.exited(h.session, h.pid);
            }
            self.deliver_released();
            if h.pid == h.session {
                self.sessions.on_exit(h.session);
            }
        }
    }

    /// Writes `ev` (past its server's budget: counted instead, unless it
    /// raised an alert), then the alerts it raises: the first of each
    /// finding; repeats are counted (aggregate.rs). A response ends its
    /// call's aggregates: their summaries follow.
    fn publish(&mut self, mut ev: Event, session: u32) {
        self.detect.know(&mut ev, session); // known files: `canonical_path`
        let ev = &ev;
        let facts = self.sessions.facts(session, ev.ts_ns).unwrap_or_default();
        // enforcement: the record's kernel decision and whom to kill (an
        // event discovery held back is no longer the current record's);
        // it acts here, before aggregation, so no kill is ever aggregated away
        let held = self.held_decisions.remove(&(ev.pid, ev.ts_ns)).map(|r| crate::enforce::RecordFacts { session, ..r });
        let rec = crate::enforce::RecordFacts::for_event(held.or(self.rec), ev, session, &self.procs);
        self.detect.check_record(ev, facts, Some(&rec), &self.procs, &mut self.alerts);
        self.out.emit_bulk(ev, !self.alerts.is_empty());
        self.export(ev, session);
        let mut alerts = std::mem::take(&mut self.alerts);
        for mut a in alerts.drain(..) {
            if self.agg.offer(&mut a) {
                if self.detect.summary {
                    crate::say!("{}", crate::detect::summary_line(&a));
                }
                self.out.emit(&a);
                self.export(&a, session);
            }
        }
        self.alerts = alerts;
        if let (Body::Rpc(r), Some(s)) = (&ev.body, &ev.server) {
            if r.direction == crate::event::Direction::ServerToClient && matches!(r.message, "response" | "error") {
                if let Some(id) = &r.id {
                    self.agg.call_ended(s.pid, id);
                }
            }
        }
        self.emit_summaries();
    }

    /// Hands a published line to the OTLP export, if on (export/).
    fn export(&mut self, ev: &Event, session: u32) {
        let Some(x) = self.export.as_mut() else { return };
        let protocol_version = self.sessions.session(session).and_then(|s| s.handshake().server_protocol.as_deref());
        x.observe(ev, self.clock.to_unix_ns(ev.ts_ns), &crate::export::RequestFacts { protocol_version });
    }

    fn emit_summaries(&mut self) {
        for s in self.agg.take_ready() {
            self.out.emit(&s);
        }
    }

    /// Once a second: aggregates whose window closed write their summary,
    /// and servers past their budget their `throttle` line.
    pub fn tick(&mut self) {
        self.agg.expire(crate::timefmt::Clock::boot_ns());
        self.emit_summaries();
        self.report_throttled();
    }

    fn report_throttled(&mut self) {
        let Some(b) = self.out.budget.as_mut() else { return };
        let own = Event::own(Body::Fork { child_pid: 0 }, &self.clock);
        for t in b.take_reports(&own) {
            self.out.emit(&t);
        }
    }

    /// An event with the common fields filled in from the header and the
    /// process table; the caller sets `body`.
    fn base(&self, h: &decode::Header) -> Event {
        Event {
            ns_pid: (h.ns_level > 0).then_some(h.ns_pid),
            container: self.places.container(h.cgroup_id, h.pid, h.start_ns),
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
        let held = self.out.budget.as_ref().map_or(0, |b| b.total_events);
        crate::metrics::on_tick(&now, held, self.records);
        if let Some(d) = self.drops.delta(now) {
            self.emit_drops(d);
        }
    }

    /// The run's totals, and with `--enforce` the kernel's enforcement
    /// counts.
    pub fn report_final_drops(&mut self, now: &Totals) {
        // open aggregates and budgets: their last lines before the totals
        self.agg.close_all();
        self.emit_summaries();
        self.report_throttled();
        // open spans end, the queue is exported (bounded wait): what is
        // still unexported is counted below
        if let Some(x) = self.export.as_mut() {
            x.finish(self.clock.to_unix_ns(crate::timefmt::Clock::boot_ns()));
        }
        let mut d = self.drops.total(now);
        d.enforced = self.detect.enforcer.as_ref().map(|e| crate::enforce::named_counts(&e.kernel_counts()));
        let over = self.detect.enforcer.as_ref().map_or(0, |e| e.copies_over_cap);
        let (budget_events, budget_bytes) = self.out.budget.as_ref().map_or((0, 0), |b| (b.total_events, b.total_bytes));
        for (name, n) in [
            ("exe_is_cache_evictions", self.detect.exe_is.evictions),
            ("exec_copies_over_cap", over),
            ("alert_aggregates_evicted", self.agg.evicted),
            ("alert_log_write_failed", self.out.alerts_lost),
            ("server_budget_events", budget_events),
            ("server_budget_bytes", budget_bytes),
        ]
        .into_iter()
        .chain(self.export.as_ref().map(|x| crate::drops::export_drops(&x.stats())).into_iter().flatten())
        {
            if n > 0 {
                d.other.insert(name.into(), n);
            }
        }
        // spans lost only at stop: the periodic lines gave no hint yet
        let export_lost = [crate::drops::EXPORT_FAILED, crate::drops::EXPORT_QUEUE_FULL].iter().any(|k| d.other.contains_key(*k));
        if export_lost && !d.hint.as_deref().unwrap_or("").contains(crate::drops::EXPORT_HINT) {
            d.hint = Some(d.hint.map_or(crate::drops::EXPORT_HINT.to_string(), |h| format!("{h}; {}", crate::drops::EXPORT_HINT)));
        }
        self.emit_drops(d);
    }

    fn emit_drops(&mut self, d: crate::event::Drops) {
        self.emit_own(Body::Drops(d));
    }

    /// At start: `lines` the previous run could not write to this log, its
    /// final totals among them (logfile::take_unwritten).
    pub fn report_unwritten_before(&mut self, lines: u64) {
        let mut d = self.drops.total(&Totals::default());
        d.is_final = false;
        d.other.insert(crate::drops::LOG_WRITE_FAILED_BEFORE.into(), lines);
        d.hint = Some("the previous run could not write these lines, its final totals among them (disk full?)".into());
        self.emit_drops(d);
    }

    /// The `sensor_start` line: the first this sensor writes, and on
    /// stderr the same in one line.
    pub fn emit_start(&mut self, plan: &crate::features::Plan, mode: &'static str) {
        crate::say!("mcp-sensor: {}", plan.summary());
        self.emit_own(Body::SensorStart { version: env!("CARGO_PKG_VERSION"), mode, plan: plan.clone() });
    }

    /// At start (`run`): the time since the previous run on this log
    /// stopped watching (gap.rs).
    pub fn emit_gap(&mut self, prev: &crate::gap::PreviousRun) {
        let now = crate::timefmt::Clock::boot_ns();
        let to_unix = self.clock.to_unix_ns(now);
        let body = Body::Gap {
            from: prev.last_ts.clone(),
            to: self.clock.rfc3339(now),
            unwatched_ms: (to_unix - prev.last_unix_ns).max(0) as f64 / 1e6,
            previous_end: if prev.clean { "clean" } else { "unclean" },
        };
        let mut ev = Event::own(body, &self.clock);
        ev.ts_ns = now;
        ev.ts = self.clock.rfc3339(now);
        self.out.emit(&ev);
        self.out.flush();
    }

    /// A line about the sensor itself (its own pid, no server).
    fn emit_own(&mut self, body: Body) {
        let ev = Event::own(body, &self.clock);
        self.out.emit(&ev);
        self.out.flush();
    }
}

fn connect_body(ret: i32, addr: SockAddr, via: decode::NetVia) -> Body {
    let (family, addr, port, path) = match addr {
        SockAddr::Inet { addr, port } => ("inet".to_string(), Some(addr.to_string()), Some(port), None),
        SockAddr::Inet6 { addr, port } => ("inet6".to_string(), Some(addr.to_string()), Some(port), None),
        SockAddr::Unix { path } => ("unix".to_string(), None, None, Some(path)),
        SockAddr::Other { family } => (format!("af_{family}"), None, None, None),
    };
    Body::Connect {
        family,
        addr,
        port,
        path,
        ret,
        error: decode::ret_error(ret),
        op: via.op_name(),
        hook: via.hook_name(),
        transport: via.transport_name(),
    }
}

#[cfg(test)]
mod tests {
    use crate::abi;
    use crate::correlate::StdioLoss;
    use crate::discover::{Gate, How, KernelAction};
    use crate::pipeline_bench::{pipeline, stdio_record};

    /// A piped `jq`-like process (a candidate by `stdio_pipes`) writes a
    /// short JSON line that is not JSON-RPC and more in the same write: the
    /// kernel captures it in 16 KiB chunks, the agent rejects it on the
    /// first and the second was already in the ring. Seen as a phantom
    /// 16,384-byte `stdio_gaps` with 1 `stdio_messages_damaged` on a host
    /// whose one MCP server lost nothing.
    #[test]
    fn a_rejected_candidates_chunks_in_flight_are_no_capture_gap() {
        let mut p = pipeline(Box::new(std::io::sink()));
        let session = 100; // pipeline_bench's SERVER
        let mut g = Gate::new(16384);
        g.add(session, How::StdioPipes, false);
        p.gate = Some(g);

        let mut first = b"{\"a\":1}\n{\"b\":\"".to_vec();
        first.resize(abi::CHUNK_LARGE, b'x');
        p.on_raw(&stdio_record(abi::DIR_OUT, 0, 1, &first));
        // the agent applies the verdict between two records
        let actions = p.take_kernel_actions();
        assert!(matches!(actions[..], [KernelAction::Unwatch { session: 100, .. }]), "{actions:?}");

        let mut rest = vec![b'x'; 5000];
        rest.extend_from_slice(b"\"}\n");
        p.on_raw(&stdio_record(abi::DIR_OUT, abi::CHUNK_LARGE as u64, 2, &rest));
        assert!(p.take_kernel_actions().is_empty());

        assert_eq!(p.sessions.stdio_loss, StdioLoss::default());
        assert!(p.sessions.session(session).is_none(), "a rejected candidate's session came back");
    }
}
