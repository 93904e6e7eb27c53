//! Real MCP software through `mcp-sensor exec`: the official Python SDK
//! client (mcp 2.x) drives published servers (npm filesystem server, PyPI
//! git server on mcp 2.x, which moves its channel off fds 0/1); the tests
//! assert that host activity is attributed to exactly the call that caused
//! it and that big messages are captured whole. Needs tests/mcp/setup.sh
//! (run by `cargo xtask test`).

use crate::harness::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The variables tests/mcp/setup.sh wrote.
pub(crate) fn mcp_env() -> HashMap<String, String> {
    let deps = std::env::var("MCP_TEST_DEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/.deps"));
    let text = std::fs::read_to_string(deps.join("env.sh")).unwrap_or_else(|e| {
        panic!("{}/env.sh: {e}: run tests/mcp/setup.sh first (cargo xtask test does)", deps.display())
    });
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// The npm filesystem server's argv, allowed to serve `dir`.
pub(crate) fn fs_server(env: &HashMap<String, String>, dir: &Path) -> Vec<String> {
    let mut argv = server_argv(env, "MCP_FS_SERVER");
    argv.push(dir.display().to_string());
    argv
}

pub(crate) fn server_argv(env: &HashMap<String, String>, var: &str) -> Vec<String> {
    env[var].split_whitespace().map(str::to_string).collect()
}

pub(crate) struct Session {
    pub client: Value,
    pub run: Run,
}

/// Runs the SDK client on `server` wrapped in `mcp-sensor exec`, with the
/// given steps; returns the client's report and the sensor's events.
pub(crate) fn drive(dir: &Path, server: Vec<String>, steps: Value, sensor_flags: &[&str]) -> Session {
    drive_env(dir, server, steps, sensor_flags, &[])
}

/// [`drive`], with `server_env` merged over the environment the SDK gives
/// the server (e.g. a HOME of the test's own).
pub(crate) fn drive_env(dir: &Path, server: Vec<String>, steps: Value, sensor_flags: &[&str], server_env: &[(&str, &str)]) -> Session {
    drive_raw(dir, server, steps, sensor_flags, server_env, false)
}

/// [`drive_env`]; `raw`: the client's report carries each result whole
/// (`raw` of tests/mcp/client.py), e.g. the tools' descriptions.
pub(crate) fn drive_raw(dir: &Path, server: Vec<String>, steps: Value, sensor_flags: &[&str], server_env: &[(&str, &str)], raw: bool) -> Session {
    require_root();
    let env = mcp_env();
    let events = dir.join("events.jsonl");
    let _ = std::fs::remove_file(&events);
    let mut command = vec![sensor_bin().to_string(), "exec".into(), "--events".into(), events.display().to_string()];
    // rules and tool definitions of this test's own, not the host's
    command.extend(isolation(dir));
    command.extend(sensor_flags.iter().map(|s| s.to_string()));
    command.push("--".into());
    command.extend(server);
    // the deadline is a hang guard, not a timing check: a 1-vCPU VM on a
    // loaded host took over 60 s to bring up the filesystem server by npx,
    // and 150 s to start the SDK server (TCG, no KVM): 600 s in VMs
    let timeout = if std::env::var_os("VMTEST").is_some() { 600 } else { 180 };
    let mut scenario = json!({"command": command, "steps": steps, "timeout": timeout, "stderr": dir.join("server.stderr"), "raw": raw});
    // the SDK starts servers with a small default environment: pass on the
    // test's choice of kernel object (tests/e2e/kernel.rs)
    let mut server_vars = serde_json::Map::new();
    if let Ok(v) = std::env::var("MCP_SENSOR_BPF_OBJECT") {
        server_vars.insert("MCP_SENSOR_BPF_OBJECT".into(), json!(v));
    }
    for (k, v) in server_env {
        server_vars.insert(k.to_string(), json!(v));
    }
    if !server_vars.is_empty() {
        scenario["env"] = Value::Object(server_vars);
    }
    let out = Command::new(&env["MCP_PY"])
        .arg(&env["MCP_CLIENT"])
        .arg("--json")
        .arg(scenario.to_string())
        .output()
        .expect("run the MCP client");
    assert!(out.status.success(), "client failed: {}", String::from_utf8_lossy(&out.stderr));
    let client: Value = serde_json::from_slice(&out.stdout).expect("client prints JSON");
    let run = Run { events: read_events(&events), out };
    Session { client, run }
}

/// The id of the `tools/call` request for `tool` as the server read it.
pub(crate) fn call_id(run: &Run, tool: &str) -> Value {
    let reqs: Vec<_> = run
        .of_kind("rpc")
        .filter(|e| e["direction"] == "client_to_server" && e["method"] == "tools/call" && e["tool"] == tool)
        .collect();
    assert_eq!(reqs.len(), 1, "one {tool} request\n{}", run.describe());
    reqs[0]["id"].clone()
}

/// The request (client to server) whose `arguments.<key>` is `value`.
pub(crate) fn request_with(run: &Run, key: &str, value: &str) -> Value {
    let reqs: Vec<_> = run
        .of_kind("rpc")
        .filter(|e| e["direction"] == "client_to_server" && e["arguments"][key] == value)
        .collect();
    assert_eq!(reqs.len(), 1, "one request with {key} = {value}\n{}", run.describe());
    reqs[0].clone()
}

pub(crate) fn assert_nothing_lost(run: &Run) {
    let fin = run.final_drops();
    assert_eq!(fin["kernel"], json!({}), "{fin}");
    assert_eq!(fin["queue"], 0, "{fin}");
}

#[test]
fn filesystem_read_is_attributed_to_exactly_its_call() {
    let d = scratch("fs-read");
    let target = d.join("notes.txt");
    std::fs::write(&target, "remember the milk\n").unwrap();
    let other = d.join("other.txt");
    std::fs::write(&other, "second\n").unwrap();
    let env = mcp_env();
    let server = fs_server(&env, &d);
    let s = drive(
        &d,
        server,
        json!([
            {"call": "read_text_file", "arguments": {"path": target}},
            {"call": "read_text_file", "arguments": {"path": other}},
        ]),
        &[],
    );
    assert_eq!(s.client["results"][0]["content_text"], "remember the milk\n", "{}", s.client);
    assert_eq!(s.client["results"][1]["content_text"], "second\n", "{}", s.client);
    let run = &s.run;
    let read_id = request_with(run, "path", target.to_str().unwrap())["id"].clone();
    let opens = run.find("open", "path", target.to_str().unwrap());
    assert!(!opens.is_empty(), "the server opened the file\n{}", run.describe());
    for o in &opens {
        assert_eq!(o["tool_call"]["id"], read_id, "{o}");
        assert_eq!(o["tool_call"]["name"], "read_text_file", "{o}");
        assert_eq!(o["tool_call"]["arguments"]["path"], target.display().to_string(), "{o}");
        assert_eq!(o["server"]["name"], "secure-filesystem-server", "{o}");
        assert!(o["tool_call"]["in_flight"].is_null(), "a single call is named, not listed: {o}");
    }
    // the second call's open is its own, not the first call's
    let other_id = request_with(run, "path", other.to_str().unwrap())["id"].clone();
    assert_ne!(other_id, read_id);
    let other_opens = run.find("open", "path", other.to_str().unwrap());
    assert!(!other_opens.is_empty(), "the server opened the second file\n{}", run.describe());
    for e in &other_opens {
        assert_eq!(e["tool_call"]["id"], other_id, "{e}");
    }
    // the response went back on the channel, matched to its request
    let resp: Vec<_> = run
        .of_kind("rpc")
        .filter(|e| e["direction"] == "server_to_client" && e["id"] == read_id)
        .collect();
    assert_eq!(resp.len(), 1, "{}", run.describe());
    assert_eq!(resp[0]["tool"], "read_text_file");
    assert_eq!(resp[0]["is_error"], false);
    assert!(resp[0]["latency_ms"].as_f64().unwrap() > 0.0);
    assert_nothing_lost(run);
}

#[test]
fn one_mib_file_read_is_captured_as_one_whole_message() {
    let d = scratch("fs-big");
    let target = d.join("big.txt");
    let line = "0123456789abcdef".repeat(4) + "\n"; // 65 bytes
    let content: String = line.repeat((1 << 20) / line.len() + 1)[..1 << 20].to_string();
    std::fs::write(&target, &content).unwrap();
    let env = mcp_env();
    let server = fs_server(&env, &d);
    let s = drive(&d, server, json!([{"call": "read_text_file", "arguments": {"path": target}}]), &[]);
    assert_eq!(s.client["results"][0]["content_text"].as_str().map(str::len), Some(1 << 20));
    let run = &s.run;
    let id = call_id(run, "read_text_file");
    let resp: Vec<_> = run
        .of_kind("rpc")
        .filter(|e| e["direction"] == "server_to_client" && e["id"] == id)
        .collect();
    assert_eq!(resp.len(), 1, "exactly one response message\n{}", run.describe());
    // the text is in both content and structuredContent: > 2 MiB on the wire
    assert!(resp[0]["size"].as_u64().unwrap() > 2 << 20, "{}", resp[0]);
    assert_eq!(resp[0]["truncated"], false, "{}", resp[0]);
    assert_eq!(run.of_kind("malformed").count(), 0, "{}", run.describe());
    assert_nothing_lost(run);
}

#[test]
fn python_sdk2_server_off_fd_0_1_is_captured_and_its_git_exec_attributed() {
    let d = scratch("git");
    let repo = d.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| assert!(Command::new("git").args(args).current_dir(&repo).status().unwrap().success());
    git(&["init", "-q"]);
    std::fs::write(repo.join("new.txt"), "x").unwrap();
    let env = mcp_env();
    let s = drive(
        &d,
        server_argv(&env, "MCP_GIT_SERVER"),
        json!([{"call": "git_status", "arguments": {"repo_path": repo}}]),
        &[],
    );
    assert!(s.client["results"][0]["content_text"].as_str().unwrap_or("").contains("new.txt"), "{}", s.client);
    let run = &s.run;
    // the handshake went over fds other than 0/1 and was still captured
    let fds: Vec<_> = run.of_kind("rpc").collect();
    assert!(fds.iter().any(|e| e["method"] == "server/discover"), "{}", run.describe());
    let id = call_id(run, "git_status");
    let git_execs: Vec<_> = run
        .of_kind("exec")
        .filter(|e| e["exe"].as_str().unwrap_or("").ends_with("/git") && e["argv"].as_array().unwrap().iter().any(|a| a == "status"))
        .collect();
    assert!(!git_execs.is_empty(), "git status was executed\n{}", run.describe());
    for e in &git_execs {
        assert_eq!(e["tool_call"]["id"], id, "{e}");
        assert_eq!(e["tool_call"]["name"], "git_status", "{e}");
        assert_eq!(e["server"]["name"], "mcp-git", "{e}");
    }
    assert_nothing_lost(run);
}

/// `cmd` started from a small process (a Python `subprocess` parent), so
/// that its peak RSS is its own: a child forked from this test binary
/// starts with the binary's resident pages, and the kernel keeps that peak
/// across exec (the whole e2e suite makes the binary large). Returns the
/// spawned parent, whose exit status is `cmd`'s, and the file where it
/// writes `cmd`'s peak RSS (KiB, `ru_maxrss` of wait4).
fn spawn_measured(cmd: &Command, dir: &std::path::Path) -> (std::process::Child, std::path::PathBuf) {
    let rss = dir.join("maxrss");
    let parent = format!(
        "import os, subprocess, sys\np = subprocess.Popen(sys.argv[1:])\n_, st, ru = os.wait4(p.pid, 0)\n\
         open({:?}, 'w').write(str(ru.ru_maxrss))\nsys.exit(os.waitstatus_to_exitcode(st))\n",
        rss.display().to_string()
    );
    let child = Command::new("python3")
        .arg("-c")
        .arg(parent)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    (child, rss)
}

#[test]
fn hostile_channel_bytes_leave_sensor_up_bounded_and_server_unaffected() {
    use std::io::Write;
    require_root();
    let d = scratch("hostile");
    let events = d.join("events.jsonl");
    let count = d.join("count");
    // a "server" that reads its channel to EOF and records how many bytes it got
    let server = format!(
        "import sys\nn=0\nwhile True:\n  b=sys.stdin.buffer.read(1<<16)\n  if not b: break\n  n+=len(b)\nopen('{}','w').write(str(n))\n",
        count.display()
    );
    let mut cmd = exec_command(&d, &events);
    cmd.args(["--", "python3", "-c", &server]);
    let (mut child, rss) = spawn_measured(&cmd, &d);
    let mut stdin = child.stdin.take().unwrap();
    let mut sent = 0usize;
    let mut send = |b: &[u8]| {
        stdin.write_all(b).unwrap();
        sent += b.len();
    };
    send(b"\x00\x01\x02\xff\xfe binary garbage\n");
    send(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"\xc3\x28bad utf8\"}}\n");
    send(&[b'['; 100_000]);
    send(b"\n");
    let chunk = vec![b'a'; 1 << 20];
    send(b"{\"jsonrpc\":\"2.0\",\"id\":\"huge\",\"method\":\"tools/call\",\"params\":{\"name\":\"big\",\"arguments\":{\"x\":\"");
    for _ in 0..100 {
        send(&chunk);
    }
    send(b"\"}}}\n");
    send(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"after\"}}\n");
    drop(send);
    drop(stdin);
    let status = child.wait().unwrap().code();
    assert_eq!(status, Some(0), "server exits normally");
    let maxrss_kib: i64 = std::fs::read_to_string(&rss).unwrap().trim().parse().unwrap();
    let got: usize = std::fs::read_to_string(&count).unwrap().parse().unwrap();
    assert_eq!(got, sent, "the watched server received every byte unchanged");
    // 100 MB went through; the agent keeps at most a bounded prefix per message
    assert!(maxrss_kib < 400 * 1024, "sensor memory bounded: max RSS {maxrss_kib} KiB");

    let evs = read_events(&events);
    let malformed = evs.iter().filter(|e| e["kind"] == "malformed").count();
    assert!(malformed >= 2, "garbage and deep nesting are reported: {malformed}");
    let rpc = |id: Value| evs.iter().find(|e| e["kind"] == "rpc" && e["id"] == id).cloned();
    let huge = rpc(json!("huge"));
    let after = rpc(json!(2)).unwrap_or_else(|| panic!("the message after the hostile ones is parsed"));
    assert_eq!(after["tool"], "after");
    let fin = evs.iter().find(|e| e["kind"] == "drops" && e["final"] == true).expect("final drops");
    let lost = fin["kernel"].as_object().map_or(0, |m| m.len()) + fin["queue"].as_u64().unwrap() as usize;
    match huge {
        // captured: true length reported, truncated, id and method recovered from the prefix
        Some(h) => {
            assert_eq!(h["truncated"], true, "{h}");
            assert!(h["size"].as_u64().unwrap() > 100 << 20, "{h}");
            assert_eq!(h["method"], "tools/call");
        }
        // or its chunks did not fit: then the loss is counted, never silent
        None => assert!(lost > 0, "the 100 MB line was neither reported nor counted as lost: {fin}"),
    }
}
