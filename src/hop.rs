//! Hop-by-hop header names: what a proxy never forwards, and what a route cannot set. A leaf
//! module, shared by header hygiene (`proxy`) and configuration validation (`config`).

use http::HeaderName;

/// Hop-by-hop headers (RFC 9110 §7.6.1 plus the legacy ones proxies also drop).
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}
