//! Route-level edge settings: header transforms (with their templates)
//! and CORS.

use super::{Errs, KeyPath};
use crate::config::file::{CorsFile, HeaderTransformFile, Text};
use crate::config::model::*;
use http::{HeaderName, HeaderValue};
use std::collections::BTreeMap;
use std::time::Duration;

/// Parses a header-value template.
pub(super) fn template(value: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            parts.push(TemplatePart::Text(rest[..start].to_string()));
        }
        let end = rest[start..].find('}').ok_or("unterminated `${`")? + start;
        let var = &rest[start + 2..end];
        parts.push(match var {
            "request_id" => TemplatePart::RequestId,
            "client_ip" => TemplatePart::ClientIp,
            "route" => TemplatePart::Route,
            v => match v.strip_prefix("claim.").filter(|c| !c.is_empty()) {
                Some(c) => TemplatePart::Claim(c.to_string()),
                None => {
                    return Err(format!(
                        "unknown variable `${{{var}}}` (request_id, client_ip, route, claim.NAME)"
                    ))
                }
            },
        });
        rest = &rest[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Text(rest.to_string()));
    }
    // The literal parts must be valid in a header value.
    for p in &parts {
        if let TemplatePart::Text(t) = p {
            if HeaderValue::from_str(t).is_err() {
                return Err("not a valid header value".into());
            }
        }
    }
    Ok(parts)
}

pub(super) fn transform(
    path: &KeyPath,
    f: &HeaderTransformFile,
    errs: &mut Errs,
) -> HeaderTransform {
    let mut pairs = |map: &BTreeMap<String, String>, key: &str| {
        let mut out = Vec::new();
        for (name, value) in map {
            let p = path.key(key).key(name);
            let Some(h) = errs.header_name(&p, name) else {
                continue;
            };
            match template(value) {
                Ok(parts) => out.push((h, parts)),
                Err(e) => errs.push(p, e),
            }
        }
        out
    };
    let set = pairs(&f.set, "set");
    let add = pairs(&f.add, "add");
    let remove = names(path, &f.remove, "remove", errs);
    HeaderTransform { set, add, remove }
}

/// A list of header names at `path.key[i]`.
fn names(path: &KeyPath, list: &[String], key: &str, errs: &mut Errs) -> Vec<HeaderName> {
    list.iter()
        .enumerate()
        .filter_map(|(i, h)| errs.header_name(&path.key(key).index(i), h))
        .collect()
}

pub(super) fn cors(path: &KeyPath, f: &CorsFile, errs: &mut Errs) -> CorsConfig {
    if f.allow_origins.is_empty() {
        errs.push(
            path.key("allow_origins"),
            "list the allowed origins (or `*`)",
        );
    }
    for (i, o) in f.allow_origins.iter().enumerate() {
        let ok = o == "*"
            || ((o.starts_with("https://") || o.starts_with("http://")) && !o.ends_with('/'));
        if !ok {
            errs.push(
                path.key("allow_origins").index(i),
                format!("`{o}` is not an origin: write `https://app.example.com` (scheme, host, optional port) or `*`"),
            );
        }
    }
    if f.allow_credentials && f.allow_origins.iter().any(|o| o == "*") {
        errs.push(
            path.key("allow_credentials"),
            "credentials cannot be allowed for every origin (`*`); list the origins",
        );
    }
    let methods = f
        .allow_methods
        .clone()
        .unwrap_or_else(|| vec!["GET".into(), "HEAD".into(), "POST".into()]);
    let allow_methods = methods
        .iter()
        .enumerate()
        .filter_map(|(i, m)| errs.method(&path.key("allow_methods").index(i), m))
        .collect();
    CorsConfig {
        allow_origins: f.allow_origins.clone(),
        allow_methods,
        allow_headers: names(path, &f.allow_headers, "allow_headers", errs),
        expose_headers: names(path, &f.expose_headers, "expose_headers", errs),
        allow_credentials: f.allow_credentials,
        max_age: max_age(&path.key("max_age"), &f.max_age, errs),
    }
}

/// `cors.max_age`: a duration, or a bare integer meaning seconds (the unit
/// of `Access-Control-Max-Age`, as Kong and Envoy users write it).
fn max_age(path: &KeyPath, v: &Option<Text>, errs: &mut Errs) -> Duration {
    let digits = v
        .as_ref()
        .map(|t| t.0.trim())
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()));
    match digits {
        Some(d) => match d.parse::<u64>().map(Duration::from_secs) {
            Ok(secs) if secs <= crate::config::units::MAX_DURATION => secs,
            _ => {
                errs.push(path, format!("`{d}` seconds is over the maximum of 30d"));
                Duration::from_secs(600)
            }
        },
        None => errs.duration(path, v, Duration::from_secs(600)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        assert_eq!(
            template("id=${request_id}; user=${claim.sub}").unwrap(),
            vec![
                TemplatePart::Text("id=".into()),
                TemplatePart::RequestId,
                TemplatePart::Text("; user=".into()),
                TemplatePart::Claim("sub".into()),
            ]
        );
        assert_eq!(
            template("plain").unwrap(),
            vec![TemplatePart::Text("plain".into())]
        );
        assert!(template("${nope}")
            .unwrap_err()
            .contains("unknown variable"));
        assert!(template("${route").unwrap_err().contains("unterminated"));
        assert!(template("a\nb").is_err());
    }
}
