//! Stage 1 of loading: YAML text → a small document tree that keeps the
//! position of every node.
//!
//! Why not deserialize straight into structs with serde? Because every later
//! diagnostic (a typo'd field deep inside a folded `condition: >` block, a
//! list where a string was expected) must point at `file:line:col`, and serde
//! drops positions. The event-level parser of `yaml-rust2` hands us a marker
//! for every scalar and collection start; we build our own tree from those
//! events and keep the source text so that offsets inside a condition string
//! can be mapped back to the line and column they came from.

use std::collections::HashMap;
use std::sync::Arc;

use yaml_rust2::parser::{Event as YEvent, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One loaded rules file: its display name and full text.
#[derive(Debug)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
    /// Byte offset of the start of each line (for position maps).
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Arc<SourceFile> {
        let text = text.into();
        let mut line_starts = vec![0];
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                line_starts.push(i + 1);
            }
        }
        Arc::new(SourceFile {
            name: name.into(),
            text,
            line_starts,
        })
    }

    /// Byte offset of (1-based line, 0-based char column).
    fn byte_of(&self, line: usize, col: usize) -> Option<usize> {
        let start = *self.line_starts.get(line.checked_sub(1)?)?;
        let rest = self.text.get(start..)?;
        let mut it = rest.char_indices();
        for _ in 0..col {
            it.next()?;
        }
        Some(start + it.next().map(|(i, _)| i).unwrap_or(rest.len()))
    }
}

/// A position in a source file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Mark {
    pub line: u32,
    pub col: u32,
}

impl Mark {
    fn from_marker(m: &Marker) -> Mark {
        Mark {
            line: m.line() as u32,
            col: m.col() as u32 + 1,
        }
    }
}

/// Scalar quoting style (block scalars are `Literal`/`Folded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    Scalar(String, Style),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// A YAML node with the position where it starts.
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: NodeKind,
    pub mark: Mark,
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(s, _) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar(s, Style::Plain) if s.is_empty() || s == "~" || s == "null")
    }

    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar(..) => "a scalar",
            NodeKind::Seq(_) => "a sequence",
            NodeKind::Map(_) => "a mapping",
        }
    }

    /// Look a key up in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// A parse failure with its position.
#[derive(Debug, Clone)]
pub struct YamlError {
    pub mark: Mark,
    pub message: String,
}

enum Frame {
    Seq(Vec<Node>, Mark, usize),
    Map(Vec<(Node, Node)>, Option<Node>, Mark, usize),
}

/// Most alias events (`*name`) one YAML stream may hold. Falco's rule files
/// use none; a config file a handful.
pub const MAX_ALIASES: usize = 10_000;

/// Most bytes the tree may grow by through copies made for anchors and
/// aliases (a node counts [`NODE_COST`] bytes plus its scalar text). A
/// "billion laughs" file of a few hundred bytes asks for gigabytes; it stops
/// here, at the alias that crosses the bound, with that alias's position.
pub const MAX_ALIAS_BYTES: usize = 32 << 20;

/// Deepest nesting of sequences and mappings (Falco's files nest 5 deep);
/// keeps every later recursive walk of the tree shallow.
pub const MAX_DEPTH: usize = 128;

/// What one node costs in [`MAX_ALIAS_BYTES`]' accounting, besides its text.
const NODE_COST: usize = 48;

/// The size a copy of `node` adds to the tree, in bytes (estimated).
fn weight(node: &Node) -> usize {
    NODE_COST
        + match &node.kind {
            NodeKind::Scalar(s, _) => s.len(),
            NodeKind::Seq(items) => items.iter().map(weight).sum(),
            NodeKind::Map(entries) => entries.iter().map(|(k, v)| weight(k) + weight(v)).sum(),
        }
}

/// Builds the tree from the parser's events, copying anchored nodes for
/// their aliases within the bounds above.
#[derive(Default)]
struct Builder<'s> {
    /// Spaces added per line (0-based) by [`crate::yaml_flow`]: marks are
    /// moved back by as much.
    shifts: &'s [u32],
    stack: Vec<Frame>,
    docs: Vec<Node>,
    /// Anchored nodes by the parser's anchor id, with their weight.
    anchors: HashMap<usize, (Node, usize)>,
    aliases: usize,
    copied: usize,
}

impl Builder<'_> {
    /// Charge `bytes` of copying at `mark` against [`MAX_ALIAS_BYTES`].
    fn charge(&mut self, bytes: usize, mark: Mark) -> Result<(), YamlError> {
        self.copied = self.copied.saturating_add(bytes);
        if self.copied > MAX_ALIAS_BYTES {
            return Err(YamlError {
                mark,
                message: format!(
                    "anchors and aliases expand the document by more than {} MiB; refusing to expand further",
                    MAX_ALIAS_BYTES >> 20
                ),
            });
        }
        Ok(())
    }

    fn push_node(&mut self, node: Node, anchor: usize) -> Result<(), YamlError> {
        if anchor != 0 {
            let w = weight(&node);
            self.charge(w, node.mark)?;
            self.anchors.insert(anchor, (node.clone(), w));
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq(items, _, _)) => items.push(node),
            Some(Frame::Map(entries, key, _, _)) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
        Ok(())
    }

    fn open(&mut self, frame: Frame, mark: Mark) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(YamlError {
                mark,
                message: format!("sequences and mappings nested deeper than {MAX_DEPTH} levels"),
            });
        }
        self.stack.push(frame);
        Ok(())
    }

    fn alias(&mut self, id: usize, mark: Mark) -> Result<(), YamlError> {
        self.aliases += 1;
        if self.aliases > MAX_ALIASES {
            return Err(YamlError {
                mark,
                message: format!("more than {MAX_ALIASES} aliases"),
            });
        }
        let Some(&(_, w)) = self.anchors.get(&id) else {
            return Err(YamlError {
                mark,
                message: "alias refers to an unknown anchor".into(),
            });
        };
        self.charge(w, mark)?;
        let mut node = self.anchors[&id].0.clone();
        node.mark = mark;
        self.push_node(node, 0)
    }

    fn close(&mut self) -> Result<(), YamlError> {
        let (node, anchor) = match self.stack.pop() {
            Some(Frame::Seq(items, mark, anchor)) => (
                Node {
                    kind: NodeKind::Seq(items),
                    mark,
                },
                anchor,
            ),
            Some(Frame::Map(entries, _, start, anchor)) => {
                // The parser reports a block mapping's start after its
                // first key; the first key's mark is the better anchor.
                let mark = entries.first().map(|(k, _)| k.mark).unwrap_or(start);
                (
                    Node {
                        kind: NodeKind::Map(entries),
                        mark,
                    },
                    anchor,
                )
            }
            None => return Ok(()),
        };
        self.push_node(node, anchor)
    }

    /// A parser marker as a position in the original text.
    fn mark(&self, marker: &Marker) -> Mark {
        let mut mark = Mark::from_marker(marker);
        let shift = self.shifts.get(marker.line().wrapping_sub(1)).copied();
        if let Some(s) = shift.filter(|&s| mark.col > s) {
            mark.col -= s;
        }
        mark
    }

    fn event(&mut self, ev: YEvent, marker: Marker) -> Result<(), YamlError> {
        let mark = self.mark(&marker);
        match ev {
            YEvent::Scalar(value, style, anchor, _) => {
                let style = match style {
                    TScalarStyle::SingleQuoted => Style::SingleQuoted,
                    TScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    TScalarStyle::Literal => Style::Literal,
                    TScalarStyle::Folded => Style::Folded,
                    _ => Style::Plain,
                };
                let kind = NodeKind::Scalar(value, style);
                self.push_node(Node { kind, mark }, anchor)
            }
            YEvent::SequenceStart(anchor, _) => {
                self.open(Frame::Seq(Vec::new(), mark, anchor), mark)
            }
            YEvent::MappingStart(anchor, _) => {
                self.open(Frame::Map(Vec::new(), None, mark, anchor), mark)
            }
            YEvent::SequenceEnd | YEvent::MappingEnd => self.close(),
            YEvent::Alias(id) => self.alias(id, mark),
            _ => Ok(()),
        }
    }
}

/// Parse every document of a YAML stream. Aliases are expanded within
/// [`MAX_ALIASES`] and [`MAX_ALIAS_BYTES`], nesting within [`MAX_DEPTH`];
/// past a bound parsing stops with an error at the offending node. A flow
/// collection whose lines sit at its key's indentation, which yaml-rust2
/// rejects and Falco accepts, is read as Falco reads it
/// ([`crate::yaml_flow`]).
pub fn parse(text: &str) -> Result<Vec<Node>, YamlError> {
    match parse_shifted(text, &[]) {
        Err(e) if e.message.contains("indentation") => {
            match crate::yaml_flow::indent_flow_lines(text) {
                Some((fixed, shifts)) => parse_shifted(&fixed, &shifts).map_err(|_| e),
                None => Err(e),
            }
        }
        r => r,
    }
}

/// Parse `text`, whose lines were shifted right by `shifts` spaces.
fn parse_shifted(text: &str, shifts: &[u32]) -> Result<Vec<Node>, YamlError> {
    let mut builder = Builder {
        shifts,
        ..Builder::default()
    };
    let mut parser = Parser::new_from_str(text);
    loop {
        let (ev, marker) = parser.next_token().map_err(|e| YamlError {
            mark: builder.mark(e.marker()),
            message: e.info().to_string(),
        })?;
        if ev == YEvent::StreamEnd {
            break;
        }
        builder.event(ev, marker)?;
    }
    Ok(builder.docs)
}

/// Convert a node to JSON (plain scalars become numbers, booleans or null
/// when they look like one, as YAML 1.2's core schema reads them).
pub fn to_json(node: &Node) -> serde_json::Value {
    use serde_json::Value as J;
    match &node.kind {
        NodeKind::Scalar(s, Style::Plain) => {
            if node.is_null() {
                J::Null
            } else if s == "true" {
                J::Bool(true)
            } else if s == "false" {
                J::Bool(false)
            } else if let Ok(n) = s.parse::<i64>() {
                J::from(n)
            } else if let Ok(n) = s.parse::<u64>() {
                J::from(n)
            } else if let Some(n) = s
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(serde_json::Number::from_f64)
            {
                J::Number(n)
            } else {
                J::String(s.clone())
            }
        }
        NodeKind::Scalar(s, _) => J::String(s.clone()),
        NodeKind::Seq(items) => J::Array(items.iter().map(to_json).collect()),
        NodeKind::Map(entries) => J::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match &k.kind {
                        NodeKind::Scalar(s, _) => s.clone(),
                        _ => to_json(k).to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
    }
}

/// Where a scalar's text came from, so that an offset inside its value can
/// be mapped back to a file position.
#[derive(Debug, Clone)]
pub struct ScalarSource {
    pub file: Arc<SourceFile>,
    pub mark: Mark,
    pub style: Style,
}

impl ScalarSource {
    /// Map a byte offset inside `value` to a file position.
    ///
    /// Block and plain scalars keep every non-blank character of the source
    /// in order (folding only changes whitespace), so walking the value and
    /// the source side by side and matching non-blank characters finds the
    /// spot. Quoted scalars with escapes may drift by a few columns; the
    /// walk never goes past a bounded window and falls back to the scalar's
    /// own start.
    pub fn position(&self, value: &str, offset: usize) -> Mark {
        let Some(start) = self.file.byte_of(
            self.mark.line as usize,
            self.mark.col.saturating_sub(1) as usize,
        ) else {
            return self.mark;
        };
        let src = &self.file.text[start..];
        let mut src_iter = src.char_indices().peekable();
        if matches!(self.style, Style::SingleQuoted | Style::DoubleQuoted) {
            src_iter.next();
        }
        let mut line = self.mark.line;
        let mut col = self.mark.col;
        if matches!(self.style, Style::SingleQuoted | Style::DoubleQuoted) {
            col += 1;
        }
        const WINDOW: usize = 64 * 1024;
        let target = value
            .char_indices()
            .find(|(i, _)| *i >= offset)
            .map(|(i, _)| i)
            .unwrap_or(value.len());
        for (i, c) in value.char_indices() {
            let is_target = i >= target;
            if c.is_whitespace() && !is_target {
                continue;
            }
            // Advance the source to the next occurrence of `c` (or, for the
            // target position, the next non-blank char).
            loop {
                let Some(&(si, sc)) = src_iter.peek() else {
                    return self.mark;
                };
                if si > WINDOW {
                    return self.mark;
                }
                let hit = if c.is_whitespace() {
                    !sc.is_whitespace()
                } else {
                    sc == c
                };
                if hit {
                    if is_target {
                        return Mark { line, col };
                    }
                    src_iter.next();
                    col += 1;
                    break;
                }
                src_iter.next();
                if sc == '\n' {
                    line += 1;
                    col = 1;
                } else {
                    col += 1;
                }
            }
        }
        // Offset at (or past) the end of the value: report where the scan stopped.
        Mark { line, col }
    }
}

#[cfg(test)]
mod tests;
