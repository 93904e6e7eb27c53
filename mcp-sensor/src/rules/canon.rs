//! Canonical tool definitions: what a `tools/list` entry means, without
//! what a server may vary from one start to the next. Two definitions with
//! the same canonical form hash the same, so only a real change alerts.
//!
//! What does not count:
//! - JSON key order and JSON whitespace (the value is re-serialised with
//!   sorted keys, no spaces).
//! - Whitespace inside description text: each line is trimmed, runs of
//!   spaces and tabs become one space, blank lines are dropped.
//! - The order of the items of a list in description text (every string
//!   under a `description` key: the tool's and its parameters'):
//!   - a *bullet list*: two or more consecutive lines starting with `- `,
//!     `* `, `+ ` or `• ` (numbered lists keep their order: steps);
//!   - a *comma list*: a line that, after an optional label ending in
//!     `: `, is two or more comma-separated items, each of at most
//!     [`MAX_ITEM_WORDS`] words and [`MAX_ITEM_CHARS`] characters and none
//!     ending or containing a sentence end (`.`, `!`, `?`, `;`, `:` at
//!     its end, `. `, `! `, `? `, `; ` inside); a final `.` after the
//!     last item is kept apart. `Allowed commands: grep, pwd, ls` (what
//!     mcp-shell-server lists in a per-process order) is one.
//!
//!   The items are sorted; their text is untouched, so a reordering cannot
//!   hide a new word: any added, removed or edited item still changes the
//!   hash. Prose sentences with commas are not lists (their clauses have
//!   more words, or end a sentence).
//! - The order of JSON Schema arrays whose order carries no meaning, in
//!   `inputSchema` and `outputSchema`: `required`, `enum`, `type`,
//!   `anyOf`, `oneOf`, `allOf` (sorted by their items' canonical JSON).
//!   Arrays under `const`, `default` and `examples` are data, not schema,
//!   and keep their order, as do `items`/`prefixItems` tuples.

use serde_json::{Map, Value};

/// An item of a comma list has at most this many words...
pub const MAX_ITEM_WORDS: usize = 3;
/// ...and this many characters.
pub const MAX_ITEM_CHARS: usize = 64;

/// Schema keywords whose array value is a set.
const UNORDERED: &[&str] = &["required", "enum", "type", "anyOf", "oneOf", "allOf"];
/// Schema keywords whose value is data: left exactly as sent.
const DATA: &[&str] = &["const", "default", "examples"];

/// Description text with whitespace normalised and list items sorted.
pub fn description(text: &str) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty())
        .map(|l| comma_list(&l).unwrap_or(l))
        .collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        let mut j = i;
        while j < lines.len() && is_bullet(&lines[j]) {
            j += 1;
        }
        if j - i >= 2 {
            let mut run = lines[i..j].to_vec();
            run.sort();
            out.extend(run);
            i = j;
        } else {
            out.push(lines[i].clone());
            i += 1;
        }
    }
    out.join("\n")
}

fn is_bullet(line: &str) -> bool {
    ["- ", "* ", "+ ", "• "].iter().any(|b| line.starts_with(b))
}

/// The line with its comma list sorted, if it is one.
fn comma_list(line: &str) -> Option<String> {
    let (label, rest) = match line.rfind(": ") {
        Some(i) => line.split_at(i + 2),
        None => ("", line),
    };
    let (body, end) = match rest.strip_suffix('.') {
        Some(b) => (b, "."),
        None => (rest, ""),
    };
    let mut items: Vec<&str> = body.split(',').map(str::trim).collect();
    let is_item = |s: &&str| {
        !s.is_empty()
            && s.len() <= MAX_ITEM_CHARS
            && s.split(' ').count() <= MAX_ITEM_WORDS
            && !s.ends_with(['.', '!', '?', ';', ':'])
            && ![". ", "! ", "? ", "; "].iter().any(|p| s.contains(p))
    };
    if items.len() < 2 || !items.iter().all(is_item) {
        return None;
    }
    items.sort_unstable();
    Some(format!("{label}{}{end}", items.join(", ")))
}

/// A JSON Schema with description text canonical and unordered arrays
/// sorted (key order is the serialiser's business: see [`to_text`]).
pub fn schema(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, val) in m {
                let c = match (k.as_str(), val) {
                    (k, _) if DATA.contains(&k) => val.clone(),
                    ("description", Value::String(s)) => Value::String(description(s)),
                    (k, Value::Array(items)) if UNORDERED.contains(&k) => {
                        let mut items: Vec<Value> = items.iter().map(schema).collect();
                        items.sort_by_cached_key(to_text);
                        items.dedup();
                        Value::Array(items)
                    }
                    _ => schema(val),
                };
                out.insert(k.clone(), c);
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(schema).collect()),
        other => other.clone(),
    }
}

/// A tool's `tools/list` entry, canonical: without `name` and `_meta`
/// (which are not what the model is told), description and schemas as
/// above, the rest as sent.
pub fn definition(tool: &Value) -> Value {
    let Value::Object(m) = tool else { return tool.clone() };
    let mut out = Map::new();
    for (k, v) in m {
        let c = match (k.as_str(), v) {
            ("name" | "_meta", _) => continue,
            ("description", Value::String(s)) => Value::String(description(s)),
            ("inputSchema" | "outputSchema", _) => schema(v),
            _ => v.clone(),
        };
        out.insert(k.clone(), c);
    }
    Value::Object(out)
}

/// Compact JSON with object keys sorted.
pub fn to_text(v: &Value) -> String {
    let mut s = String::new();
    crate::mcp::tools::canonical(v, &mut s);
    s
}

/// `sha256:<hex>` of a canonical definition's text.
pub fn hash(canonical: &Value) -> String {
    format!("sha256:{}", crate::mcp::tools::sha256_hex(to_text(canonical).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn h(tool: &Value) -> String {
        hash(&definition(tool))
    }

    #[test]
    fn key_order_and_json_whitespace_do_not_count() {
        let a: Value = serde_json::from_str(r#"{"name":"t","description":"d","inputSchema":{"type":"object","properties":{"a":{"type":"string"}}}}"#).unwrap();
        let b: Value = serde_json::from_str("{ \"inputSchema\" : {\"properties\": {\"a\": {\"type\": \"string\"}},\n \"type\": \"object\"},\n\"description\":\"d\", \"name\":\"t\"}").unwrap();
        assert_eq!(h(&a), h(&b));
        assert_ne!(h(&a), h(&json!({"name":"t","description":"d"})));
    }

    #[test]
    fn whitespace_in_description_text_does_not_count() {
        assert_eq!(description("  Runs   a\tcommand. \n\n\nSafely.  "), "Runs a command.\nSafely.");
        assert_ne!(description("Runs a command."), description("Runs a command!"));
    }

    #[test]
    fn mcp_shell_server_allowed_commands_in_any_order_are_one_description() {
        // what mcp-shell-server 1.1.14 sends, in two of its orders
        let text = |cmds: &str| format!("Execute an allowed command as an argv array on the MCP server host. Allowed commands run with the server process's OS authority; the allowlist controls executable names, not what an allowed program does.\nAllowed commands: {cmds}\nAllowed patterns: \nDefault timeout: 30s; maximum timeout: 300s; output cap: 1048576 bytes");
        let a = description(&text("grep, pwd, echo, head, tail, ls, wc, cat"));
        assert_eq!(a, description(&text("head, grep, echo, pwd, tail, wc, cat, ls")));
        assert!(a.contains("Allowed commands: cat, echo, grep, head, ls, pwd, tail, wc\n"), "{a}");
        // one more command is a change
        assert_ne!(a, description(&text("grep, pwd, echo, head, tail, ls, wc, cat, curl")));
        // the prose line with commas is not a list: its clauses stay in order
        assert!(a.starts_with("Execute an allowed command"), "{a}");
    }

    #[test]
    fn comma_lists_need_short_items_and_keep_a_final_period() {
        assert_eq!(description("Formats: png, jpeg, gif."), "Formats: gif, jpeg, png.");
        assert_eq!(description("red, green"), "green, red");
        // sentences are not lists
        let prose = "Reads the file at the given path, then returns its full text, or an error.";
        assert_eq!(description(prose), prose);
        assert_eq!(description("stop. then, go"), "stop. then, go");
    }

    #[test]
    fn bullet_runs_are_sorted_numbered_lists_are_not() {
        let a = "Tools:\n- read files\n- list dirs\n* bad\nEnd";
        let b = "Tools:\n- list dirs\n- read files\n* bad\nEnd";
        assert_eq!(description(a), description(b));
        assert_eq!(description(a), "Tools:\n* bad\n- list dirs\n- read files\nEnd");
        assert_ne!(description("1. build\n2. test"), description("2. test\n1. build"));
        // a lone bullet is not a run; a bullet leaving the run is a change
        assert_ne!(description("- a\nx\n- b"), description("- b\nx\n- a"));
    }

    #[test]
    fn unordered_schema_arrays_are_sorted_tuples_and_data_are_not() {
        let a = json!({"name":"t","inputSchema":{"type":"object","required":["a","b"],"properties":{
            "mode":{"enum":["fast","slow"],"type":["string","null"]},
            "pair":{"prefixItems":[{"type":"string"},{"type":"integer"}],"default":["x",1]}}}});
        let b = json!({"name":"t","inputSchema":{"type":"object","required":["b","a"],"properties":{
            "mode":{"type":["null","string"],"enum":["slow","fast"]},
            "pair":{"prefixItems":[{"type":"string"},{"type":"integer"}],"default":["x",1]}}}});
        assert_eq!(h(&a), h(&b));
        let mut c = b.clone();
        c["inputSchema"]["properties"]["pair"]["prefixItems"] = json!([{"type":"integer"},{"type":"string"}]);
        assert_ne!(h(&a), h(&c), "a tuple's order is its meaning");
        let mut d = b.clone();
        d["inputSchema"]["properties"]["pair"]["default"] = json!([1, "x"]);
        assert_ne!(h(&a), h(&d), "a default value is data");
        let mut e = b;
        e["inputSchema"]["properties"]["mode"]["enum"] = json!(["slow", "fast", "rm -rf"]);
        assert_ne!(h(&a), h(&e));
    }

    #[test]
    fn parameter_descriptions_are_canonical_too_and_meta_is_ignored() {
        let a = json!({"name":"t","_meta":{"x":1},"inputSchema":{"properties":{"p":{"description":"One of: a, b"}}}});
        let b = json!({"name":"u","inputSchema":{"properties":{"p":{"description":"One of:   b, a"}}}});
        assert_eq!(h(&a), h(&b));
    }
}
