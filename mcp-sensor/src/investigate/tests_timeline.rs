//! Tests of reading logs and building the timeline from fixture lines.

use super::model::{Phase, Status};
use super::read::expand;
use super::tests_fixtures::*;
use serde_json::json;
use std::path::PathBuf;

#[test]
fn requests_are_matched_to_responses_by_id_even_out_of_order() {
    let r = report(&story());
    assert_eq!(r.sessions.len(), 1);
    let s = &r.sessions[0];
    assert_eq!(s.server.name, "secure-filesystem-server");
    assert_eq!(s.server.names, vec!["node /srv/fs/index.js /home/me", "secure-filesystem-server"]);
    let ids: Vec<_> = s.calls.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids, vec![json!(0), json!(3), json!(5), json!(6)]);
    let read = &s.calls[1];
    assert_eq!((read.tool.as_deref(), read.status), (Some("read_text_file"), Status::Ok));
    let said = r.call(read);
    assert_eq!(said.arguments, Some(json!({"path": "/home/me/notes.txt"})));
    assert_eq!(said.result.as_deref(), Some("remember the milk"));
    assert_eq!(said.latency_ms, Some(40.0));
    assert_eq!(said.request_ts.as_deref(), Some(ts(100).as_str()));
    assert_eq!(said.response_ts.as_deref(), Some(ts(140).as_str()));
    // 6 was answered before 5: each got its own response
    assert_eq!(r.call(&s.calls[2]).result.as_deref(), Some("No matches found"));
    assert_eq!(r.call(&s.calls[3]).result.as_deref(), Some("[FILE] notes.txt"));
    assert_eq!(s.notifications, 1);
    assert_eq!(s.exit.as_ref().map(|e| e.code), Some(Some(0)));
}

#[test]
fn activity_goes_under_the_call_it_names_and_startup_apart() {
    let r = report(&story());
    let s = &r.sessions[0];
    let read = &s.calls[1];
    let paths: Vec<_> = read.activity.iter().map(|a| r.event(a)["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(paths, vec!["/home/me/notes.txt", "/home/me/.ssh/id_rsa"]);
    assert!(read.activity.iter().all(|a| a.in_flight().is_none() && !a.after_response()));
    let outside: Vec<_> = s.outside.iter().map(|a| (&*a.kind, a.phase.unwrap())).collect();
    assert_eq!(
        outside,
        vec![("exec", Phase::Startup), ("open", Phase::Startup), ("open", Phase::BetweenCalls), ("exit", Phase::BetweenCalls)]
    );
    assert_eq!(r.event(&s.outside[2])["path"], "/etc/hosts");
}

#[test]
fn an_event_with_several_in_flight_is_under_each_marked_never_guessed() {
    let r = report(&story());
    let s = &r.sessions[0];
    for c in &s.calls[2..] {
        assert_eq!(c.activity.len(), 1, "{:?}", c.id);
        let a = &c.activity[0];
        assert_eq!(r.event(a)["path"], "/home/me");
        assert_eq!(a.in_flight().map(|ids| &ids[..]), Some(&[json!(5), json!(6)][..]));
    }
    let table = r.table();
    assert_eq!(table.matches("(one of 2 in flight: 5, 6)").count(), 2, "{table}");
}

#[test]
fn an_alert_marks_its_event_and_its_call() {
    let r = report(&story());
    let s = &r.sessions[0];
    assert_eq!(s.alerts, 1);
    let read = &s.calls[1];
    assert_eq!(read.alerts.len(), 1);
    assert_eq!(read.alerts[0].rule, "ssh-key-read");
    assert_eq!(super::shown::AlertText::of(&read.alerts[0], &r.log.lines).severity, "critical");
    assert!(read.activity[0].alerts().is_empty(), "notes.txt is not the key");
    assert_eq!(read.activity[1].alerts()[0].rule, "ssh-key-read");
    assert!(s.calls.iter().filter(|c| c.id != json!(3)).all(|c| c.alerts.is_empty()));
}

#[test]
fn alert_without_its_event_in_the_log_goes_to_the_call_it_names() {
    let key = open(130, 4242, FS, "/root/.ssh/id_ed25519", Some(tool_call(9, "run", json!({}))));
    let lines = vec![request(100, FS, 9, "run", json!({})), alert(131, "ssh-key-read", &key)];
    let r = report(&lines);
    let c = &r.sessions[0].calls[0];
    assert_eq!(c.alerts.len(), 1);
    assert!(c.activity.is_empty());
    // and one naming no call at all shows its triggering event outside calls
    let lone = open(5, 4242, FS, "/etc/shadow", None);
    let r = report(&[alert(6, "shadow-read", &lone)]);
    let s = &r.sessions[0];
    assert_eq!((s.outside.len(), r.summary(&s.outside[0]).as_str()), (1, "/etc/shadow (O_RDONLY)"));
    assert_eq!(s.outside[0].alerts()[0].rule, "shadow-read");
}

#[test]
fn activity_of_a_call_whose_request_is_not_in_the_log_still_gets_a_call() {
    // a rotated-away request: the call is known from the event's tool_call
    let lines = vec![open(10, 4242, FS, "/data/x", Some(tool_call(7, "read_file", json!({"path": "/data/x"})))), response(20, FS, 7, "read_file", "x", 15.0)];
    let r = report(&lines);
    let c = &r.sessions[0].calls[0];
    assert_eq!((c.id.clone(), c.tool.as_deref(), r.call(c).request_ts), (json!(7), Some("read_file"), None));
    assert_eq!(r.call(c).arguments, Some(json!({"path": "/data/x"})), "from the event's tool_call");
    assert_eq!(c.activity.len(), 1);
    assert_eq!(c.status, Status::Ok);
}

#[test]
fn activity_after_the_response_is_flagged() {
    let lines = vec![
        request(0, FS, 1, "spawn", json!({})),
        response(10, FS, 1, "spawn", "ok", 10.0),
        ev(50, "exec", 5000, Some(FS), json!({"filename":"/bin/sleep","argv":["sleep","60"],"cwd":"/","dev":1,"ino":1,"tool_call":tool_call(1, "spawn", json!({}))})),
    ];
    let r = report(&lines);
    assert!(r.sessions[0].calls[0].activity[0].after_response());
}

#[test]
fn pid_reuse_after_exit_starts_a_new_session() {
    let a = ("first", 777);
    let b = ("second", 777);
    let lines = vec![
        ev(0, "exec", 777, Some(a), json!({"filename":"/a","argv":["a"],"cwd":"/","dev":1,"ino":1})),
        ev(5, "exec", 778, Some(a), json!({"filename":"/c","argv":["c"],"cwd":"/","dev":1,"ino":1})),
        ev(10, "exit", 777, Some(a), json!({"code":1,"signal":null})),
        // the old server's child still acting: same session
        open(11, 778, a, "/tmp/leftover", None),
        ev(20, "exec", 777, Some(b), json!({"filename":"/b","argv":["b"],"cwd":"/","dev":1,"ino":1})),
    ];
    let r = report(&lines);
    assert_eq!(r.sessions.len(), 2);
    assert_eq!((r.sessions[0].server.name.as_str(), r.sessions[0].server.instance), ("first", 1));
    assert_eq!(r.sessions[0].outside.last().unwrap().phase, Some(Phase::AfterExit));
    assert_eq!((r.sessions[1].server.name.as_str(), r.sessions[1].server.instance), ("second", 2));
    assert_eq!(r.sessions[1].outside.len(), 1);
}

#[test]
fn losses_add_up_final_totals_and_deltas_of_runs_without_one() {
    let d = |ms, q, fin| ev(ms, "drops", 1, None, json!({"kernel":{"open":q},"queue":q,"other":{},"final":fin}));
    // run 1: deltas 2 + 3 then final total 6; run 2 crashed after a delta of 4
    let r = report(&[d(1, 2, false), d(2, 3, false), d(3, 6, true), d(4, 4, false)]);
    assert_eq!(r.losses.queue, 10);
    assert_eq!(r.losses.kernel["open"], 10);
}

#[test]
fn a_torn_last_line_is_reported_and_skipped_nothing_else_lost() {
    let mut t = text(&story());
    let whole = story().len() as u64 - 1; // the line numbers of the story are 1..=whole+1
    t.push_str(r#"{"ts":"2026-11-21T12:00:01Z","kind":"open","pid":4242,"path":"/ha"#);
    let log = log_of(&t);
    assert_eq!(log.sources[0].events, whole + 1);
    assert_eq!(log.sources[0].bad_lines, 1);
    assert!(log.sources[0].torn_tail);
    assert_eq!(log.problems.len(), 1);
    let p = &log.problems[0];
    assert!(p.starts_with(&format!("events.jsonl:{}: torn last line", whole + 2)), "{p}");
    // a last line without newline that is a whole event is kept
    let mut t = text(&story());
    t.pop();
    assert_eq!(log_of(&t).sources[0].events, whole + 1);
    assert!(log_of(&t).problems.is_empty());
}

#[test]
fn a_bad_line_in_the_middle_is_reported_counted_and_reading_goes_on() {
    let lines = story();
    let mut t = text(&lines[..3]);
    t.push_str("{\"not\": \"an event\"}\n\u{1}garbage\n");
    t.push_str(&text(&lines[3..]));
    let super::tests_fixtures::Read { log, r } = read_text(&t);
    assert_eq!(log.sources[0].events as usize, lines.len());
    assert_eq!(log.sources[0].bad_lines, 2);
    assert!(!log.sources[0].torn_tail);
    assert!(log.problems[0].starts_with("events.jsonl:4: not an event: no `kind`"), "{:?}", log.problems);
    assert!(log.problems[1].starts_with("events.jsonl:5: not JSON"), "{:?}", log.problems);
    assert_eq!(r.sessions[0].calls.len(), 4);
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mcp-sensor-investigate-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn rotated_files_are_read_oldest_first_whatever_the_order_named() {
    let d = scratch("rotation");
    let lines = story();
    // split the story over four files: .10 oldest, then .2, .1, current
    let parts = [("events.jsonl.10", &lines[0..4]), ("events.jsonl.2", &lines[4..8]), ("events.jsonl.1", &lines[8..12]), ("events.jsonl", &lines[12..])];
    for (name, part) in parts {
        std::fs::write(d.join(name), text(part)).unwrap();
    }
    std::fs::write(d.join("other.txt"), "not a log").unwrap();
    let names = |files: Vec<PathBuf>| files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect::<Vec<_>>();
    let want = vec!["events.jsonl.10", "events.jsonl.2", "events.jsonl.1", "events.jsonl"];
    assert_eq!(names(expand(std::slice::from_ref(&d)).unwrap()), want);
    // as a shell glob would name them
    let globbed: Vec<PathBuf> = ["events.jsonl", "events.jsonl.1", "events.jsonl.10", "events.jsonl.2"].iter().map(|n| d.join(n)).collect();
    assert_eq!(names(expand(&globbed).unwrap()), want);
    let (r, _) = super::timeline::read(&expand(std::slice::from_ref(&d)).unwrap()).unwrap();
    assert_eq!(r.sessions.len(), 1);
    assert_eq!(r.sessions[0].calls[1].activity.len(), 2);
    assert_eq!(r.sessions[0].calls[1].alerts.len(), 1);
    assert_eq!(r.sources.len(), 4);
    let empty = scratch("empty");
    let err = expand(&[empty]).unwrap_err().to_string();
    assert!(err.contains("no events.jsonl* files"), "{err}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_call_the_client_cancelled_says_so() {
    let srv = ("fs", 10);
    let cancel = ev(
        20,
        "rpc",
        10,
        Some(srv),
        json!({"direction": "client_to_server", "message": "notification", "method": "notifications/cancelled", "request_id": 7, "size": 80, "truncated": false}),
    );
    let lines = [request(0, srv, 7, "slow", json!({})), request(5, srv, 8, "other", json!({})), cancel];
    let r = report(&lines);
    let calls = &r.sessions[0].calls;
    assert_eq!((calls[0].status, calls[1].status), (Status::Cancelled, Status::NoResponse));
}

#[test]
fn the_report_holds_a_small_fixed_size_per_event() {
    // one Activity per host event and a LineRef per event, call and alert:
    // growing them grows investigate's memory with the logs' size
    assert_eq!(std::mem::size_of::<super::lines::LineRef>(), 16);
    assert_eq!(std::mem::size_of::<super::model::Activity>(), 48);
    assert_eq!(std::mem::size_of::<super::model::Alerts>(), 8);
    assert_eq!(std::mem::size_of::<Option<super::lines::LineRef>>(), 16);
    // one per call: smaller than the six or more events a call has
    assert_eq!(std::mem::size_of::<super::model::Call>(), 192);
}

#[test]
fn an_activity_keeps_its_time_and_pid_whatever_they_are() {
    use super::lines::{Backing, Lines};
    use super::model::Activity;
    let mut lines = Lines::default();
    let s = lines.add("mem".into(), Backing::Memory(Vec::new()));
    let at = lines.refer(s, 0, b"x");
    // a time past 64 bits of ns (after 2262, before 1677) is kept apart, whole
    for ts in [0, -1, i128::from(i64::MAX), i128::from(i64::MAX) + 1, i128::from(i64::MIN) - 1] {
        for pid in [None, Some(0), Some(u32::MAX)] {
            let a = Activity::new(at, ts, "open".into(), pid);
            assert_eq!((a.ts_ns(), a.pid(), a.failed(), a.after_response(), a.in_alert()), (ts, pid, false, false, false));
        }
    }
}

#[test]
fn an_alert_shows_the_count_of_its_summary_and_a_copy_from_the_alerts_log_is_read_once() {
    use super::lines::Backing;
    use super::shown::AlertText;
    use std::path::Path;
    let call = tool_call(3, "read_text_file", json!({}));
    let o = open(1000, 4242, FS, "/root/.ssh/id_rsa", Some(call.clone()));
    let mut a = alert(1000, "ssh-key-read", &o);
    a["alert_id"] = json!("ab-1");
    let summary = json!({"ts": ts(2000), "kind": "alert_summary", "pid": 4242, "comm": "node", "alert_id": "ab-1",
        "rule": "ssh-key-read", "count": 7, "first_ts": ts(1000), "last_ts": ts(2000), "reason": "tool_call_end",
        "server": {"name": FS.0, "pid": FS.1}, "tool_call": call});
    let events = text(&[request(900, FS, 3, "read_text_file", json!({})), o, a.clone(), summary.clone()]);
    // the alerts log holds the alert and its summary again
    let alerts = text(&[a, summary]);
    let mut log = super::read::Log::default();
    let mut b = super::timeline::Builder::default();
    log.read_one(Path::new("events.jsonl"), Backing::Memory(events.into_bytes()), &mut |l| b.add(&l)).unwrap();
    log.read_one(Path::new("alerts.jsonl"), Backing::Memory(alerts.into_bytes()), &mut |l| b.add(&l)).unwrap();
    let r = b.finish(&log);
    assert_eq!(log.sources[1].duplicates, 2, "{:?}", log.sources);
    assert_eq!(log.sources[1].events, 0);
    assert_eq!(r.sessions[0].alerts, 1, "shown once");
    let c = &r.sessions[0].calls[0];
    assert_eq!(c.alerts.len(), 1);
    let t = AlertText::of(&c.alerts[0], &log.lines);
    assert_eq!((t.count, t.last_ts.as_deref()), (7, Some(ts(2000).as_str())));
    let read = Read { log, r };
    let table = read.table();
    assert!(table.contains("ssh-key-read [alert] x7 (first "), "{table}");
}

#[test]
fn an_alert_the_event_log_lost_is_shown_from_the_alerts_log() {
    use super::lines::Backing;
    use std::path::Path;
    let call = tool_call(3, "run", json!({}));
    let o = open(1000, 4242, FS, "/root/.ssh/id_rsa", Some(call));
    let mut a = alert(1000, "ssh-key-read", &o);
    a["alert_id"] = json!("ab-9");
    // the event log kept only later lines: the alert is in the alerts log alone
    let events = text(&[response(5000, FS, 3, "run", "ok", 1.0)]);
    let mut log = super::read::Log::default();
    let mut b = super::timeline::Builder::default();
    log.read_one(Path::new("events.jsonl"), Backing::Memory(events.into_bytes()), &mut |l| b.add(&l)).unwrap();
    log.read_one(Path::new("alerts.jsonl"), Backing::Memory(text(&[a]).into_bytes()), &mut |l| b.add(&l)).unwrap();
    let r = b.finish(&log);
    assert_eq!(r.sessions.len(), 1);
    assert_eq!(r.sessions[0].alerts, 1);
    assert_eq!(r.sessions[0].calls[0].alerts.len(), 1, "on its call, by its tool_call id");
}
