//! Requests awaiting their response, for one direction of a session.
//!
//! Owns matching a response to its request by id, the arrival order the
//! correlation layer reads in-flight requests in, and the bounds: a cap on
//! pending requests (oldest evicted) and a short memory of cancelled ones.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Cancelled requests remembered per direction, so a late response to one
/// still matches (and reports its latency) instead of looking unsolicited.
const CANCELLED_KEEP: usize = 256;
/// Bytes of requests whose arguments are kept while pending, per
/// direction: the count cap alone would let 4096 big `tools/call`s pin
/// gigabytes.
pub(super) const ARGUMENTS_BUDGET: u64 = 16 << 20;

/// A request sent and not yet answered.
#[derive(Debug, Clone, PartialEq)]
pub struct InFlight {
    pub id: Value,
    pub method: String,
    /// `params.name` of a `tools/call`.
    pub tool: Option<String>,
    /// `params.arguments` of a `tools/call`; `None` when truncated, or
    /// when pending requests already hold [`ARGUMENTS_BUDGET`] bytes.
    pub arguments: Option<Value>,
    /// When the request was captured.
    pub ts_ns: u64,
    /// Latest `progress` value from `notifications/progress`, if any.
    pub progress: Option<f64>,
    pub truncated: bool,
}

#[derive(Debug)]
pub(super) struct Pending {
    /// [`id_key`] of the request's id.
    pub key: String,
    pub req: InFlight,
    /// [`id_key`] of `params._meta.progressToken`.
    pub progress_token: Option<String>,
    /// `tools/list` with a cursor: a later page, not a new listing.
    pub has_cursor: bool,
    /// Bytes charged to the arguments budget for keeping `req.arguments`.
    pub kept_bytes: u64,
}

/// Ids compare by their JSON text, so `1` and `"1"` stay different.
pub(super) fn id_key(id: &Value) -> String {
    id.to_string()
}

/// What an insert had to drop.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Dropped {
    /// A pending request had the same id.
    pub duplicate: bool,
    /// Oldest requests evicted to stay under the cap.
    pub evicted: u64,
}

/// Requests awaiting an answer, that travelled in one direction.
#[derive(Debug, Default)]
pub(super) struct Table {
    /// Keyed by arrival sequence number: iteration is arrival order.
    by_seq: BTreeMap<u64, Pending>,
    by_id: HashMap<String, u64>,
    cancelled: VecDeque<Pending>,
    /// Sum of `kept_bytes` of `by_seq`.
    kept_bytes: u64,
}

impl Table {
    /// Whether a request of `bytes` may keep its arguments.
    pub fn can_keep(&self, bytes: u64) -> bool {
        self.kept_bytes + bytes <= ARGUMENTS_BUDGET
    }

    fn remove_seq(&mut self, seq: u64) -> Option<Pending> {
        let p = self.by_seq.remove(&seq)?;
        self.kept_bytes -= p.kept_bytes;
        Some(p)
    }

    pub fn insert(&mut self, seq: u64, p: Pending, max: usize) -> Dropped {
        let mut dropped = Dropped::default();
        if let Some(old) = self.by_id.insert(p.key.clone(), seq) {
            self.remove_seq(old);
            dropped.duplicate = true;
        }
        self.kept_bytes += p.kept_bytes;
        self.by_seq.insert(seq, p);
        while self.by_seq.len() > max {
            let Some(&oldest) = self.by_seq.keys().next() else {
                break;
            };
            if let Some(old) = self.remove_seq(oldest) {
                self.by_id.remove(&old.key);
            }
            dropped.evicted += 1;
        }
        dropped
    }

    /// Removes and returns the request a response answers.
    pub fn take(&mut self, key: &str) -> Option<Pending> {
        if let Some(seq) = self.by_id.remove(key) {
            return self.remove_seq(seq);
        }
        let i = self.cancelled.iter().rposition(|p| p.key == key)?;
        self.cancelled.remove(i)
    }

    /// Takes a request out of flight; `false` when it is not pending.
    pub fn cancel(&mut self, key: &str) -> bool {
        let Some(seq) = self.by_id.remove(key) else {
            return false;
        };
        let Some(mut p) = self.remove_seq(seq) else {
            return false;
        };
        // Kept only to match a late response: the arguments are not needed.
        p.req.arguments = None;
        p.kept_bytes = 0;
        if self.cancelled.len() >= CANCELLED_KEEP {
            self.cancelled.pop_front();
        }
        self.cancelled.push_back(p);
        true
    }

    /// Records progress on the request that asked for `token`.
    pub fn progress(&mut self, token: &str, progress: f64) {
        let found = self
            .by_seq
            .values_mut()
            .find(|p| p.progress_token.as_deref() == Some(token));
        if let Some(p) = found {
            p.req.progress = Some(progress);
        }
    }

    /// Pending requests, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &InFlight> {
        self.by_seq.values().map(|p| &p.req)
    }

    pub fn len(&self) -> usize {
        self.by_seq.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pending(id: Value) -> Pending {
        Pending {
            key: id_key(&id),
            req: InFlight {
                id,
                method: "m".into(),
                tool: None,
                arguments: None,
                ts_ns: 0,
                progress: None,
                truncated: false,
            },
            progress_token: None,
            has_cursor: false,
            kept_bytes: 0,
        }
    }

    #[test]
    fn cancelled_memory_is_bounded() {
        let mut t = Table::default();
        for i in 0..(CANCELLED_KEEP as u64 + 10) {
            t.insert(i, pending(json!(i)), 10_000);
            assert!(t.cancel(&id_key(&json!(i))));
        }
        assert_eq!(t.len(), 0);
        assert_eq!(t.cancelled.len(), CANCELLED_KEEP);
        // The oldest cancelled are forgotten, the newest still match.
        assert!(t.take(&id_key(&json!(0))).is_none());
        assert!(t.take(&id_key(&json!(CANCELLED_KEEP as u64 + 9))).is_some());
    }

    #[test]
    fn insert_reports_duplicates_and_evictions() {
        let mut t = Table::default();
        assert_eq!(t.insert(0, pending(json!(1)), 2), Dropped::default());
        assert!(t.insert(1, pending(json!(1)), 2).duplicate);
        t.insert(2, pending(json!(2)), 2);
        assert_eq!(t.insert(3, pending(json!(3)), 2).evicted, 1);
        let ids: Vec<_> = t.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids, [json!(2), json!(3)]);
        assert!(t.take(&id_key(&json!(1))).is_none());
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;
    use serde_json::json;

    fn big(id: u64, bytes: u64) -> Pending {
        Pending {
            key: id_key(&json!(id)),
            req: InFlight {
                id: json!(id),
                method: "tools/call".into(),
                tool: None,
                arguments: Some(json!({})),
                ts_ns: 0,
                progress: None,
                truncated: false,
            },
            progress_token: None,
            has_cursor: false,
            kept_bytes: bytes,
        }
    }

    #[test]
    fn kept_argument_bytes_are_returned_on_every_exit() {
        let mut t = Table::default();
        let half = ARGUMENTS_BUDGET / 2;
        t.insert(0, big(0, half), 2);
        t.insert(1, big(1, half), 2);
        assert!(!t.can_keep(1));
        // Eviction, duplicate replacement, cancellation and response each
        // give the bytes back.
        t.insert(2, big(2, 0), 2);
        assert!(t.can_keep(half));
        t.insert(3, big(1, 0), 2);
        assert!(t.can_keep(ARGUMENTS_BUDGET));
        t.insert(4, big(5, half), 10);
        assert!(t.cancel(&id_key(&json!(5))));
        assert!(t.can_keep(ARGUMENTS_BUDGET));
        assert_eq!(t.take(&id_key(&json!(5))).unwrap().req.arguments, None);
        t.insert(5, big(6, half), 10);
        t.take(&id_key(&json!(6)));
        assert!(t.can_keep(ARGUMENTS_BUDGET));
    }
}
