//! The time the daemon was not watching, between two runs on one log.
//!
//! Owns reading how the previous run ended: the last event line in the log
//! directory (the live file, or the newest rotated one when the live file
//! is empty) gives when it stopped watching, and whether that line is its
//! final `drops` totals (written on every clean stop: SIGTERM, SIGINT) or
//! something else (killed with `kill -9`, crashed, the machine lost power).
//! The daemon writes a `gap` event from that time to its own start
//! (docs/events.md).

use crate::logfile::LIVE_NAME;
use serde_json::Value;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Bytes read from the end of a file to find its last whole line.
const TAIL: u64 = 256 * 1024;

/// How the previous run on a log ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousRun {
    /// `ts` of its last event line (RFC 3339 UTC).
    pub last_ts: String,
    /// Unix ns of `last_ts`.
    pub last_unix_ns: i128,
    /// Its last line is its final `drops` totals: it stopped cleanly.
    pub clean: bool,
}

/// The previous run's end from the files in `dir`, or `None` for a new log
/// (or one whose tail has no event line with a `ts`). A torn last line (a
/// crash mid-write) is skipped.
pub fn previous_run(dir: &Path) -> Option<PreviousRun> {
    let live = dir.join(LIVE_NAME);
    let rotated = dir.join(format!("{LIVE_NAME}.1"));
    [live, rotated].iter().find_map(|p| last_event(p))
}

fn last_event(path: &Path) -> Option<PreviousRun> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let from = len.saturating_sub(TAIL);
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    // the first line of a tail read from the middle is partial
    let skip_first = from > 0;
    let lines: Vec<&[u8]> = buf.split(|b| *b == b'\n').skip(usize::from(skip_first)).collect();
    lines.iter().rev().find_map(|l| {
        let v: Value = serde_json::from_slice(l).ok()?;
        let last_ts = v.get("ts")?.as_str()?.to_string();
        let last_unix_ns = crate::timefmt::parse_rfc3339(&last_ts)?;
        let clean = v.get("kind").and_then(Value::as_str) == Some("drops") && v.get("final") == Some(&Value::Bool(true));
        Some(PreviousRun { last_ts, last_unix_ns, clean })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str, live: &str, rotated: Option<&str>) -> std::path::PathBuf {
        let d = crate::test_dir(name);
        std::fs::write(d.join(LIVE_NAME), live).unwrap();
        if let Some(r) = rotated {
            std::fs::write(d.join(format!("{LIVE_NAME}.1")), r).unwrap();
        }
        d
    }

    const START: &str = r#"{"ts":"2026-01-01T00:00:00.000000000Z","kind":"sensor_start"}"#;
    const OPEN: &str = r#"{"ts":"2026-01-01T00:00:05.000000000Z","kind":"open"}"#;
    const FINAL: &str = r#"{"ts":"2026-01-01T00:00:07.500000000Z","kind":"drops","final":true}"#;

    #[test]
    fn a_clean_stop_ends_with_the_final_totals() {
        let d = dir("gap-clean", &format!("{START}\n{OPEN}\n{FINAL}\n"), None);
        let p = previous_run(&d).unwrap();
        assert_eq!(p.last_ts, "2026-01-01T00:00:07.500000000Z");
        assert!(p.clean);
        assert_eq!(p.last_unix_ns, crate::timefmt::parse_rfc3339("2026-01-01T00:00:07.5Z").unwrap());
    }

    #[test]
    fn a_kill_ends_with_anything_else_and_a_torn_line_is_skipped() {
        let d = dir("gap-kill", &format!("{START}\n{OPEN}\n{{\"ts\":\"2026-01-01T00:00:06Z\",\"ki"), None);
        let p = previous_run(&d).unwrap();
        assert_eq!((p.last_ts.as_str(), p.clean), ("2026-01-01T00:00:05.000000000Z", false));
    }

    #[test]
    fn an_empty_live_file_after_rotation_reads_the_newest_rotated_one() {
        let d = dir("gap-rotated", "", Some(&format!("{OPEN}\n")));
        assert_eq!(previous_run(&d).unwrap().last_ts, "2026-01-01T00:00:05.000000000Z");
        let d = dir("gap-new", "", None);
        assert_eq!(previous_run(&d), None);
    }
}
