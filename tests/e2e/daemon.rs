//! `mcp-sensor run`, the host-wide daemon, with real MCP software and no
//! wrapper: the official Python SDK client launches the npm filesystem
//! server directly, and the daemon must find the server (by what its stdio
//! carries, or as the child of a configured client), whether it started
//! before or after the daemon, and log its tool calls and their file opens.
//! Also: the durable log survives `kill -9` and a restart appends; SIGHUP
//! keeps a valid configuration when the new one is invalid.

use crate::harness::*;
use crate::mcp::{fs_server, mcp_env};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub(crate) struct Daemon {
    pub(crate) child: Child,
    stderr: PathBuf,
    pub(crate) log_dir: PathBuf,
}

/// A test that fails must not leave a daemon watching the host.
impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Daemon {
    /// Starts `mcp-sensor run --config DIR/config.toml` with `extra` TOML
    /// appended to a config whose log is DIR/log; returns once it watches.
    pub(crate) fn start(dir: &Path, extra: &str) -> Daemon {
        Self::start_with(dir, extra, &[])
    }

    /// [`Self::start`] with more command-line arguments. The state
    /// directory is DIR/state: each daemon holds its own (service.rs).
    pub(crate) fn start_with(dir: &Path, extra: &str, args: &[&str]) -> Daemon {
        Self::start_env(dir, extra, args, &[])
    }

    /// [`Self::start_with`] with more environment variables.
    pub(crate) fn start_env(dir: &Path, extra: &str, args: &[&str], envs: &[(&str, &str)]) -> Daemon {
        Self::spawn(dir, extra, args, envs, Stdio::null())
    }

    /// [`Self::start_with`] with the daemon's stdout going to `stdout`.
    pub(crate) fn start_stdout(dir: &Path, extra: &str, args: &[&str], stdout: std::fs::File) -> Daemon {
        Self::spawn(dir, extra, args, &[], Stdio::from(stdout))
    }

    fn spawn(dir: &Path, extra: &str, args: &[&str], envs: &[(&str, &str)], stdout: Stdio) -> Daemon {
        require_root();
        let log_dir = dir.join("log");
        let config = dir.join("config.toml");
        std::fs::write(&config, format!("[log]\ndir = \"{}\"\n{extra}", log_dir.display())).unwrap();
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let stderr = dir.join(format!("daemon-{}.stderr", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        let child = Command::new(sensor_bin())
            .args(["run", "--config"])
            .arg(&config)
            .args(isolation(dir))
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start mcp-sensor run");
        let mut d = Daemon { child, stderr, log_dir };
        wait_for("the daemon to start watching", || {
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!("the daemon exited ({st}) while starting: {}", d.stderr_text());
            }
            d.stderr_text().contains("watching the host")
        });
        d
    }

    pub(crate) fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The stderr of every daemon started in `dir`, stopped ones too (what
    /// they said at stop: [`Self::stop`] consumes the daemon).
    pub(crate) fn stderr_in(dir: &Path) -> String {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|f| f.file_name().to_string_lossy().starts_with("daemon-") && f.file_name().to_string_lossy().ends_with(".stderr"))
            .map(|f| std::fs::read_to_string(f.path()).unwrap_or_default())
            .collect()
    }

    pub(crate) fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGTERM, then the exit status.
    pub(crate) fn stop_status(mut self) -> i32 {
        self.signal(libc::SIGTERM);
        self.child.wait().unwrap().code().unwrap_or(-1)
    }

    /// SIGTERM, then the exit status and the log's events, the rotated
    /// files' first (`events.jsonl.N` .. `.1`, oldest first): the daemon
    /// watches the whole host, and tests beside this one fill its log.
    pub(crate) fn stop(self) -> (i32, Vec<Value>) {
        let dir = self.log_dir.clone();
        let status = self.stop_status();
        let rotated = (1..).take_while(|n| dir.join(format!("events.jsonl.{n}")).exists()).count();
        let mut evs = Vec::new();
        for n in (1..=rotated).rev() {
            evs.extend(read_events(&dir.join(format!("events.jsonl.{n}"))));
        }
        evs.extend(read_events(&dir.join("events.jsonl")));
        (status, evs)
    }
}

/// The SDK client (this repo's driver) on the filesystem server, run
/// directly: no wrapper.
pub(crate) fn client(dir: &Path, steps: Value) -> Command {
    client_running(dir, fs_server(&mcp_env(), dir), steps)
}

/// The SDK client running `server` (an argv) as its stdio server.
pub(crate) fn client_running(dir: &Path, server: Vec<String>, steps: Value) -> Command {
    let env = mcp_env();
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/mcp/client.py");
    let scenario = json!({"command": server, "steps": steps, "timeout": 300, "stderr": dir.join("server.stderr")});
    let mut c = Command::new(&env["MCP_PY"]);
    c.arg(driver).arg("--json").arg(scenario.to_string()).stdin(Stdio::null());
    c
}

pub(crate) fn run_client(c: &mut Command) -> Value {
    let out = c.output().expect("run the MCP client");
    assert!(out.status.success(), "client failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("client prints JSON");
    assert_eq!(v["ok"], true, "the MCP session worked: {v}");
    v
}

fn describe(evs: &[Value]) -> String {
    evs.iter()
        .filter(|e| e["kind"] != "open" || !e["path"].as_str().unwrap_or("").contains("node_modules"))
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The filesystem server that read `target` in `evs`: its tool call and
/// its open of `target` are logged and joined; returns the server's pid.
/// The daemon watches the whole host, so other MCP servers may be in the
/// log too: everything is keyed on this test's own file. `handshake_seen`:
/// the server is named by its handshake (else by its command line).
fn assert_read_attributed(evs: &[Value], target: &Path, how: &str, handshake_seen: bool) -> u64 {
    let calls: Vec<_> = evs
        .iter()
        .filter(|e| e["kind"] == "rpc" && e["direction"] == "client_to_server" && e["tool"] == "read_text_file")
        .filter(|e| e["arguments"]["path"] == target.display().to_string())
        .collect();
    assert_eq!(calls.len(), 1, "one read_text_file call logged\n{}", describe(evs));
    let call = calls[0];
    let server_pid = call["pid"].as_u64().unwrap();
    let found: Vec<_> = evs.iter().filter(|e| e["kind"] == "server_found" && e["pid"] == server_pid).collect();
    assert_eq!(found.len(), 1, "the server was found once\n{}", describe(evs));
    assert_eq!(found[0]["how"], how, "{}", found[0]);
    assert!(found[0]["exe"].as_str().unwrap_or("").ends_with("node"), "{}", found[0]);
    let opens: Vec<_> = evs.iter().filter(|e| e["kind"] == "open" && e["path"] == target.display().to_string()).collect();
    assert!(!opens.is_empty(), "the server's open of the file is logged\n{}", describe(evs));
    for o in &opens {
        assert_eq!(o["pid"], server_pid, "{o}");
        assert_eq!(o["tool_call"]["id"], call["id"], "{o}");
        assert_eq!(o["tool_call"]["name"], "read_text_file", "{o}");
        let name = o["server"]["name"].as_str().unwrap_or("");
        if handshake_seen {
            assert_eq!(name, "secure-filesystem-server", "{o}");
        } else {
            assert!(name.contains("server-filesystem/dist/index.js"), "named by its command line: {o}");
        }
        assert_eq!(o["server"]["pid"], server_pid, "{o}");
    }
    let fin: Vec<_> = evs.iter().filter(|e| e["kind"] == "drops" && e["final"] == true).collect();
    assert_eq!(fin.len(), 1, "one final drops line");
    server_pid
}

#[test]
fn daemon_finds_an_unwrapped_server_by_its_stdio_and_logs_its_call_and_open() {
    let d = scratch("daemon-stdio");
    let target = d.join("notes.txt");
    std::fs::write(&target, "remember the milk\n").unwrap();
    let daemon = Daemon::start(&d, "");
    let report = run_client(&mut client(&d, json!([{"call": "read_text_file", "arguments": {"path": target}}])));
    assert_eq!(report["results"][0]["content_text"], "remember the milk\n");
    let log_dir = daemon.log_dir.clone();
    let (status, evs) = daemon.stop();
    assert_eq!(status, 0, "SIGTERM: clean exit");
    let server_pid = assert_read_attributed(&evs, &target, "stdio_pipes", true);
    // and `investigate` on the daemon's log directory shows the open under that call
    let out = Command::new(sensor_bin())
        .args(["investigate", "--format", "json", "--tool", "read_text_file", "--server"])
        .arg(server_pid.to_string())
        .arg(&log_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let calls: Vec<&Value> = report["sessions"].as_array().unwrap().iter().flat_map(|s| s["calls"].as_array().unwrap()).collect();
    assert_eq!(calls.len(), 1, "{report}");
    assert_eq!(calls[0]["arguments"]["path"], target.display().to_string(), "{report}");
    let opened: Vec<&Value> = calls[0]["activity"].as_array().unwrap().iter().filter(|a| a["kind"] == "open").collect();
    assert!(opened.iter().any(|a| a["event"]["path"] == target.display().to_string()), "{report}");
}

#[test]
fn daemon_finds_the_children_of_a_configured_client() {
    let d = scratch("daemon-client");
    let target = d.join("notes.txt");
    std::fs::write(&target, "x\n").unwrap();
    // the SDK client (comm `python`) is the known client; content-based
    // detection is off, so only the client rule can find the server
    let daemon = Daemon::start(&d, "[discovery]\nclients = [\"python\"]\nstdio_pipes = false\n");
    run_client(&mut client(&d, json!([{"call": "read_text_file", "arguments": {"path": target}}])));
    let (status, evs) = daemon.stop();
    assert_eq!(status, 0);
    assert_read_attributed(&evs, &target, "client_child", true);
}

#[test]
fn daemon_started_after_the_server_finds_it_and_logs_its_later_calls() {
    let d = scratch("daemon-running");
    let target = d.join("later.txt");
    std::fs::write(&target, "later\n").unwrap();
    let go = d.join("go");
    // the client starts the server and handshakes, then waits for `go`
    let mut c = client(&d, json!([{"wait_file": go}, {"call": "read_text_file", "arguments": {"path": target}}]));
    let mut running = c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let server_arg = d.display().to_string();
    wait_for("the server to run and handshake", || {
        std::fs::read_to_string(d.join("server.stderr")).unwrap_or_default().contains("running on stdio")
            && std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
                std::fs::read(p.path().join("cmdline"))
                    .map(|c| c.split(|b| *b == 0).any(|a| a == server_arg.as_bytes()))
                    .unwrap_or(false)
            })
    });
    let daemon = Daemon::start(&d, "");
    std::fs::write(&go, "").unwrap();
    let mut out = String::new();
    running.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(running.wait().unwrap().success());
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let (status, evs) = daemon.stop();
    assert_eq!(status, 0);
    // the handshake happened before the daemon started
    assert_read_attributed(&evs, &target, "stdio_pipes", false);
}

#[test]
fn daemon_log_survives_kill_9_and_a_restart_appends() {
    let d = scratch("daemon-crash");
    let target = d.join("a.txt");
    std::fs::write(&target, "a\n").unwrap();
    let daemon = Daemon::start(&d, "");
    let log = daemon.log_dir.join("events.jsonl");
    run_client(&mut client(&d, json!([{"call": "read_text_file", "arguments": {"path": target}}])));
    // flushed at least once a second: the call's open reaches the file
    wait_for("the open to be in the log", || {
        std::fs::read_to_string(&log).unwrap_or_default().contains(&format!("\"path\":\"{}\"", target.display()))
    });
    let mut daemon = daemon;
    daemon.signal(libc::SIGKILL);
    daemon.child.wait().unwrap();
    // a crash leaves at most one torn last line; when this one left none,
    // append what a write cut short leaves, so the restart's repair runs
    let mut before = String::from_utf8(std::fs::read(&log).unwrap()).expect("the log is UTF-8");
    let torn = before.matches('\n').count();
    if before.ends_with('\n') {
        let cut = "{\"ts\":\"2026-01-01T00:00:00Z\",\"kind\":\"op";
        std::fs::OpenOptions::new().append(true).open(&log).unwrap().write_all(cut.as_bytes()).unwrap();
        before.push_str(cut);
    }
    let crashed = events_with_torn_line(&before, Some(torn));
    let path = target.display().to_string();
    assert!(crashed.iter().any(|e| e["kind"] == "open" && e["path"] == path), "the open survived the crash");
    assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&daemon.log_dir).unwrap().permissions().mode() & 0o777, 0o700);

    let again = Daemon::start(&d, "");
    assert_eq!(again.stop_status(), 0);
    let after = String::from_utf8(std::fs::read(&log).unwrap()).expect("the log is UTF-8");
    assert!(after.starts_with(&before), "the restart appended, never truncated");
    assert_eq!(after.as_bytes()[before.len()], b'\n', "the restart completed the torn line before appending");
    // the torn line, now completed, is the only line that is not an event
    let evs = events_with_torn_line(&after, Some(torn));
    let fin = evs.iter().filter(|e| e["kind"] == "drops" && e["final"] == true).count();
    assert_eq!(fin, 1, "only the second run wrote its totals (the first was killed)");
    // the restart says from when to when nobody watched: from the killed
    // run's last whole line to its own start, and that the end was unclean
    let last_before = crashed.last().expect("the first run wrote lines");
    let starts: Vec<&Value> = evs.iter().filter(|e| e["kind"] == "sensor_start").collect();
    let gaps: Vec<&Value> = evs.iter().filter(|e| e["kind"] == "gap").collect();
    assert_eq!((starts.len(), gaps.len()), (2, 1), "one gap, written by the restart");
    let gap = gaps[0];
    assert_eq!(gap["from"], last_before["ts"], "{gap}");
    assert_eq!(gap["previous_end"], "unclean", "{gap}");
    assert_eq!(gap["to"], gap["ts"], "{gap}");
    let (from, to, start2) = (gap["from"].as_str().unwrap(), gap["to"].as_str().unwrap(), starts[1]["ts"].as_str().unwrap());
    assert!(from < start2 && start2 <= to, "from {from} < second start {start2} <= to {to}");
    assert!(gap["unwatched_ms"].as_f64().unwrap() > 0.0, "{gap}");
    // after a clean stop the gap starts at that run's final totals
    let fin_ts = evs.iter().find(|e| e["kind"] == "drops" && e["final"] == true).unwrap()["ts"].clone();
    let third = Daemon::start(&d, "");
    assert_eq!(third.stop_status(), 0);
    let all = events_with_torn_line(&String::from_utf8(std::fs::read(&log).unwrap()).unwrap(), Some(torn));
    let gaps: Vec<&Value> = all.iter().filter(|e| e["kind"] == "gap").collect();
    assert_eq!(gaps.len(), 2);
    assert_eq!((&gaps[1]["from"], &gaps[1]["previous_end"]), (&fin_ts, &json!("clean")), "{}", gaps[1]);
}

#[test]
fn sighup_keeps_the_running_config_when_the_new_one_is_invalid() {
    let d = scratch("daemon-hup");
    let target = d.join("notes.txt");
    std::fs::write(&target, "x\n").unwrap();
    // only the client rule can find servers: the SDK client (comm `python`)
    // is a client by this config alone, not by the built-in list
    let daemon = Daemon::start(&d, "[discovery]\nclients = [\"python\"]\nstdio_pipes = false\n");
    let config = d.join("config.toml");
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{good}max_held_event = 5\n")).unwrap();
    daemon.signal(libc::SIGHUP);
    wait_for("the reload to be refused", || daemon.stderr_text().contains("reload failed"));
    let err = daemon.stderr_text();
    assert!(err.contains("keeping the running configuration") && err.contains("max_held_event"), "{err}");
    let line = good.lines().count() + 1;
    assert!(err.contains(&format!("line {line}")), "the error names the line: {err}");
    // the old configuration is still in force: a python client's server is found
    run_client(&mut client(&d, json!([{"call": "read_text_file", "arguments": {"path": target}}])));
    std::fs::write(&config, format!("{good}extra_clients = [\"my-agent\"]\n")).unwrap();
    daemon.signal(libc::SIGHUP);
    wait_for("the reload to be applied", || daemon.stderr_text().contains("configuration reloaded"));
    let (status, evs) = daemon.stop();
    assert_eq!(status, 0, "still running and stops cleanly after both reloads");
    assert_read_attributed(&evs, &target, "client_child", true);
}

#[test]
fn daemon_enforces_on_found_servers_and_spares_unconfirmed_candidates() {
    use crate::enforce::{assert_no_leak, home_with_key, key_rule, rule_file, PROFILE_ALERT_ONLY};
    let d = scratch("daemon-enforce");
    let (home, key, secret) = home_with_key(&d);
    let rules = rule_file(&d, &key_rule(&home, "tree", PROFILE_ALERT_ONLY));
    let daemon = Daemon::start_with(&d, "", &["--enforce", "--rules", &rules]);
    // a process with pipes on stdin and stdout that is not MCP reads the
    // key: a candidate the agent has not confirmed, so it is not killed
    let env = mcp_env();
    let out = Command::new(&env["MCP_PY"])
        .args(["-c", "import sys; sys.stdout.write(open(sys.argv[1]).read())"])
        .arg(&key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "the candidate was spared: {:?}", out.status);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&secret));
    // the real filesystem server, found by the daemon, is killed at its open of the key
    let report = {
        let mut c = client(&home, json!([
            {"call": "read_text_file", "arguments": {"path": home.join("notes.txt")}},
            {"call": "read_text_file", "arguments": {"path": key}},
        ]));
        let out = c.output().expect("run the MCP client");
        serde_json::from_slice::<Value>(&out.stdout).expect("client prints JSON")
    };
    assert_eq!(report["results"][0]["content_text"], "benign\n", "{report}");
    assert_eq!(report["results"][1]["ok"], false, "the key read gets no result: {report}");
    assert_no_leak(&report.to_string(), &secret, "the client's report");
    let (status, evs) = daemon.stop();
    assert_eq!(status, 0);
    let killed: Vec<_> = evs
        .iter()
        .filter(|e| e["kind"] == "alert" && e["action"] == "killed" && e["event"]["path"] == key.display().to_string())
        .filter(|e| e["rule"] == "test-key-kill") // the default profile's ssh-key-read says so too
        .collect();
    assert_eq!(killed.len(), 1, "{}", describe(&evs));
    assert!(killed[0]["decided_by"].as_str().unwrap_or("").starts_with("kernel_"), "{}", killed[0]);
    assert!(killed[0]["exe"].as_str().unwrap_or("").ends_with("node"), "{}", killed[0]);
}

/// A wrapper that prints a banner on stdout before starting the server as
/// its child (no `exec`): the kernel rejects the wrapper at its first byte,
/// and the stdin pipe it registered is left until the agent's sweep (once a
/// second, loader/discovery.rs). The server, a new candidate on that same
/// pipe, must take the channel over (discover.bpf.h): owned by the
/// rejected wrapper, its reads of the client's requests went uncaptured.
#[test]
fn kernel_daemon_finds_a_server_behind_a_wrapper_rejected_for_its_stdout_banner() {
    behind_a_banner_wrapper("daemon-banner", false);
}

/// The same under a client whose own stdin and stdout are pipes (an IDE's
/// extension host, a CI runner, a sandbox's command runner): the client
/// is a candidate, the wrapper a nested one in its tree, and its rejection
/// folds it back, not unwatches it. The server it starts on the same pipes
/// must still become a candidate of its own (discover.bpf.h: the rejected
/// wrapper's unused stdin channel goes with its stdout's); a new user's
/// trial found it a member of the folded wrapper, never found, 4 in 5.
#[test]
fn kernel_daemon_finds_a_server_behind_a_banner_wrapper_under_a_client_with_piped_stdio() {
    behind_a_banner_wrapper("daemon-banner-piped", true);
}

fn behind_a_banner_wrapper(name: &str, piped_client: bool) {
    let d = scratch(name);
    let target = d.join("notes.txt");
    std::fs::write(&target, "behind a banner\n").unwrap();
    let wrapper = d.join("banner-server.sh");
    std::fs::write(&wrapper, "#!/bin/sh\necho \"wrapper: starting $1\"\n\"$@\"\n").unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_, key, _) = crate::enforce::home_with_key(&d);
    let daemon = Daemon::start_env(&d, "", &[], &[("MCP_SENSOR_DEBUG_DISCOVERY", "1")]);
    let mut command = vec![wrapper.display().to_string()];
    command.extend(fs_server(&mcp_env(), &d));
    let steps = json!([{"call": "read_text_file", "arguments": {"path": target}}, {"call": "read_text_file", "arguments": {"path": key}}]);
    let mut client = client_running(&d, command, steps);
    if piped_client {
        client.stdin(Stdio::piped());
    }
    let report = run_client(&mut client);
    assert_eq!(report["results"][0]["content_text"], "behind a banner\n", "{report}");
    let stderr = daemon.stderr_text();
    let (status, evs) = daemon.stop();
    assert_eq!(status, 0);
    // positive control: the wrapper was a candidate, rejected for its
    // banner (nested in the piped client's tree: folded back into it)
    let rejected = if piped_client { "tree, not a server of its own" } else { "its stdio began with 'w'" };
    assert!(stderr.contains(rejected), "the wrapper was rejected for its banner:\n{stderr}");
    assert_read_attributed(&evs, &target, "stdio_pipes", true);
    // the key read's alert names the whole chain: the server, the wrapper
    // it came out of, and past it the client (python), not the wrapper as
    // the client
    let key = key.display().to_string();
    let alert = evs.iter().find(|e| e["kind"] == "alert" && e["rule"] == "ssh-key-read" && e["event"]["path"] == key.as_str());
    let alert = alert.unwrap_or_else(|| panic!("an ssh-key-read alert for {key}:\n{}", describe(&evs)));
    let exes: Vec<&str> = alert["ancestry"].as_array().unwrap().iter().map(|h| h["exe"].as_str().unwrap_or("")).collect();
    let node = exes.iter().position(|e| e.ends_with("node")).unwrap_or_else(|| panic!("the server in {exes:?}"));
    assert!(exes[node + 1..].first().is_some_and(|e| e.ends_with("sh")), "the wrapper right past the server: {exes:?}");
    // the client is the first process discovery never watched; a client
    // whose own stdio is piped was a candidate itself, and the ancestry
    // goes one past it (its parent: this test)
    let client = if piped_client { exes.len().checked_sub(2) } else { exes.len().checked_sub(1) };
    assert!(client.is_some_and(|i| i > node + 1 && exes[i].contains("python")), "the client (python) after the wrapper: {exes:?}");
}
