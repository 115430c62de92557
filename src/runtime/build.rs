//! Building the request-path state from a configuration: the JWKS cache and verifier, the
//! exchange, the upstream client and the route table. A rebuild (reload) keeps each component
//! whose configuration did not change, with its caches and its background task.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::{watch, Semaphore};

use super::telemetry::Telemetry;
use super::StartError;
use crate::config::{self, Config};
#[cfg(feature = "dev-idp")]
use crate::dev_idp;
use crate::error::UpstreamError;
use crate::exchange::Exchange;
use crate::jwt::{self, build_jwks, Authorizer, JwksFetcher, Pool, Verifier};
use crate::ops::Readiness;
use crate::pipeline::Gateway;
use crate::pipeline::RouteTable;
use crate::proxy::websocket::RouteGenerations;
use crate::proxy::UpstreamClient;
use crate::shared::SharedState;
use crate::throttle::Throttle;

/// How many pools fetch their keys at once.
pub(crate) const JWKS_FETCH_CONCURRENCY: usize = 8;

/// Builds the request-path state for `config`, keeping the JWKS cache, the exchange and the
/// upstream client of `previous` when their configuration is unchanged. New components start
/// their background tasks, which stop with them or when `stop` turns true.
pub(crate) fn build_gateway(
    config: Arc<Config>,
    previous: Option<&Gateway>,
    jwks_fetcher: Option<Arc<dyn JwksFetcher>>,
    stop: &watch::Receiver<bool>,
    telemetry: &Telemetry,
) -> Result<Arc<Gateway>, StartError> {
    let keep_keys = previous.filter(|p| same_keys(&p.config, &config));
    let authorizer = match (keep_keys, &config.cognito) {
        (Some(p), Some(c)) => {
            let a = p.authorizer.clone();
            if let Some(a) = &a {
                for (pc, pool) in c.pools.iter().zip(a.pools()) {
                    if let (Some(file), None) = (&pc.jwks.file, &pc.jwks.url) {
                        // SIGHUP re-reads a JWKS file; with a url the fetched keys stay.
                        pool.verifier
                            .jwks()
                            .replace_keys(jwt::build::read_jwks_file(file)?);
                    }
                }
            }
            a
        }
        (_, Some(c)) => {
            // At most this many pools fetch their keys at once (start-up with many pools).
            let limit = Arc::new(Semaphore::new(JWKS_FETCH_CONCURRENCY));
            let mut pools = Vec::with_capacity(c.pools.len());
            for pc in &c.pools {
                let jwks = build_jwks(&pc.jwks, jwks_fetcher.clone())?;
                jwks.set_metrics(telemetry.jwks.clone(), &pc.name);
                jwks.start_refresh(pc.jwks.refresh_interval, stop.clone(), limit.clone());
                let verifier = Arc::new(Verifier::new(
                    pc.issuers.clone(),
                    pc.app_clients.clone(),
                    c.clock_skew,
                    jwks,
                ));
                pools.push((
                    Pool {
                        name: pc.name.clone(),
                        verifier,
                    },
                    pc.issuers.clone(),
                ));
            }
            Some(Arc::new(Authorizer::new(pools)))
        }
        (_, None) => {
            // Every family shows from start-up, the JWKS ones too.
            telemetry.jwks.preset_pool(config::DEFAULT_POOL);
            None
        }
    };

    // One client for the fleet's state, shared by the exchange and the throttle; kept while
    // `[shared_state]` is unchanged.
    let shared = match previous.filter(|p| p.config.shared_state == config.shared_state) {
        Some(p) => p.shared.clone(),
        None => match &config.shared_state {
            Some(cfg) => {
                let s = Arc::new(SharedState::new(cfg, Some(telemetry.shared.clone()))?);
                s.start_probe(stop.clone());
                Some(s)
            }
            None => None,
        },
    };
    let keep_exchange = previous.filter(|p| {
        same_arc(p.authorizer.as_ref(), authorizer.as_ref())
            && p.config.private_api == config.private_api
            && p.config.exchange == config.exchange
            && p.config.service_accounts == config.service_accounts
            && p.config.shared_state == config.shared_state
            && p.config.server.ipv6_prefix == config.server.ipv6_prefix
    });
    // The exchange's tokens are verified with its pool's keys.
    let exchange_verifier = authorizer.as_ref().and_then(|a| {
        let name = config
            .exchange
            .as_ref()
            .map_or(config::DEFAULT_POOL, |e| e.pool.as_str());
        a.pool(name).map(|p| p.verifier.clone())
    });
    let exchange = match (keep_exchange, &exchange_verifier) {
        (Some(p), _) => p.exchange.clone(),
        (None, Some(v)) => Exchange::build(&config, v, &telemetry.exchange, shared.clone(), stop)
            .map_err(StartError::from)?,
        (None, None) => None,
    };
    telemetry
        .shared
        .set_configured(config.shared_state.is_some());
    let flood = flood_guard(&config, previous, shared.as_ref(), telemetry);
    let throttle = Throttle::build(
        &config,
        previous.and_then(|p| p.throttle.as_deref()),
        shared.clone(),
        &telemetry.throttle,
    );

    // The forward proxy's destinations listed by exact name: `upstream = "origin"` reaches
    // whatever addresses they resolve to.
    let verbatim = |c: &Config| -> Vec<String> {
        c.forward_proxy
            .iter()
            .flat_map(|f| f.intercept.iter())
            .filter(|d| !d.wildcard)
            .map(|d| d.host.clone())
            .collect()
    };
    let upstream = match previous.filter(|p| {
        p.config.upstream == config.upstream && verbatim(&p.config) == verbatim(&config)
    }) {
        Some(p) => p.upstream.clone(),
        None => UpstreamClient::new(&config.upstream, verbatim(&config))
            .map_err(StartError::Upstream)?,
    };
    for r in config.routes.iter().filter(|r| r.websocket) {
        telemetry.proxy.preset_route(&r.name);
    }
    let route_series = config
        .routes
        .iter()
        .map(|r| {
            let methods = r.auth.iter().map(|m| m.as_str());
            let kinds = UpstreamError::ALL.map(UpstreamError::kind);
            (
                r.name.clone(),
                telemetry.requests.route_series(&r.name, methods, &kinds),
            )
        })
        .collect();
    Ok(Arc::new(Gateway {
        routes: RouteTable::new(&config.routes),
        route_series,
        readiness: Readiness::new(
            authorizer
                .iter()
                .flat_map(|a| a.key_sets().map(|(_, k)| k.clone()))
                .collect(),
            exchange
                .as_ref()
                .map(|x| x.services.clone())
                .filter(|s| !s.is_empty()),
        ),
        authorizer,
        upstream,
        exchange,
        shared,
        throttle,
        flood,
        metrics: telemetry.requests.clone(),
        proxy_metrics: telemetry.proxy.clone(),
        generations: RouteGenerations::new(
            &config.routes,
            previous.map(|p| (&p.generations, p.config.routes.as_slice())),
        ),
        config,
        stop: stop.clone(),
    }))
}

/// Whether the authorizer's keys and caches can be kept: `[cognito]` is unchanged but for the
/// flood guard's budget.
fn same_keys(a: &Config, b: &Config) -> bool {
    match (&a.cognito, &b.cognito) {
        (Some(a), Some(b)) => a.clock_skew == b.clock_skew && a.pools == b.pools,
        (None, None) => true,
        _ => false,
    }
}

/// The flood guard (`[cognito] bad_signature_per_minute`): the previous one, with its counts,
/// while its budget, the IPv6 prefix and the shared state are unchanged.
fn flood_guard(
    config: &Config,
    previous: Option<&Gateway>,
    shared: Option<&Arc<SharedState>>,
    telemetry: &Telemetry,
) -> Option<Arc<jwt::FloodGuard>> {
    let budget = config.cognito.as_ref()?.bad_signature_per_minute;
    let kept = previous.and_then(|p| p.flood.as_ref()).filter(|f| {
        f.budget() == budget
            && previous.is_some_and(|p| {
                p.config.server.ipv6_prefix == config.server.ipv6_prefix
                    && same_arc(p.shared.as_ref(), shared)
            })
    });
    if let Some(f) = kept {
        return Some(f.clone());
    }
    jwt::FloodGuard::new(
        budget,
        config.server.ipv6_prefix,
        shared.cloned(),
        telemetry.flood.clone(),
    )
    .map(Arc::new)
}

pub(crate) fn same_arc<T>(a: Option<&Arc<T>>, b: Option<&Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// What `reqwest::Url::parse` fails with (the `url` crate's `ParseError`).
pub(crate) type UrlParseError = <reqwest::Url as std::str::FromStr>::Err;

/// Points a configuration at the running dev IdP bound on `bound`: `[private_api]` defaults to
/// its `/dev` stage, and URLs naming its configured listen address with port 0
/// (`private_api.base_url`, `cognito.jwks.url`) get the port it bound.
#[cfg(feature = "dev-idp")]
pub(crate) fn point_at_dev_idp(
    config: &mut Config,
    bound: SocketAddr,
) -> Result<(), UrlParseError> {
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
            let base_url =
                reqwest::Url::parse(&format!("http://{bound}{}", dev_idp::STAGE_PREFIX))?;
            config.private_api = Some(config::PrivateApiConfig {
                base_url,
                style: config::ApiStyle::ApiGateway,
                sign: config::Signing::None,
                headers: Vec::new(),
                ca_file: None,
                timeout: config::DEFAULT_PRIVATE_API_TIMEOUT,
                paths: config::ApiPaths::default(),
            });
        }
    }
    if let Some(c) = config.cognito.as_mut() {
        for pool in &mut c.pools {
            if let Some(url) = pool.jwks.url.as_mut() {
                follow(url);
            }
        }
    }
    Ok(())
}

/// Starts the embedded dev IdP when `[dev_idp]` is configured, and points the configuration at
/// it (see `point_at_dev_idp`).
#[cfg(feature = "dev-idp")]
pub(crate) async fn start_dev_idp(
    config: &mut Config,
    stop: watch::Receiver<bool>,
) -> Result<Option<(SocketAddr, tokio::task::JoinHandle<()>)>, StartError> {
    let (Some(cfg), Some(exchange)) = (&config.dev_idp, &config.exchange) else {
        return Ok(None);
    };
    let listen = cfg.listen;
    let issuer = match &config.cognito {
        Some(c) => c.first().issuer.clone(),
        None => format!("http://{listen}/{}", exchange.user_pool_id),
    };
    let running = dev_idp::start(cfg, exchange, issuer, stop)
        .await
        .map_err(|e| match e {
            dev_idp::DevIdpStartError::Bind { addr, source } => StartError::Bind { addr, source },
            other => StartError::DevIdp(other),
        })?;
    point_at_dev_idp(config, running.addr).map_err(StartError::DevIdpUrl)?;
    Ok(Some((running.addr, running.task)))
}

/// A build without the `dev-idp` feature refuses `[dev_idp]` when validating the configuration:
/// there is nothing to start.
#[cfg(not(feature = "dev-idp"))]
pub(crate) async fn start_dev_idp(
    _config: &mut Config,
    _stop: watch::Receiver<bool>,
) -> Result<Option<(SocketAddr, tokio::task::JoinHandle<()>)>, StartError> {
    Ok(None)
}
