//! Compiles merged rules into condition trees of precompiled matchers:
//! expands `$list` references and macros, checks every value (glob, regex,
//! CIDR, port, enum) at its own position, and checks that each field
//! applies to the rule's event kinds.

use regex::Regex;

use super::ast::{Block, Cond as Ast, Loc, Value};
use super::error::Diag;
use super::fields::{kind_names, one_of, Field, ValueType};
use super::matchers::{check_regex, glob, regex_any, IpSet, PathMatch, PortSet, StrMatch};
use super::merge::Merged;
use super::{Rule, RuleSet};

/// A compiled condition.
#[derive(Debug, Clone)]
pub(crate) enum Cond {
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    Leaf(Leaf),
}

/// A compiled field test.
#[derive(Debug, Clone)]
pub(crate) enum Leaf {
    Str(Field, StrMatch),
    Path(Field, PathMatch),
    Regex(Field, Regex),
    /// Bit i set: the i-th name of the field's enum table.
    Enum(Field, u32),
    Bool(Field, bool),
    Uid(Vec<u32>),
    Addr(IpSet),
    Port(PortSet),
    /// Literal paths, and their indices in [`RuleSet::identity_paths`].
    File(PathMatch, Vec<u32>),
}

pub(crate) struct CompiledRule {
    pub info: Rule,
    pub kinds: u16,
    pub after_first_request: bool,
    pub cond: Cond,
    pub except: Vec<Cond>,
}

struct Compiler<'m, 'd> {
    m: &'m Merged,
    diag: &'d mut Diag,
    identity_paths: Vec<String>,
    /// Macros being expanded, to report cycles instead of overflowing.
    macro_stack: Vec<String>,
    rule_id: String,
    kinds: u16,
}

pub(crate) fn compile(m: &Merged, diag: &mut Diag) -> RuleSet {
    let mut c = Compiler {
        m,
        diag,
        identity_paths: Vec::new(),
        macro_stack: Vec::new(),
        rule_id: String::new(),
        kinds: 0,
    };
    let mut rules = Vec::new();
    for r in &m.rules {
        let d = &r.def;
        c.rule_id = r.id.text.clone();
        c.kinds = d.kinds.iter().fold(0, |acc, (k, _)| acc | k.bit());
        let cond = match &d.block {
            Some(b) => c.block(b),
            None => Cond::All(Vec::new()),
        };
        let mut except: Vec<Cond> = d.except.iter().map(|b| c.block(b)).collect();
        for e in &d.exceptions {
            let Some(fields) = &e.fields else { continue };
            // Checked once here, even with no rows yet, rather than per row.
            let applies: Vec<bool> = fields
                .iter()
                .map(|(f, floc)| c.check_kind(*f, floc).is_some())
                .collect();
            for (loc, cells) in &e.rows {
                if cells.len() != fields.len() {
                    let names: Vec<&str> = fields.iter().map(|(f, _)| f.name()).collect();
                    c.err(
                        loc,
                        format!(
                            "expected {} values (one per field: {}), found {}",
                            fields.len(),
                            names.join(", "),
                            cells.len()
                        ),
                    );
                    continue;
                }
                let mut conds = Vec::new();
                for (((f, _), vals), ok) in fields.iter().zip(cells).zip(&applies) {
                    let at = vals.first().map_or(loc, |v| &v.loc);
                    let leaf = if *ok {
                        c.values_leaf(*f, at, vals)
                    } else {
                        None
                    };
                    conds.push(leaf.unwrap_or(Cond::Any(Vec::new())));
                }
                except.push(Cond::All(conds));
            }
        }
        if d.action == super::Action::Deny && d.kinds.iter().any(|(k, _)| *k != super::EventKind::Connect) {
            c.err(
                &r.id.loc,
                format!("rule `{}` has `action: deny`, which only refuses connects: use `kind: connect`, or `action: kill`", r.id.text),
            );
        }
        if d.action != super::Action::Kill && d.kill_scope == super::KillScope::Tree {
            // An error, not a note: the author expected enforcement and
            // would silently get monitoring.
            c.err(
                &r.id.loc,
                format!(
                    "rule `{}` has `kill_scope: tree` but `action: alert`: add `action: kill` to enforce",
                    r.id.text
                ),
            );
        }
        for s in &d.supersedes {
            if s.text == r.id.text {
                c.err(&s.loc, format!("rule `{}` supersedes itself", r.id.text));
            } else if !m.rules.iter().any(|o| o.id.text == s.text) {
                c.err(&s.loc, format!("`supersedes`: no rule `{}` is defined (rule ids are case-sensitive)", s.text));
            } else if supersedes_path(m, &s.text, &r.id.text) {
                c.err(&s.loc, format!("`supersedes`: rule `{}` already supersedes `{}`, directly or through others: a cycle has no alert to stand", s.text, r.id.text));
            }
        }
        rules.push(CompiledRule {
            info: Rule {
                id: r.id.text.clone(),
                description: d.description.clone(),
                severity: d.severity,
                tags: d.tags.clone(),
                kinds: d.kinds.iter().map(|(k, _)| *k).collect(),
                action: d.action,
                kill_scope: d.kill_scope,
                enabled: d.enabled,
                supersedes: d.supersedes.iter().map(|v| v.text.clone()).collect(),
            },
            kinds: c.kinds,
            after_first_request: d.after_first_request,
            cond,
            except,
        });
    }
    RuleSet::new(rules, c.identity_paths)
}

impl<'m> Compiler<'m, '_> {
    fn err(&mut self, loc: &Loc, msg: impl Into<String>) {
        self.diag.err(&loc.file, loc.pos, msg)
    }

    fn block(&mut self, b: &'m Block) -> Cond {
        let mut all = Vec::with_capacity(b.conds.len());
        for c in &b.conds {
            match c {
                Ast::Field { field, loc, values } => {
                    if let Some(c) = self.field(*field, loc, values) {
                        all.push(c);
                    }
                }
                Ast::Any(blocks) => {
                    all.push(Cond::Any(blocks.iter().map(|b| self.block(b)).collect()))
                }
                Ast::Not(b) => all.push(Cond::Not(Box::new(self.block(b)))),
                Ast::Macro(names) => {
                    for n in names {
                        all.push(self.macro_(n));
                    }
                }
            }
        }
        if all.len() == 1 {
            all.pop().unwrap()
        } else {
            Cond::All(all)
        }
    }

    fn macro_(&mut self, name: &'m Value) -> Cond {
        let m = self.m;
        let Some((_, block)) = m.macros.get(&name.text) else {
            self.err(&name.loc, format!("undefined macro `{}`", name.text));
            return Cond::All(Vec::new());
        };
        if self.macro_stack.contains(&name.text) {
            self.err(
                &name.loc,
                format!(
                    "macro `{}` refers to itself (through {})",
                    name.text,
                    self.macro_stack.join(" -> ")
                ),
            );
            return Cond::All(Vec::new());
        }
        self.macro_stack.push(name.text.clone());
        let c = self.block(block);
        self.macro_stack.pop();
        c
    }

    /// Expands `$list` references (recursively); `$$x` is the literal `$x`.
    fn expand(&mut self, values: &'m [Value], out: &mut Vec<&'m Value>, stack: &mut Vec<&'m str>) {
        let lists = &self.m.lists;
        for v in values {
            match v.text.strip_prefix('$') {
                Some(name) if !name.starts_with('$') => {
                    let Some(l) = lists.get(name) else {
                        self.err(&v.loc, format!("undefined list `{name}`"));
                        continue;
                    };
                    if stack.contains(&name) {
                        self.err(&v.loc, format!("list `{name}` contains itself"));
                        continue;
                    }
                    stack.push(name);
                    self.expand(&l.items, out, stack);
                    stack.pop();
                }
                _ => out.push(v),
            }
        }
    }

    fn check_kind(&mut self, field: Field, loc: &Loc) -> Option<()> {
        let fk = field.kinds();
        if fk != 0 && fk & self.kinds == 0 {
            let msg = format!(
                "field `{}` applies to kind {}, but rule `{}` matches kind {}",
                field.name(),
                kind_names(fk),
                self.rule_id,
                kind_names(self.kinds)
            );
            self.err(loc, msg);
            return None;
        }
        Some(())
    }

    fn field(&mut self, field: Field, loc: &Loc, values: &'m [Value]) -> Option<Cond> {
        self.check_kind(field, loc)?;
        self.values_leaf(field, loc, values)
    }

    /// A set built from every value, each bad one reported where it stands.
    fn fill<S: Default>(&mut self, vals: &[&Value], add: fn(&mut S, &str) -> Result<(), String>) -> S {
        let mut set = S::default();
        for v in vals {
            if let Err(e) = add(&mut set, text(v)) {
                self.err(&v.loc, e);
            }
        }
        set
    }

    fn values_leaf(&mut self, field: Field, loc: &Loc, values: &'m [Value]) -> Option<Cond> {
        let mut vals = Vec::new();
        self.expand(values, &mut vals, &mut Vec::new());
        let mut ok = true;
        let leaf = match field.value_type() {
            ValueType::Str | ValueType::PathGlob => {
                let path = field.value_type() == ValueType::PathGlob;
                for v in &vals {
                    if let Err(e) = glob(text(v), path) {
                        self.err(&v.loc, e);
                        ok = false;
                    }
                }
                if !ok {
                    return None;
                }
                if path {
                    Leaf::Path(field, PathMatch::new(vals.iter().map(text)))
                } else {
                    Leaf::Str(field, StrMatch::new(vals.iter().map(text)))
                }
            }
            ValueType::FileIdentity => {
                let mut ids = Vec::new();
                for v in &vals {
                    let t = text(v);
                    if !t.starts_with('/') || t.contains(['*', '?', '[', '{']) {
                        self.err(&v.loc, format!("invalid file `{t}`, expected an absolute path without wildcards (its identity is looked up at run time)"));
                        ok = false;
                        continue;
                    }
                    let i = match self.identity_paths.iter().position(|p| p == t) {
                        Some(i) => i,
                        None => {
                            self.identity_paths.push(t.to_string());
                            self.identity_paths.len() - 1
                        }
                    };
                    ids.push(i as u32);
                }
                if !ok {
                    return None;
                }
                Leaf::File(PathMatch::new(vals.iter().map(text)), ids)
            }
            ValueType::Regex => {
                for v in &vals {
                    if let Err(e) = check_regex(text(v)) {
                        self.err(&v.loc, e);
                        ok = false;
                    }
                }
                if !ok {
                    return None;
                }
                Leaf::Regex(field, regex_any(vals.iter().map(text)))
            }
            ValueType::Cidr => Leaf::Addr(self.fill(&vals, IpSet::add)),
            ValueType::Port => Leaf::Port(self.fill(&vals, PortSet::add)),
            ValueType::Uint => {
                let mut u = Vec::new();
                for v in &vals {
                    match text(v).parse::<u32>() {
                        Ok(n) => u.push(n),
                        Err(_) => self.err(
                            &v.loc,
                            format!(
                                "invalid `{}` value `{}`, expected a number",
                                field.name(),
                                text(v)
                            ),
                        ),
                    }
                }
                Leaf::Uid(u)
            }
            ValueType::Bool => {
                let b = match vals.as_slice() {
                    [v] if matches!(text(v), "true" | "false") => text(v) == "true",
                    _ => {
                        self.err(
                            loc,
                            format!("expected `true` or `false` for `{}`", field.name()),
                        );
                        return None;
                    }
                };
                Leaf::Bool(field, b)
            }
            ValueType::Enum(names) => {
                let mut mask = 0u32;
                for v in &vals {
                    match names.iter().position(|n| *n == text(v)) {
                        Some(i) => mask |= 1 << i,
                        None => {
                            self.err(
                                &v.loc,
                                format!(
                                    "invalid `{}` value `{}`, expected one of {}",
                                    field.name(),
                                    text(v),
                                    one_of(names.iter())
                                ),
                            );
                            ok = false;
                        }
                    }
                }
                Leaf::Enum(field, mask)
            }
        };
        ok.then_some(Cond::Leaf(leaf))
    }
}

/// A value's literal text: `$$x` stands for `$x`.
/// Whether rule `from` supersedes rule `to`, directly or through a chain
/// of rules that supersede each other.
fn supersedes_path(m: &Merged, from: &str, to: &str) -> bool {
    let mut seen: Vec<&str> = Vec::new();
    let mut todo = vec![from];
    while let Some(id) = todo.pop() {
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        for r in m.rules.iter().filter(|r| r.id.text == id) {
            for s in &r.def.supersedes {
                if s.text == to {
                    return true;
                }
                todo.push(&s.text);
            }
        }
    }
    false
}

fn text<'a>(v: &&'a Value) -> &'a str {
    v.text
        .strip_prefix('$')
        .filter(|t| t.starts_with('$'))
        .unwrap_or(&v.text)
}
