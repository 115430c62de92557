//! The credential exchange against an in-process fake private API that counts its calls:
//! single-flight logins, the negative cache, failure limits, refresh, dependency failures
//! (HTML bodies, 403, timeouts, refused connections) and the login API's error mapping.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::{Request, Response};
use serde_json::{json, Value};

/// SECRET_HASH for alice, computed independently:
/// `echo -n "alicetestclient0123456789abcdef" | openssl dgst -sha256 -hmac s3cr3t -binary | base64`
const ALICE_SECRET_HASH: &str = "+E4FFhKQabz3I9J9vJ2LnltFvTUzR+24PmNYbpTBNXI=";

#[derive(Default)]
struct FakeState {
    calls: Mutex<HashMap<String, u64>>,
    /// Token lifetime in seconds.
    lifetime: AtomicI64,
    refresh_fails: AtomicBool,
    bad_hash: AtomicBool,
    /// "locked" is under Cognito's own lockout while this is set.
    locked: AtomicBool,
    /// How long every answer takes, so that concurrent attempts are all in flight at once.
    delay: Arc<Mutex<Duration>>,
}

impl FakeState {
    fn calls(&self, key: &str) -> u64 {
        *self.calls.lock().unwrap().get(key).unwrap_or(&0)
    }
}

fn cognito_error(t: &str) -> Response<Full<Bytes>> {
    // API Gateway with only the default integration response: Cognito errors as HTTP 200.
    Response::new(Full::new(Bytes::from(
        json!({"__type": t, "message": "detail that must not reach clients"}).to_string(),
    )))
}

fn tokens(k1: &TestKey, username: &str, lifetime: i64) -> Response<Full<Bytes>> {
    let exp = now() + lifetime;
    let id = k1.sign(&with(
        id_claims(),
        json!({"cognito:username": username, "exp": exp}),
    ));
    let access = k1.sign(&with(
        access_claims(),
        json!({"username": username, "exp": exp}),
    ));
    Response::new(Full::new(Bytes::from(
        json!({"AuthenticationResult": {"IdToken": id, "AccessToken": access,
            "RefreshToken": format!("rt-{username}"), "ExpiresIn": lifetime,
            "TokenType": "Bearer"}, "ChallengeParameters": {}})
        .to_string(),
    )))
}

async fn fake_private_api(state: Arc<FakeState>) -> std::net::SocketAddr {
    let k1 = Arc::new(TestKey::load("k1"));
    let delay = state.delay.clone();
    serve_fn_delayed(
        Arc::new(move |req: Request<Bytes>| {
            let body: Value = serde_json::from_slice(req.body()).unwrap_or(Value::Null);
            let flow = body["AuthFlow"].as_str().unwrap_or("").to_string();
            let params = &body["AuthParameters"];
            let user = params["USERNAME"].as_str().unwrap_or("").to_string();
            let key = format!("{} {flow} {user}", req.uri().path());
            *state.calls.lock().unwrap().entry(key).or_default() += 1;
            let lifetime = state.lifetime.load(Ordering::SeqCst);
            if flow == "REFRESH_TOKEN_AUTH" {
                if state.refresh_fails.load(Ordering::SeqCst) {
                    return cognito_error("NotAuthorizedException");
                }
                let user = params["REFRESH_TOKEN"]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches("rt-");
                if user == "alice" && params["SECRET_HASH"] != ALICE_SECRET_HASH {
                    state.bad_hash.store(true, Ordering::SeqCst);
                    return cognito_error("NotAuthorizedException");
                }
                return tokens(&k1, user, lifetime);
            }
            if user == "alice" && params["SECRET_HASH"] != ALICE_SECRET_HASH {
                state.bad_hash.store(true, Ordering::SeqCst);
                return cognito_error("NotAuthorizedException");
            }
            let password = params["PASSWORD"].as_str().unwrap_or("");
            match user.as_str() {
                "alice" if password == "pw-alice" => tokens(&k1, "alice", lifetime),
                // An alias (as an email address would be): the tokens name the canonical user.
                "alice-alias" if password == "pw-alice" => tokens(&k1, "alice", lifetime),
                "alice" => cognito_error("com.amazonaws#NotAuthorizedException:x"),
                "html" => Response::builder()
                    .status(500)
                    .body(Full::new(Bytes::from_static(
                        b"<html><body>Internal Server Error</body></html>",
                    )))
                    .unwrap(),
                "forbidden" => Response::builder()
                    .status(403)
                    .body(Full::new(Bytes::from_static(br#"{"message":"Forbidden"}"#)))
                    .unwrap(),
                "locked" if state.locked.load(Ordering::SeqCst) => {
                    Response::new(Full::new(Bytes::from(
                        json!({"__type": "NotAuthorizedException",
                        "message": "Password attempts exceeded"})
                        .to_string(),
                    )))
                }
                "locked" if password == "pw-locked" => tokens(&k1, "locked", lifetime),
                "unconfirmed" => cognito_error("UserNotConfirmedException"),
                "throttled" => cognito_error("TooManyRequestsException"),
                "badparam" => cognito_error("InvalidParameterException"),
                "newpw" => Response::new(Full::new(Bytes::from(
                    json!({"ChallengeName": "NEW_PASSWORD_REQUIRED", "Session": "s1",
                    "ChallengeParameters": {}})
                    .to_string(),
                ))),
                _ => cognito_error("UserNotFoundException"),
            }
        }),
        delay,
    )
    .await
}

struct Env {
    gw: cognito_gate::RunningGateway,
    base: String,
    state: Arc<FakeState>,
    _jwks: FakeJwks,
}

async fn env(lifetime: i64, private_api: &str, max_failures: u32) -> Env {
    env_with(lifetime, private_api, max_failures, "").await
}

/// `env` with more `[server]` keys.
async fn env_with(lifetime: i64, private_api: &str, max_failures: u32, server: &str) -> Env {
    let k1 = TestKey::load("k1");
    let jwks = FakeJwks::start(&[&k1]).await;
    let state = Arc::new(FakeState::default());
    state.lifetime.store(lifetime, Ordering::SeqCst);
    let addr = fake_private_api(state.clone()).await;
    let base_url = if private_api.is_empty() {
        format!("http://{addr}/dev")
    } else {
        private_api.to_string()
    };
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:0"
{server}
{cognito}
[private_api]
base_url = "{base_url}"
timeout = "300ms"
[exchange]
client_id = "{CLIENT_ID}"
client_secret = "s3cr3t"
user_pool_id = "ap-northeast-1_TestPool"
refresh_before = "5m"
failure_ttl = "30s"
max_failures_per_minute = {max_failures}
[login_api]
path_prefix = "/auth"
[[routes]]
name = "legacy"
path_prefix = "/legacy"
upstream = "builtin:echo"
auth = ["basic"]
claim_headers = {{ "x-cognito-username" = "cognito:username" }}

[[routes]]
name = "either"
path_prefix = "/either"
upstream = "builtin:echo"
auth = ["jwt", "basic"]
claim_headers = {{ "x-cognito-username" = "cognito:username" }}
"#,
        cognito = cognito_section(&jwks.url(), &format!("[\"{CLIENT_ID}\"]")),
    );
    let gw = start_ready(config(&toml)).await;
    let base = format!("http://{}", gw.http_addr.unwrap());
    Env {
        gw,
        base,
        state,
        _jwks: jwks,
    }
}

async fn basic(
    c: &reqwest::Client,
    url: &str,
    user: &str,
    pw: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = c.get(url).basic_auth(user, Some(pw)).send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.json().await.unwrap_or(Value::Null))
}

const LOGIN: &str = "/dev/admin-initiate-auth ADMIN_USER_PASSWORD_AUTH";

#[tokio::test]
async fn five_hundred_concurrent_requests_share_one_login() {
    let e = env(3600, "", 100).await;
    let c = client();
    let url = Arc::new(format!("{}/legacy/x", e.base));
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { basic(&c, &url, "alice", "pw-alice").await })
        })
        .collect();
    for t in tasks {
        let (status, _, body) = t.await.unwrap();
        assert_eq!(status, 200);
        assert!(body["headers"]["authorization"]
            .as_str()
            .unwrap()
            .starts_with("Bearer ey"));
        assert_eq!(body["headers"]["x-cognito-username"], "alice");
    }
    assert_eq!(
        e.state.calls(&format!("{LOGIN} alice")),
        1,
        "one login for 500 requests"
    );
    assert!(
        !e.state.bad_hash.load(Ordering::SeqCst),
        "SECRET_HASH matches the formula"
    );
    let text = e.gw.metrics_text();
    assert!(
        text.contains("cognito_gate_token_exchange_total{kind=\"login\",outcome=\"success\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn wrong_passwords_hit_the_negative_cache_then_the_failure_limit() {
    let e = env(3600, "", 3).await;
    let c = client();
    let url = format!("{}/legacy/x", e.base);
    for _ in 0..5 {
        let (status, headers, body) = basic(&c, &url, "alice", "wrong").await;
        assert_eq!((status, body), (401, json!({"message": "Unauthorized"})));
        assert_eq!(headers["www-authenticate"], "Basic realm=\"cognito-gate\"");
    }
    assert_eq!(
        e.state.calls(&format!("{LOGIN} alice")),
        1,
        "answered from the negative cache"
    );
    // Other wrong passwords count against the limit (3 per minute per username and address).
    assert_eq!(basic(&c, &url, "alice", "wrong2").await.0, 401);
    assert_eq!(basic(&c, &url, "alice", "wrong3").await.0, 401);
    let (status, _, body) = basic(&c, &url, "alice", "wrong4").await;
    assert_eq!(
        (status, body),
        (429, json!({"message": "Too Many Requests"}))
    );
    assert_eq!(
        e.state.calls(&format!("{LOGIN} alice")),
        3,
        "limited attempts never reach Cognito"
    );
    // The same address is limited for other usernames too.
    assert_eq!(basic(&c, &url, "someone-else", "x").await.0, 429);
}

#[tokio::test]
async fn unknown_users_challenges_and_malformed_basic_get_401() {
    let e = env(3600, "", 100).await;
    let c = client();
    let url = format!("{}/legacy/x", e.base);
    let (status, _, body) = basic(&c, &url, "nobody", "x").await;
    assert_eq!(
        (status, body),
        (401, json!({"message": "Unauthorized"})),
        "like a wrong password"
    );
    // A user who must answer a challenge cannot use Basic.
    assert_eq!(basic(&c, &url, "newpw", "x").await.0, 401);
    for bad in ["Basic !!!", "Basic dXNlcg==", "Basic "] {
        let resp = c
            .get(&url)
            .header("authorization", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{bad}");
        assert_eq!(
            resp.headers()["www-authenticate"],
            "Basic realm=\"cognito-gate\""
        );
    }
    // Only a valid login reaches the upstream, and the expired-free token is verified.
    assert_eq!(basic(&c, &url, "alice", "pw-alice").await.0, 200);
}

#[tokio::test]
async fn due_tokens_are_refreshed_and_a_failed_refresh_logs_in_again() {
    // Tokens live 4 s: due after half their lifetime (refresh_before = 5 min is capped at half
    // the lifetime, so short-lived tokens are not refreshed on every request).
    let e = env(4, "", 100).await;
    let c = client();
    let url = format!("{}/legacy/x", e.base);
    let refresh = "/dev/initiate-auth REFRESH_TOKEN_AUTH ";
    assert_eq!(basic(&c, &url, "alice", "pw-alice").await.0, 200);
    assert_eq!(basic(&c, &url, "alice", "pw-alice").await.0, 200);
    assert_eq!(e.state.calls(refresh), 0, "fresh tokens are not refreshed");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    while e.state.calls(refresh) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no refresh call");
        assert_eq!(basic(&c, &url, "alice", "pw-alice").await.0, 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !e.state.bad_hash.load(Ordering::SeqCst),
        "refresh SECRET_HASH uses cognito:username"
    );
    assert_eq!(e.state.calls(&format!("{LOGIN} alice")), 1);

    // The refresh starts failing: the session is dropped and the next request logs in again.
    e.state.refresh_fails.store(true, Ordering::SeqCst);
    let before = e.state.calls(refresh);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    while e.state.calls(refresh) == before {
        assert!(tokio::time::Instant::now() < deadline);
        assert_eq!(basic(&c, &url, "alice", "pw-alice").await.0, 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        assert_eq!(basic(&c, &url, "alice", "pw-alice").await.0, 200);
        if e.state.calls(&format!("{LOGIN} alice")) == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never logged in again"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn dependency_failures_are_503_or_504_and_never_hang() {
    let e = env(3600, "", 100).await;
    let c = client();
    let url = format!("{}/legacy/x", e.base);
    let unavailable = json!({"message": "Service Unavailable"});
    for user in ["html", "forbidden"] {
        let (status, _, body) = basic(&c, &url, user, "x").await;
        assert_eq!((status, &body), (503, &unavailable), "{user}");
    }
    // Dependency failures are not cached as bad credentials: the next attempt calls again.
    basic(&c, &url, "html", "x").await;
    assert_eq!(e.state.calls(&format!("{LOGIN} html")), 2);

    // A private API slower than private_api.timeout (300ms): 504, quickly.
    let slow = serve_fn_delayed(
        Arc::new(|_req| cognito_error("NotAuthorizedException")),
        Arc::new(Mutex::new(Duration::from_millis(1500))),
    )
    .await;
    let s = env(3600, &format!("http://{slow}/dev"), 100).await;
    let started = std::time::Instant::now();
    let (status, _, body) = basic(&c, &format!("{}/legacy/x", s.base), "alice", "pw-alice").await;
    assert_eq!(
        (status, body),
        (504, json!({"message": "Endpoint request timed out"}))
    );
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "bounded by private_api.timeout"
    );

    // A private API nobody listens on.
    let refused = closed_port().await;
    let e = env(3600, &format!("http://{refused}/dev"), 100).await;
    let (status, _, body) = basic(&c, &format!("{}/legacy/x", e.base), "alice", "pw-alice").await;
    assert_eq!((status, body), (503, unavailable));
}

#[tokio::test]
async fn login_api_maps_cognito_errors_without_enumeration() {
    let e = env(3600, "", 100).await;
    let c = client();
    let login = |user: &str, pw: &str| {
        let c = c.clone();
        let url = format!("{}/auth/login", e.base);
        let body = json!({"username": user, "password": pw});
        async move {
            let resp = c.post(url).json(&body).send().await.unwrap();
            (
                resp.status().as_u16(),
                resp.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = login("alice", "pw-alice").await;
    assert_eq!(status, 200);
    assert!(body["AuthenticationResult"]["IdToken"].is_string());
    assert_eq!(body["AuthenticationResult"]["RefreshToken"], "rt-alice");
    let denied = json!({"message": "Incorrect username or password."});
    assert_eq!(login("alice", "nope").await, (401, denied.clone()));
    assert_eq!(
        login("nobody", "nope").await,
        (401, denied),
        "no user enumeration"
    );
    let (status, body) = login("unconfirmed", "x").await;
    assert_eq!(status, 403);
    assert_eq!(body["type"], "UserNotConfirmedException");
    assert!(!body
        .to_string()
        .contains("detail that must not reach clients"));
    assert_eq!(login("throttled", "x").await.0, 429);
    assert_eq!(login("badparam", "x").await.0, 400);
    assert_eq!(
        login("html", "x").await,
        (503, json!({"message": "Service Unavailable"}))
    );
    let (status, body) = login("newpw", "x").await;
    assert_eq!(
        (status, body["ChallengeName"].as_str()),
        (200, Some("NEW_PASSWORD_REQUIRED"))
    );
    // Bad bodies and methods.
    let resp = c
        .post(format!("{}/auth/login", e.base))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = c
        .get(format!("{}/auth/login", e.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let resp = c
        .post(format!("{}/auth/refresh", e.base))
        .json(&json!({"refresh_token": "rt-alice", "username": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(!e.state.bad_hash.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_failing_private_api_is_not_hammered() {
    let e = env(3600, "", 1000).await;
    let c = client();
    let url = format!("{}/legacy/x", e.base);
    // Every attempt uses new credentials, so neither the cache nor single-flight absorbs it.
    for i in 0..20 {
        let (status, _, body) = basic(&c, &url, "html", &format!("pw-{i}")).await;
        assert_eq!(
            (status, body),
            (503, json!({"message": "Service Unavailable"}))
        );
    }
    assert_eq!(
        e.state.calls(&format!("{LOGIN} html")),
        5,
        "after 5 failures in a row the breaker pauses calls"
    );
    let text = e.gw.metrics_text();
    assert!(text.contains("outcome=\"circuit_open\""), "{text}");
    // After the pause one trial call goes through; a success closes the breaker.
    let opened = tokio::time::Instant::now();
    let deadline = opened + Duration::from_secs(5);
    loop {
        let (status, _, _) = basic(&c, &url, "alice", "pw-alice").await;
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "breaker never let a trial call through"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "recovery: private API breaker -> served again after {:?}",
        opened.elapsed()
    );
    assert_eq!(basic(&c, &url, "alice", "pw-alice").await.0, 200);
}

/// A client whose requests come from `ip` (a loopback address), so that tests can act as
/// several client addresses.
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn post_json(c: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let resp = c.post(url).json(&body).send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json::<Value>().await.unwrap_or(Value::Null),
    )
}

/// Awaits the requests and checks how many were refused as wrong credentials and as limited.
async fn expect_401s_then_429s(
    tasks: Vec<tokio::task::JoinHandle<u16>>,
    denied: usize,
    limited: usize,
) {
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort_unstable();
    let count = |status| statuses.iter().filter(|s| **s == status).count();
    assert_eq!((count(401), count(429)), (denied, limited), "{statuses:?}");
}

#[tokio::test]
async fn parallel_wrong_logins_cannot_pass_the_failure_limit() {
    let e = env(3600, "", 10).await;
    // Every answer takes 200 ms, so all 40 attempts are in flight at once.
    *e.state.delay.lock().unwrap() = Duration::from_millis(200);
    let c = client_from("127.0.0.1");
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (c, url) = (c.clone(), format!("{}/auth/login", e.base));
            tokio::spawn(async move {
                post_json(
                    &c,
                    url,
                    json!({"username": "alice", "password": format!("w{i}")}),
                )
                .await
                .0
            })
        })
        .collect();
    expect_401s_then_429s(tasks, 10, 30).await;
    assert_eq!(e.state.calls(&format!("{LOGIN} alice")), 10);

    // The same through Basic, from another address and for another username.
    let c = client_from("127.0.0.3");
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (c, url) = (c.clone(), format!("{}/legacy/x", e.base));
            tokio::spawn(async move { basic(&c, &url, "mallory", &format!("w{i}")).await.0 })
        })
        .collect();
    expect_401s_then_429s(tasks, 10, 30).await;
    assert_eq!(e.state.calls(&format!("{LOGIN} mallory")), 10);
}

#[tokio::test]
async fn garbage_refresh_tokens_cannot_lock_a_user_out() {
    let e = env(3600, "", 10).await;
    e.state.refresh_fails.store(true, Ordering::SeqCst);
    let attacker = client_from("127.0.0.4");
    let refresh = format!("{}/auth/refresh", e.base);
    let body = json!({"refresh_token": "garbage", "username": "alice"});
    for _ in 0..10 {
        assert_eq!(
            post_json(&attacker, refresh.clone(), body.clone()).await.0,
            401
        );
    }
    // The attacker's address is limited, not the user it named.
    assert_eq!(
        post_json(&attacker, refresh.clone(), body.clone()).await,
        (429, json!({"message": "Too Many Requests"}))
    );
    let alice = client_from("127.0.0.5");
    let (status, _) = post_json(
        &alice,
        format!("{}/auth/login", e.base),
        json!({"username": "alice", "password": "pw-alice"}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        basic(&alice, &format!("{}/legacy/x", e.base), "alice", "pw-alice")
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn usernames_share_one_failure_budget_across_case_spaces_and_width() {
    let e = env(3600, "", 3).await;
    let login = format!("{}/auth/login", e.base);
    let first = client_from("127.0.0.6");
    for i in 0..3 {
        let body = json!({"username": "test-user", "password": format!("w{i}")});
        assert_eq!(post_json(&first, login.clone(), body).await.0, 401);
    }
    for (i, variant) in ["TEST-USER", "test-user ", "\u{ff54}est-user", " Test-User"]
        .iter()
        .enumerate()
    {
        let other = client_from(&format!("127.0.1.{}", i + 1));
        let body = json!({"username": variant, "password": "another"});
        assert_eq!(
            post_json(&other, login.clone(), body).await.0,
            429,
            "{variant:?}"
        );
        let (status, _, _) = basic(&other, &format!("{}/legacy/x", e.base), variant, "x").await;
        assert_eq!(status, 429, "Basic {variant:?}");
    }
    let calls: u64 = e.state.calls.lock().unwrap().values().sum();
    assert_eq!(calls, 3, "no variant reached Cognito");
}

#[tokio::test]
async fn cognito_lockout_is_a_temporary_429_and_never_a_cached_wrong_password() {
    let e = env(3600, "", 100).await;
    e.state.locked.store(true, Ordering::SeqCst);
    let c = client();
    let url = format!("{}/legacy/x", e.base);
    let (status, headers, body) = basic(&c, &url, "locked", "pw-locked").await;
    assert_eq!(
        (status, body),
        (429, json!({"message": "Too Many Requests"}))
    );
    assert!(headers.get("www-authenticate").is_none());
    let login = format!("{}/auth/login", e.base);
    let creds = json!({"username": "locked", "password": "pw-locked"});
    assert_eq!(
        post_json(&c, login.clone(), creds.clone()).await,
        (429, json!({"message": "Too Many Requests"}))
    );
    // The lockout ends: the right password works at once, not after failure_ttl.
    e.state.locked.store(false, Ordering::SeqCst);
    assert_eq!(basic(&c, &url, "locked", "pw-locked").await.0, 200);
    assert_eq!(post_json(&c, login, creds).await.0, 200);
    assert_eq!(e.state.calls(&format!("{LOGIN} locked")), 4);
}

#[tokio::test]
async fn a_username_cognito_rejects_as_invalid_is_bad_credentials_on_basic() {
    let e = env(3600, "", 100).await;
    let c = client();
    let (status, headers, body) = basic(&c, &format!("{}/legacy/x", e.base), "badparam", "x").await;
    assert_eq!((status, body), (401, json!({"message": "Unauthorized"})));
    assert_eq!(headers["www-authenticate"], "Basic realm=\"cognito-gate\"");
}

#[tokio::test]
async fn a_route_with_jwt_then_basic_takes_both_kinds_of_credentials() {
    let e = env(3600, "", 100).await;
    let c = client();
    let url = format!("{}/either/x", e.base);
    let (status, _, seen) = basic(&c, &url, "alice", "pw-alice").await;
    assert_eq!(
        status, 200,
        "Basic is the basic method's, not a malformed token"
    );
    assert_eq!(seen["headers"]["x-cognito-username"], "alice");
    let token = TestKey::load("k1").sign(&with(
        id_claims(),
        json!({"aud": CLIENT_ID, "cognito:username": "bob"}),
    ));
    let (status, _, seen) = get(&c, &url, Some(&format!("Bearer {token}"))).await;
    assert_eq!(status, 200);
    assert_eq!(seen["headers"]["x-cognito-username"], "bob");
    let (status, headers, _) = get(&c, &url, None).await;
    assert_eq!(status, 401);
    assert_eq!(
        headers["www-authenticate"], "Bearer",
        "the first method's challenge"
    );
    let (status, headers, _) = basic(&c, &url, "alice", "wrong").await;
    assert_eq!(status, 401);
    assert_eq!(headers["www-authenticate"], "Basic realm=\"cognito-gate\"");
}

#[tokio::test]
async fn refresh_after_an_alias_login_hashes_the_canonical_username() {
    let e = env(3600, "", 100).await;
    let c = client();
    let (status, body) = post_json(
        &c,
        format!("{}/auth/login", e.base),
        json!({"username": "alice-alias", "password": "pw-alice"}),
    )
    .await;
    assert_eq!(status, 200);
    let rt = body["AuthenticationResult"]["RefreshToken"]
        .as_str()
        .unwrap()
        .to_string();
    // The app sends the name it logged in with; SECRET_HASH must use "alice".
    let refresh = format!("{}/auth/refresh", e.base);
    let (status, body) = post_json(
        &c,
        refresh.clone(),
        json!({"refresh_token": rt, "username": "alice-alias"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(!e.state.bad_hash.load(Ordering::SeqCst));
    // Or no name at all.
    let (status, _) = post_json(&c, refresh.clone(), json!({"refresh_token": rt})).await;
    assert_eq!(status, 200);
    // A refresh token the gateway did not issue still needs the username.
    let (status, body) = post_json(&c, refresh, json!({"refresh_token": "rt-unknown"})).await;
    assert_eq!((status, body), (400, json!({"message": "Bad Request"})));
}

/// A Basic request from `client` as the trusted proxy on 127.0.0.1 reports it.
async fn basic_via_proxy(c: &reqwest::Client, url: &str, client: &str, user: &str) -> u16 {
    c.get(url)
        .header("x-forwarded-for", client)
        .basic_auth(user, Some("guess"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn ipv6_clients_are_limited_per_prefix() {
    let e = env_with(3600, "", 3, "trusted_proxies = [\"127.0.0.1/32\"]").await;
    let c = client_from("127.0.0.1");
    let url = format!("{}/legacy/x", e.base);
    let mut statuses = Vec::new();
    // Twelve addresses of one /64, another username each: only the address holds them back.
    for i in 1..=12 {
        let client = format!("2001:db8:1:2::{i:x}");
        statuses.push(basic_via_proxy(&c, &url, &client, &format!("user{i}")).await);
    }
    assert_eq!(statuses, [[401; 3].as_slice(), &[429; 9]].concat());
    let reached: u64 = e.state.calls.lock().unwrap().values().sum();
    assert_eq!(reached, 3, "three of twelve reach the private API");
    // Another /64 has its own budget; an IPv4 client is still one address.
    assert_eq!(
        basic_via_proxy(&c, &url, "2001:db8:1:3::1", "other").await,
        401
    );
    assert_eq!(basic_via_proxy(&c, &url, "192.0.2.1", "v4-a").await, 401);
    assert_eq!(
        basic_via_proxy(&c, &url, "::ffff:192.0.2.2", "v4-b").await,
        401
    );

    // ipv6_prefix = 128: each address on its own.
    let e = env_with(
        3600,
        "",
        3,
        "trusted_proxies = [\"127.0.0.1/32\"]\nipv6_prefix = 128",
    )
    .await;
    let url = format!("{}/legacy/x", e.base);
    for i in 1..=5 {
        let client = format!("2001:db8:1:2::{i:x}");
        assert_eq!(
            basic_via_proxy(&c, &url, &client, &format!("user{i}")).await,
            401
        );
    }
}
