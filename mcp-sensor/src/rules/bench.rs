//! Throughput measurement of the default pack on a realistic event mix,
//! plus the event constructors the rule tests share.
//!
//! Not a timed assertion: [`bench_events`] returns a number for the
//! project's xtask (or the ignored test) to print.

use std::hint::black_box;
use std::time::Instant;

use serde_json::json;

use super::EvalContext;
use crate::event::{Body, Direction, Event, Rpc, ServerRef, ToolCallRef};

/// A process of server `srv` (pid 100) with tool call `tool` in flight.
pub(crate) fn event(exe: &str, body: Body, tool: Option<&str>) -> Event {
    Event {
        ns_pid: None, container: None,
        ts: String::new(),
        ts_ns: 0,
        pid: 101,
        tid: 101,
        ppid: 100,
        uid: 1000,
        comm: exe
            .rsplit('/')
            .next()
            .unwrap_or(exe)
            .chars()
            .take(15)
            .collect(),
        exe: Some(exe.to_string()),
        body,
        server: Some(ServerRef {
            name: "srv".into(),
            pid: 100,
        }),
        tool_call: tool.map(|t| ToolCallRef {
            id: Some(json!(1)),
            name: Some(t.into()),
            method: Some("tools/call".into()),
            arguments: None,
            in_flight: Vec::new(),
        }),
    }
}

pub(crate) fn open(exe: &str, path: &str, flags: &[&'static str]) -> Event {
    let body = Body::Open {
        path: path.into(),
        resolved: true,
        flags: flags.to_vec(),
        ret: 3,
        error: None,
        dev: 0x801, // 8:1 as stat(2) encodes it, as events carry it
        ino: 1234,
        canonical_path: None,
        path_length: None,
        syscall: "openat",
        file_flags: Vec::new(),
    };
    event(exe, body, Some("read_file"))
}

pub(crate) fn exec(exe: &str, argv: &[&str], script: Option<&str>) -> Event {
    let argv_s: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    // as the pipeline makes them, without looking at the disk
    let facts = crate::shell_run::exec_facts(exe, None, &argv_s, "/home/u/project", script, false);
    let body = Body::Exec {
        filename: argv.first().copied().unwrap_or(exe).into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        cwd: "/home/u/project".into(),
        script: facts.0,
        dev: 0x801, // 8:1 as stat(2) encodes it, as events carry it
        ino: 99,
        exe_is: None,
        shell_mode: facts.1,
        script_writable_by: facts.2,
        parent_exe: None,
        argv_truncated: false,
        exe_length: None,
        file_flags: Vec::new(),
    };
    event(exe, body, Some("run"))
}

pub(crate) fn connect(
    family: &str,
    addr: Option<&str>,
    port: Option<u16>,
    path: Option<&str>,
) -> Event {
    let body = Body::Connect {
        family: family.into(),
        addr: addr.map(Into::into),
        port,
        path: path.map(Into::into),
        ret: 0,
        error: None,
        op: "connect",
        hook: "sys_connect",
        transport: Some("tcp"),
    };
    event("/usr/bin/node", body, Some("fetch"))
}

pub(crate) fn rpc(
    direction: Direction,
    message: &'static str,
    method: Option<&str>,
    result: Option<&str>,
) -> Event {
    let body = Body::Rpc(Rpc {
        direction,
        message,
        method: method.map(Into::into),
        id: Some(json!(7)),
        tool: Some("read_file".into()),
        arguments: None,
        result: result.map(Into::into),
        is_error: None,
        latency_ms: None,
        request_id: None,
        size: 200,
        truncated: false,
        text: None,
        tools_list: None,
        not_jsonrpc: None,
        trace_context: None,
        error_code: None,
    });
    event("/usr/bin/node", body, None)
}

/// A mix shaped like a busy Node.js server: mostly opens of modules,
/// libraries and project files, some connects, rpc traffic, a few execs.
pub fn sample_events() -> Vec<Event> {
    let node = "/usr/bin/node";
    let mut v = Vec::new();
    for i in 0..40 {
        v.push(open(
            node,
            &format!("/home/u/.npm/_npx/abc/node_modules/pkg{i}/lib/index.js"),
            &["O_RDONLY", "O_CLOEXEC"],
        ));
    }
    for p in [
        "/etc/ld.so.cache",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/proc/self/maps",
        "/sys/fs/cgroup/cpu.max",
        "/etc/resolv.conf",
        "/etc/hosts",
        "/home/u/project/src/main.rs",
        "/home/u/project/README.md",
        "/home/u/project/.git/HEAD",
        "/dev/null",
        "/home/u/.ssh/known_hosts",
        "/home/u/project/package.json",
    ] {
        v.push(open(node, p, &["O_RDONLY", "O_CLOEXEC"]));
    }
    for p in [
        "/home/u/project/out.txt",
        "/tmp/tmp-123/cache.json",
        "/home/u/project/notes.md",
    ] {
        v.push(open(
            node,
            p,
            &["O_WRONLY", "O_CREAT", "O_TRUNC", "O_CLOEXEC"],
        ));
    }
    v.push(connect("inet", Some("127.0.0.1"), Some(8080), None));
    v.push(connect("inet", Some("140.82.112.3"), Some(443), None));
    v.push(connect(
        "inet6",
        Some("2606:4700::6810:84e5"),
        Some(443),
        None,
    ));
    v.push(connect("unix", None, None, Some("/run/user/1000/bus")));
    v.push(rpc(
        Direction::ClientToServer,
        "request",
        Some("tools/call"),
        None,
    ));
    v.push(rpc(
        Direction::ServerToClient,
        "response",
        Some("tools/call"),
        Some("{\"content\":[{\"type\":\"text\",\"text\":\"3 files changed\"}]}"),
    ));
    v.push(rpc(
        Direction::ClientToServer,
        "notification",
        Some("notifications/progress"),
        None,
    ));
    v.push(exec(
        "/usr/bin/git",
        &["git", "status", "--porcelain"],
        None,
    ));
    v.push(exec(
        "/usr/bin/node",
        &["node", "/home/u/project/build.js"],
        None,
    ));
    v.push(event(
        node,
        Body::Exit {
            code: Some(0),
            signal: None,
        },
        None,
    ));
    v
}

/// Evaluates `n` events of [`sample_events`] through the default pack on
/// one thread; returns events per second. Build with `--release`.
pub fn bench_events(n: usize) -> f64 {
    let set = super::defaults();
    let events = sample_events();
    let ctx = EvalContext {
        first_request_seen: true,
        ..Default::default()
    };
    // Warm up the lazy DFA caches as a long-running agent would have.
    for e in &events {
        black_box(set.evaluate(e, &ctx));
    }
    let start = Instant::now();
    let mut hits = 0usize;
    for i in 0..n {
        hits += set
            .evaluate(black_box(&events[i % events.len()]), &ctx)
            .len();
    }
    let secs = start.elapsed().as_secs_f64();
    black_box(hits);
    n as f64 / secs
}

#[cfg(test)]
mod tests {
    /// `cargo test --release -p mcp-sensor --lib rules::bench -- --ignored --nocapture`
    #[test]
    #[ignore = "measurement, not a check: run in release mode"]
    fn default_pack_throughput() {
        let eps = super::bench_events(5_000_000);
        println!("default pack: {:.0} events/s on one core", eps);
    }

    #[test]
    fn sample_mix_is_quiet() {
        // The realistic mix is benign: a false positive here is a noise bug.
        let set = super::super::defaults();
        let ctx = super::EvalContext {
            first_request_seen: true,
            ..Default::default()
        };
        for e in super::sample_events() {
            let m = set.evaluate(&e, &ctx);
            assert!(m.is_empty(), "{:?} matched {:?}", e.body, m);
        }
    }
}
