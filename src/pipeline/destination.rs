//! Which destinations the forward proxy may reach: an intercepted or tunnelled entry of
//! `[forward_proxy]`, by name and port; never an address of the machine itself or the link
//! (loopback, link-local with the instance metadata service, unspecified, multicast) unless that
//! exact address, or a name without a wildcard, is listed.

use std::net::IpAddr;

pub use crate::config::special_address as special;
use crate::config::{split_host_port, Destination, ForwardProxyConfig};

/// What the proxy does with a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// TLS terminated by the gateway, requests through the routes.
    Intercept,
    /// A blind TCP tunnel.
    Tunnel,
    /// Refused, with the RFC 9209 error type for `Proxy-Status`.
    Refused(&'static str),
}

/// A `CONNECT` target or an absolute-form authority: lower-case host without a trailing dot,
/// and the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl Target {
    /// `host:port` (a `CONNECT` request target must name the port, RFC 9110 §9.3.6).
    pub fn parse_connect(authority: &str) -> Option<Target> {
        let (host, port) = split_host_port(authority)?;
        Target::new(host, port?)
    }

    /// `host[:port]` of an absolute-form URL, with the scheme's default port.
    pub fn parse_absolute(authority: &str, default_port: u16) -> Option<Target> {
        let (host, port) = split_host_port(authority)?;
        Target::new(host, port.unwrap_or(default_port))
    }

    fn new(host: &str, port: u16) -> Option<Target> {
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        // Only what a listed entry could name: no userinfo, no percent-encoding, no spaces.
        let ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':'));
        ok.then_some(Target { host, port })
    }

    /// The target's address when it is an IP literal.
    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

/// Where `target` may go under `cfg`.
pub fn classify(cfg: &ForwardProxyConfig, target: &Target) -> Reach {
    fn listed<'a>(list: &'a [Destination], t: &Target) -> Option<&'a Destination> {
        list.iter().find(|d| d.matches(&t.host, t.port))
    }
    let (reach, entry) = match (listed(&cfg.intercept, target), listed(&cfg.tunnel, target)) {
        (Some(d), _) => (Reach::Intercept, d),
        (None, Some(d)) => (Reach::Tunnel, d),
        (None, None) => return Reach::Refused("destination_not_allowed"),
    };
    if let Some(ip) = target.ip() {
        // An address literal is reached only when it is listed as such, and a special one
        // only then too (the matching entry is that literal: wildcards never match addresses).
        if special(ip) && entry.host != target.host {
            return Reach::Refused("destination_ip_prohibited");
        }
    }
    reach
}

/// The destination resolved to `ip`: allowed unless `ip` is special and the entry that allowed
/// the target is a wildcard (a listed name or literal is the operator's own choice).
pub fn resolved_allowed(cfg: &ForwardProxyConfig, target: &Target, ip: IpAddr) -> bool {
    if !special(ip) {
        return true;
    }
    let verbatim = |d: &Destination| !d.wildcard && d.host == target.host && d.port == target.port;
    cfg.intercept.iter().chain(cfg.tunnel.iter()).any(verbatim)
}

/// An absolute-form request may go to its authority: an intercepted name and port, or
/// `http://name` (port 80) for an intercepted `name` (443), which goes on over TLS.
pub(crate) fn absolute_form_allowed(cfg: &ForwardProxyConfig, uri: &http::Uri) -> bool {
    let Some(authority) = uri.authority() else {
        return false;
    };
    let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let Some(t) = Target::parse_absolute(authority.as_str(), if https { 443 } else { 80 }) else {
        return false;
    };
    let intercepted = |t: &Target| classify(cfg, t) == Reach::Intercept;
    intercepted(&t)
        || (!https
            && t.port == 80
            && intercepted(&Target {
                host: t.host.clone(),
                port: 443,
            }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn cfg() -> ForwardProxyConfig {
        let d = |s: &str| Destination::parse(s).unwrap();
        ForwardProxyConfig {
            intercept: vec![
                d("api.internal.example"),
                d("*.execute-api.example.com"),
                d("10.0.0.5:8443"),
            ],
            tunnel: vec![d("s3.example.com:443"), d("127.0.0.1:9000")],
            ca: None,
            upstream_tls: true,
            leaf_validity: Duration::from_secs(3600),
        }
    }

    fn reach(t: &str) -> Reach {
        match Target::parse_connect(t) {
            Some(t) => classify(&cfg(), &t),
            None => Reach::Refused("unparsable"),
        }
    }

    #[test]
    fn only_listed_names_and_ports() {
        assert_eq!(reach("api.internal.example:443"), Reach::Intercept);
        assert_eq!(reach("API.Internal.Example.:443"), Reach::Intercept);
        assert_eq!(reach("abc.execute-api.example.com:443"), Reach::Intercept);
        assert_eq!(reach("s3.example.com:443"), Reach::Tunnel);
        assert_eq!(reach("127.0.0.1:9000"), Reach::Tunnel, "listed verbatim");
        assert_eq!(reach("10.0.0.5:8443"), Reach::Intercept);
        for refused in [
            "api.internal.example:444",
            "api.internal.example",
            "execute-api.example.com:443",
            "a.b.execute-api.example.com:443",
            "xexecute-api.example.com:443",
            "127.0.0.1:443",
            "169.254.169.254:80",
            "[::1]:443",
            "[fe80::1]:443",
            "localhost:443",
            "10.0.0.5:443",
            "user@api.internal.example:443",
            "api.internal.example%2e:443",
            "api.internal.example:0",
            "api.internal.example:65536",
            "api.internal.example:+443",
        ] {
            assert!(matches!(reach(refused), Reach::Refused(_)), "{refused}");
        }
    }

    #[test]
    fn special_addresses() {
        for ip in [
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(special(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.1", "192.168.1.1", "2001:db8::1", "::ffff:10.0.0.1"] {
            assert!(!special(ip.parse().unwrap()), "{ip}");
        }
    }

    proptest! {
        /// Whatever the target, nothing outside the lists is reached: a target that is not
        /// refused matches an entry of the list it is reached through.
        #[test]
        fn nothing_outside_the_lists(
            host in prop_oneof![
                "[a-zA-Z0-9.:%@\\[\\]_-]{0,40}",
                Just("api.internal.example".to_string()),
                Just("x.execute-api.example.com".to_string()),
                Just("169.254.169.254".to_string()),
                Just("[::1]".to_string()),
            ],
            port in prop_oneof![Just("443".to_string()), Just("9000".to_string()), "[0-9+-]{0,6}"],
        ) {
            let text = format!("{host}:{port}");
            let Some(t) = Target::parse_connect(&text) else { return Ok(()); };
            let c = cfg();
            match classify(&c, &t) {
                Reach::Intercept => prop_assert!(c.intercept.iter().any(|d| d.matches(&t.host, t.port)), "{text}"),
                Reach::Tunnel => prop_assert!(c.tunnel.iter().any(|d| d.matches(&t.host, t.port)), "{text}"),
                Reach::Refused(_) => {}
            }
            if let (Some(ip), false) = (t.ip(), matches!(classify(&c, &t), Reach::Refused(_))) {
                prop_assert!(!special(ip) || t.host == "127.0.0.1", "{text}");
            }
        }

        /// An absolute-form URI is served only for an intercepted name (its port, or 80 for a
        /// name intercepted on 443); nothing else, whatever the URI looks like.
        #[test]
        fn absolute_form_only_for_intercepted_names(
            scheme in prop_oneof![Just("http"), Just("https")],
            host in prop_oneof![
                "[a-zA-Z0-9.@_-]{1,30}",
                Just("api.internal.example".to_string()),
                Just("API.internal.example.".to_string()),
                Just("x.execute-api.example.com".to_string()),
                Just("s3.example.com".to_string()),
                Just("127.0.0.1".to_string()),
            ],
            port in prop_oneof![Just(String::new()), Just(":80".to_string()), Just(":443".to_string()), ":[0-9]{1,5}"],
        ) {
            let text = format!("{scheme}://{host}{port}/x");
            let Ok(uri) = text.parse::<http::Uri>() else { return Ok(()); };
            if absolute_form_allowed(&cfg(), &uri) {
                let a = uri.authority().unwrap();
                let name = a.host().trim_end_matches('.').to_ascii_lowercase();
                let c = cfg();
                let default = if scheme == "https" { 443 } else { 80 };
                let p = a.port_u16().unwrap_or(default);
                let ok = c.intercept.iter().any(|d| d.matches(&name, p))
                    || (scheme == "http" && p == 80 && c.intercept.iter().any(|d| d.matches(&name, 443)));
                prop_assert!(ok, "{text} allowed");
                prop_assert!(!c.tunnel.iter().any(|d| d.matches(&name, p)) || ok, "{text}");
            }
        }
    }
}
