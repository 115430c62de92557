//! The exchange's state shared by a fleet (DESIGN §8), on top of `crate::shared`: Basic token
//! sets and negative-cache entries under keyed hashes of the credentials, a cross-replica single
//! flight for each login and refresh (a lock with a TTL: a holder that dies releases it by
//! expiry; the others wait for and read its result), and service-account tokens. Every value is
//! sealed; a token set read back is verified like a fresh one by the caller. Any `Unavailable`
//! means: do what a lone replica does.
//!
//! A Basic credential's token set carries when its password was last checked by a login; a set
//! whose check is `MAX_SESSION_AGE` old (or that does not say, as older versions wrote them) is
//! not there for any replica, so the next request logs in with the password it presents, and
//! the fleet's entry never outlives its check.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::api::TokenSet;
use super::error::ExchangeError;
use super::{password_check_due, verify_tokens, Clock, Tokens, MAX_SESSION_AGE};
use crate::jwt::Verifier;
use crate::shared::{SharedState, Unavailable};

/// Waiters look for the holder's result after 5 ms, then every 10, 20, 40 and at most 50 ms (a
/// GET each: cheap for Valkey, and a waiter is never much later than the holder).
const POLL_MIN: Duration = Duration::from_millis(5);
const POLL_MAX: Duration = Duration::from_millis(50);

/// A token set as stored: the tokens, the canonical username they belong to and when their
/// password was last checked.
#[derive(Serialize, Deserialize)]
pub struct StoredTokens {
    pub id_token: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: u64,
    pub username: String,
    /// When the first of the tokens expires (seconds since the epoch), so readers can tell a
    /// renewed set from the one they hold without decoding it.
    pub expires_at: i64,
    /// `Tokens::password_checked_at`. Absent in entries written before it was stored: such an
    /// entry's check is of unknown age, so a Basic credential's is taken for too old.
    #[serde(default)]
    pub password_checked_at: Option<i64>,
}

impl StoredTokens {
    pub fn new(tokens: &Tokens) -> Self {
        let set = &tokens.set;
        StoredTokens {
            id_token: set.id_token.clone(),
            access_token: set.access_token.clone(),
            refresh_token: set.refresh_token.clone(),
            expires_in: set.expires_in,
            username: tokens.username.clone(),
            expires_at: tokens.expires_at(),
            password_checked_at: Some(tokens.password_checked_at),
        }
    }

    /// The set, its username, and when its password was checked (`i64::MIN`: unknown).
    pub(crate) fn into_set(self) -> (TokenSet, String, i64) {
        (
            TokenSet {
                id_token: self.id_token,
                access_token: self.access_token,
                refresh_token: self.refresh_token,
                expires_in: self.expires_in,
            },
            self.username,
            self.password_checked_at.unwrap_or(i64::MIN),
        )
    }
}

/// A credential failure as stored in the shared negative cache.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind")]
enum StoredFailure {
    Cognito { type_name: String },
    Challenge { name: String },
}

/// What the fleet knows about one entry.
pub enum Found {
    Tokens(StoredTokens),
    Failed(ExchangeError),
    Nothing,
}

/// A lock this replica holds.
pub struct Held {
    key: String,
    token: [u8; 16],
}

pub enum Lock {
    Held(Held),
    /// Another replica holds it: wait for its result.
    Busy,
}

/// The keys of one subject's entries (HMACs: safe to keep beside a session).
#[derive(Clone)]
pub struct Entry {
    tokens: String,
    fail: String,
    lock: String,
    /// Whether its tokens are used only while their password check is younger than
    /// `MAX_SESSION_AGE` (Basic credentials: the password is the client's).
    password_age_bound: bool,
}

/// Which entry: a Basic credential or a service account.
#[derive(Clone, Copy)]
pub enum Subject<'a> {
    Credential {
        username: &'a str,
        password: &'a str,
    },
    Service {
        name: &'a str,
        username: &'a str,
    },
}

impl Subject<'_> {
    fn parts(&self) -> [&[u8]; 2] {
        match self {
            Subject::Credential { username, password } => {
                [username.as_bytes(), password.as_bytes()]
            }
            Subject::Service { name, username } => [name.as_bytes(), username.as_bytes()],
        }
    }

    /// A client's password must keep working for its tokens to be used; a service account's
    /// password is the gateway's own configuration.
    fn password_age_bound(&self) -> bool {
        matches!(self, Subject::Credential { .. })
    }

    fn kinds(&self) -> (&'static str, &'static str, &'static str) {
        match self {
            Subject::Credential { .. } => ("tokens", "fail", "lock"),
            Subject::Service { .. } => ("svc", "svcfail", "svclock"),
        }
    }
}

/// The exchange's view of the shared state.
pub struct Fleet {
    shared: Arc<SharedState>,
    /// A lock outlives the longest login it guards (the private API's timeout) with a margin.
    lock_ttl: Duration,
    verifier: Arc<Verifier>,
    clock: Clock,
}

impl Fleet {
    pub fn new(
        shared: Arc<SharedState>,
        private_api_timeout: Duration,
        verifier: Arc<Verifier>,
        clock: Clock,
    ) -> Self {
        Fleet {
            shared,
            lock_ttl: private_api_timeout * 2 + Duration::from_secs(1),
            verifier,
            clock,
        }
    }

    /// Tokens another replica stored, verified like fresh ones (`None` if they do not verify).
    /// They keep the stored password check time: adopting them checks no password.
    pub(crate) async fn adopt(&self, stored: StoredTokens) -> Option<Tokens> {
        let (set, canonical, checked_at) = stored.into_set();
        match verify_tokens(&self.verifier, set, &canonical, (self.clock)(), checked_at).await {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::info!(error = %e, "tokens from the shared state failed verification");
                None
            }
        }
    }

    pub fn shared(&self) -> &Arc<SharedState> {
        &self.shared
    }

    /// The keys of `subject`'s entries.
    pub fn entry(&self, subject: Subject<'_>) -> Entry {
        let (tokens, fail, lock) = subject.kinds();
        let parts = subject.parts();
        let sealer = self.shared.sealer();
        Entry {
            tokens: sealer.key(tokens, &parts),
            fail: sealer.key(fail, &parts),
            lock: sealer.key(lock, &parts),
            password_age_bound: subject.password_age_bound(),
        }
    }

    /// Whether stored tokens may be used now: for a Basic credential, only while their
    /// password check (which must be known) is younger than `MAX_SESSION_AGE`.
    fn usable(&self, entry: &Entry, stored: &StoredTokens) -> bool {
        if !entry.password_age_bound {
            return true;
        }
        match stored.password_checked_at {
            Some(at) => !password_check_due(at, (self.clock)()),
            None => false,
        }
    }

    /// The tokens or the failure stored for an entry, in one round trip.
    pub async fn find(&self, entry: &Entry) -> Result<Found, Unavailable> {
        let (tk, fk) = (&entry.tokens, &entry.fail);
        let (t, f) = self.shared.get2(tk, fk).await?;
        if let Some(plain) = t.and_then(|v| self.shared.open(tk, &v)) {
            if let Ok(stored) = serde_json::from_slice::<StoredTokens>(&plain) {
                if self.usable(entry, &stored) {
                    return Ok(Found::Tokens(stored));
                }
                tracing::debug!("shared tokens whose password check is too old (or unknown) ignored; logging in again");
            }
        }
        if let Some(plain) = f.and_then(|v| self.shared.open(fk, &v)) {
            match serde_json::from_slice::<StoredFailure>(&plain) {
                Ok(StoredFailure::Cognito { type_name }) => {
                    return Ok(Found::Failed(ExchangeError::cognito(&type_name)))
                }
                Ok(StoredFailure::Challenge { name }) => {
                    return Ok(Found::Failed(ExchangeError::ChallengeRequired(name)))
                }
                Err(_) => {}
            }
        }
        Ok(Found::Nothing)
    }

    /// Stores tokens until they expire, or, for a Basic credential, until their password check
    /// is `MAX_SESSION_AGE` old if that comes first.
    pub(crate) async fn put_tokens(
        &self,
        entry: &Entry,
        tokens: &Tokens,
    ) -> Result<(), Unavailable> {
        let mut until = tokens.expires_at();
        if entry.password_age_bound {
            let max_age = MAX_SESSION_AGE.as_secs() as i64;
            until = until.min(tokens.password_checked_at.saturating_add(max_age));
        }
        let ttl = u64::try_from(until.saturating_sub((self.clock)())).unwrap_or(0);
        if ttl == 0 {
            return Ok(());
        }
        let ttl = Duration::from_secs(ttl);
        let plain = serde_json::to_vec(&StoredTokens::new(tokens)).expect("serialises");
        self.shared.set_sealed(&entry.tokens, &plain, ttl).await
    }

    /// Stores a credential failure for `ttl` (the negative cache).
    pub(crate) async fn put_failure(
        &self,
        entry: &Entry,
        error: &ExchangeError,
        ttl: Duration,
    ) -> Result<(), Unavailable> {
        let stored = match error {
            ExchangeError::Cognito { type_name, .. } => StoredFailure::Cognito {
                type_name: type_name.clone(),
            },
            ExchangeError::ChallengeRequired(name) => {
                StoredFailure::Challenge { name: name.clone() }
            }
            ExchangeError::Dependency(_) | ExchangeError::InvalidTokens(_) => return Ok(()),
        };
        let plain = serde_json::to_vec(&stored).expect("serialises");
        self.shared.set_sealed(&entry.fail, &plain, ttl).await
    }

    /// Takes the entry's lock, or learns that another replica holds it.
    pub async fn lock(&self, entry: &Entry) -> Result<Lock, Unavailable> {
        let token: [u8; 16] = rand::random();
        if self
            .shared
            .set_nx(&entry.lock, &token, self.lock_ttl)
            .await?
        {
            Ok(Lock::Held(Held {
                key: entry.lock.clone(),
                token,
            }))
        } else {
            Ok(Lock::Busy)
        }
    }

    pub(crate) async fn unlock(&self, held: Held) {
        let _ = self.shared.del_if(&held.key, &held.token).await;
    }

    /// Waits for another replica's result: until `accept` takes what is stored, the lock is
    /// gone (its holder finished without a result, or died and the lock expired), or the lock's
    /// TTL has passed. `None`: do it yourself.
    pub(crate) async fn wait_for(
        &self,
        entry: &Entry,
        accept: impl Fn(&Found) -> bool,
    ) -> Option<Found> {
        let deadline = tokio::time::Instant::now() + self.lock_ttl;
        let mut pause = POLL_MIN;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
            let found = self.find(entry).await.ok()?;
            if accept(&found) {
                return Some(found);
            }
            if self.shared.get(&entry.lock).await.ok()?.is_none() {
                // Released: one more look, as the holder stores before it unlocks.
                let found = self.find(entry).await.ok()?;
                return accept(&found).then_some(found);
            }
        }
        None
    }

    /// Tokens renewed once for the whole fleet: another replica's when it has stored tokens
    /// expiring after `current_expiry` (or is doing so now: then wait for them), else
    /// `renew()`'s, stored for the others. Falls back to `renew()` alone when the shared state is
    /// unavailable.
    pub(crate) async fn renew_once<F, Fut>(
        &self,
        entry: &Entry,
        current_expiry: i64,
        renew: F,
    ) -> Result<Tokens, ExchangeError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Tokens, ExchangeError>>,
    {
        let newer = |f: &Found| matches!(f, Found::Tokens(t) if t.expires_at > current_expiry);
        let mut found = self.find(entry).await.ok();
        let mut held = None;
        if !found.as_ref().is_some_and(newer) && found.is_some() {
            match self.lock(entry).await {
                Ok(Lock::Held(h)) => held = Some(h),
                Ok(Lock::Busy) => found = self.wait_for(entry, newer).await,
                Err(_) => found = None,
            }
        }
        if held.is_none() {
            if let Some(Found::Tokens(stored)) = found.filter(newer) {
                if let Some(t) = self.adopt(stored).await {
                    return Ok(t);
                }
            }
        }
        let result = renew().await;
        if let Ok(t) = &result {
            let _ = self.put_tokens(entry, t).await;
        }
        if let Some(h) = held {
            self.unlock(h).await;
        }
        result
    }
}
