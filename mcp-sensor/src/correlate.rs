//! Correlation: which MCP server and which request(s) in flight each
//! process's activity belongs to.
//!
//! Owns the sessions (one per watched server, keyed by the session id the
//! kernel stamps on every record) and the attribution rule: a process
//! forked while requests were in flight keeps them for life; otherwise an
//! event carries whatever is in flight in its server when it happens.

use crate::decode::Stdio;
use crate::event::{Event, ServerRef, ToolCallRef};
use crate::procs::ProcTable;
use std::collections::HashMap;

struct SessionState {
    root_pid: u32,
    /// Command line, the server's name until a handshake says otherwise.
    cmdline_name: String,
}

#[derive(Default)]
pub struct Sessions {
    sessions: HashMap<u32, SessionState>,
}

impl Sessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new watched server rooted at `root_pid` (also its session id).
    pub fn register(&mut self, root_pid: u32, cmdline_name: String) {
        self.sessions.insert(root_pid, SessionState { root_pid, cmdline_name });
    }

    /// What a process forked now in `session` inherits.
    pub fn attribution(&self, _session: u32, _pid: u32, _procs: &ProcTable) -> Option<ToolCallRef> {
        None
    }

    pub fn context(&self, session: u32, _pid: u32, _procs: &ProcTable) -> Option<(ServerRef, Option<ToolCallRef>)> {
        let s = self.sessions.get(&session)?;
        Some((ServerRef { name: s.cmdline_name.clone(), pid: s.root_pid }, None))
    }

    pub fn on_stdio(&mut self, _chunk: Stdio, _base: Event, _procs: &ProcTable) -> Vec<Event> {
        Vec::new()
    }
}
