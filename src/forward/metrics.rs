//! The forward proxy's metric families: `CONNECT`s by outcome, certificates issued.

use prometheus_client::encoding::EncodeLabelSet;

use crate::metrics::{Counter, Family, Registry};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone)]
pub struct ForwardMetrics {
    pub connects: Family<OutcomeLabel, Counter>,
    pub certificates_issued: Counter,
}

impl ForwardMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let connects = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "proxy_connects",
            "CONNECT requests to the forward proxy, by outcome (intercepted, tunnelled, refused)",
            connects.clone(),
        );
        for outcome in ["intercepted", "tunnelled", "refused"] {
            let _ = connects.get_or_create(&OutcomeLabel { outcome });
        }
        let certificates_issued = Counter::default();
        registry.register(
            "proxy_certificates_issued",
            "Leaf certificates the forward proxy's CA issued for intercepted names",
            certificates_issued.clone(),
        );
        ForwardMetrics {
            connects,
            certificates_issued,
        }
    }

    pub(crate) fn connect(&self, outcome: &'static str) {
        self.connects.get_or_create(&OutcomeLabel { outcome }).inc();
    }
}
