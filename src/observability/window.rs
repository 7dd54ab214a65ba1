//! Rolling one-minute windows per route for the console: requests, 5xx
//! answers and a latency histogram in 60 one-second slots. Fed by the
//! `logging` phase next to the Prometheus children (a few relaxed atomic
//! adds per request); read by `GET /console.json`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

const SLOTS: usize = 60;
/// Latency bucket `i` holds durations up to `FIRST_US * RATIO^i` µs.
const BUCKETS: usize = 36;
const FIRST_US: f64 = 50.0;
const RATIO: f64 = 1.5;

struct Slot {
    /// The unix second this slot counts, or 0.
    second: AtomicU64,
    requests: AtomicU32,
    errors: AtomicU32,
    latency: [AtomicU32; BUCKETS],
}

impl Slot {
    fn new() -> Slot {
        Slot {
            second: AtomicU64::new(0),
            requests: AtomicU32::new(0),
            errors: AtomicU32::new(0),
            latency: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    /// Makes the slot count `second`, clearing an older one. Two threads
    /// racing over a new second may lose a count or two: fine for a console.
    fn claim(&self, second: u64) {
        let old = self.second.load(Relaxed);
        if old != second
            && self
                .second
                .compare_exchange(old, second, Relaxed, Relaxed)
                .is_ok()
        {
            self.requests.store(0, Relaxed);
            self.errors.store(0, Relaxed);
            for b in &self.latency {
                b.store(0, Relaxed);
            }
        }
    }
}

/// One route's last minute.
pub(crate) struct Window {
    slots: Box<[Slot]>,
}

/// What a window says about the last 60 seconds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Summary {
    pub requests: u64,
    pub errors: u64,
    /// Requests per second over the minute.
    pub rate: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

fn bucket(d: Duration) -> usize {
    let us = d.as_secs_f64() * 1e6;
    if us <= FIRST_US {
        return 0;
    }
    ((us / FIRST_US).ln() / RATIO.ln())
        .ceil()
        .min((BUCKETS - 1) as f64) as usize
}

/// The upper bound of bucket `i`, in milliseconds.
fn bound_ms(i: usize) -> f64 {
    FIRST_US * RATIO.powi(i as i32) / 1000.0
}

fn unix_second(now: SystemTime) -> u64 {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Window {
    pub(crate) fn new() -> Window {
        Window {
            slots: (0..SLOTS).map(|_| Slot::new()).collect(),
        }
    }

    /// Counts one finished request.
    pub(crate) fn record(&self, now: SystemTime, duration: Duration, server_error: bool) {
        let second = unix_second(now);
        let slot = &self.slots[(second % SLOTS as u64) as usize];
        slot.claim(second);
        slot.requests.fetch_add(1, Relaxed);
        if server_error {
            slot.errors.fetch_add(1, Relaxed);
        }
        slot.latency[bucket(duration)].fetch_add(1, Relaxed);
    }

    /// The 60 seconds up to `now`.
    pub(crate) fn summary(&self, now: SystemTime) -> Summary {
        let current = unix_second(now);
        let (mut requests, mut errors) = (0u64, 0u64);
        let mut hist = [0u64; BUCKETS];
        for slot in self.slots.iter() {
            let s = slot.second.load(Relaxed);
            if s == 0 || s + SLOTS as u64 <= current || s > current {
                continue;
            }
            requests += u64::from(slot.requests.load(Relaxed));
            errors += u64::from(slot.errors.load(Relaxed));
            for (h, b) in hist.iter_mut().zip(&slot.latency) {
                *h += u64::from(b.load(Relaxed));
            }
        }
        let quantile = |q: f64| {
            let total: u64 = hist.iter().sum();
            if total == 0 {
                return None;
            }
            let rank = (q * total as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            hist.iter()
                .position(|&n| {
                    seen += n;
                    seen >= rank
                })
                .map(bound_ms)
        };
        Summary {
            requests,
            errors,
            rate: requests as f64 / SLOTS as f64,
            p50_ms: quantile(0.5),
            p99_ms: quantile(0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_last_minute_only() {
        let w = Window::new();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for i in 0..100 {
            w.record(t0, Duration::from_millis(2), i % 10 == 0);
        }
        w.record(
            t0 + Duration::from_secs(30),
            Duration::from_millis(900),
            false,
        );
        let s = w.summary(t0 + Duration::from_secs(30));
        assert_eq!((s.requests, s.errors), (101, 10));
        let p50 = s.p50_ms.unwrap();
        assert!((2.0..3.0).contains(&p50), "p50 {p50}");
        let p99 = s.p99_ms.unwrap();
        assert!((2.0..3.0).contains(&p99), "p99 {p99}");
        // A minute later the first second has left the window.
        let s = w.summary(t0 + Duration::from_secs(61));
        assert_eq!(s.requests, 1);
        assert!(s.p50_ms.unwrap() >= 900.0);
        // A slot reused for a new second starts from zero.
        w.record(
            t0 + Duration::from_secs(60),
            Duration::from_millis(1),
            false,
        );
        assert_eq!(w.summary(t0 + Duration::from_secs(60)).requests, 2);
        assert_eq!(Window::new().summary(t0).p99_ms, None);
    }
}
