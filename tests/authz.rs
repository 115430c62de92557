//! Authorizer mode against the real proxies, each started from its config in `deploy/`: Envoy
//! with ext_authz over gRPC and over HTTP, nginx with `auth_request`, Traefik with
//! `forwardAuth`. The same scenario runs through each: a valid token reaches the upstream with
//! the claim headers and without the client's spoofed ones; an expired token gets 401 with the
//! gateway's body and challenge; a wrong group 403; Basic becomes a Bearer token with one login
//! for 100 concurrent requests; a path trick is refused; and with the authorizer down nothing
//! is allowed. The HTTP forms' own refusals and the Istio provider's settings are checked
//! without a proxy.

mod common;
#[path = "authz/proxies.rs"]
mod proxies;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// The fake private API (`common::alice_private_api`) and the logins it answered.
struct PrivateApi {
    addr: SocketAddr,
    logins: Arc<AtomicU64>,
}

/// It answers after 50 ms, so that concurrent requests are all waiting on one login.
async fn private_api() -> PrivateApi {
    let (addr, logins) = alice_private_api(Duration::from_millis(50)).await;
    PrivateApi { addr, logins }
}

struct Env {
    gw: cognito_gate::RunningGateway,
    k1: TestKey,
    up: EchoUpstream,
    api: PrivateApi,
    _jwks: FakeJwks,
}

/// The gateway as an authorizer only: every route is `upstream = "none"`.
fn gateway_toml(jwks: &FakeJwks, api: &PrivateApi, allow_from: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
shutdown_drain = "0s"
{cognito}
[private_api]
base_url = "http://{api}/dev"
timeout = "2s"
[exchange]
client_id = "{CLIENT_ID}"
user_pool_id = "ap-northeast-1_TestPool"
[authz]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
allow_from = {allow_from}

[[routes]]
name = "open"
path_prefix = "/open"
upstream = "none"
auth = ["none"]

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "none"
auth = ["jwt"]
claim_headers = {{ "x-cognito-sub" = "sub", "x-cognito-groups" = "cognito:groups" }}

[[routes]]
name = "finance"
path_prefix = "/finance"
upstream = "none"
auth = ["jwt"]
groups = ["finance"]

[[routes]]
name = "legacy"
path_prefix = "/legacy"
upstream = "none"
auth = ["basic"]
claim_headers = {{ "x-cognito-username" = "cognito:username" }}
"#,
        cognito = cognito_section(&jwks.url(), &format!("[\"{CLIENT_ID}\"]")),
        api = api.addr,
    )
}

async fn env() -> Env {
    let k1 = TestKey::load("k1");
    let jwks = FakeJwks::start(&[&k1]).await;
    let api = private_api().await;
    let gw = start_ready(config(&gateway_toml(&jwks, &api, "[\"127.0.0.0/8\"]"))).await;
    Env {
        gw,
        k1,
        up: EchoUpstream::start().await,
        api,
        _jwks: jwks,
    }
}

async fn json_of(resp: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, v)
}

/// The scenario every proxy goes through, with `proxy` in front of the echo upstream and the
/// gateway as its authorizer. `name` labels the failures.
async fn scenario(name: &str, env: &Env, proxy: &proxies::Proxy) {
    let c = client();
    let base = &proxy.base;
    let token = env.k1.sign(&id_claims());

    // A valid token: 200 at the upstream, with the claims and without the spoofed headers.
    let hits = env.up.hits();
    let resp = c
        .get(format!("{base}/api/orders/7?x=1"))
        .header("authorization", format!("Bearer {token}"))
        .header("x-cognito-sub", "spoofed")
        .header("x_cognito_sub", "spoofed-underscore")
        .header("x-cognito-groups", "admins")
        .header("x-request-id", "req-from-client-1")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}\n{}", proxy.log()));
    let (status, _, seen) = json_of(resp).await;
    assert_eq!(status, 200, "{name}: valid token: {seen}\n{}", proxy.log());
    let h = &seen["headers"];
    assert_eq!(seen["uri"], "/api/orders/7?x=1", "{name}");
    assert_eq!(
        h["authorization"],
        format!("Bearer {token}"),
        "{name}: {h}\n{}",
        proxy.log()
    );
    assert_eq!(
        h["x-cognito-sub"], "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "{name}: the verified claim, not the client's: {h}"
    );
    assert_eq!(h["x-cognito-groups"], "admins,ops", "{name}: {h}");
    assert!(h.get("x_cognito_sub").is_none(), "{name}: {h}");
    assert_eq!(env.up.hits(), hits + 1, "{name}");

    // A spoofed claim header on a route that sets none: still removed.
    let resp = c
        .get(format!("{base}/open/x"))
        .header("x-cognito-sub", "spoofed")
        .send()
        .await
        .unwrap();
    let (status, _, seen) = json_of(resp).await;
    assert_eq!(status, 200, "{name}: open route: {seen}");
    assert!(
        seen["headers"].get("x-cognito-sub").is_none(),
        "{name}: a spoofed claim header on an open route: {seen}"
    );

    // The client's own X-Original-* and X-Forwarded-Uri/-Method/-Host (which nginx and Traefik
    // pass to the checker) choose nothing: no token, no entry.
    let before = env.up.hits();
    let resp = c
        .get(format!("{base}/api/orders/7"))
        .header("x-original-uri", "/open/x")
        .header("x-original-method", "GET")
        .header("x-forwarded-uri", "/open/x")
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-host", "elsewhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        401,
        "{name}: spoofed original-request headers"
    );
    assert_eq!(env.up.hits(), before, "{name}");

    // Expired: 401 with the gateway's body and challenge; the upstream is not reached.
    let hits = env.up.hits();
    let expired = env.k1.sign(&with(id_claims(), json!({"exp": now() - 60})));
    let resp = c
        .get(format!("{base}/api/orders/7"))
        .header("authorization", format!("Bearer {expired}"))
        .send()
        .await
        .unwrap();
    let (status, headers, body) = json_of(resp).await;
    assert_eq!(status, 401, "{name}: expired: {body}");
    assert_eq!(
        body,
        json!({"message": "The incoming token has expired"}),
        "{name}"
    );
    let challenges: Vec<_> = headers.get_all("www-authenticate").iter().collect();
    assert_eq!(challenges, ["Bearer"], "{name}");

    // No group: 403 with the gateway's body.
    let resp = c
        .get(format!("{base}/finance/report"))
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let (status, _, body) = json_of(resp).await;
    assert_eq!(status, 403, "{name}: wrong group: {body}");
    assert_eq!(
        body,
        json!({"message": "User is not authorized to access this resource"}),
        "{name}"
    );

    // A path trick: never reaches the upstream.
    for trick in [
        "/open/..%2fapi/orders",
        "/open/%2e%2e/api/orders",
        "/open/../api/orders",
    ] {
        let resp = c.get(format!("{base}{trick}")).send().await.unwrap();
        let status = resp.status().as_u16();
        assert!(
            (400..500).contains(&status),
            "{name}: {trick} answered {status}"
        );
    }
    assert_eq!(
        env.up.hits(),
        hits,
        "{name}: no denial reached the upstream"
    );

    // Basic: the upstream sees the Bearer token; one login for 100 concurrent requests.
    let logins = env.api.logins.load(Ordering::SeqCst);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let c = c.clone();
        let url = format!("{base}/legacy/report");
        tasks.push(tokio::spawn(async move {
            let resp = c
                .get(url)
                .basic_auth(format!("alice{}", ""), Some("pw-alice"))
                .send()
                .await
                .unwrap();
            json_of(resp).await
        }));
    }
    for t in tasks {
        let (status, _, seen) = t.await.unwrap();
        assert_eq!(status, 200, "{name}: basic: {seen}");
        let auth = seen["headers"]["authorization"].as_str().unwrap_or("");
        assert!(auth.starts_with("Bearer ey"), "{name}: {auth}");
        assert_eq!(seen["headers"]["x-cognito-username"], "alice", "{name}");
    }
    let new_logins = env.api.logins.load(Ordering::SeqCst) - logins;
    assert!(
        new_logins <= 1,
        "{name}: {new_logins} logins for 100 requests with one credential"
    );
}

/// Each proxy with its authorizer gone: never allowed.
async fn authorizer_down(name: &str, proxy: &proxies::Proxy, expected: u16, up: &EchoUpstream) {
    let hits = up.hits();
    let resp = client()
        .get(format!("{}/open/x", proxy.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        expected,
        "{name}: authorizer down\n{}",
        proxy.log()
    );
    assert_eq!(
        up.hits(),
        hits,
        "{name}: nothing allowed with the authorizer down"
    );
}

#[tokio::test]
async fn envoy_ext_authz_grpc() {
    let env = env().await;
    let authz = env.gw.authz_grpc_addr.unwrap();
    let proxy = proxies::envoy("ext_authz_grpc.yaml", authz, env.up.addr).await;
    scenario("envoy grpc", &env, &proxy).await;
    let metrics = env.gw.metrics_text();
    for line in [
        "cognito_gate_authz_checks_total{protocol=\"grpc\",route=\"api\",decision=\"allow\",reason=\"jwt\"} 1",
        "cognito_gate_authz_checks_total{protocol=\"grpc\",route=\"api\",decision=\"deny\",reason=\"expired\"} 1",
        "cognito_gate_authz_checks_total{protocol=\"grpc\",route=\"finance\",decision=\"deny\",reason=\"group\"} 1",
        "cognito_gate_authz_check_duration_seconds_count{protocol=\"grpc\"}",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    let down = proxies::envoy("ext_authz_grpc.yaml", closed_port().await, env.up.addr).await;
    authorizer_down("envoy grpc", &down, 503, &env.up).await;
}

#[tokio::test]
async fn envoy_ext_authz_http() {
    let env = env().await;
    let authz = env.gw.authz_http_addr.unwrap();
    let proxy = proxies::envoy("ext_authz_http.yaml", authz, env.up.addr).await;
    scenario("envoy http", &env, &proxy).await;
    let metrics = env.gw.metrics_text();
    let line = "cognito_gate_authz_checks_total{protocol=\"envoy_http\",route=\"api\",decision=\"allow\",reason=\"jwt\"} 1";
    assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    let down = proxies::envoy("ext_authz_http.yaml", closed_port().await, env.up.addr).await;
    authorizer_down("envoy http", &down, 503, &env.up).await;
}

#[tokio::test]
async fn nginx_auth_request() {
    let env = env().await;
    let authz = env.gw.authz_http_addr.unwrap();
    let proxy = proxies::nginx(authz, env.up.addr).await;
    scenario("nginx", &env, &proxy).await;
    // nginx turns every status but 401 and 403 into a 500; the config's error_page lines give
    // the client the gateway's own status and body.
    let resp = client()
        .get(format!("{}/nowhere", proxy.base))
        .send()
        .await
        .unwrap();
    let (status, _, body) = json_of(resp).await;
    assert_eq!((status, body), (404, json!({"message": "Not Found"})));
    let metrics = env.gw.metrics_text();
    let line = "cognito_gate_authz_checks_total{protocol=\"nginx\",route=\"api\",decision=\"allow\",reason=\"jwt\"} 1";
    assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    let down = proxies::nginx(closed_port().await, env.up.addr).await;
    authorizer_down("nginx", &down, 503, &env.up).await;
}

#[tokio::test]
async fn traefik_forward_auth() {
    let env = env().await;
    let authz = env.gw.authz_http_addr.unwrap();
    let proxy = proxies::traefik(authz, env.up.addr, "/open/ready").await;
    scenario("traefik", &env, &proxy).await;
    let metrics = env.gw.metrics_text();
    let line = "cognito_gate_authz_checks_total{protocol=\"traefik\",route=\"api\",decision=\"allow\",reason=\"jwt\"} 1";
    assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    let down = proxies::traefik(closed_port().await, env.up.addr, "/open/ready").await;
    authorizer_down("traefik", &down, 500, &env.up).await;
}

/// The HTTP forms' own refusals, with no proxy: a caller outside allow_from, an nginx check
/// without the original method, an Envoy check outside the path prefix. And proxy mode
/// answers 404 on a route only the authorizer serves.
#[tokio::test]
async fn http_forms_refuse_what_they_cannot_decide_on() {
    let env = env().await;
    let authz = format!("http://{}", env.gw.authz_http_addr.unwrap());
    let c = client();
    let token = env.k1.sign(&id_claims());

    let resp = c
        .get(format!("{authz}/nginx"))
        .header("x-original-uri", "/api/orders")
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let (status, _, body) = json_of(resp).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("X-Original-Method"));

    let resp = c.get(format!("{authz}/api/orders")).send().await.unwrap();
    assert_eq!(resp.status(), 400, "outside [authz] path_prefix");
    // The form is where the check asks, never a header: a client's X-Original-URI passed along
    // in an Envoy (or Traefik) check does not choose the path decided on.
    let resp = c
        .get(format!("{authz}/envoy/api/orders"))
        .header("x-original-uri", "/open/x")
        .header("x-original-method", "GET")
        .header("x-forwarded-uri", "/open/x")
        .header("x-forwarded-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Allowed: the headers to set upstream on the 200, and what to remove.
    let resp = c
        .get(format!("{authz}/envoy/api/orders"))
        .header("authorization", format!("Bearer {token}"))
        .header("x-request-id", "req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers();
    assert_eq!(h["authorization"], format!("Bearer {token}").as_str());
    assert_eq!(h["x-cognito-sub"], "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee");
    assert_eq!(h["x-request-id"], "req-42");
    let removed = h["x-envoy-auth-headers-to-remove"].to_str().unwrap();
    assert!(removed.contains("x-cognito-username"), "{removed}");
    assert!(!removed.contains("authorization"), "{removed}");

    // A method the route does not allow, a body too large: the same answers as proxy mode.
    let resp = c
        .get(format!("{authz}/traefik"))
        .header("x-forwarded-uri", "/nowhere")
        .header("x-forwarded-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // Proxy mode has nowhere to send a route whose upstream is "none".
    let resp = c
        .get(format!("http://{}/open/x", env.gw.http_addr.unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);

    // A caller outside [authz] allow_from.
    let k1 = TestKey::load("k1");
    let jwks = FakeJwks::start(&[&k1]).await;
    let api = private_api().await;
    let gw = start_ready(config(&gateway_toml(&jwks, &api, "[\"10.9.9.0/24\"]"))).await;
    let resp = c
        .get(format!(
            "http://{}/envoy/open/x",
            gw.authz_http_addr.unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(env.up.hits(), 0);
}

/// `upstream = "none"` needs `[authz]`; `[authz]` needs a listener.
#[test]
fn authz_config_is_checked() {
    let source = cognito_gate::config::Source {
        name: "test".into(),
        base_dir: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    };
    let none_route =
        "[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\nupstream = \"none\"\nauth = [\"none\"]\n";
    let err = cognito_gate::config::Config::parse(none_route, &source)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("routes[0].upstream") && err.contains("[authz]"),
        "{err}"
    );
    let err = cognito_gate::config::Config::parse(
        &format!("[authz]\nallow_from = []\n{none_route}"),
        &source,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("grpc_listen"), "{err}");
    assert!(err.contains("authz.allow_from"), "{err}");
}

/// Istio's CUSTOM provider is Envoy's gRPC ext_authz: its settings match the gRPC listener in
/// the Kubernetes deployment and the Envoy config the gRPC test runs, and the policy names it.
#[test]
fn istio_provider_is_the_grpc_authorizer() {
    let read = |p: &str| {
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(p)).unwrap()
    };
    let provider = read("deploy/istio/extension-provider.yaml");
    let policy = read("deploy/istio/authorization-policy.yaml");
    let service = read("deploy/kubernetes/service-authz.yaml");
    let envoy = read("deploy/envoy/ext_authz_grpc.yaml");
    assert!(provider.contains("envoyExtAuthzGrpc:"));
    assert!(provider.contains("name: cognito-gate"));
    assert!(policy.contains("action: CUSTOM") && policy.contains("name: cognito-gate"));
    assert!(provider.contains("service: cognito-gate-authz.cognito-gate.svc.cluster.local"));
    assert!(service.contains("name: cognito-gate-authz") && service.contains("port: 9191"));
    assert!(provider.contains("port: 9191") && envoy.contains("port_value: 9191"));
    // Fail closed, with the same status as the Envoy config.
    assert!(provider.contains("failOpen: false") && envoy.contains("failure_mode_allow: false"));
    assert!(provider.contains("statusOnError: \"503\"") && envoy.contains("ServiceUnavailable"));
}

/// The gRPC service's own refusals, with a gRPC client and no Envoy: a check that describes no
/// request, and a caller outside allow_from.
#[tokio::test]
async fn grpc_refuses_what_it_cannot_decide_on() {
    use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
    use envoy_types::pb::envoy::service::auth::v3::CheckRequest;

    let env = env().await;
    let url = format!("http://{}", env.gw.authz_grpc_addr.unwrap());
    let mut client = AuthorizationClient::connect(url).await.unwrap();
    let answer = client
        .check(CheckRequest::default())
        .await
        .unwrap()
        .into_inner();
    let status = answer.status.unwrap();
    assert_eq!(status.code, 3, "INVALID_ARGUMENT: {}", status.message);
    assert!(answer.http_response.is_none());

    let k1 = TestKey::load("k1");
    let jwks = FakeJwks::start(&[&k1]).await;
    let api = private_api().await;
    let gw = start_ready(config(&gateway_toml(&jwks, &api, "[\"10.9.9.0/24\"]"))).await;
    let url = format!("http://{}", gw.authz_grpc_addr.unwrap());
    let mut client = AuthorizationClient::connect(url).await.unwrap();
    let err = client.check(CheckRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
}

/// A reload changes what the next check decides; `check-config`'s summary shows the listeners.
#[tokio::test]
async fn reload_applies_to_the_next_check_and_the_summary_shows_authz() {
    let env = env().await;
    let authz = format!(
        "http://{}/envoy/finance/report",
        env.gw.authz_http_addr.unwrap()
    );
    let token = env.k1.sign(&id_claims());
    let ask = || {
        client()
            .get(&authz)
            .header("authorization", format!("Bearer {token}"))
            .send()
    };
    assert_eq!(ask().await.unwrap().status(), 403, "not in group finance");

    let toml = gateway_toml(&env._jwks, &env.api, "[\"127.0.0.0/8\"]").replace(
        "groups = [\"finance\"]",
        "groups = [\"finance\", \"admins\"]",
    );
    let cfg = config(&toml);
    let summary = cfg.summary();
    assert!(
        summary.contains("authz grpc    127.0.0.1:0 (Envoy ext_authz, h2c)"),
        "{summary}"
    );
    assert!(
        summary.contains("/nginx") && summary.contains("/traefik") && summary.contains("/envoy")
    );
    assert!(summary.contains("authz from    127.0.0.0/8"), "{summary}");
    let reloaded = env.gw.reload(cfg).await.unwrap();
    assert!(
        reloaded.needs_restart.is_empty(),
        "{:?}",
        reloaded.needs_restart
    );
    assert_eq!(ask().await.unwrap().status(), 200, "admins may now");
}
