//! The shared state's metric families: whether Valkey answers, its operations by op and outcome,
//! their latency, and values found tampered with. They are exported only while `[shared_state]`
//! is configured, so that `shared_state_up 0` always means "configured and not answering".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};

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
    configured: Arc<AtomicBool>,
}

/// Encodes the families while `configured` is set.
#[derive(Debug)]
struct SharedCollector(SharedMetrics);

impl std::fmt::Debug for SharedMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMetrics").finish_non_exhaustive()
    }
}

impl Collector for SharedCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.0;
        if !m.configured.load(Ordering::Relaxed) {
            return Ok(());
        }
        m.up.encode(encoder.encode_descriptor(
            "shared_state_up",
            "1 while the shared state (Valkey) answers, 0 while this replica acts alone",
            None,
            m.up.metric_type(),
        )?)?;
        m.ops.encode(encoder.encode_descriptor(
            "shared_state_ops",
            "Shared state operations by op and outcome (ok, error, skipped while paused)",
            None,
            m.ops.metric_type(),
        )?)?;
        m.duration.encode(encoder.encode_descriptor(
            "shared_state_duration_seconds",
            "Latency of shared state operations",
            None,
            m.duration.metric_type(),
        )?)?;
        m.tampering.encode(encoder.encode_descriptor(
            "shared_state_tampering",
            "Values in the shared state this gateway cannot have written (a failed-login counter below zero or far above its limit), by kind; the replica's own counter decided instead",
            None,
            m.tampering.metric_type(),
        )?)
    }
}

impl SharedMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let tampering = Family::<TamperingLabel, Counter>::default();
        for kind in TAMPERING_KINDS {
            let _ = tampering.get_or_create(&TamperingLabel { kind });
        }
        let metrics = SharedMetrics {
            up: Gauge::default(),
            ops: Family::default(),
            duration: latency_histogram(),
            tampering,
            configured: Arc::default(),
        };
        registry.register_collector(Box::new(SharedCollector(metrics.clone())));
        metrics
    }

    /// Whether `[shared_state]` is configured now (set at start and at each reload).
    pub(crate) fn set_configured(&self, configured: bool) {
        self.configured.store(configured, Ordering::Relaxed);
    }
}
