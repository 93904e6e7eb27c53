//! Tests of filters and of the renderers' escaping of hostile log text.

use super::filter::{apply, parse_time, Filters};
use super::model::Report;
use super::tests_fixtures::*;
use crate::cli::{Cli, Command};
use clap::Parser;
use serde_json::{json, Value};

fn filtered(flags: &[&str], lines: &[Value]) -> Read {
    let mut argv = vec!["mcp-sensor", "investigate", "events.jsonl"];
    argv.extend_from_slice(flags);
    let Command::Investigate(args) = Cli::try_parse_from(argv).unwrap().command else { panic!() };
    // "now" is 10 minutes after the fixture's start
    let f = Filters::from_args(&args, crate::timefmt::parse_rfc3339(&ts(600_000)).unwrap()).unwrap();
    let mut r = report(lines);
    apply(&mut r, &f);
    r
}

fn call_ids(r: &Report) -> Vec<Value> {
    r.sessions.iter().flat_map(|s| s.calls.iter().map(|c| c.id.clone())).collect()
}

#[test]
fn tool_and_id_filters_pick_calls_and_drop_outside_activity() {
    let r = filtered(&["--tool", "read_text_file"], &story());
    assert_eq!(call_ids(&r), vec![json!(3)]);
    assert!(r.sessions[0].outside.is_empty());
    assert_eq!(r.sessions[0].calls[0].activity.len(), 2, "a kept call is shown whole");
    assert_eq!(call_ids(&filtered(&["--tool", "*_directory"], &story())), vec![json!(6)]);
    assert_eq!(call_ids(&filtered(&["--id", "5"], &story())), vec![json!(5)]);
    assert_eq!(call_ids(&filtered(&["--tool", "initialize"], &story())), vec![json!(0)]);
    assert!(filtered(&["--id", "99"], &story()).sessions.is_empty());
    assert_eq!(r.filters, Some(json!({"tool": "read_text_file"})));
}

#[test]
fn string_ids_match_their_text() {
    let mut lines = story();
    lines.push(ev(350, "rpc", 4242, Some(FS), json!({"direction":"client_to_server","message":"request","method":"ping","id":"abc","size":10,"truncated":false})));
    assert_eq!(call_ids(&filtered(&["--id", "abc"], &lines)), vec![json!("abc")]);
    assert_eq!(call_ids(&filtered(&["--id", "\"abc\""], &lines)), vec![json!("abc")]);
}

#[test]
fn pid_filter_keeps_calls_that_pid_acted_in_and_its_own_outside_events() {
    let mut lines = story();
    let child = ev(305, "exec", 5001, Some(FS), json!({"filename":"/usr/bin/find","argv":["find","/home/me"],"cwd":"/","dev":1,"ino":1,"tool_call":tool_call(5, "search_files", json!({}))}));
    lines.insert(12, child);
    lines.push(open(450, 5001, FS, "/tmp/late", None));
    let r = filtered(&["--pid", "5001"], &lines);
    assert_eq!(call_ids(&r), vec![json!(5)]);
    let outside: Vec<_> = r.sessions[0].outside.iter().map(|a| r.summary(a)).collect();
    assert_eq!(outside, vec!["/tmp/late (O_RDONLY)"]);
}

#[test]
fn rule_filter_keeps_calls_with_that_alert() {
    let r = filtered(&["--rule", "ssh-*"], &story());
    assert_eq!(call_ids(&r), vec![json!(3)]);
    // the session's alert count (the table's header) is what is shown
    let all = report(&story());
    assert!(all.sessions[0].alerts > 0 && all.sessions[0].alerts == super::filter::shown_alerts(&all.sessions[0]), "the count is the alerts placed");
    assert_eq!(r.sessions[0].alerts, r.sessions[0].calls[0].alerts.len() as u64);
    assert_eq!(filtered(&["--id", "5"], &story()).sessions[0].alerts, 0);
    assert!(filtered(&["--rule", "other-rule"], &story()).sessions.is_empty());
}

#[test]
fn server_filter_by_name_any_name_or_pid() {
    assert_eq!(filtered(&["--server", "FILESYSTEM"], &story()).sessions.len(), 1);
    assert_eq!(filtered(&["--server", "/srv/fs/index.js"], &story()).sessions.len(), 1, "the command line is a name too");
    assert_eq!(filtered(&["--server", "4242"], &story()).sessions.len(), 1);
    assert!(filtered(&["--server", "git"], &story()).sessions.is_empty());
    // a glob matches a whole name
    assert_eq!(filtered(&["--server", "secure-file*"], &story()).sessions.len(), 1);
    assert!(filtered(&["--server", "file*"], &story()).sessions.is_empty(), "a glob is anchored");
    // with --server alone, the whole session stays
    assert_eq!(filtered(&["--server", "4242"], &story()).sessions[0].outside.len(), 4);
}

#[test]
fn time_window_keeps_overlapping_calls_and_events_inside() {
    let r = filtered(&["--since", &ts(290), "--until", &ts(335)], &story());
    assert_eq!(call_ids(&r), vec![json!(5), json!(6)]);
    assert!(r.sessions[0].outside.is_empty());
    // a call overlapping the window's start is kept
    let r = filtered(&["--since", &ts(120), "--until", &ts(125)], &story());
    assert_eq!(call_ids(&r), vec![json!(3)]);
    // relative: the fixture is 10 minutes old, so 1m back finds nothing and 1h all
    assert!(filtered(&["--since", "1m"], &story()).sessions.is_empty());
    assert_eq!(call_ids(&filtered(&["--since", "1h"], &story())).len(), 4);
}

#[test]
fn times_parse_in_every_documented_form_and_bad_ones_say_how() {
    let now = crate::timefmt::parse_rfc3339("2026-11-21T12:00:00Z").unwrap();
    let at = |s: &str| parse_time(s, now).unwrap();
    assert_eq!(at("10m"), now - 600 * 1_000_000_000);
    assert_eq!(at("2h ago"), now - 7200 * 1_000_000_000);
    assert_eq!(at("1d"), now - 86_400 * 1_000_000_000);
    assert_eq!(at("2026-11-21T14:00:00+02:00"), now);
    assert_eq!(at("2026-11-21T07:30:00-04:30"), now);
    assert_eq!(at("2026-11-21 12:00:00.000z"), now);
    assert_eq!(at("2026-11-21"), now - 12 * 3600 * 1_000_000_000);
    let err = parse_time("yesterday", now).unwrap_err().to_string();
    assert!(err.contains("RFC 3339") && err.contains("10m"), "{err}");
    assert!(parse_time("10 parsecs", now).is_err());
    let Command::Investigate(a) = Cli::try_parse_from(["mcp-sensor", "investigate", "--since", "1m", "--until", "1h"]).unwrap().command else { panic!() };
    assert!(Filters::from_args(&a, now).unwrap_err().to_string().contains("--since is after --until"));
}

const HOSTILE: &str = "</script><script>document.title='pwned'</script><img src=x onerror=alert(1)>\u{1b}[2J\u{202e}";

fn hostile_report() -> Read {
    let args = json!({"path": HOSTILE});
    let o = open(110, 4242, (HOSTILE, 4242), HOSTILE, Some(tool_call(3, HOSTILE, args.clone())));
    report(&[request(100, (HOSTILE, 4242), 3, HOSTILE, args), o.clone(), alert(111, HOSTILE, &o), response(120, (HOSTILE, 4242), 3, HOSTILE, HOSTILE, 20.0)])
}

#[test]
fn table_escapes_terminal_control_and_bidi_characters() {
    let text = hostile_report().table();
    assert!(!text.contains('\u{1b}'), "no raw escape reaches the terminal: {text:?}");
    assert!(!text.contains('\u{202e}'));
    assert!(text.contains("\\u{1b}[2J") && text.contains("\\u{202e}"), "{text}");
}

#[test]
fn html_page_carries_hostile_text_only_as_inert_escaped_json() {
    let r = hostile_report();
    let page = super::html::page(&r, &r.log.lines);
    assert_eq!(page.matches("<script").count(), 2, "only the data block and the page's own script");
    assert_eq!(page.matches("</script>").count(), 2);
    assert!(!page.contains("<img"), "no markup from the log");
    // the data block parses back to exactly the report
    let open_tag = "<script id=\"report-data\" type=\"application/json\">";
    let start = page.find(open_tag).unwrap() + open_tag.len();
    let len = page[start..].find("</script>").unwrap();
    let back: Value = serde_json::from_str(&page[start..start + len]).unwrap();
    assert_eq!(back, serde_json::to_value(super::shown::Shown(&r.r, &r.log.lines)).unwrap());
    assert_eq!(back["sessions"][0]["calls"][0]["arguments"]["path"], HOSTILE);
    // the CSP allows exactly the page's script, by hash, and no network source
    let js_start = page.rfind("<script>").unwrap() + "<script>".len();
    let js = &page[js_start..js_start + page[js_start..].find("</script>").unwrap()];
    use sha2::Digest;
    let digest = sha2::Sha256::digest(js.as_bytes());
    let csp_line = page.lines().find(|l| l.contains("Content-Security-Policy")).unwrap();
    assert!(csp_line.contains("default-src 'none'"), "{csp_line}");
    let hash_at = csp_line.find("'sha256-").unwrap() + "'sha256-".len();
    let hash = &csp_line[hash_at..hash_at + 44];
    assert_eq!(hash.len(), 44);
    assert_eq!(super::html::base64(&digest), hash);
}

#[test]
fn the_html_page_is_written_for_its_owner_only_even_over_a_wider_file() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let p = std::env::temp_dir().join(format!("ms-html-{}.html", std::process::id()));
    std::fs::write(&p, "old, longer content than the new one".repeat(10)).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    super::write_private(&p, |w| w.write_all(b"<html>")).unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read(&p).unwrap(), b"<html>");
    std::fs::remove_file(&p).unwrap();
    super::write_private(&p, |w| w.write_all(b"new")).unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn events_are_read_back_when_rendered_and_a_file_changed_in_place_shows_them_unavailable() {
    let p = std::env::temp_dir().join(format!("ms-reread-{}.jsonl", std::process::id()));
    std::fs::write(&p, text(&story())).unwrap();
    let (r, log) = super::timeline::read(std::slice::from_ref(&p)).unwrap();
    let shown = |r: &Report| serde_json::to_value(super::shown::Shown(r, &log.lines)).unwrap();
    let before = shown(&r);
    let read = &before["sessions"][0]["calls"][1];
    assert_eq!(read["activity"][1]["event"]["path"], "/home/me/.ssh/id_rsa", "the line, read back");
    assert_eq!(read["activity"][1]["summary"], "/home/me/.ssh/id_rsa (O_RDONLY)");
    assert_eq!(read["arguments"]["path"], "/home/me/notes.txt");
    assert_eq!(read["alerts"][0]["severity"], "critical");
    assert!(log.lines.warnings().is_empty());
    // rewritten in place (same length, other paths): nothing shown from it is taken for the old line
    std::fs::write(&p, text(&story()).replace("/home/me", "/home/xx")).unwrap();
    let after = shown(&r);
    let read = &after["sessions"][0]["calls"][1];
    assert_eq!(read["activity"][1]["event"], Value::Null);
    assert_eq!(read["activity"][1]["summary"], super::shown::UNAVAILABLE);
    assert_eq!(read["activity"][1]["kind"], "open", "what the report holds is still shown");
    assert_eq!(read["activity"][1]["ts"], ts(130));
    assert_eq!(read["alerts"][0]["description"], super::shown::UNAVAILABLE);
    assert_eq!(read["alerts"][0]["rule"], "ssh-key-read");
    assert_eq!(read["arguments"], Value::Null);
    assert_eq!(read["result"], "remember the milk", "the response line did not change: it still reads");
    assert!(!after.to_string().contains("/home/xx"), "no text of the new lines is shown");
    let w = log.lines.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("could not be read back") && w[0].contains("run investigate again"), "{w:?}");
    std::fs::remove_file(&p).unwrap();
}

#[test]
fn a_log_from_a_pipe_is_held_in_memory_and_its_events_still_read_back() {
    // `investigate <(zcat events.jsonl.1.gz)`: a pipe cannot be read again by offset
    let fifo = std::env::temp_dir().join(format!("ms-fifo-{}", std::process::id()));
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
    assert!(made.success());
    let body = text(&story());
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(&fifo, body).unwrap())
    };
    let (r, log) = super::timeline::read(std::slice::from_ref(&fifo)).unwrap();
    writer.join().unwrap();
    let shown = serde_json::to_value(super::shown::Shown(&r, &log.lines)).unwrap();
    assert_eq!(shown["sessions"][0]["calls"][1]["activity"][1]["summary"], "/home/me/.ssh/id_rsa (O_RDONLY)");
    assert_eq!(shown["sessions"][0]["calls"][1]["alerts"][0]["severity"], "critical");
    assert!(log.lines.warnings().is_empty(), "{:?}", log.lines.warnings());
    std::fs::remove_file(&fifo).unwrap();
}
