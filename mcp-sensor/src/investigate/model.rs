//! The investigation's data: sessions -> calls -> activity, as built from
//! the log by `timeline/`, narrowed by `filter.rs`, and printed by the
//! renderers. Host events and alerts are held as references to their lines
//! (`lines.rs`); `shown.rs` serialises the report with those lines read
//! back, for `--format json` (docs/investigate.md documents the structure)
//! and the `--html` page.

use serde::Serialize;
use super::lines::LineRef;
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
    pub method: Option<Rc<str>>,
    /// The tool of a `tools/call`.
    pub tool: Option<Rc<str>>,
    pub status: Status,
    /// The request was longer than the sensor keeps: arguments may be cut.
    pub truncated: bool,
    /// The request's line, at [`Self::start_ns`]; `None` when it is not in
    /// the logs (the call is known from its response or activity).
    pub request: Option<LineRef>,
    /// Without a request: the line that named the call first, at its time,
    /// and where in it (its method, tool and arguments are shown).
    pub named: Option<(LineRef, i128, Named)>,
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
/// one of these per host event, so it holds no text of them.
#[derive(Debug, Clone)]
pub struct Activity {
    /// The event's line; with [`Self::in_alert`], the alert line carrying it.
    pub line: LineRef,
    /// Unix-epoch ns of the line's `ts`.
    pub ts_ns: i128,
    /// The event's `kind` (one shared string per kind).
    pub kind: Rc<str>,
    pub pid: Option<u32>,
    /// When several requests were in flight: their ids. The event is shown
    /// under each of them; the sensor never guesses which one caused it.
    pub in_flight: Option<Rc<Vec<Value>>>,
    pub alerts: Alerts,
    /// The event failed (open or connect with an error, non-zero exit).
    pub failed: bool,
    /// Under a call: the event came after the call's response (a process
    /// the call started, still running).
    pub after_response: bool,
    /// Outside calls: when it happened.
    pub phase: Option<Phase>,
    /// The event is only known from an alert's `event` (its own line is
    /// not in the logs).
    pub in_alert: bool,
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
        self.0.get_or_insert_default().push(a);
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
}
