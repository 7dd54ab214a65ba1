//! `explain`: what the proxy would do with one request, without a socket.
//!
//! It runs the proxy's own steps on a real request head: `forward::sanitize`,
//! the normaliser, `route::route_in` over the same `Router`, and the
//! pipeline's policy order (`pipeline.rs`), so it cannot disagree with the
//! proxy about the route. What only a live request can tell (a signature,
//! the client address, a counter, the auth service's answer) is named, not
//! guessed. Used by `gatehouse explain` (a fresh router, no snapshot: that
//! would start health checks) and `POST /explain` (the running snapshot).

use super::forward;
use super::route;
use crate::config::{AuthConfig, Config, LimitKey, RouteConfig};
use crate::policy::{compress, cors};
use crate::router::{RouteRequest, Router};
use http::{HeaderName, HeaderValue, Method};
use pingora::http::RequestHeader;
use serde_json::{json, Value};

/// One request to explain, as `explain` or `POST /explain` gives it.
pub(crate) struct ExplainRequest {
    pub method: String,
    /// `https://host/path?query`, or origin form `/path?query`.
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// A request line or header that is not HTTP (exit status 1, or 400).
#[derive(Debug, PartialEq)]
pub(crate) struct Unparseable(pub String);

/// What explain reads: a config and the router compiled from its routes.
pub(crate) struct Rules<'a> {
    pub config: &'a Config,
    pub router: &'a Router,
    /// Headers providers set from identity (stripped from clients).
    pub identity_headers: &'a [HeaderName],
}

/// Splits `METHOD URL` (an optional trailing `HTTP/1.1` is ignored).
pub(crate) fn parse_line(line: &str) -> Result<(String, String), Unparseable> {
    let mut words = line.split_whitespace();
    let (Some(method), Some(url)) = (words.next(), words.next()) else {
        return Err(Unparseable(format!(
            "`{line}` is not a request line: expected `METHOD URL`, e.g. `GET https://api.example.com/users`"
        )));
    };
    match words.next() {
        None => {}
        Some(v) if v.starts_with("HTTP/") && words.next().is_none() => {}
        Some(_) => return Err(Unparseable(format!("`{line}` has more than `METHOD URL`"))),
    }
    Ok((method.to_string(), url.to_string()))
}

/// The request head the proxy would see, and the scheme it came in on.
fn head(req: &ExplainRequest) -> Result<(RequestHeader, &'static str), Unparseable> {
    let bad = |what: &str| Unparseable(what.to_string());
    let method = Method::from_bytes(req.method.as_bytes())
        .map_err(|_| bad(&format!("`{}` is not an HTTP method", req.method)))?;
    let uri: http::Uri = req
        .url
        .parse()
        .map_err(|_| bad(&format!("`{}` is not a URL or a path", req.url)))?;
    let (scheme, authority) = match (uri.scheme_str(), uri.authority()) {
        (None, None) if req.url.starts_with('/') => ("http", None),
        (Some(s), Some(a)) if s.eq_ignore_ascii_case("http") => ("http", Some(a)),
        (Some(s), Some(a)) if s.eq_ignore_ascii_case("https") => ("https", Some(a)),
        _ => {
            return Err(bad(&format!(
                "`{}` is neither http(s)://host/path nor /path",
                req.url
            )))
        }
    };
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut h = RequestHeader::build(method, target.as_bytes(), Some(req.headers.len() + 1))
        .map_err(|e| bad(&format!("`{}`: {e}", req.url)))?;
    for (name, value) in &req.headers {
        let n = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| bad(&format!("`{name}` is not a header name")))?;
        let v = HeaderValue::from_str(value.trim())
            .map_err(|_| bad(&format!("the value of `{name}` is not a header value")))?;
        h.append_header(n, v)
            .map_err(|e| bad(&format!("header `{name}`: {e}")))?;
    }
    // Absolute form: the authority replaces Host, as on a live listener.
    if let Some(a) = authority {
        h.insert_header(http::header::HOST, a.as_str())
            .map_err(|e| bad(&format!("host `{a}`: {e}")))?;
    }
    Ok((h, scheme))
}

/// Explains `req` under `rules`: the `--json` document.
pub(crate) fn explain(rules: &Rules<'_>, req: &ExplainRequest) -> Result<Value, Unparseable> {
    let (mut h, scheme) = head(req)?;
    let cfg = rules.config;
    let mut doc = json!({
        "request": {"method": h.method.as_str(), "url": req.url},
        "path": null, "route": null, "upstream_path": null, "not_matched": [],
    });
    // Pipeline step 1: sanitise, then strip client copies of identity headers.
    if let Err(e) = forward::sanitize(&mut h, cfg.server.underscores_in_headers) {
        return Ok(answer(doc, e.status(), &e.detail()));
    }
    forward::strip_identity_headers(&mut h, rules.identity_headers);
    let path = match crate::http::normalize_path(h.uri.path()) {
        Ok(p) => p.into_owned(),
        Err(e) => return Ok(answer(doc, 400, &format!("{e}."))),
    };
    doc["path"] = path.clone().into();
    // Step 2: route (a CORS preflight on the method it asks about).
    let preflight = cors::preflight_method(&h.method, &h.headers);
    let method = preflight.clone().unwrap_or_else(|| h.method.clone());
    let host = crate::http::request_host(&h).map(|v| crate::http::normalize_host(v).into_owned());
    let rreq = RouteRequest {
        host: host.as_deref(),
        path: &path,
        method: &method,
        headers: &h.headers,
    };
    let routed = route::route_in(rules.router, &cfg.routes, &h, &method);
    let chosen = routed.as_ref().ok().map(|m| m.route);
    doc["not_matched"] = not_matched(rules.router, &cfg.routes, &rreq, chosen).into();
    let matched = match routed {
        Ok(m) => m,
        Err(e) => return Ok(answer(doc, e.status(), &e.detail())),
    };
    let r = &cfg.routes[matched.route];
    doc["route"] = r.name.clone().into();
    doc["why"] = why(r).into();
    doc["upstream_path"] = match &matched.upstream_uri {
        Some(u) => u.to_string(),
        None => h
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string(),
    }
    .into();
    let redacted = crate::config::redacted_json(cfg);
    let rj = &redacted["routes"][matched.route];
    let mut status = (200, "proxied to the upstream".to_string());
    let step = Step {
        cfg,
        r,
        rj,
        redacted: &redacted,
        h: &h,
        scheme,
        host: host.as_deref(),
        path: &path,
        preflight: preflight.is_some(),
    };
    let policies = policies(&step, &mut status);
    doc["policies"] = policies.into();
    doc["upstream"] = upstreams(r, &redacted);
    Ok(answer(doc, status.0, &status.1))
}

fn answer(mut doc: Value, status: u16, reason: &str) -> Value {
    doc["status"] = status.into();
    doc["reason"] = reason.into();
    doc
}

/// Why the chosen route won, in the router's precedence terms.
fn why(r: &RouteConfig) -> String {
    let m = &r.matcher;
    let mut parts = Vec::new();
    if let Some(h) = &m.host {
        parts.push(match h {
            crate::config::HostMatch::Exact(h) => format!("host {h}"),
            crate::config::HostMatch::Wildcard(h) => format!("host *.{h}"),
        });
    }
    match (&m.path, &m.path_prefix, &m.path_regex) {
        (Some(p), _, _) => parts.push(format!("exact path {p}")),
        (None, Some(p), _) => parts.push(format!("longest prefix {p}")),
        (None, None, Some(re)) => parts.push(format!("first regex {}", re.as_str())),
        (None, None, None) => parts.push("any path".to_string()),
    }
    if !m.methods.is_empty() {
        let ms: Vec<&str> = m.methods.iter().map(Method::as_str).collect();
        parts.push(format!("methods {}", ms.join(",")));
    }
    for (n, _) in &m.headers {
        parts.push(format!("header {n}"));
    }
    parts.join(", ")
}

/// The routes that did not match, nearest first (fewest failed
/// conditions, then file order), at most five; a route that matched but
/// lost on precedence says so.
fn not_matched(
    router: &Router,
    routes: &[RouteConfig],
    req: &RouteRequest<'_>,
    chosen: Option<usize>,
) -> Vec<Value> {
    let mut near: Vec<(usize, usize, Vec<crate::router::Miss>)> = (0..routes.len())
        .filter(|&id| Some(id) != chosen)
        .map(|id| {
            let misses = router.misses(id, req);
            (misses.len(), id, misses)
        })
        .collect();
    near.sort_by_key(|(n, id, _)| (*n, *id));
    near.into_iter()
        .take(5)
        .map(|(_, id, misses)| {
            let r = &routes[id];
            let (reason, detail) = match misses.first() {
                None => (
                    "precedence",
                    "matches too, but the chosen route comes first".to_string(),
                ),
                Some(m) => (m.label(), miss_detail(*m, r, req)),
            };
            json!({"route": r.name, "reason": reason, "detail": detail})
        })
        .collect()
}

fn miss_detail(m: crate::router::Miss, r: &RouteConfig, req: &RouteRequest<'_>) -> String {
    use crate::router::Miss;
    let mc = &r.matcher;
    match m {
        Miss::Host => match &mc.host {
            Some(crate::config::HostMatch::Exact(h)) => format!("wants host {h}"),
            Some(crate::config::HostMatch::Wildcard(h)) => format!("wants host *.{h}"),
            None => String::new(),
        },
        Miss::Path => match (&mc.path, &mc.path_prefix, &mc.path_regex) {
            (Some(p), _, _) => format!("wants path {p}"),
            (None, Some(p), _) => format!("wants prefix {p}"),
            (None, None, Some(re)) => format!("wants regex {}", re.as_str()),
            _ => String::new(),
        },
        Miss::Header => {
            let want: Vec<String> = mc
                .headers
                .iter()
                .filter(|(n, v)| req.headers.get(n) != Some(v))
                .map(|(n, v)| format!("{n}: {}", v.to_str().unwrap_or("?")))
                .collect();
            format!("wants {}", want.join(", "))
        }
        Miss::Method => {
            let ms: Vec<&str> = mc.methods.iter().map(Method::as_str).collect();
            format!("wants {}", ms.join(", "))
        }
    }
}

/// What the policy steps read.
struct Step<'a> {
    cfg: &'a Config,
    r: &'a RouteConfig,
    /// The route, and the whole config, as `/config` renders them.
    rj: &'a Value,
    redacted: &'a Value,
    h: &'a RequestHeader,
    scheme: &'static str,
    host: Option<&'a str>,
    path: &'a str,
    preflight: bool,
}

/// The route's policies in the order `pipeline.rs` runs them; `status`
/// becomes the first refusal explain can be sure of.
fn policies(s: &Step<'_>, status: &mut (u16, String)) -> Vec<Value> {
    let (r, rj, headers) = (s.r, s.rj, &s.h.headers);
    let mut out = Vec::new();
    let refuse = |st: &mut (u16, String), code: u16, why: &str| {
        if st.0 == 200 {
            *st = (code, why.to_string());
        }
    };
    if !(r.allow_ips.is_empty() && r.deny_ips.is_empty()) {
        out.push(
            json!({"step": "ip_rules", "allow": rj["allow_ips"], "deny": rj["deny_ips"],
            "for_this_request": "decided by the client address (403 outside the rules)"}),
        );
    }
    if let (true, Some(c)) = (s.preflight, &r.cors) {
        let origin = cors::origin(headers).unwrap_or("");
        let ok = cors::allowed(c, origin);
        out.push(json!({"step": "cors_preflight", "origin": origin, "allowed": ok}));
        if ok {
            refuse(status, 204, "a CORS preflight, answered by gatehouse");
        } else {
            refuse(
                status,
                403,
                "a CORS preflight from an origin the route does not allow",
            );
        }
        return out;
    }
    if let Some(ttl) = r.cache {
        let rule = match s.h.method {
            Method::GET | Method::HEAD => "looked up, stored when the response allows",
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE => {
                "not cached; a success invalidates the path"
            }
            _ => "not cached (method)",
        };
        out.push(json!({"step": "cache", "rule": rule,
            "ttl": crate::config::units::format_duration(ttl.unwrap_or(s.cfg.cache.default_ttl)),
            "key": {"method": "GET", "scheme": s.scheme, "host": s.host.unwrap_or(""), "route": r.name,
                    "path": s.path, "query": s.h.uri.query().unwrap_or("")}}));
    }
    if let Some(a) = &r.auth {
        let (v, present) = auth(s.cfg, &a.providers, s.h);
        out.push(json!({"step": "auth", "providers": v, "scopes": a.scopes}));
        if !present {
            refuse(
                status,
                401,
                "the route needs credentials and the request has none",
            );
        }
    }
    for name in &r.rate_limits {
        let l = &s.cfg.rate_limits[name];
        let value = match &l.key {
            LimitKey::ClientIp => "the client address".to_string(),
            LimitKey::Consumer => "the authenticated user, else the client address".to_string(),
            LimitKey::Claim(c) => {
                format!("claim `{c}` of the verified token, else the client address")
            }
            LimitKey::Header(h) => match headers.get(h).and_then(|v| v.to_str().ok()) {
                Some(v) => format!("{h}: {v}"),
                None => format!("the client address ({h} absent)"),
            },
        };
        let lj = &s.redacted["rate_limits"][name];
        out.push(
            json!({"step": "rate_limit", "name": name, "requests": l.requests, "per": lj["per"],
            "key": lj["key"], "backend": lj["backend"], "counts_by": value}),
        );
    }
    if let Some(m) = &r.mirror {
        out.push(json!({"step": "mirror", "upstream": m.upstream, "percent": m.percent}));
    }
    if let Some(c) = &r.compress {
        let coding = compress::negotiate(
            headers.get_all(http::header::ACCEPT_ENCODING).iter(),
            &c.algorithms,
        );
        out.push(json!({"step": "compress", "algorithms": rj["compress"]["algorithms"], "min_size": c.min_size,
            "for_this_request": coding.map_or("identity", |c| c.token())}));
    }
    for (step, t) in [
        ("request_headers", &r.request_headers),
        ("response_headers", &r.response_headers),
    ] {
        if !(t.set.is_empty() && t.add.is_empty() && t.remove.is_empty()) {
            let j = &rj[step];
            out.push(
                json!({"step": step, "set": j["set"], "add": j["add"], "remove": j["remove"]}),
            );
        }
    }
    if let Some(c) = &r.cors {
        let origin = cors::origin(headers);
        out.push(json!({"step": "cors", "origin": origin, "allowed": origin.map(|o| cors::allowed(c, o))}));
    }
    out
}

/// Each provider of a route and whether this request carries its kind of
/// credential; true when one does (or an auth service decides).
fn auth(cfg: &Config, names: &[String], h: &RequestHeader) -> (Vec<Value>, bool) {
    let mut any = false;
    let v = names
        .iter()
        .filter_map(|n| cfg.auth.get(n).map(|a| (n, a)))
        .map(|(n, a)| {
            let (kind, credential, present) = match a {
                AuthConfig::Jwt(_) => {
                    let p = crate::http::bearer_token(&h.headers).is_some();
                    ("jwt", "Authorization: Bearer", p)
                }
                AuthConfig::ApiKey(k) => (
                    "api_key",
                    k.header.as_str(),
                    h.headers.contains_key(&k.header),
                ),
                AuthConfig::Basic(_) => {
                    let p = h
                        .headers
                        .get(http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.len() > 6 && v[..6].eq_ignore_ascii_case("basic "));
                    ("basic", "Authorization: Basic", p)
                }
                AuthConfig::Forward(_) => ("forward", "decided by the auth service", true),
                AuthConfig::Mtls(_) => ("mtls", "TLS client certificate", false),
            };
            any |= present;
            json!({"name": n, "type": kind, "credential": credential, "present": present})
        })
        .collect();
    (v, any)
}

/// The route's upstream (every side of a split) with balance and targets.
fn upstreams(r: &RouteConfig, redacted: &Value) -> Value {
    let sides: Vec<Value> = r
        .upstream
        .entries()
        .into_iter()
        .map(|(name, weight)| {
            let u = &redacted["upstreams"][name];
            json!({"name": name, "weight": weight, "balance": u["balance"], "targets": u["targets"],
                "srv": u["srv"], "tls": u["tls"], "health_check": !u["health_check"].is_null()})
        })
        .collect();
    json!(sides)
}

/// The document as aligned text for a person (`explain` without `--json`).
pub(crate) fn render(doc: &Value) -> String {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    let list = |v: &Value| match v.as_array() {
        Some(a) if !a.is_empty() => a.iter().map(text).collect::<Vec<_>>().join(", "),
        _ => "-".to_string(),
    };
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("  {k:<15}{v}\n"));
    let req = &doc["request"];
    line(
        "request",
        format!("{} {}", text(&req["method"]), text(&req["url"])),
    );
    line("path", text(&doc["path"]));
    let route = match &doc["route"] {
        Value::Null => "none".to_string(),
        r => format!("{} ({})", text(r), text(&doc["why"])),
    };
    line("route", route);
    line(
        "status",
        format!("{}  {}", text(&doc["status"]), text(&doc["reason"])),
    );
    if !doc["upstream_path"].is_null() {
        line("upstream path", text(&doc["upstream_path"]));
    }
    for u in doc["upstream"].as_array().into_iter().flatten() {
        let targets: Vec<String> = u["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| format!("{} (weight {})", text(&t["addr"]), text(&t["weight"])))
            .collect();
        let targets = match (&u["srv"], targets.is_empty()) {
            (Value::String(srv), _) => format!("SRV {srv}"),
            (_, true) => "-".to_string(),
            _ => targets.join(", "),
        };
        let check = if u["health_check"] == true {
            ", health-checked"
        } else {
            ""
        };
        line(
            "upstream",
            format!(
                "{} (weight {}): {}{check}; {targets}",
                text(&u["name"]),
                text(&u["weight"]),
                text(&u["balance"])
            ),
        );
    }
    let policies = doc["policies"].as_array().cloned().unwrap_or_default();
    if !policies.is_empty() {
        out.push_str("\npolicies, in the order they run\n");
    }
    for (i, p) in policies.iter().enumerate() {
        let what = match p["step"].as_str().unwrap_or("") {
            "ip_rules" => format!(
                "allow {}; deny {}; {}",
                list(&p["allow"]),
                list(&p["deny"]),
                text(&p["for_this_request"])
            ),
            "cors_preflight" | "cors" => format!(
                "origin {}; allowed {}",
                text(&p["origin"]),
                text(&p["allowed"])
            ),
            "cache" => {
                let k = &p["key"];
                format!(
                    "ttl {}; {}; key {} {}://{}{}{}{} (route {})",
                    text(&p["ttl"]),
                    text(&p["rule"]),
                    text(&k["method"]),
                    text(&k["scheme"]),
                    text(&k["host"]),
                    text(&k["path"]),
                    if k["query"] == "" { "" } else { "?" },
                    text(&k["query"]),
                    text(&k["route"])
                )
            }
            "auth" => {
                let ps: Vec<String> = p["providers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        let seen = if a["present"] == true {
                            "present"
                        } else {
                            "absent"
                        };
                        format!(
                            "{} `{}` ({}: {seen})",
                            text(&a["type"]),
                            text(&a["name"]),
                            text(&a["credential"])
                        )
                    })
                    .collect();
                format!("{}; scopes {}", ps.join(" or "), list(&p["scopes"]))
            }
            "rate_limit" => format!(
                "`{}`: {} per {} by {} ({}); counts by {}",
                text(&p["name"]),
                text(&p["requests"]),
                text(&p["per"]),
                text(&p["key"]),
                text(&p["backend"]),
                text(&p["counts_by"])
            ),
            "mirror" => format!(
                "{}% copied to {}",
                text(&p["percent"]),
                text(&p["upstream"])
            ),
            "compress" => format!(
                "{} from {} bytes; this request gets {}",
                list(&p["algorithms"]),
                text(&p["min_size"]),
                text(&p["for_this_request"])
            ),
            _ => {
                let names = |v: &Value| {
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .map(|x| text(&x[0]))
                        .collect::<Vec<_>>()
                };
                format!(
                    "set {:?}; add {:?}; remove {}",
                    names(&p["set"]),
                    names(&p["add"]),
                    list(&p["remove"])
                )
            }
        };
        out.push_str(&format!("  {}. {:<16}{what}\n", i + 1, text(&p["step"])));
    }
    let misses = doc["not_matched"].as_array().cloned().unwrap_or_default();
    if !misses.is_empty() {
        out.push_str("\nnearest routes that did not match\n");
    }
    for m in &misses {
        out.push_str(&format!(
            "  {:<15}{:<12}{}\n",
            text(&m["route"]),
            text(&m["reason"]),
            text(&m["detail"])
        ));
    }
    out
}

/// `gatehouse explain`: the rules of a config file alone, built without
/// starting anything (providers compiled only for their identity headers).
pub(crate) fn offline(cfg: &Config, req: &ExplainRequest) -> Result<Value, Unparseable> {
    let router = Router::new(&cfg.routes);
    let metrics = crate::observability::metrics::Metrics::new();
    let mut providers = std::collections::BTreeMap::new();
    for (name, a) in &cfg.auth {
        let p = crate::policy::auth::Provider::new(name, a, &metrics)
            .map_err(|e| Unparseable(format!("auth.{name}: {e}")))?;
        providers.insert(name.clone(), std::sync::Arc::new(p));
    }
    let ids = crate::policy::auth::identity_headers(&providers);
    let rules = Rules {
        config: cfg,
        router: &router,
        identity_headers: &ids,
    };
    explain(&rules, req)
}
