//! The configuration of the gateway's other doors: authorizer mode (`[authz]`) and the forward
//! proxy (`[forward_proxy]`), with how a forward-proxy destination is written and matched.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

use super::Secret;

/// `[forward_proxy]`: the gateway as the HTTP(S) proxy of apps that can only be given a proxy
/// setting. Only the destinations listed here are ever reached through it.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardProxyConfig {
    /// `CONNECT` here: TLS terminated with a certificate from the gateway's CA, routes applied.
    pub intercept: Vec<Destination>,
    /// `CONNECT` here: a blind TCP tunnel, no auth.
    pub tunnel: Vec<Destination>,
    /// The issuing CA (`cognito-gate ca init`); required with `intercept`.
    pub ca: Option<CaConfig>,
    /// An absolute-form `http://` request to an intercepted name goes on as `https://` (443).
    pub upstream_tls: bool,
    /// How long a leaf certificate the gateway issues is valid.
    pub leaf_validity: Duration,
}

/// A `name` (port 443) or `name:port` entry; `*.` matches one label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Lower case, without the `*.` of a wildcard.
    pub host: String,
    pub port: u16,
    /// `*.host`: exactly one more label in front of `host`.
    pub wildcard: bool,
}

/// The forward proxy's CA: certificate file and key (a file, or a PEM from the environment).
#[derive(Debug, Clone, PartialEq)]
pub struct CaConfig {
    pub cert: PathBuf,
    pub key: CaKey,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CaKey {
    File(PathBuf),
    Pem(Secret),
}

/// `[authz]`: the gateway as an external authorizer for a proxy the team already runs (Envoy
/// ext_authz over gRPC or HTTP, nginx `auth_request`, Traefik `forwardAuth`).
#[derive(Debug, Clone, PartialEq)]
pub struct AuthzConfig {
    /// Envoy ext_authz gRPC (`envoy.service.auth.v3.Authorization/Check`), HTTP/2 cleartext.
    pub grpc_listen: Option<SocketAddr>,
    /// The HTTP forms: Envoy ext_authz HTTP, nginx `auth_request`, Traefik `forwardAuth`.
    pub http_listen: Option<SocketAddr>,
    /// Who may ask (the proxies); they are also trusted hops for the client address.
    pub allow_from: Vec<IpNet>,
    /// Where Envoy's HTTP checks arrive (Envoy's `path_prefix`), removed before routing.
    pub path_prefix: String,
}

/// `[authz] path_prefix` by default. nginx asks on `/nginx` and Traefik on `/traefik`.
pub const DEFAULT_AUTHZ_PATH_PREFIX: &str = "/envoy";

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
