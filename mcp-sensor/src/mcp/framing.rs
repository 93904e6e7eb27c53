//! Reassembly of one direction of an MCP stdio channel into JSON-RPC frames.
//!
//! Owns turning captured byte chunks (offset, timestamp, bytes) into
//! [`Frame`]s: newline-delimited JSON-RPC, with LSP-style
//! `Content-Length:` framing detected per message. It copes with what the
//! capture does to a stream: gaps (bytes the kernel could not copy),
//! offsets going backwards (treated as a reset), messages longer than the
//! limit (kept as a bounded prefix and tail, true length reported) and
//! garbage. Memory per direction is bounded by the message limit, whatever
//! the stream holds.

pub use super::msgbuf::PREFIX_KEEP;
use super::msgbuf::{Cut, MessageBuf, TAIL_KEEP};
use super::scan::{scan_prefix, scan_suffix, Peek};
use serde_json::Value;

/// Messages up to this size are kept whole by default.
pub const DEFAULT_MAX_MESSAGE: usize = 8 << 20;
/// LSP header sections are a line or two; anything longer is not one.
const MAX_HEADER_SECTION: u64 = 8 << 10;

/// One reassembled message, or something that could not be one.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Message {
        /// The parsed message; `None` when truncated (over the limit or hit
        /// by a capture gap) or nested too deeply to parse safely.
        value: Option<Value>,
        /// Top-level `id` (`Some(Null)` for `"id": null`), recovered by
        /// scanning when `value` is `None`.
        id: Option<Value>,
        /// Top-level `method`, likewise.
        method: Option<String>,
        /// `params.name`: the tool of a `tools/call` whose arguments were cut.
        params_name: Option<String>,
        /// A top-level `error` key was present.
        error: bool,
        /// Bytes of the message without its line terminator or headers;
        /// true length, counting bytes lost in gaps inside it.
        size: u64,
        truncated: bool,
        /// Timestamp of the chunk that completed the message.
        ts_ns: u64,
    },
    Malformed {
        reason: String,
        size: u64,
        ts_ns: u64,
    },
}

impl Frame {
    pub fn ts_ns(&self) -> u64 {
        match self {
            Frame::Message { ts_ns, .. } | Frame::Malformed { ts_ns, .. } => *ts_ns,
        }
    }

    pub fn size(&self) -> u64 {
        match self {
            Frame::Message { size, .. } | Frame::Malformed { size, .. } => *size,
        }
    }

    pub fn truncated(&self) -> bool {
        matches!(self, Frame::Message { truncated: true, .. })
    }
}

/// Counters since the reassembler was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Captured bytes pushed.
    pub bytes: u64,
    /// Offset jumps forward, and the bytes they skipped.
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Messages a gap or a reset cut: emitted incomplete (a `malformed`
    /// frame, or a message marked truncated). Messages whose every byte
    /// fell in a gap are not seen at all: each gap hides at least one
    /// message or part of one, so `gaps` is the lower bound of those.
    pub damaged: u64,
    /// Offset jumps backward.
    pub resets: u64,
    /// Frames out, by kind; `truncated` counts messages among `messages`.
    pub messages: u64,
    pub truncated: u64,
    pub malformed: u64,
}

impl Stats {
    /// Frames out: messages and malformed.
    pub fn frames(&self) -> u64 {
        self.messages + self.malformed
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between messages or inside a newline-terminated one.
    Line,
    /// After a `Content-Length:` line, until the blank line.
    Headers { length: u64, bytes: u64 },
    /// Inside a `Content-Length` body.
    Body { remaining: u64 },
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn trim_start(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&c| !is_ws(c)).unwrap_or(b.len());
    &b[start..]
}

fn last_bytes(b: &[u8], n: usize) -> &[u8] {
    &b[b.len().saturating_sub(n)..]
}

/// `Name: value`, the shape of an LSP header line.
fn looks_like_header(line: &[u8]) -> bool {
    match line.iter().position(|&c| c == b':') {
        Some(colon) if colon > 0 => line[..colon]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-'),
        _ => false,
    }
}

const CONTENT_LENGTH: &[u8] = b"content-length:";

fn content_length(line: &[u8]) -> Option<Result<u64, ()>> {
    let head = line.get(..CONTENT_LENGTH.len())?;
    if !head.eq_ignore_ascii_case(CONTENT_LENGTH) {
        return None;
    }
    let value = std::str::from_utf8(&line[CONTENT_LENGTH.len()..]).map_err(|_| ());
    Some(value.and_then(|v| v.trim().parse::<u64>().map_err(|_| ())))
}

fn malformed(reason: impl Into<String>, size: u64, ts_ns: u64) -> Frame {
    Frame::Malformed {
        reason: reason.into(),
        size,
        ts_ns,
    }
}

fn message_from_value(value: Value, size: u64, ts_ns: u64) -> Frame {
    let field = |k: &str| value.as_object().and_then(|o| o.get(k));
    Frame::Message {
        id: field("id").cloned(),
        method: field("method").and_then(Value::as_str).map(str::to_owned),
        params_name: field("params")
            .and_then(|p| p.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        error: field("error").is_some(),
        value: Some(value),
        size,
        truncated: false,
        ts_ns,
    }
}

fn message_from_peek(peek: Peek, size: u64, truncated: bool, ts_ns: u64) -> Frame {
    Frame::Message {
        value: None,
        id: peek.id,
        method: peek.method,
        params_name: peek.params_name,
        error: peek.has_error,
        size,
        truncated,
        ts_ns,
    }
}

/// A message we hold whole. `None` for a blank line.
fn parse_whole(bytes: &[u8], size: u64, after_gap: bool, ts_ns: u64) -> Option<Frame> {
    let text = trim_start(bytes);
    let first = *text.first()?;
    // A line after a gap may be the end of a message whose start was lost.
    let fragment = || {
        let peek = scan_suffix(last_bytes(bytes, TAIL_KEEP));
        if peek.found_any() {
            message_from_peek(peek, size, true, ts_ns)
        } else {
            malformed("incomplete line after a capture gap", size, ts_ns)
        }
    };
    if first != b'{' && first != b'[' {
        if after_gap {
            return Some(fragment());
        }
        let reason = if std::str::from_utf8(bytes).is_err() {
            "binary data (invalid UTF-8)"
        } else {
            "not JSON-RPC: line does not start with '{'"
        };
        return Some(malformed(reason, size, ts_ns));
    }
    // serde_json stops at 128 levels of nesting, so this cannot overflow
    // the stack whatever the line holds.
    Some(match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => message_from_value(v, size, ts_ns),
        Err(_) if after_gap => fragment(),
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => {
            // The server's parser may well accept it: keep tracking the
            // request by its id and method rather than calling it garbage.
            let peek = scan_prefix(bytes).merge(scan_suffix(last_bytes(bytes, TAIL_KEEP)));
            if peek.found_any() {
                message_from_peek(peek, size, false, ts_ns)
            } else {
                malformed(format!("invalid JSON: {e}"), size, ts_ns)
            }
        }
        Err(e) => malformed(format!("invalid JSON: {e}"), size, ts_ns),
    })
}

/// Reassembles one direction of one channel.
#[derive(Debug)]
pub struct Reassembler {
    max_message: usize,
    next_offset: u64,
    state: State,
    cur: MessageBuf,
    stats: Stats,
}

impl Default for Reassembler {
    fn default() -> Self {
        Reassembler::new(DEFAULT_MAX_MESSAGE)
    }
}

impl Reassembler {
    /// Messages up to `max_message` bytes are kept whole; longer ones are
    /// reported truncated. The stream is expected to start at offset 0.
    pub fn new(max_message: usize) -> Self {
        Reassembler {
            max_message: max_message.max(1),
            next_offset: 0,
            state: State::Line,
            cur: MessageBuf::default(),
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The offset the next chunk should start at.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Bytes of buffer currently allocated: never much more than the limit.
    pub fn buffered_capacity(&self) -> usize {
        self.cur.buf.capacity() + self.cur.tail.capacity()
    }

    /// Feeds a captured chunk that starts at `offset` in the stream;
    /// completed frames are appended to `out`.
    pub fn push(&mut self, offset: u64, ts_ns: u64, data: &[u8], out: &mut Vec<Frame>) {
        if offset < self.next_offset {
            self.reset(ts_ns, out);
        } else if offset > self.next_offset {
            self.skip(offset - self.next_offset, ts_ns, out);
        }
        self.next_offset = offset.saturating_add(data.len() as u64);
        self.stats.bytes += data.len() as u64;
        let mut rest = data;
        while !rest.is_empty() {
            rest = match self.state {
                State::Body { remaining } => self.feed_body(rest, remaining, ts_ns, out),
                _ => self.feed_line(rest, ts_ns, out),
            };
        }
    }

    fn emit(&mut self, frame: Frame, out: &mut Vec<Frame>) {
        match &frame {
            Frame::Message { truncated, .. } => {
                self.stats.messages += 1;
                self.stats.truncated += u64::from(*truncated);
            }
            Frame::Malformed { .. } => self.stats.malformed += 1,
        }
        out.push(frame);
    }

    /// The offset went backwards: whatever was buffered belongs to a
    /// stream we no longer see.
    fn reset(&mut self, ts_ns: u64, out: &mut Vec<Frame>) {
        self.stats.resets += 1;
        if self.cur.len > 0 || self.state != State::Line {
            let size = self.cur.len;
            let reason =
                format!("stream reset (offset went backwards); {size} buffered bytes dropped");
            self.stats.damaged += 1;
            self.emit(malformed(reason, size, ts_ns), out);
        }
        self.state = State::Line;
        self.cur.clear();
        self.cur.after_gap = true;
    }

    /// `n` bytes of the stream were not captured.
    fn skip(&mut self, n: u64, ts_ns: u64, out: &mut Vec<Frame>) {
        self.stats.gaps += 1;
        self.stats.gap_bytes += n;
        match self.state {
            State::Body { remaining } if n < remaining => {
                self.cur.lose(n);
                self.state = State::Body {
                    remaining: remaining - n,
                };
            }
            State::Body { remaining } => {
                self.cur.lose(remaining);
                self.finish(ts_ns, out);
                self.state = State::Line;
                self.cur.after_gap = true;
            }
            State::Headers { .. } => {
                let size = self.cur.len + n;
                self.stats.damaged += 1;
                self.emit(
                    malformed("capture gap inside Content-Length headers", size, ts_ns),
                    out,
                );
                self.state = State::Line;
                self.cur.clear();
                self.cur.after_gap = true;
            }
            State::Line if self.cur.len == 0 => self.cur.after_gap = true,
            State::Line => self.cur.lose(n),
        }
    }

    fn feed_line<'a>(&mut self, data: &'a [u8], ts_ns: u64, out: &mut Vec<Frame>) -> &'a [u8] {
        // One byte of slack so a message of exactly the limit still fits
        // with its `\r`.
        let limit = self.max_message + 1;
        match memchr::memchr(b'\n', data) {
            None => {
                self.cur.append(data, limit);
                &[]
            }
            Some(nl) => {
                self.cur.append(&data[..nl], limit);
                self.end_line(ts_ns, out);
                &data[nl + 1..]
            }
        }
    }

    fn feed_body<'a>(
        &mut self,
        data: &'a [u8],
        remaining: u64,
        ts_ns: u64,
        out: &mut Vec<Frame>,
    ) -> &'a [u8] {
        let take = remaining.min(data.len() as u64) as usize;
        self.cur.append(&data[..take], self.max_message);
        let remaining = remaining - take as u64;
        if remaining == 0 {
            self.state = State::Line;
            self.finish_body(ts_ns, out);
        } else {
            self.state = State::Body { remaining };
        }
        &data[take..]
    }

    fn end_line(&mut self, ts_ns: u64, out: &mut Vec<Frame>) {
        if self.cur.ends_cr {
            self.cur.len -= 1;
            self.cur.ends_cr = false;
            match self.cur.cut {
                None => self.cur.buf.pop(),
                Some(_) => self.cur.tail.pop(),
            };
        }
        match self.state {
            State::Headers { length, bytes } => self.end_header_line(length, bytes, ts_ns, out),
            _ => self.end_message_line(ts_ns, out),
        }
    }

    fn end_message_line(&mut self, ts_ns: u64, out: &mut Vec<Frame>) {
        if self.cur.cut.is_none() {
            let line = trim_start(&self.cur.buf);
            match content_length(line) {
                None => {}
                Some(Ok(length)) if length <= self.max_message as u64 => {
                    self.state = State::Headers {
                        length,
                        bytes: self.cur.len,
                    };
                    self.cur.clear();
                    return;
                }
                // Refusing an oversized length keeps a bogus header from
                // swallowing the newline-framed messages that follow it.
                Some(result) => {
                    let reason = match result {
                        Ok(length) => format!(
                            "Content-Length {length} over the {}-byte limit",
                            self.max_message
                        ),
                        Err(()) => "bad Content-Length header".to_owned(),
                    };
                    let size = self.cur.len;
                    self.emit(malformed(reason, size, ts_ns), out);
                    self.cur.clear();
                    return;
                }
            }
        }
        self.finish(ts_ns, out);
    }

    fn end_header_line(&mut self, length: u64, bytes: u64, ts_ns: u64, out: &mut Vec<Frame>) {
        let line = trim_start(&self.cur.buf);
        if self.cur.cut.is_none() && line.is_empty() {
            self.cur.clear();
            if length == 0 {
                self.state = State::Line;
                self.emit(malformed("empty Content-Length body", 0, ts_ns), out);
            } else {
                self.state = State::Body { remaining: length };
            }
            return;
        }
        let bytes = bytes + self.cur.len;
        if self.cur.cut.is_none() && bytes <= MAX_HEADER_SECTION && looks_like_header(line) {
            // Content-Type and friends carry nothing we need.
            self.state = State::Headers { length, bytes };
            self.cur.clear();
            return;
        }
        // No blank line: the sender is not doing LSP framing after all, and
        // this line is a message of its own.
        self.state = State::Line;
        let reason = "Content-Length header not followed by a blank line";
        self.emit(malformed(reason, 0, ts_ns), out);
        self.end_message_line(ts_ns, out);
    }

    fn finish_body(&mut self, ts_ns: u64, out: &mut Vec<Frame>) {
        if self.cur.cut.is_none() {
            let whole = parse_whole(&self.cur.buf, self.cur.len, false, ts_ns);
            let resplit = matches!(whole, Some(Frame::Malformed { .. }) | None)
                && self.cur.buf.contains(&b'\n');
            if !resplit {
                if let Some(frame) = whole {
                    self.emit(frame, out);
                }
                self.cur.clear();
                return;
            }
            // A wrong length put newline-framed messages inside the body:
            // report them rather than hide them.
            let buf = std::mem::take(&mut self.cur.buf);
            for line in buf.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if let Some(frame) = parse_whole(line, line.len() as u64, false, ts_ns) {
                    self.emit(frame, out);
                }
            }
            self.cur.buf = buf;
            self.cur.clear();
            return;
        }
        self.finish(ts_ns, out);
    }

    /// Emits the pending message, whole or cut, and starts the next one.
    fn finish(&mut self, ts_ns: u64, out: &mut Vec<Frame>) {
        let cur = &self.cur;
        let gap_hit = cur.after_gap || matches!(cur.cut, Some(Cut::Gap));
        let frame = match cur.cut {
            None => parse_whole(&cur.buf, cur.len, cur.after_gap, ts_ns),
            Some(cut) => {
                // After a gap the kept start is not the message's start.
                let head = if cur.after_gap {
                    Peek::default()
                } else {
                    scan_prefix(&cur.buf)
                };
                let starts_as_object = head.is_object;
                let peek = head.merge(scan_suffix(&cur.tail));
                Some(if peek.found_any() || starts_as_object {
                    message_from_peek(peek, cur.len, true, ts_ns)
                } else {
                    let reason = match cut {
                        Cut::TooLong => format!(
                            "line over the {}-byte limit is not a JSON object",
                            self.max_message
                        ),
                        Cut::Gap => "incomplete line (capture gap) is not a JSON object".into(),
                    };
                    malformed(reason, cur.len, ts_ns)
                })
            }
        };
        if let Some(frame) = frame {
            // a whole message right after a gap lost nothing
            if gap_hit && (frame.truncated() || matches!(frame, Frame::Malformed { .. })) {
                self.stats.damaged += 1;
            }
            self.emit(frame, out);
        }
        self.cur.clear();
    }
}
