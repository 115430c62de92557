//! The Basic credential cache: (username, password) -> verified Cognito tokens. One login per
//! credential, shared by concurrent requests; tokens refreshed `refresh_before` their expiry with
//! the refresh token (full login again if that fails, and at least every `MAX_SESSION_AGE`
//! after the password was last checked, refreshes or not); wrong credentials answered from a
//! negative cache for `failure_ttl`; bounded capacity. The key is a keyed hash of the
//! credentials: passwords are never stored.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use arc_swap::ArcSwap;
use hmac::{Hmac, Mac};
use moka::future::Cache;
use sha2::Sha256;

use super::api::AuthResult;
use super::error::ExchangeError;
use super::fleet::{Entry, Fleet, Found, Lock, Subject};
use super::limit::FailureLimiter;
use super::metrics::{ExchangeMetrics, ResultLabel};
use super::{renew, verify_tokens, Clock, CognitoCalls, Tokens, MAX_SESSION_AGE};
use crate::config::ExchangeConfig;
use crate::jwt::Verifier;

type Key = [u8; 32];

/// One credential's tokens.
struct Session {
    tokens: ArcSwap<Tokens>,
    refreshing: Arc<tokio::sync::Mutex<()>>,
    /// Its entry in the fleet's shared state (keys only), when there is one.
    entry: Option<Entry>,
}

impl Session {
    fn new(tokens: Tokens, entry: Option<Entry>) -> Arc<Self> {
        Arc::new(Session {
            tokens: ArcSwap::from_pointee(tokens),
            refreshing: Arc::new(tokio::sync::Mutex::new(())),
            entry,
        })
    }
}

/// Why Basic credentials could not be turned into tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("{0}")]
    Exchange(ExchangeError),
    #[error("too many failed logins for this username or client address")]
    TooManyFailures,
}

/// Counters for tests and metrics.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub logins: AtomicU64,
    pub refreshes: AtomicU64,
    pub hits: AtomicU64,
    pub negative_hits: AtomicU64,
}

/// The `[exchange]` settings the cache uses.
#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    pub capacity: u64,
    pub failure_ttl: Duration,
    pub refresh_before: Duration,
}

impl From<&ExchangeConfig> for CacheSettings {
    fn from(c: &ExchangeConfig) -> Self {
        CacheSettings {
            capacity: c.cache_capacity,
            failure_ttl: c.failure_ttl,
            refresh_before: c.refresh_before,
        }
    }
}

pub struct CredentialCache {
    api: Arc<dyn CognitoCalls>,
    verifier: Arc<Verifier>,
    clock: Clock,
    key: [u8; 32],
    sessions: Cache<Key, Arc<Session>>,
    failures: Cache<Key, ExchangeError>,
    limiter: Arc<FailureLimiter>,
    refresh_before: i64,
    failure_ttl: Duration,
    metrics: Option<ExchangeMetrics>,
    fleet: Option<Arc<Fleet>>,
    pub stats: CacheStats,
}

impl CredentialCache {
    pub fn new(
        api: Arc<dyn CognitoCalls>,
        verifier: Arc<Verifier>,
        limiter: Arc<FailureLimiter>,
        settings: CacheSettings,
        clock: Clock,
        metrics: Option<ExchangeMetrics>,
        fleet: Option<Arc<Fleet>>,
    ) -> Arc<Self> {
        Arc::new(CredentialCache {
            failure_ttl: settings.failure_ttl,
            fleet,
            // A backstop on the wall clock; `fresh` enforces the age of the password check.
            sessions: Cache::builder()
                .max_capacity(settings.capacity)
                .time_to_live(MAX_SESSION_AGE)
                .build(),
            failures: Cache::builder()
                .max_capacity(settings.capacity)
                .time_to_live(settings.failure_ttl.max(Duration::from_millis(1)))
                .build(),
            api,
            verifier,
            clock,
            key: rand::random(),
            limiter,
            refresh_before: settings.refresh_before.as_secs() as i64,
            metrics,
            stats: CacheStats::default(),
        })
    }

    fn count(&self, result: &'static str) {
        if let Some(m) = &self.metrics {
            m.cache.get_or_create(&ResultLabel { result }).inc();
        }
    }

    fn key(&self, username: &str, password: &str) -> Key {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key size");
        mac.update(&(username.len() as u64).to_be_bytes());
        mac.update(username.as_bytes());
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Valid tokens for these credentials: from the cache, refreshed, or from one login shared
    /// by every concurrent request with the same credentials.
    pub async fn tokens(
        self: &Arc<Self>,
        username: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<Arc<Tokens>, CredentialError> {
        let key = self.key(username, password);
        if let Some(session) = self.sessions.get(&key).await {
            if let Some(tokens) = self.fresh(&key, &session).await {
                return Ok(tokens);
            }
            // Expired and the refresh failed: the session is gone; log in again below.
        }
        if let Some(err) = self.failures.get(&key).await {
            self.stats.negative_hits.fetch_add(1, Ordering::Relaxed);
            self.count("negative");
            return Err(CredentialError::Exchange(err));
        }
        let result = self
            .sessions
            .try_get_with(key, self.first_tokens(key, username, password, client))
            .await;
        match result {
            Ok(session) => Ok(session.tokens.load_full()),
            Err(e) => Err((*e).clone()),
        }
    }

    /// A session for credentials this replica does not hold: the fleet's tokens or failure when
    /// it has them; else one login, which the other replicas wait for (the fleet's lock).
    async fn first_tokens(
        &self,
        key: Key,
        username: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<Arc<Session>, CredentialError> {
        let entry = self
            .fleet
            .as_ref()
            .map(|f| f.entry(Subject::Credential { username, password }));
        let mut held = None;
        if let (Some(fleet), Some(entry)) = (&self.fleet, &entry) {
            let mut found = fleet.find(entry).await.ok();
            if matches!(found, Some(Found::Nothing)) {
                match fleet.lock(entry).await {
                    Ok(Lock::Held(h)) => held = Some(h),
                    Ok(Lock::Busy) => {
                        found = fleet
                            .wait_for(entry, |f| !matches!(f, Found::Nothing))
                            .await;
                    }
                    Err(_) => {}
                }
            }
            match found {
                Some(Found::Tokens(stored)) => {
                    if let Some(tokens) = fleet.adopt(stored).await {
                        self.count("shared_hit");
                        return Ok(Session::new(tokens, Some(entry.clone())));
                    }
                }
                Some(Found::Failed(e)) => {
                    self.failures.insert(key, e.clone()).await;
                    self.count("negative");
                    return Err(CredentialError::Exchange(e));
                }
                Some(Found::Nothing) | None => {}
            }
        }
        let result = self
            .login_once(key, username, password, client, entry.clone())
            .await;
        if let (Some(fleet), Some(entry)) = (&self.fleet, &entry) {
            match &result {
                Ok(session) => {
                    let _ = fleet.put_tokens(entry, &session.tokens.load_full()).await;
                }
                Err(CredentialError::Exchange(e)) if e.is_credential_failure() => {
                    let _ = fleet.put_failure(entry, e, self.failure_ttl).await;
                }
                Err(_) => {}
            }
            if let Some(h) = held {
                fleet.unlock(h).await;
            }
        }
        result
    }

    /// One login under a reserved attempt. Only the request that runs the login reserves: one
    /// call to the private API is one attempt, however many requests wait for it.
    async fn login_once(
        &self,
        key: Key,
        username: &str,
        password: &str,
        client: IpAddr,
        entry: Option<Entry>,
    ) -> Result<Arc<Session>, CredentialError> {
        let Some(attempt) = self.limiter.reserve(Some(username), client).await else {
            self.count("rate_limited");
            return Err(CredentialError::TooManyFailures);
        };
        self.count("miss");
        match self.login(username, password).await {
            Ok(tokens) => {
                attempt.refund();
                Ok(Session::new(tokens, entry))
            }
            Err(e) => {
                if e.is_credential_failure() {
                    // Stays charged; later requests with these credentials are answered from
                    // the negative cache without another attempt.
                    self.failures.insert(key, e.clone()).await;
                } else {
                    attempt.refund();
                }
                Err(CredentialError::Exchange(e))
            }
        }
    }

    async fn login(&self, username: &str, password: &str) -> Result<Tokens, ExchangeError> {
        self.stats.logins.fetch_add(1, Ordering::Relaxed);
        let checked_at = (self.clock)();
        match self.api.login(username, password).await? {
            AuthResult::Tokens(set) => {
                verify_tokens(&self.verifier, set, username, (self.clock)(), checked_at).await
            }
            AuthResult::Challenge(c) => {
                tracing::info!(challenge = %c.name,
                    "login needs a challenge answered; Basic credentials cannot do that");
                Err(ExchangeError::ChallengeRequired(c.name))
            }
        }
    }

    /// The session's tokens, refreshed first when they are due; `None` when they expired and
    /// could not be renewed, or when their password was last checked `MAX_SESSION_AGE` ago
    /// (the session is then dropped, and the caller logs in with the password it holds).
    async fn fresh(self: &Arc<Self>, key: &Key, session: &Arc<Session>) -> Option<Arc<Tokens>> {
        let now = (self.clock)();
        let current = session.tokens.load_full();
        if current.password_check_due(now) {
            self.drop_session(key, session).await;
            return None;
        }
        // `refresh_before` ahead of expiry, but at most half the lifetime ahead (as for service
        // accounts): tokens that live no longer than `refresh_before` (Cognito allows 5 minutes,
        // the default lead) would otherwise be due from the start, one refresh per request.
        let lifetime = i64::try_from(current.set.expires_in).unwrap_or(i64::MAX);
        let lead = self.refresh_before.min(lifetime / 2);
        if now < current.expires_at() - lead {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            self.count("hit");
            return Some(current);
        }
        if now < current.expires_at() {
            // Due but still valid: one request refreshes in the background, all go on.
            if let Ok(guard) = session.refreshing.clone().try_lock_owned() {
                let this = self.clone();
                let session = session.clone();
                let key = *key;
                tokio::spawn(
                    async move {
                        let _guard = guard;
                        this.refresh(&key, &session).await;
                    }
                    .in_current_span(),
                );
            }
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            self.count("hit");
            return Some(current);
        }
        // Expired: wait for one refresh, never forward an expired token.
        let _guard = session.refreshing.lock().await;
        let current = session.tokens.load_full();
        if (self.clock)() < current.expires_at() {
            return Some(current);
        }
        if self.refresh(key, session).await {
            Some(session.tokens.load_full())
        } else {
            None
        }
    }

    /// Renews a session's tokens with its refresh token. On failure the session is dropped, so
    /// that the next request logs in with the password again — unless another request has
    /// replaced it meanwhile. Returns whether it succeeded.
    async fn refresh(&self, key: &Key, session: &Arc<Session>) -> bool {
        let current = session.tokens.load_full();
        if current.set.refresh_token.is_some() {
            self.stats.refreshes.fetch_add(1, Ordering::Relaxed);
            self.count("refresh");
        }
        let alone = || renew(&*self.api, &self.verifier, &current, (self.clock)());
        let renewed = match (&self.fleet, &session.entry) {
            (Some(fleet), Some(entry)) => {
                fleet.renew_once(entry, current.expires_at(), alone).await
            }
            _ => alone().await,
        };
        match renewed {
            Ok(tokens) => {
                session.tokens.store(Arc::new(tokens));
                true
            }
            Err(e) => {
                tracing::info!(error = %e, "token refresh failed; the next request logs in again");
                self.drop_session(key, session).await;
                false
            }
        }
    }

    /// Removes `session` from the cache if it is still the one cached under `key`.
    async fn drop_session(&self, key: &Key, session: &Arc<Session>) {
        use moka::ops::compute::Op;
        let _ = self
            .sessions
            .entry_by_ref(key)
            .and_compute_with(|entry| {
                let op = match entry {
                    Some(e) if Arc::ptr_eq(e.value(), session) => Op::Remove,
                    Some(_) | None => Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::exchange::test_support::{tokio_clock, verifier, FakeCalls};

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn cache(calls: &Arc<FakeCalls>, clock: Clock, refresh_before: u64) -> Arc<CredentialCache> {
        CredentialCache::new(
            calls.clone(),
            verifier(),
            Arc::new(FailureLimiter::new(10, 64, None)),
            CacheSettings {
                capacity: 100,
                failure_ttl: Duration::from_secs(30),
                refresh_before: Duration::from_secs(refresh_before),
            },
            clock,
            None,
            None,
        )
    }

    async fn advance_to(start: tokio::time::Instant, secs: u64) {
        tokio::time::sleep_until(start + Duration::from_secs(secs)).await;
    }

    /// Lets spawned background work run to completion (paused time advances only when idle).
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_are_refreshed_refresh_before_expiry_in_the_background() {
        let start = tokio::time::Instant::now();
        let clock = tokio_clock();
        let calls = FakeCalls::new(clock.clone(), 3600, Duration::ZERO);
        let c = cache(&calls, clock, 300);
        let first = c.tokens("alice", "pw", CLIENT).await.unwrap();
        advance_to(start, 3299).await;
        let t = c.tokens("alice", "pw", CLIENT).await.unwrap();
        assert!(Arc::ptr_eq(&t, &first));
        settle().await;
        assert_eq!((calls.logins(), calls.refreshes()), (1, 0), "not due yet");
        advance_to(start, 3301).await;
        let t = c.tokens("alice", "pw", CLIENT).await.unwrap();
        assert!(Arc::ptr_eq(&t, &first), "still valid: answered at once");
        settle().await;
        assert_eq!(
            (calls.logins(), calls.refreshes()),
            (1, 1),
            "refreshed once"
        );
        let t = c.tokens("alice", "pw", CLIENT).await.unwrap();
        assert!(t.expires_at() > first.expires_at(), "the refreshed tokens");
        assert_eq!(c.stats.refreshes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn short_lived_tokens_are_refreshed_at_half_their_lifetime() {
        let start = tokio::time::Instant::now();
        let clock = tokio_clock();
        // 120 s tokens with refresh_before 5 min: due after 60 s, not from the start.
        let calls = FakeCalls::new(clock.clone(), 120, Duration::ZERO);
        let c = cache(&calls, clock, 300);
        c.tokens("alice", "pw", CLIENT).await.unwrap();
        advance_to(start, 59).await;
        c.tokens("alice", "pw", CLIENT).await.unwrap();
        settle().await;
        assert_eq!(calls.refreshes(), 0);
        advance_to(start, 61).await;
        c.tokens("alice", "pw", CLIENT).await.unwrap();
        settle().await;
        assert_eq!(calls.refreshes(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_tokens_are_never_handed_out_and_a_failed_refresh_logs_in_again() {
        let start = tokio::time::Instant::now();
        let clock = tokio_clock();
        let calls = FakeCalls::new(clock.clone(), 600, Duration::ZERO);
        let c = cache(&calls, clock.clone(), 60);
        let first = c.tokens("alice", "pw", CLIENT).await.unwrap();
        calls.fail_refresh.store(true, Ordering::SeqCst);
        advance_to(start, 601).await;
        let t = c.tokens("alice", "pw", CLIENT).await.unwrap();
        assert!(t.expires_at() > clock(), "never an expired token");
        assert!(!Arc::ptr_eq(&t, &first));
        assert_eq!((calls.logins(), calls.refreshes()), (2, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_does_not_drop_a_session_another_request_just_made() {
        let start = tokio::time::Instant::now();
        let clock = tokio_clock();
        // Refreshes take a second, logins no time: the second request is still refreshing the
        // old session when the first has logged in again.
        let calls = FakeCalls::with_login_latency(
            clock.clone(),
            600,
            Duration::from_secs(1),
            Duration::ZERO,
        );
        let c = cache(&calls, clock, 60);
        c.tokens("alice", "pw", CLIENT).await.unwrap();
        calls.fail_refresh.store(true, Ordering::SeqCst);
        advance_to(start, 700).await;
        // A refreshes (fails), drops the session and logs in again; B waited for A's refresh,
        // tries its own (fails too), and must find A's new session rather than drop it.
        let (a, b) = tokio::join!(
            c.tokens("alice", "pw", CLIENT),
            c.tokens("alice", "pw", CLIENT)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(Arc::ptr_eq(&a, &b), "one new session");
        assert_eq!(calls.refreshes(), 2);
        assert_eq!(calls.logins(), 2, "the initial login and A's, no third");
        let again = c.tokens("alice", "pw", CLIENT).await.unwrap();
        assert!(Arc::ptr_eq(&again, &a));
    }

    #[tokio::test(start_paused = true)]
    async fn the_password_is_checked_at_least_hourly_however_often_tokens_are_refreshed() {
        let start = tokio::time::Instant::now();
        let clock = tokio_clock();
        // 20-minute tokens refreshed 5 minutes ahead: refreshes alone would go on for ever.
        let calls = FakeCalls::new(clock.clone(), 1200, Duration::ZERO);
        *calls.password.lock().unwrap() = Some("old".into());
        let c = cache(&calls, clock.clone(), 300);
        let first = c.tokens("alice", "old", CLIENT).await.unwrap();
        // The password is changed at once; Cognito's refresh token keeps working.
        *calls.password.lock().unwrap() = Some("new".into());
        for minute in (5..60).step_by(5) {
            advance_to(start, minute * 60).await;
            let t = c.tokens("alice", "old", CLIENT).await.unwrap();
            settle().await;
            assert_eq!(
                t.password_checked_at, first.password_checked_at,
                "a refresh never makes the check younger (minute {minute})"
            );
        }
        advance_to(start, 3599).await;
        assert!(c.tokens("alice", "old", CLIENT).await.is_ok());
        settle().await;
        assert_eq!(calls.logins(), 1);
        assert_eq!(calls.refreshes(), 3, "at 15, 30 and 45 minutes");
        let refreshed = c.tokens("alice", "old", CLIENT).await.unwrap();
        assert!(
            refreshed.expires_at() > clock() + 60,
            "still far from expiry"
        );

        // An hour after the password was checked: a login with it, which now fails.
        advance_to(start, 3600).await;
        assert!(matches!(
            c.tokens("alice", "old", CLIENT).await,
            Err(CredentialError::Exchange(_))
        ));
        assert_eq!(calls.logins(), 2);
        let t = c.tokens("alice", "new", CLIENT).await.unwrap();
        assert_eq!(t.password_checked_at, clock(), "a login checks it anew");
        assert_eq!(calls.logins(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn wrong_credentials_are_answered_from_the_negative_cache() {
        let clock = tokio_clock();
        let calls = FakeCalls::new(clock.clone(), 600, Duration::ZERO);
        calls.fail_login.store(true, Ordering::SeqCst);
        let c = cache(&calls, clock, 60);
        for _ in 0..3 {
            assert!(matches!(
                c.tokens("alice", "bad", CLIENT).await,
                Err(CredentialError::Exchange(_))
            ));
        }
        assert_eq!(calls.logins(), 1);
        assert_eq!(c.stats.negative_hits.load(Ordering::SeqCst), 2);
    }
}
