//! Fakes for the exchange's unit tests: a clock driven by tokio's (pausable) time, Cognito calls
//! that count themselves and sign tokens with a fixture key, and a verifier that trusts it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::api::{AuthResult, TokenSet};
use super::error::ExchangeError;
use super::{Clock, CognitoCalls};
use crate::jwt::{parse_jwks, JwksCache, Verifier};

pub const ISSUER: &str = "https://issuer.example/pool";
const BASE: i64 = 1_700_000_000;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Seconds since the epoch, advancing with tokio's clock (so `tokio::time::pause` drives it).
pub(crate) fn tokio_clock() -> Clock {
    let start = tokio::time::Instant::now();
    Arc::new(move || BASE + start.elapsed().as_secs() as i64)
}

/// A verifier whose keys are the fixture key k1.
pub fn verifier() -> Arc<Verifier> {
    let jwk = String::from_utf8(fixture("rsa-k1.jwk.json")).unwrap();
    let keys = parse_jwks(format!("{{\"keys\":[{jwk}]}}").as_bytes(), "test").unwrap();
    let jwks = JwksCache::new(
        Some(keys),
        None,
        Duration::from_secs(10),
        Duration::from_secs(86400),
    );
    Arc::new(Verifier::new(
        vec![ISSUER.into()],
        Vec::new(),
        Duration::ZERO,
        jwks,
    ))
}

/// Cognito calls that answer with tokens living `lifetime` seconds, count themselves, and fail
/// when told to. Each call takes `latency` (tokio time); logins take `login_latency`.
pub(crate) struct FakeCalls {
    key: EncodingKey,
    clock: Clock,
    pub lifetime: i64,
    pub latency: Duration,
    pub login_latency: Duration,
    pub logins: AtomicU64,
    pub refreshes: AtomicU64,
    pub fail_login: AtomicBool,
    pub fail_refresh: AtomicBool,
    /// When set, the one password a login is accepted with (refreshes go on working after it
    /// changes, as Cognito's refresh tokens do).
    pub password: Mutex<Option<String>>,
}

impl FakeCalls {
    pub fn new(clock: Clock, lifetime: i64, latency: Duration) -> Arc<Self> {
        Self::with_login_latency(clock, lifetime, latency, latency)
    }

    pub(crate) fn with_login_latency(
        clock: Clock,
        lifetime: i64,
        latency: Duration,
        login_latency: Duration,
    ) -> Arc<Self> {
        Arc::new(FakeCalls {
            key: EncodingKey::from_rsa_pem(&fixture("rsa-k1.pem")).unwrap(),
            clock,
            lifetime,
            latency,
            login_latency,
            logins: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            fail_login: AtomicBool::new(false),
            fail_refresh: AtomicBool::new(false),
            password: Mutex::new(None),
        })
    }

    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::SeqCst)
    }

    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::SeqCst)
    }

    fn tokens(&self, username: &str) -> AuthResult {
        let now = (self.clock)();
        let exp = now + self.lifetime;
        let mut h = Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some("k1".into());
        let id = json!({"iss": ISSUER, "token_use": "id", "aud": "client", "exp": exp,
            "iat": now, "sub": "s", "cognito:username": username});
        let access = json!({"iss": ISSUER, "token_use": "access", "client_id": "client",
            "exp": exp, "iat": now, "sub": "s", "username": username});
        AuthResult::Tokens(TokenSet {
            id_token: jsonwebtoken::encode(&h, &id, &self.key).unwrap(),
            access_token: jsonwebtoken::encode(&h, &access, &self.key).unwrap(),
            refresh_token: Some(format!("rt-{username}")),
            expires_in: self.lifetime as u64,
        })
    }
}

impl CognitoCalls for FakeCalls {
    fn login<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, Result<AuthResult, ExchangeError>> {
        Box::pin(async move {
            self.logins.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.login_latency).await;
            let wrong = self
                .password
                .lock()
                .unwrap()
                .as_ref()
                .is_some_and(|p| p != password);
            if wrong || self.fail_login.load(Ordering::SeqCst) {
                return Err(ExchangeError::cognito("NotAuthorizedException"));
            }
            Ok(self.tokens(username))
        })
    }

    fn refresh<'a>(
        &'a self,
        _refresh_token: &'a str,
        username: &'a str,
    ) -> BoxFuture<'a, Result<AuthResult, ExchangeError>> {
        Box::pin(async move {
            self.refreshes.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.latency).await;
            if self.fail_refresh.load(Ordering::SeqCst) {
                return Err(ExchangeError::cognito("NotAuthorizedException"));
            }
            Ok(self.tokens(username))
        })
    }
}
