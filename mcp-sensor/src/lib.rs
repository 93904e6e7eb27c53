//! mcp-sensor: an eBPF sensor for MCP servers.
//!
//! Data flow (ARCHITECTURE.md maps each arrow to its module):
//! kernel probes -> ring buffer ([`reader`]) -> [`decode`] -> process tree
//! ([`procs`]) -> MCP sessions ([`mcp`]) -> [`correlate`] -> [`rules`] ->
//! outputs ([`output`]); [`pipeline`] runs the steps in that order, and
//! [`loader`] owns the kernel side's handles.

/// `eprintln!` that never panics: stderr may be a closed pipe (`exec`'s
/// events go there by default), and a message must not kill the sensor.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod abi;
pub mod aggregate;
pub mod budget;
pub mod agent;
pub mod cli;
pub mod config;
pub mod correlate;
pub mod daemon;
pub mod decode;
pub mod detect;
pub mod discover;
pub mod doctor;
pub mod drops;
pub mod enforce;
pub mod event;
pub mod exe_is;
pub mod export;
pub mod fchange;
pub mod identity;
pub mod features;
pub mod gap;
pub mod exec_cmd;
pub mod exec_tree;
pub mod investigate;

/// A fresh, empty scratch directory for a unit test:
/// `$TMPDIR/ms-<tag>-<pid>`, emptied if an earlier run left it.
#[cfg(test)]
pub(crate) fn test_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ms-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
pub mod known_scan;
pub mod limits;
pub mod loader;
pub mod logfile;
pub mod metrics;
pub mod mcp;
pub mod output;
pub mod pipeline;
#[cfg(test)]
mod pipeline_bench;
pub mod procs;
pub mod reader;
pub mod rulefiles;
pub mod rules_cmd;
pub mod rules;
pub mod service;
pub mod shell_run;
pub mod status;
pub mod stdout_log;
pub mod timefmt;
