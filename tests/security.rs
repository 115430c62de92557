//! Bypass attempts against the chokepoint over real sockets: claim and proxy headers in other
//! spellings, paths an upstream resolves differently from the route table, X-Forwarded-For
//! tricks against `allow_from`, unverified Authorization headers reaching upstreams, and a key
//! re-published under a cached token's `kid`. Each case failed before its fix.

mod common;

use std::net::SocketAddr;

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
