//! The authorizer: the checks an API Gateway Cognito user pool authorizer makes, in a fixed order.
//! Signature and expiry are checked unconditionally; the issuer is checked before any key lookup
//! so that tokens from elsewhere never cause a JWKS fetch.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use sha2::Digest;

use super::jwks::{JwksCache, KeyLookupError};
use crate::config::TokenUsePolicy;

pub use super::token::{claim_as_string, decode, token_from_header, Decoded, MAX_TOKEN_BYTES};
use super::token::{groups_claim, int_claim, str_claim};

/// Why a token was not accepted. `reason()` is the bounded label used in metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token in the request")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("algorithm {0:?} is not accepted (RS256 only)")]
    Algorithm(String),
    #[error("issuer {actual:?} is not the configured issuer {expected:?}")]
    Issuer { expected: String, actual: String },
    #[error("no key with this kid in the JWKS")]
    UnknownKid,
    #[error("signature does not verify")]
    BadSignature,
    #[error("token expired at {exp} (now {now})")]
    Expired { exp: i64, now: i64 },
    #[error("token not valid before {nbf} (now {now})")]
    NotYetValid { nbf: i64, now: i64 },
    #[error("token_use {actual:?} is not accepted here (expected {expected})")]
    TokenUse {
        expected: &'static str,
        actual: String,
    },
    #[error("app client {actual:?} is not in cognito.app_clients")]
    Client { actual: String },
    #[error("none of the route's scopes {required:?} is in the token's scope {actual:?}")]
    Scope {
        required: Vec<String>,
        actual: String,
    },
    #[error("none of the route's groups {required:?} is in cognito:groups {actual:?}")]
    Group {
        required: Vec<String>,
        actual: Vec<String>,
    },
    #[error("signing keys are unavailable (not loaded yet, or older than max_stale)")]
    KeysUnavailable,
    #[error("the token's user pool {pool:?} is not one of the route's pools")]
    Pool { pool: String },
}

impl AuthError {
    /// A bounded label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed(_) => "malformed",
            AuthError::Algorithm(_) => "algorithm",
            AuthError::Issuer { .. } => "issuer",
            AuthError::UnknownKid => "unknown_kid",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired { .. } => "expired",
            AuthError::NotYetValid { .. } => "not_yet_valid",
            AuthError::TokenUse { .. } => "token_use",
            AuthError::Client { .. } => "client",
            AuthError::Scope { .. } => "scope",
            AuthError::Group { .. } => "group",
            AuthError::KeysUnavailable => "jwks_unavailable",
            AuthError::Pool { .. } => "pool",
        }
    }

    /// The name of the check that decided, for `verify-token`.
    pub fn check(&self) -> &'static str {
        match self {
            AuthError::Missing | AuthError::Malformed(_) => "format",
            AuthError::Algorithm(_) => "alg",
            AuthError::Issuer { .. } => "iss",
            AuthError::UnknownKid | AuthError::KeysUnavailable => "kid",
            AuthError::Pool { .. } => "pool",
            AuthError::BadSignature => "signature",
            AuthError::Expired { .. } => "exp",
            AuthError::NotYetValid { .. } => "nbf",
            AuthError::TokenUse { .. } => "token_use",
            AuthError::Client { .. } => "client",
            AuthError::Scope { .. } => "scope",
            AuthError::Group { .. } => "groups",
        }
    }
}

/// The kind of a verified token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    Id,
    Access,
}

impl TokenUse {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenUse::Id => "id",
            TokenUse::Access => "access",
        }
    }
}

/// What a route requires of a token beyond the pool-wide checks.
#[derive(Debug, Clone, Copy)]
pub struct RoutePolicy<'a> {
    pub token_use: TokenUsePolicy,
    pub scopes: &'a [String],
    pub groups: &'a [String],
}

/// A token whose signature, issuer and expiry have been checked.
#[derive(Debug, Clone)]
pub struct Verified {
    pub token_use: TokenUse,
    pub exp: i64,
    pub claims: Map<String, Value>,
    /// `cognito:groups`, type-checked.
    pub groups: Vec<String>,
    /// The space-separated `scope` claim ("" when absent).
    pub scope: String,
}

impl Verified {
    pub fn sub(&self) -> Option<&str> {
        self.claims.get("sub").and_then(Value::as_str)
    }

    /// `aud` of an ID token or `client_id` of an access token.
    pub fn client_id(&self) -> Option<&str> {
        match self.token_use {
            TokenUse::Id => match self.claims.get("aud") {
                Some(Value::String(s)) => Some(s),
                Some(Value::Array(a)) => a.first().and_then(Value::as_str),
                _ => None,
            },
            TokenUse::Access => self.claims.get("client_id").and_then(Value::as_str),
        }
    }
}

/// A token that passed the pool-wide checks, remembered until it expires or its key leaves the
/// JWKS, so that a token is verified once and not on every request.
struct CachedToken {
    verified: Arc<Verified>,
    kid: String,
    /// The key that verified it: a different key published under the same `kid` ends the entry.
    key: [u8; 32],
}

/// How many verified tokens are remembered (each entry is a digest and the claims).
pub const VERIFIED_CACHE_CAPACITY: u64 = 100_000;

/// The pool-wide part of the authorizer: accepted issuers, app clients, clock skew and keys.
pub struct Verifier {
    /// Accepted `iss` values, compared exactly (a pool's original and updated issuer URLs).
    issuers: Vec<String>,
    app_clients: Vec<String>,
    clock_skew: i64,
    jwks: Arc<JwksCache>,
    /// SHA-256 of the token -> its verified claims. A cryptographic digest, so no crafted token
    /// can collide with a verified one.
    verified: moka::sync::Cache<[u8; 32], Arc<CachedToken>>,
}

impl Verifier {
    pub fn new(
        issuers: Vec<String>,
        app_clients: Vec<String>,
        clock_skew: Duration,
        jwks: Arc<JwksCache>,
    ) -> Self {
        Verifier {
            issuers,
            app_clients,
            clock_skew: clock_skew.as_secs() as i64,
            jwks,
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_CACHE_CAPACITY)
                .time_to_live(Duration::from_secs(24 * 3600))
                .build(),
        }
    }

    pub fn jwks(&self) -> &Arc<JwksCache> {
        &self.jwks
    }

    /// Verifies `token` (the raw JWT, without a scheme) against the pool and the route's policy.
    /// `now` is seconds since the Unix epoch. A token verified before is answered from the cache
    /// while it is unexpired and its key is still in the JWKS; the route's checks always run.
    pub async fn verify(
        &self,
        token: &str,
        policy: RoutePolicy<'_>,
        now: i64,
    ) -> Result<Arc<Verified>, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed("token too long"));
        }
        self.verify_digest(token, &digest(token), policy, now).await
    }

    /// `verify` with the token's SHA-256 already computed (the several-pool authorizer needs it
    /// to remember a token's pool).
    pub async fn verify_digest(
        &self,
        token: &str,
        digest: &[u8; 32],
        policy: RoutePolicy<'_>,
        now: i64,
    ) -> Result<Arc<Verified>, AuthError> {
        let digest = *digest;
        if let Some(hit) = self.verified.get(&digest) {
            let exp = hit.verified.exp;
            if now >= exp.saturating_add(self.clock_skew) {
                self.verified.invalidate(&digest);
                return Err(AuthError::Expired { exp, now });
            }
            if self.jwks.has_usable_key(&hit.kid, &hit.key) {
                check_route(&hit.verified, policy)?;
                return Ok(hit.verified.clone());
            }
            // The key was withdrawn or replaced (or the keys went stale): verify from scratch.
            self.verified.invalidate(&digest);
        }
        let decoded = decode(token)?;
        let kid = decoded.kid.clone();
        // Boxed: the slow path (which may refetch the JWKS) would otherwise make every
        // request's future, and each connection's in-flight slot, several KiB larger.
        let (verified, key) = Box::pin(self.verify_pool(decoded, policy, now)).await?;
        let verified = Arc::new(verified);
        self.verified.insert(
            digest,
            Arc::new(CachedToken {
                verified: verified.clone(),
                kid,
                key,
            }),
        );
        check_route(&verified, policy)?;
        Ok(verified)
    }

    /// Verifies a decoded token: the pool-wide checks, then the route's.
    pub async fn verify_decoded(
        &self,
        decoded: Decoded<'_>,
        policy: RoutePolicy<'_>,
        now: i64,
    ) -> Result<Verified, AuthError> {
        let (v, _) = self.verify_pool(decoded, policy, now).await?;
        check_route(&v, policy)?;
        Ok(v)
    }

    /// Structure, issuer, key, signature, expiry, token kind and app client. `policy` only names
    /// the expected kind in errors. Returns the fingerprint of the key that verified it.
    async fn verify_pool(
        &self,
        decoded: Decoded<'_>,
        policy: RoutePolicy<'_>,
        now: i64,
    ) -> Result<(Verified, [u8; 32]), AuthError> {
        let claims = &decoded.claims;
        let iss = str_claim(claims, "iss")?.ok_or(AuthError::Malformed("no iss claim"))?;
        if !self.issuers.iter().any(|i| i == iss) {
            return Err(AuthError::Issuer {
                expected: self.issuers.join(" or "),
                actual: iss.to_string(),
            });
        }
        // Type-check the claims the rules below read before spending a signature check.
        let exp = int_claim(claims, "exp")?.ok_or(AuthError::Malformed("no exp claim"))?;
        let nbf = int_claim(claims, "nbf")?;
        let token_use = str_claim(claims, "token_use")?;
        let groups = groups_claim(claims)?;
        let scope = str_claim(claims, "scope")?;

        let key = self.jwks.key(&decoded.kid).await.map_err(|e| match e {
            KeyLookupError::UnknownKid => AuthError::UnknownKid,
            KeyLookupError::Unavailable => AuthError::KeysUnavailable,
        })?;
        let ok = jsonwebtoken::crypto::verify(
            decoded.signature,
            decoded.signed.as_bytes(),
            &key.decoding,
            Algorithm::RS256,
        )
        .unwrap_or(false);
        if !ok {
            return Err(AuthError::BadSignature);
        }

        if now >= exp.saturating_add(self.clock_skew) {
            return Err(AuthError::Expired { exp, now });
        }
        if let Some(nbf) = nbf {
            if now.saturating_add(self.clock_skew) < nbf {
                return Err(AuthError::NotYetValid { nbf, now });
            }
        }

        let kind = match token_use {
            Some("id") => TokenUse::Id,
            Some("access") => TokenUse::Access,
            other => {
                return Err(AuthError::TokenUse {
                    expected: expected_use(policy.token_use),
                    actual: other.unwrap_or("").to_string(),
                })
            }
        };

        if !self.app_clients.is_empty() {
            let matched = match kind {
                // A Cognito ID token's `aud` is one string (its app client); an array is
                // refused, as aws-jwt-verify refuses it.
                TokenUse::Id => match claims.get("aud") {
                    Some(Value::String(a)) => self.app_clients.iter().any(|c| c == a),
                    _ => false,
                },
                TokenUse::Access => str_claim(claims, "client_id")?
                    .is_some_and(|a| self.app_clients.iter().any(|c| c == a)),
            };
            if !matched {
                let actual = match kind {
                    TokenUse::Id => claims.get("aud").map(|v| v.to_string()),
                    TokenUse::Access => claims.get("client_id").map(|v| v.to_string()),
                };
                return Err(AuthError::Client {
                    actual: actual.unwrap_or_default(),
                });
            }
        }
        let verified = Verified {
            token_use: kind,
            exp,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            scope: scope.unwrap_or("").to_string(),
            claims: Map::new(),
        };
        Ok((
            Verified {
                claims: decoded.claims,
                ..verified
            },
            key.fingerprint,
        ))
    }
}

/// SHA-256 of a token: the key of the verified-token cache. A cryptographic digest, so no crafted
/// token can collide with a verified one.
pub fn digest(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// The route's part of the authorizer: token kind, scopes (access tokens) and groups. Pool-wide
/// checks (signature, issuer, expiry, app client) are `Verifier::verify`'s.
pub fn check_route(v: &Verified, policy: RoutePolicy<'_>) -> Result<(), AuthError> {
    let accepted = match policy.token_use {
        TokenUsePolicy::Id => v.token_use == TokenUse::Id,
        TokenUsePolicy::Access => v.token_use == TokenUse::Access,
        TokenUsePolicy::Any => true,
    };
    if !accepted {
        return Err(AuthError::TokenUse {
            expected: expected_use(policy.token_use),
            actual: v.token_use.as_str().to_string(),
        });
    }
    if v.token_use == TokenUse::Access && !policy.scopes.is_empty() {
        let found = v
            .scope
            .split(' ')
            .any(|s| !s.is_empty() && policy.scopes.iter().any(|r| r == s));
        if !found {
            return Err(AuthError::Scope {
                required: policy.scopes.to_vec(),
                actual: v.scope.clone(),
            });
        }
    }
    if !policy.groups.is_empty() && !v.groups.iter().any(|g| policy.groups.contains(g)) {
        return Err(AuthError::Group {
            required: policy.groups.to_vec(),
            actual: v.groups.clone(),
        });
    }
    Ok(())
}
fn expected_use(p: TokenUsePolicy) -> &'static str {
    match p {
        TokenUsePolicy::Id => "id",
        TokenUsePolicy::Access => "access",
        TokenUsePolicy::Any => "id or access",
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;
    use crate::jwt::jwks::JwksFetcher;
    use crate::jwt::keys::parse_jwks;
    use futures_util::future::{BoxFuture, FutureExt};

    const ISS: &str = "https://issuer.example/pool";

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    /// Always serves a JWKS holding only k2.
    struct OnlyK2;
    impl JwksFetcher for OnlyK2 {
        fn fetch(&self) -> BoxFuture<'static, Result<Vec<u8>, String>> {
            let jwk = String::from_utf8(fixture("rsa-k2.jwk.json")).unwrap();
            async move { Ok(format!("{{\"keys\":[{jwk}]}}").into_bytes()) }.boxed()
        }
        fn describe(&self) -> String {
            "only-k2".into()
        }
    }

    fn sign(claims: &Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&fixture("rsa-k1.pem")).unwrap();
        let mut h = jsonwebtoken::Header::new(Algorithm::RS256);
        h.kid = Some("k1".into());
        jsonwebtoken::encode(&h, claims, &key).unwrap()
    }

    #[tokio::test]
    async fn a_cached_token_stops_at_expiry_and_when_its_key_leaves_the_jwks() {
        let jwk = String::from_utf8(fixture("rsa-k1.jwk.json")).unwrap();
        let seed = parse_jwks(format!("{{\"keys\":[{jwk}]}}").as_bytes(), "test").unwrap();
        let jwks = JwksCache::new(
            Some(seed),
            Some(Arc::new(OnlyK2)),
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        );
        let v = Verifier::new(vec![ISS.into()], vec![], Duration::ZERO, jwks.clone());
        let policy = RoutePolicy {
            token_use: TokenUsePolicy::Id,
            scopes: &[],
            groups: &[],
        };
        let exp = 2_000_000_000;
        let token =
            sign(&serde_json::json!({"iss": ISS, "token_use": "id", "exp": exp, "sub": "s"}));

        assert!(v.verify(&token, policy, exp - 10).await.is_ok());
        assert!(
            v.verify(&token, policy, exp - 1).await.is_ok(),
            "from the cache"
        );
        assert_eq!(
            v.verify(&token, policy, exp).await.unwrap_err(),
            AuthError::Expired { exp, now: exp },
            "the second it expires"
        );

        // Verified again, then k1 is withdrawn: the cached entry no longer counts.
        assert!(v.verify(&token, policy, exp - 10).await.is_ok());
        jwks.refresh().await;
        assert_eq!(
            v.verify(&token, policy, exp - 10).await.unwrap_err(),
            AuthError::UnknownKid
        );
    }

    #[tokio::test]
    async fn route_checks_run_on_cached_tokens() {
        let jwk = String::from_utf8(fixture("rsa-k1.jwk.json")).unwrap();
        let seed = parse_jwks(format!("{{\"keys\":[{jwk}]}}").as_bytes(), "test").unwrap();
        let jwks = JwksCache::new(Some(seed), None, Duration::ZERO, Duration::from_secs(60));
        let v = Verifier::new(vec![ISS.into()], vec![], Duration::ZERO, jwks);
        let token = sign(
            &serde_json::json!({"iss": ISS, "token_use": "id", "exp": 2_000_000_000i64,
            "cognito:groups": ["a"]}),
        );
        let open = RoutePolicy {
            token_use: TokenUsePolicy::Id,
            scopes: &[],
            groups: &[],
        };
        let need_b = ["b".to_string()];
        let group_b = RoutePolicy {
            token_use: TokenUsePolicy::Id,
            scopes: &[],
            groups: &need_b,
        };
        let access = RoutePolicy {
            token_use: TokenUsePolicy::Access,
            scopes: &[],
            groups: &[],
        };
        assert!(v.verify(&token, open, 1).await.is_ok());
        assert!(matches!(
            v.verify(&token, group_b, 1).await,
            Err(AuthError::Group { .. })
        ));
        assert!(matches!(
            v.verify(&token, access, 1).await,
            Err(AuthError::TokenUse { .. })
        ));
    }
}
