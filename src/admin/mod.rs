//! The admin listener (never the public one): health and readiness.

use crate::app::GatewayState;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

pub struct AdminApp {
    pub state: Arc<GatewayState>,
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<Vec<u8>> {
    let body = serde_json::to_vec(&v).unwrap_or_default();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .expect("static response parts")
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/health" => json(StatusCode::OK, serde_json::json!({"status": "ok"})),
            "/ready" => {
                let snap = self.state.snapshots.load();
                match snap.unready_upstream() {
                    None => json(StatusCode::OK, serde_json::json!({"status": "ready"})),
                    Some(name) => json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        serde_json::json!({"status": "not ready", "reason": format!("upstream `{name}` has no healthy target")}),
                    ),
                }
            }
            _ => json(
                StatusCode::NOT_FOUND,
                serde_json::json!({"type": "urn:gatehouse:problem:no-route", "title": "Not Found", "status": 404, "detail": "Unknown admin path."}),
            ),
        }
    }
}
