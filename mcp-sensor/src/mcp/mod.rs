//! MCP over stdio: JSON-RPC framing, reassembly and the session model.
//! Pure logic, no BPF.
