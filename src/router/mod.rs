//! Route matching, compiled once per config.
//!
//! Precedence (SPEC): routes with a `host` before those without (exact host,
//! then wildcard hosts longest suffix first); within a host group, exact
//! `path`, then the longest `path_prefix`, then `path_regex` in file order;
//! ties go to file order. A route whose every condition but `methods` holds
//! makes the answer 405 (with `Allow`) if no other route matches.
//!
//! Lookup cost does not grow with the number of routes: exact paths and
//! hosts are hash lookups, prefixes live in a segment trie walked once per
//! request, and regexes are tested together through one `RegexSet`.

use crate::config::{HostMatch, MatchConfig, RouteConfig};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use regex::{Regex, RegexSet};
/// Keys come from the config, lookups from requests: no one can insert
/// colliding keys, so a randomised (SipHash) hasher buys nothing here and
/// costs about 170 instructions per lookup; Fx costs a few dozen.
type HashMap<K, V> = rustc_hash::FxHashMap<K, V>;

/// What the router sees of a request.
pub struct RouteRequest<'a> {
    /// Lower-cased host without port.
    pub host: Option<&'a str>,
    /// Normalised path without query.
    pub path: &'a str,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RouteOutcome {
    Matched(usize),
    NotFound,
    /// Some route matched all but `methods`; these are the methods it allows.
    MethodNotAllowed(Vec<Method>),
}

/// Conditions checked after a route was found through its index key.
struct Conditions {
    methods: Vec<Method>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Set when the route is indexed by exact path but also has a prefix.
    prefix: Option<String>,
    /// Set when the route is indexed by path or prefix but also has a regex.
    regex: Option<Regex>,
}

#[derive(Default)]
struct TrieNode {
    children: HashMap<Box<str>, TrieNode>,
    routes: Vec<usize>,
}

impl TrieNode {
    fn insert(&mut self, prefix: &str, id: usize) {
        let mut node = self;
        for seg in prefix.split('/').filter(|s| !s.is_empty()) {
            node = node.children.entry(seg.into()).or_default();
        }
        node.routes.push(id);
    }

    /// Visits matching nodes deepest first (longest prefix wins).
    fn walk<'a>(
        &self,
        segs: &mut impl Iterator<Item = &'a str>,
        f: &mut dyn FnMut(&[usize]) -> Option<usize>,
    ) -> Option<usize> {
        if let Some(seg) = segs.next() {
            if let Some(child) = self.children.get(seg) {
                if let Some(found) = child.walk(segs, f) {
                    return Some(found);
                }
            }
        }
        if self.routes.is_empty() {
            None
        } else {
            f(&self.routes)
        }
    }
}

#[derive(Default)]
struct Table {
    exact: HashMap<Box<str>, Vec<usize>>,
    prefix: TrieNode,
    regex_ids: Vec<usize>,
    regexes: Vec<String>,
    regex_set: Option<RegexSet>,
}

impl Table {
    fn find(
        &self,
        req: &RouteRequest<'_>,
        conds: &[Conditions],
        allow: &mut Vec<Method>,
    ) -> Option<usize> {
        let mut try_ids = |ids: &[usize]| {
            ids.iter()
                .copied()
                .find(|&id| check(&conds[id], req, allow))
        };
        if let Some(ids) = self.exact.get(req.path) {
            if let Some(id) = try_ids(ids) {
                return Some(id);
            }
        }
        let mut segs = req.path.split('/').filter(|s| !s.is_empty());
        if let Some(id) = self.prefix.walk(&mut segs, &mut try_ids) {
            return Some(id);
        }
        if let Some(set) = &self.regex_set {
            for i in set.matches(req.path).iter() {
                if let Some(id) = try_ids(&self.regex_ids[i..=i]) {
                    return Some(id);
                }
            }
        }
        None
    }
}

/// `/` is a prefix of every path; other prefixes end on a segment boundary.
fn prefix_matches(path: &str, prefix: &str) -> bool {
    prefix == "/" || crate::http::has_prefix(path, prefix)
}

fn check(c: &Conditions, req: &RouteRequest<'_>, allow: &mut Vec<Method>) -> bool {
    if let Some(p) = &c.prefix {
        if !prefix_matches(req.path, p) {
            return false;
        }
    }
    if let Some(re) = &c.regex {
        if !re.is_match(req.path) {
            return false;
        }
    }
    for (name, value) in &c.headers {
        if req.headers.get(name) != Some(value) {
            return false;
        }
    }
    if !c.methods.is_empty() && !c.methods.contains(req.method) {
        for m in &c.methods {
            if !allow.contains(m) {
                allow.push(m.clone());
            }
        }
        return false;
    }
    true
}

/// The compiled routing table of one config.
pub struct Router {
    exact_hosts: HashMap<String, Table>,
    wildcard_hosts: HashMap<String, Table>,
    any_host: Table,
    conds: Vec<Conditions>,
    /// Each route's conditions as configured, for [`Router::misses`].
    matchers: Vec<MatchConfig>,
}

/// A condition of a route that a request does not meet (`explain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    Host,
    Path,
    Header,
    Method,
}

impl Miss {
    pub fn label(self) -> &'static str {
        match self {
            Miss::Host => "host",
            Miss::Path => "path",
            Miss::Header => "header",
            Miss::Method => "method",
        }
    }
}

impl Router {
    /// Builds the index. Regexes were validated at config load.
    pub fn new(routes: &[RouteConfig]) -> Router {
        let mut r = Router {
            exact_hosts: HashMap::default(),
            wildcard_hosts: HashMap::default(),
            any_host: Table::default(),
            conds: Vec::with_capacity(routes.len()),
            matchers: routes.iter().map(|r| r.matcher.clone()).collect(),
        };
        for (id, route) in routes.iter().enumerate() {
            let m = &route.matcher;
            let table = match &m.host {
                Some(HostMatch::Exact(h)) => r.exact_hosts.entry(h.clone()).or_default(),
                Some(HostMatch::Wildcard(h)) => r.wildcard_hosts.entry(h.clone()).or_default(),
                None => &mut r.any_host,
            };
            let mut cond = Conditions {
                methods: m.methods.clone(),
                headers: m.headers.clone(),
                prefix: None,
                regex: None,
            };
            if let Some(p) = &m.path {
                table.exact.entry(p.as_str().into()).or_default().push(id);
                cond.prefix = m.path_prefix.clone();
                cond.regex = m.path_regex.clone();
            } else if let Some(p) = &m.path_prefix {
                table.prefix.insert(p, id);
                cond.regex = m.path_regex.clone();
            } else if let Some(re) = &m.path_regex {
                table.regex_ids.push(id);
                table.regexes.push(re.as_str().to_string());
            } else {
                // No path condition: matches every path, like `path_prefix: /`.
                table.prefix.insert("/", id);
            }
            r.conds.push(cond);
        }
        for t in r
            .exact_hosts
            .values_mut()
            .chain(r.wildcard_hosts.values_mut())
            .chain(std::iter::once(&mut r.any_host))
        {
            if !t.regexes.is_empty() {
                t.regex_set = Some(RegexSet::new(&t.regexes).expect("regexes validated at load"));
            }
        }
        r
    }

    /// Every condition of route `id` that `req` does not meet, in the
    /// order host, path, header, method (empty: the route matches, though a
    /// route of higher precedence may win). Diagnostics only: `find` alone
    /// decides, and both read the same compiled conditions.
    pub fn misses(&self, id: usize, req: &RouteRequest<'_>) -> Vec<Miss> {
        let mut out = Vec::new();
        let m = &self.matchers[id];
        let host_ok = match (&m.host, req.host) {
            (None, _) => true,
            (Some(HostMatch::Exact(h)), Some(given)) => h == given,
            (Some(HostMatch::Wildcard(h)), Some(given)) => given
                .strip_suffix(h.as_str())
                .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.')),
            (Some(_), None) => false,
        };
        if !host_ok {
            out.push(Miss::Host);
        }
        let c = &self.conds[id];
        let path_ok = m.path.as_ref().is_none_or(|p| p == req.path)
            && m.path_prefix
                .as_ref()
                .is_none_or(|p| prefix_matches(req.path, p))
            && m.path_regex.as_ref().is_none_or(|re| re.is_match(req.path));
        if !path_ok {
            out.push(Miss::Path);
        }
        if c.headers.iter().any(|(n, v)| req.headers.get(n) != Some(v)) {
            out.push(Miss::Header);
        }
        if !c.methods.is_empty() && !c.methods.contains(req.method) {
            out.push(Miss::Method);
        }
        out
    }

    fn has_host_routes(&self) -> bool {
        !self.exact_hosts.is_empty() || !self.wildcard_hosts.is_empty()
    }

    pub fn find(&self, req: &RouteRequest<'_>) -> RouteOutcome {
        let mut allow = Vec::new();
        if let Some(host) = req.host.filter(|_| self.has_host_routes()) {
            if let Some(t) = self.exact_hosts.get(host) {
                if let Some(id) = t.find(req, &self.conds, &mut allow) {
                    return RouteOutcome::Matched(id);
                }
            }
            let mut rest = host;
            while let Some(dot) = rest.find('.') {
                rest = &rest[dot + 1..];
                if let Some(t) = self.wildcard_hosts.get(rest) {
                    if let Some(id) = t.find(req, &self.conds, &mut allow) {
                        return RouteOutcome::Matched(id);
                    }
                }
            }
        }
        if let Some(id) = self.any_host.find(req, &self.conds, &mut allow) {
            return RouteOutcome::Matched(id);
        }
        if allow.is_empty() {
            RouteOutcome::NotFound
        } else {
            RouteOutcome::MethodNotAllowed(allow)
        }
    }
}

#[cfg(test)]
mod tests;
