//! Rules on real MCP software through `mcp-sensor exec`: the default pack
//! flags an SSH key read through the real filesystem server and a shell
//! from a real command-running server, names the call that did it, and
//! stays quiet on benign sessions of several real servers. User rule files
//! are loaded, and a broken edit keeps the previous rules running.

use crate::harness::*;
use crate::mcp::{assert_nothing_lost, fs_server, call_id, drive, mcp_env, server_argv};
use serde_json::{json, Value};

fn alerts<'a>(run: &'a Run, rule: &'a str) -> Vec<&'a Value> {
    run.of_kind("alert").filter(|a| a["rule"] == rule).collect()
}

const FAKE_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA-not-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n";

#[test]
fn ssh_key_read_through_the_filesystem_server_raises_one_alert_naming_the_call() {
    let d = scratch("rule-ssh");
    let home = d.join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let key = home.join(".ssh/id_ed25519");
    std::fs::write(&key, FAKE_KEY).unwrap();
    std::fs::write(home.join(".ssh/id_ed25519.pub"), "ssh-ed25519 AAAA test\n").unwrap();
    std::fs::write(home.join("notes.txt"), "benign\n").unwrap();
    let env = mcp_env();
    let server = fs_server(&env, &home);
    let s = drive(
        &d,
        server,
        json!([
            {"call": "read_text_file", "arguments": {"path": home.join("notes.txt")}},
            {"call": "read_text_file", "arguments": {"path": home.join(".ssh/id_ed25519.pub")}},
            {"call": "read_text_file", "arguments": {"path": key}},
        ]),
        &[],
    );
    assert!(s.client["results"][2]["content_text"].as_str().unwrap_or("").contains("PRIVATE KEY"), "{}", s.client);
    let run = &s.run;
    let ssh = alerts(run, "ssh-key-read");
    assert_eq!(ssh.len(), 1, "exactly one ssh-key-read alert\n{}", run.describe());
    let a = ssh[0];
    // the call that read the key, not the one that read notes.txt
    let key_call = run
        .of_kind("rpc")
        .find(|e| e["direction"] == "client_to_server" && e["arguments"]["path"] == key.display().to_string())
        .expect("the key read request was captured");
    assert_eq!(a["tool_call"]["id"], key_call["id"], "{a}");
    assert_eq!(a["tool_call"]["name"], "read_text_file", "{a}");
    assert_eq!(a["tool_call"]["arguments"]["path"], key.display().to_string(), "{a}");
    assert_eq!(a["event"]["kind"], "open", "{a}");
    assert_eq!(a["event"]["path"], key.display().to_string(), "{a}");
    assert_eq!(a["server"]["name"], "secure-filesystem-server", "{a}");
    // the enforce profile's rule, without --enforce: nothing is stopped
    assert_eq!(a["action"], "would_kill");
    assert_eq!(a["severity"], "high");
    // ancestry: the server process, then mcp-sensor exec, then the client
    let hops = a["ancestry"].as_array().unwrap();
    assert_eq!(hops[0]["pid"], a["pid"], "{a}");
    assert!(hops.iter().any(|h| h["exe"].as_str().unwrap_or("").ends_with("/node")), "{a}");
    assert!(hops.last().unwrap()["exe"].as_str().unwrap_or("").contains("python"), "ends at the client: {a}");
    // the alert line follows its event's line
    let pos = |v: &Value| run.events.iter().position(|e| std::ptr::eq(e, v)).unwrap();
    let open = run.events.iter().position(|e| e["kind"] == "open" && e["path"] == key.display().to_string()).unwrap();
    assert_eq!(pos(a), open + 1);
    // the key went back to the client: the response is flagged too
    let leak = alerts(run, "secret-in-response");
    assert_eq!(leak.len(), 1, "{}", run.describe());
    assert_eq!(leak[0]["event"]["id"], key_call["id"]);
    assert_eq!(leak[0]["tool_call"]["id"], key_call["id"], "{}", leak[0]);
    assert_eq!(leak[0]["tool_call"]["name"], "read_text_file", "{}", leak[0]);
    // nothing else: the .pub and notes reads (both seen) are benign
    for benign in [home.join(".ssh/id_ed25519.pub"), home.join("notes.txt")] {
        assert!(!run.find("open", "path", benign.to_str().unwrap()).is_empty(), "{}\n{}", benign.display(), run.describe());
    }
    let others: Vec<_> = run.of_kind("alert").filter(|a| a["rule"] != "ssh-key-read" && a["rule"] != "secret-in-response").collect();
    assert!(others.is_empty(), "{others:?}");
    assert_nothing_lost(run);
}

#[test]
fn a_shell_from_a_command_server_raises_unexpected_shell() {
    let d = scratch("rule-shell");
    let env = mcp_env();
    let s = drive(
        &d,
        server_argv(&env, "MCP_SHELL_SERVER"),
        json!([{"call": "run_command", "arguments": {"command": "echo hello-from-shell"}}]),
        &[],
    );
    assert!(s.client["results"][0]["content_text"].as_str().unwrap_or("").contains("hello-from-shell"), "{}", s.client);
    let run = &s.run;
    let id = call_id(run, "run_command");
    let shells = alerts(run, "unexpected-shell");
    assert!(!shells.is_empty(), "{}", run.describe());
    for a in &shells {
        assert_eq!(a["tool_call"]["id"], id, "{a}");
        assert_eq!(a["tool_call"]["name"], "run_command", "{a}");
        assert_eq!(a["event"]["kind"], "exec", "{a}");
    }
    assert!(shells.iter().any(|a| a["event"]["argv"].to_string().contains("echo hello-from-shell")), "{shells:?}");
}

#[test]
fn benign_sessions_of_several_real_servers_raise_nothing() {
    let env = mcp_env();
    let d = scratch("rule-benign");
    std::fs::write(d.join("readme.md"), "# hello\n").unwrap();
    let repo = d.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    assert!(std::process::Command::new("git").args(["init", "-q"]).current_dir(&repo).status().unwrap().success());
    let fs = fs_server(&env, &d);
    // launched the way npx does it: through `sh -c` (quiet: before the first request)
    let launcher = vec!["/bin/sh".to_string(), "-c".into(), format!("{} \"$0\"; exit $?", env["MCP_FS_SERVER"]), d.display().to_string()];
    let sessions = [
        (launcher, json!([
            {"call": "list_allowed_directories", "arguments": {}},
        ])),
        (fs, json!([
            {"list_tools": true},
            {"call": "list_directory", "arguments": {"path": d}},
            {"call": "read_text_file", "arguments": {"path": d.join("readme.md")}},
            {"call": "write_file", "arguments": {"path": d.join("out.txt"), "content": "x"}},
            {"call": "search_files", "arguments": {"path": d, "pattern": "readme"}},
        ])),
        (server_argv(&env, "MCP_EVERYTHING_SERVER"), json!([
            {"list_tools": true},
            {"call": "echo", "arguments": {"message": "hi"}},
            {"call": "get-sum", "arguments": {"a": 1, "b": 2}},
        ])),
        (server_argv(&env, "MCP_TIME_SERVER"), json!([
            {"call": "get_current_time", "arguments": {"timezone": "UTC"}},
        ])),
        (server_argv(&env, "MCP_GIT_SERVER"), json!([
            {"call": "git_status", "arguments": {"repo_path": repo}},
            {"call": "git_log", "arguments": {"repo_path": repo}},
        ])),
    ];
    // A clone checked out under /tmp runs the test servers from there, and
    // exec-from-temp rightly fires on a script in a world-writable dir: say
    // that this one install location is known (the defaults stay as they are).
    let deps = env["MCP_TEST_DEPS"].clone();
    let mut yaml = CANARY.to_string();
    if ["/tmp/", "/var/tmp/", "/dev/shm/"].iter().any(|t| deps.starts_with(t)) {
        yaml += &format!("- rule: exec-from-temp\n  append: true\n  except:\n    - script: \"{deps}/**\"\n    - exe: \"{deps}/**\"\n");
    }
    let f = d.join("test-rules.yaml");
    std::fs::write(&f, yaml).unwrap();
    let flags = ["--rules", f.to_str().unwrap()];
    for (i, (server, steps)) in sessions.into_iter().enumerate() {
        let dir = d.join(format!("s{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let name = server.join(" ");
        let s = drive(&dir, server, steps, &flags);
        let run = &s.run;
        assert!(run.of_kind("rpc").count() > 2, "{name}: the session was captured\n{}", run.describe());
        if i == 0 {
            let shell = run.of_kind("exec").any(|e| e["exe"].as_str().is_some_and(|x| x.ends_with("sh")));
            assert!(shell, "the launcher shell ran under watch\n{}", run.describe());
        }
        // the rules ran on this session: the canary fired on each request
        let requests = run.of_kind("rpc").filter(|e| e["direction"] == "client_to_server" && e["message"] == "request").count();
        assert_eq!(alerts(run, "test-canary").len(), requests, "{name}\n{}", run.describe());
        run.final_drops();
        let alerts: Vec<_> = run.of_kind("alert").filter(|a| a["rule"] != "test-canary").collect();
        assert!(alerts.is_empty(), "{name}: benign session raised {alerts:#?}");
    }
}

/// A rule that fires on every request a server reads: the positive control
/// of "the rules raised nothing".
const CANARY: &str = "- rule: test-canary\n  description: a request (the rules are running)\n  severity: info\n  kind: rpc\n  match:\n    direction: client_to_server\n    message: request\n";

#[test]
fn user_rules_load_and_a_broken_edit_keeps_the_previous_rules() {
    let d = scratch("rule-user");
    let rules = d.join("mine.yaml");
    std::fs::write(
        &rules,
        "- rule: notes-read\n  description: somebody read the notes\n  severity: low\n  kind: open\n  match:\n    path: \"**/notes-*.txt\"\n",
    )
    .unwrap();
    for n in 1..=3 {
        std::fs::write(d.join(format!("notes-{n}.txt")), "x\n").unwrap();
    }
    let env = mcp_env();
    let server = fs_server(&env, &d);
    // after the first read the rule file is broken; once the sensor says it
    // refused the edit, the second read runs: the old rule still fires
    let rules_arg = rules.display().to_string();
    let (first_done, go, stderr) = (d.join("first-done"), d.join("go"), d.join("server.stderr"));
    let editor = {
        let (rules, first_done, go) = (rules.clone(), first_done.clone(), go.clone());
        std::thread::spawn(move || {
            wait_for("the first read", || first_done.exists());
            std::fs::write(&rules, "- rule: notes-read\n  sevrity: high\n").unwrap();
            wait_for_text(&stderr, "previous rules keep running");
            std::fs::write(&go, "").unwrap();
        })
    };
    let s = drive(
        &d,
        server,
        json!([
            {"call": "read_text_file", "arguments": {"path": d.join("notes-1.txt")}},
            {"touch": first_done},
            {"wait_file": go},
            {"call": "read_text_file", "arguments": {"path": d.join("notes-2.txt")}},
        ]),
        &["--rules", &rules_arg],
    );
    editor.join().unwrap();
    let run = &s.run;
    let hits: Vec<_> = alerts(run, "notes-read").iter().map(|a| a["event"]["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(hits, [d.join("notes-1.txt").display().to_string(), d.join("notes-2.txt").display().to_string()], "{}", run.describe());
    let stderr = std::fs::read_to_string(d.join("server.stderr")).unwrap_or_default() + &run.stderr();
    assert!(stderr.contains("previous rules keep running") && stderr.contains("unknown field `sevrity`"), "{stderr}");
}

#[test]
fn rules_check_reports_file_line_column_and_exits_1() {
    let d = scratch("rules-check");
    let good = d.join("good.yaml");
    std::fs::write(&good, "- disable: [dotenv-read]\n").unwrap();
    let bad = d.join("bad.yaml");
    std::fs::write(&bad, "- rule: x\n  description: d\n  severity: hihg\n  kind: open\n").unwrap();
    let glob = d.join("glob.yaml");
    std::fs::write(&glob, "- rule: y\n  description: d\n  severity: high\n  kind: open\n  match:\n    path: \"[\"\n").unwrap();
    let ok = std::process::Command::new(sensor_bin()).args(["rules", "check"]).arg(&good).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("ok: "), "{}", String::from_utf8_lossy(&ok.stdout));
    let out = std::process::Command::new(sensor_bin()).args(["rules", "check"]).arg(&good).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let b = bad.display().to_string();
    assert!(err.contains(&format!("{b}:3:13:")), "severity position: {err}");
    let out = std::process::Command::new(sensor_bin()).args(["rules", "check"]).arg(&glob).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:6:11:", glob.display())), "glob position: {err}");
}

#[test]
fn io_uring_setup_is_reported_and_flagged() {
    let d = scratch("uring");
    let env = mcp_env();
    // io_uring_setup(2) is syscall 425 on x86_64 and aarch64
    let script = "import ctypes,os\nlibc=ctypes.CDLL(None,use_errno=True)\np=ctypes.create_string_buffer(120)\nfd=libc.syscall(425,8,p)\nassert fd>=0, os.strerror(ctypes.get_errno())\nprint(fd)\n";
    let run = exec(&d, &[&env["MCP_PY"], "-c", script]);
    assert_eq!(run.status(), 0, "{}", run.describe());
    let fd: i64 = run.stdout().trim().parse().unwrap();
    let ev: Vec<_> = run.of_kind("io_uring_setup").collect();
    assert_eq!(ev.len(), 1, "{}", run.describe());
    assert_eq!(ev[0]["fd"], fd);
    assert_eq!(ev[0]["sq_entries"], 8);
    let a = alerts(&run, "io-uring-setup");
    assert_eq!(a.len(), 1, "{}", run.describe());
    assert_eq!(a[0]["event"]["kind"], "io_uring_setup");
}
