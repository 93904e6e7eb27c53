//! Unit tests of the alert aggregation (aggregate.rs).

use super::*;
use crate::event::{Alert, ServerRef, ToolCallRef};
use serde_json::json;

fn exec_ev(pid: u32, ts_ns: u64, exe: &str, argv: &[&str]) -> Event {
    let body = Body::Exec {
        filename: exe.into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        cwd: "/".into(),
        script: None,
        dev: 1,
        ino: 2,
        exe_is: None,
        shell_mode: None,
        script_writable_by: None,
        parent_exe: None,
        argv_truncated: false,
        exe_length: None,
        file_flags: Vec::new(),
    };
    Event { exe: Some(exe.into()), ..Event::for_test(pid, ts_ns, body, Some(("srv", 100))) }
}

fn alert_on(mut ev: Event, rule: &str, action: &'static str, call: Option<i64>) -> Event {
    ev.tool_call = call.map(|id| ToolCallRef { id: Some(json!(id)), name: Some("run".into()), method: Some("tools/call".into()), arguments: None, in_flight: Vec::new() });
    Event {
        body: Body::Alert(Box::new(Alert {
            alert_id: String::new(),
            rule: rule.into(),
            severity: "medium",
            action,
            description: String::new(),
            tags: Vec::new(),
            event: Box::new(ev.clone()),
            ancestry: Vec::new(),
            decided_by: None,
            killed: Vec::new(),
            delay_ns: None,
            late: false,
            tool_changes: Vec::new(),
            also_matched: Vec::new(),
        })),
        ..ev
    }
}

fn id_of(a: &Event) -> String {
    match &a.body {
        Body::Alert(x) => x.alert_id.clone(),
        _ => panic!("not an alert"),
    }
}

fn summary(e: &Event) -> &AlertSummary {
    match &e.body {
        Body::AlertSummary(s) => s,
        _ => panic!("not a summary: {e:?}"),
    }
}

#[test]
fn a_hundred_identical_shells_in_one_call_are_one_alert_counted_at_the_calls_end() {
    let mut g = Aggregator::new(0xabc, WINDOW_NS, MAX_OPEN);
    let mut written = Vec::new();
    for i in 0..100u32 {
        let mut a = alert_on(exec_ev(1000 + i, 10 + u64::from(i), "/usr/bin/dash", &["sh", "-c", "true"]), "unexpected-shell", "would_kill", Some(3));
        if g.offer(&mut a) {
            written.push(a);
        }
    }
    assert_eq!(written.len(), 1);
    assert_eq!(id_of(&written[0]), "abc-1");
    assert!(g.take_ready().is_empty(), "nothing more until the call ends");
    g.call_ended(999, &json!(3)); // another server's call 3: not this one
    assert!(g.take_ready().is_empty());
    g.call_ended(100, &json!(3));
    let r = g.take_ready();
    assert_eq!(r.len(), 1);
    let s = summary(&r[0]);
    assert_eq!((s.count, s.reason, s.alert_id.as_str(), s.rule.as_str()), (100, "tool_call_end", "abc-1", "unexpected-shell"));
    assert_eq!((s.first_ts.as_str(), s.last_ts.as_str()), ("t10", "t109"));
    assert_eq!(s.pids.len(), 64);
    assert_eq!(s.pids_more, 36);
    assert_eq!(s.subject, "exec /usr/bin/dash");
    assert_eq!(r[0].tool_call.as_ref().unwrap().id, Some(json!(3)), "the summary names the call");
    assert_eq!(g.repeats, 99);
    assert_eq!(g.open_count(), 0);
}

#[test]
fn findings_differ_by_rule_action_call_server_and_subject_but_not_by_argv() {
    let mut g = Aggregator::new(1, WINDOW_NS, MAX_OPEN);
    let mut n = 0;
    let mut offer = |g: &mut Aggregator, a: Event| {
        let mut a = a;
        if g.offer(&mut a) {
            n += 1;
        }
    };
    offer(&mut g, alert_on(exec_ev(1, 1, "/bin/x", &["x", "1"]), "r", "alert", Some(1)));
    offer(&mut g, alert_on(exec_ev(1, 2, "/bin/x", &["x", "2"]), "r", "alert", Some(1))); // same program, new argv: repeat
    offer(&mut g, alert_on(exec_ev(1, 3, "/bin/x", &["x"]), "r2", "alert", Some(1))); // other rule
    offer(&mut g, alert_on(exec_ev(1, 4, "/bin/x", &["x"]), "r", "killed", Some(1))); // other action
    offer(&mut g, alert_on(exec_ev(1, 5, "/bin/x", &["x"]), "r", "alert", Some(2))); // other call
    offer(&mut g, alert_on(exec_ev(1, 6, "/bin/x", &["x"]), "r", "alert", None)); // no call
    offer(&mut g, alert_on(exec_ev(1, 7, "/bin/y", &["y"]), "r", "alert", Some(1))); // other program
    let mut other = alert_on(exec_ev(1, 8, "/bin/x", &["x"]), "r", "alert", Some(1));
    other.server = Some(ServerRef { name: "b".into(), pid: 200 });
    offer(&mut g, other); // other server
    let mut by_kernel = alert_on(exec_ev(1, 9, "/bin/x", &["x"]), "r", "killed", Some(1));
    if let Body::Alert(a) = &mut by_kernel.body {
        a.decided_by = Some("kernel_lsm");
    }
    offer(&mut g, by_kernel); // a kill by another decider
    assert_eq!(n, 8);
    g.close_all();
    let r = g.take_ready();
    assert_eq!(r.len(), 1, "only the finding with a repeat gets a summary: {r:?}");
    assert_eq!((summary(&r[0]).count, summary(&r[0]).reason), (2, "shutdown"));
}

#[test]
fn the_window_closes_an_aggregate_and_a_later_repeat_is_a_new_alert() {
    let mut g = Aggregator::new(1, 1000, MAX_OPEN);
    let mut a = alert_on(exec_ev(1, 0, "/bin/x", &[]), "r", "alert", None);
    assert!(g.offer(&mut a));
    let mut b = alert_on(exec_ev(1, 500, "/bin/x", &[]), "r", "alert", None);
    assert!(!g.offer(&mut b));
    assert_eq!(id_of(&b), id_of(&a), "a repeat carries its alert's id");
    g.expire(999);
    assert!(g.take_ready().is_empty(), "window still open");
    g.expire(1000);
    let r = g.take_ready();
    assert_eq!((summary(&r[0]).count, summary(&r[0]).reason), (2, "window"));
    let mut c = alert_on(exec_ev(1, 1500, "/bin/x", &[]), "r", "alert", None);
    assert!(g.offer(&mut c), "after the window: a new alert line");
    assert_ne!(id_of(&c), id_of(&a));
    // a repeat arriving past the window before the tick closes it: new alert, old summary
    let mut d = alert_on(exec_ev(1, 1600, "/bin/x", &[]), "r", "alert", None);
    assert!(!g.offer(&mut d));
    let mut e = alert_on(exec_ev(1, 2600, "/bin/x", &[]), "r", "alert", None);
    assert!(g.offer(&mut e));
    let r = g.take_ready();
    assert_eq!((summary(&r[0]).count, summary(&r[0]).alert_id.clone()), (2, id_of(&c)));
}

#[test]
fn memory_is_bounded_and_an_eviction_writes_its_summary_and_is_counted() {
    let mut g = Aggregator::new(1, WINDOW_NS, 2);
    for (i, exe) in ["/a", "/a", "/b", "/c", "/c"].iter().enumerate() {
        let mut a = alert_on(exec_ev(1, i as u64, exe, &[]), "r", "alert", None);
        g.offer(&mut a);
    }
    assert_eq!(g.open_count(), 2);
    assert_eq!(g.evicted, 1);
    let r = g.take_ready();
    assert_eq!(r.len(), 1, "the oldest (/a, 2 occurrences) was evicted with its summary");
    assert_eq!((summary(&r[0]).count, summary(&r[0]).reason, summary(&r[0]).subject.as_str()), (2, "evicted", "exec /a"));
    g.close_all();
    let r = g.take_ready();
    assert_eq!(r.len(), 1, "/b had no repeat; /c had one");
    assert_eq!(summary(&r[0]).subject, "exec /c");
}

#[test]
fn every_occurrence_is_in_a_line_or_a_count() {
    // conservation: alert lines + repeats == occurrences; summaries' counts add up
    let mut g = Aggregator::new(1, 50, 3);
    let mut lines = 0u64;
    let mut total = 0u64;
    for i in 0..1000u64 {
        let exe = format!("/p{}", i % 5);
        let mut a = alert_on(exec_ev(1, i, &exe, &[]), "r", "alert", Some((i % 2) as i64));
        total += 1;
        if g.offer(&mut a) {
            lines += 1;
        }
        if i % 37 == 0 {
            g.expire(i);
        }
    }
    g.close_all();
    let counted: u64 = g.take_ready().iter().map(|e| summary(e).count - 1).sum();
    assert_eq!(lines + counted, total);
    assert_eq!(counted, g.repeats);
}
