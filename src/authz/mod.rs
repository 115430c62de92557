//! Authorizer mode: the gateway's decisions for a proxy the team already runs. Each protocol
//! rebuilds the original request from its own fields (`grpc.rs`: Envoy ext_authz over gRPC;
//! `http.rs`: Envoy ext_authz over HTTP, nginx `auth_request`, Traefik `forwardAuth`), and
//! `Gateway::check` runs the stages proxy mode runs — path rules, route choice, allow_from,
//! methods, auth (with the credential exchange), pools, scopes, groups, limits, CORS
//! preflights — up to the decision. What proxy mode would have forwarded becomes the headers
//! to set and remove upstream; what it would have answered becomes the answer the proxy sends.

pub mod grpc;
pub mod http;
pub mod metrics;

use std::net::IpAddr;
use std::time::Instant;

use ::http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, HOST};
use ::http::{Method, Request, Response, Uri};

use crate::body::Body;
use crate::error::{Decision, GatewayError};
use crate::hop::is_hop_by_hop;
use crate::ops::access_log::{self, Outcome, RequestLine};
use crate::pipeline::client::{client_addr, request_id};
use crate::pipeline::path::normalise;
use crate::pipeline::request::{admit, request_host};
use crate::pipeline::{cors, Gateway, Selected};
use crate::proxy::headers::{claim_headers, forwarded_token, X_REQUEST_ID};
use ::tracing::Instrument;
use metrics::{AuthzMetrics, CheckLabels, ProtocolLabel};

/// Which door a check came through (the `protocol` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    EnvoyHttp,
    Nginx,
    Traefik,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::EnvoyHttp => "envoy_http",
            Protocol::Nginx => "nginx",
            Protocol::Traefik => "traefik",
        }
    }
}

/// The client's request as the proxy saw it.
pub(crate) struct Original {
    pub method: Method,
    /// Path and query, as the client sent them (not normalised by the proxy).
    pub path: String,
    /// The authority the client asked for, when the protocol carries one.
    pub host: Option<String>,
    /// The client's headers (credentials, Origin, Content-Length, X-Request-Id).
    pub headers: HeaderMap,
    /// The client's address: from the protocol, or the proxy's X-Forwarded-For.
    pub client: IpAddr,
}

/// What the proxy is to do.
pub(crate) enum Verdict {
    /// Forward, with these headers set (replacing the client's) and these removed.
    Allow {
        set: Vec<(HeaderName, HeaderValue)>,
        remove: Vec<HeaderName>,
        /// Added to the response the client gets (a CORS route's headers).
        response: HeaderMap,
    },
    /// Answer the client with this instead of forwarding: a denial (status, JSON body,
    /// `WWW-Authenticate`) or a CORS preflight's answer.
    Respond(Response<Body>),
}

impl Gateway {
    /// Decides on `original` exactly as proxy mode would, records the check (metrics, access
    /// log), and says what the proxy is to do.
    pub(crate) async fn check(
        &self,
        original: Original,
        protocol: Protocol,
        metrics: &AuthzMetrics,
    ) -> (Verdict, HeaderValue) {
        let started = Instant::now();
        let rid = request_id(&original.headers);
        let span = crate::pipeline::request_span(&original.method, &original.headers, &rid);
        span.record("client.addr", ::tracing::field::display(original.client));
        let origin = original.headers.get(::http::header::ORIGIN).cloned();
        let logged = access_log::enabled().then(|| {
            let uri = original.path.parse::<Uri>().unwrap_or_default();
            RequestLine::new(
                original.method.clone(),
                uri,
                ::http::Version::HTTP_11,
                &original.headers,
            )
        });
        let mut outcome = Outcome {
            logged: logged.is_some(),
            client: Some(original.client),
            host: original.host.clone().filter(|_| logged.is_some()),
            ..Outcome::default()
        };
        let decided = self
            .decide(original, &mut outcome)
            .instrument(span.clone())
            .await;
        let mut verdict = match decided {
            Ok(v) => v,
            Err(err) => {
                let mapped = err.map();
                outcome.audit = mapped.audit.or(outcome.audit);
                if let Some(a) = mapped.audit.filter(|a| a.decision == Decision::Deny) {
                    span.in_scope(|| {
                        ::tracing::debug!(reason = a.reason.as_str(), detail = %err, "check denied")
                    });
                } else if mapped.status.is_server_error() {
                    span.in_scope(|| {
                        ::tracing::warn!(status = mapped.status.as_u16(), error = %err, "check failed")
                    });
                }
                Verdict::Respond(err.into_response())
            }
        };
        let cors = outcome.route.as_ref().and_then(|r| r.cors.as_ref());
        let status = match &mut verdict {
            Verdict::Allow { set, response, .. } => {
                set.push((X_REQUEST_ID, rid.clone()));
                if let Some(cors) = cors {
                    cors::decorate(response, cors, origin.as_ref());
                }
                200
            }
            Verdict::Respond(resp) => {
                resp.headers_mut().insert(X_REQUEST_ID, rid.clone());
                if let Some(cors) = cors {
                    cors::decorate(resp.headers_mut(), cors, origin.as_ref());
                }
                resp.status().as_u16()
            }
        };
        record_check(metrics, protocol, &outcome, status, started);
        if let Some(request) = logged {
            let entry = access_log::Entry {
                rid: rid.clone(),
                peer: original_client(&outcome),
                request,
                status,
                latency: started.elapsed(),
                outcome,
            };
            entry.write(None, true);
        }
        (verdict, rid)
    }

    async fn decide(
        &self,
        original: Original,
        outcome: &mut Outcome,
    ) -> Result<Verdict, GatewayError> {
        let server = &self.config.server;
        let uri: Uri = original
            .path
            .parse()
            .map_err(|_| GatewayError::BadRequest("invalid request target"))?;
        if uri.scheme().is_some() || !original.path.starts_with('/') {
            return Err(GatewayError::BadRequest("invalid request target"));
        }
        let mut req = Request::new(());
        *req.method_mut() = original.method;
        *req.uri_mut() = uri;
        *req.headers_mut() = original.headers;
        if let Some(host) = original.host {
            let host = HeaderValue::from_str(&host)
                .map_err(|_| GatewayError::BadRequest("invalid Host"))?;
            req.headers_mut().insert(HOST, host);
        }
        let host = request_host(&mut req)?;
        let normal =
            normalise(req.uri().path()).map_err(|e| GatewayError::BadRequest(e.message()))?;
        let client = original.client;
        let route = match self.select(&req, host.as_deref(), &normal.route, outcome)? {
            Selected::Route(route) => route,
            Selected::Preflight(resp) => return Ok(Verdict::Respond(resp)),
        };
        admit(&req, &route, client, server.max_body_bytes)?;
        let api_key = self
            .throttle_before(&route, req.headers(), client, outcome)
            .await?;
        let identity = self
            .authorize(req.headers(), &route, client, outcome)
            .await?;
        self.throttle_after(&route, &identity, api_key.as_deref(), client, outcome)
            .await?;

        // What proxy mode would have removed from the client's request (peer_trusted: the
        // proxy owns X-Forwarded-*), less hop-by-hop headers, which are the proxy's own.
        let mut cleaned = req.headers().clone();
        self.routes.hygiene().clean(&mut cleaned, &route, true);
        let mut remove: Vec<HeaderName> = Vec::new();
        for name in req.headers().keys() {
            if !cleaned.contains_key(name) && !is_hop_by_hop(name) && *name != HOST {
                remove.push(name.clone());
            }
        }
        // Every claim header, sent or not: a proxy that passes the checker only some headers
        // (Envoy's HTTP service) still removes the client's.
        for name in self.routes.hygiene().claim_headers() {
            if !remove.contains(name) {
                remove.push(name.clone());
            }
        }
        if let (Some(_), Some(header)) = (
            &api_key,
            self.throttle.as_ref().and_then(|t| t.api_key_header()),
        ) {
            // The gateway's credential, not the upstream's.
            if !remove.contains(header) {
                remove.push(header.clone());
            }
        }
        let mut set = Vec::new();
        let token = identity.token_to_forward(route.forward_token);
        if let Some(v) = token.and_then(|t| forwarded_token(&route, t)) {
            remove.retain(|n| *n != AUTHORIZATION);
            set.push((AUTHORIZATION, v));
        }
        if let Some(claims) = identity.verified().map(|v| &v.claims) {
            for (name, value) in claim_headers(&route, claims) {
                remove.retain(|n| n != name);
                set.push((name.clone(), value));
            }
        }
        for (name, value) in &route.upstream_headers {
            remove.retain(|n| n != name);
            set.push((name.clone(), value.clone()));
        }
        Ok(Verdict::Allow {
            set,
            remove,
            response: HeaderMap::new(),
        })
    }
}

/// Counts the check and its duration.
fn record_check(
    m: &AuthzMetrics,
    protocol: Protocol,
    outcome: &Outcome,
    status: u16,
    started: Instant,
) {
    m.duration
        .get_or_create(&ProtocolLabel {
            protocol: protocol.as_str(),
        })
        .observe(started.elapsed().as_secs_f64());
    let (decision, reason) = match outcome.audit {
        // Allowed by its auth, then refused by a limit.
        _ if outcome.throttled.is_some() => ("deny", "throttled"),
        Some(a) => (a.decision.as_str(), a.reason.as_str()),
        // Answered before any auth decision: by what the answer was.
        None => match status {
            200..=299 => ("preflight", "cors"),
            400 => ("deny", "bad_request"),
            404 => ("deny", "no_route"),
            403 => ("deny", "api_key"),
            405 => ("deny", "method_not_allowed"),
            413 => ("deny", "body_too_large"),
            _ => ("deny", "error"),
        },
    };
    let route = outcome.route_name();
    m.checks
        .get_or_create(&CheckLabels {
            protocol: protocol.as_str(),
            route: if route.is_empty() {
                "-".into()
            } else {
                route.into()
            },
            decision,
            reason,
        })
        .inc();
}

fn original_client(outcome: &Outcome) -> IpAddr {
    outcome
        .client
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// The client's address for the HTTP forms: the proxies that may ask are trusted hops too, so
/// the X-Forwarded-For they add is believed as far as it is a chain of trusted hops.
pub(crate) fn forwarded_client(gateway: &Gateway, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    let server = &gateway.config.server;
    match &gateway.config.authz {
        Some(a) => {
            let mut trusted = server.trusted_proxies.clone();
            trusted.extend(a.allow_from.iter().copied());
            client_addr(peer, headers, &trusted)
        }
        None => client_addr(peer, headers, &server.trusted_proxies),
    }
}

/// The caller may ask (`[authz] allow_from`).
pub(crate) fn may_ask(gateway: &Gateway, peer: IpAddr) -> bool {
    let peer = crate::proxy::headers::canonical(peer);
    gateway
        .config
        .authz
        .as_ref()
        .is_some_and(|a| a.allow_from.iter().any(|n| n.contains(&peer)))
}
