//! Header hygiene, in one place: what a client must not be able to tell the upstream (claim
//! headers, Authorization, the proxy headers, in any spelling), hop-by-hop removal, the client
//! address from a trusted X-Forwarded-For chain, request ids.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONNECTION};
use ipnet::IpNet;
use rustc_hash::FxHashSet;

use crate::config::RouteConfig;
pub use crate::hop::is_hop_by_hop;

// Names parsed once, at compile time, rather than from a string on every request.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Headers that tell an upstream where a request came from or what it asked for. Only a trusted
/// proxy may send them; X-Original-URL and X-Rewrite-URL (a path other than the one routed on)
/// are never passed.
const PROXY_HEADERS: [&str; 4] = ["forwarded", "x-real-ip", "x-original-url", "x-rewrite-url"];
const X_FORWARDED_PREFIX: &str = "x-forwarded-";

/// What the gateway removes from every inbound request before it adds its own headers, compiled
/// once per configuration from every route.
pub struct InboundHygiene {
    /// Every route's claim headers, by exact name.
    claim_headers: Vec<HeaderName>,
    /// Lower-case names with `-`, whose spellings with `_` are removed too: WSGI, CGI, PHP and
    /// many frameworks read `x_cognito_groups` and `x-cognito-groups` as one variable.
    guarded: FxHashSet<String>,
}

impl InboundHygiene {
    pub fn new(routes: &[RouteConfig]) -> Self {
        let mut claim_headers: Vec<HeaderName> = Vec::new();
        let mut guarded: FxHashSet<String> = PROXY_HEADERS.iter().map(|h| h.to_string()).collect();
        guarded.insert(AUTHORIZATION.as_str().to_string());
        for r in routes {
            guarded.insert(r.token_header.as_str().to_string());
            for (h, _) in &r.claim_headers {
                if !claim_headers.contains(h) {
                    claim_headers.push(h.clone());
                }
                guarded.insert(h.as_str().to_string());
            }
        }
        InboundHygiene {
            claim_headers,
            guarded,
        }
    }

    /// Every header named in any route's `claim_headers`.
    pub fn claim_headers(&self) -> &[HeaderName] {
        &self.claim_headers
    }

    /// Removes hop-by-hop headers and everything a client must not set for the upstream: claim
    /// headers and their `_` spellings; the route's token header and, unless the route passes
    /// the client's own, Authorization (the gateway sets it when it forwards a token it
    /// verified); the `_` spellings of both; proxy headers from a peer outside
    /// `trusted_proxies` (X-Forwarded-For/-Proto/-Host are then set by `set_forwarded`);
    /// X-Original-URL and X-Rewrite-URL from anyone.
    pub fn clean(&self, headers: &mut HeaderMap, route: &RouteConfig, peer_trusted: bool) {
        remove_hop_by_hop(headers);
        let mut doomed: Vec<HeaderName> = Vec::new();
        for name in headers.keys() {
            let n = name.as_str();
            let remove = if n.contains('_') {
                let dashed = n.replace('_', "-");
                self.guarded.contains(&dashed) || dashed.starts_with(X_FORWARDED_PREFIX)
            } else if n.starts_with(X_FORWARDED_PREFIX) || n == "forwarded" || n == "x-real-ip" {
                !peer_trusted
            } else {
                n == "x-original-url" || n == "x-rewrite-url"
            };
            if remove && !doomed.contains(name) {
                doomed.push(name.clone());
            }
        }
        for name in doomed {
            headers.remove(name);
        }
        for name in &self.claim_headers {
            headers.remove(name);
        }
        if !route.pass_client_authorization {
            headers.remove(AUTHORIZATION);
        }
        if route.token_header != AUTHORIZATION {
            headers.remove(&route.token_header);
        }
    }
}

/// The `Authorization` value for a token the route forwards (`forward_token_scheme` in front),
/// marked sensitive; `None` when the token cannot be a header value.
pub(crate) fn forwarded_token(route: &RouteConfig, token: &str) -> Option<HeaderValue> {
    let value = if route.forward_token_scheme.is_empty() {
        HeaderValue::from_str(token)
    } else {
        HeaderValue::from_str(&format!("{} {token}", route.forward_token_scheme))
    };
    let mut v = value.ok()?;
    v.set_sensitive(true);
    Some(v)
}

/// The route's claim headers with their values from `claims`; a claim that cannot be a header
/// value is logged and left out.
pub(crate) fn claim_headers<'a>(
    route: &'a RouteConfig,
    claims: &'a serde_json::Map<String, serde_json::Value>,
) -> impl Iterator<Item = (&'a HeaderName, HeaderValue)> + 'a {
    route.claim_headers.iter().filter_map(move |(name, claim)| {
        let v = claims.get(claim)?;
        match HeaderValue::from_str(&crate::jwt::verify::claim_as_string(v)) {
            Ok(hv) => Some((name, hv)),
            Err(_) => {
                tracing::warn!(route = %route.name, header = %name, claim = %claim,
                    "claim value cannot be a header value; not sent");
                None
            }
        }
    })
}

/// Removes hop-by-hop headers and every header the `Connection` header names.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over the names instead of a lookup per listed name.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    // The names the Connection header lists ("keep-alive" and "close", by far the most common
    // options, are hop-by-hop already or name no header), then the hop-by-hop ones present.
    let mut names: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|o| !o.eq_ignore_ascii_case("keep-alive") && !o.eq_ignore_ascii_case("close"))
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    names.extend(headers.keys().filter(|n| is_hop_by_hop(n)).cloned());
    for name in names {
        headers.remove(name);
    }
}

/// The address is in `trusted_proxies` (IPv4-mapped IPv6 addresses compared as IPv4).
pub fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    let ip = canonical(ip);
    proxies.iter().any(|n| n.contains(&ip))
}

pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Sets X-Forwarded-For/-Proto/-Host. A trusted peer's X-Forwarded-For is appended to (as raw
/// bytes, so no entry is lost to an encoding the gateway does not read) and its -Proto/-Host are
/// kept; anyone else's are replaced.
pub(crate) fn set_forwarded(
    headers: &mut HeaderMap,
    peer: IpAddr,
    proxies: &[IpNet],
    proto: &'static str,
    host: Option<&HeaderValue>,
) {
    let peer = canonical(peer);
    let is_trusted = trusted(peer, proxies);
    let prior: Vec<&[u8]> = if is_trusted {
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect()
    } else {
        Vec::new()
    };
    if prior.is_empty() {
        headers.insert(X_FORWARDED_FOR, ip_header_value(peer));
    } else {
        let mut xff = prior.join(&b", "[..]);
        xff.extend_from_slice(b", ");
        xff.extend_from_slice(ip_header_value(peer).as_bytes());
        // Joined header values with visible separators are a header value again.
        if let Ok(v) = HeaderValue::from_bytes(&xff) {
            headers.insert(X_FORWARDED_FOR, v);
        }
    }
    if !is_trusted || !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !is_trusted || !headers.contains_key(&X_FORWARDED_HOST) {
        match host {
            Some(h) => {
                headers.insert(X_FORWARDED_HOST, h.clone());
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }
}

pub(crate) const HEX: &[u8; 16] = b"0123456789abcdef";

/// An address as a header value; IPv4 (the common case) written without the formatting machinery.
fn ip_header_value(ip: IpAddr) -> HeaderValue {
    let IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string()).expect("an address is a valid header value");
    };
    let mut buf = [0u8; 15];
    let mut n = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            buf[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            buf[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + octet % 10;
        n += 1;
    }
    HeaderValue::from_bytes(&buf[..n]).expect("digits and dots are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_listed_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "x-secret, keep-alive".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn addresses_as_header_values() {
        for ip in [
            "0.0.0.0",
            "10.0.0.7",
            "192.168.100.255",
            "1.20.199.9",
            "::1",
            "2001:db8::5",
        ] {
            let v = ip_header_value(ip.parse().unwrap());
            assert_eq!(v.to_str().unwrap(), ip);
        }
    }
}
