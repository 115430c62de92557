//! Who a client is, for limits kept per client address. An IPv4 address is one client. An IPv6
//! address is one client per prefix (`[server] ipv6_prefix`, default /64): a single host is
//! usually given a whole /64 and can send from any of its 2^64 addresses, so counting each
//! address apart would give it an unlimited budget. An IPv4-mapped IPv6 address
//! (`::ffff:a.b.c.d`, how a dual-stack socket shows an IPv4 peer) is that IPv4 address. The
//! failed-login limiter keys by it; any other per-address limit should too.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The network `addr` is limited as: the IPv4 address itself (a /32), or the IPv6 address's
/// `/ipv6_prefix` network (host bits cleared; a prefix above 128 is read as 128). Its `Display`
/// (`192.0.2.7/32`, `2001:db8:1:2::/64`) is a stable name for shared counters.
pub fn client_key(addr: IpAddr, ipv6_prefix: u8) -> IpNet {
    let v6 = match addr {
        IpAddr::V4(v4) => return IpNet::V4(Ipv4Net::from(v4)),
        IpAddr::V6(v6) => v6,
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpNet::V4(Ipv4Net::from(v4));
    }
    let net = Ipv6Net::new(v6, ipv6_prefix.min(128)).unwrap_or_else(|_| Ipv6Net::from(v6));
    IpNet::V6(net.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(addr: &str, prefix: u8) -> String {
        client_key(addr.parse().unwrap(), prefix).to_string()
    }

    #[test]
    fn ipv6_by_prefix_ipv4_by_address() {
        assert_eq!(key("2001:db8:1:2::1", 64), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff:1:2:3", 64), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:3::1", 64), "2001:db8:1:3::/64");
        assert_eq!(key("2001:db8:1:2::1", 48), "2001:db8:1::/48");
        assert_eq!(key("2001:db8:1:2::1", 128), "2001:db8:1:2::1/128");
        assert_eq!(key("2001:db8:1:2::1", 200), "2001:db8:1:2::1/128");
        assert_eq!(key("192.0.2.7", 64), "192.0.2.7/32");
        assert_eq!(
            key("192.0.2.8", 1),
            "192.0.2.8/32",
            "the prefix is for IPv6 only"
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_is_the_ipv4_address() {
        assert_eq!(key("::ffff:192.0.2.7", 64), "192.0.2.7/32");
        assert_eq!(
            client_key("::ffff:192.0.2.7".parse().unwrap(), 64),
            client_key("192.0.2.7".parse().unwrap(), 64)
        );
        // Not mapped (the IPv4-compatible form is an ordinary IPv6 address).
        assert_eq!(key("::192.0.2.7", 64), "::/64");
    }
}
