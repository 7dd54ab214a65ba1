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
//! | POST | `/cache/purge?path=P[&host=H]` | drop cached responses for a client-facing path |
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

    /// `POST /cache/purge?path=P[&host=H]`: `P` is the client-facing path
    /// (normalised like requests; with `?query` only that query goes),
    /// without `host` every host's entry for it goes.
    fn purge(&self, query: Option<&str>) -> Response<Vec<u8>> {
        let mut path = None;
        let mut host = None;
        for (k, v) in query
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
        {
            let v = percent_decode(v);
            match k {
                "path" => path = Some(v),
                "host" => host = Some(crate::router::normalize_host(&v).into_owned()),
                _ => {}
            }
        }
        let Some(path) = path else {
            return GatewayError::BadRequest("`path` is required: POST /cache/purge?path=/api/x")
                .http_response(&new_request_id());
        };
        let (p, q) = match path.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (path, None),
        };
        let Ok(p) = crate::router::normalize::normalize_path(&p) else {
            return GatewayError::BadRequest("`path` is not a valid request path")
                .http_response(&new_request_id());
        };
        let purged = self
            .state
            .cache
            .store
            .purge_path(&p, q.as_deref(), host.as_deref());
        json_response(StatusCode::OK, json!({ "purged": purged }))
    }

    fn post(&self, path: &str, query: Option<&str>) -> Response<Vec<u8>> {
        match path {
            "/cache/purge" => self.purge(query),
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
                let store = self.state.cache.store;
                self.state
                    .metrics
                    .cache_bytes
                    .set(store.used_bytes() as i64);
                self.state.metrics.cache_entries.set(store.len() as i64);
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
const POST_PATHS: &[&str] = &["/reload", "/cache/purge"];

/// Decodes `%XX` and `+` in a query-string value.
fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(x) => {
                        out.push(x);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

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
                let query = session.req_header().uri.query().map(str::to_string);
                self.post(&path, query.as_deref())
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
