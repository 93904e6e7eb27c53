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
mod by_id;
mod recent;

use super::describe::describe;
use super::lines::LineRef;
use super::model::*;
use super::read::{Line, Log};
use alerts::alert_of;
use by_id::ById;
use recent::{loc, Loc, Recent, OUTSIDE};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::cell::RefCell;
use std::rc::Rc;

struct Building {
    s: Session,
    /// id -> index of the latest call with that id.
    by_id: ById,
    exited: bool,
    seen_request: bool,
    /// Where the last events placed went, to match alerts to them.
    recent: Recent,
    /// One shared string per event kind, method and tool name, for all
    /// sessions (the [`Builder`]'s).
    words: Words,
}

type Words = Rc<RefCell<HashSet<Word>>>;

/// Builds the report one line at a time, so the lines are never all held.
#[derive(Default)]
pub struct Builder {
    /// Boxed: a `Building` is a few hundred bytes, and the vector's
    /// growth slack would be as many per session.
    #[allow(clippy::vec_box)]
    sessions: Vec<Box<Building>>,
    current: HashMap<u32, usize>,
    words: Words,
    losses: Losses,
    losses_since_final: Losses,
    other_alerts: Vec<Alert>,
    /// Counts of alerts' findings by `alert_id` (a summary may be read
    /// before its alert: the alerts log is read after the event log).
    repeats: HashMap<String, Rc<Repeats>>,
}

fn str_of(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

fn pid_of(v: &Value) -> Option<u32> {
    v.get("pid").and_then(Value::as_u64).and_then(|p| u32::try_from(p).ok())
}

fn add_losses(into: &mut Losses, line: &Value) {
    for (field, map) in [("kernel", &mut into.kernel), ("other", &mut into.other)] {
        for (k, n) in line.get(field).and_then(Value::as_object).into_iter().flatten() {
            *map.entry(k.clone()).or_default() += n.as_u64().unwrap_or(0);
        }
    }
    into.queue += line.get("queue").and_then(Value::as_u64).unwrap_or(0);
}

fn new_call(id: Value) -> Call {
    Call {
        id,
        method: None,
        tool: None,
        status: Status::NoResponse,
        truncated: false,
        request: None,
        named: None,
        response: None,
        activity: Vec::new(),
        alerts: Alerts::default(),
        start_ns: None,
        end_ns: None,
    }
}

/// Where a call without its request was named: the line at `.0` (its time
/// `.1`), and the part of it (`.2`) whose `named` it is.
type NamedAt = (LineRef, i128, Named);

impl Building {
    fn new(server: &Value, pid: u32, instance: u32, ts: &str, ts_ns: i128, words: Words) -> Building {
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
            by_id: ById::default(),
            exited: false,
            seen_request: false,
            recent: Recent::default(),
            words,
        }
    }

    /// Frees what only placing more lines needs.
    fn retire(&mut self) {
        self.by_id = ById::default();
        self.recent = Recent::default();
    }

    /// One shared copy of `text`.
    fn word(&mut self, text: &str) -> Word {
        let mut words = self.words.borrow_mut();
        match words.get(text) {
            Some(w) => w.clone(),
            None => {
                let w = Word::from(text);
                words.insert(w.clone());
                w
            }
        }
    }

    fn word_of(&mut self, v: &Value, k: &str) -> Option<Word> {
        v.get(k).and_then(Value::as_str).map(|t| self.word(t))
    }

    /// The call with `id`, created from what `named` (a `tool_call` or an
    /// `in_flight` entry, found where `at` says) says when the request is
    /// not in the logs.
    fn call_for(&mut self, id: &Value, named: &Value, at: NamedAt) -> usize {
        if let Some(i) = self.by_id.get(id) {
            return i;
        }
        let mut call = new_call(id.clone());
        call.method = self.word_of(named, "method");
        call.tool = self.word_of(named, "tool");
        if call.tool.is_none() && call.method.as_deref() == Some("tools/call") {
            call.tool = self.word_of(named, "name");
        }
        call.named = Some(Box::new(at));
        self.s.calls.push(call);
        self.by_id.insert(id, self.s.calls.len() - 1);
        self.s.calls.len() - 1
    }

    fn phase(&self) -> Phase {
        match (self.exited, self.seen_request) {
            (true, _) => Phase::AfterExit,
            (false, false) => Phase::Startup,
            (false, true) => Phase::BetweenCalls,
        }
    }

    /// The activity of event `ev`, read from the line at `at` (from the
    /// alert line there when `in_alert`) at `ts_ns`.
    fn activity(&mut self, ev: &Value, at: LineRef, ts_ns: i128, in_alert: bool) -> Activity {
        let kind = self.word(ev.get("kind").and_then(Value::as_str).unwrap_or_default());
        let mut a = Activity::new(at, ts_ns, kind, pid_of(ev));
        a.set_failed(describe(ev).1);
        a.set_in_alert(in_alert);
        a
    }

    /// Puts a host event, the line at `at`, where its `tool_call` says.
    fn place(&mut self, ev: &Value, at: LineRef, ts_ns: i128) {
        let tc = ev.get("tool_call").filter(|t| t.is_object());
        let listed: Vec<Value> = tc
            .and_then(|t| t.get("in_flight"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut locs = Vec::new();
        match tc {
            Some(t) if t.get("id").is_some_and(|id| !id.is_null()) => {
                let c = self.call_for(&t["id"], t, (at, ts_ns, Named::ToolCall));
                let a = self.activity(ev, at, ts_ns, false);
                locs.push(self.push_call(c, a));
            }
            Some(_) if !listed.is_empty() => {
                let ids: Vec<Value> = listed.iter().map(|r| r.get("id").cloned().unwrap_or(Value::Null)).collect();
                let mut a = self.activity(ev, at, ts_ns, false);
                a.set_in_flight(Rc::new(ids));
                for (n, r) in listed.iter().enumerate() {
                    let c = self.call_for(r.get("id").unwrap_or(&Value::Null), r, (at, ts_ns, Named::InFlight(n)));
                    locs.push(self.push_call(c, a.clone()));
                }
            }
            _ => {
                let mut a = self.activity(ev, at, ts_ns, false);
                a.phase = Some(self.phase());
                self.s.outside.push(a);
                locs.push(loc(OUTSIDE as usize, self.s.outside.len() - 1));
            }
        }
        self.recent.remember(ev, locs);
    }

    fn push_call(&mut self, c: usize, mut a: Activity) -> Loc {
        let call = &mut self.s.calls[c];
        a.set_after_response(call.end_ns.is_some_and(|end| a.ts_ns() > end));
        call.activity.push(a);
        loc(c, call.activity.len() - 1)
    }

    fn on_rpc(&mut self, ev: &Value, at: LineRef, ts_ns: i128) {
        let dir = ev.get("direction").and_then(Value::as_str);
        let msg = ev.get("message").and_then(Value::as_str);
        let id = ev.get("id").cloned().unwrap_or(Value::Null);
        match (dir, msg) {
            (Some("client_to_server"), Some("request")) => {
                self.seen_request = true;
                let mut call = new_call(id.clone());
                call.method = self.word_of(ev, "method");
                call.tool = self.word_of(ev, "tool");
                call.request = Some(at);
                call.start_ns = Some(ts_ns);
                call.truncated = ev.get("truncated") == Some(&Value::Bool(true));
                self.s.calls.push(call);
                if !id.is_null() {
                    self.by_id.insert(&id, self.s.calls.len() - 1);
                }
            }
            (Some("server_to_client"), Some("response" | "error")) => {
                let open = self.by_id.get(&id).filter(|&i| self.s.calls[i].response.is_none());
                let c = match open {
                    Some(c) => c,
                    None => {
                        self.by_id.remove(&id);
                        self.call_for(&id, ev, (at, ts_ns, Named::Line))
                    }
                };
                let call = &mut self.s.calls[c];
                call.response = Some(at);
                call.end_ns = Some(ts_ns);
                let is_error = ev.get("is_error").and_then(Value::as_bool);
                call.status = if msg == Some("error") || is_error == Some(true) { Status::Error } else { Status::Ok };
                if call.start_ns.is_none() {
                    call.start_ns = ev.get("latency_ms").and_then(Value::as_f64).map(|ms| ts_ns - (ms * 1e6) as i128);
                }
                // most of a call's activity comes before its response
                call.activity.shrink_to_fit();
            }
            (dir, Some("notification")) => {
                self.s.notifications += 1;
                // the client giving up on a request it sent
                if let (Some("client_to_server"), Some(rid)) = (dir, ev.get("request_id")) {
                    if let Some(c) = self.by_id.get(rid) {
                        let call = &mut self.s.calls[c];
                        if call.response.is_none() {
                            call.status = Status::Cancelled;
                        }
                    }
                }
            }
            // the server asking the client (sampling, roots, elicitation)
            (Some("server_to_client"), Some("request")) => self.place(ev, at, ts_ns),
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
            previous => {
                if let Some(&old) = previous {
                    // no line goes to the old session again
                    self.sessions[old].retire();
                }
                let instance = self.sessions.iter().filter(|b| b.s.server.pid == pid).count() as u32 + 1;
                self.sessions.push(Box::new(Building::new(server, pid, instance, ts, ts_ns, self.words.clone())));
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

    fn on_line(&mut self, line: &Value, at: LineRef, ts_ns: i128) {
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
        if kind == "alert_summary" {
            alerts::on_summary(line, &self.repeats_of(line));
            return;
        }
        let repeats = if kind == "alert" { self.repeats_of(line) } else { Rc::default() };
        let server = line.get("server").filter(|s| s.is_object());
        let Some((server, pid)) = server.and_then(|s| Some((s, pid_of(s)?))) else {
            if kind == "alert" {
                self.other_alerts.push(alert_of(line, at, ts_ns, repeats));
            }
            return;
        };
        let b = self.session(server, pid, line, ts_ns);
        match kind {
            "rpc" => b.on_rpc(line, at, ts_ns),
            "alert" => b.on_alert(line, at, ts_ns, repeats),
            _ => {
                b.place(line, at, ts_ns);
                if kind == "exit" && pid_of(line) == Some(pid) {
                    b.exited = true;
                    // the server is gone: few events will follow, so the
                    // vectors' growth slack is given back
                    b.s.calls.shrink_to_fit();
                    b.s.outside.shrink_to_fit();
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
    /// The count shared by an alert line and its summaries (by `alert_id`;
    /// a line without one: its own).
    fn repeats_of(&mut self, line: &Value) -> Rc<Repeats> {
        match line.get("alert_id").and_then(Value::as_str) {
            Some(id) => self.repeats.entry(id.to_string()).or_default().clone(),
            None => Rc::default(),
        }
    }

    pub fn add(&mut self, line: &Line) {
        self.on_line(&line.value, line.at, line.ts_ns);
    }

    /// The report of the lines added; `log` says what was read.
    pub fn finish(self, log: &Log) -> Report {
        build(self, log)
    }
}

/// Reads `paths` into a report, line by line: memory holds the report,
/// never the parsed log, and the report holds where host events and alerts
/// are, not their lines (see docs/investigate.md, "Memory").
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
