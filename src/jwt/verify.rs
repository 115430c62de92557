//! The authorizer: the checks an API Gateway Cognito user pool authorizer makes, in a fixed order.
//! Signature and expiry are checked unconditionally; the issuer is checked before any key lookup
//! so that tokens from elsewhere never cause a JWKS fetch.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use sha2::Digest;

use super::jwks::{JwksCache, KeyLookupError};
use super::keys::Key;
use super::rejected::{signature_ok, RejectedCache};
use crate::config::TokenUsePolicy;

pub use super::error::AuthError;
pub use super::token::{claim_as_string, decode, token_from_header, Decoded, MAX_TOKEN_BYTES};
use super::token::{groups_claim, int_claim, str_claim};

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
    /// SHA-256 of the whole token.
    token: [u8; 32],
    kid: String,
    /// The key that verified it: a different key published under the same `kid` ends the entry.
    key: [u8; 32],
}

/// How many verified tokens are remembered (each entry is a digest and the claims).
pub(crate) const VERIFIED_CACHE_CAPACITY: u64 = 100_000;

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
    /// The same entries by the SHA-256 of their signature: a valid token's signature reused over
    /// an edited payload is recognised as a forgery.
    by_signature: moka::sync::Cache<[u8; 32], Arc<CachedToken>>,
    /// Recent tokens refused after the signature check (bad signature, expired, wrong client).
    rejected: RejectedCache,
    /// RSA verifications performed (the work a forger can cause).
    signature_checks: std::sync::atomic::AtomicU64,
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
            by_signature: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_CACHE_CAPACITY)
                .time_to_live(Duration::from_secs(24 * 3600))
                .build(),
            rejected: RejectedCache::new(),
            signature_checks: Default::default(),
        }
    }

    pub fn jwks(&self) -> &Arc<JwksCache> {
        &self.jwks
    }

    /// RSA signature checks performed so far.
    #[cfg(test)]
    pub(crate) fn signature_checks(&self) -> u64 {
        self.signature_checks
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests answered from the recent-rejections cache so far.
    #[cfg(test)]
    pub(crate) fn rejected_hits(&self) -> u64 {
        self.rejected
            .hits
            .load(std::sync::atomic::Ordering::Relaxed)
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
        let digest = digest(token);
        match self.cached(&digest, policy, now) {
            Some(answer) => answer,
            None => self.verify_unseen(token, &digest, None, policy, now).await,
        }
    }

    /// The answer for a token verified before (while it is unexpired and its key is still in
    /// the JWKS; the route's checks always run); `None` for any other token.
    pub(crate) fn cached(
        &self,
        digest: &[u8; 32],
        policy: RoutePolicy<'_>,
        now: i64,
    ) -> Option<Result<Arc<Verified>, AuthError>> {
        let hit = self.verified.get(digest)?;
        let exp = hit.verified.exp;
        if now >= exp.saturating_add(self.clock_skew) {
            self.verified.invalidate(digest);
            return Some(Err(AuthError::Expired { exp, now }));
        }
        if self.jwks.has_usable_key(&hit.kid, &hit.key) {
            return Some(check_route(&hit.verified, policy).map(|()| hit.verified.clone()));
        }
        // The key was withdrawn or replaced (or the keys went stale): verify from scratch.
        self.verified.invalidate(digest);
        None
    }

    /// A token that `cached` did not answer: the forgery indexes, then the checks and RSA. The
    /// token's SHA-256 is the caller's, with the token already decoded when the caller had to
    /// (the several-pool authorizer reads `iss` to choose the pool): a token is decoded once.
    pub(crate) async fn verify_unseen(
        &self,
        token: &str,
        digest: &[u8; 32],
        decoded: Option<Decoded<'_>>,
        policy: RoutePolicy<'_>,
        now: i64,
    ) -> Result<Arc<Verified>, AuthError> {
        let digest = *digest;
        // Not a token verified before. Is its signature one that verified another token? RSA
        // signatures are deterministic and the message's hash is recovered from the signature,
        // so the same signature over any other content is invalid: an edited payload, refused
        // without RSA (and without decoding). Only on this path: the hot path hashes once.
        let signature = signature_digest(token);
        if let Some(hit) = self.by_signature.get(&signature) {
            if hit.token != digest && self.jwks.has_usable_key(&hit.kid, &hit.key) {
                return Err(AuthError::BadSignature);
            }
        }
        if let Some(e) = self.rejected.get(&digest, &self.jwks, now) {
            return Err(e);
        }
        let decoded = match decoded {
            Some(d) => d,
            None => decode(token)?,
        };
        let kid = decoded.kid.clone();
        // Boxed: the slow path (which may refetch the JWKS) would otherwise make every
        // request's future, and each connection's in-flight slot, several KiB larger.
        let (verified, key) = match Box::pin(self.verify_pool(decoded, policy, now)).await {
            Ok(v) => v,
            Err((e, Some(key))) => {
                self.rejected.insert(digest, key, e.clone());
                return Err(e);
            }
            Err((e, None)) => return Err(e),
        };
        let verified = Arc::new(verified);
        let entry = Arc::new(CachedToken {
            verified: verified.clone(),
            token: digest,
            kid,
            key,
        });
        self.verified.insert(digest, entry.clone());
        self.by_signature.insert(signature, entry);
        check_route(&verified, policy)?;
        Ok(verified)
    }

    /// Verifies a decoded token: the pool-wide checks, then the route's.
    pub(crate) async fn verify_decoded(
        &self,
        decoded: Decoded<'_>,
        policy: RoutePolicy<'_>,
        now: i64,
    ) -> Result<Verified, AuthError> {
        let (v, _) = self
            .verify_pool(decoded, policy, now)
            .await
            .map_err(|(e, _)| e)?;
        check_route(&v, policy)?;
        Ok(v)
    }

    /// Structure, issuer, key, signature, expiry, token kind and app client. `policy` only names
    /// the expected kind in errors. Returns the fingerprint of the key that verified it.
    ///
    /// A failure decided with a key (bad signature, expired, wrong app client) comes with that
    /// key, so that the rejection can be remembered for as long as the key is published.
    async fn verify_pool(
        &self,
        decoded: Decoded<'_>,
        policy: RoutePolicy<'_>,
        now: i64,
    ) -> Result<(Verified, [u8; 32]), (AuthError, Option<Arc<Key>>)> {
        let mut decided_by = None;
        match self
            .verify_pool_with(decoded, policy, now, &mut decided_by)
            .await
        {
            Ok(v) => Ok(v),
            Err(e) => {
                let lasting = matches!(
                    e,
                    AuthError::BadSignature | AuthError::Expired { .. } | AuthError::Client { .. }
                );
                Err((e, decided_by.filter(|_| lasting)))
            }
        }
    }

    async fn verify_pool_with(
        &self,
        decoded: Decoded<'_>,
        policy: RoutePolicy<'_>,
        now: i64,
        decided_by: &mut Option<Arc<Key>>,
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
        *decided_by = Some(key.clone());
        self.signature_checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !signature_ok(&key, decoded.signed.as_bytes(), decoded.signature) {
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
pub(crate) fn digest(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// SHA-256 of a token's signature part (what follows its last dot).
fn signature_digest(token: &str) -> [u8; 32] {
    let signature = token.rsplit_once('.').map_or(token, |(_, s)| s);
    sha2::Sha256::digest(signature.as_bytes()).into()
}

/// The route's part of the authorizer: token kind, scopes (access tokens) and groups. Pool-wide
/// checks (signature, issuer, expiry, app client) are `Verifier::verify`'s.
pub(crate) fn check_route(v: &Verified, policy: RoutePolicy<'_>) -> Result<(), AuthError> {
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
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some("k1".into());
        jsonwebtoken::encode(&h, claims, &key).unwrap()
    }

    /// A JWKS holding only k1 (the key `sign` uses).
    fn k1_only() -> crate::jwt::KeySet {
        let jwk = String::from_utf8(fixture("rsa-k1.jwk.json")).unwrap();
        parse_jwks(format!("{{\"keys\":[{jwk}]}}").as_bytes(), "test").unwrap()
    }

    /// A verifier for `ISS` on k1 alone, with no fetcher and any app client.
    fn k1_verifier() -> Verifier {
        let jwks = JwksCache::new(
            Some(k1_only()),
            None,
            Duration::ZERO,
            Duration::from_secs(60),
        );
        Verifier::new(vec![ISS.into()], vec![], Duration::ZERO, jwks)
    }

    /// Any ID token, no scope or group.
    const ID: RoutePolicy<'static> = RoutePolicy {
        token_use: TokenUsePolicy::Id,
        scopes: &[],
        groups: &[],
    };

    #[tokio::test]
    async fn a_cached_token_stops_at_expiry_and_when_its_key_leaves_the_jwks() {
        let seed = k1_only();
        let jwks = JwksCache::new(
            Some(seed),
            Some(Arc::new(OnlyK2)),
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        );
        let v = Verifier::new(vec![ISS.into()], vec![], Duration::ZERO, jwks.clone());
        let policy = ID;
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
        let v = k1_verifier();
        let token = sign(
            &serde_json::json!({"iss": ISS, "token_use": "id", "exp": 2_000_000_000i64,
            "cognito:groups": ["a"]}),
        );
        let open = ID;
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

    /// A token with its payload edited and its signature kept (what a forger can make for free).
    fn forge(token: &str, claims: &Value) -> String {
        use base64::Engine;
        let mut parts = token.split('.');
        let (h, _, s) = (parts.next().unwrap(), parts.next(), parts.next().unwrap());
        let p = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
        format!("{h}.{p}.{s}")
    }

    #[tokio::test]
    async fn repeated_rejections_are_remembered_while_their_key_is_published() {
        let seed = k1_only();
        let jwks = JwksCache::new(
            Some(seed),
            Some(Arc::new(OnlyK2)),
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        );
        let v = Verifier::new(
            vec![ISS.into()],
            vec!["app".into()],
            Duration::ZERO,
            jwks.clone(),
        );
        let policy = ID;
        let claims = serde_json::json!({"iss": ISS, "token_use": "id", "aud": "app", "exp": 100, "sub": "s"});
        let token = sign(&claims);
        let forged = forge(
            &token,
            &serde_json::json!({"iss": ISS, "token_use": "id", "aud": "app", "exp": 100, "sub": "admin"}),
        );
        let other_client =
            sign(&serde_json::json!({"iss": ISS, "token_use": "id", "aud": "other", "exp": 100}));

        // First sighting: decided with RSA; then from the table, with the same answer.
        for round in 0..3u64 {
            assert_eq!(
                v.verify(&forged, policy, 50).await.unwrap_err(),
                AuthError::BadSignature
            );
            assert_eq!(
                v.verify(&token, policy, 100 + round as i64)
                    .await
                    .unwrap_err(),
                AuthError::Expired {
                    exp: 100,
                    now: 100 + round as i64
                },
                "an expired token keeps its exp and gets the current time"
            );
            assert!(matches!(
                v.verify(&other_client, policy, 50).await,
                Err(AuthError::Client { .. })
            ));
            assert_eq!(v.rejected_hits(), 3 * round);
        }
        // A valid token is never answered from it.
        let valid =
            sign(&serde_json::json!({"iss": ISS, "token_use": "id", "aud": "app", "exp": 1000}));
        assert!(v.verify(&valid, policy, 50).await.is_ok());
        assert_eq!(v.rejected_hits(), 6);

        // The key leaves the JWKS: the remembered rejections end with it.
        jwks.refresh().await;
        assert_eq!(
            v.verify(&forged, policy, 50).await.unwrap_err(),
            AuthError::UnknownKid
        );
        assert_eq!(v.rejected_hits(), 6);
    }

    #[tokio::test]
    async fn signatures_of_the_wrong_length_or_encoding_are_refused() {
        let v = k1_verifier();
        let policy = ID;
        let token = sign(&serde_json::json!({"iss": ISS, "token_use": "id", "exp": 100}));
        let (signed, sig) = token.rsplit_once('.').unwrap();
        for bad in [
            format!("{signed}.{}", &sig[..sig.len() - 4]),
            format!("{signed}.{sig}AAAA"),
            format!("{signed}.{}", "A".repeat(5000)),
            format!("{signed}.{}", &sig[..sig.len() - 1]),
        ] {
            assert_eq!(
                v.verify(&bad, policy, 50).await.unwrap_err(),
                AuthError::BadSignature,
                "{bad}"
            );
        }
        assert!(v.verify(&token, policy, 50).await.is_ok());
    }

    #[tokio::test]
    async fn a_valid_signature_over_an_edited_payload_is_refused_without_rsa() {
        let v = k1_verifier();
        let policy = ID;
        let token =
            sign(&serde_json::json!({"iss": ISS, "token_use": "id", "exp": 100, "sub": "s"}));
        // Before the genuine token is seen, a forgery costs an RSA check.
        let first = forge(
            &token,
            &serde_json::json!({"iss": ISS, "token_use": "id", "exp": 100, "sub": "x"}),
        );
        assert_eq!(
            v.verify(&first, policy, 50).await.unwrap_err(),
            AuthError::BadSignature
        );
        assert_eq!(v.signature_checks(), 1);
        assert!(v.verify(&token, policy, 50).await.is_ok());
        assert_eq!(v.signature_checks(), 2);
        // Once it is: every edit of its payload is refused from the cache, none checked with RSA.
        for i in 0..20 {
            let forged = forge(
                &token,
                &serde_json::json!({"iss": ISS, "token_use": "id", "exp": 100, "sub": format!("admin-{i}")}),
            );
            assert_eq!(
                v.verify(&forged, policy, 50).await.unwrap_err(),
                AuthError::BadSignature
            );
        }
        assert_eq!(v.signature_checks(), 2);
        assert!(
            v.verify(&token, policy, 60).await.is_ok(),
            "the genuine token still passes"
        );
    }
}
