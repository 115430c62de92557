//! Throttling's metric families: requests refused by a limit (by route and limit), requests
//! refused for want of a known API key (by route), and decisions a replica took alone because
//! the shared state was unavailable (by limit).

use prometheus_client::encoding::EncodeLabelSet;

use crate::metrics::{Counter, Family, Registry, RouteLabel};

/// `{route, limit}`: both from the configuration.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThrottledLabels {
    pub route: String,
    pub limit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    pub limit: String,
}

#[derive(Clone)]
pub struct ThrottleMetrics {
    pub throttled: Family<ThrottledLabels, Counter>,
    pub api_key_rejected: Family<RouteLabel, Counter>,
    pub fallback: Family<LimitLabel, Counter>,
}

impl ThrottleMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let throttled = Family::<ThrottledLabels, Counter>::default();
        registry.register(
            "throttled",
            "Requests answered 429 by a [throttle] limit, by route and limit",
            throttled.clone(),
        );
        let api_key_rejected = Family::<RouteLabel, Counter>::default();
        registry.register(
            "api_key_rejected",
            "Requests answered 403 on an api_key-limited route for want of a known API key, by route",
            api_key_rejected.clone(),
        );
        let fallback = Family::<LimitLabel, Counter>::default();
        registry.register(
            "throttle_local_decisions",
            "Decisions of a shared limit this replica took on its own buckets because the shared state was unavailable, by limit",
            fallback.clone(),
        );
        ThrottleMetrics {
            throttled,
            api_key_rejected,
            fallback,
        }
    }

    /// Shows each route's limits at zero from start-up.
    pub(crate) fn preset(&self, route: &str, limit: &str) {
        let _ = self.throttled.get_or_create(&ThrottledLabels {
            route: route.to_string(),
            limit: limit.to_string(),
        });
    }
}
