//! Events -> spans: one span per MCP request a watched server read from
//! its client, following OpenTelemetry's MCP semantic conventions
//! (gen-ai/mcp.md). Pure: fed the events as the pipeline publishes them,
//! it returns finished [`SpanRecord`]s; the sink (sink.rs) hands them to
//! the SDK.
//!
//! A span starts at the request's `rpc` line (the server read it) and
//! ends at the response or error the server wrote for that id. A request
//! never answered ends: on `notifications/cancelled` for it, when the
//! server's root process exits (its session ended), when [`MAX_PENDING`]
//! newer requests are open (the oldest is ended), or when the sensor stops;
//! `mcp_sensor.end_reason` says which. The host actions attributed to the
//! request (`tool_call.id`, one request in flight: the sensor never
//! guesses) and the alerts they raised become the span's events, at most
//! [`MAX_EVENTS`] a span (the rest counted in `events_over_limit`).

use crate::event::{Body, Direction, Event, Rpc};
use opentelemetry::{Array, KeyValue, StringValue, Value};
use std::collections::{BTreeMap, HashMap};

/// Requests open at once, all servers together.
pub const MAX_PENDING: usize = 4096;
/// Span events (host actions and findings) kept per span.
pub const MAX_EVENTS: usize = 128;

/// A finished span, plain data.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    /// `{mcp.method.name} {gen_ai.tool.name}`, or the method alone.
    pub name: String,
    /// Unix ns.
    pub start_ns: i128,
    pub end_ns: i128,
    /// W3C `traceparent` / `tracestate` from the request's `params._meta`.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    pub attributes: Vec<KeyValue>,
    pub events: Vec<SpanEvent>,
    /// Span status ERROR with this description (a JSON-RPC error's message).
    pub error: Option<String>,
}

impl SpanRecord {
    /// The attribute `key`, for tests and the sink.
    pub fn attr(&self, key: &str) -> Option<&Value> {
        self.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| &kv.value)
    }
}

/// One span event: a host action (`exec`, `open`, `connect`) or a
/// `security_finding` (an alert).
#[derive(Debug, Clone, PartialEq)]
pub struct SpanEvent {
    pub name: &'static str,
    /// Unix ns.
    pub ts_ns: i128,
    pub attributes: Vec<KeyValue>,
}

struct Open {
    seq: u64,
    rec: SpanRecord,
}

/// The open requests, and what ending them yields.
pub struct Tracker {
    /// (server root pid, JSON id as text) -> the span being built.
    open: HashMap<(u32, String), Open>,
    /// seq -> key: oldest first, for eviction.
    order: BTreeMap<u64, (u32, String)>,
    next_seq: u64,
    /// Server root pid -> the sensor-made `mcp.session.id`.
    sessions: HashMap<u32, String>,
    capture_content: bool,
    /// Span events not kept past [`MAX_EVENTS`] (a drop reason).
    pub events_over_limit: u64,
}

/// What the pipeline knows about a request besides its event.
#[derive(Default)]
pub struct RequestFacts<'a> {
    /// The session's negotiated MCP version (the `initialize` answer's).
    pub protocol_version: Option<&'a str>,
}

fn id_key(id: &serde_json::Value) -> String {
    id.to_string()
}

/// `jsonrpc.request.id`: a string id as is, a number as written.
fn id_text(id: &serde_json::Value) -> String {
    id.as_str().map_or_else(|| id.to_string(), str::to_string)
}

fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
    s
}

fn kv(k: &'static str, v: impl Into<Value>) -> KeyValue {
    KeyValue::new(k, v)
}

impl Tracker {
    pub fn new(capture_content: bool) -> Tracker {
        Tracker { open: HashMap::new(), order: BTreeMap::new(), next_seq: 0, sessions: HashMap::new(), capture_content, events_over_limit: 0 }
    }

    /// Requests open now.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    /// Takes one published event (`ts_ns`: its time as Unix ns); finished
    /// spans are pushed to `out`.
    pub fn observe(&mut self, ev: &Event, ts_ns: i128, facts: &RequestFacts, out: &mut Vec<SpanRecord>) {
        let Some(server) = &ev.server else { return };
        match &ev.body {
            Body::Rpc(r) => self.rpc(ev, server.pid, r, ts_ns, facts, out),
            Body::Exit { .. } if ev.pid == server.pid => self.session_ended(server.pid, ts_ns, out),
            Body::Exec { .. } | Body::Open { .. } | Body::Connect { .. } | Body::Alert(_) => {
                let Some(id) = ev.tool_call.as_ref().and_then(|c| c.id.as_ref()) else { return };
                let Some(span) = self.open.get_mut(&(server.pid, id_key(id))) else { return };
                if span.rec.events.len() >= MAX_EVENTS {
                    self.events_over_limit += 1;
                    return;
                }
                span.rec.events.push(host_event(ev, ts_ns));
            }
            _ => {}
        }
    }

    fn rpc(&mut self, ev: &Event, server: u32, r: &Rpc, ts_ns: i128, facts: &RequestFacts, out: &mut Vec<SpanRecord>) {
        match (r.direction, r.message, &r.id) {
            (Direction::ClientToServer, "request", Some(id)) => {
                let rec = self.start(ev, server, r, id, ts_ns, facts);
                let key = (server, id_key(id));
                // an id reused while still open: the older request ends here
                if let Some(old) = self.open.remove(&key) {
                    self.order.remove(&old.seq);
                    out.push(finish(old.rec, ts_ns, "id_reused"));
                }
                if self.open.len() >= MAX_PENDING {
                    if let Some((_, k)) = self.order.pop_first() {
                        if let Some(old) = self.open.remove(&k) {
                            out.push(finish(old.rec, ts_ns, "evicted"));
                        }
                    }
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                self.order.insert(seq, key.clone());
                self.open.insert(key, Open { seq, rec });
            }
            (Direction::ServerToClient, "response" | "error", Some(id)) => {
                let Some(o) = self.open.remove(&(server, id_key(id))) else { return };
                self.order.remove(&o.seq);
                let mut rec = o.rec;
                if r.message == "error" {
                    let code = r.error_code.map_or_else(|| "_OTHER".to_string(), |c| c.to_string());
                    if let Some(c) = r.error_code {
                        rec.attributes.push(kv("rpc.response.status_code", c.to_string()));
                    }
                    rec.attributes.push(kv("error.type", code));
                    rec.error = Some(r.result.clone().unwrap_or_else(|| "JSON-RPC error".into()));
                } else if r.is_error == Some(true) {
                    rec.attributes.push(kv("error.type", "tool_error"));
                    rec.error = Some(r.result.clone().unwrap_or_else(|| "the tool reported an error (isError)".into()));
                }
                if self.capture_content {
                    if let Some(t) = r.text.as_ref().or(r.result.as_ref()) {
                        rec.attributes.push(kv("gen_ai.tool.call.result", cut(t.clone(), super::settings::CONTENT_MAX)));
                    }
                }
                let reason = if r.message == "error" { "error" } else { "response" };
                out.push(finish(rec, ts_ns, reason));
            }
            (Direction::ClientToServer, "notification", _) if r.method.as_deref() == Some("notifications/cancelled") => {
                let Some(id) = &r.request_id else { return };
                if let Some(o) = self.open.remove(&(server, id_key(id))) {
                    self.order.remove(&o.seq);
                    out.push(finish(o.rec, ts_ns, "cancelled"));
                }
            }
            _ => {}
        }
    }

    fn start(&mut self, ev: &Event, server: u32, r: &Rpc, id: &serde_json::Value, ts_ns: i128, facts: &RequestFacts) -> SpanRecord {
        let method = r.method.clone().unwrap_or_default();
        let name = match &r.tool {
            Some(t) => format!("{method} {t}"),
            None => method.clone(),
        };
        let session = self.sessions.entry(server).or_insert_with(|| format!("{server}-{ts_ns:x}")).clone();
        let mut a = vec![
            kv("mcp.method.name", method.clone()),
            kv("jsonrpc.request.id", id_text(id)),
            kv("mcp.session.id", session),
            kv("network.transport", "pipe"),
        ];
        if let Some(t) = &r.tool {
            a.push(kv("gen_ai.tool.name", t.clone()));
        }
        if method == "tools/call" {
            a.push(kv("gen_ai.operation.name", "execute_tool"));
        }
        if let Some(v) = facts.protocol_version {
            a.push(kv("mcp.protocol.version", v.to_string()));
        }
        if let Some(s) = &ev.server {
            a.push(kv("mcp_sensor.server.name", s.name.clone()));
            a.push(kv("mcp_sensor.server.pid", i64::from(s.pid)));
        }
        if let Some(c) = &ev.container {
            a.push(kv("container.id", c.id.clone()));
            a.push(kv("container.runtime", c.runtime));
            if let Some(p) = &c.pod_uid {
                a.push(kv("k8s.pod.uid", p.clone()));
            }
        }
        if self.capture_content {
            if let Some(args) = &r.arguments {
                a.push(kv("gen_ai.tool.call.arguments", cut(args.to_string(), super::settings::CONTENT_MAX)));
            }
        }
        let (traceparent, tracestate) = match &r.trace_context {
            Some(t) => (Some(t.traceparent.clone()), t.tracestate.clone()),
            None => (None, None),
        };
        SpanRecord { name, start_ns: ts_ns, end_ns: ts_ns, traceparent, tracestate, attributes: a, events: Vec::new(), error: None }
    }

    fn session_ended(&mut self, server: u32, ts_ns: i128, out: &mut Vec<SpanRecord>) {
        self.sessions.remove(&server);
        let keys: Vec<_> = self.open.keys().filter(|k| k.0 == server).cloned().collect();
        let mut ended: Vec<Open> = keys.iter().filter_map(|k| self.open.remove(k)).collect();
        ended.sort_by_key(|o| o.seq);
        for o in ended {
            self.order.remove(&o.seq);
            out.push(finish(o.rec, ts_ns, "session_end"));
        }
    }

    /// Ends every open span (the sensor stops), oldest first.
    pub fn end_all(&mut self, ts_ns: i128, out: &mut Vec<SpanRecord>) {
        for (_, k) in std::mem::take(&mut self.order) {
            if let Some(o) = self.open.remove(&k) {
                out.push(finish(o.rec, ts_ns, "sensor_stop"));
            }
        }
        self.open.clear();
    }
}

fn finish(mut rec: SpanRecord, end_ns: i128, reason: &'static str) -> SpanRecord {
    rec.end_ns = end_ns.max(rec.start_ns);
    rec.attributes.push(kv("mcp_sensor.end_reason", reason));
    rec
}

fn strings(v: &[String]) -> Value {
    Value::Array(Array::String(v.iter().map(|s| StringValue::from(s.clone())).collect()))
}

/// The span event of a host action or an alert.
fn host_event(ev: &Event, ts_ns: i128) -> SpanEvent {
    let mut a = vec![kv("process.pid", i64::from(ev.pid))];
    if let Some(exe) = &ev.exe {
        a.push(kv("process.executable.path", exe.clone()));
    }
    let name = match &ev.body {
        Body::Exec { filename, argv, .. } => {
            a.push(kv("process.command_args", strings(argv)));
            a.push(kv("mcp_sensor.exec.filename", filename.clone()));
            "exec"
        }
        Body::Open { path, flags, ret, error, .. } => {
            a.push(kv("file.path", path.clone()));
            a.push(kv("mcp_sensor.open.flags", strings(&flags.iter().map(|f| f.to_string()).collect::<Vec<_>>())));
            a.push(kv("mcp_sensor.ret", i64::from(*ret)));
            if let Some(e) = error {
                a.push(kv("error.type", e.clone()));
            }
            "open"
        }
        Body::Connect { family, addr, port, path, ret, error, transport, .. } => {
            if let Some(x) = addr.as_ref().or(path.as_ref()) {
                a.push(kv("network.peer.address", x.clone()));
            }
            if let Some(p) = port {
                a.push(kv("network.peer.port", i64::from(*p)));
            }
            a.push(kv("mcp_sensor.connect.family", family.clone()));
            if let Some(t) = transport {
                a.push(kv("network.transport", *t));
            }
            a.push(kv("mcp_sensor.ret", i64::from(*ret)));
            if let Some(e) = error {
                a.push(kv("error.type", e.clone()));
            }
            "connect"
        }
        Body::Alert(al) => {
            a.push(kv("security_rule.name", al.rule.clone()));
            a.push(kv("security_rule.description", al.description.clone()));
            a.push(kv("security_finding.severity", al.severity));
            a.push(kv("security_finding.decision", decision(al.action)));
            a.push(kv("security_finding.action", al.action));
            if let Some(d) = al.decided_by {
                a.push(kv("security_finding.decided_by", d));
            }
            if !al.tags.is_empty() {
                a.push(kv("security_rule.category", strings(&al.tags)));
            }
            if !al.alert_id.is_empty() {
                a.push(kv("mcp_sensor.alert_id", al.alert_id.clone()));
            }
            if let Some(subject) = alert_subject(&al.event) {
                a.push(subject);
            }
            "security_finding"
        }
        _ => "other",
    };
    SpanEvent { name, ts_ns, attributes: a }
}

/// What the sensor did about a finding: `kill` or `deny` when enforcement
/// acted (`killed`, `denied`), else `alert` (`would_kill`/`would_deny`:
/// enforcement was off; the rule's own action is `security_finding.action`).
pub fn decision(action: &str) -> &'static str {
    match action {
        "killed" => "kill",
        "denied" => "deny",
        _ => "alert",
    }
}

/// The finding's object: the path opened, the program run, the address.
fn alert_subject(e: &Event) -> Option<KeyValue> {
    match &e.body {
        Body::Open { path, .. } => Some(kv("file.path", path.clone())),
        Body::Exec { filename, .. } => Some(kv("mcp_sensor.exec.filename", filename.clone())),
        Body::Connect { addr, path, .. } => addr.as_ref().or(path.as_ref()).map(|x| kv("network.peer.address", x.clone())),
        _ => None,
    }
}
