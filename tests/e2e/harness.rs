//! Shared helpers of the privileged tests: run the real sensor binary,
//! read the events it wrote, and fail loudly (never skip) when the machine
//! cannot run BPF.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

pub fn sensor_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mcp-sensor")
}

/// Root is required: in CI a missing capability is a failure, not a skip.
pub fn require_root() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        panic!("these tests load real BPF programs and must run as root (run `cargo xtask test` as root)");
    }
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "mcp-sensor-e2e-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub struct Run {
    pub out: Output,
    pub events: Vec<Value>,
}

impl Run {
    pub fn status(&self) -> i32 {
        self.out.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.events.iter().filter(move |e| e["kind"] == kind)
    }
    /// Events of `kind` whose `field` equals `value`.
    pub fn find(&self, kind: &str, field: &str, value: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["kind"] == kind && e[field] == value).collect()
    }
    pub fn describe(&self) -> String {
        let mut s = format!("status {:?}\nstderr: {}\nevents:\n", self.out.status, self.stderr());
        for e in &self.events {
            if e["kind"] != "open" || !e["path"].as_str().unwrap_or("").starts_with("/usr/lib") {
                s.push_str(&e.to_string());
                s.push('\n');
            }
        }
        s
    }
}

pub fn read_events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l:?}: {e}")))
        .collect()
}

/// `mcp-sensor exec --events <tmp> -- cmd...`, stdin null.
pub fn exec(dir: &Path, cmd: &[&str]) -> Run {
    exec_with(dir, &[], cmd, Stdio::null())
}

pub fn exec_with(dir: &Path, flags: &[&str], cmd: &[&str], stdin: Stdio) -> Run {
    require_root();
    let events = dir.join(format!("events-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&events);
    let out = Command::new(sensor_bin())
        .arg("exec")
        .arg("--events")
        .arg(&events)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(flags)
        .arg("--")
        .args(cmd)
        .stdin(stdin)
        .output()
        .expect("run mcp-sensor");
    Run { out, events: read_events(&events) }
}
