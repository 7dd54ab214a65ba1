//! The admin listener (`admin.listen`, never a public listener).
//!
//! | method | path | |
//! |---|---|---|
//! | GET | `/` | the console: a page for people (`console.rs`) |
//! | GET | `/console.json` | what the console shows: routes with their last minute, upstreams |
//! | GET | `/health` | 200 while the process runs |
//! | GET | `/ready` | 200 once every upstream had a health check and has a healthy target, else 503 |
//! | GET | `/metrics` | Prometheus text format |
//! | GET | `/upstreams` | targets with health, weight and requests in flight |
//! | GET | `/config` | the running config, secrets redacted |
//! | GET | `/cluster` | cluster mode: every live node, what it runs, `in_sync` |
//! | POST | `/reload` | re-read the config file (as SIGHUP); in cluster mode etcd too |
//! | POST | `/cache/purge?path=P[&host=H]` | drop cached responses for a client-facing path (in cluster mode on every node) |
//! | POST | `/explain` | `{"method", "url", "headers"}`: what the running config does with that request |
//!
//! With `admin.token` set, every POST needs `Authorization: Bearer <token>`,
//! compared in constant time.

mod console;

use crate::http::new_request_id;
use crate::problem::Problem;
use crate::runtime::fleet::Purge;
use crate::runtime::GatewayState;
use async_trait::async_trait;
use http::{HeaderName, Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub(crate) struct AdminApp {
    pub state: Arc<GatewayState>,
}

/// The errors the admin listener answers, as problem documents.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AdminError {
    /// A write without the right `admin.token`.
    Unauthorized,
    /// `POST /reload` with a config that does not validate.
    ReloadFailed(Vec<String>),
    NotFound,
    MethodNotAllowed(&'static [Method]),
    BadRequest(&'static str),
    /// A request body or explained request that cannot be read.
    Invalid(String),
    /// `GET /cluster` on a node without `cluster`.
    NotClustered,
    /// A write that could not be carried out now (etcd unreachable).
    Unavailable(String),
}

impl AdminError {
    fn problem(&self) -> Problem<'_> {
        let (status, slug, detail, errors) = match self {
            AdminError::Unauthorized => (
                401,
                "admin-unauthorized",
                "Admin writes need `Authorization: Bearer <admin.token>`.",
                None,
            ),
            AdminError::ReloadFailed(errors) => (
                400,
                "config-invalid",
                "The config file has errors; the running config stays in force.",
                Some(errors.as_slice()),
            ),
            AdminError::NotFound => (404, "no-route", "No route matches this request.", None),
            AdminError::MethodNotAllowed(_) => (
                405,
                "method-not-allowed",
                "The route does not allow this method.",
                None,
            ),
            AdminError::BadRequest(m) => (400, "bad-request", *m, None),
            AdminError::Invalid(m) => (400, "bad-request", m.as_str(), None),
            AdminError::NotClustered => (
                404,
                "not-clustered",
                "This gateway is not in cluster mode (no `cluster` in its config file).",
                None,
            ),
            AdminError::Unavailable(m) => (503, "unavailable", m.as_str(), None),
        };
        Problem {
            status,
            slug,
            detail: detail.into(),
            errors,
        }
    }

    fn headers(&self) -> Vec<(HeaderName, String)> {
        match self {
            AdminError::Unauthorized => vec![(
                http::header::WWW_AUTHENTICATE,
                "Bearer realm=\"gatehouse-admin\"".into(),
            )],
            AdminError::MethodNotAllowed(methods) => {
                let allow: Vec<&str> = methods.iter().map(Method::as_str).collect();
                vec![(http::header::ALLOW, allow.join(", "))]
            }
            _ => Vec::new(),
        }
    }

    fn response(&self) -> Response<Vec<u8>> {
        self.problem()
            .http_response(&new_request_id(), self.headers())
    }
}

fn response(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Vec<u8>> {
    let len = body.len();
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    h.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    resp
}

fn json_response(status: StatusCode, v: serde_json::Value) -> Response<Vec<u8>> {
    response(
        status,
        "application/json",
        serde_json::to_vec_pretty(&v).unwrap_or_default(),
    )
}

/// True when the request carries `Authorization: Bearer <token>`.
fn bearer_matches(session: &ServerSession, token: &str) -> bool {
    match crate::http::bearer_token(&session.req_header().headers) {
        Some(given) => given.as_bytes().ct_eq(token.as_bytes()).into(),
        None => false,
    }
}

/// Every admin endpoint; the one table both dispatch and the 405 check use.
#[derive(Clone, Copy)]
enum Endpoint {
    Console,
    ConsoleData,
    Health,
    Ready,
    Metrics,
    Upstreams,
    Config,
    Reload,
    Purge,
    Explain,
    Cluster,
}

const ENDPOINTS: &[(&str, Endpoint)] = &[
    ("/", Endpoint::Console),
    ("/console.json", Endpoint::ConsoleData),
    ("/health", Endpoint::Health),
    ("/ready", Endpoint::Ready),
    ("/metrics", Endpoint::Metrics),
    ("/upstreams", Endpoint::Upstreams),
    ("/config", Endpoint::Config),
    ("/reload", Endpoint::Reload),
    ("/cache/purge", Endpoint::Purge),
    ("/explain", Endpoint::Explain),
    ("/cluster", Endpoint::Cluster),
];

impl Endpoint {
    fn find(path: &str) -> Option<Endpoint> {
        ENDPOINTS.iter().find(|(p, _)| *p == path).map(|(_, e)| *e)
    }

    /// Writes are POST and need the admin token; reads are GET/HEAD.
    fn is_write(self) -> bool {
        matches!(self, Endpoint::Reload | Endpoint::Purge | Endpoint::Explain)
    }
}

impl AdminApp {
    fn upstreams(&self) -> serde_json::Value {
        let snap = self.state.snapshots.load();
        let target = |t: &crate::upstream::TargetStatus| {
            json!({
                "addr": t.addr.to_string(),
                "weight": t.weight,
                "healthy": t.healthy,
                "inflight": t.inflight,
                "ejected_until": t.ejected_until.map(crate::observability::time::rfc3339_millis),
            })
        };
        let mut out = serde_json::Map::new();
        for (name, pool) in &snap.upstreams {
            let reason = pool.unready_reason();
            let mut v = json!({
                "health_checked": pool.has_health_check(),
                "ready": reason.is_none(),
                "targets": pool.targets().iter().map(target).collect::<Vec<_>>(),
            });
            let draining = pool.draining();
            if !draining.is_empty() {
                v["draining"] = draining.iter().map(target).collect();
            }
            if let Some(dns) = pool.dns_status() {
                v["dns"] = dns;
            }
            if let Some(r) = reason {
                v["reason"] = r.into();
            }
            out.insert(name.clone(), v);
        }
        serde_json::Value::Object(out)
    }

    /// `POST /cache/purge?path=P[&host=H]`: `P` is the client-facing path
    /// (normalised like requests; with `?query` only that query goes),
    /// without `host` every host's entry for it goes.
    fn purge_request(query: Option<&str>) -> Result<Purge, AdminError> {
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
                "host" => host = Some(crate::http::normalize_host(&v).into_owned()),
                _ => {}
            }
        }
        let Some(path) = path else {
            return Err(AdminError::BadRequest(
                "`path` is required: POST /cache/purge?path=/api/x",
            ));
        };
        let (p, q) = match path.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (path, None),
        };
        let Ok(p) = crate::http::normalize_path(&p) else {
            return Err(AdminError::BadRequest("`path` is not a valid request path"));
        };
        Ok(Purge {
            path: p.into_owned(),
            query: q,
            host,
        })
    }

    /// Purges this node's cache; in cluster mode every other node's too,
    /// through etcd.
    async fn purge(&self, query: Option<&str>) -> Response<Vec<u8>> {
        let p = match Self::purge_request(query) {
            Ok(p) => p,
            Err(e) => return e.response(),
        };
        let store = self.state.cache.store;
        let purged = store.purge_path(&p.path, p.query.as_deref(), p.host.as_deref());
        let Some(fleet) = &self.state.fleet else {
            return json_response(StatusCode::OK, json!({ "purged": purged }));
        };
        match fleet.purge(p).await {
            Ok(()) => json_response(StatusCode::OK, json!({ "purged": purged, "cluster": true })),
            Err(e) => AdminError::Unavailable(format!(
                "purged {purged} responses on this node only: the purge could not reach the cluster ({e})"
            ))
            .response(),
        }
    }

    async fn reload(&self) -> Response<Vec<u8>> {
        let result = match &self.state.fleet {
            Some(f) => f.reload().await,
            None => self.state.reloader.reload(&self.state),
        };
        match result {
            Ok(report) => json_response(
                StatusCode::OK,
                json!({
                    "status": "reloaded",
                    "generation": report.generation,
                    "changed": report.changes.to_json(),
                    "needs_upgrade": report.needs_upgrade,
                }),
            ),
            Err(errors) => AdminError::ReloadFailed(errors).response(),
        }
    }

    fn ready(&self) -> Response<Vec<u8>> {
        let snap = self.state.snapshots.load();
        match snap.unready_reason() {
            None => json_response(StatusCode::OK, json!({"status": "ready"})),
            Some(reason) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "not ready", "reason": reason}),
            ),
        }
    }

    /// The gauges that describe state rather than count events are set
    /// from the running snapshot and the cache just before rendering.
    fn metrics(&self) -> Response<Vec<u8>> {
        let snap = self.state.snapshots.load();
        let m = &self.state.metrics;
        m.upstream_healthy.reset();
        for pool in snap.upstreams.values() {
            for t in pool.targets() {
                m.upstream_healthy
                    .with_label_values(&[&*pool.name, &t.addr.to_string()])
                    .set((t.healthy && t.ejected_until.is_none()) as i64);
            }
        }
        let store = self.state.cache.store;
        m.cache_bytes.set(store.used_bytes() as i64);
        let handoff = crate::runtime::handoff::tunnels_file(&snap.config.server.upgrade_sock);
        m.old_tunnels
            .set(crate::runtime::handoff::read_old_tunnels(&handoff));
        m.cache_entries.set(store.len() as i64);
        response(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            m.render().into_bytes(),
        )
    }

    /// `POST /explain`: the body names one request; the answer is what
    /// `gatehouse explain --json` prints, for the running snapshot.
    fn explain(&self, body: &[u8]) -> Response<Vec<u8>> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            method: String,
            url: String,
            #[serde(default)]
            headers: std::collections::BTreeMap<String, String>,
        }
        let b: Body = match serde_json::from_slice(body) {
            Ok(b) => b,
            Err(e) => {
                return AdminError::Invalid(format!(
                    "the body must be {{\"method\", \"url\", \"headers\": {{name: value}}}}: {e}"
                ))
                .response()
            }
        };
        let snap = self.state.snapshots.load();
        let rules = crate::proxy::explain::Rules {
            config: &snap.config,
            router: &snap.router,
            identity_headers: &snap.identity_headers,
        };
        let req = crate::proxy::explain::ExplainRequest {
            method: b.method,
            url: b.url,
            headers: b.headers.into_iter().collect(),
        };
        match crate::proxy::explain::explain(&rules, &req) {
            Ok(doc) => json_response(StatusCode::OK, doc),
            Err(e) => AdminError::Invalid(e.0).response(),
        }
    }

    async fn serve(
        &self,
        endpoint: Endpoint,
        query: Option<&str>,
        body: &[u8],
    ) -> Response<Vec<u8>> {
        match endpoint {
            Endpoint::Console => {
                let mut r = response(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    console::PAGE.as_bytes().to_vec(),
                );
                // Nothing on the page may come from elsewhere.
                r.headers_mut().insert(
                    http::header::CONTENT_SECURITY_POLICY,
                    http::HeaderValue::from_static("default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:"),
                );
                r
            }
            Endpoint::ConsoleData => {
                let snap = self.state.snapshots.load();
                let cluster = self
                    .state
                    .fleet
                    .as_ref()
                    .map_or(serde_json::Value::Null, |f| f.view());
                let doc = console::data(&snap, self.upstreams(), cluster);
                json_response(StatusCode::OK, doc)
            }
            Endpoint::Health => json_response(StatusCode::OK, json!({"status": "ok"})),
            Endpoint::Ready => self.ready(),
            Endpoint::Metrics => self.metrics(),
            Endpoint::Upstreams => json_response(StatusCode::OK, self.upstreams()),
            Endpoint::Config => {
                let snap = self.state.snapshots.load();
                json_response(StatusCode::OK, crate::config::redacted_json(&snap.config))
            }
            Endpoint::Reload => self.reload().await,
            Endpoint::Cluster => match &self.state.fleet {
                Some(f) => json_response(StatusCode::OK, f.view()),
                None => AdminError::NotClustered.response(),
            },
            Endpoint::Purge => self.purge(query).await,
            Endpoint::Explain => self.explain(body),
        }
    }

    /// Checks the method and, for writes, the token.
    fn admit(&self, session: &ServerSession, endpoint: Endpoint) -> Result<(), AdminError> {
        let method = &session.req_header().method;
        if !endpoint.is_write() {
            return match *method {
                Method::GET | Method::HEAD => Ok(()),
                _ => Err(AdminError::MethodNotAllowed(&[Method::GET, Method::HEAD])),
            };
        }
        if *method != Method::POST {
            return Err(AdminError::MethodNotAllowed(&[Method::POST]));
        }
        let snap = self.state.snapshots.load();
        match snap.config.admin.as_ref().and_then(|a| a.token.as_deref()) {
            Some(token) if !bearer_matches(session, token) => Err(AdminError::Unauthorized),
            _ => Ok(()),
        }
    }
}

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
        // Only `POST /explain` reads its body: at most 64 KiB are kept.
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = session.read_request_body().await {
            if body.len() + chunk.len() > 64 * 1024 {
                return AdminError::BadRequest("admin request bodies are at most 64 KiB")
                    .response();
            }
            body.extend_from_slice(&chunk);
        }
        let Some(endpoint) = Endpoint::find(session.req_header().uri.path()) else {
            return AdminError::NotFound.response();
        };
        if let Err(e) = self.admit(session, endpoint) {
            return e.response();
        }
        let query = session.req_header().uri.query().map(str::to_string);
        self.serve(endpoint, query.as_deref(), &body).await
    }
}
