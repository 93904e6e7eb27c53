//! One-line descriptions of events for people: the path of an open, the
//! argv of an exec, the address of a connect. Text only: escaping for a
//! terminal or a page is the renderer's job.

use serde_json::Value;

fn s<'a>(ev: &'a Value, k: &str) -> Option<&'a str> {
    ev.get(k).and_then(Value::as_str)
}

/// An argument as a shell would need it to be typed (readable, not exact).
fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%^".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

fn join_strings(v: Option<&Value>, sep: &str) -> String {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(sep))
        .unwrap_or_default()
}

fn ret_failed(ev: &Value) -> bool {
    ev.get("ret").and_then(Value::as_i64).is_some_and(|r| r < 0)
}

fn with_error(mut text: String, ev: &Value) -> String {
    if let Some(err) = s(ev, "error") {
        text.push_str(" -> ");
        text.push_str(err);
    } else if ret_failed(ev) {
        text.push_str(&format!(" -> {}", ev["ret"]));
    }
    text
}

/// `(summary, failed)` of an event line.
pub fn describe(ev: &Value) -> (String, bool) {
    let kind = s(ev, "kind").unwrap_or("?");
    match kind {
        "exec" => {
            let argv: Vec<String> = ev
                .get("argv")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(quote).collect())
                .unwrap_or_default();
            let mut text = if argv.is_empty() { s(ev, "filename").unwrap_or("?").to_string() } else { argv.join(" ") };
            if ev.get("argv_truncated") == Some(&Value::Bool(true)) {
                text.push_str(" …");
            }
            if let Some(script) = s(ev, "script") {
                text.push_str(&format!(" (script {script})"));
            }
            // what the file is, whatever it is called: a copy of bash, busybox's sh
            // (left out when the file is called what it is: /usr/bin/dash is dash)
            let exe_name = s(ev, "exe").and_then(|e| e.rsplit('/').next());
            let is = ev.get("exe_is").and_then(|e| e.get("name")).and_then(Value::as_str);
            if let Some(name) = is.filter(|n| Some(*n) != exe_name) {
                let by = ev["exe_is"].get("by").and_then(Value::as_str).unwrap_or("?");
                text.push_str(&format!(" [is {name}, by {by}]"));
            }
            (text, false)
        }
        "open" => {
            let mut text = s(ev, "path").unwrap_or("?").to_string();
            // another name of a file the rules know (hard link, bind mount, handle)
            if let Some(canonical) = s(ev, "canonical_path") {
                text.push_str(&format!(" = {canonical}"));
            }
            let flags = join_strings(ev.get("flags"), "|");
            if !flags.is_empty() {
                text.push_str(&format!(" ({flags})"));
            }
            (with_error(text, ev), ret_failed(ev))
        }
        "rename" | "link" | "symlink" | "truncate" => {
            let path = s(ev, "path").unwrap_or("?");
            let text = match s(ev, "source") {
                Some(src) => format!("{} {src} -> {path}", s(ev, "op").unwrap_or(kind)),
                None => format!("{} {path}", s(ev, "op").unwrap_or(kind)),
            };
            (with_error(text, ev), ret_failed(ev))
        }
        "connect" => {
            let family = s(ev, "family").unwrap_or("?");
            let port = ev.get("port").and_then(Value::as_u64);
            let text = match (s(ev, "addr"), port, s(ev, "path")) {
                (Some(a), Some(p), _) if family == "inet6" => format!("[{a}]:{p}"),
                (Some(a), Some(p), _) => format!("{a}:{p}"),
                (Some(a), None, _) => a.to_string(),
                (None, _, Some(path)) => format!("unix {path}"),
                _ => family.to_string(),
            };
            // a destination reached without connect(2): sendto, TCP Fast Open, io_uring
            let text = match s(ev, "op") {
                Some(op) if op != "connect" => format!("{text} ({op})"),
                _ => text,
            };
            // a non-blocking connect says EINPROGRESS and goes on
            let failed = ret_failed(ev) && s(ev, "error") != Some("EINPROGRESS");
            (with_error(text, ev), failed)
        }
        "ptrace" => {
            let call = s(ev, "request").or(s(ev, "syscall")).unwrap_or("ptrace");
            let text = format!("{call} pid {}", ev.get("target_pid").unwrap_or(&Value::Null));
            (with_error(text, ev), ret_failed(ev))
        }
        "fork" => (format!("child {}", ev.get("child_pid").unwrap_or(&Value::Null)), false),
        "exit" => match (ev.get("signal").and_then(Value::as_i64), ev.get("code").and_then(Value::as_i64)) {
            (Some(sig), _) => (format!("killed by signal {sig}"), true),
            (None, Some(code)) => (format!("exit code {code}"), code != 0),
            _ => ("exited".into(), false),
        },
        "malformed" => (
            format!(
                "{}: {} ({} bytes)",
                s(ev, "direction").unwrap_or("?"),
                s(ev, "reason").unwrap_or("?"),
                ev.get("size").unwrap_or(&Value::Null)
            ),
            true,
        ),
        "rpc" => {
            let method = s(ev, "method").unwrap_or("?");
            let text = match (s(ev, "direction"), s(ev, "message")) {
                (Some("server_to_client"), Some("request")) => format!("server asked the client: {method}"),
                (dir, msg) => format!("{} {} {method}", dir.unwrap_or("?"), msg.unwrap_or("?")),
            };
            (text, false)
        }
        other => (other.to_string(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_read_like_what_happened() {
        let exec = json!({"kind":"exec","argv":["sh","-c","cat /etc/passwd"],"filename":"/bin/sh"});
        assert_eq!(describe(&exec), ("sh -c 'cat /etc/passwd'".into(), false));
        let open = json!({"kind":"open","path":"/x","flags":["O_RDONLY","O_CLOEXEC"],"ret":-2,"error":"ENOENT"});
        assert_eq!(describe(&open), ("/x (O_RDONLY|O_CLOEXEC) -> ENOENT".into(), true));
        let conn = json!({"kind":"connect","family":"inet6","addr":"::1","port":443,"ret":-115,"error":"EINPROGRESS"});
        assert_eq!(describe(&conn), ("[::1]:443 -> EINPROGRESS".into(), false));
        let unix = json!({"kind":"connect","family":"unix","path":"@abstract","ret":0});
        assert_eq!(describe(&unix).0, "unix @abstract");
        assert_eq!(describe(&json!({"kind":"exit","code":null,"signal":9})), ("killed by signal 9".into(), true));
        let rename = json!({"kind":"rename","op":"rename","path":"/w/CLAUDE.md","source":"/w/CLAUDE.md.ab.tmp","ret":-1,"error":"EPERM"});
        assert_eq!(describe(&rename), ("rename /w/CLAUDE.md.ab.tmp -> /w/CLAUDE.md -> EPERM".into(), true));
        assert_eq!(describe(&json!({"kind":"truncate","op":"ftruncate","path":"/w/.bashrc","ret":0})).0, "ftruncate /w/.bashrc");
        let alias = json!({"kind":"open","path":"/p/k","canonical_path":"/h/.ssh/id_x","flags":["O_RDONLY"],"ret":3});
        assert_eq!(describe(&alias).0, "/p/k = /h/.ssh/id_x (O_RDONLY)");
        let copy = json!({"kind":"exec","argv":["/h/.cache/x","-c","id"],"exe":"/h/.cache/x","exe_is":{"name":"bash","by":"content"}});
        assert_eq!(describe(&copy).0, "/h/.cache/x -c id [is bash, by content]");
        let sh = json!({"kind":"exec","argv":["/bin/sh","-c","id"],"exe":"/usr/bin/dash","exe_is":{"name":"dash","by":"identity"}});
        assert_eq!(describe(&sh).0, "/bin/sh -c id");
        let send = json!({"kind":"connect","family":"inet","addr":"169.254.169.254","port":80,"op":"sendto","ret":-1,"error":"EPERM"});
        assert_eq!(describe(&send), ("169.254.169.254:80 (sendto) -> EPERM".into(), true));
        let vm = json!({"kind":"ptrace","syscall":"process_vm_readv","target_pid":42,"ret":4});
        assert_eq!(describe(&vm), ("process_vm_readv pid 42".into(), false));
    }
}
