//! `allow_ips` / `deny_ips` of a route: IPv4 and IPv6 CIDRs against the
//! client IP (as `trusted_proxies` derives it). Deny wins over allow; with
//! an allow list, anything outside it is denied.
//!
//! Each list is compiled into sorted, merged address ranges per family, so
//! a lookup is one binary search (O(log n)), not a scan of the list.

use ipnet::IpNet;
use std::net::IpAddr;

/// A set of CIDRs as disjoint, sorted inclusive ranges per family.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrefixSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

fn merge<T: Ord + Copy>(mut ranges: Vec<(T, T)>, next: impl Fn(T) -> Option<T>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            // Overlapping or adjacent: extend the previous range.
            Some(last) if next(last.1).is_none_or(|n| start <= n) => {
                last.1 = last.1.max(end);
            }
            _ => out.push((start, end)),
        }
    }
    out
}

fn contains<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    // The last range starting at or before `x`.
    let i = ranges.partition_point(|(start, _)| *start <= x);
    i > 0 && x <= ranges[i - 1].1
}

impl PrefixSet {
    pub fn new(nets: &[IpNet]) -> PrefixSet {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for net in nets {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        PrefixSet {
            v4: merge(v4, |x: u32| x.checked_add(1)),
            v6: merge(v6, |x: u128| x.checked_add(1)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// True when `ip` is in one of the CIDRs. An IPv4-mapped IPv6 address
    /// (`::ffff:10.0.0.1`) is looked up as the IPv4 address it maps.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => contains(&self.v4, u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => contains(&self.v4, u32::from(v4)),
                None => contains(&self.v6, u128::from(a)),
            },
        }
    }
}

/// A route's IP rules.
#[derive(Debug, Clone, PartialEq)]
pub struct IpRules {
    allow: PrefixSet,
    deny: PrefixSet,
}

impl IpRules {
    /// `None` when both lists are empty (nothing to check).
    pub fn new(allow: &[IpNet], deny: &[IpNet]) -> Option<IpRules> {
        if allow.is_empty() && deny.is_empty() {
            return None;
        }
        Some(IpRules {
            allow: PrefixSet::new(allow),
            deny: PrefixSet::new(deny),
        })
    }

    /// Whether a client may use the route. Without a client IP (nothing to
    /// compare), only a route without an allow list lets it through.
    pub fn allows(&self, client: Option<IpAddr>) -> bool {
        match client {
            Some(ip) => {
                !self.deny.contains(ip) && (self.allow.is_empty() || self.allow.contains(ip))
            }
            None => self.allow.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|s| {
                s.parse()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .unwrap()
            })
            .collect()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn deny_wins_over_allow() {
        let r = IpRules::new(
            &nets(&["10.0.0.0/8", "192.168.1.7"]),
            &nets(&["10.0.13.0/24"]),
        )
        .unwrap();
        assert!(r.allows(ip("10.1.2.3")));
        assert!(r.allows(ip("192.168.1.7")));
        assert!(!r.allows(ip("192.168.1.8")));
        assert!(!r.allows(ip("10.0.13.99")));
        assert!(r.allows(ip("10.0.14.0")));
        assert!(!r.allows(None));
        assert!(
            r.allows(ip("::ffff:10.9.9.9")),
            "IPv4-mapped IPv6 is its IPv4"
        );
    }

    #[test]
    fn ipv6_and_deny_only_lists() {
        let r = IpRules::new(&[], &nets(&["2001:db8::/32", "203.0.113.0/24"])).unwrap();
        assert!(!r.allows(ip("2001:db8::1")));
        assert!(r.allows(ip("2001:db9::1")));
        assert!(!r.allows(ip("203.0.113.200")));
        assert!(r.allows(ip("198.51.100.1")));
        assert!(r.allows(None));
        assert!(IpRules::new(&[], &[]).is_none());
    }

    #[test]
    fn ranges_merge_and_edges_hold() {
        let s = PrefixSet::new(&nets(&[
            "10.0.0.0/25",
            "10.0.0.128/25",
            "10.0.0.5",
            "0.0.0.0/0",
        ]));
        assert_eq!(s.v4, vec![(0, u32::MAX)]);
        let s = PrefixSet::new(&nets(&["10.0.0.0/24", "10.0.2.0/24"]));
        assert_eq!(s.v4.len(), 2);
        assert!(s.contains("10.0.0.255".parse().unwrap()));
        assert!(!s.contains("10.0.1.0".parse().unwrap()));
        assert!(s.contains("10.0.2.0".parse().unwrap()));
        assert!(!s.contains("9.255.255.255".parse().unwrap()));
    }

    #[test]
    fn lookups_match_a_linear_scan() {
        let list: Vec<IpNet> = (0..2000u32)
            .map(|i| {
                let a = std::net::Ipv4Addr::from(i.wrapping_mul(2_654_435_761));
                IpNet::new(IpAddr::V4(a), 16 + (i % 17) as u8)
                    .unwrap()
                    .trunc()
            })
            .collect();
        let set = PrefixSet::new(&list);
        for i in 0..20_000u32 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(
                i.wrapping_mul(40_503).wrapping_add(i << 20),
            ));
            assert_eq!(set.contains(a), list.iter().any(|n| n.contains(&a)), "{a}");
        }
    }
}
