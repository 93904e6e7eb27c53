//! MCP benchmarks: tool-call round trip through a real server with and
//! without the sensor, and stdio capture throughput with an accounting of
//! every message (delivered, or counted as lost).

use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

pub(crate) fn mcp_env() -> Result<HashMap<String, String>> {
    let st = Command::new("bash").arg(crate::root().join("tests/mcp/setup.sh")).status()?;
    anyhow::ensure!(st.success(), "tests/mcp/setup.sh failed");
    let text = std::fs::read_to_string(crate::root().join("tests/.deps/env.sh"))?;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect())
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Calls at the start of each session left out of the statistics.
pub(crate) const WARMUP_CALLS: usize = 10;

/// Per-call round trips (seconds) of `calls` echo calls in one session.
fn session(env: &HashMap<String, String>, prefix: &[String], calls: usize) -> Result<Vec<f64>> {
    let mut command: Vec<String> = prefix.to_vec();
    command.extend(env["MCP_EVERYTHING_SERVER"].split_whitespace().map(str::to_string));
    let steps: Vec<Value> = (0..calls).map(|i| json!({"call": "echo", "arguments": {"message": format!("m{i}")}})).collect();
    let scenario = json!({"command": command, "steps": steps, "timeout": 300});
    let out = Command::new(&env["MCP_PY"]).arg(&env["MCP_CLIENT"]).arg("--json").arg(scenario.to_string()).output()?;
    let v: Value = serde_json::from_slice(&out.stdout).context("client output")?;
    anyhow::ensure!(v["ok"] == true, "session failed: {v}");
    // the first calls warm the server's JIT and caches: leave them out
    Ok(v["results"].as_array().unwrap().iter().skip(WARMUP_CALLS).filter_map(|r| r["elapsed"].as_f64()).collect())
}

/// Small xorshift generator: the bench needs a shuffled order, not
/// cryptographic randomness, and the seed is printed so a run can be repeated.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Percentile bootstrap 95% interval of a statistic of `samples` items:
/// `stat` of the indices of `samples` items drawn with replacement, `n`
/// times; the 2.5th and 97.5th percentiles.
pub(crate) fn bootstrap(samples: usize, rng: &mut Rng, n: usize, mut stat: impl FnMut(&[usize]) -> f64) -> (f64, f64) {
    let mut drawn = vec![0; samples];
    let mut stats: Vec<f64> = (0..n)
        .map(|_| {
            for d in drawn.iter_mut() {
                *d = (rng.next() % samples as u64) as usize;
            }
            stat(&drawn)
        })
        .collect();
    stats.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (stats[n * 25 / 1000], stats[n * 975 / 1000])
}

/// The median of a list of ratios, bootstrapped.
fn bootstrap_ci(ratios: &[f64], rng: &mut Rng, n: usize) -> (f64, f64) {
    bootstrap(ratios.len(), rng, n, |drawn| median(drawn.iter().map(|&i| ratios[i]).collect()))
}

/// Paired samples of the two settings: every call of each, and one ratio
/// of medians per pair (a round, or a pair of blocks).
#[derive(Default)]
pub(crate) struct Paired {
    plain: Vec<f64>,
    watched: Vec<f64>,
    ratios: Vec<f64>,
}

impl Paired {
    pub(crate) fn add(&mut self, plain: &[f64], watched: &[f64]) {
        self.ratios.push(median(watched.to_vec()) / median(plain.to_vec()));
        self.plain.extend(plain);
        self.watched.extend(watched);
    }

    /// The Markdown row (median over all calls per setting, and their
    /// ratio), then the per-`unit` ratios: their median, a bootstrap 95%
    /// interval, and all of them sorted.
    pub(crate) fn report(&self, what: &str, unit: &str, rng: &mut Rng) -> (String, String) {
        let (p, w) = (median(self.plain.clone()) * 1e6, median(self.watched.clone()) * 1e6);
        let (lo, hi) = bootstrap_ci(&self.ratios, rng, 10_000);
        let mut sorted: Vec<String> = self.ratios.iter().map(|r| format!("{r:.3}")).collect();
        sorted.sort();
        (
            format!("| {what} | {} calls | {p:.0} µs | {w:.0} µs | {:.3}x |", self.plain.len(), w / p),
            format!(
                "median of per-{unit} ratios {:.3}x, bootstrap 95% interval {lo:.3}x–{hi:.3}x; per-{unit} ratios sorted: {}",
                median(self.ratios.clone()),
                sorted.join(" ")
            ),
        )
    }
}

/// Round trip with and without the sensor. Each round runs one plain and
/// one watched session, in an order drawn at random per round, so drift on
/// the machine (other load, frequency, page cache) cannot favour one
/// setting. Reported: the median over all calls per setting (what the
/// target names), and the median of the per-round paired ratios with a
/// bootstrap 95% interval, which says how far the noise reaches.
pub fn round_trip(rounds: usize, calls: usize, seed: u64) -> Result<String> {
    let env = mcp_env()?;
    let sensor = crate::root().join("target/release/mcp-sensor").display().to_string();
    let events = std::env::temp_dir().join("mcp-sensor-bench-rt.jsonl");
    let wrapped = vec![sensor, "exec".into(), "--events".into(), events.display().to_string(), "--".into()];
    let mut rng = Rng(seed | 1);
    let mut paired = Paired::default();
    let mut order = String::new();
    for _ in 0..rounds {
        let watched_first = rng.next() & 1 == 1;
        order.push(if watched_first { 'W' } else { 'P' });
        let (p, w) = if watched_first {
            let w = session(&env, &wrapped, calls)?;
            (session(&env, &[], calls)?, w)
        } else {
            let p = session(&env, &[], calls)?;
            (p, session(&env, &wrapped, calls)?)
        };
        let _ = std::fs::remove_file(&events);
        paired.add(&p, &w);
    }
    let (row, stats) = paired.report("tool-call round trip (everything server `echo`, mcp 2.3.0 client)", "round", &mut rng);
    Ok(format!("{row}\n\nround trip: {rounds} rounds of {calls} calls, order per round {order} (seed {seed}); {stats}"))
}

/// Pushes `mb` MiB of JSON-RPC lines through a watched (or plain) pipe
/// into a reader; returns (MB/s, summary of what the sensor accounted).
fn push(mb: usize, watched: bool) -> Result<(f64, String)> {
    let events = std::env::temp_dir().join("mcp-sensor-bench-tp.jsonl");
    let _ = std::fs::remove_file(&events);
    let reader = ["python3", "-c", "import sys\nwhile sys.stdin.buffer.read(1<<20): pass"];
    let mut cmd = if watched {
        let mut c = Command::new(crate::root().join("target/release/mcp-sensor"));
        c.args(["exec", "--events"]).arg(&events).arg("--").args(reader);
        c
    } else {
        let mut c = Command::new(reader[0]);
        c.args(&reader[1..]);
        c
    };
    let mut child = cmd.stdin(Stdio::piped()).spawn()?;
    let pad = "x".repeat(900);
    let mut buf = Vec::new();
    let mut msgs = 0u64;
    while buf.len() < mb << 20 {
        writeln!(buf, r#"{{"jsonrpc":"2.0","id":{msgs},"method":"tools/call","params":{{"name":"t","arguments":{{"p":"{pad}"}}}}}}"#)?;
        msgs += 1;
    }
    let t0 = Instant::now();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&buf)?;
    drop(stdin);
    child.wait()?;
    let secs = t0.elapsed().as_secs_f64();
    let rate = buf.len() as f64 / secs / (1 << 20) as f64;
    if !watched {
        return Ok((rate, String::new()));
    }
    let text = std::fs::read_to_string(&events)?;
    let (mut rpc, mut truncated, mut malformed) = (0u64, 0u64, 0u64);
    let mut fin = Value::Null;
    for l in text.lines() {
        let e: Value = serde_json::from_str(l)?;
        match e["kind"].as_str() {
            Some("rpc") if e["truncated"] == true => truncated += 1,
            Some("rpc") => rpc += 1,
            Some("malformed") => malformed += 1,
            Some("drops") if e["final"] == true => fin = e,
            _ => {}
        }
    }
    let lost_records = fin["kernel"].as_object().map_or(0, |m| m.values().filter_map(Value::as_u64).sum::<u64>())
        + fin["queue"].as_u64().unwrap_or(0);
    Ok((rate, format!(
        "{msgs} messages sent: {rpc} delivered whole, {truncated} truncated by a counted gap, {malformed} malformed; {lost_records} capture records counted lost (final drops: kernel {}, queue {})",
        fin["kernel"], fin["queue"]
    )))
}

pub fn throughput(mb: usize) -> Result<String> {
    let (plain, _) = push(mb, false)?;
    let (watched, acct) = push(mb, true)?;
    Ok(format!(
        "| stdio capture throughput ({mb} MiB of 1 KiB JSON-RPC lines) | {plain:.0} MiB/s | {watched:.0} MiB/s | {:.3}x |\n\naccounting: {acct}",
        plain / watched
    ))
}
