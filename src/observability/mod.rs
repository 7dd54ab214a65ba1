//! Metrics (Prometheus) and the access log. Both are fed from the proxy's
//! `logging` phase, which Pingora runs last for every request, including
//! early answers and failures.

pub(crate) mod access_log;
pub(crate) mod json_line;
pub(crate) mod metrics;
pub(crate) mod time;
pub(crate) mod tracing;
pub(crate) mod window;
