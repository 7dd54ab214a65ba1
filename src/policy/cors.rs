//! CORS for routes with `cors` (the Fetch standard's CORS protocol).
//!
//! A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
//! is answered by gatehouse itself, 204 with the route's policy, for
//! allowed origins (403 otherwise); it never reaches the upstream and needs
//! no credentials. Other requests from an allowed origin get
//! `Access-Control-Allow-Origin` (the origin itself, or `*` when any origin
//! is allowed without credentials). `Vary: Origin` is always added, so a
//! cache never hands one origin's answer to another.

use crate::config::CorsConfig;
use http::{HeaderMap, Method};

/// The method a preflight asks about, if `req` is a preflight.
pub fn preflight_method(method: &Method, headers: &HeaderMap) -> Option<Method> {
    if method != Method::OPTIONS || !headers.contains_key(http::header::ORIGIN) {
        return None;
    }
    let m = headers.get(http::header::ACCESS_CONTROL_REQUEST_METHOD)?;
    Method::from_bytes(m.as_bytes()).ok()
}

pub fn origin(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
}

pub fn allowed(cfg: &CorsConfig, origin: &str) -> bool {
    cfg.allow_origins
        .iter()
        .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
}

fn allow_origin_value(cfg: &CorsConfig, origin: &str) -> String {
    if cfg.allow_origins.iter().any(|o| o == "*") && !cfg.allow_credentials {
        "*".to_string()
    } else {
        origin.to_string()
    }
}

/// Headers of a successful preflight answer.
pub fn preflight_headers(cfg: &CorsConfig, origin: &str) -> Vec<(&'static str, String)> {
    let mut h = vec![
        (
            "access-control-allow-origin",
            allow_origin_value(cfg, origin),
        ),
        (
            "access-control-allow-methods",
            cfg.allow_methods
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ("access-control-max-age", cfg.max_age.as_secs().to_string()),
        ("vary", "Origin".to_string()),
    ];
    if !cfg.allow_headers.is_empty() {
        let list = cfg
            .allow_headers
            .iter()
            .map(|h| h.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        h.push(("access-control-allow-headers", list));
    }
    if cfg.allow_credentials {
        h.push(("access-control-allow-credentials", "true".to_string()));
    }
    h
}

/// Headers added to an actual response for `origin` (none if not allowed).
pub fn response_headers(cfg: &CorsConfig, origin: Option<&str>) -> Vec<(&'static str, String)> {
    let Some(origin) = origin.filter(|o| allowed(cfg, o)) else {
        return Vec::new();
    };
    let mut h = vec![(
        "access-control-allow-origin",
        allow_origin_value(cfg, origin),
    )];
    if cfg.allow_credentials {
        h.push(("access-control-allow-credentials", "true".to_string()));
    }
    if !cfg.expose_headers.is_empty() {
        let list = cfg
            .expose_headers
            .iter()
            .map(|h| h.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        h.push(("access-control-expose-headers", list));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(origins: &[&str], credentials: bool) -> CorsConfig {
        CorsConfig {
            allow_origins: origins.iter().map(|s| s.to_string()).collect(),
            allow_methods: vec![Method::GET, Method::PUT],
            allow_headers: vec!["content-type".parse().unwrap()],
            expose_headers: vec!["x-total".parse().unwrap()],
            allow_credentials: credentials,
            max_age: Duration::from_secs(600),
        }
    }

    #[test]
    fn origins() {
        let c = cfg(&["https://app.example.com"], true);
        assert!(allowed(&c, "https://app.example.com"));
        assert!(!allowed(&c, "https://evil.example.com"));
        assert!(response_headers(&c, Some("https://evil.example.com")).is_empty());
        let h = response_headers(&c, Some("https://app.example.com"));
        assert!(h.contains(&(
            "access-control-allow-origin",
            "https://app.example.com".into()
        )));
        assert!(h.contains(&("access-control-allow-credentials", "true".into())));
        let any = cfg(&["*"], false);
        assert_eq!(response_headers(&any, Some("https://x.example"))[0].1, "*");
    }

    #[test]
    fn preflights() {
        let mut h = HeaderMap::new();
        assert!(preflight_method(&Method::OPTIONS, &h).is_none());
        h.insert("origin", "https://app.example.com".parse().unwrap());
        h.insert("access-control-request-method", "PUT".parse().unwrap());
        assert_eq!(preflight_method(&Method::OPTIONS, &h), Some(Method::PUT));
        assert!(preflight_method(&Method::GET, &h).is_none());
        let p = preflight_headers(
            &cfg(&["https://app.example.com"], false),
            "https://app.example.com",
        );
        assert!(p.contains(&("access-control-allow-methods", "GET, PUT".into())));
        assert!(p.contains(&("access-control-max-age", "600".into())));
    }
}
