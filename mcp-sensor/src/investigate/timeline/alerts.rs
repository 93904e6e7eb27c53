//! Alerts on the timeline: an `alert` line goes on the event it carries
//! (the line just before it) and that event's call(s); an alert on a
//! JSON-RPC message on the call with that message's id; else on the
//! call(s) its `tool_call` names; else outside calls, with its event.
//! An `alert_summary` line adds its count to the alert its `alert_id`
//! names (aggregate.rs), wherever that alert is shown.

use super::{str_of, Building, OUTSIDE};
use crate::investigate::lines::LineRef;
use crate::investigate::model::{Alert, Named, Repeats};
use serde_json::Value;
use std::rc::Rc;

/// The alert line at `at`, as the report holds it; `repeats`: its
/// finding's count (filled in by its `alert_summary` lines).
pub(super) fn alert_of(line: &Value, at: LineRef, ts_ns: i128, repeats: Rc<Repeats>) -> Alert {
    Alert {
        rule: str_of(line, "rule").unwrap_or_else(|| "?".into()),
        ts_ns,
        pid: line.get("pid").and_then(Value::as_u64),
        line: at,
        repeats,
    }
}

/// An `alert_summary` line's count and last time into its alert's `r`
/// (a later summary of the same alert replaces an earlier one's: counts
/// are totals).
pub(super) fn on_summary(line: &Value, r: &Repeats) {
    let n = line.get("count").and_then(Value::as_u64).unwrap_or(1);
    if n >= r.count.get() {
        r.count.set(n);
        *r.last_ts.borrow_mut() = str_of(line, "last_ts");
    }
}

impl Building {
    pub(super) fn on_alert(&mut self, line: &Value, at: LineRef, ts_ns: i128, repeats: Rc<Repeats>) {
        self.s.alerts += 1;
        let alert = alert_of(line, at, ts_ns, repeats);
        let event = line.get("event").filter(|e| e.is_object());
        let found = event.map(|e| self.recent.find(e)).unwrap_or_default();
        if !found.is_empty() {
            for l in found {
                let i = l.index as usize;
                if l.call == OUTSIDE {
                    self.s.outside[i].push_alert(alert.clone());
                } else {
                    let call = &mut self.s.calls[l.call as usize];
                    call.activity[i].push_alert(alert.clone());
                    call.alerts.push(alert.clone());
                }
            }
            return;
        }
        // an alert on a message names its call by the message's id
        let rpc_id = event.filter(|e| e.get("kind").and_then(Value::as_str) == Some("rpc")).and_then(|e| e.get("id"));
        let tc = line.get("tool_call").filter(|t| t.is_object());
        let mut calls: Vec<usize> = Vec::new();
        if let Some(id) = rpc_id.filter(|id| !id.is_null()) {
            calls.extend(self.by_id.get(id));
        } else if let Some(t) = tc {
            match t.get("id").filter(|id| !id.is_null()) {
                Some(id) => calls.push(self.call_for(id, t, (at, ts_ns, Named::ToolCall))),
                None => {
                    let listed = t.get("in_flight").and_then(Value::as_array).cloned().unwrap_or_default();
                    for (n, r) in listed.iter().enumerate() {
                        calls.push(self.call_for(r.get("id").unwrap_or(&Value::Null), r, (at, ts_ns, Named::InFlight(n))));
                    }
                }
            }
        }
        if calls.is_empty() {
            // the triggering event is not in the logs: show it from the alert
            let mut a = self.activity(event.unwrap_or(line), at, ts_ns, true);
            a.phase = Some(self.phase());
            a.push_alert(alert);
            self.s.outside.push(a);
        } else {
            for c in calls {
                self.s.calls[c].alerts.push(alert.clone());
            }
        }
    }
}
