//! `mcp-sensor investigate` end to end: the `--html` page as a person sees
//! it in headless Chromium (the text displayed, before and after clicking
//! calls; what the tooltips say over a call's bar and marks; hostile log
//! text shown, never run), and the JSON of a real session (Python SDK
//! client, npm filesystem server, `mcp-sensor exec --events` with the
//! default rules) showing each read under its own call and the SSH key
//! read's alert on its call. Chromium missing is a failure:
//! scripts/install-deps.sh installs it.

use crate::browser::Page;
use crate::harness::*;
use crate::mcp::{drive, fs_server, mcp_env};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/investigate").join(name)
}

fn investigate(args: &[&str]) -> Output {
    let out = Command::new(sensor_bin()).arg("investigate").args(args).output().expect("run mcp-sensor investigate");
    assert!(out.status.success(), "investigate {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// What the page's tooltip says over each thing drawn in the row whose
/// label is `label`, left to right.
fn tooltips_along(page: &mut Page, label: &str) -> Vec<String> {
    let at = page.where_is(label);
    let mut seen: Vec<String> = Vec::new();
    for p in page.drawn_right_of(at, &[-8.0, -4.0, 0.0, 4.0]) {
        page.hover(p);
        let t = page.eval("(() => { const t = document.querySelector('[role=tooltip]'); return t && !t.hidden ? t.innerText : ''; })()");
        let t = t.as_str().unwrap_or("").split_whitespace().collect::<Vec<_>>().join(" ");
        if !t.is_empty() && !seen.contains(&t) {
            seen.push(t);
        }
    }
    seen
}

#[test]
fn html_page_shows_calls_their_activity_and_alerts_to_a_person_in_chromium() {
    let d = scratch("investigate-html");
    let html = d.join("page.html");
    investigate(&[fixture("story.jsonl").to_str().unwrap(), "--html", html.to_str().unwrap()]);
    let mut page = Page::open(&d, &html);
    page.wait_until("document.body?.dataset.rendered === 'true'", "the page's script to draw (the CSP let it run)");
    // at first: the server, its four calls and the alert count; details closed
    let first = page.text();
    for shown in ["secure-filesystem-server", "initialize", "read_text_file", "run_command", "list_directory", "1 alert"] {
        assert!(first.contains(shown), "`{shown}` is shown:\n{first}");
    }
    let read_open = "/home/me/notes.txt (O_RDONLY|O_CLOEXEC)";
    assert!(!first.contains(read_open), "a call's activity shows only once it is clicked:\n{first}");
    // a click on the read call shows its opens under it, the key read's alert with them
    let at = page.where_is("read_text_file");
    page.click(at);
    let read = page.wait_for_text(read_open);
    assert!(read.contains("/home/me/.ssh/id_rsa") && read.contains("CRITICAL ssh-key-read"), "{read}");
    let shared = "one of 2 requests in flight (5, 6): the sensor does not guess which";
    assert!(!read.contains(shared), "{read}");
    // closed again, and list_directory opened: the read is not under it,
    // the exec during both calls is, said to be one of two
    page.click(at);
    let at = page.where_is("list_directory");
    page.click(at);
    let list = page.wait_for_text(shared);
    assert!(!list.contains(read_open), "the read is under its own call only:\n{list}");
    let at = page.where_is("run_command");
    page.click(at);
    let both = page.wait_for_text("document.title='pwned'");
    assert_eq!(both.matches(shared).count(), 2, "the shared exec is under both calls:\n{both}");
    // hostile text from the log is shown as text: nothing it says ran
    assert!(both.contains("<img src=x onerror="), "{both}");
    assert_eq!(page.eval("document.title"), "mcp-sensor investigation", "no injected script ran");
    assert_eq!(page.eval("document.images.length"), 0, "no injected element");
    // pointing along the read call's row: its bar says what it was and
    // returned, the key read's mark says what it raised
    let tips = tooltips_along(&mut page, "read_text_file");
    let bar = |t: &String| t.contains("read_text_file #3") && t.contains("remember the milk");
    assert!(tips.iter().any(bar), "the call's bar says what it was and returned: {tips:#?}");
    let mark = |t: &String| t.contains("/home/me/.ssh/id_rsa") && t.contains("critical ssh-key-read");
    assert!(tips.iter().any(mark), "the key read's mark says what it raised: {tips:#?}");
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
            {"call": "read_text_file", "arguments": {"path": other}},
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
    let second = by_path(&other);
    assert_eq!(second.len(), 1, "{calls:#?}");
    assert!(opened(second[0], &other), "the second call shows its own open: {:#}", second[0]);
    assert!(!opened(second[0], &target), "the first read is not under the second call");

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
