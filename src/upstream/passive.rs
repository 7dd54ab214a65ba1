//! Passive health (outlier ejection): a target that fails
//! `consecutive_failures` times in a row on live traffic takes no requests
//! for `eject_for`. Back in rotation, it is on probation for `eject_for`:
//! one more failure then ejects it again for twice as long (up to 10 x).
//! Once it has served `eject_for` without an ejection the count resets.
//!
//! The request path touches two atomics (the failure count and the ejection
//! deadline); the lock is taken only when a target is ejected.

use crate::config::PassiveHealthConfig;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The longest ejection, as a multiple of `eject_for`.
const MAX_FACTOR: u64 = 10;

/// Milliseconds since the pool's epoch; 0 is "never".
pub(crate) type Millis = u64;

#[derive(Default)]
pub(crate) struct Passive {
    failures: AtomicU32,
    /// When the current ejection ends (0: not ejected).
    ejected_until: AtomicU64,
    streak: Mutex<Streak>,
}

#[derive(Default)]
struct Streak {
    /// Ejections in a row.
    count: u32,
    /// When the last ejection ended (or ends).
    last_end: Millis,
}

/// The largest number of targets that may be ejected at once:
/// `max_ejected` rounded down, but never less than one.
pub(crate) fn ejection_cap(max_ejected: f64, targets: usize) -> usize {
    ((max_ejected * targets as f64).floor() as usize).max(1)
}

/// The n-th ejection in a row lasts `eject_for` x 2^(n-1), at most 10 x.
pub(crate) fn ejection_length(eject_for: Duration, n: u32) -> Duration {
    let factor = 1u64
        .checked_shl(n.saturating_sub(1))
        .unwrap_or(u64::MAX)
        .min(MAX_FACTOR);
    eject_for.saturating_mul(factor as u32)
}

impl Passive {
    /// True while an ejection lasts.
    pub(crate) fn ejected(&self, now: Millis) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now
    }

    /// The end of the current ejection, if one lasts.
    pub(crate) fn ejected_until(&self, now: Millis) -> Option<Millis> {
        let until = self.ejected_until.load(Ordering::Relaxed);
        (until > now).then_some(until)
    }

    /// A success ends the run of failures.
    pub(crate) fn success(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a failure; returns the ejection's length when this one ejects
    /// the target. `may_eject` is asked (under the lock) whether the pool's
    /// `max_ejected` leaves room.
    pub(crate) fn failure(
        &self,
        cfg: &PassiveHealthConfig,
        now: Millis,
        may_eject: impl FnOnce() -> bool,
    ) -> Option<Duration> {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let last_end = self.ejected_until.load(Ordering::Relaxed);
        if last_end > now {
            return None;
        }
        let eject_for = cfg.eject_for.as_millis() as u64;
        let on_probation = last_end != 0 && now - last_end < eject_for;
        if n < cfg.consecutive_failures && !on_probation {
            return None;
        }
        let mut streak = self.streak.lock().unwrap_or_else(|p| p.into_inner());
        if self.ejected(now) || !may_eject() {
            return None;
        }
        if now.saturating_sub(streak.last_end) >= eject_for {
            streak.count = 0;
        }
        streak.count += 1;
        let length = ejection_length(cfg.eject_for, streak.count);
        let until = now + (length.as_millis() as u64).max(1);
        streak.last_end = until;
        self.ejected_until.store(until, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        Some(length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> PassiveHealthConfig {
        PassiveHealthConfig {
            consecutive_failures: 3,
            eject_for: Duration::from_secs(1),
            max_ejected: 0.5,
        }
    }

    #[test]
    fn ejects_after_consecutive_failures_only() {
        let p = Passive::default();
        assert_eq!(p.failure(&cfg(), 10, || true), None);
        assert_eq!(p.failure(&cfg(), 10, || true), None);
        p.success();
        assert_eq!(p.failure(&cfg(), 10, || true), None);
        assert_eq!(p.failure(&cfg(), 10, || true), None);
        assert_eq!(p.failure(&cfg(), 10, || true), Some(Duration::from_secs(1)));
        assert!(p.ejected(500));
        assert!(!p.ejected(1010));
    }

    #[test]
    fn repeat_ejections_double_up_to_ten_times_and_reset() {
        let p = Passive::default();
        let c = cfg();
        let eject = |now| (0..3).find_map(|_| p.failure(&c, now, || true));
        assert_eq!(eject(0), Some(Duration::from_secs(1)));
        // Re-admitted at 1000; failing again at once doubles.
        assert_eq!(eject(1000), Some(Duration::from_secs(2)));
        assert_eq!(eject(3000), Some(Duration::from_secs(4)));
        assert_eq!(eject(7000), Some(Duration::from_secs(8)));
        assert_eq!(eject(15000), Some(Duration::from_secs(10)));
        assert_eq!(eject(25000), Some(Duration::from_secs(10)));
        // Served eject_for (1 s) after re-admission at 35000: back to 1 s.
        assert_eq!(eject(36000), Some(Duration::from_secs(1)));
    }

    #[test]
    fn one_failure_on_probation_ejects_again() {
        let p = Passive::default();
        let c = cfg();
        assert_eq!(
            (0..3).find_map(|_| p.failure(&c, 0, || true)),
            Some(Duration::from_secs(1))
        );
        // Back at 1000; within eject_for (until 2000) one failure is enough.
        assert_eq!(p.failure(&c, 1500, || true), Some(Duration::from_secs(2)));
        // Back at 3500; served eject_for until 4500: three failures again, 1 s.
        assert_eq!(p.failure(&c, 4600, || true), None);
        assert_eq!(p.failure(&c, 4600, || true), None);
        assert_eq!(p.failure(&c, 4600, || true), Some(Duration::from_secs(1)));
    }

    #[test]
    fn the_cap_is_respected() {
        let p = Passive::default();
        for _ in 0..10 {
            assert_eq!(p.failure(&cfg(), 0, || false), None);
        }
        assert!(!p.ejected(0));
    }

    #[test]
    fn cap_rounds_down_but_allows_one() {
        assert_eq!(ejection_cap(0.5, 3), 1);
        assert_eq!(ejection_cap(0.5, 4), 2);
        assert_eq!(ejection_cap(0.1, 3), 1);
        assert_eq!(ejection_cap(1.0, 3), 3);
        assert_eq!(ejection_cap(0.0, 5), 1);
    }
}
