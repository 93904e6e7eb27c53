//! What the OTLP trace export (`[export.otlp]`, mcp-sensor/src/export/)
//! costs (issue 13), against a real OTLP/HTTP receiver on this host
//! (tests/mcp/otlp_receiver.py: the official `opentelemetry-proto` classes
//! decode every post, one JSON line per span).
//!
//! Both run the exporting daemon with `OTEL_BSP_SCHEDULE_DELAY=100` (ms):
//! with the default 5 s a block of calls would end before its spans were
//! posted (they would go at the daemon's stop, outside the measured
//! block), and a flood's last, partial batch would wait up to 5 s. Posting
//! every 100 ms puts the export's HTTP work inside what is measured, more
//! often than the default does; full batches (512 spans) go at once
//! either way.
//!
//! - Round trip (`--export-sessions`): bench_blocks' in-session design,
//!   the daemon started between blocks with its export off or on, in a
//!   random order per pair. The run fails unless the receiver got a
//!   `tools/call` span for every call of each exporting block; how many
//!   had arrived before the block's daemon was stopped is reported.
//! - Flood (`--export-flood-rounds`): the daemon finds a fresh
//!   `server-everything`, driven as fast as it answers (a window of
//!   `echo` calls in flight), once with export off and once on per round.
//!   Reported: calls/s, spans/s delivered (from the flood's start until
//!   the receiver holds a span for every call), and the daemon's CPU time
//!   (utime + stime of /proc/<pid>/stat) per 1,000 lines it wrote to its
//!   log meanwhile.

use crate::bench::start_daemon;
use crate::bench_blocks::{compare, Beside};
use crate::bench_mcp::{mcp_env, median, Rng};
use crate::proc_usage::{cpu_ticks, ticks_per_s};
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// The exporting daemon's batch delay (see the module doc).
pub(crate) const SCHEDULE_DELAY: (&str, &str) = ("OTEL_BSP_SCHEDULE_DELAY", "100");

/// The OTLP/HTTP receiver (tests/mcp/otlp_receiver.py), stopped when dropped.
pub(crate) struct Receiver {
    child: Child,
    port: u16,
    /// One decoded span a line.
    out: PathBuf,
    /// Spans received when blocks ended, before their daemon's stop, and
    /// the calls of those blocks ([`Receiver::note_block_end`]).
    at_block_end: Cell<(u64, u64)>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JSON-RPC id as the span's `jsonrpc.request.id` carries it (a string).
fn id_text(id: &Value) -> String {
    id.as_str().map_or_else(|| id.to_string(), str::to_string)
}

impl Receiver {
    /// Starts it with the venv-otlp python (tests/mcp/setup.sh), writing
    /// under `dir`; returns once it listens.
    pub(crate) fn start(dir: &Path, env: &HashMap<String, String>) -> Result<Receiver> {
        std::fs::create_dir_all(dir)?;
        let py = env.get("MCP_OTLP_PY").context("no MCP_OTLP_PY in tests/.deps/env.sh: run tests/mcp/setup.sh")?;
        let out = dir.join("spans.jsonl");
        let mut child = Command::new(py)
            .arg(crate::root().join("tests/mcp/otlp_receiver.py"))
            .arg(&out)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("receiver.stderr"))?)
            .spawn()
            .with_context(|| format!("starting the OTLP receiver with {py} (tests/mcp/setup.sh installs it)"))?;
        let mut said = String::new();
        BufReader::new(child.stdout.take().context("receiver stdout")?).read_line(&mut said)?;
        let port = said.trim().strip_prefix("listening ").and_then(|p| p.parse().ok());
        let rx = Receiver { child, port: port.unwrap_or(0), out, at_block_end: Cell::new((0, 0)) };
        anyhow::ensure!(port.is_some(), "the OTLP receiver did not start ({said:?}; see {})", dir.join("receiver.stderr").display());
        Ok(rx)
    }

    /// The daemon's configuration table that exports here.
    pub(crate) fn config(&self) -> String {
        format!("[export.otlp]\nendpoint = \"http://127.0.0.1:{}\"\n", self.port)
    }

    /// Forgets the spans received so far (the receiver reopens its file
    /// for each post).
    pub(crate) fn clear(&self) -> Result<()> {
        match std::fs::remove_file(&self.out) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// A block of `calls` calls just ended, its daemon still running:
    /// counts the spans received by now.
    pub(crate) fn note_block_end(&self, calls: usize) {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let n = text.lines().filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|s| s["attributes"]["mcp.method.name"] == "tools/call")).count() as u64;
        let (spans, all) = self.at_block_end.get();
        self.at_block_end.set((spans + n, all + calls as u64));
    }

    /// How many of `calls` (server pid, JSON-RPC id) have no `tools/call`
    /// span at the receiver.
    pub(crate) fn missing_spans(&self, calls: &[(u64, Value)]) -> Result<usize> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let mut have = HashSet::new();
        for l in text.lines() {
            let a = &serde_json::from_str::<Value>(l).context("a receiver line")?["attributes"];
            if let (Some(pid), Some(id)) = (a["mcp_sensor.server.pid"].as_u64(), a["jsonrpc.request.id"].as_str()) {
                if a["mcp.method.name"] == "tools/call" {
                    have.insert((pid, id.to_string()));
                }
            }
        }
        Ok(calls.iter().filter(|(pid, id)| !have.contains(&(*pid, id_text(id)))).count())
    }
}

/// The daemon's export off and on between blocks of one session.
pub fn round_trip(sessions: usize, pairs: usize, calls: usize, seed: u64) -> Result<String> {
    let env = mcp_env()?;
    let rx = Receiver::start(&std::env::temp_dir().join(format!("mcp-sensor-bench-otlp-{}", std::process::id())), &env)?;
    let report = compare(
        &env,
        (sessions, pairs, calls, seed),
        (Beside::Daemon, Beside::Exporting(&rx)),
        "tool-call round trip in one session, daemon export off/on between blocks",
    )?;
    let (spans, all) = rx.at_block_end.get();
    Ok(format!(
        "{report}\n\nspans at the receiver when the exporting blocks ended (before the daemon's stop flushed the rest): \
         {spans} of {all} calls; every call's span there after the stop"
    ))
}

/// Complete lines appended to a file since the last look.
pub(crate) struct Tail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    /// Lines read so far.
    lines: u64,
}

impl Tail {
    pub(crate) fn new(path: &Path) -> Tail {
        Tail { path: path.to_path_buf(), offset: 0, partial: Vec::new(), lines: 0 }
    }

    pub(crate) fn next_lines(&mut self) -> Result<Vec<String>> {
        let Ok(mut f) = std::fs::File::open(&self.path) else { return Ok(vec![]) };
        f.seek(std::io::SeekFrom::Start(self.offset))?;
        self.offset += f.read_to_end(&mut self.partial)? as u64;
        let Some(end) = self.partial.iter().rposition(|&c| c == b'\n') else { return Ok(vec![]) };
        let rest = self.partial.split_off(end + 1);
        let done = std::mem::replace(&mut self.partial, rest);
        let lines: Vec<String> = String::from_utf8_lossy(&done).lines().map(str::to_string).collect();
        self.lines += lines.len() as u64;
        Ok(lines)
    }
}

fn send(to: &mut impl Write, msg: Value) -> Result<()> {
    writeln!(to, "{msg}")?;
    to.flush()?;
    Ok(())
}

/// The next response the server wrote (notifications skipped).
fn response(from: &mut impl BufRead) -> Result<Value> {
    loop {
        let mut line = String::new();
        anyhow::ensure!(from.read_line(&mut line)? > 0, "the server closed its stdout");
        let v: Value = serde_json::from_str(&line).with_context(|| format!("server wrote {line:?}"))?;
        if v.get("id").is_some() && v.get("method").is_none() {
            anyhow::ensure!(v.get("result").is_some(), "the server answered with an error: {v}");
            return Ok(v);
        }
    }
}

/// A `server-everything` started with pipes on stdin and stdout (a
/// discovery candidate at its exec, `stdio_pipes`), past the handshake:
/// `initialize` answered, `notifications/initialized` sent.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) to: BufWriter<ChildStdin>,
    pub(crate) from: BufReader<ChildStdout>,
}

impl Server {
    pub(crate) fn start(env: &HashMap<String, String>, stderr: &Path, client: &str) -> Result<Server> {
        let argv: Vec<&str> = env["MCP_EVERYTHING_SERVER"].split_whitespace().collect();
        let mut child = Command::new(argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(stderr)?)
            .spawn()?;
        let mut to = BufWriter::new(child.stdin.take().context("server stdin")?);
        let mut from = BufReader::new(child.stdout.take().context("server stdout")?);
        let info = json!({"name": client, "version": "1"});
        send(&mut to, json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": info}}))?;
        response(&mut from)?;
        send(&mut to, json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
        Ok(Server { child, to, from })
    }

    /// One `echo` call, answered.
    pub(crate) fn echo(&mut self, id: u64, message: &str) -> Result<()> {
        send(&mut self.to, echo_request(id, message))?;
        response(&mut self.from).map(drop)
    }
}

fn echo_request(id: u64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": message}}})
}

/// The pid of the server a daemon log line says was found, if it is a
/// `server_found` line.
pub(crate) fn found_pid(line: &str) -> Option<u64> {
    if !line.contains("\"kind\":\"server_found\"") {
        return None;
    }
    serde_json::from_str::<Value>(line).ok().filter(|e| e["kind"] == "server_found")?["pid"].as_u64()
}

/// A log line: server `pid` answering a `tools/call`.
fn is_answer(line: &str, pid: u64) -> bool {
    line.contains("\"server_to_client\"")
        && serde_json::from_str::<Value>(line).is_ok_and(|e| {
            e["kind"] == "rpc" && e["direction"] == "server_to_client" && e["method"] == "tools/call" && e["server"]["pid"] == pid
        })
}

/// A receiver line: a `tools/call` span of server `pid`.
fn is_call_span(line: &str, pid: u64) -> bool {
    serde_json::from_str::<Value>(line).is_ok_and(|s| {
        let a = &s["attributes"];
        a["mcp.method.name"] == "tools/call" && a["mcp_sensor.server.pid"] == pid
    })
}

/// One flood's measures.
struct Flood {
    calls_per_s: f64,
    /// Export on: spans of the flood's calls at the receiver per second
    /// (from the flood's start to the last span's arrival).
    spans_per_s: Option<f64>,
    /// Spans of the flood's calls at the receiver.
    exported: u64,
    /// The receiver's CPU time over the flood's duration (1.0: one core).
    receiver_busy: f64,
    /// Daemon CPU ms per 1,000 log lines written during the flood.
    cpu_ms_per_k: f64,
    lines: u64,
    /// The final `drops` line's losses of the export.
    export_lost: Value,
}

/// `calls` echo calls with `window` in flight to a fresh server the
/// daemon (exporting to `rx` when given) found at its exec.
/// `[log]` keys (after `dir`) that lift the per-server budget: a flood
/// runs past its 10,000 lines/s and 4 MiB/s, and the bench measures the
/// export of every call, not the throttle (docs/config.md).
const NO_SERVER_BUDGET: &str = "server_events_per_sec = 0\nserver_bytes_per_sec = 0\n";

fn flood(env: &HashMap<String, String>, dir: &Path, calls: u64, window: u64, rx: Option<&Receiver>) -> Result<Flood> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let daemon = match rx {
        Some(r) => {
            r.clear()?;
            start_daemon(dir, &format!("{NO_SERVER_BUDGET}{}", r.config()), &[SCHEDULE_DELAY])?
        }
        None => start_daemon(dir, NO_SERVER_BUDGET, &[])?,
    };
    let Server { child: mut server, mut to, mut from } = Server::start(env, &dir.join("server.stderr"), "xtask-flood")?;
    let pid = u64::from(server.id());
    let mut log = Tail::new(&dir.join("daemon-log/events.jsonl"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.next_lines()?.iter().any(|l| found_pid(l) == Some(pid)) {
        anyhow::ensure!(Instant::now() < deadline, "the daemon did not find the server (pid {pid}) in 30 s (see {})", dir.display());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200)); // the held events follow server_found
    log.next_lines()?;
    let rx_cpu = || rx.map_or(Ok(0), |r| cpu_ticks(r.child.id()));
    let (cpu0, rx_cpu0, lines0, t0) = (cpu_ticks(daemon.id())?, rx_cpu()?, log.lines, Instant::now());
    let call = |i: u64| echo_request(i, &format!("f{i}"));
    let mut sent = 0;
    while sent < window.min(calls) {
        sent += 1;
        send(&mut to, call(sent))?;
    }
    for _ in 0..calls {
        response(&mut from)?;
        if sent < calls {
            sent += 1;
            send(&mut to, call(sent))?;
        }
    }
    let calls_secs = t0.elapsed().as_secs_f64();
    // done when the log has every answer and the receiver every span, or
    // none for a second (posts go every 100 ms: the rest were lost, and
    // the final `drops` line counts them)
    let mut spans = rx.map(|r| Tail::new(&r.out));
    let (mut answered, mut exported, mut last_span) = (0u64, 0u64, t0.elapsed());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        answered += log.next_lines()?.iter().filter(|l| is_answer(l, pid)).count() as u64;
        if let Some(t) = spans.as_mut() {
            let n = t.next_lines()?.iter().filter(|l| is_call_span(l, pid)).count() as u64;
            if n > 0 {
                (exported, last_span) = (exported + n, t0.elapsed());
            }
        }
        let quiet = t0.elapsed() > last_span + Duration::from_secs(1);
        if answered >= calls && (rx.is_none() || exported >= calls || quiet) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "after 120 s the daemon logged {answered} and the receiver got {exported} of {calls} answers (see {})",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let done = if rx.is_some() { last_span } else { t0.elapsed() };
    let (cpu1, rx_cpu1, lines) = (cpu_ticks(daemon.id())?, rx_cpu()?, log.lines - lines0);
    drop(to);
    drop(from);
    let _ = server.kill();
    server.wait()?;
    daemon.stop()?;
    let fin = log.next_lines()?.iter().rev().find_map(|l| serde_json::from_str::<Value>(l).ok().filter(|e| e["kind"] == "drops" && e["final"] == true));
    let other = fin.map(|f| f["other"].clone()).unwrap_or(Value::Null);
    let hz = ticks_per_s();
    Ok(Flood {
        calls_per_s: calls as f64 / calls_secs,
        spans_per_s: rx.map(|_| exported as f64 / done.as_secs_f64()),
        exported,
        receiver_busy: (rx_cpu1 - rx_cpu0) as f64 / hz / done.as_secs_f64(),
        cpu_ms_per_k: (cpu1 - cpu0) as f64 / hz * 1e3 / (lines as f64 / 1e3),
        lines,
        export_lost: json!({"export_failed": other["export_failed"], "export_queue_full": other["export_queue_full"]}),
    })
}

/// `rounds` floods with export off and on each, in a random order per
/// round; the Markdown rows and a summary.
pub fn throughput(rounds: usize, calls: u64, window: u64, seed: u64) -> Result<String> {
    let env = mcp_env()?;
    let base = std::env::temp_dir().join(format!("mcp-sensor-bench-flood-{}", std::process::id()));
    let rx = Receiver::start(&base.join("receiver"), &env)?;
    let mut rng = Rng(seed | 1);
    let (mut off, mut on) = (Vec::new(), Vec::new());
    let mut order = String::new();
    for _ in 0..rounds {
        let on_first = rng.next() & 1 == 1;
        order.push(if on_first { 'E' } else { 'O' });
        for exporting in [on_first, !on_first] {
            if exporting {
                on.push(flood(&env, &base.join("daemon"), calls, window, Some(&rx))?);
            } else {
                off.push(flood(&env, &base.join("daemon"), calls, window, None)?);
            }
        }
    }
    drop(rx);
    let _ = std::fs::remove_dir_all(&base);
    let med = |v: &[Flood], f: fn(&Flood) -> f64| median(v.iter().map(f).collect());
    let each = |v: &[Flood], f: fn(&Flood) -> String| v.iter().map(f).collect::<Vec<_>>().join(" ");
    let (cps_off, cps_on) = (med(&off, |f| f.calls_per_s), med(&on, |f| f.calls_per_s));
    let (cpu_off, cpu_on) = (med(&off, |f| f.cpu_ms_per_k), med(&on, |f| f.cpu_ms_per_k));
    let sps = med(&on, |f| f.spans_per_s.unwrap_or(0.0));
    Ok(format!(
        "| flood of {calls} `echo` calls, {window} in flight: calls/s | {rounds} rounds | {cps_off:.0} | {cps_on:.0} | {:.3}x |\n\
         | same: daemon CPU ms per 1,000 log lines | {rounds} rounds | {cpu_off:.1} | {cpu_on:.1} | {:.3}x |\n\
         | same: spans/s delivered to the receiver | {rounds} rounds | – | {sps:.0} | |\n\n\
         flood: order per round {order} (E: export first; seed {seed}); per round, export off / on: calls/s {} / {}; \
         CPU ms per 1,000 lines {} / {}; log lines {} / {}; spans/s {}; spans at the receiver {} of {calls}; receiver CPU (cores) {}; export losses (final drops) {}",
        cps_on / cps_off,
        cpu_on / cpu_off,
        each(&off, |f| format!("{:.0}", f.calls_per_s)),
        each(&on, |f| format!("{:.0}", f.calls_per_s)),
        each(&off, |f| format!("{:.2}", f.cpu_ms_per_k)),
        each(&on, |f| format!("{:.2}", f.cpu_ms_per_k)),
        each(&off, |f| f.lines.to_string()),
        each(&on, |f| f.lines.to_string()),
        each(&on, |f| format!("{:.0}", f.spans_per_s.unwrap_or(0.0))),
        each(&on, |f| f.exported.to_string()),
        each(&on, |f| format!("{:.2}", f.receiver_busy)),
        each(&on, |f| f.export_lost.to_string()),
    ))
}
