//! Alerts on the timeline: an `alert` line goes on the event it carries
//! (the line just before it) and that event's call(s); an alert on a
//! JSON-RPC message on the call with that message's id; else on the
//! call(s) its `tool_call` names; else outside calls, with its event.

use super::{activity, id_key, str_of, Building, Loc};
use crate::investigate::describe::describe;
use crate::investigate::model::Alert;
use serde_json::Value;

pub(super) fn alert_of(line: &Value) -> Alert {
    let event = line.get("event");
    Alert {
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
    }
}

impl Building {
    pub(super) fn on_alert(&mut self, line: &Value, ts_ns: i128) {
        self.s.alerts += 1;
        let alert = alert_of(line);
        let event = line.get("event").filter(|e| e.is_object());
        // activities keep their event as the text a Value serializes to
        let text = event.and_then(|e| serde_json::to_string(e).ok());
        let found = text.and_then(|text| {
            self.recent.iter().rev().find(|locs| {
                let (loc, i) = locs[0];
                let a = match loc {
                    Loc::Call(c) => &self.s.calls[c].activity[i],
                    Loc::Outside => &self.s.outside[i],
                };
                a.event.get() == text
            })
        });
        if let Some(locs) = found.cloned() {
            for (loc, i) in locs {
                match loc {
                    Loc::Call(c) => {
                        self.s.calls[c].activity[i].alerts.push(alert.clone());
                        self.s.calls[c].alerts.push(alert.clone());
                    }
                    Loc::Outside => self.s.outside[i].alerts.push(alert.clone()),
                }
            }
            return;
        }
        // an alert on a message names its call by the message's id
        let rpc_id = event.filter(|e| e.get("kind").and_then(Value::as_str) == Some("rpc")).and_then(|e| e.get("id"));
        let tc = line.get("tool_call").filter(|t| t.is_object());
        let mut calls: Vec<usize> = Vec::new();
        if let Some(id) = rpc_id.filter(|id| !id.is_null()) {
            calls.extend(self.by_id.get(&id_key(id)).copied());
        } else if let Some(t) = tc {
            match t.get("id").filter(|id| !id.is_null()) {
                Some(id) => calls.push(self.call_for(id, t)),
                None => {
                    for r in t.get("in_flight").and_then(Value::as_array).cloned().unwrap_or_default() {
                        calls.push(self.call_for(r.get("id").unwrap_or(&Value::Null), &r));
                    }
                }
            }
        }
        if calls.is_empty() {
            // the triggering event is not in the logs: show it from the alert
            let mut a = activity(event.unwrap_or(line), ts_ns);
            a.phase = Some(self.phase());
            a.alerts.push(alert);
            self.s.outside.push(a);
        } else {
            for c in calls {
                self.s.calls[c].alerts.push(alert.clone());
            }
        }
    }
}
