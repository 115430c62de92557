//! Reload (SIGHUP): a new configuration applied without dropping a request. What only a restart
//! can apply is derived from the configuration types themselves: every field of `Config`,
//! `ServerConfig` and `TlsConfig` is named below as reloaded or restart-only, so a new key does
//! not compile until it is placed on one side.

use std::sync::Arc;

#[cfg(feature = "dev-idp")]
use super::build::point_at_dev_idp;
use super::build::{build_gateway, same_arc};
use super::{RunningGateway, StartError};
use crate::config::{AuthzConfig, Config, ForwardProxyConfig, ServerConfig, TlsConfig};
use crate::tls;

/// What a reload changed, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub keys_rebuilt: bool,
    pub exchange_rebuilt: bool,
    pub tls_reloaded: bool,
    /// `[throttle.NAME]` limits that start afresh (new or changed); the others keep their
    /// buckets and counts.
    pub limits_reset: Vec<String>,
    /// API keys known after the reload.
    pub api_keys: usize,
    /// Settings that only a restart applies (listen addresses, connection settings, logging,
    /// the dev IdP).
    pub needs_restart: Vec<&'static str>,
}

/// Why a reload was refused; the running configuration stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the gateway is draining")]
    Draining,
    #[error("{0}")]
    Build(#[from] StartError),
}

/// The keys of `new` that differ from `old` and that only a restart applies.
pub fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let Config {
        server,
        admin,
        log,
        tracing,
        dev_idp,
        // Rebuilt on reload:
        cognito: _,
        upstream: _,
        routes: _,
        private_api: _,
        exchange: _,
        service_accounts: _,
        login_api: _,
        shared_state: _,
        throttle: _,
        authz,
        forward_proxy,
    } = new;
    let ServerConfig {
        listen,
        tls,
        max_connections,
        worker_threads,
        header_read_timeout,
        idle_timeout,
        max_header_bytes,
        // Read per request or at shutdown from the current configuration:
        max_body_bytes: _,
        shutdown_drain: _,
        shutdown_grace: _,
        trusted_proxies: _,
        health_path: _,
        ready_path: _,
        // Rebuilds the exchange (its failed-login limiter keys clients by it):
        ipv6_prefix: _,
    } = server;
    let o = &old.server;
    let mut keys = Vec::new();
    let mut differs = |key, changed: bool| {
        if changed {
            keys.push(key);
        }
    };
    differs("server.listen", *listen != o.listen);
    differs(
        "server.max_connections",
        *max_connections != o.max_connections,
    );
    differs("server.worker_threads", *worker_threads != o.worker_threads);
    differs(
        "server.header_read_timeout",
        *header_read_timeout != o.header_read_timeout,
    );
    differs("server.idle_timeout", *idle_timeout != o.idle_timeout);
    differs(
        "server.max_header_bytes",
        *max_header_bytes != o.max_header_bytes,
    );
    let tls_restart = |t: &Option<TlsConfig>| {
        t.as_ref().map(|t| {
            let TlsConfig {
                listen,
                handshake_timeout,
                // Re-read on reload:
                cert: _,
                key: _,
                client_ca: _,
            } = t;
            (*listen, *handshake_timeout)
        })
    };
    differs("server.tls", tls_restart(tls) != tls_restart(&o.tls));
    differs(
        "admin.listen",
        admin.as_ref().map(|a| a.listen) != old.admin.as_ref().map(|a| a.listen),
    );
    differs(
        "log",
        (log.level.as_str(), log.format) != (old.log.level.as_str(), old.log.format),
    );
    differs("dev_idp", dev_idp.is_some() != old.dev_idp.is_some());
    differs("tracing", *tracing != old.tracing);
    // The listeners; who may ask and the path prefix are read per check.
    let authz_listeners =
        |a: &Option<AuthzConfig>| a.as_ref().map(|a| (a.grpc_listen, a.http_listen));
    differs(
        "authz",
        authz_listeners(authz) != authz_listeners(&old.authz),
    );
    // The CA is loaded at start; the destination lists are read per request.
    let ca = |f: &Option<ForwardProxyConfig>| f.as_ref().map(|f| (f.ca.clone(), f.leaf_validity));
    differs(
        "forward_proxy.ca",
        ca(forward_proxy) != ca(&old.forward_proxy),
    );
    keys
}

impl RunningGateway {
    /// Applies a new configuration without dropping a request: routes, auth settings, upstreams
    /// and the exchange are rebuilt (components whose configuration did not change are kept,
    /// with their caches), TLS certificates and a JWKS file are re-read, and new requests use
    /// the new configuration while in-flight ones finish on the one they started with.
    /// Components that were replaced stop their background tasks when the last request using
    /// them ends.
    pub async fn reload(&self, config: Config) -> Result<ReloadSummary, ReloadError> {
        let result = self.apply(config).await;
        self.telemetry.server.reloaded(result.is_ok());
        result
    }

    /// Counts a reload whose configuration did not even load (`cognito_gate_reloads_total`).
    pub fn reload_rejected(&self) {
        self.telemetry.server.reloaded(false);
    }

    async fn apply(&self, config: Config) -> Result<ReloadSummary, ReloadError> {
        let old = self.current.load_full();
        if old.readiness.is_draining() {
            return Err(ReloadError::Draining);
        }
        #[cfg(feature = "dev-idp")]
        let config = {
            let mut config = config;
            if let Some(addr) = self.dev_idp_addr {
                point_at_dev_idp(&mut config, addr).map_err(StartError::DevIdpUrl)?;
            }
            config
        };
        let mut summary = ReloadSummary {
            needs_restart: needs_restart(&old.config, &config),
            ..ReloadSummary::default()
        };
        let new_tls = match (&self.tls, &config.server.tls) {
            (Some(slot), Some(t)) => {
                let acceptor = tls::server_config(t).map_err(StartError::Tls)?;
                self.telemetry
                    .server
                    .certificate_expires("server", tls::not_after(&t.cert));
                Some((slot, tokio_rustls::TlsAcceptor::from(acceptor)))
            }
            _ => None,
        };
        let stop = self.stop.subscribe();
        let gateway = build_gateway(Arc::new(config), Some(&old), None, &stop, &self.telemetry)?;
        summary.keys_rebuilt = !same_arc(old.authorizer.as_ref(), gateway.authorizer.as_ref());
        summary.exchange_rebuilt = !same_arc(
            old.exchange.as_ref().map(|x| &x.api),
            gateway.exchange.as_ref().map(|x| &x.api),
        );
        if let Some(t) = &gateway.throttle {
            summary.limits_reset = t.reset_since(old.throttle.as_deref());
            summary.api_keys = t.api_key_count();
        }
        if let Some((slot, acceptor)) = new_tls {
            slot.store(Arc::new(acceptor));
            summary.tls_reloaded = true;
        }
        let retired = old.generations.retire_replaced(&gateway.generations);
        if retired > 0 {
            tracing::info!(
                routes = retired,
                "reload changed WebSocket routes: their open tunnels end after shutdown_grace"
            );
        }
        self.current.store(gateway);
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        let source = crate::config::Source {
            name: "t".into(),
            base_dir: ".".into(),
        };
        Config::parse_with_env(text, &source, &|_| None).unwrap()
    }

    #[test]
    fn restart_only_keys_are_named_and_reloaded_ones_are_not() {
        let base = parse("[server]\nlisten = \"127.0.0.1:0\"\n");
        assert!(needs_restart(&base, &base).is_empty());
        let changed = parse(
            "[server]\nlisten = \"127.0.0.1:1\"\nmax_connections = 5\nidle_timeout = \"1s\"\n\
             max_body_bytes = 5\ntrusted_proxies = [\"10.0.0.0/8\"]\n[log]\nlevel = \"debug\"\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n",
        );
        assert_eq!(
            needs_restart(&base, &changed),
            vec![
                "server.listen",
                "server.max_connections",
                "server.idle_timeout",
                "admin.listen",
                "log"
            ]
        );
    }
}
