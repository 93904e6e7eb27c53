//! What a process the benches start (the daemon, a receiver) costs the
//! host, as /proc tells it: CPU time (`stat`), resident memory and its
//! peak (`status`), the reset of that peak (`clear_refs`), and the wait
//! until the process is idle again.

use anyhow::{Context, Result};
use std::time::{Duration, Instant};

/// utime + stime of process `pid` (all its threads), clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> Result<u64> {
    stat_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?)
}

/// utime + stime from the text of a /proc/<pid>/stat.
pub(crate) fn stat_ticks(stat: &str) -> Result<u64> {
    // fields after the command name, which may hold spaces and ')': state
    // is the 3rd field of the line, utime the 14th and stime the 15th
    let f: Vec<&str> = stat[stat.rfind(')').context("stat")? + 1..].split_whitespace().collect();
    anyhow::ensure!(f.len() > 12, "stat: {} fields after the command", f.len());
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

/// Clock ticks per second (`cpu_ticks` units).
pub(crate) fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// The value in KiB of a `Key:   1234 kB` line of a /proc/<pid>/status.
pub(crate) fn status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?.trim();
        v.strip_suffix("kB")?.trim().parse().ok()
    })
}

/// Resident memory of a process, KiB.
pub(crate) struct Memory {
    /// VmRSS: all of it now.
    pub(crate) rss: u64,
    /// VmHWM: the peak of VmRSS since the start or the last [`reset_peak`].
    pub(crate) peak: u64,
    /// RssAnon: its own (heap, stacks).
    pub(crate) anon: u64,
    /// RssFile: pages of files it maps, its binary's first, shared and
    /// reclaimable.
    pub(crate) file: u64,
}

pub(crate) fn memory_kib(pid: u32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let get = |k| status_kib(&status, k).with_context(|| format!("/proc/{pid}/status has no {k}"));
    Ok(Memory { rss: get("VmRSS")?, peak: get("VmHWM")?, anon: get("RssAnon")?, file: get("RssFile")? })
}

/// Sets the peak resident set (VmHWM) of `pid` to its current one
/// (Documentation/filesystems/proc.rst, `clear_refs` value 5).
pub(crate) fn reset_peak(pid: u32) -> Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").with_context(|| format!("/proc/{pid}/clear_refs"))
}

/// Waits until `pid` has used at most one clock tick in 200 ms (at most
/// `limit`): the daemon done with what it was handed (its start, the
/// events of a workload), so its CPU time is complete and the next
/// measurement does not share the CPUs with its backlog.
pub(crate) fn wait_idle(pid: u32, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let mut last = cpu_ticks(pid)?;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let now = cpu_ticks(pid)?;
        if now - last <= 1 {
            return Ok(());
        }
        last = now;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_ticks_adds_utime_and_stime_past_a_command_with_spaces_and_parens() {
        let stat = "4242 (mcp (x) run) S 1 4242 4242 0 -1 4194560 1234 0 5 0 731 112 0 0 20 0 9 0 5000 1000000 2000 18446744073709551615";
        assert_eq!(stat_ticks(stat).unwrap(), 731 + 112);
        assert!(stat_ticks("4242 (cut) S 1 2").is_err());
    }

    #[test]
    fn status_lines_give_kib_by_exact_key() {
        let status = "Name:\tmcp-sensor\nVmPeak:\t  900000 kB\nVmHWM:\t   45678 kB\nVmRSS:\t   40000 kB\nRssAnon:\t 1 kB\n";
        assert_eq!(status_kib(status, "VmHWM"), Some(45678));
        assert_eq!(status_kib(status, "VmRSS"), Some(40000));
        // "Vm" is a prefix of keys, not a key
        assert_eq!(status_kib(status, "Vm"), None);
        assert_eq!(status_kib(status, "Name"), None);
    }
}
