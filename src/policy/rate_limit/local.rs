//! The local backend: `pingora_limits::rate::Rate`, one per limit.
//!
//! `Rate` keeps two fixed windows (current and previous) of a count-min
//! sketch: counts can be over-estimated when keys collide in every row,
//! never under-estimated, so a key never gets more than `requests` per
//! window, and an unlucky one may get fewer. Windows are shared by all keys
//! of a limit and start at the first request after the previous window
//! ended. Memory is fixed per limit, whatever the number of keys:
//! `2 windows × HASHES × SLOTS × 8 bytes` = 512 KiB.

use pingora_limits::rate::Rate;
use std::time::Duration;

const HASHES: usize = 4;
const SLOTS: usize = 8192;

pub(crate) struct LocalCounter {
    rate: Rate,
    per: Duration,
}

impl LocalCounter {
    pub(crate) fn new(per: Duration) -> LocalCounter {
        LocalCounter {
            rate: Rate::new_with_estimator_config(per, HASHES, SLOTS),
            per,
        }
    }

    /// Counts one request for `key`: (requests in this window, time left).
    pub(crate) fn observe(&self, key: &str) -> (u64, Duration) {
        let count = self.rate.observe(&key, 1).max(0) as u64;
        let fraction = self
            .rate
            .rate_with(&key, |c| c.current_interval_fraction)
            .clamp(0.0, 1.0);
        (count, self.per.mul_f64(1.0 - fraction))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_key_within_the_window() {
        let c = LocalCounter::new(Duration::from_secs(60));
        for i in 1..=5 {
            assert_eq!(c.observe("a").0, i);
        }
        assert_eq!(c.observe("b").0, 1);
        let (_, reset) = c.observe("a");
        assert!(
            reset <= Duration::from_secs(60) && reset > Duration::from_secs(50),
            "{reset:?}"
        );
    }

    #[test]
    fn a_new_window_starts_from_zero() {
        let c = LocalCounter::new(Duration::from_millis(200));
        c.observe("a");
        c.observe("a");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(c.observe("a").0, 1);
    }
}
