//! Drops are data: turns loss counters into `drops` events.
//!
//! Owns the bookkeeping between successive reports: the kernel's per-kind
//! ring-buffer reserve failures and other counters, the agent queue's
//! overflow, and records the agent could not decode. A report names what
//! was lost and the setting to raise.

use crate::abi;
use crate::event::Drops;
use std::collections::BTreeMap;

/// Every counter, as totals since the sensor started.
/// `other` key: event lines the output could not write.
pub const LOG_WRITE_FAILED: &str = "log_write_failed";
/// Events of an undecided candidate server that did not fit the hold
/// bound (`discovery.max_held_events`): lost, and counted here.
pub const DISCOVERY_HELD_OVERFLOW: &str = "discovery_held_overflow";
/// `other` key: events of candidate servers found not to be MCP
/// (`cat | sort`, shells with piped stdio), discarded on purpose.
pub const DISCOVERY_DISCARDED: &str = "discovery_discarded";
/// `other` keys: stdio capture gaps the agent's reassembly met (offset
/// jumps: each hides at least one message or part of one), their bytes, and
/// the messages they cut (written incomplete: `malformed` or truncated).
pub const STDIO_GAPS: &str = "stdio_gaps";
pub const STDIO_GAP_BYTES: &str = "stdio_gap_bytes";
pub const STDIO_MESSAGES_DAMAGED: &str = "stdio_messages_damaged";
/// `other` key: idle candidates unwatched to make room in the full kernel
/// tables for a candidate they had missed (discover/late.rs): were one of
/// them a server, what it says from then on is not seen.
pub const DISCOVERY_CANDIDATES_EVICTED: &str = "discovery_candidates_evicted";
/// `other` key: kernel decisions (kills, refusals) on held events whose
/// record was forgotten when that table was full and reset.
pub const DISCOVERY_DECISIONS_FORGOTTEN: &str = "discovery_decisions_forgotten";
/// `other` key: identities the known-file table had no room for (rules/known.rs).
pub const KNOWN_FILES_FULL: &str = "known_files_full";
/// `other` key: processes already running at start that discovery could
/// not track (the kernel tables were full; see daemon::adopt_running).
pub const STARTUP_UNTRACKED: &str = "startup_processes_untracked";
/// `other` key: live sessions' first-request stamps the kernel's LRU
/// FIRST_REQ evicted (agent.rs restores them within a second).
pub const FIRST_REQUEST_EVICTED: &str = "first_request_evicted";
/// `other` key (`run --log-stdout`): event lines stdout could not take
/// (a closed pipe); they are in the log file.
pub const STDOUT_WRITE_FAILED: &str = "stdout_write_failed";
/// `other` key, at start: lines the previous run could not write, its
/// final totals among them (see logfile::record_unwritten).
pub const LOG_WRITE_FAILED_BEFORE: &str = "log_write_failed_previous_run";

/// `other` keys of the OTLP export (stage `export`, export/): spans the
/// receiver refused or could not be reached for after the retries (at
/// stop, also those not sent in time); spans dropped because the export
/// queue was full; span events past a span's limit.
pub const EXPORT_FAILED: &str = "export_failed";
pub const EXPORT_QUEUE_FULL: &str = "export_queue_full";
pub const EXPORT_EVENTS_OVER_LIMIT: &str = "export_span_events_over_limit";

/// What to do about lost spans.
pub const EXPORT_HINT: &str = "spans could not be exported to the OTLP receiver (unreachable or refusing, after retries) or its queue was full: check the collector at the export endpoint, or raise export.otlp.max_queue_size";

/// The export's losses under their `other` keys.
pub fn export_drops(s: &crate::export::Stats) -> [(&'static str, u64); 3] {
    [(EXPORT_FAILED, s.failed), (EXPORT_QUEUE_FULL, s.queue_full), (EXPORT_EVENTS_OVER_LIMIT, s.events_over_limit)]
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Ring-buffer reserve failures, indexed by event kind (abi MS_EV_*).
    pub kernel: Vec<u64>,
    /// Other kernel counters, indexed by MS_CNT_*.
    pub other: Vec<u64>,
    pub queue: u64,
    pub undecodable: u64,
    /// Event lines the output could not write (disk full, closed pipe).
    pub log_write_failed: u64,
    /// Events of undecided candidate servers past discovery's hold bound.
    pub discovery_held_overflow: u64,
    /// Stdio capture losses seen by reassembly (correlate::StdioLoss).
    pub stdio: crate::correlate::StdioLoss,
    /// Events of candidates found not to be MCP, discarded (discover::gate).
    pub discovery_discarded: u64,
    /// Held kernel decisions forgotten (pipeline, MAX_HELD_DECISIONS).
    pub discovery_decisions_forgotten: u64,
    /// Idle candidates unwatched for room (discover::late).
    pub discovery_candidates_evicted: u64,
    /// Identities of files rules name that the known-file table had no
    /// room for (rules/known.rs): opens of them under other names are
    /// judged by the name alone.
    pub known_files_full: u64,
    /// Processes running at start that the kernel tables had no room for.
    pub startup_untracked: u64,
    /// Live sessions' first-request stamps FIRST_REQ evicted (restored).
    pub first_request_evicted: u64,
    /// Event lines stdout could not take (`run --log-stdout`; stdout_log.rs).
    pub stdout_write_failed: u64,
    /// The OTLP export's counts (zero when export is off).
    pub export: crate::export::Stats,
}

#[derive(Debug, Default)]
pub struct DropTracker {
    last: Totals,
}

fn sub(now: &[u64], before: &[u64], i: usize) -> u64 {
    now.get(i).copied().unwrap_or(0).saturating_sub(before.get(i).copied().unwrap_or(0))
}

fn to_drops(now: &Totals, before: &Totals, is_final: bool) -> Drops {
    let mut kernel = BTreeMap::new();
    for i in 0..now.kernel.len() {
        let n = sub(&now.kernel, &before.kernel, i);
        if n > 0 {
            *kernel.entry(abi::kind_name(i as u32).to_string()).or_insert(0) += n;
        }
    }
    let mut other = BTreeMap::new();
    for i in 0..now.other.len() {
        let n = sub(&now.other, &before.other, i);
        if let (true, Some(name)) = (n > 0, abi::counter_name(i as u32)) {
            other.insert(name.to_string(), n);
        }
    }
    let undecodable = now.undecodable.saturating_sub(before.undecodable);
    if undecodable > 0 {
        other.insert("undecodable_records".into(), undecodable);
    }
    let unwritten = now.log_write_failed.saturating_sub(before.log_write_failed);
    if unwritten > 0 {
        other.insert(LOG_WRITE_FAILED.into(), unwritten);
    }
    let held = now.discovery_held_overflow.saturating_sub(before.discovery_held_overflow);
    if held > 0 {
        other.insert(DISCOVERY_HELD_OVERFLOW.into(), held);
    }
    for (key, n, was) in [
        (DISCOVERY_DISCARDED, now.discovery_discarded, before.discovery_discarded),
        (STDIO_GAPS, now.stdio.gaps, before.stdio.gaps),
        (STDIO_GAP_BYTES, now.stdio.gap_bytes, before.stdio.gap_bytes),
        (STDIO_MESSAGES_DAMAGED, now.stdio.messages_damaged, before.stdio.messages_damaged),
        (DISCOVERY_DECISIONS_FORGOTTEN, now.discovery_decisions_forgotten, before.discovery_decisions_forgotten),
        (DISCOVERY_CANDIDATES_EVICTED, now.discovery_candidates_evicted, before.discovery_candidates_evicted),
        (STDOUT_WRITE_FAILED, now.stdout_write_failed, before.stdout_write_failed),
        (FIRST_REQUEST_EVICTED, now.first_request_evicted, before.first_request_evicted),
    ] {
        if n > was {
            other.insert(key.into(), n - was);
        }
    }
    for ((key, n), (_, was)) in export_drops(&now.export).into_iter().zip(export_drops(&before.export)) {
        if n > was {
            other.insert(key.into(), n - was);
        }
    }
    let known = now.known_files_full.saturating_sub(before.known_files_full);
    if known > 0 {
        other.insert(KNOWN_FILES_FULL.into(), known);
    }
    let untracked = now.startup_untracked.saturating_sub(before.startup_untracked);
    if untracked > 0 {
        other.insert(STARTUP_UNTRACKED.into(), untracked);
    }
    let queue = now.queue.saturating_sub(before.queue);
    let mut hints = Vec::new();
    if let Some((kind, _)) = kernel.iter().max_by_key(|(_, n)| **n) {
        hints.push(format!(
            "the kernel ring buffer was full (busiest: {kind}): raise --ring-buffer-size"
        ));
    }
    if queue > 0 {
        hints.push("the agent's queue was full: raise --queue-size / --queue-bytes".into());
    }
    if other.contains_key("stdio_bytes_over_cap") {
        hints.push("a single read/write was larger than --stdio-cap: raise it".into());
    }
    if unwritten > 0 {
        hints.push("event lines could not be written (disk full, or the output closed): free space where the events go".into());
    }
    if known > 0 {
        hints.push(format!("more than {} files are named by open rules: hard links and other names of the rest are not recognised; narrow the rules' paths", crate::rules::known::MAX_KNOWN));
    }
    if held > 0 {
        hints.push(
            "a candidate server's events before its first MCP message did not fit: it did more than \
             discovery.max_held_events things, or all candidates together held 4x that and it was the quietest: raise it"
                .into(),
        );
    }
    if other.contains_key(DISCOVERY_DECISIONS_FORGOTTEN) {
        hints.push("more than 4096 kernel decisions were held for undecided candidates at once: their alerts may not say the kernel acted".into());
    }
    if other.contains_key(EXPORT_FAILED) || other.contains_key(EXPORT_QUEUE_FULL) {
        hints.push(EXPORT_HINT.into());
    }
    if other.contains_key("syscall_stash_full") {
        hints.push("too many watched threads in syscalls at once (or the kernel could not allocate a thread's stash)".into());
    }
    if other.contains_key("watch_map_full") {
        hints.push("the kernel's table of watched processes was full: processes went unwatched; raise --max-watched (sensor.max_watched)".into());
    }
    let untracked_cands = other.get("candidates_untracked").copied().unwrap_or(0) + untracked;
    if untracked_cands > 0 || other.contains_key("channel_map_full") {
        hints.push(format!(
            "could not track {untracked_cands} processes with pipes on stdin and stdout (possible MCP servers): \
             the kernel's channel table was full; raise --max-channels (sensor.max_channels), and --max-watched with it"
        ));
    }
    if other.contains_key(DISCOVERY_CANDIDATES_EVICTED) {
        hints.push(
            "candidates idle for 10 s were unwatched to make room in the full kernel tables for one they had missed: raise --max-channels (sensor.max_channels) and --max-watched"
                .into(),
        );
    }
    if other.contains_key(FIRST_REQUEST_EVICTED) {
        hints.push(
            "more sessions than --max-watched (sensor.max_watched) stamped their first request: a live server's stamp \
             was evicted and restored within a second; until then its after-first-request kills were the agent's, late"
                .into(),
        );
    }
    if other.contains_key("clients_map_full") {
        hints.push(
            "more MCP clients ran at once than the kernel's client table holds (8,192): the servers of those past it \
             are found by their stdio pipes alone (discovery.stdio_pipes)"
                .into(),
        );
    }
    if other.contains_key("first_request_map_full") || other.contains_key("denied_map_full") {
        hints.push("an enforcement table was full: a kernel decision may have been left to the agent".into());
    }
    Drops {
        kernel,
        queue,
        other,
        hint: (!hints.is_empty()).then(|| hints.join("; ")),
        is_final,
        enforced: None,
    }
}

impl DropTracker {
    /// Losses since the last call, or `None` when there were none.
    pub fn delta(&mut self, now: Totals) -> Option<Drops> {
        let d = to_drops(&now, &self.last, false);
        self.last = now;
        let any = !d.kernel.is_empty() || d.queue > 0 || !d.other.is_empty();
        any.then_some(d)
    }

    /// The run's totals, always.
    pub fn total(&self, now: &Totals) -> Drops {
        to_drops(now, &Totals::default(), true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(open: u64, queue: u64, cap: u64) -> Totals {
        let mut kernel = vec![0; abi::EV_KIND_MAX as usize];
        kernel[abi::EV_OPEN as usize] = open;
        let mut other = vec![0; abi::CNT_MAX as usize];
        other[abi::CNT_STDIO_CAP as usize] = cap;
        Totals { kernel, other, queue, ..Default::default() }
    }

    #[test]
    fn discovery_hold_overflow_is_a_reason_with_a_hint() {
        let mut t = DropTracker::default();
        let d = t.delta(Totals { discovery_held_overflow: 7, ..totals(0, 0, 0) }).unwrap();
        assert_eq!(d.other.get(DISCOVERY_HELD_OVERFLOW), Some(&7));
        assert!(d.hint.unwrap().contains("discovery.max_held_events"));
    }

    #[test]
    fn lines_the_output_lost_are_a_reason_with_a_hint() {
        let mut t = DropTracker::default();
        let d = t.delta(Totals { log_write_failed: 4, ..totals(0, 0, 0) }).unwrap();
        assert_eq!(d.other.get(LOG_WRITE_FAILED), Some(&4));
        assert!(d.hint.unwrap().contains("free space"));
        assert_eq!(t.delta(Totals { log_write_failed: 4, ..totals(0, 0, 0) }), None);
    }

    #[test]
    fn discovery_discards_are_counted_in_the_lines_and_add_up_to_the_total() {
        let mut t = DropTracker::default();
        let d1 = t.delta(Totals { discovery_discarded: 5, ..totals(0, 0, 0) }).unwrap();
        let d2 = t.delta(Totals { discovery_discarded: 12, discovery_decisions_forgotten: 1, ..totals(0, 0, 0) }).unwrap();
        assert_eq!((d1.other.get(DISCOVERY_DISCARDED), d2.other.get(DISCOVERY_DISCARDED)), (Some(&5), Some(&7)));
        assert_eq!(d2.other.get(DISCOVERY_DECISIONS_FORGOTTEN), Some(&1));
        assert!(d2.hint.unwrap().contains("kernel decisions"));
        let fin = t.total(&Totals { discovery_discarded: 12, ..totals(0, 0, 0) });
        assert_eq!(fin.other.get(DISCOVERY_DISCARDED), Some(&12));
    }

    #[test]
    fn full_kernel_tables_are_reasons_naming_the_setting_to_raise() {
        let mut t = DropTracker::default();
        let mut now = totals(0, 0, 0);
        now.other[abi::CNT_CHAN_FULL as usize] = 9;
        now.other[abi::CNT_CAND_LOST as usize] = 5;
        now.startup_untracked = 2;
        let d = t.delta(now.clone()).unwrap();
        assert_eq!(d.other.get("channel_map_full"), Some(&9));
        assert_eq!(d.other.get("candidates_untracked"), Some(&5));
        assert_eq!(d.other.get(STARTUP_UNTRACKED), Some(&2));
        let hint = d.hint.unwrap();
        assert!(hint.contains("could not track 7 processes") && hint.contains("--max-channels"), "{hint}");
        now.other[abi::CNT_WATCH_FULL as usize] = 1;
        let hint = t.delta(now.clone()).unwrap().hint.unwrap();
        assert!(hint.contains("--max-watched") && !hint.contains("--max-channels"), "{hint}");
        // a live server's evicted first-request stamp (restored by the agent)
        now.first_request_evicted = 3;
        let d = t.delta(now.clone()).unwrap();
        assert_eq!(d.other.get(FIRST_REQUEST_EVICTED), Some(&3));
        let hint = d.hint.unwrap();
        assert!(hint.contains("first request") && hint.contains("--max-watched"), "{hint}");
        assert_eq!(t.total(&now).other.get(FIRST_REQUEST_EVICTED), Some(&3));
    }

    #[test]
    fn export_losses_are_reasons_with_a_hint_and_deltas() {
        let mut t = DropTracker::default();
        let stats = |failed, queue_full| crate::export::Stats { failed, queue_full, ..Default::default() };
        let d = t.delta(Totals { export: stats(3, 1), ..totals(0, 0, 0) }).unwrap();
        assert_eq!((d.other.get(EXPORT_FAILED), d.other.get(EXPORT_QUEUE_FULL)), (Some(&3), Some(&1)));
        assert!(d.hint.unwrap().contains("export.otlp.max_queue_size"));
        let d = t.delta(Totals { export: stats(5, 1), ..totals(0, 0, 0) }).unwrap();
        assert_eq!((d.other.get(EXPORT_FAILED), d.other.get(EXPORT_QUEUE_FULL)), (Some(&2), None));
        assert_eq!(t.total(&Totals { export: stats(5, 1), ..totals(0, 0, 0) }).other.get(EXPORT_FAILED), Some(&5));
    }

    #[test]
    fn quiet_when_nothing_lost() {
        let mut t = DropTracker::default();
        assert_eq!(t.delta(totals(0, 0, 0)), None);
    }

    #[test]
    fn reports_deltas_with_names_and_hints() {
        let mut t = DropTracker::default();
        let d = t.delta(totals(5, 2, 0)).unwrap();
        assert_eq!(d.kernel.get("open"), Some(&5));
        assert_eq!(d.queue, 2);
        let hint = d.hint.unwrap();
        assert!(hint.contains("--ring-buffer-size") && hint.contains("open"), "{hint}");
        assert!(hint.contains("--queue-size"), "{hint}");
        // next report counts only what is new
        let d = t.delta(totals(7, 2, 100)).unwrap();
        assert_eq!(d.kernel.get("open"), Some(&2));
        assert_eq!(d.queue, 0);
        assert_eq!(d.other.get("stdio_bytes_over_cap"), Some(&100));
        assert_eq!(t.delta(totals(7, 2, 100)), None);
    }

    #[test]
    fn final_report_is_totals_even_when_zero() {
        let t = DropTracker::default();
        let d = t.total(&totals(0, 0, 0));
        assert!(d.is_final && d.kernel.is_empty() && d.queue == 0);
        let d = t.total(&totals(3, 1, 0));
        assert_eq!((d.kernel.get("open"), d.queue), (Some(&3), 1));
    }
}
