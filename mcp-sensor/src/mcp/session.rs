//! The MCP session model: one per server instance, fed the frames of both
//! directions of its stdio channel.
//!
//! Owns what each message means: requests, responses (matched to their
//! request per direction, since ids overlap when the server sends requests
//! of its own), notifications (cancellation, progress), the handshake
//! (`handshake.rs`), the tool catalog from `tools/list` (`tools.rs`), and
//! the list of client requests the server is working on right now, which
//! the correlation layer uses to attribute host activity. Each frame
//! becomes one [`SessionOutput`] (several for a JSON-RPC batch), ready to
//! be an `rpc` or `malformed` event body. Memory is bounded: pending
//! requests are capped per direction, in count and in kept arguments
//! (`pending.rs`).

use super::framing::Frame;
use super::handshake::Handshake;
use super::pending::{id_key, InFlight, Pending, Table};
use super::summary::{error_summary, result_summary, text_of};
use super::tools::{Catalog, ToolChange, ToolInfo};
use crate::event::{Body, Direction, Rpc};
use serde_json::Value;
use std::collections::BTreeMap;

/// Pending requests kept per direction; the oldest go first.
pub const DEFAULT_MAX_PENDING: usize = 4096;

/// One frame's worth of output: an event body and its time.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionOutput {
    Rpc {
        ts_ns: u64,
        rpc: Rpc,
    },
    Malformed {
        ts_ns: u64,
        direction: Direction,
        reason: String,
        size: u64,
    },
}

impl SessionOutput {
    pub fn ts_ns(&self) -> u64 {
        match self {
            SessionOutput::Rpc { ts_ns, .. } | SessionOutput::Malformed { ts_ns, .. } => *ts_ns,
        }
    }

    pub fn rpc(&self) -> Option<&Rpc> {
        match self {
            SessionOutput::Rpc { rpc, .. } => Some(rpc),
            SessionOutput::Malformed { .. } => None,
        }
    }

    pub fn into_body(self) -> Body {
        match self {
            SessionOutput::Rpc { rpc, .. } => Body::Rpc(rpc),
            SessionOutput::Malformed {
                direction,
                reason,
                size,
                ..
            } => Body::Malformed {
                direction,
                reason,
                size,
            },
        }
    }
}

impl From<SessionOutput> for Body {
    fn from(out: SessionOutput) -> Body {
        out.into_body()
    }
}

/// Counters since the session started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub requests: u64,
    pub responses: u64,
    pub notifications: u64,
    pub malformed: u64,
    /// Responses whose id matched no pending request.
    pub unmatched_responses: u64,
    /// Pending requests dropped to stay under the cap.
    pub evicted: u64,
    /// A request reused the id of one still pending (the older is dropped).
    pub duplicate_ids: u64,
    pub cancelled: u64,
    /// Tool changes dropped because nobody took them.
    pub dropped_tool_changes: u64,
}

fn slot(dir: Direction) -> usize {
    match dir {
        Direction::ClientToServer => 0,
        Direction::ServerToClient => 1,
    }
}

fn opposite(dir: Direction) -> Direction {
    match dir {
        Direction::ClientToServer => Direction::ServerToClient,
        Direction::ServerToClient => Direction::ClientToServer,
    }
}

/// What every output of one message shares.
#[derive(Clone, Copy)]
struct Meta {
    dir: Direction,
    size: u64,
    truncated: bool,
    ts_ns: u64,
    /// Why a whole message is not JSON-RPC 2.0 though it has its shape
    /// (see [`shape_fault`]); `None` when it is, or when it was cut.
    not_jsonrpc: Option<&'static str>,
}

impl Meta {
    fn rpc(&self, message: &'static str) -> Rpc {
        Rpc { not_jsonrpc: self.not_jsonrpc, ..Rpc::new(self.dir, message, self.size, self.truncated) }
    }
}

/// Why an object with a `method` or an `id` is still not a JSON-RPC 2.0
/// message: no `"jsonrpc":"2.0"` member (MCP requires it), or the shape of
/// the sensor's own event lines (`ts` and `kind`), which a reader of its
/// log (`tail -F events.jsonl`) passes on. Discovery never confirms such a
/// channel; the session still reports the message.
fn shape_fault(obj: &serde_json::Map<String, Value>) -> Option<&'static str> {
    if obj.contains_key("ts") && obj.contains_key("kind") {
        return Some("an event line of mcp-sensor's own log (ts, kind), not JSON-RPC");
    }
    match obj.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => None,
        Some(_) => Some("\"jsonrpc\" is not \"2.0\""),
        None => Some("no \"jsonrpc\":\"2.0\" member"),
    }
}

/// `traceparent` (and `tracestate`) of a request's `params._meta`, when
/// it has a string `traceparent` (SEP-414: unprefixed keys).
fn trace_context(meta: Option<&Value>) -> Option<Box<crate::event::TraceContext>> {
    let meta = meta?;
    let traceparent = meta.get("traceparent")?.as_str()?.to_string();
    let tracestate = meta.get("tracestate").and_then(Value::as_str).map(str::to_string);
    Some(Box::new(crate::event::TraceContext { traceparent, tracestate }))
}

enum Outcome {
    Result(Value),
    Error(Value),
    /// Truncated: only whether an `error` key was seen.
    Unknown {
        error: bool,
    },
}

/// The state of one MCP server's conversation with its client.
#[derive(Debug)]
pub struct Session {
    handshake: Handshake,
    catalog: Catalog,
    /// Pending requests, indexed by [`slot`] of the direction they went.
    pending: [Table; 2],
    next_seq: u64,
    /// Boot-time ns of the first request the server read (its frame's time).
    first_request_ns: Option<u64>,
    max_pending: usize,
    stats: SessionStats,
}

impl Default for Session {
    fn default() -> Self {
        Session::new()
    }
}

impl Session {
    pub fn new() -> Self {
        Session::with_max_pending(DEFAULT_MAX_PENDING)
    }

    pub fn with_max_pending(max_pending: usize) -> Self {
        Session {
            handshake: Handshake::default(),
            catalog: Catalog::default(),
            pending: [Table::default(), Table::default()],
            next_seq: 0,
            first_request_ns: None,
            max_pending: max_pending.max(1),
            stats: SessionStats::default(),
        }
    }

    pub fn handshake(&self) -> &Handshake {
        &self.handshake
    }

    pub fn server_name(&self) -> Option<&str> {
        self.handshake.server.as_ref()?.name.as_deref()
    }

    pub fn client_name(&self) -> Option<&str> {
        self.handshake.client.as_ref()?.name.as_deref()
    }

    /// The latest tool catalog, by name.
    pub fn tools(&self) -> &BTreeMap<String, ToolInfo> {
        self.catalog.tools()
    }

    /// Tool additions, removals and changes since the last call.
    pub fn take_tool_changes(&mut self) -> Vec<ToolChange> {
        self.catalog.take_changes()
    }

    /// Client requests the server has read and not yet answered (nor seen
    /// cancelled), oldest first.
    pub fn in_flight(&self) -> Vec<&InFlight> {
        self.pending[slot(Direction::ClientToServer)]
            .iter()
            .collect()
    }

    /// Requests that went in `dir` and await an answer.
    pub fn pending_count(&self, dir: Direction) -> usize {
        self.pending[slot(dir)].len()
    }

    /// The server has read a request from its client: before that, what
    /// the server does is start-up, not anybody's request.
    pub fn first_request_seen(&self) -> bool {
        self.first_request_ns.is_some()
    }

    /// Boot-time ns of the first request the server read, if any.
    pub fn first_request_ns(&self) -> Option<u64> {
        self.first_request_ns
    }

    /// Whether the first request had been read by `ts_ns` (boot-time ns):
    /// what a held event (discovery) is judged by, not the state when it is
    /// finally written.
    pub fn first_request_seen_by(&self, ts_ns: u64) -> bool {
        self.first_request_ns.is_some_and(|t| t <= ts_ns)
    }

    pub fn stats(&self) -> SessionStats {
        SessionStats {
            dropped_tool_changes: self.catalog.dropped_changes,
            ..self.stats
        }
    }

    /// Takes one frame of direction `dir`; its output goes to `out`.
    pub fn on_frame(&mut self, dir: Direction, frame: Frame, out: &mut Vec<SessionOutput>) {
        let meta = Meta {
            dir,
            size: frame.size(),
            truncated: frame.truncated(),
            ts_ns: frame.ts_ns(),
            not_jsonrpc: None,
        };
        match frame {
            Frame::Malformed { reason, .. } => self.malformed(meta, reason, out),
            Frame::Message {
                value: Some(Value::Array(items)),
                ..
            } => {
                if items.is_empty() {
                    return self.malformed(meta, "empty JSON-RPC batch".into(), out);
                }
                for item in items {
                    // Members of a batch have no size of their own on the
                    // wire: use their compact re-serialised length.
                    let size = serde_json::to_string(&item).map_or(0, |s| s.len() as u64);
                    self.on_value(Meta { size, ..meta }, item, out);
                }
            }
            Frame::Message {
                value: Some(value), ..
            } => self.on_value(meta, value, out),
            Frame::Message {
                value: None,
                id,
                method,
                params_name,
                error,
                ..
            } => {
                match (method, id) {
                    (Some(method), Some(id)) => {
                        self.on_request(meta, id, method, None, params_name, out)
                    }
                    // A cut message may have had its id where we could
                    // not see it: only a notification's name says it is one.
                    (Some(method), None)
                        if meta.truncated && !method.starts_with("notifications/") =>
                    {
                        self.on_request_without_id(meta, method, params_name, out)
                    }
                    (Some(method), None) => self.on_notification(meta, method, None, out),
                    (None, Some(id)) => {
                        self.on_response(meta, Some(id), Outcome::Unknown { error }, out)
                    }
                    (None, None) => {
                        let reason = "incomplete message: neither id nor method recovered";
                        self.malformed(meta, reason.into(), out)
                    }
                }
            }
        }
    }

    fn malformed(&mut self, meta: Meta, reason: String, out: &mut Vec<SessionOutput>) {
        self.stats.malformed += 1;
        out.push(SessionOutput::Malformed {
            ts_ns: meta.ts_ns,
            direction: meta.dir,
            reason,
            size: meta.size,
        });
    }

    fn on_value(&mut self, meta: Meta, value: Value, out: &mut Vec<SessionOutput>) {
        let Value::Object(mut obj) = value else {
            return self.malformed(meta, "not JSON-RPC: not an object".into(), out);
        };
        let meta = Meta { not_jsonrpc: shape_fault(&obj), ..meta };
        let id = obj.remove("id");
        match obj.remove("method") {
            Some(Value::String(method)) => {
                let params = obj.remove("params");
                match id {
                    Some(id) => self.on_request(meta, id, method, params, None, out),
                    None => self.on_notification(meta, method, params, out),
                }
            }
            Some(_) => self.malformed(meta, "not JSON-RPC: method is not a string".into(), out),
            None => match (id, obj.remove("error"), obj.remove("result")) {
                (id, Some(error), _) => self.on_response(meta, id, Outcome::Error(error), out),
                (Some(id), None, Some(result)) => {
                    self.on_response(meta, Some(id), Outcome::Result(result), out)
                }
                (Some(_), None, None) => {
                    let reason = "not JSON-RPC: response without result or error";
                    self.malformed(meta, reason.into(), out)
                }
                (None, None, _) => {
                    self.malformed(meta, "not JSON-RPC: no method and no id".into(), out)
                }
            },
        }
    }

    fn on_request(
        &mut self,
        meta: Meta,
        id: Value,
        method: String,
        params: Option<Value>,
        scanned_tool: Option<String>,
        out: &mut Vec<SessionOutput>,
    ) {
        self.stats.requests += 1;
        if meta.dir == Direction::ClientToServer {
            self.first_request_ns.get_or_insert(meta.ts_ns);
        }
        let mut params = params;
        let (tool, arguments) = if method == "tools/call" {
            let name = params.as_ref().and_then(|p| p.get("name")).and_then(Value::as_str).map(str::to_owned);
            // moved out, not copied: the request's event owns them, the
            // pending entry gets the one copy below
            let arguments = params.as_mut().and_then(Value::as_object_mut).and_then(|o| o.remove("arguments"));
            (name.or(scanned_tool), arguments)
        } else {
            (None, None)
        };
        let param = |k: &str| params.as_ref().and_then(|p| p.get(k));
        if let (Direction::ClientToServer, "initialize" | "server/discover", Some(params)) =
            (meta.dir, method.as_str(), &params)
        {
            self.handshake.on_initialize_request(params);
        }
        let table = &mut self.pending[slot(meta.dir)];
        let kept_bytes = match arguments {
            Some(_) if table.can_keep(meta.size) => meta.size,
            _ => 0,
        };
        let pending = Pending {
            key: id_key(&id),
            req: InFlight {
                id: id.clone(),
                method: method.clone(),
                tool: tool.clone(),
                arguments: if kept_bytes > 0 {
                    arguments.clone()
                } else {
                    None
                },
                ts_ns: meta.ts_ns,
                progress: None,
                truncated: meta.truncated,
            },
            progress_token: param("_meta")
                .and_then(|m| m.get("progressToken"))
                .map(id_key),
            has_cursor: param("cursor").is_some_and(|c| !c.is_null()),
            kept_bytes,
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        let dropped = table.insert(seq, pending, self.max_pending);
        self.stats.duplicate_ids += u64::from(dropped.duplicate);
        self.stats.evicted += dropped.evicted;
        let trace_context = trace_context(param("_meta"));
        out.push(SessionOutput::Rpc {
            ts_ns: meta.ts_ns,
            rpc: Rpc {
                method: Some(method),
                id: Some(id),
                tool,
                arguments,
                trace_context,
                ..meta.rpc("request")
            },
        });
    }

    /// A truncated request whose id was lost: reported, but not tracked,
    /// as no response could ever be matched to it.
    fn on_request_without_id(
        &mut self,
        meta: Meta,
        method: String,
        scanned_tool: Option<String>,
        out: &mut Vec<SessionOutput>,
    ) {
        self.stats.requests += 1;
        if meta.dir == Direction::ClientToServer {
            self.first_request_ns.get_or_insert(meta.ts_ns);
        }
        let tool = scanned_tool.filter(|_| method == "tools/call");
        out.push(SessionOutput::Rpc {
            ts_ns: meta.ts_ns,
            rpc: Rpc {
                method: Some(method),
                tool,
                ..meta.rpc("request")
            },
        });
    }

    fn on_response(
        &mut self,
        meta: Meta,
        id: Option<Value>,
        outcome: Outcome,
        out: &mut Vec<SessionOutput>,
    ) {
        self.stats.responses += 1;
        // A response answers a request that went the other way.
        let table = &mut self.pending[slot(opposite(meta.dir))];
        let req = id.as_ref().and_then(|id| table.take(&id_key(id)));
        if req.is_none() {
            self.stats.unmatched_responses += 1;
        }
        let method = req.as_ref().map(|p| p.req.method.as_str());
        let error_code = match &outcome {
            Outcome::Error(e) => e.get("code").and_then(Value::as_i64),
            _ => None,
        };
        let (message, result, is_error) = match &outcome {
            Outcome::Result(r) => {
                let (summary, is_error) = result_summary(method, r);
                ("response", summary, Some(is_error))
            }
            Outcome::Error(e) => ("error", Some(error_summary(e)), Some(true)),
            Outcome::Unknown { error: true } => ("error", None, Some(true)),
            Outcome::Unknown { error: false } => ("response", None, None),
        };
        if let (Some(p), Outcome::Result(r), Direction::ServerToClient) = (&req, &outcome, meta.dir)
        {
            self.learn(p, r, meta.ts_ns);
        }
        let latency_ms = req
            .as_ref()
            .map(|p| meta.ts_ns.saturating_sub(p.req.ts_ns) as f64 / 1e6);
        let (method, tool) = req.map_or((None, None), |p| (Some(p.req.method), p.req.tool));
        // What rules look at in an answer the model is about to see.
        let (text, tools_list) = match (&outcome, meta.dir) {
            (Outcome::Result(v) | Outcome::Error(v), Direction::ServerToClient) => {
                let list = (method.as_deref() == Some("tools/list")).then(|| v.clone());
                (Some(text_of(v)), list.filter(|_| matches!(outcome, Outcome::Result(_))))
            }
            _ => (None, None),
        };
        out.push(SessionOutput::Rpc {
            ts_ns: meta.ts_ns,
            rpc: Rpc {
                method,
                id,
                tool,
                result,
                is_error,
                latency_ms,
                text,
                tools_list,
                error_code,
                ..meta.rpc(message)
            },
        });
    }

    /// What the server's answer to a client request says about the server.
    fn learn(&mut self, req: &Pending, result: &Value, ts_ns: u64) {
        match req.req.method.as_str() {
            "initialize" => self.handshake.on_initialize_result(result),
            // A server that accepts discovery never sees `initialize`.
            "server/discover" => self.handshake.on_discover_result(result),
            "tools/list" => self.catalog.on_list_page(result, !req.has_cursor, ts_ns),
            _ => {}
        }
    }

    fn on_notification(
        &mut self,
        meta: Meta,
        method: String,
        params: Option<Value>,
        out: &mut Vec<SessionOutput>,
    ) {
        self.stats.notifications += 1;
        let param = |k: &str| params.as_ref().and_then(|p| p.get(k));
        match method.as_str() {
            // Sent by whoever made the request, so the same direction.
            "notifications/cancelled" => {
                if let Some(request_id) = param("requestId") {
                    if self.pending[slot(meta.dir)].cancel(&id_key(request_id)) {
                        self.stats.cancelled += 1;
                    }
                }
            }
            // Sent by whoever is serving the request, so the other way.
            "notifications/progress" => {
                if let (Some(token), Some(progress)) = (
                    param("progressToken"),
                    param("progress").and_then(Value::as_f64),
                ) {
                    let table = &mut self.pending[slot(opposite(meta.dir))];
                    table.progress(&id_key(token), progress);
                }
            }
            _ => {}
        }
        let request_id = (method == "notifications/cancelled").then(|| param("requestId").cloned()).flatten();
        out.push(SessionOutput::Rpc {
            ts_ns: meta.ts_ns,
            rpc: Rpc {
                method: Some(method),
                request_id,
                ..meta.rpc("notification")
            },
        });
    }
}
