//! Tests of span building (no root; the sink test connects to a closed
//! loopback port, nothing else touches the network): JSON-RPC messages through
//! the real session model into the tracker, host events and alerts on the
//! span, how spans end, W3C traceparent parsing, settings precedence, and
//! the sink's queue-full and failure counts.

use super::settings::{OtlpConfig, Settings};
use super::spans::{RequestFacts, SpanRecord, Tracker, MAX_EVENTS};
use super::{decision, parent_context};
use crate::event::{Alert, Body, Direction, Event, ToolCallRef};
use crate::mcp::{Reassembler, Session};
use opentelemetry::Value;
use serde_json::{json, Value as Json};
use std::collections::HashMap;

const SERVER: u32 = 100;

/// A session of one server: messages in, the tracker's spans out.
struct Feed {
    session: Session,
    off: [u64; 2],
    tracker: Tracker,
    spans: Vec<SpanRecord>,
}

impl Feed {
    fn new(capture: bool) -> Feed {
        Feed { session: Session::new(), off: [0, 0], tracker: Tracker::new(capture), spans: Vec::new() }
    }

    /// One message the server read (`C2S`) or wrote, at `ts` (ns).
    fn msg(&mut self, dir: Direction, m: Json, ts: u64) {
        let line = format!("{m}\n");
        let i = if dir == Direction::ClientToServer { 0 } else { 1 };
        let mut frames = Vec::new();
        Reassembler::new(1 << 20).push(0, ts, line.as_bytes(), &mut frames);
        self.off[i] += line.len() as u64;
        let mut outs = Vec::new();
        for f in frames {
            self.session.on_frame(dir, f, &mut outs);
        }
        for o in outs {
            let ev = Event::for_test(SERVER, ts, o.into_body(), Some(("fs", SERVER)));
            self.event(ev);
        }
    }

    fn event(&mut self, ev: Event) {
        let protocol = self.session.handshake().server_protocol.clone();
        let facts = RequestFacts { protocol_version: protocol.as_deref() };
        self.tracker.observe(&ev, ev.ts_ns as i128, &facts, &mut self.spans);
    }

    /// A host event of `pid` during call `id` (`None`: several in flight).
    fn host(&mut self, pid: u32, ts: u64, body: Body, id: Option<Json>) {
        let mut ev = Event::for_test(pid, ts, body, Some(("fs", SERVER)));
        ev.tool_call = Some(ToolCallRef { id, name: None, method: None, arguments: None, in_flight: Vec::new() });
        self.event(ev);
    }
}

const C2S: Direction = Direction::ClientToServer;
const S2C: Direction = Direction::ServerToClient;

fn s(v: Option<&Value>) -> Option<String> {
    v.map(|v| v.as_str().into_owned())
}

fn open_body(path: &str) -> Body {
    Body::Open { path: path.into(), resolved: true, flags: vec!["O_RDONLY"], ret: 3, error: None, dev: 1, ino: 2, canonical_path: None, path_length: None, syscall: "openat", file_flags: vec![] }
}

fn alert_of(trigger: Event, action: &'static str) -> Body {
    Body::Alert(Box::new(Alert {
        alert_id: "a-1".into(),
        rule: "ssh-key-read".into(),
        severity: "high",
        action,
        description: "read a key".into(),
        tags: vec!["credential_access".into()],
        event: Box::new(trigger),
        ancestry: vec![],
        decided_by: None,
        killed: vec![],
        delay_ns: None,
        late: false,
        tool_changes: vec![],
        also_matched: vec![],
    }))
}

fn handshake(f: &mut Feed) {
    f.msg(C2S, json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","clientInfo":{"name":"c","version":"1"}}}), 1);
    f.msg(S2C, json!({"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","serverInfo":{"name":"fs","version":"1"},"capabilities":{}}}), 2);
}

#[test]
fn a_tool_call_is_one_span_named_and_attributed_by_the_mcp_conventions() {
    let mut f = Feed::new(false);
    handshake(&mut f);
    assert_eq!(f.spans.len(), 1, "initialize is a span too");
    assert_eq!(f.spans[0].name, "initialize", "no tool: the method alone");
    f.msg(C2S, json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_text_file","arguments":{"path":"/k"}}}), 1_000);
    f.msg(S2C, json!({"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"secret"}]}}), 5_000);
    let span = &f.spans[1];
    assert_eq!(span.name, "tools/call read_text_file");
    assert_eq!((span.start_ns, span.end_ns), (1_000, 5_000), "request read to response written");
    for (k, v) in [
        ("mcp.method.name", "tools/call"),
        ("jsonrpc.request.id", "7"),
        ("gen_ai.tool.name", "read_text_file"),
        ("gen_ai.operation.name", "execute_tool"),
        ("mcp.protocol.version", "2025-06-18"),
        ("network.transport", "pipe"),
        ("mcp_sensor.end_reason", "response"),
    ] {
        assert_eq!(s(span.attr(k)).as_deref(), Some(v), "{k}: {span:?}");
    }
    let sid = s(span.attr("mcp.session.id")).unwrap();
    assert_eq!(s(f.spans[0].attr("mcp.session.id")), Some(sid.clone()), "one session id for the server's requests");
    assert!(sid.starts_with(&format!("{SERVER}-")), "{sid}");
    assert!(span.attr("error.type").is_none() && span.error.is_none());
    assert!(span.attr("gen_ai.tool.call.arguments").is_none() && span.attr("gen_ai.tool.call.result").is_none(), "content is opt-in");
    assert_eq!(span.traceparent, None);
}

#[test]
fn arguments_and_results_only_when_opted_in() {
    let mut f = Feed::new(true);
    f.msg(C2S, json!({"jsonrpc":"2.0","id":"r1","method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}), 10);
    f.msg(S2C, json!({"jsonrpc":"2.0","id":"r1","result":{"content":[{"type":"text","text":"hi back"}]}}), 20);
    let span = &f.spans[0];
    assert_eq!(s(span.attr("gen_ai.tool.call.arguments")).as_deref(), Some(r#"{"text":"hi"}"#));
    assert!(s(span.attr("gen_ai.tool.call.result")).unwrap().contains("hi back"));
    assert_eq!(s(span.attr("jsonrpc.request.id")).as_deref(), Some("r1"), "a string id as is");
}

#[test]
fn errors_set_error_type_from_the_code_or_tool_error() {
    let mut f = Feed::new(false);
    f.msg(C2S, json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"nope"}}), 10);
    f.msg(S2C, json!({"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Unknown tool: nope"}}), 20);
    f.msg(C2S, json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"read_text_file"}}), 30);
    f.msg(S2C, json!({"jsonrpc":"2.0","id":2,"result":{"isError":true,"content":[{"type":"text","text":"ENOENT"}]}}), 40);
    let (rpc_err, tool_err) = (&f.spans[0], &f.spans[1]);
    assert_eq!(s(rpc_err.attr("error.type")).as_deref(), Some("-32602"));
    assert_eq!(s(rpc_err.attr("rpc.response.status_code")).as_deref(), Some("-32602"));
    assert!(rpc_err.error.as_deref().unwrap().contains("Unknown tool"), "{:?}", rpc_err.error);
    assert_eq!(s(tool_err.attr("error.type")).as_deref(), Some("tool_error"));
    assert!(tool_err.attr("rpc.response.status_code").is_none());
    assert!(tool_err.error.is_some(), "status ERROR");
}

#[test]
fn host_actions_and_findings_of_the_call_become_its_events() {
    let mut f = Feed::new(false);
    f.msg(C2S, json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"read_text_file"}}), 10);
    f.host(SERVER, 11, open_body("/home/me/.ssh/id_ed25519"), Some(json!(3)));
    let trigger = Event::for_test(SERVER, 11, open_body("/home/me/.ssh/id_ed25519"), Some(("fs", SERVER)));
    f.host(SERVER, 11, alert_of(trigger, "killed"), Some(json!(3)));
    let exec = Body::Exec { filename: "/bin/sh".into(), argv: vec!["sh".into(), "-c".into(), "id".into()], cwd: "/".into(), script: None, shell_mode: None, script_writable_by: None, parent_exe: None, dev: 0, ino: 0, exe_is: None, argv_truncated: false, exe_length: None, file_flags: vec![] };
    f.host(101, 12, exec, Some(json!(3)));
    let connect = Body::Connect { family: "inet".into(), addr: Some("10.0.0.1".into()), port: Some(443), path: None, ret: 0, error: None, op: "connect", hook: "sys_connect", transport: Some("tcp") };
    f.host(101, 13, connect, Some(json!(3)));
    // several in flight: the sensor never guesses, so no span gets it
    f.host(SERVER, 14, open_body("/etc/ambiguous"), None);
    // another call's id: not this span's
    f.host(SERVER, 15, open_body("/etc/other"), Some(json!(99)));
    f.msg(S2C, json!({"jsonrpc":"2.0","id":3,"result":{"content":[]}}), 20);
    // after the response: the span has ended, nothing more joins it
    f.host(SERVER, 21, open_body("/etc/late"), Some(json!(3)));
    assert_eq!(f.spans.len(), 1);
    let evs = &f.spans[0].events;
    let names: Vec<_> = evs.iter().map(|e| e.name).collect();
    assert_eq!(names, ["open", "security_finding", "exec", "connect"]);
    let attr = |i: usize, k: &str| evs[i].attributes.iter().find(|kv| kv.key.as_str() == k).map(|kv| kv.value.as_str().into_owned());
    assert_eq!(attr(0, "file.path").as_deref(), Some("/home/me/.ssh/id_ed25519"));
    assert_eq!(attr(0, "process.pid").as_deref(), Some("100"));
    assert_eq!(attr(1, "security_rule.name").as_deref(), Some("ssh-key-read"));
    assert_eq!(attr(1, "security_finding.severity").as_deref(), Some("high"));
    assert_eq!(attr(1, "security_finding.decision").as_deref(), Some("kill"));
    assert_eq!(attr(1, "file.path").as_deref(), Some("/home/me/.ssh/id_ed25519"), "the finding names its object");
    assert_eq!(attr(2, "process.command_args").as_deref(), Some(r#"["sh","-c","id"]"#));
    assert_eq!(attr(2, "process.pid").as_deref(), Some("101"));
    assert_eq!((attr(3, "network.peer.address").as_deref(), attr(3, "network.peer.port").as_deref()), (Some("10.0.0.1"), Some("443")));
    assert_eq!(evs[0].ts_ns, 11);
}

#[test]
fn decisions_are_what_the_sensor_did() {
    assert_eq!([decision("alert"), decision("killed"), decision("denied"), decision("would_kill"), decision("would_deny")], ["alert", "kill", "deny", "alert", "alert"]);
}

#[test]
fn a_span_keeps_at_most_its_event_limit_and_counts_the_rest() {
    let mut f = Feed::new(false);
    f.msg(C2S, json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}), 10);
    for i in 0..MAX_EVENTS + 5 {
        f.host(SERVER, 11 + i as u64, open_body("/etc/hosts"), Some(json!(1)));
    }
    f.msg(S2C, json!({"jsonrpc":"2.0","id":1,"result":{}}), 10_000);
    assert_eq!(f.spans[0].events.len(), MAX_EVENTS);
    assert_eq!(f.tracker.events_over_limit, 5);
}

#[test]
fn unanswered_requests_end_at_cancel_session_end_or_stop() {
    let mut f = Feed::new(false);
    f.msg(C2S, json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow"}}), 10);
    f.msg(C2S, json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}), 20);
    f.msg(C2S, json!({"jsonrpc":"2.0","id":2,"method":"resources/list"}), 30);
    f.msg(C2S, json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"hang"}}), 31);
    let exit = Body::Exit { code: Some(0), signal: None };
    f.host(101, 35, exit.clone(), None); // a child's exit: the session goes on
    assert_eq!(f.spans.len(), 1);
    f.host(SERVER, 40, exit, None); // the server's root: the session ended
    let reasons: Vec<_> = f.spans.iter().map(|r| (r.name.clone(), s(r.attr("mcp_sensor.end_reason")).unwrap(), r.end_ns)).collect();
    assert_eq!(
        reasons,
        [("tools/call slow".into(), "cancelled".into(), 20), ("resources/list".into(), "session_end".into(), 40), ("tools/call hang".into(), "session_end".into(), 40)]
    );
    assert_eq!(f.tracker.open_count(), 0);
    f.msg(C2S, json!({"jsonrpc":"2.0","id":4,"method":"ping"}), 50);
    let mut out = Vec::new();
    f.tracker.end_all(60, &mut out);
    assert_eq!(s(out[0].attr("mcp_sensor.end_reason")).as_deref(), Some("sensor_stop"));
}

#[test]
fn the_clients_traceparent_is_carried_and_parsed() {
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut f = Feed::new(false);
    f.msg(C2S, json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"traceparent":tp,"tracestate":"rojo=00f067aa0ba902b7"}}}), 10);
    f.msg(S2C, json!({"jsonrpc":"2.0","id":1,"result":{}}), 20);
    let span = &f.spans[0];
    assert_eq!(span.traceparent.as_deref(), Some(tp));
    let sc = parent_context(span.traceparent.as_deref(), span.tracestate.as_deref()).expect("valid");
    assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
    assert!(sc.is_remote() && sc.is_sampled());
    assert_eq!(sc.trace_state().get("rojo"), Some("00f067aa0ba902b7"));
}

#[test]
fn malformed_traceparents_give_no_parent() {
    for bad in [
        "",
        "garbage",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",          // no flags
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",        // short trace id
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",       // all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",       // all-zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",       // version ff
        "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",       // not hex
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",       // separators
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",       // upper case
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",     // version 00 with more
    ] {
        assert!(parent_context(Some(bad), None).is_none(), "{bad:?} must not parse");
    }
    assert!(parent_context(None, None).is_none());
    // a later version may carry more fields after the flags
    assert!(parent_context(Some("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-later"), None).is_some());
    // a non-string traceparent is not carried at all
    let mut f = Feed::new(false);
    f.msg(C2S, json!({"jsonrpc":"2.0","id":1,"method":"ping","params":{"_meta":{"traceparent":42}}}), 10);
    f.msg(S2C, json!({"jsonrpc":"2.0","id":1,"result":{}}), 20);
    assert_eq!(f.spans[0].traceparent, None);
}

fn resolve(cfg: &OtlpConfig, env: &[(&str, &str)]) -> Result<Option<Settings>, String> {
    let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Settings::resolve(cfg, |k| env.get(k).cloned())
}

#[test]
fn export_is_off_without_an_endpoint_and_the_environment_overrides_the_file() {
    let none = OtlpConfig::default();
    assert_eq!(resolve(&none, &[]), Ok(None), "off by default");
    let file = OtlpConfig { endpoint: "http://file:4318/".into(), service_name: "from-file".into(), ..OtlpConfig::default() };
    let s = resolve(&file, &[]).unwrap().unwrap();
    assert_eq!((s.traces_url.as_str(), s.source, s.service_name.as_str()), ("http://file:4318/v1/traces", "export.otlp.endpoint", "from-file"));
    let s = resolve(&file, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"), ("OTEL_SERVICE_NAME", "from-env")]).unwrap().unwrap();
    assert_eq!((s.traces_url.as_str(), s.service_name.as_str()), ("http://env:4318/v1/traces", "from-env"));
    let s = resolve(&none, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"), ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:9/x")]).unwrap().unwrap();
    assert_eq!(s.traces_url, "http://t:9/x", "the signal's own variable, used as is");
    assert_eq!(s.service_name, "mcp-sensor");
    assert_eq!(resolve(&file, &[("OTEL_SDK_DISABLED", "true")]), Ok(None));
}

#[test]
fn unsupported_settings_are_refused_saying_what_to_write() {
    let file = OtlpConfig { endpoint: "http://c:4318".into(), ..OtlpConfig::default() };
    let e = resolve(&file, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).unwrap_err();
    assert!(e.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && e.contains("http/protobuf") && e.contains("grpc"), "{e}");
    let e = resolve(&OtlpConfig { protocol: "http/json".into(), ..file.clone() }, &[]).unwrap_err();
    assert!(e.contains("export.otlp.protocol"), "{e}");
    let e = resolve(&OtlpConfig { endpoint: "collector:4318".into(), ..OtlpConfig::default() }, &[]).unwrap_err();
    assert!(e.contains("http://"), "{e}");
    let e = resolve(&file, &[("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem")]).unwrap_err();
    assert!(e.contains("OTEL_EXPORTER_OTLP_CLIENT_KEY") && e.contains("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"), "{e}");
    let e = resolve(&OtlpConfig { max_queue_size: 0, ..file }, &[]).unwrap_err();
    assert!(e.contains("max_queue_size"), "{e}");
}

#[test]
fn grpc_takes_the_endpoint_as_is_and_http_appends_the_traces_path() {
    use super::settings::Protocol;
    let file = OtlpConfig { endpoint: "http://c:4317".into(), protocol: "grpc".into(), ..OtlpConfig::default() };
    let s = resolve(&file, &[]).unwrap().unwrap();
    assert_eq!((s.protocol, s.traces_url.as_str()), (Protocol::Grpc, "http://c:4317"));
    let s = resolve(&file, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"), ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318")]).unwrap().unwrap();
    assert_eq!((s.protocol, s.traces_url.as_str()), (Protocol::HttpProtobuf, "https://c:4318/v1/traces"));
}

#[test]
fn tls_files_come_from_the_traces_variable_the_general_one_then_the_file() {
    use std::path::PathBuf;
    let file = OtlpConfig {
        endpoint: "https://c:4318".into(),
        certificate: "/file/ca.pem".into(),
        client_certificate: "/file/c.pem".into(),
        client_key: "/file/k.pem".into(),
        ..OtlpConfig::default()
    };
    let s = resolve(&file, &[]).unwrap().unwrap();
    assert_eq!(s.traces_url, "https://c:4318/v1/traces");
    assert_eq!(s.tls.certificate, Some((PathBuf::from("/file/ca.pem"), "export.otlp.certificate")));
    assert_eq!(s.tls.client.as_ref().map(|(c, k)| (c.0.clone(), k.0.clone())), Some(("/file/c.pem".into(), "/file/k.pem".into())));
    let s = resolve(&file, &[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/env/ca.pem")]).unwrap().unwrap();
    assert_eq!(s.tls.certificate, Some((PathBuf::from("/env/ca.pem"), "OTEL_EXPORTER_OTLP_CERTIFICATE")));
    let s = resolve(&file, &[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/env/ca.pem"), ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/t/ca.pem")]).unwrap().unwrap();
    assert_eq!(s.tls.certificate.unwrap().1, "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE");
    let none = resolve(&OtlpConfig { endpoint: "https://c".into(), ..OtlpConfig::default() }, &[]).unwrap().unwrap();
    assert_eq!(none.tls, Default::default(), "the system's roots only");
}

#[test]
fn unreadable_or_non_pem_tls_files_are_errors_naming_the_setting_and_file() {
    let d = crate::test_dir("otlp-tls");
    let junk = d.join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let tls = |p: &std::path::Path| super::settings::Tls { certificate: Some((p.to_path_buf(), "OTEL_EXPORTER_OTLP_CERTIFICATE")), client: None };
    let e = super::tls_material(&tls(&d.join("missing.pem"))).unwrap_err();
    assert!(e.contains("OTEL_EXPORTER_OTLP_CERTIFICATE") && e.contains("missing.pem") && e.contains("cannot read"), "{e}");
    let e = super::tls_material(&tls(&junk)).unwrap_err();
    assert!(e.contains("junk.pem") && e.contains("PEM"), "{e}");
    assert!(super::tls_material(&Default::default()).is_ok_and(|m| m.certs.is_empty() && m.identity.is_none() && m.ca_pem.is_none()));
}

#[test]
fn the_config_table_parses_with_its_keys() {
    let c = crate::config::Config::parse(
        "[export.otlp]\nendpoint = \"http://127.0.0.1:4318\"\ncapture_content = true\n[export.otlp.headers]\nauthorization = \"Bearer x\"\n",
        std::path::Path::new("t.toml"),
    )
    .unwrap();
    assert_eq!(c.export.otlp.endpoint, "http://127.0.0.1:4318");
    assert!(c.export.otlp.capture_content);
    assert_eq!(c.export.otlp.headers.get("authorization").map(String::as_str), Some("Bearer x"));
    let e = crate::config::Config::parse("[export.otlp]\nendpiont = \"x\"\n", std::path::Path::new("t.toml")).unwrap_err().to_string();
    assert!(e.contains("endpiont") && e.contains("line 2"), "{e}");
}

#[test]
fn a_full_export_queue_drops_and_counts_and_a_dead_receiver_is_counted_as_failed() {
    use std::sync::atomic::Ordering::Relaxed;
    // a loopback port nobody listens on
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let settings = Settings {
        traces_url: format!("http://127.0.0.1:{port}/v1/traces"),
        protocol: super::settings::Protocol::HttpProtobuf,
        source: "test",
        headers: Default::default(),
        service_name: "t".into(),
        capture_content: false,
        max_queue_size: 1,
        tls: Default::default(),
    };
    let sink = super::sink::Sink::new(&settings, opentelemetry_sdk::Resource::builder_empty().build()).unwrap();
    let rec = SpanRecord { name: "ping".into(), start_ns: 1, end_ns: 2, traceparent: None, tracestate: None, attributes: vec![], events: vec![], error: None };
    // the first span fills the queue of one; its export (refused, then
    // retried with backoff) is still under way while the next ones come
    for _ in 0..5 {
        sink.send(rec.clone());
    }
    let c = sink.counts().clone();
    assert_eq!((c.submitted.load(Relaxed), c.queue_full.load(Relaxed)), (1, 4), "one queued, four dropped at once");
    let lost = sink.shutdown(std::time::Duration::from_secs(10));
    assert_eq!(lost, 1, "the queued span never reached a receiver");
    assert_eq!((c.failed.load(Relaxed), c.failed_batches.load(Relaxed), c.exported.load(Relaxed)), (1, 1, 0));
}
