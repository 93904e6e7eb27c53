//! The discovery maps (`mcp-sensor run`): candidates and their channels,
//! known clients, and the agent's verdicts applied to the watched set
//! (unwatch a rejected candidate, confirm a server, fold a nested
//! candidate into the tree it came from). See discover.bpf.h.

use super::{LoadError, Sensor};
use crate::abi::{self, ms_chan, ms_chan_key, ms_comm_key, ms_watch};
use aya::maps::{HashMap as BpfHashMap, MapData};

/// Every flag a candidate's watch entries carry (abi.h, discovery block).
const CAND_FLAGS: u32 = abi::F_CAND_CLIENT | abi::F_CAND_PIPES | abi::F_CAND_NESTED | abi::F_CAND_SPOKE;

/// `pids`, plus every pid of `session` in the watched map unless `complete`.
fn session_pids(w: &BpfHashMap<&mut MapData, u32, ms_watch>, session: u32, pids: &[u32], complete: bool) -> Vec<u32> {
    let mut v = pids.to_vec();
    if !complete {
        v.extend(w.iter().filter_map(Result::ok).filter(|(_, x)| x.session == session).map(|(k, _)| k));
    }
    v
}

impl Sensor {
    /// Watches `pid` as a member of candidate server `session`; `reason`
    /// is abi F_CAND_* (start 0: claimed on first sight, see `watch`).
    pub fn watch_candidate(&mut self, pid: u32, session: u32, reason: u32) -> Result<(), LoadError> {
        let w = ms_watch { start_ns: 0, session, flags: reason };
        self.watched()?
            .insert(pid, w, 0)
            .map_err(|source| LoadError::MapAccess { name: "WATCHED", source })
    }

    /// A candidate's stdio pipe: its first byte each way is checked by the
    /// kernel. A channel someone already registered is left alone.
    pub fn add_candidate_channel(&mut self, dev: u32, ino: u64, session: u32) -> Result<(), LoadError> {
        let key = ms_chan_key { ino, dev, _pad: 0 };
        let chan = ms_chan { session, flags: abi::CH_CANDIDATE, off: [0, 0] };
        match self.channels()?.insert(key, chan, 1 /* BPF_NOEXIST */) {
            Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            r => r.map_err(|source| LoadError::MapAccess { name: "CHANNELS", source }),
        }
    }

    /// Removes channel (dev, ino) if `session` registered it.
    pub fn remove_channel(&mut self, dev: u32, ino: u64, session: u32) -> Result<(), LoadError> {
        let key = ms_chan_key { ino, dev, _pad: 0 };
        let mut ch = self.channels()?;
        if ch.get(&key, 0).is_ok_and(|c| c.session == session) {
            let _ = ch.remove(&key); // gone meanwhile is fine
        }
        Ok(())
    }

    /// Takes the kernel's marks of new candidates its tables had no room
    /// for at exec (discover.bpf.h, UNTRACKED): their pids, the marks
    /// removed. Empty (one syscall) when nothing was lost.
    pub fn take_untracked(&mut self) -> Result<Vec<u32>, LoadError> {
        let err = |source| LoadError::MapAccess { name: "UNTRACKED", source };
        let map = self.ebpf.map_mut("UNTRACKED").ok_or(LoadError::Map("UNTRACKED"))?;
        let mut m: BpfHashMap<&mut MapData, u32, u64> = BpfHashMap::try_from(map).map_err(err)?;
        let pids: Vec<u32> = m.keys().filter_map(Result::ok).collect();
        for pid in &pids {
            let _ = m.remove(pid); // evicted meanwhile is fine
        }
        Ok(pids)
    }

    /// Whether the kernel watches `pid` (as a server's or a candidate's).
    pub fn is_watched(&mut self, pid: u32) -> Result<bool, LoadError> {
        Ok(self.watched()?.get(&pid, 0).is_ok())
    }

    /// Stops watching `pid` if it is watched as a member of `session`.
    pub fn unwatch_pid(&mut self, pid: u32, session: u32) -> Result<(), LoadError> {
        let mut w = self.watched()?;
        if w.get(&pid, 0).is_ok_and(|v| v.session == session) {
            let _ = w.remove(&pid);
        }
        Ok(())
    }

    /// The process names of known clients (replaces the previous set).
    pub fn set_client_comms(&mut self, names: &[String]) -> Result<(), LoadError> {
        let err = |source| LoadError::MapAccess { name: "CLIENT_COMMS", source };
        let map = self.ebpf.map_mut("CLIENT_COMMS").ok_or(LoadError::Map("CLIENT_COMMS"))?;
        let mut m: BpfHashMap<&mut MapData, ms_comm_key, u32> = BpfHashMap::try_from(map).map_err(err)?;
        let want: std::collections::HashSet<ms_comm_key> = names.iter().map(|n| ms_comm_key::new(n)).collect();
        let old: Vec<ms_comm_key> = m.keys().filter_map(Result::ok).collect();
        for k in old.iter().filter(|k| !want.contains(k)) {
            m.remove(k).map_err(err)?;
        }
        for k in want {
            m.insert(k, 1, 0).map_err(err)?;
        }
        Ok(())
    }

    /// A running client found in /proc (start time claimed by the kernel).
    pub fn add_client(&mut self, pid: u32) -> Result<(), LoadError> {
        let err = |source| LoadError::MapAccess { name: "CLIENTS", source };
        let map = self.ebpf.map_mut("CLIENTS").ok_or(LoadError::Map("CLIENTS"))?;
        let mut m: BpfHashMap<&mut MapData, u32, u64> = BpfHashMap::try_from(map).map_err(err)?;
        m.insert(pid, 0, 0).map_err(err)
    }

    /// Stops watching session `session`: `pids` (when `complete`, they are
    /// all its processes; else the watched map is scanned too) and every
    /// channel registered for it. An entry now owned by another session (a
    /// recycled pid) is left alone. Returns how many watches were removed.
    pub fn unwatch_session(&mut self, session: u32, pids: &[u32], complete: bool) -> Result<usize, LoadError> {
        let mut removed = 0;
        {
            let mut w = self.watched()?;
            for pid in session_pids(&w, session, pids, complete) {
                if w.get(&pid, 0).is_ok_and(|v| v.session == session) && w.remove(&pid).is_ok() {
                    removed += 1;
                }
            }
        }
        self.remove_channels_of(session)?;
        let _ = self.first_requests()?.remove(&session); // absent: never read
        Ok(removed)
    }

    pub(super) fn first_requests(&mut self) -> Result<BpfHashMap<&mut MapData, u32, u64>, LoadError> {
        let map = self.ebpf.map_mut("FIRST_REQ").ok_or(LoadError::Map("FIRST_REQ"))?;
        BpfHashMap::try_from(map).map_err(|source| LoadError::MapAccess { name: "FIRST_REQ", source })
    }

    /// Restores the first-request stamps FIRST_REQ (an LRU map) evicted.
    /// `want`: (session, boot-time ns of its first request, its root's
    /// start, boot-time ns, 0 if unknown) of each live session whose
    /// server has read a request. A stamp is restored only while the
    /// kernel still watches the root as that session's, started then (a
    /// recycled pid's new session has no stamp of its own yet). Returns
    /// how many were restored.
    pub fn restore_first_requests(&mut self, want: &[(u32, u64, u64)]) -> Result<u64, LoadError> {
        if want.is_empty() {
            return Ok(0);
        }
        let mut missing = Vec::new();
        {
            let fr = self.first_requests()?;
            for &(session, stamp, start) in want {
                if fr.get(&session, 0).is_err() {
                    missing.push((session, stamp, start));
                }
            }
        }
        if missing.is_empty() {
            return Ok(0);
        }
        let mut restore = Vec::new();
        {
            let w = self.watched()?;
            for (session, stamp, start) in missing {
                let same = |k: u64| k == 0 || start == 0 || crate::procs::same_start(k, start);
                if w.get(&session, 0).is_ok_and(|v| v.session == session && same(v.start_ns)) {
                    restore.push((session, stamp));
                }
            }
        }
        let mut fr = self.first_requests()?;
        let mut n = 0;
        for (session, stamp) in restore {
            // BPF_NOEXIST: the kernel's own stamp, if written meanwhile, stays
            if fr.insert(session, stamp, 1).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Candidate `session` is an MCP server: its processes lose their
    /// candidate flags (see ms_may_discover in discover.bpf.h).
    pub fn confirm_session(&mut self, session: u32, pids: &[u32], complete: bool) -> Result<usize, LoadError> {
        // MS_F_CAND_SPOKE stays: a member forked while the session was a
        // candidate, after this rewrite read the map, keeps its candidate
        // flags and is enforced through its root's MS_F_CAND_SPOKE; cleared,
        // a confirmed server's first `sh -c cat key` read the key before the
        // kernel enforced on it (1 run in ~15)
        self.rewrite_session(session, pids, complete, |v| v.flags &= !(CAND_FLAGS & !abi::F_CAND_SPOKE))
    }

    /// Nested candidate `from` is part of `into`'s tree: its processes
    /// move to session `into` (keeping candidate flags only while `into`
    /// is a candidate, `candidate`) and its own channels are removed.
    pub fn fold_session(&mut self, from: u32, into: u32, pids: &[u32], complete: bool, candidate: bool) -> Result<usize, LoadError> {
        let n = self.rewrite_session(from, pids, complete, |v| {
            v.session = into;
            v.flags &= if candidate { !abi::F_CAND_NESTED } else { !CAND_FLAGS };
        })?;
        self.remove_channels_of(from)?;
        Ok(n)
    }

    /// Applies `f` to the watch entry of each process of `session`.
    fn rewrite_session(&mut self, session: u32, pids: &[u32], complete: bool, f: impl Fn(&mut ms_watch)) -> Result<usize, LoadError> {
        let mut w = self.watched()?;
        let mut n = 0;
        for pid in session_pids(&w, session, pids, complete) {
            let Ok(mut v) = w.get(&pid, 0) else { continue };
            if v.session != session {
                continue; // a recycled pid, someone else's now
            }
            let before = (v.session, v.flags);
            f(&mut v);
            // BPF_EXIST: an entry the kernel removed meanwhile stays removed
            if (v.session, v.flags) != before && w.insert(pid, v, 2).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Marks `session`'s channels for the next sweep. Removing them needs a
    /// walk of every CHANNELS bucket (a channel is keyed by its pipe, not
    /// its session): one walk per verdict cost the agent ~160 µs per
    /// short-lived piped process at 65,536 entries, so verdicts are
    /// batched into one walk a tick, or sooner past `SWEEP_BATCH`. Until
    /// then a stale channel captures nothing (its session's processes are
    /// unwatched or moved to another session: stdio.bpf.c checks the
    /// session), and a new candidate on the same pipe takes it over
    /// (discover.bpf.h, ms_add_candidate_channel).
    fn remove_channels_of(&mut self, session: u32) -> Result<(), LoadError> {
        self.sweep.insert(session);
        if self.sweep.len() >= SWEEP_BATCH {
            self.sweep_channels()?;
        }
        Ok(())
    }

    /// Removes the channels of the sessions marked by `remove_channels_of`
    /// in one walk of CHANNELS. A marked session that is live again (its
    /// pid recycled into a new session, watched as its own root) keeps its
    /// channels: they are the new session's. Returns how many went.
    pub fn sweep_channels(&mut self) -> Result<usize, LoadError> {
        if self.sweep.is_empty() {
            return Ok(0);
        }
        let mut gone = std::mem::take(&mut self.sweep);
        {
            let w = self.watched()?;
            gone.retain(|s| !w.get(s, 0).is_ok_and(|v| v.session == *s));
        }
        let mut ch = self.channels()?;
        let keys: Vec<ms_chan_key> =
            ch.iter().filter_map(Result::ok).filter(|(_, v)| gone.contains(&v.session)).map(|(k, _)| k).collect();
        let mut n = 0;
        for k in keys {
            // gone already (the kernel removed it on rejection) is fine
            n += usize::from(ch.remove(&k).is_ok());
        }
        Ok(n)
    }
}

/// Sessions marked before a sweep runs without waiting for the tick.
const SWEEP_BATCH: usize = 1024;
