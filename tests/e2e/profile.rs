//! The default pack's enforce profile (`--enforce`, no rule file of the
//! test's own) on real MCP software: a private key under a HOME that is in
//! no passwd entry is stopped in the kernel by the shape of its path, 20
//! rounds, never late; the commands server's `sh -c` after the first
//! request never runs its command while a launcher's `sh -c` before it
//! does; benign sessions of five real servers complete untouched.

use crate::enforce::{assert_no_leak, benign_sessions, home_with_key};
use crate::harness::*;
use crate::mcp::{drive, drive_env, fs_server, mcp_env, server_argv};
use serde_json::{json, Value};

/// The kernel's enforcement counts on the run's final `drops` line.
fn enforced(run: &Run, what: &str) -> u64 {
    run.final_drops()["enforced"][what].as_u64().unwrap_or_else(|| panic!("enforced.{what}\n{}", run.describe()))
}

fn acted<'a>(run: &'a Run, rule: &str) -> Vec<&'a Value> {
    run.of_kind("alert").filter(|a| a["rule"] == rule && a["decided_by"].is_string()).collect()
}

/// Stopped in the kernel, at the syscall, not late.
fn assert_prevented(a: &Value) {
    let by = a["decided_by"].as_str().unwrap_or("");
    assert!(by == "kernel_syscall_exit" || by == "kernel_lsm", "decided in the kernel: {a}");
    assert!(a["late"].is_null(), "never late: {a}");
    assert_eq!(a["delay_ns"], 0, "{a}");
    let action = a["action"].as_str().unwrap_or("");
    assert!(action == "killed" || action == "denied", "{a}");
}

#[test]
fn default_profile_stops_a_key_under_a_home_outside_passwd_in_every_round() {
    let d = scratch("profile-key");
    let (home, key, secret) = home_with_key(&d);
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    assert!(!passwd.contains(&home.display().to_string()), "the home must be in no passwd entry");
    let env = mcp_env();
    let home_s = home.display().to_string();
    for round in 0..20 {
        let s = drive_env(
            &d,
            fs_server(&env, &home),
            json!([
                {"call": "read_text_file", "arguments": {"path": home.join("notes.txt")}},
                {"call": "read_text_file", "arguments": {"path": key}},
            ]),
            &["--enforce"],
            &[("HOME", &home_s)],
        );
        let run = &s.run;
        let ctx = || format!("round {round}\nclient: {}\n{}", s.client, run.describe());
        // positive control: the sensor watched this session and it worked
        assert_eq!(s.client["results"][0]["content_text"], "benign\n", "{}", ctx());
        assert!(run.of_kind("rpc").count() >= 4, "{}", ctx());
        // the start-up line (the sensor's stderr goes where the SDK puts the server's)
        let stderr = std::fs::read_to_string(d.join("server.stderr")).unwrap_or_default();
        assert!(stderr.contains("ssh-key-read (kill, kernel)"), "the start-up line: {stderr}\n{}", ctx());
        assert_eq!(s.client["results"][1]["ok"], false, "the key read gets no result: {}", ctx());
        assert_no_leak(&s.client.to_string(), &secret, "the client's report");
        for e in run.of_kind("rpc").filter(|e| e["direction"] == "server_to_client") {
            assert_no_leak(&e.to_string(), &secret, "a server response");
        }
        let a = acted(run, "ssh-key-read");
        assert_eq!(a.len(), 1, "one ssh-key-read alert that acted: {}", ctx());
        assert_prevented(a[0]);
        assert_eq!(a[0]["event"]["path"], key.display().to_string(), "{}", a[0]);
        assert_eq!(a[0]["tool_call"]["name"], "read_text_file", "{}", a[0]);
        let stopped = enforced(run, "kill_open") + enforced(run, "deny_open");
        assert_eq!(stopped, 1, "the kernel's own count: {}", ctx());
        // the start-up event says what will be stopped
        let start = run.of_kind("sensor_start").next().expect("sensor_start");
        assert!(start["enforced"].as_array().is_some_and(|r| r.iter().any(|r| r["rule"] == "ssh-key-read")), "{start}");
    }
}

#[test]
fn default_profile_commands_server_shell_never_runs_but_a_launcher_shell_does() {
    let d = scratch("profile-shell");
    let marker = d.join("shell-ran");
    let launcher_mark = d.join("launcher-ran");
    let env = mcp_env();
    // the server is started the way npx does it: through `sh -c`, before
    // the client's first request (the launcher leaves a mark: it ran)
    let mut server = vec![
        "/bin/sh".to_string(),
        "-c".into(),
        format!("touch {}; exec \"$@\"", launcher_mark.display()),
        "sh".into(),
    ];
    server.extend(server_argv(&env, "MCP_SHELL_SERVER"));
    let cmd = format!("touch {}", marker.display());
    let s = drive(
        &d,
        server,
        json!([{"list_tools": true}, {"call": "run_command", "arguments": {"command": cmd}}]),
        &["--enforce"],
    );
    let run = &s.run;
    // positive controls: the launcher's shell ran, the session worked
    assert!(launcher_mark.exists(), "the launcher's sh -c ran before the first request\n{}", run.describe());
    assert_eq!(s.client["ok"], true, "{}\n{}", s.client, run.describe());
    assert!(run.of_kind("rpc").any(|e| e["tool"] == "run_command"), "{}", run.describe());
    // the command's shell was stopped before its first instruction
    assert!(!marker.exists(), "the shell ran its command\n{}", run.describe());
    let a = acted(run, "unexpected-shell");
    assert_eq!(a.len(), 1, "{}", run.describe());
    assert_prevented(a[0]);
    assert_eq!(a[0]["event"]["kind"], "exec", "{}", a[0]);
    assert_eq!(a[0]["tool_call"]["name"], "run_command", "{}", a[0]);
    assert_eq!(enforced(run, "kill_exec") + enforced(run, "deny_exec"), 1, "{}", run.describe());
    let shell = a[0]["pid"].as_u64().unwrap();
    let children: Vec<_> = run.of_kind("exec").filter(|e| e["ppid"].as_u64() == Some(shell)).collect();
    assert!(children.is_empty(), "the shell started something: {children:?}");
}

#[test]
fn benign_sessions_of_five_real_servers_complete_under_the_default_profile() {
    let d = scratch("profile-benign");
    let (home, _, _) = home_with_key(&d);
    let sessions = benign_sessions(&d, &home);
    for (name, server, steps) in sessions {
        let s = drive(&d, server, steps, &["--enforce"]);
        let run = &s.run;
        assert_eq!(s.client["ok"], true, "{name}: {}\n{}", s.client, run.describe());
        // the sensor watched the session with the profile on, to its end
        assert!(run.of_kind("rpc").count() > 2, "{name}: the session was captured\n{}", run.describe());
        let stderr = std::fs::read_to_string(d.join("server.stderr")).unwrap_or_default();
        assert!(stderr.contains("unexpected-shell (kill,"), "{name}: the profile was on\n{stderr}");
        let fin = run.final_drops();
        for what in ["kill_open", "kill_exec", "kill_connect", "deny_connect", "deny_open", "deny_exec"] {
            assert_eq!(fin["enforced"][what], 0, "{name}: the kernel enforced nothing: {fin}");
        }
        let acted: Vec<_> = run.of_kind("alert").filter(|a| a["decided_by"].is_string()).collect();
        assert!(acted.is_empty(), "{name}: enforcement acted on a benign session: {acted:#?}");
    }
}
