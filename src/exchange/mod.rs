//! Credential exchange through the private API: the client (both styles), SECRET_HASH, the
//! Basic credential cache, service accounts and the failure limiter. Knows nothing of
//! forwarding.

pub mod api;
pub mod cache;
pub mod error;
pub mod limit;
pub mod secret_hash;
pub mod service;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use api::{AuthResult, PrivateApi, TokenSet};
pub use cache::CredentialCache;
pub use error::{CognitoErrorKind, DependencyError, ExchangeError};
pub use limit::FailureLimiter;
pub use service::ServiceAccounts;

use crate::config::TokenUsePolicy;
use crate::jwt::{RoutePolicy, TokenUse, Verified, Verifier};

/// Seconds since the Unix epoch; injectable so token timing can be tested.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub fn system_clock() -> Clock {
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
}

impl Tokens {
    /// When the first of the two tokens expires.
    pub fn expires_at(&self) -> i64 {
        self.id.exp.min(self.access.exp)
    }

    /// The token to check and forward for a route that wants `use_`.
    pub fn pick(&self, use_: TokenUse) -> (&Verified, &str) {
        match use_ {
            TokenUse::Id => (&self.id, &self.set.id_token),
            TokenUse::Access => (&self.access, &self.set.access_token),
        }
    }
}

/// The kind of token a route checks and forwards for exchanged credentials.
pub fn route_token_use(policy: TokenUsePolicy) -> TokenUse {
    match policy {
        TokenUsePolicy::Id | TokenUsePolicy::Any => TokenUse::Id,
        TokenUsePolicy::Access => TokenUse::Access,
    }
}

/// Verifies both tokens of a set (signature, issuer, expiry, app client, kind).
pub async fn verify_tokens(
    verifier: &Verifier,
    set: TokenSet,
    fallback_username: &str,
    now: i64,
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
    })
}
