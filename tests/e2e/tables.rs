//! Kernel tables that cannot be exhausted silently (issue 17, part 1):
//! the daemon with thousands of idle processes that have pipes on stdin
//! and stdout (what non-interactive container processes look like), each a
//! discovery candidate holding two channel slots. It must start with them
//! already running, find a real MCP server started next to them, and when
//! its tables are made too small, count and name what it could not track.
//! Also: a ring buffer smaller than one record is refused (part 6).

use crate::daemon::{client, run_client, Daemon};
use crate::harness::*;
use serde_json::{json, Value};
use std::process::{Command, Stdio};

/// `n` idle `sleep` processes, each with a pipe of its own on stdin and on
/// stdout (our ends closed at once), kept by pid only: a `Child` may hold
/// an fd of its own (a pidfd), and 20,000 of them would not fit the fd
/// limit (in the test VMs, 982 did). Killed and reaped on drop.
struct Idle(Vec<i32>);

/// The idle processes' programs: Debian's static busybox (busybox-static,
/// installed by scripts/install-deps.sh) copied to the temporary directory,
/// with `sleep` and `sh` links to it; returns that directory. In the test
/// VMs the host's files are shared by virtiofsd, which holds a host
/// descriptor for each file a guest process keeps open (its binary,
/// libraries, locale archive: 18,663 held for 1,231 dynamically linked
/// `sleep`s): under the host's limit of 20,000 the 1,231st `sleep` failed
/// to start (EMFILE), sensor or not. A static binary on the guest's tmpfs holds
/// none.
fn idle_programs() -> &'static std::path::Path {
    static P: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("mcp-sensor-e2e-idle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy("/bin/busybox", dir.join("busybox")).expect("/bin/busybox: install busybox-static (scripts/install-deps.sh)");
        for applet in ["sleep", "sh"] {
            std::os::unix::fs::symlink("busybox", dir.join(applet)).unwrap();
        }
        dir
    })
}

impl Idle {
    /// `n` idle processes that do nothing but sleep.
    fn spawn(n: usize) -> Idle {
        let d = idle_programs();
        Self::spawn_with(n, || {
            let mut c = Command::new(d.join("sleep"));
            c.arg("3600");
            c
        })
    }

    /// `n` idle processes that first read a few files, as a container's
    /// process does at its start: events their candidacy holds.
    fn spawn_reading(n: usize) -> Idle {
        let d = idle_programs().display().to_string();
        Self::spawn_with(n, || {
            let mut c = Command::new(format!("{d}/sh"));
            c.arg("-c").arg(format!("{d}/busybox cat /etc/passwd /etc/group /etc/hosts >/dev/null; exec {d}/sleep 3600"));
            c
        })
    }

    fn spawn_with(n: usize, command: impl Fn() -> Command) -> Idle {
        // the fd limit as high as it may go (the VMs' soft limit is 1024)
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: plain syscalls on a local struct.
        unsafe {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        let mut v = Idle(Vec::with_capacity(n));
        for i in 0..n {
            let mut c = command()
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("spawning idle piped process {i} of {n}: {e}"));
            // keep neither end: the pipes stay open in the child only
            drop(c.stdin.take());
            drop(c.stdout.take());
            v.0.push(c.id() as i32);
        }
        v
    }
}

impl Drop for Idle {
    fn drop(&mut self) {
        // SAFETY: signalling and reaping our own children, by pid.
        for &pid in &self.0 {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        for &pid in &self.0 {
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        }
    }
}

/// The sum of `key` over the log's `drops` lines that are not final (the
/// periodic deltas) or, with `final_`, the final totals line's.
fn dropped(evs: &[Value], key: &str, final_: bool) -> u64 {
    evs.iter()
        .filter(|e| e["kind"] == "drops" && e["final"] == final_)
        .map(|e| e["other"][key].as_u64().unwrap_or(0))
        .sum()
}

fn hints(evs: &[Value]) -> String {
    evs.iter().filter(|e| e["kind"] == "drops").filter_map(|e| e["hint"].as_str()).collect::<Vec<_>>().join("\n")
}

/// The test's own file read through a server the daemon found: the
/// daemon was watching (positive control).
fn assert_server_found(evs: &[Value], target: &std::path::Path) {
    let found = evs.iter().any(|e| {
        e["kind"] == "rpc" && e["tool"] == "read_text_file" && e["arguments"]["path"] == target.display().to_string()
    });
    assert!(found, "the MCP server's call was logged (the server was found)");
}

/// The client waiting on `go` makes its call; then the daemon stops and
/// the idle processes go. The call was logged: the server was watched.
fn call_then_stop(go: &std::path::Path, session: std::thread::JoinHandle<Value>, daemon: Daemon, idle: Idle, target: &std::path::Path) -> Vec<Value> {
    std::fs::write(go, "").unwrap();
    let report = session.join().unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let (status, evs) = daemon.stop();
    drop(idle);
    assert_eq!(status, 0);
    assert_server_found(&evs, target);
    evs
}

fn daemon_starts_with_idle_piped_processes_running(n: usize, name: &str) {
    let d = scratch(name);
    let idle = Idle::spawn(n);
    let target = d.join("notes.txt");
    std::fs::write(&target, "x\n").unwrap();
    // default tables: every one of them fits
    let daemon = Daemon::start(&d, "");
    let err = daemon.stderr_text();
    assert!(!err.contains("could not track"), "the default tables hold {n} piped processes: {err}");
    run_client(&mut client(&d, json!([{"call": "read_text_file", "arguments": {"path": target}}])));
    let (status, evs) = daemon.stop();
    drop(idle);
    assert_eq!(status, 0);
    assert_server_found(&evs, &target);
    assert_eq!(dropped(&evs, "startup_processes_untracked", true), 0);
    assert_eq!(dropped(&evs, "candidates_untracked", true), 0, "{}", hints(&evs));
}

/// Regression: with 2,100 such processes already running, `run` failed to
/// start ("map CHANNELS: bpf_map_update_elem failed: Argument list too
/// long") while seeding from /proc.
#[test]
fn alone_tables_daemon_starts_with_2100_idle_piped_processes_running() {
    daemon_starts_with_idle_piped_processes_running(2100, "tables-2100");
}

#[test]
fn alone_tables_daemon_starts_with_20000_idle_piped_processes_running() {
    daemon_starts_with_idle_piped_processes_running(20000, "tables-20000");
}

/// Tables too small for the processes already running: the daemon starts
/// anyway, says how many it could not track and which setting to raise,
/// on stderr and in a `drops` line.
#[test]
fn alone_tables_too_small_at_start_the_daemon_starts_and_says_what_it_could_not_track() {
    let d = scratch("tables-small-start");
    let idle = Idle::spawn(2100);
    let daemon = Daemon::start_with(&d, "", &["--max-channels", "1024", "--max-watched", "1024"]);
    let err = daemon.stderr_text();
    assert!(err.contains("could not track") && err.contains("--max-channels"), "{err}");
    let (status, evs) = daemon.stop();
    drop(idle);
    assert_eq!(status, 0);
    // 2,100 candidates need 4,200 channel slots: at least 1,588 did not fit
    let n = dropped(&evs, "startup_processes_untracked", true);
    assert!(n >= 2100 - 512, "untracked counted in the final drops line: {n}\n{}", hints(&evs));
    assert!(hints(&evs).contains("--max-channels"), "{}", hints(&evs));
}

/// 2,200 idle piped processes started under the daemon, then a real MCP
/// server: with the default tables it is found; with tables too small for
/// them, the candidates that did not fit are counted in `drops` (kernel
/// side: the channel inserts refused) with the setting to raise.
/// 2,200 idle piped processes started next to the daemon, each a candidate
/// holding its first events, fill the candidates' shared hold bound; then
/// a server whose launcher reads an SSH key before the first MCP message.
/// It is found, and its pre-handshake events, that read and its alert
/// among them, are kept: the idle candidates, quiet the longest, gave
/// theirs up (discover/gate.rs). With the shared bound first come, first
/// served, the launcher's events were all lost (`held_lost` 1,619 in a
/// new user's trial) and the alert with them.
#[test]
fn alone_tables_2200_idle_piped_processes_then_a_real_server_is_found() {
    let d = scratch("tables-2200");
    let target = d.join("notes.txt");
    std::fs::write(&target, "y\n").unwrap();
    let (_, key, _) = crate::enforce::home_with_key(&d);
    let wrapper = d.join("read-then-serve.sh");
    std::fs::write(&wrapper, format!("#!/bin/sh\ncat '{}' >/dev/null\nexec \"$@\"\n", key.display())).unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // a hold bound of 2,048 events a candidate, 8,192 for all: the idle
    // processes' ~8 events each fill it (the default's 65,536 for all is
    // filled by as many dynamically linked ones, ~30 events each)
    let daemon = Daemon::start(&d, "[discovery]\nmax_held_events = 2048\n");
    let idle = Idle::spawn_reading(2200);
    let mut command = vec![wrapper.display().to_string()];
    command.extend(crate::mcp::fs_server(&crate::mcp::mcp_env(), &d));
    run_client(&mut crate::daemon::client_running(&d, command, json!([{"call": "read_text_file", "arguments": {"path": target}}])));
    let (status, evs) = daemon.stop();
    drop(idle);
    assert_eq!(status, 0);
    assert_server_found(&evs, &target);
    assert_eq!(dropped(&evs, "candidates_untracked", true), 0, "{}", hints(&evs));
    // positive control: the shared bound was full (the daemon's summary
    // at stop)
    let summary = Daemon::stderr_in(&d);
    let at_bound: u64 = summary
        .split(" events came while all candidates held their bound")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(at_bound > 0, "the idle candidates filled the shared bound: {summary}");
    let found: Vec<&Value> = evs.iter().filter(|e| e["kind"] == "server_found" && e["exe"].as_str().unwrap_or("").ends_with("node")).collect();
    assert!(found.iter().any(|f| f["held_lost"].as_u64().unwrap_or(0) == 0), "the server kept its pre-handshake events: {found:?}");
    let alerts = evs.iter().filter(|e| e["kind"] == "alert" && e["rule"] == "ssh-key-read" && e["event"]["path"] == key.display().to_string()).count();
    assert_eq!(alerts, 1, "the launcher's key read before the first MCP message alerts");
}

#[test]
fn alone_tables_2200_idle_piped_processes_in_small_tables_the_loss_is_counted() {
    let d = scratch("tables-2200-small");
    let daemon = Daemon::start_with(&d, "", &["--max-channels", "1024"]);
    let idle = Idle::spawn(2200);
    let (status, evs) = daemon.stop();
    drop(idle);
    assert_eq!(status, 0);
    let lost = dropped(&evs, "candidates_untracked", true);
    let refused = dropped(&evs, "channel_map_full", true);
    // at most 1,024 slots: at least 2,200 - 512 candidates did not fit
    assert!(lost >= 2200 - 512 && refused >= lost, "untracked {lost}, refused {refused}\n{}", hints(&evs));
    let h = hints(&evs);
    assert!(h.contains("could not track") && h.contains("--max-channels"), "{h}");
}

/// The fallback for a server the full tables missed (discover/late.rs):
/// with the channel table full of idle piped processes, a real server
/// launched by the SDK client is not tracked at its exec (counted, and
/// marked by the kernel). While the idle processes keep running, the
/// daemon unwatches some that have been idle for 10 s to make room,
/// finds the server in /proc and adopts it; the server then stays idle
/// for 14 s, and its next call is logged.
#[test]
fn alone_tables_a_server_the_full_tables_missed_is_adopted_while_idle_candidates_still_fill_them() {
    let d = scratch("tables-late");
    let target = d.join("notes.txt");
    std::fs::write(&target, "z\n").unwrap();
    let (ready, go) = (d.join("ready"), d.join("go"));
    let daemon = Daemon::start_with(&d, "", &["--max-channels", "1024"]);
    // 700 candidates want 1,400 slots: the table is full, and ~190 of
    // them wait for room as the server will
    let idle = Idle::spawn(700);
    // they are idle for 10 s (the eviction's threshold) before the server
    // starts: room is made for it, not freed by chance (the client's own
    // short-lived processes leave a few slots, which the newest, the
    // server, would take first)
    std::thread::sleep(std::time::Duration::from_secs(11));
    let steps = json!([{"touch": ready}, {"wait_file": go}, {"call": "read_text_file", "arguments": {"path": target}}]);
    let mut c = client(&d, steps);
    let session = std::thread::spawn(move || run_client(&mut c));
    // the server runs (the session is initialized), untracked: its exec's
    // channel did not fit
    wait_for("the client's session to start", || ready.exists());
    // the idle processes run on: room is made by unwatching some of them
    wait_for("a late adoption ('now tracking' on the daemon's stderr)", || daemon.stderr_text().contains("now tracking"));
    // the server now waits on its user, idle, while room is still being
    // made for the idle processes that wait; its call must still be
    // logged. (The longest-idle go first, so here the server, adopted
    // last, is not reached even without the rule that keeps candidates
    // found in /proc that wait on their stdin: that rule is the next
    // test's.)
    std::thread::sleep(std::time::Duration::from_secs(14));
    let evs = call_then_stop(&go, session, daemon, idle, &target);
    assert!(dropped(&evs, "candidates_untracked", true) > 0, "the miss is counted: {}", hints(&evs));
    let evicted = dropped(&evs, "discovery_candidates_evicted", true);
    assert!((1..700).contains(&evicted), "some idle candidates made room, counted: {evicted}; {}", hints(&evs));
    assert!(hints(&evs).contains("idle for 10 s"), "{}", hints(&evs));
}

/// Candidates found in /proc make room too, unless one of their processes
/// waits on its stdin (discover/waiting.rs). A real server, its client
/// connected and then quiet, and 600 idle piped processes run before the
/// daemon starts with tables too small for all of them (1,024 channel
/// slots). The server, started first, is adopted at start and is the
/// idle the longest; the idle processes that did not fit wait for room.
/// Room is made by unwatching idle processes found in /proc, never the
/// server (node, blocked in epoll on its stdin): its call afterwards is
/// logged. Adopted candidates were first never evicted, and room was then
/// never made for what the tables missed at start.
#[test]
fn alone_tables_idle_processes_found_in_proc_make_room_but_a_server_waiting_on_its_client_does_not() {
    let d = scratch("tables-adopted-evict");
    let target = d.join("notes.txt");
    std::fs::write(&target, "w\n").unwrap();
    let (ready, go) = (d.join("ready"), d.join("go"));
    let steps = json!([{"touch": ready}, {"wait_file": go}, {"call": "read_text_file", "arguments": {"path": target}}]);
    let mut c = client(&d, steps);
    let session = std::thread::spawn(move || run_client(&mut c));
    wait_for("the client's session to start", || ready.exists());
    let idle = Idle::spawn(600);
    let daemon = Daemon::start_with(&d, "", &["--max-channels", "1024"]);
    assert!(daemon.stderr_text().contains("could not track"), "600 candidates want 1,200 slots: {}", daemon.stderr_text());
    wait_for("room made for what the tables missed at start ('now tracking' on the daemon's stderr)", || daemon.stderr_text().contains("now tracking"));
    let err = daemon.stderr_text();
    assert!(err.contains("found in /proc that wait on their stdin"), "the server, the idle the longest, was weighed and kept: {err}");
    let evs = call_then_stop(&go, session, daemon, idle, &target);
    let evicted = dropped(&evs, "discovery_candidates_evicted", true);
    assert!((1..600).contains(&evicted), "idle candidates found in /proc made room, counted: {evicted}; {}", hints(&evs));
}

/// The ids of the loaded maps named `name` (bpftool).
fn maps_named(name: &str) -> Vec<u64> {
    let out = Command::new("bpftool").args(["-j", "map", "show", "name", name]).output().expect("run bpftool");
    assert!(out.status.success(), "bpftool map show: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("bpftool prints JSON");
    let all = if v.is_array() { v.as_array().unwrap().clone() } else { vec![v] };
    all.iter().filter_map(|m| m["id"].as_u64()).collect()
}

/// Deletes every entry of map `id` (bpftool), as an eviction would;
/// returns how many there were.
fn empty_map(id: u64) -> usize {
    let out = Command::new("bpftool").args(["-j", "map", "dump", "id", &id.to_string()]).output().expect("run bpftool");
    assert!(out.status.success(), "bpftool map dump: {}", String::from_utf8_lossy(&out.stderr));
    let entries: Vec<Value> = serde_json::from_slice(&out.stdout).expect("bpftool prints JSON");
    for e in &entries {
        let key: Vec<String> = e["key"].as_array().expect("raw key bytes").iter().map(|b| b.as_str().unwrap().to_string()).collect();
        let mut args = vec!["map".to_string(), "delete".into(), "id".into(), id.to_string(), "key".into(), "hex".into()];
        args.extend(key.iter().map(|b| b.trim_start_matches("0x").to_string()));
        let st = Command::new("bpftool").args(&args).status().unwrap();
        assert!(st.success(), "bpftool {args:?}");
    }
    entries.len()
}

/// FIRST_REQ, the sessions' first-request stamps, is an LRU map: a flood
/// of sessions can evict a live server's stamp, and with it the kernel's
/// "after the first request" kill of the server's shells. The eviction is
/// made here by deleting the stamp (bpftool), as the LRU would; the agent
/// restores it within a second and counts it (`first_request_evicted`),
/// and the server's `sh -c` is then killed in the kernel, not late by the
/// agent. Alone: it empties every loaded FIRST_REQ.
#[test]
fn alone_tables_an_evicted_first_request_stamp_is_restored_and_counted() {
    let d = scratch("tables-first-req");
    let (ready, go, marker) = (d.join("ready"), d.join("go"), d.join("sh-ran"));
    let steps = json!([
        {"call": "echo", "arguments": {"message": "hi"}},
        {"touch": ready},
        {"wait_file": go},
        {"call": "shell", "arguments": {"command": format!("touch {}", marker.display())}},
    ]);
    let server = crate::mcp::server_argv(&crate::mcp::mcp_env(), "MCP_SDK2_TEST_SERVER");
    let dir = d.clone();
    let session = std::thread::spawn(move || crate::mcp::drive(&dir, server, steps, &["--enforce"]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while !ready.exists() {
        assert!(std::time::Instant::now() < deadline && !session.is_finished(), "the session did not reach its first request");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let maps = maps_named("FIRST_REQ");
    let stamps: usize = maps.iter().map(|&id| empty_map(id)).sum();
    assert!(stamps >= 1, "the server's stamp was in FIRST_REQ (positive control): maps {maps:?}");
    // the agent checks the stamps every second
    std::thread::sleep(std::time::Duration::from_millis(2500));
    std::fs::write(&go, "").unwrap();
    let s = session.join().unwrap();
    let run = &s.run;
    assert_eq!(s.client["ok"], true, "{}\n{}", s.client, run.describe());
    assert!(!marker.exists(), "the shell ran its command\n{}", run.describe());
    let a: Vec<&Value> = run.of_kind("alert").filter(|a| a["rule"] == "unexpected-shell").collect();
    assert_eq!(a.len(), 1, "{}", run.describe());
    assert_eq!(a[0]["action"], "killed", "{}", a[0]);
    assert_eq!(a[0]["decided_by"], "kernel_syscall_exit", "killed in the kernel: the stamp was back: {}", a[0]);
    let fin = run.final_drops();
    assert!(fin["other"]["first_request_evicted"].as_u64() >= Some(1), "the eviction is counted: {fin}");
}

/// Part 6: a ring smaller than one record can never deliver one.
#[test]
fn tables_a_4k_ring_is_refused_by_check_config_and_exec() {
    let d = scratch("tables-ring");
    let config = d.join("config.toml");
    std::fs::write(&config, "[sensor]\nring_buffer_size = \"4K\"\n").unwrap();
    let out = Command::new(sensor_bin()).args(["run", "--check-config", "--config"]).arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("smaller than one kernel record") && err.contains("minimum"), "{err}");
    let out = Command::new(sensor_bin()).args(["run", "--check-config", "--ring-buffer-size", "4K"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--ring-buffer-size") && err.contains("minimum"), "{err}");
    std::fs::write(&config, "[sensor]\nqueue_bytes = 0\n").unwrap();
    let out = Command::new(sensor_bin()).args(["run", "--check-config", "--config"]).arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("queue_bytes") && err.contains("minimum"), "{err}");
    let out = Command::new(sensor_bin()).args(["exec", "--ring-buffer-size", "4K", "--", "true"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("smaller than one kernel record"), "{err}");
    // and the valid defaults are still valid (positive control)
    let out = Command::new(sensor_bin()).args(["run", "--check-config"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A copy of /bin/true run as `payload` from `count` nested directories
/// named `name` under `d` (relative mkdir and chdir: a shell's `cd` gives
/// up past PATH_MAX), under `exec`; the run and the payload's exec event.
fn deep_payload(d: &std::path::Path, name: &str, count: usize) -> (Run, Value) {
    let script = format!(
        "import os, shutil, subprocess, sys\nos.chdir(sys.argv[1])\nfor _ in range({count}):\n    os.makedirs('{name}', exist_ok=True)\n    os.chdir('{name}')\n\
         shutil.copy('/bin/true', 'payload')\nr = subprocess.run(['./payload']).returncode\nos.remove('payload')\n\
         for _ in range({count}):\n    os.chdir('..')\n    os.rmdir('{name}')\nsys.exit(r)\n"
    );
    let r = exec(d, &["/usr/bin/python3", "-c", &script, d.to_str().unwrap()]);
    assert!(r.out.status.success(), "{}", String::from_utf8_lossy(&r.out.stderr));
    let execs: Vec<&Value> = r.events.iter().filter(|e| e["kind"] == "exec" && e["exe"].as_str().unwrap_or("").ends_with("/payload")).collect();
    assert_eq!(execs.len(), 1, "the payload's exec is logged (positive control)\n{}", r.describe());
    let e = execs[0].clone();
    assert!(e["file_flags"].as_array().unwrap().iter().any(|f| f == "path_truncated"), "{e}");
    (r, e)
}

/// Part 3: payloads run from 5 KiB deep under the scratch directory in
/// /tmp. Their exec paths are longer than the kernel keeps (MS_PATH_MAX):
/// flagged `path_truncated`, the basename kept. When the kernel's walk
/// reaches the root, the leading components are kept too
/// (`/tmp/<scratch>/…/dddd/payload`), `exe_length` is the path's true
/// length, and `exec-from-temp` alerts, the alert carrying both:
/// - 20 directories of 250-byte names: within the walk on every kernel;
/// - 1,000 directories `dddd`: with bpf_loop (the full object) the walk
///   goes 4,096 steps; the compat object's (5.10 to 5.16) copies 56
///   components, then walks the path of the mount the file is on: the
///   path is `<mount point>/…/dddd/payload`, with no length. Where /tmp is
///   a mount of its own (the VMs' tmpfs, Debian 13's default), that is
///   `/tmp/…/dddd/payload` and `exec-from-temp` alerts; on the root's own
///   mount it is `/…/dddd/payload`, never an absolute path it is not.
#[test]
fn kernel_deep_payload_is_flagged_keeps_its_leading_components_and_alerts_from_temp() {
    let d = scratch("tables-deep");
    let dir = std::fs::canonicalize(&d).unwrap().display().to_string();
    let long = "e".repeat(250);
    let known = |r: &Run, e: &Value, name: &str, count: usize| {
        let exe = e["exe"].as_str().unwrap();
        assert!(exe.starts_with(&format!("{dir}/…/{name}/")) && exe.ends_with(&format!("/{name}/payload")), "the leading components and the basename are kept: {exe}");
        let length = dir.len() + count * (name.len() + 1) + "/payload".len();
        assert_eq!(e["exe_length"], length, "the true length: {e}");
        let from_temp: Vec<&Value> = r.events.iter().filter(|a| a["kind"] == "alert" && a["rule"] == "exec-from-temp").collect();
        assert_eq!(from_temp.len(), 1, "a payload in /tmp however deep\n{}", r.describe());
        assert_eq!(from_temp[0]["event"]["exe_length"], length, "the alert says the path was cut: {}", from_temp[0]);
    };
    let (r, e) = deep_payload(&d, &long, 20);
    known(&r, &e, &long, 20);
    let object = r.events.iter().find(|e| e["kind"] == "sensor_start").map(|s| s["object"].clone());
    let (r, e) = deep_payload(&d, "dddd", 1000);
    if object == Some(json!("compat")) {
        let exe = e["exe"].as_str().unwrap();
        let top = mount_point_of(&dir);
        let head = if top == "/" { String::new() } else { top.clone() };
        assert!(exe.starts_with(&format!("{head}/…/dddd/")) && exe.ends_with("/dddd/payload"), "the mount point {top}, a gap, the tail: {exe}");
        assert_eq!(e["exe_length"], Value::Null, "{e}");
        let from_temp = r.events.iter().filter(|a| a["kind"] == "alert" && a["rule"] == "exec-from-temp").count();
        assert_eq!(from_temp, usize::from(["/tmp", "/var/tmp", "/dev/shm"].contains(&top.as_str())), "{}", r.describe());
    } else {
        assert_eq!(object, Some(json!("full")), "the sensor says which object it loaded");
        known(&r, &e, "dddd", 1000);
    }
}

/// The mount point `path` (canonical) lies under: the longest mount point
/// of /proc/self/mountinfo that is `path` or one of its ancestors.
fn mount_point_of(path: &str) -> String {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mi.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| m.replace("\\040", " "))
        .filter(|m| m == "/" || path == m || path.starts_with(&format!("{m}/")))
        .max_by_key(|m| m.len())
        .unwrap()
}

/// The entries of map `id` (bpftool).
fn map_entries(id: u64) -> usize {
    let out = Command::new("bpftool").args(["-j", "map", "dump", "id", &id.to_string()]).output().expect("run bpftool");
    assert!(out.status.success(), "bpftool map dump: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Vec<Value>>(&out.stdout).expect("bpftool prints JSON").len()
}

/// CLIENTS, the kernel's table of running MCP clients (8,192 entries):
/// a client leaves it when it exits, and one that does not fit is
/// counted (`clients_map_full`), where the LRU it was evicted a live
/// client's entry without a trace. The clients here are `sleep` copied
/// under a name the configuration lists as a client's. Alone: it reads the
/// one loaded CLIENTS.
#[test]
fn alone_tables_clients_leave_the_client_table_when_they_exit_and_one_past_it_is_counted() {
    let d = scratch("tables-clients");
    let fake = d.join("msclientx");
    std::fs::copy("/bin/sleep", &fake).unwrap();
    let daemon = Daemon::start(&d, "[discovery]\nextra_clients = [\"msclientx\"]\n");
    let ids = maps_named("CLIENTS");
    assert_eq!(ids.len(), 1, "one daemon's CLIENTS loaded: {ids:?}");
    let before = map_entries(ids[0]);
    let spawn = |n: usize| -> Vec<std::process::Child> {
        (0..n).map(|_| Command::new(&fake).arg("3600").stdin(Stdio::null()).stdout(Stdio::null()).spawn().unwrap()).collect()
    };
    let kill = |v: Vec<std::process::Child>| {
        for mut c in v {
            let _ = c.kill();
            let _ = c.wait();
        }
    };
    // positive control: running clients are in the table
    let some = spawn(200);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(map_entries(ids[0]) >= before + 200, "200 clients in CLIENTS (had {before})");
    kill(some);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(map_entries(ids[0]), before, "the exited clients left the table");
    // 8,300 at once: at least 108 past the table's 8,192
    let many = spawn(8300);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (status, evs) = daemon.stop();
    kill(many);
    assert_eq!(status, 0);
    let refused = dropped(&evs, "clients_map_full", true);
    assert!(refused >= (8300 + before - 8192) as u64, "clients past the table counted: {refused}\n{}", hints(&evs));
    assert!(hints(&evs).contains("client table"), "{}", hints(&evs));
}
