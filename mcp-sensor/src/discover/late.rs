//! Candidates the kernel tables had no room for at their exec, adopted
//! later from /proc.
//!
//! When a new candidate's channel or watch entry does not fit, the kernel
//! counts it (`drops`: `candidates_untracked`, `watch_map_full`) and marks
//! its pid in UNTRACKED (discover.bpf.h). [`Late`] takes the marks; while
//! any marked process lives, it reads /proc, classifies the marked
//! processes as the startup scan does ([`super::scan::plan`]) and adopts
//! them ([`super::adopt`]) once the tables have room, retrying with a
//! backoff while they are full, the newest first. An adopted server is
//! decided by what it says from then on (its next request and answer):
//! what it did before was not seen, and the counters say so.
//!
//! Room is made, not only waited for: when a marked candidate does not
//! fit, as many candidates as did not fit are unwatched among those idle
//! for [`IDLE_EVICT`] (no event and no message since; the idle the longest
//! first; `drops`: `discovery_candidates_evicted`). A candidate found in
//! /proc goes only when none of its processes waits on its stdin
//! ([`super::waiting`]): its silence may be a server's waiting on its
//! user. Without it, thousands
//! of idle piped processes (a host's non-interactive containers) that
//! filled the tables kept every server started after them unseen for as
//! long as they ran. A candidate that has done nothing for that long is
//! not in the middle of a launch (npx is busy opening files until its
//! server speaks), and an MCP client speaks to its server at once.

use super::gate::Gate;

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
/// How long a candidate must have been idle to be unwatched for room.
pub const IDLE_EVICT: Duration = Duration::from_secs(10);
/// Candidates found in /proc weighed in one pass at most (each costs a few
/// /proc reads per thread): 30,000 processes blocked on their stdin would
/// otherwise be read through at every pass.
const MAX_WEIGHED: usize = 1024;

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
    /// Idle candidates unwatched to make room for them.
    pub evicted: usize,
    /// Idle candidates found in /proc kept because a process of theirs
    /// waits on its stdin ([`super::waiting`]).
    pub kept: usize,
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

    /// Room was made: the next pass comes [`FIRST`] after `now` (once the
    /// agent's sweep has removed the evicted candidates' channels).
    pub fn room_made(&mut self, now: Instant) {
        self.wait = FIRST;
        self.next_try = Some(now + FIRST);
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
        Pass { adopted, waiting: self.pending.len(), ..Pass::default() }
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
    let mut missed = 0;
    let started: std::collections::HashMap<u32, u64> = infos.iter().map(|p| (p.pid, p.start)).collect();
    let mut picks = late.picks(&plan);
    // the newest first: a server just started after the idle crowd
    picks.sort_by_key(|c| std::cmp::Reverse(started.get(&c.root).copied().unwrap_or(0)));
    for c in picks {
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
            missed += 1;
        }
    }
    let mut pass = late.settle(&waiting, adopted, now);
    if missed > 0 {
        let idle_ns = IDLE_EVICT.as_nanos() as u64;
        let waits = |members: &[u32]| members.iter().any(|&p| super::waiting::waits_on_stdin(p));
        (pass.evicted, pass.kept) = pipeline.gate.as_mut().map_or((0, 0), |g| g.evict_idle(missed, crate::timefmt::Clock::boot_ns(), idle_ns, waits));
        if pass.evicted > 0 {
            late.room_made(now);
        }
    }
    Ok(pass)
}

impl Gate {
    /// Unwatches up to `n` candidates that have said nothing on their
    /// channel and done nothing for `idle_ns` as of `now_ns` (boot-time
    /// ns), the idle the longest first: unwatched undecided (their
    /// channels and watch entries freed), counted in `stats.evicted`. Nested candidates
    /// stay (their tree's). A candidate found in /proc (at start, or late)
    /// stays while `waits_on_stdin` says one of its processes waits on its
    /// stdin ([`super::waiting`]): what it did before was not seen, and its
    /// silence may be a server's waiting on its user (a new user's trial
    /// lost such a server to eviction 10 s after adopting it), and counts
    /// as busy from then on (weighed again once idle as long again); one
    /// that is merely asleep with pipes goes like the others. At most
    /// [`MAX_WEIGHED`] are weighed in one call. Returns how many were
    /// evicted, and how many idle ones found in /proc were kept for their
    /// waiting on stdin.
    pub fn evict_idle(&mut self, n: usize, now_ns: u64, idle_ns: u64, mut waits_on_stdin: impl FnMut(&[u32]) -> bool) -> (usize, usize) {
        let mut idle: Vec<(u64, u32)> = self
            .cands
            .iter()
            .filter(|(_, c)| c.talk.undecided() == 0 && c.parent.is_none() && now_ns.saturating_sub(c.last_ns) >= idle_ns)
            .map(|(s, c)| (c.last_ns, *s))
            .collect();
        idle.sort_unstable();
        let (mut picked, mut kept, mut weighed) = (Vec::new(), 0, 0);
        for (last, s) in idle {
            if picked.len() == n {
                break;
            }
            let c = self.cands.get_mut(&s).expect("an idle candidate");
            if c.adopted {
                if weighed == MAX_WEIGHED {
                    continue;
                }
                weighed += 1;
                if waits_on_stdin(&c.members) {
                    // weighed again once idle as long again: the others
                    // found in /proc come first meanwhile
                    c.last_ns = now_ns;
                    kept += 1;
                    continue;
                }
            }
            picked.push((last, s));
        }
        for &(last, s) in &picked {
            let secs = now_ns.saturating_sub(last) / 1_000_000_000;
            self.unwatch(s, format!("idle for {secs} s while the kernel tables were full: unwatched to make room for a candidate they missed"), false);
        }
        self.stats.evicted += picked.len() as u64;
        (picked.len(), kept)
    }
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
            assert_eq!(l.settle(&waiting, 0, now), Pass { adopted: 0, waiting: 1, ..Pass::default() }, "21 settled (exited or no longer a candidate)");
            let next = l.next_try.unwrap();
            waits.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(waits, vec![4, 8, 16, 32, 60, 60, 60, 60]);
        // room freed: adopted, nothing owed, the next mark starts over
        assert_eq!(l.settle(&HashSet::new(), 1, now), Pass { adopted: 1, waiting: 0, ..Pass::default() });
        assert!(!l.due(now + MOST) && l.adopted == 1);
        l.note([40], now);
        assert_eq!(l.next_try, Some(now + FIRST));
    }

    #[test]
    fn candidates_idle_long_enough_are_evicted_the_idle_longest_first_those_found_in_proc_only_when_none_waits_on_stdin() {
        let mut g = Gate::new(100);
        for s in [10, 20, 30, 40, 50] {
            g.add(s, How::StdioPipes, false);
        }
        let base = crate::timefmt::Clock::boot_ns();
        let sec = 1_000_000_000;
        let ev = |pid: u32, ts_ns: u64| crate::event::Event::for_test(pid, ts_ns, crate::event::Body::Fork { child_pid: 0 }, None);
        g.offer(10, ev(10, base + 5 * sec), false); // busy (a launcher)
        g.offer(20, ev(20, base + sec), false);
        let msg = crate::event::Rpc { method: Some("initialize".into()), id: Some(1.into()), ..crate::event::Rpc::new(crate::event::Direction::ClientToServer, "request", 1, false) };
        let (found, _) = g.on_channel(30, vec![crate::event::Event { body: crate::event::Body::Rpc(msg), ..ev(30, base) }]);
        assert!(found.is_none(), "30 spoke: undecided, not idle");
        g.member(40, 41);
        g.add(41, How::StdioPipes, true); // nested: its tree's
        // found in /proc, as idle as 40 and 50: 60 (pids 60 and 61) is a
        // server waiting on its user, 70 an idle process asleep with pipes
        for s in [60, 70] {
            g.add(s, How::StdioPipes, false);
            g.mark_adopted(s);
            g.member(s, s + 1);
        }
        let mut asked = Vec::new();
        let mut waits = |m: &[u32]| {
            asked.push(m.to_vec());
            m.contains(&61)
        };
        let now = base + 12 * sec;
        // idle >= 10 s: 40, 50, 60, 70 (nothing since they became
        // candidates), then 20 (its last event 11 s before now); not 10
        // nor 30 nor 41; 60 kept
        assert_eq!(g.evict_idle(3, now, 10 * sec, &mut waits), (3, 1));
        assert!(!g.is_candidate(40) && !g.is_candidate(50) && !g.is_candidate(70) && g.is_candidate(60) && g.is_candidate(20));
        // 60, kept, counts as busy from now: not weighed again yet
        assert_eq!(g.evict_idle(9, now, 10 * sec, &mut waits), (1, 0));
        assert!(g.is_candidate(10) && g.is_candidate(30) && g.is_candidate(41) && g.is_candidate(60) && !g.is_candidate(20));
        // 10 s on: 60 weighed again and kept again; 10 idle by now
        assert_eq!(g.evict_idle(9, now + 10 * sec, 10 * sec, &mut waits), (1, 1));
        assert!(!g.is_candidate(10) && g.is_candidate(60));
        assert_eq!(asked, vec![vec![60, 61], vec![70, 71], vec![60, 61]], "only candidates found in /proc are asked, with their processes");
        assert_eq!(g.stats.evicted, 5);
        assert!(g.actions.iter().all(|a| matches!(a, crate::discover::KernelAction::Unwatch { .. })));
        assert!(g.last_reject.as_ref().is_some_and(|(_, r)| r.contains("kernel tables were full")));
    }

    #[test]
    fn at_most_a_bounded_number_found_in_proc_are_weighed_in_one_pass_and_the_kept_go_last() {
        let mut g = Gate::new(100);
        let n = MAX_WEIGHED as u32 + 10;
        for s in 1..=n {
            g.add(s * 10, How::StdioPipes, false);
            g.mark_adopted(s * 10);
        }
        let sec = 1_000_000_000;
        let now = crate::timefmt::Clock::boot_ns() + 12 * sec;
        // all wait on their stdin but the last ten
        let weighed = std::cell::Cell::new(0);
        let waits = |m: &[u32]| {
            weighed.set(weighed.get() + 1);
            m[0] <= MAX_WEIGHED as u32 * 10
        };
        assert_eq!(g.evict_idle(5, now, 10 * sec, waits), (0, MAX_WEIGHED), "the first pass weighs its bound and keeps them");
        assert_eq!(weighed.get(), MAX_WEIGHED);
        // the kept count as busy: the next pass reaches the rest
        assert_eq!(g.evict_idle(5, now + sec, 10 * sec, waits), (5, 0));
        assert_eq!(weighed.get(), MAX_WEIGHED + 5);
    }
}
