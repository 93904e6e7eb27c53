//! The parsed form of rule files: items whose values are still text, each
//! carrying its file and position so that later stages (merge, compile)
//! can report errors where the user wrote the value.

use std::sync::Arc;

use super::fields::{Action, EventKind, Field, KillScope, Severity};
use super::yaml::Pos;

/// A position in a named file.
#[derive(Debug, Clone)]
pub(crate) struct Loc {
    pub file: Arc<str>,
    pub pos: Pos,
}

/// One scalar value as written (`$name` is a list reference).
#[derive(Debug, Clone)]
pub(crate) struct Value {
    pub loc: Loc,
    pub text: String,
}

/// A `match:` mapping: every condition must hold.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub conds: Vec<Cond>,
}

#[derive(Debug, Clone)]
pub(crate) enum Cond {
    Field {
        field: Field,
        loc: Loc,
        values: Vec<Value>,
    },
    Any(Vec<Block>),
    Not(Box<Block>),
    Macro(Vec<Value>),
}

#[derive(Debug, Clone)]
pub(crate) struct ExceptionDef {
    pub name: Value,
    /// `None` when appending values to an exception defined earlier.
    pub fields: Option<Vec<(Field, Loc)>>,
    /// Rows of cells, one cell per field; a cell is one value or a list.
    pub rows: Vec<(Loc, Vec<Vec<Value>>)>,
}

#[derive(Debug, Clone)]
pub(crate) struct RuleDef {
    pub description: String,
    pub severity: Severity,
    pub tags: Vec<String>,
    pub kinds: Vec<(EventKind, Loc)>,
    pub block: Option<Block>,
    pub after_first_request: bool,
    pub except: Vec<Block>,
    pub exceptions: Vec<ExceptionDef>,
    pub action: Action,
    pub kill_scope: KillScope,
    pub enabled: bool,
    /// Rules whose alert on the same event this rule's alert stands for.
    pub supersedes: Vec<Value>,
}

#[derive(Debug, Clone)]
pub(crate) enum RuleBody {
    Define(Box<RuleDef>),
    Append {
        tags: Vec<String>,
        except: Vec<Block>,
        exceptions: Vec<ExceptionDef>,
    },
    Toggle(bool),
    /// `rule` with only `action` (and `kill_scope`): changes a rule
    /// defined earlier.
    SetAction {
        action: Action,
        kill_scope: Option<KillScope>,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum Item {
    Rule {
        id: Value,
        body: RuleBody,
    },
    List {
        name: Value,
        items: Vec<Value>,
        append: bool,
    },
    Macro {
        name: Value,
        block: Block,
    },
    Disable(Vec<Value>),
}
