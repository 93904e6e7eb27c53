//! Rules: the rule language, the embedded default pack, evaluation.
//! Pure logic, no BPF.
//!
//! Rule files are YAML in the spirit of Falco's (`list`, `macro`, `rule`
//! items, `append`, structured `exceptions`) with Tetragon-style structured
//! selectors instead of a condition language, and a per-rule `action`
//! (`alert` to monitor, `kill` to enforce). `rules/README.md` documents
//! the format and the default rules.
//!
//! Pipeline: [`check`] parses each file (`format`, positions from `yaml`),
//! layers them (`merge`: later files replace, append to or disable what
//! earlier ones defined), then compiles (`compile`: lists and macros
//! expanded, every glob/regex/CIDR checked) into a [`RuleSet`] whose
//! [`RuleSet::evaluate`] runs one event (`eval`). State the engine needs
//! but does not keep lives with the agent: [`DescriptionStore`] (tool
//! definitions across sessions) and [`FileIdentities`] (inodes of `file:`
//! paths), both passed in through [`EvalContext`]. [`bench`] measures
//! throughput of the default pack.
//!
//! ```
//! use mcp_sensor::rules;
//! let set = rules::load(&[("my.yaml", "- disable: [unexpected-shell]\n")]).unwrap();
//! assert!(!set.rule("unexpected-shell").unwrap().enabled);
//! ```

use std::sync::Arc;

mod ast;
pub mod canon;
mod compile;
mod descriptions;
mod error;
mod eval;
mod fields;
mod format;
mod format_match;
mod identity;
mod kernel;
mod matchers;
pub mod known;
mod merge;
pub mod tooldiff;
mod yaml;

pub mod bench;
#[cfg(test)]
mod tests_check;
#[cfg(test)]
mod tests_defaults;
#[cfg(test)]
mod tests_defaults_exec;
#[cfg(test)]
mod tests_defaults_secrets;

pub use descriptions::{ChangeKind, DescriptionStore, ServerId, ToolChange};
pub use error::RuleError;
pub use eval::{EvalContext, Match, Matches, ProcTree, Rule, RuleSet};
pub use fields::{Action, EventKind, KillScope, Severity};
pub use identity::{FileId, FileIdentities};
pub use known::{KnownFiles, Source as KnownSource};
pub use kernel::{KernelConds, KernelPlan, KillRule};
pub(crate) use matchers::StrMatch;

/// The default rule pack, embedded at build time.
pub const DEFAULT_RULES: &str = include_str!("../../../rules/default.yaml");
/// The name errors in [`DEFAULT_RULES`] are reported under.
pub const DEFAULT_RULES_PATH: &str = "rules/default.yaml";

/// Parses, layers and compiles rule files, in order: a later file overrides
/// an earlier one. `files` are `(path for messages, text)`. All problems are
/// returned, sorted by file and position.
pub fn check<P: AsRef<str>, T: AsRef<str>>(files: &[(P, T)]) -> Result<RuleSet, Vec<RuleError>> {
    let mut diag = error::Diag::default();
    let mut merged = merge::Merged::default();
    let mut order = Vec::new();
    for (path, text) in files {
        let file: Arc<str> = Arc::from(path.as_ref());
        let items = format::parse_file(&file, text.as_ref(), &mut diag);
        merge::apply(&mut merged, &file, items, &mut diag);
        order.push(file);
    }
    let set = compile::compile(&merged, &mut diag);
    if diag.errs.is_empty() {
        Ok(set)
    } else {
        Err(diag.finish(&order))
    }
}

/// The default pack followed by the user's files (see [`check`]).
pub fn load<P: AsRef<str>, T: AsRef<str>>(
    user_files: &[(P, T)],
) -> Result<RuleSet, Vec<RuleError>> {
    let mut files: Vec<(&str, &str)> = vec![(DEFAULT_RULES_PATH, DEFAULT_RULES)];
    files.extend(user_files.iter().map(|(p, t)| (p.as_ref(), t.as_ref())));
    check(&files)
}

/// The default pack alone. A test keeps it valid.
pub fn defaults() -> RuleSet {
    load::<&str, &str>(&[]).expect("the embedded default rules are valid")
}
