//! The buffer of the message being reassembled, bounded in memory.
//!
//! Owns the policy of what is kept of a message: all of it up to the
//! limit; past the limit, or once a capture gap makes it incomplete, only
//! a prefix and a contiguous tail (for scanning `id`/`method`), while the
//! true length keeps counting. Capacity never grows past the limit, and
//! shrinks back once a big message is done.

/// Bytes kept from the start of a message over the limit: enough to find
/// `id`/`method` when they come before a big `params`/`result`.
pub const PREFIX_KEEP: usize = 64 << 10;
/// Bytes kept from the end of a message over the limit: Node writes
/// `"jsonrpc"` and `"id"` after the `result`.
pub(super) const TAIL_KEEP: usize = 4 << 10;
/// Idle buffers shrink back to this, so a burst of big messages does not
/// pin megabytes in every quiet session.
const RETAIN: usize = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cut {
    TooLong,
    Gap,
}

/// The bytes of the message being assembled.
#[derive(Debug, Default)]
pub(super) struct MessageBuf {
    /// The whole message so far, or only its first bytes once cut.
    pub(super) buf: Vec<u8>,
    /// Once cut: the last bytes seen since the cut (or since the last gap),
    /// always contiguous.
    pub(super) tail: Vec<u8>,
    /// True length so far, gap bytes included.
    pub(super) len: u64,
    pub(super) cut: Option<Cut>,
    /// A gap came right before this message: its start may be missing.
    pub(super) after_gap: bool,
    /// The last byte was `\r` (for `\r\n` split across chunks).
    pub(super) ends_cr: bool,
}

impl MessageBuf {
    pub(super) fn append(&mut self, piece: &[u8], max: usize) {
        let Some(&last) = piece.last() else { return };
        self.len += piece.len() as u64;
        self.ends_cr = last == b'\r';
        match self.cut {
            None if self.buf.len() + piece.len() <= max => {
                reserve_bounded(&mut self.buf, piece.len(), max);
                self.buf.extend_from_slice(piece);
            }
            None => {
                self.cut = Some(Cut::TooLong);
                self.tail.clear();
                let from_buf = TAIL_KEEP.saturating_sub(piece.len()).min(self.buf.len());
                self.tail
                    .extend_from_slice(&self.buf[self.buf.len() - from_buf..]);
                push_tail(&mut self.tail, piece);
                let keep = PREFIX_KEEP.min(max);
                if self.buf.len() < keep {
                    let more = (keep - self.buf.len()).min(piece.len());
                    self.buf.extend_from_slice(&piece[..more]);
                }
                self.buf.truncate(keep);
                self.buf.shrink_to(keep);
            }
            Some(_) => push_tail(&mut self.tail, piece),
        }
    }

    /// `n` bytes of this message were not captured.
    pub(super) fn lose(&mut self, n: u64) {
        self.len += n;
        self.ends_cr = false;
        // What follows is not contiguous with what the tail held.
        self.tail.clear();
        if self.cut.is_none() {
            self.buf.truncate(PREFIX_KEEP);
            self.buf.shrink_to(PREFIX_KEEP);
        }
        self.cut = Some(Cut::Gap);
    }

    pub(super) fn clear(&mut self) {
        self.buf.clear();
        self.buf.shrink_to(RETAIN);
        self.tail = Vec::new();
        self.len = 0;
        self.cut = None;
        self.after_gap = false;
        self.ends_cr = false;
    }
}

/// Grows `buf` for `extra` more bytes without ever reserving past `max`
/// (plain `Vec` doubling would reserve 16 MiB for an 8 MiB message).
fn reserve_bounded(buf: &mut Vec<u8>, extra: usize, max: usize) {
    let need = buf.len() + extra;
    if need > buf.capacity() {
        let target = (buf.capacity() * 2).max(need).max(1024).min(max.max(need));
        buf.reserve_exact(target - buf.len());
    }
}

fn push_tail(tail: &mut Vec<u8>, piece: &[u8]) {
    if piece.len() >= TAIL_KEEP {
        tail.clear();
        tail.extend_from_slice(&piece[piece.len() - TAIL_KEEP..]);
    } else {
        let excess = (tail.len() + piece.len()).saturating_sub(TAIL_KEEP);
        tail.drain(..excess);
        tail.extend_from_slice(piece);
    }
}
