//! `[forward_proxy]`: the destinations the gateway proxies to (intercepted or tunnelled), its
//! issuing CA, and how absolute-form `http://` targets go on.

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
