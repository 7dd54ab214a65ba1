//! Error-log setup: `env_logger` at `logging.level`, `RUST_LOG` overriding.
//! Pingora logs through the `log` crate too, so its lines land here.

use crate::config::LogLevel;

/// Initialises the logger once per process; later calls are ignored.
pub fn init(level: LogLevel) {
    let mut b = env_logger::Builder::new();
    b.filter_level(level.as_filter());
    if let Ok(spec) = std::env::var("RUST_LOG") {
        b.parse_filters(&spec);
    }
    b.format_timestamp_millis();
    let _ = b.try_init();
}
