//! Adopting a candidate found in /proc ([`super::scan`]): its channels and
//! processes into the kernel tables, its session into the gate, as if the
//! kernel had made it at exec. Used at start for servers already running
//! (daemon.rs) and later for candidates the tables had no room for at
//! their exec ([`super::late`]).

use super::{scan, How};
use crate::loader::Sensor;
use crate::pipeline::Pipeline;
use anyhow::Result;

fn how_flag(how: How) -> u32 {
    match how {
        How::ClientChild => crate::abi::F_CAND_CLIENT,
        How::StdioPipes => crate::abi::F_CAND_PIPES,
    }
}

/// Adopts candidate `c`: true when it is now watched and decided by the
/// gate; false, with nothing of it left in the kernel tables, when a table
/// is full. Errors: a kernel map that cannot be written for another cause.
pub fn adopt(sensor: &mut Sensor, pipeline: &mut Pipeline, c: &scan::Candidate) -> Result<bool> {
    if !into_kernel(sensor, c)? {
        return Ok(false);
    }
    for &pid in &c.members {
        if pipeline.procs.get(pid).is_none() {
            pipeline.procs.learn(pid);
        }
    }
    let gate = pipeline.gate.as_mut().expect("the daemon's pipeline has a gate");
    gate.add(c.root, c.how, false);
    gate.mark_adopted(c.root);
    for &pid in &c.members {
        gate.member(c.root, pid);
    }
    pipeline.sessions.ensure(c.root, &pipeline.procs);
    Ok(true)
}

/// Registers candidate `c`'s channels and watches its processes; false
/// (and nothing of it left in the kernel tables) when a table is full.
/// Channels first: a candidate without them could never be decided.
fn into_kernel(sensor: &mut Sensor, c: &scan::Candidate) -> Result<bool> {
    let mut chans = Vec::new();
    let mut pids = Vec::new();
    let mut full = None;
    for &(dev, ino) in &c.channels {
        match sensor.add_candidate_channel(dev, ino, c.root) {
            Ok(()) => chans.push((dev, ino)),
            Err(e) if e.is_table_full() => {
                full = Some(e);
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if full.is_none() {
        for &pid in &c.members {
            match sensor.watch_candidate(pid, c.root, how_flag(c.how)) {
                Ok(()) => pids.push(pid),
                Err(e) if e.is_table_full() => {
                    full = Some(e);
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    if full.is_none() {
        return Ok(true);
    }
    for pid in pids {
        sensor.unwatch_pid(pid, c.root)?;
    }
    for (dev, ino) in chans {
        sensor.remove_channel(dev, ino, c.root)?;
    }
    Ok(false)
}
