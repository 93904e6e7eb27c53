//! The event model: what the sensor reports, one JSON object per line.
//!
//! Owns the output schema (documented in docs/events.md). Fields are added
//! over time, never renamed. Every line has `ts`, `kind`, `pid`, `ppid`,
//! `comm`, `exe`; the kind-specific fields come from [`Body`], flattened in.

use serde::Serialize;
use serde_json::Value;

/// One output line.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Wall-clock time, RFC 3339 UTC with nanoseconds.
    pub ts: String,
    /// Kernel boot-time ns of the event: ordering and latency, not output.
    #[serde(skip)]
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub comm: String,
    /// The process's executable, from its exec event or /proc; `null` when
    /// the process was never seen to exec and /proc did not say.
    pub exe: Option<String>,
    /// The pid in the process's own PID namespace, where that is not the
    /// host's (a container's or `unshare --pid`'s); from the kernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ns_pid: Option<u32>,
    /// The container the process runs in, from its cgroup (identity.rs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<std::sync::Arc<crate::identity::Container>>,
    #[serde(flatten)]
    pub body: Body,
    /// The MCP server (session) whose tree this process belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerRef>,
    /// The request(s) in flight in that server when this happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call: Option<ToolCallRef>,
}

impl Event {
    /// A line about the sensor itself, now: its own pid, no server.
    pub fn own(body: Body, clock: &crate::timefmt::Clock) -> Event {
        let now = crate::timefmt::Clock::boot_ns();
        let pid = std::process::id();
        Event {
            ns_pid: None, container: None,
            ts: clock.rfc3339(now),
            ts_ns: now,
            pid,
            tid: pid,
            ppid: std::os::unix::process::parent_id(),
            uid: 0,
            comm: "mcp-sensor".into(),
            exe: std::env::current_exe().ok().map(|p| p.display().to_string()),
            body,
            server: None,
            tool_call: None,
        }
    }
}

#[cfg(test)]
impl Event {
    /// A line of process `pid` at boot ns `ts_ns` (`ts` is `t<ts_ns>`), in
    /// server `server` (its root pid; `None`: none), for unit tests.
    pub(crate) fn for_test(pid: u32, ts_ns: u64, body: Body, server: Option<(&str, u32)>) -> Event {
        Event {
            ts: format!("t{ts_ns}"),
            ts_ns,
            pid,
            tid: pid,
            ppid: 1,
            uid: 0,
            comm: "x".into(),
            exe: None,
            ns_pid: None,
            container: None,
            body,
            server: server.map(|(name, pid)| ServerRef { name: name.into(), pid }),
            tool_call: None,
        }
    }
}

/// Kind-specific fields. The tag is the `kind` field of the line.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Body {
    Fork {
        child_pid: u32,
    },
    Exec {
        /// Path the caller passed to execve, as given.
        filename: String,
        argv: Vec<String>,
        cwd: String,
        /// The script, when `exe` is the interpreter that runs it (a `#!`
        /// exec, or a shell's script operand: `bash -e x.sh`), absolute,
        /// symlinks resolved where it could still be found (shell_run.rs).
        #[serde(skip_serializing_if = "Option::is_none")]
        script: Option<String>,
        /// For a shell: what it was asked to run, `command` (`-c`),
        /// `stdin`, `interactive` or `script` (shell_run.rs).
        #[serde(skip_serializing_if = "Option::is_none")]
        shell_mode: Option<&'static str>,
        /// Who can modify `script`: `root` (root's file in root's
        /// directory, neither group- nor world-writable), `user` or
        /// `anyone` (world-writable file or directory). Absent when the
        /// script could not be found.
        #[serde(skip_serializing_if = "Option::is_none")]
        script_writable_by: Option<&'static str>,
        /// The executable of the process that started this one (the
        /// parent at exec), resolved: from the agent's process table, else
        /// `/proc/<ppid>/exe`. Absent when neither knew it.
        #[serde(skip_serializing_if = "Option::is_none")]
        parent_exe: Option<String>,
        /// Identity of the executed file: the device as stat(2) encodes
        /// `st_dev` (glibc's `makedev`), and the inode number.
        dev: u32,
        ino: u64,
        /// What the file is, whatever it is called: a shell or another
        /// program rules name in `exe_is:`, known by identity, content or
        /// applet (`exe_is.rs`). Absent when it is none of them.
        #[serde(skip_serializing_if = "Option::is_none")]
        exe_is: Option<crate::exe_is::ExeIs>,
        #[serde(skip_serializing_if = "is_false")]
        argv_truncated: bool,
        /// The whole length in bytes of `exe` when it lost its leading
        /// components (`path_truncated`) and the kernel's walk reached the
        /// root (on 5.10-5.16 only within 64 components).
        #[serde(skip_serializing_if = "Option::is_none")]
        exe_length: Option<u32>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        file_flags: Vec<&'static str>,
    },
    Open {
        path: String,
        /// `true` when the path was resolved from the opened file; `false`
        /// when the open failed and `path` is the caller's string.
        resolved: bool,
        /// open(2) flags, symbolic (`O_RDONLY`, `O_CREAT`, ...).
        flags: Vec<&'static str>,
        /// The fd, or a negative errno.
        ret: i32,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// Identity of the opened file, as for `Exec` (0 when the open failed,
        /// but for an open BPF LSM refused: the file refused).
        dev: u32,
        ino: u64,
        /// The name rules know this file by, when it was opened under
        /// another one (a hard link, a bind mount, a handle, `/proc/*/fd`):
        /// the file's identity is a known file's (rules/known.rs).
        #[serde(skip_serializing_if = "Option::is_none")]
        canonical_path: Option<String>,
        /// The whole length in bytes of `path` when it lost its leading
        /// components (`path_truncated`), as `exe_length` of an exec.
        #[serde(skip_serializing_if = "Option::is_none")]
        path_length: Option<u32>,
        syscall: &'static str,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        file_flags: Vec<&'static str>,
    },
    /// The name `path` replaced or created by a rename (the source moved
    /// onto it), a hard link or a symlink; a truncate of `path`. Rules
    /// about writes judge it as a write of `path` (rules/README.md).
    Rename(Change),
    Link(Change),
    Symlink(Change),
    Truncate(Change),
    Connect {
        /// `inet`, `inet6`, `unix`, or `af_N` for others.
        family: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        addr: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        /// Unix socket path; abstract names start with `@`.
        #[serde(skip_serializing_if = "Option::is_none")]
        path: Option<String>,
        /// connect(2)'s result. From a cgroup program (`hook` not
        /// `sys_connect`): 0, or -1 (EPERM) when it refused; the
        /// operation's own result is not seen there.
        ret: i32,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The caller's operation: `connect`, `sendto`, `sendmsg`,
        /// `sendmmsg`, `io_uring`, `other` (docs/events.md).
        op: &'static str,
        /// The program that saw it: `sys_connect`, `cgroup_connect4|6`,
        /// `cgroup_sendmsg4|6`.
        hook: &'static str,
        /// `tcp`, `udp`, `other`; absent when not known (unix sockets).
        #[serde(skip_serializing_if = "Option::is_none")]
        transport: Option<&'static str>,
    },
    /// The process set up io_uring: I/O the syscall hooks do not see.
    #[serde(rename = "io_uring_setup")]
    IoUringSetup {
        /// The ring's fd.
        fd: i32,
        sq_entries: u32,
        cq_entries: u32,
        /// `IORING_SETUP_*` flags, symbolic.
        flags: Vec<&'static str>,
    },
    /// The process reached into another process's memory: ptrace
    /// attach/seize, process_vm_readv/writev (ptrace.bpf.c).
    Ptrace {
        /// `ptrace`, `process_vm_readv` or `process_vm_writev`.
        syscall: &'static str,
        /// ptrace's request: `PTRACE_ATTACH` or `PTRACE_SEIZE`.
        #[serde(skip_serializing_if = "Option::is_none")]
        request: Option<&'static str>,
        /// The pid (thread id) the caller named.
        target_pid: u32,
        /// 0 (process_vm_*: bytes moved), or -errno.
        ret: i32,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    Exit {
        /// Exit status when the process exited, else `null`.
        code: Option<i32>,
        /// Signal that killed it, else `null`.
        signal: Option<i32>,
    },
    /// The first line a sensor writes: which kernel, which hooks, what
    /// is reduced on it (docs/events.md).
    #[serde(rename = "sensor_start")]
    SensorStart {
        version: &'static str,
        /// `exec` or `run`.
        mode: &'static str,
        #[serde(flatten)]
        plan: crate::features::Plan,
    },
    /// `exec` stopped watching: CMD and everything it left behind exited,
    /// or the `--watch-after-exit` limit was reached (docs/events.md).
    #[serde(rename = "watch_end")]
    WatchEnd {
        /// `tree_empty` or `limit`.
        reason: &'static str,
        /// CMD's pid: the watched tree's root.
        server_pid: u32,
        /// ms from CMD's exit to the end of watching.
        after_exit_ms: u64,
        /// Processes of the tree still running, unwatched from now on
        /// (reason `limit`).
        remaining: Vec<u32>,
    },
    /// Losses since the previous `drops` line; see docs/events.md.
    Drops(Drops),
    /// `run`, at start: the sensor was not watching from `from` (the
    /// previous run's last line on this log) to `to` (this run's start,
    /// the line's own `ts`); see gap.rs.
    Gap {
        /// RFC 3339 UTC.
        from: String,
        to: String,
        /// ms from `from` to `to`.
        unwatched_ms: f64,
        /// How the previous run ended: `clean` (its final totals are its
        /// last line) or `unclean` (killed, crashed, power lost: its last
        /// events may be missing too).
        previous_end: &'static str,
    },
    /// One JSON-RPC message on a watched server's stdio channel.
    Rpc(Rpc),
    /// Discovery (`run`): a process found to be an MCP server. Written when
    /// its channel first says something only MCP says, dated at the
    /// session's first event (its root's exec); its earlier events, held
    /// until then, follow it.
    #[serde(rename = "server_found")]
    ServerFound {
        /// `client_child` (started by a known client) or `stdio_pipes`
        /// (started with pipes on stdin and stdout).
        how: &'static str,
        /// Events held before the verdict and written right after this line.
        held: u64,
        /// Events before the verdict that did not fit the hold bound
        /// (`discovery.max_held_events`): lost. Absent when none.
        #[serde(skip_serializing_if = "is_zero")]
        held_lost: u64,
        /// Milliseconds from the session's first event to the message that
        /// confirmed it (the launcher's start-up: npx takes about a second).
        confirmed_after_ms: f64,
    },
    /// Something on the channel that is not well-formed JSON-RPC.
    Malformed {
        direction: Direction,
        reason: String,
        /// Bytes of the offending frame (or the whole line), true length.
        size: u64,
    },
    /// A rule matched the event in `event`; written right after it. The
    /// first of a finding's occurrences (aggregate.rs): repeats are counted
    /// into an `alert_summary` line.
    Alert(Box<Alert>),
    /// The repeats of an alert's finding (same rule, action, server, tool
    /// call and subject), counted: written when the tool call ends, when
    /// the aggregation window closes, when the aggregate is evicted, and at
    /// shutdown; only when there were repeats (see docs/events.md).
    #[serde(rename = "alert_summary")]
    AlertSummary(Box<AlertSummary>),
    /// A watched server's bulk events past its per-server budget (events/s,
    /// bytes/s: `[log]` of the daemon's configuration) were not written:
    /// how many, for that server, since the previous `throttle` line of it.
    /// Alerts are never throttled; rules saw every event.
    Throttle(Throttle),
}

/// The `alert_summary` fields: which alert, how many times, first and last.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertSummary {
    /// The `alert_id` of the alert line this counts the repeats of.
    pub alert_id: String,
    pub rule: String,
    pub severity: &'static str,
    pub action: &'static str,
    /// What the finding is about: `exec <exe>`, `open <path>`,
    /// `connect <addr>:<port>`... (the aggregation's subject).
    pub subject: String,
    /// Occurrences in all, the first (the alert line) included.
    pub count: u64,
    /// Time of the first and of the last occurrence (RFC 3339 UTC).
    pub first_ts: String,
    pub last_ts: String,
    /// Why it is written now: `tool_call_end`, `window`, `evicted`, `shutdown`.
    pub reason: &'static str,
    /// Distinct pids among the occurrences (up to 64 kept; `pids_more`
    /// counts the others).
    pub pids: Vec<u32>,
    #[serde(skip_serializing_if = "is_zero")]
    pub pids_more: u64,
}

/// The `throttle` fields: bulk events of one server not written.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Throttle {
    /// Event lines not written, and their bytes.
    pub suppressed_events: u64,
    pub suppressed_bytes: u64,
    /// The first and last suppressed event's time (RFC 3339 UTC).
    pub first_ts: String,
    pub last_ts: String,
    /// The budget in force: per second (0: no limit on that measure).
    pub limit_events_per_sec: u64,
    pub limit_bytes_per_sec: u64,
}

/// A rename, link, symlink or truncate (`Body::Rename` ...).
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The syscall: `rename`, `renameat`, `renameat2`, `link`, `linkat`,
    /// `symlink`, `symlinkat`, `truncate` or `ftruncate`.
    pub op: &'static str,
    /// The name replaced or created, or the file truncated: the caller's
    /// string made absolute with the base the kernel resolved (its cwd or
    /// directory fd); ftruncate: the file's own path.
    pub path: String,
    /// rename, link: the old name (absolute when it shares `path`'s
    /// base); symlink: the link's target as written. Absent for truncate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `true` when `path` is the kernel's path of the file (ftruncate);
    /// `false` when it is the caller's string (links in it not followed).
    pub resolved: bool,
    /// 0, or a negative errno.
    pub ret: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// renameat2's `RENAME_*`, linkat's `AT_*`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<&'static str>,
    /// truncate, ftruncate: the new size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// ftruncate: the file's identity; else 0.
    pub dev: u32,
    pub ino: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub file_flags: Vec<&'static str>,
}

impl Body {
    /// The change, for a rename, link, symlink or truncate.
    pub fn change(&self) -> Option<&Change> {
        match self {
            Body::Rename(c) | Body::Link(c) | Body::Symlink(c) | Body::Truncate(c) => Some(c),
            _ => None,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Drops {
    /// Ring-buffer reserves that failed in the kernel, per event kind.
    pub kernel: std::collections::BTreeMap<String, u64>,
    /// Records the agent's queue had no room for.
    pub queue: u64,
    /// Other kernel-side losses (stash map full, capture caps), by name.
    pub other: std::collections::BTreeMap<String, u64>,
    /// What to change to lose less.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// `false`: losses since the previous `drops` line. `true`: the totals
    /// of the whole run, written once at exit even when all are zero.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// On the final line with `--enforce`: what the kernel enforced, by
    /// decision, counted before any record is reserved, so a kill whose
    /// record was lost to a full ring is still in this count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforced: Option<std::collections::BTreeMap<String, u64>>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client to server: what the server read.
    ClientToServer,
    /// Server to client: what the server wrote.
    ServerToClient,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rpc {
    pub direction: Direction,
    /// `request`, `response`, `error`, `notification`.
    pub message: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Value>,
    /// For `tools/call` requests and their responses.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
    /// Responses: a short summary of the result or error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    /// Responses: ms from the request being read to the response written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    /// `notifications/cancelled`: the id of the request it cancels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Value>,
    /// Bytes of the message, true length even when truncated.
    pub size: u64,
    pub truncated: bool,
    /// Server-to-client responses: the text a rule's `text_regex` searches
    /// (every string in the result or error, newline-joined). Not output.
    #[serde(skip)]
    pub text: Option<String>,
    /// `tools/list` responses: the `result`, for tool-definition memory.
    /// Not output.
    #[serde(skip)]
    pub tools_list: Option<Value>,
    /// Why this message, parsed whole, is not JSON-RPC 2.0 though it has
    /// its shape (no `"jsonrpc":"2.0"`, or an mcp-sensor event line):
    /// discovery does not count it as MCP. Not output.
    #[serde(skip)]
    pub not_jsonrpc: Option<&'static str>,
    /// Requests: W3C trace context from `params._meta` (`traceparent`,
    /// `tracestate`), for the exported span's parent (export/). Not output.
    #[serde(skip)]
    pub trace_context: Option<Box<TraceContext>>,
    /// `error` responses: the JSON-RPC error's `code`. Not output.
    #[serde(skip)]
    pub error_code: Option<i64>,
}

/// W3C trace context a client sent in a request's `params._meta`, as sent
/// (validated where it is used: export/sink.rs).
#[derive(Debug, Clone, PartialEq)]
pub struct TraceContext {
    pub traceparent: String,
    pub tracestate: Option<String>,
}

impl Rpc {
    /// A message with only its direction, kind and size known; the caller
    /// fills in what it parsed.
    pub fn new(direction: Direction, message: &'static str, size: u64, truncated: bool) -> Rpc {
        Rpc {
            direction,
            message,
            method: None,
            id: None,
            tool: None,
            arguments: None,
            result: None,
            is_error: None,
            latency_ms: None,
            request_id: None,
            size,
            truncated,
            text: None,
            tools_list: None,
            not_jsonrpc: None,
            trace_context: None,
            error_code: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServerRef {
    /// From the handshake (`serverInfo.name`), else the command line.
    pub name: String,
    /// pid of the server process the session is rooted at.
    pub pid: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ToolCallRef {
    /// The request's id; `null` when several are in flight (see
    /// `in_flight`): the sensor never guesses which one caused it.
    pub id: Option<Value>,
    /// Tool name for `tools/call`, else the method; `null` with several.
    pub name: Option<String>,
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
    /// All requests in flight when there is more than one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub in_flight: Vec<InFlightRef>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InFlightRef {
    pub id: Value,
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
}

/// The `alert` fields: which rule matched, what was done, and the evidence.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// Names this alert in the run's log: `alert_summary` lines refer to
    /// it. `<sensor start, boot ns, hex>-<sequence number>`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub alert_id: String,
    pub rule: String,
    /// `info`, `low`, `medium`, `high`, `critical`.
    pub severity: &'static str,
    /// `alert`; `would_kill` for a kill rule without `--enforce`; `killed`
    /// or `denied` when enforcement acted.
    pub action: &'static str,
    pub description: String,
    pub tags: Vec<String>,
    /// The triggering event, whole, as its own line reports it.
    pub event: Box<Event>,
    /// The process and its parents up to the MCP client, nearest first.
    pub ancestry: Vec<Hop>,
    /// Enforcement: who stopped it. `kernel_lsm` (BPF LSM refused the open
    /// or exec before it happened), `kernel_syscall_exit` (SIGKILL sent in
    /// the syscall's exit hook, delivered before it returns to user space),
    /// `kernel_cgroup` (a cgroup program refused the connect or UDP send),
    /// `kernel_cgroup+agent` (a cgroup program refused it, and the agent
    /// killed by pidfd: only connect(2) can be killed in the kernel), or
    /// `agent` (the agent killed by pidfd after reading the event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<&'static str>,
    /// Enforcement: the processes killed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub killed: Vec<Hop>,
    /// Enforcement: ns from the violating syscall's record (its kernel
    /// timestamp) to the kill signal or refusal. 0 when the kernel decided:
    /// the signal or refusal comes from the program that wrote the record,
    /// inside the syscall. Death itself follows; BENCHMARKS.md measures it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_ns: Option<u64>,
    /// Enforcement: `true` when the process returned from the violating
    /// syscall and ran before it was stopped: it may have used what it
    /// got (always so for `agent`). Absent when it never did.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub late: bool,
    /// On a `tools/list` answer that redefined tools: which, how (rug pull
    /// or upgrade), the old and new hashes and a short diff.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_changes: Vec<crate::rules::ToolChange>,
    /// Other rules the event matched whose alert this one stands for (the
    /// rule's `supersedes:`): one alert per finding.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_matched: Vec<String>,
}

/// One process in an ancestry chain.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hop {
    pub pid: u32,
    pub exe: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
