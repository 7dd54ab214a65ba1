//! What a reload changed, by name: routes, upstreams, auth providers and
//! rate limits. `POST /reload` answers it, SIGHUP and cluster applies log it.

use crate::config::Config;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Names added, removed and changed in one section.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl Delta {
    fn of<V>(
        old: &BTreeMap<&str, V>,
        new: &BTreeMap<&str, V>,
        same: impl Fn(&V, &V) -> bool,
    ) -> Delta {
        let mut d = Delta::default();
        for (name, v) in new {
            match old.get(name) {
                None => d.added.push(name.to_string()),
                Some(o) if !same(o, v) => d.changed.push(name.to_string()),
                Some(_) => {}
            }
        }
        d.removed = old
            .keys()
            .filter(|k| !new.contains_key(*k))
            .map(|k| k.to_string())
            .collect();
        d
    }

    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// `+a +b -c ~d`
    fn short(&self) -> String {
        let mut parts = Vec::new();
        parts.extend(self.added.iter().map(|n| format!("+{n}")));
        parts.extend(self.removed.iter().map(|n| format!("-{n}")));
        parts.extend(self.changed.iter().map(|n| format!("~{n}")));
        parts.join(" ")
    }
}

/// The four sections' deltas.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub routes: Delta,
    pub upstreams: Delta,
    pub auth: Delta,
    pub rate_limits: Delta,
}

fn by_name<V>(m: &BTreeMap<String, V>) -> BTreeMap<&str, &V> {
    m.iter().map(|(k, v)| (k.as_str(), v)).collect()
}

impl Changes {
    pub fn between(old: &Config, new: &Config) -> Changes {
        // Routes hold regexes (no `PartialEq`); their debug text names the
        // pattern, so it compares what the operator wrote.
        fn routes(c: &Config) -> BTreeMap<&str, String> {
            c.routes
                .iter()
                .map(|r| (r.name.as_str(), format!("{r:?}")))
                .collect()
        }
        Changes {
            routes: Delta::of(&routes(old), &routes(new), |a, b| a == b),
            upstreams: Delta::of(
                &by_name(&old.upstreams),
                &by_name(&new.upstreams),
                |a, b| a == b,
            ),
            auth: Delta::of(&by_name(&old.auth), &by_name(&new.auth), |a, b| a == b),
            rate_limits: Delta::of(
                &by_name(&old.rate_limits),
                &by_name(&new.rate_limits),
                |a, b| a == b,
            ),
        }
    }

    fn sections(&self) -> [(&'static str, &Delta); 4] {
        [
            ("routes", &self.routes),
            ("upstreams", &self.upstreams),
            ("auth", &self.auth),
            ("rate_limits", &self.rate_limits),
        ]
    }

    /// `{"routes": {"added": [..], "removed": [..], "changed": [..]}, ...}`
    pub fn to_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        for (name, d) in self.sections() {
            out.insert(
                name.into(),
                json!({"added": d.added, "removed": d.removed, "changed": d.changed}),
            );
        }
        Value::Object(out)
    }

    /// One line for the log: `routes +a ~b; upstreams -c`, or `no changes`.
    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .sections()
            .iter()
            .filter(|(_, d)| !d.is_empty())
            .map(|(name, d)| format!("{name} {}", d.short()))
            .collect();
        if parts.is_empty() {
            "no changes to routes, upstreams, auth or rate limits".into()
        } else {
            parts.join("; ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        crate::config::load_str(text).expect("valid")
    }

    #[test]
    fn names_what_was_added_removed_and_changed() {
        let a = cfg(
            "upstreams: {u: {targets: ['127.0.0.1:1']}, v: {targets: ['127.0.0.1:2']}}\n\
             routes: [{name: r1, match: {path: /a}, upstream: u}, {name: r2, match: {path: /b}, upstream: u}]\n",
        );
        let b = cfg(
            "upstreams: {u: {targets: ['127.0.0.1:9']}, w: {targets: ['127.0.0.1:2']}}\n\
             routes: [{name: r1, match: {path: /a}, upstream: u}, {name: r3, match: {path: /c}, upstream: w}, {name: r2, match: {path: /bb}, upstream: u}]\n",
        );
        let c = Changes::between(&a, &b);
        assert_eq!(c.routes.added, vec!["r3"]);
        assert_eq!(c.routes.changed, vec!["r2"]);
        assert!(c.routes.removed.is_empty());
        assert_eq!(c.upstreams.added, vec!["w"]);
        assert_eq!(c.upstreams.removed, vec!["v"]);
        assert_eq!(c.upstreams.changed, vec!["u"]);
        assert_eq!(c.summary(), "routes +r3 ~r2; upstreams +w -v ~u");
        assert_eq!(Changes::between(&a, &a), Changes::default());
    }
}
