//! Traffic split: which side of a route's `split` takes a request, and
//! which share of the requests a `mirror` copies.
//!
//! Without a key each request is drawn at random by weight. With one,
//! weighted rendezvous hashing: every side scores `weight / -ln(h)`, with
//! `h` a hash of (key, side name) in (0, 1), and the best score wins. The
//! same key always lands on the same side, and when one weight changes only
//! keys moving to or from that side move. A side without a usable target is
//! skipped, so its share goes to the others.

/// FNV-1a, then a SplitMix64 finaliser: stable across builds and hosts, so
/// every gateway of a fleet puts a key on the same side.
fn hash(key: &[u8], side: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.iter().chain([0xffu8].iter()).chain(side.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The rendezvous score of one side for `key`.
fn score(key: &[u8], side: &str, weight: u32) -> f64 {
    // In (0, 1): never 0 (ln would be -inf) nor 1 (ln would be 0).
    let unit = ((hash(key, side) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(weight) / -unit.ln()
}

/// The side for this request: `sides` are (side, weight) and `name` gives
/// a side's name (the hash input); `usable(i)` says
/// whether side `i` has a target that takes traffic. `None` when no side
/// with a weight above 0 is usable.
pub(crate) fn choose<S>(
    sides: &[(S, u32)],
    name: impl Fn(&S) -> &str,
    key: Option<&[u8]>,
    usable: impl Fn(usize) -> bool,
) -> Option<usize> {
    let live = |i: usize, w: u32| w > 0 && usable(i);
    let candidates = || sides.iter().enumerate().filter(|(i, (_, w))| live(*i, *w));
    if let Some(k) = key {
        return candidates()
            .map(|(i, (side, w))| (i, score(k, name(side), *w)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i);
    }
    let total: u64 = candidates().map(|(_, (_, w))| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let mut n = fastrand::u64(..total);
    for (i, (_, w)) in candidates() {
        if n < u64::from(*w) {
            return Some(i);
        }
        n -= u64::from(*w);
    }
    // A side's health changed between the two passes.
    candidates().next_back().map(|(i, _)| i)
}

/// Whether this request is one of the `percent` (0..=100) mirrored.
pub(crate) fn sampled(percent: f64) -> bool {
    percent >= 100.0 || (percent > 0.0 && fastrand::f64() * 100.0 < percent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_choice_follows_the_weights() {
        let sides = [("a", 90), ("b", 10)];
        let b = (0..20_000)
            .filter(|_| choose(&sides, |n| n, None, |_| true) == Some(1))
            .count();
        assert!((1_600..2_400).contains(&b), "b got {b} of 20000");
    }

    #[test]
    fn a_key_always_gets_the_same_side() {
        let sides = [("a", 50), ("b", 50)];
        for k in 0..100u32 {
            let key = k.to_string();
            let first = choose(&sides, |n| n, Some(key.as_bytes()), |_| true);
            for _ in 0..5 {
                assert_eq!(choose(&sides, |n| n, Some(key.as_bytes()), |_| true), first);
            }
        }
    }

    #[test]
    fn keyed_choice_follows_the_weights() {
        let sides = [("a", 80), ("b", 20)];
        let b = (0..20_000u32)
            .filter(|k| choose(&sides, |n| n, Some(&k.to_le_bytes()), |_| true) == Some(1))
            .count();
        assert!((3_500..4_500).contains(&b), "b got {b} of 20000");
    }

    #[test]
    fn changing_one_weight_moves_only_keys_to_that_side() {
        let before = [("a", 50), ("b", 30), ("c", 20)];
        let after = [("a", 50), ("b", 30), ("c", 40)];
        let mut moved = 0;
        for k in 0..10_000u32 {
            let key = k.to_le_bytes();
            let (x, y) = (
                choose(&before, |n| n, Some(&key), |_| true),
                choose(&after, |n| n, Some(&key), |_| true),
            );
            if x != y {
                assert_eq!(y, Some(2), "a key moved between sides that did not change");
                moved += 1;
            }
        }
        // c goes from 20% to about 33%: about 13% of the keys move.
        assert!((900..1_800).contains(&moved), "{moved} keys moved");
    }

    #[test]
    fn an_unusable_side_gives_its_share_away() {
        let sides = [("a", 90), ("b", 10)];
        for k in 0..200u32 {
            assert_eq!(
                choose(&sides, |n| n, Some(&k.to_le_bytes()), |i| i == 1),
                Some(1)
            );
            assert_eq!(choose(&sides, |n| n, None, |i| i == 1), Some(1));
        }
        assert_eq!(choose(&sides, |n| n, None, |_| false), None);
        assert_eq!(choose(&[("a", 0)], |n| n, None, |_| true), None);
    }

    #[test]
    fn sampling_is_a_share() {
        assert!(sampled(100.0));
        assert!(!sampled(0.0));
        let n = (0..10_000).filter(|_| sampled(5.0)).count();
        assert!((300..700).contains(&n), "{n}");
    }
}
