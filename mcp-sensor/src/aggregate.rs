//! Alert aggregation: one alert line per finding. Owns the open aggregates
//! between the rule stage (detect.rs) and the output.
//!
//! A finding is (rule, action, server, tool call, subject): the subject is
//! what makes the finding (the executable of an exec; the path of an open
//! or the destination of a connect, with the program that did it; see
//! [`subject`]). Its first occurrence is
//! written at once as an `alert` line with an `alert_id` (latency matters to
//! whoever acts on it). Later occurrences are counted, never written one
//! by one and never dropped: an `alert_summary` line names the `alert_id`
//! and gives the count and the first and last time, when
//! - the tool call ends (the server's response or error to its id),
//! - the window closes (`window_ns` after the first occurrence; a repeat
//!   after that opens a new aggregate, so a new alert line),
//! - the aggregate is evicted to keep at most `max_open` open (counted in
//!   `evicted`),
//! - the sensor stops.
//!
//! Nothing is written for an aggregate without repeats: its alert line
//! says everything. Enforcement has acted before an alert gets here
//! (detect.rs), so aggregation never suppresses a kill or a refusal; the
//! action and `decided_by` are in the key, so kills are counted apart from
//! reports, and kernel kills apart from the agent's.
//!
//! Pure: times are the events' boot-time ns; the caller says when.

use crate::event::{AlertSummary, Body, Event, ServerRef, ToolCallRef};
use std::collections::HashMap;

/// Open aggregates at most, by default.
pub const MAX_OPEN: usize = 4096;
/// The aggregation window, by default: 30 s from the first occurrence.
pub const WINDOW_NS: u64 = 30_000_000_000;
/// Distinct pids an aggregate lists at most.
const MAX_PIDS: usize = 64;

/// What makes two alerts the same finding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    rule: String,
    action: &'static str,
    /// Enforcement: who stopped it (a kernel kill and an agent kill of the
    /// same program are two findings: each says how it was stopped).
    decided_by: Option<&'static str>,
    /// The server's root pid; 0: none.
    server: u32,
    /// The tool call: its id as JSON text, `in_flight:<ids>` when several
    /// were in flight, empty when none.
    call: String,
    subject: String,
}

#[derive(Debug)]
struct Open {
    id: String,
    /// Opening order: the oldest is evicted first.
    seq: u64,
    severity: &'static str,
    count: u64,
    first_ns: u64,
    first_ts: String,
    last_ns: u64,
    last_ts: String,
    pids: Vec<u32>,
    pids_more: u64,
    /// The first alert's line fields, for the summary line.
    pid: u32,
    ppid: u32,
    uid: u32,
    comm: String,
    exe: Option<String>,
    server: Option<ServerRef>,
    tool_call: Option<ToolCallRef>,
}

pub struct Aggregator {
    open: HashMap<Key, Open>,
    window_ns: u64,
    max_open: usize,
    /// Prefix of every `alert_id` of this run (the run's start, hex).
    run: String,
    next: u64,
    /// Summaries due, in order; taken by the caller.
    ready: Vec<Event>,
    /// Aggregates closed early to make room (their summary was written).
    pub evicted: u64,
    /// Occurrences counted into an earlier alert instead of a line.
    pub repeats: u64,
}

impl Aggregator {
    /// `run_ns`: names this run in `alert_id`s (the sensor's start).
    pub fn new(run_ns: u64, window_ns: u64, max_open: usize) -> Self {
        Aggregator {
            open: HashMap::new(),
            window_ns,
            max_open: max_open.max(1),
            run: format!("{run_ns:x}"),
            next: 0,
            ready: Vec::new(),
            evicted: 0,
            repeats: 0,
        }
    }

    /// An alert from the rule stage. `true`: write it (the first of its
    /// finding; its `alert_id` is set). `false`: a repeat, counted.
    pub fn offer(&mut self, alert: &mut Event) -> bool {
        let Body::Alert(a) = &mut alert.body else { return true };
        let key = Key {
            rule: a.rule.clone(),
            action: a.action,
            decided_by: a.decided_by,
            server: alert.server.as_ref().map_or(0, |s| s.pid),
            call: call_key(alert.tool_call.as_ref()),
            subject: subject(&a.event),
        };
        let (ts_ns, pid) = (a.event.ts_ns, a.event.pid);
        if let Some(o) = self.open.get_mut(&key) {
            if ts_ns.saturating_sub(o.first_ns) < self.window_ns {
                o.count += 1;
                if ts_ns >= o.last_ns {
                    o.last_ns = ts_ns;
                    o.last_ts = a.event.ts.clone();
                }
                if !o.pids.contains(&pid) {
                    if o.pids.len() < MAX_PIDS {
                        o.pids.push(pid);
                    } else {
                        o.pids_more += 1;
                    }
                }
                a.alert_id = o.id.clone();
                self.repeats += 1;
                return false;
            }
            let o = self.open.remove(&key).expect("present");
            self.close(key.clone(), o, "window");
        }
        if self.open.len() >= self.max_open {
            if let Some(k) = self.open.iter().min_by_key(|(_, o)| o.seq).map(|(k, _)| k.clone()) {
                let o = self.open.remove(&k).expect("present");
                self.evicted += 1;
                self.close(k, o, "evicted");
            }
        }
        self.next += 1;
        a.alert_id = format!("{}-{}", self.run, self.next);
        let o = Open {
            id: a.alert_id.clone(),
            seq: self.next,
            severity: a.severity,
            count: 1,
            first_ns: ts_ns,
            first_ts: a.event.ts.clone(),
            last_ns: ts_ns,
            last_ts: a.event.ts.clone(),
            pids: vec![pid],
            pids_more: 0,
            pid: alert.pid,
            ppid: alert.ppid,
            uid: alert.uid,
            comm: alert.comm.clone(),
            exe: alert.exe.clone(),
            server: alert.server.clone(),
            tool_call: alert.tool_call.clone(),
        };
        self.open.insert(key, o);
        true
    }

    /// The tool call `id` of server `server` (root pid) ended: its
    /// aggregates close.
    pub fn call_ended(&mut self, server: u32, id: &serde_json::Value) {
        let call = id.to_string();
        self.close_where(|k, _| k.server == server && k.call == call, "tool_call_end");
    }

    /// Closes the aggregates whose window ended by `now_ns` (boot ns).
    pub fn expire(&mut self, now_ns: u64) {
        let w = self.window_ns;
        self.close_where(|_, o| now_ns.saturating_sub(o.first_ns) >= w, "window");
    }

    /// Closes every aggregate (the sensor stops).
    pub fn close_all(&mut self) {
        self.close_where(|_, _| true, "shutdown");
    }

    /// Summary lines due, oldest aggregate first.
    pub fn take_ready(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.ready)
    }

    /// Aggregates open now.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    fn close_where(&mut self, pred: impl Fn(&Key, &Open) -> bool, reason: &'static str) {
        let keys: Vec<Key> = self.open.iter().filter(|(k, o)| pred(k, o)).map(|(k, _)| k.clone()).collect();
        let mut closing: Vec<(Key, Open)> = keys.into_iter().map(|k| { let o = self.open.remove(&k).expect("present"); (k, o) }).collect();
        closing.sort_by_key(|(_, o)| o.seq);
        for (k, o) in closing {
            self.close(k, o, reason);
        }
    }

    fn close(&mut self, k: Key, o: Open, reason: &'static str) {
        if o.count < 2 {
            return;
        }
        self.ready.push(Event {
            ts: o.last_ts.clone(),
            ts_ns: o.last_ns,
            pid: o.pid,
            tid: o.pid,
            ppid: o.ppid,
            uid: o.uid,
            comm: o.comm,
            exe: o.exe,
            ns_pid: None,
            container: None,
            body: Body::AlertSummary(Box::new(AlertSummary {
                alert_id: o.id,
                rule: k.rule,
                severity: o.severity,
                action: k.action,
                subject: k.subject,
                count: o.count,
                first_ts: o.first_ts,
                last_ts: o.last_ts,
                reason,
                pids: o.pids,
                pids_more: o.pids_more,
            })),
            server: o.server,
            tool_call: o.tool_call,
        });
    }
}

fn call_key(c: Option<&ToolCallRef>) -> String {
    match c {
        Some(ToolCallRef { id: Some(id), .. }) => id.to_string(),
        Some(c) if !c.in_flight.is_empty() => {
            let ids: Vec<String> = c.in_flight.iter().map(|r| r.id.to_string()).collect();
            format!("in_flight:{}", ids.join(","))
        }
        _ => String::new(),
    }
}

/// What makes the finding, of the event an alert is on: `exec <exe>
/// [<script>]` (the program, not its arguments: a process that execs
/// itself with a new counter is one finding); for everything else what was
/// reached and by which program: `open <path> by <exe>` (the name opened:
/// another name of a known file is its own finding), `connect
/// <addr>:<port> by <exe>` or `<path>`, `<op> <path> by <exe>` for
/// changes, `rpc <method> <tool>`, else the kind.
pub fn subject(ev: &Event) -> String {
    let by = ev.exe.as_deref().unwrap_or(&ev.comm);
    match &ev.body {
        Body::Exec { filename, script, .. } => {
            let exe = ev.exe.as_deref().unwrap_or(filename);
            match script {
                Some(s) => format!("exec {exe} {s}"),
                None => format!("exec {exe}"),
            }
        }
        Body::Open { path, .. } => format!("open {path} by {by}"),
        Body::Connect { addr: Some(a), port, .. } => format!("connect {a}:{} by {by}", port.unwrap_or(0)),
        Body::Connect { path: Some(p), .. } => format!("connect {p} by {by}"),
        Body::Connect { family, .. } => format!("connect {family} by {by}"),
        Body::Rpc(r) => format!("rpc {} {}", r.method.as_deref().unwrap_or(r.message), r.tool.as_deref().unwrap_or("")),
        Body::Ptrace { target_pid, syscall, .. } => format!("{syscall} {target_pid} by {by}"),
        Body::Malformed { reason, .. } => format!("malformed {reason}"),
        b => match b.change() {
            Some(c) => format!("{} {} by {by}", c.op, c.path),
            None => serde_json::to_value(b).ok().and_then(|v| v["kind"].as_str().map(str::to_string)).unwrap_or_default(),
        },
    }
}

#[cfg(test)]
#[path = "aggregate_tests.rs"]
mod tests;
