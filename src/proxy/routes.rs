//! The route table, compiled once: longest segment-aware prefix first, then optional host and
//! methods.

use std::collections::HashSet;
use std::sync::Arc;

use http::{HeaderName, Method};

use crate::config::RouteConfig;

pub struct RouteTable {
    /// Sorted by prefix length, longest first.
    routes: Vec<Arc<RouteConfig>>,
    /// Every header named in any route's `claim_headers`, stripped from every inbound request.
    claim_header_names: Vec<HeaderName>,
}

impl RouteTable {
    pub fn new(routes: &[RouteConfig]) -> Self {
        let mut sorted: Vec<Arc<RouteConfig>> = routes.iter().cloned().map(Arc::new).collect();
        // Stable sort: among equal prefixes the configuration order decides.
        sorted.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));
        let mut seen = HashSet::new();
        let claim_header_names = routes
            .iter()
            .flat_map(|r| r.claim_headers.iter().map(|(h, _)| h.clone()))
            .filter(|h| seen.insert(h.clone()))
            .collect();
        RouteTable {
            routes: sorted,
            claim_header_names,
        }
    }

    pub fn claim_header_names(&self) -> &[HeaderName] {
        &self.claim_header_names
    }

    pub fn get(&self, name: &str) -> Option<&Arc<RouteConfig>> {
        self.routes.iter().find(|r| r.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<RouteConfig>> {
        self.routes.iter()
    }

    /// The route for a request. `host` is the Host without port, lower-cased.
    pub fn find(
        &self,
        host: Option<&str>,
        method: &Method,
        path: &str,
    ) -> Option<&Arc<RouteConfig>> {
        self.routes.iter().find(|r| {
            prefix_matches(&r.path_prefix, path)
                && r.host.as_deref().is_none_or(|h| Some(h) == host)
                && (r.methods.is_empty() || r.methods.contains(method))
        })
    }
}

/// `/orders` matches `/orders`, `/orders/` and `/orders/1`, never `/ordersX`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// True when the path has a `.` or `..` segment, literally or percent-encoded. Such paths are
/// refused: an upstream that normalises them could be reached through another route's prefix.
pub fn has_dot_segment(path: &str) -> bool {
    let b = path.as_bytes();
    if !b.iter().any(|&c| matches!(c, b'.' | b'%' | b'\\')) {
        return false;
    }
    b.contains(&b'\\')
        || b.windows(3)
            .any(|w| w[0] == b'%' && w[1] == b'2' && w[2] | 0x20 == b'f')
        || path.split('/').any(is_dot_segment)
}

/// `.` or `..`, with any dot possibly written `%2e` or `%2E`.
fn is_dot_segment(seg: &str) -> bool {
    let mut rest = seg.as_bytes();
    let mut dots = 0;
    while !rest.is_empty() {
        rest = match rest {
            [b'.', tail @ ..] => tail,
            [b'%', b'2', e, tail @ ..] if e | 0x20 == b'e' => tail,
            _ => return false,
        };
        dots += 1;
        if dots > 2 {
            return false;
        }
    }
    dots > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_aware_prefixes() {
        assert!(prefix_matches("/orders", "/orders"));
        assert!(prefix_matches("/orders", "/orders/"));
        assert!(prefix_matches("/orders", "/orders/1"));
        assert!(!prefix_matches("/orders", "/ordersX"));
        assert!(!prefix_matches("/orders", "/order"));
        assert!(prefix_matches("/", "/anything"));
    }

    #[test]
    fn dot_segments() {
        assert!(has_dot_segment("/public/../private"));
        assert!(has_dot_segment("/public/%2e%2E/private"));
        assert!(has_dot_segment("/a/./b"));
        assert!(has_dot_segment("/a%2Fb"));
        assert!(!has_dot_segment("/a/b.c/..d"));
        assert!(has_dot_segment("/a/%2e"));
        assert!(has_dot_segment("/a/.%2E/b"));
        assert!(has_dot_segment("/a\\b"));
        assert!(has_dot_segment("/a%2fb"));
        assert!(!has_dot_segment("/a/.../b"));
        assert!(!has_dot_segment("/a/%2e%2e%2e"));
        assert!(!has_dot_segment("/a/%2"));
        assert!(!has_dot_segment("/plain/path"));
        assert!(!has_dot_segment("/a//b/"));
    }
}
