//! Discovery: finding the MCP servers on a host that nobody wrapped
//! (`mcp-sensor run`).
//!
//! The kernel makes *candidates* (discover.bpf.h): at exec, children of
//! known clients and processes with pipes on stdin and stdout are watched
//! as their own session, their stdio pipes registered as channels; the
//! kernel itself drops a candidate whose first channel byte cannot start
//! JSON-RPC. Here the agent decides the rest:
//! - [`classify`]: is what a candidate says on its channel MCP?
//! - [`gate`]: holds a candidate's events until that is decided, then
//!   writes them (confirmed) or drops them and unwatches the tree;
//! - [`nested`]: a candidate exec'd inside another's tree with stdio of its
//!   own, folded back into that tree when its channel is not MCP;
//! - [`scan`]: the servers already running when the daemon starts, from
//!   /proc, and [`adopt`]: their channels and processes into the kernel
//!   tables and the gate;
//! - [`late`]: candidates the kernel tables had no room for at exec,
//!   adopted from /proc once room frees, made by unwatching idle
//!   candidates ([`waiting`]: whether one found in /proc waits on stdin).

pub mod adopt;
pub mod classify;
pub mod gate;
pub mod late;
pub mod nested;
pub mod scan;
pub mod waiting;

pub use gate::{Gate, KernelAction};

/// Why a process is a candidate server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Its parent is a known MCP client.
    ClientChild,
    /// Its stdin and stdout are pipes or sockets.
    StdioPipes,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::ClientChild => "client_child",
            How::StdioPipes => "stdio_pipes",
        }
    }

    /// From the header flags of a candidate root's exec record.
    pub fn from_flags(flags: u32) -> Option<How> {
        if flags & crate::abi::F_CAND_CLIENT != 0 {
            Some(How::ClientChild)
        } else if flags & crate::abi::F_CAND_PIPES != 0 {
            Some(How::StdioPipes)
        } else {
            None
        }
    }
}
