//! Shared helpers of the privileged tests: run the real sensor binary on
//! state of its own (never the host's /etc/mcp-sensor or /var/lib), read
//! the events it wrote (a missing file is a failure), wait for the event
//! that proves a state, and fail loudly (never skip) when the machine
//! cannot run BPF.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

/// The flags that keep a sensor run (`exec` or `run`) off the host's own
/// state: an empty rules directory of its own instead of
/// /etc/mcp-sensor/rules.d (a test's own `--rules` load after it), and a
/// state directory of its own instead of /var/lib/mcp-sensor. Where events
/// go is each test's own too (`--events`, or `[log] dir`).
pub fn isolation(dir: &Path) -> Vec<String> {
    let rules = dir.join("rules.d");
    std::fs::create_dir_all(&rules).unwrap();
    let state = dir.join("state");
    vec!["--state-dir".into(), state.display().to_string(), "--rules".into(), rules.display().to_string()]
}

/// `mcp-sensor exec` isolated in `dir`, writing events to `events`.
pub fn exec_command(dir: &Path, events: &Path) -> Command {
    let mut c = Command::new(sensor_bin());
    c.arg("exec").arg("--events").arg(events).args(isolation(dir));
    c
}

/// Polls `what` until it is true; panics with `msg` after 120 s (a hang
/// guard, not a timing assertion).
pub fn wait_for(msg: &str, mut what: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !what() {
        assert!(Instant::now() < deadline, "gave up after 120 s waiting for {msg}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the events file at `path` (written while the sensor runs)
/// holds a complete line for which `pred` is true; returns that event.
pub fn wait_for_event(path: &Path, msg: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let mut found = None;
    wait_for(msg, || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        found = text
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| pred(e));
        found.is_some()
    });
    found.unwrap()
}

/// Waits until the text file at `path` contains `text`.
pub fn wait_for_text(path: &Path, text: &str) {
    wait_for(&format!("`{text}` in {}", path.display()), || {
        std::fs::read_to_string(path).is_ok_and(|t| t.contains(text))
    });
}

/// A shell loop that waits for `file` to exist (60 s at most: a test that
/// failed before creating it must not leave the loop running).
pub fn wait_sh(file: &Path) -> String {
    format!("i=0; while [ ! -e {f} ] && [ $i -lt 3000 ]; do sleep 0.02; i=$((i+1)); done", f = file.display())
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
    /// The run's one final `drops` line: the sensor ran to its end and
    /// wrote its totals (the positive control of "nothing was reported").
    pub fn final_drops(&self) -> &Value {
        let fin: Vec<_> = self.of_kind("drops").filter(|e| e["final"] == true).collect();
        assert_eq!(fin.len(), 1, "one final drops line\n{}", self.describe());
        fin[0]
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

/// Every line of the events file at `path`. A missing file is a failure:
/// "no events" must never be what a sensor that did not run looks like.
pub fn read_events(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no events file {}: {e} (the sensor did not run, or wrote elsewhere)", path.display()));
    events_with_torn_line(&text, None)
}

/// The events of a log a crash may have cut: every line must be a whole
/// event except line `torn` (0-based), which may be anything. Reading a
/// crashed log, `torn` is its last line when that has no newline; after a
/// restart completed it, the same index.
pub fn events_with_torn_line(text: &str, torn: Option<usize>) -> Vec<Value> {
    text.split_inclusive('\n')
        .enumerate()
        .filter(|(i, _)| Some(*i) != torn)
        .map(|(i, l)| {
            assert!(l.ends_with('\n'), "line {i} is cut short (no newline): {l:?}");
            serde_json::from_str(l).unwrap_or_else(|e| panic!("line {i} is not a whole event ({e}): {l:?}"))
        })
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
    let out = exec_command(dir, &events)
        .args(flags)
        .arg("--")
        .args(cmd)
        .stdin(stdin)
        .output()
        .expect("run mcp-sensor");
    Run { events: read_events(&events), out }
}

#[test]
fn torn_line_reader_forgives_only_the_named_line() {
    let whole = "{\"kind\":\"a\"}\n{\"kind\":\"b\"}\n";
    assert_eq!(events_with_torn_line(whole, None).len(), 2);
    let cut = format!("{whole}{{\"kind\":\"c");
    assert_eq!(events_with_torn_line(&cut, Some(2)).len(), 2, "the torn last line is forgiven");
    let completed = format!("{cut}\n{{\"kind\":\"d\"}}\n");
    assert_eq!(events_with_torn_line(&completed, Some(2)).len(), 3, "and still forgiven once completed");
    for (text, torn) in [(cut.as_str(), None), (completed.as_str(), Some(3)), (completed.as_str(), None)] {
        let r = std::panic::catch_unwind(|| events_with_torn_line(text, torn));
        assert!(r.is_err(), "a torn line other than the named one must fail: {text:?} torn={torn:?}");
    }
}
