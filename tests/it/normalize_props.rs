//! Property tests: normalisation is idempotent and safe, and the path the
//! gateway routes on is exactly the path the upstream receives.

use crate::support::*;
use gatehouse::bench::normalize_path;
use proptest::prelude::*;

/// Paths built from the pieces attackers combine.
fn path_strategy() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2E%2e".to_string()),
        Just("".to_string()),
        Just("a".to_string()),
        Just("b".to_string()),
        Just("%61".to_string()),
        Just("%7E".to_string()),
        Just("x%20y".to_string()),
        Just("c.d".to_string()),
        Just(".e".to_string()),
        "[a-z0-9_~-]{1,4}",
    ];
    proptest::collection::vec(seg, 0..8).prop_map(|segs| format!("/{}", segs.join("/")))
}

proptest! {
    #[test]
    fn normalise_is_idempotent(p in path_strategy()) {
        if let Ok(n) = normalize_path(&p) {
            let again = normalize_path(&n).expect("normal output normalises");
            prop_assert_eq!(again.as_ref(), n.as_ref());
        }
    }

    #[test]
    fn normalised_paths_have_no_dot_segments(p in path_strategy()) {
        if let Ok(n) = normalize_path(&p) {
            prop_assert!(n.starts_with('/'));
            prop_assert!(!n.contains("//"), "{}", n);
            for seg in n.split('/') {
                prop_assert!(seg != "." && seg != "..", "{}", n);
                prop_assert!(!seg.to_ascii_lowercase().contains("%2e"), "{}", n);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(p in "/[ -~]{0,40}") {
        let _ = normalize_path(&p);
    }
}

#[test]
fn path_routed_on_is_path_forwarded() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let root = Upstream::start("root");
    let gw = gateway(&format!(
        r#"
server: {{ listen: ["{{listen}}"] }}
upstreams:
  a: {{ targets: ["{}"] }}
  b: {{ targets: ["{}"] }}
  root: {{ targets: ["{}"] }}
routes:
  - {{ name: a, match: {{ path_prefix: /a }}, upstream: a }}
  - {{ name: b, match: {{ path_prefix: /b }}, upstream: b }}
  - {{ name: root, match: {{ path_prefix: / }}, upstream: root }}
"#,
        a.addr, b.addr, root.addr
    ));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 150,
        ..Default::default()
    });
    runner
        .run(&path_strategy(), |p| {
            let r = get_raw(gw.addr, &p, "");
            match normalize_path(&p) {
                Err(_) => prop_assert_eq!(r.status, 400, "{}", p),
                Ok(n) => {
                    prop_assert_eq!(r.status, 200, "{}", p);
                    let first = n.split('/').nth(1).unwrap_or("");
                    let expect = match first {
                        "a" => "a",
                        "b" => "b",
                        _ => "root",
                    };
                    let who = r.header("x-upstream").unwrap().to_string();
                    prop_assert_eq!(who.as_str(), expect, "{} -> {}", p, n);
                    let seen = match expect {
                        "a" => a.last(),
                        "b" => b.last(),
                        _ => root.last(),
                    };
                    prop_assert_eq!(seen.target.as_str(), n.as_ref(), "{}", p);
                }
            }
            Ok(())
        })
        .unwrap();
}
