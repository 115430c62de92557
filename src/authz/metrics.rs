//! The authorizer's metric families: checks by protocol, route, decision and reason, and how
//! long a check takes by protocol.

use prometheus_client::encoding::EncodeLabelSet;

use crate::metrics::{latency_histogram, Counter, Family, Histogram, Registry};

/// `{protocol, route, decision, reason}`: all bounded (the protocol and decision from closed
/// sets, the route from the configuration, the reason from the gateway's closed enums).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    pub protocol: &'static str,
    pub route: String,
    pub decision: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    pub protocol: &'static str,
}

#[derive(Clone)]
pub struct AuthzMetrics {
    pub checks: Family<CheckLabels, Counter>,
    pub duration: Family<ProtocolLabel, Histogram>,
}

impl AuthzMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let checks = Family::<CheckLabels, Counter>::default();
        registry.register(
            "authz_checks",
            "External-authorizer checks, by protocol, route, decision and reason",
            checks.clone(),
        );
        let duration = Family::<ProtocolLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "authz_check_duration_seconds",
            "How long an external-authorizer check takes, by protocol",
            duration.clone(),
        );
        AuthzMetrics { checks, duration }
    }
}
