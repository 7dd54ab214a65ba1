//! Route header transforms (`request_headers` / `response_headers`):
//! `remove`, then `set` (replace), then `add` (append), with values
//! rendered from templates. Identity headers are applied by the proxy after
//! the request transforms, so a transform can never override them with a
//! value a client could influence.

use crate::config::{HeaderTransform, TemplatePart};
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use serde_json::{Map, Value};
use std::net::IpAddr;

/// What templates can refer to.
pub struct Vars<'a> {
    pub request_id: &'a str,
    pub client_ip: Option<IpAddr>,
    pub route: &'a str,
    pub claims: Option<&'a Map<String, Value>>,
}

/// Renders a template; `None` when the result is not a valid header value.
/// A missing claim renders as empty text.
pub fn render(parts: &[TemplatePart], v: &Vars<'_>) -> Option<HeaderValue> {
    let mut s = String::new();
    for p in parts {
        match p {
            TemplatePart::Text(t) => s.push_str(t),
            TemplatePart::RequestId => s.push_str(v.request_id),
            TemplatePart::ClientIp => {
                if let Some(ip) = v.client_ip {
                    crate::netfmt::push_ip(&mut s, ip);
                }
            }
            TemplatePart::Route => s.push_str(v.route),
            TemplatePart::Claim(name) => {
                if let Some(c) = v.claims.and_then(|c| c.get(name)) {
                    s.push_str(&crate::http::claim_text(c));
                }
            }
        }
    }
    HeaderValue::from_str(&s).ok()
}

macro_rules! apply {
    ($name:ident, $ty:ty) => {
        pub fn $name(t: &HeaderTransform, h: &mut $ty, v: &Vars<'_>) -> pingora::Result<()> {
            for name in &t.remove {
                h.remove_header(name);
            }
            for (name, parts) in &t.set {
                if let Some(value) = render(parts, v) {
                    h.insert_header(name.clone(), value)?;
                }
            }
            for (name, parts) in &t.add {
                if let Some(value) = render(parts, v) {
                    h.append_header(name.clone(), value)?;
                }
            }
            Ok(())
        }
    };
}

apply!(apply_request, RequestHeader);
apply!(apply_response, ResponseHeader);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HeaderTransform;

    #[test]
    fn transforms_in_order() {
        let claims: Map<String, Value> =
            serde_json::from_str(r#"{"sub":"ada","roles":["a","b"]}"#).unwrap();
        let v = Vars {
            request_id: "rid",
            client_ip: Some("10.0.0.1".parse().unwrap()),
            route: "r",
            claims: Some(&claims),
        };
        let t = HeaderTransform {
            remove: vec!["cookie".parse().unwrap()],
            set: vec![(
                "x-who".parse().unwrap(),
                vec![
                    TemplatePart::Claim("sub".into()),
                    TemplatePart::Text("@".into()),
                    TemplatePart::ClientIp,
                ],
            )],
            add: vec![
                ("x-trace".parse().unwrap(), vec![TemplatePart::RequestId]),
                (
                    "x-roles".parse().unwrap(),
                    vec![TemplatePart::Claim("roles".into())],
                ),
            ],
        };
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("cookie", "a=b").unwrap();
        req.insert_header("x-who", "spoofed").unwrap();
        req.insert_header("x-trace", "first").unwrap();
        apply_request(&t, &mut req, &v).unwrap();
        assert!(req.headers.get("cookie").is_none());
        assert_eq!(req.headers["x-who"], "ada@10.0.0.1");
        assert_eq!(req.headers.get_all("x-trace").iter().count(), 2);
        assert_eq!(req.headers["x-roles"], "a b");
    }
}
