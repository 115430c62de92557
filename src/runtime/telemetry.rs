//! Every component's metric families in one registry, created once at start and kept across
//! reloads (a reload builds new components that report into the same families).

use crate::jwt::flood::FloodMetrics;
use std::sync::Arc;

use crate::authz::metrics::AuthzMetrics;
use crate::exchange::metrics::ExchangeMetrics;
use crate::forward::metrics::ForwardMetrics;
use crate::jwt::metrics::JwksMetrics;
use crate::metrics::{self, Registry};
use crate::ops::metrics::RequestMetrics;
use crate::proxy::metrics::ProxyMetrics;
use crate::server::metrics::ServerMetrics;
use crate::shared::metrics::SharedMetrics;
use crate::throttle::metrics::ThrottleMetrics;

pub(crate) struct Telemetry {
    registry: Arc<Registry>,
    pub requests: RequestMetrics,
    pub jwks: JwksMetrics,
    pub exchange: ExchangeMetrics,
    pub shared: SharedMetrics,
    pub proxy: ProxyMetrics,
    pub server: ServerMetrics,
    pub authz: AuthzMetrics,
    pub forward: ForwardMetrics,
    pub throttle: ThrottleMetrics,
    pub flood: FloodMetrics,
}

impl Telemetry {
    pub fn new() -> Arc<Self> {
        // The process families are the standard unprefixed `process_*`; everything else is
        // `cognito_gate_*`.
        let mut root = Registry::default();
        root.register_collector(Box::new(crate::ops::process::ProcessCollector));
        let registry = root.sub_registry_with_prefix(metrics::PREFIX);
        let requests = RequestMetrics::register(registry);
        let jwks = JwksMetrics::register(registry);
        let exchange = ExchangeMetrics::register(registry);
        let proxy = ProxyMetrics::register(registry);
        let server = ServerMetrics::register(registry);
        let shared = SharedMetrics::register(registry);
        let authz = AuthzMetrics::register(registry);
        let forward = ForwardMetrics::register(registry);
        let throttle = ThrottleMetrics::register(registry);
        let flood = FloodMetrics::register(registry);
        metrics::register_build_info(registry);
        Arc::new(Telemetry {
            registry: Arc::new(root),
            requests,
            jwks,
            exchange,
            shared,
            proxy,
            server,
            authz,
            forward,
            throttle,
            flood,
        })
    }

    /// The registry, for the admin listener.
    pub(crate) fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// The Prometheus text of every family.
    pub fn encode(&self) -> String {
        metrics::encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::metrics::{AuthLabels, RouteKind, RouteStatus};
    use crate::server::metrics::CloseReason;

    #[test]
    fn names_match_the_design() {
        let m = Telemetry::new();
        m.requests
            .requests
            .get_or_create(&RouteStatus {
                route: "orders".into(),
                status: 200,
            })
            .inc();
        m.requests
            .request_duration
            .get_or_create(&metrics::RouteLabel {
                route: "orders".into(),
            })
            .observe(0.001);
        m.requests
            .auth_decisions
            .get_or_create(&AuthLabels {
                route: "orders".into(),
                decision: "deny",
                reason: "expired",
            })
            .inc();
        m.jwks.preset_pool("default");
        m.jwks
            .refreshed("default", &crate::jwt::RefreshOutcome::Updated { keys: 1 });
        m.exchange
            .calls
            .get_or_create(&crate::exchange::metrics::ExchangeLabels {
                kind: "login",
                outcome: "success",
            })
            .inc();
        m.exchange
            .cache
            .get_or_create(&crate::exchange::metrics::ResultLabel { result: "hit" })
            .inc();
        m.requests
            .upstream_errors
            .get_or_create(&RouteKind {
                route: "orders".into(),
                kind: "timeout",
            })
            .inc();
        m.server.closed(CloseReason::IdleTimeout);
        m.proxy.preset_route("live");
        let text = m.encode();
        for name in [
            "cognito_gate_requests_total{route=\"orders\",status=\"200\"} 1",
            "cognito_gate_request_duration_seconds_bucket",
            "cognito_gate_auth_decisions_total{route=\"orders\",decision=\"deny\",reason=\"expired\"} 1",
            "cognito_gate_jwks_refresh_total{pool=\"default\",outcome=\"success\"} 1",
            "cognito_gate_jwks_refresh_total{pool=\"default\",outcome=\"failure\"} 0",
            "cognito_gate_jwks_age_seconds",
            "cognito_gate_token_exchange_total{kind=\"login\",outcome=\"success\"} 1",
            "cognito_gate_token_exchange_total{kind=\"refresh\",outcome=\"timeout\"} 0",
            "cognito_gate_token_exchange_duration_seconds_count",
            "cognito_gate_token_cache_total{result=\"hit\"} 1",
            "cognito_gate_upstream_errors_total{route=\"orders\",kind=\"timeout\"} 1",
            "cognito_gate_connections_active",
            "cognito_gate_connections_closed_total{reason=\"idle_timeout\"} 1",
            "cognito_gate_connections_closed_total{reason=\"h2_settings_flood\"} 0",
            "cognito_gate_websocket_connections_active{route=\"live\"} 0",
            "cognito_gate_build_info{version=\"",
            "cognito_gate_reloads_total{outcome=\"error\"} 0",
            "cognito_gate_draining 0",
            "cognito_gate_requests_in_flight 0",
            "process_open_fds ",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
        // The shared state's families only while it is configured.
        assert!(!text.contains("shared_state"), "{text}");
        m.shared.set_configured(true);
        let text = m.encode();
        for name in [
            "cognito_gate_shared_state_up 0",
            "cognito_gate_shared_state_tampering_total{kind=\"counter_negative\"} 0",
            "cognito_gate_shared_state_tampering_total{kind=\"counter_too_high\"} 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
