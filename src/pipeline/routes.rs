//! The route table, compiled once: longest segment-aware prefix first, then optional host and
//! methods.

use std::sync::Arc;

use http::{HeaderValue, Method};

use crate::config::RouteConfig;
use crate::proxy::headers::InboundHygiene;

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
    ///
    /// The longest path prefix that matches decides, among the routes of the request's virtual
    /// host (a route with a `host` exists only for that host; one without, for every host).
    /// Several routes may share that prefix, told apart by `methods`; a method none of them
    /// allows is refused with 405, never handed to a shorter prefix (DESIGN §4). A longer
    /// prefix that matches only when ASCII case is ignored refuses the request (404), unless
    /// that route says `case_insensitive`, which routes it there: a case-insensitive upstream
    /// (IIS, ASP.NET Core) would serve `/ADMIN` as `/admin`.
    pub fn find(&self, host: Option<&str>, method: &Method, path: &str) -> RouteMatch<'_> {
        let mut group: Option<usize> = None;
        let mut variant: Option<&Arc<RouteConfig>> = None;
        // The routes of the deciding prefix that refused the method (allocated only then).
        let mut refused: Vec<&Arc<RouteConfig>> = Vec::new();
        for r in self.routes.iter() {
            let len = r.path_prefix.len();
            if group.is_some_and(|l| len < l) {
                break;
            }
            if let Some(v) = variant.filter(|v| len < v.path_prefix.len()) {
                // A longer prefix matched only as a case variant, and none as long as it did.
                return RouteMatch::CaseVariant(v);
            }
            if !serves_host(r, host) {
                continue;
            }
            let exact = prefix_matches(&r.path_prefix, path);
            if !exact && !prefix_matches_ignoring_case(&r.path_prefix, path) {
                continue;
            }
            if !exact && !r.case_insensitive {
                if group.is_none() {
                    variant = variant.or(Some(r));
                }
                continue;
            }
            group = Some(len);
            if r.methods.is_empty() || r.methods.contains(method) {
                return RouteMatch::Found(r);
            }
            refused.push(r);
        }
        let Some(first) = refused.first() else {
            return variant.map_or(RouteMatch::None, RouteMatch::CaseVariant);
        };
        // Every route of the deciding prefix refused the method: 405, with what they allow.
        let mut allow: Vec<&str> = Vec::new();
        for m in refused.iter().flat_map(|r| r.methods.iter()) {
            if !allow.contains(&m.as_str()) {
                allow.push(m.as_str());
            }
        }
        RouteMatch::MethodNotAllowed {
            route: first,
            allow: HeaderValue::from_str(&allow.join(", ")).expect("method names are tokens"),
        }
    }
}

/// What the route table says about a request.
#[derive(Debug)]
pub enum RouteMatch<'a> {
    /// The route that serves it.
    Found(&'a Arc<RouteConfig>),
    /// The longest matching prefix has routes, none of them for this method: 405 with `Allow`.
    MethodNotAllowed {
        /// The first route of that prefix (for metrics, logs and its CORS headers).
        route: &'a Arc<RouteConfig>,
        allow: HeaderValue,
    },
    /// The path matches this route's prefix only when ASCII case is ignored, and a shorter
    /// prefix would have served it: refused (404) rather than routed around the route's checks.
    CaseVariant(&'a Arc<RouteConfig>),
    /// No route's prefix matches: 404.
    None,
}

impl<'a> RouteMatch<'a> {
    /// The route that serves the request, if one does.
    pub fn found(self) -> Option<&'a Arc<RouteConfig>> {
        match self {
            RouteMatch::Found(r) => Some(r),
            _ => None,
        }
    }
}

/// A route without `host` serves every virtual host; one with it, only that one.
fn serves_host(route: &RouteConfig, host: Option<&str>) -> bool {
    route.host.as_deref().is_none_or(|h| Some(h) == host)
}

/// `/orders` matches `/orders`, `/orders/` and `/orders/1`, never `/ordersX`.
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// `prefix_matches` with ASCII case ignored: `/admin` matches `/ADMIN/x`.
pub(crate) fn prefix_matches_ignoring_case(prefix: &str, path: &str) -> bool {
    let (p, b) = (prefix.as_bytes(), path.as_bytes());
    if prefix == "/" {
        return true;
    }
    b.len() >= p.len()
        && b[..p.len()].eq_ignore_ascii_case(p)
        && (b.len() == p.len() || b[p.len()] == b'/')
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
