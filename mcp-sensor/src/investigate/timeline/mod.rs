//! Building the timeline: log lines -> sessions -> calls -> activity.
//!
//! - A session is the events with one `server.pid`; when that pid's own
//!   `exit` was seen and the pid itself acts again, it was reused: a new
//!   session starts. (Processes the old server left behind keep acting
//!   under the old session.)
//! - A call is a client -> server request, matched to the server's
//!   response by id (the latest request with that id still unanswered).
//! - Host activity goes where the sensor put it, never elsewhere: under
//!   the call `tool_call.id` names; under each of the calls in
//!   `tool_call.in_flight` (marked "one of N"); else outside calls.
//! - An alert is attached to the event it carries (the line just before
//!   it), else to the call(s) it names, else to its session.

mod alerts;

use super::describe::describe;
use super::model::*;
use super::read::{Line, Log};
use alerts::alert_of;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};

/// Placed activities remembered for matching alerts to their event.
const RECENT: usize = 256;

#[derive(Clone, Copy)]
enum Loc {
    Call(usize),
    Outside,
}

struct Building {
    s: Session,
    /// id key -> index of the latest call with that id.
    by_id: HashMap<String, usize>,
    exited: bool,
    seen_request: bool,
    recent: VecDeque<Vec<(Loc, usize)>>,
}

/// Builds the report one line at a time, so the lines are never all held.
#[derive(Default)]
pub struct Builder {
    sessions: Vec<Building>,
    current: HashMap<u32, usize>,
    losses: Losses,
    losses_since_final: Losses,
    other_alerts: Vec<Alert>,
}

fn str_of(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

fn pid_of(v: &Value) -> Option<u32> {
    v.get("pid").and_then(Value::as_u64).and_then(|p| u32::try_from(p).ok())
}

fn id_key(id: &Value) -> String {
    id.to_string()
}

fn add_losses(into: &mut Losses, line: &Value) {
    for (field, map) in [("kernel", &mut into.kernel), ("other", &mut into.other)] {
        for (k, n) in line.get(field).and_then(Value::as_object).into_iter().flatten() {
            *map.entry(k.clone()).or_default() += n.as_u64().unwrap_or(0);
        }
    }
    into.queue += line.get("queue").and_then(Value::as_u64).unwrap_or(0);
}

fn activity(ev: &Value, ts_ns: i128) -> Activity {
    let (summary, failed) = describe(ev);
    Activity {
        ts: str_of(ev, "ts").unwrap_or_default(),
        kind: str_of(ev, "kind").unwrap_or_default(),
        pid: pid_of(ev),
        comm: str_of(ev, "comm"),
        exe: str_of(ev, "exe"),
        summary,
        failed,
        in_flight: None,
        after_response: false,
        phase: None,
        alerts: Vec::new(),
        event: serde_json::value::to_raw_value(ev).expect("a parsed line serializes"),
        ts_ns,
    }
}

fn new_call(id: Value) -> Call {
    Call {
        id,
        method: None,
        tool: None,
        arguments: None,
        request_ts: None,
        response_ts: None,
        status: Status::NoResponse,
        result: None,
        is_error: None,
        latency_ms: None,
        truncated: false,
        activity: Vec::new(),
        alerts: Vec::new(),
        start_ns: None,
        end_ns: None,
    }
}

impl Building {
    fn new(server: &Value, pid: u32, instance: u32, ts: &str, ts_ns: i128) -> Building {
        let name = str_of(server, "name").unwrap_or_else(|| format!("pid {pid}"));
        Building {
            s: Session {
                server: Server { name: name.clone(), pid, names: vec![name], instance },
                start: ts.to_string(),
                end: ts.to_string(),
                exit: None,
                calls: Vec::new(),
                outside: Vec::new(),
                notifications: 0,
                alerts: 0,
                start_ns: ts_ns,
                end_ns: ts_ns,
            },
            by_id: HashMap::new(),
            exited: false,
            seen_request: false,
            recent: VecDeque::new(),
        }
    }

    /// The call with `id`, created from what `named` (a `tool_call` or an
    /// `in_flight` entry) says when the request is not in the logs.
    fn call_for(&mut self, id: &Value, named: &Value) -> usize {
        if let Some(&i) = self.by_id.get(&id_key(id)) {
            return i;
        }
        let mut call = new_call(id.clone());
        call.method = str_of(named, "method");
        call.tool = str_of(named, "tool").or_else(|| str_of(named, "name").filter(|_| call.method.as_deref() == Some("tools/call")));
        call.arguments = named.get("arguments").cloned();
        self.s.calls.push(call);
        self.by_id.insert(id_key(id), self.s.calls.len() - 1);
        self.s.calls.len() - 1
    }

    fn phase(&self) -> &'static str {
        match (self.exited, self.seen_request) {
            (true, _) => "after_exit",
            (false, false) => "startup",
            (false, true) => "between_calls",
        }
    }

    fn remember(&mut self, locs: Vec<(Loc, usize)>) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(locs);
    }

    /// Puts a host event where its `tool_call` says.
    fn place(&mut self, ev: &Value, ts_ns: i128) {
        let tc = ev.get("tool_call").filter(|t| t.is_object());
        let listed: Vec<Value> = tc
            .and_then(|t| t.get("in_flight"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut locs = Vec::new();
        match tc {
            Some(t) if t.get("id").is_some_and(|id| !id.is_null()) => {
                let c = self.call_for(&t["id"], t);
                locs.push(self.push_call(c, activity(ev, ts_ns)));
            }
            Some(_) if !listed.is_empty() => {
                let ids: Vec<Value> = listed.iter().map(|r| r.get("id").cloned().unwrap_or(Value::Null)).collect();
                for r in &listed {
                    let c = self.call_for(r.get("id").unwrap_or(&Value::Null), r);
                    let mut a = activity(ev, ts_ns);
                    a.in_flight = Some(ids.clone());
                    locs.push(self.push_call(c, a));
                }
            }
            _ => {
                let mut a = activity(ev, ts_ns);
                a.phase = Some(self.phase());
                self.s.outside.push(a);
                locs.push((Loc::Outside, self.s.outside.len() - 1));
            }
        }
        self.remember(locs);
    }

    fn push_call(&mut self, c: usize, mut a: Activity) -> (Loc, usize) {
        let call = &mut self.s.calls[c];
        a.after_response = call.end_ns.is_some_and(|end| a.ts_ns > end);
        call.activity.push(a);
        (Loc::Call(c), call.activity.len() - 1)
    }

    fn on_rpc(&mut self, ev: &Value, ts_ns: i128) {
        let dir = ev.get("direction").and_then(Value::as_str);
        let msg = ev.get("message").and_then(Value::as_str);
        let id = ev.get("id").cloned().unwrap_or(Value::Null);
        match (dir, msg) {
            (Some("client_to_server"), Some("request")) => {
                self.seen_request = true;
                let mut call = new_call(id.clone());
                call.method = str_of(ev, "method");
                call.tool = str_of(ev, "tool");
                call.arguments = ev.get("arguments").cloned();
                call.request_ts = str_of(ev, "ts");
                call.start_ns = Some(ts_ns);
                call.truncated = ev.get("truncated") == Some(&Value::Bool(true));
                self.s.calls.push(call);
                if !id.is_null() {
                    self.by_id.insert(id_key(&id), self.s.calls.len() - 1);
                }
            }
            (Some("server_to_client"), Some("response" | "error")) => {
                let open = self.by_id.get(&id_key(&id)).copied().filter(|&i| self.s.calls[i].response_ts.is_none());
                let c = match open {
                    Some(c) => c,
                    None => {
                        self.by_id.remove(&id_key(&id));
                        self.call_for(&id, ev)
                    }
                };
                let call = &mut self.s.calls[c];
                call.response_ts = str_of(ev, "ts");
                call.end_ns = Some(ts_ns);
                call.result = str_of(ev, "result");
                call.is_error = ev.get("is_error").and_then(Value::as_bool);
                call.latency_ms = ev.get("latency_ms").and_then(Value::as_f64);
                call.status = if msg == Some("error") || call.is_error == Some(true) { Status::Error } else { Status::Ok };
                if call.start_ns.is_none() {
                    call.start_ns = call.latency_ms.map(|ms| ts_ns - (ms * 1e6) as i128);
                }
            }
            (dir, Some("notification")) => {
                self.s.notifications += 1;
                // the client giving up on a request it sent
                if let (Some("client_to_server"), Some(rid)) = (dir, ev.get("request_id")) {
                    if let Some(&c) = self.by_id.get(&id_key(rid)) {
                        let call = &mut self.s.calls[c];
                        if call.response_ts.is_none() {
                            call.status = Status::Cancelled;
                        }
                    }
                }
            }
            // the server asking the client (sampling, roots, elicitation)
            (Some("server_to_client"), Some("request")) => self.place(ev, ts_ns),
            _ => {}
        }
    }
}

impl Builder {
    /// The session a line of server `pid` belongs to, starting a new one
    /// on first sight or when the pid was reused.
    fn session(&mut self, server: &Value, pid: u32, line: &Value, ts_ns: i128) -> &mut Building {
        let ts = line.get("ts").and_then(Value::as_str).unwrap_or_default();
        let reused = self.current.get(&pid).is_some_and(|&i| {
            self.sessions[i].exited && pid_of(line) == Some(pid) && line.get("kind").and_then(Value::as_str) != Some("alert")
        });
        let index = match self.current.get(&pid) {
            Some(&i) if !reused => i,
            _ => {
                let instance = self.sessions.iter().filter(|b| b.s.server.pid == pid).count() as u32 + 1;
                self.sessions.push(Building::new(server, pid, instance, ts, ts_ns));
                self.current.insert(pid, self.sessions.len() - 1);
                self.sessions.len() - 1
            }
        };
        let b = &mut self.sessions[index];
        if let Some(name) = server.get("name").and_then(Value::as_str) {
            if b.s.server.name != name {
                b.s.server.name = name.to_string();
                if !b.s.server.names.iter().any(|n| n == name) {
                    b.s.server.names.push(name.to_string());
                }
            }
        }
        // a session's start is its first event, wherever the log put it
        // (discovery writes a server's held start-up after its verdict)
        if ts_ns < b.s.start_ns {
            b.s.start_ns = ts_ns;
            b.s.start = ts.to_string();
        }
        if ts_ns >= b.s.end_ns {
            b.s.end_ns = ts_ns;
            b.s.end = ts.to_string();
        }
        b
    }

    fn on_line(&mut self, line: &Value, ts_ns: i128) {
        let kind = line.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind == "drops" {
            if line.get("final") == Some(&Value::Bool(true)) {
                add_losses(&mut self.losses, line);
                self.losses_since_final = Losses::default();
            } else {
                add_losses(&mut self.losses_since_final, line);
            }
            return;
        }
        let server = line.get("server").filter(|s| s.is_object());
        let Some((server, pid)) = server.and_then(|s| Some((s, pid_of(s)?))) else {
            if kind == "alert" {
                self.other_alerts.push(alert_of(line));
            }
            return;
        };
        let b = self.session(server, pid, line, ts_ns);
        match kind {
            "rpc" => b.on_rpc(line, ts_ns),
            "alert" => b.on_alert(line, ts_ns),
            _ => {
                b.place(line, ts_ns);
                if kind == "exit" && pid_of(line) == Some(pid) {
                    b.exited = true;
                    b.s.exit = Some(Exit {
                        ts: str_of(line, "ts").unwrap_or_default(),
                        code: line.get("code").and_then(Value::as_i64),
                        signal: line.get("signal").and_then(Value::as_i64),
                    });
                }
            }
        }
    }
}

impl Builder {
    pub fn add(&mut self, line: &Line) {
        self.on_line(&line.value, line.ts_ns);
    }

    /// The report of the lines added; `log` says what was read.
    pub fn finish(self, log: &Log) -> Report {
        build(self, log)
    }
}

/// Reads `paths` into a report, line by line: memory holds the report,
/// never the parsed log (see docs/investigate.md, "Memory").
pub fn read(paths: &[std::path::PathBuf]) -> anyhow::Result<(Report, Log)> {
    let mut b = Builder::default();
    let log = Log::read(paths, |l| b.add(&l))?;
    let report = b.finish(&log);
    Ok((report, log))
}

fn build(mut b: Builder, log: &Log) -> Report {
    let pending = std::mem::take(&mut b.losses_since_final);
    add_losses(&mut b.losses, &serde_json::to_value(&pending).unwrap_or_default());
    let mut sessions: Vec<Session> = b.sessions.into_iter().map(|s| s.s).collect();
    sessions.sort_by_key(|s| s.start_ns);
    Report {
        sources: log.sources.clone(),
        losses: b.losses,
        sessions,
        other_alerts: b.other_alerts,
        filters: None,
    }
}
