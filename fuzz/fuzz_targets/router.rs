//! Differential fuzzing of the router: a fuzzed route table (hosts, exact
//! paths, prefixes, regexes, methods, headers) and request are resolved by
//! the indexed `Router` and by a linear scan that spells out the documented
//! precedence (README "Precedence"); both must agree, 405 `Allow` lists
//! included.
#![no_main]
use arbitrary::Arbitrary;
use gatehouse::config::{HostMatch, RouteConfig};
use gatehouse::bench::normalize_path;
use gatehouse::bench::normalize_host;
use gatehouse::bench::{RouteOutcome, RouteRequest, Router};
use http::{HeaderMap, Method};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const HOSTS: &[&str] = &[
    "api.example.com",
    "a.b.example.com",
    "*.example.com",
    "*.b.example.com",
    "*.com",
];
const PATHS: &[&str] = &[
    "/",
    "/api",
    "/api/users",
    "/api/users/7",
    "/a/b",
    "/static/x.json",
];
const PREFIXES: &[&str] = &[
    "/",
    "/api",
    "/api/",
    "/api/users",
    "/a",
    "/static",
    "/api/users/7",
];
const REGEXES: &[&str] = &["^/api/users/[0-9]+$", "/v[12]/", "\\.json$", "^/a", "users"];
const METHODS: &[&str] = &["GET", "POST", "DELETE"];
const SEGMENTS: &[&str] = &[
    "api", "users", "7", "a", "b", "v1", "x.json", "static", "API", "v2", "", "..",
];
const REQ_HOSTS: &[&str] = &[
    "api.example.com",
    "a.b.example.com",
    "x.a.b.example.com",
    "example.com",
    "API.Example.com:8080",
    "other.org",
    "b.example.com",
];

#[derive(Arbitrary, Debug)]
struct RouteSpec {
    host: Option<u8>,
    path: Option<u8>,
    prefix: Option<u8>,
    regex: Option<u8>,
    methods: u8,
    header: Option<bool>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    routes: Vec<RouteSpec>,
    host: Option<u8>,
    segments: Vec<u8>,
    trailing_slash: bool,
    method: u8,
    header: Option<bool>,
}

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[i as usize % list.len()]
}

fn yaml(routes: &[RouteSpec]) -> String {
    let mut s = String::from("upstreams: { u: { targets: [\"127.0.0.1:1\"] } }\nroutes:\n");
    for (i, r) in routes.iter().enumerate().take(12) {
        let mut m = Vec::new();
        if let Some(h) = r.host {
            m.push(format!("host: \"{}\"", pick(HOSTS, h)));
        }
        if let Some(p) = r.path {
            m.push(format!("path: \"{}\"", pick(PATHS, p)));
        }
        if let Some(p) = r.prefix {
            m.push(format!("path_prefix: \"{}\"", pick(PREFIXES, p)));
        }
        if let Some(p) = r.regex {
            m.push(format!("path_regex: '{}'", pick(REGEXES, p)));
        }
        let methods: Vec<&str> = (0..3)
            .filter(|b| r.methods & (1 << b) != 0)
            .map(|b| METHODS[b])
            .collect();
        if !methods.is_empty() {
            m.push(format!("methods: [{}]", methods.join(", ")));
        }
        if let Some(v2) = r.header {
            m.push(format!(
                "headers: {{ X-Version: \"{}\" }}",
                if v2 { "v2" } else { "v1" }
            ));
        }
        s.push_str(&format!(
            "  - {{ name: r{i}, upstream: u, match: {{ {} }} }}\n",
            m.join(", ")
        ));
    }
    s
}

fn prefix_matches(path: &str, prefix: &str) -> bool {
    let prefix = if prefix.len() > 1 {
        prefix.trim_end_matches('/')
    } else {
        prefix
    };
    prefix == "/"
        || (path.starts_with(prefix)
            && (path.len() == prefix.len() || path.as_bytes()[prefix.len()] == b'/'))
}

/// Where a route sits in the documented order within one host group:
/// exact path (0), prefix by length (1), regex (2). `None`: its path
/// conditions do not hold.
fn rank(r: &RouteConfig, path: &str) -> Option<(u8, usize)> {
    let m = &r.matcher;
    if m.path.as_deref().is_some_and(|p| p != path)
        || m.path_prefix
            .as_deref()
            .is_some_and(|p| !prefix_matches(path, p))
        || m.path_regex.as_ref().is_some_and(|re| !re.is_match(path))
    {
        return None;
    }
    let segs = |p: &str| p.split('/').filter(|s| !s.is_empty()).count();
    Some(if m.path.is_some() {
        (0, 0)
    } else if let Some(p) = &m.path_prefix {
        (1, usize::MAX - segs(p))
    } else if m.path_regex.is_some() {
        (2, 0)
    } else {
        (1, usize::MAX) // no path condition: like `path_prefix: /`
    })
}

fn reference(routes: &[RouteConfig], req: &RouteRequest<'_>) -> RouteOutcome {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let any_host_routes = routes.iter().any(|r| r.matcher.host.is_some());
    if let (Some(host), true) = (req.host, any_host_routes) {
        groups.push(
            (0..routes.len())
                .filter(
                    |&i| matches!(&routes[i].matcher.host, Some(HostMatch::Exact(h)) if h == host),
                )
                .collect(),
        );
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            groups.push((0..routes.len()).filter(|&i| matches!(&routes[i].matcher.host, Some(HostMatch::Wildcard(h)) if h == rest)).collect());
        }
    }
    groups.push(
        (0..routes.len())
            .filter(|&i| routes[i].matcher.host.is_none())
            .collect(),
    );
    let mut allow: Vec<Method> = Vec::new();
    for g in groups {
        let mut cands: Vec<((u8, usize), usize)> = g
            .iter()
            .filter_map(|&i| rank(&routes[i], req.path).map(|k| (k, i)))
            .collect();
        cands.sort();
        for (_, i) in cands {
            let m = &routes[i].matcher;
            if !m.headers.iter().all(|(n, v)| req.headers.get(n) == Some(v)) {
                continue;
            }
            if m.methods.is_empty() || m.methods.contains(req.method) {
                return RouteOutcome::Matched(i);
            }
            for meth in &m.methods {
                if !allow.contains(meth) {
                    allow.push(meth.clone());
                }
            }
        }
    }
    if allow.is_empty() {
        RouteOutcome::NotFound
    } else {
        RouteOutcome::MethodNotAllowed(allow)
    }
}

fn offline(_: &str) -> std::io::Result<Option<std::net::SocketAddr>> {
    Err(std::io::Error::other("offline"))
}

fuzz_target!(|input: Input| {
    let Ok(cfg) = gatehouse::config::load_with_resolver(
        &yaml(&input.routes),
        Path::new("."),
        &|_| None,
        offline,
    ) else {
        return;
    };
    let router = Router::new(&cfg.routes);
    let mut raw = String::new();
    for s in input.segments.iter().take(6) {
        raw.push('/');
        raw.push_str(pick(SEGMENTS, *s));
    }
    if raw.is_empty() || input.trailing_slash {
        raw.push('/');
    }
    let Ok(path) = normalize_path(&raw) else {
        return;
    };
    let host = input
        .host
        .map(|h| normalize_host(pick(REQ_HOSTS, h)).into_owned());
    let method = Method::from_bytes(pick(METHODS, input.method).as_bytes()).unwrap();
    let mut headers = HeaderMap::new();
    if let Some(v2) = input.header {
        headers.insert("x-version", if v2 { "v2" } else { "v1" }.parse().unwrap());
    }
    let req = RouteRequest {
        host: host.as_deref(),
        path: &path,
        method: &method,
        headers: &headers,
    };
    let got = router.find(&req);
    let want = reference(&cfg.routes, &req);
    assert_eq!(got, want, "request {} {host:?} {path}", method);
});
