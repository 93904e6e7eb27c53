//! Short, human-readable summaries of JSON-RPC results and errors for the
//! `result` field of `rpc` events: enough to see what a call returned
//! without copying megabytes of output into every event.

use serde_json::Value;

/// Summaries are cut to about this many characters.
pub(crate) const SUMMARY_CHARS: usize = 200;

/// `s` cut to [`SUMMARY_CHARS`] characters, marked with `…` when cut.
pub(crate) fn preview(s: &str) -> String {
    match s.char_indices().nth(SUMMARY_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

fn count(result: &Value, key: &str, noun: &str) -> Option<String> {
    let n = result.get(key)?.as_array()?.len();
    Some(format!("{n} {noun}"))
}

/// Summary of a successful result and whether it reports an error (only
/// `tools/call` results can: `isError`).
pub(crate) fn result_summary(method: Option<&str>, result: &Value) -> (Option<String>, bool) {
    match method {
        Some("tools/call") => {
            let is_error = result
                .get("isError")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let content = result.get("content").and_then(Value::as_array);
            let first_text = content.and_then(|items| {
                items.iter().find_map(|item| {
                    (item.get("type").and_then(Value::as_str) == Some("text"))
                        .then(|| item.get("text").and_then(Value::as_str))
                        .flatten()
                })
            });
            let summary = match (first_text, content) {
                (Some(text), _) => Some(preview(text)),
                (None, Some(items)) if !items.is_empty() => {
                    Some(format!("{} content items", items.len()))
                }
                _ if result.get("structuredContent").is_some() => {
                    Some("structured content".to_owned())
                }
                _ => Some("0 content items".to_owned()),
            };
            (summary, is_error)
        }
        Some("tools/list") => (count(result, "tools", "tools"), false),
        Some("prompts/list") => (count(result, "prompts", "prompts"), false),
        Some("resources/list") => (count(result, "resources", "resources"), false),
        Some("resources/templates/list") => (
            count(result, "resourceTemplates", "resource templates"),
            false,
        ),
        Some("resources/read") => (count(result, "contents", "contents"), false),
        Some("roots/list") => (count(result, "roots", "roots"), false),
        Some("initialize") | Some("server/discover") => {
            let info = result.get("serverInfo");
            let field = |k: &str| info.and_then(|i| i.get(k)).and_then(Value::as_str);
            let summary = match (field("name"), field("version")) {
                (Some(name), Some(version)) => Some(preview(&format!("{name} {version}"))),
                (Some(name), None) => Some(preview(name)),
                _ => None,
            };
            (summary, false)
        }
        _ => (None, false),
    }
}

/// `code: message` of a JSON-RPC error object.
pub(crate) fn error_summary(error: &Value) -> String {
    let code = error.get("code").map(Value::to_string);
    let message = error.get("message").and_then(Value::as_str);
    match (code, message) {
        (Some(code), Some(message)) => preview(&format!("{code}: {message}")),
        (Some(code), None) => code,
        (None, Some(message)) => preview(message),
        (None, None) => "error".to_owned(),
    }
}

/// Every string in `v` (values, not keys), newline-joined: the text a
/// result shows the model, for secret patterns to search. A PEM key inside
/// a JSON string has `\n` escapes on the wire; here it has real newlines.
pub(crate) fn text_of(v: &Value) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(s);
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Object(map) => map.values().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    walk(v, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_of_joins_string_values_with_real_newlines() {
        let v = serde_json::json!({"content":[{"type":"text","text":"a\nb"},{"type":"text","text":"c"}],"isError":false});
        assert_eq!(text_of(&v), "a\nb\ntext\nc\ntext");
    }
    use serde_json::json;

    #[test]
    fn preview_cuts_on_char_boundary() {
        let s = "é".repeat(300);
        let p = preview(&s);
        assert_eq!(p.chars().count(), SUMMARY_CHARS + 1);
        assert!(p.ends_with('…'));
        assert_eq!(preview("short"), "short");
    }

    #[test]
    fn tools_call_uses_first_text_item_else_counts() {
        let r = json!({"content":[{"type":"image","data":"x"},{"type":"text","text":"hello"}]});
        assert_eq!(
            result_summary(Some("tools/call"), &r),
            (Some("hello".into()), false)
        );
        let r = json!({"content":[{"type":"image"},{"type":"audio"}],"isError":true});
        assert_eq!(
            result_summary(Some("tools/call"), &r),
            (Some("2 content items".into()), true)
        );
    }

    #[test]
    fn error_summary_has_code_and_message() {
        assert_eq!(
            error_summary(&json!({"code":-32601,"message":"Method not found"})),
            "-32601: Method not found"
        );
    }
}
