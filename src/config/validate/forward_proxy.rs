//! `[forward_proxy]`: the destinations the gateway proxies to (intercepted or tunnelled), its
//! issuing CA, and how absolute-form `http://` targets go on.

use std::net::IpAddr;
use std::time::Duration;

use super::Ctx;
use crate::config::raw::*;
use crate::config::*;

const DEFAULT_LEAF_VALIDITY: Duration = Duration::from_secs(24 * 3600);

pub(super) fn forward_proxy(cx: &mut Ctx, f: RawForwardProxy) -> ForwardProxyConfig {
    let intercept = destinations(cx, "forward_proxy.intercept", &f.intercept);
    let tunnel = destinations(cx, "forward_proxy.tunnel", &f.tunnel);
    let cert = f
        .ca_cert
        .as_deref()
        .and_then(|c| cx.path("forward_proxy.ca_cert", c, true));
    let key = match f.ca_key.as_deref() {
        None | Some("") => None,
        Some(pem) if pem.trim_start().starts_with("-----BEGIN") => {
            Some(CaKey::Pem(Secret::new(pem)))
        }
        Some(path) => cx
            .path("forward_proxy.ca_key", path, true)
            .inspect(|p| key_file_private(cx, p))
            .map(CaKey::File),
    };
    let ca = match (cert, key) {
        (Some(cert), Some(key)) => Some(CaConfig { cert, key }),
        (None, None) => None,
        _ => {
            cx.err(
                "forward_proxy",
                "ca_cert and ca_key go together (cognito-gate ca init --out DIR writes both)",
            );
            None
        }
    };
    if !intercept.is_empty() && ca.is_none() && f.ca_cert.is_none() && f.ca_key.is_none() {
        cx.err(
            "forward_proxy.intercept",
            "needs ca_cert and ca_key: intercepted TLS is answered with certificates the gateway's CA issues (cognito-gate ca init --out DIR)",
        );
    }
    let leaf_validity = cx.positive_duration(
        "forward_proxy.leaf_validity",
        f.leaf_validity.as_deref(),
        DEFAULT_LEAF_VALIDITY,
    );
    if leaf_validity > Duration::from_secs(90 * 24 * 3600) {
        cx.err(
            "forward_proxy.leaf_validity",
            "at most 90 days: the certificates are issued on the fly and kept in memory",
        );
    }
    ForwardProxyConfig {
        intercept,
        tunnel,
        ca,
        upstream_tls: f.upstream_tls.unwrap_or(true),
        leaf_validity,
    }
}

fn destinations(cx: &mut Ctx, key: &str, entries: &[String]) -> Vec<Destination> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        match Destination::parse(e) {
            Some(d) => out.push(d),
            None => cx.err(
                format!("{key}[{i}]"),
                format!(
                    "not a host name, \"*.\" name, or IP address, with an optional :port: {e:?}"
                ),
            ),
        }
    }
    out
}

/// The CA key must be readable by its owner only.
fn key_file_private(cx: &mut Ctx, path: &std::path::Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                cx.err(
                    "forward_proxy.ca_key",
                    format!(
                        "{} is readable by others (mode {mode:o}): chmod 600 it",
                        path.display()
                    ),
                );
            }
        }
    }
}

impl Destination {
    /// `name`, `*.name`, `name:port`, an IPv4 address or a bracketed IPv6 address, with an
    /// optional port (443 when none).
    pub fn parse(entry: &str) -> Option<Destination> {
        let entry = entry.trim();
        let (host, port) = split_host_port(entry)?;
        let port = port.unwrap_or(443);
        let (wildcard, host) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host),
        };
        let host = host.to_ascii_lowercase();
        if host.is_empty() || port == 0 {
            return None;
        }
        let ip = host.parse::<std::net::IpAddr>().is_ok();
        if ip && wildcard {
            return None;
        }
        if !ip && !valid_name(&host) {
            return None;
        }
        Some(Destination {
            host,
            port,
            wildcard,
        })
    }

    /// `host:port` (already lower case, without a trailing dot) is this destination.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if port != self.port {
            return false;
        }
        if !self.wildcard {
            return host == self.host;
        }
        match host.strip_suffix(self.host.as_str()) {
            // Exactly one label in front.
            Some(front) => {
                front.len() > 1 && front.ends_with('.') && !front[..front.len() - 1].contains('.')
            }
            None => false,
        }
    }
}

/// `host[:port]` or `[v6][:port]`; the port, when given, is 1-65535 in decimal.
pub fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<std::net::Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            p => Some(port_of(p.strip_prefix(':')?)?),
        };
        return Some((v6, port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Some((h, Some(port_of(p)?))),
        None => Some((s, None)),
    }
}

fn port_of(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok().filter(|&n| n != 0)
}

/// A DNS name of letters, digits, `-` and `.`, labels of 1-63 characters.
fn valid_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// Loopback, link-local (169.254.0.0/16 with the instance metadata service, fe80::/10),
/// unspecified, multicast, broadcast; IPv4-mapped IPv6 judged as IPv4.
pub fn special_address(ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}
