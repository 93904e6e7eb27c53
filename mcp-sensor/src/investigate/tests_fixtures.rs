//! Fixture logs for the investigate tests: event lines shaped like the
//! sensor writes them (docs/events.md), built by hand.

use super::lines::Backing;
use super::model::{Activity, Call, Report};
use super::read::Log;
use super::shown::{ActivityText, CallText};
use serde_json::{json, Map, Value};
use std::path::Path;

/// `2026-11-21T12:00:00Z` + `ms`.
pub fn ts(ms: u64) -> String {
    crate::timefmt::rfc3339(1_795_262_400_000_000_000 + i128::from(ms) * 1_000_000)
}

/// One event line of `kind` by process `pid` of server (`name`, `spid`).
pub fn ev(ms: u64, kind: &str, pid: u32, server: Option<(&str, u32)>, fields: Value) -> Value {
    let mut m = Map::new();
    m.insert("ts".into(), json!(ts(ms)));
    for (k, v) in [("pid", json!(pid)), ("tid", json!(pid)), ("ppid", json!(1)), ("uid", json!(1000))] {
        m.insert(k.into(), v);
    }
    m.insert("comm".into(), json!("node"));
    m.insert("exe".into(), json!("/usr/bin/node"));
    m.insert("kind".into(), json!(kind));
    if let Value::Object(f) = fields {
        m.extend(f);
    }
    if let Some((name, spid)) = server {
        m.insert("server".into(), json!({"name": name, "pid": spid}));
    }
    Value::Object(m)
}

pub fn tool_call(id: u64, name: &str, args: Value) -> Value {
    json!({"id": id, "name": name, "method": "tools/call", "arguments": args})
}

pub fn in_flight(ids: &[(u64, &str)]) -> Value {
    let list: Vec<Value> = ids.iter().map(|(id, t)| json!({"id": id, "method": "tools/call", "tool": t})).collect();
    json!({"id": null, "name": null, "method": null, "in_flight": list})
}

pub fn request(ms: u64, srv: (&str, u32), id: u64, tool: &str, args: Value) -> Value {
    ev(ms, "rpc", srv.1, Some(srv), json!({"direction":"client_to_server","message":"request","method":"tools/call","id":id,"tool":tool,"arguments":args,"size":100,"truncated":false}))
}

pub fn response(ms: u64, srv: (&str, u32), id: u64, tool: &str, result: &str, latency: f64) -> Value {
    ev(ms, "rpc", srv.1, Some(srv), json!({"direction":"server_to_client","message":"response","method":"tools/call","id":id,"tool":tool,"result":result,"is_error":false,"latency_ms":latency,"size":90,"truncated":false}))
}

pub fn open(ms: u64, pid: u32, srv: (&str, u32), path: &str, call: Option<Value>) -> Value {
    let mut e = ev(ms, "open", pid, Some(srv), json!({"path":path,"resolved":true,"flags":["O_RDONLY"],"ret":3,"dev":1,"ino":2,"syscall":"openat"}));
    if let Some(c) = call {
        e["tool_call"] = c;
    }
    e
}

/// An alert about `event`, written right after it.
pub fn alert(ms: u64, rule: &str, event: &Value) -> Value {
    let mut a = event.clone();
    let m = a.as_object_mut().unwrap();
    for k in ["path", "resolved", "flags", "ret", "dev", "ino", "syscall", "argv", "filename", "cwd"] {
        m.remove(k);
    }
    m.insert("ts".into(), json!(ts(ms)));
    m.insert("kind".into(), json!("alert"));
    m.insert("rule".into(), json!(rule));
    m.insert("severity".into(), json!("critical"));
    m.insert("action".into(), json!("alert"));
    m.insert("description".into(), json!("An SSH private key was read."));
    m.insert("tags".into(), json!(["credential_access"]));
    m.insert("event".into(), event.clone());
    m.insert("ancestry".into(), json!([{"pid": 1, "exe": "/sbin/init"}]));
    a
}

pub fn text(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// A report with the log it was read from (its events are read back
/// from there).
pub struct Read {
    pub log: Log,
    pub r: Report,
}

impl std::ops::Deref for Read {
    type Target = Report;
    fn deref(&self) -> &Report {
        &self.r
    }
}

impl std::ops::DerefMut for Read {
    fn deref_mut(&mut self) -> &mut Report {
        &mut self.r
    }
}

impl Read {
    /// `a`'s event, read back from its line.
    pub fn event(&self, a: &Activity) -> Value {
        let raw = ActivityText::of(a, &self.log.lines).event.expect("the line reads back");
        serde_json::from_str(raw.get()).unwrap()
    }

    /// What `c`'s lines say, read back.
    pub fn call(&self, c: &Call) -> CallText {
        CallText::of(c, &self.log.lines)
    }

    pub fn summary(&self, a: &Activity) -> String {
        ActivityText::of(a, &self.log.lines).summary
    }

    pub fn table(&self) -> String {
        let mut out = Vec::new();
        super::table::render(&self.r, &self.log.lines, &super::table::Style { color: false, all: true }, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }
}

/// What reading `text` as one file found, and its report.
pub fn read_text(text: &str) -> Read {
    let mut log = Log::default();
    let mut b = super::timeline::Builder::default();
    log.read_one(Path::new("events.jsonl"), Backing::Memory(text.as_bytes().to_vec()), &mut |l| b.add(&l)).unwrap();
    let r = b.finish(&log);
    Read { log, r }
}

pub fn log_of(text: &str) -> Log {
    read_text(text).log
}

pub fn report(lines: &[Value]) -> Read {
    read_text(&text(lines))
}

pub const FS: (&str, u32) = ("secure-filesystem-server", 4242);

/// A filesystem server: start-up, a read of notes.txt (id 3) that also
/// touches an SSH key (alert), two overlapping calls (5, 6) sharing one
/// open, and exit.
pub fn story() -> Vec<Value> {
    let boot = ("node /srv/fs/index.js /home/me", 4242);
    let key = open(130, 4242, FS, "/home/me/.ssh/id_rsa", Some(tool_call(3, "read_text_file", json!({"path": "/home/me/notes.txt"}))));
    vec![
        ev(0, "exec", 4242, Some(boot), json!({"filename":"/usr/bin/node","argv":["node","/srv/fs/index.js","/home/me"],"cwd":"/","dev":1,"ino":1})),
        open(5, 4242, boot, "/srv/fs/node_modules/sdk/index.js", None),
        ev(50, "rpc", 4242, Some(boot), json!({"direction":"client_to_server","message":"request","method":"initialize","id":0,"size":150,"truncated":false})),
        ev(52, "rpc", 4242, Some(FS), json!({"direction":"server_to_client","message":"response","method":"initialize","id":0,"result":"secure-filesystem-server 0.2.0","is_error":false,"latency_ms":2.0,"size":170,"truncated":false})),
        ev(53, "rpc", 4242, Some(FS), json!({"direction":"client_to_server","message":"notification","method":"notifications/initialized","size":50,"truncated":false})),
        request(100, FS, 3, "read_text_file", json!({"path": "/home/me/notes.txt"})),
        open(110, 4242, FS, "/home/me/notes.txt", Some(tool_call(3, "read_text_file", json!({"path": "/home/me/notes.txt"})))),
        key.clone(),
        alert(130, "ssh-key-read", &key),
        response(140, FS, 3, "read_text_file", "remember the milk", 40.0),
        open(200, 4242, FS, "/etc/hosts", None),
        request(300, FS, 5, "search_files", json!({"pattern": "*.md"})),
        request(301, FS, 6, "list_directory", json!({"path": "/home/me"})),
        open(310, 4242, FS, "/home/me", Some(in_flight(&[(5, "search_files"), (6, "list_directory")]))),
        response(320, FS, 6, "list_directory", "[FILE] notes.txt", 19.0),
        response(330, FS, 5, "search_files", "No matches found", 30.0),
        ev(400, "exit", 4242, Some(FS), json!({"code":0,"signal":null})),
        ev(401, "drops", 99, None, json!({"kernel":{},"queue":0,"other":{},"final":true})),
    ]
}
