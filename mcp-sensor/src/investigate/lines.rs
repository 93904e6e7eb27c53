//! Lines read back when the report is rendered: the report keeps, per
//! event, where its line is (file, byte offset, length) instead of the
//! line, so memory holds the timeline, not the logs.
//!
//! The files stay open from the read to the render: a rotation (rename)
//! or deletion of a log does not change what an open file reads, and the
//! daemon only appends. A file rewritten or truncated in place (logrotate's
//! `copytruncate`, an editor) would make a re-read return other bytes: each
//! line's keyed hash and its `ts` are checked, and a line that does not
//! match is shown as unavailable and counted, never shown wrong.

use serde_json::Value;
use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// Where one line is: enough to read it back and to know it is the same.
/// 16 bytes: the report holds one per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRef {
    /// The source's index (into [`super::read::Log::sources`]) in the top
    /// 16 bits, the line's byte offset in it in the low 48.
    at: u64,
    /// Length of the line, without its newline: never 0 (blank lines are
    /// not events), which makes an `Option<LineRef>` 16 bytes too.
    len: std::num::NonZeroU32,
    /// Keyed hash of the line's bytes (the key is random per run, so log
    /// text cannot be made to collide on purpose).
    hash: u32,
}

/// Files one investigation can read (their index has 16 bits).
pub const MAX_SOURCES: usize = 1 << 16;
const OFFSET_BITS: u32 = 48;

impl LineRef {
    fn source(&self) -> usize {
        (self.at >> OFFSET_BITS) as usize
    }

    fn offset(&self) -> u64 {
        self.at & ((1 << OFFSET_BITS) - 1)
    }
}

/// What a source's bytes are read back from.
#[derive(Debug)]
pub enum Backing {
    File(std::fs::File),
    /// Text given in memory (tests).
    Memory(Vec<u8>),
}

impl Backing {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        match self {
            Backing::File(f) => f.read_exact_at(buf, offset),
            Backing::Memory(m) => {
                let start = usize::try_from(offset).ok().filter(|&s| s <= m.len());
                let src = start.and_then(|s| m.get(s..s + buf.len()));
                let src = src.ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
                buf.copy_from_slice(src);
                Ok(())
            }
        }
    }
}

/// The open sources and what could not be read back from each.
#[derive(Debug, Default)]
pub struct Lines {
    sources: Vec<(PathBuf, Backing)>,
    key: RandomState,
    /// Per source: re-reads that found other bytes than were read.
    unavailable: Vec<Cell<u64>>,
}

impl Lines {
    /// Keeps `backing` (read as `path`) to read lines back from; its index.
    pub fn add(&mut self, path: PathBuf, backing: Backing) -> usize {
        self.sources.push((path, backing));
        self.unavailable.push(Cell::new(0));
        self.sources.len() - 1
    }

    /// The reference of a line of `source`: `text` at `offset`.
    /// `source` is below [`MAX_SOURCES`] (`read.rs` checks), the offset
    /// below 256 TiB, the line not empty and shorter than 4 GiB.
    pub fn refer(&self, source: usize, offset: u64, text: &[u8]) -> LineRef {
        assert!(source < MAX_SOURCES && offset < 1 << OFFSET_BITS, "a line past what a LineRef holds");
        LineRef {
            at: (source as u64) << OFFSET_BITS | offset,
            len: u32::try_from(text.len()).ok().and_then(std::num::NonZeroU32::new).expect("a line of 1 byte to 4 GiB"),
            hash: self.key.hash_one(text) as u32,
        }
    }

    /// The line `r` names, parsed, if it still has the bytes it was read
    /// with and its `ts` is `ts_ns`; else `None`, counted against its file.
    pub fn get(&self, r: &LineRef, ts_ns: i128) -> Option<Value> {
        let got = self.read_back(r).filter(|(_, ts)| *ts == ts_ns).map(|(v, _)| v);
        if got.is_none() {
            if let Some(n) = self.unavailable.get(r.source()) {
                n.set(n.get() + 1);
            }
        }
        got
    }

    fn read_back(&self, r: &LineRef) -> Option<(Value, i128)> {
        let (_, backing) = self.sources.get(r.source())?;
        let mut buf = vec![0u8; r.len.get() as usize];
        backing.read_exact_at(&mut buf, r.offset()).ok()?;
        if self.key.hash_one(&buf[..]) as u32 != r.hash {
            return None;
        }
        super::read::parse_line(&buf).ok()
    }

    /// One warning per file some line could not be read back from.
    pub fn warnings(&self) -> Vec<String> {
        self.sources
            .iter()
            .zip(&self.unavailable)
            .filter(|(_, n)| n.get() > 0)
            .map(|((path, _), n)| {
                format!(
                    "{}: {} events could not be read back (the file was rewritten or truncated after it was read: copytruncate rotation?); they are shown as unavailable: run investigate again",
                    path.display(),
                    n.get()
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"ts":"2026-11-21T12:00:00Z","kind":"open","pid":1,"path":"/a"}"#;

    fn ts() -> i128 {
        crate::timefmt::parse_rfc3339("2026-11-21T12:00:00Z").unwrap()
    }

    /// A file `name` holding `before` then [`LINE`], kept open in a store,
    /// and the reference of that line.
    fn kept(name: &str, before: &str) -> (std::path::PathBuf, Lines, LineRef) {
        let p = std::env::temp_dir().join(format!("ms-lines-{name}-{}.jsonl", std::process::id()));
        std::fs::write(&p, format!("{before}{LINE}\n")).unwrap();
        let mut lines = Lines::default();
        let s = lines.add(p.clone(), Backing::File(std::fs::File::open(&p).unwrap()));
        let r = lines.refer(s, before.len() as u64, LINE.as_bytes());
        (p, lines, r)
    }

    #[test]
    fn a_line_reads_back_from_its_file_by_offset() {
        let (p, lines, r) = kept("rotated", "garbage\n");
        // renamed away (a rotation) and replaced: the open file still reads
        std::fs::rename(&p, p.with_extension("jsonl.1")).unwrap();
        std::fs::write(&p, "new\n").unwrap();
        assert_eq!(lines.get(&r, ts()).unwrap()["path"], "/a");
        assert!(lines.warnings().is_empty());
        std::fs::remove_file(&p).unwrap();
        std::fs::remove_file(p.with_extension("jsonl.1")).unwrap();
    }

    #[test]
    fn a_line_changed_in_place_is_unavailable_and_counted() {
        let (p, lines, r) = kept("changed", "");
        // the same length, another path: only the hash tells
        std::fs::write(&p, format!("{}\n", LINE.replace("/a", "/b"))).unwrap();
        assert_eq!(lines.get(&r, ts()), None);
        // truncated (copytruncate): the bytes are gone
        std::fs::write(&p, "").unwrap();
        assert_eq!(lines.get(&r, ts()), None);
        let w = lines.warnings();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains(": 2 events could not be read back") && w[0].contains("run investigate again"), "{w:?}");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn a_line_whose_time_is_not_the_one_read_is_unavailable() {
        let mut lines = Lines::default();
        let s = lines.add("mem".into(), Backing::Memory(LINE.as_bytes().to_vec()));
        let r = lines.refer(s, 0, LINE.as_bytes());
        assert!(lines.get(&r, ts()).is_some());
        assert_eq!(lines.get(&r, ts() + 1), None);
        assert!(lines.warnings()[0].starts_with("mem: 1 events"));
    }
}
