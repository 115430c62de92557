//! Credential exchange through the private API: the client (both styles), SECRET_HASH, the
//! Basic credential cache, service accounts, the failure limiter and the refresh tokens the
//! login API issued. Knows nothing of forwarding.

pub mod api;
mod breaker;
pub mod cache;
pub mod error;
pub mod fleet;
pub mod issued;
pub mod limit;
pub mod metrics;
pub mod response;
pub mod secret_hash;
pub mod service;
pub mod sigv4;
#[cfg(test)]
mod test_support;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;

pub use api::{AuthResult, PrivateApi, TokenSet};
pub use cache::CredentialCache;
pub use error::{CognitoErrorKind, DependencyError, ExchangeError, OUTCOMES};
pub use issued::IssuedTokens;
pub use limit::FailureLimiter;
pub use service::ServiceAccounts;

use crate::config::{Config, TokenUsePolicy};
use crate::jwt::{RoutePolicy, TokenUse, Verified, Verifier};
use crate::shared::SharedState;
use fleet::Fleet;
use metrics::ExchangeMetrics;

/// The calls the credential cache and the service accounts make: the private API in service,
/// a fake in their tests.
pub trait CognitoCalls: Send + Sync {
    fn login<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, Result<AuthResult, ExchangeError>>;
    /// `username` is the canonical user name, which SECRET_HASH needs.
    fn refresh<'a>(
        &'a self,
        refresh_token: &'a str,
        username: &'a str,
    ) -> BoxFuture<'a, Result<AuthResult, ExchangeError>>;
}

impl CognitoCalls for PrivateApi {
    fn login<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, Result<AuthResult, ExchangeError>> {
        Box::pin(PrivateApi::login(self, username, password))
    }

    fn refresh<'a>(
        &'a self,
        refresh_token: &'a str,
        username: &'a str,
    ) -> BoxFuture<'a, Result<AuthResult, ExchangeError>> {
        Box::pin(PrivateApi::refresh(self, refresh_token, username))
    }
}

/// Why the exchange could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("private_api: {0}")]
    PrivateApi(#[from] crate::tls::ClientError),
}

/// The credential-exchange side of the gateway.
#[derive(Clone)]
pub struct Exchange {
    pub api: Arc<PrivateApi>,
    pub cache: Arc<CredentialCache>,
    pub services: Arc<ServiceAccounts>,
    pub limiter: Arc<FailureLimiter>,
    pub issued: Arc<IssuedTokens>,
}

impl Exchange {
    /// Builds the exchange from `[private_api]` and `[exchange]`, when both are configured, and
    /// starts the service accounts' keepers (they stop with the last reference to them, or
    /// when `shutdown` turns true).
    pub fn build(
        config: &Config,
        verifier: &Arc<Verifier>,
        metrics: &ExchangeMetrics,
        shared: Option<Arc<SharedState>>,
        shutdown: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<Option<Exchange>, BuildError> {
        let (Some(api_cfg), Some(ex_cfg)) = (&config.private_api, &config.exchange) else {
            return Ok(None);
        };
        let api = Arc::new(
            PrivateApi::new(api_cfg.clone(), ex_cfg.clone())
                .map_err(BuildError::PrivateApi)?
                .with_metrics(metrics.clone()),
        );
        let clock = system_clock();
        let fleet = shared.as_ref().map(|s| {
            Arc::new(Fleet::new(
                s.clone(),
                api_cfg.timeout,
                verifier.clone(),
                clock.clone(),
            ))
        });
        let limiter = Arc::new(FailureLimiter::new(
            ex_cfg.max_failures_per_minute,
            config.server.ipv6_prefix,
            shared,
        ));
        let calls: Arc<dyn CognitoCalls> = api.clone();
        let services = ServiceAccounts::new(
            &config.service_accounts,
            calls.clone(),
            verifier.clone(),
            ex_cfg.refresh_before,
            clock.clone(),
            fleet.clone(),
        );
        services.start(shutdown.clone());
        Ok(Some(Exchange {
            cache: CredentialCache::new(
                calls,
                verifier.clone(),
                limiter.clone(),
                cache::CacheSettings::from(ex_cfg),
                clock,
                Some(metrics.clone()),
                fleet,
            ),
            services,
            issued: Arc::new(IssuedTokens::new(ex_cfg.cache_capacity)),
            api,
            limiter,
        }))
    }
}

/// Basic credentials' tokens are used for at most this long after their password was last
/// checked by a login, however long they or their refresh token would still be accepted: a
/// full login with the password is forced at least this often, so that a changed or revoked
/// password stops working within it — on every replica of a fleet, since the time of the check
/// travels with the tokens and a refresh never makes it younger.
pub(crate) const MAX_SESSION_AGE: Duration = Duration::from_secs(3600);

/// Seconds since the Unix epoch; injectable so token timing can be tested.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub(crate) fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    })
}

/// Tokens obtained through the private API, verified like any client token.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub set: TokenSet,
    pub id: Arc<Verified>,
    pub access: Arc<Verified>,
    /// The canonical user name (`cognito:username`), which refresh needs for SECRET_HASH.
    pub username: String,
    /// When the password behind these tokens was last checked by a login (seconds since the
    /// epoch, on the exchange's clock; taken before the login was sent). Tokens obtained by a
    /// refresh keep their predecessor's.
    pub password_checked_at: i64,
}

impl Tokens {
    /// When the first of the two tokens expires.
    pub fn expires_at(&self) -> i64 {
        self.id.exp.min(self.access.exp)
    }

    /// Whether the password was last checked `MAX_SESSION_AGE` or more before `now`: a login
    /// with the password is due, whatever the tokens' own expiry.
    pub(crate) fn password_check_due(&self, now: i64) -> bool {
        password_check_due(self.password_checked_at, now)
    }

    /// The token to check and forward for a route that wants `use_`.
    pub(crate) fn pick(&self, use_: TokenUse) -> (&Verified, &str) {
        match use_ {
            TokenUse::Id => (&self.id, &self.set.id_token),
            TokenUse::Access => (&self.access, &self.set.access_token),
        }
    }
}

/// Whether a password checked at `checked_at` must be checked again at `now` (see
/// `MAX_SESSION_AGE`). A check time ahead of `now` (another replica's clock) counts as now.
pub(crate) fn password_check_due(checked_at: i64, now: i64) -> bool {
    now.saturating_sub(checked_at) >= MAX_SESSION_AGE.as_secs() as i64
}

/// The kind of token a route checks and forwards for exchanged credentials.
pub(crate) fn route_token_use(policy: TokenUsePolicy) -> TokenUse {
    match policy {
        TokenUsePolicy::Id | TokenUsePolicy::Any => TokenUse::Id,
        TokenUsePolicy::Access => TokenUse::Access,
    }
}

/// New tokens for `current` through its refresh token, verified like any token. Cognito does not
/// always send a new refresh token; the old one is kept then. A refresh checks no password:
/// the new tokens keep `current`'s `password_checked_at`.
pub(crate) async fn renew(
    api: &dyn CognitoCalls,
    verifier: &Verifier,
    current: &Tokens,
    now: i64,
) -> Result<Tokens, ExchangeError> {
    let refresh_token = current
        .set
        .refresh_token
        .clone()
        .ok_or_else(|| ExchangeError::InvalidTokens("no refresh token".into()))?;
    match api.refresh(&refresh_token, &current.username).await? {
        AuthResult::Tokens(mut set) => {
            if set.refresh_token.is_none() {
                set.refresh_token = Some(refresh_token);
            }
            verify_tokens(
                verifier,
                set,
                &current.username,
                now,
                current.password_checked_at,
            )
            .await
        }
        AuthResult::Challenge(c) => Err(ExchangeError::ChallengeRequired(c.name)),
    }
}

/// Verifies both tokens of a set (signature, issuer, expiry, app client, kind).
/// `password_checked_at` is when the login that the set descends from sent the password.
pub(crate) async fn verify_tokens(
    verifier: &Verifier,
    set: TokenSet,
    fallback_username: &str,
    now: i64,
    password_checked_at: i64,
) -> Result<Tokens, ExchangeError> {
    let any = RoutePolicy {
        token_use: TokenUsePolicy::Any,
        scopes: &[],
        groups: &[],
    };
    let id = verifier
        .verify(&set.id_token, any, now)
        .await
        .map_err(|e| ExchangeError::InvalidTokens(format!("ID token: {e}")))?;
    let access = verifier
        .verify(&set.access_token, any, now)
        .await
        .map_err(|e| ExchangeError::InvalidTokens(format!("access token: {e}")))?;
    if id.token_use != TokenUse::Id || access.token_use != TokenUse::Access {
        return Err(ExchangeError::InvalidTokens(
            "IdToken/AccessToken have the wrong token_use".into(),
        ));
    }
    let username = id
        .claims
        .get("cognito:username")
        .or_else(|| access.claims.get("username"))
        .and_then(|v| v.as_str())
        .unwrap_or(fallback_username)
        .to_string();
    Ok(Tokens {
        set,
        id,
        access,
        username,
        password_checked_at,
    })
}
