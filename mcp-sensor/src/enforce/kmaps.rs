//! The kernel's deny maps, kept equal to the latest compiled [`Tables`]:
//! each sync writes what is new or changed first, then removes what is
//! gone, so a rescan never opens a window where a protected file is not.

use super::compile::{Exempt, NetEntry, Tables, Verdict};
use super::shape::{shape_id, ShapeSlot};
use super::walk::NamePattern;
use crate::abi::{
    self, ms_dir_key, ms_dir_rule, ms_enf_cfg, ms_exempt_key, ms_file_key, ms_name_key, ms_net_addr, ms_net_deny, ms_port_rule,
    ms_shape_dir, ms_shape_key, ms_verdict,
};
use crate::loader::{LoadError, Sensor};
use crate::rules::FileId;
use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap as BpfHashMap, MapData, MapError, PerCpuArray};
use std::collections::HashMap;

pub struct KernelMaps {
    cfg: Array<MapData, ms_enf_cfg>,
    files: BpfHashMap<MapData, ms_file_key, ms_verdict>,
    dirs: BpfHashMap<MapData, ms_dir_key, ms_dir_rule>,
    exec: BpfHashMap<MapData, ms_file_key, ms_verdict>,
    nets: LpmTrie<MapData, ms_net_addr, ms_net_deny>,
    shape_dirs: BpfHashMap<MapData, ms_shape_key, ms_shape_dir>,
    shape_names: BpfHashMap<MapData, ms_name_key, ms_verdict>,
    exempt: BpfHashMap<MapData, ms_exempt_key, u32>,
    stats: PerCpuArray<MapData, u64>,
    current: Tables,
    /// What ENF_CFG holds.
    cfg_now: ms_enf_cfg,
}

fn take<T: TryFrom<aya::maps::Map, Error = MapError>>(s: &mut Sensor, name: &'static str) -> Result<T, LoadError> {
    T::try_from(s.take_map(name)?).map_err(|source| LoadError::MapAccess { name, source })
}

fn fkey(id: &FileId) -> ms_file_key {
    ms_file_key { ino: id.ino, dev: id.dev, _pad: 0 }
}

fn verdict(v: &Verdict) -> ms_verdict {
    ms_verdict { rule: v.rule, flags: v.flags }
}

fn dir_rule(p: &NamePattern, v: &Verdict) -> ms_dir_rule {
    let mut r = ms_dir_rule {
        v: verdict(v),
        prefix_len: p.prefix.len() as u8,
        suffix_len: p.suffix.len() as u8,
        exact: p.exact as u8,
        ..Default::default()
    };
    r.prefix[..p.prefix.len()].copy_from_slice(p.prefix.as_bytes());
    // right-aligned, as the kernel compares it with the name's tail (abi.h)
    let at = r.suffix.len() - p.suffix.len();
    r.suffix[at..].copy_from_slice(p.suffix.as_bytes());
    r
}

/// A name into a zero-padded field (callers keep names within it).
fn padded(s: &str) -> [u8; abi::NAME_PART] {
    let mut out = [0u8; abi::NAME_PART];
    let n = s.len().min(abi::NAME_PART);
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    out
}

fn shape_key(dir: &str, up: &str) -> ms_shape_key {
    ms_shape_key { dir: padded(dir), up: padded(up) }
}

fn exempt_key(e: &Exempt) -> ms_exempt_key {
    match e {
        Exempt::Exe { id, rule } => ms_exempt_key { ino: id.ino, dev: id.dev, rule: *rule, comm: [0; abi::COMM_LEN] },
        Exempt::Parent { id, rule } => {
            ms_exempt_key { ino: id.ino, dev: id.dev, rule: *rule | abi::EXEMPT_PARENT, comm: [0; abi::COMM_LEN] }
        }
        Exempt::Comm { comm, rule } => {
            let mut k = ms_exempt_key { rule: *rule, ..Default::default() };
            let n = comm.len().min(abi::COMM_LEN - 1);
            k.comm[..n].copy_from_slice(&comm.as_bytes()[..n]);
            k
        }
    }
}

fn slot_rule(s: &ShapeSlot) -> ms_dir_rule {
    ms_dir_rule { allow: s.allow as u8, ..dir_rule(&s.pat, &s.v) }
}

fn net_value(e: &NetEntry) -> ms_net_deny {
    let mut d = ms_net_deny { n: e.ports.len() as u32, ..Default::default() };
    for (slot, (lo, hi, v)) in d.r.iter_mut().zip(&e.ports) {
        *slot = ms_port_rule { lo: *lo, hi: *hi, v: verdict(v) };
    }
    d
}

/// Writes `new` over `old` in a hash map: inserts and changes, then removals.
fn sync_ids(
    map: &mut BpfHashMap<MapData, ms_file_key, ms_verdict>,
    old: &HashMap<FileId, Verdict>,
    new: &HashMap<FileId, Verdict>,
) -> Result<(), MapError> {
    for (id, v) in new {
        if old.get(id) != Some(v) {
            map.insert(fkey(id), verdict(v), 0)?;
        }
    }
    for id in old.keys().filter(|id| !new.contains_key(id)) {
        let _ = map.remove(&fkey(id));
    }
    Ok(())
}

impl KernelMaps {
    /// Takes the enforcement maps out of the loaded sensor.
    pub fn take(s: &mut Sensor) -> Result<KernelMaps, LoadError> {
        Ok(KernelMaps {
            cfg: take(s, "ENF_CFG")?,
            files: take(s, "DENY_FILES")?,
            dirs: take(s, "DENY_DIRS")?,
            exec: take(s, "DENY_EXEC")?,
            nets: take(s, "DENY_NETS")?,
            shape_dirs: take(s, "SHAPE_DIRS")?,
            shape_names: take(s, "SHAPE_NAMES")?,
            exempt: take(s, "EXEMPT")?,
            stats: take(s, "ENF_STATS")?,
            current: Tables::default(),
            cfg_now: ms_enf_cfg::default(),
        })
    }

    /// The kernel switch: nothing is killed or refused while it is off.
    pub fn set_on(&mut self, on: bool) -> Result<(), MapError> {
        self.write_cfg(ms_enf_cfg { on: on as u32, ..self.cfg_now })
    }

    /// `ms_enf_cfg.uring` (see enforce/uring.rs); written only on change.
    pub fn set_uring(&mut self, uring: u32) -> Result<(), MapError> {
        if uring == self.cfg_now.uring {
            return Ok(());
        }
        self.write_cfg(ms_enf_cfg { uring, ..self.cfg_now })
    }

    fn write_cfg(&mut self, c: ms_enf_cfg) -> Result<(), MapError> {
        self.cfg.set(0, c, 0)?;
        self.cfg_now = c;
        Ok(())
    }

    pub fn sync(&mut self, new: Tables) -> Result<(), MapError> {
        let old = std::mem::take(&mut self.current);
        sync_ids(&mut self.files, &old.files, &new.files)?;
        sync_ids(&mut self.exec, &old.exec, &new.exec)?;
        for (id, slots) in &new.dirs {
            if old.dirs.get(id) == Some(slots) {
                continue;
            }
            for (i, (p, v)) in slots.iter().enumerate() {
                let k = ms_dir_key { ino: id.ino, dev: id.dev, slot: i as u32 };
                self.dirs.insert(k, dir_rule(p, v), 0)?;
            }
        }
        for (id, slots) in &old.dirs {
            let keep = new.dirs.get(id).map_or(0, Vec::len);
            for i in keep..slots.len() {
                let _ = self.dirs.remove(&ms_dir_key { ino: id.ino, dev: id.dev, slot: i as u32 });
            }
        }
        // exemptions before the verdicts that need them, removals after
        for e in new.exempt.difference(&old.exempt) {
            self.exempt.insert(exempt_key(e), 1, 0)?;
        }
        for (name, v) in &new.shapes.names {
            if old.shapes.names.get(name) != Some(v) {
                self.shape_names.insert(ms_name_key { name: padded(name) }, verdict(v), 0)?;
            }
        }
        for name in old.shapes.names.keys().filter(|n| !new.shapes.names.contains_key(*n)) {
            let _ = self.shape_names.remove(&ms_name_key { name: padded(name) });
        }
        let slot_key = |id: u64, i: usize| ms_dir_key { ino: id, dev: abi::SHAPE_DEV, slot: i as u32 };
        for ((dir, up), slots) in &new.shapes.dirs {
            let old_slots = old.shapes.dirs.get(&(dir.clone(), up.clone()));
            if old_slots == Some(slots) {
                continue;
            }
            let id = shape_id(dir, up);
            for (i, s) in slots.iter().enumerate() {
                self.dirs.insert(slot_key(id, i), slot_rule(s), 0)?;
            }
            for i in slots.len()..old_slots.map_or(0, Vec::len) {
                let _ = self.dirs.remove(&slot_key(id, i));
            }
            self.shape_dirs.insert(shape_key(dir, up), ms_shape_dir { id }, 0)?;
        }
        for ((dir, up), slots) in old.shapes.dirs.iter().filter(|(k, _)| !new.shapes.dirs.contains_key(*k)) {
            let _ = self.shape_dirs.remove(&shape_key(dir, up));
            for i in 0..slots.len() {
                let _ = self.dirs.remove(&slot_key(shape_id(dir, up), i));
            }
        }
        for e in &new.nets {
            if !old.nets.contains(e) {
                self.nets.insert(&Key::new(e.prefix as u32, e.addr), net_value(e), 0)?;
            }
        }
        for e in old.nets.iter().filter(|e| !new.nets.iter().any(|n| n.addr == e.addr && n.prefix == e.prefix)) {
            let _ = self.nets.remove(&Key::new(e.prefix as u32, e.addr));
        }
        for e in old.exempt.difference(&new.exempt) {
            let _ = self.exempt.remove(&exempt_key(e));
        }
        self.current = new;
        Ok(())
    }

    /// One more forbidden executable, now (a copy found by content): in
    /// the kernel map and in `current`, so the next sync keeps it when the
    /// compiled tables carry it too.
    pub fn add_exec(&mut self, id: FileId, v: Verdict) -> Result<(), MapError> {
        self.exec.insert(fkey(&id), verdict(&v), 0)?;
        self.current.exec.insert(id, v);
        Ok(())
    }

    /// Forbidden files, now (an identity the agent just learned from an
    /// open): in the kernel map and in `current`, like [`Self::add_exec`].
    pub fn add_files(&mut self, files: &std::collections::HashMap<FileId, Verdict>) -> Result<(), MapError> {
        for (id, v) in files {
            if self.current.files.get(id) != Some(v) {
                self.files.insert(fkey(id), verdict(v), 0)?;
                self.current.files.insert(*id, *v);
            }
        }
        Ok(())
    }

    pub fn current(&self) -> &Tables {
        &self.current
    }

    /// ENF_STATS summed over CPUs, indexed by `abi::ENF_*`.
    pub fn stats(&self) -> Result<Vec<u64>, MapError> {
        (0..abi::ENF_MAX).map(|i| self.stats.get(&i, 0).map(|v| v.iter().sum())).collect()
    }
}
