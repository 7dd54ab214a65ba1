use super::*;
use crate::config::load_str;
use crate::http::normalize_host;

fn router(routes_yaml: &str) -> (Router, Vec<String>) {
    let text = format!("upstreams:\n  u:\n    targets: [\"127.0.0.1:1\"]\nroutes:\n{routes_yaml}");
    let cfg = load_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let names = cfg.routes.iter().map(|r| r.name.clone()).collect();
    (Router::new(&cfg.routes), names)
}

fn find(r: &(Router, Vec<String>), host: Option<&str>, method: &str, path: &str) -> String {
    find_h(r, host, method, path, &HeaderMap::new())
}

fn find_h(
    r: &(Router, Vec<String>),
    host: Option<&str>,
    method: &str,
    path: &str,
    headers: &HeaderMap,
) -> String {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let host = host.map(normalize_host);
    let req = RouteRequest {
        host: host.as_deref(),
        path,
        method: &method,
        headers,
    };
    match r.0.find(&req) {
        RouteOutcome::Matched(id) => r.1[id].clone(),
        RouteOutcome::NotFound => "404".into(),
        RouteOutcome::MethodNotAllowed(m) => {
            format!(
                "405 {}",
                m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(",")
            )
        }
    }
}

fn route(name: &str, matcher: &str) -> String {
    format!("  - name: {name}\n    upstream: u\n    match: {matcher}\n")
}

#[test]
fn prefix_is_segment_aware() {
    let r = router(&route("users", "{ path_prefix: /api/users }"));
    assert_eq!(find(&r, None, "GET", "/api/users"), "users");
    assert_eq!(find(&r, None, "GET", "/api/users/"), "users");
    assert_eq!(find(&r, None, "GET", "/api/users/7"), "users");
    assert_eq!(find(&r, None, "GET", "/api/usersX"), "404");
    assert_eq!(find(&r, None, "GET", "/api"), "404");
}

#[test]
fn trailing_slash_prefix_means_the_same() {
    let r = router(&route("users", "{ path_prefix: /api/users/ }"));
    assert_eq!(find(&r, None, "GET", "/api/users/7"), "users");
    assert_eq!(find(&r, None, "GET", "/api/usersX"), "404");
}

#[test]
fn precedence_exact_then_longest_prefix_then_regex() {
    let yaml = [
        route("regex", "{ path_regex: '^/api/.*$' }"),
        route("short", "{ path_prefix: /api }"),
        route("long", "{ path_prefix: /api/users }"),
        route("exact", "{ path: /api/users/me }"),
        route("root", "{ path_prefix: / }"),
    ]
    .concat();
    let r = router(&yaml);
    assert_eq!(find(&r, None, "GET", "/api/users/me"), "exact");
    assert_eq!(find(&r, None, "GET", "/api/users/7"), "long");
    assert_eq!(find(&r, None, "GET", "/api/other"), "short");
    assert_eq!(find(&r, None, "GET", "/elsewhere"), "root");
}

#[test]
fn regexes_in_file_order_after_prefixes() {
    let yaml = [
        route("r1", "{ path_regex: '^/v[0-9]+/items$' }"),
        route("r2", "{ path_regex: '^/v1/.*' }"),
    ]
    .concat();
    let r = router(&yaml);
    assert_eq!(find(&r, None, "GET", "/v1/items"), "r1");
    assert_eq!(find(&r, None, "GET", "/v1/other"), "r2");
    assert_eq!(find(&r, None, "GET", "/v2/other"), "404");
}

#[test]
fn ties_go_to_file_order_and_fall_through_on_conditions() {
    let yaml = [
        route("v2", "{ path_prefix: /api, headers: { X-Version: '2' } }"),
        route("first", "{ path_prefix: /api }"),
        route("second", "{ path_prefix: /api }"),
    ]
    .concat();
    let r = router(&yaml);
    assert_eq!(find(&r, None, "GET", "/api/x"), "first");
    let mut h = HeaderMap::new();
    h.insert("x-version", HeaderValue::from_static("2"));
    assert_eq!(find_h(&r, None, "GET", "/api/x", &h), "v2");
}

#[test]
fn host_routes_win_and_wildcards_match_any_depth() {
    let yaml = [
        route("plain", "{ path: /api/orders }"),
        route("exact_host", "{ path_prefix: /api, host: api.example.com }"),
        route("wild", "{ path_regex: '^/', host: '*.example.com' }"),
    ]
    .concat();
    let r = router(&yaml);
    assert_eq!(
        find(&r, Some("api.example.com"), "GET", "/api/orders"),
        "exact_host"
    );
    assert_eq!(
        find(&r, Some("API.Example.COM:8443"), "GET", "/api/orders"),
        "exact_host"
    );
    assert_eq!(
        find(&r, Some("a.b.example.com"), "GET", "/api/orders"),
        "wild"
    );
    assert_eq!(find(&r, Some("example.com"), "GET", "/api/orders"), "plain");
    assert_eq!(find(&r, Some("other.org"), "GET", "/api/orders"), "plain");
    assert_eq!(find(&r, None, "GET", "/api/orders"), "plain");
    assert_eq!(find(&r, Some("notexample.com"), "GET", "/x"), "404");
}

#[test]
fn method_mismatch_gives_405_unless_another_route_matches() {
    let r = router(&route(
        "products",
        "{ path_prefix: /api/products, methods: [GET, HEAD] }",
    ));
    assert_eq!(find(&r, None, "GET", "/api/products/1"), "products");
    assert_eq!(find(&r, None, "POST", "/api/products/1"), "405 GET,HEAD");
    assert_eq!(find(&r, None, "POST", "/other"), "404");
    let yaml = [
        route("products", "{ path_prefix: /api/products, methods: [get] }"),
        route("fallback", "{ path_prefix: / }"),
    ]
    .concat();
    let r = router(&yaml);
    assert_eq!(find(&r, None, "POST", "/api/products/1"), "fallback");
}

#[test]
fn exact_path_with_extra_conditions() {
    let yaml = [
        route("both", "{ path: /a/b, path_prefix: /a }"),
        route("neither", "{ path: /x, path_prefix: /y }"),
    ]
    .concat();
    let r = router(&yaml);
    assert_eq!(find(&r, None, "GET", "/a/b"), "both");
    assert_eq!(find(&r, None, "GET", "/x"), "404");
}

#[test]
fn empty_match_is_a_catch_all() {
    let r = router("  - name: all\n    upstream: u\n");
    assert_eq!(find(&r, None, "DELETE", "/anything/at/all"), "all");
}

#[test]
fn ten_thousand_routes() {
    let mut yaml = String::new();
    for i in 0..10_000 {
        yaml.push_str(&route(
            &format!("r{i}"),
            &format!("{{ path_prefix: /svc{i}/api }}"),
        ));
    }
    let r = router(&yaml);
    assert_eq!(find(&r, None, "GET", "/svc9999/api/x"), "r9999");
    assert_eq!(find(&r, None, "GET", "/svc0/api"), "r0");
    assert_eq!(find(&r, None, "GET", "/svc10000/api"), "404");
}
