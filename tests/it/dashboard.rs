//! The shipped Grafana dashboard only queries metrics gatehouse exposes.

use std::collections::BTreeSet;

#[test]
fn dashboard_queries_known_metrics() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/grafana/gatehouse.json"
    ))
    .unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let known: BTreeSet<&str> = gatehouse::bench::FAMILIES.iter().copied().collect();
    let mut used = BTreeSet::new();
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            for (i, _) in expr.match_indices("gatehouse_") {
                let name: String = expr[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(&name)
                    .to_string();
                used.insert(family);
            }
        }
    }
    assert!(used.len() >= 8, "{used:?}");
    for f in &used {
        assert!(
            known.contains(f.as_str()),
            "dashboard uses unknown metric {f}"
        );
    }
}
