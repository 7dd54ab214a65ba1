//! The admin listener (`admin.listen`, never a public listener).
//!
//! | method | path | |
//! |---|---|---|
//! | GET | `/health` | 200 while the process runs |
//! | GET | `/ready` | 200 once every upstream had a health check and has a healthy target, else 503 |
//! | GET | `/metrics` | Prometheus text format |
//! | GET | `/upstreams` | targets with health, weight and requests in flight |
//! | GET | `/config` | the running config, secrets redacted |
//! | POST | `/reload` | re-read the config file (as SIGHUP) |
//!
//! With `admin.token` set, every POST needs `Authorization: Bearer <token>`,
//! compared in constant time.

use crate::app::GatewayState;
use crate::proxy::errors::GatewayError;
use crate::proxy::forward::new_request_id;
use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub struct AdminApp {
    pub state: Arc<GatewayState>,
}

fn response(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .expect("static response parts")
}

fn json_response(status: StatusCode, v: serde_json::Value) -> Response<Vec<u8>> {
    response(
        status,
        "application/json",
        serde_json::to_vec_pretty(&v).unwrap_or_default(),
    )
}

/// True when the request carries `Authorization: Bearer <token>`.
pub fn bearer_matches(session: &ServerSession, token: &str) -> bool {
    let Some(v) = session
        .req_header()
        .headers
        .get(http::header::AUTHORIZATION)
    else {
        return false;
    };
    let Some(given) = v.as_bytes().strip_prefix(b"Bearer ") else {
        return false;
    };
    given.ct_eq(token.as_bytes()).into()
}

impl AdminApp {
    fn upstreams(&self) -> serde_json::Value {
        let snap = self.state.snapshots.load();
        let mut out = serde_json::Map::new();
        for (name, pool) in &snap.upstreams {
            let targets: Vec<_> = pool
                .targets()
                .iter()
                .map(|t| json!({"addr": t.addr.to_string(), "weight": t.weight, "healthy": t.healthy, "inflight": t.inflight}))
                .collect();
            out.insert(
                name.clone(),
                json!({"health_checked": pool.has_health_check(), "ready": pool.is_ready(), "targets": targets}),
            );
        }
        serde_json::Value::Object(out)
    }

    fn post(&self, path: &str) -> Response<Vec<u8>> {
        match path {
            "/reload" => match self.state.reload() {
                Ok(report) => json_response(
                    StatusCode::OK,
                    json!({"status": "reloaded", "generation": report.generation, "needs_upgrade": report.needs_upgrade}),
                ),
                Err(errors) => GatewayError::ReloadFailed(errors).http_response(&new_request_id()),
            },
            _ => GatewayError::NotFound.http_response(&new_request_id()),
        }
    }

    fn get(&self, path: &str) -> Response<Vec<u8>> {
        match path {
            "/health" => json_response(StatusCode::OK, json!({"status": "ok"})),
            "/ready" => {
                let snap = self.state.snapshots.load();
                match snap.unready_upstream() {
                    None => json_response(StatusCode::OK, json!({"status": "ready"})),
                    Some(name) => json_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        json!({"status": "not ready", "reason": format!("upstream `{name}` has no healthy target")}),
                    ),
                }
            }
            "/metrics" => {
                let snap = self.state.snapshots.load();
                let text = self.state.metrics.render(&snap);
                response(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    text.into_bytes(),
                )
            }
            "/upstreams" => json_response(StatusCode::OK, self.upstreams()),
            "/config" => {
                let snap = self.state.snapshots.load();
                json_response(StatusCode::OK, crate::config::redacted_json(&snap.config))
            }
            _ => GatewayError::NotFound.http_response(&new_request_id()),
        }
    }
}

const GET_PATHS: &[&str] = &["/health", "/ready", "/metrics", "/upstreams", "/config"];
const POST_PATHS: &[&str] = &["/reload"];

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        // Admin requests carry no meaningful body; read (and drop) a bounded one.
        let mut read = 0usize;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            read += chunk.len();
            if read > 64 * 1024 {
                break;
            }
        }
        let path = session.req_header().uri.path().to_string();
        let method = session.req_header().method.clone();
        let known_get = GET_PATHS.contains(&path.as_str());
        let known_post = POST_PATHS.contains(&path.as_str());
        match method {
            Method::GET | Method::HEAD if known_get => self.get(&path),
            Method::POST if known_post => {
                let snap = self.state.snapshots.load();
                let token = snap.config.admin.as_ref().and_then(|a| a.token.clone());
                if let Some(token) = token {
                    if !bearer_matches(session, &token) {
                        return GatewayError::AdminUnauthorized.http_response(&new_request_id());
                    }
                }
                self.post(&path)
            }
            _ if known_get => GatewayError::MethodNotAllowed(vec![Method::GET, Method::HEAD])
                .http_response(&new_request_id()),
            _ if known_post => {
                GatewayError::MethodNotAllowed(vec![Method::POST]).http_response(&new_request_id())
            }
            _ => GatewayError::NotFound.http_response(&new_request_id()),
        }
    }
}
