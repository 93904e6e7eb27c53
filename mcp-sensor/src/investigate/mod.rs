//! `mcp-sensor investigate [LOG...]`: answers "what did this tool call
//! do?" from event logs, offline, without root or BPF.
//!
//! Data flow: [`read`] (which files, in which order; lines, torn or bad
//! ones reported; each line handed on and dropped, never all held; the
//! files kept open in [`lines`]) -> [`timeline`] (sessions -> calls ->
//! activity, alerts attached; events and alerts held as references to
//! their lines) -> [`filter`] -> a renderer, each event's line read back
//! as it is written out ([`shown`]; [`describe`] says each event in one
//! line): [`table`] (terminal), JSON ([`shown::Shown`]), or [`html`] (one
//! self-contained page). docs/investigate.md is the user's side of this.

pub mod describe;
pub mod filter;
pub mod html;
pub mod lines;
pub mod model;
pub mod read;
pub mod shown;
pub mod table;
pub mod timeline;
pub mod word;

#[cfg(test)]
mod tests_fixtures;
#[cfg(test)]
mod tests_render;
#[cfg(test)]
mod tests_timeline;

use crate::cli::{InvestigateArgs, InvestigateFormat};
use anyhow::{Context, Result};
use std::io::{IsTerminal, Write};

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Writes `path` readable by its owner only (the page holds tool
/// arguments and results): an existing file is emptied and its mode fixed
/// before `write` puts anything in it.
pub fn write_private(
    path: &std::path::Path,
    write: impl FnOnce(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    let mut w = std::io::BufWriter::with_capacity(256 << 10, f);
    write(&mut w)?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// Reads, builds, filters and renders; problems in the logs go to stderr.
pub fn run(args: InvestigateArgs) -> Result<i32> {
    let filters = filter::Filters::from_args(&args, now_ns())?;
    let files = read::expand(&args.logs)?;
    let (mut report, log) = timeline::read(&files)?;
    for p in &log.problems {
        eprintln!("mcp-sensor: warning: {p}");
    }
    filter::apply(&mut report, &filters);
    if !report.losses.is_empty() {
        eprintln!("mcp-sensor: warning: the sensor lost events while writing these logs (see `losses`): the timeline may be incomplete");
    }
    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    if let Some(path) = &args.html {
        write_private(path, |w| html::write_page(&report, &log.lines, w)).with_context(|| format!("cannot write {}", path.display()))?;
        let calls: usize = report.sessions.iter().map(|s| s.calls.len()).sum();
        eprintln!("mcp-sensor: wrote {} ({} sessions, {calls} calls)", path.display(), report.sessions.len());
    }
    let format = match (args.format, &args.html) {
        (Some(f), _) => Some(f),
        (None, Some(_)) => None,
        (None, None) if tty => Some(InvestigateFormat::Table),
        (None, None) => Some(InvestigateFormat::Json),
    };
    let mut out = std::io::BufWriter::with_capacity(64 << 10, stdout.lock());
    match format {
        Some(InvestigateFormat::Table) => {
            let color = tty && std::env::var_os("NO_COLOR").is_none();
            table::render(&report, &log.lines, &table::Style { color, all: args.all }, &mut out)
        }
        Some(InvestigateFormat::Json) => serde_json::to_writer_pretty(&mut out, &shown::Shown(&report, &log.lines))
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(out)),
        None => Ok(()),
    }
    .and_then(|()| out.flush())
    .or_else(|e| if e.kind() == std::io::ErrorKind::BrokenPipe { Ok(()) } else { Err(e) })
    .context("cannot write to stdout")?;
    for w in log.lines.warnings() {
        eprintln!("mcp-sensor: warning: {w}");
    }
    Ok(0)
}
