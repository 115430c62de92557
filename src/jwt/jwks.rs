//! The JWKS cache: a read-mostly snapshot of the keys, refreshed in the background, refetched at
//! most once per cooldown when a token names an unknown `kid` (one fetch shared by every waiting
//! request), and kept serving after fetch failures for at most `max_stale`.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument;

use arc_swap::ArcSwap;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use tokio::time::Instant;

use super::keys::{parse_jwks, Key, KeySet};

/// Where keys come from over the network. The real one is `HttpJwksFetcher`; tests inject fakes.
pub trait JwksFetcher: Send + Sync + 'static {
    /// Fetches the JWKS document body.
    fn fetch(&self) -> BoxFuture<'static, Result<Vec<u8>, String>>;
    /// A description for logs (never carries secrets).
    fn describe(&self) -> String;
}

/// Fetches the JWKS with reqwest, through the configured headers and extra CA roots.
pub struct HttpJwksFetcher {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl HttpJwksFetcher {
    pub fn new(
        cfg: &crate::config::JwksConfig,
        url: reqwest::Url,
    ) -> Result<Self, crate::tls::ClientError> {
        let mut headers = http::HeaderMap::new();
        for (k, v) in &cfg.headers {
            headers.insert(k.clone(), v.clone());
        }
        let builder = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("cognito-gate/", env!("CARGO_PKG_VERSION")));
        let client = crate::tls::reqwest_client(builder, cfg.ca_file.as_deref())?;
        Ok(HttpJwksFetcher { client, url })
    }
}

/// Upper bound on a JWKS document, so a misbehaving endpoint cannot exhaust memory.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

impl JwksFetcher for HttpJwksFetcher {
    fn fetch(&self) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let req = self.client.get(self.url.clone());
        async move {
            let mut resp = req.send().await.map_err(describe_reqwest)?;
            let status = resp.status();
            if !status.is_success() {
                return Err(format!("HTTP status {status}"));
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(describe_reqwest)? {
                if body.len() + chunk.len() > MAX_JWKS_BYTES {
                    return Err(format!("document larger than {MAX_JWKS_BYTES} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        }
        .boxed()
    }

    fn describe(&self) -> String {
        let mut u = self.url.clone();
        u.set_query(None);
        u.to_string()
    }
}

/// The cause first (DNS, refused, timeout, TLS ...), then the error chain: reqwest errors name
/// the URL, never a secret.
fn describe_reqwest(e: reqwest::Error) -> String {
    let cause = crate::cause::Cause::of_reqwest(&e);
    let detail = crate::cause::chain(&e.without_url());
    match cause {
        crate::cause::Cause::Other => detail,
        c => format!("{c} [cause={}]: {detail}", c.as_str()),
    }
}

/// The keys in force, with when they were last confirmed.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub keys: KeySet,
    /// When the keys were last loaded successfully (`None`: never).
    pub loaded_at: Option<Instant>,
    /// Whether this snapshot can go stale (keys from a URL) or not (a file alone).
    pub expires: bool,
}

/// Why a key could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLookupError {
    /// No key with that `kid`, even after the refetch the cooldown allowed.
    UnknownKid,
    /// No keys are loaded, or the cached ones are older than `max_stale`.
    Unavailable,
}

/// The outcome of one refresh, for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    Updated { keys: usize },
    Failed(String),
}

type SharedRefresh = Shared<BoxFuture<'static, RefreshOutcome>>;

#[derive(Default)]
struct Inflight {
    current: Option<SharedRefresh>,
    last_kid_refetch: Option<Instant>,
}

pub struct JwksCache {
    snapshot: ArcSwap<Snapshot>,
    fetcher: Option<Arc<dyn JwksFetcher>>,
    refetch_cooldown: Duration,
    max_stale: Duration,
    inflight: Mutex<Inflight>,
    fetches: std::sync::atomic::AtomicU64,
    /// Where fetch outcomes are counted, with the pool's name (`set_metrics`).
    metrics: std::sync::OnceLock<(super::metrics::JwksMetrics, String)>,
    /// The background refresh, owned here: it ends when the cache is dropped.
    refresher: std::sync::OnceLock<tokio_util::task::AbortOnDropHandle<()>>,
}

impl JwksCache {
    /// A cache seeded with `seed` (from a file) that fetches from `fetcher` when there is one.
    pub fn new(
        seed: Option<KeySet>,
        fetcher: Option<Arc<dyn JwksFetcher>>,
        refetch_cooldown: Duration,
        max_stale: Duration,
    ) -> Arc<Self> {
        let expires = fetcher.is_some();
        let snapshot = match seed {
            Some(keys) => Snapshot {
                keys,
                loaded_at: Some(Instant::now()),
                expires,
            },
            None => Snapshot {
                keys: KeySet::default(),
                loaded_at: None,
                expires,
            },
        };
        Arc::new(JwksCache {
            snapshot: ArcSwap::from_pointee(snapshot),
            fetcher,
            refetch_cooldown,
            max_stale,
            inflight: Mutex::new(Inflight::default()),
            fetches: Default::default(),
            metrics: std::sync::OnceLock::new(),
            refresher: std::sync::OnceLock::new(),
        })
    }

    /// Counts every fetch's outcome under `pool` in `metrics` (once; later calls are ignored).
    pub(crate) fn set_metrics(&self, metrics: super::metrics::JwksMetrics, pool: &str) {
        metrics.preset_pool(pool);
        let _ = self.metrics.set((metrics, pool.to_string()));
    }

    /// Sets the pool's `jwks_age_seconds` (at scrape time: the age grows between fetches).
    pub(crate) fn report_age(&self) {
        if let (Some((metrics, pool)), Some(age)) = (self.metrics.get(), self.age()) {
            metrics.set_age(pool, age);
        }
    }

    /// The current snapshot (cheap; never blocks).
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Keys are loaded and not older than `max_stale`.
    pub(crate) fn is_usable(&self) -> bool {
        self.usable(&self.snapshot.load())
    }

    fn usable(&self, snap: &Snapshot) -> bool {
        match snap.loaded_at {
            None => false,
            Some(at) => !snap.expires || at.elapsed() <= self.max_stale,
        }
    }

    /// Replaces the keys (a re-read JWKS file when there is no url).
    pub(crate) fn replace_keys(&self, keys: KeySet) {
        let expires = self.snapshot.load().expires;
        self.snapshot.store(Arc::new(Snapshot {
            keys,
            loaded_at: Some(Instant::now()),
            expires,
        }));
    }

    /// The key that has this `kid` and fingerprint is in the current, usable key set (no
    /// fetch). Another key published under the same `kid` does not count.
    pub(crate) fn has_usable_key(&self, kid: &str, fingerprint: &[u8; 32]) -> bool {
        let snap = self.snapshot.load();
        snap.keys
            .get(kid)
            .is_some_and(|k| k.fingerprint == *fingerprint)
            && self.usable(&snap)
    }

    /// Seconds since the keys were last loaded, if ever.
    pub fn age(&self) -> Option<Duration> {
        self.snapshot.load().loaded_at.map(|at| at.elapsed())
    }

    /// The key for `kid`, refetching the JWKS (single-flight, at most once per cooldown) when the
    /// kid is unknown.
    pub async fn key(self: &Arc<Self>, kid: &str) -> Result<Arc<Key>, KeyLookupError> {
        {
            let snap = self.snapshot.load();
            if let Some(key) = snap.keys.get(kid) {
                return if self.usable(&snap) {
                    Ok(key.clone())
                } else {
                    Err(KeyLookupError::Unavailable)
                };
            }
        }
        let Some(refresh) = self.join_or_start_kid_refetch() else {
            return Err(self.missing());
        };
        refresh.await;
        let snap = self.snapshot.load();
        match snap.keys.get(kid) {
            Some(key) if self.usable(&snap) => Ok(key.clone()),
            Some(_) => Err(KeyLookupError::Unavailable),
            None => Err(self.missing()),
        }
    }

    fn missing(&self) -> KeyLookupError {
        if self.is_usable() {
            KeyLookupError::UnknownKid
        } else {
            KeyLookupError::Unavailable
        }
    }

    fn join_or_start_kid_refetch(self: &Arc<Self>) -> Option<SharedRefresh> {
        self.fetcher.as_ref()?;
        let mut g = self.inflight.lock().expect("jwks inflight lock");
        if let Some(f) = &g.current {
            return Some(f.clone());
        }
        let now = Instant::now();
        if g.last_kid_refetch
            .is_some_and(|t| now.duration_since(t) < self.refetch_cooldown)
        {
            return None;
        }
        g.last_kid_refetch = Some(now);
        Some(self.start_locked(&mut g))
    }

    /// Refreshes now, joining a refresh already under way. `None` when there is no URL.
    pub async fn refresh(self: &Arc<Self>) -> Option<RefreshOutcome> {
        self.fetcher.as_ref()?;
        let fut = {
            let mut g = self.inflight.lock().expect("jwks inflight lock");
            match &g.current {
                Some(f) => f.clone(),
                None => self.start_locked(&mut g),
            }
        };
        Some(fut.await)
    }

    fn start_locked(self: &Arc<Self>, g: &mut Inflight) -> SharedRefresh {
        let fetcher = self.fetcher.clone().expect("checked by callers");
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let this = Arc::clone(self);
        // The fetch runs on its own task so that it completes even if every waiter goes away.
        // `current` is cleared by that task, under the lock this caller holds until it returns.
        let span = tracing::debug_span!(target: "cognito_gate::jwks", "jwks_fetch",
            otel.kind = "client", jwks.source = tracing::field::Empty);
        let handle = tokio::spawn(
            async move {
                let source = fetcher.describe();
                tracing::Span::current().record("jwks.source", source.as_str());
                let result = match fetcher.fetch().await {
                    Ok(body) => parse_jwks(&body, &source).map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                let outcome = match result {
                    Ok(keys) => {
                        let count = keys.keys.len();
                        let kids = keys.kids().join(",");
                        this.snapshot.store(Arc::new(Snapshot {
                            keys,
                            loaded_at: Some(Instant::now()),
                            expires: true,
                        }));
                        tracing::debug!(jwks.source = %source, jwks.kids = %kids, "JWKS refreshed");
                        RefreshOutcome::Updated { keys: count }
                    }
                    Err(e) => {
                        let age = this.age().map(|a| a.as_secs());
                        tracing::warn!(jwks.source = %source, error = %e, jwks.age_secs = age,
                        "JWKS refresh failed; cached keys stay in use up to max_stale");
                        RefreshOutcome::Failed(e)
                    }
                };
                if let Some((metrics, pool)) = this.metrics.get() {
                    metrics.refreshed(pool, &outcome);
                }
                this.inflight.lock().expect("jwks inflight lock").current = None;
                outcome
            }
            .instrument(span)
            .in_current_span(),
        );
        let fut = async move {
            handle
                .await
                .unwrap_or_else(|_| RefreshOutcome::Failed("JWKS fetch task failed".into()))
        }
        .boxed()
        .shared();
        g.current = Some(fut.clone());
        fut
    }

    /// Keeps the keys fresh until `shutdown` fires: the first load is retried with backoff, then
    /// a refresh every `interval` (failures retried sooner, with backoff, while keys age).
    /// Starts the background refresh (once): every `min(interval, max_stale / 2)`, with backoff
    /// after failures. It stops when `shutdown` turns true or when the cache is dropped.
    /// `limit` bounds how many caches fetch at once (many pools at start-up).
    pub(crate) fn start_refresh(
        self: &Arc<Self>,
        interval: Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
        limit: Arc<tokio::sync::Semaphore>,
    ) {
        if self.fetcher.is_none() || self.refresher.get().is_some() {
            return;
        }
        let task = tokio::spawn(Self::run_refresh(
            Arc::downgrade(self),
            interval,
            shutdown,
            limit,
        ));
        let _ = self
            .refresher
            .set(tokio_util::task::AbortOnDropHandle::new(task));
    }

    /// The refresh loop; holds the cache only while fetching, so dropping it ends the loop.
    async fn run_refresh(
        this: std::sync::Weak<Self>,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        limit: Arc<tokio::sync::Semaphore>,
    ) {
        let mut backoff = INITIAL_BACKOFF;
        loop {
            let Some(cache) = this.upgrade() else {
                return;
            };
            // Refresh at least twice per max_stale window, so one failed refresh never lets
            // the keys go stale before the next attempt.
            let interval = interval
                .min(cache.max_stale / 2)
                .max(Duration::from_millis(50));
            let outcome = {
                let _permit = limit.acquire().await;
                cache.refresh().await
            };
            drop(cache);
            let wait = match outcome {
                Some(RefreshOutcome::Updated { .. }) => {
                    backoff = INITIAL_BACKOFF;
                    interval
                }
                _ => {
                    let wait = backoff.min(interval);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    use crate::jwt::keys::fixture_n as modulus;

    /// A JWKS with key `a`.
    fn jwks_a() -> &'static str {
        static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        DOC.get_or_init(|| {
            format!(
                r#"{{"keys":[{{"kty":"RSA","kid":"a","alg":"RS256","n":"{}","e":"AQAB"}}]}}"#,
                modulus()
            )
        })
    }

    /// A JWKS with keys `a` and `b`.
    fn jwks_ab() -> &'static str {
        static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        DOC.get_or_init(|| {
            let n = modulus();
            format!(
                r#"{{"keys":[{{"kty":"RSA","kid":"a","n":"{n}","e":"AQAB"}},{{"kty":"RSA","kid":"b","n":"{n}","e":"AQAB"}}]}}"#
            )
        })
    }

    /// Serves `body` after `delay`, counting calls; `None` fails the fetch.
    struct Fake {
        body: Mutex<Option<&'static str>>,
        delay: Duration,
        calls: AtomicU64,
    }

    impl JwksFetcher for Arc<Fake> {
        fn fetch(&self) -> BoxFuture<'static, Result<Vec<u8>, String>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let body = *self.body.lock().unwrap();
            let delay = self.delay;
            async move {
                tokio::time::sleep(delay).await;
                body.map(|b| b.as_bytes().to_vec())
                    .ok_or_else(|| "down".to_string())
            }
            .boxed()
        }
        fn describe(&self) -> String {
            "fake".into()
        }
    }

    fn fake(body: Option<&'static str>, delay: Duration) -> Arc<Fake> {
        Arc::new(Fake {
            body: Mutex::new(body),
            delay,
            calls: AtomicU64::new(0),
        })
    }

    fn cache(f: &Arc<Fake>, cooldown: Duration, max_stale: Duration) -> Arc<JwksCache> {
        JwksCache::new(None, Some(Arc::new(f.clone())), cooldown, max_stale)
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_unknown_kids_share_one_fetch_and_respect_the_cooldown() {
        let f = fake(Some(jwks_a()), Duration::from_millis(100));
        let c = cache(&f, Duration::from_secs(10), Duration::from_secs(3600));
        assert!(matches!(
            c.refresh().await,
            Some(RefreshOutcome::Updated { keys: 1 })
        ));
        assert_eq!(f.calls.load(Ordering::SeqCst), 1);

        let lookups: Vec<_> = (0..50)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.key("zzz").await })
            })
            .collect();
        for l in lookups {
            assert_eq!(l.await.unwrap().unwrap_err(), KeyLookupError::UnknownKid);
        }
        assert_eq!(
            f.calls.load(Ordering::SeqCst),
            2,
            "one refetch for 50 waiters"
        );
        assert_eq!(c.key("zzz").await.unwrap_err(), KeyLookupError::UnknownKid);
        assert_eq!(f.calls.load(Ordering::SeqCst), 2, "cooldown holds");

        // After the cooldown a rotated-in key is found with one more fetch.
        tokio::time::advance(Duration::from_secs(11)).await;
        *f.body.lock().unwrap() = Some(jwks_ab());
        assert_eq!(c.key("b").await.unwrap().kid, "b");
        assert_eq!(f.calls.load(Ordering::SeqCst), 3);
        assert!(c.key("a").await.is_ok());
        assert_eq!(f.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_refreshes_keep_keys_until_max_stale() {
        let f = fake(Some(jwks_a()), Duration::ZERO);
        let c = cache(&f, Duration::from_secs(10), Duration::from_secs(60));
        assert!(!c.is_usable(), "nothing loaded yet");
        c.refresh().await;
        assert!(c.is_usable());
        *f.body.lock().unwrap() = None;
        assert!(matches!(c.refresh().await, Some(RefreshOutcome::Failed(_))));
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(c.key("a").await.is_ok(), "still within max_stale");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(c.key("a").await.unwrap_err(), KeyLookupError::Unavailable);
        assert!(!c.is_usable());
    }

    #[tokio::test(start_paused = true)]
    async fn background_refresh_retries_with_backoff_then_settles() {
        let f = fake(None, Duration::ZERO);
        let c = cache(&f, Duration::from_secs(10), Duration::from_secs(3600));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(JwksCache::run_refresh(
            Arc::downgrade(&c),
            Duration::from_secs(600),
            rx,
            Arc::new(tokio::sync::Semaphore::new(1)),
        ));
        // 250ms, 500ms, 1s, 2s backoff: five attempts within ~4 s.
        tokio::time::sleep(Duration::from_millis(3900)).await;
        assert_eq!(f.calls.load(Ordering::SeqCst), 5);
        *f.body.lock().unwrap() = Some(jwks_a());
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(c.is_usable());
        let after = f.calls.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(598)).await;
        assert_eq!(
            f.calls.load(Ordering::SeqCst),
            after,
            "next refresh only after the interval"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(f.calls.load(Ordering::SeqCst), after + 1);
        tx.send(true).unwrap();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_refresh_task_belongs_to_the_cache_and_ends_with_it() {
        let f = fake(Some(jwks_a()), Duration::ZERO);
        let c = cache(&f, Duration::from_secs(10), Duration::from_secs(3600));
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let limit = Arc::new(tokio::sync::Semaphore::new(1));
        c.start_refresh(Duration::from_secs(60), rx.clone(), limit.clone());
        c.start_refresh(Duration::from_secs(60), rx, limit);
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(f.calls.load(Ordering::SeqCst), 2, "one task, started once");
        drop(c);
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(
            f.calls.load(Ordering::SeqCst),
            2,
            "no fetch after the cache is gone"
        );
    }
}
