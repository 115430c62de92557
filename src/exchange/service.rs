//! Service accounts: named credentials the gateway logs in with itself. Logged in at start
//! (readiness waits for them), refreshed in the background ahead of expiry with jitter, retried
//! with backoff on failure. A token that has expired is never handed out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;

use super::api::{AuthResult, PrivateApi};
use super::error::ExchangeError;
use super::{verify_tokens, Clock, Tokens};
use crate::config::ServiceAccountConfig;
use crate::jwt::Verifier;

const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

struct Account {
    cfg: ServiceAccountConfig,
    tokens: ArcSwapOption<Tokens>,
}

pub struct ServiceAccounts {
    accounts: HashMap<String, Arc<Account>>,
    api: Arc<PrivateApi>,
    verifier: Arc<Verifier>,
    clock: Clock,
    refresh_before: i64,
}

impl ServiceAccounts {
    pub fn new(
        configs: &[ServiceAccountConfig],
        api: Arc<PrivateApi>,
        verifier: Arc<Verifier>,
        clock: Clock,
    ) -> Arc<Self> {
        let refresh_before = api.exchange_config().refresh_before.as_secs() as i64;
        Arc::new(ServiceAccounts {
            accounts: configs
                .iter()
                .map(|c| {
                    (
                        c.name.clone(),
                        Arc::new(Account {
                            cfg: c.clone(),
                            tokens: ArcSwapOption::empty(),
                        }),
                    )
                })
                .collect(),
            api,
            verifier,
            clock,
            refresh_before,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    /// The account's tokens, if it holds unexpired ones.
    pub fn tokens(&self, name: &str) -> Option<Arc<Tokens>> {
        let t = self.accounts.get(name)?.tokens.load_full()?;
        ((self.clock)() < t.expires_at()).then_some(t)
    }

    /// Every account holds an unexpired token.
    pub fn all_ready(&self) -> bool {
        self.accounts.keys().all(|n| self.tokens(n).is_some())
    }

    /// Names of accounts without a valid token (for readiness).
    pub fn not_ready(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .accounts
            .keys()
            .filter(|n| self.tokens(n).is_none())
            .map(String::as_str)
            .collect();
        v.sort_unstable();
        v
    }

    /// Spawns one keeper task per account; they stop when `shutdown` turns true.
    pub fn spawn(
        self: &Arc<Self>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.accounts
            .values()
            .map(|a| {
                let this = self.clone();
                let account = a.clone();
                let mut stop = shutdown.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = this.keep(&account) => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                })
            })
            .collect()
    }

    async fn keep(&self, account: &Account) {
        let mut backoff = INITIAL_BACKOFF;
        loop {
            match self.renew(account).await {
                Ok(tokens) => {
                    backoff = INITIAL_BACKOFF;
                    let now = (self.clock)();
                    let lifetime = (tokens.expires_at() - now).max(1);
                    // Renew refresh_before expiry (at the latest at half the lifetime), minus up
                    // to 10% jitter so many gateways do not renew in step.
                    let lead = self.refresh_before.min(lifetime / 2);
                    let jitter = rand::random::<u64>() % ((lifetime as u64 / 10).max(1));
                    let wait = (lifetime - lead).max(1) as u64;
                    let wait =
                        Duration::from_secs(wait).saturating_sub(Duration::from_secs(jitter));
                    account.tokens.store(Some(tokens));
                    tokio::time::sleep(wait.max(Duration::from_secs(1))).await;
                }
                Err(e) => {
                    tracing::warn!(service_account = %account.cfg.name, error = %e,
                        retry_in_ms = backoff.as_millis() as u64, "service account login failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Refreshes with the refresh token when there is one; logs in with the password otherwise
    /// or when the refresh fails.
    async fn renew(&self, account: &Account) -> Result<Arc<Tokens>, ExchangeError> {
        let now = (self.clock)();
        if let Some(current) = account.tokens.load_full() {
            if let Some(rt) = current.set.refresh_token.clone() {
                match self.api.refresh(&rt, &current.username).await {
                    Ok(AuthResult::Tokens(mut set)) => {
                        if set.refresh_token.is_none() {
                            set.refresh_token = Some(rt);
                        }
                        match verify_tokens(&self.verifier, set, &current.username, now).await {
                            Ok(t) => return Ok(Arc::new(t)),
                            Err(e) => tracing::warn!(service_account = %account.cfg.name,
                                error = %e, "refreshed tokens failed verification; logging in again"),
                        }
                    }
                    Ok(AuthResult::Challenge(c)) => {
                        tracing::warn!(service_account = %account.cfg.name,
                        challenge = %c.name, "refresh asked for a challenge; logging in again")
                    }
                    Err(e) => tracing::info!(service_account = %account.cfg.name, error = %e,
                        "refresh failed; logging in again"),
                }
            }
        }
        let username = &account.cfg.username;
        match self
            .api
            .login(username, account.cfg.password.expose())
            .await?
        {
            AuthResult::Tokens(set) => Ok(Arc::new(
                verify_tokens(&self.verifier, set, username, (self.clock)()).await?,
            )),
            AuthResult::Challenge(c) => Err(ExchangeError::ChallengeRequired(c.name)),
        }
    }
}
