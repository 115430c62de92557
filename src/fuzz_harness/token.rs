//! The token path: header value -> `token_from_header` -> `decode` -> the authorizer's checks
//! against a fixed JWKS (the fixture keys k1 and k2, no fetcher), at a fixed time, under two
//! fixed route policies. The invariant: nothing is accepted unless it is byte for byte one of
//! the genuine tokens signed with the fixture key k1 (`genuine_tokens`).
//!
//! Two input forms. A header value as a client sends it (`Bearer eyJ...` or the raw token); or,
//! when the input starts with `{`, `HEADER_JSON\nPAYLOAD_JSON\nSIGNATURE`, base64url-encoded
//! here into a token, so that mutations reach the claim checks instead of breaking base64.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::config::TokenUsePolicy;
use crate::jwt::verify::{decode, token_from_header};
use crate::jwt::{parse_jwks, JwksCache, RoutePolicy, TokenUse, Verified, Verifier};

/// The issuer and app client the verifier accepts.
const ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Fuzz";
const CLIENT: &str = "client-a";
/// The fixed clock (seconds since the epoch) every input is verified at.
const NOW_SECS: i64 = 1_700_000_000;
const EXP_SECS: i64 = 2_000_000_000;

struct State {
    runtime: tokio::runtime::Runtime,
    verifier: Verifier,
    genuine: HashSet<String>,
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The claims of the genuine tokens, each with the `kid` its header names (k1 signs them all,
/// so those naming k2 carry a signature k2 does not make).
fn seed_claims() -> Vec<(&'static str, &'static str, Value)> {
    let id = json!({"iss": ISSUER, "token_use": "id", "aud": CLIENT, "sub": "user-1",
        "cognito:username": "alice", "cognito:groups": ["admins", "staff"],
        "email": "alice@example.com", "iat": NOW_SECS - 60, "auth_time": NOW_SECS - 60,
        "exp": EXP_SECS});
    let access = json!({"iss": ISSUER, "token_use": "access", "client_id": CLIENT,
        "sub": "user-1", "username": "alice", "scope": "openid orders/read",
        "cognito:groups": ["admins"], "iat": NOW_SECS - 60, "exp": EXP_SECS,
        "jti": "4f1c0c0e-5a4b-4d8e-9f1a-2b3c4d5e6f70"});
    let with = |base: &Value, key: &str, value: Value| {
        let mut v = base.clone();
        v[key] = value;
        v
    };
    let without = |base: &Value, key: &str| {
        let mut v = base.clone();
        v.as_object_mut().expect("object").remove(key);
        v
    };
    vec![
        ("id", "k1", id.clone()),
        ("access", "k1", access.clone()),
        ("access-no-groups", "k1", without(&access, "cognito:groups")),
        ("expired", "k1", with(&id, "exp", json!(NOW_SECS - 3600))),
        (
            "not-yet-valid",
            "k1",
            with(&id, "nbf", json!(NOW_SECS + 3600)),
        ),
        ("other-client", "k1", with(&id, "aud", json!("client-b"))),
        ("aud-array", "k1", with(&id, "aud", json!([CLIENT]))),
        (
            "other-issuer",
            "k1",
            with(&id, "iss", json!("https://evil.example/pool")),
        ),
        ("no-token-use", "k1", without(&access, "token_use")),
        (
            "refresh-use",
            "k1",
            with(&access, "token_use", json!("refresh")),
        ),
        ("float-exp", "k1", with(&access, "exp", json!(2e9))),
        (
            "groups-not-strings",
            "k1",
            with(&id, "cognito:groups", json!([1])),
        ),
        ("kid-k2", "k2", id),
        ("kid-unknown", "k3", access),
    ]
}

/// Every seed input of the token target: name -> bytes (`fuzz/corpus/token/<name>`).
pub fn token_seeds() -> Vec<(String, Vec<u8>)> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&fixture("rsa-k1.pem")).expect("k1 pem");
    let mut seeds = Vec::new();
    for (name, kid, claims) in seed_claims() {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.into());
        let token = jsonwebtoken::encode(&header, &claims, &key).expect("sign");
        seeds.push((
            format!("{name}.bearer"),
            format!("Bearer {token}").into_bytes(),
        ));
        if matches!(name, "id" | "access") {
            seeds.push((format!("{name}.raw"), token.clone().into_bytes()));
        }
        let mut parts = token.split('.');
        let (h, p, s) = (parts.next(), parts.next(), parts.next());
        let json_part = |part: Option<&str>| URL_SAFE_NO_PAD.decode(part.expect("part")).unwrap();
        let mut structured = json_part(h);
        structured.push(b'\n');
        structured.extend(json_part(p));
        structured.push(b'\n');
        structured.extend(s.expect("signature").as_bytes());
        seeds.push((format!("{name}.json"), structured));
    }
    // alg none, an HMAC header, a forged payload under a genuine signature.
    let none = format!(
        "{}.{}.x",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1"}"#),
        URL_SAFE_NO_PAD.encode(br#"{"iss":"x"}"#)
    );
    seeds.push((
        "alg-none.bearer".into(),
        format!("Bearer {none}").into_bytes(),
    ));
    seeds.push((
        "alg-hs256.json".into(),
        br#"{"alg":"HS256","kid":"k1","typ":"JWT"}
{"iss":"https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Fuzz","token_use":"id","exp":2000000000}
c2lnbmF0dXJl"#
            .to_vec(),
    ));
    seeds
}

/// The tokens signed with k1 that the seeds carry: the only ones that may ever be accepted.
pub fn genuine_tokens() -> HashSet<String> {
    token_seeds()
        .into_iter()
        .filter(|(name, _)| name.ends_with(".raw") || name.ends_with(".bearer"))
        .filter(|(name, _)| !name.starts_with("alg-"))
        .map(|(_, bytes)| {
            let value = String::from_utf8(bytes).expect("seed is text");
            value.trim_start_matches("Bearer ").to_string()
        })
        .collect()
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let k1 = String::from_utf8(fixture("rsa-k1.jwk.json")).expect("jwk");
        let k2 = String::from_utf8(fixture("rsa-k2.jwk.json")).expect("jwk");
        let keys = parse_jwks(format!(r#"{{"keys":[{k1},{k2}]}}"#).as_bytes(), "fixtures")
            .expect("fixture JWKS");
        let jwks = JwksCache::new(Some(keys), None, Duration::ZERO, Duration::from_secs(60));
        State {
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime"),
            verifier: Verifier::new(
                vec![ISSUER.into()],
                vec![CLIENT.into()],
                Duration::from_secs(30),
                jwks,
            ),
            genuine: genuine_tokens(),
        }
    })
}

/// A header value, or the structured form made into one.
fn header_value(data: &[u8]) -> Option<Vec<u8>> {
    if data.first() != Some(&b'{') {
        return Some(data.to_vec());
    }
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    let mut value = b"Bearer ".to_vec();
    value.extend(URL_SAFE_NO_PAD.encode(h).as_bytes());
    value.push(b'.');
    value.extend(URL_SAFE_NO_PAD.encode(p).as_bytes());
    value.push(b'.');
    value.extend(s);
    Some(value)
}

pub fn token(data: &[u8]) {
    token_acceptances(data);
}

/// Under how many of the two route policies (any token; an access token with a scope and a
/// group) the input is accepted, the invariants checked on the way.
pub fn token_acceptances(data: &[u8]) -> usize {
    let Some(value) = header_value(data) else {
        return 0;
    };
    let Ok(token) = token_from_header(&value) else {
        return 0;
    };
    assert!(
        !token.is_empty() && token.trim() == token,
        "token not trimmed"
    );

    let state = state();
    let scopes = ["orders/read".to_string()];
    let groups = ["admins".to_string()];
    let policies = [
        RoutePolicy {
            token_use: TokenUsePolicy::Any,
            scopes: &[],
            groups: &[],
        },
        RoutePolicy {
            token_use: TokenUsePolicy::Access,
            scopes: &scopes,
            groups: &groups,
        },
    ];
    let decoded = decode(token);
    let mut accepted = 0;
    for policy in policies {
        // Uncached, on this input's decoding; then through the caches a gateway keeps.
        let fresh = decoded.clone().map(|d| {
            state
                .runtime
                .block_on(state.verifier.verify_decoded(d, policy, NOW_SECS))
        });
        let cached = state
            .runtime
            .block_on(state.verifier.verify(token, policy, NOW_SECS));
        let fresh_ok = matches!(fresh, Ok(Ok(_)));
        assert_eq!(fresh_ok, cached.is_ok(), "the caches changed the answer");
        if let Ok(v) = &cached {
            assert!(
                state.genuine.contains(token),
                "accepted a token that is not a genuine one: {token}"
            );
            accepted_as_required(v, policy);
            accepted += 1;
        }
    }
    accepted
}

/// What an accepted token must be, whatever the verifier's inner workings.
fn accepted_as_required(v: &Arc<Verified>, policy: RoutePolicy<'_>) {
    assert!(
        v.exp.saturating_add(30) > NOW_SECS,
        "accepted after its exp"
    );
    assert_eq!(v.client_id(), Some(CLIENT), "accepted for another client");
    assert_eq!(v.claims.get("iss").and_then(Value::as_str), Some(ISSUER));
    if policy.token_use == TokenUsePolicy::Access {
        assert_eq!(v.token_use, TokenUse::Access);
        assert!(v
            .scope
            .split(' ')
            .any(|s| policy.scopes.iter().any(|r| r == s)));
    }
    if !policy.groups.is_empty() {
        assert!(v.groups.iter().any(|g| policy.groups.contains(g)));
    }
}
