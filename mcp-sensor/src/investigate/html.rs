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
//!
//! The page is written as it is made: the report's JSON goes through the
//! escaping straight to the file, never held whole in memory.

use super::lines::Lines;
use super::model::Report;
use super::shown::Shown;
use std::io::{self, Write};
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

/// Passes JSON on made safe inside a `<script>` block: `<`, `>`, `&`,
/// U+2028 and U+2029 become `\uXXXX` escapes. Only string contents can
/// hold these characters, and the escape is the same string to a JSON
/// parser. A U+2028/2029 split between two writes is held until the next.
struct ScriptSafe<W: Write> {
    w: W,
    /// The start of a 3-byte sequence cut by the end of the last write.
    held: Vec<u8>,
}

impl<W: Write> Write for ScriptSafe<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut data = std::mem::take(&mut self.held);
        data.extend_from_slice(buf);
        let mut out = Vec::with_capacity(data.len() + data.len() / 16);
        let mut i = 0;
        while i < data.len() {
            match (data[i], data.get(i + 1), data.get(i + 2)) {
                (b'<', ..) => out.extend_from_slice(b"\\u003c"),
                (b'>', ..) => out.extend_from_slice(b"\\u003e"),
                (b'&', ..) => out.extend_from_slice(b"\\u0026"),
                (0xE2, Some(0x80), Some(&c @ (0xA8 | 0xA9))) => {
                    out.extend_from_slice(if c == 0xA8 { b"\\u2028" } else { b"\\u2029" });
                    i += 2;
                }
                (0xE2, None, _) | (0xE2, Some(0x80), None) => {
                    self.held = data[i..].to_vec();
                    break;
                }
                (b, ..) => out.push(b),
            }
            i += 1;
        }
        self.w.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let held = std::mem::take(&mut self.held);
        self.w.write_all(&held)?;
        self.w.flush()
    }
}

/// The report as JSON safe inside a `<script>` block (see [`ScriptSafe`]).
pub fn script_safe_json(r: &Report, lines: &Lines) -> String {
    let mut out = Vec::new();
    write_script_safe(r, lines, &mut out).expect("writing to memory");
    String::from_utf8(out).expect("escaping keeps UTF-8")
}

fn write_script_safe(r: &Report, lines: &Lines, w: &mut impl Write) -> io::Result<()> {
    // serde writes in small pieces: batch them before the escaping
    let mut safe = io::BufWriter::with_capacity(64 << 10, ScriptSafe { w, held: Vec::new() });
    serde_json::to_writer(&mut safe, &Shown(r, lines))?;
    safe.flush()
}

/// Writes the whole page for `r` (its events' lines read from `lines`)
/// to `w`: the template with each `{{NAME}}` replaced. Only the template
/// is searched for markers, never what goes in, so nothing in the data is
/// ever taken for one.
pub fn write_page(r: &Report, lines: &Lines, w: &mut impl Write) -> io::Result<()> {
    let hash = format!("sha256-{}", base64(&Sha256::digest(JS.as_bytes())));
    let mut rest = TEMPLATE;
    while let Some(start) = rest.find("{{") {
        let len = rest[start..].find("}}").unwrap_or_else(|| panic!("page.html: unclosed {{{{"));
        w.write_all(&rest.as_bytes()[..start])?;
        match &rest[start + 2..start + len] {
            "SCRIPT_HASH" => w.write_all(hash.as_bytes())?,
            "CSS" => w.write_all(CSS.as_bytes())?,
            "JS" => w.write_all(JS.as_bytes())?,
            "DATA" => write_script_safe(r, lines, w)?,
            other => panic!("page.html: unknown marker {other}"),
        }
        rest = &rest[start + len + 2..];
    }
    w.write_all(rest.as_bytes())
}

/// The whole page for `r`, in memory.
pub fn page(r: &Report, lines: &Lines) -> String {
    let mut out = Vec::new();
    write_page(r, lines, &mut out).expect("writing to memory");
    String::from_utf8(out).expect("the page is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_escapes_survive_any_split_between_writes() {
        let text = "a<b>&c\u{2028}d\u{2029}e\u{2027}€".as_bytes();
        let want = "a\\u003cb\\u003e\\u0026c\\u2028d\\u2029e\u{2027}€";
        for cut in 0..=text.len() {
            let mut out = Vec::new();
            let mut s = ScriptSafe { w: &mut out, held: Vec::new() };
            s.write_all(&text[..cut]).unwrap();
            s.write_all(&text[cut..]).unwrap();
            s.flush().unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), want, "cut at {cut}");
        }
    }

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
