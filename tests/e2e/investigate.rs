//! `mcp-sensor investigate` end to end: the `--html` page as headless
//! Chromium renders it (the DOM after its script ran: call bars, tool
//! names, the opened path under its call, the alert mark, hostile log text
//! inert), and the JSON of a real session (Python SDK client, npm
//! filesystem server, `mcp-sensor exec --events` with the default rules)
//! showing a read under its call and the SSH key read's alert on its call. Chromium missing is a failure: scripts/install-deps.sh
//! installs it.

use crate::harness::*;
use crate::mcp::{drive, fs_server, mcp_env};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/investigate").join(name)
}

fn investigate(args: &[&str]) -> Output {
    let out = Command::new(sensor_bin()).arg("investigate").args(args).output().expect("run mcp-sensor investigate");
    assert!(out.status.success(), "investigate {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Headless Chromium on `page` with a fresh profile, no network services.
fn chromium(dir: &Path, what: &[&str], page: &Path) -> Output {
    static N: AtomicUsize = AtomicUsize::new(0);
    let profile = dir.join(format!("chromium-profile-{}", N.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&profile).unwrap();
    let out = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"])
        .args(["--disable-component-update", "--disable-sync", "--window-size=1280,900"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(what)
        .arg(page)
        .output()
        .unwrap_or_else(|e| panic!("cannot run chromium ({e}): install it with scripts/install-deps.sh (Debian package `chromium`)"));
    assert!(out.status.success(), "chromium {what:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The markup of the call row whose `data-tool` is `tool`, up to the next
/// row or the end of its session.
fn call_row<'a>(dom: &'a str, tool: &str) -> &'a str {
    let at = dom.find(&format!("data-tool=\"{tool}\"")).unwrap_or_else(|| panic!("no call row for {tool} in the DOM"));
    let row = &dom[at..];
    let end = ["class=\"row call", "</section>"].iter().filter_map(|m| row.find(m)).min().expect("rows end");
    &row[..end]
}

#[test]
fn html_page_renders_call_bars_activity_under_calls_and_alerts_in_chromium() {
    let d = scratch("investigate-html");
    let page = d.join("page.html");
    investigate(&[fixture("story.jsonl").to_str().unwrap(), "--html", page.to_str().unwrap()]);
    let dom = String::from_utf8(chromium(&d, &["--dump-dom"], &page).stdout).unwrap();
    assert!(dom.contains("data-rendered=\"true\""), "the page script ran (CSP let it):\n{dom}");
    assert_eq!(dom.matches("class=\"row call").count(), 4, "one row per call");
    assert_eq!(dom.matches("class=\"call-bar ").count(), 4, "one bar per call");
    for tool in ["initialize", "read_text_file", "run_command", "list_directory"] {
        assert!(dom.contains(&format!("<span class=\"call-name\">{tool}</span>")), "tool name {tool} shown");
    }
    let read = call_row(&dom, "read_text_file");
    assert!(read.contains("/home/me/notes.txt (O_RDONLY|O_CLOEXEC)"), "the open is under its call:\n{read}");
    assert!(read.contains("class=\"mark open alert\""), "the key read is marked as an alert:\n{read}");
    assert!(read.contains("ssh-key-read"), "{read}");
    assert!(read.contains("class=\"call-bar ok alerting\""), "{read}");
    let list = call_row(&dom, "list_directory");
    assert!(!list.contains("notes.txt (O_RDONLY"), "the read is not under another call");
    // the exec during two calls is under both, said to be one of two
    for tool in ["run_command", "list_directory"] {
        let row = call_row(&dom, tool);
        assert!(row.contains("one of 2 requests in flight"), "{tool}:\n{row}");
        assert!(row.contains("class=\"mark exec shared\""), "{tool}:\n{row}");
    }
    assert!(call_row(&dom, "run_command").contains("class=\"call-bar error\""));
    // hostile text from the log is text, not markup or script
    assert!(dom.contains("<title>mcp-sensor investigation</title>"), "no injected script ran");
    assert!(!dom.contains("<img"), "no injected element");
    assert!(dom.contains("&lt;img src=x onerror="), "the hostile argument is shown as text");

    // and the page is not blank: its screenshot holds far more than an empty page's
    let blank = d.join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let shot = |page: &Path, png: &Path| {
        chromium(&d, &[&format!("--screenshot={}", png.display())], page);
        std::fs::metadata(png).unwrap_or_else(|e| panic!("{}: {e}", png.display())).len()
    };
    let empty = shot(&blank, &d.join("blank.png"));
    let ours = shot(&page, &d.join("page.png"));
    assert!(ours > 4 * empty, "screenshot {ours} bytes vs {empty} for an empty page: the page looks blank");
}

#[test]
fn investigate_json_of_a_real_session_shows_the_read_under_its_call() {
    let d = scratch("investigate-real");
    let target = d.join("notes.txt");
    std::fs::write(&target, "remember the milk\n").unwrap();
    let other = d.join("other.txt");
    std::fs::write(&other, "second\n").unwrap();
    std::fs::create_dir_all(d.join(".ssh")).unwrap();
    let key = d.join(".ssh/id_ed25519");
    std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA-not-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n").unwrap();
    let env = mcp_env();
    let server = fs_server(&env, &d);
    let s = drive(
        &d,
        server,
        json!([
            {"call": "read_text_file", "arguments": {"path": target}},
            {"call": "get_file_info", "arguments": {"path": other}},
            {"call": "read_text_file", "arguments": {"path": key}},
        ]),
        &[],
    );
    assert_eq!(s.client["results"][0]["content_text"], "remember the milk\n", "{}", s.client);
    let read_id = s
        .run
        .of_kind("rpc")
        .find(|e| e["direction"] == "client_to_server" && e["arguments"]["path"] == target.display().to_string())
        .expect("the notes read request was captured")["id"]
        .clone();
    let events = d.join("events.jsonl");
    let json_of = |extra: &[&str]| -> Value {
        let mut args = vec![events.to_str().unwrap(), "--format", "json"];
        args.extend_from_slice(extra);
        serde_json::from_slice(&investigate(&args).stdout).expect("investigate prints JSON")
    };
    let all = json_of(&[]);
    let sessions = all["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{all:#}");
    assert_eq!(sessions[0]["server"]["name"], "secure-filesystem-server");
    let calls = sessions[0]["calls"].as_array().unwrap();
    let by_path = |p: &Path| -> Vec<&Value> { calls.iter().filter(|c| c["arguments"]["path"] == p.display().to_string()).collect() };
    let read = by_path(&target);
    assert_eq!(read.len(), 1, "{calls:#?}");
    let read = read[0];
    assert_eq!(read["id"], read_id);
    assert_eq!(read["status"], "ok");
    assert_eq!(read["arguments"]["path"], target.display().to_string());
    let opened = |call: &Value, path: &Path| {
        call["activity"].as_array().unwrap().iter().any(|a| a["kind"] == "open" && a["event"]["path"] == path.display().to_string())
    };
    assert!(opened(read, &target), "the read call shows the open of {}: {read:#}", target.display());
    let info = calls.iter().find(|c| c["tool"] == "get_file_info").expect("the second call");
    assert!(!opened(info, &target), "the read is not under get_file_info");

    assert_eq!(read["alerts"], json!([]), "reading notes.txt raised nothing");

    // the key read: its call carries the alerts, the open its own
    let key_call = by_path(&key)[0];
    assert!(opened(key_call, &key), "{key_call:#}");
    let rules: Vec<&str> = key_call["alerts"].as_array().unwrap().iter().map(|a| a["rule"].as_str().unwrap()).collect();
    assert!(rules.contains(&"ssh-key-read"), "{key_call:#}");
    let key_open = key_call["activity"].as_array().unwrap().iter().find(|a| a["event"]["path"] == key.display().to_string()).unwrap();
    assert_eq!(key_open["alerts"][0]["rule"], "ssh-key-read", "the alert is on the event it names: {key_open:#}");
    let by_rule = json_of(&["--rule", "ssh-key-read"]);
    let flagged: Vec<&Value> = by_rule["sessions"].as_array().unwrap().iter().flat_map(|s| s["calls"].as_array().unwrap()).collect();
    assert_eq!(flagged.len(), 1, "{by_rule:#}");
    assert_eq!(flagged[0]["id"], key_call["id"]);

    // --id keeps exactly that call, with its open
    let only = json_of(&["--id", &read_id.to_string()]);
    let kept: Vec<&Value> = only["sessions"].as_array().unwrap().iter().flat_map(|s| s["calls"].as_array().unwrap()).collect();
    assert_eq!(kept.len(), 1, "{only:#}");
    assert_eq!(kept[0]["tool"], "read_text_file");
    assert!(opened(kept[0], &target));
    assert!(!opened(kept[0], &key));
    assert_eq!(only["sessions"][0]["outside"], json!([]), "--id names a call: nothing outside it");
    assert_eq!(only["filters"], json!({"id": read_id.to_string()}));
}

#[test]
fn html_page_is_written_0600_also_over_a_wider_existing_file() {
    use std::os::unix::fs::PermissionsExt;
    let d = scratch("investigate-html-mode");
    let page = d.join("page.html");
    std::fs::write(&page, "an older, world-readable page").unwrap();
    std::fs::set_permissions(&page, std::fs::Permissions::from_mode(0o644)).unwrap();
    investigate(&[fixture("story.jsonl").to_str().unwrap(), "--html", page.to_str().unwrap()]);
    assert_eq!(std::fs::metadata(&page).unwrap().permissions().mode() & 0o777, 0o600, "the page holds tool arguments and results");
    assert!(std::fs::read_to_string(&page).unwrap().contains("report-data"), "the new page replaced the old one");
    std::fs::remove_file(&page).unwrap();
    investigate(&[fixture("story.jsonl").to_str().unwrap(), "--html", page.to_str().unwrap()]);
    assert_eq!(std::fs::metadata(&page).unwrap().permissions().mode() & 0o777, 0o600, "a new page too");
}
