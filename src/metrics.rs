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

/// The Prometheus text format 0.0.4 of what [`encode`] wrote (OpenMetrics): a counter family is
/// named with its `_total` in `# HELP`/`# TYPE`, `info` is a gauge, `# UNIT` and `# EOF` go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            // Written once the family's type is known.
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (name.to_string(), kind),
                _ => (name.to_string(), "untyped"),
            };
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map_or("", |(_, t)| t);
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        // A sample: its exemplar (` # {…}`) has no place in 0.0.4.
        let sample = line.split(" # {").next().unwrap_or(line);
        out.push_str(sample);
        out.push('\n');
    }
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
    fn the_text_format_names_counters_with_total_and_has_no_eof() {
        let mut r = super::registry();
        let c = super::Counter::<u64>::default();
        c.inc();
        r.register("hits", "Hits \"so far\"", c);
        let g = super::Gauge::<i64>::default();
        r.register("open", "Open", g);
        let om = super::encode(&r);
        assert!(om.contains("# TYPE cognito_gate_hits counter") && om.ends_with("# EOF\n"));
        let text = super::to_prometheus_text(&om);
        assert!(
            text.contains("# HELP cognito_gate_hits_total Hits")
                && text.contains(
                    "# TYPE cognito_gate_hits_total counter\ncognito_gate_hits_total 1\n"
                )
                && text.contains("# TYPE cognito_gate_open gauge\ncognito_gate_open 0\n")
                && !text.contains("EOF"),
            "{text}"
        );
    }

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
