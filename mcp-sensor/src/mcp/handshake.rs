//! What the MCP handshake says about the two peers.
//!
//! Owns reading `initialize` (request and response) and `server/discover`
//! responses. Either may be missing: the client may try `server/discover`
//! first and fall back to `initialize` when the server answers -32601, a
//! server that accepts discovery never sees `initialize`, and capture may
//! start after the handshake.

use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    pub name: Option<String>,
    pub version: Option<String>,
}

impl PeerInfo {
    fn from_json(info: Option<&Value>) -> Option<PeerInfo> {
        let info = info?.as_object()?;
        let field = |k: &str| info.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(PeerInfo {
            name: field("name"),
            version: field("version"),
        })
    }
}

/// What the handshake told us. Every field may stay `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Handshake {
    /// `clientInfo` and `protocolVersion` of the `initialize` request.
    pub client: Option<PeerInfo>,
    pub client_protocol: Option<String>,
    /// `serverInfo`, `protocolVersion` and `capabilities` of the response
    /// to `initialize` or `server/discover`, whichever came last.
    pub server: Option<PeerInfo>,
    pub server_protocol: Option<String>,
    pub capabilities: Option<Value>,
    /// The method whose response filled the server fields.
    pub via: Option<&'static str>,
}

fn string(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

/// `obj.<key>`, or where protocol 2026-07-28 moved it: into
/// `obj._meta["io.modelcontextprotocol/<key>"]`.
fn field<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    obj.get(key).or_else(|| obj.get("_meta")?.get(format!("io.modelcontextprotocol/{key}")))
}

impl Handshake {
    pub(super) fn on_initialize_request(&mut self, params: &Value) {
        self.client = PeerInfo::from_json(field(params, "clientInfo"));
        self.client_protocol = string(field(params, "protocolVersion"));
    }

    pub(super) fn on_initialize_result(&mut self, result: &Value) {
        self.server = PeerInfo::from_json(result.get("serverInfo"));
        self.server_protocol = string(result.get("protocolVersion"));
        self.capabilities = result.get("capabilities").cloned();
        self.via = Some("initialize");
    }

    /// Only a result that names the server counts: discovery results
    /// without `serverInfo` say nothing about which server this is.
    pub(super) fn on_discover_result(&mut self, result: &Value) {
        let Some(info) = PeerInfo::from_json(field(result, "serverInfo")) else {
            return;
        };
        self.server = Some(info);
        let version = string(result.get("protocolVersion"))
            .or_else(|| string(result.get("supportedVersions").and_then(|v| v.get(0))));
        if let Some(v) = version {
            self.server_protocol = Some(v);
        }
        if let Some(c) = result.get("capabilities") {
            self.capabilities = Some(c.clone());
        }
        self.via = Some("server/discover");
    }
}
