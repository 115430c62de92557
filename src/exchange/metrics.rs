//! The exchange's metric families: calls to the private API by kind and outcome, their latency,
//! and the Basic credential cache's lookups.

use prometheus_client::encoding::EncodeLabelSet;

use crate::metrics::{latency_histogram, Counter, Family, Histogram, Registry};

/// Every value of `cognito_gate_token_exchange_total{kind}`.
pub(crate) const KINDS: [&str; 3] = ["login", "refresh", "challenge"];

/// Every value of `cognito_gate_token_cache_total{result}`.
pub(crate) const CACHE_RESULTS: [&str; 6] = [
    "hit",
    "miss",
    "negative",
    "refresh",
    "rate_limited",
    "shared_hit",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExchangeLabels {
    pub kind: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone)]
pub struct ExchangeMetrics {
    pub calls: Family<ExchangeLabels, Counter>,
    pub duration: Histogram,
    pub cache: Family<ResultLabel, Counter>,
}

impl ExchangeMetrics {
    /// Registers the families, every kind, outcome and cache result shown at zero.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let calls = Family::<ExchangeLabels, Counter>::default();
        registry.register(
            "token_exchange",
            "Calls to the private API by kind and outcome",
            calls.clone(),
        );
        let duration = latency_histogram();
        registry.register(
            "token_exchange_duration_seconds",
            "Latency of calls to the private API",
            duration.clone(),
        );
        let cache = Family::<ResultLabel, Counter>::default();
        registry.register(
            "token_cache",
            "Basic credential cache lookups by result",
            cache.clone(),
        );
        for kind in KINDS {
            for outcome in super::error::OUTCOMES {
                let _ = calls.get_or_create(&ExchangeLabels { kind, outcome });
            }
        }
        for result in CACHE_RESULTS {
            let _ = cache.get_or_create(&ResultLabel { result });
        }
        ExchangeMetrics {
            calls,
            duration,
            cache,
        }
    }
}
