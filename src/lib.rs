//! cognito-gate: an in-VPC gateway that verifies Cognito JWTs exactly like an API Gateway Cognito
//! user pool authorizer and forwards what it allows to private upstream APIs.
//!
//! `start(config)` binds the listeners and returns a `RunningGateway` whose `shutdown()` drains
//! it the way a load balancer expects: readiness fails first, then listeners close and in-flight
//! requests finish.
#![forbid(unsafe_code)]

pub mod body;
pub mod config;
pub mod conn_guard;
pub mod dev_idp;
pub mod error;
pub mod exchange;
pub mod explain;
pub mod jwt;
pub mod logging;
pub mod login_api;
pub mod metrics;
pub mod pipeline;
pub mod proxy;
pub mod server;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::exchange::{CredentialCache, FailureLimiter, PrivateApi, ServiceAccounts};
use crate::jwt::{HttpJwksFetcher, JwksCache, JwksFetcher, Verifier};
use crate::pipeline::{Gateway, Readiness};
use crate::proxy::{RouteTable, UpstreamClient};
use crate::server::{ConnCounter, ConnSettings, Listener, Role};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cognito.jwks.file: {0}")]
    JwksFile(String),
    #[error("cognito.jwks.url: {0}")]
    JwksClient(String),
    #[error("upstream client: {0}")]
    Upstream(String),
    #[error("private_api: {0}")]
    PrivateApi(String),
    #[error("{0}")]
    DevIdp(String),
}

/// The credential-exchange side of the gateway.
pub struct Exchange {
    pub api: Arc<PrivateApi>,
    pub cache: Arc<CredentialCache>,
    pub services: Arc<ServiceAccounts>,
    pub limiter: Arc<FailureLimiter>,
}

/// Builds the exchange from `[private_api]` and `[exchange]`, when both are configured.
pub fn build_exchange(
    config: &Config,
    verifier: &Arc<Verifier>,
    metrics: &Arc<metrics::Metrics>,
) -> Result<Option<Exchange>, StartError> {
    let (Some(api_cfg), Some(ex_cfg)) = (&config.private_api, &config.exchange) else {
        return Ok(None);
    };
    let api = Arc::new(
        PrivateApi::new(api_cfg.clone(), ex_cfg.clone())
            .map_err(StartError::PrivateApi)?
            .with_metrics(metrics.clone()),
    );
    let limiter = Arc::new(FailureLimiter::new(ex_cfg.max_failures_per_minute));
    let clock = exchange::system_clock();
    Ok(Some(Exchange {
        cache: CredentialCache::new(
            api.clone(),
            verifier.clone(),
            limiter.clone(),
            clock.clone(),
        ),
        services: ServiceAccounts::new(
            &config.service_accounts,
            api.clone(),
            verifier.clone(),
            clock,
        ),
        api,
        limiter,
    }))
}

/// Builds the JWKS cache of a configuration: seeded from the file, fetching from the URL.
pub fn build_jwks(
    cfg: &config::JwksConfig,
    fetcher_override: Option<Arc<dyn JwksFetcher>>,
) -> Result<Arc<JwksCache>, StartError> {
    let seed = match &cfg.file {
        Some(path) => {
            let body = std::fs::read(path)
                .map_err(|e| StartError::JwksFile(format!("{}: {e}", path.display())))?;
            let keys = jwt::parse_jwks(&body, &path.display().to_string())
                .map_err(|e| StartError::JwksFile(format!("{}: {e}", path.display())))?;
            Some(keys)
        }
        None => None,
    };
    let fetcher: Option<Arc<dyn JwksFetcher>> = match (fetcher_override, &cfg.url) {
        (Some(f), _) => Some(f),
        (None, Some(url)) => Some(Arc::new(
            HttpJwksFetcher::new(cfg, url.clone()).map_err(StartError::JwksClient)?,
        )),
        (None, None) => None,
    };
    Ok(JwksCache::new(
        seed,
        fetcher,
        cfg.refetch_cooldown,
        cfg.max_stale,
    ))
}

/// A started gateway.
pub struct RunningGateway {
    pub http_addr: Option<SocketAddr>,
    pub https_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    /// Where the embedded dev IdP listens, when `[dev_idp]` is configured.
    pub dev_idp_addr: Option<SocketAddr>,
    gateway: Arc<Gateway>,
    stop: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    connections: Arc<ConnCounter>,
}

impl RunningGateway {
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Connections currently open on all listeners.
    pub fn active_connections(&self) -> usize {
        self.connections.get()
    }

    /// Drains and stops: readiness turns 503 at once while requests are still served for
    /// `shutdown_drain`; then the listeners close and in-flight requests get up to
    /// `shutdown_grace` to finish; background tasks stop last.
    pub async fn shutdown(self) {
        let server = &self.gateway.config.server;
        self.gateway.readiness.start_draining();
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
        for b in self.background {
            b.abort();
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
    let mut background = Vec::new();
    let mut listeners = Vec::new();

    // The dev IdP comes first: the JWKS fetch and the service-account logins below call it.
    let dev_idp_addr = match start_dev_idp(&mut config, stop_rx.clone()).await? {
        Some(running) => {
            listeners.push(running.task);
            Some(running.addr)
        }
        None => None,
    };
    let config = Arc::new(config);

    let jwks = match &config.cognito {
        Some(c) => Some(build_jwks(&c.jwks, jwks_fetcher)?),
        None => None,
    };
    let verifier = match (&config.cognito, &jwks) {
        (Some(c), Some(j)) => Some(Arc::new(Verifier::new(
            c.issuer.clone(),
            c.app_clients.clone(),
            c.clock_skew,
            j.clone(),
        ))),
        _ => None,
    };
    let metrics = Arc::new(metrics::Metrics::new());
    if let Some(j) = &jwks {
        let m = metrics.clone();
        j.set_observer(Box::new(move |outcome| {
            let outcome = match outcome {
                jwt::RefreshOutcome::Updated { .. } => "success",
                jwt::RefreshOutcome::Failed(_) => "failure",
            };
            m.jwks_refresh
                .get_or_create(&metrics::OutcomeLabel { outcome })
                .inc();
        }));
    }
    let exchange = match &verifier {
        Some(v) => build_exchange(&config, v, &metrics)?,
        None => None,
    };
    if let Some(x) = &exchange {
        background.extend(x.services.spawn(stop_rx.clone()));
    }
    if let (Some(c), Some(j)) = (&config.cognito, &jwks) {
        background.push(tokio::spawn(
            j.clone()
                .run_refresh(c.jwks.refresh_interval, stop_rx.clone()),
        ));
    }
    let upstream = UpstreamClient::new(&config.upstream).map_err(StartError::Upstream)?;
    let gateway = Arc::new(Gateway {
        routes: RouteTable::new(&config.routes),
        verifier,
        upstream,
        readiness: Readiness::new(
            jwks,
            exchange
                .as_ref()
                .map(|x| x.services.clone())
                .filter(|s| !s.is_empty()),
        ),
        exchange,
        metrics,
        config: config.clone(),
    });

    let server = &config.server;
    let settings = ConnSettings::from_config(server);
    let limit = Arc::new(Semaphore::new(server.max_connections));
    let connections = Arc::new(ConnCounter::default());
    let bound = |addr: SocketAddr| async move {
        server::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    };
    let mut to_serve = Vec::new();
    let mut http_addr = None;
    let mut https_addr = None;
    let mut admin_addr = None;
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
        let tcp = bound(t.listen).await?;
        https_addr = tcp.local_addr().ok();
        to_serve.push(Listener {
            tcp,
            tls: Some(acceptor),
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
    for l in to_serve {
        tracing::info!(addr = ?l.tcp.local_addr().ok(), tls = l.tls.is_some(), role = ?l.role, "listening");
        listeners.push(tokio::spawn(server::serve(
            l,
            gateway.clone(),
            settings.clone(),
            limit.clone(),
            connections.clone(),
            stop_rx.clone(),
        )));
    }
    Ok(RunningGateway {
        http_addr,
        https_addr,
        admin_addr,
        dev_idp_addr,
        gateway,
        stop,
        listeners,
        background,
        connections,
    })
}

/// Starts the embedded dev IdP when `[dev_idp]` is configured, and points the configuration at
/// it: `[private_api]` defaults to its `/dev` stage, and URLs naming its configured listen
/// address with port 0 (`private_api.base_url`, `cognito.jwks.url`) get the port it bound.
async fn start_dev_idp(
    config: &mut Config,
    stop: watch::Receiver<bool>,
) -> Result<Option<dev_idp::RunningDevIdp>, StartError> {
    let (Some(cfg), Some(exchange)) = (&config.dev_idp, &config.exchange) else {
        return Ok(None);
    };
    let listen = cfg.listen;
    let issuer = match &config.cognito {
        Some(c) => c.issuer.clone(),
        None => format!("http://{listen}/{}", exchange.user_pool_id),
    };
    let running = dev_idp::start(cfg, exchange, issuer, stop)
        .await
        .map_err(|e| match e {
            dev_idp::DevIdpStartError::Bind { addr, source } => StartError::Bind { addr, source },
            other => StartError::DevIdp(other.to_string()),
        })?;
    let bound = running.addr;
    let follow = |url: &mut reqwest::Url| {
        let names_listen = url.port() == Some(0)
            && url.host_str().map(|h| h.trim_matches(['[', ']']))
                == Some(listen.ip().to_string().as_str());
        if listen.port() == 0 && names_listen {
            let _ = url.set_port(Some(bound.port()));
        }
    };
    match &mut config.private_api {
        Some(api) => follow(&mut api.base_url),
        None => {
            let base_url = reqwest::Url::parse(&format!("http://{bound}{}", dev_idp::STAGE_PREFIX))
                .map_err(|e| StartError::DevIdp(format!("dev IdP URL: {e}")))?;
            config.private_api = Some(config::PrivateApiConfig {
                base_url,
                style: config::ApiStyle::ApiGateway,
                headers: Vec::new(),
                ca_file: None,
                timeout: config::DEFAULT_PRIVATE_API_TIMEOUT,
                paths: config::ApiPaths::default(),
            });
        }
    }
    if let Some(url) = config.cognito.as_mut().and_then(|c| c.jwks.url.as_mut()) {
        follow(url);
    }
    Ok(Some(running))
}
