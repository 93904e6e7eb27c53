//! The terminal renderer: sessions, their calls, and under each call what
//! it did, as text. Everything from the log is attacker-influenced, so
//! control characters (terminal escapes) and bidi overrides are shown as
//! escapes, never written raw. Each event's and alert's line is read back
//! (`shown.rs`) as its row is written, and the text goes out a session at
//! a time.

use super::lines::Lines;
use super::model::{Activity, Call, Phase, Report, Session, Status};
use super::shown::{ActivityText, AlertText, CallText};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};

/// Events of a long group listed without `--all`.
const SHOWN: usize = 12;
/// Characters of arguments and results shown on a call's line.
const PREVIEW: usize = 100;

pub struct Style {
    pub color: bool,
    /// List every event of every group.
    pub all: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// `s` with control characters and bidi overrides escaped, cut to `max` chars.
pub fn clean(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c) || ('\u{2066}'..='\u{2069}').contains(&c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// `HH:MM:SS.mmm` of an RFC 3339 time.
fn clock(ts: &str) -> &str {
    ts.split_once('T').map_or(ts, |(_, t)| t.get(..12).unwrap_or(t))
}

fn alert_line(st: &Style, indent: &str, a: &AlertText) -> String {
    let mut head = format!("!! ALERT {} {} [{}]", a.severity, a.rule, a.action);
    if a.count > 1 {
        let last = a.last_ts.as_deref().map(|t| format!(", last {}", clock(t))).unwrap_or_default();
        let _ = write!(head, " x{} (first {}{last})", a.count, clock(&a.ts));
    }
    format!("{indent}{} {}\n", st.paint("1;31", &clean(&head, 200)), clean(&a.description, 200))
}

fn activity_line(st: &Style, lines: &Lines, indent: &str, when: String, a: &Activity, t: &ActivityText) -> String {
    let mut line = format!(
        "{indent}{} {:<9} {:>7} {:<15} {}",
        st.paint("2", &format!("{when:<12}")),
        a.kind,
        a.pid().map(|p| p.to_string()).unwrap_or_default(),
        clean(t.comm.as_deref().unwrap_or(""), 15),
        clean(&t.summary, 300)
    );
    if let Some(ids) = a.in_flight() {
        let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        let _ = write!(line, "  (one of {} in flight: {})", ids.len(), clean(&ids.join(", "), 80));
    }
    if a.after_response() {
        line.push_str("  (after the response)");
    }
    let mut out = if a.failed() { st.paint("33", &line) } else { line };
    out.push('\n');
    for al in a.alerts() {
        out.push_str(&alert_line(st, &format!("{indent}    "), &AlertText::of(al, lines)));
    }
    out
}

/// Exec, connect, alerts and failures always show; other events up to
/// [`SHOWN`] unless `--all`.
fn notable(a: &Activity) -> bool {
    matches!(&*a.kind, "exec" | "connect" | "malformed" | "rpc") || !a.alerts().is_empty() || a.failed() && &*a.kind != "open"
}

fn counts(acts: &[&Activity]) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for a in acts {
        *by.entry(&*a.kind).or_default() += 1;
    }
    by.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ")
}

fn list(st: &Style, lines: &Lines, out: &mut String, indent: &str, acts: &[&Activity], when: impl Fn(&Activity, &ActivityText) -> String) {
    let mut others = 0usize;
    let mut hidden: Vec<&Activity> = Vec::new();
    for a in acts {
        if st.all || notable(a) || others < SHOWN {
            if !notable(a) {
                others += 1;
            }
            let t = ActivityText::of(a, lines);
            out.push_str(&activity_line(st, lines, indent, when(a, &t), a, &t));
        } else {
            hidden.push(a);
        }
    }
    if !hidden.is_empty() {
        let _ = writeln!(out, "{indent}… {} more ({}): --all lists them", hidden.len(), counts(&hidden));
    }
}

fn call_block(st: &Style, lines: &Lines, out: &mut String, c: &Call) {
    let status = match c.status {
        Status::Ok => st.paint("32", "ok"),
        Status::Error => st.paint("31", "ERROR"),
        Status::Cancelled => st.paint("33", "cancelled"),
        Status::NoResponse => st.paint("33", "no response"),
    };
    let mut head = format!("#{} {}", clean(&c.id.to_string(), 40), clean(c.method.as_deref().unwrap_or("?"), 60));
    if let Some(t) = &c.tool {
        let _ = write!(head, " {}", clean(t, 80));
    }
    let t = CallText::of(c, lines);
    let args = t.arguments.as_ref().map(|a| clean(&a.to_string(), PREVIEW)).unwrap_or_default();
    let when = t.request_ts.as_deref().map(clock).unwrap_or("(request not in log)");
    let latency = t.latency_ms.map(|l| format!("{l:.1} ms")).unwrap_or_default();
    let _ = writeln!(out, "  {} {}  {}  {latency}  {status}", st.paint("1", &format!("▸ {head}")), args, st.paint("2", when));
    if let Some(r) = &t.result {
        let _ = writeln!(out, "      → {}", clean(r, PREVIEW));
    }
    if c.truncated {
        let _ = writeln!(out, "      (request longer than the sensor keeps: arguments may be cut)");
    }
    let acts: Vec<&Activity> = c.activity.iter().collect();
    let start = c.start_ns;
    list(st, lines, out, "      ", &acts, |a, t| match start {
        Some(s) => format!("+{:.1} ms", (a.ts_ns() - s) as f64 / 1e6),
        None => clock(&t.ts).to_string(),
    });
    // alerts on the call itself, not carried by one of its events
    for al in c.alerts.iter().filter(|al| !c.activity.iter().any(|a| a.alerts().contains(al))) {
        out.push_str(&alert_line(st, "      ", &AlertText::of(al, lines)));
    }
}

fn outside_group(st: &Style, lines: &Lines, out: &mut String, phase: Option<Phase>, acts: &[&Activity]) {
    let title = match phase {
        Some(Phase::Startup) => "start-up (before the first request)",
        Some(Phase::AfterExit) => "after the server exited",
        _ => "between calls (no request in flight)",
    };
    let _ = writeln!(out, "  {} {}", st.paint("1;36", &format!("· {title}:")), counts(acts));
    list(st, lines, out, "      ", acts, |_, t| clock(&t.ts).to_string());
}

fn session_block(st: &Style, lines: &Lines, out: &mut String, s: &Session) {
    let secs = (s.end_ns - s.start_ns) as f64 / 1e9;
    let exit = match &s.exit {
        Some(e) => match (e.signal, e.code) {
            (Some(sig), _) => format!("killed by signal {sig}"),
            (None, c) => format!("exited {}", c.map(|c| c.to_string()).unwrap_or_default()),
        },
        None => "no exit in log".into(),
    };
    let instance = if s.server.instance > 1 { format!(" (pid reused: session {})", s.server.instance) } else { String::new() };
    let title = format!("━━ {}  pid {}{instance}", clean(&s.server.name, 120), s.server.pid);
    let _ = writeln!(out, "{}  {} → {} ({secs:.2} s)  {exit}", st.paint("1;34", &title), s.start, clock(&s.end));
    if s.server.names.len() > 1 {
        let other: Vec<String> = s.server.names.iter().filter(|n| **n != s.server.name).map(|n| clean(n, 120)).collect();
        let _ = writeln!(out, "   also named: {}", other.join(" | "));
    }
    // outside-call events in runs of one phase, calls in between, by time
    let mut items: Vec<(i128, Result<&Call, &Activity>)> = s.outside.iter().map(|a| (a.ts_ns(), Err(a))).collect();
    items.extend(s.calls.iter().map(|c| (c.start_ns.or(c.activity.first().map(|a| a.ts_ns())).unwrap_or(i128::MAX), Ok(c))));
    items.sort_by_key(|(t, _)| *t);
    let mut run: Vec<&Activity> = Vec::new();
    for (_, item) in items {
        match item {
            Err(a) => {
                if run.last().is_some_and(|r| r.phase != a.phase) {
                    outside_group(st, lines, out, run[0].phase, &run);
                    run.clear();
                }
                run.push(a);
            }
            Ok(c) => {
                if !run.is_empty() {
                    outside_group(st, lines, out, run[0].phase, &run);
                    run.clear();
                }
                call_block(st, lines, out, c);
            }
        }
    }
    if !run.is_empty() {
        outside_group(st, lines, out, run[0].phase, &run);
    }
    out.push('\n');
}

/// Writes the whole report as text, reading its events' lines from `lines`.
pub fn render(r: &Report, lines: &Lines, st: &Style, w: &mut impl Write) -> io::Result<()> {
    let mut out = String::new();
    let calls: usize = r.sessions.iter().map(|s| s.calls.len()).sum();
    let alerts: u64 = r.sessions.iter().map(|s| s.alerts).sum::<u64>() + r.other_alerts.len() as u64;
    let events: u64 = r.sources.iter().map(|s| s.events).sum();
    let _ = writeln!(
        out,
        "{} sessions, {calls} calls, {alerts} alerts ({events} events from {} files)",
        r.sessions.len(),
        r.sources.len()
    );
    if let Some(f) = &r.filters {
        let _ = writeln!(out, "filters: {}", clean(&f.to_string(), 300));
    }
    if !r.losses.is_empty() {
        let l = serde_json::to_string(&r.losses).unwrap_or_default();
        let _ = writeln!(out, "{}", st.paint("1;33", &format!("the sensor lost events while writing these logs: {l}: the timeline may be incomplete")));
    }
    out.push('\n');
    for s in &r.sessions {
        session_block(st, lines, &mut out, s);
        w.write_all(out.as_bytes())?;
        out.clear();
    }
    if !r.other_alerts.is_empty() {
        let _ = writeln!(out, "alerts outside any server:");
        for a in &r.other_alerts {
            let a = AlertText::of(a, lines);
            out.push_str(&alert_line(st, "  ", &a));
            let _ = writeln!(out, "      {} {}", clock(&a.ts), clean(&a.summary, 300));
        }
    }
    if r.sessions.is_empty() && r.other_alerts.is_empty() {
        let _ = writeln!(out, "nothing matches");
    }
    w.write_all(out.as_bytes())
}
