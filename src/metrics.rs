//! The metrics registry and what every component's metric families share. A leaf: it imports
//! nothing of the gateway. Each component defines and registers its own families in its own
//! folder (`jwt/metrics.rs`, `exchange/metrics.rs`, `shared/metrics.rs`, `proxy/metrics.rs`,
//! `server/metrics.rs`, and `ops/metrics.rs` for the requests), the way linkerd2-proxy does, so
//! a new metric touches one folder; `runtime` registers them all in one `Registry` at start.
//! Names are DESIGN §5's. Labels are bounded: route and pool names come from the configuration,
//! reasons and outcomes from closed enums — never paths, users or tokens.

use prometheus_client::encoding::EncodeLabelSet;
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
pub use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::registry::Registry;

/// The registry every family is registered in, with the `cognito_gate_` prefix.
pub(crate) fn registry() -> Registry {
    Registry::with_prefix("cognito_gate")
}

/// The Prometheus text of everything registered.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("writing to a String cannot fail");
    out
}

/// The buckets of every latency histogram: 0.25 ms .. ~8 s.
pub(crate) fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// `{route="…"}`, for families kept per route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}
