//! OTLP trace export (`[export.otlp]`, mcp-sensor/src/export/): the daemon
//! exports to a real OTLP/HTTP receiver started here
//! (tests/mcp/otlp_receiver.py, decoding with the official
//! `opentelemetry-proto` package), while the official SDK client drives
//! the real filesystem server. Spans are keyed on this test's own server
//! (`mcp_sensor.server.pid`): the daemon watches the whole host, and tests
//! beside it have servers too.

use crate::daemon::{client, run_client, Daemon};
use crate::enforce::home_with_key;
use crate::harness::*;
use crate::mcp::mcp_env;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The receiver, stopped when dropped.
struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    /// `fail_first`: that many posts are answered 503 first (retryable).
    fn start(dir: &Path, fail_first: u32) -> Receiver {
        Self::start_with(dir, fail_first, &[])
    }

    /// [`Self::start`] with more of the receiver's arguments (`--tls`).
    fn start_with(dir: &Path, fail_first: u32, args: &[&Path]) -> Receiver {
        let env = mcp_env();
        let py = env.get("MCP_OTLP_PY").cloned().unwrap_or_else(|| {
            let deps = Path::new(&env["MCP_TEST_DEPS"]).join("venv-otlp/bin/python");
            deps.display().to_string()
        });
        assert!(Path::new(&py).exists(), "{py} is missing: run tests/mcp/setup.sh (it installs opentelemetry-proto into venv-otlp)");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/mcp/otlp_receiver.py");
        let out = dir.join("spans.jsonl");
        let mut child = Command::new(&py)
            .arg(script)
            .arg(&out)
            .args(["--fail-first", &fail_first.to_string()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("receiver.stderr")).unwrap())
            .spawn()
            .expect("start the OTLP receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("listening ").and_then(|p| p.parse().ok()).unwrap_or_else(|| {
            panic!("the receiver did not start: {line:?} {}", std::fs::read_to_string(dir.join("receiver.stderr")).unwrap_or_default())
        });
        Receiver { child, port, out }
    }

    /// The decoded spans of server `pid` (all of them once the daemon stopped).
    fn spans_of(&self, pid: u64) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("the receiver writes JSON lines"))
            .filter(|s| s["attributes"]["mcp_sensor.server.pid"] == pid)
            .collect()
    }
}

/// The server's `tools/call` request of `path` in the log: (server pid, id).
fn call_of(evs: &[Value], path: &Path) -> (u64, Value) {
    let calls: Vec<_> = evs
        .iter()
        .filter(|e| e["kind"] == "rpc" && e["direction"] == "client_to_server" && e["tool"] == "read_text_file")
        .filter(|e| e["arguments"]["path"] == path.display().to_string())
        .collect();
    assert_eq!(calls.len(), 1, "one call reading {}", path.display());
    (calls[0]["server"]["pid"].as_u64().unwrap(), calls[0]["id"].clone())
}

fn events_named<'a>(span: &'a Value, name: &str) -> Vec<&'a Value> {
    span["events"].as_array().unwrap().iter().filter(|e| e["name"] == name).collect()
}

#[test]
fn otlp_export_has_a_span_per_tool_call_with_its_open_and_finding_and_joins_the_clients_trace() {
    let d = scratch("otlp");
    let (home, key, _) = home_with_key(&d);
    let notes = home.join("notes.txt");
    // the first export is refused with 503: the exporter must retry it
    let rx = Receiver::start(&d, 1);
    let daemon = Daemon::start(&d, &format!("[export.otlp]\nendpoint = \"http://127.0.0.1:{}\"\n[export.otlp.headers]\nx-tenant = \"blue\"\n", rx.port));
    assert!(daemon.stderr_text().contains("(OTLP/HTTP, from export.otlp.endpoint)"), "{}", daemon.stderr_text());
    let (trace_id, parent_id) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let report = run_client(&mut client(&home, json!([
        {"call": "read_text_file", "arguments": {"path": notes}, "meta": {"traceparent": format!("00-{trace_id}-{parent_id}-01")}},
        {"call": "read_text_file", "arguments": {"path": key}},
    ])));
    let (status, evs) = daemon.stop();
    assert_eq!(status, 0);
    let (server, key_id) = call_of(&evs, &key);
    let (_, notes_id) = call_of(&evs, &notes);
    let spans = rx.spans_of(server);
    let named = |id: &Value| -> &Value {
        let id = id.as_str().map_or_else(|| id.to_string(), str::to_string);
        let found: Vec<_> = spans.iter().filter(|s| s["attributes"]["jsonrpc.request.id"] == id.as_str()).collect();
        assert_eq!(found.len(), 1, "one span for request {id}: {spans:#?}");
        found[0]
    };
    // the key read: one span named and attributed by the MCP conventions
    let span = named(&key_id);
    assert_eq!(span["name"], "tools/call read_text_file", "{span}");
    let a = &span["attributes"];
    assert_eq!(a["mcp.method.name"], "tools/call", "{span}");
    assert_eq!(a["gen_ai.tool.name"], "read_text_file", "{span}");
    assert_eq!(a["gen_ai.operation.name"], "execute_tool", "{span}");
    assert_eq!(a["network.transport"], "pipe", "{span}");
    assert_eq!(a["mcp.protocol.version"], report["protocol_version"], "the negotiated version: {span}");
    assert!(a["mcp.session.id"].as_str().is_some_and(|s| s.starts_with(&format!("{server}-"))), "{span}");
    assert_eq!(a["mcp_sensor.end_reason"], "response", "{span}");
    assert!(a.get("error.type").is_none() && a.get("gen_ai.tool.call.arguments").is_none(), "no error, no content: {span}");
    assert_eq!(span["kind"], 2, "SPAN_KIND_SERVER: {span}");
    let (start, end) = (span["start_ns"].as_u64().unwrap(), span["end_ns"].as_u64().unwrap());
    assert!(start > 0 && end > start, "{span}");
    // its host action: the server's open of the key, within the span
    let opens: Vec<_> = events_named(span, "open").into_iter().filter(|e| e["attributes"]["file.path"] == key.display().to_string()).collect();
    assert!(!opens.is_empty(), "the open of the key is on the span: {span}");
    assert_eq!(opens[0]["attributes"]["process.pid"], server, "{span}");
    let at = opens[0]["ts_ns"].as_u64().unwrap();
    assert!(start <= at && at <= end, "the open happened during the call: {span}");
    // and the finding it raised
    let findings = events_named(span, "security_finding");
    let f: Vec<_> = findings.iter().filter(|e| e["attributes"]["security_rule.name"] == "ssh-key-read").collect();
    assert_eq!(f.len(), 1, "{span}");
    let fa = &f[0]["attributes"];
    assert_eq!((&fa["security_finding.severity"], &fa["security_finding.decision"]), (&json!("high"), &json!("alert")), "{span}");
    assert_eq!(fa["security_finding.action"], "would_kill", "a kill rule without --enforce: {span}");
    assert_eq!(fa["file.path"], key.display().to_string(), "{span}");
    assert_eq!(span["headers"]["x-tenant"], "blue", "the configured header was sent: {span}");
    // the resource: who exported it
    let r = &span["resource"];
    assert_eq!(r["service.name"], "mcp-sensor", "{r}");
    assert_eq!(r["service.version"], env!("CARGO_PKG_VERSION"), "{r}");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(r["host.name"], hostname.trim(), "{r}");
    if let Ok(id) = std::fs::read_to_string("/etc/machine-id") {
        assert_eq!(r["host.id"], id.trim(), "{r}");
    }
    // no traceparent sent: a trace of its own
    assert_eq!(span["parent_span_id"], "", "{span}");
    assert_ne!(span["trace_id"], trace_id, "{span}");
    // the call that sent one joined the client's trace under its span
    let joined = named(&notes_id);
    assert_eq!((&joined["trace_id"], &joined["parent_span_id"]), (&json!(trace_id), &json!(parent_id)), "{joined}");
    assert!(events_named(joined, "security_finding").is_empty(), "a benign read raised nothing: {joined}");
    // the refused export was retried and taken: nothing lost on the way
    let posts = std::fs::read_to_string(rx.out.with_extension("jsonl.requests")).unwrap();
    assert!(posts.starts_with("503\n200\n"), "{posts}");
    let fin = evs.iter().find(|e| e["kind"] == "drops" && e["final"] == true).expect("final drops");
    assert!(fin["other"].get("export_failed").is_none() && fin["other"].get("export_queue_full").is_none(), "{fin}");
}

#[test]
fn otlp_export_to_an_unreachable_endpoint_never_blocks_the_pipeline_and_counts_the_loss() {
    let d = scratch("otlp-down");
    let notes = d.join("notes.txt");
    std::fs::write(&notes, "n\n").unwrap();
    // a loopback port nobody listens on
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let metrics = format!("127.0.0.1:{}", crate::metrics::free_port());
    let daemon = Daemon::start_env(&d, "", &["--metrics-address", &metrics], &[("OTEL_EXPORTER_OTLP_ENDPOINT", &url)]);
    // the environment alone turned export on, at that endpoint
    assert!(daemon.stderr_text().contains(&format!("{url}/v1/traces (OTLP/HTTP, from OTEL_EXPORTER_OTLP_ENDPOINT)")), "{}", daemon.stderr_text());
    let report = run_client(&mut client(&d, json!([
        {"call": "read_text_file", "arguments": {"path": notes}},
        {"call": "list_allowed_directories"},
    ])));
    assert_eq!(report["results"][0]["content_text"], "n\n", "{report}");
    // shown in the metrics while the daemon runs: the failed batches and
    // the spans given up on, with the drop by stage
    let value = |text: &str, name: &str| -> u64 {
        text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok()).map_or(0, |v| v as u64)
    };
    let mut text = String::new();
    crate::harness::wait_for("export failures in /metrics", || {
        text = crate::metrics::http_get(&metrics, "/metrics").1;
        value(&text, "mcp_sensor_export_failures_total ") > 0 && value(&text, "mcp_sensor_export_dropped_total ") > 0
    });
    assert!(text.contains("mcp_sensor_drops_total{stage=\"export\",kind=\"export_failed\"}"), "{text}");
    let stderr_before = daemon.stderr_text();
    let (status, evs) = daemon.stop();
    assert_eq!(status, 0, "a clean stop, export down or not");
    // positive control: the session was watched and all its lines are in
    // the log: every request with its response, and the open
    let (server, _) = call_of(&evs, &notes);
    let mine = |e: &&Value| e["server"]["pid"] == server;
    let requests: Vec<_> = evs.iter().filter(mine).filter(|e| e["kind"] == "rpc" && e["direction"] == "client_to_server" && e["message"] == "request").collect();
    let answers = evs.iter().filter(mine).filter(|e| e["kind"] == "rpc" && e["direction"] == "server_to_client" && (e["message"] == "response" || e["message"] == "error")).count();
    assert!(requests.len() >= 3, "initialize and the two calls: {requests:?}");
    assert_eq!(answers, requests.len(), "every request was answered (server/discover with an error) and logged");
    assert!(evs.iter().filter(mine).any(|e| e["kind"] == "open" && e["path"] == notes.display().to_string()), "the open is logged");
    assert!(stderr_before.contains("watching the host"), "{stderr_before}");
    // the loss is counted in the drop accounting: each of this server's
    // request spans (and any other server's) failed after the retries
    let fin = evs.iter().find(|e| e["kind"] == "drops" && e["final"] == true).expect("final drops");
    let failed = fin["other"]["export_failed"].as_u64().unwrap_or(0);
    assert!(failed >= requests.len() as u64, "{} spans of this server at least: {fin}", requests.len());
    assert!(fin["hint"].as_str().unwrap_or("").contains("OTLP"), "{fin}");
    let stderr = Daemon::stderr_in(&d);
    assert!(stderr.contains("OTLP export to") && stderr.contains("failed after retries"), "said once on stderr: {stderr}");
}

/// A test CA, a server certificate for 127.0.0.1 and a client certificate
/// it signed, made with the openssl command (PEM files in `dir`):
/// `[ca, server cert, server key, client cert, client key]`.
fn test_pki(dir: &Path) -> [PathBuf; 5] {
    let f = |n: &str| dir.join(n);
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl (scripts/install-deps.sh installs it)");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(&[&["req", "-x509"], &ec[..], &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=mcp-sensor test CA"]].concat());
    for (name, cn, ext) in [
        ("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"),
        ("client", "mcp-sensor", "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(f(&format!("{name}.ext")), ext).unwrap();
        openssl(&[&["req"], &ec[..], &["-keyout", &format!("{name}.key"), "-out", &format!("{name}.csr"), "-subj", &format!("/CN={cn}")]].concat());
        openssl(&["x509", "-req", "-in", &format!("{name}.csr"), "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
                  "-out", &format!("{name}.pem"), "-extfile", &format!("{name}.ext")]);
    }
    [f("ca.pem"), f("server.pem"), f("server.key"), f("client.pem"), f("client.key")]
}

/// OTLP over TLS with mutual TLS (OTLP/HTTP, or OTLP/gRPC with `grpc`):
/// the receiver serves a certificate of a CA the system does not know and
/// requires a client certificate. With the CA named by
/// `OTEL_EXPORTER_OTLP_CERTIFICATE` and the client's pair by the config's
/// `client_certificate`/`client_key`, the key read's span arrives, with
/// its finding and the configured header. The control, same receiver:
/// without the CA the handshake is refused, nothing arrives, and the loss
/// is counted (`export_failed`).
fn export_over_mutual_tls(d: &Path, grpc: bool) {
    let (home, key, _) = home_with_key(d);
    let [ca, cert, cert_key, client_cert, client_key] = test_pki(d);
    let mut args = vec![Path::new("--tls"), &cert, &cert_key, Path::new("--client-ca"), &ca];
    if grpc {
        args.push(Path::new("--grpc"));
    }
    let rx = Receiver::start_with(d, 0, &args);
    let config = format!(
        "[export.otlp]\nendpoint = \"https://127.0.0.1:{}\"\nprotocol = \"{}\"\nclient_certificate = \"{}\"\nclient_key = \"{}\"\n\
         [export.otlp.headers]\nx-tenant = \"blue\"\n",
        rx.port,
        if grpc { "grpc" } else { "http/protobuf" },
        client_cert.display(),
        client_key.display()
    );
    let run = |name: &str, envs: &[(&str, &str)]| {
        // a directory (config, log) per daemon
        let dir = d.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let daemon = Daemon::start_env(&dir, &config, &[], envs);
        run_client(&mut client(&home, json!([{"call": "read_text_file", "arguments": {"path": key}}])));
        let (status, evs) = daemon.stop();
        assert_eq!(status, 0);
        let (server, _) = call_of(&evs, &key);
        let fin = evs.iter().rev().find(|e| e["kind"] == "drops" && e["final"] == true).expect("final drops").clone();
        (server, fin)
    };
    let (server, fin) = run("with-ca", &[("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.to_str().unwrap())]);
    let spans = rx.spans_of(server);
    let found = |s: &&Value| s["name"] == "tools/call read_text_file" && !events_named(s, "security_finding").is_empty();
    let span = spans.iter().find(found).unwrap_or_else(|| panic!("the key read's span, with its finding: {spans:#?}"));
    assert_eq!(span["headers"]["x-tenant"], "blue", "the configured header (gRPC: metadata): {span}");
    assert!(fin["other"].get("export_failed").is_none(), "{fin}");
    let requests = std::fs::read_to_string(rx.out.with_extension("jsonl.requests")).unwrap_or_default();
    assert!(!requests.contains("tls-error"), "{requests}");
    // the control: the system's roots alone do not trust the test CA
    let (server, fin) = run("without-ca", &[]);
    assert!(rx.spans_of(server).is_empty(), "nothing arrived without the CA");
    let stderr = Daemon::stderr_in(&d.join("without-ca"));
    assert!(stderr.contains("failed after retries") && stderr.contains("OTEL_EXPORTER_OTLP_CERTIFICATE"), "the hint names the certificate: {stderr}");
    let proto = if grpc { "(OTLP/gRPC, from export.otlp.endpoint)" } else { "(OTLP/HTTP, from export.otlp.endpoint)" };
    assert!(stderr.contains(proto), "{stderr}");
    assert!(fin["other"]["export_failed"].as_u64().unwrap_or(0) >= 1, "the loss is counted: {fin}");
    let requests = std::fs::read_to_string(rx.out.with_extension("jsonl.requests")).unwrap_or_default();
    if !grpc {
        // grpcio does not hand a failed handshake to the application
        assert!(requests.contains("tls-error"), "the receiver saw the handshake fail: {requests}");
    }
}

#[test]
fn otlp_export_over_https_trusts_the_named_ca_and_presents_the_client_certificate() {
    export_over_mutual_tls(&scratch("otlp-tls"), false);
}

#[test]
fn otlp_export_over_grpc_with_mutual_tls() {
    export_over_mutual_tls(&scratch("otlp-grpc"), true);
}

/// OTLP/gRPC in plain text, configured by the standard variables alone
/// (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`, an `http://` endpoint used as is),
/// the first export refused (UNAVAILABLE) and retried: the key read's
/// span arrives with its finding, nothing is counted lost.
#[test]
fn otlp_export_over_plain_grpc_from_the_environment_retries_and_delivers() {
    let d = scratch("otlp-grpc-plain");
    let (home, key, _) = home_with_key(&d);
    let rx = Receiver::start_with(&d, 1, &[Path::new("--grpc")]);
    let url = format!("http://127.0.0.1:{}", rx.port);
    let daemon = Daemon::start_env(&d, "", &[], &[("OTEL_EXPORTER_OTLP_ENDPOINT", &url), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]);
    assert!(daemon.stderr_text().contains(&format!("{url} (OTLP/gRPC, from OTEL_EXPORTER_OTLP_ENDPOINT)")), "{}", daemon.stderr_text());
    run_client(&mut client(&home, json!([{"call": "read_text_file", "arguments": {"path": key}}])));
    let (status, evs) = daemon.stop();
    assert_eq!(status, 0);
    let (server, id) = call_of(&evs, &key);
    let spans = rx.spans_of(server);
    let id = id.as_str().map_or_else(|| id.to_string(), str::to_string);
    let span = spans.iter().find(|s| s["attributes"]["jsonrpc.request.id"] == id.as_str()).unwrap_or_else(|| panic!("the call's span: {spans:#?}"));
    assert_eq!(span["name"], "tools/call read_text_file", "{span}");
    assert!(events_named(span, "security_finding").iter().any(|f| f["attributes"]["security_rule.name"] == "ssh-key-read"), "{span}");
    let posts = std::fs::read_to_string(rx.out.with_extension("jsonl.requests")).unwrap();
    assert!(posts.starts_with("503\n200\n"), "refused once, then taken: {posts}");
    let fin = evs.iter().find(|e| e["kind"] == "drops" && e["final"] == true).expect("final drops");
    assert!(fin["other"].get("export_failed").is_none(), "{fin}");
}
