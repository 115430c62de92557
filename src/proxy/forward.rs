//! Forwarding an authorized request: the inbound headers cleaned (`headers::InboundHygiene`),
//! the gateway's own added (X-Forwarded-*, X-Request-Id, the token it verified or obtained, the
//! route's claim headers and `upstream_headers`), the route's prefix stripped, the body capped
//! while it streams, then the upstream (or `builtin:echo`) called with the route's timeout.

use std::net::IpAddr;

use http::header::{HeaderValue, AUTHORIZATION, HOST};
use http::{Request, Response, Version};
use http_body_util::BodyExt;
use ipnet::IpNet;
use serde_json::{Map, Value};

use super::headers::{
    claim_headers, forwarded_token, set_forwarded, trusted, InboundHygiene, X_REQUEST_ID,
};
use super::{echo, upstream, websocket, UpstreamClient};
use crate::body::{Body, Capped};
use crate::config::{RouteConfig, UpstreamTarget};
use crate::error::GatewayError;

/// Where the request came from.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub ip: IpAddr,
    pub tls: bool,
}

/// What forwarding needs from the gateway, built once per configuration.
pub struct Forwarder<'a> {
    pub client: &'a UpstreamClient,
    pub hygiene: &'a InboundHygiene,
    pub trusted_proxies: &'a [IpNet],
    pub max_body_bytes: u64,
    /// For WebSocket tunnels: the stop signal, how long they outlive it, and their gauge.
    pub stop: &'a tokio::sync::watch::Receiver<bool>,
    /// Which WebSocket routes a reload has changed since their tunnels opened.
    pub generations: &'a websocket::RouteGenerations,
    pub shutdown_grace: std::time::Duration,
    pub metrics: &'a super::metrics::ProxyMetrics,
    /// `upstream = "origin"` reached by an absolute-form `http://` URL goes on over TLS
    /// (`[forward_proxy] upstream_tls`).
    pub origin_tls: bool,
    /// Where the request body's bytes are counted, when the access log is on.
    pub bytes_in: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

/// What auth established, as forwarding needs it: the claims for the claim headers and the
/// token to place in `Authorization`.
#[derive(Default, Clone, Copy)]
pub struct Grant<'a> {
    pub claims: Option<&'a Map<String, Value>>,
    pub token: Option<&'a str>,
    /// How long the credential that allowed the request stays valid (set on WebSocket routes):
    /// a tunnel it opens ends then.
    pub token_lifetime: Option<std::time::Duration>,
}

impl Forwarder<'_> {
    pub async fn forward(
        &self,
        mut req: Request<hyper::body::Incoming>,
        peer: Peer,
        rid: &HeaderValue,
        route: &RouteConfig,
        grant: Grant<'_>,
    ) -> Result<Response<Body>, GatewayError> {
        // A WebSocket handshake on a route that allows it: the client's side of the upgrade.
        let upgrade =
            (route.websocket && websocket::is_upgrade(&req)).then(|| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        let mut headers = parts.headers;
        let peer_trusted = trusted(peer.ip, self.trusted_proxies);
        self.hygiene.clean(&mut headers, route, peer_trusted);
        let original_host = headers.remove(HOST).or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let proto = if peer.tls { "https" } else { "http" };
        set_forwarded(
            &mut headers,
            peer.ip,
            self.trusted_proxies,
            proto,
            original_host.as_ref(),
        );
        headers.insert(X_REQUEST_ID, rid.clone());
        if let Some(v) = grant.token.and_then(|t| forwarded_token(route, t)) {
            headers.insert(AUTHORIZATION, v);
        }
        if let Some(claims) = grant.claims {
            for (name, value) in claim_headers(route, claims) {
                headers.insert(name.clone(), value);
            }
        }
        for (name, value) in &route.upstream_headers {
            headers.insert(name.clone(), value.clone());
        }

        let path = strip_prefix(route, parts.uri.path());
        let body = Capped::new(body, self.max_body_bytes)
            .counting(self.bytes_in.clone())
            .boxed();
        // With `[tracing]`, the upstream continues the trace from the gateway's upstream span.
        crate::observe::otel::inject(&mut headers);
        let origin;
        let upstream = match &route.upstream {
            UpstreamTarget::Origin => {
                origin = origin_target(&parts.uri, self.origin_tls).ok_or(GatewayError::NoRoute)?;
                &origin
            }
            other => other,
        };
        match upstream {
            // Refused before auth (`Gateway::process`), and resolved above; never forwarded.
            UpstreamTarget::None | UpstreamTarget::Origin => Err(GatewayError::NoRoute),
            UpstreamTarget::Echo => {
                let mut pq = if path.is_empty() {
                    "/".to_string()
                } else {
                    path.to_string()
                };
                if let Some(q) = parts.uri.query() {
                    pq.push('?');
                    pq.push_str(q);
                }
                let mut req = Request::new(body);
                *req.method_mut() = parts.method;
                *req.uri_mut() = pq
                    .parse()
                    .map_err(|_| GatewayError::BadRequest("bad path"))?;
                *req.headers_mut() = headers;
                echo::respond(req).await
            }
            target @ UpstreamTarget::Url { .. } => {
                let uri = upstream::upstream_uri(target, path, parts.uri.query())
                    .ok_or(GatewayError::BadRequest("path cannot be forwarded"))?;
                if let Some(client) = upgrade {
                    let mut req = Request::new(crate::body::empty());
                    *req.method_mut() = parts.method;
                    *req.uri_mut() = uri;
                    *req.headers_mut() = headers;
                    let tunnel = websocket::Tunnel {
                        route: route.name.clone(),
                        idle_timeout: route.websocket_idle_timeout,
                        lifetime: grant
                            .token_lifetime
                            .map_or(route.websocket_max_lifetime, |t| {
                                t.min(route.websocket_max_lifetime)
                            }),
                        grace: self.shutdown_grace,
                        stop: self.stop.clone(),
                        retired: self.generations.subscribe(&route.name),
                        metrics: self.metrics.clone(),
                    };
                    // Boxed: the upgrade's state would otherwise make every request's future
                    // (copied a few times per request) several KiB larger.
                    return Box::pin(websocket::forward(
                        target,
                        req,
                        client,
                        self.client.websocket_tls.clone(),
                        route.timeout,
                        tunnel,
                    ))
                    .await;
                }
                let mut req = Request::new(body);
                *req.method_mut() = parts.method;
                *req.uri_mut() = uri;
                *req.version_mut() = Version::HTTP_11;
                *req.headers_mut() = headers;
                let mut resp = if route.upstream == UpstreamTarget::Origin {
                    self.client.send_origin(target, req, route.timeout).await?
                } else {
                    self.client.send(target, req, route.timeout).await?
                };
                super::headers::remove_hop_by_hop(resp.headers_mut());
                Ok(resp)
            }
        }
    }
}

/// The forward proxy's destination as an upstream: the authority the request names (the
/// `CONNECT` target, or an absolute-form URL's, both admitted against `[forward_proxy]`), over
/// TLS when it came through a tunnel or `tls` says so (`http://name` then goes to `name:443`).
fn origin_target(uri: &http::Uri, tls: bool) -> Option<UpstreamTarget> {
    let authority = uri.authority()?;
    let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let (scheme, authority) = if https {
        (http::uri::Scheme::HTTPS, authority.clone())
    } else if tls {
        let authority = match authority.port_u16() {
            None | Some(80) => authority.host().parse().ok()?,
            Some(_) => authority.clone(),
        };
        (http::uri::Scheme::HTTPS, authority)
    } else {
        (http::uri::Scheme::HTTP, authority.clone())
    };
    Some(UpstreamTarget::Url {
        scheme,
        authority,
        base_path: String::new(),
    })
}

/// The path without the route's prefix, when the route says `strip_prefix`.
fn strip_prefix<'p>(route: &RouteConfig, path: &'p str) -> &'p str {
    if !route.strip_prefix || route.path_prefix == "/" {
        return path;
    }
    if path.contains(';') {
        // Routed without `;params`: strip the prefix's segments, params and all.
        strip_segments(path, route.path_prefix.matches('/').count())
    } else {
        &path[route.path_prefix.len().min(path.len())..]
    }
}

/// `path` without its first `segments` segments (each `/name`), for `strip_prefix` when the
/// routed path and the forwarded one differ by `;params`.
pub(crate) fn strip_segments(path: &str, segments: usize) -> &str {
    let mut rest = path;
    for _ in 0..segments {
        let Some(tail) = rest.strip_prefix('/') else {
            break;
        };
        rest = tail.find('/').map_or("", |i| &tail[i..]);
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_whole_segments() {
        assert_eq!(strip_segments("/api;x/orders/7", 1), "/orders/7");
        assert_eq!(strip_segments("/api;x", 1), "");
        assert_eq!(strip_segments("/a/b;c/d", 2), "/d");
    }
}
