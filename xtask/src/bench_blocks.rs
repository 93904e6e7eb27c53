//! Round trip within one session: the same client and the same running
//! server, with the host-wide daemon (`mcp-sensor run`) started and stopped
//! between blocks of calls.
//!
//! Why: separate sessions of the same setting differ by ±15% in median
//! round trip on this machine (server JIT and heap, placement, the host),
//! far more than the sensor's cost, so a session-per-setting design needs
//! hundreds of sessions to resolve a few percent. Here the blocks being
//! compared share one client process, one server process and its warmed
//! JIT; only the sensor changes. Blocks come in pairs, one without any
//! sensor loaded and one watched by the daemon, in a random order per
//! pair. The daemon finds the already-running server from /proc (as it
//! does for servers started before it) and must have logged every call of
//! its block, or the run fails: a watched block that was not watched would
//! flatter the sensor.
//!
//! The same design compares two settings of the daemon ([`Beside`]): its
//! OTLP export off and on (bench_export.rs), where an exporting block must
//! also have a span at the receiver for each of its calls.

use crate::bench::{start_daemon, Sensor};
use crate::bench_export::Receiver;
use crate::bench_mcp::{Paired, Rng, WARMUP_CALLS};
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What runs beside a block of calls.
#[derive(Clone, Copy)]
pub(crate) enum Beside<'a> {
    /// No sensor loaded at all.
    Nothing,
    /// `mcp-sensor run`, export off.
    Daemon,
    /// `mcp-sensor run` exporting spans to this receiver.
    Exporting(&'a Receiver),
}

struct Block {
    /// The second setting of the comparison (watched, or exporting).
    treated: bool,
    /// Per-call round trips, seconds, warm-up calls left out.
    calls: Vec<f64>,
}

fn wait_file(p: &Path, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !p.exists() {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// The `tools/call` requests of block `b` the daemon logged (its log under
/// `dir`), as (server pid, JSON-RPC id): the calls whose message names the
/// block, so other servers on the host count for nothing.
fn logged_calls(dir: &Path, b: usize) -> Vec<(u64, Value)> {
    let log = std::fs::read_to_string(dir.join("daemon-log/events.jsonl")).unwrap_or_default();
    let tag = format!("b{b}m");
    log.lines()
        .filter(|l| l.contains("\"direction\":\"client_to_server\"") && l.contains(&tag))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"] == "rpc" && e["method"] == "tools/call")
        .filter(|e| e["arguments"]["message"].as_str().is_some_and(|m| m.strip_prefix(&tag).is_some_and(|i| i.parse::<usize>().is_ok())))
        .map(|e| (e["server"]["pid"].as_u64().unwrap_or(0), e["id"].clone()))
        .collect()
}

/// Starts what `beside` names, logging under `daemon_dir` (`None`: nothing
/// to start).
fn start(beside: Beside, daemon_dir: &Path) -> Result<Option<Sensor>> {
    if matches!(beside, Beside::Nothing) {
        return Ok(None);
    }
    let _ = std::fs::remove_dir_all(daemon_dir);
    std::fs::create_dir_all(daemon_dir)?;
    Ok(Some(match beside {
        Beside::Exporting(rx) => {
            rx.clear()?;
            start_daemon(daemon_dir, &rx.config(), &[crate::bench_export::SCHEDULE_DELAY])?
        }
        _ => start_daemon(daemon_dir, "", &[])?,
    }))
}

/// Stops the daemon of block `b` and checks it saw (and exported) all of
/// the block's `calls`.
fn stop(d: Sensor, beside: Beside, daemon_dir: &Path, b: usize, calls: usize) -> Result<()> {
    if let Beside::Exporting(rx) = beside {
        rx.note_block_end(calls);
    }
    d.stop()?;
    let seen = logged_calls(daemon_dir, b);
    anyhow::ensure!(seen.len() >= calls, "block {b}: the daemon logged {} of {calls} calls (see {})", seen.len(), daemon_dir.display());
    if let Beside::Exporting(rx) = beside {
        let missing = rx.missing_spans(&seen)?;
        anyhow::ensure!(missing == 0, "exporting block {b}: the receiver got no span for {missing} of {calls} calls (see {})", daemon_dir.display());
    }
    Ok(())
}

/// One client session of `pairs * 2` blocks of `calls` echo calls, half of
/// them beside `base`, half beside `treated`.
fn session(env: &HashMap<String, String>, dir: &Path, pairs: usize, calls: usize, rng: &mut Rng, (base, treated): (Beside, Beside)) -> Result<Vec<Block>> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let flag = |name: &str, b: usize| dir.join(format!("{name}-{b}"));
    let nblocks = pairs * 2;
    let mut steps = Vec::new();
    for b in 0..nblocks {
        steps.push(json!({"wait_file": flag("go", b)}));
        for i in 0..calls {
            steps.push(json!({"call": "echo", "arguments": {"message": format!("b{b}m{i}")}}));
        }
        steps.push(json!({"touch": flag("done", b)}));
    }
    let server: Vec<&str> = env["MCP_EVERYTHING_SERVER"].split_whitespace().collect();
    let scenario = json!({"command": server, "steps": steps, "timeout": 3600, "step_timeout": 120, "stderr": dir.join("server.stderr")});
    let sc_path = dir.join("scenario.json");
    std::fs::write(&sc_path, scenario.to_string())?;
    // the client has no pipes on stdin/stdout: the daemon must not take it
    // for a candidate server (only the server it launches is one)
    let out_path = dir.join("client.json");
    let mut client = Command::new(&env["MCP_PY"])
        .arg(&env["MCP_CLIENT"])
        .arg(&sc_path)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path)?)
        .stderr(std::fs::File::create(dir.join("client.stderr"))?)
        .spawn()?;
    let daemon_dir = dir.join("daemon");
    let mut order = Vec::new();
    for _ in 0..pairs {
        let w_first = rng.next() & 1 == 1;
        order.extend([w_first, !w_first]);
    }
    for (b, &treat) in order.iter().enumerate() {
        let beside = if treat { treated } else { base };
        let daemon = start(beside, &daemon_dir)?;
        std::fs::write(flag("go", b), "")?;
        wait_file(&flag("done", b), "a block of calls")?;
        if let Some(d) = daemon {
            stop(d, beside, &daemon_dir, b, calls)?;
        }
    }
    client.wait()?;
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&out_path)?).context("client report")?;
    anyhow::ensure!(report["ok"] == true, "session failed: {report}");
    let results = report["results"].as_array().context("results")?;
    let mut blocks: Vec<Block> = order.iter().map(|&treated| Block { treated, calls: Vec::new() }).collect();
    let (mut b, mut in_block) = (0usize, 0usize);
    for r in results {
        match r["kind"].as_str() {
            Some("call") => {
                if in_block >= WARMUP_CALLS {
                    blocks[b].calls.push(r["elapsed"].as_f64().context("elapsed")?);
                }
                in_block += 1;
            }
            Some("touch") => (b, in_block) = (b + 1, 0),
            _ => {}
        }
    }
    Ok(blocks)
}

/// Sessions of paired blocks, `base` against `treated`; returns the
/// Markdown row (named `what`) and a summary.
pub(crate) fn compare(
    env: &HashMap<String, String>,
    (sessions, pairs, calls, seed): (usize, usize, usize, u64),
    settings: (Beside, Beside),
    what: &str,
) -> Result<String> {
    let dir: PathBuf = std::env::temp_dir().join(format!("mcp-sensor-bench-blocks-{}", std::process::id()));
    let mut rng = Rng(seed | 1);
    let mut paired = Paired::default();
    for _ in 0..sessions {
        let blocks = session(env, &dir, pairs, calls, &mut rng, settings)?;
        for pair in blocks.chunks(2) {
            let (p, w) = if pair[0].treated { (&pair[1], &pair[0]) } else { (&pair[0], &pair[1]) };
            paired.add(&p.calls, &w.calls);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (row, stats) = paired.report(what, "pair", &mut rng);
    Ok(format!(
        "{row}\n\nin-session round trip: {sessions} sessions x {pairs} pairs of blocks of {calls} calls \
         (first {WARMUP_CALLS} of each block left out), order within each pair random (seed {seed}); {stats}"
    ))
}

/// No sensor against the daemon, in one session per `sessions`.
pub fn round_trip_in_session(sessions: usize, pairs: usize, calls: usize, seed: u64) -> Result<String> {
    compare(
        &crate::bench_mcp::mcp_env()?,
        (sessions, pairs, calls, seed),
        (Beside::Nothing, Beside::Daemon),
        "tool-call round trip in one session, daemon (`run`) on/off between blocks",
    )
}
