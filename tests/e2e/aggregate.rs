//! One alert per finding (issues 15 and 17): repeats of a finding within
//! one tool call are one `alert` line and an `alert_summary` with the exact
//! count, and a flood of one server's events rotates the event log but not
//! the quiet server's alert (`alerts.jsonl`), which `investigate` shows.
//!
//! Real software: the official Python SDK client drives
//! tests/mcp/servers/sdk2_server.py (mcp 2.x), whose `run` tool runs a
//! program without a shell. Each test first shows the sensor saw every
//! occurrence (the exec events), then that they are one alert counted.

use crate::daemon::{run_client, Daemon};
use crate::harness::*;
use crate::mcp::{drive, mcp_env, server_argv};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};

fn sdk2() -> Vec<String> {
    server_argv(&mcp_env(), "MCP_SDK2_TEST_SERVER")
}

fn alerts<'a>(evs: &'a [Value], rule: &str, pred: impl Fn(&Value) -> bool + 'a) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["kind"] == "alert" && e["rule"] == rule && pred(e)).collect()
}

fn summaries_of<'a>(evs: &'a [Value], alert: &Value) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["kind"] == "alert_summary" && e["alert_id"] == alert["alert_id"]).collect()
}

/// `investigate --format json` of `logs`: every alert it shows, flattened.
fn investigated_alerts(logs: &[&Path]) -> Vec<Value> {
    let out = Command::new(sensor_bin()).args(["investigate", "--format", "json"]).args(logs).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut found = Vec::new();
    fn walk(v: &Value, found: &mut Vec<Value>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::Array(a)) = m.get("alerts") {
                    found.extend(a.iter().cloned());
                }
                if let Some(Value::Array(a)) = m.get("other_alerts") {
                    found.extend(a.iter().cloned());
                }
                m.values().for_each(|x| walk(x, found));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, found)),
            _ => {}
        }
    }
    walk(&report, &mut found);
    // an alert on an event is listed on the event and on its call: once each
    found.sort_by_key(|a| a["line"]["alert_id"].as_str().unwrap_or("").to_string());
    found.dedup_by(|a, b| a["line"]["alert_id"] == b["line"]["alert_id"]);
    found
}

#[test]
fn hundred_identical_sh_c_in_one_tool_call_are_one_alert_with_count_100() {
    let d = scratch("agg-100");
    let py = "import subprocess\nfor i in range(100):\n  subprocess.run(['/bin/sh', '-c', 'true'])\nprint('ok')\n";
    let s = drive(&d, sdk2(), json!([{"call": "run", "arguments": {"argv": ["/usr/bin/python3", "-c", py]}}]), &[]);
    assert_eq!(s.client["results"][0]["content_text"], "ok\n", "{}", s.client);
    let evs = &s.run.events;
    // the sensor saw all 100
    let shells: Vec<_> = evs.iter().filter(|e| e["kind"] == "exec" && e["argv"] == json!(["/bin/sh", "-c", "true"])).collect();
    assert_eq!(shells.len(), 100, "every sh -c was seen\n{}", s.run.describe());
    let call = shells[0]["tool_call"]["id"].clone();
    assert!(shells.iter().all(|e| e["tool_call"]["id"] == call && e["tool_call"]["name"] == "run"), "all in the one call");
    // and they are one alert
    let a = alerts(evs, "unexpected-shell", |a| a["event"]["argv"] == json!(["/bin/sh", "-c", "true"]));
    assert_eq!(a.len(), 1, "one alert for the finding\n{}", s.run.describe());
    assert!(a[0]["alert_id"].as_str().is_some_and(|i| !i.is_empty()), "{}", a[0]);
    let sum = summaries_of(evs, a[0]);
    assert_eq!(sum.len(), 1, "one summary\n{}", s.run.describe());
    assert_eq!(sum[0]["count"], 100, "{}", sum[0]);
    assert_eq!(sum[0]["reason"], "tool_call_end", "{}", sum[0]);
    assert_eq!(sum[0]["rule"], "unexpected-shell");
    assert_eq!(sum[0]["tool_call"]["id"], call, "{}", sum[0]);
    assert_eq!(sum[0]["first_ts"], a[0]["event"]["ts"], "{}", sum[0]);
    assert_eq!(sum[0]["last_ts"], shells[99]["ts"], "{}", sum[0]);
    // investigate shows the count
    let shown = investigated_alerts(&[&d.join("events.jsonl")]);
    let shown: Vec<_> = shown.iter().filter(|x| x["rule"] == "unexpected-shell").collect();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["count"], 100, "{}", shown[0]);
}

#[test]
fn a_process_that_execs_itself_500_times_is_one_alert_with_the_exact_count() {
    let d = scratch("agg-self");
    // a shell script in a temp directory: unexpected-shell on each exec
    // (exec-from-temp leaves shells' script runs to it, rules/default.yaml)
    let script = d.join("again.sh");
    std::fs::write(&script, "#!/bin/sh\nn=$1\nif [ \"$n\" -gt 0 ]; then exec \"$0\" $((n-1)); fi\necho done\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = script.display().to_string();
    let s = drive(&d, sdk2(), json!([{"call": "run", "arguments": {"argv": [path, "499"]}}]), &[]);
    assert_eq!(s.client["results"][0]["content_text"], "done\n", "{}", s.client);
    let evs = &s.run.events;
    let execs: Vec<_> = evs.iter().filter(|e| e["kind"] == "exec" && e["filename"] == path.as_str()).collect();
    assert_eq!(execs.len(), 500, "every exec was seen\n{}", s.run.describe());
    assert!(execs.iter().all(|e| e["pid"] == execs[0]["pid"]), "one process");
    let a = alerts(evs, "unexpected-shell", |a| a["event"]["filename"] == path.as_str());
    assert_eq!(a.len(), 1, "one alert, not 500\n{}", s.run.describe());
    let sum = summaries_of(evs, a[0]);
    assert_eq!(sum.len(), 1, "{}", s.run.describe());
    assert_eq!(sum[0]["count"], 500, "{}", sum[0]);
    assert_eq!(sum[0]["pids"], json!([execs[0]["pid"]]), "{}", sum[0]);
    // every occurrence of every rule on it is in a line or a count
    for rule in ["exec-from-temp", "unexpected-shell"] {
        let lines = alerts(evs, rule, |a| a["event"]["filename"] == path.as_str());
        let counted: u64 = lines.iter().flat_map(|a| summaries_of(evs, a)).map(|s| s["count"].as_u64().unwrap() - 1).sum();
        if !lines.is_empty() {
            assert_eq!(lines.len() as u64 + counted, 500, "{rule}\n{}", s.run.describe());
        }
    }
}

/// The SDK client on the sdk2 test server, run directly (the daemon finds
/// it), with `steps`.
fn sdk2_client(d: &Path, name: &str, steps: Value) -> Command {
    let env = mcp_env();
    let scenario = json!({"command": sdk2(), "steps": steps, "timeout": 120, "stderr": d.join(format!("{name}.stderr"))});
    let mut c = Command::new(&env["MCP_PY"]);
    c.arg(&env["MCP_CLIENT"]).arg("--json").arg(scenario.to_string()).stdin(Stdio::null());
    c
}

fn read_dir_events(dir: &Path, prefix: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with(prefix) {
            all.extend(read_events(&p));
        }
    }
    all
}

#[test]
fn alone_daemon_flood_next_to_a_quiet_server_keeps_the_quiet_alert_and_investigate_shows_it() {
    let d = scratch("agg-flood");
    // a log of 2 x 64 KiB: the flood rotates it many times over
    let daemon = Daemon::start(&d, "max_file_size = \"64KiB\"\nmax_files = 2\nserver_events_per_sec = 2000\n");
    let marker = d.join("quiet-marker");
    let quiet_cmd = format!("echo quiet > {}", marker.display());
    run_client(&mut sdk2_client(&d, "quiet", json!([{"call": "run", "arguments": {"argv": ["/bin/sh", "-c", quiet_cmd]}}])));
    assert!(marker.exists(), "the quiet server ran its command");
    // the quiet alert is in the alerts log now (the 64 KiB event log may
    // have rotated it away already: tests beside this one are watched too)
    let live = daemon.log_dir.join("alerts.jsonl");
    wait_for_event(&live, "the quiet server's alert", |e| e["kind"] == "alert" && e["event"]["argv"][2] == quiet_cmd.as_str());
    // the flood: another server opening files as fast as it can for 3 s
    let py = "import time\nt = time.time()\nn = 0\nwhile time.time() - t < 3:\n  open('/etc/hostname').close()\n  n += 1\nprint(n)\n";
    let flood = run_client(&mut sdk2_client(&d, "flood", json!([{"call": "run", "arguments": {"argv": ["/usr/bin/python3", "-c", py]}}])));
    let opened: u64 = flood["results"][0]["content_text"].as_str().unwrap().trim().parse().unwrap();
    assert!(opened > 10_000, "the flood opened {opened} files");
    std::thread::sleep(std::time::Duration::from_millis(1500)); // its last throttle line
    let log_dir = daemon.log_dir.clone();
    let (status, _) = daemon.stop();
    assert_eq!(status, 0);
    // the flood rotated the event log: the quiet server's alert is gone from it
    let events = read_dir_events(&log_dir, "events.jsonl");
    let is_quiet = |e: &Value| e["kind"] == "alert" && e["event"]["argv"][2] == quiet_cmd.as_str();
    assert!(!events.iter().any(is_quiet), "the flood should have rotated the quiet alert out of events.jsonl*");
    assert!(log_dir.join("events.jsonl.1").exists());
    // ... but not from the alerts log
    let kept = read_dir_events(&log_dir, "alerts.jsonl");
    let quiet: Vec<_> = kept.iter().filter(|e| is_quiet(e)).collect();
    assert_eq!(quiet.len(), 1, "the quiet alert survives in alerts.jsonl");
    assert_eq!(quiet[0]["rule"], "unexpected-shell");
    // the flood was held to its budget, counted, and the server named
    let fin: Vec<_> = events.iter().filter(|e| e["kind"] == "drops" && e["final"] == true).collect();
    assert_eq!(fin.len(), 1);
    let held = fin[0]["other"]["server_budget_events"].as_u64().unwrap_or(0);
    assert!(held > 0, "{}", fin[0]);
    let throttled: Vec<_> = events.iter().filter(|e| e["kind"] == "throttle").collect();
    assert!(!throttled.is_empty(), "a throttle line names the flooding server");
    assert!(throttled.iter().all(|t| t["server"]["pid"] != quiet[0]["server"]["pid"]), "the quiet server was never throttled");
    // investigate on the directory shows the quiet alert, once
    let shown = investigated_alerts(&[&log_dir]);
    let q: Vec<_> = shown.iter().filter(|a| a["line"]["event"]["argv"][2] == quiet_cmd.as_str()).collect();
    assert_eq!(q.len(), 1, "{shown:?}");
    assert_eq!(q[0]["rule"], "unexpected-shell");
}
