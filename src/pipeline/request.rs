//! The request as it arrived: its one authority (by the RFCs' rules), its path with another
//! one put in, and the route's admission checks that come before auth.

use http::header::{HeaderValue, CONTENT_LENGTH, HOST};
use http::Request;

use crate::config::RouteConfig;
use crate::error::GatewayError;

/// The route's admission checks before auth: `allow_from` and a declared body size.
pub(crate) fn admit<B>(
    req: &Request<B>,
    route: &RouteConfig,
    client: std::net::IpAddr,
    max_body_bytes: u64,
) -> Result<(), GatewayError> {
    if !route.allow_from.is_empty() && !route.allow_from.iter().any(|n| n.contains(&client)) {
        return Err(GatewayError::ClientNotAllowed);
    }
    if let Some(len) = req.headers().get(CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(GatewayError::BadRequest("invalid content-length"))?;
        if len > max_body_bytes {
            return Err(GatewayError::BodyTooLarge);
        }
    }
    Ok(())
}

/// `uri` with another path, its query kept.
pub(crate) fn with_path(uri: &http::Uri, path: &str) -> Option<http::Uri> {
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq.parse().ok()?);
    http::Uri::from_parts(parts).ok()
}

/// The request's authority, lower-cased, without port: an absolute-form target's (RFC 9112
/// §3.2.2: `Host` is then ignored, and replaced so that everything after sees the same), else
/// `Host`. HTTP/2: `:authority`, and a `Host` that differs from it is malformed (RFC 9113
/// §8.3.1). Several `Host` lines, or none in an HTTP/1.1 request, are a 400 (RFC 9112 §3.2).
pub(crate) fn request_host<B>(req: &mut Request<B>) -> Result<Option<String>, GatewayError> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let host = hosts.next().cloned();
    if hosts.next().is_some() {
        return Err(GatewayError::BadRequest("more than one Host"));
    }
    let authority = req.uri().authority().map(|a| a.as_str().to_string());
    let raw = match (authority, host) {
        (Some(a), Some(h)) if req.version() == http::Version::HTTP_2 => {
            if !h.as_bytes().eq_ignore_ascii_case(a.as_bytes()) {
                return Err(GatewayError::BadRequest("Host differs from :authority"));
            }
            a
        }
        (Some(a), _) => {
            if req.version() <= http::Version::HTTP_11 {
                let value = HeaderValue::from_str(&a)
                    .map_err(|_| GatewayError::BadRequest("invalid authority"))?;
                req.headers_mut().insert(HOST, value);
            }
            a
        }
        (None, Some(h)) => h
            .to_str()
            .map_err(|_| GatewayError::BadRequest("invalid Host"))?
            .to_string(),
        (None, None) if req.version() == http::Version::HTTP_11 => {
            return Err(GatewayError::BadRequest("no Host"));
        }
        (None, None) => return Ok(None),
    };
    let host = if let Some(v6) = raw.strip_prefix('[') {
        v6.split(']').next().unwrap_or(v6)
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => raw.as_str(),
        }
    };
    // `tenant.example.` is `tenant.example` (a fully qualified name): without this, a host's
    // own routes could be walked around to the routes every host shares.
    let host = host.strip_suffix('.').unwrap_or(host);
    Ok(Some(host.to_ascii_lowercase()))
}
