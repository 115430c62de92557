//! Who sent the request: the client address (the TCP peer, or the first untrusted hop of a
//! trusted proxy's `X-Forwarded-For`) and the request id every response and log line carries.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderValue};
use ipnet::IpNet;

use crate::proxy::headers::{canonical, trusted, HEX, X_FORWARDED_FOR, X_REQUEST_ID};

/// The client's address: the TCP peer, or, when the peer is a trusted proxy, the right-most
/// X-Forwarded-For entry that is not a trusted proxy. The header is read entry by entry on its
/// raw bytes: a malformed entry stops the walk there (its left is not believed), and never
/// discards the entries to its right.
pub(crate) fn client_addr(peer: IpAddr, headers: &HeaderMap, proxies: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    if !trusted(peer, proxies) {
        return peer;
    }
    let mut last_trusted = peer;
    // Several X-Forwarded-For lines are one list in order; the last line holds the right end.
    for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        for entry in value.as_bytes().rsplit(|&b| b == b',') {
            match parse_forwarded_ip(entry) {
                Some(ip) if trusted(ip, proxies) => last_trusted = canonical(ip),
                Some(ip) => return canonical(ip),
                None => return last_trusted,
            }
        }
    }
    last_trusted
}

fn parse_forwarded_ip(entry: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(entry.trim_ascii()).ok()?;
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    // "1.2.3.4:5678" or "[::1]:5678"
    s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

/// The inbound X-Request-Id if it is sane (1-128 visible, safe characters), else a new one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        let sane = !b.is_empty()
            && b.len() <= 128
            && b.iter().all(|c| {
                c.is_ascii_alphanumeric()
                    || matches!(c, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=')
            });
        if sane {
            return v.clone();
        }
    }
    let id: [u8; 16] = rand::random();
    let mut hex = [0u8; 32];
    for (i, b) in id.iter().enumerate() {
        hex[2 * i] = HEX[usize::from(b >> 4)];
        hex[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    HeaderValue::from_bytes(&hex).expect("hex is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn client_address_from_trusted_chain() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.0.0.7".parse().unwrap());
        let proxies = nets(&["10.0.0.0/8"]);
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(client_addr(peer, &h, &proxies).to_string(), "203.0.113.9");
        // An untrusted peer's header is ignored.
        let peer: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(client_addr(peer, &h, &proxies).to_string(), "198.51.100.1");
        // Garbage in the chain stops the walk at the last trusted hop.
        h.insert("x-forwarded-for", "nonsense, 10.0.0.7".parse().unwrap());
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(client_addr(peer, &h, &proxies).to_string(), "10.0.0.7");
    }

    #[test]
    fn request_ids() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", "abc-123".parse().unwrap());
        assert_eq!(request_id(&h), "abc-123");
        h.insert("x-request-id", "has space".parse().unwrap());
        assert_eq!(request_id(&h).len(), 32);
    }
}
