//! The sensor as a service, with the real binary: `run --check-config`
//! checks what `run` loads (rules too), one daemon per log and state
//! directory, a full log disk counted and reported (a real tmpfs filled
//! up), "needs root" said first, and `exec` going on with its server when
//! its event output fails or is closed.

use crate::daemon::{client, run_client, Daemon};
use crate::harness::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn sensor(args: &[&OsStr]) -> Output {
    require_root();
    Command::new(sensor_bin()).args(args).stdin(Stdio::null()).output().expect("run mcp-sensor")
}

/// `mcp-sensor run --config CFG --state-dir STATE EXTRA...`
fn run(cfg: &Path, state: &Path, extra: &[&OsStr]) -> Output {
    sensor(&[&["run".as_ref(), "--config".as_ref(), cfg.as_os_str(), "--state-dir".as_ref(), state.as_os_str()][..], extra].concat())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A config file whose log is LOG_DIR.
fn config(dir: &Path, name: &str, log_dir: &Path) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("[log]\ndir = \"{}\"\n", log_dir.display())).unwrap();
    p
}

#[test]
fn service_check_config_fails_like_run_on_bad_rules() {
    let d = scratch("svc-check");
    let cfg = config(&d, "config.toml", &d.join("log"));
    let bad = d.join("bad.yaml");
    std::fs::write(&bad, "- rule: broken\n  sevrity: high\n").unwrap();
    let state = d.join("state");
    let with = |extra: &[&OsStr]| run(&cfg, &state, extra);
    let check = with(&["--rules".as_ref(), bad.as_os_str(), "--check-config".as_ref()]);
    let want = format!("{}:2:3: unknown field `sevrity`", bad.display());
    assert_eq!(check.status.code(), Some(1), "{}", text(&check.stderr));
    assert!(text(&check.stderr).contains(&want), "the rule errors as `rules check` prints them: {}", text(&check.stderr));
    let run = with(&["--rules".as_ref(), bad.as_os_str()]);
    assert_eq!(run.status.code(), Some(1), "run refuses the same rules: {}", text(&run.stderr));
    assert!(text(&run.stderr).contains(&want), "{}", text(&run.stderr));
    assert!(!d.join("log").exists(), "run stopped before touching the log directory");
    let good = d.join("good.yaml");
    std::fs::write(&good, "- disable: [unexpected-shell]\n").unwrap();
    let ok = with(&["--rules".as_ref(), good.as_os_str(), "--check-config".as_ref()]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(text(&ok.stderr).contains(&good.display().to_string()), "names the rule files checked: {}", text(&ok.stderr));
}

#[test]
fn service_a_second_daemon_on_the_same_log_or_state_dir_refuses_and_kill_9_frees_them() {
    let d = scratch("svc-lock");
    let mut first = Daemon::start(&d, "");
    let pid = first.child.id();
    let state = d.join("state");
    // the same log directory (and state directory)
    let same = run(&d.join("config.toml"), &state, &[]);
    let err = text(&same.stderr);
    assert_eq!(same.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("pid {pid}")) && err.contains(&format!("log directory {}", first.log_dir.display())), "{err}");
    // its own log directory, the same state directory
    let other = config(&d, "other.toml", &d.join("other-log"));
    let shared = run(&other, &state, &[]);
    let err = text(&shared.stderr);
    assert_eq!(shared.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("pid {pid}")) && err.contains(&format!("state directory {}", state.display())), "{err}");
    // the kernel drops the lock with its holder, however it dies
    first.signal(libc::SIGKILL);
    first.child.wait().unwrap();
    let again = Daemon::start(&d, "");
    let (status, _) = again.stop();
    assert_eq!(status, 0);
}

/// A tmpfs of `size` on `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let st = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"]).arg(dir).status().unwrap();
        assert!(st.success(), "mount a tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }

    /// Fills the filesystem: writes until it is refused with ENOSPC.
    /// (The live log's last page may still have room: see [`top_off`].)
    fn fill(&self) -> PathBuf {
        let p = self.0.join("filler");
        top_off(&p, &[0u8; 4096]);
        p
    }
}

/// Appends `block` to `path` until the filesystem refuses it, then single bytes.
fn top_off(path: &Path, block: &[u8]) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    for chunk in [block, &block[..1]] {
        loop {
            match f.write(chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn log_lines(dir: &Path) -> Vec<Value> {
    let t = std::fs::read_to_string(dir.join("events.jsonl")).unwrap_or_default();
    t.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn drops_other(lines: &[Value], key: &str) -> u64 {
    lines.iter().filter(|e| e["kind"] == "drops").filter_map(|e| e["other"][key].as_u64()).sum()
}

#[test]
fn service_a_full_log_disk_is_counted_and_a_lost_final_line_is_reported_at_the_next_start() {
    let d = scratch("svc-full");
    let log_dir = d.join("log");
    let fs = Tmpfs::mount(&log_dir, "4m");
    let target = d.join("a.txt");
    std::fs::write(&target, "a\n").unwrap();
    let mut daemon = Daemon::start(&d, "");
    wait_for("the start line in the log", || log_lines(&log_dir).iter().any(|e| e["kind"] == "sensor_start"));

    // full: the server's lines fill the output's buffer, then are lost
    let filler = fs.fill();
    let calls: Vec<Value> = (0..400).map(|_| json!({"call": "read_text_file", "arguments": {"path": target}})).collect();
    run_client(&mut client(&d, Value::Array(calls)));
    wait_for("lines to be lost", || daemon.stderr_text().contains("lines are now lost"));
    std::fs::remove_file(&filler).unwrap();
    wait_for("the loss to be reported", || drops_other(&log_lines(&log_dir), "log_write_failed") > 0);

    // full again, and a few calls use what room the log's last page had:
    // at SIGTERM the final totals cannot be written
    let filler = fs.fill();
    let calls: Vec<Value> = (0..40).map(|_| json!({"call": "read_text_file", "arguments": {"path": target}})).collect();
    run_client(&mut client(&d, Value::Array(calls)));
    // (what is still in the kernel's ring is drained at SIGTERM)
    daemon.signal(libc::SIGTERM);
    let st = daemon.child.wait().unwrap();
    let err = daemon.stderr_text();
    assert_eq!(st.code(), Some(1), "a stop that lost its final lines says so: {err}");
    assert!(err.contains("could not be written") && err.contains("next start"), "{err}");
    let marker = std::fs::read_dir(&log_dir).unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with(".unwritten."));
    assert!(marker, "the loss is recorded on the full disk");

    // a start on the full disk that must repair a torn last line says why it cannot
    std::fs::remove_file(&filler).unwrap();
    let mut live = std::fs::OpenOptions::new().append(true).open(log_dir.join("events.jsonl")).unwrap();
    live.write_all(b"{\"torn\":").unwrap();
    let filler = fs.fill();
    top_off(&log_dir.join("events.jsonl"), b"x");
    let full = run(&d.join("config.toml"), &d.join("state"), &[]);
    let err = text(&full.stderr);
    assert_eq!(full.status.code(), Some(1), "{err}");
    assert!(err.contains("No space left on device") && err.contains("free space"), "{err}");
    assert!(!err.contains("set log.dir"), "a full disk is not a wrong setting: {err}");

    // room again: the next start reports what the last run lost
    std::fs::remove_file(&filler).unwrap();
    let again = Daemon::start(&d, "");
    wait_for("the previous run's loss in the log", || drops_other(&log_lines(&log_dir), "log_write_failed_previous_run") > 0);
    assert!(again.stderr_text().contains("could not write"), "{}", again.stderr_text());
    let mut again = again;
    again.signal(libc::SIGTERM);
    assert_eq!(again.child.wait().unwrap().code(), Some(0), "{}", again.stderr_text());
    // the full disk tore no line: every line is whole JSON but the one this test tore
    let log = std::fs::read_to_string(log_dir.join("events.jsonl")).unwrap();
    for l in log.lines().filter(|l| !l.starts_with("{\"torn\":")) {
        assert!(serde_json::from_str::<Value>(l).is_ok(), "a torn line in the log: {l:?}");
    }
    let left = std::fs::read_dir(&log_dir).unwrap().flatten().any(|e| e.file_name().to_string_lossy().starts_with(".unwritten."));
    assert!(!left, "reported once");
    drop(fs);
}

#[test]
fn service_non_root_hears_needs_root_first() {
    require_root();
    // the default log directory is root's: a log error would come first if
    // root were checked late; so would a broken rule file or a missing config
    let d = scratch("svc-nonroot");
    let bad = d.join("bad.yaml");
    std::fs::write(&bad, "- rule: x\n  bogus: 1\n").unwrap();
    let bad = bad.display().to_string();
    let cases: [&[&str]; 4] = [&["run"], &["exec", "--", "true"], &["run", "--rules", &bad], &["run", "--config", "/nonexistent.toml"]];
    for args in cases {
        let out = Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", sensor_bin()])
            .args(args)
            .current_dir("/")
            .output()
            .expect("setpriv");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("needs root") && !err.contains("log") && !err.contains("bogus") && !err.contains("nonexistent"), "{args:?}: {err}");
    }
}

/// A closed stderr (`2>&1 | head -1`) is no reason to panic: the error is
/// printed as far as it goes and the exit status is run's, 1.
#[test]
fn service_errors_on_a_closed_stderr_exit_1_not_a_panic() {
    let d = scratch("svc-closed-stderr");
    let bad = d.join("bad.yaml");
    std::fs::write(&bad, "- rule: x\n  bogus: 1\n").unwrap();
    let (r, w) = std::io::pipe().unwrap();
    drop(r);
    let st = Command::new(sensor_bin())
        .args(["run", "--check-config", "--rules"])
        .arg(&bad)
        .stdout(std::process::Stdio::null())
        .stderr(w)
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(1), "{st}");
}

#[test]
fn service_exec_with_events_to_dev_full_counts_the_loss_and_passes_the_status_through() {
    let d = scratch("svc-exec-full");
    let done = d.join("done");
    let script = format!("for i in 1 2 3; do cat /etc/hostname >/dev/null; done; touch {}; exit 7", done.display());
    let out = sensor(&["exec".as_ref(), "--events".as_ref(), "/dev/full".as_ref(), "--state-dir".as_ref(), d.join("state").as_os_str(), "--".as_ref(), "sh".as_ref(), "-c".as_ref(), script.as_ref()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "the server's status: {err}");
    assert!(err.contains("/dev/full") && err.contains("log_write_failed"), "the loss is said: {err}");
    let lost = err.split(" event lines could not be written").next().and_then(|t| t.rsplit(' ').next()).and_then(|n| n.parse::<u64>().ok());
    assert!(lost.is_some_and(|n| n >= 2), "and counted, the start line and the server's exec at least: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(done.exists(), "the server ran to its end");
}

#[test]
fn service_exec_with_events_to_a_closed_pipe_keeps_the_server_running() {
    require_root();
    let d = scratch("svc-exec-pipe");
    let (go, done) = (d.join("go"), d.join("done"));
    // the server waits until the events' reader is gone, then acts and exits 5
    let script = format!(
        "while [ ! -e {go} ]; do sleep 0.05; done; for i in 1 2 3 4 5; do cat /etc/hostname >/dev/null; done; touch {done}; exit 5",
        go = go.display(),
        done = done.display()
    );
    let mut child = Command::new(sensor_bin())
        .args(["exec", "--state-dir"])
        .arg(d.join("state"))
        .args(["--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mcp-sensor exec");
    let mut events = child.stderr.take().unwrap();
    let mut first = [0u8; 64];
    // the sensor's first line: it is watching; then the reader goes away
    let n = events.read(&mut first).unwrap();
    assert!(n > 0, "the sensor wrote to its event output");
    drop(events);
    std::fs::write(&go, "").unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(5), "the server's status, not a panic (101)");
    assert!(done.exists(), "the server ran to its end");
}
