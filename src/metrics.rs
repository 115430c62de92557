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

/// A registry whose families carry the `cognito_gate_` prefix (tests; the gateway's own is a
/// sub-registry of the root, beside the unprefixed `process_*` families).
#[cfg(test)]
pub(crate) fn registry() -> Registry {
    Registry::with_prefix("cognito_gate")
}

/// The gateway's prefix, for `Registry::sub_registry_with_prefix`.
pub(crate) const PREFIX: &str = "cognito_gate";

/// The Prometheus text of everything registered.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)
        .expect("writing to a String cannot fail");
    out
}

/// The buckets of every latency histogram: 0.25 ms .. ~65.5 s (19 doublings), past API
/// Gateway's 29 s integration limit and the default route timeout, so a slow upstream shows in
/// its own bucket rather than only in `+Inf`.
pub(crate) fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, LATENCY_BUCKETS))
}

const LATENCY_BUCKETS: u16 = 19;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
}

/// `cognito_gate_build_info{version,commit} 1`: which build is running (the commit from
/// `build.rs`).
pub(crate) fn register_build_info(registry: &mut Registry) {
    let info = Family::<BuildLabels, Gauge>::default();
    info.get_or_create(&BuildLabels {
        version: env!("CARGO_PKG_VERSION"),
        commit: env!("COGNITO_GATE_COMMIT"),
    })
    .set(1);
    registry.register("build_info", "The running build: version and commit", info);
}

/// `{route="…"}`, for families kept per route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

#[cfg(test)]
mod tests {
    #[test]
    fn latency_buckets_reach_past_the_longest_timeouts() {
        let last = 0.000_25 * 2f64.powi(i32::from(super::LATENCY_BUCKETS) - 1);
        assert!(last > 60.0, "{last}");
        let h = super::latency_histogram();
        h.observe(40.0);
        let mut text = String::new();
        let mut r = super::registry();
        r.register("t", "t", h);
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        assert!(text.contains("le=\"65.536\"} 1"), "{text}");
    }
}
