//! The rule-file format, continued: `match:` blocks (fields, `any`, `not`,
//! `macro`), `except:` lists and Falco-style `exceptions:`.

use super::ast::{Block, Cond, ExceptionDef};
use super::fields::{one_of, Field};
use super::format::{get, Entries, P};
use super::yaml::{Node, NodeKind};

const EXCEPTION_KEYS: &[&str] = &["name", "fields", "values"];

impl P<'_> {
    /// `except:` — a list of match blocks, any of which suppresses the rule.
    pub(super) fn blocks(&mut self, m: &Entries) -> Option<Vec<Block>> {
        let Some(n) = get(m, "except") else {
            return Some(Vec::new());
        };
        match &n.kind {
            NodeKind::Seq(items) => items.iter().map(|b| self.block(b)).collect(),
            _ => {
                self.err(
                    n.pos,
                    format!(
                        "expected a list of match blocks for `except`, found {}",
                        n.what()
                    ),
                );
                None
            }
        }
    }

    pub(super) fn block(&mut self, n: &Node) -> Option<Block> {
        let m = self.map(n, "a match block")?;
        let mut conds = Vec::new();
        let mut ok = true;
        for (k, v) in m {
            let key = k.scalar().unwrap_or("");
            let loc = self.loc(k.pos);
            let cond = match key {
                "any" => match &v.kind {
                    NodeKind::Seq(items) => items
                        .iter()
                        .map(|b| self.block(b))
                        .collect::<Option<Vec<_>>>()
                        .map(Cond::Any),
                    _ => {
                        self.err(
                            v.pos,
                            format!(
                                "expected a list of match blocks for `any`, found {}",
                                v.what()
                            ),
                        );
                        None
                    }
                },
                "not" => self.block(v).map(|b| Cond::Not(Box::new(b))),
                "macro" => self.values(v, "a macro name").map(Cond::Macro),
                _ => match Field::from_name(key) {
                    Some(field) => {
                        self.values(v, "a value")
                            .map(|values| Cond::Field { field, loc, values })
                    }
                    None => {
                        let names = Field::ALL
                            .iter()
                            .map(|f| f.name())
                            .chain(["any", "not", "macro"]);
                        self.err(
                            k.pos,
                            format!("unknown field `{key}`, expected one of {}", one_of(names)),
                        );
                        None
                    }
                },
            };
            match cond {
                Some(c) => conds.push(c),
                None => ok = false,
            }
        }
        ok.then_some(Block { conds })
    }

    /// Falco-style `exceptions:` — named tuples of fields and value rows.
    pub(super) fn exceptions(&mut self, m: &Entries, appending: bool) -> Option<Vec<ExceptionDef>> {
        let Some(n) = get(m, "exceptions") else {
            return Some(Vec::new());
        };
        let NodeKind::Seq(items) = &n.kind else {
            self.err(
                n.pos,
                format!("expected a list of exceptions, found {}", n.what()),
            );
            return None;
        };
        let mut out = Vec::new();
        for it in items {
            let e = self.map(it, "an exception")?;
            self.keys(e, EXCEPTION_KEYS).then_some(())?;
            let Some(name) = get(e, "name") else {
                self.err(it.pos, "exception is missing `name`");
                return None;
            };
            let name = self.string(name, "an exception name")?;
            let fields = match get(e, "fields") {
                None if appending => None,
                None => {
                    self.err(
                        it.pos,
                        format!("exception `{}` is missing `fields`", name.text),
                    );
                    return None;
                }
                Some(f) => {
                    let mut fs = Vec::new();
                    for v in self.values(f, "a field name")? {
                        match Field::from_name(&v.text) {
                            Some(fd) => fs.push((fd, v.loc)),
                            None => {
                                self.err(
                                    v.loc.pos,
                                    format!(
                                        "unknown field `{}`, expected one of {}",
                                        v.text,
                                        one_of(Field::ALL.iter().map(|f| f.name()))
                                    ),
                                );
                                return None;
                            }
                        }
                    }
                    Some(fs)
                }
            };
            let mut rows = Vec::new();
            if let Some(vs) = get(e, "values") {
                let NodeKind::Seq(rs) = &vs.kind else {
                    self.err(
                        vs.pos,
                        format!("expected a list of value rows, found {}", vs.what()),
                    );
                    return None;
                };
                for r in rs {
                    let cells = match &r.kind {
                        NodeKind::Seq(cells) => cells
                            .iter()
                            .map(|c| self.values(c, "a value"))
                            .collect::<Option<Vec<_>>>()?,
                        _ => vec![self.values(r, "a value")?],
                    };
                    rows.push((self.loc(r.pos), cells));
                }
            }
            out.push(ExceptionDef { name, fields, rows });
        }
        Some(out)
    }
}
