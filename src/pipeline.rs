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

use crate::body::{Body, Capped};
use crate::config::{AuthMethod, Config, ForwardToken, RouteConfig, UpstreamTarget};
use crate::error::{json_response, Challenge, GatewayError};
use crate::jwt::verify::{claim_as_string, token_from_header};
use crate::jwt::{AuthError, JwksCache, RoutePolicy, TokenUse, Verified, Verifier};
use crate::proxy::headers::{client_addr, remove_hop_by_hop, request_id, set_forwarded};
use crate::proxy::routes::has_dot_segment;
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
}

impl Readiness {
    pub fn new(jwks: Option<Arc<JwksCache>>) -> Self {
        Readiness {
            draining: AtomicBool::new(false),
            jwks,
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
        Ok(())
    }
}

/// Everything the request path needs, built once from the configuration.
pub struct Gateway {
    pub config: Arc<Config>,
    pub routes: RouteTable,
    pub verifier: Option<Verifier>,
    pub upstream: UpstreamClient,
    pub readiness: Readiness,
}

/// The identity a route's auth established.
enum Identity {
    Anonymous,
    Jwt { verified: Verified, token: String },
}

/// What the access log records about one request.
#[derive(Default)]
struct Outcome {
    route: Option<Arc<RouteConfig>>,
    decision: &'static str,
    reason: &'static str,
    sub: Option<String>,
    client_id: Option<String>,
    client: Option<IpAddr>,
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
        let rid = request_id(req.headers());
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let server = &self.config.server;
        if let Some(resp) = health_response(
            &path,
            &server.health_path,
            &server.ready_path,
            &self.readiness,
        ) {
            return resp;
        }
        let mut outcome = Outcome::default();
        let result = self.process(req, conn, &rid, &mut outcome).await;
        let mut resp = match result {
            Ok(resp) => resp,
            Err(err) => {
                if let GatewayError::Auth(e, _) = &err {
                    outcome.decision = "deny";
                    outcome.reason = e.reason();
                    tracing::debug!(request_id = ?rid, reason = e.reason(), detail = %e, "request denied");
                }
                err.into_response()
            }
        };
        resp.headers_mut().insert("x-request-id", rid.clone());
        let route = outcome
            .route
            .as_ref()
            .map(|r| r.name.as_str())
            .unwrap_or("");
        tracing::info!(
            target: "cognito_gate::access",
            request_id = rid.to_str().unwrap_or(""),
            client.addr = %outcome.client.unwrap_or(conn.peer.ip()),
            method = %method,
            path = %path,
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

    async fn process(
        &self,
        req: Request<hyper::body::Incoming>,
        conn: ConnInfo,
        rid: &HeaderValue,
        outcome: &mut Outcome,
    ) -> Result<Response<Body>, GatewayError> {
        let server = &self.config.server;
        let path = req.uri().path();
        if has_dot_segment(path) {
            return Err(GatewayError::BadRequest(
                "dot segment or encoded slash in path",
            ));
        }
        let host = request_host(&req);
        let route = self
            .routes
            .find(host.as_deref(), req.method(), path)
            .ok_or(GatewayError::NoRoute)?
            .clone();
        outcome.route = Some(route.clone());

        let client = client_addr(conn.peer.ip(), req.headers(), &server.trusted_proxies);
        outcome.client = Some(client);
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

        let identity = self.authorize(&req, &route).await?;
        match &identity {
            Identity::Anonymous => outcome.decision = "allow",
            Identity::Jwt { verified, .. } => {
                outcome.decision = "allow";
                outcome.sub = verified.sub().map(str::to_string);
                outcome.client_id = verified.client_id().map(str::to_string);
            }
        }
        self.forward(req, conn, rid, &route, identity).await
    }

    async fn authorize(
        &self,
        req: &Request<hyper::body::Incoming>,
        route: &RouteConfig,
    ) -> Result<Identity, GatewayError> {
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
                    let policy = RoutePolicy {
                        token_use: route.token_use,
                        scopes: &route.scopes,
                        groups: &route.groups,
                    };
                    let verified = verifier
                        .verify(token, policy, now_secs())
                        .await
                        .map_err(deny)?;
                    return Ok(Identity::Jwt {
                        verified,
                        token: token.to_string(),
                    });
                }
            }
        }
        let challenge = match route.auth.first() {
            Some(AuthMethod::Jwt) => Challenge::Bearer,
            Some(AuthMethod::None) | None => Challenge::None,
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
        remove_hop_by_hop(&mut headers);
        let original_host = headers.remove(HOST).or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        for name in self.routes.claim_header_names() {
            headers.remove(name);
        }
        let proto = if conn.tls { "https" } else { "http" };
        set_forwarded(
            &mut headers,
            conn.peer.ip(),
            &server.trusted_proxies,
            proto,
            original_host.as_ref(),
        );
        headers.insert("x-request-id", rid.clone());
        if let Identity::Jwt { verified, token } = &identity {
            headers.remove(&route.token_header);
            let forward = match route.forward_token {
                ForwardToken::Verified => true,
                ForwardToken::Id => verified.token_use == TokenUse::Id,
                ForwardToken::Access => verified.token_use == TokenUse::Access,
                ForwardToken::None => false,
            };
            headers.remove(AUTHORIZATION);
            if forward {
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
            &path[route.path_prefix.len().min(path.len())..]
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
                let resp = self.upstream.send(req, route.timeout).await?;
                let (mut parts, body) = resp.into_parts();
                remove_hop_by_hop(&mut parts.headers);
                Ok(Response::from_parts(
                    parts,
                    body.map_err(Into::into).boxed(),
                ))
            }
        }
    }
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
