//! The one place that turns gateway errors into HTTP responses: every error
//! gatehouse itself answers is `application/problem+json` (RFC 9457) with
//! `type`, `title`, `status`, `detail` and `request_id`. Details are written
//! for clients: never an upstream address, a token or a stack trace.

use crate::router::normalize::NormalizeError;
use bytes::Bytes;
use http::Method;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType};

/// Errors that gatehouse answers itself.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayError {
    BadPath(NormalizeError),
    BadRequest(&'static str),
    NotFound,
    MethodNotAllowed(Vec<Method>),
    NoHealthyUpstream,
    UpstreamTimeout,
    BadGateway,
    Internal,
}

impl GatewayError {
    pub fn status(&self) -> u16 {
        match self {
            GatewayError::BadPath(_) | GatewayError::BadRequest(_) => 400,
            GatewayError::NotFound => 404,
            GatewayError::MethodNotAllowed(_) => 405,
            GatewayError::NoHealthyUpstream => 503,
            GatewayError::UpstreamTimeout => 504,
            GatewayError::BadGateway => 502,
            GatewayError::Internal => 500,
        }
    }

    /// Short stable slug, also the last part of the problem `type`.
    pub fn slug(&self) -> &'static str {
        match self {
            GatewayError::BadPath(_) => "bad-path",
            GatewayError::BadRequest(_) => "bad-request",
            GatewayError::NotFound => "no-route",
            GatewayError::MethodNotAllowed(_) => "method-not-allowed",
            GatewayError::NoHealthyUpstream => "no-healthy-upstream",
            GatewayError::UpstreamTimeout => "upstream-timeout",
            GatewayError::BadGateway => "bad-gateway",
            GatewayError::Internal => "internal-error",
        }
    }

    pub fn title(&self) -> &'static str {
        match self {
            GatewayError::BadPath(_) | GatewayError::BadRequest(_) => "Bad Request",
            GatewayError::NotFound => "Not Found",
            GatewayError::MethodNotAllowed(_) => "Method Not Allowed",
            GatewayError::NoHealthyUpstream => "Service Unavailable",
            GatewayError::UpstreamTimeout => "Gateway Timeout",
            GatewayError::BadGateway => "Bad Gateway",
            GatewayError::Internal => "Internal Server Error",
        }
    }

    pub fn detail(&self) -> String {
        match self {
            GatewayError::BadPath(e) => format!("{e}."),
            GatewayError::BadRequest(m) => (*m).to_string(),
            GatewayError::NotFound => "No route matches this request.".into(),
            GatewayError::MethodNotAllowed(_) => "The route does not allow this method.".into(),
            GatewayError::NoHealthyUpstream => "No healthy upstream target is available.".into(),
            GatewayError::UpstreamTimeout => "The upstream did not respond in time.".into(),
            GatewayError::BadGateway => "The upstream connection failed.".into(),
            GatewayError::Internal => "The gateway failed to handle the request.".into(),
        }
    }

    /// Maps an error raised by Pingora while proxying (not one we chose).
    /// `None` means the client connection is gone and nothing can be sent.
    pub fn from_pingora(e: &Error) -> Option<GatewayError> {
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
                ReadError | WriteError | ConnectionClosed | ReadTimedout | WriteTimedout => {
                    return None
                }
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

    /// The JSON body of this problem.
    pub fn body(&self, request_id: &str) -> Bytes {
        let v = serde_json::json!({
            "type": format!("urn:gatehouse:problem:{}", self.slug()),
            "title": self.title(),
            "status": self.status(),
            "detail": self.detail(),
            "request_id": request_id,
        });
        Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
    }

    /// The complete response head for this problem.
    pub fn response_header(
        &self,
        request_id: &str,
        body_len: usize,
    ) -> pingora::Result<ResponseHeader> {
        let mut resp = ResponseHeader::build(self.status(), Some(6))?;
        resp.insert_header(http::header::CONTENT_TYPE, "application/problem+json")?;
        resp.insert_header(http::header::CONTENT_LENGTH, body_len.to_string())?;
        resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
        if !request_id.is_empty() {
            resp.insert_header("x-request-id", request_id)?;
        }
        if let GatewayError::MethodNotAllowed(methods) = self {
            let allow = methods
                .iter()
                .map(|m| m.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            resp.insert_header(http::header::ALLOW, allow)?;
        }
        Ok(resp)
    }
}

/// Writes `err` as the response to `session`.
pub async fn respond(
    session: &mut Session,
    err: &GatewayError,
    request_id: &str,
) -> pingora::Result<()> {
    let body = err.body(request_id);
    let resp = err.response_header(request_id, body.len())?;
    let head_only = session.req_header().method == Method::HEAD;
    session
        .write_response_header(Box::new(resp), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}
