//! The rule-file format: maps the positioned YAML tree of one file to its
//! items (rules, lists, macros, disables), checking field names and shapes.
//! Match blocks and exceptions are in `format_match`.
//!
//! Values stay text here (with their position and file): what a value means
//! (glob, CIDR, regex, list reference) is decided when the rules are
//! compiled, after every file is merged, because a list defined in the
//! default pack may be extended by a user file that comes later.

use std::sync::Arc;

use super::ast::{Item, Loc, RuleBody, RuleDef, Value};
use super::error::Diag;
use super::fields::{one_of, Action, EventKind, KillScope, Severity};
use super::yaml::{Node, NodeKind, Pos};

const RULE_KEYS: &[&str] = &[
    "rule",
    "description",
    "severity",
    "tags",
    "kind",
    "match",
    "after_first_request",
    "except",
    "exceptions",
    "action",
    "kill_scope",
    "enabled",
    "supersedes",
    "append",
];
const APPEND_KEYS: &[&str] = &["rule", "append", "tags", "except", "exceptions"];
const LIST_KEYS: &[&str] = &["list", "items", "append"];
const MACRO_KEYS: &[&str] = &["macro", "match"];

/// Parses one file into items; problems go to `diag`.
pub(crate) fn parse_file(file: &Arc<str>, text: &str, diag: &mut Diag) -> Vec<Item> {
    let root = match super::yaml::parse(text) {
        Ok(Some(root)) => root,
        Ok(None) => return Vec::new(),
        Err((pos, msg)) => {
            diag.err(file, pos, format!("invalid YAML: {msg}"));
            return Vec::new();
        }
    };
    let mut p = P { file, diag };
    if root.is_null() {
        return Vec::new();
    }
    let NodeKind::Seq(items) = &root.kind else {
        p.err(
            root.pos,
            format!(
                "expected a list of rules, lists and macros, found {}",
                root.what()
            ),
        );
        return Vec::new();
    };
    items.iter().filter_map(|n| p.item(n)).collect()
}

pub(super) struct P<'a> {
    file: &'a Arc<str>,
    diag: &'a mut Diag,
}

pub(super) type Entries = [(Node, Node)];

pub(super) fn get<'n>(m: &'n Entries, key: &str) -> Option<&'n Node> {
    m.iter()
        .find(|(k, _)| k.scalar() == Some(key))
        .map(|(_, v)| v)
}

impl P<'_> {
    pub(super) fn err(&mut self, pos: Pos, msg: impl Into<String>) {
        self.diag.err(self.file, pos, msg)
    }

    pub(super) fn loc(&self, pos: Pos) -> Loc {
        Loc {
            file: self.file.clone(),
            pos,
        }
    }

    pub(super) fn map<'n>(&mut self, n: &'n Node, what: &str) -> Option<&'n Entries> {
        match &n.kind {
            NodeKind::Map(m) => Some(m),
            _ => {
                self.err(
                    n.pos,
                    format!("expected {what} (a mapping), found {}", n.what()),
                );
                None
            }
        }
    }

    /// Reports keys outside `allowed`; `false` if there were any.
    pub(super) fn keys(&mut self, m: &Entries, allowed: &[&str]) -> bool {
        let mut ok = true;
        for (k, _) in m {
            let name = k.scalar().unwrap_or("");
            if !allowed.contains(&name) {
                self.err(
                    k.pos,
                    format!(
                        "unknown field `{name}`, expected one of {}",
                        one_of(allowed)
                    ),
                );
                ok = false;
            }
        }
        ok
    }

    pub(super) fn string(&mut self, n: &Node, what: &str) -> Option<Value> {
        match n.scalar() {
            Some(s) if !n.is_null() => Some(Value {
                loc: self.loc(n.pos),
                text: s.to_string(),
            }),
            _ => {
                self.err(
                    n.pos,
                    format!("expected {what} (a string), found {}", n.what()),
                );
                None
            }
        }
    }

    pub(super) fn boolean(&mut self, n: &Node, what: &str) -> Option<bool> {
        match n.scalar() {
            Some("true") => Some(true),
            Some("false") => Some(false),
            _ => {
                self.err(n.pos, format!("expected `true` or `false` for `{what}`"));
                None
            }
        }
    }

    /// One value or a list of values.
    pub(super) fn values(&mut self, n: &Node, what: &str) -> Option<Vec<Value>> {
        match &n.kind {
            NodeKind::Seq(items) => items.iter().map(|i| self.string(i, what)).collect(),
            _ => self.string(n, what).map(|v| vec![v]),
        }
    }

    fn item(&mut self, n: &Node) -> Option<Item> {
        let m = self.map(n, "a `rule`, `list`, `macro` or `disable` item")?;
        for (k, _) in m {
            match k.scalar() {
                Some("rule") => return self.rule(m),
                Some("list") => return self.list(m),
                Some("macro") => return self.macro_(m),
                Some("disable") => {
                    self.keys(m, &["disable"]);
                    return self
                        .values(get(m, "disable")?, "a rule id")
                        .map(Item::Disable);
                }
                _ => {}
            }
        }
        self.err(
            n.pos,
            "expected an item with one of `rule`, `list`, `macro`, `disable`",
        );
        None
    }

    fn list(&mut self, m: &Entries) -> Option<Item> {
        let ok = self.keys(m, LIST_KEYS);
        let name = self.string(get(m, "list")?, "a list name")?;
        let append = match get(m, "append") {
            Some(a) => self.boolean(a, "append")?,
            None => false,
        };
        let Some(items) = get(m, "items") else {
            self.err(
                name.loc.pos,
                format!("list `{}` is missing `items`", name.text),
            );
            return None;
        };
        let items = match &items.kind {
            NodeKind::Seq(_) => self.values(items, "a list item")?,
            _ => {
                self.err(
                    items.pos,
                    format!("expected a list of items, found {}", items.what()),
                );
                return None;
            }
        };
        ok.then_some(Item::List {
            name,
            items,
            append,
        })
    }

    fn macro_(&mut self, m: &Entries) -> Option<Item> {
        let ok = self.keys(m, MACRO_KEYS);
        let name = self.string(get(m, "macro")?, "a macro name")?;
        let Some(b) = get(m, "match") else {
            self.err(
                name.loc.pos,
                format!("macro `{}` is missing `match`", name.text),
            );
            return None;
        };
        let block = self.block(b)?;
        ok.then_some(Item::Macro { name, block })
    }

    fn rule(&mut self, m: &Entries) -> Option<Item> {
        let id = self.string(get(m, "rule")?, "a rule id")?;
        if !id
            .text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            self.err(
                id.loc.pos,
                "expected a rule id of letters, digits, `-`, `_` and `.`",
            );
        }
        let append = match get(m, "append") {
            Some(a) => self.boolean(a, "append")?,
            None => false,
        };
        if append {
            let mut ok = true;
            for (k, _) in m {
                let name = k.scalar().unwrap_or("");
                if RULE_KEYS.contains(&name) && !APPEND_KEYS.contains(&name) {
                    self.err(k.pos, format!("`{name}` cannot be appended: only {} can; to change `{name}`, redefine the rule (same id, without `append`)", one_of(&APPEND_KEYS[2..])));
                    ok = false;
                }
            }
            ok &= self.keys(m, RULE_KEYS);
            let tags = self.opt_strings(m, "tags")?;
            let except = self.blocks(m)?;
            let exceptions = self.exceptions(m, true)?;
            return ok.then_some(Item::Rule {
                id,
                body: RuleBody::Append {
                    tags,
                    except,
                    exceptions,
                },
            });
        }
        let ok = self.keys(m, RULE_KEYS);
        if get(m, "action").is_some()
            && m.iter().all(|(k, _)| matches!(k.scalar(), Some("rule" | "action" | "kill_scope")))
        {
            // the short form: a rule defined earlier gets another action
            // (the enforce profile's rules made alert-only, or the reverse)
            let action = self.action(m)?;
            let kill_scope = self.kill_scope(m)?;
            return ok.then_some(Item::Rule { id, body: RuleBody::SetAction { action, kill_scope } });
        }
        if m.iter()
            .all(|(k, _)| matches!(k.scalar(), Some("rule" | "enabled")))
        {
            let Some(e) = get(m, "enabled") else {
                self.err(id.loc.pos, format!("rule `{}` needs `description`, `severity` and `kind` (or only `enabled:` to switch a rule defined earlier on or off)", id.text));
                return None;
            };
            return Some(Item::Rule {
                id,
                body: RuleBody::Toggle(self.boolean(e, "enabled")?),
            });
        }
        let def = self.rule_def(&id, m);
        match def {
            Some(d) if ok => Some(Item::Rule {
                id,
                body: RuleBody::Define(Box::new(d)),
            }),
            _ => None,
        }
    }

    fn required<'n>(
        &mut self,
        m: &'n Entries,
        id: &Value,
        key: &str,
        hint: &str,
    ) -> Option<&'n Node> {
        let n = get(m, key);
        if n.is_none() {
            self.err(
                id.loc.pos,
                format!("rule `{}` is missing `{key}`{hint}", id.text),
            );
        }
        n
    }

    fn rule_def(&mut self, id: &Value, m: &Entries) -> Option<RuleDef> {
        let sev_hint = format!(" (one of {})", one_of(Severity::NAMES));
        let description = self.required(m, id, "description", "");
        let severity = self.required(m, id, "severity", &sev_hint);
        let kind = self.required(
            m,
            id,
            "kind",
            &format!(
                " (one or more of {})",
                one_of(EventKind::ALL.map(|k| k.name()))
            ),
        );
        let description = self.string(description?, "a description")?.text;
        let sev = severity?;
        let severity = match sev.scalar().and_then(Severity::from_name) {
            Some(s) => s,
            None => {
                self.err(
                    sev.pos,
                    format!(
                        "invalid severity, expected one of {}",
                        one_of(Severity::NAMES)
                    ),
                );
                return None;
            }
        };
        let kind = kind?;
        let kind_pos = kind.pos;
        let mut kinds = Vec::new();
        let values = self.values(kind, "an event kind")?;
        if values.is_empty() {
            self.err(kind_pos, format!("`kind` is empty: name one or more of {}", one_of(EventKind::ALL.map(|k| k.name()))));
            return None;
        }
        for v in values {
            match EventKind::from_name(&v.text) {
                Some(k) => kinds.push((k, v.loc)),
                None => self.err(
                    v.loc.pos,
                    format!(
                        "unknown event kind `{}`, expected one of {}",
                        v.text,
                        one_of(EventKind::ALL.map(|k| k.name()))
                    ),
                ),
            }
        }
        let action = self.action(m)?;
        let kill_scope = self.kill_scope(m)?.unwrap_or(KillScope::Process);
        let block = match get(m, "match") {
            Some(b) => Some(self.block(b)?),
            None => None,
        };
        let flag = |p: &mut Self, key: &str, default: bool| match get(m, key) {
            Some(n) => p.boolean(n, key),
            None => Some(default),
        };
        Some(RuleDef {
            description,
            severity,
            tags: self.opt_strings(m, "tags")?,
            kinds,
            block,
            after_first_request: flag(self, "after_first_request", false)?,
            except: self.blocks(m)?,
            exceptions: self.exceptions(m, false)?,
            action,
            kill_scope,
            enabled: flag(self, "enabled", true)?,
            supersedes: match get(m, "supersedes") {
                Some(n) => self.values(n, "a rule id")?,
                None => Vec::new(),
            },
        })
    }

    fn action(&mut self, m: &Entries) -> Option<Action> {
        Some(match get(m, "action") {
            None => Action::Alert,
            Some(n) => match n.scalar() {
                Some("alert") => Action::Alert,
                Some("kill") => Action::Kill,
                Some("deny") => Action::Deny,
                _ => {
                    self.err(n.pos, "invalid action, expected one of `alert`, `kill`, `deny`");
                    return None;
                }
            },
        })
    }

    /// `None` inside: not given.
    fn kill_scope(&mut self, m: &Entries) -> Option<Option<KillScope>> {
        Some(match get(m, "kill_scope") {
            None => None,
            Some(n) => Some(match n.scalar() {
                Some("process") => KillScope::Process,
                Some("tree") => KillScope::Tree,
                _ => {
                    self.err(n.pos, "invalid kill_scope, expected one of `process`, `tree`");
                    return None;
                }
            }),
        })
    }

    fn opt_strings(&mut self, m: &Entries, key: &str) -> Option<Vec<String>> {
        match get(m, key) {
            None => Some(Vec::new()),
            Some(n) => Some(self.values(n, key)?.into_iter().map(|v| v.text).collect()),
        }
    }
}
