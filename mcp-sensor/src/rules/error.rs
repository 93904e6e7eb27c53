//! Rule-file errors: every one names a file, a 1-based line and column, and
//! what was expected there, so `mcp-sensor check` output can be pasted into
//! an editor's quickfix list.

use std::fmt;
use std::sync::Arc;

use super::yaml::Pos;

/// One problem found in a rule file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleError {
    /// The path the file was given as.
    pub file: String,
    /// 1-based.
    pub line: u32,
    /// 1-based, in characters.
    pub col: u32,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

impl std::error::Error for RuleError {}

/// Collects errors so that one run reports all of them, not the first.
#[derive(Default)]
pub(crate) struct Diag {
    pub errs: Vec<RuleError>,
}

impl Diag {
    pub fn err(&mut self, file: &Arc<str>, pos: Pos, message: impl Into<String>) {
        self.errs.push(RuleError {
            file: file.to_string(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
        });
    }

    /// Errors sorted by file order of appearance then position, without the
    /// duplicates a macro used by several rules would produce.
    pub fn finish(mut self, file_order: &[Arc<str>]) -> Vec<RuleError> {
        let rank = |f: &str| {
            file_order
                .iter()
                .position(|p| &**p == f)
                .unwrap_or(usize::MAX)
        };
        self.errs.sort_by(|a, b| {
            (rank(&a.file), a.line, a.col, &a.message).cmp(&(
                rank(&b.file),
                b.line,
                b.col,
                &b.message,
            ))
        });
        self.errs.dedup();
        self.errs
    }
}
