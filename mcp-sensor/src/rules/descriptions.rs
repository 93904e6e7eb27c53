//! Tool-definition memory for rug-pull detection: a server that advertised
//! a harmless tool when the user approved it and later serves a different
//! description (hidden instructions) under the same name.
//!
//! The store (format 2) maps a server's identity (its name and command
//! line) and version (`serverInfo.version` of the `initialize` answer) to
//! its tools' canonical definitions (`canon.rs`: everything in the
//! `tools/list` entry but `name` and `_meta`, so poisoned parameter
//! descriptions count too) and their hashes. A tool that differs from the
//! one recorded for the same version is a rug pull; one that differs from
//! the version this one first followed is an upgrade. A version not sent
//! (capture began after the handshake) is taken to be the last one seen:
//! a change is then reported as a rug pull, never excused as an upgrade.
//!
//! Format 1 (server name -> tool -> hash, before canonical list order) is
//! read and kept as `legacy` hashes: the first time a server's tool is
//! seen under format 2 it is compared with its old hash the old way, once,
//! then only the format-2 record counts. It is pure: the agent loads it
//! from and saves it to a file of its choosing as JSON text.

use super::{canon, tooldiff};
use crate::mcp::tools::{canonical, sha256_hex};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Versions remembered per server identity; the least recently current
/// goes first.
pub const MAX_VERSIONS: usize = 8;
/// A definition whose canonical text is longer is kept as its hash only
/// (a change then has no diff).
pub const MAX_KEPT_CHARS: usize = 64 * 1024;
/// The version key when the server never said its version.
const UNKNOWN_VERSION: &str = "";

/// Persisted tool definitions per server identity and version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DescriptionStore {
    version: u32,
    servers: BTreeMap<String, ServerRecord>,
    /// Format-1 hashes not yet compared: server name -> tool -> hash.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    legacy: BTreeMap<String, BTreeMap<String, String>>,
    /// Counter ordering the versions by when they were last current.
    #[serde(default)]
    clock: u64,
    #[serde(skip)]
    dirty: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ServerRecord {
    name: String,
    command: String,
    /// The version of the last `tools/list` seen.
    latest: Option<String>,
    versions: BTreeMap<String, VersionRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct VersionRecord {
    /// The version that was current when this one first appeared: what
    /// its tools are compared with until it has its own record of them.
    from: Option<String>,
    current_at: u64,
    tools: BTreeMap<String, ToolRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ToolRecord {
    hash: String,
    /// The canonical definition; `None` when longer than [`MAX_KEPT_CHARS`].
    definition: Option<Value>,
}

/// Format 1, as earlier sensors wrote it.
#[derive(Deserialize)]
struct StoreV1 {
    servers: BTreeMap<String, BTreeMap<String, String>>,
}

/// Which server a `tools/list` answer came from.
#[derive(Debug, Clone, Copy)]
pub struct ServerId<'a> {
    /// `serverInfo.name`, else the command line (the event's `server.name`).
    pub name: &'a str,
    /// The server's command line, space-joined.
    pub command: &'a str,
    /// `serverInfo.version`; `None` when the handshake was not seen.
    pub version: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Redefined under the same server version (`description_changed`).
    RugPull,
    /// Redefined by a new server version (`definitions_upgraded`).
    Upgrade,
}

/// A tool whose definition differs from the one seen before: what an alert
/// reports under `tool_changes` (docs/events.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolChange {
    pub tool: String,
    pub kind: ChangeKind,
    pub old_hash: String,
    pub new_hash: String,
    /// The server version each definition came with, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_version: Option<String>,
    /// The description's changed lines (`tooldiff::description`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub description_diff: Vec<String>,
    /// The other keys that changed (`tooldiff::keys`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changed_keys: Vec<String>,
}

impl DescriptionStore {
    pub fn new() -> Self {
        DescriptionStore { version: 2, ..Default::default() }
    }

    /// Parses a saved store (format 2, or format 1 migrated); empty text is
    /// an empty store.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        if text.trim().is_empty() {
            return Ok(Self::new());
        }
        let probe: Value = serde_json::from_str(text)?;
        if probe.get("version").and_then(Value::as_u64) == Some(1) {
            let v1: StoreV1 = serde_json::from_value(probe)?;
            let mut s = Self::new();
            s.legacy = v1.servers;
            s.dirty = !s.legacy.is_empty();
            return Ok(s);
        }
        let s: Self = serde_json::from_value(probe)?;
        if s.version != 2 {
            return Err(serde::de::Error::custom(format!("unknown store version {}", s.version)));
        }
        Ok(s)
    }

    /// Text for [`Self::from_json`]; stable (sorted) so it diffs well.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("maps of strings serialize")
    }

    /// Records every tool of a `tools/list` result (`{"tools": [...]}`) and
    /// returns the changed ones; pass the names of the rug pulls as
    /// [`super::EvalContext::changed_tools`] and of the upgrades as
    /// [`super::EvalContext::upgraded_tools`] with the response's event.
    pub fn observe_tools_list(&mut self, id: ServerId<'_>, result: &Value) -> Vec<ToolChange> {
        let Some(tools) = result.get("tools").and_then(Value::as_array) else {
            return Vec::new();
        };
        let vkey = self.enter_version(id);
        tools
            .iter()
            .filter_map(|t| {
                let name = t.get("name")?.as_str()?;
                self.observe(id, &vkey, name, t)
            })
            .collect()
    }

    /// The version key this answer is recorded under, made current (and
    /// created, following the current one, when new).
    fn enter_version(&mut self, id: ServerId<'_>) -> String {
        let key = format!("{} ({})", id.name, id.command);
        let srv = self.servers.entry(key).or_insert_with(|| ServerRecord {
            name: id.name.into(),
            command: id.command.into(),
            ..Default::default()
        });
        let vkey = match id.version {
            Some(v) => v.to_string(),
            None => srv.latest.clone().unwrap_or_else(|| UNKNOWN_VERSION.into()),
        };
        if srv.latest.as_deref() == Some(vkey.as_str()) {
            return vkey;
        }
        self.clock += 1;
        let from = srv.latest.replace(vkey.clone());
        let rec = srv.versions.entry(vkey.clone()).or_insert_with(|| VersionRecord { from, ..Default::default() });
        rec.current_at = self.clock;
        while srv.versions.len() > MAX_VERSIONS {
            let oldest = srv.versions.iter().min_by_key(|(_, r)| r.current_at).map(|(k, _)| k.clone());
            srv.versions.remove(&oldest.expect("not empty"));
        }
        self.dirty = true;
        vkey
    }

    /// Records one tool's definition under `vkey`; `Some` when it differs
    /// from what it is compared with. A first sighting is not a change.
    fn observe(&mut self, id: ServerId<'_>, vkey: &str, tool: &str, raw: &Value) -> Option<ToolChange> {
        let def = canon::definition(raw);
        let new_hash = canon::hash(&def);
        let key = format!("{} ({})", id.name, id.command);
        let srv = self.servers.get_mut(&key).expect("entered");
        let version = |v: &str| (v != UNKNOWN_VERSION).then(|| v.to_string());
        let same = srv.versions[vkey].tools.get(tool).cloned();
        let from = srv.versions[vkey].from.clone();
        let earlier = from.as_deref().and_then(|f| srv.versions.get(f)?.tools.get(tool).cloned());
        let change = match (same, earlier) {
            (Some(old), _) if old.hash == new_hash => return None,
            (Some(old), _) => Some(change(tool, ChangeKind::RugPull, &old, &def, &new_hash, version(vkey), version(vkey))),
            (None, Some(old)) if old.hash != new_hash => {
                Some(change(tool, ChangeKind::Upgrade, &old, &def, &new_hash, from.as_deref().and_then(version), version(vkey)))
            }
            (None, Some(_)) => None,
            (None, None) => self.legacy_change(id.name, tool, raw, &new_hash),
        };
        let kept = (canon::to_text(&def).len() <= MAX_KEPT_CHARS).then_some(def);
        let srv = self.servers.get_mut(&key).expect("entered");
        let rec = srv.versions.get_mut(vkey).expect("entered");
        rec.tools.insert(tool.into(), ToolRecord { hash: new_hash, definition: kept });
        self.dirty = true;
        change
    }

    /// A tool first seen under format 2: its format-1 hash, if any, decides
    /// (once) whether it changed since an older sensor saw it.
    fn legacy_change(&mut self, server: &str, tool: &str, raw: &Value, new_hash: &str) -> Option<ToolChange> {
        let tools = self.legacy.get_mut(server)?;
        let old = tools.remove(tool)?;
        if tools.is_empty() {
            self.legacy.remove(server);
        }
        (old != legacy_hash(raw)).then(|| ToolChange {
            tool: tool.into(),
            kind: ChangeKind::RugPull,
            old_hash: old,
            new_hash: new_hash.into(),
            old_version: None,
            new_version: None,
            description_diff: vec!["(the previous definition is a hash in an older sensor's store: no text to compare)".into()],
            changed_keys: Vec::new(),
        })
    }

    /// Whether anything was recorded (a new tool or a changed one) since
    /// the last call: what is worth saving.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The stored hash of `tool` for server `name` running `command` at
    /// `version` (the unknown version: `None`), if it was seen.
    pub fn get(&self, name: &str, command: &str, version: Option<&str>, tool: &str) -> Option<&str> {
        let srv = self.servers.get(&format!("{name} ({command})"))?;
        let v = srv.versions.get(version.unwrap_or(UNKNOWN_VERSION))?;
        v.tools.get(tool).map(|t| t.hash.as_str())
    }
}

fn change(tool: &str, kind: ChangeKind, old: &ToolRecord, def: &Value, new_hash: &str, old_version: Option<String>, new_version: Option<String>) -> ToolChange {
    let (description_diff, changed_keys) = match &old.definition {
        Some(prev) => {
            let text = |v: &Value| v.get("description").and_then(Value::as_str).map(str::to_owned);
            (tooldiff::description(text(prev).as_deref(), text(def).as_deref()), tooldiff::keys(prev, def))
        }
        None => (vec![format!("(the previous definition was longer than {MAX_KEPT_CHARS} characters: kept as its hash only)")], Vec::new()),
    };
    ToolChange {
        tool: tool.into(),
        kind,
        old_hash: old.hash.clone(),
        new_hash: new_hash.into(),
        old_version,
        new_version,
        description_diff,
        changed_keys,
    }
}

/// Format 1's hash: `sha256:<hex>` of the entry without `name` and `_meta`
/// in JSON with sorted keys (list order counted).
fn legacy_hash(definition: &Value) -> String {
    let mut canon = String::new();
    match definition {
        Value::Object(m) => {
            let stripped: serde_json::Map<String, Value> =
                m.iter().filter(|(k, _)| *k != "name" && *k != "_meta").map(|(k, v)| (k.clone(), v.clone())).collect();
            canonical(&Value::Object(stripped), &mut canon)
        }
        other => canonical(other, &mut canon),
    }
    format!("sha256:{}", sha256_hex(canon.as_bytes()))
}

#[cfg(test)]
#[path = "descriptions_tests.rs"]
mod tests;
