//! The path normaliser: never panics, and what it returns is a fixed point
//! that routing and upstreams can only read one way.
#![no_main]
use gatehouse::bench::normalize_path;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(out) = normalize_path(path) else {
        return;
    };
    assert!(out.starts_with('/'), "{path:?} -> {out:?}");
    assert!(!out.contains("//"), "{path:?} -> {out:?}");
    assert!(!out.contains('\\'), "{path:?} -> {out:?}");
    for seg in out.split('/') {
        assert!(seg != "." && seg != "..", "{path:?} -> {out:?}");
    }
    let up = out.to_ascii_uppercase();
    for bad in ["%2F", "%5C", "%00"] {
        assert!(!up.contains(bad), "{path:?} -> {out:?}");
    }
    // Escapes left are upper-case and never of unreserved characters.
    let b = out.as_bytes();
    for (i, _) in out.match_indices('%') {
        let hex = &b[i + 1..i + 3];
        assert!(hex
            .iter()
            .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c)));
        let v = u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap();
        assert!(
            !(v.is_ascii_alphanumeric() || b"-._~".contains(&v)),
            "{path:?} -> {out:?}"
        );
    }
    // Idempotent: normalising again changes nothing.
    let again = normalize_path(&out).expect("a normalised path normalises");
    assert_eq!(again, out, "{path:?}");
});
