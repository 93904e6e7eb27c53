//! Is a candidate's channel MCP? Decided from the messages the session
//! layer parsed out of it, one at a time.
//!
//! - a message with an MCP-only method (`tools/...`, `notifications/...`,
//!   `server/discover`, `ping`, ...) confirms it;
//! - `initialize` and responses say nothing yet: LSP servers (which speak
//!   JSON-RPC on stdio too, and also start with `initialize`) must not be
//!   taken for MCP;
//! - anything that is not JSON-RPC (`malformed`), or a method MCP does not
//!   have (`initialized`, `textDocument/didOpen`, ...), rejects it;
//! - after [`MAX_UNDECIDED`] messages that said nothing, it is rejected.

use crate::event::Body;

/// Messages a candidate may send or receive before it must have said
/// something only MCP says.
pub const MAX_UNDECIDED: u32 = 8;

const MCP_PREFIXES: &[&str] = &[
    "tools/", "resources/", "prompts/", "notifications/", "completion/", "logging/", "sampling/",
    "roots/", "elicitation/", "tasks/",
];
const MCP_METHODS: &[&str] = &["server/discover", "ping"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Mcp,
    NotMcp(String),
    Undecided,
}

/// Whether `method` exists only in MCP.
pub fn is_mcp_method(method: &str) -> bool {
    MCP_METHODS.contains(&method) || MCP_PREFIXES.iter().any(|p| method.starts_with(p))
}

/// The verdict on one more message (`rpc` or `malformed` body), given how
/// many undecided ones came before it.
pub fn classify(body: &Body, undecided_before: u32) -> Verdict {
    match body {
        Body::Malformed { reason, .. } => Verdict::NotMcp(format!("not JSON-RPC: {reason}")),
        Body::Rpc(rpc) => match rpc.method.as_deref() {
            Some(m) if is_mcp_method(m) => Verdict::Mcp,
            Some("initialize") | None if undecided_before + 1 < MAX_UNDECIDED => Verdict::Undecided,
            Some("initialize") | None => Verdict::NotMcp(format!("{MAX_UNDECIDED} JSON-RPC messages and none MCP")),
            Some(m) => Verdict::NotMcp(format!("JSON-RPC method {m:?} is not MCP")),
        },
        _ => Verdict::Undecided,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Direction, Rpc};

    fn rpc(method: Option<&str>) -> Body {
        let kind = if method.is_some() { "request" } else { "response" };
        Body::Rpc(Rpc { method: method.map(str::to_string), ..Rpc::new(Direction::ClientToServer, kind, 10, false) })
    }

    #[test]
    fn mcp_methods_confirm() {
        for m in ["tools/call", "tools/list", "notifications/initialized", "server/discover", "ping", "resources/read"] {
            assert_eq!(classify(&rpc(Some(m)), 0), Verdict::Mcp, "{m}");
        }
    }

    #[test]
    fn lsp_is_not_taken_for_mcp() {
        // an LSP session: initialize, its response, then `initialized`
        assert_eq!(classify(&rpc(Some("initialize")), 0), Verdict::Undecided);
        assert_eq!(classify(&rpc(None), 1), Verdict::Undecided);
        assert!(matches!(classify(&rpc(Some("initialized")), 2), Verdict::NotMcp(r) if r.contains("initialized")));
        assert!(matches!(classify(&rpc(Some("textDocument/didOpen")), 0), Verdict::NotMcp(_)));
    }

    #[test]
    fn garbage_rejects_and_silence_runs_out() {
        let m = Body::Malformed { direction: Direction::ServerToClient, reason: "not JSON".into(), size: 3 };
        assert!(matches!(classify(&m, 0), Verdict::NotMcp(_)));
        assert_eq!(classify(&rpc(None), MAX_UNDECIDED - 2), Verdict::Undecided);
        assert!(matches!(classify(&rpc(None), MAX_UNDECIDED - 1), Verdict::NotMcp(_)));
    }
}
