//! Response compression (`compress`): q-values and route order, types and
//! `min_size`, no double encoding, no 206, `no-transform`, `Vary`, weak
//! ETags, one cached variant per coding. Bodies are decoded with the
//! reference decoders (flate2, brotli, zstd).

use crate::support::*;
use std::io::Read;

/// 8 KiB of JSON-ish text.
fn text_body() -> Vec<u8> {
    let mut s = String::from("[");
    while s.len() < 8192 {
        s.push_str("{\"id\":12345,\"name\":\"gatehouse compresses this\"},");
    }
    s.push_str("{}]");
    s.into_bytes()
}

fn decode(coding: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        None => out.extend_from_slice(body),
        Some("gzip") => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("br") => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        Some("zstd") => out = zstd::decode_all(body).unwrap(),
        Some(other) => panic!("unexpected coding {other}"),
    }
    out
}

struct Got {
    status: u16,
    coding: Option<String>,
    vary: Vec<String>,
    etag: Option<String>,
    body: Vec<u8>,
}

fn fetch(c: &reqwest::blocking::Client, url: &str, ae: Option<&str>) -> Got {
    let mut req = c.get(url);
    if let Some(ae) = ae {
        req = req.header("accept-encoding", ae);
    }
    let r = req.send().unwrap();
    let h = r.headers().clone();
    let text = |n: &str| h.get(n).map(|v| v.to_str().unwrap().to_string());
    Got {
        status: r.status().as_u16(),
        coding: text("content-encoding"),
        vary: h
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect(),
        etag: text("etag"),
        body: r.bytes().unwrap().to_vec(),
    }
}

fn varies(g: &Got) -> bool {
    g.vary
        .iter()
        .any(|v| v.to_ascii_lowercase().contains("accept-encoding"))
}

fn compress_gateway(up: &Upstream, extra_routes: &str) -> Gateway {
    gateway(&format!(
        "server: {{ listen: [\"{{listen}}\"], h2c: true }}\nupstreams: {{ u: {{ targets: [\"{}\"] }} }}\nroutes:\n  - {{ name: c, match: {{ path_prefix: /c }}, upstream: u, compress: true }}\n  - {{ name: gz, match: {{ path_prefix: /gz }}, upstream: u, compress: {{ algorithms: [gzip], min_size: 10 }} }}\n  - {{ name: plain, match: {{ path_prefix: /plain }}, upstream: u }}\n{extra_routes}",
        up.addr
    ))
}

#[test]
fn q_values_and_route_order_choose_the_coding() {
    let up = Upstream::start("svc");
    let body = text_body();
    up.set_body(&body);
    up.set_etag("\"v1\"");
    let gw = compress_gateway(&up, "");
    let c = client();
    let url = gw.url("/c/x");
    let cases = [
        (Some("gzip"), Some("gzip")),
        (Some("br;q=0.5, zstd;q=0.9"), Some("zstd")),
        (Some("gzip, br"), Some("br")),
        (Some("gzip;q=0.2, *"), Some("zstd")),
        (Some("*;q=0"), None),
        (Some("identity"), None),
        (Some("zstd;q=0, br;q=0, gzip;q=0"), None),
        (None, None),
    ];
    for (ae, want) in cases {
        let g = fetch(&c, &url, ae);
        assert_eq!(g.status, 200);
        assert_eq!(g.coding.as_deref(), want, "Accept-Encoding {ae:?}");
        assert_eq!(
            decode(want, &g.body),
            body,
            "{ae:?}: decodes to the upstream body"
        );
        assert!(
            varies(&g),
            "{ae:?}: Vary: Accept-Encoding on every compressible answer"
        );
        let etag = if want.is_some() { "W/\"v1\"" } else { "\"v1\"" };
        assert_eq!(g.etag.as_deref(), Some(etag), "{ae:?}");
    }
    // A route limited to gzip never answers another coding.
    assert_eq!(fetch(&c, &gw.url("/gz"), Some("zstd, br")).coding, None);
    assert_eq!(
        fetch(&c, &gw.url("/gz"), Some("zstd, gzip;q=0.1"))
            .coding
            .as_deref(),
        Some("gzip")
    );
    // HTTP/2 (h2c) too.
    let h2 = h2c_client();
    let g = fetch(&h2, &url, Some("br"));
    assert_eq!(g.coding.as_deref(), Some("br"));
    assert_eq!(decode(Some("br"), &g.body), body);
}

#[test]
fn what_is_never_compressed() {
    let up = Upstream::start("svc");
    let body = text_body();
    up.set_body(&body);
    let gw = compress_gateway(&up, "");
    let c = client();
    let url = gw.url("/c/x");
    let ae = Some("gzip, br, zstd");

    // Below min_size (1 KiB by default; the upstream sends Content-Length).
    up.set_body(&body[..1000]);
    let g = fetch(&c, &url, ae);
    assert_eq!((g.coding.as_deref(), varies(&g)), (None, true));
    assert_eq!(
        fetch(&c, &gw.url("/gz"), ae).coding.as_deref(),
        Some("gzip"),
        "min_size: 10"
    );
    up.set_body(&body);

    // Already encoded: passed on as it is, once.
    up.add_response_header("content-encoding", "gzip");
    let g = fetch(&c, &url, ae);
    assert_eq!(
        (g.coding.as_deref(), g.body.clone()),
        (Some("gzip"), body.clone())
    );
    up.clear_response_headers();

    // Cache-Control: no-transform.
    up.add_response_header("cache-control", "no-transform");
    let g = fetch(&c, &url, ae);
    assert_eq!((g.coding.as_deref(), varies(&g)), (None, true));
    up.clear_response_headers();

    // A 206.
    up.set_status(206);
    let g = fetch(&c, &url, ae);
    assert_eq!((g.status, g.coding.as_deref()), (206, None));
    assert_eq!(g.body, body);
    up.set_status(200);

    // Not a compressible type: untouched, no Vary.
    up.add_response_header("content-type", "image/png");
    let g = fetch(&c, &url, ae);
    assert_eq!((g.coding.as_deref(), varies(&g)), (None, false));
    up.clear_response_headers();

    // A route without compress: nothing changes.
    let g = fetch(&c, &gw.url("/plain"), ae);
    assert_eq!((g.coding.as_deref(), varies(&g)), (None, false));
    assert_eq!(g.body, body);
}

#[test]
fn cached_routes_store_one_variant_per_coding() {
    let up = Upstream::start("svc");
    let body = text_body();
    up.set_body(&body);
    up.add_response_header("cache-control", "max-age=60");
    let gw = compress_gateway(
        &up,
        "  - { name: cached, match: { path_prefix: /cached }, upstream: u, compress: true, cache: true }\n",
    );
    let c = client();
    let url = gw.url("/cached/list");
    let seq = [
        ("gzip", Some("gzip"), 1),
        ("gzip", Some("gzip"), 1),
        ("br;q=0.1, gzip", Some("gzip"), 1), // another header, same coding: same variant
        ("br", Some("br"), 2),
        ("identity", None, 3),
        ("zstd;q=0, identity", None, 3),
        ("br, gzip", Some("br"), 3),
    ];
    for (ae, want, hits) in seq {
        let g = fetch(&c, &url, Some(ae));
        assert_eq!(g.coding.as_deref(), want, "{ae}");
        assert_eq!(decode(want, &g.body), body, "{ae}");
        assert_eq!(up.hits(), hits, "{ae}: upstream fetches so far");
    }
    // The upstream is asked in identity: every stored variant is gatehouse's.
    assert_eq!(up.last().header("accept-encoding"), None);
}

#[test]
fn compress_keys_are_validated() {
    let errors = |compress: &str| {
        let text = format!(
            "upstreams: {{ u: {{ targets: [\"127.0.0.1:1\"] }} }}\nroutes: [{{ name: r, upstream: u, compress: {compress} }}]\n"
        );
        match gatehouse::config::load_str(&text) {
            Ok(_) => Vec::new(),
            Err(e) => e.errors(),
        }
    };
    for ok in [
        "true",
        "false",
        "{ algorithms: [gzip] }",
        "{ min_size: 0 }",
        "{ algorithms: [br, zstd], min_size: 4KiB }",
    ] {
        assert_eq!(errors(ok), Vec::<String>::new(), "{ok}");
    }
    let cases = [
        (
            "{ algorithms: [deflate] }",
            "routes[0].compress.algorithms[0]: unknown algorithm `deflate`",
        ),
        ("{ algorithms: [] }", "routes[0].compress.algorithms"),
        ("{ algorithms: [gzip, gzip] }", "listed twice"),
        ("{ min_size: lots }", "routes[0].compress.min_size"),
        ("{ level: 9 }", "level"),
        ("maybe", "compress"),
    ];
    for (bad, want) in cases {
        let errs = errors(bad);
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "{bad}: expected `{want}` in {errs:#?}"
        );
    }
}
