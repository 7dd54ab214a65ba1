//! `tracing`: where spans go and how many requests are traced.

use super::{Errs, KeyPath};
use crate::config::file::TracingFile;
use crate::config::TracingConfig;
use std::time::Duration;

pub(super) fn tracing(t: &TracingFile, errs: &mut Errs) -> TracingConfig {
    let path = KeyPath::root("tracing");
    let ok = http::Uri::try_from(t.otlp.as_str())
        .ok()
        .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some());
    if ok.is_none() {
        errs.push(
            path.key("otlp"),
            format!(
                "invalid URL `{}`; write the collector's OTLP/HTTP traces URL, e.g. `http://127.0.0.1:4318/v1/traces`",
                t.otlp
            ),
        );
    }
    let sample = match &t.sample {
        None => 0.05,
        Some(v) => {
            let s = v.0.trim();
            let n = match s.strip_suffix('%') {
                Some(p) => p.trim().parse::<f64>().map(|p| p / 100.0),
                None => s.parse::<f64>(),
            };
            match n {
                Ok(n) if (0.0..=1.0).contains(&n) => n,
                _ => {
                    errs.push(
                        path.key("sample"),
                        format!("`{s}` is not a share between 0 and 1 (e.g. `0.05` or `5%`)"),
                    );
                    0.0
                }
            }
        }
    };
    let service_name = t.service_name.clone().unwrap_or_else(|| "gatehouse".into());
    if service_name.trim().is_empty() {
        errs.push(path.key("service_name"), "must not be empty");
    }
    TracingConfig {
        otlp: t.otlp.clone(),
        service_name,
        sample,
        timeout: errs.positive_duration(&path.key("timeout"), &t.timeout, Duration::from_secs(2)),
    }
}
