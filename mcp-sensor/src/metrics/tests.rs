//! Unit tests of the metrics (no root): events in, exposition text out.

use super::*;
use crate::event::{Alert, AlertSummary, Rpc};

fn plan() -> crate::features::Plan {
    let mut p = crate::features::Plan::for_kernel(&Default::default());
    p.kernel = "6.1.0-test".into();
    p
}

const SRV: Option<(&str, u32)> = Some(("secure-filesystem-server", 7));

fn open_ev() -> Event {
    let body = Body::Open {
        path: "/home/me/.ssh/id_ed25519".into(),
        resolved: true,
        flags: vec!["O_RDONLY"],
        ret: 3,
        error: None,
        dev: 1,
        ino: 2,
        canonical_path: None,
        path_length: None,
        syscall: "openat",
        file_flags: Vec::new(),
    };
    Event::for_test(8, 10, body, SRV)
}

fn alert(rule: &str, action: &'static str, decided_by: Option<&'static str>) -> Event {
    let ev = open_ev();
    let a = Alert {
        alert_id: "x-1".into(),
        rule: rule.into(),
        severity: "high",
        action,
        description: String::new(),
        tags: Vec::new(),
        event: Box::new(ev.clone()),
        ancestry: Vec::new(),
        decided_by,
        killed: Vec::new(),
        delay_ns: None,
        late: false,
        tool_changes: Vec::new(),
        also_matched: Vec::new(),
    };
    Event { body: Body::Alert(Box::new(a)), ..ev }
}

fn call(tool: &str) -> Event {
    let mut r = Rpc::new(Direction::ClientToServer, "request", 50, false);
    r.method = Some("tools/call".into());
    r.tool = Some(tool.into());
    Event::for_test(8, 5, Body::Rpc(r), SRV)
}

/// The sample line of `name{labels}` in `text`, its value.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn events_alerts_calls_and_enforcement_render_as_openmetrics() {
    let tap = Tap::new(&plan(), true, 32 << 20);
    let found = Event::for_test(7, 1, Body::ServerFound { how: "stdio_pipes", held: 0, held_lost: 0, confirmed_after_ms: 2.0 }, SRV);
    for ev in [found, call("read_text_file"), call("read_text_file"), call("list_directory"), open_ev(), alert("ssh-key-read", "alert", None)] {
        tap.observe(&ev);
    }
    tap.observe(&alert("test-kill", "killed", Some("kernel_lsm")));
    tap.observe(&alert("test-kill", "killed", Some("agent")));
    let summary = AlertSummary {
        alert_id: "x-1".into(),
        rule: "ssh-key-read".into(),
        severity: "high",
        action: "alert",
        subject: "open /home/me/.ssh/id_ed25519".into(),
        count: 4,
        first_ts: "a".into(),
        last_ts: "b".into(),
        reason: "tool_call_end",
        pids: vec![8],
        pids_more: 0,
    };
    tap.observe(&Event::for_test(8, 11, Body::AlertSummary(Box::new(summary)), SRV));
    let t = tap.metrics.render();
    assert!(t.ends_with("# EOF\n"), "{t}");
    assert_eq!(value(&t, "mcp_sensor_alerts_total{rule=\"ssh-key-read\",action=\"alert\"}"), Some(4.0), "the alert and its 3 repeats\n{t}");
    assert_eq!(value(&t, "mcp_sensor_events_total{kind=\"rpc\"}"), Some(3.0), "{t}");
    assert_eq!(value(&t, "mcp_sensor_events_total{kind=\"alert\"}"), Some(3.0), "{t}");
    assert_eq!(value(&t, "mcp_sensor_events_total{kind=\"open\"}"), Some(1.0), "{t}");
    assert_eq!(value(&t, "mcp_sensor_tool_calls_total{server=\"secure-filesystem-server\",tool=\"read_text_file\"}"), Some(2.0), "{t}");
    assert_eq!(value(&t, "mcp_sensor_tool_calls_total{server=\"secure-filesystem-server\",tool=\"list_directory\"}"), Some(1.0), "{t}");
    assert_eq!(value(&t, "mcp_sensor_enforcements_total{action=\"killed\",mechanism=\"kernel\",decided_by=\"kernel_lsm\"}"), Some(1.0), "{t}");
    assert_eq!(value(&t, "mcp_sensor_enforcements_total{action=\"killed\",mechanism=\"agent\",decided_by=\"agent\"}"), Some(1.0), "{t}");
    assert_eq!(value(&t, "mcp_sensor_watched_servers"), Some(1.0), "{t}");
    assert_eq!(value(&t, "mcp_sensor_sessions_total"), Some(1.0), "{t}");
    assert!(t.contains("# TYPE mcp_sensor_events counter"), "{t}");
    let build = t.lines().find(|l| l.starts_with("mcp_sensor_build_info{")).unwrap_or_else(|| panic!("{t}"));
    assert!(build.contains("version=\"0.1.0\"") || build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))), "{build}");
    assert!(build.contains("mode=\"enforce\"") && build.contains("kernel=\"6.1.0-test\"") && build.ends_with(" 1"), "{build}");
    assert_eq!(value(&t, "mcp_sensor_ring_buffer_size_bytes"), Some((32 << 20) as f64), "{t}");
    for name in ["mcp_sensor_export_queue_spans", "mcp_sensor_export_failures_total", "mcp_sensor_export_dropped_total"] {
        assert!(t.lines().any(|l| l.starts_with(name)), "{name} is exposed before the exporter feeds it\n{t}");
    }
    // the server's root exits: no longer watched
    tap.observe(&Event::for_test(7, 20, Body::Exit { code: Some(0), signal: None }, SRV));
    assert_eq!(value(&tap.metrics.render(), "mcp_sensor_watched_servers"), Some(0.0));
}

#[test]
fn drop_totals_become_counters_by_stage_and_kind_moving_by_deltas() {
    let tap = Tap::new(&plan(), false, 1 << 20);
    let mut kernel = vec![0; crate::abi::EV_KIND_MAX as usize];
    kernel[crate::abi::EV_OPEN as usize] = 5;
    let mut other = vec![0; crate::abi::CNT_MAX as usize];
    other[crate::abi::CNT_WATCH_FULL as usize] = 2;
    let t = Totals { kernel: kernel.clone(), other: other.clone(), queue: 3, log_write_failed: 1, ..Default::default() };
    assert!(tap.health().is_err(), "not running yet");
    tap.set_running(true);
    tap.on_tick(&t, 0, 100);
    kernel[crate::abi::EV_OPEN as usize] = 9;
    tap.on_tick(&Totals { kernel, other, queue: 3, log_write_failed: 1, ..Default::default() }, 4, 250);
    let text = tap.metrics.render();
    assert_eq!(value(&text, "mcp_sensor_drops_total{stage=\"ring_buffer\",kind=\"open\"}"), Some(9.0), "{text}");
    assert_eq!(value(&text, "mcp_sensor_drops_total{stage=\"kernel\",kind=\"watch_map_full\"}"), Some(2.0), "{text}");
    assert_eq!(value(&text, "mcp_sensor_drops_total{stage=\"queue\",kind=\"record\"}"), Some(3.0), "{text}");
    assert_eq!(value(&text, "mcp_sensor_drops_total{stage=\"output\",kind=\"log_write_failed\"}"), Some(1.0), "{text}");
    assert_eq!(value(&text, "mcp_sensor_drops_total{stage=\"agent\",kind=\"server_budget_events\"}"), Some(4.0), "{text}");
    assert_eq!(value(&text, "mcp_sensor_ring_buffer_records_total"), Some(250.0), "{text}");
    assert_eq!(tap.health(), Ok("ok".into()));
    assert_eq!(tap.board.lock().unwrap().drops.kernel.get("open"), Some(&9), "status shows the same totals");
    tap.set_running(false);
    assert!(tap.health().unwrap_err().contains("not running"));
}

#[test]
fn export_metrics_fed_by_the_exporter_are_exposed() {
    let tap = Tap::new(&plan(), false, 1 << 20);
    export().failures.inc();
    export().queue_spans.set(17);
    let t = tap.metrics.render();
    assert!(value(&t, "mcp_sensor_export_failures_total").is_some_and(|v| v >= 1.0), "{t}");
    assert_eq!(value(&t, "mcp_sensor_export_queue_spans"), Some(17.0), "{t}");
}

#[test]
fn tool_call_label_sets_are_bounded_and_the_overflow_counted() {
    let tap = Tap::new(&plan(), false, 1 << 20);
    for i in 0..MAX_TOOL_SERIES + 5 {
        tap.observe(&call(&format!("tool{i}")));
    }
    tap.on_tick(&Totals::default(), 0, 0);
    let t = tap.metrics.render();
    assert_eq!(value(&t, "mcp_sensor_tool_calls_total{server=\"(other)\",tool=\"(other)\"}"), Some(5.0), "{}", &t[t.len() - 2000..]);
    assert_eq!(value(&t, "mcp_sensor_drops_total{stage=\"metrics\",kind=\"tool_call_series_over_limit\"}"), Some(5.0));
}

#[test]
fn kind_names_are_the_lines_kind_field() {
    for ev in [open_ev(), call("x"), alert("r", "alert", None), Event::for_test(1, 1, Body::Exit { code: None, signal: None }, None)] {
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["kind"], kind(&ev.body));
    }
}
