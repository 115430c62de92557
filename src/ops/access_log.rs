//! One record per request: the request metrics (by route, status, auth decision, upstream
//! error) and, when enabled, one access-log event (`cognito_gate::access`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, Uri};
use rustc_hash::FxHashMap;

use super::metrics::{AuthLabels, RequestMetrics, RouteKind, RouteSeries, RouteStatus};
use crate::config::RouteConfig;
use crate::error::{Audit, Decision, UpstreamError};
use crate::metrics::RouteLabel;

/// What the metrics and the access log record about one request.
#[derive(Default)]
pub struct Outcome {
    pub route: Option<Arc<RouteConfig>>,
    pub audit: Option<Audit>,
    pub upstream_error: Option<UpstreamError>,
    pub sub: Option<String>,
    pub client_id: Option<String>,
    pub client: Option<IpAddr>,
    /// The access log is on: record `sub` and `client_id`.
    pub logged: bool,
}

impl Outcome {
    pub(crate) fn route_name(&self) -> &str {
        self.route.as_ref().map(|r| r.name.as_str()).unwrap_or("")
    }
}

/// The access log is on (checked once per request, so what only it needs is kept only then).
pub fn enabled() -> bool {
    tracing::enabled!(target: "cognito_gate::access", tracing::Level::INFO)
}

/// Counts the request in the metrics.
pub(crate) fn record(
    metrics: &RequestMetrics,
    series: &FxHashMap<String, RouteSeries>,
    outcome: &Outcome,
    status: u16,
    started: Instant,
) {
    let name = outcome.route_name();
    let route = if name.is_empty() { "-" } else { name };
    let series = series.get(route);
    let elapsed = started.elapsed().as_secs_f64();
    match series {
        Some(s) => s.duration.observe(elapsed),
        None => metrics
            .request_duration
            .get_or_create(&RouteLabel {
                route: route.to_string(),
            })
            .observe(elapsed),
    }
    match series {
        Some(s) => s.count_status(metrics, status),
        None => {
            metrics
                .requests
                .get_or_create(&RouteStatus {
                    route: route.to_string(),
                    status,
                })
                .inc();
        }
    };
    if let (Some(kind), false) = (outcome.upstream_error, name.is_empty()) {
        metrics
            .upstream_errors
            .get_or_create(&RouteKind {
                route: name.to_string(),
                kind: kind.kind(),
            })
            .inc();
    }
    let Some(audit) = outcome.audit.filter(|_| !name.is_empty()) else {
        return;
    };
    let (decision, reason) = (audit.decision.as_str(), audit.reason.as_str());
    match series {
        Some(s) => {
            let allowed = (audit.decision == Decision::Allow)
                .then(|| s.allowed(reason))
                .flatten();
            match allowed {
                Some(c) => {
                    c.inc();
                }
                None => s.count_decision(metrics, decision, reason),
            }
        }
        None => {
            metrics
                .auth_decisions
                .get_or_create(&AuthLabels {
                    route: route.to_string(),
                    decision,
                    reason,
                })
                .inc();
        }
    }
}

/// Writes the access-log event.
pub fn log(
    rid: &HeaderValue,
    peer: IpAddr,
    (method, uri): (Method, Uri),
    status: u16,
    started: Instant,
    outcome: &Outcome,
) {
    let (decision, reason) = match outcome.audit {
        Some(a) => (a.decision.as_str(), a.reason.as_str()),
        None => ("", ""),
    };
    tracing::info!(
        target: "cognito_gate::access",
        request_id = rid.to_str().unwrap_or(""),
        client.addr = %outcome.client.unwrap_or(peer),
        method = %method,
        path = %uri.path(),
        route = outcome.route_name(),
        status,
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        auth.decision = decision,
        auth.reason = reason,
        sub = outcome.sub.as_deref().unwrap_or(""),
        client_id = outcome.client_id.as_deref().unwrap_or(""),
    );
}
