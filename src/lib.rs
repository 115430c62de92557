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

use arc_swap::ArcSwap;

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
#[derive(Clone)]
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
    current: Arc<ArcSwap<Gateway>>,
    tls: Option<Arc<ArcSwap<tokio_rustls::TlsAcceptor>>>,
    stop: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    /// Background tasks with the address of the component they keep (JWKS cache or service
    /// accounts), so a reload that replaces a component stops its task.
    background: std::sync::Mutex<Vec<(usize, JoinHandle<()>)>>,
    connections: Arc<ConnCounter>,
}

/// What a reload changed, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    pub keys_rebuilt: bool,
    pub exchange_rebuilt: bool,
    pub tls_reloaded: bool,
    /// Settings that only a restart applies (listen addresses, connection limits, dev IdP).
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

impl RunningGateway {
    /// The gateway serving new requests now.
    pub fn gateway(&self) -> Arc<Gateway> {
        self.current.load_full()
    }

    /// Connections currently open on all listeners.
    pub fn active_connections(&self) -> usize {
        self.connections.get()
    }

    /// Applies a new configuration without dropping a request: routes, auth settings, upstreams
    /// and the exchange are rebuilt (components whose configuration did not change are kept,
    /// with their caches), TLS certificates and a JWKS file are re-read, and new requests use
    /// the new configuration while in-flight ones finish on the one they started with.
    pub async fn reload(&self, mut config: Config) -> Result<ReloadSummary, ReloadError> {
        let old = self.current.load_full();
        if old.readiness.is_draining() {
            return Err(ReloadError::Draining);
        }
        if let Some(addr) = self.dev_idp_addr {
            point_at_dev_idp(&mut config, addr).map_err(StartError::DevIdp)?;
        }
        let mut summary = ReloadSummary::default();
        let (o, n) = (&old.config.server, &config.server);
        if o.listen != n.listen
            || o.tls.as_ref().map(|t| t.listen) != n.tls.as_ref().map(|t| t.listen)
        {
            summary.needs_restart.push("server.listen");
        }
        if o.max_connections != n.max_connections
            || o.worker_threads != n.worker_threads
            || o.header_read_timeout != n.header_read_timeout
            || o.idle_timeout != n.idle_timeout
            || o.max_header_bytes != n.max_header_bytes
        {
            summary.needs_restart.push("server connection settings");
        }
        if old.config.admin.as_ref().map(|a| a.listen) != config.admin.as_ref().map(|a| a.listen) {
            summary.needs_restart.push("admin.listen");
        }
        if old.config.dev_idp.is_some() != config.dev_idp.is_some() {
            summary.needs_restart.push("dev_idp");
        }
        let new_tls = match (&self.tls, &config.server.tls) {
            (Some(slot), Some(t)) => {
                let acceptor = tls::server_config(t).map_err(StartError::Tls)?;
                Some((slot, tokio_rustls::TlsAcceptor::from(acceptor)))
            }
            _ => None,
        };
        let (stop_rx, built) = {
            let rx = self.stop.subscribe();
            (
                rx.clone(),
                build_gateway(Arc::new(config), Some(&old), None, rx)?,
            )
        };
        drop(stop_rx);
        let Built { gateway, tasks } = built;
        summary.keys_rebuilt = !same_arc(
            old.verifier.as_ref().map(|v| v.jwks()),
            gateway.verifier.as_ref().map(|v| v.jwks()),
        );
        summary.exchange_rebuilt = !same_arc(
            old.exchange.as_ref().map(|x| &x.api),
            gateway.exchange.as_ref().map(|x| &x.api),
        );
        if let Some((slot, acceptor)) = new_tls {
            slot.store(Arc::new(acceptor));
            summary.tls_reloaded = true;
        }
        self.current.store(gateway.clone());
        let mut background = self.background.lock().expect("background lock");
        background.extend(tasks);
        let live = live_components(&gateway);
        background.retain(|(owner, task)| {
            let keep = live.contains(owner);
            if !keep {
                task.abort();
            }
            keep
        });
        Ok(summary)
    }

    /// Drains and stops: readiness turns 503 at once while requests are still served for
    /// `shutdown_drain`; then the listeners close and in-flight requests get up to
    /// `shutdown_grace` to finish; background tasks stop last.
    pub async fn shutdown(self) {
        let gateway = self.current.load_full();
        let server = &gateway.config.server;
        gateway.readiness.start_draining();
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
        for (_, b) in self.background.into_inner().expect("background lock") {
            b.abort();
        }
        tracing::info!("stopped");
    }
}

fn same_arc<T>(a: Option<&Arc<T>>, b: Option<&Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

fn owner<T>(a: &Arc<T>) -> usize {
    Arc::as_ptr(a) as *const () as usize
}

/// The components of a gateway whose background tasks must keep running.
fn live_components(g: &Gateway) -> Vec<usize> {
    let mut v = Vec::new();
    if let Some(verifier) = &g.verifier {
        v.push(owner(verifier.jwks()));
    }
    if let Some(x) = &g.exchange {
        v.push(owner(&x.services));
    }
    v
}

struct Built {
    gateway: Arc<Gateway>,
    tasks: Vec<(usize, JoinHandle<()>)>,
}

/// Builds the request-path state for `config`, keeping the JWKS cache, the exchange and the
/// upstream client of `previous` when their configuration is unchanged.
fn build_gateway(
    config: Arc<Config>,
    previous: Option<&Gateway>,
    jwks_fetcher: Option<Arc<dyn JwksFetcher>>,
    stop_rx: watch::Receiver<bool>,
) -> Result<Built, StartError> {
    let mut tasks = Vec::new();
    let metrics = previous
        .map(|p| p.metrics.clone())
        .unwrap_or_else(|| Arc::new(metrics::Metrics::new()));

    let keep_keys = previous.filter(|p| p.config.cognito == config.cognito);
    let verifier = match (keep_keys, &config.cognito) {
        (Some(p), Some(c)) => {
            let v = p.verifier.clone();
            if let (Some(v), Some(file)) = (&v, &c.jwks.file) {
                // SIGHUP re-reads the JWKS file; with a url the fetched keys stay in force.
                if c.jwks.url.is_none() {
                    let body = std::fs::read(file)
                        .map_err(|e| StartError::JwksFile(format!("{}: {e}", file.display())))?;
                    let keys = jwt::parse_jwks(&body, &file.display().to_string())
                        .map_err(|e| StartError::JwksFile(format!("{}: {e}", file.display())))?;
                    v.jwks().replace_keys(keys);
                }
            }
            v
        }
        (_, Some(c)) => {
            let jwks = build_jwks(&c.jwks, jwks_fetcher)?;
            let m = metrics.clone();
            jwks.set_observer(Box::new(move |outcome| {
                let outcome = match outcome {
                    jwt::RefreshOutcome::Updated { .. } => "success",
                    jwt::RefreshOutcome::Failed(_) => "failure",
                };
                m.jwks_refresh
                    .get_or_create(&metrics::OutcomeLabel { outcome })
                    .inc();
            }));
            tasks.push((
                owner(&jwks),
                tokio::spawn(
                    jwks.clone()
                        .run_refresh(c.jwks.refresh_interval, stop_rx.clone()),
                ),
            ));
            Some(Arc::new(Verifier::new(
                c.issuer.clone(),
                c.app_clients.clone(),
                c.clock_skew,
                jwks,
            )))
        }
        (_, None) => None,
    };

    let keep_exchange = previous.filter(|p| {
        same_arc(p.verifier.as_ref(), verifier.as_ref())
            && p.config.private_api == config.private_api
            && p.config.exchange == config.exchange
            && p.config.service_accounts == config.service_accounts
    });
    let exchange = match (keep_exchange, &verifier) {
        (Some(p), _) => p.exchange.clone(),
        (None, Some(v)) => {
            let x = build_exchange(&config, v, &metrics)?;
            if let Some(x) = &x {
                for t in x.services.spawn(stop_rx.clone()) {
                    tasks.push((owner(&x.services), t));
                }
            }
            x
        }
        (None, None) => None,
    };

    let upstream = match previous.filter(|p| p.config.upstream == config.upstream) {
        Some(p) => p.upstream.clone(),
        None => UpstreamClient::new(&config.upstream).map_err(StartError::Upstream)?,
    };
    let route_series = config
        .routes
        .iter()
        .map(|r| {
            let methods = r.auth.iter().map(|m| m.as_str());
            (r.name.clone(), metrics.route_series(&r.name, methods))
        })
        .collect();
    let gateway = Arc::new(Gateway {
        routes: RouteTable::new(&config.routes),
        route_series,
        readiness: Readiness::new(
            verifier.as_ref().map(|v| v.jwks().clone()),
            exchange
                .as_ref()
                .map(|x| x.services.clone())
                .filter(|s| !s.is_empty()),
        ),
        verifier,
        upstream,
        exchange,
        metrics,
        config,
    });
    Ok(Built { gateway, tasks })
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
    let Built { gateway, tasks } =
        build_gateway(config.clone(), None, jwks_fetcher, stop_rx.clone())?;
    let current = Arc::new(ArcSwap::new(gateway));

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
    for l in to_serve {
        tracing::info!(addr = ?l.tcp.local_addr().ok(), tls = l.tls.is_some(), role = ?l.role, "listening");
        listeners.push(tokio::spawn(server::serve(
            l,
            current.clone(),
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
        current,
        tls: tls_slot,
        stop,
        listeners,
        background: std::sync::Mutex::new(tasks),
        connections,
    })
}

/// Points a configuration at the running dev IdP bound on `bound`: `[private_api]` defaults to
/// its `/dev` stage, and URLs naming its configured listen address with port 0
/// (`private_api.base_url`, `cognito.jwks.url`) get the port it bound.
fn point_at_dev_idp(config: &mut Config, bound: SocketAddr) -> Result<(), String> {
    let Some(listen) = config.dev_idp.as_ref().map(|d| d.listen) else {
        return Ok(());
    };
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
                .map_err(|e| e.to_string())?;
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
    Ok(())
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
    point_at_dev_idp(config, running.addr)
        .map_err(|e| StartError::DevIdp(format!("dev IdP URL: {e}")))?;
    Ok(Some(running))
}
