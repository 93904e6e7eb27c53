//! Tolerant scanning of JSON-RPC messages we only hold part of.
//!
//! Owns recovering `id`, `method` and a few shape hints from a message that
//! was too long to keep whole, lost bytes in a capture gap, or nests too
//! deeply to parse. Two directions, because key order varies: Python puts
//! `jsonrpc`/`id`/`method` before a big `params`/`result`, Node puts
//! `"jsonrpc"` and often `"id"` after it. [`scan_prefix`] reads from the
//! start of the object, [`scan_suffix`] reads backwards from its closing
//! brace. Neither allocates beyond the recovered values, neither recurses,
//! and both stop quietly at the first thing they do not understand.

use serde_json::Value;

/// What a scan recovered. Every field is best effort.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Peek {
    /// The bytes start (or end) like a JSON object.
    pub is_object: bool,
    /// Top-level `id`, when it is a string, number or null.
    pub id: Option<Value>,
    /// Top-level `method`.
    pub method: Option<String>,
    /// `params.name` (the tool of a `tools/call`). From a suffix scan,
    /// the `name` of a trailing object whose key was out of sight.
    pub params_name: Option<String>,
    /// A top-level `result` key was seen.
    pub has_result: bool,
    /// A top-level `error` key was seen.
    pub has_error: bool,
}

impl Peek {
    /// Fields from `self` win; `other` fills the gaps.
    pub fn merge(self, other: Peek) -> Peek {
        Peek {
            is_object: self.is_object || other.is_object,
            id: self.id.or(other.id),
            method: self.method.or(other.method),
            params_name: self.params_name.or(other.params_name),
            has_result: self.has_result || other.has_result,
            has_error: self.has_error || other.has_error,
        }
    }

    /// Enough was recovered to say what kind of message this is.
    pub fn found_any(&self) -> bool {
        self.id.is_some() || self.method.is_some()
    }

    fn record(&mut self, key: &[u8], value: &[u8]) {
        match key {
            b"id" => {
                self.id = serde_json::from_slice::<Value>(value)
                    .ok()
                    .filter(|v| v.is_string() || v.is_number() || v.is_null());
            }
            b"method" => self.method = serde_json::from_slice::<String>(value).ok(),
            b"result" => self.has_result = true,
            b"error" => self.has_error = true,
            _ => {}
        }
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_ws(b[i]) {
        i += 1;
    }
    i
}

/// `b[i]` is an opening quote; returns the index just past the closing one.
fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// Index just past the value starting at `b[i]`, or `None` when the value
/// runs off the end of what we have (a cut number like `12` might be `123`).
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            while j < b.len() {
                match b[j] {
                    b'"' => {
                        j = string_end(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            None
        }
        _ => {
            let end = i + b[i..]
                .iter()
                .position(|&c| matches!(c, b',' | b'}' | b']') || is_ws(c))?;
            (end > i).then_some(end)
        }
    }
}

/// Walks the members of the object whose `{` is at `b[i]`, calling
/// `visit(key, value_start)`; `visit` returns where the value ends, or
/// `None` to stop (unknown or cut value).
fn walk_object(b: &[u8], i: usize, mut visit: impl FnMut(&[u8], usize) -> Option<usize>) {
    if b.get(i) != Some(&b'{') {
        return;
    }
    let mut i = i + 1;
    loop {
        i = skip_ws(b, i);
        if b.get(i) != Some(&b'"') {
            return;
        }
        let Some(key_end) = string_end(b, i) else {
            return;
        };
        // Keys we care about contain no escapes, so raw bytes compare fine.
        let key = &b[i + 1..key_end - 1];
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return;
        }
        i = skip_ws(b, i + 1);
        let Some(end) = visit(key, i) else { return };
        i = skip_ws(b, end);
        match b.get(i) {
            Some(b',') => i += 1,
            _ => return,
        }
    }
}

/// Scans forward from the start of a (possibly cut) message.
pub fn scan_prefix(b: &[u8]) -> Peek {
    let mut peek = Peek::default();
    let start = skip_ws(b, 0);
    if b.get(start) != Some(&b'{') {
        return peek;
    }
    peek.is_object = true;
    walk_object(b, start, |key, v| {
        if key == b"params" {
            // The tool name usually precedes big arguments: look before
            // finding out whether params is complete.
            walk_object(b, v, |k, pv| {
                let end = value_end(b, pv)?;
                if k == b"name" {
                    peek.params_name = serde_json::from_slice::<String>(&b[pv..end]).ok();
                }
                Some(end)
            });
        }
        let end = value_end(b, v);
        match end {
            Some(end) => peek.record(key, &b[v..end]),
            // A cut `result`/`error` still tells us what kind of message it is.
            None if key == b"result" || key == b"error" => peek.record(key, b""),
            None => {}
        }
        end
    });
    peek
}

fn rskip_ws(b: &[u8], mut j: usize) -> usize {
    while j > 0 && is_ws(b[j - 1]) {
        j -= 1;
    }
    j
}

/// `b[end - 1]` is a closing quote; returns the index of its opening quote.
/// A quote is escaped when an odd number of backslashes precede it.
fn rstring_start(b: &[u8], end: usize) -> Option<usize> {
    let mut j = end - 1;
    while j > 0 {
        j -= 1;
        if b[j] == b'"' {
            let backslashes = b[..j].iter().rev().take_while(|&&c| c == b'\\').count();
            if backslashes % 2 == 0 {
                return Some(j);
            }
        }
    }
    None
}

/// Start of the value that ends just before `b[end]`, or `None` when its
/// start is not in the window.
fn rvalue_start(b: &[u8], end: usize) -> Option<usize> {
    match b[end - 1] {
        b'"' => rstring_start(b, end),
        b'}' | b']' => {
            let mut depth = 0usize;
            let mut j = end;
            while j > 0 {
                j -= 1;
                match b[j] {
                    b'"' => j = rstring_start(b, j + 1)?,
                    b'}' | b']' => depth += 1,
                    b'{' | b'[' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j);
                        }
                    }
                    _ => {}
                }
            }
            None
        }
        _ => {
            let start = b[..end]
                .iter()
                .rposition(|&c| matches!(c, b':' | b',' | b'[' | b'{') || is_ws(c))?
                + 1;
            (start < end).then_some(start)
        }
    }
}

/// Walks backwards over the members of the object whose `}` is at
/// `b[close]`, calling `visit(key, value)`, last member first. Returns the
/// end of the value whose start is not in the window, if that is where it
/// stopped.
fn rwalk_object(b: &[u8], close: usize, mut visit: impl FnMut(&[u8], &[u8])) -> Option<usize> {
    let mut j = close;
    loop {
        j = rskip_ws(b, j);
        if j == 0 || b[j - 1] == b'{' {
            return None;
        }
        let Some(v) = rvalue_start(b, j) else {
            return Some(j);
        };
        let colon = rskip_ws(b, v);
        if colon == 0 || b[colon - 1] != b':' {
            return None;
        }
        let key_end = rskip_ws(b, colon - 1);
        if key_end == 0 || b[key_end - 1] != b'"' {
            return None;
        }
        let k = rstring_start(b, key_end)?;
        visit(&b[k + 1..key_end - 1], &b[v..j]);
        j = rskip_ws(b, k);
        if j == 0 || b[j - 1] != b',' {
            return None;
        }
        j -= 1;
    }
}

fn name_member(params: &[u8], close: usize) -> Option<String> {
    let mut name = None;
    rwalk_object(params, close, |k, v| {
        if k == b"name" && name.is_none() {
            name = serde_json::from_slice::<String>(v).ok();
        }
    });
    name
}

/// Scans backwards from the end of a message whose start may be missing.
/// Only members after the last value that does not fit are seen.
pub fn scan_suffix(b: &[u8]) -> Peek {
    let mut peek = Peek::default();
    let end = rskip_ws(b, b.len());
    if end == 0 || b[end - 1] != b'}' {
        return peek;
    }
    peek.is_object = true;
    let mut members = 0;
    let stuck = rwalk_object(b, end - 1, |key, value| {
        members += 1;
        // The first member found backwards is the last one written: keep
        // what was found first if a key repeats.
        let mut found = Peek::default();
        found.record(key, value);
        if key == b"params" && value.last() == Some(&b'}') {
            found.params_name = name_member(value, value.len() - 1);
        }
        peek = std::mem::take(&mut peek).merge(found);
    });
    // The last member is an object too big to see whole, so its key is out
    // of sight. In a request that can only be `params` (written after big
    // `arguments` by serializers that sort keys): its `name` is the tool.
    if let Some(value_end) = stuck {
        if members == 0 && b[value_end - 1] == b'}' {
            peek.params_name = name_member(b, value_end - 1);
        }
    }
    peek
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prefix_finds_keys_before_a_cut_params() {
        let msg = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"write_file","arguments":{"content":"aaaa"#;
        let p = scan_prefix(msg);
        assert!(p.is_object);
        assert_eq!(p.id, Some(json!(7)));
        assert_eq!(p.method.as_deref(), Some("tools/call"));
        assert_eq!(p.params_name.as_deref(), Some("write_file"));
    }

    #[test]
    fn prefix_skips_complete_nested_values_with_tricky_strings() {
        let msg = br#"{"params":{"x":"a\"}]{[","y":[1,{"z":"}"}]},"method":"m","id":"s1","res"#;
        let p = scan_prefix(msg);
        assert_eq!(p.method.as_deref(), Some("m"));
        assert_eq!(p.id, Some(json!("s1")));
    }

    #[test]
    fn prefix_does_not_trust_a_cut_number() {
        let p = scan_prefix(br#"{"id":12"#);
        assert_eq!(p.id, None);
    }

    #[test]
    fn prefix_sees_a_cut_result() {
        let p = scan_prefix(br#"{"id":3,"result":{"content":[{"type":"text","text":"xx"#);
        assert!(p.has_result);
        assert_eq!(p.id, Some(json!(3)));
    }

    #[test]
    fn prefix_of_non_object_finds_nothing() {
        assert_eq!(scan_prefix(b"[1,2"), Peek::default());
        assert_eq!(scan_prefix(b"\x00\xff"), Peek::default());
    }

    #[test]
    fn suffix_finds_node_style_trailing_keys() {
        let msg = br#"ntent":[{"type":"text","text":"x\"y"}]},"jsonrpc":"2.0","id":5}"#;
        let p = scan_suffix(msg);
        assert!(p.is_object);
        assert_eq!(p.id, Some(json!(5)));
        assert!(!p.has_result && p.method.is_none());
    }

    #[test]
    fn suffix_reads_whole_small_object() {
        let msg = br#"{"method":"notifications/progress","params":{"id":9},"jsonrpc":"2.0"}"#;
        let p = scan_suffix(msg);
        assert_eq!(p.method.as_deref(), Some("notifications/progress"));
        // params.id is nested, not the message id
        assert_eq!(p.id, None);
    }

    #[test]
    fn suffix_sees_error_key_and_string_id() {
        let msg = br#" {"error":{"code":-32601,"message":"nope"},"id":"abc","jsonrpc":"2.0"}  "#;
        let p = scan_suffix(msg);
        assert!(p.has_error);
        assert_eq!(p.id, Some(json!("abc")));
    }

    #[test]
    fn suffix_stops_inside_an_unstarted_string() {
        // The window starts inside a string value, escaped quotes included.
        let msg = br#"tail \"quoted\" text","id":4}"#;
        let p = scan_suffix(msg);
        assert_eq!(p.id, Some(json!(4)));
        let p = scan_suffix(br#"thod":"x"}"#);
        assert_eq!(p.method, None);
    }

    #[test]
    fn suffix_finds_tool_name_after_big_arguments() {
        let p = scan_suffix(br#"aaaa"}},"name":"write_file"}}"#);
        assert_eq!(p.params_name.as_deref(), Some("write_file"));
        assert_eq!(p.id, None);
        let p =
            scan_suffix(br#"{"id":1,"method":"tools/call","params":{"arguments":{},"name":"t"}}"#);
        assert_eq!(p.params_name.as_deref(), Some("t"));
        assert_eq!(p.id, Some(json!(1)));
        // A trailing object that is not the last member is not params.
        let p = scan_suffix(br#"aaa"}},"name":"x"},"id":3}"#);
        assert_eq!(p.params_name, None);
    }

    #[test]
    fn scanners_survive_deep_nesting() {
        let mut s = String::from(r#"{"id":1,"method":"m","params":"#);
        s.push_str(&"[".repeat(100_000));
        s.push_str(&"]".repeat(100_000));
        s.push('}');
        let p = scan_prefix(s.as_bytes());
        assert_eq!(p.id, Some(json!(1)));
        assert_eq!(p.method.as_deref(), Some("m"));
        let p = scan_suffix(s.as_bytes());
        assert_eq!(p.id, Some(json!(1)));
    }

    #[test]
    fn merge_prefers_self() {
        let a = Peek {
            id: Some(json!(1)),
            ..Default::default()
        };
        let b = Peek {
            id: Some(json!(2)),
            method: Some("m".into()),
            ..Default::default()
        };
        let m = a.merge(b);
        assert_eq!(m.id, Some(json!(1)));
        assert_eq!(m.method.as_deref(), Some("m"));
    }
}
