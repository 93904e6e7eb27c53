//! `mcp-sensor run` finds servers however client configs launch them: npx
//! from the npm cache (offline), `sh -c 'npx ...'`, a wrapper script that
//! does not `exec` the server, one that does, and uvx (offline) running a
//! Python server.
//! No wrapper of ours: the official SDK client starts each launcher, and
//! the daemon must find the server behind it by its channel.
//!
//! Each launcher is driven 20 rounds (four sessions at a time): in every
//! round the server's first tool call runs a shell (the race the
//! confirmation window used to lose) and a call reads an SSH key. Every
//! round must have: the server found once; the call logged; the shell's
//! exec logged under that call, with its `unexpected-shell` alert; the
//! key's open under its call, with its `ssh-key-read` alert; each alert's
//! ancestry reaching the client's pid. The launcher's own shells (npx's
//! `sh -c`, the wrapper) start before the first request and raise nothing.

use crate::daemon::Daemon;
use crate::harness::*;
use crate::mcp::{mcp_env, server_argv};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const ROUNDS: usize = 20;
const AT_ONCE: usize = 4;
const FS_PKG: &str = "@modelcontextprotocol/server-filesystem@2026.8.31";
const SHELL_PKG: &str = "mcp-server-commands@0.5.0";

#[derive(Clone, Copy, Debug)]
enum Launcher {
    Npx,
    ShC,
    Wrapper,
    ExecWrapper,
    Uvx,
}

/// One MCP session to start: the client's argv for the server and the
/// environment it adds, and the steps.
pub(crate) struct Plan {
    pub(crate) command: Vec<String>,
    pub(crate) env: Value,
    pub(crate) steps: Value,
    /// Its calls: a shell (`echo MARKER`), a key read.
    pub(crate) shell: bool,
    pub(crate) read: bool,
}

/// A session's facts: what its calls carried, so its events can be found.
struct Round {
    key: PathBuf,
    marker: String,
    client_pid: u32,
    shell: bool,
    read: bool,
}

fn npm_env(env: &HashMap<String, String>) -> Value {
    json!({"npm_config_cache": env["MCP_NPM_CACHE"], "npm_config_offline": "true",
           "npm_config_update_notifier": "false", "npm_config_fund": "false", "npm_config_audit": "false"})
}

/// A wrapper script that runs its argv without `exec` (it stays the
/// server's parent, and says so on stderr before and after), or with it.
pub(crate) fn wrapper(dir: &Path, exec: bool) -> String {
    let path = dir.join(if exec { "exec-server.sh" } else { "run-server.sh" });
    let text = if exec {
        "#!/bin/sh\necho \"wrapper: starting $1\" >&2\nexec \"$@\"\n"
    } else {
        "#!/bin/sh\necho \"wrapper: starting $1\" >&2\n\"$@\"\nstatus=$?\necho \"wrapper: done\" >&2\nexit $status\n"
    };
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// The sessions of round `n`: (shell first, key read) on the npm servers,
/// or both in one session of the Python server under uvx.
fn plans(l: Launcher, env: &HashMap<String, String>, dir: &Path, home: &Path, key: &Path, marker: &str) -> Vec<Plan> {
    let shell_first = json!([{"call": "run_command", "arguments": {"command": format!("echo {marker}")}}]);
    let read_first = json!([{"call": "read_text_file", "arguments": {"path": key}}]);
    let home = home.display().to_string();
    let npx = |pkg: &str, args: &[&str]| {
        let mut v = vec!["npx".to_string(), "-y".into(), pkg.into()];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    match l {
        Launcher::Npx => vec![
            Plan { command: npx(SHELL_PKG, &[]), env: npm_env(env), steps: shell_first, shell: true, read: false },
            Plan { command: npx(FS_PKG, &[&home]), env: npm_env(env), steps: read_first, shell: false, read: true },
        ],
        Launcher::ShC => vec![
            Plan { command: vec!["sh".into(), "-c".into(), format!("npx -y {SHELL_PKG}")], env: npm_env(env), steps: shell_first, shell: true, read: false },
            Plan { command: vec!["sh".into(), "-c".into(), format!("npx -y {FS_PKG} {home}")], env: npm_env(env), steps: read_first, shell: false, read: true },
        ],
        Launcher::Wrapper | Launcher::ExecWrapper => {
            let w = wrapper(dir, matches!(l, Launcher::ExecWrapper));
            let with = |mut argv: Vec<String>| {
                argv.insert(0, w.clone());
                argv
            };
            let mut fs = server_argv(env, "MCP_FS_SERVER");
            fs.push(home);
            vec![
                Plan { command: with(server_argv(env, "MCP_SHELL_SERVER")), env: json!({}), steps: shell_first, shell: true, read: false },
                Plan { command: with(fs), env: json!({}), steps: read_first, shell: false, read: true },
            ]
        }
        Launcher::Uvx => vec![Plan {
            command: vec![
                env["MCP_UVX"].clone(),
                "--with-requirements".into(),
                env["MCP_UVX_REQUIREMENTS"].clone(),
                "python".into(),
                env["MCP_SDK2_TEST_SCRIPT"].clone(),
            ],
            env: json!({"UV_CACHE_DIR": env["MCP_UV_CACHE"], "UV_PYTHON": env["MCP_UV_PYTHON"], "UV_OFFLINE": "1",
                        "UV_PYTHON_DOWNLOADS": "never"}),
            steps: json!([{"call": "shell", "arguments": {"command": format!("echo {marker}")}},
                          {"call": "read_file", "arguments": {"path": key}}]),
            shell: true,
            read: true,
        }],
    }
}

/// Starts the SDK client on `p`; the child's pid is the client's.
pub(crate) fn start_client(env: &HashMap<String, String>, dir: &Path, p: &Plan, tag: &str) -> std::process::Child {
    let scenario = json!({"command": p.command, "env": p.env, "steps": p.steps, "timeout": 120,
                          "stderr": dir.join(format!("server-{tag}.stderr"))});
    Command::new(&env["MCP_PY"])
        .arg(&env["MCP_CLIENT"])
        .arg("--json")
        .arg(scenario.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the MCP client")
}

fn finish_client(c: std::process::Child, what: &str) {
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "{what}: client failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("client prints JSON");
    assert_eq!(v["ok"], true, "{what}: the MCP session worked: {v}");
}

/// Runs `ROUNDS` rounds of `l` under one daemon; returns the rounds and the
/// daemon's log.
fn run_rounds(l: Launcher) -> (Vec<Round>, Vec<Value>, PathBuf) {
    let d = scratch(&format!("launch-{l:?}").to_lowercase());
    let env = mcp_env();
    let daemon = Daemon::start(&d, "");
    let mut rounds = Vec::new();
    for batch in (0..ROUNDS).collect::<Vec<_>>().chunks(AT_ONCE) {
        let mut running = Vec::new();
        for &n in batch {
            let home = d.join(format!("home{n}"));
            std::fs::create_dir_all(home.join(".ssh")).unwrap();
            let key = home.join(".ssh/id_ed25519");
            std::fs::write(&key, format!("-----BEGIN OPENSSH PRIVATE KEY-----\nround {n}\n")).unwrap();
            let marker = format!("{l:?}-round-{n}");
            for (i, p) in plans(l, &env, &d, &home, &key, &marker).iter().enumerate() {
                let c = start_client(&env, &d, p, &format!("{n}-{i}"));
                rounds.push(Round { key: key.clone(), marker: marker.clone(), client_pid: c.id(), shell: p.shell, read: p.read });
                running.push((c, format!("{l:?} round {n} session {i}")));
            }
        }
        for (c, what) in running {
            finish_client(c, &what);
        }
    }
    let log_dir = daemon.log_dir.clone();
    let (status, evs) = daemon.stop();
    assert_eq!(status, 0, "SIGTERM: clean exit");
    (rounds, evs, log_dir)
}

fn describe(evs: &[Value], server: &Value) -> String {
    evs.iter()
        .filter(|e| e["server"]["pid"] == *server && e["kind"] != "open")
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The alert of `rule` on the event `is_it` picks, with its call and
/// ancestry checked.
fn assert_alert(evs: &[Value], rule: &str, call: &Value, client_pid: u32, is_it: impl Fn(&Value) -> bool) {
    let alerts: Vec<_> = evs.iter().filter(|e| e["kind"] == "alert" && e["rule"] == rule && is_it(&e["event"])).collect();
    assert_eq!(alerts.len(), 1, "one {rule} alert\n{}", describe(evs, &call["server"]["pid"]));
    let a = alerts[0];
    assert_eq!(a["tool_call"]["id"], call["id"], "{a}");
    let hops: Vec<u64> = a["ancestry"].as_array().unwrap().iter().filter_map(|h| h["pid"].as_u64()).collect();
    assert!(hops.contains(&(client_pid as u64)), "the ancestry reaches the client {client_pid}: {a}");
}

/// `investigate` on the daemon's log: each of `servers`' sessions starts
/// at its first event (the launcher's exec, held until the verdict and
/// written after it), so no call starts before its session and the
/// launcher's start-up is `startup`, before the first request.
fn assert_sessions_start_first(log_dir: &Path, servers: &std::collections::HashSet<Value>) {
    let out = Command::new(sensor_bin()).args(["investigate", "--format", "json"]).arg(log_dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut seen = 0;
    for s in report["sessions"].as_array().unwrap().iter().filter(|s| servers.contains(&s["server"]["pid"])) {
        seen += 1;
        let start = s["start"].as_str().unwrap();
        let calls = s["calls"].as_array().unwrap();
        assert!(!calls.is_empty(), "{s}");
        for c in calls {
            let req = c["request_ts"].as_str().unwrap_or("");
            assert!(start <= req, "session start {start} after its call's request {req}: {s}");
        }
        let first = calls.iter().filter_map(|c| c["request_ts"].as_str()).min().unwrap();
        let startup: Vec<_> = s["outside"].as_array().unwrap().iter().filter(|a| a["phase"] == "startup").collect();
        assert!(!startup.is_empty(), "the launcher's start-up is in the session: {s}");
        for a in startup {
            let ts = a["ts"].as_str().unwrap();
            assert!(start <= ts && ts <= first, "start-up {ts} between the start {start} and the first request {first}");
        }
    }
    assert_eq!(seen, servers.len(), "every server has its session in investigate's report");
}

/// Every session of `l` checked (see the module's comment).
fn check(l: Launcher) {
    let (sessions, evs, log_dir) = run_rounds(l);
    let one_call = |key: &str, value: &str| -> Value {
        let c: Vec<&Value> = evs
            .iter()
            .filter(|e| e["kind"] == "rpc" && e["direction"] == "client_to_server" && e["method"] == "tools/call")
            .filter(|e| e["arguments"][key] == value)
            .collect();
        assert_eq!(c.len(), 1, "{l:?}: one call with {key} {value} logged");
        c[0].clone()
    };
    let mut ours = std::collections::HashSet::new();
    for s in &sessions {
        let marker = format!("echo {}", s.marker);
        let key = s.key.display().to_string();
        let mut calls = Vec::new();
        if s.shell {
            let call = one_call("command", &marker);
            let is_it = |ev: &Value| ev["argv"].as_array().is_some_and(|a| a.iter().any(|x| x == marker.as_str()));
            let execs: Vec<_> = evs.iter().filter(|e| e["kind"] == "exec" && is_it(e)).collect();
            assert!(!execs.is_empty(), "{l:?} {marker}: the shell's exec is logged\n{}", describe(&evs, &call["server"]["pid"]));
            for e in &execs {
                assert_eq!(e["tool_call"]["id"], call["id"], "{e}");
                assert_eq!(e["server"]["pid"], call["server"]["pid"], "{e}");
            }
            assert_alert(&evs, "unexpected-shell", &call, s.client_pid, is_it);
            calls.push(call);
        }
        if s.read {
            let call = one_call("path", &key);
            let opens: Vec<_> = evs.iter().filter(|e| e["kind"] == "open" && e["path"] == key.as_str()).collect();
            assert!(!opens.is_empty(), "{l:?}: the open of {key} is logged\n{}", describe(&evs, &call["server"]["pid"]));
            for o in &opens {
                assert_eq!(o["tool_call"]["id"], call["id"], "{o}");
            }
            assert_alert(&evs, "ssh-key-read", &call, s.client_pid, |ev| ev["path"] == key.as_str());
            calls.push(call);
        }
        for call in &calls {
            let server = &call["server"]["pid"];
            ours.insert(server.clone());
            let found: Vec<_> = evs.iter().filter(|e| e["kind"] == "server_found" && e["pid"] == *server).collect();
            assert_eq!(found.len(), 1, "{l:?} {}: the server was found once\n{}", s.marker, describe(&evs, server));
        }
    }
    // shells the launchers ran before any request raised nothing: every
    // unexpected-shell alert of these servers is a round's (the daemon
    // watches the host: other tests' servers are in its log too)
    let prefix = format!("{l:?}-round-");
    for a in evs.iter().filter(|e| e["kind"] == "alert" && e["rule"] == "unexpected-shell" && ours.contains(&e["server"]["pid"])) {
        let argv = a["event"]["argv"].to_string();
        assert!(argv.contains(&prefix), "{l:?}: a launcher's own shell alerted: {a}");
    }
    assert_eq!(ours.len(), sessions.len(), "{l:?}: each session its own server");
    assert_sessions_start_first(&log_dir, &ours);
    let fin: Vec<_> = evs.iter().filter(|e| e["kind"] == "drops" && e["final"] == true).collect();
    assert_eq!(fin.len(), 1);
    assert!(fin[0]["other"]["discovery_held_overflow"].is_null(), "nothing held was lost: {}", fin[0]);
}

#[test]
fn launcher_npx_offline_from_the_npm_cache() {
    check(Launcher::Npx);
}

#[test]
fn launcher_sh_c_npx() {
    check(Launcher::ShC);
}

#[test]
fn launcher_wrapper_script_without_exec() {
    check(Launcher::Wrapper);
}

/// A wrapper that `exec`s the server: its shell is the session's root and
/// ran before any request, so it raises nothing (it used to, once the held
/// events were judged after the first request).
#[test]
fn launcher_wrapper_script_with_exec() {
    check(Launcher::ExecWrapper);
}

#[test]
fn launcher_uvx_offline_python_server() {
    check(Launcher::Uvx);
}

/// Under `run --enforce`, a server launched through npx whose first call
/// reads a protected key (inside the window before the agent's
/// confirmation reaches the kernel) is killed by the kernel at the open,
/// in 20 of 20 rounds: no byte of the key reaches the client.
#[test]
fn launcher_npx_first_call_key_read_is_stopped_under_enforce() {
    use crate::enforce::{assert_no_leak, home_with_key, key_rule, rule_file, PROFILE_ALERT_ONLY};
    let d = scratch("launch-npx-enforce");
    let env = mcp_env();
    let (home, key, secret) = home_with_key(&d);
    let rules = rule_file(&d, &key_rule(&home, "tree", PROFILE_ALERT_ONLY));
    let daemon = Daemon::start_with(&d, "", &["--enforce", "--rules", &rules]);
    let plan = Plan {
        command: vec!["npx".into(), "-y".into(), FS_PKG.into(), home.display().to_string()],
        env: npm_env(&env),
        steps: json!([{"call": "read_text_file", "arguments": {"path": key}}]),
        shell: false,
        read: true,
    };
    for batch in 0..ROUNDS / AT_ONCE {
        let clients: Vec<_> = (0..AT_ONCE).map(|i| start_client(&env, &d, &plan, &format!("{batch}-{i}"))).collect();
        for c in clients {
            let out = c.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            let report: Value = serde_json::from_str(&text).expect("client prints JSON");
            assert_eq!(report["connected"], true, "the session came up (positive control): {report}");
            assert_eq!(report["results"][0]["ok"], false, "the key read gets no result: {report}");
            assert_no_leak(&text, &secret, "the client's report");
        }
    }
    let (status, evs) = daemon.stop();
    assert_eq!(status, 0);
    let k = key.display().to_string();
    let killed: Vec<_> =
        // the default profile's ssh-key-read says killed too: the test's rule's alerts
        evs.iter().filter(|e| e["kind"] == "alert" && e["action"] == "killed" && e["event"]["path"] == k.as_str() && e["rule"] == "test-key-kill").collect();
    assert_eq!(killed.len(), ROUNDS, "every round's read was killed");
    for a in &killed {
        assert!(a["decided_by"].as_str().unwrap_or("").starts_with("kernel_"), "{a}");
        assert!(a["late"].is_null(), "{a}");
        assert_eq!(a["tool_call"]["name"], "read_text_file", "{a}");
    }
}
