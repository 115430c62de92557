//! The authorizer's metric families: JWKS fetches by pool and outcome, and the age of each pool's
//! keys. A `JwksCache` reports its own fetches (`JwksCache::set_metrics`); the age is set when
//! the metrics are scraped (`Authorizer::report_key_ages`), since it grows between fetches.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;

use super::RefreshOutcome;
use crate::metrics::{Counter, Family, Gauge, Registry};

/// Every `cognito_gate_jwks_refresh_total{pool,outcome}` outcome.
pub(crate) const JWKS_OUTCOMES: [&str; 2] = ["success", "failure"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PoolOutcome {
    pub pool: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct PoolLabel {
    pub pool: String,
}

#[derive(Clone)]
pub(crate) struct JwksMetrics {
    refresh: Family<PoolOutcome, Counter>,
    age: Family<PoolLabel, Gauge<f64, AtomicU64>>,
}

impl JwksMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let refresh = Family::<PoolOutcome, Counter>::default();
        registry.register(
            "jwks_refresh",
            "JWKS fetches by user pool and outcome",
            refresh.clone(),
        );
        let age = Family::<PoolLabel, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "jwks_age_seconds",
            "Seconds since each user pool's signing keys were last loaded",
            age.clone(),
        );
        JwksMetrics { refresh, age }
    }

    /// Shows a pool's series at zero before its first fetch.
    pub(crate) fn preset_pool(&self, pool: &str) {
        for outcome in JWKS_OUTCOMES {
            let _ = self.refresh.get_or_create(&PoolOutcome {
                pool: pool.to_string(),
                outcome,
            });
        }
        let _ = self.age.get_or_create(&PoolLabel {
            pool: pool.to_string(),
        });
    }

    pub fn refreshed(&self, pool: &str, outcome: &RefreshOutcome) {
        let outcome = match outcome {
            RefreshOutcome::Updated { .. } => JWKS_OUTCOMES[0],
            RefreshOutcome::Failed(_) => JWKS_OUTCOMES[1],
        };
        self.refresh
            .get_or_create(&PoolOutcome {
                pool: pool.to_string(),
                outcome,
            })
            .inc();
    }

    pub(crate) fn set_age(&self, pool: &str, age: Duration) {
        self.age
            .get_or_create(&PoolLabel {
                pool: pool.to_string(),
            })
            .set(age.as_secs_f64());
    }
}
