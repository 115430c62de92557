//! The request path as a fixed sequence of stages: health -> route -> admit (client address,
//! body size) -> authorize -> forward. Each stage returns `Result`; `handle` alone turns errors
//! into responses and writes the access log.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, HOST};
use http::{Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use rustc_hash::FxHashMap;

use crate::body::{Body, Capped};
use crate::config::{AuthMethod, Config, ForwardToken, RouteConfig, UpstreamTarget};
use crate::error::{json_response, Challenge, GatewayError};
use crate::exchange::{route_token_use, ServiceAccounts, Tokens};
use crate::jwt::verify::check_route;
use crate::jwt::verify::{claim_as_string, token_from_header};
use crate::jwt::{AuthError, JwksCache, RoutePolicy, TokenUse, Verified, Verifier};
use crate::metrics::{AuthLabels, RouteKind, RouteLabel, RouteSeries, RouteStatus};
use crate::proxy::headers::{
    client_addr, remove_hop_by_hop, request_id, set_forwarded, trusted, X_REQUEST_ID,
};
use crate::proxy::path::{normalise, strip_segments};
use crate::proxy::{echo, upstream, RouteTable, UpstreamClient};

/// What the connection tells about a request.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// Readiness: keys loaded and fresh, and not draining.
pub struct Readiness {
    draining: AtomicBool,
    jwks: Option<Arc<JwksCache>>,
    services: Option<Arc<ServiceAccounts>>,
}

impl Readiness {
    pub fn new(jwks: Option<Arc<JwksCache>>, services: Option<Arc<ServiceAccounts>>) -> Self {
        Readiness {
            draining: AtomicBool::new(false),
            jwks,
            services,
        }
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// `Ok` when ready, else the reason it is not.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.is_draining() {
            return Err("draining");
        }
        if let Some(j) = &self.jwks {
            if !j.is_usable() {
                return Err("jwks not loaded or stale");
            }
        }
        if let Some(s) = &self.services {
            if !s.all_ready() {
                return Err("service accounts hold no valid token");
            }
        }
        Ok(())
    }
}

/// Everything the request path needs, built once from the configuration.
pub struct Gateway {
    pub config: Arc<Config>,
    pub routes: RouteTable,
    pub verifier: Option<Arc<Verifier>>,
    pub upstream: UpstreamClient,
    pub readiness: Readiness,
    pub exchange: Option<crate::Exchange>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Per-route metric handles for the common outcomes, by route name (from the configuration,
    /// so a fast non-keyed hash is safe).
    pub route_series: FxHashMap<String, RouteSeries>,
}

/// The identity a route's auth established.
enum Identity {
    Anonymous,
    Jwt {
        verified: Arc<Verified>,
        token: String,
    },
    /// Tokens obtained for Basic credentials or a service account; `checked` is the kind the
    /// route's policy was checked on.
    Exchanged {
        tokens: Arc<Tokens>,
        checked: TokenUse,
        via: &'static str,
    },
}

/// What the access log records about one request.
#[derive(Default)]
struct Outcome {
    route: Option<Arc<RouteConfig>>,
    /// The auth method that allowed the request.
    method: &'static str,
    decision: &'static str,
    reason: &'static str,
    sub: Option<String>,
    client_id: Option<String>,
    client: Option<IpAddr>,
    /// The access log is on: record `sub` and `client_id`.
    logged: bool,
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Answers the health and readiness paths; `None` for any other path.
pub fn health_response(
    path: &str,
    health_path: &str,
    ready_path: &str,
    readiness: &Readiness,
) -> Option<Response<Body>> {
    if path == health_path {
        return Some(json_response(StatusCode::OK, r#"{"status":"ok"}"#.into()));
    }
    if path == ready_path {
        return Some(match readiness.check() {
            Ok(()) => json_response(StatusCode::OK, r#"{"status":"ready"}"#.into()),
            Err(why) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "status": "not ready", "reason": why })
                    .to_string()
                    .into(),
            ),
        });
    }
    None
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
        // What only the access log needs is kept only when the access log is on.
        let logged = tracing::enabled!(target: "cognito_gate::access", tracing::Level::INFO)
            .then(|| (req.method().clone(), req.uri().clone()));
        let mut outcome = Outcome {
            logged: logged.is_some(),
            ..Outcome::default()
        };
        let result = self.process(req, conn, &rid, &mut outcome).await;
        let mut resp = match result {
            Ok(resp) => resp,
            Err(err) => {
                match &err {
                    GatewayError::Auth(e, _) => {
                        outcome.decision = "deny";
                        outcome.reason = e.reason();
                        tracing::debug!(request_id = ?rid, reason = e.reason(), detail = %e, "request denied");
                    }
                    GatewayError::Exchange(e) => {
                        outcome.decision = "deny";
                        outcome.reason = e.outcome();
                    }
                    GatewayError::TooManyFailures => {
                        outcome.decision = "deny";
                        outcome.reason = "rate_limited";
                    }
                    GatewayError::ServiceTokenUnavailable(_) => {
                        outcome.decision = "deny";
                        outcome.reason = "service_token_unavailable";
                    }
                    GatewayError::ClientNotAllowed => {
                        outcome.decision = "deny";
                        outcome.reason = "allow_from";
                    }
                    GatewayError::Upstream(u) => {
                        if let Some(r) = &outcome.route {
                            self.metrics
                                .upstream_errors
                                .get_or_create(&RouteKind {
                                    route: r.name.clone(),
                                    kind: u.kind(),
                                })
                                .inc();
                        }
                    }
                    GatewayError::NoRoute
                    | GatewayError::BadRequest(_)
                    | GatewayError::BodyTooLarge => {}
                }
                err.into_response()
            }
        };
        resp.headers_mut().insert(X_REQUEST_ID, rid.clone());
        let route = outcome
            .route
            .as_ref()
            .map(|r| r.name.as_str())
            .unwrap_or("");
        self.record(&outcome, route, resp.status().as_u16(), started);
        let Some((method, uri)) = logged else {
            return resp;
        };
        tracing::info!(
            target: "cognito_gate::access",
            request_id = rid.to_str().unwrap_or(""),
            client.addr = %outcome.client.unwrap_or(conn.peer.ip()),
            method = %method,
            path = %uri.path(),
            route,
            status = resp.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            auth.decision = outcome.decision,
            auth.reason = outcome.reason,
            sub = outcome.sub.as_deref().unwrap_or(""),
            client_id = outcome.client_id.as_deref().unwrap_or(""),
        );
        resp
    }

    fn record(&self, outcome: &Outcome, route: &str, status: u16, started: Instant) {
        let m = &self.metrics;
        let route = if route.is_empty() { "-" } else { route };
        let series = self.route_series.get(route);
        let elapsed = started.elapsed().as_secs_f64();
        match series {
            Some(s) => s.duration.observe(elapsed),
            None => m
                .request_duration
                .get_or_create(&RouteLabel {
                    route: route.to_string(),
                })
                .observe(elapsed),
        }
        match series {
            Some(s) => s.count_status(m, status),
            None => {
                m.requests
                    .get_or_create(&RouteStatus {
                        route: route.to_string(),
                        status,
                    })
                    .inc();
            }
        };
        if outcome.decision.is_empty() || outcome.route.is_none() {
            return;
        }
        let allow = outcome.decision == "allow";
        if let Some(c) = series
            .and_then(|s| s.allowed(outcome.method))
            .filter(|_| allow)
        {
            c.inc();
            return;
        }
        let reason = if allow {
            outcome.method
        } else {
            outcome.reason
        };
        match series {
            Some(s) => s.count_decision(m, outcome.decision, reason),
            None => {
                m.auth_decisions
                    .get_or_create(&AuthLabels {
                        route: route.to_string(),
                        decision: outcome.decision,
                        reason,
                    })
                    .inc();
            }
        }
    }

    async fn process(
        &self,
        req: Request<hyper::body::Incoming>,
        conn: ConnInfo,
        rid: &HeaderValue,
        outcome: &mut Outcome,
    ) -> Result<Response<Body>, GatewayError> {
        let server = &self.config.server;
        let mut req = req;
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
        let req = match (&self.config.login_api, &self.exchange) {
            (Some(login), Some(x)) if req.uri().path().starts_with(&login.path_prefix) => {
                // Boxed to keep the common request future small (see `Verifier::verify`).
                match Box::pin(crate::login_api::handle(x, &login.path_prefix, req, client)).await {
                    Ok(resp) => {
                        outcome.decision = "login_api";
                        return Ok(resp);
                    }
                    Err(req) => req,
                }
            }
            _ => req,
        };
        let path = route_path.as_deref().unwrap_or(req.uri().path());
        let host = request_host(&req);
        let route = self
            .routes
            .find(host.as_deref(), req.method(), path)
            .ok_or(GatewayError::NoRoute)?
            .clone();
        outcome.route = Some(route.clone());
        if !route.allow_from.is_empty() && !route.allow_from.iter().any(|n| n.contains(&client)) {
            return Err(GatewayError::ClientNotAllowed);
        }
        if let Some(len) = req.headers().get(CONTENT_LENGTH) {
            let len: u64 = len
                .to_str()
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(GatewayError::BadRequest("invalid content-length"))?;
            if len > server.max_body_bytes {
                return Err(GatewayError::BodyTooLarge);
            }
        }

        let identity = self.authorize(&req, &route, client).await?;
        outcome.decision = "allow";
        outcome.method = match &identity {
            Identity::Anonymous => "none",
            Identity::Jwt { .. } => "jwt",
            Identity::Exchanged { via, .. } => via,
        };
        let verified = match &identity {
            Identity::Anonymous => None::<&Verified>,
            Identity::Jwt { verified, .. } => Some(&**verified),
            Identity::Exchanged {
                tokens, checked, ..
            } => Some(tokens.pick(*checked).0),
        };
        if let Some(v) = verified.filter(|_| outcome.logged) {
            outcome.sub = v.sub().map(str::to_string);
            outcome.client_id = v.client_id().map(str::to_string);
        }
        self.forward(req, conn, rid, &route, identity).await
    }

    async fn authorize(
        &self,
        req: &Request<hyper::body::Incoming>,
        route: &RouteConfig,
        client: IpAddr,
    ) -> Result<Identity, GatewayError> {
        let policy = RoutePolicy {
            token_use: route.token_use,
            scopes: &route.scopes,
            groups: &route.groups,
        };
        for method in &route.auth {
            match method {
                AuthMethod::None => return Ok(Identity::Anonymous),
                AuthMethod::Jwt => {
                    let Some(value) = req.headers().get(&route.token_header) else {
                        continue;
                    };
                    let deny = |e| GatewayError::Auth(e, Challenge::Bearer);
                    let verifier = self
                        .verifier
                        .as_ref()
                        .ok_or(deny(AuthError::KeysUnavailable))?;
                    let token = token_from_header(value.as_bytes()).map_err(deny)?;
                    let verified = verifier
                        .verify(token, policy, now_secs())
                        .await
                        .map_err(deny)?;
                    return Ok(Identity::Jwt {
                        verified,
                        token: token.to_string(),
                    });
                }
                AuthMethod::Basic => {
                    let Some(value) = req.headers().get(AUTHORIZATION) else {
                        continue;
                    };
                    let deny = |e| GatewayError::Auth(e, Challenge::Basic);
                    let (username, password) = parse_basic(value.as_bytes()).map_err(deny)?;
                    let cache = self
                        .exchange
                        .as_ref()
                        .map(|x| &x.cache)
                        .ok_or(deny(AuthError::KeysUnavailable))?;
                    let tokens = Box::pin(cache.tokens(&username, &password, client))
                        .await
                        .map_err(|e| match e {
                            crate::exchange::cache::CredentialError::Exchange(e) => {
                                GatewayError::Exchange(e)
                            }
                            crate::exchange::cache::CredentialError::TooManyFailures => {
                                GatewayError::TooManyFailures
                            }
                        })?;
                    let checked = route_token_use(route.token_use);
                    check_route(tokens.pick(checked).0, policy).map_err(deny)?;
                    return Ok(Identity::Exchanged {
                        tokens,
                        checked,
                        via: "basic",
                    });
                }
                AuthMethod::Service => {
                    let name = route.service_account.as_deref().unwrap_or("");
                    let tokens = self
                        .exchange
                        .as_ref()
                        .and_then(|x| x.services.tokens(name))
                        .ok_or_else(|| GatewayError::ServiceTokenUnavailable(name.to_string()))?;
                    let checked = route_token_use(route.token_use);
                    check_route(tokens.pick(checked).0, policy)
                        .map_err(|e| GatewayError::Auth(e, Challenge::None))?;
                    return Ok(Identity::Exchanged {
                        tokens,
                        checked,
                        via: "service",
                    });
                }
            }
        }
        let challenge = match route.auth.first() {
            Some(AuthMethod::Jwt) => Challenge::Bearer,
            Some(AuthMethod::Basic) => Challenge::Basic,
            Some(AuthMethod::Service | AuthMethod::None) | None => Challenge::None,
        };
        Err(GatewayError::Auth(AuthError::Missing, challenge))
    }

    async fn forward(
        &self,
        req: Request<hyper::body::Incoming>,
        conn: ConnInfo,
        rid: &HeaderValue,
        route: &RouteConfig,
        identity: Identity,
    ) -> Result<Response<Body>, GatewayError> {
        let server = &self.config.server;
        let (parts, body) = req.into_parts();
        let mut headers = parts.headers;
        let peer_trusted = trusted(conn.peer.ip(), &server.trusted_proxies);
        self.routes
            .hygiene()
            .clean(&mut headers, route, peer_trusted);
        let original_host = headers.remove(HOST).or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let proto = if conn.tls { "https" } else { "http" };
        set_forwarded(
            &mut headers,
            conn.peer.ip(),
            &server.trusted_proxies,
            proto,
            original_host.as_ref(),
        );
        headers.insert(X_REQUEST_ID, rid.clone());
        let forwarded: Option<(&Verified, Option<&str>)> = match &identity {
            Identity::Anonymous => None,
            Identity::Jwt { verified, token } => {
                let send = match route.forward_token {
                    ForwardToken::Verified => true,
                    ForwardToken::Id => verified.token_use == TokenUse::Id,
                    ForwardToken::Access => verified.token_use == TokenUse::Access,
                    ForwardToken::None => false,
                };
                Some((verified, send.then_some(token.as_str())))
            }
            Identity::Exchanged {
                tokens, checked, ..
            } => {
                let send = match route.forward_token {
                    ForwardToken::Verified => Some(*checked),
                    ForwardToken::Id => Some(TokenUse::Id),
                    ForwardToken::Access => Some(TokenUse::Access),
                    ForwardToken::None => None,
                };
                let (verified, _) = tokens.pick(*checked);
                Some((verified, send.map(|u| tokens.pick(u).1)))
            }
        };
        if let Some((verified, token)) = forwarded {
            if let Some(token) = token {
                let value = if route.forward_token_scheme.is_empty() {
                    HeaderValue::from_str(token)
                } else {
                    HeaderValue::from_str(&format!("{} {token}", route.forward_token_scheme))
                };
                if let Ok(mut v) = value {
                    v.set_sensitive(true);
                    headers.insert(AUTHORIZATION, v);
                }
            }
            for (name, claim) in &route.claim_headers {
                if let Some(v) = verified.claims.get(claim) {
                    match HeaderValue::from_str(&claim_as_string(v)) {
                        Ok(hv) => {
                            headers.insert(name.clone(), hv);
                        }
                        Err(_) => tracing::warn!(route = %route.name, header = %name,
                            claim = %claim, "claim value cannot be a header value; not sent"),
                    }
                }
            }
        }
        for (name, value) in &route.upstream_headers {
            headers.insert(name.clone(), value.clone());
        }

        let path = parts.uri.path();
        let path = if route.strip_prefix && route.path_prefix != "/" {
            if path.contains(';') {
                // Routed without `;params`: strip the prefix's segments, params and all.
                strip_segments(path, route.path_prefix.matches('/').count())
            } else {
                &path[route.path_prefix.len().min(path.len())..]
            }
        } else {
            path
        };
        let body = Capped::new(body, server.max_body_bytes).boxed();

        match &route.upstream {
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
                let mut req = Request::new(body);
                *req.method_mut() = parts.method;
                *req.uri_mut() = uri;
                *req.version_mut() = Version::HTTP_11;
                *req.headers_mut() = headers;
                let mut resp = self.upstream.send(target, req, route.timeout).await?;
                remove_hop_by_hop(resp.headers_mut());
                Ok(resp)
            }
        }
    }
}

/// `Basic base64(user:password)` (RFC 7617, UTF-8).
fn parse_basic(value: &[u8]) -> Result<(String, String), AuthError> {
    use base64::Engine;
    let value = std::str::from_utf8(value).map_err(|_| AuthError::Malformed("not ASCII"))?;
    let value = value.trim();
    let encoded = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => rest.trim(),
        _ => return Err(AuthError::Malformed("not Basic credentials")),
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| AuthError::Malformed("Basic credentials are not base64"))?;
    let text = String::from_utf8(decoded).map_err(|_| AuthError::Malformed("not UTF-8"))?;
    let (user, pass) = text
        .split_once(':')
        .ok_or(AuthError::Malformed("Basic credentials without ':'"))?;
    if user.is_empty() || pass.is_empty() || user.len() > 256 || pass.len() > 1024 {
        return Err(AuthError::Malformed("Basic credentials out of bounds"));
    }
    Ok((user.to_string(), pass.to_string()))
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

/// The Host without port, lower-cased (HTTP/2: the `:authority`).
fn request_host<B>(req: &Request<B>) -> Option<String> {
    let raw = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))?;
    let host = if let Some(v6) = raw.strip_prefix('[') {
        v6.split(']').next().unwrap_or(v6)
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => raw,
        }
    };
    Some(host.to_ascii_lowercase())
}
