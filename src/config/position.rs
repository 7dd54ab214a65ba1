//! Maps key paths (`routes[2].upstream`) to their line and column in the
//! YAML text, so that errors found after deserialisation (an unknown
//! upstream, a bad duration) can still point at the place in the file.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// 1-based line and column of each value in the document.
#[derive(Debug, Default)]
pub(super) struct Positions {
    map: HashMap<String, (usize, usize)>,
}

enum Frame {
    /// `unplaced`: the mapping's own position is taken from its first key
    /// (the parser marks block mappings after that key).
    Map {
        path: String,
        key: Option<String>,
        unplaced: bool,
    },
    Seq {
        path: String,
        index: usize,
    },
}

struct Collector {
    stack: Vec<Frame>,
    map: HashMap<String, (usize, usize)>,
}

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl Collector {
    /// Path of the value that is about to start, advancing the parent's state.
    fn next_value_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                Some(p)
            }
            Some(Frame::Map { path, key, .. }) => key.take().map(|k| join_key(path, &k)),
        }
    }

    fn record(&mut self, path: &str, mark: Marker) {
        self.map
            .entry(path.to_string())
            .or_insert((mark.line(), mark.col() + 1));
    }
}

impl MarkedEventReceiver for Collector {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        // A scalar in key position of a mapping names the next value.
        if let Event::Scalar(ref s, ..) = ev {
            if let Some(Frame::Map {
                key,
                path,
                unplaced,
            }) = self.stack.last_mut()
            {
                if key.is_none() {
                    let p = join_key(path, s);
                    *key = Some(s.clone());
                    if std::mem::take(unplaced) {
                        let own = path.clone();
                        self.map.entry(own).or_insert((mark.line(), mark.col() + 1));
                    }
                    // The key itself is a fallback position for its value.
                    self.map
                        .entry(format!("{p}#key"))
                        .or_insert((mark.line(), mark.col() + 1));
                    return;
                }
            }
        }
        match ev {
            Event::Scalar(..) | Event::Alias(_) => {
                if let Some(p) = self.next_value_path() {
                    self.record(&p, mark);
                }
            }
            Event::MappingStart(..) => {
                let p = self.next_value_path().unwrap_or_default();
                self.stack.push(Frame::Map {
                    path: p,
                    key: None,
                    unplaced: true,
                });
            }
            Event::SequenceStart(..) => {
                let p = self.next_value_path().unwrap_or_default();
                self.record(&p, mark);
                self.stack.push(Frame::Seq { path: p, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

/// The deepest nesting of mappings and sequences a config may have. Far
/// beyond any real config; it keeps validation linear in the file size
/// (key paths grow with depth).
pub(super) const MAX_DEPTH: usize = 64;

/// Where flow collections (`[`, `{`) first nest deeper than `max`, found
/// in one linear pass before any YAML parsing (the YAML scanner's
/// simple-key look-ahead is quadratic in flow depth). Quoted text and
/// comments are skipped.
pub(super) fn flow_too_deep(text: &str, max: usize) -> Option<(usize, usize)> {
    let (mut depth, mut line, mut col) = (0usize, 1usize, 0usize);
    let (mut quote, mut escaped, mut comment, mut prev_space) = (None, false, false, true);
    for ch in text.chars() {
        col += 1;
        if ch == '\n' {
            (line, col, comment, prev_space) = (line + 1, 0, false, true);
            continue;
        }
        if comment {
            continue;
        }
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if q == '"' && ch == '\\' {
                    escaped = true;
                } else if ch == q {
                    quote = None;
                }
            }
            None => match ch {
                '"' | '\'' => quote = Some(ch),
                '#' if prev_space => comment = true,
                '[' | '{' => {
                    depth += 1;
                    if depth > max {
                        return Some((line, col));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        prev_space = ch.is_whitespace();
    }
    None
}

impl Positions {
    /// Indexes `text`; a document the YAML parser rejects yields an empty index
    /// (the deserialiser reports that error with its own position). Nesting
    /// deeper than [`MAX_DEPTH`] stops the walk: `Err` has its line and column.
    pub(super) fn index(text: &str) -> Result<Self, (usize, usize)> {
        let mut c = Collector {
            stack: Vec::new(),
            map: HashMap::new(),
        };
        let mut parser = Parser::new_from_str(text);
        while let Ok((ev, mark)) = parser.next_token() {
            let opens = matches!(ev, Event::MappingStart(..) | Event::SequenceStart(..));
            if opens && c.stack.len() >= MAX_DEPTH {
                return Err((mark.line(), mark.col() + 1));
            }
            let end = matches!(ev, Event::StreamEnd);
            c.on_event(ev, mark);
            if end {
                break;
            }
        }
        Ok(Positions { map: c.map })
    }

    /// Position of exactly `path` (or its key), if the text has it.
    pub(super) fn exact(&self, path: &str) -> Option<(usize, usize)> {
        self.map
            .get(path)
            .or_else(|| self.map.get(&format!("{path}#key")))
            .copied()
    }

    /// Position of `path`, or of its key, or of the nearest ancestor that exists.
    pub(super) fn find(&self, path: &str) -> Option<(usize, usize)> {
        let mut p = path.to_string();
        loop {
            if let Some(pos) = self.map.get(&p) {
                return Some(*pos);
            }
            if let Some(pos) = self.map.get(&format!("{p}#key")) {
                return Some(*pos);
            }
            if p.is_empty() {
                return None;
            }
            // Strip the last segment: `a.b[2]` -> `a.b` -> `a`.
            let cut = p.rfind(['.', '[']).unwrap_or(0);
            p.truncate(cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_paths() {
        let text = "server:\n  listen: [\"a\", \"b\"]\nroutes:\n  - name: x\n    upstream: u\n  - name: y\n    match: { path: /p }\n";
        let p = Positions::index(text).unwrap();
        assert_eq!(p.find("server.listen[1]"), Some((2, 17)));
        assert_eq!(p.find("routes[0].upstream"), Some((5, 15)));
        assert_eq!(p.find("routes[1].match.path"), Some((7, 20)));
        // a missing key falls back to its parent
        assert_eq!(p.find("routes[1].upstream"), Some((6, 5)));
    }

    #[test]
    fn deep_nesting_is_refused_with_its_position() {
        let ok = format!(
            "a: {}{}",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert!(Positions::index(&ok).is_ok());
        let deep = format!("a: {}", "[".repeat(100_000));
        assert_eq!(flow_too_deep(&deep, MAX_DEPTH), Some((1, 4 + MAX_DEPTH)));
        let quoted = format!("a: \"{}\" # {}\nb: [1]", "[".repeat(100), "{".repeat(100));
        assert_eq!(flow_too_deep(&quoted, MAX_DEPTH), None);
        let block = "a:\n  - b:\n      - [c, {d: e}]\n";
        assert_eq!(flow_too_deep(block, MAX_DEPTH), None);
    }
}
