//! Bypass attempts against the chokepoint over real sockets: claim and proxy headers in other
//! spellings, paths an upstream resolves differently from the route table, X-Forwarded-For
//! tricks against `allow_from`, unverified Authorization headers reaching upstreams, and a key
//! re-published under a cached token's `kid`. Each case failed before its fix.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The peer address the tests treat as a trusted proxy (the loopback range is all local).
const PROXY: &str = "127.0.0.2";

fn toml(jwks: &FakeJwks, up: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
trusted_proxies = ["{PROXY}/32"]
{cognito}
[[routes]]
name = "admin"
path_prefix = "/admin"
upstream = "{up}"
auth = ["jwt"]
groups = ["admins"]

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "{up}"
auth = ["jwt"]
claim_headers = {{ "x-cognito-sub" = "sub", "x-cognito-groups" = "cognito:groups" }}

[[routes]]
name = "custom"
path_prefix = "/custom"
upstream = "{up}"
auth = ["jwt"]
token_header = "x-token"
forward_token = "none"

[[routes]]
name = "pass"
path_prefix = "/pass"
upstream = "{up}"
auth = ["none"]
pass_client_authorization = true

[[routes]]
name = "inside"
path_prefix = "/inside"
upstream = "{up}"
auth = ["none"]
allow_from = ["127.0.0.0/8"]

[[routes]]
name = "public"
path_prefix = "/public"
upstream = "{up}"
auth = ["none"]

[[routes]]
name = "catchall"
path_prefix = "/"
upstream = "{up}"
auth = ["none"]
"#,
        cognito = cognito_section(&jwks.url(), "[]")
    )
}

struct Env {
    gw: cognito_gate::RunningGateway,
    up: EchoUpstream,
    k1: TestKey,
    _jwks: FakeJwks,
}

async fn env() -> Env {
    let k1 = TestKey::load("k1");
    let jwks = FakeJwks::start(&[&k1]).await;
    let up = EchoUpstream::start().await;
    let gw = start_ready(config(&toml(&jwks, &up.url()))).await;
    Env {
        gw,
        up,
        k1,
        _jwks: jwks,
    }
}

/// One raw HTTP/1.1 request from `from` (a loopback address) with `Connection: close`; returns
/// the status and the JSON body. Raw, because HTTP clients normalise paths and refuse bytes that
/// attackers send.
async fn raw(gw: SocketAddr, from: &str, head: &[u8]) -> (u16, Value) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{from}:0").parse().unwrap())
        .expect("loopback alias");
    let mut s = socket.connect(gw).await.unwrap();
    s.write_all(head).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A GET for `path` with extra header lines (each ending in CRLF).
fn get_req(path: &str, headers: &[u8]) -> Vec<u8> {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n").into_bytes();
    r.extend_from_slice(headers);
    r.extend_from_slice(b"\r\n");
    r
}

fn no_groups_token(k1: &TestKey) -> String {
    k1.sign(&with(id_claims(), json!({ "cognito:groups": null })))
}

#[tokio::test]
async fn claim_and_token_headers_in_underscore_spellings_never_reach_the_upstream() {
    let e = env().await;
    let gw = e.gw.http_addr.unwrap();
    let token = no_groups_token(&e.k1);
    let spoof = b"x_cognito_groups: admins\r\nX_Cognito_Sub: someone-else\r\nx-cognito_groups: admins\r\nx_token: forged\r\n";
    let mut headers = format!("Authorization: Bearer {token}\r\n").into_bytes();
    headers.extend_from_slice(spoof);
    let (status, seen) = raw(gw, "127.0.0.1", &get_req("/api/x", &headers)).await;
    assert_eq!(status, 200);
    let h = seen["headers"].as_object().unwrap();
    assert_eq!(h["x-cognito-sub"], "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee");
    assert!(
        h.get("x-cognito-groups").is_none(),
        "the user is in no group"
    );
    for name in [
        "x_cognito_groups",
        "x_cognito_sub",
        "x-cognito_groups",
        "x_token",
    ] {
        assert!(h.get(name).is_none(), "{name} reached the upstream: {h:?}");
    }
    // The same on a route without auth.
    let (status, seen) = raw(gw, "127.0.0.1", &get_req("/public/x", spoof)).await;
    assert_eq!(status, 200);
    let h = seen["headers"].as_object().unwrap();
    assert!(
        h.keys()
            .all(|k| !k.contains("cognito") && !k.contains("token")),
        "{h:?}"
    );
}

#[tokio::test]
async fn paths_an_upstream_resolves_elsewhere_are_refused_or_routed_as_resolved() {
    let e = env().await;
    let gw = e.gw.http_addr.unwrap();
    let bad_request = json!({"message": "Bad Request"});
    for path in [
        "/public/..;/admin/x",
        "/public/..;jsessionid=1/admin/x",
        "/public/..%5cadmin/x",
        "/public/..%5Cadmin/x",
        "/public/%2e%2e/admin/x",
        "/public/x%2fadmin",
        "/public/.%00/x",
        "/public/../admin/x",
        // Found by fuzzing (fuzz/regressions/path/): a stray '%' next to decoded escapes made a
        // new one (`%61`), which a decoding upstream serves as /admin behind the open catch-all
        // route; a segment of params alone vanishes in a servlet container.
        "/%%36%31dmin/x",
        "/%2%66admin",
        "/public/;x/admin/x",
        "/;x/admin/x",
    ] {
        let (status, body) = raw(gw, "127.0.0.1", &get_req(path, b"")).await;
        assert_eq!((status, &body), (400, &bad_request), "{path}");
    }
    // Spellings of /admin that a decoding, slash-merging or servlet upstream serves as /admin
    // are routed to /admin, which wants a token.
    for path in [
        "/%61dmin/x",
        "/%61%64%6D%69%6E/x",
        "//admin/x",
        "/admin;x=1/y",
    ] {
        let (status, body) = raw(gw, "127.0.0.1", &get_req(path, b"")).await;
        assert_eq!(status, 401, "{path}: {body}");
    }
    assert_eq!(e.up.hits(), 0, "nothing above reached the upstream");
    // The upstream gets the normalised path, params kept.
    let (status, seen) = raw(gw, "127.0.0.1", &get_req("/public//%7Ex;v=1/y?q=%2e", b"")).await;
    assert_eq!(status, 200);
    assert_eq!(seen["uri"], "/public/~x;v=1/y?q=%2e");
}

#[tokio::test]
async fn a_malformed_forwarded_for_entry_does_not_hide_the_client_behind_the_proxy() {
    let e = env().await;
    let gw = e.gw.http_addr.unwrap();
    // From the trusted proxy: the client is the right-most untrusted entry, whatever bytes
    // stand to its left. 203.0.113.7 is not in allow_from.
    let (status, body) = raw(
        gw,
        PROXY,
        &get_req(
            "/inside/x",
            b"X-Forwarded-For: 1.1.1.1\x80, 203.0.113.7\r\n",
        ),
    )
    .await;
    assert_eq!((status, body), (403, json!({"message": "Forbidden"})));
    // Several header lines are one list: the last line's last entry is the client.
    let (status, _) = raw(
        gw,
        PROXY,
        &get_req(
            "/inside/x",
            b"X-Forwarded-For: 127.0.0.9\r\nX-Forwarded-For: bad\xff, 203.0.113.7\r\n",
        ),
    )
    .await;
    assert_eq!(status, 403);
    // An admitted client: the chain reaches the upstream whole, the proxy appended.
    let (status, seen) = raw(
        gw,
        PROXY,
        &get_req("/inside/x", b"X-Forwarded-For: 1.1.1.1\x80, 127.0.0.9\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        seen["headers"]["x-forwarded-for"],
        "1.1.1.1\u{fffd}, 127.0.0.9, 127.0.0.2"
    );
    // A malformed right-most entry stops the walk there: the client is the proxy's view of it,
    // never an entry further left.
    let (status, _) = raw(
        gw,
        PROXY,
        &get_req("/inside/x", b"X-Forwarded-For: 203.0.113.7, junk\r\n"),
    )
    .await;
    assert_eq!(status, 200, "the walk stops at the proxy itself");
}

#[tokio::test]
async fn unverified_authorization_headers_are_not_forwarded() {
    let e = env().await;
    let gw = e.gw.http_addr.unwrap();
    let forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.";
    // A route without auth.
    let (status, seen) = raw(
        gw,
        "127.0.0.1",
        &get_req(
            "/public/x",
            format!("Authorization: Bearer {forged}\r\n").as_bytes(),
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert!(seen["headers"].get("authorization").is_none(), "{seen}");
    // A jwt route reading another header: the client's Authorization is not what was verified.
    let token = e.k1.sign(&id_claims());
    let (status, seen) = raw(
        gw,
        "127.0.0.1",
        &get_req(
            "/custom/x",
            format!("x-token: {token}\r\nAuthorization: Bearer {forged}\r\n").as_bytes(),
        ),
    )
    .await;
    assert_eq!(status, 200);
    let h = &seen["headers"];
    assert!(
        h.get("authorization").is_none() && h.get("x-token").is_none(),
        "{seen}"
    );
    // Opted in: an upstream that does its own auth gets the client's header as sent.
    let (status, seen) = raw(
        gw,
        "127.0.0.1",
        &get_req("/pass/x", b"Authorization: Basic dTpw\r\nx_token: t\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(seen["headers"]["authorization"], "Basic dTpw");
    assert!(seen["headers"].get("x_token").is_none());
}

#[tokio::test]
async fn proxy_headers_pass_only_from_trusted_proxies_and_path_overrides_never() {
    let e = env().await;
    let gw = e.gw.http_addr.unwrap();
    let sent = b"Forwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nX-Original-URL: /admin/x\r\nX-Rewrite-URL: /admin/x\r\nX-Forwarded-Prefix: /admin\r\nX-Forwarded-Port: 1\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\nX-Forwarded-For: 6.6.6.6\r\nx_forwarded_for: 6.6.6.6\r\nx_real_ip: 6.6.6.6\r\n";
    let (status, seen) = raw(gw, "127.0.0.1", &get_req("/public/x", sent)).await;
    assert_eq!(status, 200);
    let h = seen["headers"].as_object().unwrap();
    for name in [
        "forwarded",
        "x-real-ip",
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-prefix",
        "x-forwarded-port",
        "x_forwarded_for",
        "x_real_ip",
    ] {
        assert!(
            h.get(name).is_none(),
            "{name} passed from an untrusted peer"
        );
    }
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "gw");

    let (status, seen) = raw(gw, PROXY, &get_req("/public/x", sent)).await;
    assert_eq!(status, 200);
    let h = seen["headers"].as_object().unwrap();
    assert_eq!(h["forwarded"], "for=6.6.6.6");
    assert_eq!(h["x-real-ip"], "6.6.6.6");
    assert_eq!(h["x-forwarded-prefix"], "/admin");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-for"], "6.6.6.6, 127.0.0.2");
    for name in [
        "x-original-url",
        "x-rewrite-url",
        "x_forwarded_for",
        "x_real_ip",
    ] {
        assert!(h.get(name).is_none(), "{name} passed from a trusted proxy");
    }
}

#[tokio::test]
async fn a_key_replaced_under_the_same_kid_ends_cached_verifications() {
    let dir = TempDir::new("kid-swap");
    let (k1, k2) = (TestKey::load("k1"), TestKey::load("k2"));
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [k1.jwk]}).to_string()).unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[cognito]\nissuer = \"{ISSUER}\"\napp_clients = []\n[cognito.jwks]\nfile = \"{}\"\n\n[[routes]]\nname = \"id\"\npath_prefix = \"/id\"\nupstream = \"builtin:echo\"\nauth = [\"jwt\"]\n",
        jwks.display()
    );
    let gw = start_ready(config(&toml)).await;
    let url = format!("http://{}/id/x", gw.http_addr.unwrap());
    let c = client();
    let old = k1.sign(&id_claims());
    assert_eq!(
        get(&c, &url, Some(&old)).await.0,
        200,
        "verified and cached"
    );

    // k2's material published under k1's kid.
    let mut swapped = k2.jwk.clone();
    swapped["kid"] = k1.jwk["kid"].clone();
    std::fs::write(&jwks, json!({"keys": [swapped]}).to_string()).unwrap();
    gw.reload(config(&toml)).await.unwrap();
    let (status, _, body) = get(&c, &url, Some(&old)).await;
    assert_eq!((status, body), (401, json!({"message": "Unauthorized"})));
    let new = k2.sign_as(&k1.kid, &id_claims());
    assert_eq!(get(&c, &url, Some(&new)).await.0, 200);
}

#[test]
fn pass_client_authorization_only_where_the_gateway_leaves_authorization_alone() {
    let source = cognito_gate::config::Source {
        name: "test".into(),
        base_dir: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    };
    let parse = |route: &str| {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{}\n[[routes]]\nname = \"r\"\npath_prefix = \"/r\"\nupstream = \"builtin:echo\"\npass_client_authorization = true\n{route}",
            cognito_section("http://127.0.0.1:1/jwks", "[]")
        );
        cognito_gate::config::Config::parse(&text, &source)
            .err()
            .map(|e| e.to_string())
    };
    assert_eq!(parse("auth = [\"none\"]"), None);
    assert_eq!(
        parse("auth = [\"jwt\"]\ntoken_header = \"x-token\"\nforward_token = \"none\""),
        None
    );
    let reads = parse("auth = [\"jwt\"]").unwrap();
    assert!(
        reads.contains("routes[0].pass_client_authorization: the route reads Authorization"),
        "{reads}"
    );
    let sets = parse("auth = [\"jwt\"]\ntoken_header = \"x-token\"").unwrap();
    assert!(
        sets.contains("routes[0].pass_client_authorization: the gateway forwards"),
        "{sets}"
    );
}

// The third review (issue 20): a route's methods, ASCII case and an upstream's CORS headers.

/// One raw request; returns the status line's code, the head (lower-cased) and the body JSON.
async fn raw_head(gw: SocketAddr, req: &[u8]) -> (u16, String, Value) {
    let mut s = tokio::net::TcpStream::connect(gw).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    (
        status,
        head.to_ascii_lowercase(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn request(method: &str, path: &str, headers: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nContent-Length: 0\r\n{headers}\r\n")
        .into_bytes()
}

/// Routes `/admin` (GET only, jwt, admins) and `/` (no auth) on one upstream, plus `extra`.
async fn methods_env(
    extra: &str,
) -> (
    cognito_gate::RunningGateway,
    EchoUpstream,
    TestKey,
    FakeJwks,
) {
    let k1 = TestKey::load("k1");
    let jwks = FakeJwks::start(&[&k1]).await;
    let up = EchoUpstream::start().await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{}\n{extra}\n[[routes]]\nname = \"admin\"\npath_prefix = \"/admin\"\nmethods = [\"GET\"]\nupstream = \"{u}\"\nauth = [\"jwt\"]\ngroups = [\"admins\"]\n\n[[routes]]\nname = \"open\"\npath_prefix = \"/\"\nupstream = \"{u}\"\nauth = [\"none\"]\n",
        cognito_section(&jwks.url(), "[]"),
        u = up.url()
    );
    (start_ready(config(&toml)).await, up, k1, jwks)
}

#[tokio::test]
async fn a_method_the_longest_prefix_refuses_is_405_never_the_catch_all() {
    let (gw, up, k1, _jwks) = methods_env("").await;
    let addr = gw.http_addr.unwrap();
    for method in ["HEAD", "POST", "DELETE", "OPTIONS", "PUT", "PATCH"] {
        let (status, head, body) = raw_head(addr, &request(method, "/admin/secret", "")).await;
        assert_eq!(status, 405, "{method}: {head}");
        assert!(head.contains("\r\nallow: get"), "{method}: {head}");
        if method != "HEAD" {
            assert_eq!(body, json!({"message": "Method Not Allowed"}));
        }
    }
    // The listed method still goes through the route's checks.
    assert_eq!(
        raw_head(addr, &request("GET", "/admin/secret", "")).await.0,
        401
    );
    let admin = k1.sign(&id_claims());
    let auth = format!("Authorization: Bearer {admin}\r\n");
    assert_eq!(
        raw_head(addr, &request("GET", "/admin/secret", &auth))
            .await
            .0,
        200
    );
    assert_eq!(up.hits(), 1, "only the authorized GET reached the upstream");
    // Paths beside the prefix are the catch-all's, in every method.
    assert_eq!(raw_head(addr, &request("POST", "/adminx", "")).await.0, 200);
    assert_eq!(
        raw_head(addr, &request("DELETE", "/other", "")).await.0,
        200
    );
}

#[tokio::test]
async fn routes_sharing_a_prefix_are_alternatives_by_method_and_hosts_are_virtual_hosts() {
    let extra = "[[routes]]\nname = \"admin-write\"\npath_prefix = \"/admin\"\nmethods = [\"POST\", \"PUT\"]\nupstream = \"builtin:echo\"\nauth = [\"jwt\"]\ngroups = [\"writers\"]\n\n[[routes]]\nname = \"tenant\"\npath_prefix = \"/admin/tenant\"\nhost = \"tenant.example\"\nmethods = [\"GET\"]\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n";
    let (gw, up, k1, _jwks) = methods_env(extra).await;
    let addr = gw.http_addr.unwrap();
    let token = k1.sign(&id_claims());
    let auth = format!("Authorization: Bearer {token}\r\n");
    // POST is admin-write's (the user is not a writer: 403), DELETE neither's.
    assert_eq!(
        raw_head(addr, &request("POST", "/admin/x", &auth)).await.0,
        403
    );
    let (status, head, _) = raw_head(addr, &request("DELETE", "/admin/x", &auth)).await;
    assert_eq!(status, 405);
    assert!(head.contains("\r\nallow: post, put, get\r\n"), "{head}");
    // Another virtual host's route with a longer prefix is not this host's: /admin decides.
    assert_eq!(
        raw_head(addr, &request("PATCH", "/admin/tenant/x", ""))
            .await
            .0,
        405
    );
    // On its own host it decides, and refuses what it does not list.
    let on = |m: &str, host: &str| {
        format!("{m} /admin/tenant/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .into_bytes()
    };
    // The same host in every spelling (case, port, the root's trailing dot) is the same host.
    for host in ["tenant.example", "TENANT.example:8080", "tenant.example."] {
        assert_eq!(raw_head(addr, &on("GET", host)).await.0, 200, "{host}");
        assert_eq!(raw_head(addr, &on("POST", host)).await.0, 405, "{host}");
    }
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn a_case_variant_of_a_protected_prefix_is_refused_unless_the_route_is_case_insensitive() {
    let (gw, up, _k1, _jwks) = methods_env("").await;
    let addr = gw.http_addr.unwrap();
    for path in [
        "/ADMIN/secret",
        "/Admin",
        "/aDmIn/x",
        "/%41dmin/x",
        "/%41DMIN",
    ] {
        let (status, _, body) = raw_head(addr, &request("GET", path, "")).await;
        assert_eq!(
            (status, body),
            (404, json!({"message": "Not Found"})),
            "{path}"
        );
    }
    assert_eq!(up.hits(), 0, "no case variant reached the upstream");
    drop(gw);

    // With case_insensitive = true the variants are the route's, with its checks.
    let extra = "[[routes]]\nname = \"iis\"\npath_prefix = \"/reports\"\ncase_insensitive = true\nupstream = \"builtin:echo\"\nauth = [\"jwt\"]\n";
    let (gw, up, k1, _jwks) = methods_env(extra).await;
    let addr = gw.http_addr.unwrap();
    for path in ["/REPORTS/q1", "/Reports", "/reports/x"] {
        assert_eq!(
            raw_head(addr, &request("GET", path, "")).await.0,
            401,
            "{path}"
        );
    }
    let auth = format!("Authorization: Bearer {}\r\n", k1.sign(&id_claims()));
    let (status, _, seen) = raw_head(addr, &request("GET", "/REPORTS/q1", &auth)).await;
    assert_eq!(status, 200);
    assert_eq!(seen["path"], "/REPORTS/q1", "forwarded as sent");
    assert_eq!(up.hits(), 0);
}

#[tokio::test]
async fn an_upstreams_cors_headers_never_reach_an_origin_the_route_does_not_allow() {
    // An upstream that reflects any Origin, with credentials, and says what it allows.
    let upstream = serve_fn(Arc::new(|req: http::Request<bytes::Bytes>| {
        let origin = req
            .headers()
            .get("origin")
            .cloned()
            .unwrap_or(http::HeaderValue::from_static("*"));
        http::Response::builder()
            .header("access-control-allow-origin", origin)
            .header("access-control-allow-credentials", "true")
            .header("access-control-allow-methods", "DELETE")
            .header("access-control-expose-headers", "x-secret")
            .header("x-kept", "1")
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
            .unwrap()
    }))
    .await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[[routes]]\nname = \"app\"\npath_prefix = \"/app\"\nupstream = \"http://{upstream}\"\nauth = [\"none\"]\n[routes.cors]\nallow_origins = [\"https://app.example\"]\n\n[[routes]]\nname = \"plain\"\npath_prefix = \"/plain\"\nupstream = \"http://{upstream}\"\nauth = [\"none\"]\n"
    );
    let gw = start_ready(config(&toml)).await;
    let addr = gw.http_addr.unwrap();
    let (status, head, _) = raw_head(
        addr,
        &request("GET", "/app/x", "Origin: https://evil.example\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(!head.contains("access-control-"), "{head}");
    assert!(head.contains("x-kept: 1"), "{head}");
    let (_, head, _) = raw_head(
        addr,
        &request("GET", "/app/x", "Origin: https://app.example\r\n"),
    )
    .await;
    assert!(
        head.contains("access-control-allow-origin: https://app.example"),
        "{head}"
    );
    for gone in ["allow-credentials", "allow-methods", "expose-headers"] {
        assert!(!head.contains(&format!("access-control-{gone}")), "{head}");
    }
    // A route without cors leaves the upstream's headers to the upstream.
    let (_, head, _) = raw_head(
        addr,
        &request("GET", "/plain/x", "Origin: https://evil.example\r\n"),
    )
    .await;
    assert!(
        head.contains("access-control-allow-credentials: true"),
        "{head}"
    );
}

/// A prefix that is not a normalised path never matches a request (requests are routed on their
/// normalised path): a dead route, and a protected one at that, is a config error. Found by the
/// `routes` fuzz target (`fuzz/regressions/routes/`).
#[test]
fn a_path_prefix_that_no_normalised_path_can_match_is_a_config_error() {
    let source = cognito_gate::config::Source {
        name: "test".into(),
        base_dir: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    };
    let parse = |prefix: &str| {
        let text = format!(
            "[[routes]]\nname = \"r\"\npath_prefix = \"{prefix}\"\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n"
        );
        cognito_gate::config::Config::parse(&text, &source)
            .err()
            .map(|e| e.to_string())
    };
    for (prefix, says) in [
        ("//orders", "write \"/orders\""),
        ("/a//b/", "write \"/a/b\""),
        ("/%61dmin", "percent-escapes"),
        ("/admin;x", "';'"),
        ("/a/./b", "dot segment"),
        ("/a/%2e%2e/b", "percent-escapes"),
        ("/caf\u{e9}", "percent-encoded"),
        ("/a<b>", "percent-encoded"),
    ] {
        let err = parse(prefix).unwrap_or_else(|| panic!("{prefix} loaded"));
        assert!(
            err.contains("routes[0].path_prefix:")
                && err.contains("never matches")
                && err.contains(says),
            "{prefix}: {err}"
        );
    }
    for fine in [
        "/",
        "/orders",
        "/orders/",
        "/a-b_c~d/e.f",
        "/Admin",
        "/v1:batch",
        "/@me",
    ] {
        assert_eq!(parse(fine), None, "{fine}");
    }
    // Only slashes is the root, as trailing slashes do not count (found by the fuzz target:
    // `//` once became an empty prefix, and the check of it panicked).
    for root in ["//", "///"] {
        assert_eq!(parse(root), None, "{root}");
    }
}
