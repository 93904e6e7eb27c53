//! Is a candidate's channel MCP? Decided from the messages the session
//! layer parsed out of it, one at a time, as a conversation: a line of
//! JSON-RPC-looking text is not enough, two sides must be talking MCP.
//!
//! A candidate is confirmed ([`Verdict::Mcp`]) by
//! - a request with an MCP-only method (`server/discover`, `tools/list`,
//!   `ping`, `roots/list`, ...) answered from the other side with the same
//!   id (a result or an error: the SDK client's `server/discover` answered
//!   -32601 counts); or
//! - `notifications/initialized` from the client after an `initialize`
//!   the server answered: MCP's handshake, complete.
//!
//! A filter that passes its input on (`cat`, `sort`, `jq`, `tail -F log |
//! grep`) copies messages from its input direction to its output
//! direction: what it "answers" went in both directions already, which is
//! an echo, not an answer, and counts for nothing. `initialize` and its
//! answer alone say nothing yet: LSP servers (JSON-RPC on stdio too)
//! start with `initialize` and must not be taken for MCP. MCP
//! notifications alone (`notifications/message`) say nothing either.
//!
//! Rejected ([`Verdict::NotMcp`]): anything that is not JSON-RPC
//! (`malformed`), a whole message without `"jsonrpc":"2.0"` or shaped like
//! the sensor's own event lines, a method MCP does not have (`initialized`,
//! `textDocument/didOpen`, ...), or [`MAX_UNDECIDED`] messages that did not
//! add up to a conversation.

use crate::event::{Body, Direction, Rpc};

/// Messages a candidate may send or receive before they must have made an
/// MCP conversation (a real server is confirmed by its first answer; one
/// found mid-session may first send a few notifications).
pub const MAX_UNDECIDED: u32 = 16;
/// Requests remembered per direction while undecided.
const MAX_REQUESTS: usize = 16;

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

/// What one candidate's channel said so far.
#[derive(Debug, Default, Clone)]
pub struct Conversation {
    undecided: u32,
    /// Requests seen, by direction (0: client to server): (id as JSON, method).
    requests: [Vec<(String, String)>; 2],
    /// Ids of responses seen, by direction.
    responses: [Vec<String>; 2],
    /// The client's `initialize` was answered by the server.
    initialized: bool,
}

fn slot(d: Direction) -> usize {
    match d {
        Direction::ClientToServer => 0,
        Direction::ServerToClient => 1,
    }
}

fn remember<T>(v: &mut Vec<T>, x: T) {
    if v.len() < MAX_REQUESTS {
        v.push(x);
    }
}

impl Conversation {
    /// Messages that did not decide yet.
    pub fn undecided(&self) -> u32 {
        self.undecided
    }

    /// The verdict on one more message (`rpc` or `malformed` body).
    pub fn classify(&mut self, body: &Body) -> Verdict {
        let v = match body {
            // framing's and the session's reasons say "not JSON-RPC: ..." already
            Body::Malformed { reason, .. } if reason.starts_with("not JSON-RPC") => Verdict::NotMcp(reason.clone()),
            Body::Malformed { reason, .. } => Verdict::NotMcp(format!("not JSON-RPC: {reason}")),
            Body::Rpc(rpc) => self.rpc(rpc),
            _ => Verdict::Undecided,
        };
        if v != Verdict::Undecided {
            return v;
        }
        self.undecided += 1;
        if self.undecided >= MAX_UNDECIDED {
            return Verdict::NotMcp(format!("{MAX_UNDECIDED} JSON-RPC messages and no MCP conversation (a request answered from the other side)"));
        }
        Verdict::Undecided
    }

    fn rpc(&mut self, rpc: &Rpc) -> Verdict {
        if let Some(why) = rpc.not_jsonrpc {
            return Verdict::NotMcp(format!("not JSON-RPC 2.0: {why}"));
        }
        let (me, other) = (slot(rpc.direction), 1 - slot(rpc.direction));
        let id = rpc.id.as_ref().map(|i| i.to_string());
        // the session names a response by its request's method: go by the
        // message's kind, not by whether it has a method
        let answer = matches!(rpc.message, "response" | "error");
        let method = if answer { None } else { rpc.method.as_deref() };
        match (method, id) {
            (Some(m), _) if !is_mcp_method(m) && m != "initialize" => {
                Verdict::NotMcp(format!("JSON-RPC method {m:?} is not MCP"))
            }
            (Some("notifications/initialized"), None)
                if self.initialized && rpc.direction == Direction::ClientToServer =>
            {
                Verdict::Mcp
            }
            (Some(m), Some(id)) => {
                remember(&mut self.requests[me], (id, m.to_string()));
                Verdict::Undecided
            }
            (Some(_), None) => Verdict::Undecided,
            (None, Some(id)) => {
                let asked = self.requests[other].iter().find(|(i, _)| *i == id).map(|(_, m)| m.clone());
                // an echo: the "question" also went this way, or the
                // "answer" went the question's way before
                let echo = asked.as_ref().is_some_and(|m| self.requests[me].iter().any(|(i, m2)| *i == id && m2 == m))
                    || self.responses[other].contains(&id);
                remember(&mut self.responses[me], id);
                match asked {
                    Some(_) if echo => Verdict::Undecided,
                    Some(m) if is_mcp_method(&m) => Verdict::Mcp,
                    Some(m) if m == "initialize" && rpc.direction == Direction::ServerToClient => {
                        self.initialized = true;
                        Verdict::Undecided
                    }
                    _ => Verdict::Undecided,
                }
            }
            (None, None) => Verdict::Undecided,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Direction, Rpc};
    use Direction::{ClientToServer as C2S, ServerToClient as S2C};

    fn req(dir: Direction, method: &str, id: Option<i64>) -> Body {
        let kind = if id.is_some() { "request" } else { "notification" };
        Body::Rpc(Rpc { method: Some(method.into()), id: id.map(Into::into), ..Rpc::new(dir, kind, 10, false) })
    }

    /// An answer to request `id`, named by the request's method as the
    /// session names it when it saw the request.
    fn resp(dir: Direction, id: i64) -> Body {
        Body::Rpc(Rpc { id: Some(id.into()), method: Some("tools/list".into()), ..Rpc::new(dir, "response", 10, false) })
    }

    fn run(msgs: &[Body]) -> Vec<Verdict> {
        let mut c = Conversation::default();
        msgs.iter().map(|m| c.classify(m)).collect()
    }

    #[test]
    fn an_answered_mcp_request_confirms() {
        // the SDK client's server/discover, answered -32601 or with a result
        let v = run(&[req(C2S, "server/discover", Some(0)), resp(S2C, 0)]);
        assert_eq!(v, [Verdict::Undecided, Verdict::Mcp]);
        // a server found mid-session: a notification, then a call answered
        let v = run(&[req(S2C, "notifications/message", None), req(C2S, "tools/call", Some(7)), resp(S2C, 7)]);
        assert_eq!(v.last(), Some(&Verdict::Mcp));
        // ids are per direction: the server's roots/list answered by the client
        let v = run(&[req(S2C, "roots/list", Some(0)), resp(C2S, 0)]);
        assert_eq!(v.last(), Some(&Verdict::Mcp));
    }

    #[test]
    fn the_handshake_confirms_at_initialized() {
        let v = run(&[req(C2S, "initialize", Some(1)), resp(S2C, 1), req(C2S, "notifications/initialized", None)]);
        assert_eq!(v, [Verdict::Undecided, Verdict::Undecided, Verdict::Mcp]);
        // `notifications/initialized` with no answered initialize before it says nothing
        assert_eq!(run(&[req(C2S, "notifications/initialized", None)]), [Verdict::Undecided]);
    }

    #[test]
    fn one_way_mcp_looking_lines_are_not_a_conversation() {
        // `printf '{"jsonrpc":"2.0","method":"notifications/message"}\n{"kind":"x"}\n' | cat | sort`
        let v = run(&[req(C2S, "notifications/message", None)]);
        assert_eq!(v, [Verdict::Undecided]);
        let m = Body::Malformed { direction: C2S, reason: "no method and no id".into(), size: 12 };
        assert!(matches!(run(&[req(C2S, "notifications/message", None), m]).last(), Some(Verdict::NotMcp(_))));
        // a request and its answer going the same way (a file replayed)
        let v = run(&[req(S2C, "tools/list", Some(3)), resp(S2C, 3)]);
        assert_eq!(v, [Verdict::Undecided, Verdict::Undecided]);
    }

    #[test]
    fn a_filter_echoing_a_whole_exchange_is_not_confirmed() {
        // cat reads request and answer, then writes both: the answer comes
        // out the other side, but so did the question
        let exchange = [
            req(C2S, "tools/list", Some(1)),
            resp(C2S, 1),
            req(C2S, "initialize", Some(2)),
            resp(C2S, 2),
            req(C2S, "notifications/initialized", None),
            req(S2C, "tools/list", Some(1)),
            resp(S2C, 1),
            req(S2C, "initialize", Some(2)),
            resp(S2C, 2),
            req(S2C, "notifications/initialized", None),
        ];
        assert!(run(&exchange).iter().all(|v| *v == Verdict::Undecided), "{:?}", run(&exchange));
    }

    #[test]
    fn not_jsonrpc_2_and_own_log_lines_reject() {
        let own = Body::Rpc(Rpc {
            method: Some("tools/call".into()),
            id: Some(3.into()),
            not_jsonrpc: Some("an event line of mcp-sensor's own log (ts, kind), not JSON-RPC"),
            ..Rpc::new(S2C, "request", 10, false)
        });
        assert!(matches!(&run(&[own])[0], Verdict::NotMcp(r) if r.contains("own log")));
    }

    #[test]
    fn lsp_is_not_taken_for_mcp() {
        // an LSP session: initialize, its response, then `initialized`
        let v = run(&[req(C2S, "initialize", Some(1)), resp(S2C, 1), req(C2S, "initialized", None)]);
        assert_eq!(v[..2], [Verdict::Undecided, Verdict::Undecided]);
        assert!(matches!(&v[2], Verdict::NotMcp(r) if r.contains("initialized")));
        assert!(matches!(&run(&[req(C2S, "textDocument/didOpen", None)])[0], Verdict::NotMcp(_)));
    }

    #[test]
    fn garbage_rejects_and_silence_runs_out() {
        let m = Body::Malformed { direction: S2C, reason: "not JSON".into(), size: 3 };
        assert!(matches!(run(&[m])[0], Verdict::NotMcp(_)));
        let many: Vec<Body> = (0..MAX_UNDECIDED as i64).map(|i| resp(S2C, i)).collect();
        let v = run(&many);
        assert!(v[..MAX_UNDECIDED as usize - 1].iter().all(|v| *v == Verdict::Undecided));
        assert!(matches!(v.last(), Some(Verdict::NotMcp(_))));
    }
}
