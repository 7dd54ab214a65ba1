//! Error-log setup: `env_logger` at `logging.level`, `RUST_LOG` overriding.
//! Pingora logs through the `log` crate too, so its lines land here.
//!
//! The `log` facade is process-wide by design, so the level is too: a reload
//! that changes `logging.level` applies it with [`set_level`] (unless
//! `RUST_LOG` is set, which then stays in charge). Pingora's own debug and
//! trace records are always dropped: they print request heads with their
//! `Authorization` values.

use crate::config::LogLevel;
use log::{LevelFilter, Log, Metadata, Record};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static LEVEL: AtomicUsize = AtomicUsize::new(LevelFilter::Info as usize);
static ENV_OVERRIDE: AtomicBool = AtomicBool::new(false);
static INSTALLED: AtomicBool = AtomicBool::new(false);

struct DynLogger(env_logger::Logger);

fn current() -> LevelFilter {
    match LEVEL.load(Ordering::Relaxed) {
        0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// Pingora's debug and trace lines print whole request heads, credentials
/// included, so they never pass, whatever the level.
fn leaks_headers(m: &Metadata) -> bool {
    m.level() > log::Level::Info && m.target().starts_with("pingora")
}

impl Log for DynLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        !leaks_headers(m)
            && (ENV_OVERRIDE.load(Ordering::Relaxed) || m.level() <= current())
            && self.0.enabled(m)
    }
    fn log(&self, r: &Record) {
        if self.enabled(r.metadata()) {
            self.0.log(r)
        }
    }
    fn flush(&self) {
        self.0.flush()
    }
}

/// Installs the logger (once per process) and sets the level.
pub fn init(level: LogLevel) {
    if !INSTALLED.swap(true, Ordering::SeqCst) {
        let mut b = env_logger::Builder::new();
        b.format_timestamp_millis();
        match std::env::var("RUST_LOG") {
            Ok(spec) if !spec.is_empty() => {
                b.parse_filters(&spec);
                ENV_OVERRIDE.store(true, Ordering::Relaxed);
            }
            _ => {
                b.filter_level(LevelFilter::Trace);
            }
        }
        let logger = b.build();
        let max = if ENV_OVERRIDE.load(Ordering::Relaxed) {
            logger.filter()
        } else {
            level.as_filter()
        };
        if log::set_boxed_logger(Box::new(DynLogger(logger))).is_ok() {
            log::set_max_level(max);
        }
    }
    set_level(level);
}

/// Changes the level at run time (ignored while `RUST_LOG` is in charge).
pub(crate) fn set_level(level: LogLevel) {
    if ENV_OVERRIDE.load(Ordering::Relaxed) {
        return;
    }
    LEVEL.store(level.as_filter() as usize, Ordering::Relaxed);
    log::set_max_level(level.as_filter());
}
