//! The listeners' and the process's lifecycle metric families: connections open, the
//! connections the gateway closed itself (by why), whether it drains, reloads by outcome, and
//! when the certificates it serves expire.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

use crate::metrics::{Counter, Family, Gauge, Registry};

/// `{outcome="ok"}` or `{outcome="error"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    pub outcome: &'static str,
}

/// `{certificate="server"}` (the TLS listener's) or `{certificate="forward_proxy_ca"}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CertificateLabel {
    pub certificate: &'static str,
}

/// Why the gateway closed a client connection itself.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum CloseReason {
    /// The request head did not arrive within `header_read_timeout` (slowloris).
    HeaderReadTimeout,
    /// Nothing moved for `idle_timeout`.
    IdleTimeout,
    /// The client sent more HTTP/2 SETTINGS frames than the budget allows.
    H2SettingsFlood,
}

impl CloseReason {
    pub(crate) const ALL: [CloseReason; 3] = [
        CloseReason::HeaderReadTimeout,
        CloseReason::IdleTimeout,
        CloseReason::H2SettingsFlood,
    ];

    /// The `reason` label and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::HeaderReadTimeout => "header_read_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::H2SettingsFlood => "h2_settings_flood",
        }
    }
}

impl EncodeLabelValue for CloseReason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    pub reason: CloseReason,
}

#[derive(Clone)]
pub struct ServerMetrics {
    pub connections_active: Gauge,
    connections_closed: Family<ReasonLabel, Counter>,
    /// 1 from SIGTERM (readiness failing, connections told to go) until the process ends.
    pub draining: Gauge,
    reloads: Family<OutcomeLabel, Counter>,
    certificate_expiry: Family<CertificateLabel, Gauge>,
}

impl ServerMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let connections_active = Gauge::default();
        registry.register(
            "connections_active",
            "Client connections currently open",
            connections_active.clone(),
        );
        let connections_closed = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "connections_closed",
            "Client connections the gateway closed itself, by reason (header_read_timeout, idle_timeout, h2_settings_flood)",
            connections_closed.clone(),
        );
        for reason in CloseReason::ALL {
            let _ = connections_closed.get_or_create(&ReasonLabel { reason });
        }
        let draining = Gauge::default();
        registry.register(
            "draining",
            "1 while the gateway drains after SIGTERM or SIGINT (readiness fails, requests are still served)",
            draining.clone(),
        );
        let reloads = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "reloads",
            "Configuration reloads (SIGHUP) by outcome: ok, or error (the running configuration stayed)",
            reloads.clone(),
        );
        for outcome in ["ok", "error"] {
            let _ = reloads.get_or_create(&OutcomeLabel { outcome });
        }
        let certificate_expiry = Family::<CertificateLabel, Gauge>::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When a certificate the gateway serves or issues from stops being valid (notAfter, Unix seconds): server (the TLS listener's), forward_proxy_ca",
            certificate_expiry.clone(),
        );
        ServerMetrics {
            connections_active,
            connections_closed,
            draining,
            reloads,
            certificate_expiry,
        }
    }

    /// Counts a reload: applied, or rejected with the running configuration kept.
    pub fn reloaded(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Records when `certificate` expires (`None`: it could not be read, and the series goes).
    pub fn certificate_expires(&self, certificate: &'static str, not_after: Option<i64>) {
        let label = CertificateLabel { certificate };
        match not_after {
            Some(t) => {
                self.certificate_expiry.get_or_create(&label).set(t);
            }
            None => {
                self.certificate_expiry.remove(&label);
            }
        }
    }

    pub fn closed(&self, reason: CloseReason) {
        self.connections_closed
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
}
