//! The investigation's data: sessions -> calls -> activity, as built from
//! the log by `timeline/`, narrowed by `filter.rs`, and printed by the
//! renderers. Host events and alerts are held as references to their lines
//! (`lines.rs`); `shown.rs` serialises the report with those lines read
//! back, for `--format json` (docs/investigate.md documents the structure)
//! and the `--html` page.

use serde::Serialize;
use super::lines::LineRef;
pub use super::word::Word;
use serde_json::Value;
use std::rc::Rc;

/// Everything an investigation shows.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The files read, oldest first, with what was wrong in them.
    pub sources: Vec<super::read::Source>,
    /// Events the sensor lost while writing these logs (from `drops` lines).
    pub losses: Losses,
    pub sessions: Vec<Session>,
    /// Alerts about processes outside any server's tree.
    pub other_alerts: Vec<Alert>,
    /// The filters applied, as given (`null` when none).
    pub filters: Option<Value>,
}

/// Sum of the sensor's loss reports.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Losses {
    /// Ring-buffer reserves that failed in the kernel, per event kind.
    pub kernel: std::collections::BTreeMap<String, u64>,
    /// Records the agent's queue had no room for.
    pub queue: u64,
    /// Other losses (capture caps, stash map full), by name.
    pub other: std::collections::BTreeMap<String, u64>,
}

impl Losses {
    pub fn is_empty(&self) -> bool {
        self.queue == 0 && self.kernel.values().all(|&n| n == 0) && self.other.values().all(|&n| n == 0)
    }
}

/// One server instance: the events whose `server.pid` is this pid, until
/// that pid exits and is seen again (pid reuse starts a new session).
#[derive(Debug, Clone)]
pub struct Session {
    pub server: Server,
    /// First and last event of the session (RFC 3339).
    pub start: String,
    pub end: String,
    /// The server's root process exit, when logged.
    pub exit: Option<Exit>,
    /// Client requests in the order they were read.
    pub calls: Vec<Call>,
    /// Host activity no request was in flight for: start-up, between
    /// calls, after exit (see [`Activity::phase`]).
    pub outside: Vec<Activity>,
    /// JSON-RPC notifications seen in either direction.
    pub notifications: u64,
    /// Alerts anywhere in the session.
    pub alerts: u64,
    pub start_ns: i128,
    pub end_ns: i128,
}

#[derive(Debug, Clone, Serialize)]
pub struct Server {
    /// The last name seen: the handshake's `serverInfo.name` once known,
    /// before that the command line.
    pub name: String,
    pub pid: u32,
    /// Every name the session was known by, first first.
    pub names: Vec<String>,
    /// 1 for the first session of this pid in the logs, 2 after pid reuse...
    pub instance: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Exit {
    pub ts: String,
    pub code: Option<i64>,
    pub signal: Option<i64>,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Answered with a result that is not an error.
    Ok,
    /// Answered with a JSON-RPC error or a tool result with `isError`.
    Error,
    /// No response in the logs, and the client cancelled it
    /// (`notifications/cancelled` naming its id).
    Cancelled,
    /// No response in the logs (still running, or the server died).
    NoResponse,
}

/// One client -> server request and its response: what filters and
/// ordering need, and where its lines are. Its arguments, times, result
/// and latency are read back from them when rendered
/// ([`super::shown::CallText`]).
#[derive(Debug, Clone)]
pub struct Call {
    /// The JSON-RPC id (`null` when a cut message lost it).
    pub id: Value,
    pub method: Option<Word>,
    /// The tool of a `tools/call`.
    pub tool: Option<Word>,
    pub status: Status,
    /// The request was longer than the sensor keeps: arguments may be cut.
    pub truncated: bool,
    /// The request's line, at [`Self::start_ns`]; `None` when it is not in
    /// the logs (the call is known from its response or activity).
    pub request: Option<LineRef>,
    /// Without a request: the line that named the call first, at its time,
    /// and where in it (its method, tool and arguments are shown). Boxed:
    /// most calls have their request, and the report holds every call.
    pub named: Option<Box<(LineRef, i128, Named)>>,
    /// The response's (or error's) line, at [`Self::end_ns`].
    pub response: Option<LineRef>,
    /// Host activity attributed to this call, in log order.
    pub activity: Vec<Activity>,
    /// Alerts on this call or on its activity.
    pub alerts: Alerts,
    pub start_ns: Option<i128>,
    pub end_ns: Option<i128>,
}

/// Where in a line a call without its request is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    /// The line itself (a response).
    Line,
    /// Its `tool_call`.
    ToolCall,
    /// Entry `n` of its `tool_call.in_flight`.
    InFlight(usize),
}

impl Call {
    /// The tool for `tools/call`, else the method.
    pub fn label(&self) -> &str {
        self.tool.as_deref().or(self.method.as_deref()).unwrap_or("?")
    }
}

/// One host event (exec, open, connect, fork, exit, malformed, ...): what
/// ordering, filtering and grouping need, and where its line is. What is
/// said of it (time text, comm, exe, summary, the line itself) is read
/// back from the line when rendered ([`super::shown`]): a report holds
/// one of these per host event, so it holds no text of them, in 48 bytes
/// (flags and the pid packed, rare things behind one pointer).
#[derive(Debug, Clone)]
pub struct Activity {
    /// The event's line; with [`Self::in_alert`], the alert line carrying it.
    pub line: LineRef,
    /// [`Self::ts_ns`] when it fits (years 1677 to 2262), else in `more`.
    ts: i64,
    /// The event's `kind` (one shared string per kind).
    pub kind: Word,
    /// Its alerts, in-flight ids, and a time past `ts`: almost every event
    /// has none of them.
    more: Option<Box<More>>,
    /// [`Self::pid`] when [`PID`] is set.
    pid: u32,
    flags: u8,
    /// Outside calls: when it happened.
    pub phase: Option<Phase>,
}

// Activity::flags
const PID: u8 = 1;
const FAILED: u8 = 2;
const AFTER_RESPONSE: u8 = 4;
const IN_ALERT: u8 = 8;

/// What few activities have, kept apart so that the others are 48 bytes.
#[derive(Debug, Clone, Default)]
struct More {
    /// The time, when it does not fit `Activity::ts`.
    ts_ns: Option<i128>,
    /// When several requests were in flight: their ids. The event is shown
    /// under each of them; the sensor never guesses which one caused it.
    in_flight: Option<Rc<Vec<Value>>>,
    alerts: Vec<Alert>,
}

impl Activity {
    /// An activity of `kind` at `line` (`ts_ns`), with neither alerts nor
    /// in-flight ids, outside calls, not failed.
    pub fn new(line: LineRef, ts_ns: i128, kind: Word, pid: Option<u32>) -> Activity {
        let mut a = Activity { line, ts: 0, kind, more: None, pid: pid.unwrap_or(0), flags: 0, phase: None };
        a.set(PID, pid.is_some());
        match i64::try_from(ts_ns) {
            Ok(ts) => a.ts = ts,
            Err(_) => a.more.get_or_insert_default().ts_ns = Some(ts_ns),
        }
        a
    }

    fn set(&mut self, flag: u8, on: bool) {
        self.flags = if on { self.flags | flag } else { self.flags & !flag };
    }

    /// Unix-epoch ns of the line's `ts`.
    pub fn ts_ns(&self) -> i128 {
        self.more.as_ref().and_then(|m| m.ts_ns).unwrap_or(i128::from(self.ts))
    }

    pub fn pid(&self) -> Option<u32> {
        (self.flags & PID != 0).then_some(self.pid)
    }

    /// The event failed (open or connect with an error, non-zero exit).
    pub fn failed(&self) -> bool {
        self.flags & FAILED != 0
    }

    pub fn set_failed(&mut self, on: bool) {
        self.set(FAILED, on);
    }

    /// Under a call: the event came after the call's response (a process
    /// the call started, still running).
    pub fn after_response(&self) -> bool {
        self.flags & AFTER_RESPONSE != 0
    }

    pub fn set_after_response(&mut self, on: bool) {
        self.set(AFTER_RESPONSE, on);
    }

    /// The event is only known from an alert's `event` (its own line is
    /// not in the logs).
    pub fn in_alert(&self) -> bool {
        self.flags & IN_ALERT != 0
    }

    pub fn set_in_alert(&mut self, on: bool) {
        self.set(IN_ALERT, on);
    }

    pub fn alerts(&self) -> &[Alert] {
        self.more.as_ref().map_or(&[], |m| &m.alerts[..])
    }

    /// When several requests were in flight: their ids.
    pub fn in_flight(&self) -> Option<&Rc<Vec<Value>>> {
        self.more.as_ref().and_then(|m| m.in_flight.as_ref())
    }

    pub fn push_alert(&mut self, a: Alert) {
        let alerts = &mut self.more.get_or_insert_default().alerts;
        if alerts.capacity() == 0 {
            // most have one: not the 4 a Vec's first push makes room for
            alerts.reserve_exact(1);
        }
        alerts.push(a);
    }

    pub fn set_in_flight(&mut self, ids: Rc<Vec<Value>>) {
        self.more.get_or_insert_default().in_flight = Some(ids);
    }
}

/// When an event outside calls happened.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before the first request.
    Startup,
    BetweenCalls,
    /// After the server's root process exited.
    AfterExit,
}

/// The alerts on an activity or a call: none, for almost all of them, in
/// one pointer.
#[derive(Debug, Clone, Default)]
// a Vec is 24 bytes in every activity; this is 8 (see the size test)
#[allow(clippy::box_collection)]
pub struct Alerts(Option<Box<Vec<Alert>>>);

impl Alerts {
    pub fn push(&mut self, a: Alert) {
        let alerts = self.0.get_or_insert_default();
        if alerts.capacity() == 0 {
            // most have one: not the 4 a Vec's first push makes room for
            alerts.reserve_exact(1);
        }
        alerts.push(a);
    }
}

impl std::ops::Deref for Alerts {
    type Target = [Alert];
    fn deref(&self) -> &[Alert] {
        self.0.as_deref().map_or(&[], |v| &v[..])
    }
}

/// An `alert` line: its rule (filters match it) and where the line is;
/// the rest is read back when rendered ([`super::shown::AlertText`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub rule: String,
    /// Unix-epoch ns of the line's `ts`.
    pub ts_ns: i128,
    /// The alert line's `pid` (of the process it is about).
    pub pid: Option<u64>,
    pub line: LineRef,
    /// Occurrences of its finding, from its `alert_summary` lines (1 when
    /// none): shared by every place the alert is shown.
    pub repeats: Rc<Repeats>,
}

/// How many times an alert's finding occurred, and the last time
/// (`alert_summary` lines; aggregate.rs).
#[derive(Debug, Default, PartialEq)]
pub struct Repeats {
    /// 0: no summary seen (the alert line alone: once).
    pub count: std::cell::Cell<u64>,
    pub last_ts: std::cell::RefCell<Option<String>>,
}

impl Repeats {
    /// Occurrences: at least 1.
    pub fn count(&self) -> u64 {
        self.count.get().max(1)
    }
}
