//! Validation of `auth` providers and route `auth` keys.

use crate::support::fixture;

fn errors(auth: &str, route_auth: &str) -> Vec<String> {
    let text = format!(
        "admin: {{ listen: \"127.0.0.1:9999\", token: admin-token-value }}\nupstreams: {{ u: {{ targets: [\"127.0.0.1:1\"] }} }}\nauth:\n{auth}\nroutes:\n  - {{ name: r, upstream: u, auth: {route_auth} }}\n"
    );
    match gatehouse::config::load_str(&text) {
        Ok(_) => Vec::new(),
        Err(e) => e.errors(),
    }
}

fn assert_error(auth: &str, route_auth: &str, expected: &str) {
    let errs = errors(auth, route_auth);
    assert!(
        errs.iter().any(|e| e.contains(expected)),
        "expected `{expected}` in {errs:#?}"
    );
}

const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn good_providers_load() {
    let auth = format!(
        "  a: {{ type: jwt, algorithms: [HS256], secret: \"{SECRET}\" }}\n  b: {{ type: jwt, algorithms: [RS256, PS256], public_key: \"{}\" }}\n  c: {{ type: api_key, keys: [{{ id: x, key: k }}] }}",
        fixture("rsa1.pub.pem")
    );
    assert!(
        errors(&auth, "[a, b, c]").is_empty(),
        "{:?}",
        errors(&auth, "[a, b, c]")
    );
    assert!(errors(&auth, "{ provider: a, scopes: [s] }").is_empty());
}

#[test]
fn none_is_never_accepted() {
    assert_error(
        &format!("  a: {{ type: jwt, algorithms: [none], secret: \"{SECRET}\" }}"),
        "a",
        "auth.a.algorithms[0]: `none` is never accepted",
    );
    assert_error(
        &format!("  a: {{ type: jwt, algorithms: [HS1024], secret: \"{SECRET}\" }}"),
        "a",
        "unknown algorithm `HS1024`",
    );
    assert_error(
        &format!("  a: {{ type: jwt, algorithms: [], secret: \"{SECRET}\" }}"),
        "a",
        "must list at least one algorithm",
    );
    assert_error(
        &format!("  a: {{ type: jwt, secret: \"{SECRET}\" }}"),
        "a",
        "auth.a.algorithms: required",
    );
}

#[test]
fn algorithms_must_fit_the_key_material() {
    assert_error(
        &format!("  a: {{ type: jwt, algorithms: [RS256], secret: \"{SECRET}\" }}"),
        "a",
        "RS256 needs `public_key` or `jwks`",
    );
    assert_error(
        &format!(
            "  a: {{ type: jwt, algorithms: [HS256], public_key: \"{}\" }}",
            fixture("rsa1.pub.pem")
        ),
        "a",
        "HS256 does not fit the Rsa public key",
    );
    assert_error(
        &format!(
            "  a: {{ type: jwt, algorithms: [ES384], public_key: \"{}\" }}",
            fixture("ec256.pub.pem")
        ),
        "a",
        "ES384 does not fit the P256 public key",
    );
    assert_error(
        &format!(
            "  a: {{ type: jwt, algorithms: [HS256], jwks: {{ file: \"{}\" }} }}",
            fixture("jwks.json")
        ),
        "a",
        "HS256 needs `secret`",
    );
    assert_error(
        &format!(
            "  a: {{ type: jwt, algorithms: [RS256], public_key: \"{}\" }}",
            fixture("rsa1.key.pem")
        ),
        "a",
        "this is a private key",
    );
}

#[test]
fn secrets_and_key_files_are_checked() {
    assert_error(
        "  a: { type: jwt, algorithms: [HS256], secret: \"\" }",
        "a",
        "auth.a.secret: must not be empty",
    );
    assert_error(
        "  a: { type: jwt, algorithms: [HS256], secret: \"short\" }",
        "a",
        "at least 32 bytes",
    );
    assert_error(
        &format!(
            "  a: {{ type: jwt, algorithms: [HS512], secret: \"{}\" }}",
            &SECRET[..40]
        ),
        "a",
        "at least 64 bytes",
    );
    assert_error(
        "  a: { type: jwt, algorithms: [RS256], public_key: /nonexistent/key.pem }",
        "a",
        "auth.a.public_key: cannot read /nonexistent/key.pem",
    );
    assert_error(
        "  a: { type: jwt, algorithms: [RS256], jwks: { file: /nonexistent/jwks.json } }",
        "a",
        "auth.a.jwks.file: cannot read",
    );
    assert_error(
        &format!(
            "  a: {{ type: jwt, algorithms: [RS256], jwks: {{ file: \"{}\" }} }}",
            fixture("rsa1.pub.pem")
        ),
        "a",
        "not a JWKS document",
    );
    assert_error(
        "  a: { type: jwt, algorithms: [RS256], jwks: { url: \"ftp://x\" } }",
        "a",
        "invalid URL",
    );
    assert_error(
        &format!("  a: {{ type: jwt, algorithms: [HS256], secret: \"{SECRET}\", jwks: {{ url: \"https://idp/jwks\" }} }}"),
        "a",
        "give only one of",
    );
    assert_error(
        "  a: { type: jwt, algorithms: [RS256] }",
        "a",
        "needs `secret`, `public_key` or `jwks`",
    );
}

#[test]
fn api_key_rules() {
    assert_error(
        "  k: { type: api_key, keys: [] }",
        "k",
        "auth.k.keys: required",
    );
    assert_error(
        "  k: { type: api_key, keys: [{ id: a, key: x }, { id: a, key: y }] }",
        "k",
        "duplicate key id `a`",
    );
    assert_error(
        "  k: { type: api_key, keys: [{ id: a, sha256: abc }] }",
        "k",
        "must be 64 hex digits",
    );
    assert_error(
        "  k: { type: api_key, keys: [{ id: a, key: x, sha256: abc }] }",
        "k",
        "exactly one of `key` and `sha256`",
    );
    assert_error(
        "  k: { type: api_key, keys: [{ id: a, key: x }], algorithms: [HS256] }",
        "k",
        "auth.k.algorithms: only for `type: jwt`",
    );
    assert_error(
        "  k: { type: api_key, keys: [{ id: a, key: x }], forward_id: X-Request-Id }",
        "k",
        "a header gatehouse sets",
    );
    assert_error(
        "  k: { type: oauth, keys: [] }",
        "k",
        "unknown type `oauth`",
    );
}

#[test]
fn route_references() {
    let auth = format!("  a: {{ type: jwt, algorithms: [HS256], secret: \"{SECRET}\" }}\n  k: {{ type: api_key, keys: [{{ id: x, key: k }}] }}");
    assert_error(
        &auth,
        "missing",
        "routes[0].auth: auth provider `missing` is not defined",
    );
    assert_error(&auth, "[a, nope]", "auth provider `nope` is not defined");
    assert_error(
        &auth,
        "{ provider: k, scopes: [x] }",
        "scopes need a jwt provider",
    );
}

#[test]
fn relative_key_paths_are_relative_to_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("ec256.pub.pem"), dir.path().join("key.pem")).unwrap();
    let path = dir.path().join("gh.yaml");
    std::fs::write(
        &path,
        "upstreams: { u: { targets: [\"127.0.0.1:1\"] } }\nauth: { a: { type: jwt, algorithms: [ES256], public_key: key.pem } }\nroutes: [{ name: r, upstream: u, auth: a }]\n",
    )
    .unwrap();
    gatehouse::config::load_file(&path).unwrap();
}

#[test]
fn secrets_never_appear_in_debug_output_or_config_dump() {
    let text = format!(
        "upstreams: {{ u: {{ targets: [\"127.0.0.1:1\"] }} }}\nauth:\n  a: {{ type: jwt, algorithms: [HS256], secret: \"{SECRET}\" }}\n  k: {{ type: api_key, keys: [{{ id: partner, key: very-secret-api-key }}] }}\nroutes: [{{ name: r, upstream: u, auth: [a, k] }}]\n"
    );
    let cfg = gatehouse::config::load_str(&text).unwrap();
    let debug = format!("{cfg:?}");
    let dump = gatehouse::config::redacted_json(&cfg).to_string();
    for s in [SECRET, "very-secret-api-key", "admin-token-value"] {
        assert!(!debug.contains(s), "secret in Debug output");
        assert!(!dump.contains(s), "secret in /config");
    }
    assert!(dump.contains("\"partner\""));
}
