//! The shared state's metric families: whether Valkey answers, its operations by op and outcome,
//! their latency, and values found tampered with.

use prometheus_client::encoding::EncodeLabelSet;

use crate::metrics::{latency_histogram, Counter, Family, Gauge, Histogram, Registry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SharedOpLabels {
    pub op: &'static str,
    pub outcome: &'static str,
}

/// What was found tampered with in the shared state, as `shared_state_tampering_total` says it:
/// a counter below zero, or one far above anything its limit lets it reach.
pub(crate) const TAMPERING_KINDS: [&str; 2] = ["counter_negative", "counter_too_high"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TamperingLabel {
    pub kind: &'static str,
}

#[derive(Clone)]
pub struct SharedMetrics {
    pub up: Gauge,
    pub ops: Family<SharedOpLabels, Counter>,
    pub duration: Histogram,
    pub tampering: Family<TamperingLabel, Counter>,
}

impl SharedMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let up = Gauge::default();
        registry.register(
            "shared_state_up",
            "1 while the shared state (Valkey) answers, 0 while this replica acts alone",
            up.clone(),
        );
        let ops = Family::<SharedOpLabels, Counter>::default();
        registry.register(
            "shared_state_ops",
            "Shared state operations by op and outcome (ok, error, skipped while paused)",
            ops.clone(),
        );
        let duration = latency_histogram();
        registry.register(
            "shared_state_duration_seconds",
            "Latency of shared state operations",
            duration.clone(),
        );
        let tampering = Family::<TamperingLabel, Counter>::default();
        registry.register(
            "shared_state_tampering",
            "Values in the shared state this gateway cannot have written (a failed-login counter below zero or far above its limit), by kind; the replica's own counter decided instead",
            tampering.clone(),
        );
        for kind in TAMPERING_KINDS {
            let _ = tampering.get_or_create(&TamperingLabel { kind });
        }
        SharedMetrics {
            up,
            ops,
            duration,
            tampering,
        }
    }
}
