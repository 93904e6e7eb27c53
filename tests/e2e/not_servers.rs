//! `mcp-sensor run` is hard to fool (issue 17): programs that pass JSON
//! lines along are not MCP servers, and neither is a reader of the
//! daemon's own log. Each test first shows the daemon was watching: in the
//! same run the SDK client's real server IS found, and the not-servers were
//! judged (discovery's debug line names their pids). Their discarded
//! events are counted in the log's `drops` lines, and the counts add up.

use crate::daemon::{client, run_client, Daemon};
use crate::harness::*;
use serde_json::{json, Value};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

const DEBUG: (&str, &str) = ("MCP_SENSOR_DEBUG_DISCOVERY", "1");

/// `sh -c SCRIPT` in a process group of its own, stderr piped: each stage
/// of the pipeline prints its pid there (`echo $$ >&2; exec PROGRAM`), so
/// the candidate's session is that pid.
fn pipeline(script: &str) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("start the pipeline")
}

fn pids(stderr: &str) -> Vec<u64> {
    stderr.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// The real server is found in this run (the positive control); returns its pid.
fn real_server_found(d: &Path, evs: &[Value]) -> u64 {
    let target = d.join("notes.txt");
    let call = evs
        .iter()
        .find(|e| e["kind"] == "rpc" && e["tool"] == "read_text_file" && e["arguments"]["path"] == target.display().to_string())
        .expect("the real server's call is logged");
    let pid = call["pid"].as_u64().unwrap();
    assert!(evs.iter().any(|e| e["kind"] == "server_found" && e["pid"] == pid), "the real server was found");
    pid
}

/// None of `pids` is a server: no `server_found`, no `rpc` of theirs.
fn assert_not_servers(evs: &[Value], pids: &[u64], stderr: &str) {
    for pid in pids {
        let theirs: Vec<&Value> = evs
            .iter()
            .filter(|e| e["pid"] == *pid && (e["kind"] == "server_found" || e["kind"] == "rpc"))
            .collect();
        assert!(theirs.is_empty(), "pid {pid} taken for a server: {theirs:?}");
        assert!(
            stderr.contains(&format!("pid {pid} is not an MCP server")),
            "the daemon judged pid {pid} (it was watching): {stderr}"
        );
    }
}

/// Discovery's discards are in the `drops` lines: the final line's
/// `discovery_discarded` is the sum of the periodic ones, non-zero, and
/// the number the daemon says on stderr at exit.
fn assert_discards_counted(evs: &[Value], stderr: &str) -> u64 {
    let n = |e: &Value| e["other"]["discovery_discarded"].as_u64().unwrap_or(0);
    let fin: Vec<&Value> = evs.iter().filter(|e| e["kind"] == "drops" && e["final"] == true).collect();
    assert_eq!(fin.len(), 1);
    let total = n(fin[0]);
    let periodic: u64 = evs.iter().filter(|e| e["kind"] == "drops" && e["final"] == false).map(n).sum();
    assert!(total > 0, "the not-servers' events were discarded and counted: {}", fin[0]);
    assert_eq!(periodic, total, "the periodic drops lines add up to the final totals");
    assert!(stderr.contains(&format!("({total} of their events discarded)")), "{stderr}");
    total
}

#[test]
fn json_lines_through_cat_and_sort_are_not_a_server() {
    let d = scratch("not-server-cat");
    std::fs::write(d.join("notes.txt"), "x\n").unwrap();
    let daemon = Daemon::start_env(&d, "", &[], &[DEBUG]);
    // the issue's pipeline: one MCP-looking notification, then a JSON line
    // that is not JSON-RPC; cat and sort both have pipes on stdin and stdout
    let line = r#"{"jsonrpc":"2.0","method":"notifications/message"}\n{"kind":"x"}\n"#;
    let mut p = pipeline(&format!(
        "printf '{line}' | sh -c 'echo $$ >&2; exec cat' | sh -c 'echo $$ >&2; exec sort' | cat >/dev/null"
    ));
    let mut err = String::new();
    p.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(p.wait().unwrap().success(), "{err}");
    let stages = pids(&err);
    assert_eq!(stages.len(), 2, "{err}");
    run_client(&mut client(&d, json!([{"call": "read_text_file", "arguments": {"path": d.join("notes.txt")}}])));
    let (status, evs) = daemon_stop(daemon);
    assert_eq!(status.0, 0);
    real_server_found(&d, &evs);
    assert_not_servers(&evs, &stages, &status.1);
    assert_discards_counted(&evs, &status.1);
}

#[test]
fn a_reader_of_the_daemons_own_log_is_not_a_server_and_does_not_feed_on_itself() {
    let d = scratch("not-server-tail");
    std::fs::write(d.join("notes.txt"), "x\n").unwrap();
    let daemon = Daemon::start_env(&d, "", &[], &[DEBUG]);
    let log = daemon.log_dir.join("events.jsonl");
    // tail's stdin a pipe too, as in a container
    let mut p = pipeline(&format!(
        "true | sh -c 'echo $$ >&2; exec tail -n 5 -F {}' | sh -c 'echo $$ >&2; exec grep --line-buffered kind.:.rpc' | cat >/dev/null",
        log.display()
    ));
    let mut err_pipe = p.stderr.take().unwrap();
    // the real server's session runs while the loop reads the log: its
    // rpc lines (with `method` and `id`, requests and their answers) pass
    // through tail, and they are all grep passes on
    run_client(&mut client(&d, json!([{"call": "read_text_file", "arguments": {"path": d.join("notes.txt")}}])));
    std::thread::sleep(std::time::Duration::from_secs(2));
    let size_then = std::fs::metadata(&log).unwrap().len();
    std::thread::sleep(std::time::Duration::from_secs(2));
    // the window's lines about the loop's own processes (other tests may
    // run beside this one under the same host-wide view: their lines are
    // not the loop's)
    let window = {
        use std::io::{Seek, SeekFrom};
        let mut f = std::fs::File::open(&log).unwrap();
        f.seek(SeekFrom::Start(size_then)).unwrap();
        let mut text = String::new();
        f.read_to_string(&mut text).unwrap();
        text
    };
    // SAFETY: signalling the process group this test started.
    unsafe { libc::kill(-(p.id() as i32), libc::SIGKILL) };
    let _ = p.wait();
    let mut err = String::new();
    err_pipe.read_to_string(&mut err).unwrap();
    let stages = pids(&err);
    assert_eq!(stages.len(), 2, "{err}");
    let of_loop: Vec<&str> = window
        .lines()
        .filter(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or(Value::Null);
            let pid = |x: &Value| x.as_u64().is_some_and(|p| stages.contains(&p));
            pid(&v["pid"]) || pid(&v["server"]["pid"])
        })
        .collect();
    assert!(of_loop.is_empty(), "in 2 s the log took {} lines about the loop itself: it feeds on itself\n{}", of_loop.len(), of_loop.iter().take(5).copied().collect::<Vec<_>>().join("\n"));
    let (status, evs) = daemon_stop(daemon);
    assert_eq!(status.0, 0);
    real_server_found(&d, &evs);
    assert_not_servers(&evs, &stages, &status.1);
    assert_discards_counted(&evs, &status.1);
}

/// A not-server's one large write: its first line (JSON, not JSON-RPC)
/// gets it rejected, and the rest of the write, captured in 16 KiB records
/// already in the ring, is dropped with it, not taken for a capture gap of
/// an MCP channel. Found by a trial: `stdio_gaps` 1, `stdio_gap_bytes`
/// 16,384 and a damaged message in the drops line of a host whose one MCP
/// server lost nothing.
#[test]
fn a_not_servers_large_write_is_no_capture_gap() {
    let d = scratch("not-server-gap");
    std::fs::write(d.join("notes.txt"), "x\n").unwrap();
    let daemon = Daemon::start_env(&d, "", &[], &[DEBUG]);
    // a JSON line that is not JSON-RPC, then 40 KB more in the same write
    let write = "import os, time; os.write(1, b'{\"a\":1}\\n{\"b\":\"' + b'x' * 40000 + b'\"}\\n'); time.sleep(1)";
    let mut p = Command::new("python3").args(["-c", write]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("start python3");
    let mut out = Vec::new();
    p.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    drop(p.stdin.take());
    assert!(p.wait().unwrap().success());
    assert_eq!(out.len(), 40017, "the whole write came through");
    let stages = vec![u64::from(p.id())];
    run_client(&mut client(&d, json!([{"call": "read_text_file", "arguments": {"path": d.join("notes.txt")}}])));
    let (status, evs) = daemon_stop(daemon);
    assert_eq!(status.0, 0);
    real_server_found(&d, &evs);
    assert_not_servers(&evs, &stages, &status.1);
    let fin = evs.iter().find(|e| e["kind"] == "drops" && e["final"] == true).expect("a final drops line");
    for key in ["stdio_gaps", "stdio_gap_bytes", "stdio_messages_damaged"] {
        assert_eq!(fin["other"][key].as_u64().unwrap_or(0), 0, "no stdio was lost: {fin}");
    }
}

/// SIGTERM; (the exit status, the daemon's stderr) and the log's events.
fn daemon_stop(mut d: Daemon) -> ((i32, String), Vec<Value>) {
    let log = d.log_dir.join("events.jsonl");
    d.signal(libc::SIGTERM);
    let status = d.child.wait().unwrap().code().unwrap_or(-1);
    ((status, d.stderr_text()), read_events(&log))
}
