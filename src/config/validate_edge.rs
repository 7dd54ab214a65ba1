//! Validation of the edge settings: TLS listener, protocol limits, header
//! transforms, CORS.

use super::file::{CorsFile, HeaderTransformFile, ServerFile, Text};
use super::model::*;
use super::units::parse_size;
use super::validate::Errs;
use http::{HeaderName, HeaderValue, Method};
use std::path::Path;
use std::time::Duration;

/// Pingora reads at most 1 MiB of request head whatever the setting.
const PINGORA_MAX_HEAD: u64 = 1 << 20;

fn size(errs: &mut Errs, path: &str, v: &Option<Text>, default: u64, min: u64, max: u64) -> u64 {
    let n = match v {
        None => return default,
        Some(t) => match parse_size(&t.0) {
            Ok(n) => n,
            Err(e) => {
                errs.push(path, e);
                return default;
            }
        },
    };
    if n < min || n > max {
        errs.push(path, format!("must be between {min} and {max} bytes"));
        return default;
    }
    n
}

fn readable(errs: &mut Errs, path: &str, file: &str, base: &Path, must_contain: &str) -> String {
    let full = base.join(file);
    match std::fs::read_to_string(&full) {
        Ok(text) if text.contains(must_contain) => {}
        Ok(_) => errs.push(
            path,
            format!(
                "{} does not hold a PEM `{must_contain}` block",
                full.display()
            ),
        ),
        Err(e) => errs.push(path, format!("cannot read {}: {e}", full.display())),
    }
    full.display().to_string()
}

pub struct Edge {
    pub tls: Option<TlsConfig>,
    pub h2c: bool,
    pub limits: Limits,
    pub upstream_ca: Option<String>,
}

pub fn server_edge(s: &ServerFile, base: &Path, errs: &mut Errs) -> Edge {
    let tls = s.tls.as_ref().and_then(|t| {
        let before = errs.0.len();
        let listen = errs.addr("server.tls.listen", &t.listen)?;
        let cert = readable(errs, "server.tls.cert", &t.cert, base, "CERTIFICATE");
        let key = readable(errs, "server.tls.key", &t.key, base, "PRIVATE KEY");
        if errs.0.len() == before {
            // Parse them as the listener will, so `-t` catches a key that
            // does not belong to the certificate.
            if let Err(e) = crate::tls::load_pair(&cert, &key) {
                errs.push("server.tls.key", e.to_string());
            }
        }
        Some(TlsConfig { listen, cert, key })
    });
    let upstream_ca = s
        .upstream_ca
        .as_ref()
        .map(|f| readable(errs, "server.upstream_ca", f, base, "CERTIFICATE"));
    let limits = Limits {
        max_body: size(errs, "server.max_body", &s.max_body, 10 << 20, 0, u64::MAX),
        max_header_bytes: size(
            errs,
            "server.max_header_bytes",
            &s.max_header_bytes,
            64 << 10,
            1024,
            PINGORA_MAX_HEAD,
        ) as usize,
        header_timeout: errs.positive_duration(
            "server.header_timeout",
            &s.header_timeout,
            Duration::from_secs(10),
        ),
        max_uri_bytes: size(
            errs,
            "server.max_uri_bytes",
            &s.max_uri_bytes,
            8 << 10,
            64,
            PINGORA_MAX_HEAD,
        ) as usize,
    };
    Edge {
        tls,
        h2c: s.h2c.unwrap_or(false),
        limits,
        upstream_ca,
    }
}

/// Parses a header-value template.
pub fn template(value: &str) -> Result<Vec<TemplatePart>, String> {
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

pub fn transform(path: &str, f: &HeaderTransformFile, errs: &mut Errs) -> HeaderTransform {
    let mut t = HeaderTransform::default();
    let pairs = |map: &std::collections::BTreeMap<String, String>, key: &str, errs: &mut Errs| {
        let mut out = Vec::new();
        for (name, value) in map {
            let p = format!("{path}.{key}.{name}");
            let Ok(h) = HeaderName::from_bytes(name.as_bytes()) else {
                errs.push(p, format!("invalid header name `{name}`"));
                continue;
            };
            match template(value) {
                Ok(parts) => out.push((h, parts)),
                Err(e) => errs.push(p, e),
            }
        }
        out
    };
    t.set = pairs(&f.set, "set", errs);
    t.add = pairs(&f.add, "add", errs);
    for (i, name) in f.remove.iter().enumerate() {
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) => t.remove.push(h),
            Err(_) => errs.push(
                format!("{path}.remove[{i}]"),
                format!("invalid header name `{name}`"),
            ),
        }
    }
    t
}

pub fn cors(path: &str, f: &CorsFile, errs: &mut Errs) -> CorsConfig {
    if f.allow_origins.is_empty() {
        errs.push(
            format!("{path}.allow_origins"),
            "list the allowed origins (or `*`)",
        );
    }
    for (i, o) in f.allow_origins.iter().enumerate() {
        let ok = o == "*"
            || ((o.starts_with("https://") || o.starts_with("http://")) && !o.ends_with('/'));
        if !ok {
            errs.push(
                format!("{path}.allow_origins[{i}]"),
                format!("`{o}` is not an origin: write `https://app.example.com` (scheme, host, optional port) or `*`"),
            );
        }
    }
    if f.allow_credentials && f.allow_origins.iter().any(|o| o == "*") {
        errs.push(
            format!("{path}.allow_credentials"),
            "credentials cannot be allowed for every origin (`*`); list the origins",
        );
    }
    let methods = f
        .allow_methods
        .clone()
        .unwrap_or_else(|| vec!["GET".into(), "HEAD".into(), "POST".into()]);
    let mut allow_methods = Vec::new();
    for (i, m) in methods.iter().enumerate() {
        match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(m) => allow_methods.push(m),
            Err(_) => errs.push(
                format!("{path}.allow_methods[{i}]"),
                format!("invalid method `{m}`"),
            ),
        }
    }
    let names = |list: &[String], key: &str, errs: &mut Errs| -> Vec<HeaderName> {
        list.iter()
            .enumerate()
            .filter_map(|(i, h)| {
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| {
                        errs.push(
                            format!("{path}.{key}[{i}]"),
                            format!("invalid header name `{h}`"),
                        )
                    })
                    .ok()
            })
            .collect()
    };
    CorsConfig {
        allow_origins: f.allow_origins.clone(),
        allow_methods,
        allow_headers: names(&f.allow_headers, "allow_headers", errs),
        expose_headers: names(&f.expose_headers, "expose_headers", errs),
        allow_credentials: f.allow_credentials,
        max_age: errs.duration(
            &format!("{path}.max_age"),
            &f.max_age,
            Duration::from_secs(600),
        ),
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
