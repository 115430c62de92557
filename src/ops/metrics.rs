//! The request metrics: requests by route and status, their latency, authorization decisions
//! by route, decision and reason, and upstream failures by route and kind (recorded together by
//! `access_log::record`). The other components' families are in their own folders
//! (`crate::metrics` says how they fit together).

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;

use crate::metrics::{latency_histogram, Counter, Family, Gauge, Histogram, Registry, RouteLabel};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    pub route: String,
    pub decision: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteKind {
    pub route: String,
    pub kind: &'static str,
}

/// See [`RequestMetrics::route_series`].
pub struct RouteSeries {
    /// `requests_total{status="200"}`
    pub ok: Counter,
    pub duration: Histogram,
    /// `upstream_duration_seconds`: the upstream's time to response headers.
    pub upstream: Histogram,
    /// `auth_decisions_total{decision="allow"}` by the route's auth methods.
    pub allow: Vec<(&'static str, Counter)>,
    route: String,
    /// Other statuses and decisions, each looked up in its family once, when first seen.
    statuses: Mutex<Vec<(u16, Counter)>>,
    decisions: Mutex<Vec<((&'static str, &'static str), Counter)>>,
}

impl RouteSeries {
    pub fn allowed(&self, method: &str) -> Option<&Counter> {
        self.allow
            .iter()
            .find(|(m, _)| *m == method)
            .map(|(_, c)| c)
    }

    /// Counts a request answered with `status`.
    pub(crate) fn count_status(&self, metrics: &RequestMetrics, status: u16) {
        if status == 200 {
            self.ok.inc();
            return;
        }
        let mut seen = self.statuses.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = seen.iter().find(|(s, _)| *s == status) {
            c.inc();
            return;
        }
        let c = metrics
            .requests
            .get_or_create(&RouteStatus {
                route: self.route.clone(),
                status,
            })
            .clone();
        c.inc();
        seen.push((status, c));
    }

    /// Counts a decision other than the route's allow methods.
    pub(crate) fn count_decision(
        &self,
        metrics: &RequestMetrics,
        decision: &'static str,
        reason: &'static str,
    ) {
        let mut seen = self.decisions.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = seen.iter().find(|(k, _)| *k == (decision, reason)) {
            c.inc();
            return;
        }
        let c = metrics
            .auth_decisions
            .get_or_create(&AuthLabels {
                route: self.route.clone(),
                decision,
                reason,
            })
            .clone();
        c.inc();
        seen.push(((decision, reason), c));
    }
}

#[derive(Clone)]
pub struct RequestMetrics {
    pub requests: Family<RouteStatus, Counter>,
    pub request_duration: Family<RouteLabel, Histogram>,
    pub auth_decisions: Family<AuthLabels, Counter>,
    pub upstream_errors: Family<RouteKind, Counter>,
    pub upstream_duration: Family<RouteLabel, Histogram>,
    /// Requests being served on the main listeners now (health checks aside).
    pub in_flight: Gauge,
}

/// Counts a request in `requests_in_flight` until dropped.
pub(crate) struct InFlight(Gauge);

impl InFlight {
    pub fn new(gauge: &Gauge) -> InFlight {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl RequestMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let requests = Family::<RouteStatus, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        let request_duration = Family::<RouteLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Time from request headers to response headers, by route",
            request_duration.clone(),
        );
        let auth_decisions = Family::<AuthLabels, Counter>::default();
        registry.register(
            "auth_decisions",
            "Authorization decisions by route, decision and reason",
            auth_decisions.clone(),
        );
        let upstream_errors = Family::<RouteKind, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream failures by route and kind",
            upstream_errors.clone(),
        );
        let upstream_duration = Family::<RouteLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "upstream_duration_seconds",
            "Time from sending a request upstream to its response headers, by route (failed calls included)",
            upstream_duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being served now (health checks aside)",
            in_flight.clone(),
        );
        RequestMetrics {
            requests,
            request_duration,
            auth_decisions,
            upstream_errors,
            upstream_duration,
            in_flight,
        }
    }

    pub(crate) fn route_series(
        &self,
        route: &str,
        allow_methods: impl IntoIterator<Item = &'static str>,
        upstream_error_kinds: &[&'static str],
    ) -> RouteSeries {
        for &kind in upstream_error_kinds {
            let _ = self.upstream_errors.get_or_create(&RouteKind {
                route: route.to_string(),
                kind,
            });
        }
        RouteSeries {
            ok: self
                .requests
                .get_or_create(&RouteStatus {
                    route: route.to_string(),
                    status: 200,
                })
                .clone(),
            duration: self
                .request_duration
                .get_or_create(&RouteLabel {
                    route: route.to_string(),
                })
                .clone(),
            upstream: self
                .upstream_duration
                .get_or_create(&RouteLabel {
                    route: route.to_string(),
                })
                .clone(),
            allow: allow_methods
                .into_iter()
                .map(|method| {
                    let c = self
                        .auth_decisions
                        .get_or_create(&AuthLabels {
                            route: route.to_string(),
                            decision: "allow",
                            reason: method,
                        })
                        .clone();
                    (method, c)
                })
                .collect(),
            route: route.to_string(),
            statuses: Mutex::new(Vec::new()),
            decisions: Mutex::new(Vec::new()),
        }
    }
}
