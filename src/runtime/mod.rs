//! The running gateway: start (bind the listeners, build the components behind a readiness
//! latch), reload (`reload.rs`), and shutdown as a load balancer expects: readiness fails
//! first, then the listeners close and in-flight requests finish. Components own their
//! background tasks (`build.rs`).

mod build;
mod reload;
pub mod telemetry;

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

pub use reload::{needs_restart, ReloadError, ReloadSummary};

use crate::config::Config;
use crate::jwt::JwksFetcher;
use crate::pipeline::Gateway;
use crate::server::{self, ConnSettings, Listener, Role};
use crate::tls;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[source] crate::tls::TlsError),
    #[error(transparent)]
    Jwks(#[from] crate::jwt::JwksBuildError),
    #[error("upstream client: {0}")]
    Upstream(#[source] crate::tls::TlsError),
    #[error("{0}")]
    Exchange(#[from] crate::exchange::BuildError),
    #[error(transparent)]
    SharedState(#[from] crate::shared::SharedStateError),
    #[cfg(feature = "dev-idp")]
    #[error(transparent)]
    DevIdp(crate::dev_idp::DevIdpStartError),
    #[error("dev IdP URL: {0}")]
    DevIdpUrl(#[source] build::UrlParseError),
    #[error("forward proxy CA: {0}")]
    ForwardCa(#[source] crate::forward::ca::CaError),
}

/// A started gateway.
pub struct RunningGateway {
    pub http_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    /// Where the external authorizer answers (`[authz]`): Envoy ext_authz gRPC, and the HTTP
    /// forms.
    pub authz_grpc_addr: Option<SocketAddr>,
    pub authz_http_addr: Option<SocketAddr>,
    /// Where the embedded dev IdP listens, when `[dev_idp]` is configured.
    pub dev_idp_addr: Option<SocketAddr>,
    current: Arc<ArcSwap<Gateway>>,
    telemetry: Arc<telemetry::Telemetry>,
    tls: Option<Arc<ArcSwap<tokio_rustls::TlsAcceptor>>>,
    stop: watch::Sender<bool>,
    /// Turns true when draining starts (connections are told to move elsewhere).
    drain: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
}

impl RunningGateway {
    /// The gateway serving new requests now.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.current.load_full()
    }

    /// The Prometheus text of every metric, as the admin listener serves it.
    pub fn metrics_text(&self) -> String {
        if let Some(a) = &self.current.load().authorizer {
            a.report_key_ages();
        }
        self.telemetry.encode()
    }

    /// Drains and stops: readiness turns 503 at once while requests are still served for
    /// `shutdown_drain`; then the listeners close and in-flight requests get up to
    /// `shutdown_grace` to finish; background tasks stop with the stop signal.
    pub async fn shutdown(self) {
        let gateway = self.current.load_full();
        let server = &gateway.config.server;
        gateway.readiness.start_draining();
        self.telemetry.server.draining.set(1);
        let _ = self.drain.send(true);
        tracing::info!(
            drain_secs = server.shutdown_drain.as_secs_f64(),
            "draining: readiness now fails; still serving"
        );
        tokio::time::sleep(server.shutdown_drain).await;
        tracing::info!("closing listeners; waiting for in-flight requests");
        let _ = self.stop.send(true);
        for l in self.listeners {
            let _ = l.await;
        }
        tracing::info!("stopped");
    }
}

/// Starts the gateway on `config`.
pub async fn start(config: Config) -> Result<RunningGateway, StartError> {
    start_with(config, None).await
}

/// Starts the gateway, optionally with an injected JWKS fetcher (tests).
pub async fn start_with(
    mut config: Config,
    jwks_fetcher: Option<Arc<dyn JwksFetcher>>,
) -> Result<RunningGateway, StartError> {
    let (stop, stop_rx) = watch::channel(false);
    let (drain, drain_rx) = watch::channel(false);
    let mut listeners = Vec::new();

    // The dev IdP comes first: the JWKS fetch and the service-account logins below call it.
    let dev_idp_addr = match build::start_dev_idp(&mut config, stop_rx.clone()).await? {
        Some((addr, task)) => {
            listeners.push(task);
            Some(addr)
        }
        None => None,
    };
    let config = Arc::new(config);
    let telemetry = telemetry::Telemetry::new();
    let gateway = build::build_gateway(config.clone(), None, jwks_fetcher, &stop_rx, &telemetry)?;
    let current = Arc::new(ArcSwap::new(gateway));

    let server = &config.server;
    let forward = match &config.forward_proxy {
        Some(f) => {
            let ca = match &f.ca {
                Some(ca) => Some(
                    crate::forward::ca::Ca::load(
                        ca,
                        f.leaf_validity,
                        telemetry.forward.certificates_issued.clone(),
                    )
                    .map_err(StartError::ForwardCa)?,
                ),
                None => None,
            };
            if let Some(ca) = &ca {
                telemetry
                    .server
                    .certificate_expires("forward_proxy_ca", ca.not_after());
            }
            Some(Arc::new(crate::forward::ForwardProxy {
                ca,
                metrics: telemetry.forward.clone(),
            }))
        }
        None => None,
    };
    let settings = ConnSettings::new(
        server,
        telemetry.server.clone(),
        telemetry.registry(),
        telemetry.authz.clone(),
        forward,
    );
    let limit = Arc::new(Semaphore::new(server.max_connections));
    let bound = |addr: SocketAddr| async move {
        server::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    };
    let mut to_serve = Vec::new();
    let mut http_addr = None;
    let mut https_addr = None;
    let mut admin_addr = None;
    let mut tls_slot = None;
    if let Some(addr) = server.listen {
        let tcp = bound(addr).await?;
        http_addr = tcp.local_addr().ok();
        to_serve.push(Listener {
            tcp,
            tls: None,
            role: Role::Main,
        });
    }
    if let Some(t) = &server.tls {
        let acceptor =
            tokio_rustls::TlsAcceptor::from(tls::server_config(t).map_err(StartError::Tls)?);
        telemetry
            .server
            .certificate_expires("server", tls::not_after(&t.cert));
        let slot = Arc::new(ArcSwap::from_pointee(acceptor));
        tls_slot = Some(slot.clone());
        let tcp = bound(t.listen).await?;
        https_addr = tcp.local_addr().ok();
        to_serve.push(Listener {
            tcp,
            tls: Some(slot),
            role: Role::Main,
        });
    }
    if let Some(a) = &config.admin {
        let tcp = bound(a.listen).await?;
        admin_addr = tcp.local_addr().ok();
        to_serve.push(Listener {
            tcp,
            tls: None,
            role: Role::Admin,
        });
    }
    let mut authz_grpc_addr = None;
    let mut authz_http_addr = None;
    if let Some(a) = &config.authz {
        for (listen, role, slot) in [
            (a.grpc_listen, Role::AuthzGrpc, &mut authz_grpc_addr),
            (a.http_listen, Role::AuthzHttp, &mut authz_http_addr),
        ] {
            if let Some(addr) = listen {
                let tcp = bound(addr).await?;
                *slot = tcp.local_addr().ok();
                to_serve.push(Listener {
                    tcp,
                    tls: None,
                    role,
                });
            }
        }
    }
    for l in to_serve {
        let addr = l
            .tcp
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(addr = %addr, tls = l.tls.is_some(), role = %l.role.as_str(), "listening");
        listeners.push(tokio::spawn(server::serve(
            l,
            current.clone(),
            settings.clone(),
            limit.clone(),
            stop_rx.clone(),
            drain_rx.clone(),
        )));
    }
    Ok(RunningGateway {
        http_addr,
        https_addr,
        admin_addr,
        authz_grpc_addr,
        authz_http_addr,
        dev_idp_addr,
        current,
        telemetry,
        tls: tls_slot,
        stop,
        drain,
        listeners,
    })
}
