//! `cargo xtask bench`: overhead of the sensor, measured in one run.
//!
//! Each loop runs as its own process (`xtask worker`), in three settings:
//! no sensor loaded (baseline), sensor loaded but the loop unwatched (every
//! program leaves after one map lookup), and the loop watched (run under
//! `mcp-sensor exec`). Settings are interleaved round by round so drift on
//! the machine hits all of them alike; the median per setting is reported.
//!
//! `--macro` (real workloads with the host-wide daemon off and on) and
//! `--macro-memory` (the daemon's memory with many processes and servers,
//! and `--storm-memory`, through storms of piped processes)
//! are bench_macro.rs and bench_memory.rs, run after the sensor's build.

use anyhow::{Context, Result};
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Rounds per setting (the median is reported).
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Iterations of the open/close, read and getpid loops per round.
    #[arg(long, default_value_t = 200_000)]
    open_iters: u64,
    /// Iterations of the fork+exec loop per round.
    #[arg(long, default_value_t = 2_000)]
    exec_iters: u64,
    /// Tool calls per MCP session in the round-trip benchmark.
    #[arg(long, default_value_t = 200)]
    mcp_calls: usize,
    /// Rounds of the MCP round-trip benchmark (one plain and one watched
    /// session each, in random order; 0: skip).
    #[arg(long, default_value_t = 100)]
    mcp_rounds: usize,
    /// Sessions of the in-session round-trip benchmark (daemon started and
    /// stopped between blocks of calls of one session; 0: skip).
    #[arg(long, default_value_t = 6)]
    block_sessions: usize,
    /// Pairs of blocks (one plain, one watched) per session.
    #[arg(long, default_value_t = 15)]
    block_pairs: usize,
    /// Sessions of the in-session round-trip benchmark of the OTLP export
    /// (bench_export.rs: the daemon with export off and on between blocks,
    /// `--block-pairs` pairs of `--mcp-calls` calls; 0: skip).
    #[arg(long, default_value_t = 0)]
    export_sessions: usize,
    /// Rounds of the OTLP export flood (one with export off, one on, in
    /// random order; 0: skip).
    #[arg(long, default_value_t = 0)]
    export_flood_rounds: usize,
    /// Tool calls per flood.
    #[arg(long, default_value_t = 20_000)]
    export_flood_calls: u64,
    /// Calls in flight during a flood.
    #[arg(long, default_value_t = 16)]
    export_flood_window: u64,
    /// Seed of the round order (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// MiB pushed through a watched pipe in the capture benchmark (0: skip).
    #[arg(long, default_value_t = 256)]
    capture_mib: usize,
    /// Only the syscall loops (skip the MCP benchmarks).
    #[arg(long)]
    loops_only: bool,
    /// Only these loops (repeatable): open, read, getpid, udp-send, exec,
    /// exec-piped (with --daemon). Default: all but exec-piped.
    #[arg(long = "loop", value_name = "NAME")]
    loops: Vec<String>,
    /// Only the MCP benchmarks (skip the syscall loops).
    #[arg(long, conflicts_with = "loops_only")]
    mcp_only: bool,
    /// Runs per setting of the enforcement kill-delay benchmark (0: skip).
    #[arg(long, default_value_t = 50)]
    kill_rounds: usize,
    /// Only the enforcement kill-delay benchmark.
    #[arg(long, conflicts_with_all = ["loops_only", "mcp_only"])]
    kill_only: bool,
    /// The "unwatched" setting runs the host-wide daemon (`mcp-sensor run`,
    /// discovery on) instead of an idle `exec`, and an exec loop whose
    /// children have pipes on stdin and stdout (discovery candidates) is
    /// added.
    #[arg(long)]
    daemon: bool,
    /// Only the cost of each kind of hook for opens (tracepoint, fentry,
    /// fexit, kprobe, kretprobe) to an unwatched process, on this kernel
    /// (bench_hooks.rs; needs no sensor build).
    #[arg(long, conflicts_with_all = ["loops_only", "mcp_only", "kill_only", "daemon"])]
    hooks: bool,
    #[command(flatten)]
    hook: crate::bench_hooks::HookArgs,
    #[command(flatten)]
    macro_bench: crate::bench_macro::MacroArgs,
}

/// The measured loops. Prints ns per iteration on stdout.
pub fn worker(what: &str, iters: u64) -> Result<()> {
    if let Some(w) = what.strip_prefix("hook-") {
        return crate::bench_hooks::worker(w, iters);
    }
    let start = Instant::now();
    match what {
        "open" => {
            let path = c"/etc/hostname";
            for _ in 0..iters {
                // SAFETY: constant path; the fd is closed at once.
                unsafe {
                    let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
                    libc::close(fd);
                }
            }
        }
        // a read that is not on a channel: what every process on the host
        // pays for the capture programs
        "read" => {
            let fd = std::fs::File::open("/dev/zero")?;
            let mut b = [0u8; 1];
            for _ in 0..iters {
                // SAFETY: one byte into a live one-byte buffer.
                unsafe { libc::read(std::os::fd::AsRawFd::as_raw_fd(&fd), b.as_mut_ptr().cast(), 1) };
            }
        }
        // a syscall no program is attached to: the floor any syscall
        // tracepoint sets for every syscall of every process
        "getpid" => {
            for _ in 0..iters {
                // SAFETY: no arguments, no side effects.
                unsafe { libc::syscall(libc::SYS_getpid) };
            }
        }
        // a UDP send with an address (no connect) to a local socket nobody
        // reads (full, it drops the datagram; the send still succeeds):
        // what every process pays for cgroup/sendmsg4 (sockaddr.bpf.c)
        "udp-send" => {
            let sink = std::net::UdpSocket::bind("127.0.0.1:0")?;
            let to = sink.local_addr()?;
            let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
            for _ in 0..iters {
                s.send_to(b"x", to)?;
            }
        }
        "exec" => {
            for _ in 0..iters {
                let st = Command::new("/bin/true").status()?;
                anyhow::ensure!(st.success());
            }
        }
        // children with pipes on stdin and stdout: what `run` considers
        // candidate servers until they exit without a word of MCP
        "exec-piped" => {
            for _ in 0..iters {
                let st = Command::new("/bin/true").stdin(Stdio::piped()).stdout(Stdio::piped()).status()?;
                anyhow::ensure!(st.success());
            }
        }
        other => anyhow::bail!("unknown worker {other}"),
    }
    let ns = start.elapsed().as_nanos() as f64 / iters as f64;
    println!("{ns:.1}");
    Ok(())
}

fn sensor_bin() -> std::path::PathBuf {
    crate::root().join("target/release/mcp-sensor")
}

fn xtask_bin() -> std::path::PathBuf {
    std::env::current_exe().unwrap()
}

fn parse_ns(out: std::process::Output) -> Result<f64> {
    anyhow::ensure!(out.status.success(), "worker failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().context("worker output")
}

fn run_plain(what: &str, iters: u64) -> Result<f64> {
    parse_ns(Command::new(xtask_bin()).args(["worker", what, &iters.to_string()]).output()?)
}

fn run_watched(what: &str, iters: u64, events: &std::path::Path) -> Result<f64> {
    let out = Command::new(sensor_bin())
        .args(["exec", "--events"])
        .arg(events)
        .arg("--")
        .arg(xtask_bin())
        .args(["worker", what, &iters.to_string()])
        .output()?;
    parse_ns(out)
}

/// A sensor loaded and attached, watching only a sleeping process, so the
/// loops run unwatched with every program in place.
fn start_idle_sensor(events: &std::path::Path) -> Result<Child> {
    let mut child = Command::new(sensor_bin())
        .args(["exec", "--events"])
        .arg(events)
        .args(["--", "sleep", "100000"])
        .stderr(Stdio::piped())
        .spawn()?;
    // loaded once the watched sleep's exec event is written
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::fs::read_to_string(events).unwrap_or_default().contains("\"kind\":\"exec\"") {
            return Ok(child);
        }
        if let Some(st) = child.try_wait()? {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err)?;
            anyhow::bail!("sensor exited ({st}): {err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("sensor did not start in 30 s")
}

/// A sensor process the bench started. Stopped (SIGTERM, then reaped) by
/// [`Sensor::stop`], or when dropped on an early return, so a failed run
/// leaves no sensor loaded behind it.
pub(crate) struct Sensor(Option<Child>);

impl Sensor {
    pub(crate) fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    pub(crate) fn stop(mut self) -> Result<()> {
        self.end()
    }

    fn end(&mut self) -> Result<()> {
        if let Some(mut c) = self.0.take() {
            // SAFETY: signalling our own child, not yet reaped.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            c.wait()?;
        }
        Ok(())
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        let _ = self.end();
    }
}

/// Variables that would turn the OTLP export on or off behind the bench's
/// back (export/settings.rs): removed from every daemon it starts.
const OTEL_SWITCHES: [&str; 3] = ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED"];

/// The host-wide daemon, logging to `dir`, with `extra` appended to its
/// configuration (TOML tables) and `envs` set; returns once it watches.
pub(crate) fn start_daemon(dir: &std::path::Path, extra: &str, envs: &[(&str, &str)]) -> Result<Sensor> {
    let config = dir.join("daemon.toml");
    std::fs::write(&config, format!("[log]\ndir = \"{}\"\n{extra}", dir.join("daemon-log").display()))?;
    let err = dir.join("daemon.stderr");
    let mut cmd = Command::new(sensor_bin());
    for k in OTEL_SWITCHES {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .args(["run", "--config"])
        .arg(&config)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err)?)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(&err).unwrap_or_default();
        if text.contains("watching the host") {
            return Ok(Sensor(Some(child)));
        }
        if let Some(st) = child.try_wait()? {
            anyhow::bail!("daemon exited ({st}): {text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("daemon did not start in 60 s")
}

/// The `--seed` given, or one from the clock.
fn seed(arg: Option<u64>) -> u64 {
    arg.unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

pub fn run(a: BenchArgs) -> Result<()> {
    if a.hooks {
        return crate::bench_hooks::run(&a.hook, a.rounds, a.open_iters, a.seed);
    }
    if a.macro_bench.workloads {
        crate::bench_macro::check(&a.macro_bench)?;
    }
    crate::cargo(&["build", "--release", "-p", "mcp-sensor"])?;
    if a.macro_bench.workloads || a.macro_bench.macro_memory || a.macro_bench.storm_memory {
        return crate::bench_macro::run(&a.macro_bench, seed(a.seed));
    }
    let dir = std::env::temp_dir().join(format!("mcp-sensor-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    if a.kill_only {
        println!("{}", crate::bench_kill::kill_delay(a.kill_rounds)?);
        return Ok(());
    }
    let mut rows = Vec::new();
    let mut loops: Vec<(&str, u64)> = if a.mcp_only {
        vec![]
    } else {
        vec![("open", a.open_iters), ("read", a.open_iters), ("getpid", a.open_iters), ("udp-send", a.open_iters), ("exec", a.exec_iters)]
    };
    if a.daemon && !a.mcp_only {
        loops.push(("exec-piped", a.exec_iters));
    }
    if !a.loops.is_empty() {
        if let Some(bad) = a.loops.iter().find(|l| !loops.iter().any(|(w, _)| w == l)) {
            anyhow::bail!("--loop {bad}: no such loop (open, read, getpid, udp-send, exec; exec-piped with --daemon)");
        }
        loops.retain(|(w, _)| a.loops.iter().any(|l| l == w));
    }
    for &(what, iters) in &loops {
        let (mut base, mut unwatched, mut watched) = (vec![], vec![], vec![]);
        run_plain(what, iters / 10)?; // warm caches
        for round in 0..a.rounds {
            base.push(run_plain(what, iters)?);
            let ev = dir.join(format!("idle-{what}-{round}.jsonl"));
            let idle = if a.daemon { start_daemon(&dir, "", &[])? } else { Sensor(Some(start_idle_sensor(&ev)?)) };
            unwatched.push(run_plain(what, iters)?);
            idle.stop()?;
            let ev = dir.join(format!("watched-{what}-{round}.jsonl"));
            watched.push(run_watched(what, iters, &ev)?);
            let _ = std::fs::remove_file(&ev);
        }
        let (b, u, w) = (median(base), median(unwatched), median(watched));
        rows.push(format!(
            "| {what} loop | {iters} | {b:.0} | {u:.0} | {:.3}x | {w:.0} | {:.3}x |",
            u / b,
            w / b
        ));
    }
    let setting = if a.daemon { "daemon (`run`)" } else { "unwatched" };
    println!("| loop | iterations/round | no sensor ns/op | {setting} ns/op | {setting} ratio | watched ns/op | watched ratio |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!("\nmedian of {} interleaved rounds; {} CPUs", a.rounds, std::thread::available_parallelism().map_or(0, |n| n.get()));
    if !a.loops_only {
        let seed = seed(a.seed);
        println!("\n| MCP | n | no sensor | watched | ratio |\n|---|---|---|---|---|");
        if a.block_sessions > 0 {
            println!("{}", crate::bench_blocks::round_trip_in_session(a.block_sessions, a.block_pairs, a.mcp_calls, seed)?);
        }
        if a.mcp_rounds > 0 {
            println!("{}", crate::bench_mcp::round_trip(a.mcp_rounds, a.mcp_calls, seed)?);
        }
        if a.export_sessions > 0 || a.export_flood_rounds > 0 {
            println!("\n| OTLP export | n | export off | export on | ratio |\n|---|---|---|---|---|");
        }
        if a.export_sessions > 0 {
            println!("{}", crate::bench_export::round_trip(a.export_sessions, a.block_pairs, a.mcp_calls, seed)?);
        }
        if a.export_flood_rounds > 0 {
            println!("{}", crate::bench_export::throughput(a.export_flood_rounds, a.export_flood_calls, a.export_flood_window, seed)?);
        }
        if a.capture_mib > 0 {
            println!("{}", crate::bench_mcp::throughput(a.capture_mib)?);
        }
    }
    if a.kill_rounds > 0 && !a.loops_only {
        println!("\n{}", crate::bench_kill::kill_delay(a.kill_rounds)?);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
