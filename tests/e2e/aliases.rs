//! Other names of a protected file (issue 18): a hard link, a bind mount,
//! a handle (`open_by_handle_at`), a symlink and a `/proc/self/fd` reopen
//! of an SSH key raise `ssh-key-read` as the key does; the event names the
//! name opened and, where it differs, the key's (`canonical_path`). Under
//! `--enforce` the kernel stops the link, whose identity it learned from
//! the server's `HOME` (a home /etc/passwd does not list).

use crate::enforce::{assert_no_leak, home_with_key};
use crate::harness::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// tests/e2e/progs/handle_open.c, compiled into `dir`.
fn handle_open(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/e2e/progs/handle_open.c");
    let bin = dir.join("handle_open");
    let out = std::process::Command::new("cc").arg("-O1").arg("-o").arg(&bin).arg(&src).output().expect("run cc");
    assert!(out.status.success(), "cc {}: {}", src.display(), String::from_utf8_lossy(&out.stderr));
    bin
}

fn key_alerts<'a>(run: &'a Run, comm: &'a str) -> Vec<&'a Value> {
    run.of_kind("alert").filter(|a| a["rule"] == "ssh-key-read" && a["event"]["comm"] == comm).collect()
}

/// `mcp-sensor exec --enforce -- sh -c script` with `HOME` set for the
/// tree's root; `go` is written once the tree's first event is in the
/// log (written after that HOME was scanned).
fn start_enforced(d: &Path, events: &Path, home: &Path, script: &str, go: &Path) -> std::process::Child {
    let child = exec_command(d, events)
        .env("HOME", home)
        .args(["--enforce", "--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mcp-sensor exec");
    wait_for_event(events, "the watched tree's first event", |e| e["kind"] == "exec" || e["kind"] == "open");
    std::fs::write(go, "").unwrap();
    child
}

#[test]
fn kernel_alias_names_of_a_key_alert_as_the_key() {
    let d = scratch("alias-names");
    let (_home, key, _secret) = home_with_key(&d);
    let handle = handle_open(&d);
    let (k, dd) = (key.display(), d.display());
    // each reader has its own comm: cat (the key by name: the control, and
    // what teaches the key's identity), dd (hard link), od (bind mount),
    // handle_open, head (symlink), tail (/proc/self/fd)
    let script = format!(
        "set -e; cat {k} > /dev/null; \
         ln {k} {dd}/notes-link; dd if={dd}/notes-link of=/dev/null status=none; \
         mkdir {dd}/mnt; unshare -m sh -c 'mount --bind {dd}/home/.ssh {dd}/mnt && od {dd}/mnt/id_ed25519 > /dev/null'; \
         {h} {k} > /dev/null; \
         ln -s {k} {dd}/sym; head -c 64 {dd}/sym > /dev/null; \
         exec 3< {k}; tail -c 64 /proc/self/fd/3 > /dev/null",
        h = handle.display()
    );
    let run = exec(&d, &["sh", "-c", &script]);
    assert_eq!(run.status(), 0, "{}", run.describe());
    let key = key.display().to_string();
    let one = |comm: &str| -> Value {
        let a = key_alerts(&run, comm);
        assert_eq!(a.len(), 1, "one ssh-key-read alert for {comm}\n{}", run.describe());
        a[0]["event"].clone()
    };
    // the control: the key by its own name, nothing else to name
    let e = one("cat");
    assert_eq!(e["path"], key.as_str());
    assert!(e.get("canonical_path").is_none(), "{e}");
    // other names: the name opened, and the key's
    for (comm, opened) in [("dd", format!("{dd}/notes-link")), ("od", format!("{dd}/mnt/id_ed25519"))] {
        let e = one(comm);
        assert_eq!(e["path"], opened.as_str(), "{comm}: {e}");
        assert_eq!(e["canonical_path"], key.as_str(), "{comm}: {e}");
    }
    // a handle resolves to whichever name the kernel has at hand
    let e = one("handle_open");
    assert!(e["path"] == key.as_str() || e["canonical_path"] == key.as_str(), "{e}");
    // the kernel resolves symlinks and /proc/self/fd to the file's own name
    for comm in ["head", "tail"] {
        assert_eq!(one(comm)["path"], key.as_str(), "{comm}");
    }
    // the same open events are in the log as events, not only in alerts
    let link_opens: Vec<&Value> = run.of_kind("open").filter(|e| e["path"] == format!("{dd}/notes-link")).collect();
    assert!(link_opens.iter().any(|e| e["canonical_path"] == key.as_str()), "{}", run.describe());
    run.final_drops();
}

#[test]
fn kernel_alias_a_hard_link_in_a_servers_home_is_stopped_before_any_open_of_the_key() {
    let d = scratch("alias-enforce");
    let (home, key, secret) = home_with_key(&d);
    let link = d.join("notes-link");
    std::fs::hard_link(&key, &link).unwrap();
    let go = d.join("go");
    let events = d.join("events.jsonl");
    // the server's HOME is not a user's home: the sensor scans it when the
    // tree starts; the key itself is never opened by name
    let script = format!(
        "{wait}; cat {l}; echo cat-exit=$?; cat {home}/notes.txt",
        wait = wait_sh(&go),
        l = link.display(),
        home = home.display()
    );
    let child = start_enforced(&d, &events, &home, &script, &go);
    let out = child.wait_with_output().expect("mcp-sensor exec");
    let run = Run { events: read_events(&events), out };
    let stdout = run.stdout();
    assert_no_leak(&stdout, &secret, "the watched command's output");
    // the positive control: the command went on, and the sensor saw it
    assert!(stdout.contains("benign"), "the tree ran on after the link: {stdout}\n{}", run.describe());
    assert!(!stdout.contains("cat-exit=0"), "the link's read was stopped: {stdout}");
    let a = key_alerts(&run, "cat");
    assert_eq!(a.len(), 1, "{}", run.describe());
    let a = a[0];
    assert_eq!(a["event"]["path"], link.display().to_string(), "{a}");
    assert_eq!(a["event"]["canonical_path"], key.display().to_string(), "{a}");
    assert!(a["action"] == "killed" || a["action"] == "denied", "{a}");
    assert!(a["decided_by"].as_str().is_some_and(|d| d.starts_with("kernel")), "the kernel decided, at the open: {a}");
    run.final_drops();
}

#[test]
fn kernel_alias_a_link_to_a_key_no_scan_found_is_stopped_once_the_key_was_opened() {
    let d = scratch("alias-learned");
    // the key is in no home the sensor scans (the tree's HOME is another
    // directory): only its open by name teaches its identity
    let (_home, key, secret) = home_with_key(&d);
    let empty_home = d.join("empty-home");
    std::fs::create_dir_all(&empty_home).unwrap();
    let link = d.join("notes-link");
    std::fs::hard_link(&key, &link).unwrap();
    let (go, go2) = (d.join("go"), d.join("go2"));
    let events = d.join("events.jsonl");
    let script = format!(
        "{wait}; cat {k} > /dev/null; echo first=$?; {wait2}; cat {l}; echo second=$?; echo benign",
        wait = wait_sh(&go),
        wait2 = wait_sh(&go2),
        k = key.display(),
        l = link.display()
    );
    let child = start_enforced(&d, &events, &empty_home, &script, &go);
    // the agent has judged the open of the key by its name (and learned it)
    wait_for_event(&events, "the key's read stopped", |e| e["kind"] == "alert" && e["rule"] == "ssh-key-read");
    std::fs::write(&go2, "").unwrap();
    let out = child.wait_with_output().expect("mcp-sensor exec");
    let run = Run { events: read_events(&events), out };
    let stdout = run.stdout();
    assert_no_leak(&stdout, &secret, "the watched command's output");
    assert!(stdout.contains("benign"), "the tree ran on: {stdout}\n{}", run.describe());
    assert!(!stdout.contains("second=0"), "the link's read was stopped: {stdout}");
    let a = key_alerts(&run, "cat");
    let by_name: Vec<&&Value> = a.iter().filter(|a| a["event"]["path"] == key.display().to_string()).collect();
    assert_eq!(by_name.len(), 1, "the control: the key by its name\n{}", run.describe());
    let by_link: Vec<&&Value> = a.iter().filter(|a| a["event"]["path"] == link.display().to_string()).collect();
    assert_eq!(by_link.len(), 1, "{}", run.describe());
    let l = by_link[0];
    assert_eq!(l["event"]["canonical_path"], key.display().to_string(), "{l}");
    assert!(l["action"] == "killed" || l["action"] == "denied", "{l}");
    assert!(l["decided_by"].as_str().is_some_and(|d| d.starts_with("kernel")), "the kernel decided the link's open, at once: {l}");
    run.final_drops();
}
