//! Whether a failed upstream attempt is tried again, and how long to wait
//! first. Pure: the proxy glue (`proxy/select.rs`) gathers the facts.
//!
//! - `connect` failures are retried whenever `retries` allow (nothing was
//!   sent), and never count against the budget (Part 1 behaviour);
//! - resets, timeouts and statuses only when `retry_on` names them, the
//!   method is allowed by `retry_methods`, the body was fully buffered,
//!   no response byte reached the client, and the budget has room.

use crate::config::{RetryMethods, RetryReason, UpstreamConfig};
use http::Method;
use std::time::Duration;

/// The first backoff; each further retry doubles it, up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(250);

/// What is known about a request when one of its attempts failed.
pub(crate) struct Attempted<'a> {
    pub method: &'a Method,
    /// Attempts made so far (1 after the first).
    pub attempts: usize,
    /// The body is replayable: none, or all of it within the 64 KiB buffer.
    pub body_buffered: bool,
    /// The client already has the response head.
    pub response_started: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Retry,
    /// Not retryable (reason, method, body, attempts used up).
    No,
    /// Retryable, but the budget is spent: the failure goes to the client.
    BudgetExhausted,
}

/// GET HEAD OPTIONS PUT DELETE TRACE (RFC 9110 9.2.2), or every method.
pub(crate) fn method_allowed(m: &Method, allowed: RetryMethods) -> bool {
    allowed == RetryMethods::All || m.is_idempotent()
}

/// True when statuses or failures after sending are retried at all (then
/// requests are counted for the budget).
pub(crate) fn uses_budget(cfg: &UpstreamConfig) -> bool {
    cfg.retries > 0 && cfg.retry_on.iter().any(|r| *r != RetryReason::Connect)
}

/// Decides one failed attempt; `try_budget` takes a retry from the budget
/// and is asked only when everything else allows the retry.
pub(crate) fn decide(
    cfg: &UpstreamConfig,
    reason: RetryReason,
    a: &Attempted<'_>,
    try_budget: impl FnOnce() -> bool,
) -> Decision {
    if a.attempts > cfg.retries || a.response_started {
        return Decision::No;
    }
    if reason == RetryReason::Connect {
        return Decision::Retry;
    }
    if !cfg.retry_on.contains(&reason)
        || !method_allowed(a.method, cfg.retry_methods)
        || !a.body_buffered
    {
        return Decision::No;
    }
    if try_budget() {
        Decision::Retry
    } else {
        Decision::BudgetExhausted
    }
}

/// The wait before retry number `n` (1-based): exponential with full
/// jitter between half and the whole step, so retries of many requests
/// do not arrive together.
pub(crate) fn backoff(n: usize) -> Duration {
    let step = BASE_BACKOFF
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    step.mul_f64(0.5 + fastrand::f64() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(retry_on: &[RetryReason]) -> UpstreamConfig {
        let mut c = crate::config::load_str(
            "upstreams: {u: {targets: [\"127.0.0.1:1\"]}}\nroutes: [{name: r, upstream: u}]",
        )
        .unwrap()
        .upstreams
        .remove("u")
        .unwrap();
        c.retries = 2;
        c.retry_on = retry_on.to_vec();
        c
    }

    fn attempt(method: &Method, attempts: usize) -> Attempted<'_> {
        Attempted {
            method,
            attempts,
            body_buffered: true,
            response_started: false,
        }
    }

    #[test]
    fn statuses_need_retry_on_and_an_allowed_method() {
        let c = cfg(&[RetryReason::Connect, RetryReason::Status(503)]);
        let s503 = RetryReason::Status(503);
        assert_eq!(
            decide(&c, s503, &attempt(&Method::GET, 1), || true),
            Decision::Retry
        );
        assert_eq!(
            decide(&c, s503, &attempt(&Method::POST, 1), || true),
            Decision::No
        );
        assert_eq!(
            decide(
                &c,
                RetryReason::Status(502),
                &attempt(&Method::GET, 1),
                || true
            ),
            Decision::No
        );
        assert_eq!(
            decide(&c, s503, &attempt(&Method::GET, 3), || true),
            Decision::No
        );
        assert_eq!(
            decide(&c, s503, &attempt(&Method::GET, 1), || false),
            Decision::BudgetExhausted
        );
    }

    #[test]
    fn connect_failures_ignore_method_and_budget() {
        let c = cfg(&[RetryReason::Connect]);
        let d = decide(&c, RetryReason::Connect, &attempt(&Method::POST, 1), || {
            panic!("no budget")
        });
        assert_eq!(d, Decision::Retry);
    }

    #[test]
    fn nothing_is_retried_after_the_response_started_or_an_unbuffered_body() {
        let c = cfg(&[RetryReason::Reset]);
        let mut a = attempt(&Method::GET, 1);
        a.response_started = true;
        assert_eq!(decide(&c, RetryReason::Reset, &a, || true), Decision::No);
        let mut a = attempt(&Method::PUT, 1);
        a.body_buffered = false;
        assert_eq!(decide(&c, RetryReason::Reset, &a, || true), Decision::No);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for _ in 0..50 {
            let b1 = backoff(1);
            assert!(b1 >= Duration::from_millis(5) && b1 <= Duration::from_millis(10));
            assert!(backoff(10) <= MAX_BACKOFF);
            assert!(backoff(10) >= MAX_BACKOFF / 2);
        }
    }
}
