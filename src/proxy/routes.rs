//! The route table, compiled once: longest segment-aware prefix first, then optional host and
//! methods.

use std::sync::Arc;

use http::Method;

use super::headers::InboundHygiene;
use crate::config::RouteConfig;

pub struct RouteTable {
    /// Sorted by prefix length, longest first.
    routes: Vec<Arc<RouteConfig>>,
    /// What every inbound request loses before it is forwarded.
    hygiene: InboundHygiene,
}

impl RouteTable {
    pub fn new(routes: &[RouteConfig]) -> Self {
        let mut sorted: Vec<Arc<RouteConfig>> = routes.iter().cloned().map(Arc::new).collect();
        // Stable sort: among equal prefixes the configuration order decides.
        sorted.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));
        RouteTable {
            routes: sorted,
            hygiene: InboundHygiene::new(routes),
        }
    }

    pub fn hygiene(&self) -> &InboundHygiene {
        &self.hygiene
    }

    pub fn get(&self, name: &str) -> Option<&Arc<RouteConfig>> {
        self.routes.iter().find(|r| r.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<RouteConfig>> {
        self.routes.iter()
    }

    /// The route for a request. `host` is the Host without port, lower-cased; `path` the
    /// normalised path to route on (`path::normalise`).
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
}
