//! Where each field of a YAML document sits, for error messages.
//!
//! serde_yaml parses the documents but keeps no positions once a value is built, so when a
//! message has to name a line this module reads the file's events once more with yaml-rust2's
//! marked parser. That happens only for files that have something to report: the common,
//! error-free path never pays for it.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::diagnostics::FieldPath;

/// Line and column, counted from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Field positions of every document of one file.
pub struct PositionIndex {
    documents: Vec<HashMap<FieldPath, Position>>,
}

impl PositionIndex {
    /// Reads every document of `text`. A file yaml-rust2 cannot read yields the documents it
    /// got through; lookups then fall back to the start of the file.
    pub fn build(text: &str) -> Self {
        let mut indexer = Indexer::default();
        // A syntax error has been reported by serde_yaml already; keep what was indexed.
        let _ = Parser::new_from_str(text).load(&mut indexer, true);
        if !indexer.current.is_empty() {
            indexer.documents.push(std::mem::take(&mut indexer.current));
        }
        PositionIndex {
            documents: indexer.documents,
        }
    }

    /// The position of `field` in document `doc` (counted from 0), or of its closest enclosing
    /// field that exists: a missing field is reported where it should have been.
    pub fn locate(&self, doc: usize, field: &FieldPath) -> Position {
        let Some(fields) = self.documents.get(doc) else {
            return Position { line: 1, column: 1 };
        };
        let mut path = Some(field.clone());
        while let Some(p) = path {
            if let Some(pos) = fields.get(&p) {
                return *pos;
            }
            path = p.parent();
        }
        Position { line: 1, column: 1 }
    }
}

enum Frame {
    Map {
        path: FieldPath,
        /// The key whose value comes next, or `None` when a key comes next.
        key: Option<FieldPath>,
    },
    Seq {
        path: FieldPath,
        next: usize,
    },
}

#[derive(Default)]
struct Indexer {
    documents: Vec<HashMap<FieldPath, Position>>,
    current: HashMap<FieldPath, Position>,
    stack: Vec<Frame>,
}

impl Indexer {
    /// The path of a node that starts now, or `None` when the node is a mapping key.
    fn node_path(&mut self, key_text: Option<&str>, pos: Position) -> Option<FieldPath> {
        match self.stack.last_mut() {
            None => Some(FieldPath::root()),
            Some(Frame::Seq { path, next }) => {
                let p = path.index(*next);
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(value_path) => Some(value_path),
                None => {
                    // A block mapping's own mark lies past its first key, so a mapping is placed
                    // at its first key; a field at its key, the line people look at. Complex
                    // (non-scalar) keys get a placeholder name.
                    self.current.entry(path.clone()).or_insert(pos);
                    let field = path.key(key_text.unwrap_or("?"));
                    self.current.entry(field.clone()).or_insert(pos);
                    *key = Some(field);
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for Indexer {
    fn on_event(&mut self, event: Event, mark: Marker) {
        // yaml-rust2 counts lines from 1 and columns from 0.
        let pos = Position {
            line: mark.line(),
            column: mark.col() + 1,
        };
        match event {
            Event::DocumentEnd => {
                self.documents.push(std::mem::take(&mut self.current));
                self.stack.clear();
            }
            Event::Scalar(text, ..) => {
                if let Some(path) = self.node_path(Some(&text), pos) {
                    self.current.entry(path).or_insert(pos);
                }
            }
            Event::Alias(_) => {
                if let Some(path) = self.node_path(None, pos) {
                    self.current.entry(path).or_insert(pos);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let is_map = matches!(event, Event::MappingStart(..));
                // A collection used as a key is indexed under the placeholder key.
                let path = match self.node_path(None, pos) {
                    Some(path) => path,
                    None => match self.stack.last() {
                        Some(Frame::Map { key: Some(k), .. }) => k.clone(),
                        _ => FieldPath::root(),
                    },
                };
                if !is_map {
                    self.current.entry(path.clone()).or_insert(pos);
                }
                self.stack.push(if is_map {
                    Frame::Map { path, key: None }
                } else {
                    Frame::Seq { path, next: 0 }
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
apiVersion: holdfast.dev/v1alpha1
kind: Schedule
metadata:
  name: nightly
spec:
  cron: '0 2 * * *'
  hosts:
    - web-1
    - web-2
---
# a comment
kind: Host
spec: {paused: true}
";

    fn at(line: usize, column: usize) -> Position {
        Position { line, column }
    }

    #[test]
    fn fields_are_found_at_their_keys() {
        let index = PositionIndex::build(TEXT);
        assert_eq!(index.locate(0, &FieldPath::parse("kind")), at(2, 1));
        assert_eq!(
            index.locate(0, &FieldPath::parse("metadata.name")),
            at(4, 3)
        );
        assert_eq!(index.locate(0, &FieldPath::parse("spec.cron")), at(6, 3));
        assert_eq!(
            index.locate(0, &FieldPath::parse("spec.hosts[1]")),
            at(9, 7)
        );
    }

    #[test]
    fn later_documents_and_flow_style() {
        let index = PositionIndex::build(TEXT);
        assert_eq!(index.locate(1, &FieldPath::parse("kind")), at(12, 1));
        assert_eq!(index.locate(1, &FieldPath::parse("spec.paused")), at(13, 8));
    }

    #[test]
    fn missing_fields_fall_back_to_the_closest_parent() {
        let index = PositionIndex::build(TEXT);
        assert_eq!(
            index.locate(0, &FieldPath::parse("spec.paths[3]")),
            at(5, 1)
        );
        assert_eq!(index.locate(7, &FieldPath::parse("spec")), at(1, 1));
    }
}
