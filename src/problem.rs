//! RFC 9457 problem documents (L0): the body and head of every error
//! gatehouse answers itself, on the proxy listeners (`proxy::errors`) and
//! on the admin listener (`admin`). `type` is `urn:gatehouse:problem:<slug>`.
//! Details are written for clients: never an upstream address, a token or
//! a stack trace.

use bytes::Bytes;
use http::HeaderName;
use std::borrow::Cow;

/// One problem, ready to render.
pub(crate) struct Problem<'a> {
    pub status: u16,
    /// Short stable slug, the last part of `type`.
    pub slug: &'static str,
    pub detail: Cow<'a, str>,
    /// Itemised errors (a config that did not validate).
    pub errors: Option<&'a [String]>,
}

/// The reason phrase used as `title`.
pub(crate) fn title(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        429 => "Too Many Requests",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Internal Server Error",
    }
}

pub(crate) const CONTENT_TYPE: &str = "application/problem+json";

impl Problem<'_> {
    /// The JSON body.
    pub(crate) fn body(&self, request_id: &str) -> Bytes {
        let mut v = serde_json::json!({
            "type": format!("urn:gatehouse:problem:{}", self.slug),
            "title": title(self.status),
            "status": self.status,
            "detail": self.detail,
            "request_id": request_id,
        });
        if let Some(errors) = self.errors {
            v["errors"] = serde_json::json!(errors);
        }
        Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
    }

    /// As an `http::Response` (the admin listener), with `headers` added.
    pub(crate) fn http_response(
        &self,
        request_id: &str,
        headers: Vec<(HeaderName, String)>,
    ) -> http::Response<Vec<u8>> {
        let body = self.body(request_id).to_vec();
        let mut resp = http::Response::new(Vec::new());
        *resp.status_mut() = http::StatusCode::from_u16(self.status)
            .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(CONTENT_TYPE),
        );
        h.insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(body.len()),
        );
        h.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
        for (name, value) in headers {
            if let Ok(v) = http::HeaderValue::try_from(value) {
                h.append(name, v);
            }
        }
        *resp.body_mut() = body;
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_rfc_9457_members() {
        let p = Problem {
            status: 404,
            slug: "no-route",
            detail: "No route matches this request.".into(),
            errors: None,
        };
        let v: serde_json::Value = serde_json::from_slice(&p.body("id-1")).unwrap();
        assert_eq!(v["type"], "urn:gatehouse:problem:no-route");
        assert_eq!(v["title"], "Not Found");
        assert_eq!(v["status"], 404);
        assert_eq!(v["request_id"], "id-1");
        let r = p.http_response("id-1", vec![(http::header::ALLOW, "GET".into())]);
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["content-type"], CONTENT_TYPE);
        assert_eq!(r.headers()["allow"], "GET");
    }
}
