//! The config loader: any text gives a config or a list of errors, never a
//! panic. Host names are not resolved (no network while fuzzing) and
//! `${VAR}` references see a fixed environment.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fn offline(_: &str) -> std::io::Result<Option<std::net::SocketAddr>> {
    Err(std::io::Error::other("not resolved while fuzzing"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env =
        |name: &str| (name == "SECRET").then(|| "0123456789abcdef0123456789abcdef".to_string());
    match gatehouse::config::load_with_resolver(text, Path::new("/nonexistent"), &env, offline) {
        Ok(cfg) => {
            // A valid config compiles into a router and redacts.
            let _ = gatehouse::bench::Router::new(&cfg.routes);
            let _ = gatehouse::config::redacted_json(&cfg).to_string();
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.is_empty());
        }
    }
});
