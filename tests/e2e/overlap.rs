//! Attribution with several tool calls in flight at once (the SDK client
//! with background steps), on real servers doing host work in each call:
//! a process a call started keeps that call however many others arrive
//! (the npm command server forks a shell per call), and what the server
//! does itself while calls overlap names every call in flight and no other
//! (the npm filesystem server reading FIFOs the test opens in a chosen
//! order). Attributing to the latest request fails both.

use crate::harness::*;
use crate::mcp::{drive, fs_server, mcp_env, request_with, server_argv, assert_nothing_lost};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;

/// The ids a `tool_call` lists as in flight (empty when it names one call).
fn in_flight_ids(e: &Value) -> BTreeSet<String> {
    e["tool_call"]["in_flight"].as_array().into_iter().flatten().map(|r| r["id"].to_string()).collect()
}

fn ids(v: &[&Value]) -> BTreeSet<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Index of the first event matching `pred` (the log's order is the
/// order things happened in: one ring buffer).
fn position(run: &Run, what: &str, pred: impl Fn(&Value) -> bool) -> usize {
    run.events.iter().position(pred).unwrap_or_else(|| panic!("no {what}\n{}", run.describe()))
}

#[test]
fn a_process_started_by_one_call_keeps_it_while_another_call_is_in_flight() {
    let d = scratch("overlap-shell");
    let [a1, a2, b1] = ["a1", "a2", "b1"].map(|n| d.join(n));
    for f in [&a1, &a2, &b1] {
        std::fs::write(f, "x\n").unwrap();
    }
    let [a_started, b_started, a_done] = ["a-started", "b-started", "a-done"].map(|n| d.join(n));
    // A opens a1, lets B start, opens a2 while B is in flight; B opens b1
    // and stays in flight until A is done with a2
    let a_cmd = format!(
        "cat {}; touch {}; {}; cat {}; touch {}",
        a1.display(), a_started.display(), wait_sh(&b_started), a2.display(), a_done.display()
    );
    let b_cmd = format!("touch {}; cat {}; {}", b_started.display(), b1.display(), wait_sh(&a_done));
    let env = mcp_env();
    let s = drive(
        &d,
        server_argv(&env, "MCP_SHELL_SERVER"),
        json!([
            {"list_tools": true},
            {"call": "run_command", "arguments": {"command": a_cmd}, "background": true},
            {"wait_file": a_started},
            {"call": "run_command", "arguments": {"command": b_cmd}},
        ]),
        &[],
    );
    assert_eq!(s.client["ok"], true, "{}", s.client);
    assert_eq!(s.client["results"][1]["content_text"], "x\nx\n", "{}", s.client);
    let run = &s.run;
    let a = request_with(run, "command", &a_cmd);
    let b = request_with(run, "command", &b_cmd);
    let path_is = |p: &Path| {
        let p = p.display().to_string();
        move |e: &Value| e["kind"] == "open" && e["path"] == p
    };
    let response_to = |r: &Value| {
        let id = r["id"].clone();
        move |e: &Value| e["kind"] == "rpc" && e["direction"] == "server_to_client" && e["id"] == id
    };
    // the calls truly overlap, and a2 was opened inside the overlap
    let b_req = position(run, "B's request", |e| e == &b);
    let a2_open = position(run, "the open of a2", path_is(&a2));
    let a_resp = position(run, "A's response", response_to(&a));
    let b_resp = position(run, "B's response", response_to(&b));
    assert!(b_req < a2_open && a2_open < a_resp.min(b_resp), "a2 opened while A and B were in flight\n{}", run.describe());
    // everything A's shell did is A's, also after B arrived
    for f in [&a1, &a2] {
        let opens: Vec<_> = run.events.iter().filter(|e| path_is(f)(e)).collect();
        assert!(!opens.is_empty(), "{} was opened\n{}", f.display(), run.describe());
        for o in opens {
            assert_eq!(o["tool_call"]["id"], a["id"], "{o}");
            assert_eq!(o["tool_call"]["arguments"]["command"], a_cmd, "{o}");
            assert!(in_flight_ids(o).is_empty(), "one call, named: {o}");
        }
    }
    // B's shell started while A was in flight: both are listed, none picked
    let b_opens: Vec<_> = run.events.iter().filter(|e| path_is(&b1)(e)).collect();
    assert!(!b_opens.is_empty(), "b1 was opened\n{}", run.describe());
    for o in b_opens {
        assert!(o["tool_call"]["id"].is_null(), "{o}");
        assert_eq!(in_flight_ids(o), ids(&[&a["id"], &b["id"]]), "{o}");
    }
    assert_nothing_lost(run);
}

/// Opens `fifo` for writing once the server has it open for reading
/// (polling, so a server that never opens it fails the wait, not hangs),
/// and writes `text`: the server's blocked open returns now.
fn feed_fifo(fifo: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut w = None;
    wait_for(&format!("a reader on {}", fifo.display()), || {
        w = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(fifo).ok();
        w.is_some()
    });
    w.unwrap().write_all(text.as_bytes()).unwrap();
}

#[test]
fn the_servers_own_opens_name_every_call_in_flight_and_only_those() {
    let d = scratch("overlap-fs");
    let (fa, fb) = (d.join("fifo-a"), d.join("fifo-b"));
    for f in [&fa, &fb] {
        let c = std::ffi::CString::new(f.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}", f.display());
    }
    // the server blocks reading each FIFO until the test opens it: A and B
    // are both in flight; B's FIFO is fed first, A's after B's response
    let events = d.join("events.jsonl");
    let feeder = {
        let (fa, fb, events) = (fa.clone(), fb.clone(), events.clone());
        std::thread::spawn(move || {
            let request = |p: &Path| {
                let p = p.display().to_string();
                move |e: &Value| e["kind"] == "rpc" && e["direction"] == "client_to_server" && e["arguments"]["path"] == p
            };
            wait_for_event(&events, "A's request read by the server", request(&fa));
            let b = wait_for_event(&events, "B's request read by the server", request(&fb));
            feed_fifo(&fb, "b\n");
            let b_answered = |e: &Value| e["kind"] == "rpc" && e["direction"] == "server_to_client" && e["id"] == b["id"];
            wait_for_event(&events, "B's response", b_answered);
            feed_fifo(&fa, "a\n");
        })
    };
    let env = mcp_env();
    let s = drive(
        &d,
        fs_server(&env, &d),
        json!([
            {"list_tools": true},
            {"call": "read_text_file", "arguments": {"path": fa}, "background": true},
            {"call": "read_text_file", "arguments": {"path": fb}},
        ]),
        &[],
    );
    feeder.join().expect("the FIFOs were fed in order");
    assert_eq!(s.client["results"][1]["content_text"], "a\n", "{}", s.client);
    assert_eq!(s.client["results"][2]["content_text"], "b\n", "{}", s.client);
    let run = &s.run;
    let a = request_with(run, "path", fa.to_str().unwrap());
    let b = request_with(run, "path", fb.to_str().unwrap());
    let open_of = |p: &Path| -> Vec<&Value> { run.find("open", "path", p.to_str().unwrap()) };
    // B's file was opened while A and B were in flight: both, and only they
    let (ob, oa) = (open_of(&fb), open_of(&fa));
    assert_eq!(ob.len(), 1, "{}", run.describe());
    assert!(ob[0]["tool_call"]["id"].is_null(), "{}", ob[0]);
    assert_eq!(in_flight_ids(ob[0]), ids(&[&a["id"], &b["id"]]), "{}", ob[0]);
    // A's file after B was answered: A alone
    assert_eq!(oa.len(), 1, "{}", run.describe());
    assert_eq!(oa[0]["tool_call"]["id"], a["id"], "{}", oa[0]);
    assert_eq!(oa[0]["tool_call"]["name"], "read_text_file", "{}", oa[0]);
    assert!(in_flight_ids(oa[0]).is_empty(), "{}", oa[0]);
    assert_nothing_lost(run);
}
