//! Prometheus metrics with the names in DESIGN §5. Labels are bounded: route names come from the
//! configuration, reasons and outcomes from closed enums — never paths, users or tokens.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    pub route: String,
    pub decision: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolOutcome {
    pub pool: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExchangeLabels {
    pub kind: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// Why the gateway closed a client connection itself, as `connections_closed_total` says it.
pub const CLOSE_REASONS: [&str; 3] = ["header_read_timeout", "idle_timeout", "h2_settings_flood"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SharedOpLabels {
    pub op: &'static str,
    pub outcome: &'static str,
}

/// What was found tampered with in the shared state, as `shared_state_tampering_total` says it:
/// a counter below zero, or one far above anything its limit lets it reach.
pub const TAMPERING_KINDS: [&str; 2] = ["counter_negative", "counter_too_high"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TamperingLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteKind {
    pub route: String,
    pub kind: &'static str,
}

/// See [`Metrics::route_series`].
pub struct RouteSeries {
    /// `requests_total{status="200"}`
    pub ok: Counter,
    pub duration: Histogram,
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
    pub fn count_status(&self, metrics: &Metrics, status: u16) {
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
    pub fn count_decision(&self, metrics: &Metrics, decision: &'static str, reason: &'static str) {
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

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RouteStatus, Counter>,
    pub request_duration: Family<RouteLabel, Histogram>,
    pub auth_decisions: Family<AuthLabels, Counter>,
    pub jwks_refresh: Family<PoolOutcome, Counter>,
    pub jwks_age: Family<PoolLabel, Gauge<f64, AtomicU64>>,
    pub token_exchange: Family<ExchangeLabels, Counter>,
    pub token_exchange_duration: Histogram,
    pub token_cache: Family<ResultLabel, Counter>,
    pub upstream_errors: Family<RouteKind, Counter>,
    pub connections_active: Gauge,
    pub connections_closed: Family<ReasonLabel, Counter>,
    pub websocket_connections: Family<RouteLabel, Gauge>,
    pub shared_state_up: Gauge,
    pub shared_state_ops: Family<SharedOpLabels, Counter>,
    pub shared_state_duration: Histogram,
    pub shared_state_tampering: Family<TamperingLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cognito_gate");
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
        let jwks_refresh = Family::<PoolOutcome, Counter>::default();
        registry.register(
            "jwks_refresh",
            "JWKS fetches by user pool and outcome",
            jwks_refresh.clone(),
        );
        let jwks_age = Family::<PoolLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "jwks_age_seconds",
            "Seconds since each user pool's signing keys were last loaded",
            jwks_age.clone(),
        );
        let token_exchange = Family::<ExchangeLabels, Counter>::default();
        registry.register(
            "token_exchange",
            "Calls to the private API by kind and outcome",
            token_exchange.clone(),
        );
        let token_exchange_duration = latency_histogram();
        registry.register(
            "token_exchange_duration_seconds",
            "Latency of calls to the private API",
            token_exchange_duration.clone(),
        );
        let token_cache = Family::<ResultLabel, Counter>::default();
        registry.register(
            "token_cache",
            "Basic credential cache lookups by result",
            token_cache.clone(),
        );
        let upstream_errors = Family::<RouteKind, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream failures by route and kind",
            upstream_errors.clone(),
        );
        let connections_active = Gauge::default();
        registry.register(
            "connections_active",
            "Client connections currently open",
            connections_active.clone(),
        );
        let connections_closed = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "connections_closed",
            "Client connections the gateway closed itself, by reason (header_read_timeout, idle_timeout, h2_settings_flood)",
            connections_closed.clone(),
        );
        for reason in CLOSE_REASONS {
            let _ = connections_closed.get_or_create(&ReasonLabel { reason });
        }
        let websocket_connections = Family::<RouteLabel, Gauge>::default();
        registry.register(
            "websocket_connections_active",
            "WebSocket tunnels open, by route",
            websocket_connections.clone(),
        );
        let shared_state_up = Gauge::default();
        registry.register(
            "shared_state_up",
            "1 while the shared state (Valkey) answers, 0 while this replica acts alone",
            shared_state_up.clone(),
        );
        let shared_state_ops = Family::<SharedOpLabels, Counter>::default();
        registry.register(
            "shared_state_ops",
            "Shared state operations by op and outcome (ok, error, skipped while paused)",
            shared_state_ops.clone(),
        );
        let shared_state_duration = latency_histogram();
        registry.register(
            "shared_state_duration_seconds",
            "Latency of shared state operations",
            shared_state_duration.clone(),
        );
        let shared_state_tampering = Family::<TamperingLabel, Counter>::default();
        registry.register(
            "shared_state_tampering",
            "Values in the shared state this gateway cannot have written (a failed-login counter below zero or far above its limit), by kind; the replica's own counter decided instead",
            shared_state_tampering.clone(),
        );
        for kind in TAMPERING_KINDS {
            let _ = shared_state_tampering.get_or_create(&TamperingLabel { kind });
        }
        Metrics {
            registry,
            shared_state_tampering,
            websocket_connections,
            shared_state_up,
            shared_state_ops,
            shared_state_duration,
            requests,
            request_duration,
            auth_decisions,
            jwks_refresh,
            jwks_age,
            token_exchange,
            token_exchange_duration,
            token_cache,
            upstream_errors,
            connections_active,
            connections_closed,
        }
    }

    /// Handles on the series a route's successful requests touch. Made once per configuration,
    /// so the request path neither allocates label strings nor looks the series up; the series
    /// show from start-up, at zero until used.
    pub fn route_series(
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

    /// Makes the series whose label values are known up front, at zero, so that every metric
    /// shows from start-up (a family without series is not printed at all).
    pub fn preset(
        &self,
        exchange_kinds: &[&'static str],
        exchange_outcomes: &[&'static str],
        cache_results: &[&'static str],
    ) {
        for &kind in exchange_kinds {
            for &outcome in exchange_outcomes {
                let _ = self
                    .token_exchange
                    .get_or_create(&ExchangeLabels { kind, outcome });
            }
        }
        for &result in cache_results {
            let _ = self.token_cache.get_or_create(&ResultLabel { result });
        }
    }

    /// Makes a user pool's JWKS series, at zero.
    pub fn preset_pool(&self, pool: &str, outcomes: &[&'static str]) {
        for &outcome in outcomes {
            let _ = self.jwks_refresh.get_or_create(&PoolOutcome {
                pool: pool.to_string(),
                outcome,
            });
        }
        let _ = self.jwks_age.get_or_create(&PoolLabel {
            pool: pool.to_string(),
        });
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_design() {
        let m = Metrics::new();
        m.requests
            .get_or_create(&RouteStatus {
                route: "orders".into(),
                status: 200,
            })
            .inc();
        m.request_duration
            .get_or_create(&RouteLabel {
                route: "orders".into(),
            })
            .observe(0.001);
        m.auth_decisions
            .get_or_create(&AuthLabels {
                route: "orders".into(),
                decision: "deny",
                reason: "expired",
            })
            .inc();
        m.preset_pool("default", &["success", "failure"]);
        m.jwks_refresh
            .get_or_create(&PoolOutcome {
                pool: "default".into(),
                outcome: "success",
            })
            .inc();
        m.token_exchange
            .get_or_create(&ExchangeLabels {
                kind: "login",
                outcome: "success",
            })
            .inc();
        m.token_cache
            .get_or_create(&ResultLabel { result: "hit" })
            .inc();
        m.upstream_errors
            .get_or_create(&RouteKind {
                route: "orders".into(),
                kind: "timeout",
            })
            .inc();
        let text = m.encode();
        for name in [
            "cognito_gate_requests_total{route=\"orders\",status=\"200\"} 1",
            "cognito_gate_request_duration_seconds_bucket",
            "cognito_gate_auth_decisions_total{route=\"orders\",decision=\"deny\",reason=\"expired\"} 1",
            "cognito_gate_jwks_refresh_total{pool=\"default\",outcome=\"success\"} 1",
            "cognito_gate_jwks_age_seconds",
            "cognito_gate_token_exchange_total{kind=\"login\",outcome=\"success\"} 1",
            "cognito_gate_token_exchange_duration_seconds_count",
            "cognito_gate_token_cache_total{result=\"hit\"} 1",
            "cognito_gate_upstream_errors_total{route=\"orders\",kind=\"timeout\"} 1",
            "cognito_gate_connections_active",
            "cognito_gate_connections_closed_total{reason=\"h2_settings_flood\"} 0",
            "cognito_gate_shared_state_tampering_total{kind=\"counter_negative\"} 0",
            "cognito_gate_shared_state_tampering_total{kind=\"counter_too_high\"} 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
