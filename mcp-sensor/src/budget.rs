//! Per-server budget: how many bulk event lines (and bytes of them) each
//! watched server may have written per second, so one flooding server
//! cannot rotate the others' history (and its own earlier history) away.
//! Owns the token buckets, one per server root pid, and the counts of what
//! was held back.
//!
//! Bulk events are a server's own events (exec, open, rpc...). Alerts,
//! `alert_summary`, `server_found` and the sensor's own lines are never
//! subject to it; an event that raised an alert is written whatever the
//! budget (the caller exempts it). What is held back is counted per server
//! and reported in a `throttle` line naming the server (the caller writes
//! them, once a second and at exit): nothing goes silently.
//!
//! Each bucket holds up to `BURST_SECS` seconds of its rate and refills
//! continuously; 0 means no limit on that measure. Pure: times are the
//! events' boot-time ns.

use crate::event::{Body, Event, ServerRef, Throttle};
use std::collections::HashMap;

/// Seconds of budget a quiet server can spend at once.
pub const BURST_SECS: u64 = 2;
/// Servers tracked at most; past it, buckets with nothing to report are
/// dropped (they start full again).
const MAX_SERVERS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Event lines per second per server; 0: unlimited.
    pub events_per_sec: u64,
    /// Bytes of event lines per second per server; 0: unlimited.
    pub bytes_per_sec: u64,
}

#[derive(Debug)]
struct Bucket {
    server: ServerRef,
    events: f64,
    bytes: f64,
    last_ns: u64,
    held_events: u64,
    held_bytes: u64,
    first_ts: String,
    last_ts: String,
}

#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    buckets: HashMap<u32, Bucket>,
    /// Event lines and bytes held back over the run.
    pub total_events: u64,
    pub total_bytes: u64,
}

impl Budget {
    pub fn new(limits: Limits) -> Self {
        Budget { limits, buckets: HashMap::new(), total_events: 0, total_bytes: 0 }
    }

    /// New limits (config reload), from the next event on.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Whether `ev` is bulk: a server's own event, which the budget applies to.
    pub fn applies_to(ev: &Event) -> bool {
        ev.server.is_some()
            && !matches!(
                ev.body,
                Body::Alert(_) | Body::AlertSummary(_) | Body::Throttle(_) | Body::ServerFound { .. } | Body::Drops(_) | Body::SensorStart { .. } | Body::WatchEnd { .. }
            )
    }

    /// May `ev`'s line of `len` bytes be written? `false`: held back, counted.
    pub fn admit(&mut self, ev: &Event, len: usize) -> bool {
        let Some(server) = ev.server.as_ref() else { return true };
        let Limits { events_per_sec, bytes_per_sec } = self.limits;
        if events_per_sec == 0 && bytes_per_sec == 0 {
            return true;
        }
        if self.buckets.len() >= MAX_SERVERS && !self.buckets.contains_key(&server.pid) {
            self.buckets.retain(|_, b| b.held_events > 0);
        }
        let cap_e = (events_per_sec * BURST_SECS) as f64;
        let cap_b = (bytes_per_sec * BURST_SECS) as f64;
        let b = self.buckets.entry(server.pid).or_insert_with(|| Bucket {
            server: server.clone(),
            events: cap_e,
            bytes: cap_b,
            last_ns: ev.ts_ns,
            held_events: 0,
            held_bytes: 0,
            first_ts: String::new(),
            last_ts: String::new(),
        });
        let dt = ev.ts_ns.saturating_sub(b.last_ns) as f64 / 1e9;
        b.last_ns = b.last_ns.max(ev.ts_ns);
        b.events = (b.events + dt * events_per_sec as f64).min(cap_e);
        b.bytes = (b.bytes + dt * bytes_per_sec as f64).min(cap_b);
        let ok_e = events_per_sec == 0 || b.events >= 1.0;
        let ok_b = bytes_per_sec == 0 || b.bytes >= len as f64;
        if ok_e && ok_b {
            b.events -= 1.0;
            b.bytes -= len as f64;
            return true;
        }
        if b.held_events == 0 {
            b.first_ts = ev.ts.clone();
        }
        b.held_events += 1;
        b.held_bytes += len as u64;
        b.last_ts = ev.ts.clone();
        self.total_events += 1;
        self.total_bytes += len as u64;
        false
    }

    /// One `throttle` line per server that had events held back since
    /// the last call (`own`: the sensor's line to fill in; its `server`
    /// and body are set here).
    pub fn take_reports(&mut self, own: &Event) -> Vec<Event> {
        let mut out = Vec::new();
        for b in self.buckets.values_mut().filter(|b| b.held_events > 0) {
            let mut ev = own.clone();
            ev.server = Some(b.server.clone());
            ev.body = Body::Throttle(Throttle {
                suppressed_events: std::mem::take(&mut b.held_events),
                suppressed_bytes: std::mem::take(&mut b.held_bytes),
                first_ts: std::mem::take(&mut b.first_ts),
                last_ts: std::mem::take(&mut b.last_ts),
                limit_events_per_sec: self.limits.events_per_sec,
                limit_bytes_per_sec: self.limits.bytes_per_sec,
            });
            out.push(ev);
        }
        out.sort_by_key(|e| e.server.as_ref().map_or(0, |s| s.pid));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(server: u32, ts_ns: u64) -> Event {
        Event::for_test(server, ts_ns, Body::Fork { child_pid: 1 }, Some(("s", server)))
    }

    #[test]
    fn a_flooding_server_is_held_to_its_rate_and_counted_while_a_quiet_one_is_not() {
        let mut b = Budget::new(Limits { events_per_sec: 100, bytes_per_sec: 0 });
        let (mut written, mut quiet) = (0u64, 0u64);
        // 10 s: the flooder sends 10,000 events/s, the quiet one 1/s
        for t in 0..100_000u64 {
            let ts = t * 100_000; // every 0.1 ms
            if b.admit(&ev(1, ts), 100) {
                written += 1;
            }
            if t % 10_000 == 0 && b.admit(&ev(2, ts), 100) {
                quiet += 1;
            }
        }
        assert_eq!(quiet, 10, "the quiet server loses nothing");
        // the burst (2 s) plus 10 s at 100/s, give or take the last refill
        assert!((1150..=1201).contains(&written), "{written}");
        let own = ev(0, 0);
        let r = b.take_reports(&own);
        assert_eq!(r.len(), 1, "only the flooder is named: {r:?}");
        let Body::Throttle(t) = &r[0].body else { panic!() };
        assert_eq!(t.suppressed_events, 100_000 - written);
        assert_eq!(t.suppressed_bytes, (100_000 - written) * 100);
        assert_eq!(r[0].server.as_ref().unwrap().pid, 1);
        assert_eq!(b.total_events, 100_000 - written);
        assert!(b.take_reports(&own).is_empty(), "counts are since the last report");
    }

    #[test]
    fn bytes_are_budgeted_too_and_zero_means_unlimited() {
        let mut b = Budget::new(Limits { events_per_sec: 0, bytes_per_sec: 1000 });
        assert!(b.admit(&ev(1, 0), 2000));
        assert!(!b.admit(&ev(1, 0), 1), "2 s of bytes spent");
        assert!(b.admit(&ev(1, 1_000_000_000), 900), "a second refills 1000");
        let mut free = Budget::new(Limits { events_per_sec: 0, bytes_per_sec: 0 });
        assert!((0..10_000).all(|_| free.admit(&ev(1, 0), 1 << 20)));
    }

    #[test]
    fn only_a_servers_own_events_are_bulk() {
        let mut e = ev(1, 0);
        assert!(Budget::applies_to(&e));
        e.body = Body::Throttle(Throttle { suppressed_events: 0, suppressed_bytes: 0, first_ts: String::new(), last_ts: String::new(), limit_events_per_sec: 0, limit_bytes_per_sec: 0 });
        assert!(!Budget::applies_to(&e));
        let mut e = ev(1, 0);
        e.server = None;
        assert!(!Budget::applies_to(&e));
    }
}
