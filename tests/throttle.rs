//! Throttling over real sockets, on one replica: exact counts against a stopped clock (a burst
//! of 20 at 5/s), budgets per caller, API keys, quotas across the UTC boundary and counted only
//! for requests that reach the upstream, address limits before the token checks, preflights
//! and health checks never throttled, the authorizer's answer, and a reload that keeps what did
//! not change. The fleet (three replicas on a real Valkey, Valkey killed) is in tests/fleet.rs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cognito_gate::throttle::Clock;
use common::*;
use serde_json::{json, Value};

/// 2026-12-07 12:00:00 UTC.
const NOON: Duration = Duration::from_secs(1_796_644_800);

const API_KEY_A: &str = "partner-a-key-0123456789";
const API_KEY_B: &str = "partner-b-key-0123456789";

fn toml(jwks: &FakeJwks, upstream: &str, limits: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_drain = "0s"
health_path = "/healthz"
{cognito}
{limits}
[throttle.api_keys]
keys = [{{ name = "partner-a", key = "{API_KEY_A}" }}, {{ name = "partner-b", key = "{API_KEY_B}" }}]

[[routes]]
name = "open"
path_prefix = "/open"
upstream = "{upstream}"
auth = ["none"]
throttle = ["burst"]
[routes.cors]
allow_origins = ["https://app.example"]

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "{upstream}"
auth = ["jwt"]
throttle = ["per_caller", "per_address"]

[[routes]]
name = "partner"
path_prefix = "/partner"
upstream = "{upstream}"
auth = ["none"]
throttle = ["daily"]

[[routes]]
name = "apps"
path_prefix = "/apps"
upstream = "{upstream}"
auth = ["jwt"]
token_use = "any"
throttle = ["per_app"]
"#,
        cognito = cognito_section(&jwks.url(), "[]"),
    )
}

const LIMITS: &str = r#"
[throttle.burst]
rate = 5
burst = 20
key = "route"
[throttle.per_caller]
rate = 1
burst = 3
key = "sub"
[throttle.per_address]
rate = 1
burst = 5
key = "client_address"
[throttle.daily]
quota = 3
period = "day"
key = "api_key"
[throttle.per_app]
rate = 1
burst = 2
key = "client_id"
"#;

struct Env {
    gw: cognito_gate::RunningGateway,
    base: String,
    up: EchoUpstream,
    key: TestKey,
    jwks: FakeJwks,
}

impl Env {
    async fn start(limits: &str) -> Env {
        Env::start_with(limits, |t| t).await
    }

    /// With the configuration changed by `edit` (a route's limits).
    async fn start_with(limits: &str, edit: impl FnOnce(String) -> String) -> Env {
        let key = TestKey::load("k1");
        let jwks = FakeJwks::start(&[&key]).await;
        let up = EchoUpstream::start().await;
        let gw = start_ready(config(&edit(toml(&jwks, &up.url(), limits)))).await;
        let base = format!("http://{}", gw.http_addr.unwrap());
        let env = Env {
            gw,
            base,
            up,
            key,
            jwks,
        };
        env.clock().set(NOON);
        env
    }

    fn clock(&self) -> Arc<Clock> {
        self.gw
            .gateway()
            .throttle
            .as_ref()
            .expect("throttled routes")
            .clock()
            .clone()
    }

    fn token(&self, sub: &str) -> String {
        self.key.sign(&with(id_claims(), json!({ "sub": sub })))
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = client().get(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.unwrap()
    }

    /// The statuses of `n` sequential requests.
    async fn statuses(&self, n: usize, path: &str, headers: &[(&str, &str)]) -> Vec<u16> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.get(path, headers).await.status().as_u16());
        }
        out
    }

    async fn metrics(&self) -> String {
        self.gw.metrics_text()
    }
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[tokio::test]
async fn a_burst_of_20_at_5_per_second_lets_20_through_then_5_a_second() {
    let env = Env::start(LIMITS).await;
    let s = env.statuses(25, "/open/x", &[]).await;
    assert_eq!(&s[..20], &[200; 20], "{s:?}");
    assert_eq!(&s[20..], &[429; 5], "{s:?}");
    let hits = env.up.hits();
    assert_eq!(hits, 20, "refused requests never reach the upstream");

    let resp = env.get("/open/x", &[]).await;
    assert_eq!(resp.status(), 429);
    let h = resp.headers().clone();
    assert_eq!(h["retry-after"], "1");
    assert_eq!(h["ratelimit-policy"], "\"burst\";q=20;w=4");
    assert_eq!(h["ratelimit"], "\"burst\";r=0;t=1");
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"message": "Too Many Requests"})
    );

    env.clock().advance(Duration::from_secs(1));
    let s = env.statuses(8, "/open/x", &[]).await;
    assert_eq!(s, [200, 200, 200, 200, 200, 429, 429, 429]);
    env.clock().advance(Duration::from_millis(200));
    assert_eq!(env.statuses(2, "/open/x", &[]).await, [200, 429]);
    assert!(
        env.metrics()
            .await
            .contains("cognito_gate_throttled_total{route=\"open\",limit=\"burst\"} 10"),
        "{}",
        env.metrics().await
    );
}

#[tokio::test]
async fn preflights_and_health_checks_are_never_throttled() {
    let env = Env::start(LIMITS).await;
    assert_eq!(count(&env.statuses(20, "/open/x", &[]).await, 200), 20);
    assert_eq!(env.get("/open/x", &[]).await.status(), 429);
    for _ in 0..30 {
        let pre = client()
            .request(reqwest::Method::OPTIONS, format!("{}/open/x", env.base))
            .header("origin", "https://app.example")
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        assert_eq!(pre.status(), 204);
        assert_eq!(env.get("/healthz", &[]).await.status(), 200);
    }
    // A throttled answer on a CORS route still carries the route's CORS headers.
    let resp = env
        .get("/open/x", &[("origin", "https://app.example")])
        .await;
    assert_eq!(resp.status(), 429);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "https://app.example"
    );
}

#[tokio::test]
async fn one_caller_cannot_spend_anothers_budget() {
    let limits = LIMITS.replace(
        "burst = 5\nkey = \"client_address\"",
        "burst = 100\nkey = \"client_address\"",
    );
    let env = Env::start(&limits).await;
    let alice = format!("Bearer {}", env.token("alice"));
    let bob = format!("Bearer {}", env.token("bob"));
    let s = env
        .statuses(5, "/api/x", &[("authorization", &alice)])
        .await;
    assert_eq!(s, [200, 200, 200, 429, 429]);
    let s = env.statuses(4, "/api/x", &[("authorization", &bob)]).await;
    assert_eq!(s, [200, 200, 200, 429], "bob has his own three");
    env.clock().advance(Duration::from_secs(1));
    assert_eq!(
        env.statuses(2, "/api/x", &[("authorization", &alice)])
            .await,
        [200, 429]
    );
    let resp = env.get("/api/x", &[("authorization", &alice)]).await;
    assert_eq!(resp.headers()["ratelimit-policy"], "\"per_caller\";q=3;w=3");

    // Per app client: an ID token's aud and an access token's client_id are the same app.
    let id = format!("Bearer {}", env.key.sign(&id_claims()));
    let access = format!(
        "Bearer {}",
        env.key
            .sign(&with(access_claims(), json!({"sub": "carol"})))
    );
    assert_eq!(
        env.get("/apps/x", &[("authorization", &id)]).await.status(),
        200
    );
    assert_eq!(
        env.get("/apps/x", &[("authorization", &access)])
            .await
            .status(),
        200
    );
    assert_eq!(
        env.get("/apps/x", &[("authorization", &access)])
            .await
            .status(),
        429,
        "one budget for the app client, whoever the user"
    );
    let other_app = format!(
        "Bearer {}",
        env.key.sign(&with(
            access_claims(),
            json!({"client_id": "otherclient0123456789abcd"})
        ))
    );
    // (An app client the pool does not list is still the same pool's: app_clients = [].)
    assert_eq!(
        env.get("/apps/x", &[("authorization", &other_app)])
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn address_limits_answer_before_the_token_checks_identity_limits_after() {
    let env = Env::start(LIMITS).await;
    // Bad tokens from one address: 401 until the address's burst of 5 is spent, then 429
    // without looking at the token.
    let s = env
        .statuses(8, "/api/x", &[("authorization", "Bearer not.a.token")])
        .await;
    assert_eq!(s, [401, 401, 401, 401, 401, 429, 429, 429]);
    let resp = env
        .get("/api/x", &[("authorization", "Bearer not.a.token")])
        .await;
    assert_eq!(
        resp.headers()["ratelimit-policy"],
        "\"per_address\";q=5;w=5"
    );
    // An identity limit never charges a request that failed authorization: the per-sub
    // budget is whole once the address has tokens again.
    env.clock().advance(Duration::from_secs(5));
    let alice = format!("Bearer {}", env.token("alice"));
    assert_eq!(
        env.statuses(4, "/api/x", &[("authorization", &alice)])
            .await,
        [200, 200, 200, 429]
    );
}

#[tokio::test]
async fn api_keys_are_required_named_and_never_forwarded() {
    let env = Env::start(LIMITS).await;
    for headers in [
        vec![],
        vec![("x-api-key", "not-a-known-key-0123456789")],
        vec![("x-api-key", API_KEY_A), ("x-api-key", API_KEY_B)],
    ] {
        let resp = env.get("/partner/x", &headers).await;
        assert_eq!(resp.status(), 403, "{headers:?}");
        assert_eq!(
            resp.json::<Value>().await.unwrap(),
            json!({"message": "Forbidden"})
        );
    }
    assert_eq!(env.up.hits(), 0);
    let resp = env.get("/partner/x", &[("x-api-key", API_KEY_A)]).await;
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.unwrap();
    assert!(
        seen["headers"].get("x-api-key").is_none(),
        "the gateway's credential stays with the gateway: {seen}"
    );
    assert!(env
        .metrics()
        .await
        .contains("cognito_gate_api_key_rejected_total{route=\"partner\"} 3"));
}

#[tokio::test]
async fn a_quota_counts_what_reaches_the_upstream_and_resets_at_the_utc_boundary() {
    let env = Env::start(LIMITS).await;
    let a = [("x-api-key", API_KEY_A)];
    let b = [("x-api-key", API_KEY_B)];
    // 23:59:58 UTC.
    env.clock().set(NOON + Duration::from_secs(12 * 3600 - 2));
    assert_eq!(
        env.statuses(4, "/partner/x", &a).await,
        [200, 200, 200, 429]
    );
    let resp = env.get("/partner/x", &a).await;
    assert_eq!(resp.headers()["retry-after"], "2", "until midnight UTC");
    assert_eq!(resp.headers()["ratelimit-policy"], "\"daily\";q=3;w=86400");
    assert_eq!(
        env.statuses(3, "/partner/x", &b).await,
        [200, 200, 200],
        "partner-b has its own quota"
    );
    // Midnight: a new day.
    env.clock().advance(Duration::from_secs(2));
    assert_eq!(
        env.statuses(4, "/partner/x", &a).await,
        [200, 200, 200, 429]
    );
}

#[tokio::test]
async fn a_quota_is_not_spent_by_requests_refused_before_the_upstream() {
    let limits =
        LIMITS.to_string() + "[throttle.api_daily]\nquota = 2\nperiod = \"day\"\nkey = \"sub\"\n";
    let env = Env::start_with(&limits, |t| {
        t.replace(
            "throttle = [\"per_caller\", \"per_address\"]",
            "throttle = [\"api_daily\"]",
        )
    })
    .await;
    let alice = format!("Bearer {}", env.token("alice"));
    let expired = format!(
        "Bearer {}",
        env.key.sign(&with(
            id_claims(),
            json!({"sub": "alice", "exp": now() - 600})
        ))
    );
    assert_eq!(
        env.statuses(5, "/api/x", &[("authorization", &expired)])
            .await,
        [401; 5]
    );
    assert_eq!(
        env.statuses(3, "/api/x", &[("authorization", &alice)])
            .await,
        [200, 200, 429]
    );
}

#[tokio::test]
async fn the_access_log_and_check_config_name_the_limit() {
    let dir = TempDir::new("throttle-cli");
    let keys = dir.write(
        "keys.toml",
        &format!("[[keys]]\nname = \"partner-a\"\nkey = \"{API_KEY_A}\"\n"),
    );
    let up = EchoUpstream::start().await;
    let cfg = dir.write(
        "config.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_drain = \"0s\"\n[log]\nformat = \"json\"\n\
             [throttle.tight]\nrate = 1\nburst = 1\nkey = \"api_key\"\n\
             [throttle.api_keys]\nfile = {:?}\n\
             [[routes]]\nname = \"partner\"\npath_prefix = \"/\"\nupstream = \"{}\"\nauth = [\"none\"]\nthrottle = [\"tight\"]\n",
            keys.display().to_string(),
            up.url()
        ),
    );
    let out = binary::run_args(&["check-config", "--config", cfg.to_str().unwrap()]).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout
            .contains("throttle      1 limits, per replica, 1 API keys in x-api-key"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("throttle=tight(1/s burst 1 by api_key)"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(API_KEY_A) && !out.stderr.contains(API_KEY_A));

    let mut served = binary::Served::start(&cfg, &[], false).await;
    let c = client();
    for want in [200, 429] {
        let r = c
            .get(served.url("/x"))
            .header("x-api-key", API_KEY_A)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want);
    }
    let line = served
        .wait_for_line("\"status\":429", Duration::from_secs(10))
        .await;
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["throttled"], "tight", "{line}");
    assert_eq!(v["api_key"], "partner-a", "{line}");
    // SIGHUP rereads the keys file: partner-a is gone, partner-b known; `tight` is unchanged
    // and keeps its state (partner-b's own bucket is fresh).
    std::fs::write(
        &keys,
        format!("[[keys]]\nname = \"partner-b\"\nkey = \"{API_KEY_B}\"\n"),
    )
    .unwrap();
    served.signal("HUP");
    let reloaded = served
        .wait_for_line("configuration reloaded", Duration::from_secs(10))
        .await;
    assert!(reloaded.contains("\"api_keys\":1"), "{reloaded}");
    assert!(reloaded.contains("\"limits_reset\":\"\""), "{reloaded}");
    for (key, want) in [(API_KEY_A, 403), (API_KEY_B, 200), (API_KEY_B, 429)] {
        let r = c
            .get(served.url("/x"))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{key}");
    }
    served.signal("TERM");
    served.exit(Duration::from_secs(10)).await;
    let log = served.full_log().await.join("\n");
    assert!(
        !log.contains(API_KEY_A) && !log.contains(API_KEY_B),
        "no key in any log line"
    );
}

#[tokio::test]
async fn a_reload_keeps_the_state_of_limits_that_did_not_change() {
    let limits = LIMITS.replace(
        "burst = 5\nkey = \"client_address\"",
        "burst = 100\nkey = \"client_address\"",
    );
    let env = Env::start(&limits).await;
    let alice = format!("Bearer {}", env.token("alice"));
    assert_eq!(count(&env.statuses(20, "/open/x", &[]).await, 200), 20);
    assert_eq!(
        env.statuses(3, "/api/x", &[("authorization", &alice)])
            .await,
        [200; 3]
    );
    // The same definitions: nothing starts afresh.
    let cfg = config(&toml(&env.jwks, &env.up.url(), &limits));
    let summary = env.gw.reload(cfg).await.unwrap();
    assert!(summary.limits_reset.is_empty(), "{summary:?}");
    assert_eq!(env.get("/open/x", &[]).await.status(), 429, "still spent");
    // per_caller redefined: it starts afresh; burst keeps its state.
    let changed = limits.replace(
        "rate = 1\nburst = 3\nkey = \"sub\"",
        "rate = 1\nburst = 4\nkey = \"sub\"",
    );
    let cfg = config(&toml(&env.jwks, &env.up.url(), &changed));
    let summary = env.gw.reload(cfg).await.unwrap();
    assert_eq!(summary.limits_reset, ["per_caller"]);
    assert_eq!(summary.api_keys, 2);
    assert_eq!(env.get("/open/x", &[]).await.status(), 429);
    assert_eq!(
        env.statuses(5, "/api/x", &[("authorization", &alice)])
            .await,
        [200, 200, 200, 200, 429]
    );
}

#[tokio::test]
async fn the_authorizer_answers_429_and_403_too() {
    let key = TestKey::load("k1");
    let jwks = FakeJwks::start(&[&key]).await;
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_drain = \"0s\"\n{}\n\
         [authz]\nhttp_listen = \"127.0.0.1:0\"\n\
         [throttle.tight]\nrate = 1\nburst = 2\nkey = \"sub\"\n\
         [throttle.keyed]\nrate = 100\nburst = 100\nkey = \"api_key\"\n\
         [throttle.api_keys]\nkeys = [{{ name = \"partner-a\", key = \"{API_KEY_A}\" }}]\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"none\"\nauth = [\"jwt\"]\nthrottle = [\"keyed\", \"tight\"]\n",
        cognito_section(&jwks.url(), "[]")
    );
    let gw = start_ready(config(&text)).await;
    gw.gateway().throttle.as_ref().unwrap().clock().set(NOON);
    let authz = format!("http://{}", gw.authz_http_addr.unwrap());
    let token = format!("Bearer {}", key.sign(&id_claims()));
    let c = client();
    let check = |with_key: bool| {
        let mut r = c
            .get(format!("{authz}/envoy/api/orders"))
            .header("authorization", &token);
        if with_key {
            r = r.header("x-api-key", API_KEY_A);
        }
        r.send()
    };
    let r = check(false).await.unwrap();
    assert_eq!(r.status(), 403);
    let r = check(true).await.unwrap();
    assert_eq!(r.status(), 200);
    // The key is the gateway's: the proxy is told to remove it.
    let remove = r
        .headers()
        .get("x-envoy-auth-headers-to-remove")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(
        remove.split(',').any(|h| h.trim() == "x-api-key"),
        "{remove:?}"
    );
    assert_eq!(check(true).await.unwrap().status(), 200);
    let r = check(true).await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(gw.metrics_text().contains(
        "cognito_gate_authz_checks_total{protocol=\"envoy_http\",route=\"api\",decision=\"deny\",reason=\"throttled\"} 1"
    ), "{}", gw.metrics_text());
}
