//! Shared state in Valkey or Redis (`[shared_state]`), for a fleet of replicas: a small set of
//! operations, each bounded by `timeout`, on a client that reconnects by itself (redis-rs's
//! connection manager, or its cluster client). Valkey being down or slow never fails a request:
//! every operation returns `Unavailable` instead, the replica acts on its own, and calls are
//! paused with a doubling backoff (100 ms .. 5 s) after failures, so a dead server is probed,
//! not hammered. The state change is logged once each way. Values are sealed (`seal.rs`).

mod buckets;
mod counters;
pub(crate) use counters::implausible;
pub mod metrics;
pub mod seal;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;

use arc_swap::ArcSwapOption;
use base64::Engine;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Client, RedisError};

pub(crate) use buckets::Lease;
pub use seal::Sealer;

use crate::config::SharedStateConfig;
use metrics::{SharedMetrics, SharedOpLabels};

/// Why the shared state's client could not be built (at start or reload; nothing connects yet).
#[derive(Debug, thiserror::Error)]
pub enum SharedStateError {
    #[error("shared_state.encryption_key: must be 32 bytes, base64")]
    EncryptionKey,
    #[error("shared_state.ca_file: {}: {source}", path.display())]
    CaFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("shared_state.url: {0}")]
    Url(#[source] RedisError),
    #[error("shared_state: {0}")]
    Client(#[source] RedisError),
}

/// Valkey could not answer in time (down, slow, or refusing): act alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("shared state unavailable")]
pub struct Unavailable;

const MIN_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Calls paused after failures: the first call after the pause probes.
#[derive(Default)]
struct Health {
    down: bool,
    pause: Duration,
    retry_at: Option<Instant>,
}

enum Backend {
    Single(ConnectionManager),
    Cluster(Box<ClusterBackend>),
}

/// A cluster client and its connection, made on first use (in the request that needs it, one
/// at a time; the others fail fast meanwhile).
struct ClusterBackend {
    client: ClusterClient,
    conn: ArcSwapOption<ClusterConnection>,
    connecting: AtomicBool,
}

pub struct SharedState {
    backend: Backend,
    timeout: Duration,
    sealer: Sealer,
    health: Mutex<Health>,
    metrics: Option<SharedMetrics>,
    /// The health probe, owned here: it ends with the shared state.
    prober: std::sync::OnceLock<tokio_util::task::AbortOnDropHandle<()>>,
}

/// How often the health probe pings, so that `shared_state_up` is true without traffic and a
/// replica that was acting alone shares again soon after Valkey is back.
const PROBE_EVERY: Duration = Duration::from_secs(5);

/// Deletes a lock only if it still holds this holder's token.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

impl SharedState {
    /// Builds the client (no connection yet: it is made on first use, so start-up never waits
    /// for Valkey).
    pub fn new(
        cfg: &SharedStateConfig,
        metrics: Option<SharedMetrics>,
    ) -> Result<Self, SharedStateError> {
        let master: [u8; 32] = base64::engine::general_purpose::STANDARD
            .decode(cfg.encryption_key.expose())
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or(SharedStateError::EncryptionKey)?;
        let certs = match &cfg.ca_file {
            Some(path) => Some(
                std::fs::read(path).map_err(|source| SharedStateError::CaFile {
                    path: path.clone(),
                    source,
                })?,
            ),
            None => None,
        };
        let tls = |root_cert: Vec<u8>| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root_cert),
        };
        let backend = if cfg.cluster {
            let mut b = ClusterClient::builder(vec![cfg.url.as_str()])
                .connection_timeout(cfg.timeout.max(Duration::from_millis(50)))
                .response_timeout(cfg.timeout)
                .retries(2)
                .min_retry_wait(MIN_PAUSE.as_millis() as u64)
                .max_retry_wait(MAX_PAUSE.as_millis() as u64);
            if let Some(u) = &cfg.username {
                b = b.username(u);
            }
            if let Some(p) = &cfg.password {
                b = b.password(p.expose());
            }
            if let Some(root) = certs {
                b = b.certs(tls(root));
            }
            Backend::Cluster(Box::new(ClusterBackend {
                client: b.build().map_err(SharedStateError::Client)?,
                conn: ArcSwapOption::empty(),
                connecting: AtomicBool::new(false),
            }))
        } else {
            let mut info = redis::IntoConnectionInfo::into_connection_info(cfg.url.as_str())
                .map_err(SharedStateError::Url)?;
            let mut settings = info.redis_settings().clone();
            if let Some(u) = &cfg.username {
                settings = settings.set_username(u);
            }
            if let Some(p) = &cfg.password {
                settings = settings.set_password(p.expose());
            }
            info = info.set_redis_settings(settings);
            let client = match certs {
                Some(root) => Client::build_with_tls(info, tls(root)),
                None => Client::open(info),
            }
            .map_err(SharedStateError::Client)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(cfg.timeout.max(Duration::from_millis(50))))
                .set_response_timeout(Some(cfg.timeout))
                .set_number_of_retries(1)
                .set_min_delay(MIN_PAUSE)
                .set_max_delay(MAX_PAUSE);
            Backend::Single(
                ConnectionManager::new_lazy_with_config(client, config)
                    .map_err(SharedStateError::Client)?,
            )
        };
        Ok(SharedState {
            backend,
            timeout: cfg.timeout,
            sealer: Sealer::new(&master, &cfg.key_prefix),
            health: Mutex::new(Health::default()),
            metrics,
            prober: std::sync::OnceLock::new(),
        })
    }

    /// Starts the health probe (once): a PING now and every `PROBE_EVERY`. It stops when the
    /// shared state is dropped or `shutdown` turns true.
    pub(crate) fn start_probe(self: &Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        if self.prober.get().is_some() {
            return;
        }
        let this = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            loop {
                let Some(shared) = this.upgrade() else {
                    return;
                };
                let _ = shared.ping().await;
                drop(shared);
                tokio::select! {
                    _ = tokio::time::sleep(PROBE_EVERY) => {}
                    _ = shutdown.changed() => return,
                }
            }
        });
        let _ = self
            .prober
            .set(tokio_util::task::AbortOnDropHandle::new(task));
    }

    /// `PING`: records whether Valkey answers.
    pub async fn ping(&self) -> Result<(), Unavailable> {
        let _: String = self.run("ping", &redis::cmd("PING")).await?;
        Ok(())
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// May an operation be tried now? While paused, no.
    fn admitted(&self) -> bool {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        match h.retry_at {
            Some(at) if Instant::now() < at => false,
            Some(_) => {
                // This call probes; the others keep failing fast until it has answered.
                h.retry_at = Some(Instant::now() + h.pause);
                true
            }
            None => true,
        }
    }

    fn record(&self, op: &'static str, ok: bool, started: Instant) {
        let mut h = self.health.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            if h.down {
                tracing::info!("shared state reachable again: sharing with the fleet");
            }
            *h = Health::default();
        } else {
            if !h.down {
                tracing::warn!(
                    "shared state unreachable or slow: this replica acts on its own until it is back"
                );
            }
            h.down = true;
            h.pause = if h.pause.is_zero() {
                MIN_PAUSE
            } else {
                (h.pause * 2).min(MAX_PAUSE)
            };
            h.retry_at = Some(Instant::now() + h.pause);
        }
        let down = h.down;
        drop(h);
        if let Some(m) = &self.metrics {
            m.up.set(i64::from(!down));
            let outcome = if ok { "ok" } else { "error" };
            m.ops.get_or_create(&SharedOpLabels { op, outcome }).inc();
            m.duration.observe(started.elapsed().as_secs_f64());
        }
    }

    /// Runs one command within `timeout`.
    async fn run<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T, Unavailable> {
        if !self.admitted() {
            if let Some(m) = &self.metrics {
                m.ops
                    .get_or_create(&SharedOpLabels {
                        op,
                        outcome: "skipped",
                    })
                    .inc();
            }
            return Err(Unavailable);
        }
        let started = Instant::now();
        let span = tracing::debug_span!(target: "cognito_gate::shared", "valkey",
            otel.kind = "client", db.operation.name = op);
        let result = tokio::time::timeout(self.timeout, self.query(cmd))
            .instrument(span)
            .await;
        let value = match result {
            Ok(Ok(v)) => redis::from_redis_value(v).ok(),
            Ok(Err(e)) => {
                let cause = crate::cause::Cause::of(&e);
                tracing::debug!(op, error = %e, cause = %cause.as_str(), "shared state operation failed: {cause}");
                None
            }
            Err(_) => None,
        };
        self.record(op, value.is_some(), started);
        value.ok_or(Unavailable)
    }

    async fn query(&self, cmd: &redis::Cmd) -> Result<redis::Value, RedisError> {
        match &self.backend {
            Backend::Single(m) => {
                let mut m = m.clone();
                m.req_packed_command(cmd).await
            }
            Backend::Cluster(cluster) => {
                let ClusterBackend {
                    client,
                    conn,
                    connecting,
                } = &**cluster;
                let mut c = match conn.load_full() {
                    Some(c) => (*c).clone(),
                    None => {
                        // One connection attempt at a time; the others fail fast meanwhile.
                        if connecting.swap(true, Ordering::AcqRel) {
                            return Err(RedisError::from((
                                redis::ErrorKind::Io,
                                "cluster connection being made",
                            )));
                        }
                        let made = client.get_async_connection().await;
                        connecting.store(false, Ordering::Release);
                        let made = made?;
                        conn.store(Some(Arc::new(made.clone())));
                        made
                    }
                };
                c.req_packed_command(cmd).await
            }
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Unavailable> {
        self.run("get", redis::cmd("GET").arg(key)).await
    }

    /// Two keys in one round trip (they share a hash tag, so one slot in cluster mode).
    pub(crate) async fn get2(
        &self,
        a: &str,
        b: &str,
    ) -> Result<(Option<Vec<u8>>, Option<Vec<u8>>), Unavailable> {
        let v: Vec<Option<Vec<u8>>> = self.run("mget", redis::cmd("MGET").arg(a).arg(b)).await?;
        let mut it = v.into_iter();
        Ok((it.next().flatten(), it.next().flatten()))
    }

    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), Unavailable> {
        let ms = ttl.as_millis().max(1) as u64;
        let _: redis::Value = self
            .run(
                "set",
                redis::cmd("SET").arg(key).arg(value).arg("PX").arg(ms),
            )
            .await?;
        Ok(())
    }

    /// `SET NX PX`: true when this call created the key (a lock taken).
    pub(crate) async fn set_nx(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, Unavailable> {
        let ms = ttl.as_millis().max(1) as u64;
        let v: Option<String> = self
            .run(
                "lock",
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms),
            )
            .await?;
        Ok(v.is_some())
    }

    /// Deletes `key` if it still holds `value` (a lock released by its holder only).
    pub(crate) async fn del_if(&self, key: &str, value: &[u8]) -> Result<(), Unavailable> {
        let _: i64 = self
            .run(
                "unlock",
                redis::cmd("EVAL").arg(UNLOCK).arg(1).arg(key).arg(value),
            )
            .await?;
        Ok(())
    }

    /// Seals and stores a value.
    pub(crate) async fn set_sealed(
        &self,
        key: &str,
        plain: &[u8],
        ttl: Duration,
    ) -> Result<(), Unavailable> {
        let sealed = self.sealer.seal(key, plain);
        self.set(key, &sealed, ttl).await
    }

    /// Opens a value read under `key`; one that does not open is ignored (and logged).
    pub fn open(&self, key: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        let plain = self.sealer.open(key, sealed);
        if plain.is_none() {
            tracing::warn!("a shared state value did not open (another encryption_key, or copied under another key); ignored");
        }
        plain
    }
}
