//! `cargo xtask bench --macro-memory` (issue 14, item 3): the host-wide
//! daemon's resident memory with many processes and many watched MCP
//! servers on the host (target: at most 64 MB with 10,000 processes and
//! 100 watched servers).
//!
//! Steps, each one's peak measured from a reset (`clear_refs` 5):
//! 1. the daemon (`mcp-sensor run`, default configuration) started on the
//!    host as it is;
//! 2. `--macro-idle` `sleep infinity` processes started while it watches,
//!    stdio on /dev/null: not discovery candidates, as most of a host's
//!    processes are not;
//! 3. `--macro-servers` real MCP servers started while it watches:
//!    `server-everything` (node, the npm package tests/mcp/setup.sh
//!    installs), each with pipes on stdin and stdout held by this process,
//!    which is its client: `initialize`, then one `echo` call answered.
//!    The daemon's log must say `server_found` for each (counted);
//! 4. that daemon stopped and a fresh one started with all of them
//!    running (it seeds its tables from /proc), one more `echo` call to
//!    each server, and each found again (counted).
//!
//! Reported per step: VmRSS once the daemon is idle after the step, split
//! into RssAnon (its own) and RssFile (mapped files: most of it is the
//! BPF ring buffer, 32 MiB by default, kernel memory mapped into the agent
//! twice, so a record can be read across the ring's end: 64 MiB of RSS;
//! then its binary's pages), and VmHWM, its peak during
//! the step. The other BPF maps are kernel memory, not in the RSS
//! (`bpftool map show` gives their memlock).
//!
//! The idle processes, in a process group of their own, die with this
//! process (PR_SET_PDEATHSIG) and are killed and reaped when the bench
//! ends or fails; the servers are killed
//! and reaped too, and exit on their own when their stdin closes.

use crate::bench::{start_daemon, Sensor};
use crate::bench_export::{found_pid, Server, Tail};
use crate::proc_usage::{memory_kib, reset_peak, wait_idle};
use anyhow::{Context, Result};
use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Threads a `server-everything` runs (node's, counted on this machine: 11).
const SERVER_THREADS: usize = 12;

/// Idle processes, all in one process group of their own (the first one's
/// pid): one signal kills them all, and they are reaped by group, with no
/// handle kept per process (a `Child` may hold a pidfd; thousands would
/// not fit the fd limit). Killed and reaped on drop.
struct Idle {
    group: i32,
    count: usize,
}

impl Idle {
    /// `n` idle processes; `piped`: stdin and stdout are pipes (this
    /// process's ends closed at once), which makes each one a discovery
    /// candidate, as non-interactive container processes are.
    fn spawn(n: usize, piped: bool) -> Result<Idle> {
        let mut v = Idle { group: 0, count: 0 };
        let io = || if piped { Stdio::piped() } else { Stdio::null() };
        for i in 0..n {
            let mut cmd = Command::new("sleep");
            cmd.arg("infinity").stdin(io()).stdout(io()).stderr(Stdio::null()).process_group(v.group);
            // SAFETY: between fork and exec the child only calls prctl,
            // which is async-signal-safe.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let c = cmd.spawn().with_context(|| format!("starting idle process {i} of {n}"))?;
            if v.group == 0 {
                v.group = c.id() as i32;
            }
            v.count += 1;
        }
        Ok(v)
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        if self.count == 0 {
            return;
        }
        // SAFETY: signalling and reaping our own children's group.
        unsafe {
            libc::kill(-self.group, libc::SIGKILL);
            while libc::waitpid(-self.group, std::ptr::null_mut(), 0) > 0 {}
        }
    }
}

/// Servers this process talks to; killed and reaped on drop.
struct Servers(Vec<Server>);

impl Drop for Servers {
    fn drop(&mut self) {
        for s in &mut self.0 {
            let _ = s.child.kill();
        }
        for s in &mut self.0 {
            let _ = s.child.wait();
        }
    }
}

/// Fails unless the kernel has room for what the bench starts: pids and
/// threads in use (the 4th field of /proc/loadavg) plus the new ones, and
/// a margin, under pid_max and threads-max.
fn check_room(idle: usize, servers: usize) -> Result<()> {
    let read = |p: &str| -> Result<usize> { Ok(std::fs::read_to_string(p)?.trim().parse()?) };
    let limit = read("/proc/sys/kernel/pid_max")?.min(read("/proc/sys/kernel/threads-max")?);
    let loadavg = std::fs::read_to_string("/proc/loadavg")?;
    let used: usize = loadavg.split_whitespace().nth(3).and_then(|f| f.split_once('/')?.1.parse().ok()).context("/proc/loadavg")?;
    let need = used + idle + servers * SERVER_THREADS + 1000;
    anyhow::ensure!(
        need <= limit,
        "{used} threads running, {idle} idle processes and {servers} servers to add: more than pid_max / threads-max ({limit}) allow; \
         lower --macro-idle or --macro-servers, or raise kernel.pid_max"
    );
    Ok(())
}

/// Processes on the host now.
fn host_processes() -> usize {
    std::fs::read_dir("/proc").map_or(0, |d| d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit())).count())
}

/// The daemon, logging under `dir` (emptied).
fn start(dir: &Path) -> Result<Sensor> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    start_daemon(dir, "", &[])
}

/// How many of `servers` the daemon logging under `dir` has found, after
/// waiting up to 120 s for all of them.
fn found(dir: &Path, servers: &Servers) -> Result<usize> {
    let want: HashSet<u64> = servers.0.iter().map(|s| u64::from(s.child.id())).collect();
    let mut log = Tail::new(&dir.join("daemon-log/events.jsonl"));
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.len() < want.len() && Instant::now() < deadline {
        seen.extend(log.next_lines()?.iter().filter_map(|l| found_pid(l)).filter(|p| want.contains(p)));
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(seen.len())
}

/// One row: the daemon idle after a step, its memory then and at its peak.
fn row(step: &str, d: &Sensor) -> Result<String> {
    wait_idle(d.id(), Duration::from_secs(120))?;
    let m = memory_kib(d.id())?;
    let mib = |kib: u64| kib as f64 / 1024.0;
    Ok(format!("| {step} | {} | {:.1} | {:.1} | {:.1} | {:.1} |", host_processes(), mib(m.rss), mib(m.anon), mib(m.file), mib(m.peak)))
}

pub fn run(idle: usize, servers: usize) -> Result<()> {
    check_room(idle, servers)?;
    let env = if servers > 0 { crate::bench_mcp::mcp_env()? } else { Default::default() };
    let base = std::env::temp_dir().join(format!("mcp-sensor-bench-memory-{}", std::process::id()));
    let mut rows = Vec::new();
    let d = start(&base.join("daemon"))?;
    rows.push(row("daemon started", &d)?);
    reset_peak(d.id())?;
    let t = Instant::now();
    let sleeping = Idle::spawn(idle, false)?;
    let spawned = t.elapsed().as_secs_f64();
    rows.push(row(&format!("+ {idle} idle processes (`sleep infinity`, started under it in {spawned:.0} s)"), &d)?);
    std::fs::create_dir_all(base.join("servers"))?;
    let mut talking = Servers(Vec::new());
    reset_peak(d.id())?;
    for i in 0..servers {
        let mut s = Server::start(&env, &base.join(format!("servers/{i}.stderr")), "xtask-memory")?;
        s.echo(1, &format!("memory {i}"))?;
        talking.0.push(s);
    }
    let n = found(&base.join("daemon"), &talking)?;
    rows.push(row(&format!("+ {servers} `server-everything` started under it, one `echo` call each: {n} of {servers} found"), &d)?);
    d.stop()?;
    let d = start(&base.join("daemon2"))?;
    rows.push(row("a fresh daemon started with all of them running", &d)?);
    reset_peak(d.id())?;
    for (i, s) in talking.0.iter_mut().enumerate() {
        s.echo(2, &format!("memory again {i}"))?;
    }
    let n = found(&base.join("daemon2"), &talking)?;
    rows.push(row(&format!("+ one more `echo` call to each server: {n} of {servers} found"), &d)?);
    d.stop()?;
    drop(talking);
    drop(sleeping);
    println!("\n| daemon memory (issue 14) | processes on the host | VmRSS after (MiB) | of which RssAnon | of which RssFile | VmHWM during (MiB) |\n|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!(
        "{}", ABOUT_ROWS
    );
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}

/// What the columns of both tables mean.
const ABOUT_ROWS: &str = "\nVmRSS once the daemon is idle after each step, of which RssAnon (its own: heap, stacks) and RssFile (mapped: the BPF ring \
         buffer, 32 MiB by default and mapped twice: 64 MiB, then its binary); VmHWM: its peak during the step (reset before it; a started daemon's since its start); \
         the other BPF maps not included";

/// `--storm-memory` (issue 17): the daemon's memory with `piped` idle
/// discovery candidates, through `storms` storms of 20,000 piped
/// short-lived processes (`xtask worker exec-piped`), and once all of them
/// are gone: what the daemon keeps after they exit. The last row waits 25 s
/// after the idle ones are killed, two of the agent's housekeeping periods
/// (10 s: exited processes forgotten, free memory given back).
pub fn run_storm(piped: usize, storms: usize) -> Result<()> {
    check_room(piped, 0)?;
    let base = std::env::temp_dir().join(format!("mcp-sensor-bench-storm-{}", std::process::id()));
    let mut rows = Vec::new();
    let d = start(&base.join("daemon"))?;
    rows.push(row("daemon started", &d)?);
    reset_peak(d.id())?;
    let idle = Idle::spawn(piped, true)?;
    rows.push(row(&format!("+ {piped} idle piped processes (`sleep infinity`, pipes on stdin and stdout)"), &d)?);
    for i in 1..=storms {
        reset_peak(d.id())?;
        let out = Command::new(std::env::current_exe()?).args(["worker", "exec-piped", "20000"]).output()?;
        anyhow::ensure!(out.status.success(), "xtask worker exec-piped: {}", String::from_utf8_lossy(&out.stderr));
        rows.push(row(&format!("+ storm {i}: 20,000 piped short-lived processes"), &d)?);
    }
    reset_peak(d.id())?;
    drop(idle);
    std::thread::sleep(Duration::from_secs(25));
    rows.push(row("all of them gone, 25 s later", &d)?);
    d.stop()?;
    println!("\n| daemon memory (issue 17) | processes on the host | VmRSS after (MiB) | of which RssAnon | of which RssFile | VmHWM during (MiB) |\n|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!("{ABOUT_ROWS}");
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}
