//! Reading the gateway's Prometheus exposition.

use super::gateway::{client, Gateway};

/// One sample of a Prometheus text exposition.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    }
}

fn labels(body: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut s = body;
    while !s.is_empty() {
        let (k, rest) = s.split_once("=\"").expect("label");
        let end = rest.find('"').expect("label end");
        labels.push((
            k.trim_start_matches(',').to_string(),
            rest[..end].to_string(),
        ));
        s = rest[end + 1..].trim_start_matches(',');
    }
    labels
}

/// Parses the Prometheus text format (enough of it for our own output).
pub fn parse_metrics(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), Vec::new()),
            Some((n, rest)) => (
                n.to_string(),
                labels(rest.strip_suffix('}').expect("closing brace")),
            ),
        };
        out.push(Sample {
            name,
            labels,
            value: value.parse().unwrap_or(f64::NAN),
        });
    }
    out
}

/// Scrapes the gateway's `/metrics`.
pub fn scrape(gw: &Gateway) -> Vec<Sample> {
    scrape_at(gw.admin.expect("no admin listener configured"))
}

/// Scrapes `/metrics` of the admin listener at `admin` (a real binary's too).
pub fn scrape_at(admin: std::net::SocketAddr) -> Vec<Sample> {
    let text = client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    parse_metrics(&text)
}

/// The value of the sample `name` whose labels include all of `labels` (0 if absent).
pub fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
        .sum()
}
