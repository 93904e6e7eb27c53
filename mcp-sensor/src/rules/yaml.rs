//! A YAML node tree that remembers where every node came from.
//!
//! Rule files are mapped by hand from this tree rather than through serde so
//! that every error (an unknown field, a bad glob deep inside a list) can
//! name the exact line and column, and so that scalars keep their source
//! text: `443`, `"443"` and `true` are all just text until a field decides
//! what it wants.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// A 1-based line and column in a rule file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    fn of(span: &Span) -> Pos {
        Pos {
            line: span.start.line() as u32,
            col: span.start.col() as u32 + 1,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub pos: Pos,
    pub kind: NodeKind,
}

#[derive(Debug, Clone)]
pub(crate) enum NodeKind {
    /// `plain` is false for quoted and block scalars: `"null"` is a string.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    pub fn scalar(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// `key:` with nothing after it, or `~` / `null`.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What this node is, for "expected X, found Y" messages.
    pub fn what(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar { .. } if self.is_null() => "nothing",
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

/// Parses one YAML document. `Ok(None)` for an empty file.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, (Pos, String)> {
    let mut b = Builder::default();
    for item in Parser::new_from_str(text) {
        let (ev, span) = item.map_err(|e| {
            let m = e.marker();
            (
                Pos {
                    line: m.line() as u32,
                    col: m.col() as u32 + 1,
                },
                e.info().to_string(),
            )
        })?;
        b.event(ev, span)?;
    }
    Ok(b.root)
}

enum Open {
    Seq(Node, usize),
    /// The mapping, its anchor, and a key waiting for its value.
    Map(Node, usize, Option<Node>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: Vec<(usize, Node)>,
    root: Option<Node>,
    docs: usize,
}

impl Builder {
    fn event(&mut self, ev: Event<'_>, span: Span) -> Result<(), (Pos, String)> {
        let pos = Pos::of(&span);
        match ev {
            Event::DocumentStart(_) => {
                self.docs += 1;
                if self.docs > 1 {
                    return Err((
                        pos,
                        "expected one YAML document per rule file, found a second".into(),
                    ));
                }
            }
            Event::Scalar(v, style, anchor, _tag) => {
                let plain = matches!(style, ScalarStyle::Plain);
                let node = Node {
                    pos,
                    kind: NodeKind::Scalar {
                        text: v.into_owned(),
                        plain,
                    },
                };
                self.push(node, anchor)?;
            }
            Event::Alias(id) => {
                let node = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(a, _)| *a == id)
                    .map(|(_, n)| n.clone())
                    .ok_or((pos, "alias to an unknown anchor".to_string()))?;
                self.push(node, 0)?;
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq(
                Node {
                    pos,
                    kind: NodeKind::Seq(Vec::new()),
                },
                anchor,
            )),
            Event::MappingStart(anchor, _) => self.stack.push(Open::Map(
                Node {
                    pos,
                    kind: NodeKind::Map(Vec::new()),
                },
                anchor,
                None,
            )),
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Open::Seq(n, a)) | Some(Open::Map(n, a, None)) => self.push(n, a)?,
                _ => return Err((pos, "unbalanced YAML structure".into())),
            },
            _ => {}
        }
        Ok(())
    }

    fn push(&mut self, node: Node, anchor: usize) -> Result<(), (Pos, String)> {
        if anchor != 0 {
            self.anchors.push((anchor, node.clone()));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq(
                Node {
                    kind: NodeKind::Seq(items),
                    ..
                },
                _,
            )) => items.push(node),
            Some(Open::Map(map, _, pending)) => match pending.take() {
                None => {
                    let NodeKind::Map(entries) = &map.kind else {
                        unreachable!()
                    };
                    if let Some(k) = node.scalar() {
                        if let Some((prev, _)) = entries.iter().find(|(p, _)| p.scalar() == Some(k))
                        {
                            return Err((
                                node.pos,
                                format!("duplicate key `{k}` (first at line {})", prev.pos.line),
                            ));
                        }
                    }
                    *pending = Some(node);
                }
                Some(key) => {
                    let NodeKind::Map(entries) = &mut map.kind else {
                        unreachable!()
                    };
                    entries.push((key, node));
                }
            },
            Some(Open::Seq(..)) => unreachable!(),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let n = parse("- rule: a\n  tags: [x, y]\n").unwrap().unwrap();
        let NodeKind::Seq(items) = &n.kind else {
            panic!()
        };
        let NodeKind::Map(m) = &items[0].kind else {
            panic!()
        };
        assert_eq!(m[0].0.pos, Pos { line: 1, col: 3 });
        assert_eq!(m[1].1.pos, Pos { line: 2, col: 9 });
        let NodeKind::Seq(tags) = &m[1].1.kind else {
            panic!()
        };
        assert_eq!(tags[1].pos, Pos { line: 2, col: 13 });
    }

    #[test]
    fn duplicate_keys_and_syntax_errors_have_positions() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.0, Pos { line: 3, col: 1 });
        assert!(e.1.contains("duplicate key `a`"), "{}", e.1);
        assert!(parse("a: [1, 2\n").is_err());
    }

    #[test]
    fn aliases_and_quoting() {
        let n = parse("a: &x [1, 2]\nb: *x\nc: \"null\"\nd:\n")
            .unwrap()
            .unwrap();
        let NodeKind::Map(m) = &n.kind else { panic!() };
        assert!(matches!(&m[1].1.kind, NodeKind::Seq(v) if v.len() == 2));
        assert!(!m[2].1.is_null());
        assert!(m[3].1.is_null());
    }
}
