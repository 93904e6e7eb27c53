//! The server's tool catalog, as its `tools/list` responses last described
//! it: tool names with hashes of what the model is shown.
//!
//! Hashes rather than text because what matters is noticing that a
//! description or schema changed after the client first saw it (a tool
//! rewriting its own instructions), not storing them.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Changes queued for [`Catalog::take_changes`] beyond this are counted and
/// dropped, so a caller that never drains cannot grow memory.
const MAX_QUEUED_CHANGES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolInfo {
    /// sha256 hex of the `description` string; `None` without one.
    pub description_sha256: Option<String>,
    /// sha256 hex of `inputSchema` as canonical JSON (keys sorted, no
    /// spaces); `None` without one.
    pub input_schema_sha256: Option<String>,
    /// When the tool was first listed, and when its hashes last changed.
    pub first_seen_ns: u64,
    pub changed_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolChangeKind {
    Added,
    Removed,
    DescriptionChanged,
    SchemaChanged,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolChange {
    pub tool: String,
    pub kind: ToolChangeKind,
    pub ts_ns: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Catalog {
    tools: BTreeMap<String, ToolInfo>,
    /// Names seen so far in a paginated listing; removals wait for its
    /// last page so page 2 of the old list is not "removed" by page 1.
    listing: Option<BTreeSet<String>>,
    changes: VecDeque<ToolChange>,
    pub dropped_changes: u64,
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// JSON with object keys sorted, so the hash does not depend on the
/// sender's key order. Values come from serde_json, which caps nesting at
/// 128, so the recursion is bounded.
pub(crate) fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

pub(crate) fn schema_hash(schema: &Value) -> String {
    let mut text = String::new();
    canonical(schema, &mut text);
    sha256_hex(text.as_bytes())
}

impl Catalog {
    pub fn tools(&self) -> &BTreeMap<String, ToolInfo> {
        &self.tools
    }

    pub fn take_changes(&mut self) -> Vec<ToolChange> {
        self.changes.drain(..).collect()
    }

    fn note(&mut self, tool: &str, kind: ToolChangeKind, ts_ns: u64) {
        if self.changes.len() >= MAX_QUEUED_CHANGES {
            self.changes.pop_front();
            self.dropped_changes += 1;
        }
        self.changes.push_back(ToolChange {
            tool: tool.to_owned(),
            kind,
            ts_ns,
        });
    }

    /// One page of a `tools/list` result. `first_page`: the request had no
    /// cursor, so a new listing starts.
    pub fn on_list_page(&mut self, result: &Value, first_page: bool, ts_ns: u64) {
        let Some(tools) = result.get("tools").and_then(Value::as_array) else {
            return;
        };
        if first_page {
            self.listing = Some(BTreeSet::new());
        }
        for tool in tools {
            let Some(name) = tool.get("name").and_then(Value::as_str) else {
                continue;
            };
            let description = tool
                .get("description")
                .and_then(Value::as_str)
                .map(|d| sha256_hex(d.as_bytes()));
            let schema = tool.get("inputSchema").map(schema_hash);
            if let Some(listing) = &mut self.listing {
                listing.insert(name.to_owned());
            }
            let mut changed = Vec::new();
            match self.tools.get_mut(name) {
                None => {
                    self.tools.insert(
                        name.to_owned(),
                        ToolInfo {
                            description_sha256: description,
                            input_schema_sha256: schema,
                            first_seen_ns: ts_ns,
                            changed_ns: ts_ns,
                        },
                    );
                    changed.push(ToolChangeKind::Added);
                }
                Some(info) => {
                    if info.description_sha256 != description {
                        info.description_sha256 = description;
                        changed.push(ToolChangeKind::DescriptionChanged);
                    }
                    if info.input_schema_sha256 != schema {
                        info.input_schema_sha256 = schema;
                        changed.push(ToolChangeKind::SchemaChanged);
                    }
                    if !changed.is_empty() {
                        info.changed_ns = ts_ns;
                    }
                }
            }
            for kind in changed {
                self.note(name, kind, ts_ns);
            }
        }
        let last_page = result.get("nextCursor").is_none_or(Value::is_null);
        if last_page {
            if let Some(listing) = self.listing.take() {
                let gone: Vec<String> = self
                    .tools
                    .keys()
                    .filter(|name| !listing.contains(*name))
                    .cloned()
                    .collect();
                for name in gone {
                    self.tools.remove(&name);
                    self.note(&name, ToolChangeKind::Removed, ts_ns);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kinds(c: &mut Catalog) -> Vec<(String, ToolChangeKind)> {
        c.take_changes()
            .into_iter()
            .map(|c| (c.tool, c.kind))
            .collect()
    }

    #[test]
    fn schema_hash_ignores_key_order() {
        let a: Value = serde_json::from_str(
            r#"{"type":"object","properties":{"a":{"type":"string"},"b":{}}}"#,
        )
        .unwrap();
        let b: Value = serde_json::from_str(
            r#"{"properties":{"b":{},"a":{"type":"string"}},"type":"object"}"#,
        )
        .unwrap();
        assert_eq!(schema_hash(&a), schema_hash(&b));
        assert_ne!(schema_hash(&a), schema_hash(&json!({"type":"object"})));
    }

    #[test]
    fn description_hash_is_sha256_hex() {
        let mut c = Catalog::default();
        c.on_list_page(
            &json!({"tools":[{"name":"t","description":"abc"}]}),
            true,
            1,
        );
        assert_eq!(
            c.tools()["t"].description_sha256.as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(c.tools()["t"].input_schema_sha256, None);
    }

    #[test]
    fn pagination_defers_removals_to_last_page() {
        let mut c = Catalog::default();
        c.on_list_page(&json!({"tools":[{"name":"a"}],"nextCursor":"p2"}), true, 1);
        c.on_list_page(&json!({"tools":[{"name":"b"}]}), false, 2);
        assert_eq!(c.tools().keys().collect::<Vec<_>>(), ["a", "b"]);
        kinds(&mut c);
        // A new listing: page 1 alone must not remove b.
        c.on_list_page(&json!({"tools":[{"name":"a"}],"nextCursor":"p2"}), true, 3);
        assert!(c.tools().contains_key("b"));
        c.on_list_page(&json!({"tools":[{"name":"c"}]}), false, 4);
        assert_eq!(c.tools().keys().collect::<Vec<_>>(), ["a", "c"]);
        assert_eq!(
            kinds(&mut c),
            [
                ("c".into(), ToolChangeKind::Added),
                ("b".into(), ToolChangeKind::Removed)
            ]
        );
    }

    #[test]
    fn queued_changes_are_bounded() {
        let mut c = Catalog::default();
        let tools: Vec<Value> = (0..1500)
            .map(|i| json!({"name": format!("t{i}")}))
            .collect();
        c.on_list_page(&json!({ "tools": tools }), true, 1);
        assert_eq!(c.take_changes().len(), MAX_QUEUED_CHANGES);
        assert_eq!(c.dropped_changes, 1500 - MAX_QUEUED_CHANGES as u64);
    }
}
