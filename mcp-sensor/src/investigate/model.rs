//! The investigation's data: sessions -> calls -> activity, as built from
//! the log by `timeline.rs`, narrowed by `filter.rs`, and printed by the
//! renderers. Serialised as is by `--format json` (docs/investigate.md
//! documents the structure) and embedded in the `--html` page.

use serde::Serialize;
use serde_json::Value;

/// Everything an investigation shows.
#[derive(Debug, Clone, Default, Serialize)]
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
#[derive(Debug, Clone, Serialize)]
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
    #[serde(skip)]
    pub start_ns: i128,
    #[serde(skip)]
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

/// One client -> server request and its response.
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    /// The JSON-RPC id (`null` when a cut message lost it).
    pub id: Value,
    pub method: Option<String>,
    /// The tool of a `tools/call`.
    pub tool: Option<String>,
    pub arguments: Option<Value>,
    /// When the server read the request; `null` when the request line is
    /// not in the logs (the call is known from its response or activity).
    pub request_ts: Option<String>,
    pub response_ts: Option<String>,
    pub status: Status,
    /// The response's summary of the result or error.
    pub result: Option<String>,
    pub is_error: Option<bool>,
    pub latency_ms: Option<f64>,
    /// The request was longer than the sensor keeps: arguments may be cut.
    pub truncated: bool,
    /// Host activity attributed to this call, in log order.
    pub activity: Vec<Activity>,
    /// Alerts on this call or on its activity.
    pub alerts: Vec<Alert>,
    #[serde(skip)]
    pub start_ns: Option<i128>,
    #[serde(skip)]
    pub end_ns: Option<i128>,
}

impl Call {
    /// The tool for `tools/call`, else the method.
    pub fn label(&self) -> &str {
        self.tool.as_deref().or(self.method.as_deref()).unwrap_or("?")
    }
}

/// One host event (exec, open, connect, fork, exit, malformed, ...).
#[derive(Debug, Clone, Serialize)]
pub struct Activity {
    pub ts: String,
    pub kind: String,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub exe: Option<String>,
    /// One line saying what happened (path, argv, address, ...).
    pub summary: String,
    /// The event failed (open or connect with an error).
    pub failed: bool,
    /// When several requests were in flight: their ids. The event is shown
    /// under each of them; the sensor never guesses which one caused it.
    pub in_flight: Option<Vec<Value>>,
    /// Under a call: the event came after the call's response (a process
    /// the call started, still running).
    pub after_response: bool,
    /// Outside calls: `startup` (before the first request), `between_calls`,
    /// `after_exit` (after the server's root process exited).
    pub phase: Option<&'static str>,
    pub alerts: Vec<Alert>,
    /// The event line as logged, kept as its JSON text: a parsed `Value`
    /// takes several times the line's size, and the report holds one per
    /// host event.
    pub event: Box<serde_json::value::RawValue>,
    #[serde(skip)]
    pub ts_ns: i128,
}

impl Activity {
    /// [`Self::event`] parsed.
    pub fn event_value(&self) -> Value {
        serde_json::from_str(self.event.get()).unwrap_or(Value::Null)
    }
}

/// An `alert` line, as much as an investigator reads of it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Alert {
    pub ts: String,
    pub rule: String,
    pub severity: String,
    pub action: String,
    pub description: String,
    pub tags: Vec<String>,
    /// Kind of the event that triggered it.
    pub event_kind: Option<String>,
    /// What the alert names of the event (path, argv, address...).
    pub summary: String,
    /// The alert line as logged.
    pub line: Value,
}
