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

/// One placement of a recent event, 16 bytes: an event shown under
/// several calls is several placements, one after the other, the first
/// marked [`Placed::first`].
struct Placed {
    hash: u64,
    call: u32,
    /// The index in the top 31 bits, [`FIRST`] in the low one.
    index: u32,
}

const FIRST: u32 = 1;

impl Placed {
    fn first(&self) -> bool {
        self.index & FIRST != 0
    }

    fn loc(&self) -> Loc {
        Loc { call: self.call, index: self.index >> 1 }
    }
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
    /// Events in `placed`.
    events: u32,
    /// Random per run: log text cannot be made to collide on purpose.
    key: RandomState,
}

impl Recent {
    /// Keyed hash of `v`'s JSON text, without making the text.
    /// The event's fields but `host`, which the log line carries and the
    /// alert's copy of the event does not (output.rs adds it per line).
    fn hash(&self, v: &Value) -> u64 {
        let mut h = self.key.build_hasher();
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter().filter(|(k, _)| k.as_str() != "host") {
                    std::hash::Hasher::write(&mut h, k.as_bytes());
                    std::hash::Hasher::write_u8(&mut h, 0xff);
                    serde_json::to_writer(HashWriter(&mut h), x).expect("a parsed value serializes");
                }
            }
            _ => serde_json::to_writer(HashWriter(&mut h), v).expect("a parsed value serializes"),
        }
        h.finish()
    }

    /// Event `ev` went to `locs` (at least one); the oldest is forgotten
    /// past [`RECENT`].
    pub fn remember(&mut self, ev: &Value, locs: Vec<Loc>) {
        debug_assert!(!locs.is_empty(), "an event is placed somewhere");
        while self.events >= RECENT {
            self.placed.pop_front();
            while self.placed.front().is_some_and(|p| !p.first()) {
                self.placed.pop_front();
            }
            self.events -= 1;
        }
        self.events += 1;
        let hash = self.hash(ev);
        self.placed.extend(locs.into_iter().enumerate().map(|(n, loc)| {
            assert!(loc.index < 1 << 31, "fewer than 2^31 events per call");
            Placed { hash, call: loc.call, index: loc.index << 1 | u32::from(n == 0) }
        }));
    }

    /// Where the last remembered event with the text of `event` went;
    /// empty when none.
    pub fn find(&self, event: &Value) -> Vec<Loc> {
        let hash = self.hash(event);
        let Some(last) = self.placed.iter().rposition(|p| p.hash == hash) else { return Vec::new() };
        let start = (0..=last).rev().find(|&i| self.placed[i].first()).unwrap_or(0);
        let group = self.placed.range(start..).enumerate().take_while(|(n, p)| *n == 0 || !p.first());
        group.map(|(_, p)| p.loc()).collect()
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
        // the line's `host` is not part of the event the alert copied
        r.remember(&json!({"kind": "open", "path": "/d", "host": {"name": "h"}}), vec![loc(3, 0)]);
        assert_eq!(r.find(&json!({"kind": "open", "path": "/d"})), vec![loc(3, 0)]);
    }

    #[test]
    fn a_placement_is_16_bytes() {
        // the window is RECENT of these per session, for every session
        assert_eq!(std::mem::size_of::<Placed>(), 16);
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
