//! The module graph is a DAG in the layers of ARCHITECTURE.md: every
//! `crate::` path in `src/` points to the same layer or one below, no two
//! top-level modules reach each other (directly or around a loop), and only
//! the entry points (L5) use the composition root `app`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layer of each top-level module (ARCHITECTURE.md, "Layers").
const LAYERS: &[(&str, u8)] = &[
    ("netfmt", 0),
    ("http", 0),
    ("keys", 0),
    ("tls", 0),
    ("problem", 0),
    ("tasks", 0),
    ("config", 1),
    ("router", 2),
    ("policy", 2),
    ("upstream", 2),
    ("cache", 2),
    ("observability", 2),
    ("logging", 2),
    ("runtime", 3),
    ("proxy", 4),
    ("admin", 4),
    ("cluster", 4),
    ("signals", 4),
    ("app", 5),
    ("cli", 5),
    ("demo", 5),
];

fn layer(module: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, l)| *l)
        .unwrap_or_else(|| panic!("module `{module}` has no layer in tests/it/layering.rs"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules each top-level module names through `crate::`.
fn arrows() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        let from = first.trim_end_matches(".rs").to_string();
        if from == "lib" || from == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let targets = graph.entry(from.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + 7..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            assert!(
                !name.is_empty(),
                "{}: `crate::{{..}}` groups hide arrows; name each path",
                rel.display()
            );
            if name != from {
                targets.insert(name);
            }
        }
    }
    graph
}

#[test]
fn every_arrow_points_down_the_layer_table() {
    let mut wrong = Vec::new();
    for (from, targets) in arrows() {
        for to in targets {
            if layer(&to) > layer(&from) {
                wrong.push(format!(
                    "{from} (L{}) -> {to} (L{})",
                    layer(&from),
                    layer(&to)
                ));
            }
            if to == "app" && layer(&from) < 5 {
                wrong.push(format!("{from} uses the composition root `app`"));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn top_level_modules_have_no_cycle() {
    let graph = arrows();
    // Depth-first search; a grey node met again closes a cycle.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(1) => {
                let start = path.iter().position(|p| p == n).unwrap();
                let mut cycle = path[start..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            Some(_) => return None,
            None => {}
        }
        state.insert(n.to_string(), 1);
        path.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if let Some(cycle) = visit(n, &graph, &mut state, &mut Vec::new()) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}
