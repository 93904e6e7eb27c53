//! MCP over stdio: JSON-RPC framing, reassembly and the session model.
//! Pure logic, no BPF.
//!
//! Data flows one way: captured chunks of each channel direction go into a
//! [`framing::Reassembler`], which yields [`framing::Frame`]s; the frames of
//! both directions go into the server's [`session::Session`], which matches
//! requests to responses, follows the handshake and the tool catalog, and
//! yields [`session::SessionOutput`]s (each an `Rpc` or `Malformed` event
//! body). The session also answers "which client requests is the server
//! working on right now" ([`session::Session::in_flight`]) for correlation.

pub mod framing;
mod handshake;
mod msgbuf;
mod pending;
pub mod scan;
pub mod session;
mod summary;
pub(crate) mod tools;

pub use framing::{Frame, Reassembler, Stats as FramingStats, DEFAULT_MAX_MESSAGE};
pub use handshake::{Handshake, PeerInfo};
pub use pending::InFlight;
pub use session::{Session, SessionOutput, SessionStats, DEFAULT_MAX_PENDING};
pub use tools::{ToolChange, ToolChangeKind, ToolInfo};

#[cfg(test)]
mod framing_gap_tests;
#[cfg(test)]
mod framing_tests;
#[cfg(test)]
mod session_flow_tests;
#[cfg(test)]
mod session_tests;
