//! The retry budget: retries after resets, timeouts and statuses may add at
//! most `retry_budget` of the requests seen over the last 10 seconds, and at
//! least 3 retries per second are always allowed. Ten one-second slots of
//! atomics: the request path adds to one, a retry sums them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

const WINDOW_SECS: u64 = 10;
/// Retries per second allowed whatever the ratio.
const MIN_PER_SEC: u64 = 3;

#[derive(Default)]
struct Slot {
    /// The second (since the epoch) this slot counts, plus one (0: unused).
    sec: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

pub(crate) struct RetryBudget {
    ratio: f64,
    epoch: Instant,
    slots: [Slot; WINDOW_SECS as usize],
}

impl RetryBudget {
    pub(crate) fn new(ratio: f64) -> RetryBudget {
        RetryBudget {
            ratio,
            epoch: Instant::now(),
            slots: Default::default(),
        }
    }

    fn now_sec(&self) -> u64 {
        self.epoch.elapsed().as_secs() + 1
    }

    /// The slot of second `sec`, emptied first if it held an older second.
    fn slot(&self, sec: u64) -> &Slot {
        let slot = &self.slots[(sec % WINDOW_SECS) as usize];
        let seen = slot.sec.load(Ordering::Acquire);
        if seen != sec
            && slot
                .sec
                .compare_exchange(seen, sec, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            slot.requests.store(0, Ordering::Relaxed);
            slot.retries.store(0, Ordering::Relaxed);
        }
        slot
    }

    /// Counts one request sent upstream.
    pub(crate) fn request(&self) {
        self.slot(self.now_sec())
            .requests
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget, or says there is none left.
    pub(crate) fn try_retry(&self) -> bool {
        let now = self.now_sec();
        let current = self.slot(now);
        let (mut requests, mut retries) = (0, 0);
        for s in &self.slots {
            let sec = s.sec.load(Ordering::Acquire);
            if sec != 0 && sec + WINDOW_SECS > now {
                requests += s.requests.load(Ordering::Relaxed);
                retries += s.retries.load(Ordering::Relaxed);
            }
        }
        let allowed = (retries as f64) < self.ratio * requests as f64
            || current.retries.load(Ordering::Relaxed) < MIN_PER_SEC;
        if allowed {
            current.retries.fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_a_share_of_requests() {
        let b = RetryBudget::new(0.2);
        for _ in 0..100 {
            b.request();
        }
        let granted = (0..100).filter(|_| b.try_retry()).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn three_per_second_are_always_allowed() {
        let b = RetryBudget::new(0.0);
        let granted = (0..10).filter(|_| b.try_retry()).count();
        assert_eq!(granted, 3);
    }
}
