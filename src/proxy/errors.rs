//! The errors gatehouse answers itself on the proxy listeners, each mapped
//! to its status, problem document (`crate::problem`) and own headers.

use crate::http::NormalizeError;
use crate::policy::auth::AuthDenied;
use crate::policy::rate_limit::LimitState;
use crate::problem::{self, Problem};
use http::Method;
use pingora::http::ResponseHeader;
use pingora::{Error, ErrorSource, ErrorType};

/// Errors that gatehouse answers itself.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum GatewayError {
    BadPath(NormalizeError),
    BadRequest(&'static str),
    NotFound,
    MethodNotAllowed(Vec<Method>),
    NoHealthyUpstream,
    /// The upstream has `max_inflight` requests in flight (503).
    Overloaded,
    UpstreamTimeout,
    BadGateway,
    Internal,
    /// The route's authentication refused the request (401/403/503).
    Auth(AuthDenied),
    /// Over a rate limit (429); the state of the limit to report.
    RateLimited(Box<LimitState>),
    /// A Redis-backed limit could not be checked and `on_error: deny`.
    RateLimitUnavailable,
    /// Body over `server.max_body` (413).
    PayloadTooLarge,
    /// Request head over `server.max_header_bytes` (431).
    HeadersTooLarge,
    /// Request target over `server.max_uri_bytes` (414).
    UriTooLong,
    /// The request body stalled longer than `server.body_timeout` (408).
    RequestTimeout,
    /// A CORS preflight from an origin the route does not allow (403).
    CorsRejected,
    /// The client IP is outside the route's `allow_ips` or in `deny_ips` (403).
    AccessDenied,
    /// Cluster mode before the first config was pushed to etcd (503).
    NoConfiguration,
}

impl GatewayError {
    pub(crate) fn status(&self) -> u16 {
        use GatewayError::*;
        match self {
            BadPath(_) | BadRequest(_) => 400,
            Auth(AuthDenied::Unauthorized { .. }) => 401,
            Auth(AuthDenied::Forbidden { .. } | AuthDenied::Refused { .. }) => 403,
            RateLimited(_) => 429,
            RateLimitUnavailable => 503,
            PayloadTooLarge => 413,
            HeadersTooLarge => 431,
            UriTooLong => 414,
            RequestTimeout => 408,
            CorsRejected | AccessDenied => 403,
            Auth(AuthDenied::Unavailable) => 503,
            NotFound => 404,
            MethodNotAllowed(_) => 405,
            Internal => 500,
            BadGateway => 502,
            NoHealthyUpstream | Overloaded | NoConfiguration => 503,
            UpstreamTimeout => 504,
        }
    }

    /// Short stable slug, also the last part of the problem `type`.
    pub(crate) fn slug(&self) -> &'static str {
        use GatewayError::*;
        match self {
            BadPath(_) => "bad-path",
            BadRequest(_) => "bad-request",
            NotFound => "no-route",
            MethodNotAllowed(_) => "method-not-allowed",
            NoHealthyUpstream => "no-healthy-upstream",
            Overloaded => "upstream-overloaded",
            UpstreamTimeout => "upstream-timeout",
            BadGateway => "bad-gateway",
            Internal => "internal-error",
            Auth(AuthDenied::Unauthorized { .. }) => "unauthorized",
            Auth(AuthDenied::Forbidden { .. }) => "insufficient-scope",
            Auth(AuthDenied::Refused { .. }) => "forbidden",
            Auth(AuthDenied::Unavailable) => "auth-unavailable",
            RateLimited(_) => "rate-limited",
            RateLimitUnavailable => "rate-limit-unavailable",
            PayloadTooLarge => "payload-too-large",
            HeadersTooLarge => "headers-too-large",
            UriTooLong => "uri-too-long",
            RequestTimeout => "request-timeout",
            CorsRejected => "cors-origin-not-allowed",
            AccessDenied => "access-denied",
            NoConfiguration => "no-configuration",
        }
    }

    pub(crate) fn detail(&self) -> String {
        use GatewayError::*;
        match self {
            BadPath(e) => format!("{e}."),
            BadRequest(m) => (*m).to_string(),
            NotFound => "No route matches this request.".into(),
            MethodNotAllowed(_) => "The route does not allow this method.".into(),
            NoHealthyUpstream => "No healthy upstream target is available.".into(),
            Overloaded => {
                "The upstream has as many requests in flight as it accepts; retry shortly.".into()
            }
            UpstreamTimeout => "The upstream did not respond in time.".into(),
            BadGateway => "The upstream connection failed.".into(),
            Internal => "The gateway failed to handle the request.".into(),
            PayloadTooLarge => "The request body is larger than this gateway accepts.".into(),
            HeadersTooLarge => "The request head is larger than this gateway accepts.".into(),
            UriTooLong => "The request target is longer than this gateway accepts.".into(),
            RequestTimeout => {
                "The request body stopped arriving; the request was abandoned.".into()
            }
            CorsRejected => "This origin is not allowed to call this route.".into(),
            AccessDenied => "This client address may not use this route.".into(),
            NoConfiguration => {
                "No configuration yet: this cluster node waits for the first `gatehouse push`."
                    .into()
            }
            Auth(AuthDenied::Unauthorized { failure, .. }) => failure.detail().to_string(),
            Auth(AuthDenied::Forbidden { scopes }) => {
                format!("The token lacks a required scope ({scopes}).")
            }
            Auth(AuthDenied::Unavailable) => {
                "Credentials cannot be checked right now (keys not loaded, or the auth service failed); retry shortly.".into()
            }
            Auth(AuthDenied::Refused { failure, .. }) => failure.detail().into(),
            RateLimited(s) => format!(
                "Rate limit `{}` of {} requests per {} s exceeded; retry in {} s.",
                s.limit, s.requests, s.window_secs, s.reset_secs
            ),
            RateLimitUnavailable => {
                "The rate limit cannot be checked right now; retry shortly.".into()
            }
        }
    }

    /// Headers this problem adds to the response.
    pub(crate) fn headers(&self) -> Vec<(http::HeaderName, String)> {
        match self {
            GatewayError::MethodNotAllowed(methods) => {
                let allow = methods
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                vec![(http::header::ALLOW, allow)]
            }
            GatewayError::Auth(
                AuthDenied::Unauthorized { challenges, .. }
                | AuthDenied::Refused { challenges, .. },
            ) => challenges
                .iter()
                .map(|c| (http::header::WWW_AUTHENTICATE, c.clone()))
                .collect(),
            GatewayError::Auth(AuthDenied::Forbidden { scopes }) => vec![(
                http::header::WWW_AUTHENTICATE,
                format!(
                    "Bearer realm=\"gatehouse\", error=\"insufficient_scope\", scope=\"{scopes}\""
                ),
            )],
            GatewayError::Auth(AuthDenied::Unavailable) => {
                vec![(http::header::RETRY_AFTER, "5".into())]
            }
            GatewayError::RateLimitUnavailable | GatewayError::Overloaded => {
                vec![(http::header::RETRY_AFTER, "1".into())]
            }
            _ => Vec::new(),
        }
    }

    /// Maps an error raised by Pingora while proxying (not one we chose).
    /// `None` means the client connection is gone and nothing can be sent.
    pub(crate) fn from_pingora(e: &Error) -> Option<GatewayError> {
        use ErrorType::*;
        let etype = e.etype();
        Some(match e.esource() {
            ErrorSource::Upstream => match etype {
                ConnectTimedout | ReadTimedout | WriteTimedout | TLSHandshakeTimedout => {
                    GatewayError::UpstreamTimeout
                }
                _ => GatewayError::BadGateway,
            },
            ErrorSource::Downstream => match etype {
                // Heads are bounded by `accept.rs`; a downstream read timeout is
                // a body that stalled past `body_timeout`.
                ReadTimedout => GatewayError::RequestTimeout,
                ReadError | WriteError | ConnectionClosed | WriteTimedout => return None,
                _ => GatewayError::BadRequest("The request could not be read."),
            },
            ErrorSource::Internal | ErrorSource::Unset => match etype {
                HTTPStatus(502) => GatewayError::BadGateway,
                HTTPStatus(503) => GatewayError::NoHealthyUpstream,
                HTTPStatus(504) => GatewayError::UpstreamTimeout,
                HTTPStatus(400) => GatewayError::BadRequest("The request is malformed."),
                _ => GatewayError::Internal,
            },
        })
    }

    /// The problem document of this error.
    pub(crate) fn problem(&self) -> Problem<'_> {
        Problem {
            status: self.status(),
            slug: self.slug(),
            detail: self.detail().into(),
            errors: None,
        }
    }

    /// The response head of this problem; what the request earned before
    /// failing (request id, rate-limit state, CORS) is added by
    /// `pipeline::response`.
    pub(crate) fn response_header(&self, body_len: usize) -> pingora::Result<ResponseHeader> {
        let mut resp = ResponseHeader::build(self.status(), Some(6))?;
        resp.insert_header(http::header::CONTENT_TYPE, problem::CONTENT_TYPE)?;
        resp.insert_header(http::header::CONTENT_LENGTH, body_len.to_string())?;
        resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
        for (name, value) in self.headers() {
            resp.append_header(name, value)?;
        }
        Ok(resp)
    }
}
