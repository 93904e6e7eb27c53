//! Reading event logs: which files the LOG arguments mean, in which order,
//! and their lines, tolerating logs that are being written or were cut.
//!
//! A directory means its `events.jsonl*` files. Rotated files of one log
//! (`events.jsonl.2`, `.1`, then `events.jsonl`: a higher number is older)
//! are read oldest first, whatever order they were named in (a shell glob
//! sorts `.10` before `.2`). A last line without its newline that is not a
//! whole JSON object is a line being written (or cut by a crash): reported
//! with `file:line` and skipped. A bad line anywhere else is reported,
//! counted, and reading goes on.
//!
//! A directory's `alerts.jsonl*` (the daemon's alerts log: every alert line
//! again, rotated apart; logfile.rs) are read after its event log, and an
//! `alert` or `alert_summary` line already read (same kind and `alert_id`)
//! is skipped, counted in its source's `duplicates`: each alert is shown
//! once, and one the event log lost to rotation is still shown.

use super::lines::{Backing, LineRef, Lines};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Where the daemon writes its log.
pub const DEFAULT_LOG_DIR: &str = "/var/log/mcp-sensor";
/// Bad lines reported one by one per file; the rest are only counted.
const REPORTED_PER_FILE: u64 = 20;

/// One event line, parsed; handed to the caller and not kept.
#[derive(Debug, Clone)]
pub struct Line {
    pub value: Value,
    /// Unix-epoch ns of `ts`.
    pub ts_ns: i128,
    /// Index into [`Log::sources`].
    pub source: usize,
    pub line: u64,
    /// Where it is, to read it back when rendering.
    pub at: LineRef,
}

/// What was read from one file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Source {
    pub path: PathBuf,
    /// Event lines kept.
    pub events: u64,
    /// Lines that were not events (reported on stderr), torn tail included.
    pub bad_lines: u64,
    /// The last line had no newline and was not a whole event.
    pub torn_tail: bool,
    /// Alert lines skipped: already read from the other log (event log or
    /// alerts log).
    #[serde(skip_serializing_if = "is_zero")]
    pub duplicates: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What was read, with the problems found on the way (the lines
/// themselves go to the caller one by one), and the files kept open to
/// read lines back from.
#[derive(Debug, Default)]
pub struct Log {
    pub sources: Vec<Source>,
    /// `file:line: message`, ready for stderr.
    pub problems: Vec<String>,
    pub lines: Lines,
    /// `(kind, alert_id)` of the alert lines read, to skip their copies.
    alert_ids: std::collections::HashSet<(bool, String)>,
}

/// `(log name without its rotation suffix, rotation number)`: `events.jsonl`
/// is 0, `events.jsonl.3` is 3. Names without a numeric suffix are their own log.
fn rotation(path: &Path) -> (PathBuf, u64) {
    if let (Some(ext), Some(stem)) = (path.extension().and_then(|e| e.to_str()), path.file_stem()) {
        if let Ok(n) = ext.parse::<u64>() {
            if stem.to_string_lossy().ends_with(".jsonl") {
                return (path.with_file_name(stem), n);
            }
        }
    }
    (path.to_path_buf(), 0)
}

/// `events.jsonl` and its rotated siblings in `dir`.
fn log_files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("cannot list {}", dir.display()))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let rotated = |live: &str| {
            name.strip_prefix(live).and_then(|r| r.strip_prefix('.')).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        };
        let events = name == "events.jsonl" || rotated("events.jsonl");
        let alerts = name == "alerts.jsonl" || rotated("alerts.jsonl");
        if (events || alerts) && path.is_file() {
            files.push(path);
        }
    }
    // the event log first: the alerts log adds what it lost
    files.sort_by_key(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("alerts.jsonl")));
    if files.iter().all(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("alerts.jsonl"))) {
        files.clear();
    }
    if files.is_empty() {
        bail!(
            "no events.jsonl* files in {}: pass the file `mcp-sensor exec --events FILE` wrote, or the daemon's log directory",
            dir.display()
        );
    }
    Ok(files)
}

/// The files LOG arguments name, each log's rotations oldest first; logs
/// in the order first named. No arguments: the daemon's directory.
pub fn expand(args: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let default = [PathBuf::from(DEFAULT_LOG_DIR)];
    if args.is_empty() && !default[0].exists() {
        bail!("no daemon log at {DEFAULT_LOG_DIR}: pass LOG, e.g. the file `mcp-sensor exec --events FILE` wrote");
    }
    let args = if args.is_empty() { &default[..] } else { args };
    let mut named = Vec::new();
    for arg in args {
        let md = std::fs::metadata(arg).with_context(|| format!("cannot read {}", arg.display()))?;
        if md.is_dir() {
            named.extend(log_files_in(arg)?);
        } else {
            named.push(arg.clone());
        }
    }
    let mut logs: Vec<(PathBuf, Vec<(u64, PathBuf)>)> = Vec::new();
    for path in named {
        let (base, n) = rotation(&path);
        match logs.iter_mut().find(|(b, _)| *b == base) {
            Some((_, files)) if files.iter().any(|(_, p)| *p == path) => {}
            Some((_, files)) => files.push((n, path)),
            None => logs.push((base, vec![(n, path)])),
        }
    }
    Ok(logs
        .into_iter()
        .flat_map(|(_, mut files)| {
            files.sort_by_key(|f| std::cmp::Reverse(f.0));
            files.into_iter().map(|(_, p)| p)
        })
        .collect())
}

/// Why a line is not an event, or its time.
pub(super) fn parse_line(bytes: &[u8]) -> Result<(Value, i128), String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON ({e})"))?;
    if !value.is_object() {
        return Err("not an event: not a JSON object".into());
    }
    if !value.get("kind").is_some_and(Value::is_string) {
        return Err("not an event: no `kind`".into());
    }
    let ts = value.get("ts").and_then(Value::as_str).ok_or("not an event: no `ts`")?;
    let ts_ns = crate::timefmt::parse_rfc3339(ts).ok_or_else(|| format!("`ts` {ts:?} is not an RFC 3339 UTC time"))?;
    Ok((value, ts_ns))
}

/// What `file`'s lines are read back from: the file itself when it is a
/// regular file; else (a pipe, `<(zcat events.jsonl.1.gz)`: it cannot be
/// read again) its whole content, read now and held in memory.
fn backing_of(file: std::fs::File) -> std::io::Result<Backing> {
    if file.metadata()?.is_file() {
        return Ok(Backing::File(file));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut &file, &mut bytes)?;
    Ok(Backing::Memory(bytes))
}

impl Log {
    /// Reads `paths` in order, each line to `each`. A file that cannot be
    /// opened is an error; bad lines are not (see the module doc).
    pub fn read(paths: &[PathBuf], mut each: impl FnMut(Line)) -> Result<Log> {
        let mut log = Log::default();
        if paths.len() > super::lines::MAX_SOURCES {
            bail!("{} files named: investigate reads at most {} at once (name fewer, or join some)", paths.len(), super::lines::MAX_SOURCES);
        }
        for path in paths {
            let file = std::fs::File::open(path).with_context(|| {
                format!("cannot open {} (every file read stays open until the report is written: with many files, raise `ulimit -n`)", path.display())
            })?;
            let backing = backing_of(file).with_context(|| format!("cannot read {}", path.display()))?;
            log.read_one(path, backing, &mut each).with_context(|| format!("cannot read {}", path.display()))?;
        }
        Ok(log)
    }

    /// Reads one log from `backing` (named `path` in reports), and keeps
    /// it to read lines back from.
    pub fn read_one(&mut self, path: &Path, backing: Backing, each: &mut impl FnMut(Line)) -> std::io::Result<()> {
        match &backing {
            Backing::File(f) => self.read_lines(path, BufReader::with_capacity(1 << 20, f), each)?,
            Backing::Memory(m) => self.read_lines(path, &m[..], each)?,
        }
        self.lines.add(path.to_path_buf(), backing);
        Ok(())
    }

    /// An `alert` or `alert_summary` line read before (from the other log);
    /// else remembered.
    fn seen_alert(&mut self, v: &Value) -> bool {
        let summary = match v.get("kind").and_then(Value::as_str) {
            Some("alert") => false,
            Some("alert_summary") => true,
            _ => return false,
        };
        let Some(id) = v.get("alert_id").and_then(Value::as_str) else { return false };
        !self.alert_ids.insert((summary, id.to_string()))
    }

    fn read_lines(&mut self, path: &Path, mut reader: impl BufRead, each: &mut impl FnMut(Line)) -> std::io::Result<()> {
        let source = self.sources.len();
        let mut src = Source { path: path.to_path_buf(), ..Source::default() };
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        let mut offset = 0u64;
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf)?;
            if n == 0 {
                break;
            }
            let at = offset;
            offset += n as u64;
            line_no += 1;
            let complete = buf.last() == Some(&b'\n');
            let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let text = text.strip_suffix(b"\r").unwrap_or(text);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match parse_line(text) {
                Ok((value, _)) if self.seen_alert(&value) => src.duplicates += 1,
                Ok((value, ts_ns)) => {
                    src.events += 1;
                    let at = self.lines.refer(source, at, text);
                    each(Line { value, ts_ns, source, line: line_no, at });
                }
                Err(why) => {
                    src.bad_lines += 1;
                    let msg = if complete {
                        why
                    } else {
                        src.torn_tail = true;
                        format!("torn last line (no newline: being written, or cut short), skipped: {why}")
                    };
                    if src.bad_lines <= REPORTED_PER_FILE || !complete {
                        self.problems.push(format!("{}:{line_no}: {msg}", path.display()));
                    }
                }
            }
        }
        let unreported = src.bad_lines.saturating_sub(REPORTED_PER_FILE + u64::from(src.torn_tail));
        if unreported > 0 {
            self.problems.push(format!("{}: {unreported} more bad lines not shown", path.display()));
        }
        self.sources.push(src);
        Ok(())
    }
}
