//! The targets of a pool as one immutable set (swapped whole when DNS
//! changes it), each target with the state that must survive the swap:
//! requests in flight, active health and passive ejection.
//!
//! Selection uses `pingora-load-balancing`'s algorithms (weighted round
//! robin, weighted random, ketama) over the set, plus `least_request`:
//! the less loaded (in flight per weight) of two weighted random picks.

use super::passive::{Millis, Passive};
use crate::config::Balance;
use pingora::lb::selection::{BackendIter, BackendSelection, Consistent, Random, RoundRobin};
use pingora::lb::Backend;
use pingora::protocols::l4::socket::SocketAddr as PSocketAddr;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// How many backends a selection may look at before giving up.
const MAX_SELECT_ITERATIONS: usize = 256;

/// Active health-check streaks: (consecutive failures, consecutive successes).
type Streaks = (usize, usize);

/// One address of a pool.
pub(crate) struct Target {
    pub addr: SocketAddr,
    pub weight: usize,
    /// The address as text (metric label), rendered once.
    pub label: Box<str>,
    pub(super) inflight: AtomicUsize,
    /// In rotation as far as active health checks go.
    healthy: AtomicBool,
    streaks: Mutex<Streaks>,
    pub(super) passive: Passive,
}

impl Target {
    pub(crate) fn new(addr: SocketAddr, weight: usize) -> Target {
        Target {
            addr,
            weight,
            label: crate::netfmt::socket_addr_text(addr).into_boxed_str(),
            inflight: AtomicUsize::new(0),
            healthy: AtomicBool::new(true),
            streaks: Mutex::new((0, 0)),
            passive: Passive::default(),
        }
    }

    pub(crate) fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(crate) fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Takes traffic: healthy and not ejected.
    pub(crate) fn usable(&self, now: Option<Millis>) -> bool {
        self.healthy() && now.is_none_or(|n| !self.passive.ejected(n))
    }

    /// Records one active check; flips health after `threshold(ok)`
    /// consecutive results that disagree with it. Returns the new health
    /// when it flipped.
    pub(crate) fn checked(&self, ok: bool, threshold: usize) -> Option<bool> {
        let mut s = self.streaks.lock().unwrap_or_else(|p| p.into_inner());
        *s = if ok { (0, s.1 + 1) } else { (s.0 + 1, 0) };
        let run = if ok { s.1 } else { s.0 };
        if self.healthy() != ok && run >= threshold.max(1) {
            self.healthy.store(ok, Ordering::Relaxed);
            return Some(ok);
        }
        None
    }
}

enum Selector {
    RoundRobin(Arc<RoundRobin>),
    Random(Arc<Random>),
    Consistent(Arc<Consistent>),
    LeastRequest,
}

/// An immutable set of targets and its selector.
pub(crate) struct TargetSet {
    pub targets: Vec<Arc<Target>>,
    selector: Selector,
    /// Sum of the weights (for weighted random picks).
    total_weight: usize,
}

fn backend(t: &Target) -> Backend {
    Backend {
        addr: PSocketAddr::Inet(t.addr),
        weight: t.weight,
        ext: Default::default(),
    }
}

impl TargetSet {
    pub(crate) fn new(balance: Balance, targets: Vec<Arc<Target>>) -> TargetSet {
        let set: BTreeSet<Backend> = targets.iter().map(|t| backend(t)).collect();
        let selector = match balance {
            Balance::RoundRobin => Selector::RoundRobin(Arc::new(RoundRobin::build(&set))),
            Balance::Random => Selector::Random(Arc::new(Random::build(&set))),
            Balance::ConsistentHash => Selector::Consistent(Arc::new(Consistent::build(&set))),
            Balance::LeastRequest => Selector::LeastRequest,
        };
        TargetSet {
            total_weight: targets.iter().map(|t| t.weight).sum(),
            targets,
            selector,
        }
    }

    pub(crate) fn get(&self, addr: SocketAddr) -> Option<&Arc<Target>> {
        self.targets.iter().find(|t| t.addr == addr)
    }

    /// A target that `accept` takes; `key` is used by `consistent_hash`.
    pub(crate) fn select(
        &self,
        key: &[u8],
        accept: impl Fn(&Target) -> bool,
    ) -> Option<&Arc<Target>> {
        match &self.selector {
            Selector::RoundRobin(s) => self.walk(s.iter(key), accept),
            Selector::Random(s) => self.walk(s.iter(key), accept),
            Selector::Consistent(s) => self.walk(s.iter(key), accept),
            Selector::LeastRequest => self.least_request(accept),
        }
    }

    fn walk(
        &self,
        mut it: impl BackendIter,
        accept: impl Fn(&Target) -> bool,
    ) -> Option<&Arc<Target>> {
        for _ in 0..MAX_SELECT_ITERATIONS {
            let b = it.next()?;
            let t = b.addr.as_inet().and_then(|a| self.get(*a))?;
            if accept(t) {
                return Some(t);
            }
        }
        None
    }

    /// A weighted random target (any, accepted or not).
    fn weighted_pick(&self) -> Option<&Arc<Target>> {
        let mut n = fastrand::usize(..self.total_weight.max(1));
        for t in &self.targets {
            if n < t.weight {
                return Some(t);
            }
            n -= t.weight;
        }
        self.targets.last()
    }

    /// Power of two choices: two distinct weighted random picks, the one
    /// with fewer requests in flight per weight wins, a tie keeps the first
    /// (so idle targets get traffic in proportion to their weights). Falls
    /// back to the least loaded accepted target when random picks miss.
    fn least_request(&self, accept: impl Fn(&Target) -> bool) -> Option<&Arc<Target>> {
        let load = |t: &Target| t.inflight() as f64 / t.weight.max(1) as f64;
        let pick = |other: Option<&Arc<Target>>| {
            (0..4).find_map(|_| {
                self.weighted_pick()
                    .filter(|t| accept(t) && other.is_none_or(|o| !Arc::ptr_eq(o, t)))
            })
        };
        let first = pick(None);
        match (first, pick(first)) {
            (Some(a), Some(b)) => Some(if load(b) < load(a) { b } else { a }),
            (Some(a), None) => Some(a),
            (None, _) => self
                .targets
                .iter()
                .filter(|t| accept(t))
                .min_by(|a, b| load(a).total_cmp(&load(b))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(balance: Balance, weights: &[usize]) -> TargetSet {
        let targets = weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                Arc::new(Target::new(
                    SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)),
                    *w,
                ))
            })
            .collect();
        TargetSet::new(balance, targets)
    }

    #[test]
    fn least_request_prefers_idle_targets() {
        let s = set(Balance::LeastRequest, &[1, 1]);
        s.targets[0].inflight.store(50, Ordering::Relaxed);
        let idle = (0..200)
            .filter(|_| s.select(b"", |_| true).unwrap().addr == s.targets[1].addr)
            .count();
        // Only a draw of the busy one twice picks it: about a quarter.
        assert!(idle > 120, "idle picked {idle} of 200");
    }

    #[test]
    fn least_request_respects_weights() {
        let s = set(Balance::LeastRequest, &[3, 1]);
        let heavy = (0..4000)
            .filter(|_| s.select(b"", |_| true).unwrap().addr == s.targets[0].addr)
            .count();
        assert!(
            (2600..3400).contains(&heavy),
            "weight 3 of 4 got {heavy}/4000"
        );
    }

    #[test]
    fn rejected_targets_are_skipped() {
        for balance in [
            Balance::RoundRobin,
            Balance::Random,
            Balance::ConsistentHash,
            Balance::LeastRequest,
        ] {
            let s = set(balance, &[1, 1, 1]);
            let only = s.targets[2].addr;
            for _ in 0..20 {
                assert_eq!(s.select(b"k", |t| t.addr == only).unwrap().addr, only);
            }
            assert!(s.select(b"k", |_| false).is_none());
        }
    }

    #[test]
    fn health_flips_after_the_threshold() {
        let t = Target::new(SocketAddr::from(([127, 0, 0, 1], 1)), 1);
        assert_eq!(t.checked(false, 2), None);
        assert_eq!(t.checked(false, 2), Some(false));
        assert_eq!(t.checked(true, 1), Some(true));
    }
}
