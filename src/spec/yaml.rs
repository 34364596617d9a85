//! A YAML tree that remembers where every node came from.
//!
//! `serde_yaml` values carry no positions, and diagnostics such as "this domain is also used
//! in tenants/other.yaml" must point at a value. So berth parses with `saphyr-parser` (a pure
//! Rust YAML 1.2 event parser with spans) into this small tree, checks it against the JSON
//! Schema of the spec types (`schema_check`), and only then lets serde build the spec value.
//!
//! Hostile input is bounded here: nesting depth is capped, and alias expansion is charged
//! against a node budget, so a "billion laughs" file fails fast instead of eating memory.

use std::collections::BTreeMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

use super::source::Span;

/// Deepest nesting accepted. Real files use five or six levels.
pub const MAX_DEPTH: usize = 64;
/// Most nodes one file may expand to, aliases included.
pub const MAX_NODES: usize = 100_000;

/// A node and its byte span in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node's text is.
    pub span: Span,
    /// What it is.
    pub value: Value,
    /// How many nodes this subtree holds (itself included); charged when an alias copies it.
    pub size: usize,
}

/// YAML values.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Nothing at all (an empty document or a key with no value).
    Empty,
    /// A scalar; `plain` is false for quoted and block scalars, which are always strings.
    Scalar {
        /// The scalar's text after unescaping.
        text: String,
        /// Whether it was written without quotes (and so may be a number, bool or null).
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order (duplicates kept, so the checker can report them).
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The scalar text, when this is a scalar.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Look a key up in a mapping (first occurrence).
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The key node of `key` in a mapping (for pointing at the key rather than its value).
    #[must_use]
    pub fn key(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(k, _)| k),
            _ => None,
        }
    }

    /// Follow a path of keys (strings) and sequence indexes (numbers as strings).
    #[must_use]
    pub fn at(&self, path: &[&str]) -> Option<&Node> {
        let mut node = self;
        for part in path {
            node = match &node.value {
                Value::Map(_) => node.get(part)?,
                Value::Seq(items) => items.get(part.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(node)
    }
}

/// A YAML problem that stops the file from being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// Where.
    pub span: Span,
    /// What, lowercase.
    pub message: String,
    /// The label under the text.
    pub label: String,
}

/// Parse one YAML document into a spanned tree.
///
/// # Errors
/// Syntax errors, more than one document, tags, too deep nesting and alias bombs.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let offsets = CharOffsets::new(text);
    let mut builder = Builder {
        stack: Vec::new(),
        anchors: BTreeMap::new(),
        nodes: 0,
        root: None,
        documents: 0,
    };
    let mut parser = Parser::new_from_str(text);
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|err| {
            let at = offsets.byte(err.marker().index());
            YamlError {
                span: Span::new(at, at),
                message: format!("invalid YAML: {}", err.info()),
                label: "here".into(),
            }
        })?;
        let span = Span::new(
            offsets.byte(span.start.index()),
            offsets.byte(span.end.index()),
        );
        if builder.event(event, span)? {
            break;
        }
    }
    Ok(builder.root.unwrap_or(Node {
        span: Span::new(0, 0),
        value: Value::Empty,
        size: 1,
    }))
}

/// Saphyr reports positions in characters; diagnostics need bytes.
struct CharOffsets {
    /// Byte offset of each char index, only for non-ASCII text (ASCII maps 1:1).
    table: Option<Vec<usize>>,
    len: usize,
}

impl CharOffsets {
    fn new(text: &str) -> Self {
        let table = (!text.is_ascii()).then(|| text.char_indices().map(|(i, _)| i).collect());
        CharOffsets {
            table,
            len: text.len(),
        }
    }

    fn byte(&self, char_index: usize) -> usize {
        match &self.table {
            None => char_index.min(self.len),
            Some(table) => table.get(char_index).copied().unwrap_or(self.len),
        }
    }
}

enum Open {
    Seq {
        start: usize,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        start: usize,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
    },
}

struct Builder {
    stack: Vec<Open>,
    anchors: BTreeMap<usize, Node>,
    nodes: usize,
    root: Option<Node>,
    documents: usize,
}

impl Builder {
    /// Feed one event; returns true at the end of the stream.
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<bool, YamlError> {
        match event {
            Event::StreamEnd => return Ok(true),
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => {}
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(YamlError {
                        span,
                        message: "a berth file holds exactly one YAML document".into(),
                        label: "second document starts here".into(),
                    });
                }
            }
            Event::Alias(id) => {
                let Some(target) = self.anchors.get(&id).cloned() else {
                    return Err(YamlError {
                        span,
                        message: "alias refers to an unknown anchor".into(),
                        label: "unknown anchor".into(),
                    });
                };
                self.charge(target.size, span)?;
                let node = Node { span, ..target };
                self.push(node, 0)?;
            }
            Event::Scalar(text, style, anchor, tag) => {
                if let Some(tag) = tag {
                    let is_str = tag.is_yaml_core_schema() && tag.suffix == "str";
                    if !is_str {
                        return Err(YamlError {
                            span,
                            message: format!("YAML tag `{tag}` is not supported"),
                            label: "remove this tag".into(),
                        });
                    }
                    self.charge(1, span)?;
                    let value = Value::Scalar {
                        text: text.into_owned(),
                        plain: false,
                    };
                    return self.push(node(span, value, 1), anchor).map(|()| false);
                }
                self.charge(1, span)?;
                let value = Value::Scalar {
                    text: text.into_owned(),
                    plain: style == ScalarStyle::Plain,
                };
                self.push(node(span, value, 1), anchor)?;
            }
            Event::SequenceStart(anchor, tag) => {
                self.reject_tag(tag.as_deref(), span)?;
                self.open(span)?;
                self.stack.push(Open::Seq {
                    start: span.start,
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, tag) => {
                self.reject_tag(tag.as_deref(), span)?;
                self.open(span)?;
                self.stack.push(Open::Map {
                    start: span.start,
                    anchor,
                    entries: Vec::new(),
                    pending_key: None,
                });
            }
            Event::SequenceEnd => {
                if let Some(Open::Seq {
                    start,
                    anchor,
                    items,
                }) = self.stack.pop()
                {
                    let size = 1 + items.iter().map(|n| n.size).sum::<usize>();
                    let end = items
                        .last()
                        .map_or(span.end, |n| n.span.end.max(span.start));
                    self.push(node(Span::new(start, end), Value::Seq(items), size), anchor)?;
                }
            }
            Event::MappingEnd => {
                if let Some(Open::Map {
                    start,
                    anchor,
                    entries,
                    ..
                }) = self.stack.pop()
                {
                    let entries = merge_keys(entries);
                    let size = 1 + entries.iter().map(|(k, v)| k.size + v.size).sum::<usize>();
                    let end = entries
                        .last()
                        .map_or(span.end, |(_, v)| v.span.end.max(span.start));
                    self.push(
                        node(Span::new(start, end), Value::Map(entries), size),
                        anchor,
                    )?;
                }
            }
        }
        Ok(false)
    }

    fn reject_tag(&self, tag: Option<&saphyr_parser::Tag>, span: Span) -> Result<(), YamlError> {
        match tag {
            Some(tag) if !tag.is_yaml_core_schema() => Err(YamlError {
                span,
                message: format!("YAML tag `{tag}` is not supported"),
                label: "remove this tag".into(),
            }),
            _ => Ok(()),
        }
    }

    fn open(&mut self, span: Span) -> Result<(), YamlError> {
        self.charge(1, span)?;
        if self.stack.len() >= MAX_DEPTH {
            return Err(YamlError {
                span,
                message: format!("nesting deeper than {MAX_DEPTH} levels"),
                label: "too deep".into(),
            });
        }
        Ok(())
    }

    fn charge(&mut self, n: usize, span: Span) -> Result<(), YamlError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(YamlError {
                span,
                message: format!(
                    "file expands to more than {MAX_NODES} YAML nodes (an alias bomb?)"
                ),
                label: "expansion limit reached here".into(),
            });
        }
        Ok(())
    }

    fn push(&mut self, node: Node, anchor: usize) -> Result<(), YamlError> {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq { items, .. }) => items.push(node),
            Some(Open::Map {
                entries,
                pending_key,
                ..
            }) => match pending_key.take() {
                None => {
                    if !matches!(node.value, Value::Scalar { .. }) {
                        return Err(YamlError {
                            span: node.span,
                            message: "mapping keys must be plain strings".into(),
                            label: "complex key".into(),
                        });
                    }
                    *pending_key = Some(node);
                }
                Some(key) => entries.push((key, node)),
            },
        }
        Ok(())
    }
}

fn node(span: Span, value: Value, size: usize) -> Node {
    // A plain empty scalar (`key:` with nothing after it) is YAML's null.
    let value = match value {
        Value::Scalar { text, plain: true } if text.is_empty() => Value::Empty,
        other => other,
    };
    Node { span, value, size }
}

/// YAML 1.1 merge keys (`<<: *defaults`): entries of the merged maps that the map does not
/// set itself. Supported because anchors plus merges are how people share env blocks.
fn merge_keys(entries: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
    if !entries.iter().any(|(k, _)| k.as_str() == Some("<<")) {
        return entries;
    }
    let mut own = Vec::new();
    let mut merged = Vec::new();
    for (key, value) in entries {
        if key.as_str() == Some("<<") {
            let sources = match value.value {
                Value::Map(map) => vec![map],
                Value::Seq(items) => items
                    .into_iter()
                    .filter_map(|n| match n.value {
                        Value::Map(map) => Some(map),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            merged.extend(sources.into_iter().flatten());
        } else {
            own.push((key, value));
        }
    }
    for (key, value) in merged {
        let exists = own.iter().any(|(k, _)| k.as_str() == key.as_str());
        if !exists {
            own.push((key, value));
        }
    }
    own
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_point_at_values() {
        let text = "a: 1\nb:\n  c: hello\n";
        let root = parse(text).unwrap();
        let c = root.at(&["b", "c"]).unwrap();
        assert_eq!(&text[c.span.start..c.span.end], "hello");
    }

    #[test]
    fn non_ascii_spans_are_bytes() {
        let text = "name: Zürich AG\nx: y\n";
        let root = parse(text).unwrap();
        let x = root.get("x").unwrap();
        assert_eq!(&text[x.span.start..x.span.end], "y");
    }

    #[test]
    fn alias_bomb_is_bounded() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for name in ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'] {
            text.push_str(&format!(
                "{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = name;
        }
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("alias bomb"), "{err:?}");
    }

    #[test]
    fn merge_keys_fill_missing_entries() {
        let text = "base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n";
        let root = parse(text).unwrap();
        assert_eq!(root.at(&["m", "x"]).unwrap().as_str(), Some("1"));
        assert_eq!(root.at(&["m", "y"]).unwrap().as_str(), Some("3"));
    }
}
