//! Nested candidates: a process exec'd inside a candidate's (or a server's
//! not yet confirmed in the kernel) tree with stdio of its own, e.g. the
//! `sh -c` a tool runs with fresh pipes, or a server an agent-like
//! candidate starts. The kernel makes it a candidate of its own
//! (MS_F_CAND_NESTED); its own channel decides:
//! - MCP: it is a server of its own (an agent's, an aggregator's);
//! - anything else (not JSON-RPC, not MCP, exited silent): it *folds* back
//!   into the tree it came from. Its held events join that candidate's
//!   (in time order), or are written at once when that tree is a confirmed
//!   server; its processes are reparented in the kernel; its later records,
//!   still tagged with its own session, are read as the tree's
//!   ([`Gate::resolve`]).
//!
//! Owns the pid -> session map of members and the fold aliases.

use super::gate::{Gate, KernelAction, MAX_REJECTED};
use crate::event::Event;

/// Members remembered for finding a nested candidate's tree.
const MAX_MEMBER_OF: usize = 1 << 16;

impl Gate {
    /// The session records tagged `session` belong to now: itself, or the
    /// tree it was folded into (followed through folds of folds).
    pub fn resolve(&self, session: u32) -> u32 {
        let mut s = session;
        for _ in 0..16 {
            match self.alias.get(&s) {
                Some(&into) if into != s => s = into,
                _ => break,
            }
        }
        s
    }

    pub(super) fn remember_member(&mut self, pid: u32, session: u32) {
        if self.member_of.len() >= MAX_MEMBER_OF && !self.member_of.contains_key(&pid) {
            // pids of trees long gone: forget an arbitrary tenth
            let drop: Vec<u32> = self.member_of.keys().take(MAX_MEMBER_OF / 10).copied().collect();
            for p in drop {
                self.member_of.remove(&p);
            }
        }
        self.member_of.insert(pid, session);
    }

    /// Events of folded candidates to be written now, with the session
    /// they belong to (a confirmed server's).
    pub fn take_released(&mut self) -> Vec<(u32, crate::event::Event)> {
        std::mem::take(&mut self.released)
    }

    /// Folds nested candidate `session` into its tree; false when it is not
    /// nested or its tree is gone or rejected (then it is rejected).
    pub(super) fn fold(&mut self, session: u32) -> bool {
        let Some(parent) = self.cands.get(&session).and_then(|c| c.parent).map(|p| self.resolve(p)) else {
            return false;
        };
        let into_candidate = self.cands.contains_key(&parent);
        if parent == session || !(into_candidate || self.servers.contains(&parent)) {
            return false;
        }
        let c = self.cands.remove(&session).expect("checked above");
        self.stats.folded += 1;
        if std::env::var_os("MCP_SENSOR_DEBUG_DISCOVERY").is_some() {
            crate::say!("mcp-sensor: discovery: pid {session} is part of {parent}'s tree, not a server of its own");
        }
        self.actions.push(KernelAction::Fold {
            from: session,
            into: parent,
            pids: c.members.clone(),
            complete: c.members_complete,
            candidate: into_candidate,
        });
        for &pid in &c.members {
            self.remember_member(pid, parent);
        }
        if self.alias_order.len() >= MAX_REJECTED {
            if let Some(old) = self.alias_order.pop_front() {
                self.alias.remove(&old);
            }
        }
        self.alias.insert(session, parent);
        self.alias_order.push_back(session);
        // its events are the tree's: the server they name is set when written
        let n_held = c.held.len();
        let held = c.held.into_iter().map(|(mut e, decided)| {
            e.server = None;
            (e, decided)
        });
        if into_candidate {
            let max_held = self.max_held;
            let p = self.cands.get_mut(&parent).expect("checked above");
            let lost = merge_bounded(&mut p.held, held.collect(), max_held);
            self.held_total -= lost as usize;
            p.overflow += lost;
            p.members.extend(c.members);
            p.members_complete &= c.members_complete;
            if let (Some(a), Some(b)) = (p.first_ns, c.first_ns) {
                p.first_ns = Some(a.min(b));
            }
            p.overflow += c.overflow;
        } else {
            // a server's events after all: what did not fit is lost
            self.stats.held_overflow += c.overflow;
            self.held_total -= n_held;
            self.released.extend(held.map(|(e, _)| (parent, e)));
        }
        true
    }
}

/// Merges `more` into `held` (each in time order), keeping what one
/// candidate's bound allows, as [`Gate`]'s hold does: every event the
/// kernel decided on, and the earliest others up to `max`. Returns how many
/// were not kept (the merged candidate's overflow). Without the bound, a
/// candidate into which thousands of short-lived nested ones fold (a CI
/// runner's piped children) grew without limit, and so did the agent.
pub(super) fn merge_bounded(held: &mut Vec<(Event, bool)>, more: Vec<(Event, bool)>, max: usize) -> u64 {
    let later = held.last().is_none_or(|(last, _)| more.first().is_none_or(|(e, _)| e.ts_ns >= last.ts_ns));
    if held.len() >= max && later && more.iter().all(|(_, decided)| !decided) {
        return more.len() as u64; // the common case: full, and all of it later
    }
    held.extend(more);
    // the two trees' events interleave: keep them in time order (two sorted
    // runs: one merge pass)
    held.sort_by_key(|(e, _)| e.ts_ns);
    let (before, mut undecided) = (held.len(), 0usize);
    held.retain(|(_, decided)| {
        let keep = *decided || undecided < max;
        undecided += usize::from(!*decided && keep);
        keep
    });
    if held.capacity() > 2 * held.len().max(16) {
        held.shrink_to_fit();
    }
    (before - held.len()) as u64
}

#[cfg(test)]
#[path = "nested_tests.rs"]
mod tests;
