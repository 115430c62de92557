//! Service accounts: named credentials the gateway logs in with itself. Logged in at start
//! (readiness waits for them), refreshed in the background ahead of expiry with jitter, retried
//! with backoff on failure. A token that has expired is never handed out.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio_util::task::AbortOnDropHandle;

use super::api::AuthResult;
use super::error::ExchangeError;
use super::fleet::{Fleet, Subject};
use super::{renew, verify_tokens, Clock, CognitoCalls, Tokens};
use crate::config::ServiceAccountConfig;
use crate::jwt::Verifier;

const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

struct Account {
    cfg: ServiceAccountConfig,
    tokens: ArcSwapOption<Tokens>,
}

/// The service accounts and their keepers: one task per account, owned here, so the tasks end
/// when the last reference to the accounts goes (a reload that replaced them) or on shutdown.
pub struct ServiceAccounts {
    accounts: HashMap<String, Arc<Account>>,
    api: Arc<dyn CognitoCalls>,
    verifier: Arc<Verifier>,
    clock: Clock,
    refresh_before: i64,
    keepers: Mutex<Vec<AbortOnDropHandle<()>>>,
    /// With shared state: one login or refresh per account for the whole fleet.
    fleet: Option<Arc<Fleet>>,
}

impl ServiceAccounts {
    pub fn new(
        configs: &[ServiceAccountConfig],
        api: Arc<dyn CognitoCalls>,
        verifier: Arc<Verifier>,
        refresh_before: Duration,
        clock: Clock,
        fleet: Option<Arc<Fleet>>,
    ) -> Arc<Self> {
        Arc::new(ServiceAccounts {
            fleet,
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
            refresh_before: refresh_before.as_secs() as i64,
            keepers: Mutex::new(Vec::new()),
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
    pub(crate) fn all_ready(&self) -> bool {
        self.accounts.keys().all(|n| self.tokens(n).is_some())
    }

    /// Names of accounts without a valid token (for readiness).
    #[cfg(test)]
    pub(crate) fn not_ready(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .accounts
            .keys()
            .filter(|n| self.tokens(n).is_none())
            .map(String::as_str)
            .collect();
        v.sort_unstable();
        v
    }

    /// Starts one keeper per account (once); they stop when `shutdown` turns true or when
    /// these accounts are dropped.
    pub fn start(self: &Arc<Self>, shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut keepers = self.keepers.lock().unwrap_or_else(|e| e.into_inner());
        if !keepers.is_empty() {
            return;
        }
        for account in self.accounts.values() {
            let this = Arc::downgrade(self);
            let account = account.clone();
            let mut stop = shutdown.clone();
            keepers.push(AbortOnDropHandle::new(tokio::spawn(async move {
                tokio::select! {
                    _ = Self::keep(this, &account) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            })));
        }
    }

    /// Logs the account in and keeps it renewed. Holds the accounts only while renewing, so
    /// that dropping them ends the task.
    async fn keep(this: Weak<Self>, account: &Account) {
        let mut backoff = INITIAL_BACKOFF;
        loop {
            let Some(accounts) = this.upgrade() else {
                return;
            };
            let wait = match accounts.renew(account).await {
                Ok(tokens) => {
                    backoff = INITIAL_BACKOFF;
                    let wait = accounts.renew_after(&tokens, rand::random());
                    account.tokens.store(Some(tokens));
                    wait
                }
                Err(e) => {
                    tracing::warn!(service_account = %account.cfg.name, error = %e,
                        retry_in_ms = backoff.as_millis() as u64, "service account login failed");
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            drop(accounts);
            tokio::time::sleep(wait).await;
        }
    }

    /// When to renew tokens just obtained: `refresh_before` their expiry (at the latest at half
    /// their lifetime), minus up to 10% of the lifetime as jitter so that many gateways do not
    /// renew in step; at least a second.
    fn renew_after(&self, tokens: &Tokens, jitter_seed: u64) -> Duration {
        let lifetime = (tokens.expires_at() - (self.clock)()).max(1);
        let lead = self.refresh_before.min(lifetime / 2);
        let jitter = jitter_seed % ((lifetime as u64 / 10).max(1));
        let wait = Duration::from_secs((lifetime - lead).max(1) as u64)
            .saturating_sub(Duration::from_secs(jitter));
        wait.max(Duration::from_secs(1))
    }

    /// New tokens for the account: with shared state, once for the fleet (another replica's
    /// when it has renewed them already); else this replica's own.
    async fn renew(&self, account: &Account) -> Result<Arc<Tokens>, ExchangeError> {
        let Some(fleet) = &self.fleet else {
            return self.renew_alone(account).await;
        };
        let entry = fleet.entry(Subject::Service {
            name: &account.cfg.name,
            username: &account.cfg.username,
        });
        let expiry = account
            .tokens
            .load()
            .as_ref()
            .map_or(i64::MIN, |t| t.expires_at());
        fleet
            .renew_once(&entry, expiry, || async {
                self.renew_alone(account).await.map(Arc::unwrap_or_clone)
            })
            .await
            .map(Arc::new)
    }

    /// Refreshes with the refresh token when there is one; logs in with the password otherwise
    /// or when the refresh fails.
    async fn renew_alone(&self, account: &Account) -> Result<Arc<Tokens>, ExchangeError> {
        if let Some(current) = account.tokens.load_full() {
            if current.set.refresh_token.is_some() {
                match renew(&*self.api, &self.verifier, &current, (self.clock)()).await {
                    Ok(t) => return Ok(Arc::new(t)),
                    Err(e) => tracing::info!(service_account = %account.cfg.name, error = %e,
                        "refresh failed; logging in again"),
                }
            }
        }
        let username = &account.cfg.username;
        let checked_at = (self.clock)();
        match self
            .api
            .login(username, account.cfg.password.expose())
            .await?
        {
            AuthResult::Tokens(set) => Ok(Arc::new(
                verify_tokens(&self.verifier, set, username, (self.clock)(), checked_at).await?,
            )),
            AuthResult::Challenge(c) => Err(ExchangeError::ChallengeRequired(c.name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::config::Secret;
    use crate::exchange::test_support::{tokio_clock, verifier, FakeCalls};

    fn accounts(calls: &Arc<FakeCalls>, clock: Clock) -> Arc<ServiceAccounts> {
        ServiceAccounts::new(
            &[ServiceAccountConfig {
                name: "batch".into(),
                username: "svc-batch".into(),
                password: Secret::new("pw"),
            }],
            calls.clone(),
            verifier(),
            Duration::from_secs(300),
            clock,
            None,
        )
    }

    async fn advance_to(start: tokio::time::Instant, secs: f64) {
        tokio::time::sleep_until(start + Duration::from_secs_f64(secs)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn renewal_comes_refresh_before_expiry_less_up_to_a_tenth_of_jitter() {
        let clock = tokio_clock();
        let calls = FakeCalls::new(clock.clone(), 3600, Duration::ZERO);
        let a = accounts(&calls, clock);
        let account = a.accounts["batch"].clone();
        let tokens = a.renew(&account).await.unwrap();
        assert_eq!(a.renew_after(&tokens, 0), Duration::from_secs(3300));
        assert_eq!(a.renew_after(&tokens, 359), Duration::from_secs(2941));
        assert_eq!(
            a.renew_after(&tokens, 360),
            Duration::from_secs(3300),
            "modulo"
        );
        // Short-lived tokens: at half their lifetime at the latest, never below a second.
        let short = FakeCalls::new(tokio_clock(), 100, Duration::ZERO);
        let b = accounts(&short, tokio_clock());
        let t = b.renew(&b.accounts["batch"]).await.unwrap();
        assert_eq!(b.renew_after(&t, 0), Duration::from_secs(50));
        let tiny = FakeCalls::new(tokio_clock(), 1, Duration::ZERO);
        let c = accounts(&tiny, tokio_clock());
        let t = c.renew(&c.accounts["batch"]).await.unwrap();
        assert_eq!(c.renew_after(&t, 7), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn keepers_log_in_at_start_refresh_ahead_of_expiry_and_stop_with_the_accounts() {
        let start = tokio::time::Instant::now();
        let clock = tokio_clock();
        let calls = FakeCalls::new(clock.clone(), 3600, Duration::ZERO);
        let a = accounts(&calls, clock);
        let (_tx, rx) = tokio::sync::watch::channel(false);
        a.start(rx.clone());
        a.start(rx);
        advance_to(start, 1.0).await;
        assert!(a.all_ready());
        assert_eq!((calls.logins(), calls.refreshes()), (1, 0), "one keeper");
        advance_to(start, 2939.0).await;
        assert_eq!(
            calls.refreshes(),
            0,
            "not before the earliest jittered time"
        );
        advance_to(start, 3301.0).await;
        assert_eq!(calls.refreshes(), 1, "by refresh_before ahead of expiry");
        assert_eq!(calls.logins(), 1, "refreshed, not logged in again");
        drop(a);
        advance_to(start, 100_000.0).await;
        assert_eq!((calls.logins(), calls.refreshes()), (1, 1), "keeper ended");
    }

    #[tokio::test(start_paused = true)]
    async fn failed_logins_back_off_and_expired_tokens_are_not_handed_out() {
        let start = tokio::time::Instant::now();
        let clock = tokio_clock();
        let calls = FakeCalls::new(clock.clone(), 3600, Duration::ZERO);
        calls.fail_login.store(true, Ordering::SeqCst);
        let a = accounts(&calls, clock);
        let (_tx, rx) = tokio::sync::watch::channel(false);
        a.start(rx);
        // Attempts at 0, 0.5, 1.5, 3.5 and 7.5 s (backoff 0.5 s doubling).
        advance_to(start, 8.0).await;
        assert_eq!(calls.logins(), 5);
        assert!(a.tokens("batch").is_none() && !a.all_ready());
        assert_eq!(a.not_ready(), vec!["batch"]);
        // Capped at 60 s.
        calls.logins.store(0, Ordering::SeqCst);
        advance_to(start, 1000.0).await;
        // 15.5, 31.5, 63.5 s, then every 60 s from 123.5 to 963.5 s.
        assert_eq!(calls.logins(), 18);
        // Working again: tokens, then past their expiry with every renewal failing, none.
        calls.fail_login.store(false, Ordering::SeqCst);
        advance_to(start, 1061.0).await;
        assert!(a.tokens("batch").is_some());
        calls.fail_login.store(true, Ordering::SeqCst);
        calls.fail_refresh.store(true, Ordering::SeqCst);
        advance_to(start, 1061.0 + 3601.0).await;
        assert!(
            a.tokens("batch").is_none(),
            "an expired token is never handed out"
        );
    }
}
