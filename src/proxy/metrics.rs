//! Forwarding's metric family: WebSocket tunnels open, by route.

use crate::metrics::{Family, Gauge, Registry, RouteLabel};

#[derive(Clone)]
pub struct ProxyMetrics {
    pub websocket_connections: Family<RouteLabel, Gauge>,
}

impl ProxyMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let websocket_connections = Family::<RouteLabel, Gauge>::default();
        registry.register(
            "websocket_connections_active",
            "WebSocket tunnels open, by route",
            websocket_connections.clone(),
        );
        ProxyMetrics {
            websocket_connections,
        }
    }

    /// Shows a WebSocket route's gauge at zero before its first tunnel.
    pub(crate) fn preset_route(&self, route: &str) {
        let _ = self.websocket_connections.get_or_create(&RouteLabel {
            route: route.to_string(),
        });
    }
}
