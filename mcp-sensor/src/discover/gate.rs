//! The gate between a candidate server's events and the log.
//!
//! Owns the candidates: a candidate's events are held (bounded, overflow
//! counted) until its channel says whether it is MCP ([`super::classify`]).
//! Confirmed: a `server_found` line dated at the candidate's first event,
//! then the held events in order, and the session streams from then on
//! like any watched server. Rejected: the held events are dropped, the
//! session's processes and channels are unwatched in the kernel
//! ([`KernelAction`]), and later records of the session (already in the
//! ring) are dropped. A candidate is rejected when its channel carries
//! something that is not MCP, when the kernel rejected its first byte, or
//! when its root exits undecided. Holding is bounded, not deciding: a
//! launcher (npx reads thousands of files before the server it starts
//! says a word) is never rejected for being busy; past `max_held` its
//! events are counted instead of kept. That count is a loss only if the
//! candidate turns out to be a server (`discovery_held_overflow`, and
//! `held_lost` on its `server_found` line); a candidate that is not MCP
//! would never have been logged, so its overflow joins what it discarded.
//! All candidates together hold at most 4x `max_held`: when that is full,
//! the candidate that has been quiet the longest gives up its held events
//! (counted as its overflow) to the one that has something to hold, so a
//! crowd of idle candidates (thousands of piped `sleep`s) cannot take a
//! new server's pre-handshake events, and the alerts they raise, from it.
//!
//! A nested candidate (exec'd inside another candidate's tree with stdio
//! of its own) is decided on its own channel; when that is not MCP it is
//! folded back into the tree it came from ([`super::nested`]).
//!
//! Sessions the gate never heard of pass untouched (`exec`'s, and
//! confirmed ones).

use super::classify::{Conversation, Verdict};
use super::How;
use crate::event::Event;
use std::collections::{HashMap, HashSet, VecDeque};

/// Processes of one candidate remembered for unwatching; past that the
/// agent unwatches by scanning the kernel map.
const MAX_MEMBERS: usize = 1024;
/// Rejected sessions remembered (their records still in flight are dropped).
pub(super) const MAX_REJECTED: usize = 4096;
/// Held events of all candidates together, in units of `max_held`.
const TOTAL_HELD_FACTOR: usize = 4;

/// What the agent must do in the kernel's maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelAction {
    /// Remove the watch of every process of `session` (`pids` known to be
    /// in it; `complete` false: others may be, scan the map) and its channels.
    Unwatch { session: u32, pids: Vec<u32>, complete: bool },
    /// `session` is an MCP server: clear the candidate flags of its
    /// processes, so the servers' own children stay in its tree.
    Confirm { session: u32, pids: Vec<u32>, complete: bool },
    /// Nested candidate `from` is not a server of its own: its processes
    /// join session `into` (with `into`'s candidate flags when `candidate`,
    /// none when `into` is a confirmed server) and its channels are removed.
    Fold { from: u32, into: u32, pids: Vec<u32>, complete: bool, candidate: bool },
}

#[derive(Debug)]
pub(super) struct Candidate {
    pub(super) how: How,
    /// Held events; `true`: the kernel decided on its record (killed or
    /// refused), so it is written even when the candidate is rejected.
    pub(super) held: Vec<(Event, bool)>,
    pub(super) talk: Conversation,
    pub(super) members: Vec<u32>,
    pub(super) members_complete: bool,
    /// The session it was exec'd in (nested candidates only).
    pub(super) parent: Option<u32>,
    /// Boot-time ns of its first event (its root's exec).
    pub(super) first_ns: Option<u64>,
    /// Its events past the hold bound, or given up to a busier candidate.
    pub(super) overflow: u64,
    /// When it last offered an event: the gate's offer count then.
    pub(super) last_seq: u64,
    /// Boot-time ns of its last event (of its becoming a candidate, before
    /// any): how long it has been idle ([`Gate::evict_idle`]).
    pub(super) last_ns: u64,
    /// Found in /proc (at start, or late for want of room), not at its
    /// exec: what it did before was not seen, so its being idle says
    /// little (a server waiting on its user); evicted only when none of
    /// its processes waits on its stdin (late.rs).
    pub(super) adopted: bool,
}

/// A candidate just confirmed: what the `server_found` line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub session: u32,
    pub how: How,
    pub held: u64,
    /// Boot-time ns of the candidate's first event: the session's start.
    pub first_ns: Option<u64>,
    /// Its events that did not fit the hold bound: lost.
    pub lost: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GateStats {
    pub candidates: u64,
    pub confirmed: u64,
    pub rejected: u64,
    /// Nested candidates folded back into the tree they were exec'd in.
    pub folded: u64,
    /// Events of rejected candidates, dropped on purpose (not MCP).
    pub discarded: u64,
    /// Events of servers' candidacies past the hold bound: lost, counted
    /// (a `drops` reason, `discovery_held_overflow`) once the candidate is
    /// confirmed.
    pub held_overflow: u64,
    /// Held events the quietest candidates gave up to busier ones when
    /// all candidates together held their bound (a loss only for those
    /// that turn out to be servers, counted in `held_overflow` then).
    pub given_up: u64,
    /// Events that came while all candidates together held their bound.
    pub at_bound: u64,
    /// Idle candidates unwatched to make room in full kernel tables for a
    /// candidate they had missed (late.rs).
    pub evicted: u64,
}

#[derive(Debug)]
pub struct Gate {
    pub(super) cands: HashMap<u32, Candidate>,
    /// Confirmed servers still running (fold targets).
    pub(super) servers: HashSet<u32>,
    /// pid -> the candidate or server session it was forked in.
    pub(super) member_of: HashMap<u32, u32>,
    /// Folded session -> the session it joined.
    pub(super) alias: HashMap<u32, u32>,
    pub(super) alias_order: VecDeque<u32>,
    rejected: HashSet<u32>,
    rejected_order: VecDeque<u32>,
    pub(super) max_held: usize,
    pub(super) held_total: usize,
    /// Events offered so far: the clock of `Candidate::last_seq`.
    seq: u64,
    /// Events of folded candidates whose tree is a confirmed server:
    /// (session, event), to be written now.
    pub(super) released: Vec<(u32, Event)>,
    pub actions: Vec<KernelAction>,
    pub stats: GateStats,
    /// The last rejection and why: (session, reason).
    pub last_reject: Option<(u32, String)>,
}

impl Gate {
    pub fn new(max_held: usize) -> Self {
        Gate {
            cands: HashMap::new(),
            servers: HashSet::new(),
            member_of: HashMap::new(),
            alias: HashMap::new(),
            alias_order: VecDeque::new(),
            rejected: HashSet::new(),
            rejected_order: VecDeque::new(),
            max_held: max_held.max(1),
            held_total: 0,
            seq: 0,
            released: Vec::new(),
            actions: Vec::new(),
            stats: GateStats::default(),
            last_reject: None,
        }
    }

    pub fn set_max_held(&mut self, n: usize) {
        self.max_held = n.max(1);
    }

    /// A new candidate rooted at `session` (its root's pid). `nested`: the
    /// kernel made it inside another candidate's tree (MS_F_CAND_NESTED).
    pub fn add(&mut self, session: u32, how: How, nested: bool) {
        if self.cands.contains_key(&session) {
            return;
        }
        // a recycled pid: the old rejection was about another process
        if self.rejected.remove(&session) {
            self.rejected_order.retain(|s| *s != session);
        }
        self.servers.remove(&session);
        let parent = if nested { self.member_of.get(&session).map(|&p| self.resolve(p)) } else { None };
        self.stats.candidates += 1;
        self.cands.insert(
            session,
            Candidate {
                how,
                held: Vec::new(),
                talk: Conversation::default(),
                members: vec![session],
                members_complete: true,
                parent: parent.filter(|&p| p != session),
                first_ns: None,
                overflow: 0,
                last_seq: self.seq,
                last_ns: crate::timefmt::Clock::boot_ns(),
                adopted: false,
            },
        );
    }

    /// Candidate `session` was found in /proc (discover/adopt.rs).
    pub fn mark_adopted(&mut self, session: u32) {
        if let Some(c) = self.cands.get_mut(&session) {
            c.adopted = true;
        }
    }

    pub fn is_candidate(&self, session: u32) -> bool {
        self.cands.contains_key(&session)
    }

    /// `session` was found not to be a server (its late records are dropped).
    pub fn is_rejected(&self, session: u32) -> bool {
        self.rejected.contains(&session)
    }

    pub fn candidates(&self) -> usize {
        self.cands.len()
    }

    /// `pid` joined `session` (it was forked in its tree).
    pub fn member(&mut self, session: u32, pid: u32) {
        if let Some(c) = self.cands.get_mut(&session) {
            if c.members.len() < MAX_MEMBERS {
                c.members.push(pid);
            } else {
                c.members_complete = false;
            }
        }
        if self.cands.contains_key(&session) || self.servers.contains(&session) {
            self.remember_member(pid, session);
        }
    }

    /// Holds `ev` of candidate `c`, or counts it when the bound is reached.
    /// An event with a kernel decision (`decided`) is always held: the
    /// kernel's kills and refusals are few, and each must reach the log.
    fn hold(&mut self, session: u32, ev: Event, decided: bool) {
        self.seq += 1;
        let total_cap = self.max_held.saturating_mul(TOTAL_HELD_FACTOR);
        let own_full = self.cands.get(&session).is_some_and(|c| c.held.len() >= self.max_held);
        if self.held_total >= total_cap && !own_full && !decided {
            self.stats.at_bound += 1;
            self.evict_quietest(session);
        }
        let (max_held, seq, full) = (self.max_held, self.seq, self.held_total >= total_cap);
        let Some(c) = self.cands.get_mut(&session) else { return };
        c.first_ns.get_or_insert(ev.ts_ns);
        c.last_seq = seq;
        c.last_ns = c.last_ns.max(ev.ts_ns);
        if (c.held.len() >= max_held || full) && !decided {
            c.overflow += 1;
            return;
        }
        c.held.push((ev, decided));
        self.held_total += 1;
    }

    /// The candidate quiet the longest, other than `except`, gives up its
    /// held events (those the kernel decided on stay): counted as its
    /// overflow, a loss only if it turns out to be a server after all.
    fn evict_quietest(&mut self, except: u32) {
        let quietest = self
            .cands
            .iter()
            .filter(|(s, c)| **s != except && c.held.iter().any(|(_, d)| !d))
            .min_by_key(|(_, c)| c.last_seq)
            .map(|(s, _)| *s);
        let Some(c) = quietest.and_then(|s| self.cands.get_mut(&s)) else { return };
        let before = c.held.len();
        c.held.retain(|(_, decided)| *decided);
        c.held.shrink_to_fit();
        let gone = before - c.held.len();
        c.overflow += gone as u64;
        self.held_total -= gone;
        self.stats.given_up += gone as u64;
    }

    /// An event of `session`: returned when it is to be written now;
    /// held or dropped otherwise. `decided`: the kernel decided on its
    /// record (a kill or a refusal): written even if the candidate turns
    /// out not to be a server.
    pub fn offer(&mut self, session: u32, ev: Event, decided: bool) -> Option<Event> {
        if self.rejected.contains(&session) && !decided {
            self.stats.discarded += 1;
            return None;
        }
        if !self.cands.contains_key(&session) {
            return Some(ev);
        }
        self.hold(session, ev, decided);
        None
    }

    /// Messages parsed from candidate `session`'s channel (`rpc` and
    /// `malformed` events, in order). Returns the events to write now and,
    /// when these messages confirmed it, what was found (write its line
    /// first). For sessions that are not candidates, passes `evs` through
    /// [`Gate::offer`].
    pub fn on_channel(&mut self, session: u32, evs: Vec<Event>) -> (Option<Found>, Vec<Event>) {
        if !self.cands.contains_key(&session) {
            return (None, evs.into_iter().filter_map(|e| self.offer(session, e, false)).collect());
        }
        let mut it = evs.into_iter();
        while let Some(ev) = it.next() {
            let c = self.cands.get_mut(&session).expect("checked above");
            match c.talk.classify(&ev.body) {
                Verdict::Mcp => {
                    let c = self.cands.remove(&session).expect("checked above");
                    self.held_total -= c.held.len();
                    self.stats.confirmed += 1;
                    self.servers.insert(session);
                    let first_ns = c.first_ns.or(Some(ev.ts_ns));
                    self.stats.held_overflow += c.overflow;
                    let found = Found { session, how: c.how, held: c.held.len() as u64, first_ns, lost: c.overflow };
                    self.actions.push(KernelAction::Confirm { session, pids: c.members, complete: c.members_complete });
                    let mut out: Vec<Event> = c.held.into_iter().map(|(e, _)| e).collect();
                    out.push(ev);
                    out.extend(it);
                    return (Some(found), out);
                }
                Verdict::NotMcp(reason) => {
                    self.not_a_server(session, reason, Some(it.len() as u64 + 1));
                    return (None, Vec::new());
                }
                // the conversation itself is held whatever the bound: it
                // is at most MAX_UNDECIDED messages, and it is the proof
                Verdict::Undecided => {
                    self.seq += 1;
                    c.last_seq = self.seq;
                    c.last_ns = c.last_ns.max(ev.ts_ns);
                    c.first_ns.get_or_insert(ev.ts_ns);
                    c.held.push((ev, false));
                    self.held_total += 1;
                }
            }
        }
        (None, Vec::new())
    }

    /// `pid` of `session` exited. The root of a candidate still undecided:
    /// it is not a server (its remaining processes are unwatched, or a
    /// nested one folds back into its tree).
    pub fn exited(&mut self, session: u32, pid: u32) {
        self.member_of.remove(&pid);
        if pid != session {
            return;
        }
        self.servers.remove(&session);
        if self.cands.contains_key(&session) {
            self.not_a_server(session, "exited before speaking MCP".into(), None);
        }
    }

    /// The kernel rejected candidate `session` (its first byte).
    pub fn reject_candidate(&mut self, session: u32, reason: String) {
        self.not_a_server(session, reason, None);
    }

    /// Candidate `session` is not an MCP server (`discarding`: events that
    /// came with the verdict and are not held). A nested one folds back into
    /// the tree it came from when that tree is a candidate or a server.
    fn not_a_server(&mut self, session: u32, reason: String, discarding: Option<u64>) {
        if self.fold(session) {
            return;
        }
        self.stats.discarded += discarding.unwrap_or(0);
        self.reject(session, reason);
    }

    /// Drops a candidate that is not an MCP server and asks for its tree
    /// to be unwatched.
    pub(super) fn reject(&mut self, session: u32, reason: String) {
        self.unwatch(session, reason, true);
    }

    /// Drops candidate `session` and asks for its tree to be unwatched:
    /// `not_mcp`, for what it said or did (counted in `stats.rejected`);
    /// else undecided, for room (`reason` says why; counted by the caller).
    pub(super) fn unwatch(&mut self, session: u32, reason: String, not_mcp: bool) {
        if std::env::var_os("MCP_SENSOR_DEBUG_DISCOVERY").is_some() {
            let verdict = if not_mcp { "is not an MCP server" } else { "was unwatched undecided" };
            crate::say!("mcp-sensor: discovery: pid {session} {verdict}: {reason}");
        }
        let Some(c) = self.cands.remove(&session) else { return };
        self.held_total -= c.held.len();
        // what the kernel decided on is written all the same (its alert
        // says the kernel killed or refused); the rest is discarded
        let (decided, dropped): (Vec<_>, Vec<_>) = c.held.into_iter().partition(|(_, d)| *d);
        self.released.extend(decided.into_iter().map(|(e, _)| (session, e)));
        self.stats.discarded += dropped.len() as u64 + c.overflow;
        self.stats.rejected += u64::from(not_mcp);
        self.actions.push(KernelAction::Unwatch { session, pids: c.members, complete: c.members_complete });
        if self.rejected_order.len() >= MAX_REJECTED {
            if let Some(old) = self.rejected_order.pop_front() {
                self.rejected.remove(&old);
            }
        }
        self.rejected.insert(session);
        self.rejected_order.push_back(session);
        self.last_reject = Some((session, reason));
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
