//! Enforcement (`--enforce`) on real MCP software: a protected key read by
//! the real filesystem server kills the server's tree in the kernel and
//! never reaches the client (in a loop); a shell started by a real
//! command-running server dies before running its command; a denied
//! connect fails with EPERM and the listener sees nothing; benign sessions
//! of several real servers run to completion; without `--enforce` nothing
//! is killed.

use crate::harness::*;
use crate::mcp::{drive, fs_server, mcp_env, server_argv};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// `rule`'s alerts that say killed (the default profile's rules may say
/// so too, for the same event).
fn killed_alerts<'a>(run: &'a Run, rule: &str) -> Vec<&'a Value> {
    run.of_kind("alert").filter(|a| a["action"] == "killed" && a["rule"] == rule).collect()
}

/// The kernel's enforcement counts on the run's final `drops` line
/// (absent without `--enforce`).
fn enforced(run: &Run, what: &str) -> Option<u64> {
    let fin = run.of_kind("drops").find(|d| d["final"] == true).expect("a final drops line");
    fin.get("enforced").map(|e| e[what].as_u64().unwrap_or_else(|| panic!("enforced.{what} in {fin}")))
}

/// A scratch home with a fake private key whose body is unique to this run.
pub(crate) fn home_with_key(d: &Path) -> (PathBuf, PathBuf, String) {
    let home = d.join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let secret: String = (0..48).map(|i| format!("{:x}", (std::process::id() as usize * 7919 + i * 104729) % 16)).collect();
    let key = home.join(".ssh/id_ed25519");
    std::fs::write(&key, format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{secret}\n-----END OPENSSH PRIVATE KEY-----\n")).unwrap();
    std::fs::write(home.join("notes.txt"), "benign\n").unwrap();
    (home, key, secret)
}

pub(crate) fn rule_file(d: &Path, yaml: &str) -> String {
    let p = d.join("enforce.yaml");
    std::fs::write(&p, yaml).unwrap();
    p.display().to_string()
}

/// The default enforce profile made alert-only. A daemon (`run`) watches
/// the whole host: under `--enforce` its default kill rules would also stop
/// the servers of tests running beside it (a key read, a shell). Daemon
/// tests kill with rules of their own (`key_rule`) and append this.
pub(crate) const PROFILE_ALERT_ONLY: &str = "- rule: ssh-key-read\n  action: alert\n- rule: credential-file-read\n  action: alert\n\
- rule: ssh-authorized-keys-write\n  action: alert\n- rule: agent-config-tampering\n  action: alert\n\
- rule: unexpected-shell\n  action: alert\n- rule: cloud-metadata-connect\n  action: alert\n";

pub(crate) fn key_rule(home: &Path, scope: &str, extra: &str) -> String {
    format!(
        "- rule: test-key-kill\n  description: the scratch private key\n  severity: critical\n  kind: open\n  action: kill\n  kill_scope: {scope}\n  match:\n    path: {}/.ssh/id_*\n{extra}",
        home.display()
    )
}

/// No 8-byte window of `secret` appears in `text`.
pub(crate) fn assert_no_leak(text: &str, secret: &str, what: &str) {
    for w in secret.as_bytes().windows(8) {
        let w = std::str::from_utf8(w).unwrap();
        assert!(!text.contains(w), "{what} contains key bytes `{w}`:\n{text}");
    }
}

#[test]
fn protected_key_read_kills_the_filesystem_server_tree_and_never_leaks_in_a_loop() {
    let d = scratch("enf-key");
    let (home, key, secret) = home_with_key(&d);
    let rules = rule_file(&d, &key_rule(&home, "tree", ""));
    let env = mcp_env();
    const ROUNDS: usize = 20;
    for round in 0..ROUNDS {
        let server = fs_server(&env, &home);
        let s = drive(
            &d,
            server,
            json!([
                {"call": "read_text_file", "arguments": {"path": home.join("notes.txt")}},
                {"call": "read_text_file", "arguments": {"path": key}},
            ]),
            &["--enforce", "--rules", &rules],
        );
        let run = &s.run;
        let ctx = || format!("round {round}\nclient: {}\n{}", s.client, run.describe());
        assert_eq!(s.client["results"][0]["content_text"], "benign\n", "{}", ctx());
        assert_eq!(s.client["results"][1]["ok"], false, "the key read gets no result: {}", ctx());
        // nothing of the key, anywhere the client could have seen it
        assert_no_leak(&s.client.to_string(), &secret, "the client's report");
        for e in run.of_kind("rpc").filter(|e| e["direction"] == "server_to_client") {
            assert_no_leak(&e.to_string(), &secret, "a server response");
        }
        let killed = killed_alerts(run, "test-key-kill");
        assert_eq!(killed.len(), 1, "exactly one alert says killed: {}", ctx());
        let a = killed[0];
        assert!(a["decided_by"].as_str().unwrap_or("").starts_with("kernel_"), "{a}");
        assert!(a["late"].is_null(), "{a}");
        assert_eq!(a["event"]["path"], key.display().to_string(), "{a}");
        assert_eq!(a["tool_call"]["name"], "read_text_file", "{a}");
        let server_pid = a["server"]["pid"].as_u64().unwrap();
        assert!(a["killed"].as_array().unwrap().iter().any(|k| k["pid"] == a["pid"]), "{a}");
        // the server's tree is gone: its root died of SIGKILL
        let exit = run
            .of_kind("exit")
            .find(|e| e["pid"].as_u64() == Some(server_pid))
            .unwrap_or_else(|| panic!("server exit seen: {}", ctx()));
        assert_eq!(exit["signal"], 9, "{exit}");
        // the kernel's own count agrees with the records
        assert_eq!(enforced(run, "kill_open"), Some(1), "{}", ctx());
        assert_eq!(enforced(run, "kill_exec"), Some(0), "{}", ctx());
    }
}

#[test]
fn shell_from_a_command_server_never_runs_its_command() {
    let d = scratch("enf-shell");
    let marker = d.join("shell-ran");
    let rules = rule_file(
        &d,
        "- rule: no-shells\n  description: no shell in MCP servers\n  severity: critical\n  kind: exec\n  action: kill\n  match:\n    exe_name: [sh, dash, bash]\n",
    );
    let env = mcp_env();
    let cmd = format!("touch {m}; /bin/echo child > {m}.2", m = marker.display());
    let s = drive(
        &d,
        server_argv(&env, "MCP_SHELL_SERVER"),
        json!([{"call": "run_command", "arguments": {"command": cmd}}]),
        &["--enforce", "--rules", &rules],
    );
    let run = &s.run;
    assert!(!marker.exists(), "the shell ran its command\n{}", run.describe());
    assert!(!d.join("shell-ran.2").exists());
    let killed = killed_alerts(run, "no-shells");
    assert_eq!(killed.len(), 1, "{}", run.describe());
    let a = killed[0];
    assert!(a["decided_by"].as_str().unwrap_or("").starts_with("kernel_"), "{a}");
    assert_eq!(a["event"]["kind"], "exec", "{a}");
    assert_eq!(a["tool_call"]["name"], "run_command", "{a}");
    assert_eq!(enforced(run, "kill_exec"), Some(1), "{}", run.describe());
    let shell = a["pid"].as_u64().unwrap();
    // the shell never started anything
    let children: Vec<_> = run.of_kind("exec").filter(|e| e["ppid"].as_u64() == Some(shell)).collect();
    assert!(children.is_empty(), "the shell's children ran: {children:?}");
    let forks: Vec<_> = run.of_kind("fork").filter(|e| e["pid"].as_u64() == Some(shell)).collect();
    assert!(forks.is_empty(), "the shell forked: {forks:?}");
    // scope process: the server itself answered (with the shell's failure)
    assert_eq!(s.client["results"][0]["ok"], true, "{}", s.client);
}

#[test]
fn denied_connect_fails_with_eperm_and_the_listener_never_sees_it() {
    require_root();
    let d = scratch("enf-connect");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let rules = rule_file(
        &d,
        &format!("- rule: no-port\n  description: d\n  severity: high\n  kind: connect\n  action: deny\n  match:\n    addr: 127.0.0.1\n    port: {port}\n"),
    );
    let script = format!(
        "import socket\ns=socket.socket()\ntry:\n  s.connect(('127.0.0.1',{port}))\n  print('connected')\nexcept OSError as e:\n  print('errno', e.errno)\n"
    );
    let run = exec_with(&d, &["--enforce", "--rules", &rules], &["python3", "-c", &script], std::process::Stdio::null());
    assert_eq!(run.status(), 0, "deny does not kill\n{}", run.describe());
    assert_eq!(run.stdout().trim(), format!("errno {}", libc::EPERM), "{}", run.describe());
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the listener saw a connection: {other:?}"),
    }
    let denied: Vec<_> = run.of_kind("alert").filter(|a| a["action"] == "denied").collect();
    assert_eq!(denied.len(), 1, "{}", run.describe());
    assert_eq!(denied[0]["decided_by"], "kernel_cgroup");
    assert!(denied[0]["late"].is_null(), "{}", denied[0]);
    assert_eq!(denied[0]["event"]["error"], "EPERM", "{}", denied[0]);
    assert!(denied[0]["killed"].is_null(), "{}", denied[0]);
    assert_eq!(enforced(&run, "deny_connect"), Some(1), "{}", run.describe());
    assert_eq!(enforced(&run, "kill_connect"), Some(0), "{}", run.describe());
}

#[test]
fn agent_decided_kill_uses_the_tool_call_and_reports_its_delay() {
    let d = scratch("enf-agent");
    let (home, key, _) = home_with_key(&d);
    // `tool:` needs the session: the kernel cannot decide this one (and the
    // default profile's ssh-key-read, which it could, is made alert-only)
    let rules = rule_file(&d, &key_rule(&home, "tree", "    tool: read_text_file\n- rule: ssh-key-read\n  action: alert\n"));
    let env = mcp_env();
    let server = fs_server(&env, &home);
    // the next request goes out once the sensor has said it killed
    let go = d.join("go");
    let waiter = {
        let (events, go) = (d.join("events.jsonl"), go.clone());
        std::thread::spawn(move || {
            wait_for_event(&events, "the agent's kill", |e| e["kind"] == "alert" && e["action"] == "killed");
            std::fs::write(&go, "").unwrap();
        })
    };
    let s = drive(
        &d,
        server,
        json!([{"call": "read_text_file", "arguments": {"path": key}}, {"wait_file": go}, {"call": "list_allowed_directories"}]),
        &["--enforce", "--rules", &rules],
    );
    waiter.join().expect("the kill was reported");
    let run = &s.run;
    let killed = killed_alerts(run, "test-key-kill");
    assert_eq!(killed.len(), 1, "{}", run.describe());
    let a = killed[0];
    assert_eq!(a["decided_by"], "agent", "{a}");
    assert!(a["delay_ns"].as_u64().is_some_and(|n| n > 0), "{a}");
    assert_eq!(a["late"], true, "an agent's kill comes after the syscall returned: {a}");
    let pid = a["server"]["pid"].as_u64().unwrap();
    let exit = run.of_kind("exit").find(|e| e["pid"].as_u64() == Some(pid)).expect("server exit");
    assert_eq!(exit["signal"], 9, "{exit}");
    assert_eq!(s.client["results"][2]["ok"], false, "the server is gone: {}", s.client);
    assert_eq!(enforced(run, "kill_open"), Some(0), "the agent killed, not the kernel");
}

#[test]
fn without_enforce_kill_rules_only_say_would_kill() {
    let d = scratch("enf-off");
    let (home, key, secret) = home_with_key(&d);
    let rules = rule_file(&d, &key_rule(&home, "tree", ""));
    let env = mcp_env();
    let server = fs_server(&env, &home);
    let s = drive(&d, server, json!([{"call": "read_text_file", "arguments": {"path": key}}]), &["--rules", &rules]);
    assert!(s.client["results"][0]["content_text"].as_str().unwrap_or("").contains(&secret), "{}", s.client);
    let a: Vec<_> = s.run.of_kind("alert").filter(|a| a["rule"] == "test-key-kill").collect();
    assert_eq!(a.len(), 1, "{}", s.run.describe());
    assert_eq!(a[0]["action"], "would_kill");
    assert!(a[0]["decided_by"].is_null() && a[0]["killed"].is_null(), "{}", a[0]);
    assert_eq!(enforced(&s.run, "kill_open"), None, "no enforcement counts without --enforce");
}

/// Benign sessions of five real servers (name, argv, client steps), with
/// `home` from [`home_with_key`] and a git repository made under `d`.
pub(crate) fn benign_sessions(d: &Path, home: &Path) -> Vec<(&'static str, Vec<String>, Value)> {
    let repo = d.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    assert!(std::process::Command::new("git").args(["init", "-q"]).current_dir(&repo).status().unwrap().success());
    let env = mcp_env();
    let notes = home.join("notes.txt");
    vec![
        ("filesystem", fs_server(&env, home), json!([{"call": "read_text_file", "arguments": {"path": notes}}, {"call": "list_directory", "arguments": {"path": home}}])),
        ("everything", server_argv(&env, "MCP_EVERYTHING_SERVER"), json!([{"list_tools": true}, {"call": "echo", "arguments": {"message": "hi"}}])),
        ("time", server_argv(&env, "MCP_TIME_SERVER"), json!([{"call": "get_current_time", "arguments": {"timezone": "UTC"}}])),
        ("git", server_argv(&env, "MCP_GIT_SERVER"), json!([{"call": "git_status", "arguments": {"repo_path": repo}}, {"call": "git_log", "arguments": {"repo_path": repo}}])),
        ("sdk2", server_argv(&env, "MCP_SDK2_TEST_SERVER"), json!([{"call": "echo", "arguments": {"message": "hi"}}, {"call": "read_file", "arguments": {"path": notes}}])),
    ]
}

#[test]
fn benign_sessions_of_several_real_servers_complete_under_enforce() {
    let d = scratch("enf-benign");
    let (home, _, _) = home_with_key(&d);
    let rules = rule_file(
        &d,
        &key_rule(&home, "tree", "- rule: no-shells\n  description: s\n  severity: critical\n  kind: exec\n  action: kill\n  after_first_request: true\n  match:\n    exe_name: [sh, dash, bash]\n"),
    );
    let sessions = benign_sessions(&d, &home);
    for (name, server, steps) in sessions {
        let s = drive(&d, server, steps, &["--enforce", "--rules", &rules]);
        let run = &s.run;
        assert_eq!(s.client["ok"], true, "{name}: {}\n{}", s.client, run.describe());
        // the sensor watched the session with enforcement on, to its end
        assert!(run.of_kind("rpc").count() > 2, "{name}: the session was captured\n{}", run.describe());
        let fin = run.final_drops();
        for what in ["kill_open", "kill_exec", "kill_connect", "deny_connect", "kill_server_root"] {
            assert_eq!(fin["enforced"][what], 0, "{name}: the kernel enforced nothing: {fin}");
        }
        let acted: Vec<_> = run.of_kind("alert").filter(|a| a["decided_by"].is_string()).collect();
        assert!(acted.is_empty(), "{name}: enforcement acted on a benign session: {acted:#?}");
    }
}
