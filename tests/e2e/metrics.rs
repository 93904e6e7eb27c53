//! The daemon's live outputs, read by the tools that read them: its
//! Prometheus metrics scraped by the real Prometheus (Debian's package),
//! `mcp-sensor status` while a real server runs, its event lines on
//! stdout (`--log-stdout`), and a bad `--metrics-address`.
//!
//! The daemon watches the whole host, and other tests' servers run beside
//! these: a metric whose labels only this test's activity can carry (its
//! own rule) is checked exactly; the others are checked between this
//! session's own lines (a lower bound) and the whole log's (an upper one).

use crate::daemon::{client, run_client, Daemon};
use crate::enforce::{home_with_key, rule_file};
use crate::harness::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET path` on `addr` (HTTP/1.0): the status code and the body.
pub(crate) fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not HTTP: {text:?}"));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("no status: {head}"));
    (code, body.to_string())
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// The real Prometheus server, scraping one target every second.
struct Prometheus {
    child: Child,
    addr: String,
    log: std::path::PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(dir: &Path, target: &str) -> Prometheus {
        let bin = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"].into_iter().find(|p| Path::new(p).exists()).unwrap_or_else(|| {
            panic!("the prometheus server is not installed: `apt-get install prometheus` (scripts/install-deps.sh does)")
        });
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: mcp-sensor\n    \
                 scrape_interval: 1s\n    scrape_timeout: 1s\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = dir.join("prometheus.log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("prom-data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start prometheus");
        let mut p = Prometheus { child, addr, log };
        wait_for("prometheus to be ready", || {
            if let Ok(Some(st)) = p.child.try_wait() {
                panic!("prometheus exited ({st}): {}", std::fs::read_to_string(&p.log).unwrap_or_default());
            }
            std::net::TcpStream::connect(&p.addr).is_ok() && http_get(&p.addr, "/-/ready").0 == 200
        });
        p
    }

    /// The value of the one series `query` selects now; `None`: no series.
    fn value(&self, query: &str) -> Option<f64> {
        let (code, body) = http_get(&self.addr, &format!("/api/v1/query?query={}", url_encode(query)));
        assert_eq!(code, 200, "{query}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "success", "{query}: {v}");
        let result = v["data"]["result"].as_array().unwrap();
        assert!(result.len() <= 1, "{query} selects one series: {v}");
        result.first().map(|r| r["value"][1].as_str().unwrap().parse().unwrap())
    }

    fn wait_value(&self, query: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let mut last = None;
        wait_for(&format!("prometheus to show {query} as expected"), || {
            last = self.value(query);
            last.is_some_and(&ok)
        });
        last.unwrap()
    }
}

/// Occurrences of `rule`'s alerts with `action` in `evs`: each alert line,
/// and the repeats its `alert_summary` counts.
fn alert_occurrences(evs: &[Value], rule: &str, action: &str) -> u64 {
    evs.iter()
        .map(|e| match e["kind"].as_str() {
            Some("alert") if e["rule"] == rule && e["action"] == action => 1,
            Some("alert_summary") if e["rule"] == rule && e["action"] == action => e["count"].as_u64().unwrap() - 1,
            _ => 0,
        })
        .sum()
}

#[test]
fn prometheus_scrapes_the_daemons_metrics_and_counts_a_key_read_session() {
    let d = scratch("metrics-prom");
    let (home, key, _secret) = home_with_key(&d);
    // a rule of this test alone: its alert counter is exactly this session's
    let rules = rule_file(
        &d,
        &format!(
            "- rule: metrics-test-key\n  description: this test's key\n  severity: low\n  kind: open\n  action: alert\n  match:\n    path: {}/.ssh/id_*\n",
            home.display()
        ),
    );
    let target = format!("127.0.0.1:{}", free_port());
    let daemon = Daemon::start_with(&d, "", &["--rules", &rules, "--metrics-address", &target]);
    // 200 at once (starting), then `ok` from the pipeline's first tick on
    let (code, body) = http_get(&target, "/healthz");
    assert_eq!(code, 200, "{body}");
    wait_for("/healthz to say the pipeline ticks", || http_get(&target, "/healthz") == (200, "ok\n".into()));
    let (code, body) = http_get(&target, "/nothing");
    assert_eq!(code, 404, "{body}");
    let prom = Prometheus::start(&d, &target);
    prom.wait_value("up{job=\"mcp-sensor\"}", |v| v == 1.0);
    assert_eq!(prom.value("mcp_sensor_build_info{mode=\"alert-only\",version=\"0.1.0\"}"), Some(1.0));
    // a kill rule without --enforce: its alert lines say `would_kill`
    let ssh = "mcp_sensor_alerts_total{rule=\"ssh-key-read\",action=\"would_kill\"}";
    let ssh_before = prom.value(ssh).unwrap_or(0.0);

    let report = run_client(&mut client(&home, json!([
        {"call": "read_text_file", "arguments": {"path": home.join("notes.txt")}},
        {"call": "read_text_file", "arguments": {"path": key}},
    ])));
    assert_eq!(report["results"][0]["content_text"], "benign\n", "{report}");
    let own = prom.wait_value("mcp_sensor_alerts_total{rule=\"metrics-test-key\",action=\"alert\"}", |v| v >= 1.0);
    let calls_q = "mcp_sensor_tool_calls_total{server=\"secure-filesystem-server\",tool=\"read_text_file\"}";
    let calls = prom.wait_value(calls_q, |v| v >= 2.0);
    let ssh_after = prom.wait_value(ssh, |v| v >= ssh_before + 1.0);
    let kinds: Vec<(&str, f64)> = ["rpc", "open", "alert", "server_found"]
        .into_iter()
        .map(|k| (k, prom.value(&format!("mcp_sensor_events_total{{kind=\"{k}\"}}")).unwrap_or(0.0)))
        .collect();
    let servers = prom.value("mcp_sensor_watched_servers");
    let (status, evs) = daemon.stop();
    assert_eq!(status, 0);

    let key_call = evs
        .iter()
        .find(|e| e["kind"] == "rpc" && e["arguments"]["path"] == key.display().to_string())
        .expect("the session's key read is in the log");
    let server_pid = key_call["server"]["pid"].clone();
    assert_eq!(own, 1.0, "one key read, one alert of this test's rule");
    assert_eq!(alert_occurrences(&evs, "metrics-test-key", "alert"), 1);
    assert!(
        ssh_after >= ssh_before + 1.0 && ssh_after <= alert_occurrences(&evs, "ssh-key-read", "would_kill") as f64,
        "ssh-key-read: {ssh_before} before, {ssh_after} after; the log has {}",
        alert_occurrences(&evs, "ssh-key-read", "would_kill")
    );
    let logged_calls = evs
        .iter()
        .filter(|e| e["kind"] == "rpc" && e["direction"] == "client_to_server" && e["method"] == "tools/call")
        .filter(|e| e["tool"] == "read_text_file" && e["server"]["name"] == "secure-filesystem-server")
        .count() as f64;
    assert!(calls >= 2.0 && calls <= logged_calls, "tool calls: prometheus {calls}, the log {logged_calls}");
    for (kind, n) in kinds {
        let session = evs.iter().filter(|e| e["kind"] == kind && e["server"]["pid"] == server_pid).count() as f64;
        let all = evs.iter().filter(|e| e["kind"] == kind).count() as f64;
        assert!(session >= 1.0, "the session has {kind} lines");
        assert!(n >= session && n <= all, "events of kind {kind}: prometheus {n}, this session's {session}, the whole log {all}");
    }
    assert!(servers.is_some(), "the watched-servers gauge is exposed");
}

/// `mcp-sensor status --state-dir DIR [--json]`.
fn status(state: &Path, json: bool) -> std::process::Output {
    let mut c = Command::new(sensor_bin());
    c.arg("status").arg("--state-dir").arg(state);
    if json {
        c.arg("--json");
    }
    c.output().unwrap()
}

fn listed(state: &Path, pid: u64) -> Option<Value> {
    let out = status(state, true);
    assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("status --json prints JSON");
    v["servers"].as_array().unwrap().iter().find(|s| s["pid"] == pid).map(|s| json!({"row": s, "board": v}))
}

#[test]
fn status_lists_a_running_server_while_it_runs() {
    let d = scratch("status");
    let state = d.join("state");
    let out = status(&state, false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "no daemon: {err}");
    assert!(err.contains("no mcp-sensor daemon answers") && err.contains("--state-dir") && !err.contains("panicked"), "{err}");

    let target = d.join("notes.txt");
    std::fs::write(&target, "status\n").unwrap();
    let daemon = Daemon::start(&d, "");
    let sock = state.join("status.sock");
    let meta = std::fs::metadata(&sock).expect("the status socket exists");
    assert_eq!((meta.permissions().mode() & 0o777, meta.uid()), (0o600, 0), "root-only socket");
    let go = d.join("go");
    let mut running = client(&d, json!([{"call": "read_text_file", "arguments": {"path": target}}, {"wait_file": go}]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = daemon.log_dir.join("events.jsonl");
    let call = wait_for_event(&log, "the call in the log", |e| e["kind"] == "rpc" && e["arguments"]["path"] == target.display().to_string());
    let pid = call["server"]["pid"].as_u64().unwrap();
    let mut found = None;
    wait_for("status to list the server with its call", || {
        found = listed(&state, pid).filter(|f| f["row"]["calls"].as_u64() >= Some(1));
        found.is_some()
    });
    let found = found.unwrap();
    let (row, board) = (&found["row"], &found["board"]);
    assert_eq!(row["name"], "secure-filesystem-server", "{found}");
    assert!(row["client"].as_str().is_some_and(|c| c.starts_with("python")), "the SDK client started it: {found}");
    assert!(row["since"].as_str().is_some_and(|s| s.ends_with('Z')), "{found}");
    assert_eq!(board["mode"], "alert-only", "{found}");
    assert!(board["hooks"]["open"].is_string() && board["drops"].is_object(), "{found}");
    let table = status(&state, false);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("mode alert-only") && text.contains("hooks: "), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with(&format!("{pid} ")) && l.contains("secure-filesystem-server")),
        "the table has the server's row:\n{text}"
    );
    // the server exits with its client: no longer listed
    std::fs::write(&go, "").unwrap();
    let mut report = String::new();
    running.stdout.take().unwrap().read_to_string(&mut report).unwrap();
    assert!(running.wait().unwrap().success(), "{report}");
    wait_for("status to drop the exited server", || listed(&state, pid).is_none());
    assert_eq!(daemon.stop_status(), 0);
    assert!(!sock.exists(), "a clean stop removes the socket");
}

#[test]
fn log_stdout_carries_the_same_lines_as_the_log_file() {
    let d = scratch("stdout");
    let target = d.join("notes.txt");
    std::fs::write(&target, "stdout\n").unwrap();
    let out = d.join("daemon.stdout");
    let daemon = Daemon::start_stdout(&d, "", &["--log-stdout"], std::fs::File::create(&out).unwrap());
    run_client(&mut client(&d, json!([{"call": "read_text_file", "arguments": {"path": target}}])));
    let log = daemon.log_dir.join("events.jsonl");
    let (status, evs) = daemon.stop();
    assert_eq!(status, 0);
    let path = target.display().to_string();
    assert!(evs.iter().any(|e| e["kind"] == "open" && e["path"] == path), "the session's open is logged");
    let file = std::fs::read_to_string(&log).unwrap();
    let stdout = std::fs::read_to_string(&out).unwrap();
    assert!(stdout.lines().count() > 3, "stdout has the lines: {stdout}");
    assert!(stdout == file, "stdout ({} lines) is the log file ({} lines), line for line", stdout.lines().count(), file.lines().count());
}

/// `mcp-sensor run` with `args`, which must fail at start: its status and stderr.
fn run_fails(d: &Path, args: &[&str]) -> (i32, String) {
    let config = d.join("config.toml");
    if !config.exists() {
        std::fs::write(&config, format!("[log]\ndir = \"{}\"\n", d.join("log").display())).unwrap();
    }
    let mut child = Command::new(sensor_bin())
        .args(["run", "--config"])
        .arg(&config)
        .args(isolation(d))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("`run {args:?}` did not stop at start");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(!err.contains("panicked"), "{err}");
    (st.code().unwrap_or(-1), err)
}

#[test]
fn a_bad_metrics_address_is_a_clear_error_at_start() {
    require_root();
    let d = scratch("metrics-bad");
    let (code, err) = run_fails(&d, &["--metrics-address", "localhost:9464"]);
    assert_eq!(code, 2, "a usage error: {err}");
    assert!(err.contains("--metrics-address") && err.contains("127.0.0.1:9464"), "{err}");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let (code, err) = run_fails(&d, &["--metrics-address", &addr]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&addr) && err.contains("in use") && err.contains("another process listens there"), "{err}");
    std::fs::write(d.join("config.toml"), "[metrics]\naddress = \"9464\"\n").unwrap();
    let (code, err) = run_fails(&d, &["--check-config"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("metrics.address") && err.contains("IP:PORT"), "{err}");
}
