//! The listeners' metric families: connections open, and the connections the gateway closed
//! itself, by why.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

use crate::metrics::{Counter, Family, Gauge, Registry};

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
        ServerMetrics {
            connections_active,
            connections_closed,
        }
    }

    pub fn closed(&self, reason: CloseReason) {
        self.connections_closed
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }
}
