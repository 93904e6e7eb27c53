//! Candidates the kernel tables had no room for at their exec, adopted
//! later from /proc.
//!
//! When a new candidate's channel or watch entry does not fit, the kernel
//! counts it (`drops`: `candidates_untracked`, `watch_map_full`) and marks
//! its pid in UNTRACKED (discover.bpf.h). [`Late`] takes the marks; while
//! any marked process lives, it reads /proc, classifies the marked
//! processes as the startup scan does ([`super::scan::plan`]) and adopts
//! them ([`super::adopt`]) once the tables have room, retrying with a
//! backoff while they are full. An adopted server is decided by what it
//! says from then on (its next request and answer): what it did before was
//! not seen, and the counters say so.

use super::{adopt, scan};
use crate::loader::Sensor;
use crate::pipeline::Pipeline;
use anyhow::Result;
use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

/// The first retry comes this long after a mark is taken; each retry that
/// meets a full table doubles the wait, up to [`MOST`].
const FIRST: Duration = Duration::from_secs(2);
const MOST: Duration = Duration::from_secs(60);

/// What the retries owe: the marked pids not yet adopted, and when to try.
#[derive(Debug)]
pub struct Late {
    pending: BTreeSet<u32>,
    next_try: Option<Instant>,
    wait: Duration,
    /// Candidates adopted late, in all.
    pub adopted: u64,
}

impl Default for Late {
    fn default() -> Self {
        Late { pending: BTreeSet::new(), next_try: None, wait: FIRST, adopted: 0 }
    }
}

/// The outcome of one pass.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Candidates adopted.
    pub adopted: usize,
    /// Marked processes still waiting for room.
    pub waiting: usize,
}

impl Late {
    /// Adds the kernel's marks; the first retry is [`FIRST`] after `now`.
    pub fn note(&mut self, pids: impl IntoIterator<Item = u32>, now: Instant) {
        let before = self.pending.len();
        self.pending.extend(pids);
        if self.pending.len() > before && self.next_try.is_none() {
            self.next_try = Some(now + FIRST);
        }
    }

    /// Whether a pass is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        self.next_try.is_some_and(|t| now >= t)
    }

    /// The candidates of `plan` holding a marked process.
    pub fn picks<'a>(&self, plan: &'a scan::Plan) -> Vec<&'a scan::Candidate> {
        plan.candidates.iter().filter(|c| c.members.iter().any(|p| self.pending.contains(p))).collect()
    }

    /// After a pass: `waiting` are the marked processes of candidates that
    /// did not fit; every other mark is settled (adopted, tracked meanwhile,
    /// exited, or no longer a candidate). Backs off while tables are full.
    pub fn settle(&mut self, waiting: &HashSet<u32>, adopted: usize, now: Instant) -> Pass {
        self.adopted += adopted as u64;
        self.pending.retain(|p| waiting.contains(p));
        if self.pending.is_empty() {
            self.next_try = None;
            self.wait = FIRST;
        } else {
            self.wait = (self.wait * 2).min(MOST);
            self.next_try = Some(now + self.wait);
        }
        Pass { adopted, waiting: self.pending.len() }
    }
}

/// One step of the daemon's loop: takes the kernel's marks and, when a
/// pass is due, adopts what fits. Errors: the marks map or /proc could not
/// be read, or a kernel map refused an entry for a cause other than full.
pub fn retry(
    late: &mut Late,
    sensor: &mut Sensor,
    pipeline: &mut Pipeline,
    clients: &HashSet<String>,
    stdio_pipes: bool,
    now: Instant,
) -> Result<Pass> {
    late.note(sensor.take_untracked()?, now);
    if !late.due(now) {
        return Ok(Pass::default());
    }
    let infos = scan::read_proc()?;
    let plan = scan::plan(&infos, clients, stdio_pipes, std::process::id());
    let mut adopted = 0;
    let mut waiting = HashSet::new();
    for c in late.picks(&plan) {
        let mut watched = false;
        for &pid in &c.members {
            watched |= sensor.is_watched(pid)?;
        }
        // a member already watched: the candidate was made meanwhile
        // (another exec), or is part of a tracked tree
        if watched {
            continue;
        }
        if adopt::adopt(sensor, pipeline, c)? {
            adopted += 1;
        } else {
            waiting.extend(c.members.iter().copied());
        }
    }
    Ok(late.settle(&waiting, adopted, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::How;

    fn cand(root: u32, members: &[u32]) -> scan::Candidate {
        scan::Candidate { root, how: How::StdioPipes, members: members.to_vec(), channels: vec![(1, root as u64)] }
    }

    #[test]
    fn a_mark_is_retried_after_a_wait_and_only_candidates_holding_a_mark_are_picked() {
        let t0 = Instant::now();
        let mut l = Late::default();
        assert!(!l.due(t0), "nothing marked: no pass");
        l.note([20], t0);
        assert!(!l.due(t0) && l.due(t0 + FIRST), "the first pass waits {FIRST:?}");
        // the mark is a member of a tree rooted above it (a launcher)
        let plan = scan::Plan { clients: vec![], candidates: vec![cand(10, &[10, 20]), cand(30, &[30])] };
        let picked: Vec<u32> = l.picks(&plan).iter().map(|c| c.root).collect();
        assert_eq!(picked, vec![10]);
    }

    #[test]
    fn full_tables_back_off_to_a_minute_and_a_settled_mark_ends_the_retries() {
        let t0 = Instant::now();
        let mut l = Late::default();
        l.note([20, 21], t0);
        let waiting: HashSet<u32> = [20].into();
        let mut now = t0 + FIRST;
        let mut waits = Vec::new();
        for _ in 0..8 {
            assert_eq!(l.settle(&waiting, 0, now), Pass { adopted: 0, waiting: 1 }, "21 settled (exited or no longer a candidate)");
            let next = l.next_try.unwrap();
            waits.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(waits, vec![4, 8, 16, 32, 60, 60, 60, 60]);
        // room freed: adopted, nothing owed, the next mark starts over
        assert_eq!(l.settle(&HashSet::new(), 1, now), Pass { adopted: 1, waiting: 0 });
        assert!(!l.due(now + MOST) && l.adopted == 1);
        l.note([40], now);
        assert_eq!(l.next_try, Some(now + FIRST));
    }
}
