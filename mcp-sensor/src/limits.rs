//! Limits of the sizes a user can set, derived from the kernel's record
//! sizes (abi.rs), and their validation: one place for `exec`'s flags,
//! `run`'s configuration file and flags, and the docs.
//!
//! A ring buffer or an agent queue smaller than one record can never
//! deliver it: every such record would be a drop. The limits here refuse
//! those settings before anything is loaded, naming the minimum.

use crate::abi;
use std::mem::size_of;

/// Bytes of the ring buffer's own header before each record
/// (BPF_RINGBUF_HDR_SZ).
const RING_RECORD_HEADER: usize = 8;

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}

/// The largest record the kernel writes, in bytes: a stdio chunk of
/// MS_CHUNK_LARGE bytes with its head, an exec (two paths and argv), or a
/// file change (three paths).
pub const RECORD_MAX: usize = max(
    size_of::<abi::ms_stdio>() + abi::CHUNK_LARGE,
    max(size_of::<abi::ms_exec>(), max(size_of::<abi::ms_fchange>(), size_of::<abi::ms_open>())),
);

/// Smallest ring buffer, in bytes: the power of two (of pages) that holds
/// the largest record with its ring header.
pub const RING_MIN: u64 = ((RECORD_MAX + RING_RECORD_HEADER) as u64).next_power_of_two();
/// Largest ring buffer, in bytes (`exec`, `run` and the docs alike).
pub const RING_MAX: u64 = 1 << 30;
/// Smallest agent queue, in bytes: one largest record.
pub const QUEUE_BYTES_MIN: u64 = RECORD_MAX as u64;

/// Human form of a byte count that is a whole number of KiB, MiB or GiB.
pub fn human(n: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift && n % (1 << shift) == 0 {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n} bytes")
}

/// A ring-buffer size (`name`: the flag or key that set it): a power of
/// two between [`RING_MIN`] and [`RING_MAX`]. The error says why and what
/// to write.
pub fn check_ring(name: &str, n: u64) -> Result<u32, String> {
    if n < RING_MIN {
        return Err(format!(
            "{name} = {n} bytes is smaller than one kernel record ({RECORD_MAX} bytes, a {} stdio chunk): \
             the minimum is {} (e.g. \"32MiB\")",
            human(abi::CHUNK_LARGE as u64),
            human(RING_MIN)
        ));
    }
    if n > RING_MAX || !n.is_power_of_two() {
        return Err(format!(
            "{name} = {n} must be a power of two between {} and {} (e.g. \"32MiB\")",
            human(RING_MIN),
            human(RING_MAX)
        ));
    }
    Ok(n as u32)
}

/// An agent queue budget in bytes: at least one largest record.
pub fn check_queue_bytes(name: &str, n: u64) -> Result<(), String> {
    if n < QUEUE_BYTES_MIN {
        return Err(format!(
            "{name} = {n} bytes cannot hold one kernel record ({RECORD_MAX} bytes): the minimum is {} (e.g. \"64MiB\")",
            human(QUEUE_BYTES_MIN.next_power_of_two())
        ));
    }
    Ok(())
}

/// A kernel table size in entries (`--max-watched`, `--max-channels`).
pub fn check_table(name: &str, n: u64) -> Result<u32, String> {
    use crate::loader::Tables;
    if n < u64::from(Tables::MIN) || n > u64::from(Tables::MAX) {
        return Err(format!("{name} = {n} must be between {} and {} entries", Tables::MIN, Tables::MAX));
    }
    Ok(n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_smaller_than_one_record_is_refused_naming_the_minimum() {
        assert!(RING_MIN > 4096 && RING_MIN as usize >= RECORD_MAX + RING_RECORD_HEADER);
        let e = check_ring("--ring-buffer-size", 4096).unwrap_err();
        assert!(e.contains("smaller than one kernel record") && e.contains(&human(RING_MIN)), "{e}");
        assert_eq!(check_ring("x", RING_MIN), Ok(RING_MIN as u32));
        assert_eq!(check_ring("x", 32 << 20), Ok(32 << 20));
        assert!(check_ring("x", 3 << 20).unwrap_err().contains("power of two"));
        // exec and run share one maximum: 1GiB
        assert!(check_ring("x", 1 << 30).is_ok());
        assert!(check_ring("x", 2 << 30).unwrap_err().contains("1GiB"));
    }

    #[test]
    fn a_queue_that_cannot_hold_one_record_is_refused() {
        let e = check_queue_bytes("sensor.queue_bytes", 0).unwrap_err();
        assert!(e.contains("cannot hold one kernel record") && e.contains("minimum"), "{e}");
        assert!(check_queue_bytes("q", QUEUE_BYTES_MIN).is_ok());
    }

    #[test]
    fn table_sizes_are_bounded() {
        assert!(check_table("--max-channels", 10).unwrap_err().contains("1024"));
        assert_eq!(check_table("--max-channels", 65536), Ok(65536));
    }
}
