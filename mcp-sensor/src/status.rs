//! `mcp-sensor status`: what a running daemon watches, asked through a
//! root-only unix socket.
//!
//! Owns the board (the servers found and not yet exited, with their
//! client, start, tool calls and alerts; the mode; the hooks of the
//! features plan; the run's drops), fed from the output tap
//! (metrics/mod.rs), the socket `STATE_DIR/status.sock` (0600, in the
//! daemon's 0700 state directory, which the daemon holds: service.rs),
//! and the client side: one connection, one JSON object back, shown as a
//! table or passed on with `--json`.

use crate::event::{Body, Direction, Event};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The socket's name in the state directory.
pub const SOCKET_NAME: &str = "status.sock";

/// One watched server.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServerRow {
    /// The session's root pid (`server.pid` of its lines).
    pub pid: u32,
    pub name: String,
    /// The root's parent when it was found: `comm[pid]` (the MCP client,
    /// or the launcher that started the server).
    pub client: Option<String>,
    /// When it was found to be a server (its `server_found` line's `ts`).
    pub since: String,
    /// tools/call requests it was sent.
    pub calls: u64,
    /// Alerts raised in its tree, repeats included.
    pub alerts: u64,
}

/// The daemon's state as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Board {
    pub version: &'static str,
    pub pid: u32,
    /// `enforce` or `alert-only`.
    pub mode: &'static str,
    pub kernel: String,
    pub object: crate::features::Object,
    /// Event kind -> the kernel hook that produces it (features plan).
    pub hooks: BTreeMap<&'static str, &'static str>,
    /// Servers by root pid.
    #[serde(serialize_with = "rows")]
    pub servers: BTreeMap<u32, ServerRow>,
    /// The run's losses so far (as the final `drops` line would say them).
    pub drops: crate::event::Drops,
}

fn rows<S: serde::Serializer>(m: &BTreeMap<u32, ServerRow>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(m.values())
}

impl Board {
    pub fn new(plan: &crate::features::Plan, enforce: bool) -> Board {
        Board {
            version: env!("CARGO_PKG_VERSION"),
            pid: std::process::id(),
            mode: if enforce { "enforce" } else { "alert-only" },
            kernel: plan.kernel.clone(),
            object: plan.object,
            hooks: plan.hooks.clone(),
            servers: BTreeMap::new(),
            drops: Default::default(),
        }
    }

    /// Whether `ev` can change the board (the others skip its lock).
    pub fn concerns(ev: &Event) -> bool {
        match &ev.body {
            Body::ServerFound { .. } | Body::Alert(_) | Body::AlertSummary(_) | Body::Exit { .. } => true,
            Body::Rpc(r) => r.direction == Direction::ClientToServer && r.method.as_deref() == Some("tools/call"),
            _ => false,
        }
    }

    pub fn observe(&mut self, ev: &Event) {
        let root = ev.server.as_ref().map(|s| s.pid);
        match &ev.body {
            Body::ServerFound { .. } => {
                let pid = root.unwrap_or(ev.pid);
                let name = ev.server.as_ref().map_or_else(|| ev.comm.clone(), |s| s.name.clone());
                let client = parent_name(ev.ppid);
                self.servers.insert(pid, ServerRow { pid, name, client, since: ev.ts.clone(), calls: 0, alerts: 0 });
            }
            Body::Exit { .. } => {
                self.servers.remove(&ev.pid);
            }
            _ => {
                let Some(row) = root.and_then(|p| self.servers.get_mut(&p)) else { return };
                if let Some(s) = &ev.server {
                    if row.name != s.name {
                        row.name.clone_from(&s.name); // named by its handshake since
                    }
                }
                match &ev.body {
                    Body::Rpc(r) if r.message == "request" => row.calls += 1,
                    Body::Alert(_) => row.alerts += 1,
                    Body::AlertSummary(s) => row.alerts += s.count.saturating_sub(1),
                    _ => {}
                }
            }
        }
    }
}

/// `comm[pid]` of a live process, from /proc (once per server found).
fn parent_name(ppid: u32) -> Option<String> {
    let comm = std::fs::read_to_string(format!("/proc/{ppid}/comm")).ok()?;
    Some(format!("{}[{ppid}]", comm.trim_end()))
}

/// The socket path for `state_dir`.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

/// Binds the status socket in the (held, 0700) state directory, 0600. A
/// socket file left by a daemon that was killed is replaced: the caller
/// holds the directory, so no live daemon owns it.
pub fn bind(state_dir: &Path) -> Result<std::os::unix::net::UnixListener> {
    let path = socket_path(state_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing the old status socket {}", path.display())),
    }
    let l = std::os::unix::net::UnixListener::bind(&path)
        .with_context(|| format!("creating the status socket {} (for `mcp-sensor status`)", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making the status socket {} root-only", path.display()))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Answers each connection with the board as one JSON object, until dropped.
pub async fn serve(listener: std::os::unix::net::UnixListener, tap: std::sync::Arc<crate::metrics::Tap>) {
    use tokio::io::AsyncWriteExt;
    let Ok(listener) = tokio::net::UnixListener::from_std(listener) else { return };
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let mut text = {
            let b = tap.board.lock().unwrap_or_else(|p| p.into_inner());
            serde_json::to_string(&*b).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        };
        text.push('\n');
        tokio::spawn(async move {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn.write_all(text.as_bytes())).await;
        });
    }
}

/// `mcp-sensor status`: asks the daemon holding `state_dir`; exit 0, or an
/// error with a hint when none answers.
pub fn run(args: &crate::cli::StatusArgs) -> Result<i32> {
    let path = socket_path(&args.state_dir);
    let mut conn = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(c) => c,
        Err(e) => {
            use std::io::ErrorKind as K;
            match e.kind() {
                K::NotFound | K::ConnectionRefused => bail!(
                    "no mcp-sensor daemon answers at {} ({e}): start one (`systemctl start mcp-sensor`, or \
                     `mcp-sensor run`); a daemon run with --state-dir DIR is asked with `mcp-sensor status --state-dir DIR`",
                    path.display()
                ),
                K::PermissionDenied => bail!("{}: {e}: the status socket is root's only: run `sudo mcp-sensor status`", path.display()),
                _ => return Err(e).with_context(|| format!("connecting to {}", path.display())),
            }
        }
    };
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut text = String::new();
    conn.read_to_string(&mut text).with_context(|| format!("reading the daemon's answer from {}", path.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("the daemon's answer is not JSON: {text:?}"))?;
    let shown = if args.json { format!("{v}\n") } else { table(&v) };
    let mut out = std::io::stdout().lock();
    out.write_all(shown.as_bytes())?;
    Ok(0)
}

/// The board as text: a header, the hooks, the drops, one row per server.
pub fn table(v: &Value) -> String {
    let s = |x: &Value| match x {
        Value::String(t) => t.clone(),
        Value::Null => "-".into(),
        o => o.to_string(),
    };
    let mut t = format!(
        "mcp-sensor {} (pid {}): mode {}, kernel {} ({} object)\n",
        s(&v["version"]),
        s(&v["pid"]),
        s(&v["mode"]),
        s(&v["kernel"]),
        s(&v["object"])
    );
    let hooks: Vec<String> = v["hooks"].as_object().into_iter().flatten().map(|(k, h)| format!("{k}={}", s(h))).collect();
    t.push_str(&format!("hooks: {}\n", if hooks.is_empty() { "-".into() } else { hooks.join(", ") }));
    let d = &v["drops"];
    let mut lost: Vec<String> = d["kernel"].as_object().into_iter().flatten().map(|(k, n)| format!("ring_buffer {k}={n}")).collect();
    if d["queue"].as_u64().unwrap_or(0) > 0 {
        lost.push(format!("queue={}", d["queue"]));
    }
    lost.extend(d["other"].as_object().into_iter().flatten().map(|(k, n)| format!("{k}={n}")));
    t.push_str(&format!("drops since start: {}\n", if lost.is_empty() { "none".into() } else { lost.join(", ") }));
    let servers = v["servers"].as_array().cloned().unwrap_or_default();
    t.push_str(&format!("\nwatched servers: {}\n", servers.len()));
    if servers.is_empty() {
        return t;
    }
    let head = ["PID", "NAME", "CLIENT", "SINCE", "CALLS", "ALERTS"];
    let mut cells: Vec<Vec<String>> = vec![head.iter().map(|h| h.to_string()).collect()];
    for r in &servers {
        let name: String = s(&r["name"]).chars().filter(|c| !c.is_control()).take(48).collect();
        cells.push(vec![s(&r["pid"]), name, s(&r["client"]), s(&r["since"]), s(&r["calls"]), s(&r["alerts"])]);
    }
    let widths: Vec<usize> = (0..head.len()).map(|i| cells.iter().map(|c| c[i].chars().count()).max().unwrap_or(0)).collect();
    for c in cells {
        let line: Vec<String> = c.iter().zip(&widths).map(|(x, w)| format!("{x:<w$}")).collect();
        t.push_str(line.join("  ").trim_end());
        t.push('\n');
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Rpc;

    fn plan() -> crate::features::Plan {
        let mut p = crate::features::Plan::for_kernel(&Default::default());
        p.kernel = "6.1.0-test".into();
        p
    }

    #[test]
    fn the_board_lists_a_found_server_until_it_exits_with_its_calls() {
        let mut b = Board::new(&plan(), true);
        let srv = Some(("secure-filesystem-server", 42));
        let found = Event::for_test(42, 1, Body::ServerFound { how: "stdio_pipes", held: 0, held_lost: 0, confirmed_after_ms: 1.0 }, srv);
        b.observe(&found);
        let mut req = Rpc::new(Direction::ClientToServer, "request", 10, false);
        req.method = Some("tools/call".into());
        req.tool = Some("read_text_file".into());
        let call = Event::for_test(43, 2, Body::Rpc(req), srv);
        assert!(Board::concerns(&call));
        b.observe(&call);
        b.observe(&call);
        let row = &b.servers[&42];
        assert_eq!((row.pid, row.name.as_str(), row.calls, row.since.as_str()), (42, "secure-filesystem-server", 2, "t1"));
        let v = serde_json::to_value(&b).unwrap();
        assert_eq!(v["mode"], "enforce");
        assert_eq!(v["servers"][0]["pid"], 42);
        let text = table(&v);
        assert!(text.contains("mode enforce") && text.contains("drops since start: none"), "{text}");
        let row_line = text.lines().find(|l| l.starts_with("42 ")).unwrap_or_else(|| panic!("{text}"));
        assert!(row_line.contains("secure-filesystem-server") && row_line.split_whitespace().any(|w| w == "2"), "{text}");
        // an exit of another process of its tree leaves it; its root's removes it
        b.observe(&Event::for_test(43, 3, Body::Exit { code: Some(0), signal: None }, srv));
        assert_eq!(b.servers.len(), 1);
        b.observe(&Event::for_test(42, 4, Body::Exit { code: Some(0), signal: None }, srv));
        assert!(b.servers.is_empty());
    }
}
