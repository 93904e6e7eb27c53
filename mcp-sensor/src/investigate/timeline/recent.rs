//! The events a session placed last, for finding the one an alert is
//! about: an alert carries a copy of its event (normally the line just
//! before it), matched by its text as a `Value` serialises. Only a keyed
//! hash of that text and where the event went are kept, for the last
//! [`RECENT`] events of the session.

use serde_json::Value;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher, RandomState};

/// Placed events remembered per session.
pub(super) const RECENT: u32 = 256;

/// Where an activity went: under call `call` ([`OUTSIDE`]: outside
/// calls), at `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Loc {
    pub call: u32,
    pub index: u32,
}

pub(super) const OUTSIDE: u32 = u32::MAX;

pub(super) fn loc(call: usize, index: usize) -> Loc {
    let narrow = |n: usize| u32::try_from(n).expect("fewer than 2^32 calls and events per session");
    Loc { call: narrow(call), index: narrow(index) }
}

/// One placement of a recent event: an event shown under several calls
/// is several placements with one `seq`, one after the other.
struct Placed {
    hash: u64,
    /// The event's number among those placed in the session.
    seq: u32,
    loc: Loc,
}

/// Feeds what is written to it to a hasher.
struct HashWriter<'a>(&'a mut std::hash::DefaultHasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Default)]
pub(super) struct Recent {
    placed: VecDeque<Placed>,
    /// Events placed so far.
    count: u32,
    /// Random per run: log text cannot be made to collide on purpose.
    key: RandomState,
}

impl Recent {
    /// Keyed hash of `v`'s JSON text, without making the text.
    fn hash(&self, v: &Value) -> u64 {
        let mut h = self.key.build_hasher();
        serde_json::to_writer(HashWriter(&mut h), v).expect("a parsed value serializes");
        h.finish()
    }

    /// Event `ev` went to `locs`; the oldest is forgotten past [`RECENT`].
    pub fn remember(&mut self, ev: &Value, locs: Vec<Loc>) {
        let seq = self.count;
        self.count = self.count.wrapping_add(1);
        while self.placed.front().is_some_and(|p| seq.wrapping_sub(p.seq) >= RECENT) {
            self.placed.pop_front();
        }
        let hash = self.hash(ev);
        self.placed.extend(locs.into_iter().map(|loc| Placed { hash, seq, loc }));
    }

    /// Where the last remembered event with the text of `event` went;
    /// empty when none.
    pub fn find(&self, event: &Value) -> Vec<Loc> {
        let hash = self.hash(event);
        let Some(last) = self.placed.iter().rev().find(|p| p.hash == hash) else { return Vec::new() };
        self.placed.iter().filter(|p| p.seq == last.seq).map(|p| p.loc).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_alert_finds_the_latest_copy_of_its_event_with_all_its_placements() {
        let mut r = Recent::default();
        let ev = json!({"kind": "open", "path": "/a", "pid": 1});
        r.remember(&ev, vec![loc(OUTSIDE as usize, 0)]);
        r.remember(&json!({"kind": "open", "path": "/b"}), vec![loc(0, 0)]);
        // the same event again, under two calls in flight
        r.remember(&ev, vec![loc(1, 0), loc(2, 0)]);
        // the alert's copy may list keys in another order: the text compared is a Value's
        let copy: Value = serde_json::from_str(r#"{"pid":1,"path":"/a","kind":"open"}"#).unwrap();
        assert_eq!(r.find(&copy), vec![loc(1, 0), loc(2, 0)]);
        assert!(r.find(&json!({"kind": "open", "path": "/c"})).is_empty());
    }

    #[test]
    fn only_the_last_recent_events_are_remembered() {
        let mut r = Recent::default();
        let first = json!({"kind": "exec", "n": 0});
        r.remember(&first, vec![loc(0, 0), loc(1, 0)]);
        for n in 1..RECENT {
            r.remember(&json!({"kind": "open", "n": n}), vec![loc(0, n as usize)]);
        }
        assert_eq!(r.find(&first).len(), 2, "{RECENT} events back: still there");
        r.remember(&json!({"kind": "open", "n": RECENT}), vec![loc(0, RECENT as usize)]);
        assert!(r.find(&first).is_empty(), "{} back: forgotten", RECENT + 1);
        assert_eq!(r.find(&json!({"kind": "open", "n": 1})), vec![loc(0, 1)]);
    }
}
