//! Correlation: which MCP server and which request(s) in flight each
//! process's activity belongs to.
//!
//! Owns the sessions (one per watched server, keyed by the session id the
//! kernel stamps on every record: the tgid of the server's root process)
//! and the attribution rule:
//! - a process forked while requests were in flight in its server keeps
//!   them for its whole life (procs.rs stores them as its origin);
//! - any other process (the server itself, helpers started before the
//!   first request) is attributed to whatever is in flight when it acts;
//! - with several requests in flight, all are listed and none is picked.
//!
//! "In flight" means: read by the server from its channel and not yet
//! answered on it. Capture and host events share one ring buffer, so the
//! order the agent sees them in is the order they happened in.

use crate::abi;
use crate::decode::Stdio;
use crate::detect::Facts;
use crate::event::{Body, Direction, Event, InFlightRef, ServerRef, ToolCallRef};
use crate::mcp::{Frame, InFlight, Reassembler, Session, SessionOutput};
use crate::procs::ProcTable;
use std::collections::HashMap;

struct SessionState {
    root_pid: u32,
    /// The command line: the server's name until a handshake names it.
    cmdline_name: String,
    /// One reassembler per direction, indexed by abi::DIR_*.
    reasm: [Reassembler; 2],
    session: Session,
    /// Capture losses of its channel while it was a discovery candidate:
    /// counted in `stdio_loss` only if it turns out to be a server
    /// ([`Sessions::count_held_losses`]). A `cat | grep` whose stdin the
    /// kernel stopped capturing mid-stream is no loss of ours.
    held_loss: StdioLoss,
}

/// Sessions whose root exited are kept this many at most (their orphaned
/// children may still act); the oldest are forgotten first.
const MAX_ENDED: usize = 256;

pub struct Sessions {
    sessions: HashMap<u32, SessionState>,
    /// Roots that exited, oldest first (bounds a long-running daemon).
    ended: std::collections::VecDeque<u32>,
    max_message: usize,
    frames: Vec<Frame>,
    outputs: Vec<SessionOutput>,
    /// Capture losses of every server's channel since the start, in bytes
    /// and messages (`gaps`, `gap_bytes`, `damaged` of
    /// [`crate::mcp::FramingStats`]); a candidate's count once it is
    /// confirmed.
    pub stdio_loss: StdioLoss,
}

/// Stdio capture losses summed over all channels (drops lines).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StdioLoss {
    /// Offset jumps: bytes of a stream the agent never got. Each hides at
    /// least one message or part of one.
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Messages written incomplete because a gap or a reset cut them.
    pub messages_damaged: u64,
}

impl StdioLoss {
    fn add(&mut self, o: StdioLoss) {
        self.gaps += o.gaps;
        self.gap_bytes += o.gap_bytes;
        self.messages_damaged += o.messages_damaged;
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(crate::mcp::DEFAULT_MAX_MESSAGE)
    }
}

fn in_flight_ref(r: &InFlight) -> InFlightRef {
    InFlightRef { id: r.id.clone(), method: r.method.clone(), tool: r.tool.clone() }
}

/// The `tool_call` of an event given the requests in flight; `None` when
/// there are none.
pub fn tool_call_ref(in_flight: &[&InFlight]) -> Option<ToolCallRef> {
    match in_flight {
        [] => None,
        [one] => Some(ToolCallRef {
            id: Some(one.id.clone()),
            name: Some(one.tool.clone().unwrap_or_else(|| one.method.clone())),
            method: Some(one.method.clone()),
            arguments: one.arguments.clone(),
            in_flight: Vec::new(),
        }),
        many => Some(ToolCallRef {
            id: None,
            name: None,
            method: None,
            arguments: None,
            in_flight: many.iter().map(|r| in_flight_ref(r)).collect(),
        }),
    }
}

impl Sessions {
    pub fn new(max_message: usize) -> Self {
        Sessions { sessions: HashMap::new(), ended: Default::default(), max_message, frames: Vec::new(), outputs: Vec::new(), stdio_loss: StdioLoss::default() }
    }

    /// A new watched server rooted at `root_pid` (also its session id).
    pub fn register(&mut self, root_pid: u32, cmdline_name: String) {
        let max = self.max_message;
        self.sessions.insert(
            root_pid,
            SessionState {
                root_pid,
                cmdline_name,
                reasm: [Reassembler::new(max), Reassembler::new(max)],
                session: Session::new(),
                held_loss: StdioLoss::default(),
            },
        );
    }

    /// The session of `id`, registered on first sight from the process
    /// table when nobody registered it (servers found by the daemon).
    fn state(&mut self, id: u32, procs: &ProcTable) -> &mut SessionState {
        if !self.sessions.contains_key(&id) {
            let name = procs
                .get(id)
                .map(|p| if p.argv.is_empty() { p.comm.clone() } else { p.argv.join(" ") })
                .unwrap_or_else(|| format!("pid {id}"));
            self.register(id, name);
        }
        self.sessions.get_mut(&id).expect("registered above")
    }

    /// Registers session `id` now (named from the process table) if it is
    /// not yet: a candidate server found by the daemon.
    pub fn ensure(&mut self, id: u32, procs: &ProcTable) {
        self.state(id, procs);
    }

    /// Forgets session `id` (a candidate that turned out not to be MCP),
    /// and the capture losses held for it with it.
    pub fn forget(&mut self, id: u32) {
        self.sessions.remove(&id);
    }

    /// Candidate `id` is a server: the capture losses held for it count.
    pub fn count_held_losses(&mut self, id: u32) {
        if let Some(s) = self.sessions.get_mut(&id) {
            self.stdio_loss.add(std::mem::take(&mut s.held_loss));
        }
    }

    /// A process exited; when it is a session's root, the session ends and
    /// is forgotten once [`MAX_ENDED`] newer sessions have ended.
    pub fn on_exit(&mut self, pid: u32) {
        if !self.sessions.contains_key(&pid) || self.ended.contains(&pid) {
            return;
        }
        self.ended.push_back(pid);
        while self.ended.len() > MAX_ENDED {
            if let Some(old) = self.ended.pop_front() {
                self.sessions.remove(&old);
            }
        }
    }

    /// Live sessions whose server has read its first request: (session,
    /// boot-time ns of that request). What the kernel's FIRST_REQ must hold
    /// (agent.rs restores what it evicted).
    pub fn first_requests(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.sessions
            .iter()
            .filter(|(id, _)| !self.ended.contains(id))
            .filter_map(|(id, s)| Some((*id, s.session.first_request_ns()?)))
    }

    /// Sessions held (live and recently ended).
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// What rules need to know about session `id` beyond the event, as it
    /// stood at `ts_ns` (the event's boot-time ns).
    pub fn facts(&self, id: u32, ts_ns: u64) -> Option<Facts<'_>> {
        let s = self.sessions.get(&id)?;
        let server_version = s.session.handshake().server.as_ref().and_then(|p| p.version.as_deref());
        Some(Facts { first_request_seen: s.session.first_request_seen_by(ts_ns), server_cmdline: Some(&s.cmdline_name), server_version })
    }

    pub fn session(&self, id: u32) -> Option<&Session> {
        self.sessions.get(&id).map(|s| &s.session)
    }

    /// What a process forked now in `session` inherits: the requests in
    /// flight there, if any.
    pub fn attribution(&self, session: u32) -> Option<ToolCallRef> {
        let s = self.sessions.get(&session)?;
        tool_call_ref(&s.session.in_flight())
    }

    /// The server and the tool call of an event of `pid` in `session`.
    pub fn context(&self, session: u32, pid: u32, procs: &ProcTable) -> Option<(ServerRef, Option<ToolCallRef>)> {
        let s = self.sessions.get(&session)?;
        let name = s.session.server_name().map(str::to_string).unwrap_or_else(|| s.cmdline_name.clone());
        let call = match procs.get(pid).and_then(|p| p.origin.clone()) {
            Some(origin) => Some(origin),
            None => tool_call_ref(&s.session.in_flight()),
        };
        Some((ServerRef { name, pid: s.root_pid }, call))
    }

    /// A captured chunk of a server's channel: reassembles it and returns
    /// the `rpc`/`malformed` events it completes (`base` carries the
    /// common fields of the process that read or wrote it).
    pub fn on_stdio(&mut self, chunk: Stdio, base: Event, procs: &ProcTable) -> Vec<Event> {
        self.on_stdio_of(chunk, base, procs, false)
    }

    /// [`Sessions::on_stdio`]; `candidate`: the session is an undecided
    /// discovery candidate, whose capture losses are held until it is
    /// confirmed ([`Sessions::count_held_losses`]) or forgotten.
    pub fn on_stdio_of(&mut self, chunk: Stdio, base: Event, procs: &ProcTable, candidate: bool) -> Vec<Event> {
        let (dir, idx) = if chunk.dir == abi::DIR_IN {
            (Direction::ClientToServer, 0)
        } else {
            (Direction::ServerToClient, 1)
        };
        let mut frames = std::mem::take(&mut self.frames);
        let mut outputs = std::mem::take(&mut self.outputs);
        let id = chunk.h.session;
        let s = self.state(id, procs);
        let before = *s.reasm[idx].stats();
        s.reasm[idx].push(chunk.offset, chunk.h.ts_ns, &chunk.data, &mut frames);
        let after = s.reasm[idx].stats();
        let lost = StdioLoss {
            gaps: after.gaps - before.gaps,
            gap_bytes: after.gap_bytes - before.gap_bytes,
            messages_damaged: after.damaged - before.damaged,
        };
        for f in frames.drain(..) {
            s.session.on_frame(dir, f, &mut outputs);
        }
        let server = ServerRef {
            name: s.session.server_name().map(str::to_string).unwrap_or_else(|| s.cmdline_name.clone()),
            pid: s.root_pid,
        };
        let events = outputs
            .drain(..)
            .map(|o| {
                let mut ev = base.clone();
                ev.body = Body::from(o);
                ev.server = Some(server.clone());
                ev
            })
            .collect();
        self.frames = frames;
        self.outputs = outputs;
        match self.sessions.get_mut(&id) {
            Some(s) if candidate => s.held_loss.add(lost),
            _ => self.stdio_loss.add(lost),
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Header;
    use serde_json::json;

    fn chunk(session: u32, dir: u8, offset: u64, data: &str) -> Stdio {
        Stdio {
            h: Header {
                cgroup_id: 0, ns_pid: 0, ns_level: 0,
                kind: abi::EV_STDIO,
                flags: 0,
                ts_ns: offset + 1,
                pid: session,
                tid: session,
                ppid: 1,
                uid: 0,
                gid: 0,
                session,
                start_ns: 0,
                comm: "node".into(),
            },
            chan: Default::default(),
            dir,
            offset,
            fd: 0,
            data: bytes::Bytes::copy_from_slice(data.as_bytes()),
        }
    }

    fn base() -> Event {
        Event {
            ns_pid: None, container: None,
            ts: String::new(),
            ts_ns: 0,
            pid: 10,
            tid: 10,
            ppid: 1,
            uid: 0,
            comm: "node".into(),
            exe: None,
            body: Body::Exit { code: None, signal: None },
            server: None,
            tool_call: None,
        }
    }

    /// Feeds a line in one direction, tracking offsets per direction.
    struct Feed {
        s: Sessions,
        off: [u64; 2],
        procs: ProcTable,
    }

    impl Feed {
        fn new() -> Self {
            let mut s = Sessions::default();
            s.register(10, "node server.js".into());
            Feed { s, off: [0, 0], procs: ProcTable::new() }
        }
        fn line(&mut self, dir: u8, v: serde_json::Value) -> Vec<Event> {
            let text = format!("{v}\n");
            let c = chunk(10, dir, self.off[dir as usize], &text);
            self.off[dir as usize] += text.len() as u64;
            self.s.on_stdio(c, base(), &self.procs)
        }
        fn call(&self, pid: u32) -> Option<ToolCallRef> {
            self.s.context(10, pid, &self.procs).unwrap().1
        }
    }

    /// Sends five one-line messages on a fresh channel, skipping `lost`
    /// (start, end) byte ranges of the stream; returns (frames written, loss).
    fn five_with_gap(lost: (u64, u64)) -> (Vec<Event>, StdioLoss) {
        let text: String = (1..=5)
            .map(|i| format!("{}\n", json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"i":i}})))
            .collect();
        let mut f = Feed::new();
        let mut out = f.s.on_stdio(chunk(10, abi::DIR_OUT, 0, &text[..lost.0 as usize]), base(), &f.procs);
        out.extend(f.s.on_stdio(chunk(10, abi::DIR_OUT, lost.1, &text[lost.1 as usize..]), base(), &f.procs));
        (out, f.s.stdio_loss)
    }

    #[test]
    fn stdio_losses_are_counted_in_messages_as_well_as_bytes() {
        let line = format!("{}\n", json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"i":1}})).len() as u64;
        // a whole write lost (one message per write, the usual case): the
        // books balance exactly, 5 sent = 4 written + 1 gap
        let (out, loss) = five_with_gap((2 * line, 3 * line));
        assert_eq!((loss.gaps, loss.gap_bytes, loss.messages_damaged), (1, line, 0));
        assert!(out.iter().all(|e| matches!(e.body, Body::Rpc(_))));
        assert_eq!(5, out.len() as u64 + loss.gaps);
        // a gap from the middle of #2 to the end of #3 took #2's newline:
        // #2's start and all of #4 come out as one incomplete frame
        let (out, loss) = five_with_gap((line + line / 2, 3 * line));
        assert_eq!((loss.gaps, loss.messages_damaged), (1, 1));
        let whole = out.iter().filter(|e| matches!(&e.body, Body::Rpc(r) if !r.truncated)).count() as u64;
        assert_eq!(whole, 2, "#1 and #5");
        assert!(whole + loss.messages_damaged + loss.gaps <= 5);
    }

    #[test]
    fn a_candidates_capture_losses_count_only_once_it_is_a_server() {
        // a gap on the channel of an undecided candidate: held, not counted
        let text = "{\"jsonrpc\":\"2.0\",\"method\":\"a\"}\n".repeat(3);
        let n = text.len() as u64 / 3;
        for confirmed in [false, true] {
            let mut f = Feed::new();
            f.s.on_stdio_of(chunk(10, abi::DIR_IN, 0, &text[..n as usize]), base(), &f.procs, true);
            f.s.on_stdio_of(chunk(10, abi::DIR_IN, 2 * n, &text[2 * n as usize..]), base(), &f.procs, true);
            assert_eq!(f.s.stdio_loss, StdioLoss::default(), "held while undecided");
            if confirmed {
                f.s.count_held_losses(10);
            } else {
                f.s.forget(10); // not MCP (a `cat | grep`): no loss of ours
                f.s.count_held_losses(10);
            }
            let want = if confirmed { StdioLoss { gaps: 1, gap_bytes: n, messages_damaged: 0 } } else { StdioLoss::default() };
            assert_eq!(f.s.stdio_loss, want, "confirmed: {confirmed}");
        }
    }

    #[test]
    fn one_call_in_flight_is_named_then_cleared_by_its_response() {
        let mut f = Feed::new();
        assert_eq!(f.call(10), None);
        let evs = f.line(abi::DIR_IN, json!({"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_text_file","arguments":{"path":"/etc/hosts"}}}));
        assert_eq!(evs.len(), 1);
        assert!(matches!(&evs[0].body, Body::Rpc(r) if r.tool.as_deref() == Some("read_text_file")));
        assert_eq!(evs[0].server.as_ref().unwrap().name, "node server.js");
        let c = f.call(10).unwrap();
        assert_eq!((c.id, c.name.as_deref()), (Some(json!(7)), Some("read_text_file")));
        assert_eq!(c.arguments, Some(json!({"path":"/etc/hosts"})));
        f.line(abi::DIR_OUT, json!({"jsonrpc":"2.0","id":7,"result":{"content":[]}}));
        assert_eq!(f.call(10), None);
    }

    #[test]
    fn several_in_flight_are_listed_never_guessed() {
        let mut f = Feed::new();
        f.line(abi::DIR_IN, json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}));
        f.line(abi::DIR_IN, json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"b"}}));
        let c = f.call(10).unwrap();
        assert_eq!(c.id, None);
        assert_eq!(c.name, None);
        let ids: Vec<_> = c.in_flight.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids, vec![json!(1), json!(2)]);
    }

    #[test]
    fn a_child_forked_during_a_call_keeps_it_for_life() {
        let mut f = Feed::new();
        f.procs.observe(10, 1, 0, "node");
        f.line(abi::DIR_IN, json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"run"}}));
        let origin = f.s.attribution(10);
        f.procs.on_fork(10, 11, 5, origin);
        f.line(abi::DIR_OUT, json!({"jsonrpc":"2.0","id":3,"result":{}}));
        f.line(abi::DIR_IN, json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"other"}}));
        // the child still carries call 3; the server itself is on call 4
        assert_eq!(f.call(11).unwrap().id, Some(json!(3)));
        assert_eq!(f.call(10).unwrap().id, Some(json!(4)));
    }

    #[test]
    fn non_tool_requests_are_attributed_too_and_server_is_named_by_handshake() {
        let mut f = Feed::new();
        f.line(abi::DIR_IN, json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"clientInfo":{"name":"c","version":"1"},"protocolVersion":"2025-06-18"}}));
        let c = f.call(10).unwrap();
        assert_eq!((c.method.as_deref(), c.name.as_deref()), (Some("initialize"), Some("initialize")));
        f.line(abi::DIR_OUT, json!({"jsonrpc":"2.0","id":0,"result":{"serverInfo":{"name":"secure-filesystem-server","version":"1"},"protocolVersion":"2025-06-18","capabilities":{}}}));
        let (server, _) = f.s.context(10, 10, &f.procs).unwrap();
        assert_eq!(server.name, "secure-filesystem-server");
        f.line(abi::DIR_IN, json!({"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p"}}));
        assert_eq!(f.call(10).unwrap().method.as_deref(), Some("prompts/get"));
    }

    #[test]
    fn ended_sessions_are_forgotten_oldest_first_past_the_bound() {
        let mut s = Sessions::default();
        for pid in 1..=(MAX_ENDED as u32 + 10) {
            s.register(pid, format!("srv {pid}"));
            s.on_exit(pid);
            s.on_exit(pid); // a second exit line changes nothing
        }
        s.register(100_000, "live".into());
        assert_eq!(s.len(), MAX_ENDED + 1);
        assert!(s.facts(1, 0).is_none() && s.facts(10, 0).is_none(), "the oldest went first");
        assert!(s.facts(11, 0).is_some() && s.facts(100_000, 0).is_some());
        s.on_exit(4242); // not a session root: ignored
        assert_eq!(s.len(), MAX_ENDED + 1);
    }

    #[test]
    fn garbage_on_the_channel_is_reported_and_the_session_goes_on() {
        let mut f = Feed::new();
        let c = chunk(10, abi::DIR_IN, 0, "\u{1}\u{2}not json at all\n");
        let evs = f.s.on_stdio(c, base(), &f.procs);
        assert!(matches!(evs[0].body, Body::Malformed { .. }), "{:?}", evs[0].body);
        f.off[0] = 18;
        f.line(abi::DIR_IN, json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}));
        assert_eq!(f.call(10).unwrap().name.as_deref(), Some("x"));
    }
}
