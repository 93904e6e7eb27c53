//! `cargo xtask bench --macro` (issue 14): what the host-wide daemon
//! (`mcp-sensor run`, default configuration, discovery on) costs real work
//! on the host, where no MCP server is running.
//!
//! Owns the workloads, the rounds and the report. Each workload is a shell
//! script timed as a whole (wall clock, `sh -c` to its exit), run once
//! with the daemon off and once on per round; the order of the two is
//! drawn at random per workload and round, and the workloads are shuffled
//! per round (seeded by `--seed`, printed), so drift on the machine cannot
//! favour one setting. Before the rounds each workload runs once, unmeasured,
//! to warm the page cache. Before each timed run its setup (untimed) puts
//! its inputs back (a fresh target dir, an empty untar dir), `sync` writes
//! back what that left dirty, and with the daemon on, the daemon is started
//! and left to finish its start (idle: see `proc_usage::wait_idle`).
//!
//! Reported per workload: the median wall time off and on over the rounds,
//! the ratio of the medians with a percentile bootstrap 95% interval
//! (rounds resampled, off and on of a round kept together), the daemon's
//! CPU seconds over the workload (utime + stime from /proc/<pid>/stat, up
//! to when it is idle again after it, so a backlog it works off late is
//! counted; median over rounds) and its peak resident set (VmHWM of
//! /proc/<pid>/status, reset with `clear_refs` 5 before the workload;
//! highest over rounds).
//! The BPF programs run in the workload's own syscalls: their time is in
//! the wall time, not in the daemon's CPU, which is its user space (and
//! its own syscalls) only. With an even number of rounds the median is the
//! upper of the middle two (bench_mcp's `median`): use an odd `--macro-rounds`.
//!
//! The workloads (`--macro-workload NAME`, repeatable; sizes times
//! `--macro-scale`), all offline on a machine set up by
//! scripts/install-deps.sh and tests/mcp/setup.sh that has built this
//! workspace:
//! - `files`: `cat` of the first 50,000 files `find /usr -type f` lists,
//!   through `head` and `xargs` (the pipeline the issue measured, on
//!   20,000 files: about 1 s here, too short to resolve a few percent);
//! - `cargo-build`: `cargo build --offline -j2` (debug) of regex-syntax in
//!   a fresh target dir. A Rust crate, not a C project: no C project's
//!   source is on a fresh machine offline, while the crates this workspace
//!   builds from are in cargo's registry cache once it is built. This one,
//!   at the version Cargo.lock pins: ~58,000 lines of Rust and no
//!   dependency, so it builds from a path with no registry lookup (a
//!   copy, next to a wrapper package that depends on it);
//! - `git`: 10 × `git log -p -300` and `git log --stat -300` of this
//!   repository (its history is a few hundred commits);
//! - `python`: 300 × `python3 -c pass` (/usr/bin/python3 when present: the
//!   system's, not a version manager's shim found first on PATH);
//! - `node`: 50 × `node -e 0`;
//! - `tar`: `tar -c` of the first 20,000 files of /usr/lib/python3* and
//!   /usr/share to an archive, then `tar -x` of it into an empty directory;
//! - `tests`: this workspace's `mcp-sensor` unit tests, the release test
//!   binary (built before the rounds), `--test-threads=2`, twice.
//!
//! Each takes 2 to 6 s on the 2-core build machine.
//!
//! `--macro-memory` (bench_memory.rs) measures the daemon's resident
//! memory with many processes and watched servers on the host.

use crate::bench::start_daemon;
use crate::bench_mcp::{bootstrap, median, Rng};
use crate::proc_usage::{cpu_ticks, memory_kib, reset_peak, ticks_per_s, wait_idle};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct MacroArgs {
    /// Real workloads (a file sweep, a Rust build, git, Python and Node
    /// start-ups, tar and untar, a test suite) with the host-wide daemon
    /// off and on (bench_macro.rs); other benches are not run.
    #[arg(long = "macro", conflicts_with_all = ["hooks", "loops_only", "mcp_only", "kill_only"])]
    pub(crate) workloads: bool,
    /// --macro: rounds (each runs every workload once off, once on).
    #[arg(long, default_value_t = 5)]
    macro_rounds: usize,
    /// --macro: only this workload (repeatable): files, cargo-build, git,
    /// python, node, tar, tests.
    #[arg(long = "macro-workload", value_name = "NAME")]
    macro_workload: Vec<String>,
    /// --macro: size factor of the workloads that have a count (files,
    /// git, python, node, tar, tests); cargo-build is one build whatever it is.
    #[arg(long, default_value_t = 1.0)]
    macro_scale: f64,
    /// The daemon's resident memory with idle processes and watched MCP
    /// servers on the host (bench_memory.rs).
    #[arg(long, conflicts_with_all = ["hooks", "loops_only", "mcp_only", "kill_only"])]
    pub(crate) macro_memory: bool,
    /// The daemon's memory with idle piped processes (discovery
    /// candidates) through storms of piped short-lived ones, and after all
    /// are gone (bench_memory.rs, issue 17).
    #[arg(long, conflicts_with_all = ["hooks", "loops_only", "mcp_only", "kill_only", "macro_memory"])]
    pub(crate) storm_memory: bool,
    /// --storm-memory: idle piped processes to start.
    #[arg(long, default_value_t = 2_100)]
    storm_piped: usize,
    /// --storm-memory: storms of 20,000 piped short-lived processes.
    #[arg(long, default_value_t = 2)]
    storms: usize,
    /// --macro-memory: idle processes (`sleep`) to start.
    #[arg(long, default_value_t = 10_000)]
    macro_idle: usize,
    /// --macro-memory: MCP servers (`server-everything`) to start and talk to.
    #[arg(long, default_value_t = 100)]
    macro_servers: usize,
}

const NAMES: [&str; 7] = ["files", "cargo-build", "git", "python", "node", "tar", "tests"];

/// One real workload.
struct Workload {
    name: &'static str,
    /// What it runs, for the report.
    about: String,
    /// Untimed, before each run: puts the inputs back.
    setup: String,
    /// Timed.
    script: String,
}

/// A word quoted for `sh`.
fn q(word: &Path) -> String {
    format!("'{}'", word.display().to_string().replace('\'', r"'\''"))
}

/// `base` times `scale`, at least one.
fn scaled(base: usize, scale: f64) -> usize {
    ((base as f64 * scale).round() as usize).max(1)
}

/// A shell loop running `command` `n` times, failing at its first failure.
fn times(n: usize, command: &str) -> String {
    format!("i=0; while [ $i -lt {n} ]; do {command} || exit 1; i=$((i+1)); done")
}

/// The version of `name` that a Cargo.lock pins (the first entry).
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let mut lines = lock.lines();
    lines.find(|l| l.trim() == format!("name = \"{name}\""))?;
    let v = lines.next()?.trim().strip_prefix("version = \"")?;
    Some(v.strip_suffix('"')?.to_string())
}

/// An executable `name` in a directory of PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Runs `script` with `sh` in `dir`; its stderr goes to `dir/stderr`.
fn sh(script: &str, dir: &Path) -> Result<()> {
    let err = dir.join("stderr");
    let st = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err)?)
        .status()?;
    anyhow::ensure!(st.success(), "`{script}` failed ({st}): {}", std::fs::read_to_string(&err).unwrap_or_default());
    Ok(())
}

/// regex-syntax's source at the version Cargo.lock pins, copied to
/// `dir/regex-syntax`, and a package depending on it in `dir/wrap`.
fn build_project(dir: &Path) -> Result<String> {
    let lock = std::fs::read_to_string(crate::root().join("Cargo.lock"))?;
    let ver = locked_version(&lock, "regex-syntax").context("Cargo.lock pins no regex-syntax")?;
    let home = std::env::var_os("CARGO_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    let registry = home.context("neither CARGO_HOME nor HOME is set")?.join("registry/src");
    let src = std::fs::read_dir(&registry)
        .with_context(|| format!("{}: build the workspace first (cargo build --release)", registry.display()))?
        .filter_map(|e| Some(e.ok()?.path().join(format!("regex-syntax-{ver}"))))
        .find(|p| p.join("Cargo.toml").is_file())
        .with_context(|| format!("regex-syntax {ver} is not in {}: build the workspace first (cargo build --release)", registry.display()))?;
    sh(&format!("rm -rf regex-syntax wrap && cp -r {} regex-syntax && mkdir -p wrap/src", q(&src)), dir)?;
    // a workspace of its own: no manifest above /tmp decides its settings
    let manifest = "[package]\nname = \"macro-build\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n[dependencies]\nregex-syntax = { path = \"../regex-syntax\" }\n\n[workspace]\n";
    std::fs::write(dir.join("wrap/Cargo.toml"), manifest)?;
    std::fs::write(dir.join("wrap/src/lib.rs"), "pub use regex_syntax;\n")?;
    Ok(ver)
}

/// The release test binary of the `mcp-sensor` crate's unit tests, built.
fn unit_test_binary() -> Result<PathBuf> {
    let out = Command::new(crate::cargo_bin())
        .args(["test", "--release", "-p", "mcp-sensor", "--lib", "--no-run", "--message-format=json"])
        .current_dir(crate::root())
        .stderr(Stdio::inherit())
        .output()?;
    anyhow::ensure!(out.status.success(), "building the mcp-sensor unit tests failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["profile"]["test"] == true)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo named no unit-test executable")
}

/// Workload `name`, its inputs prepared in `dir` (a directory of its own).
fn workload(name: &'static str, dir: &Path, scale: f64) -> Result<Workload> {
    let root = crate::root();
    let (about, setup, script) = match name {
        "files" => {
            let n = scaled(50_000, scale);
            (
                format!("`cat` of {n} files under /usr (`find \\| head \\| xargs cat`)"),
                String::new(),
                format!("find /usr -type f 2>/dev/null | head -n {n} | xargs -d '\\n' cat > /dev/null"),
            )
        }
        "cargo-build" => {
            let ver = build_project(dir)?;
            (
                format!("`cargo build --offline -j2` (debug) of regex-syntax {ver}, fresh target dir"),
                "rm -rf target".into(),
                format!("CARGO_TARGET_DIR=target {} build --offline -j2 -q --manifest-path wrap/Cargo.toml", q(Path::new(&crate::cargo_bin()))),
            )
        }
        "git" => {
            // the history is a few hundred commits: the pair runs 10 times
            let n = scaled(10, scale);
            let git = format!("git -C {} log", q(&root));
            (
                format!("{n} × (`git log -p -300` and `git log --stat -300` of this repository)"),
                String::new(),
                times(n, &format!("{git} -p -300 > /dev/null && {git} --stat -300 > /dev/null")),
            )
        }
        "python" | "node" => {
            let (n, exe, args) = if name == "python" {
                let sys = Path::new("/usr/bin/python3");
                (scaled(300, scale), if sys.is_file() { Some(sys.to_path_buf()) } else { on_path("python3") }, "-c pass")
            } else {
                (scaled(50, scale), on_path("node"), "-e 0")
            };
            let exe = exe.with_context(|| format!("no {name} on this machine"))?;
            (
                format!("{n} × `{} {args}`", exe.display()),
                String::new(),
                times(n, &format!("{} {args}", q(&exe))),
            )
        }
        "tar" => {
            let n = scaled(20_000, scale);
            // the trees, relative to /usr: the Python standard library (on
            // every machine tests/mcp/setup.sh ran on), then /usr/share
            let mut trees: Vec<String> = std::fs::read_dir("/usr/lib")?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|f| f.starts_with("python3"))
                .map(|f| format!("lib/{f}"))
                .collect();
            trees.sort();
            trees.push("share".into());
            sh(&format!("cd /usr && find {} -type f | head -n {n} > {}/list", trees.join(" "), q(dir)), dir)?;
            let files = std::fs::read_to_string(dir.join("list"))?.lines().count();
            (
                format!("`tar -c` of {files} files of /usr/{{{}}} and `tar -x` of the archive", trees.join(",")),
                "rm -rf out && mkdir -p out/x".into(),
                // absolute names: -C moves tar before it opens what follows
                format!("cd {d} && tar -C /usr -cf {d}/out/a.tar -T {d}/list && tar -C {d}/out/x -xf {d}/out/a.tar", d = q(dir)),
            )
        }
        "tests" => {
            let bin = unit_test_binary()?;
            let n = scaled(2, scale);
            // cargo runs a crate's tests in the crate's directory
            let crate_dir = root.join("mcp-sensor");
            (
                format!("{n} × the `mcp-sensor` unit tests (release test binary, `--test-threads=2`)"),
                String::new(),
                format!("cd {} && {}", q(&crate_dir), times(n, &format!("{} -q --test-threads=2", q(&bin)))),
            )
        }
        other => anyhow::bail!("no workload {other}"),
    };
    Ok(Workload { name, about, setup, script })
}

/// What one run measured.
struct Run {
    secs: f64,
    /// With the daemon on: its CPU seconds and peak resident set (KiB).
    daemon: Option<(f64, u64)>,
}

/// One timed run of `w` in `dir`, the daemon on or off.
fn run_once(w: &Workload, dir: &Path, on: bool) -> Result<Run> {
    sh(&w.setup, dir)?;
    sh("sync", dir)?;
    let daemon_dir = dir.join("daemon");
    let daemon = if on {
        let _ = std::fs::remove_dir_all(&daemon_dir);
        std::fs::create_dir_all(&daemon_dir)?;
        let d = start_daemon(&daemon_dir, "", &[])?;
        wait_idle(d.id(), Duration::from_secs(20))?;
        reset_peak(d.id())?;
        Some((cpu_ticks(d.id())?, d))
    } else {
        None
    };
    let t0 = Instant::now();
    sh(&w.script, dir)?;
    let secs = t0.elapsed().as_secs_f64();
    let daemon = match daemon {
        Some((ticks, d)) => {
            wait_idle(d.id(), Duration::from_secs(60))?;
            let cpu = (cpu_ticks(d.id())? - ticks) as f64 / ticks_per_s();
            let peak = memory_kib(d.id())?.peak;
            d.stop()?;
            Some((cpu, peak))
        }
        None => None,
    };
    Ok(Run { secs, daemon })
}

/// The rounds of one workload.
#[derive(Default)]
struct Rounds {
    off: Vec<f64>,
    on: Vec<f64>,
    cpu: Vec<f64>,
    peak_kib: Vec<u64>,
}

/// Percentile bootstrap 95% interval of median(on) / median(off), the
/// rounds (pairs) resampled.
fn ratio_interval(off: &[f64], on: &[f64], rng: &mut Rng) -> (f64, f64) {
    let pick = |v: &[f64], drawn: &[usize]| median(drawn.iter().map(|&i| v[i]).collect());
    bootstrap(off.len(), rng, 10_000, |drawn| pick(on, drawn) / pick(off, drawn))
}

fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
}

/// The workloads `only` names (all when empty), in NAMES order.
fn selected(only: &[String]) -> Result<Vec<&'static str>> {
    if let Some(bad) = only.iter().find(|n| !NAMES.contains(&n.as_str())) {
        anyhow::bail!("--macro-workload {bad}: no such workload ({})", NAMES.join(", "));
    }
    Ok(NAMES.iter().copied().filter(|n| only.is_empty() || only.iter().any(|o| o == n)).collect())
}

/// The arguments' errors, found before anything is built or started.
pub(crate) fn check(a: &MacroArgs) -> Result<()> {
    anyhow::ensure!(a.macro_rounds > 0, "--macro-rounds 0");
    selected(&a.macro_workload).map(drop)
}

pub fn run(a: &MacroArgs, seed: u64) -> Result<()> {
    // SAFETY: no preconditions.
    anyhow::ensure!(unsafe { libc::geteuid() } == 0, "bench --macro starts the daemon, which loads BPF programs: run it as root");
    if a.workloads {
        run_workloads(a, seed)?;
    }
    if a.macro_memory {
        crate::bench_memory::run(a.macro_idle, a.macro_servers)?;
    }
    if a.storm_memory {
        crate::bench_memory::run_storm(a.storm_piped, a.storms)?;
    }
    Ok(())
}

fn run_workloads(a: &MacroArgs, seed: u64) -> Result<()> {
    let base = std::env::temp_dir().join(format!("mcp-sensor-bench-macro-{}", std::process::id()));
    let mut ws = Vec::new();
    for name in selected(&a.macro_workload)? {
        let dir = base.join(name);
        std::fs::create_dir_all(&dir)?;
        let w = workload(name, &dir, a.macro_scale)?;
        sh(&w.setup, &dir)?;
        sh(&w.script, &dir)?; // warm-up, unmeasured
        ws.push((w, dir, Rounds::default()));
    }
    let mut rng = Rng(seed | 1);
    let mut order: Vec<usize> = (0..ws.len()).collect();
    for round in 1..=a.macro_rounds {
        shuffle(&mut order, &mut rng);
        let mut line = format!("round {round}:");
        for &i in &order {
            let (w, dir, r) = &mut ws[i];
            let on_first = rng.next() & 1 == 1;
            for on in [on_first, !on_first] {
                let run = run_once(w, dir, on)?;
                if let Some((cpu, peak)) = run.daemon {
                    r.on.push(run.secs);
                    r.cpu.push(cpu);
                    r.peak_kib.push(peak);
                } else {
                    r.off.push(run.secs);
                }
            }
            let (off, on) = (r.off.last().unwrap(), r.on.last().unwrap());
            line += &format!(" {} {} off {off:.2} s on {on:.2} s;", w.name, if on_first { "(on first)" } else { "(off first)" });
        }
        println!("{line}");
    }
    println!("\n| workload | what | daemon off (s) | daemon on (s) | on/off | 95% interval | daemon CPU (s) | daemon peak RSS (MiB) |");
    println!("|---|---|---|---|---|---|---|---|");
    for (w, _, r) in &ws {
        let (off, on) = (median(r.off.clone()), median(r.on.clone()));
        let (lo, hi) = ratio_interval(&r.off, &r.on, &mut rng);
        let peak = *r.peak_kib.iter().max().unwrap() as f64 / 1024.0;
        println!("| {} | {} | {off:.3} | {on:.3} | {:.3}x | {lo:.3}x–{hi:.3}x | {:.2} | {peak:.1} |", w.name, w.about, on / off, median(r.cpu.clone()));
    }
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")?.trim().to_string();
    println!(
        "\nmedian of {} rounds, daemon off and on in a random order per workload and round, workloads shuffled per round (seed {seed}); \
         interval: percentile bootstrap of the ratio of medians, rounds resampled 10,000 times; daemon CPU: utime+stime from the \
         workload's start until the daemon is idle after it, median; peak RSS: VmHWM reset before each workload, highest; \
         kernel {kernel}, {} CPUs",
        a.macro_rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_takes_the_middle_and_the_upper_of_two() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
        assert_eq!(median(vec![7.0]), 7.0);
    }

    #[test]
    fn a_constant_ratio_has_no_spread() {
        let off = [2.0, 2.2, 1.9, 2.5, 2.1];
        let on: Vec<f64> = off.iter().map(|x| x * 1.1).collect();
        let (lo, hi) = ratio_interval(&off, &on, &mut Rng(7));
        assert!((lo - 1.1).abs() < 1e-9 && (hi - 1.1).abs() < 1e-9, "{lo} {hi}");
    }

    #[test]
    fn the_interval_holds_the_ratio_of_medians_and_repeats_with_the_seed() {
        let off = [10.0, 10.4, 9.8, 10.1, 12.0, 10.2, 9.9];
        let on = [10.3, 10.2, 10.6, 10.0, 10.9, 11.5, 10.4];
        let point = median(on.to_vec()) / median(off.to_vec());
        let (lo, hi) = ratio_interval(&off, &on, &mut Rng(42));
        assert!(lo < point && point < hi, "{lo} {point} {hi}");
        assert!(hi - lo < 0.2, "{lo} {hi}");
        assert_eq!(ratio_interval(&off, &on, &mut Rng(42)), (lo, hi));
    }

    #[test]
    fn shuffling_keeps_every_item() {
        let mut v: Vec<usize> = (0..7).collect();
        shuffle(&mut v, &mut Rng(3));
        let mut s = v.clone();
        s.sort();
        assert_eq!(s, (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn the_locked_version_is_the_one_after_the_name() {
        let lock = "[[package]]\nname = \"regex\"\nversion = \"1.13.1\"\n\n[[package]]\nname = \"regex-syntax\"\nversion = \"0.8.11\"\nsource = \"registry\"\n";
        assert_eq!(locked_version(lock, "regex-syntax").as_deref(), Some("0.8.11"));
        assert_eq!(locked_version(lock, "regex").as_deref(), Some("1.13.1"));
        assert_eq!(locked_version(lock, "serde"), None);
    }

    #[test]
    fn workloads_are_selected_by_name_in_a_fixed_order() {
        assert_eq!(selected(&[]).unwrap(), NAMES.to_vec());
        assert_eq!(selected(&["tar".into(), "files".into()]).unwrap(), vec!["files", "tar"]);
        assert!(selected(&["make".into()]).unwrap_err().to_string().contains("no such workload"));
    }

    #[test]
    fn sizes_scale_and_never_reach_zero() {
        assert_eq!(scaled(20_000, 1.0), 20_000);
        assert_eq!(scaled(300, 0.01), 3);
        assert_eq!(scaled(2, 0.01), 1);
    }

    #[test]
    fn shell_words_are_quoted() {
        assert_eq!(q(Path::new("/tmp/a b")), "'/tmp/a b'");
        assert_eq!(q(Path::new("/it's")), r"'/it'\''s'");
    }
}
