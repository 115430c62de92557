//! The request path as a fixed sequence of stages: health -> path -> client address -> login
//! API -> route -> admit (allow_from, body size) -> authorize -> forward. Each stage returns
//! `Result`; `handle` alone turns errors into responses (through the one error map) and records
//! the request (metrics, access log).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderValue, CONTENT_LENGTH, HOST};
use http::{Request, Response};
use rustc_hash::FxHashMap;

use crate::auth::{self, login_api, Authorities};
use crate::body::Body;
use crate::config::{Config, RouteConfig};
use crate::error::{Audit, Decision, GatewayError, Reason};
use crate::exchange::Exchange;
use crate::jwt::Authorizer;
use crate::ops::access_log::{self, Outcome};
use crate::ops::metrics::{Metrics, RouteSeries};
use crate::ops::{health_response, Readiness};
use crate::proxy::cors;
use crate::proxy::headers::{client_addr, request_id, X_REQUEST_ID};
use crate::proxy::path::normalise;
use crate::proxy::routes::RouteMatch;
use crate::proxy::{Forwarder, Grant, Peer, RouteTable, UpstreamClient};

/// What the connection tells about a request.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// Everything the request path needs, built once from the configuration.
pub struct Gateway {
    pub config: Arc<Config>,
    pub routes: RouteTable,
    pub authorizer: Option<Arc<Authorizer>>,
    pub upstream: UpstreamClient,
    pub readiness: Readiness,
    pub exchange: Option<Exchange>,
    pub metrics: Arc<Metrics>,
    /// Per-route metric handles for the common outcomes, by route name (from the configuration,
    /// so a fast non-keyed hash is safe).
    pub route_series: FxHashMap<String, RouteSeries>,
    /// The stop signal, for what outlives a request (WebSocket tunnels).
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// Per WebSocket route, the signal a reload fires when it changes the route.
    pub generations: crate::proxy::websocket::RouteGenerations,
}

impl Gateway {
    pub async fn handle(
        &self,
        req: Request<hyper::body::Incoming>,
        conn: ConnInfo,
    ) -> Response<Body> {
        let started = Instant::now();
        let server = &self.config.server;
        if let Some(resp) = health_response(
            req.uri().path(),
            &server.health_path,
            &server.ready_path,
            &self.readiness,
        ) {
            return resp;
        }
        let rid = request_id(req.headers());
        // Kept for the route's CORS headers, which every response of a CORS route carries.
        let origin = req.headers().get(http::header::ORIGIN).cloned();
        // What only the access log needs is kept only when the access log is on.
        let logged = access_log::enabled().then(|| (req.method().clone(), req.uri().clone()));
        let mut outcome = Outcome {
            logged: logged.is_some(),
            ..Outcome::default()
        };
        let mut resp = match self.process(req, conn, &rid, &mut outcome).await {
            Ok(resp) => resp,
            Err(err) => {
                let mapped = err.map();
                outcome.audit = mapped.audit.or(outcome.audit);
                if let GatewayError::Upstream(u) = &err {
                    outcome.upstream_error = Some(*u);
                }
                if let Some(a) = mapped.audit.filter(|a| a.decision == Decision::Deny) {
                    tracing::debug!(request_id = ?rid, reason = a.reason.as_str(), detail = %err,
                        "request denied");
                }
                err.into_response()
            }
        };
        resp.headers_mut().insert(X_REQUEST_ID, rid.clone());
        if let Some(cors) = outcome.route.as_ref().and_then(|r| r.cors.as_ref()) {
            cors::decorate(resp.headers_mut(), cors, origin.as_ref());
        }
        let status = resp.status().as_u16();
        access_log::record(&self.metrics, &self.route_series, &outcome, status, started);
        if let Some(request) = logged {
            access_log::log(&rid, conn.peer.ip(), request, status, started, &outcome);
        }
        resp
    }

    async fn process(
        &self,
        mut req: Request<hyper::body::Incoming>,
        conn: ConnInfo,
        rid: &HeaderValue,
        outcome: &mut Outcome,
    ) -> Result<Response<Body>, GatewayError> {
        let server = &self.config.server;
        // One authority, by the RFCs' rules, for routing, allow_from, forwarding and logs.
        let host = request_host(&mut req)?;
        // Route on the path every upstream resolves (see `proxy::path`); the normalised path is
        // also the one forwarded.
        let normal =
            normalise(req.uri().path()).map_err(|e| GatewayError::BadRequest(e.message()))?;
        let route_path = (normal.route != req.uri().path()).then(|| normal.route.into_owned());
        if let std::borrow::Cow::Owned(forward) = normal.forward {
            *req.uri_mut() = with_path(req.uri(), &forward)
                .ok_or(GatewayError::BadRequest("path cannot be forwarded"))?;
        }

        let client = client_addr(conn.peer.ip(), req.headers(), &server.trusted_proxies);
        outcome.client = Some(client);

        if let (Some(login), Some(x)) = (&self.config.login_api, &self.exchange) {
            if let Some(endpoint) = login_api::endpoint(&login.path_prefix, req.uri().path()) {
                outcome.audit = Some(Audit {
                    decision: Decision::LoginApi,
                    reason: Reason::None,
                });
                // Boxed to keep the common request future small (see `Verifier::verify`).
                return Box::pin(login_api::serve(x, endpoint, req, client)).await;
            }
        }

        let path = route_path.as_deref().unwrap_or(req.uri().path());
        // A CORS preflight is answered for the route of the method it asks about, with no auth.
        if let Some(method) = cors::preflight_method(&req) {
            let route = self.routes.find(host.as_deref(), &method, path).found();
            if let Some(route) = route.filter(|r| r.cors.is_some()) {
                outcome.route = Some(route.clone());
                let cors = route.cors.as_ref().expect("filtered");
                return Ok(cors::preflight(
                    cors,
                    req.headers().get(http::header::ORIGIN),
                ));
            }
        }
        let route = match self.routes.find(host.as_deref(), req.method(), path) {
            RouteMatch::Found(route) => route.clone(),
            // The longest prefix decides: a method it does not allow never falls through to a
            // shorter, less protected one.
            RouteMatch::MethodNotAllowed { route, allow } => {
                outcome.route = Some(route.clone());
                return Err(GatewayError::MethodNotAllowed(allow));
            }
            RouteMatch::CaseVariant(route) => {
                tracing::debug!(request_id = ?rid, route = %route.name,
                    "path matches the route's prefix only ignoring case: refused");
                return Err(GatewayError::NoRoute);
            }
            RouteMatch::None => return Err(GatewayError::NoRoute),
        };
        outcome.route = Some(route.clone());
        admit(&req, &route, client, server.max_body_bytes)?;

        let by = Authorities {
            authorizer: self.authorizer.as_ref(),
            exchange: self.exchange.as_ref(),
        };
        let identity = auth::authorize(req.headers(), &route, by, client).await?;
        outcome.audit = Some(Audit {
            decision: Decision::Allow,
            reason: Reason::Method(identity.method()),
        });
        let verified = identity.verified();
        if let Some(v) = verified.filter(|_| outcome.logged) {
            outcome.sub = v.sub().map(str::to_string);
            outcome.client_id = v.client_id().map(str::to_string);
        }
        let grant = Grant {
            claims: verified.map(|v| &v.claims),
            token: identity.token_to_forward(route.forward_token),
            expires_at: verified.map(|v| v.exp),
        };
        let forwarder = Forwarder {
            client: &self.upstream,
            hygiene: self.routes.hygiene(),
            trusted_proxies: &server.trusted_proxies,
            max_body_bytes: server.max_body_bytes,
            stop: &self.stop,
            generations: &self.generations,
            shutdown_grace: server.shutdown_grace,
            metrics: &self.metrics,
        };
        let peer = Peer {
            ip: conn.peer.ip(),
            tls: conn.tls,
        };
        let mut resp = forwarder.forward(req, peer, rid, &route, grant).await?;
        if route.cors.is_some() {
            // The route's CORS policy is the gateway's: an upstream's own headers (one that
            // reflects any Origin with credentials) never reach the browser.
            cors::remove_upstream_headers(resp.headers_mut());
        }
        Ok(resp)
    }
}

/// The route's admission checks before auth: `allow_from` and a declared body size.
fn admit<B>(
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
fn with_path(uri: &http::Uri, path: &str) -> Option<http::Uri> {
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
fn request_host<B>(req: &mut Request<B>) -> Result<Option<String>, GatewayError> {
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
