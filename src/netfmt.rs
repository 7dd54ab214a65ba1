//! Text forms of addresses and numbers without `core::fmt`. `Display` for an IPv4
//! address goes through the formatting machinery, about 1,300 instructions
//! each; gatehouse writes addresses on every request (`X-Forwarded-For`,
//! the upstream target label, the access-log line), so IPv4 is written by
//! hand. IPv6 is rare enough to keep `Display`.

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};

/// Appends `ip` as `Display` would.
pub(crate) fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                if octet >= 100 {
                    out.push((b'0' + octet / 100) as char);
                }
                if octet >= 10 {
                    out.push((b'0' + octet / 10 % 10) as char);
                }
                out.push((b'0' + octet % 10) as char);
            }
        }
        IpAddr::V6(_) => {
            let _ = write!(out, "{ip}");
        }
    }
}

/// Appends `n` in decimal, as `Display` would (response header values
/// built on every request, e.g. the `RateLimit` fields).
pub(crate) fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(d as char);
    }
}

/// Appends `addr` as `Display` would (`1.2.3.4:80`, `[::1]:80`).
pub(crate) fn push_socket_addr(out: &mut String, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            push_ip(out, IpAddr::V4(*v4.ip()));
            out.push(':');
            push_u64(out, u64::from(v4.port()));
        }
        SocketAddr::V6(_) => {
            let _ = write!(out, "{addr}");
        }
    }
}

/// `ip` as text.
pub(crate) fn ip_text(ip: IpAddr) -> String {
    let mut s = String::with_capacity(15);
    push_ip(&mut s, ip);
    s
}

/// `addr` as text.
pub(crate) fn socket_addr_text(addr: SocketAddr) -> String {
    let mut s = String::with_capacity(21);
    push_socket_addr(&mut s, addr);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips() -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.1",
            "127.0.0.1",
            "192.168.100.9",
            "::1",
            "2001:db8::7",
            "::ffff:10.1.2.3",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        for _ in 0..1000 {
            ips.push(IpAddr::from(fastrand::u32(..).to_be_bytes()));
        }
        ips
    }

    #[test]
    fn push_ip_matches_display() {
        for ip in ips() {
            let mut s = String::from("x, ");
            push_ip(&mut s, ip);
            assert_eq!(s, format!("x, {ip}"));
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn socket_addr_text_matches_display() {
        let ports = [0u16, 1, 9, 10, 99, 100, 8080, 65535];
        for (i, ip) in ips().into_iter().enumerate() {
            let port = if i < ports.len() {
                ports[i]
            } else {
                fastrand::u16(..)
            };
            for port in [port, ports[i % ports.len()]] {
                let addr = SocketAddr::new(ip, port);
                assert_eq!(socket_addr_text(addr), addr.to_string());
            }
        }
        let scoped: SocketAddr = "[fe80::1%2]:443".parse().unwrap();
        assert_eq!(socket_addr_text(scoped), scoped.to_string());
    }

    #[test]
    fn push_u64_matches_display() {
        let edges = [
            0u64,
            1,
            9,
            10,
            99,
            100,
            59,
            60,
            3600,
            u64::MAX - 1,
            u64::MAX,
        ];
        let random = (0..1000).map(|_| fastrand::u64(..) >> fastrand::u32(0..64));
        for n in edges.into_iter().chain(random) {
            let mut s = String::from("q=");
            push_u64(&mut s, n);
            assert_eq!(s, format!("q={n}"));
        }
    }
}
