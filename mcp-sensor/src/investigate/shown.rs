//! The report as shown: each host event's and alert's line read back
//! (`lines.rs`) as it is rendered, one at a time, and what is said of it.
//! [`Shown`] serialises a report in the structure docs/investigate.md
//! documents (`--format json`, the `--html` page's data); the table asks
//! [`CallText::of`], [`ActivityText::of`] and [`AlertText::of`] directly.

use super::describe::describe;
use super::lines::Lines;
use super::model::{Activity, Alert, Call, Named, Report, Session};
use serde::ser::{SerializeStruct, Serializer};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// Said of an event whose line could not be read back (see `lines.rs`).
pub const UNAVAILABLE: &str = "(unavailable: the log file changed after it was read)";

fn str_of(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_string)
}

/// What a call's request and response lines say, read back.
pub struct CallText {
    pub arguments: Option<Value>,
    /// When the server read the request; `None` when the request line is
    /// not in the logs.
    pub request_ts: Option<String>,
    pub response_ts: Option<String>,
    /// The response's summary of the result or error.
    pub result: Option<String>,
    pub is_error: Option<bool>,
    pub latency_ms: Option<f64>,
}

impl CallText {
    /// `c`'s lines read back from `lines`; placeholders for one that changed.
    pub fn of(c: &Call, lines: &Lines) -> CallText {
        let mut t = CallText { arguments: None, request_ts: None, response_ts: None, result: None, is_error: None, latency_ms: None };
        let at = |r, ts: Option<i128>| lines.get(r, ts.unwrap_or_default());
        if let Some(r) = &c.request {
            match at(r, c.start_ns) {
                Some(req) => {
                    t.request_ts = str_of(&req, "ts");
                    t.arguments = req.get("arguments").cloned();
                }
                None => t.request_ts = c.start_ns.map(crate::timefmt::rfc3339),
            }
        } else if let Some((r, ts, part)) = c.named.as_deref() {
            let line = at(r, Some(*ts));
            let named = match (part, &line) {
                (_, None) => None,
                (Named::Line, Some(l)) => Some(l),
                (Named::ToolCall, Some(l)) => l.get("tool_call"),
                (Named::InFlight(n), Some(l)) => l.get("tool_call").and_then(|t| t.get("in_flight")).and_then(|f| f.get(n)),
            };
            t.arguments = named.and_then(|n| n.get("arguments")).cloned();
        }
        if let Some(r) = &c.response {
            match at(r, c.end_ns) {
                Some(resp) => {
                    t.response_ts = str_of(&resp, "ts");
                    t.result = str_of(&resp, "result");
                    t.is_error = resp.get("is_error").and_then(Value::as_bool);
                    t.latency_ms = resp.get("latency_ms").and_then(Value::as_f64);
                }
                None => {
                    t.response_ts = c.end_ns.map(crate::timefmt::rfc3339);
                    t.result = Some(UNAVAILABLE.into());
                }
            }
        }
        t
    }
}

/// What an activity's line says, read back.
pub struct ActivityText {
    pub ts: String,
    pub comm: Option<String>,
    pub exe: Option<String>,
    /// One line saying what happened (path, argv, address, ...).
    pub summary: String,
    /// The event as logged (compact JSON); `None` when unavailable.
    pub event: Option<Box<RawValue>>,
}

impl ActivityText {
    /// `a`'s line read back from `lines`; placeholders when it changed.
    pub fn of(a: &Activity, lines: &Lines) -> ActivityText {
        let Some(line) = lines.get(&a.line, a.ts_ns()) else {
            return ActivityText {
                ts: crate::timefmt::rfc3339(a.ts_ns()),
                comm: None,
                exe: None,
                summary: UNAVAILABLE.into(),
                event: None,
            };
        };
        let ev = if a.in_alert() { line.get("event").filter(|e| e.is_object()).unwrap_or(&line) } else { &line };
        ActivityText {
            ts: str_of(ev, "ts").unwrap_or_default(),
            comm: str_of(ev, "comm"),
            exe: str_of(ev, "exe"),
            summary: describe(ev).0,
            event: Some(serde_json::value::to_raw_value(ev).expect("a parsed line serializes")),
        }
    }
}

/// An `alert` line, as much as an investigator reads of it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertText {
    pub ts: String,
    pub rule: String,
    pub severity: String,
    pub action: String,
    pub description: String,
    pub tags: Vec<String>,
    /// Kind of the event that triggered it.
    pub event_kind: Option<String>,
    /// What the alert names of the event (path, argv, address...).
    pub summary: String,
    /// The alert line as logged.
    pub line: Value,
    /// Occurrences of its finding (its `alert_summary` lines; 1: once),
    /// and the last one's time when more than one.
    pub count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_ts: Option<String>,
}

impl AlertText {
    /// What an alert line says.
    pub fn of_line(line: &Value) -> AlertText {
        let event = line.get("event");
        AlertText {
            ts: str_of(line, "ts").unwrap_or_default(),
            rule: str_of(line, "rule").unwrap_or_else(|| "?".into()),
            severity: str_of(line, "severity").unwrap_or_else(|| "?".into()),
            action: str_of(line, "action").unwrap_or_else(|| "alert".into()),
            description: str_of(line, "description").unwrap_or_default(),
            tags: line
                .get("tags")
                .and_then(Value::as_array)
                .map(|t| t.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default(),
            event_kind: event.and_then(|e| str_of(e, "kind")),
            summary: event.map(|e| describe(e).0).unwrap_or_default(),
            line: line.clone(),
            count: 1,
            last_ts: None,
        }
    }

    /// `a`'s line read back from `lines`; placeholders when it changed.
    pub fn of(a: &Alert, lines: &Lines) -> AlertText {
        let mut t = AlertText::of_unrepeated(a, lines);
        t.count = a.repeats.count();
        if t.count > 1 {
            t.last_ts = a.repeats.last_ts.borrow().clone();
        }
        t
    }

    fn of_unrepeated(a: &Alert, lines: &Lines) -> AlertText {
        match lines.get(&a.line, a.ts_ns) {
            Some(line) => AlertText::of_line(&line),
            None => AlertText {
                ts: crate::timefmt::rfc3339(a.ts_ns),
                rule: a.rule.clone(),
                severity: "?".into(),
                action: "?".into(),
                description: UNAVAILABLE.into(),
                tags: Vec::new(),
                event_kind: None,
                summary: String::new(),
                line: Value::Null,
                count: 1,
                last_ts: None,
            },
        }
    }
}

/// `T` serialised with its events' lines read back from `lines`.
pub struct Shown<'a, T: ?Sized>(pub &'a T, pub &'a Lines);

impl Serialize for Shown<'_, Report> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (r, lines) = (self.0, self.1);
        let mut st = s.serialize_struct("Report", 5)?;
        st.serialize_field("sources", &r.sources)?;
        st.serialize_field("losses", &r.losses)?;
        st.serialize_field("sessions", &Shown(&r.sessions[..], lines))?;
        st.serialize_field("other_alerts", &Shown(&r.other_alerts[..], lines))?;
        st.serialize_field("filters", &r.filters)?;
        st.end()
    }
}

impl Serialize for Shown<'_, Session> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (x, lines) = (self.0, self.1);
        let mut st = s.serialize_struct("Session", 8)?;
        st.serialize_field("server", &x.server)?;
        st.serialize_field("start", &x.start)?;
        st.serialize_field("end", &x.end)?;
        st.serialize_field("exit", &x.exit)?;
        st.serialize_field("calls", &Shown(&x.calls[..], lines))?;
        st.serialize_field("outside", &Shown(&x.outside[..], lines))?;
        st.serialize_field("notifications", &x.notifications)?;
        st.serialize_field("alerts", &x.alerts)?;
        st.end()
    }
}

impl Serialize for Shown<'_, Call> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (c, lines) = (self.0, self.1);
        let t = CallText::of(c, lines);
        let mut st = s.serialize_struct("Call", 13)?;
        st.serialize_field("id", &c.id)?;
        st.serialize_field("method", &c.method.as_deref())?;
        st.serialize_field("tool", &c.tool.as_deref())?;
        st.serialize_field("arguments", &t.arguments)?;
        st.serialize_field("request_ts", &t.request_ts)?;
        st.serialize_field("response_ts", &t.response_ts)?;
        st.serialize_field("status", &c.status)?;
        st.serialize_field("result", &t.result)?;
        st.serialize_field("is_error", &t.is_error)?;
        st.serialize_field("latency_ms", &t.latency_ms)?;
        st.serialize_field("truncated", &c.truncated)?;
        st.serialize_field("activity", &Shown(&c.activity[..], lines))?;
        st.serialize_field("alerts", &Shown(&c.alerts[..], lines))?;
        st.end()
    }
}

impl Serialize for Shown<'_, Activity> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (a, lines) = (self.0, self.1);
        let t = ActivityText::of(a, lines);
        let mut st = s.serialize_struct("Activity", 12)?;
        st.serialize_field("ts", &t.ts)?;
        st.serialize_field("kind", &*a.kind)?;
        st.serialize_field("pid", &a.pid())?;
        st.serialize_field("comm", &t.comm)?;
        st.serialize_field("exe", &t.exe)?;
        st.serialize_field("summary", &t.summary)?;
        st.serialize_field("failed", &a.failed())?;
        st.serialize_field("in_flight", &a.in_flight().map(|ids| &ids[..]))?;
        st.serialize_field("after_response", &a.after_response())?;
        st.serialize_field("phase", &a.phase)?;
        st.serialize_field("alerts", &Shown(a.alerts(), lines))?;
        st.serialize_field("event", &t.event)?;
        st.end()
    }
}

impl Serialize for Shown<'_, Alert> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        AlertText::of(self.0, self.1).serialize(s)
    }
}

/// A list of `T`, each shown.
macro_rules! shown_list {
    ($($t:ty),*) => {$(
        impl Serialize for Shown<'_, [$t]> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.iter().map(|i| Shown(i, self.1)))
            }
        }
    )*};
}

shown_list!(Session, Call, Activity, Alert);
