//! The request path as a fixed sequence of stages: health -> path -> client address -> login
//! API -> route -> admit (allow_from, body size) -> authorize -> forward. Each stage returns
//! `Result`; `handle` alone turns errors into responses (through the one error map) and records
//! the request (metrics, access log).
//!
//! Every stage before the decision lives in this folder: the request's authority and path
//! (`request.rs`, `path.rs`), who sent it (`client.rs`), the route table (`routes.rs`) and CORS
//! (`cors.rs`), and the limits asked around authorization (`throttle.rs`). What happens after
//! it is `auth` and `proxy`.

pub mod client;
pub mod cors;
pub mod destination;
pub mod path;
mod proxied;
pub mod request;
pub mod routes;
mod throttle;

pub use proxied::Proxied;
pub use routes::{RouteMatch, RouteTable};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tracing::field::Empty;
use tracing::Instrument;

use http::header::HeaderValue;
use http::{Request, Response};
use rustc_hash::FxHashMap;

use crate::auth::{self, login_api, Authorities};
use crate::body::Body;
use crate::config::{Config, RouteConfig, UpstreamTarget};
use crate::error::{Audit, Challenge, Decision, GatewayError, Reason};
use crate::exchange::Exchange;
use crate::jwt::AuthError;
use crate::jwt::Authorizer;
use crate::observe::otel;
use crate::ops::access_log::{self, Outcome, RequestLine};
use crate::ops::metrics::{InFlight, RequestMetrics, RouteSeries};
use crate::ops::{health_response, Readiness};
use crate::proxy::headers::X_REQUEST_ID;
use crate::proxy::metrics::ProxyMetrics;
use crate::proxy::{Forwarder, Grant, Peer, UpstreamClient};
use client::{client_addr, request_id};
use path::normalise;
use request::{admit, request_host, with_path};

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
    /// `[shared_state]`'s client, shared by the exchange and the throttle.
    pub shared: Option<Arc<crate::shared::SharedState>>,
    /// `[throttle]`, when a route is throttled.
    pub throttle: Option<Arc<crate::throttle::Throttle>>,
    /// `[cognito] bad_signature_per_minute`, unless 0.
    pub flood: Option<Arc<crate::jwt::FloodGuard>>,
    pub metrics: RequestMetrics,
    /// Where WebSocket tunnels are counted.
    pub proxy_metrics: ProxyMetrics,
    /// Per-route metric handles for the common outcomes, by route name (from the configuration,
    /// so a fast non-keyed hash is safe).
    pub route_series: FxHashMap<String, RouteSeries>,
    /// The stop signal, for what outlives a request (WebSocket tunnels).
    pub stop: tokio::sync::watch::Receiver<bool>,
    /// Per WebSocket route, the signal a reload fires when it changes the route.
    pub generations: crate::proxy::websocket::RouteGenerations,
}

/// The route a request goes to, or the answer to a CORS preflight.
pub(crate) enum Selected {
    Route(Arc<RouteConfig>),
    Preflight(Response<Body>),
}

impl Gateway {
    /// Route selection, the same for proxy mode and the authorizer: a CORS preflight is
    /// answered for the route of the method it asks about (with no auth); otherwise the longest
    /// prefix of the virtual host decides, and a method it does not allow never falls through
    /// to a shorter, less protected route. The route is recorded in `outcome`.
    pub(crate) fn select<B>(
        &self,
        req: &Request<B>,
        host: Option<&str>,
        path: &str,
        outcome: &mut Outcome,
    ) -> Result<Selected, GatewayError> {
        if let Some(method) = cors::preflight_method(req) {
            let route = self.routes.find(host, &method, path).found();
            if let Some(route) = route.filter(|r| r.cors.is_some()) {
                outcome.route = Some(route.clone());
                let cors = route.cors.as_ref().expect("filtered");
                return Ok(Selected::Preflight(cors::preflight(
                    cors,
                    req.headers().get(http::header::ORIGIN),
                )));
            }
        }
        let found = self.routes.find(host, req.method(), path);
        if let RouteMatch::Found(r) | RouteMatch::MethodNotAllowed { route: r, .. } = &found {
            let span = tracing::Span::current();
            span.record("route", tracing::field::display(&r.name));
            if otel::enabled() {
                otel::rename(&span, format!("{} {}", req.method(), r.name));
            }
        }
        match found {
            RouteMatch::Found(route) => {
                outcome.route = Some(route.clone());
                Ok(Selected::Route(route.clone()))
            }
            RouteMatch::MethodNotAllowed { route, allow } => {
                outcome.route = Some(route.clone());
                Err(GatewayError::MethodNotAllowed(allow))
            }
            RouteMatch::CaseVariant(route) => {
                tracing::debug!(candidate = %route.name,
                    "path matches the route's prefix only ignoring case: refused");
                Err(GatewayError::NoRoute)
            }
            RouteMatch::None => Err(GatewayError::NoRoute),
        }
    }

    /// Runs the route's auth methods and records an allowed decision in `outcome` (with who,
    /// when the access log is on). Shared by proxy mode and the authorizer.
    pub(crate) async fn authorize(
        &self,
        headers: &http::HeaderMap,
        route: &RouteConfig,
        client: std::net::IpAddr,
        outcome: &mut Outcome,
    ) -> Result<auth::Identity, GatewayError> {
        let by = Authorities {
            authorizer: self.authorizer.as_ref(),
            flood: self.flood.as_deref(),
            exchange: self.exchange.as_ref(),
        };
        let span = tracing::debug_span!(target: "cognito_gate::auth", "authorize",
            auth.decision = Empty, auth.reason = Empty);
        let identity = auth::authorize(headers, route, by, client)
            .instrument(span.clone())
            .await;
        if let Err(e) = &identity {
            if let Some(a) = e.map().audit {
                span.record("auth.decision", a.decision.as_str());
                span.record("auth.reason", a.reason.as_str());
            }
        }
        let identity = identity?;
        span.record("auth.decision", "allow");
        outcome.audit = Some(Audit {
            decision: Decision::Allow,
            reason: Reason::Method(identity.method()),
        });
        if let Some(v) = identity.verified().filter(|_| outcome.logged) {
            outcome.sub = v.sub().map(str::to_string);
            outcome.client_id = v.client_id().map(str::to_string);
        }
        Ok(identity)
    }

    pub(crate) async fn handle(
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
        let _in_flight = InFlight::new(&self.metrics.in_flight);
        let rid = request_id(req.headers());
        let span = request_span(req.method(), req.headers(), &rid);
        // Kept for the route's CORS headers, which every response of a CORS route carries.
        let origin = req.headers().get(http::header::ORIGIN).cloned();
        // What only the access log needs is kept only when the access log is on.
        let logged = access_log::enabled().then(|| {
            RequestLine::new(
                req.method().clone(),
                req.uri().clone(),
                req.version(),
                req.headers(),
            )
        });
        let mut outcome = Outcome {
            logged: logged.is_some(),
            ..Outcome::default()
        };
        let bytes_in = logged.as_ref().map(|l| l.bytes_in.clone());
        let processed = self
            .process(req, conn, &rid, &mut outcome, bytes_in)
            .instrument(span.clone())
            .await;
        let mut resp = match processed {
            Ok(resp) => resp,
            Err(err) => {
                let mapped = err.map();
                outcome.audit = mapped.audit.or(outcome.audit);
                if let GatewayError::Upstream(u) = &err {
                    outcome.upstream_error = Some(*u);
                }
                if let Some(a) = mapped.audit.filter(|a| a.decision == Decision::Deny) {
                    span.in_scope(|| {
                        tracing::debug!(reason = a.reason.as_str(), detail = %err, "request denied")
                    });
                } else if mapped.status.is_server_error() {
                    // The cause (DNS, refused, TLS, timeout, status) of a 5xx, on a line with
                    // the request id and route.
                    span.in_scope(|| {
                        tracing::warn!(status = mapped.status.as_u16(), error = %err, "request failed")
                    });
                }
                err.into_response()
            }
        };
        resp.headers_mut().insert(X_REQUEST_ID, rid.clone());
        if let Some(cors) = outcome.route.as_ref().and_then(|r| r.cors.as_ref()) {
            cors::decorate(resp.headers_mut(), cors, origin.as_ref());
        }
        let status = resp.status().as_u16();
        if otel::enabled() {
            span.record("http.response.status_code", status);
            if status >= 500 {
                span.record("otel.status_code", "error");
            }
        }
        access_log::record(&self.metrics, &self.route_series, &outcome, status, started);
        match logged {
            Some(request) => access_log::Entry {
                rid,
                peer: conn.peer.ip(),
                request,
                status,
                latency: started.elapsed(),
                outcome,
            }
            .on_body_end(resp),
            None => resp,
        }
    }

    async fn process(
        &self,
        mut req: Request<hyper::body::Incoming>,
        conn: ConnInfo,
        rid: &HeaderValue,
        outcome: &mut Outcome,
        bytes_in: Option<Arc<std::sync::atomic::AtomicU64>>,
    ) -> Result<Response<Body>, GatewayError> {
        let server = &self.config.server;
        let via_proxy = self.forward_proxy_stage(&mut req)?;
        // One authority, by the RFCs' rules, for routing, allow_from, forwarding and logs.
        let host = request_host(&mut req)?;
        let span = tracing::Span::current();
        if let Some(h) = &host {
            span.record("host", tracing::field::display(h));
            if outcome.logged {
                outcome.host = Some(h.clone());
            }
        }
        // Route on the path every upstream resolves (see `path`); the normalised path is
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
        span.record("client.addr", tracing::field::display(client));

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
        let route = match self.select(&req, host.as_deref(), path, outcome)? {
            Selected::Route(route) => route,
            Selected::Preflight(resp) => return Ok(resp),
        };
        if route.upstream == UpstreamTarget::None {
            // A route only external authorizers decide on: proxy mode has nowhere to send it.
            return Err(GatewayError::NoRoute);
        }
        admit(&req, &route, client, server.max_body_bytes)?;
        let api_key = self
            .throttle_before(&route, req.headers(), client, outcome)
            .await?;
        if let (Some(_), Some(header)) = (
            &api_key,
            self.throttle.as_ref().and_then(|t| t.api_key_header()),
        ) {
            // The gateway's credential, not the upstream's.
            req.headers_mut().remove(header);
        }

        let identity = match self.authorize(req.headers(), &route, client, outcome).await {
            // Through the forward proxy, "no credential" for Basic asks for the proxy's.
            Err(GatewayError::Auth(AuthError::Missing, Challenge::Basic)) if via_proxy => {
                return Err(GatewayError::ProxyAuthRequired)
            }
            r => r?,
        };
        self.throttle_after(&route, &identity, api_key.as_deref(), client, outcome)
            .await?;
        let verified = identity.verified();
        let grant = Grant {
            claims: verified.map(|v| &v.claims),
            token: identity.token_to_forward(route.forward_token),
            // A WebSocket tunnel ends when the token that opened it expires.
            token_lifetime: verified.filter(|_| route.websocket).map(|v| {
                std::time::Duration::from_secs(v.exp.saturating_sub(auth::now_secs()).max(0) as u64)
            }),
        };
        let forwarder = Forwarder {
            client: &self.upstream,
            hygiene: self.routes.hygiene(),
            trusted_proxies: &server.trusted_proxies,
            max_body_bytes: server.max_body_bytes,
            stop: &self.stop,
            generations: &self.generations,
            shutdown_grace: server.shutdown_grace,
            metrics: &self.proxy_metrics,
            origin_tls: self
                .config
                .forward_proxy
                .as_ref()
                .is_none_or(|f| f.upstream_tls),
            bytes_in,
        };
        let peer = Peer {
            ip: conn.peer.ip(),
            tls: conn.tls,
        };
        let upstream = tracing::debug_span!(target: "cognito_gate::upstream", "upstream",
            otel.kind = "client", http.response.status_code = Empty);
        let sent = Instant::now();
        let forwarded = forwarder
            .forward(req, peer, rid, &route, grant)
            .instrument(upstream.clone())
            .await;
        outcome.upstream_latency = Some(sent.elapsed());
        let mut resp = forwarded?;
        outcome.upstream_status = Some(resp.status().as_u16());
        upstream.record("http.response.status_code", resp.status().as_u16());
        if route.cors.is_some() {
            // The route's CORS policy is the gateway's: an upstream's own headers (one that
            // reflects any Origin with credentials) never reach the browser.
            cors::remove_upstream_headers(resp.headers_mut());
        }
        Ok(resp)
    }
}

/// The span every line logged while serving a request carries: request id, method, then host,
/// client address and route as they become known. With `[tracing]`, it is the request's server
/// span, continuing the client's `traceparent`.
/// The authorizer's checks run in one too.
pub(crate) fn request_span(
    method: &http::Method,
    headers: &http::HeaderMap,
    rid: &HeaderValue,
) -> tracing::Span {
    let span = tracing::info_span!(target: "cognito_gate::request", "request",
        request_id = %rid.to_str().unwrap_or(""),
        method = %method,
        host = Empty,
        client.addr = Empty,
        route = Empty,
        amzn_trace_id = Empty,
        otel.name = Empty,
        otel.kind = Empty,
        http.response.status_code = Empty,
        otel.status_code = Empty,
    );
    if let Some(v) = headers.get(access_log::X_AMZN_TRACE_ID) {
        span.record(
            "amzn_trace_id",
            tracing::field::display(v.to_str().unwrap_or("")),
        );
    }
    if otel::enabled() {
        span.record("otel.kind", "server");
        span.record("otel.name", method.as_str());
        otel::continue_trace(&span, headers);
    }
    span
}
