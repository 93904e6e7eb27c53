//! The `--html` renderer: one self-contained page (inline CSS and JS from
//! `page/`, no network access at all) that draws the report as a visual
//! timeline.
//!
//! The log is attacker-influenced (tool arguments, paths), so the report
//! travels as JSON in a `<script type="application/json">` block with
//! `<`, `>`, `&` and the JS line separators written as `\uXXXX` escapes:
//! no text in it can close the block or open a tag. The page script only
//! puts log text in the DOM with `textContent`/`setAttribute`. A
//! Content-Security-Policy allows exactly that one script (by its sha256)
//! and no network source: were something injected anyway, it would not run
//! or load anything.

use super::model::Report;
use sha2::{Digest, Sha256};

const TEMPLATE: &str = include_str!("page/page.html");
const CSS: &str = include_str!("page/page.css");
const JS: &str = include_str!("page/page.js");

/// Standard base64 with padding (for the CSP hash).
pub(crate) fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// JSON safe inside a `<script>` block: only string contents can hold
/// these characters, and `\uXXXX` is the same string to a JSON parser.
pub fn script_safe_json(r: &Report) -> String {
    let json = serde_json::to_string(r).expect("a report always serialises");
    let mut out = String::with_capacity(json.len() + json.len() / 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Replaces the one `{{name}}` in `text`.
fn fill(text: &str, name: &str, value: &str) -> String {
    let marker = format!("{{{{{name}}}}}");
    let (before, after) = text.split_once(&marker).unwrap_or_else(|| panic!("page.html has no {marker}"));
    [before, value, after].concat()
}

/// The whole page for `r`.
pub fn page(r: &Report) -> String {
    let hash = format!("sha256-{}", base64(&Sha256::digest(JS.as_bytes())));
    // the data goes in last, so nothing in it is ever taken for a marker
    let page = fill(TEMPLATE, "SCRIPT_HASH", &hash);
    let page = fill(&page, "CSS", CSS);
    let page = fill(&page, "JS", JS);
    fill(&page, "DATA", &script_safe_json(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="), ("foobar", "Zm9vYmFy")] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }

    #[test]
    fn assets_have_no_network_references() {
        for (name, text) in [("page.html", TEMPLATE), ("page.css", CSS), ("page.js", JS)] {
            for needle in ["http://", "https://", "//cdn", "@import", "url(", "fetch(", "XMLHttpRequest", "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("] {
                assert!(!text.contains(needle), "{name} contains {needle}");
            }
        }
    }
}
