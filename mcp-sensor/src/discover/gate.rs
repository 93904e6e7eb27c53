//! The gate between a candidate server's events and the log.
//!
//! Owns the candidates: a candidate's events are held (bounded) until its
//! channel says whether it is MCP ([`super::classify`]). Confirmed: the
//! held events are written, in order, after a `server_found` line, and the
//! session streams from then on like any watched server. Rejected: the
//! held events are dropped, the session's processes and channels are
//! unwatched in the kernel ([`KernelAction`]), and later records of the
//! session (already in the ring) are dropped. A candidate is rejected when
//! its channel carries something that is not MCP, when the kernel rejected
//! its first byte, when its root exits undecided, or when it has done
//! `max_held` things without a word of MCP (a busy process tree that is
//! not a server: its cost is bounded by that).
//!
//! Sessions the gate never heard of pass untouched (`exec`'s, and
//! confirmed ones).

use super::classify::{classify, Verdict};
use super::How;
use crate::event::Event;
use std::collections::{HashMap, HashSet, VecDeque};

/// Processes of one candidate remembered for unwatching; past that the
/// agent unwatches by scanning the kernel map.
const MAX_MEMBERS: usize = 1024;
/// Rejected sessions remembered (their records still in flight are dropped).
const MAX_REJECTED: usize = 4096;

/// What the agent must do in the kernel's maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelAction {
    /// Remove the watch of every process of `session` (`pids` known to be
    /// in it; `complete` false: others may be, scan the map) and its channels.
    Unwatch { session: u32, pids: Vec<u32>, complete: bool },
    /// `session` is an MCP server: clear the candidate flags of its
    /// processes, so the servers' own children stay in its tree.
    Confirm { session: u32, pids: Vec<u32>, complete: bool },
}

#[derive(Debug)]
struct Candidate {
    how: How,
    held: Vec<Event>,
    undecided: u32,
    members: Vec<u32>,
    members_complete: bool,
}

/// A candidate just confirmed: what the `server_found` line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub session: u32,
    pub how: How,
    pub held: u64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GateStats {
    pub candidates: u64,
    pub confirmed: u64,
    pub rejected: u64,
    /// Events of rejected candidates, dropped on purpose (not MCP).
    pub discarded: u64,
}

#[derive(Debug)]
pub struct Gate {
    cands: HashMap<u32, Candidate>,
    rejected: HashSet<u32>,
    rejected_order: VecDeque<u32>,
    max_held: usize,
    held_total: usize,
    pub actions: Vec<KernelAction>,
    pub stats: GateStats,
    /// The last rejection and why: (session, reason).
    pub last_reject: Option<(u32, String)>,
}

impl Gate {
    pub fn new(max_held: usize) -> Self {
        Gate {
            cands: HashMap::new(),
            rejected: HashSet::new(),
            rejected_order: VecDeque::new(),
            max_held: max_held.max(1),
            held_total: 0,
            actions: Vec::new(),
            stats: GateStats::default(),
            last_reject: None,
        }
    }

    pub fn set_max_held(&mut self, n: usize) {
        self.max_held = n.max(1);
    }

    /// A new candidate rooted at `session` (its root's pid).
    pub fn add(&mut self, session: u32, how: How) {
        if self.cands.contains_key(&session) {
            return;
        }
        // a recycled pid: the old rejection was about another process
        if self.rejected.remove(&session) {
            self.rejected_order.retain(|s| *s != session);
        }
        self.stats.candidates += 1;
        self.cands.insert(
            session,
            Candidate { how, held: Vec::new(), undecided: 0, members: vec![session], members_complete: true },
        );
    }

    pub fn is_candidate(&self, session: u32) -> bool {
        self.cands.contains_key(&session)
    }

    pub fn candidates(&self) -> usize {
        self.cands.len()
    }

    /// `pid` joined candidate `session` (it was forked in its tree).
    pub fn member(&mut self, session: u32, pid: u32) {
        if let Some(c) = self.cands.get_mut(&session) {
            if c.members.len() < MAX_MEMBERS {
                c.members.push(pid);
            } else {
                c.members_complete = false;
            }
        }
    }

    /// An event of `session`: returned when it is to be written now;
    /// held or dropped otherwise.
    pub fn offer(&mut self, session: u32, ev: Event) -> Option<Event> {
        if self.rejected.contains(&session) {
            self.stats.discarded += 1;
            return None;
        }
        let total_cap = self.max_held.saturating_mul(16);
        let Some(c) = self.cands.get_mut(&session) else { return Some(ev) };
        if c.held.len() >= self.max_held || self.held_total >= total_cap {
            let n = c.held.len();
            self.reject(session, format!("{n} events held without a word of MCP on its stdio"));
            self.stats.discarded += 1;
            return None;
        }
        c.held.push(ev);
        self.held_total += 1;
        None
    }

    /// Messages parsed from candidate `session`'s channel (`rpc` and
    /// `malformed` events, in order). Returns the events to write now and,
    /// when these messages confirmed it, what was found (write its line
    /// first). For sessions that are not candidates, passes `evs` through
    /// [`Gate::offer`].
    pub fn on_channel(&mut self, session: u32, evs: Vec<Event>) -> (Option<Found>, Vec<Event>) {
        if !self.cands.contains_key(&session) {
            return (None, evs.into_iter().filter_map(|e| self.offer(session, e)).collect());
        }
        let mut it = evs.into_iter();
        while let Some(ev) = it.next() {
            let c = self.cands.get_mut(&session).expect("checked above");
            match classify(&ev.body, c.undecided) {
                Verdict::Mcp => {
                    let c = self.cands.remove(&session).expect("checked above");
                    self.held_total -= c.held.len();
                    self.stats.confirmed += 1;
                    let found = Found { session, how: c.how, held: c.held.len() as u64 };
                    self.actions.push(KernelAction::Confirm { session, pids: c.members, complete: c.members_complete });
                    let mut out = c.held;
                    out.push(ev);
                    out.extend(it);
                    return (Some(found), out);
                }
                Verdict::NotMcp(reason) => {
                    self.stats.discarded += 1 + it.len() as u64;
                    self.reject(session, reason);
                    return (None, Vec::new());
                }
                Verdict::Undecided => {
                    c.undecided += 1;
                    if let Some(e) = self.offer(session, ev) {
                        // not held: the candidate was rejected meanwhile
                        drop(e);
                    }
                    if !self.cands.contains_key(&session) {
                        return (None, Vec::new());
                    }
                }
            }
        }
        (None, Vec::new())
    }

    /// The root of `session` exited: a candidate still undecided is not a
    /// server (its remaining processes are unwatched).
    pub fn root_exited(&mut self, session: u32) {
        if self.cands.contains_key(&session) {
            self.reject(session, "exited before speaking MCP".into());
        }
    }

    /// The kernel rejected candidate `session` (its first byte).
    pub fn reject_candidate(&mut self, session: u32, reason: String) {
        self.reject(session, reason);
    }

    /// Drops a candidate and asks for its tree to be unwatched.
    fn reject(&mut self, session: u32, reason: String) {
        if std::env::var_os("MCP_SENSOR_DEBUG_DISCOVERY").is_some() {
            crate::say!("mcp-sensor: discovery: pid {session} is not an MCP server: {reason}");
        }
        let Some(c) = self.cands.remove(&session) else { return };
        self.held_total -= c.held.len();
        self.stats.discarded += c.held.len() as u64;
        self.stats.rejected += 1;
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
