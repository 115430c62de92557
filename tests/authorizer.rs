//! The authorizer over real sockets: every rejection case with its exact status and body, key
//! rotation, single-flight unknown-kid refetch, stale keys, and readiness at start.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use serde_json::{json, Value};

fn routes(upstream: &str) -> String {
    format!(
        r#"
[[routes]]
name = "id"
path_prefix = "/id"
upstream = "{upstream}"
auth = ["jwt"]

[[routes]]
name = "scoped"
path_prefix = "/scoped"
upstream = "{upstream}"
auth = ["jwt"]
scopes = ["orders/read", "orders/write"]

[[routes]]
name = "any"
path_prefix = "/any"
upstream = "{upstream}"
auth = ["jwt"]
token_use = "any"
scopes = ["orders/read"]

[[routes]]
name = "finance"
path_prefix = "/finance"
upstream = "{upstream}"
auth = ["jwt"]
groups = ["finance"]

[[routes]]
name = "admins"
path_prefix = "/admins"
upstream = "{upstream}"
auth = ["jwt"]
groups = ["finance", "admins"]

[[routes]]
name = "custom-header"
path_prefix = "/custom"
upstream = "{upstream}"
auth = ["jwt"]
token_header = "x-auth-token"

[[routes]]
name = "optional"
path_prefix = "/optional"
upstream = "{upstream}"
auth = ["jwt", "none"]
"#
    )
}

struct Env {
    jwks: FakeJwks,
    gw: cognito_gate::RunningGateway,
    base: String,
    k1: TestKey,
    k2: TestKey,
    k3: TestKey,
}

async fn env_with(extra_cognito: &str) -> Env {
    let k1 = TestKey::load("k1");
    let k2 = TestKey::load("k2");
    let k3 = TestKey::load("k3");
    let jwks = FakeJwks::start(&[&k1]).await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_drain = \"0s\"\n{}{extra_cognito}\n{}",
        cognito_section(&jwks.url(), &format!("[\"{CLIENT_ID}\"]")),
        routes("builtin:echo")
    );
    let gw = start_ready(config(&toml)).await;
    let base = format!("http://{}", gw.http_addr.unwrap());
    Env {
        jwks,
        gw,
        base,
        k1,
        k2,
        k3,
    }
}

async fn env() -> Env {
    env_with("").await
}

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

/// A token assembled by hand: any header, any payload, any signature bytes.
fn raw_token(header: &Value, payload: &Value, sig: &str) -> String {
    format!(
        "{}.{}.{sig}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    )
}

/// HS256 over header.payload with `secret`.
fn hs256(header: &Value, payload: &Value, secret: &[u8]) -> String {
    let h = jsonwebtoken::Header {
        alg: jsonwebtoken::Algorithm::HS256,
        kid: header["kid"].as_str().map(str::to_string),
        ..Default::default()
    };
    jsonwebtoken::encode(&h, payload, &jsonwebtoken::EncodingKey::from_secret(secret)).unwrap()
}

const UNAUTHORIZED: &str = "Unauthorized";
const EXPIRED: &str = "The incoming token has expired";
const GROUP: &str = "User is not authorized to access this resource";

#[tokio::test]
async fn authorizer_cases_table() {
    let e = env().await;
    let c = client();
    let k1 = &e.k1;
    let now = now();
    let id = k1.sign(&id_claims());
    let access = k1.sign(&access_claims());
    let rsa_public_pem = {
        // The RSA public key as an HMAC secret (the classic key-confusion attack).
        let jwk = &k1.jwk;
        format!(
            "{}{}",
            jwk["n"].as_str().unwrap(),
            jwk["e"].as_str().unwrap()
        )
        .into_bytes()
    };
    let huge = format!(
        "{}.{}.{}",
        "a".repeat(21_000),
        "b".repeat(22_000),
        "c".repeat(22_000)
    );

    // (name, path, authorization header, expected status, expected message)
    let cases: Vec<(&str, &str, Option<String>, u16, &str)> = vec![
        (
            "valid id token, Bearer",
            "/id/x",
            Some(format!("Bearer {id}")),
            200,
            "",
        ),
        (
            "valid id token, lower-case bearer",
            "/id/x",
            Some(format!("bearer {id}")),
            200,
            "",
        ),
        ("valid id token, raw", "/id/x", Some(id.clone()), 200, ""),
        ("missing token", "/id/x", None, 401, UNAUTHORIZED),
        (
            "empty bearer",
            "/id/x",
            Some("Bearer ".into()),
            401,
            UNAUTHORIZED,
        ),
        (
            "basic credentials on a jwt route",
            "/id/x",
            Some("Basic dXNlcjpwYXNz".into()),
            401,
            UNAUTHORIZED,
        ),
        (
            "alg none, empty signature",
            "/id/x",
            Some(raw_token(
                &json!({"alg":"none","kid":"k1"}),
                &id_claims(),
                "",
            )),
            401,
            UNAUTHORIZED,
        ),
        (
            "alg none, some signature",
            "/id/x",
            Some(raw_token(
                &json!({"alg":"none","kid":"k1"}),
                &id_claims(),
                "c2ln",
            )),
            401,
            UNAUTHORIZED,
        ),
        (
            "HS256 with the RSA public key as secret",
            "/id/x",
            Some(hs256(&json!({"kid":"k1"}), &id_claims(), &rsa_public_pem)),
            401,
            UNAUTHORIZED,
        ),
        (
            "RS512 header",
            "/id/x",
            Some(raw_token(
                &json!({"alg":"RS512","kid":"k1"}),
                &id_claims(),
                "c2ln",
            )),
            401,
            UNAUTHORIZED,
        ),
        (
            "unknown kid",
            "/id/x",
            Some(e.k3.sign(&id_claims())),
            401,
            UNAUTHORIZED,
        ),
        (
            "kid with path characters",
            "/id/x",
            Some(k1.sign_as("../../../etc/passwd", &id_claims())),
            401,
            UNAUTHORIZED,
        ),
        (
            "kid with SQL characters",
            "/id/x",
            Some(k1.sign_as("k1' OR '1'='1", &id_claims())),
            401,
            UNAUTHORIZED,
        ),
        (
            "no kid",
            "/id/x",
            Some(raw_token(&json!({"alg":"RS256"}), &id_claims(), "c2ln")),
            401,
            UNAUTHORIZED,
        ),
        (
            "signed by another key under a known kid",
            "/id/x",
            Some(e.k3.sign_as("k1", &id_claims())),
            401,
            UNAUTHORIZED,
        ),
        (
            "two segments",
            "/id/x",
            Some(id.rsplit_once('.').unwrap().0.to_string()),
            401,
            UNAUTHORIZED,
        ),
        (
            "four segments",
            "/id/x",
            Some(format!("{id}.xyz")),
            401,
            UNAUTHORIZED,
        ),
        (
            "bad base64",
            "/id/x",
            Some("!!!.###.$$$".into()),
            401,
            UNAUTHORIZED,
        ),
        (
            "non-JSON header",
            "/id/x",
            Some(format!("{}.{}.c2ln", b64(b"nope"), b64(b"{}"))),
            401,
            UNAUTHORIZED,
        ),
        (
            "non-JSON payload",
            "/id/x",
            Some(format!(
                "{}.{}.c2ln",
                b64(br#"{"alg":"RS256","kid":"k1"}"#),
                b64(b"[1,2")
            )),
            401,
            UNAUTHORIZED,
        ),
        (
            "payload is a JSON array",
            "/id/x",
            Some(format!(
                "{}.{}.c2ln",
                b64(br#"{"alg":"RS256","kid":"k1"}"#),
                b64(b"[1,2]")
            )),
            401,
            UNAUTHORIZED,
        ),
        (
            "exp as a string",
            "/id/x",
            Some(k1.sign(&with(id_claims(), json!({"exp": (now + 3600).to_string()})))),
            401,
            UNAUTHORIZED,
        ),
        (
            "token_use a number",
            "/id/x",
            Some(k1.sign(&with(id_claims(), json!({"token_use": 1})))),
            401,
            UNAUTHORIZED,
        ),
        (
            "cognito:groups a string",
            "/admins/x",
            Some(k1.sign(&with(id_claims(), json!({"cognito:groups": "admins"})))),
            401,
            UNAUTHORIZED,
        ),
        (
            "aud an array holding the app client",
            "/id/x",
            Some(k1.sign(&with(id_claims(), json!({"aud": [CLIENT_ID]})))),
            401,
            UNAUTHORIZED,
        ),
        (
            "missing exp",
            "/id/x",
            Some(k1.sign(&with(id_claims(), json!({"exp": null})))),
            401,
            UNAUTHORIZED,
        ),
        (
            "missing token_use",
            "/id/x",
            Some(k1.sign(&with(id_claims(), json!({"token_use": null})))),
            401,
            UNAUTHORIZED,
        ),
        (
            "expired by one second",
            "/id/x",
            Some(k1.sign(&with(id_claims(), json!({"exp": now - 1})))),
            401,
            EXPIRED,
        ),
        (
            "expired long ago",
            "/id/x",
            Some(k1.sign(&with(id_claims(), json!({"exp": now - 86400})))),
            401,
            EXPIRED,
        ),
        (
            "expired and badly signed",
            "/id/x",
            Some(e.k3.sign_as("k1", &with(id_claims(), json!({"exp": now - 10})))),
            401,
            UNAUTHORIZED,
        ),
        (
            "not yet valid (nbf)",
            "/id/x",
            Some(k1.sign(&with(id_claims(), json!({"nbf": now + 600})))),
            401,
            UNAUTHORIZED,
        ),
        (
            "nbf in the past",
            "/id/x",
            Some(k1.sign(&with(id_claims(), json!({"nbf": now - 600})))),
            200,
            "",
        ),
        (
            "iss with a trailing slash",
            "/id/x",
            Some(k1.sign(&with(id_claims(), json!({"iss": format!("{ISSUER}/")})))),
            401,
            UNAUTHORIZED,
        ),
        (
            "iss of another pool",
            "/id/x",
            Some(k1.sign(&with(
                id_claims(),
                json!({"iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Other"}),
            ))),
            401,
            UNAUTHORIZED,
        ),
        (
            "iss missing",
            "/id/x",
            Some(k1.sign(&with(id_claims(), json!({"iss": null})))),
            401,
            UNAUTHORIZED,
        ),
        (
            "ID token on a scoped route",
            "/scoped/x",
            Some(id.clone()),
            401,
            UNAUTHORIZED,
        ),
        (
            "access token on an unscoped route",
            "/id/x",
            Some(access.clone()),
            401,
            UNAUTHORIZED,
        ),
        (
            "access token with a route scope",
            "/scoped/x",
            Some(access.clone()),
            200,
            "",
        ),
        (
            "access token without a route scope",
            "/scoped/x",
            Some(k1.sign(&with(
                access_claims(),
                json!({"scope": "aws.cognito.signin.user.admin"}),
            ))),
            401,
            UNAUTHORIZED,
        ),
        (
            "access token without scope claim",
            "/scoped/x",
            Some(k1.sign(&with(access_claims(), json!({"scope": null})))),
            401,
            UNAUTHORIZED,
        ),
        (
            "scope prefix is not a scope",
            "/scoped/x",
            Some(k1.sign(&with(
                access_claims(),
                json!({"scope": "orders/readx orders"}),
            ))),
            401,
            UNAUTHORIZED,
        ),
        (
            "app client not listed (ID aud)",
            "/id/x",
            Some(k1.sign(&with(id_claims(), json!({"aud": "someoneelse"})))),
            401,
            UNAUTHORIZED,
        ),
        (
            "app client not listed (access client_id)",
            "/scoped/x",
            Some(k1.sign(&with(access_claims(), json!({"client_id": "someoneelse"})))),
            401,
            UNAUTHORIZED,
        ),
        (
            "access token carrying aud but wrong client_id",
            "/scoped/x",
            Some(k1.sign(&with(
                access_claims(),
                json!({"client_id": "x", "aud": CLIENT_ID}),
            ))),
            401,
            UNAUTHORIZED,
        ),
        (
            "token_use any: ID token, scopes not checked",
            "/any/x",
            Some(id.clone()),
            200,
            "",
        ),
        (
            "token_use any: access token with scope",
            "/any/x",
            Some(access.clone()),
            200,
            "",
        ),
        (
            "token_use any: access token without scope",
            "/any/x",
            Some(k1.sign(&with(access_claims(), json!({"scope": "other"})))),
            401,
            UNAUTHORIZED,
        ),
        (
            "token_use neither id nor access",
            "/any/x",
            Some(k1.sign(&with(id_claims(), json!({"token_use": "refresh"})))),
            401,
            UNAUTHORIZED,
        ),
        (
            "not in the required group",
            "/finance/x",
            Some(id.clone()),
            403,
            GROUP,
        ),
        (
            "no groups claim on a group route",
            "/finance/x",
            Some(k1.sign(&with(id_claims(), json!({"cognito:groups": null})))),
            403,
            GROUP,
        ),
        (
            "in one of the required groups",
            "/admins/x",
            Some(id.clone()),
            200,
            "",
        ),
        (
            "tampered payload",
            "/id/x",
            Some({
                let mut parts: Vec<String> = id.split('.').map(str::to_string).collect();
                parts[1] = b64(with(id_claims(), json!({"sub": "someone-else"}))
                    .to_string()
                    .as_bytes());
                parts.join(".")
            }),
            401,
            UNAUTHORIZED,
        ),
        ("64 KiB token", "/id/x", Some(huge), 401, UNAUTHORIZED),
        (
            "optional jwt: no token passes as anonymous",
            "/optional/x",
            None,
            200,
            "",
        ),
        (
            "optional jwt: a bad token is still refused",
            "/optional/x",
            Some("garbage".into()),
            401,
            UNAUTHORIZED,
        ),
    ];

    let mut failures = Vec::new();
    for (name, path, auth, status, message) in &cases {
        let (got, headers, body) = get(&c, &format!("{}{path}", e.base), auth.as_deref()).await;
        let mut problems = Vec::new();
        if got != *status {
            problems.push(format!("status {got} (want {status})"));
        }
        if *status != 200 {
            if body != json!({ "message": message }) {
                problems.push(format!("body {body} (want message {message:?})"));
            }
            if headers.get("content-type").map(|v| v.as_bytes()) != Some(b"application/json") {
                problems.push("content-type is not application/json".into());
            }
        }
        let challenge = headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        if got == 401 && challenge.as_deref() != Some("Bearer") {
            problems.push(format!("www-authenticate {challenge:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!("{name}: {}", problems.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "failed cases:\n{}",
        failures.join("\n")
    );
    assert!(cases.len() >= 50);
    // Every denial is counted by its reason: a dashboard can tell an attack from a clock problem.
    let text = e.gw.metrics_text();
    for reason in [
        "missing",
        "malformed",
        "algorithm",
        "issuer",
        "unknown_kid",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "token_use",
        "client",
        "scope",
        "group",
    ] {
        let needle = format!("decision=\"deny\",reason=\"{reason}\"");
        assert!(text.contains(&needle), "no {needle} in\n{text}");
    }
    assert!(text.contains(
        "cognito_gate_auth_decisions_total{route=\"id\",decision=\"allow\",reason=\"jwt\"}"
    ));
}

#[tokio::test]
async fn jku_x5u_and_jwk_headers_are_never_fetched() {
    let e = env().await;
    let evil = FakeJwks::start(&[&e.k3]).await;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("k3".into());
    header.jku = Some(evil.url());
    header.x5u = Some(evil.url());
    header.jwk = Some(serde_json::from_value(e.k3.jwk.clone()).unwrap());
    let token = jsonwebtoken::encode(&header, &id_claims(), &e.k3.encoding).unwrap();
    let (status, _, body) = get(&client(), &format!("{}/id/x", e.base), Some(&token)).await;
    assert_eq!((status, body), (401, json!({"message": UNAUTHORIZED})));
    assert_eq!(evil.hits(), 0, "a URL from the token header was fetched");
}

#[tokio::test]
async fn custom_token_header_reads_only_that_header() {
    let e = env().await;
    let c = client();
    let id = e.k1.sign(&id_claims());
    let url = format!("{}/custom/x", e.base);
    let resp = c
        .get(&url)
        .header("x-auth-token", &id)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (status, _, _) = get(&c, &url, Some(&format!("Bearer {id}"))).await;
    assert_eq!(
        status, 401,
        "the Authorization header is not the configured token header"
    );
}

#[tokio::test]
async fn key_rotation_refetches_once_and_old_kid_stays_valid_until_removed() {
    let e = env().await;
    let c = client();
    let url = format!("{}/id/x", e.base);
    let old = e.k1.sign(&id_claims());
    let new = e.k2.sign(&id_claims());
    let start_hits = e.jwks.hits();

    // The IdP publishes k2 alongside k1; a token signed with k2 triggers one refetch.
    e.jwks.set_keys(&[&e.k1, &e.k2]);
    assert_eq!(get(&c, &url, Some(&new)).await.0, 200);
    assert_eq!(e.jwks.hits(), start_hits + 1);
    for _ in 0..5 {
        assert_eq!(get(&c, &url, Some(&new)).await.0, 200);
        assert_eq!(
            get(&c, &url, Some(&old)).await.0,
            200,
            "old kid still published"
        );
    }
    assert_eq!(e.jwks.hits(), start_hits + 1, "known kids never refetch");

    // k1 is withdrawn; after the next refresh tokens signed with it are refused.
    e.jwks.set_keys(&[&e.k2]);
    assert_eq!(
        get(&c, &url, Some(&old)).await.0,
        200,
        "until the next refresh"
    );
    let jwks = e.gw.gateway().authorizer.as_ref().unwrap().pools()[0]
        .verifier
        .jwks()
        .clone();
    assert!(matches!(
        jwks.refresh().await,
        Some(cognito_gate::jwt::RefreshOutcome::Updated { keys: 1 })
    ));
    let (status, _, body) = get(&c, &url, Some(&old)).await;
    assert_eq!((status, body), (401, json!({"message": UNAUTHORIZED})));
    assert_eq!(get(&c, &url, Some(&new)).await.0, 200);
}

#[tokio::test]
async fn hundred_concurrent_unknown_kid_requests_cause_one_fetch() {
    let e = env().await;
    let c = client();
    let url = Arc::new(format!("{}/id/x", e.base));
    // Slow the JWKS endpoint down so that the requests overlap the fetch.
    *e.jwks.delay.lock().unwrap() = Duration::from_millis(300);
    let before = e.jwks.hits();
    let token = Arc::new(e.k3.sign(&id_claims()));
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (c, url, token) = (c.clone(), url.clone(), token.clone());
        tasks.push(tokio::spawn(
            async move { get(&c, &url, Some(&token)).await.0 },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    assert_eq!(
        e.jwks.hits() - before,
        1,
        "exactly one JWKS fetch for 100 unknown-kid requests"
    );
    // Within the cooldown, more unknown kids cost no fetch at all.
    for _ in 0..10 {
        assert_eq!(get(&c, &url, Some(&token)).await.0, 401);
    }
    assert_eq!(e.jwks.hits() - before, 1);
}

#[tokio::test]
async fn jwks_down_later_serves_cached_keys() {
    let e = env().await;
    let c = client();
    let token = e.k1.sign(&id_claims());
    e.jwks.set_down(true);
    let jwks = e.gw.gateway().authorizer.as_ref().unwrap().pools()[0]
        .verifier
        .jwks()
        .clone();
    assert!(matches!(
        jwks.refresh().await,
        Some(cognito_gate::jwt::RefreshOutcome::Failed(_))
    ));
    assert_eq!(
        get(&c, &format!("{}/id/x", e.base), Some(&token)).await.0,
        200
    );
    assert_eq!(get(&c, &format!("{}/readyz", e.base), None).await.0, 200);
    // A garbage document is a failed refresh too: the keys stay.
    e.jwks.set_down(false);
    e.jwks.set_keys(&[]);
    assert!(matches!(
        jwks.refresh().await,
        Some(cognito_gate::jwt::RefreshOutcome::Failed(_))
    ));
    assert_eq!(
        get(&c, &format!("{}/id/x", e.base), Some(&token)).await.0,
        200
    );
}

#[tokio::test]
async fn keys_older_than_max_stale_give_503() {
    let e = env_with("max_stale = \"300ms\"\n").await;
    let c = client();
    let token = e.k1.sign(&id_claims());
    e.jwks.set_down(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = get(&c, &format!("{}/readyz", e.base), None).await;
        if status == 503 {
            assert_eq!(body["status"], "not ready");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness never failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _, body) = get(&c, &format!("{}/id/x", e.base), Some(&token)).await;
    assert_eq!(
        (status, body),
        (503, json!({"message": "Service Unavailable"}))
    );
    // The source answers again: the background refresh brings readiness back.
    e.jwks.set_down(false);
    let back = tokio::time::Instant::now();
    let deadline = back + Duration::from_secs(40);
    while get(&c, &format!("{}/readyz", e.base), None).await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "recovery: stale JWKS (503) -> ready {:?} after it answers",
        back.elapsed()
    );
    assert_eq!(
        get(&c, &format!("{}/id/x", e.base), Some(&token)).await.0,
        200
    );
}

#[tokio::test]
async fn not_ready_until_keys_load() {
    let k1 = TestKey::load("k1");
    let jwks = FakeJwks::start(&[&k1]).await;
    jwks.set_down(true);
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{}\n{}",
        cognito_section(&jwks.url(), "[]"),
        routes("builtin:echo")
    );
    let gw = cognito_gate::start(config(&toml)).await.unwrap();
    let base = format!("http://{}", gw.http_addr.unwrap());
    let admin = format!("http://{}", gw.admin_addr.unwrap());
    let c = client();
    let token = k1.sign(&id_claims());
    assert_eq!(get(&c, &format!("{base}/readyz"), None).await.0, 503);
    assert_eq!(get(&c, &format!("{admin}/readyz"), None).await.0, 503);
    assert_eq!(
        get(&c, &format!("{base}/healthz"), None).await.0,
        200,
        "liveness does not wait"
    );
    let (status, _, body) = get(&c, &format!("{base}/id/x"), Some(&token)).await;
    assert_eq!(
        (status, body),
        (503, json!({"message": "Service Unavailable"}))
    );
    jwks.set_down(false);
    let back = tokio::time::Instant::now();
    let deadline = back + Duration::from_secs(20);
    while get(&c, &format!("{base}/readyz"), None).await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "recovery: JWKS down at start -> ready {:?} after it answers",
        back.elapsed()
    );
    assert_eq!(get(&c, &format!("{admin}/readyz"), None).await.0, 200);
    assert_eq!(get(&c, &format!("{base}/id/x"), Some(&token)).await.0, 200);
    assert!(jwks.hits() >= 2, "retried after the first failure");
}

#[tokio::test]
async fn file_seeded_keys_are_ready_at_once_without_a_url() {
    let k1 = TestKey::load("k1");
    let dir = TempDir::new("authorizer-jwks");
    let file = dir.join("jwks.json");
    std::fs::write(
        &file,
        json!({"keys": [k1.jwk, {"kty": "EC", "kid": "ec"}]}).to_string(),
    )
    .unwrap();
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:0"
[cognito]
issuer = "{ISSUER}"
app_clients = []
[cognito.jwks]
file = "{}"
{}"#,
        file.display(),
        routes("builtin:echo")
    );
    let gw = cognito_gate::start(config(&toml)).await.unwrap();
    assert!(gw.gateway().readiness.check().is_ok(), "ready at once");
    let base = format!("http://{}", gw.http_addr.unwrap());
    let c = client();
    assert_eq!(
        get(&c, &format!("{base}/id/x"), Some(&k1.sign(&id_claims())))
            .await
            .0,
        200
    );
    assert_eq!(
        get(
            &c,
            &format!("{base}/id/x"),
            Some(&TestKey::load("k2").sign(&id_claims()))
        )
        .await
        .0,
        401
    );
}

#[tokio::test]
async fn clock_skew_tolerates_recently_expired_tokens() {
    let k1 = TestKey::load("k1");
    let jwks = FakeJwks::start(&[&k1]).await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[cognito]\nissuer = \"{ISSUER}\"\napp_clients = []\nclock_skew = \"60s\"\n[cognito.jwks]\nurl = \"{}\"\n{}",
        jwks.url(),
        routes("builtin:echo")
    );
    let gw = start_ready(config(&toml)).await;
    let base = format!("http://{}", gw.http_addr.unwrap());
    let c = client();
    let now = now();
    let recent = k1.sign(&with(id_claims(), json!({"exp": now - 30})));
    let old = k1.sign(&with(id_claims(), json!({"exp": now - 90})));
    assert_eq!(get(&c, &format!("{base}/id/x"), Some(&recent)).await.0, 200);
    let (status, _, body) = get(&c, &format!("{base}/id/x"), Some(&old)).await;
    assert_eq!((status, body), (401, json!({"message": EXPIRED})));
}

#[tokio::test]
async fn both_issuer_formats_for_a_pool_given_by_region_and_id() {
    let k1 = TestKey::load("k1");
    let jwks = FakeJwks::start(&[&k1]).await;
    let original = ISSUER;
    let updated = ISSUER.replace("https://cognito-idp.", "https://issuer-cognito-idp.");
    let with_iss = |iss: &str| k1.sign(&with(id_claims(), json!({ "iss": iss })));
    let c = client();
    for (format, original_ok, updated_ok) in [
        ("", true, true),
        ("issuer_format = \"any\"", true, true),
        ("issuer_format = \"original\"", true, false),
        ("issuer_format = \"updated\"", false, true),
    ] {
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[cognito]\nregion = \"ap-northeast-1\"\nuser_pool_id = \"ap-northeast-1_TestPool\"\n{format}\napp_clients = []\n[cognito.jwks]\nurl = \"{}\"\n[[routes]]\nname = \"id\"\npath_prefix = \"/id\"\nupstream = \"builtin:echo\"\nauth = [\"jwt\"]\n",
            jwks.url()
        );
        let gw = start_ready(config(&toml)).await;
        let url = format!("http://{}/id/x", gw.http_addr.unwrap());
        let status = |ok: bool| if ok { 200 } else { 401 };
        let (s, _, body) = get(&c, &url, Some(&with_iss(original))).await;
        assert_eq!(s, status(original_ok), "{format}: original {body}");
        let (s, _, body) = get(&c, &url, Some(&with_iss(&updated))).await;
        assert_eq!(s, status(updated_ok), "{format}: updated {body}");
        // Neither format of another pool, nor a near miss.
        for iss in [
            "https://cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_Other",
            "https://issuer-cognito-idp.us-east-1.amazonaws.com/ap-northeast-1_TestPool",
            "https://cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_TestPool/",
        ] {
            let (s, _, body) = get(&c, &url, Some(&with_iss(iss))).await;
            assert_eq!(
                (s, body),
                (401, json!({"message": "Unauthorized"})),
                "{iss}"
            );
        }
    }
    // An explicit issuer is compared exactly, and issuer_format does not apply to it.
    let source = cognito_gate::config::Source {
        name: "t".into(),
        base_dir: ".".into(),
    };
    let err = cognito_gate::config::Config::parse(
        "[cognito]\nissuer = \"https://idp.example/pool\"\nissuer_format = \"any\"\napp_clients = []\n[cognito.jwks]\nurl = \"http://127.0.0.1:1/jwks\"\n",
        &source,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("cognito.issuer_format: only with region and user_pool_id"),
        "{err}"
    );
    let err = cognito_gate::config::Config::parse(
        "[cognito]\nregion = \"ap-northeast-1\"\nuser_pool_id = \"ap-northeast-1_X\"\nissuer_format = \"new\"\napp_clients = []\n[cognito.jwks]\nurl = \"http://127.0.0.1:1/jwks\"\n",
        &source,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(
            "cognito.issuer_format: must be \"original\", \"updated\" or \"any\", got \"new\""
        ),
        "{err}"
    );
}

/// `key` published under another kid (as two pools publishing the same kid would).
fn relabel(key: &TestKey, kid: &str) -> TestKey {
    let mut jwk = key.jwk.clone();
    jwk["kid"] = json!(kid);
    TestKey {
        kid: kid.to_string(),
        encoding: key.encoding.clone(),
        jwk,
    }
}

fn pool_issuer(name: &str) -> String {
    format!("https://issuer.example/{name}")
}

#[tokio::test]
async fn several_pools_pick_by_issuer_and_never_cross_over_a_shared_kid() {
    // Pools a and b both publish kid "shared", each with its own key; pool c publishes k3.
    let (a_key, b_key) = (
        relabel(&TestKey::load("k1"), "shared"),
        relabel(&TestKey::load("k2"), "shared"),
    );
    let c_key = TestKey::load("k3");
    let (ja, jb, jc) = (
        FakeJwks::start(&[&a_key]).await,
        FakeJwks::start(&[&b_key]).await,
        FakeJwks::start(&[&c_key]).await,
    );
    let pool = |name: &str, jwks: &FakeJwks| {
        format!(
            "[[cognito.pools]]\nname = \"{name}\"\nissuer = \"{}\"\napp_clients = []\n[cognito.pools.jwks]\nurl = \"{}\"\n",
            pool_issuer(name),
            jwks.url()
        )
    };
    let route = |name: &str, pools: &str| {
        format!("[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\nupstream = \"builtin:echo\"\nauth = [\"jwt\"]\npools = {pools}\n")
    };
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[cognito]\nclock_skew = \"0s\"\n[cognito.jwks]\nrefetch_cooldown = \"0s\"\n{}{}{}{}{}{}",
        pool("a", &ja),
        pool("b", &jb),
        pool("c", &jc),
        route("ra", "[\"a\"]"),
        route("rb", "[\"b\"]"),
        route("rany", "[]"),
    );
    let gw = start_ready(config(&toml)).await;
    let base = format!("http://{}", gw.http_addr.unwrap());
    let c = client();
    let token = |key: &TestKey, pool: &str| {
        key.sign(&with(id_claims(), json!({ "iss": pool_issuer(pool) })))
    };
    let status = |path: &str, t: String| {
        let (c, url) = (c.clone(), format!("{base}{path}"));
        async move { get(&c, &url, Some(&t)).await.0 }
    };
    assert_eq!(status("/ra/x", token(&a_key, "a")).await, 200);
    assert_eq!(status("/rany/x", token(&a_key, "a")).await, 200);
    assert_eq!(
        status("/rb/x", token(&a_key, "a")).await,
        401,
        "a's token on b's route"
    );
    assert_eq!(status("/rb/x", token(&b_key, "b")).await, 200);
    assert_eq!(
        status("/ra/x", token(&b_key, "b")).await,
        401,
        "b's token on a's route"
    );
    assert_eq!(status("/rany/x", token(&c_key, "c")).await, 200);
    // Signed with b's key, claiming a's issuer: a's "shared" kid is another key.
    let (s, _, body) = get(&c, &format!("{base}/rany/x"), Some(&token(&b_key, "a"))).await;
    assert_eq!((s, body), (401, json!({"message": "Unauthorized"})));
    // An issuer of no pool: refused before any key lookup.
    let before = (ja.hits(), jb.hits(), jc.hits());
    let other = a_key.sign(&with(
        id_claims(),
        json!({ "iss": "https://issuer.example/z" }),
    ));
    assert_eq!(status("/rany/x", other).await, 401);
    // An unknown kid in pool a refetches a's keys only.
    let unknown = relabel(&TestKey::load("k1"), "unknown");
    assert_eq!(status("/rany/x", token(&unknown, "a")).await, 401);
    assert_eq!(
        (ja.hits(), jb.hits(), jc.hits()),
        (before.0 + 1, before.1, before.2),
        "only pool a's keys were fetched"
    );
    // The pool label on the JWKS metrics.
    let text = gw.metrics_text();
    for pool in ["a", "b", "c"] {
        assert!(
            text.contains(&format!(
                "cognito_gate_jwks_refresh_total{{pool=\"{pool}\",outcome=\"success\"}}"
            )),
            "{text}"
        );
    }
}

/// A JWKS server for many pools (`/jwks/<n>`): every answer takes `delay`; counts requests and
/// the most in flight at once.
async fn counting_jwks(
    key: &TestKey,
    delay: Duration,
) -> (
    std::net::SocketAddr,
    Arc<std::sync::atomic::AtomicU64>,
    Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let body = json!({ "keys": [key.jwk] }).to_string();
    let (total, peak) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let now = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (t, p) = (total.clone(), peak.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (t, p, now, body) = (t.clone(), p.clone(), now.clone(), body.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let (t, p, now, body) = (t.clone(), p.clone(), now.clone(), body.clone());
                    async move {
                        t.fetch_add(1, Ordering::SeqCst);
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        p.fetch_max(n, Ordering::SeqCst);
                        tokio::time::sleep(delay).await;
                        now.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(body)),
                        ))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
            });
        }
    });
    (addr, total, peak)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_pools_load_their_keys_a_few_at_a_time() {
    use std::sync::atomic::Ordering;
    let k1 = TestKey::load("k1");
    let (addr, total, peak) = counting_jwks(&k1, Duration::from_millis(20)).await;
    let mut toml = "[server]\nlisten = \"127.0.0.1:0\"\n[cognito]\n".to_string();
    for i in 0..200 {
        toml.push_str(&format!(
            "[[cognito.pools]]\nname = \"p{i}\"\nissuer = \"{}\"\napp_clients = []\n[cognito.pools.jwks]\nurl = \"http://{addr}/jwks/{i}\"\n",
            pool_issuer(&format!("p{i}"))
        ));
    }
    toml.push_str("[[routes]]\nname = \"r\"\npath_prefix = \"/r\"\nupstream = \"builtin:echo\"\nauth = [\"jwt\"]\n");
    let started = std::time::Instant::now();
    let gw = start_ready(config(&toml)).await;
    let ready_in = started.elapsed();
    assert_eq!(total.load(Ordering::SeqCst), 200, "one fetch per pool");
    let peak = peak.load(Ordering::SeqCst);
    assert!((2..=8).contains(&peak), "{peak} fetches at once");
    eprintln!("200 pools ready in {ready_in:?}, at most {peak} JWKS fetches at once");
    let url = format!("http://{}/r/x", gw.http_addr.unwrap());
    let t = k1.sign(&with(id_claims(), json!({ "iss": pool_issuer("p199") })));
    assert_eq!(get(&client(), &url, Some(&t)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_with_stale_keys_answers_only_its_own_tokens_503() {
    let (ka, kb) = (TestKey::load("k1"), TestKey::load("k2"));
    let (ja, jb) = (FakeJwks::start(&[&ka]).await, FakeJwks::start(&[&kb]).await);
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[cognito]\n[cognito.jwks]\nmax_stale = \"1s\"\nrefresh_interval = \"200ms\"\n[[cognito.pools]]\nname = \"a\"\nissuer = \"{}\"\napp_clients = []\n[cognito.pools.jwks]\nurl = \"{}\"\n[[cognito.pools]]\nname = \"b\"\nissuer = \"{}\"\napp_clients = []\n[cognito.pools.jwks]\nurl = \"{}\"\n[[routes]]\nname = \"r\"\npath_prefix = \"/r\"\nupstream = \"builtin:echo\"\nauth = [\"jwt\"]\n",
        pool_issuer("a"),
        ja.url(),
        pool_issuer("b"),
        jb.url()
    );
    let gw = start_ready(config(&toml)).await;
    let base = format!("http://{}", gw.http_addr.unwrap());
    let c = client();
    let ta = ka.sign(&with(id_claims(), json!({ "iss": pool_issuer("a") })));
    let tb = kb.sign(&with(id_claims(), json!({ "iss": pool_issuer("b") })));
    assert_eq!(get(&c, &format!("{base}/r/x"), Some(&tb)).await.0, 200);
    jb.set_down(true);
    // b's keys age past max_stale: its tokens get 503, a's still 200, and the gateway is ready.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (s, _, body) = get(&c, &format!("{base}/r/x"), Some(&tb)).await;
        if s == 503 {
            assert_eq!(body, json!({"message": "Service Unavailable"}));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "b's keys never went stale"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(&c, &format!("{base}/r/x"), Some(&ta)).await.0, 200);
    assert_eq!(get(&c, &format!("{base}/readyz"), None).await.0, 200);
    let _ = ja;
}

#[test]
fn several_pools_are_checked_as_a_whole() {
    let source = cognito_gate::config::Source {
        name: "t".into(),
        base_dir: ".".into(),
    };
    let parse = |text: &str| {
        cognito_gate::config::Config::parse(text, &source)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let pool = |name: &str, iss: &str| {
        format!("[[cognito.pools]]\nname = \"{name}\"\nissuer = \"{iss}\"\napp_clients = []\n[cognito.pools.jwks]\nurl = \"http://127.0.0.1:1/jwks\"\n")
    };
    let err = parse(&format!(
        "[cognito]\nuser_pool_id = \"x\"\n{}{}{}[[routes]]\nname = \"r\"\npath_prefix = \"/r\"\nupstream = \"builtin:echo\"\nauth = [\"jwt\"]\npools = [\"zz\"]\n[private_api]\nbase_url = \"http://127.0.0.1:1/dev\"\n[exchange]\nclient_id = \"c\"\n",
        pool("a", "https://i.example/a"),
        pool("a", "https://i.example/b"),
        pool("c", "https://i.example/a"),
    ));
    for line in [
        "cognito.user_pool_id: belongs in each [[cognito.pools]] entry when pools are listed",
        "cognito.pools[1].name: \"a\" is used twice",
        "cognito.pools[2].issuer: \"https://i.example/a\" is accepted by pool \"a\" too: the issuer picks the pool",
        "routes[0].pools[0]: no pool named \"zz\" in [cognito]",
        "exchange.pool: required when [[cognito.pools]] lists several pools",
    ] {
        assert!(err.contains(line), "no {line} in\n{err}");
    }
    // Both formats of one region+id pool are one pool's; another pool may not claim either.
    let err = parse(&format!(
        "[cognito]\n[[cognito.pools]]\nname = \"a\"\nregion = \"ap-northeast-1\"\nuser_pool_id = \"ap-northeast-1_A\"\napp_clients = []\n[cognito.pools.jwks]\nurl = \"http://127.0.0.1:1/j\"\n{}",
        pool("b", "https://issuer-cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_A")
    ));
    assert!(err.contains("cognito.pools[1].issuer: \"https://issuer-cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_A\" is accepted by pool \"a\" too"), "{err}");
}

/// Basic and service accounts forward tokens of the exchange's pool: a route whose `pools`
/// leaves that pool out would let through by Basic the users it refuses by token (issue 20).
#[test]
fn a_route_whose_pools_exclude_the_exchange_pool_cannot_use_basic_or_service() {
    let source = cognito_gate::config::Source {
        name: "t".into(),
        base_dir: ".".into(),
    };
    let text = |auth: &str, pools: &str| {
        let pool = |name: &str| {
            format!("[[cognito.pools]]\nname = \"{name}\"\nissuer = \"https://i.example/{name}\"\napp_clients = []\n[cognito.pools.jwks]\nurl = \"http://127.0.0.1:1/jwks\"\n")
        };
        format!(
            "[cognito]\n{}{}[private_api]\nbase_url = \"http://127.0.0.1:1/dev\"\n[exchange]\nclient_id = \"c\"\npool = \"staff\"\n[service_accounts.batch]\nusername = \"u\"\npassword = \"p\"\n[[routes]]\nname = \"r\"\npath_prefix = \"/r\"\nupstream = \"builtin:echo\"\nauth = {auth}\npools = {pools}\n{sa}",
            pool("staff"),
            pool("partners"),
            sa = if auth.contains("service") { "service_account = \"batch\"\n" } else { "" },
        )
    };
    let parse = |auth: &str, pools: &str| {
        cognito_gate::config::Config::parse(&text(auth, pools), &source)
            .map(|c| c.summary())
            .map_err(|e| e.to_string())
    };
    let err = parse(r#"["jwt", "basic"]"#, r#"["partners"]"#).unwrap_err();
    assert!(
        err.contains("routes[0].pools: does not list \"staff\", the pool auth \"basic\" logs into"),
        "{err}"
    );
    let err = parse(r#"["jwt", "service"]"#, r#"["partners"]"#).unwrap_err();
    assert!(err.contains("the pool auth \"service\" logs into"), "{err}");
    // Listing the exchange's pool, or no pools at all, is fine; the summary names the pools.
    let summary = parse(r#"["jwt", "basic"]"#, r#"["partners", "staff"]"#).unwrap();
    assert!(summary.contains("pools=partners,staff"), "{summary}");
    let summary = parse(r#"["basic"]"#, "[]").unwrap();
    assert!(summary.contains("auth=basic pools=staff"), "{summary}");
}

#[test]
fn a_bad_shared_jwks_default_is_one_line_however_many_pools_use_it() {
    let source = cognito_gate::config::Source {
        name: "t".into(),
        base_dir: ".".into(),
    };
    let mut text = "[cognito]\n[cognito.jwks]\nmax_stale = \"soon\"\n".to_string();
    for i in 0..3 {
        text.push_str(&format!(
            "[[cognito.pools]]\nname = \"p{i}\"\nissuer = \"https://i.example/{i}\"\napp_clients = []\n[cognito.pools.jwks]\nurl = \"http://127.0.0.1:1/j\"\n"
        ));
    }
    let err = cognito_gate::config::Config::parse(&text, &source)
        .unwrap_err()
        .to_string();
    assert_eq!(err.matches("cognito.jwks.max_stale:").count(), 1, "{err}");
}

#[tokio::test]
async fn a_client_flooding_bad_signatures_is_refused_before_rsa_and_valid_tokens_are_never_charged()
{
    let k1 = TestKey::load("k1");
    let jwks = FakeJwks::start(&[&k1]).await;
    // 127.0.0.1 is a trusted proxy, so X-Forwarded-For names the client.
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n{}\n{}",
        cognito_section(&jwks.url(), &format!("[\"{CLIENT_ID}\"]")).replace(
            "[cognito.jwks]",
            "bad_signature_per_minute = 3\n[cognito.jwks]"
        ),
        routes("builtin:echo")
    );
    let gw = start_ready(config(&toml)).await;
    let url = format!("http://{}/id/x", gw.http_addr.unwrap());
    let c = client();
    let send = |token: String, from: &'static str| {
        let req = c
            .get(&url)
            .header("authorization", format!("Bearer {token}"))
            .header("x-forwarded-for", from);
        async move {
            let resp = req.send().await.unwrap();
            let retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, retry, body)
        }
    };
    let flooder = "192.0.2.7";
    let valid = k1.sign(&id_claims());
    assert_eq!(
        send(valid.clone(), flooder).await.0,
        200,
        "verified before the flood"
    );

    // Expired tokens with a good signature, and malformed ones, are never charged.
    for i in 0..5 {
        let expired = k1.sign(&with(id_claims(), json!({"exp": now() - 100 - i})));
        assert_eq!(send(expired, flooder).await.0, 401);
        assert_eq!(send(format!("not.a.token{i}"), flooder).await.0, 401);
    }
    for i in 0..3 {
        let (status, retry, body) = send(unseen_forgery(&k1, i), flooder).await;
        assert_eq!(
            (status, retry, body),
            (401, None, json!({"message": UNAUTHORIZED}))
        );
    }
    // The budget is used: the next forgery is refused without an RSA check.
    let (status, retry, body) = send(unseen_forgery(&k1, 3), flooder).await;
    assert_eq!(
        (status, retry.as_deref(), body),
        (429, Some("60"), json!({"message": "Too Many Requests"}))
    );
    // A token verified before needs no RSA: it still passes. A token nobody has verified yet
    // would need RSA, so it waits for the window like the forgeries.
    assert_eq!(send(valid.clone(), flooder).await.0, 200);
    let fresh = k1.sign(&with(id_claims(), json!({"jti": "fresh"})));
    assert_eq!(send(fresh.clone(), flooder).await.0, 429);
    // Another client keeps its whole budget, and a valid token is never charged to it.
    let other = "192.0.2.8";
    assert_eq!(send(fresh, other).await.0, 200);
    for i in 0..10 {
        let token = k1.sign(&with(id_claims(), json!({"jti": format!("other-{i}")})));
        assert_eq!(send(token, other).await.0, 200);
    }
    assert_eq!(send(unseen_forgery(&k1, 100), other).await.0, 401);

    let metrics = scrape(gw.admin_addr.unwrap()).await;
    for line in [
        "cognito_gate_bad_signature_flood_total{event=\"charged\"} 4",
        "cognito_gate_bad_signature_flood_total{event=\"refused\"} 2",
        "cognito_gate_auth_decisions_total{route=\"id\",decision=\"deny\",reason=\"bad_signature_flood\"} 2",
        "cognito_gate_auth_decisions_total{route=\"id\",decision=\"deny\",reason=\"bad_signature\"} 4",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}
