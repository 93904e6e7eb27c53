//! Layering of rule files: the default pack first, then user files in the
//! order given. A later file replaces a rule, list or macro by reusing its
//! name, extends one with `append: true`, or switches a rule off; within one
//! file a name may be defined only once.

use std::collections::HashMap;
use std::sync::Arc;

use super::ast::{ExceptionDef, Item, RuleBody, RuleDef, Value};
use super::error::Diag;
use super::yaml::Pos;

pub(crate) struct MergedList {
    pub items: Vec<Value>,
}

pub(crate) struct MergedRule {
    pub id: Value,
    pub def: RuleDef,
}

#[derive(Default)]
pub(crate) struct Merged {
    pub lists: HashMap<String, MergedList>,
    pub macros: HashMap<String, (Value, super::ast::Block)>,
    pub rules: Vec<MergedRule>,
}

impl Merged {
    fn rule_mut(&mut self, id: &str) -> Option<&mut MergedRule> {
        self.rules.iter_mut().find(|r| r.id.text == id)
    }
}

/// Applies one file's items on top of what earlier files defined.
pub(crate) fn apply(m: &mut Merged, file: &Arc<str>, items: Vec<Item>, diag: &mut Diag) {
    // (namespace, name) -> where this file defined it first
    let mut defined_here: HashMap<(&'static str, String), Pos> = HashMap::new();
    let mut dup = |diag: &mut Diag, ns: &'static str, v: &Value| {
        if let Some(first) = defined_here.insert((ns, v.text.clone()), v.loc.pos) {
            diag.err(
                file,
                v.loc.pos,
                format!(
                    "duplicate {ns} `{}` in this file (first defined at line {})",
                    v.text, first.line
                ),
            );
            return true;
        }
        false
    };
    for item in items {
        match item {
            Item::List {
                name,
                items,
                append: true,
            } => match m.lists.get_mut(&name.text) {
                Some(l) => l.items.extend(items),
                None => diag.err(
                    file,
                    name.loc.pos,
                    format!(
                        "cannot append to list `{}`: it is not defined in this or an earlier file",
                        name.text
                    ),
                ),
            },
            Item::List {
                name,
                items,
                append: false,
            } => {
                if !dup(diag, "list", &name) {
                    m.lists.insert(name.text.clone(), MergedList { items });
                }
            }
            Item::Macro { name, block } => {
                if !dup(diag, "macro", &name) {
                    m.macros.insert(name.text.clone(), (name, block));
                }
            }
            Item::Rule {
                id,
                body: RuleBody::Define(def),
            } => {
                if dup(diag, "rule", &id) {
                    continue;
                }
                match m.rule_mut(&id.text) {
                    Some(r) => *r = MergedRule { id, def: *def },
                    None => m.rules.push(MergedRule { id, def: *def }),
                }
            }
            Item::Rule {
                id,
                body: RuleBody::Toggle(on),
            } => match m.rule_mut(&id.text) {
                Some(r) => r.def.enabled = on,
                None => diag.err(file, id.loc.pos, undefined_rule(&id.text)),
            },
            Item::Rule {
                id,
                body: RuleBody::SetAction { action, kill_scope },
            } => match m.rule_mut(&id.text) {
                Some(r) => {
                    r.def.action = action;
                    if let Some(s) = kill_scope {
                        r.def.kill_scope = s;
                    }
                }
                None => diag.err(file, id.loc.pos, undefined_rule(&id.text)),
            },
            Item::Rule {
                id,
                body:
                    RuleBody::Append {
                        tags,
                        except,
                        exceptions,
                    },
            } => {
                let Some(r) = m.rule_mut(&id.text) else {
                    diag.err(file, id.loc.pos, undefined_rule(&id.text));
                    continue;
                };
                r.def.tags.extend(tags);
                r.def.except.extend(except);
                for e in exceptions {
                    append_exception(&mut r.def, e, file, diag);
                }
            }
            Item::Disable(ids) => {
                for id in ids {
                    match m.rule_mut(&id.text) {
                        Some(r) => r.def.enabled = false,
                        None => diag.err(file, id.loc.pos, undefined_rule(&id.text)),
                    }
                }
            }
        }
    }
}

fn undefined_rule(id: &str) -> String {
    format!("rule `{id}` is not defined in this or an earlier file")
}

fn append_exception(def: &mut RuleDef, e: ExceptionDef, file: &Arc<str>, diag: &mut Diag) {
    match def
        .exceptions
        .iter_mut()
        .find(|x| x.name.text == e.name.text)
    {
        Some(_) if e.fields.is_some() => diag.err(
            file,
            e.name.loc.pos,
            format!(
                "exception `{}` already exists: omit `fields` to add values to it",
                e.name.text
            ),
        ),
        Some(x) => x.rows.extend(e.rows),
        None if e.fields.is_none() => diag.err(
            file,
            e.name.loc.pos,
            format!(
                "exception `{}` is not defined on this rule: give its `fields` to define it",
                e.name.text
            ),
        ),
        None => def.exceptions.push(e),
    }
}
