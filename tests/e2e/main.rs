//! Privileged end-to-end tests: the real sensor binary, real BPF programs
//! on this kernel, real processes (and, in `mcp`, real MCP software).
//! Run as root with `cargo xtask test`; without root they fail, never skip.

mod after_exit;
mod aggregate;
mod aliases;
mod benign;
mod browser;
mod daemon;
mod enforce;
mod fchange;
mod harness;
mod identity;
mod investigate;
mod kernel;
mod launchers;
mod mcp;
mod metrics;
mod net;
mod not_servers;
mod otlp;
mod overlap;
mod profile;
mod rugpull;
mod rules;
mod secrets;
mod service;
mod shells;
mod tables;
mod uring;
mod sensor;
