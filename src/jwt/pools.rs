//! Several user pools behind one authorizer (as one API Gateway Cognito authorizer takes up to
//! 1,000): the pool is chosen by the token's `iss` (exact match against each pool's accepted
//! issuers) before any key lookup, and the `kid` is then looked up in that pool's keys only, so
//! a `kid` that two pools publish never crosses over. A token verified before is found by its
//! digest (one hash-map lookup), so the choice costs nothing on the hot path; with one pool the
//! pool's verifier is called directly.

use std::net::IpAddr;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde_json::Value;

use super::flood::FloodGuard;
use super::jwks::JwksCache;
use super::token::{decode, Decoded, MAX_TOKEN_BYTES};
use super::verify::{digest, AuthError, RoutePolicy, Verified, Verifier};

/// One pool: its name and its verifier (issuers, app clients, keys).
pub struct Pool {
    pub name: String,
    pub verifier: Arc<Verifier>,
}

pub struct Authorizer {
    pools: Vec<Pool>,
    by_issuer: FxHashMap<String, usize>,
    /// Token digest -> its pool, for tokens verified before (bounded like the verified cache).
    seen: moka::sync::Cache<[u8; 32], usize>,
}

impl Authorizer {
    /// `pools` with the issuers each accepts (no issuer in two pools: the config refuses that).
    pub fn new(pools: Vec<(Pool, Vec<String>)>) -> Self {
        let mut by_issuer = FxHashMap::default();
        let mut list = Vec::with_capacity(pools.len());
        for (i, (pool, issuers)) in pools.into_iter().enumerate() {
            for iss in issuers {
                by_issuer.insert(iss, i);
            }
            list.push(pool);
        }
        Authorizer {
            pools: list,
            by_issuer,
            seen: moka::sync::Cache::builder()
                .max_capacity(super::verify::VERIFIED_CACHE_CAPACITY)
                .build(),
        }
    }

    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// Sets every pool's `jwks_age_seconds`, for a scrape.
    pub(crate) fn report_key_ages(&self) {
        for p in &self.pools {
            p.verifier.jwks().report_age();
        }
    }

    /// Every pool's keys.
    pub(crate) fn key_sets(&self) -> impl Iterator<Item = (&str, &Arc<JwksCache>)> {
        self.pools
            .iter()
            .map(|p| (p.name.as_str(), p.verifier.jwks()))
    }

    /// Verifies `token` against its pool and the route's policy; `allowed` lists the pools the
    /// route accepts (empty: every pool). Returns the claims and the pool's name.
    pub async fn verify(
        &self,
        token: &str,
        policy: RoutePolicy<'_>,
        now: i64,
        allowed: &[String],
    ) -> Result<(Arc<Verified>, &str), AuthError> {
        self.verify_from(token, policy, now, allowed, None).await
    }

    /// `verify` for a request from `client`, under the flood guard when there is one: a token
    /// verified before is answered as ever; any other needs the client to be within its budget
    /// of failed signatures (`AuthError::TooManyBadSignatures` otherwise, before any RSA work),
    /// and a failed signature is charged to it.
    pub async fn verify_from(
        &self,
        token: &str,
        policy: RoutePolicy<'_>,
        now: i64,
        allowed: &[String],
        flood: Option<(&FloodGuard, IpAddr)>,
    ) -> Result<(Arc<Verified>, &str), AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed("token too long"));
        }
        let d = digest(token);
        let (index, remember, decoded) = if self.pools.len() == 1 {
            (0, false, None)
        } else {
            match self.seen.get(&d) {
                Some(i) => (i, false, None),
                None => {
                    let decoded = decode(token)?;
                    (self.pool_of(&decoded)?, true, Some(decoded))
                }
            }
        };
        let pool = &self.pools[index];
        if !allowed.is_empty() && !allowed.contains(&pool.name) {
            return Err(AuthError::Pool {
                pool: pool.name.clone(),
            });
        }
        let verifier = &pool.verifier;
        let verified = match verifier.cached(&d, policy, now) {
            Some(answer) => answer?,
            None => {
                if flood.is_some_and(|(guard, client)| !guard.admits(client)) {
                    return Err(AuthError::TooManyBadSignatures);
                }
                let r = verifier
                    .verify_unseen(token, &d, decoded, policy, now)
                    .await;
                if let (Some((guard, client)), Err(AuthError::BadSignature)) = (flood, &r) {
                    guard.charge(client).await;
                }
                r?
            }
        };
        if remember {
            self.seen.insert(d, index);
        }
        Ok((verified, &pool.name))
    }

    /// The pool whose issuer the token names, before any key lookup.
    fn pool_of(&self, decoded: &Decoded<'_>) -> Result<usize, AuthError> {
        let iss = match decoded.claims.get("iss") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(AuthError::Malformed("iss is not a string")),
            None => return Err(AuthError::Malformed("no iss claim")),
        };
        self.by_issuer
            .get(iss)
            .copied()
            .ok_or_else(|| AuthError::Issuer {
                expected: "the issuer of a configured pool".into(),
                actual: iss.chars().take(256).collect(),
            })
    }
}
