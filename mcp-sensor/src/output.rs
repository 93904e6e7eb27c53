//! Outputs: where event lines go. Owns serialization and the sink.
//!
//! `exec` wraps an MCP server whose stdout is the protocol channel, so no
//! sink may ever be stdout: events go to a file (created 0600, appended) or
//! to stderr.

use crate::event::Event;
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub struct Output {
    sink: BufWriter<Box<dyn Write + Send>>,
    /// Lines that could not be written (disk full, ...): counted, reported
    /// once on stderr, and the sensor keeps going.
    pub write_errors: u64,
    pub lines: u64,
    path: Option<PathBuf>,
    /// The line being written: serialized here, then handed to the sink in
    /// one `write_all` (serde_json writes every token separately, and each
    /// write through the `BufWriter` costs more than a `Vec` push).
    line: Vec<u8>,
}

impl Output {
    /// `None` or `-`-less path: a file; `None` means stderr.
    pub fn open(path: Option<&Path>) -> io::Result<Self> {
        let (sink, path): (Box<dyn Write + Send>, _) = match path {
            Some(p) => {
                let f = OpenOptions::new().create(true).append(true).mode(0o600).open(p)?;
                (Box::new(f), Some(p.to_path_buf()))
            }
            None => (Box::new(io::stderr()), None),
        };
        Ok(Output { sink: BufWriter::with_capacity(256 << 10, sink), write_errors: 0, lines: 0, path, line: Vec::new() })
    }

    /// Any sink, named `path` in error messages (the daemon's rotating log).
    pub fn with_sink(path: PathBuf, w: Box<dyn Write + Send>) -> Self {
        Output { sink: BufWriter::with_capacity(256 << 10, w), write_errors: 0, lines: 0, path: Some(path), line: Vec::new() }
    }

    /// An in-memory sink, for tests.
    pub fn to_writer(w: Box<dyn Write + Send>) -> Self {
        Output { sink: BufWriter::new(w), write_errors: 0, lines: 0, path: None, line: Vec::new() }
    }

    pub fn emit(&mut self, ev: &Event) {
        self.line.clear();
        let res = serde_json::to_writer(&mut self.line, ev).map_err(io::Error::from).and_then(|_| {
            self.line.push(b'\n');
            self.sink.write_all(&self.line)
        });
        match res {
            Ok(()) => self.lines += 1,
            Err(e) => {
                if self.write_errors == 0 {
                    eprintln!("mcp-sensor: writing events to {}: {e} (counting further failures)", self.describe());
                }
                self.write_errors += 1;
            }
        }
    }

    pub fn flush(&mut self) {
        if let Err(e) = self.sink.flush() {
            if self.write_errors == 0 {
                eprintln!("mcp-sensor: flushing events to {}: {e}", self.describe());
            }
            self.write_errors += 1;
        }
    }

    fn describe(&self) -> String {
        self.path.as_ref().map_or("stderr".into(), |p| p.display().to_string())
    }
}
