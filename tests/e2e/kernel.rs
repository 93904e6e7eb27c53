//! Kernel reach: what must work on every kernel of the matrix (Debian's
//! 5.10, 6.1, 6.12 and the build machines' own), run on the host by
//! `cargo xtask test` (with the full and the compat object) and inside
//! each VM by `cargo xtask vmtest` (tests named `kernel_`).
//!
//! What each kernel should get is not taken from the sensor: the VM runner
//! says it (`MCP_SENSOR_EXPECT_OBJECT`, `MCP_SENSOR_EXPECT_ENFORCEMENT`,
//! from the kernel it booted and its `lsm=`); on the host the object is
//! derived from /proc/kallsyms (the helpers the full object needs), and
//! the enforcement mechanism must agree with what the alert shows.

use crate::enforce::{assert_no_leak, home_with_key, key_rule, rule_file};
use crate::harness::*;
use crate::mcp::{drive, fs_server, mcp_env};
use serde_json::{json, Value};
use std::process::{Command, Stdio};

/// The object this kernel must get: the runner's word, else whether the
/// kernel has the helpers the full object calls (their functions are in
/// kallsyms), unless the compat object is forced.
fn expected_object() -> String {
    if let Ok(o) = std::env::var("MCP_SENSOR_EXPECT_OBJECT") {
        return o;
    }
    if std::env::var("MCP_SENSOR_BPF_OBJECT").is_ok_and(|v| v == "compat") {
        return "compat".into();
    }
    let syms = std::fs::read_to_string("/proc/kallsyms").expect("read /proc/kallsyms");
    let has = |s: &str| syms.lines().any(|l| l.ends_with(&format!(" {s}")));
    if has("bpf_loop") && has("bpf_task_pt_regs") { "full" } else { "compat" }.into()
}

/// `lsm_deny` or `sigkill_at_syscall` when the runner knows; None on the host.
fn expected_enforcement() -> Option<String> {
    std::env::var("MCP_SENSOR_EXPECT_ENFORCEMENT").ok()
}

fn sensor_start(run: &Run) -> &Value {
    let first = run.events.first().unwrap_or_else(|| panic!("no events\n{}", run.describe()));
    assert_eq!(first["kind"], "sensor_start", "the log's first line says which kernel and hooks: {first}");
    first
}

#[test]
fn kernel_doctor_json_reports_the_plan_and_loads_every_program() {
    require_root();
    let out = Command::new(sensor_bin()).args(["doctor", "--json"]).output().expect("run doctor");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}\n{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["runs"], true, "{report:#}");
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    assert_eq!(report["plan"]["object"], expected_object(), "{report:#}");
    if let Some(e) = expected_enforcement() {
        assert_eq!(report["plan"]["file_enforcement"], e, "{report:#}");
    }
    let attached: Vec<&str> = report["load"]["attached"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    for p in ["sched_process_exec", "sched_process_fork", "sys_exit_openat", "sys_exit_read", "sys_exit_connect"] {
        assert!(attached.contains(&p), "{p} attached: {attached:?}");
    }
    let lsm = report["plan"]["file_enforcement"] == "lsm_deny";
    assert_eq!(attached.contains(&"lsm_file_open"), lsm, "LSM programs attached exactly when the plan uses them: {attached:?}");
    assert_eq!(report["probed"]["kernel"].as_str().unwrap(), std::str::from_utf8(&Command::new("uname").arg("-r").output().unwrap().stdout).unwrap().trim());
}

/// A script's exec, opens by symlink, dirfd and /proc/self/root (all
/// reported as the file the kernel opened), and connects of each family.
#[test]
fn kernel_exec_opens_and_connects_are_resolved_at_exit() {
    let d = scratch("kernel-paths");
    let target = d.join("data/target.txt");
    std::fs::create_dir_all(d.join("data")).unwrap();
    std::fs::write(&target, "x\n").unwrap();
    std::os::unix::fs::symlink(&target, d.join("link.txt")).unwrap();
    let unix_path = d.join("sock");
    let py = format!(
        r#"
import os, socket
t = {target:?}; d = {data:?}; link = {link:?}; u = {unix:?}
os.close(os.open(link, os.O_RDONLY))
fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
os.close(os.open("target.txt", os.O_RDONLY, dir_fd=fd))
os.close(os.open("/proc/self/root" + t, os.O_RDONLY))
lsn = socket.socket(socket.AF_UNIX); lsn.bind(u); lsn.listen(1)
for fam, addr in ((socket.AF_INET, ("127.0.0.1", 9)), (socket.AF_INET6, ("::1", 9)), (socket.AF_UNIX, u)):
    s = socket.socket(fam)
    try: s.connect(addr)
    except OSError: pass
    s.close()
"#,
        target = target.display().to_string(),
        data = d.join("data").display().to_string(),
        link = d.join("link.txt").display().to_string(),
        unix = unix_path.display().to_string(),
    );
    let script = d.join("run.sh");
    std::fs::write(&script, format!("#!/bin/sh\nexec python3 -c '{py}'\n")).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let run = exec_with(&d, &[], &[script.to_str().unwrap()], Stdio::null());
    assert_eq!(run.status(), 0, "{}", run.describe());
    assert_eq!(sensor_start(&run)["object"], expected_object(), "{}", run.describe());

    let sh = run
        .of_kind("exec")
        .find(|e| e["script"] == script.display().to_string())
        .unwrap_or_else(|| panic!("the script's exec, with its interpreter\n{}", run.describe()));
    assert!(sh["exe"].as_str().unwrap().ends_with("sh"), "{sh}");

    let opens: Vec<&Value> = run.find("open", "path", target.to_str().unwrap());
    let ok: Vec<_> = opens.iter().filter(|e| e["resolved"] == true && e["ret"].as_i64() >= Some(0)).collect();
    assert_eq!(ok.len(), 3, "symlink, dirfd and /proc/self/root opens all name the target\n{}", run.describe());

    let connect = |family: &str, field: &str, value: Value| {
        assert!(
            run.of_kind("connect").any(|e| e["family"] == family && e[field] == value),
            "{family} connect to {value}\n{}",
            run.describe()
        );
    };
    connect("inet", "addr", json!("127.0.0.1"));
    connect("inet6", "addr", json!("::1"));
    connect("unix", "path", json!(unix_path.display().to_string()));
    for e in run.of_kind("connect").filter(|e| e["family"] != "unix") {
        assert_eq!(e["port"], 9, "{e}");
    }

    let fin: Vec<_> = run.of_kind("drops").filter(|e| e["final"] == true).collect();
    assert_eq!(fin.len(), 1, "the final drops line\n{}", run.describe());
    assert_eq!(fin[0]["kernel"], json!({}), "{}", fin[0]);
}

/// A real MCP server under `exec --enforce`: its stdio JSON-RPC is
/// captured, an open is attributed to its tools/call, a protected key read
/// raises one alert and is stopped in the kernel, by the mechanism this
/// kernel offers, and nothing of the key reaches the client.
#[test]
fn kernel_mcp_session_is_captured_attributed_and_enforced() {
    let d = scratch("kernel-mcp");
    let (home, key, secret) = home_with_key(&d);
    let rules = rule_file(&d, &key_rule(&home, "process", ""));
    let env = mcp_env();
    let s = drive(
        &d,
        fs_server(&env, &home),
        json!([
            {"call": "read_text_file", "arguments": {"path": home.join("notes.txt")}},
            {"call": "read_text_file", "arguments": {"path": key}},
        ]),
        &["--enforce", "--rules", &rules],
    );
    let run = &s.run;
    let ctx = || format!("client: {}\n{}", s.client, run.describe());
    let start = sensor_start(run);
    assert_eq!(start["object"], expected_object(), "{}", ctx());
    let mechanism = start["file_enforcement"].as_str().unwrap().to_string();
    if let Some(e) = expected_enforcement() {
        assert_eq!(mechanism, e, "{}", ctx());
    }

    // captured and attributed
    assert_eq!(s.client["results"][0]["content_text"], "benign\n", "{}", ctx());
    let notes = home.join("notes.txt");
    let first = run
        .of_kind("rpc")
        .find(|e| e["direction"] == "client_to_server" && e["method"] == "tools/call")
        .unwrap_or_else(|| panic!("the first tools/call was captured\n{}", ctx()));
    let open = run
        .find("open", "path", notes.to_str().unwrap())
        .into_iter()
        .find(|e| e["ret"].as_i64() >= Some(0))
        .unwrap_or_else(|| panic!("the server's open of notes.txt\n{}", ctx()))
        .clone();
    assert_eq!(open["tool_call"]["id"], first["id"], "the open belongs to the call that read notes.txt: {open}");
    assert_eq!(open["tool_call"]["name"], "read_text_file", "{open}");

    // stopped in the kernel, alerted once, nothing leaked
    assert_eq!(s.client["results"][1]["ok"], false, "{}", ctx());
    assert_no_leak(&s.client.to_string(), &secret, "the client's report");
    let alerts: Vec<&Value> = run.of_kind("alert").filter(|a| a["rule"] == "test-key-kill").collect();
    assert_eq!(alerts.len(), 1, "{}", ctx());
    let a = alerts[0];
    let by = if mechanism == "lsm_deny" { "kernel_lsm" } else { "kernel_syscall_exit" };
    assert_eq!(a["decided_by"], by, "{a}");
    assert!(a["late"].is_null(), "{a}");
    assert_eq!(a["action"], "killed", "{a}");
    assert_eq!(a["event"]["path"], key.display().to_string(), "{a}");
    let key_call = call_id_of_key_read(run, &key);
    assert_ne!(key_call, first["id"], "two distinct calls\n{}", ctx());
    assert_eq!(a["tool_call"]["id"], key_call, "{a}");
    let fin = run.of_kind("drops").find(|e| e["final"] == true).unwrap_or_else(|| panic!("final drops\n{}", ctx()));
    let enforced = &fin["enforced"];
    assert_eq!(enforced["kill_open"], 1, "{fin}");
    if mechanism == "lsm_deny" {
        // refused before the file was opened: the syscall failed
        assert_eq!(enforced["deny_open"], 1, "{fin}");
        assert_eq!(a["event"]["error"], "EPERM", "{a}");
        // the caller's open flags, as a successful open reports them
        assert_eq!(a["event"]["flags"], open["flags"], "refused and successful opens of one server: {a}");
    } else {
        assert_eq!(enforced["deny_open"], 0, "{fin}");
        assert!(a["event"]["ret"].as_i64() >= Some(0), "opened, then killed before returning: {a}");
    }
}

/// The id of the tools/call whose arguments name `key`.
fn call_id_of_key_read(run: &Run, key: &std::path::Path) -> Value {
    let k = key.display().to_string();
    let calls: Vec<&Value> = run
        .of_kind("rpc")
        .filter(|e| e["method"] == "tools/call" && e["direction"] == "client_to_server" && e["arguments"]["path"] == k)
        .collect();
    assert_eq!(calls.len(), 1, "{}", run.describe());
    calls[0]["id"].clone()
}

/// A forbidden program never runs: refused by BPF LSM or killed as its
/// image is set up; the rest of the session goes on (scope process).
#[test]
fn kernel_forbidden_exec_never_runs() {
    let d = scratch("kernel-exec");
    let rules = rule_file(
        &d,
        "- rule: no-ls\n  description: test\n  severity: critical\n  kind: exec\n  action: kill\n  match:\n    exe_name: [ls]\n",
    );
    let after = d.join("after");
    let cmd = format!("ls -la / > {d}/ls.out; echo $? > {a}", d = d.display(), a = after.display());
    let run = exec_with(&d, &["--enforce", "--rules", &rules], &["/bin/sh", "-c", &cmd], Stdio::null());
    let start = sensor_start(&run);
    // the positive control: the shell ran on after the refusal
    let status = std::fs::read_to_string(&after).unwrap_or_else(|e| panic!("{}: {e}\n{}", after.display(), run.describe()));
    assert_ne!(status.trim(), "0", "ls must not succeed: {status}");
    let listing = std::fs::read_to_string(d.join("ls.out")).unwrap_or_default();
    assert!(listing.is_empty(), "ls ran: {listing}");
    let alerts: Vec<&Value> = run.of_kind("alert").filter(|a| a["rule"] == "no-ls").collect();
    assert_eq!(alerts.len(), 1, "{}", run.describe());
    let lsm = start["file_enforcement"] == "lsm_deny";
    assert_eq!(alerts[0]["decided_by"], if lsm { "kernel_lsm" } else { "kernel_syscall_exit" }, "{}", alerts[0]);
    let fin = run.of_kind("drops").find(|e| e["final"] == true).unwrap_or_else(|| panic!("{}", run.describe()));
    assert_eq!(fin["enforced"]["kill_exec"], 1, "{fin}");
    assert_eq!(fin["enforced"]["deny_exec"], u64::from(lsm), "{fin}");
    if let Some(e) = expected_enforcement() {
        assert_eq!(start["file_enforcement"], e, "{start}");
    }
}

/// The daemon on this kernel: a server launched through a wrapper script
/// that does not `exec` it is found by its channel; its first call runs a
/// shell that reads a protected key, inside the window before the agent's
/// confirmation reaches the kernel. The shell (a nested candidate folded
/// back into the server's tree) is logged under the call and alerted; the
/// key read is stopped in the kernel (refused by BPF LSM, or killed at the
/// syscall) and no byte of the key reaches the client. One session: node
/// under TCG is slow.
#[test]
fn kernel_daemon_finds_a_wrapped_server_and_enforces_from_its_first_call() {
    use crate::daemon::Daemon;
    use crate::launchers::{start_client, wrapper, Plan};
    let d = scratch("kernel-daemon");
    let (home, key, secret) = home_with_key(&d);
    // the default profile would kill the first-call shell before its `cat`:
    // alert-only here, this test is about the key read under the first call
    let rules = rule_file(&d, &key_rule(&home, "process", crate::enforce::PROFILE_ALERT_ONLY));
    let env = mcp_env();
    let daemon = Daemon::start_with(&d, "", &["--enforce", "--rules", &rules]);
    let marker = format!("kernel-daemon-{}", std::process::id());
    let mut command = vec![wrapper(&d, false)];
    command.extend(crate::mcp::server_argv(&env, "MCP_SHELL_SERVER"));
    let cmd = format!("cat {}; echo {marker}", key.display());
    let steps = json!([{"call": "run_command", "arguments": {"command": cmd}}]);
    let plan = Plan { command, env: json!({}), steps, shell: true, read: true };
    let out = start_client(&env, &d, &plan, "0").wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("client: {e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["connected"], true, "the session came up: {report}");
    let (status, evs) = daemon.stop();
    let describe = || evs.iter().filter(|e| e["kind"] != "open" || e["path"] == key.display().to_string()).map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
    assert_no_leak(&report.to_string(), &secret, &format!("the client's report (the daemon's events:\n{})", describe()));
    assert_eq!(status, 0);
    let start = evs.first().unwrap();
    assert_eq!(start["kind"], "sensor_start", "{start}");
    assert_eq!(start["object"], expected_object(), "{start}");
    // the shell: found, logged under the call, alerted
    let has_marker = |e: &Value| e["argv"].as_array().is_some_and(|a| a.iter().any(|x| x.as_str().is_some_and(|s| s.contains(&marker))));
    let exec = evs.iter().find(|e| e["kind"] == "exec" && has_marker(e)).unwrap_or_else(|| panic!("the shell's exec\n{}", describe()));
    assert_eq!(exec["tool_call"]["name"], "run_command", "{exec}");
    let server = &exec["server"]["pid"];
    let found = evs.iter().filter(|e| e["kind"] == "server_found" && e["pid"] == *server).count();
    assert_eq!(found, 1, "the server was found once\n{}", describe());
    let alert = evs.iter().find(|e| e["kind"] == "alert" && e["rule"] == "unexpected-shell" && has_marker(&e["event"]));
    assert!(alert.is_some(), "the shell was alerted\n{}", describe());
    // the key: stopped in the kernel, under the same call
    let k = key.display().to_string();
    let stopped: Vec<&Value> =
        evs.iter().filter(|e| e["kind"] == "alert" && e["rule"] == "test-key-kill" && e["event"]["path"] == k.as_str()).collect();
    assert_eq!(stopped.len(), 1, "{}", describe());
    assert!(stopped[0]["decided_by"].as_str().unwrap_or("").starts_with("kernel_"), "{}
{}", stopped[0], describe());
    assert!(stopped[0]["late"].is_null(), "{}", stopped[0]);
    assert_eq!(stopped[0]["tool_call"]["id"], exec["tool_call"]["id"], "{}", stopped[0]);
    assert_eq!(stopped[0]["server"]["pid"], *server, "{}", stopped[0]);
}
