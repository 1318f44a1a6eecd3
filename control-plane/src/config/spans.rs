//! A map from YAML paths (`ca.ttl`, `upstreams[1].workload`) to where their values start
//! in the file, so semantic errors found after deserialization still point at a line and
//! column. serde_yaml reports positions only for its own (syntax and type) errors.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use super::diag::Pos;

/// Positions of every key and value in one YAML document.
#[derive(Debug, Default)]
pub(crate) struct Spans {
    values: HashMap<String, Pos>,
}

impl Spans {
    /// Index `text`; a text that does not parse yields an empty index (serde_yaml reports
    /// the syntax error itself).
    pub(crate) fn index(text: &str) -> Spans {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut builder, false).is_err() {
            return Spans::default();
        }
        builder.spans
    }

    /// Where the value at `path` starts, falling back to its parent's position.
    pub(crate) fn value(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return Pos { line: 1, column: 1 },
            }
        }
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    spans: Spans,
}

fn pos(m: Marker) -> Pos {
    Pos {
        line: m.line(),
        column: m.col() + 1,
    }
}

impl Builder {
    /// The path of the value about to be read, or `None` when the next scalar is a key.
    fn next_value_path(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Map { key: None, .. }) => None,
            Some(Frame::Map { path, key: Some(k) }) => Some(join(path, k)),
            Some(Frame::Seq { path, index }) => Some(format!("{path}[{index}]")),
        }
    }

    /// A value was read completely: advance the parent.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { key, .. }) => *key = None,
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => match self.next_value_path() {
                None => {
                    if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                        *key = Some(value);
                    }
                }
                Some(path) => {
                    self.spans.values.insert(path, pos(mark));
                    self.value_done();
                }
            },
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = self.next_value_path().unwrap_or_default();
                self.spans.values.insert(path.clone(), pos(mark));
                self.stack.push(match ev {
                    Event::MappingStart(..) => Frame::Map { path, key: None },
                    _ => Frame::Seq { path, index: 0 },
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_values_and_list_items_are_located() {
        let text = "a: 1\nca:\n  ttl: 24h\nlist:\n  - name: x\n  - name: y\n";
        let spans = Spans::index(text);
        assert_eq!(spans.value("a"), Pos { line: 1, column: 4 });
        assert_eq!(spans.value("ca.ttl"), Pos { line: 3, column: 8 });
        assert_eq!(
            spans.value("list[1].name"),
            Pos {
                line: 6,
                column: 11
            }
        );
    }

    #[test]
    fn missing_paths_fall_back_to_the_nearest_parent() {
        let spans = Spans::index("ca:\n  ttl: 1h\n");
        assert_eq!(spans.value("ca.missing"), spans.value("ca"));
    }
}
