//! Forwarding, TLS and lifecycle over real sockets: header hygiene and claim injection, upstream
//! failures, body limits, TLS with ALPN and client certificates, drain with a request in flight.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn jwt_env_toml(jwks: &FakeJwks, upstream: &str, extra_server: &str, routes: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_drain = \"0s\"\n{extra_server}\n{}\n{routes}\n[[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"{upstream}/base\"\nauth = [\"jwt\"]\nstrip_prefix = true\nupstream_headers = {{ \"x-apigw-api-id\" = \"abc123\" }}\nclaim_headers = {{ \"x-cognito-sub\" = \"sub\", \"x-cognito-groups\" = \"cognito:groups\" }}\n\n[[routes]]\nname = \"open\"\npath_prefix = \"/open\"\nupstream = \"{upstream}\"\nauth = [\"none\"]\n",
        cognito_section(&jwks.url(), "[]")
    )
}

async fn body_json(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let v = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, v)
}

#[tokio::test]
async fn forwards_with_clean_headers_claims_and_the_verified_token() {
    let k1 = TestKey::load("k1");
    let jwks = FakeJwks::start(&[&k1]).await;
    let up = EchoUpstream::start().await;
    let gw = start_ready(config(&jwt_env_toml(&jwks, &up.url(), "", ""))).await;
    let base = format!("http://{}", gw.http_addr.unwrap());
    let token = k1.sign(&id_claims());
    let c = client();
    let resp = c
        .get(format!("{base}/api/orders/7?x=1&y=2"))
        .header("authorization", format!("Bearer {token}"))
        .header("x-cognito-sub", "spoofed")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-request-id", "abc-123")
        .header("connection", "x-secret")
        .header("x-secret", "hop")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    let (status, seen) = body_json(resp).await;
    assert_eq!(status, 200);
    let h = &seen["headers"];
    assert_eq!(
        seen["uri"], "/base/orders/7?x=1&y=2",
        "strip_prefix and base path"
    );
    assert_eq!(h["authorization"], format!("Bearer {token}"));
    assert_eq!(h["x-cognito-sub"], "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee");
    assert_eq!(h["x-cognito-groups"], "admins,ops", "arrays comma-joined");
    assert_eq!(
        h["x-forwarded-for"], "127.0.0.1",
        "an untrusted peer's XFF is replaced"
    );
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-request-id"], "abc-123");
    assert_eq!(h["x-apigw-api-id"], "abc123");
    assert_eq!(
        h["host"],
        up.addr.to_string(),
        "Host is the upstream's authority"
    );
    assert!(h.get("x-secret").is_none() && h.get("proxy-authorization").is_none());
    assert!(h["x-forwarded-host"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));

    // Claim headers are stripped on every route, including unauthenticated ones.
    let resp = c
        .get(format!("{base}/open/x"))
        .header("x-cognito-sub", "spoofed")
        .header("x-request-id", "has spaces in it")
        .send()
        .await
        .unwrap();
    let rid = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(rid.len(), 32, "an insane request id is replaced");
    let (_, seen) = body_json(resp).await;
    assert!(seen["headers"].get("x-cognito-sub").is_none());
    assert_eq!(seen["headers"]["x-request-id"], rid);
}

#[tokio::test]
async fn trusted_proxies_and_allow_from() {
    let up = EchoUpstream::start().await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.0/8\"]\n\n[[routes]]\nname = \"inside\"\npath_prefix = \"/inside\"\nupstream = \"{u}\"\nauth = [\"none\"]\nallow_from = [\"10.1.0.0/16\"]\n",
        u = up.url()
    );
    let gw = start_ready(config(&toml)).await;
    let base = format!("http://{}", gw.http_addr.unwrap());
    let c = client();
    let resp = c
        .get(format!("{base}/inside/x"))
        .header("x-forwarded-for", "10.1.2.3, 127.0.0.5")
        .send()
        .await
        .unwrap();
    let (status, seen) = body_json(resp).await;
    assert_eq!(status, 200);
    assert_eq!(
        seen["headers"]["x-forwarded-for"],
        "10.1.2.3, 127.0.0.5, 127.0.0.1"
    );
    let resp = c
        .get(format!("{base}/inside/x"))
        .header("x-forwarded-for", "192.0.2.1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        body_json(resp).await,
        (403, json!({"message": "Forbidden"}))
    );
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn upstream_failures_map_to_502_and_504() {
    let refused = closed_port().await;
    let (garbage, _) = raw_upstream(b"garbage\r\n\r\n").await;
    let (silent, _) = raw_upstream(b"").await;
    let up = EchoUpstream::start().await;
    let route = |name: &str, addr: String, timeout: &str| {
        format!("[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\nupstream = \"{addr}\"\nauth = [\"none\"]\nstrip_prefix = true\ntimeout = \"{timeout}\"\n")
    };
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 1000\n{}{}{}{}",
        route("refused", format!("http://{refused}"), "5s"),
        route("garbage", format!("http://{garbage}"), "5s"),
        route("silent", format!("http://{silent}"), "5s"),
        route("slow", up.url(), "200ms"),
    );
    let gw = start_ready(config(&toml)).await;
    let base = format!("http://{}", gw.http_addr.unwrap());
    let c = client();
    let bad_gateway = json!({"message": "Bad Gateway"});
    for path in ["/refused/x", "/garbage/x", "/silent/x"] {
        let (s, b) = body_json(c.get(format!("{base}{path}")).send().await.unwrap()).await;
        assert_eq!((s, &b), (502, &bad_gateway), "{path}");
    }
    let started = std::time::Instant::now();
    let (s, b) = body_json(
        c.get(format!("{base}/slow/slow/3000"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, b),
        (504, json!({"message": "Endpoint request timed out"}))
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // Upstream statuses pass through untouched.
    let resp = c
        .get(format!("{base}/slow/status/418"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 418);
    // Bodies: within the limit they arrive intact; above it 413 and the upstream is not hit.
    let resp = c
        .post(format!("{base}/slow/x"))
        .body("a".repeat(900))
        .send()
        .await
        .unwrap();
    assert_eq!(body_json(resp).await.1["body_bytes"], 900);
    let hits = up.hits();
    let resp = c
        .post(format!("{base}/slow/x"))
        .body("a".repeat(2000))
        .send()
        .await
        .unwrap();
    assert_eq!(
        body_json(resp).await,
        (413, json!({"message": "Request Entity Too Large"}))
    );
    assert_eq!(up.hits(), hits);
    // Metrics saw the upstream errors by kind.
    let text = gw.metrics_text();
    assert!(
        text.contains("cognito_gate_upstream_errors_total{route=\"refused\",kind=\"connect\"} 1"),
        "{text}"
    );
    assert!(text.contains("cognito_gate_upstream_errors_total{route=\"slow\",kind=\"timeout\"} 1"));
}

#[tokio::test]
async fn dot_segments_and_slowloris_are_cut_off() {
    let toml = "[server]\nlisten = \"127.0.0.1:0\"\nheader_read_timeout = \"300ms\"\n\n[[routes]]\nname = \"open\"\npath_prefix = \"/open\"\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n";
    let gw = start_ready(config(toml)).await;
    let addr = gw.http_addr.unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /open/../admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(out.contains(r#"{"message":"Bad Request"}"#));

    // A client that sends half a request line is disconnected after header_read_timeout.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /open/x HT").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection not closed");
    assert!(!String::from_utf8_lossy(&buf).contains(" 200 "));

    // The same on a keep-alive connection that has already served requests back to back.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    for i in 0..3 {
        s.write_all(format!("GET /open/{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        // Read exactly one response: the head, then Content-Length bytes.
        let mut got = Vec::new();
        let head_end = loop {
            let mut chunk = [0u8; 1024];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early");
            got.extend_from_slice(&chunk[..n]);
            if let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
        };
        let head = String::from_utf8_lossy(&got[..head_end]).to_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut body = vec![0u8; len - (got.len() - head_end)];
        s.read_exact(&mut body).await.unwrap();
    }
    let started = std::time::Instant::now();
    s.write_all(b"GET /open/x HT").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "reused connection not closed");
    assert!(!String::from_utf8_lossy(&buf).contains(" 200 "));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Both counted, as the gateway's own closes.
    let metrics = gw.metrics_text();
    assert!(
        metrics.contains("cognito_gate_connections_closed_total{reason=\"header_read_timeout\"} 2"),
        "{metrics}"
    );

    // An idle keep-alive connection outlives header_read_timeout.
    let c = client();
    assert_eq!(
        c.get(format!("http://{addr}/open/1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        c.get(format!("http://{addr}/open/2"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

struct Pki {
    dir: TempDir,
    ca_pem: String,
    client_pem: String,
}

fn pki(name: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = TempDir::new(&format!("proxy-tls-{name}"));
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&server_key, &ca, &ca_key)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["client".to_string()])
        .unwrap()
        .signed_by(&client_key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    std::fs::write(dir.join("server.crt"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    Pki {
        dir,
        ca_pem: ca.pem(),
        client_pem: format!("{}{}", client.pem(), client_key.serialize_pem()),
    }
}

#[tokio::test]
async fn tls_with_alpn_and_client_certificates() {
    let p = pki("mtls");
    let tls = |client_ca: bool| {
        format!(
            "[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{d}/server.crt\"\nkey = \"{d}/server.key\"\n{ca}\n\n[[routes]]\nname = \"open\"\npath_prefix = \"/open\"\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n",
            d = p.dir.display(),
            ca = if client_ca { format!("client_ca = \"{}/ca.crt\"", p.dir.display()) } else { String::new() }
        )
    };
    let root = reqwest::Certificate::from_pem(p.ca_pem.as_bytes()).unwrap();

    // Server TLS: HTTP/1.1 and h2 by ALPN; X-Forwarded-Proto is https.
    let gw = start_ready(config(&tls(false))).await;
    assert!(
        gw.http_addr.is_none(),
        "no plain listener when only TLS is configured"
    );
    let url = format!("https://localhost:{}/open/x", gw.https_addr.unwrap().port());
    for h2 in [false, true] {
        let mut b = reqwest::Client::builder()
            .add_root_certificate(root.clone())
            .resolve("localhost", gw.https_addr.unwrap());
        b = if h2 {
            b.http2_prior_knowledge()
        } else {
            b.http1_only()
        };
        let resp = b.build().unwrap().get(&url).send().await.unwrap();
        assert_eq!(
            resp.version(),
            if h2 {
                reqwest::Version::HTTP_2
            } else {
                reqwest::Version::HTTP_11
            }
        );
        let (status, seen) = body_json(resp).await;
        assert_eq!(status, 200);
        assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    }

    // mTLS: no certificate -> handshake refused; a CA-signed one -> 200.
    let gw = start_ready(config(&tls(true))).await;
    let url = format!("https://localhost:{}/open/x", gw.https_addr.unwrap().port());
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(root.clone())
        .resolve("localhost", gw.https_addr.unwrap())
        .build()
        .unwrap();
    assert!(anonymous.get(&url).send().await.is_err());
    let with_cert = reqwest::Client::builder()
        .add_root_certificate(root)
        .identity(reqwest::Identity::from_pem(p.client_pem.as_bytes()).unwrap())
        .resolve("localhost", gw.https_addr.unwrap())
        .build()
        .unwrap();
    assert_eq!(with_cert.get(&url).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn drain_fails_readiness_then_finishes_in_flight_requests() {
    let up = EchoUpstream::start().await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_drain = \"500ms\"\nshutdown_grace = \"10s\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"up\"\npath_prefix = \"/\"\nupstream = \"{}\"\nauth = [\"none\"]\n",
        up.url()
    );
    let gw = start_ready(config(&toml)).await;
    let base = format!("http://{}", gw.http_addr.unwrap());
    let admin = format!("http://{}", gw.admin_addr.unwrap());
    let c = client();
    let slow = {
        let c = c.clone();
        let url = format!("{base}/slow/1500");
        tokio::spawn(async move { c.get(url).send().await.map(|r| r.status().as_u16()) })
    };
    // Wait until the slow request is in flight at the upstream.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while up.hits() == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let gateway = gw.gateway().clone();
    let shutdown = tokio::spawn(gw.shutdown());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while gateway.readiness.check().is_ok() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Draining: readiness fails, everything else is still served.
    assert_eq!(get(&c, &format!("{base}/readyz"), None).await.0, 503);
    assert_eq!(get(&c, &format!("{admin}/readyz"), None).await.0, 503);
    assert_eq!(get(&c, &format!("{base}/healthz"), None).await.0, 200);
    assert_eq!(get(&c, &format!("{base}/status/200"), None).await.0, 200);
    assert_eq!(
        slow.await.unwrap().unwrap(),
        200,
        "the in-flight request completes"
    );
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(gateway_addr(&base))
            .await
            .is_err(),
        "listener closed"
    );
}

fn gateway_addr(base: &str) -> std::net::SocketAddr {
    base.trim_start_matches("http://").parse().unwrap()
}

#[tokio::test]
async fn many_concurrent_requests_through_one_pooled_client() {
    let up = EchoUpstream::start().await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"up\"\npath_prefix = \"/\"\nupstream = \"{}\"\nauth = [\"none\"]\n",
        up.url()
    );
    let gw = start_ready(config(&toml)).await;
    let url = Arc::new(format!("http://{}/x", gw.http_addr.unwrap()));
    let c = client();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { c.get(url.as_str()).send().await.unwrap().status().as_u16() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(up.hits(), 200);
}

#[tokio::test]
async fn reload_lets_in_flight_requests_finish_on_their_configuration() {
    let up = EchoUpstream::start().await;
    let with_route = |present: bool| {
        let mut t = "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_drain = \"0s\"\n\n[[routes]]\nname = \"echo\"\npath_prefix = \"/echo\"\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n".to_string();
        if present {
            t.push_str(&format!(
                "[[routes]]\nname = \"up\"\npath_prefix = \"/up\"\nupstream = \"{}\"\nauth = [\"none\"]\nstrip_prefix = true\n",
                up.url()
            ));
        }
        config(&t)
    };
    let gw = start_ready(with_route(true)).await;
    let base = format!("http://{}", gw.http_addr.unwrap());
    let c = client();
    let slow = {
        let (c, url) = (c.clone(), format!("{base}/up/slow/800"));
        tokio::spawn(async move { c.get(url).send().await.map(|r| r.status().as_u16()) })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while up.hits() == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let summary = gw.reload(with_route(false)).await.unwrap();
    assert!(
        !summary.keys_rebuilt && summary.needs_restart.is_empty(),
        "{summary:?}"
    );
    assert_eq!(
        get(&c, &format!("{base}/up/x"), None).await.0,
        404,
        "new requests: new config"
    );
    assert_eq!(
        slow.await.unwrap().unwrap(),
        200,
        "the in-flight request finished"
    );
    let summary = gw.reload(with_route(true)).await.unwrap();
    assert!(summary.needs_restart.is_empty());
    assert_eq!(get(&c, &format!("{base}/up/status/201"), None).await.0, 201);
}

#[tokio::test]
async fn reload_rereads_the_jwks_file_and_tls_certificates() {
    let dir = TempDir::new("proxy-reload");
    let (k1, k2) = (TestKey::load("k1"), TestKey::load("k2"));
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [k1.jwk]}).to_string()).unwrap();
    let first = pki("reload-a");
    for f in ["server.crt", "server.key"] {
        std::fs::copy(first.dir.join(f), dir.join(f)).unwrap();
    }
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{d}/server.crt\"\nkey = \"{d}/server.key\"\n[cognito]\nissuer = \"{ISSUER}\"\napp_clients = []\n[cognito.jwks]\nfile = \"{d}/jwks.json\"\n\n[[routes]]\nname = \"id\"\npath_prefix = \"/id\"\nupstream = \"builtin:echo\"\nauth = [\"jwt\"]\n",
        d = dir.display()
    );
    let gw = start_ready(config(&toml)).await;
    let base = format!("http://{}", gw.http_addr.unwrap());
    let c = client();
    let token = k2.sign(&id_claims());
    assert_eq!(get(&c, &format!("{base}/id/x"), Some(&token)).await.0, 401);

    // New keys in the file and a new certificate from another CA, then a reload.
    std::fs::write(&jwks, json!({"keys": [k2.jwk]}).to_string()).unwrap();
    let second = pki("reload-b");
    for f in ["server.crt", "server.key"] {
        std::fs::copy(second.dir.join(f), dir.join(f)).unwrap();
    }
    let summary = gw.reload(config(&toml)).await.unwrap();
    assert!(summary.tls_reloaded && !summary.keys_rebuilt, "{summary:?}");
    assert_eq!(get(&c, &format!("{base}/id/x"), Some(&token)).await.0, 200);
    assert_eq!(
        get(&c, &format!("{base}/id/x"), Some(&k1.sign(&id_claims())))
            .await
            .0,
        401
    );
    let https = gw.https_addr.unwrap();
    let trusting = |ca: &str| {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
            .resolve("localhost", https)
            .build()
            .unwrap()
    };
    let url = format!("https://localhost:{}/healthz", https.port());
    assert!(
        trusting(&first.ca_pem).get(&url).send().await.is_err(),
        "old certificate gone"
    );
    assert_eq!(
        trusting(&second.ca_pem)
            .get(&url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_under_keep_alive_load_fails_no_request() {
    const LAST_MOMENTS: Duration = Duration::from_millis(250);
    let toml = "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_drain = \"1s\"\nshutdown_grace = \"5s\"\n\n[[routes]]\nname = \"echo\"\npath_prefix = \"/\"\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n";
    let gw = start_ready(config(toml)).await;
    let url = Arc::new(format!("http://{}/load", gw.http_addr.unwrap()));
    let ready_url = Arc::new(format!("http://{}/readyz", gw.http_addr.unwrap()));
    let started = tokio::time::Instant::now();
    let stop_at = Arc::new(std::sync::Mutex::new(None::<tokio::time::Instant>));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (url, stop_at) = (url.clone(), stop_at.clone());
        workers.push(tokio::spawn(async move {
            let c = client();
            let (mut ok, mut failed_in_window) = (0u64, 0u64);
            loop {
                let sent = tokio::time::Instant::now();
                let result = c.get(url.as_str()).send().await;
                let drain_end = *stop_at.lock().unwrap();
                match result {
                    Ok(r) if r.status() == 200 => ok += 1,
                    // An answer that is not 200 is a failure whenever it comes.
                    Ok(r) if drain_end.is_none_or(|end| sent < end) => {
                        panic!("{} during the drain window", r.status())
                    }
                    Ok(_) => break,
                    // While draining each response closes its connection, so every request
                    // opens a new one; one started in the window's last moments may find the
                    // listener closed (refused, nothing sent: safe to retry). Earlier, none may.
                    Err(_) => match drain_end {
                        Some(end) if sent + LAST_MOMENTS >= end => break,
                        _ => failed_in_window += 1,
                    },
                }
                if drain_end.is_some_and(|end| sent >= end + Duration::from_secs(3)) {
                    break;
                }
            }
            (ok, failed_in_window)
        }));
    }
    // Let the load run, then drain.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gateway = gw.gateway();
    let shutdown_started = tokio::time::Instant::now();
    *stop_at.lock().unwrap() = Some(shutdown_started + Duration::from_millis(1000));
    let shutdown = tokio::spawn(gw.shutdown());
    let c = client();
    // Readiness turns 503 at once while the load is still served.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while get(&c, ready_url.as_str(), None).await.0 != 503 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness did not fail at once"
        );
    }
    assert!(gateway.readiness.is_draining());
    // Responses now close their HTTP/1 connections, so that idle keep-alive connections (a load
    // balancer's) are gone before the listeners close.
    let (status, headers, _) = get(&c, url.as_str(), None).await;
    assert_eq!(
        (status, headers["connection"].as_bytes()),
        (200, &b"close"[..])
    );
    tokio::time::timeout(Duration::from_secs(8), shutdown)
        .await
        .unwrap()
        .unwrap();
    let (mut ok, mut failed) = (0, 0);
    for w in workers {
        let (o, f) = w.await.unwrap();
        ok += o;
        failed += f;
    }
    eprintln!(
        "drain under load: {ok} requests answered, {failed} failed, in {:?}",
        started.elapsed()
    );
    assert!(ok > 100, "the load ran ({ok} requests)");
    assert_eq!(
        failed, 0,
        "requests sent before the end of shutdown_drain failed"
    );
}

/// Draining tells HTTP/2 clients at once (GOAWAY) to open their next streams elsewhere, while
/// new connections are still served until `shutdown_drain` ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_sends_http2_clients_goaway_at_once() {
    let toml = "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_drain = \"30s\"\nshutdown_grace = \"1s\"\n\n[[routes]]\nname = \"echo\"\npath_prefix = \"/\"\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n";
    let gw = start_ready(config(toml)).await;
    let addr = gw.http_addr.unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut send = send.ready().await.unwrap();
    let req = |path: &str| {
        http::Request::get(format!("http://{addr}{path}"))
            .body(())
            .unwrap()
    };
    let (resp, _) = send.send_request(req("/before"), true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);

    let shutdown = tokio::spawn(gw.shutdown());
    // The connection ends long before the 30 s drain does: GOAWAY, then the server closes it.
    let ended = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(ended.is_ok(), "no GOAWAY while draining");
    // A stream opened after the GOAWAY is refused, not served on this connection.
    let refused = match send.ready().await {
        Ok(mut s) => match s.send_request(req("/after"), true) {
            Ok((resp, _)) => resp.await.is_err(),
            Err(_) => true,
        },
        Err(_) => true,
    };
    assert!(
        refused,
        "a stream was served on a connection told to go away"
    );
    // A new connection is still served while the drain lasts (HTTP/1, told to close).
    let (status, headers, _) = get(&client(), &format!("http://{addr}/during"), None).await;
    assert_eq!(
        (status, headers["connection"].as_bytes()),
        (200, &b"close"[..])
    );
    shutdown.abort();
}

#[tokio::test]
async fn connection_limit_and_header_size_limit() {
    let toml = "[server]\nlisten = \"127.0.0.1:0\"\nmax_connections = 2\nmax_header_bytes = 8192\n\n[[routes]]\nname = \"echo\"\npath_prefix = \"/\"\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n";
    let gw = start_ready(config(toml)).await;
    let addr = gw.http_addr.unwrap();
    // Two idle keep-alive connections use up the limit.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    // A third waits (it is not accepted) rather than being served or crashing anything.
    let c = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    assert!(
        c.get(format!("http://{addr}/x")).send().await.is_err(),
        "served beyond the limit"
    );
    drop(held.pop());
    let c = client();
    assert_eq!(
        c.get(format!("http://{addr}/x"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A header block over max_header_bytes: 431, never a 500.
    drop(held);
    let big = "a".repeat(20_000);
    let resp = c
        .get(format!("http://{addr}/x"))
        .header("x-big", big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
}

#[tokio::test]
async fn chunked_bodies_are_capped_while_streaming() {
    let up = EchoUpstream::start().await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_body_bytes = 1000\n\n[[routes]]\nname = \"echo\"\npath_prefix = \"/echo\"\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n[[routes]]\nname = \"up\"\npath_prefix = \"/up\"\nupstream = \"{}\"\nauth = [\"none\"]\n",
        up.url()
    );
    let gw = start_ready(config(&toml)).await;
    let base = format!("http://{}", gw.http_addr.unwrap());
    let c = client();
    let streamed = |sizes: &[usize]| {
        let frames: Vec<Result<hyper::body::Frame<bytes::Bytes>, std::io::Error>> = sizes
            .iter()
            .map(|n| Ok(hyper::body::Frame::data(bytes::Bytes::from(vec![b'a'; *n]))))
            .collect();
        reqwest::Body::wrap(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
    };
    let chunks = || streamed(&[100; 20]);
    // No Content-Length: the limit is enforced on the stream.
    let resp = c
        .post(format!("{base}/echo/x"))
        .body(chunks())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let result = c.post(format!("{base}/up/x")).body(chunks()).send().await;
    // Either an error status or the connection cut: an oversized body is never forwarded whole.
    if let Ok(resp) = result {
        assert_ne!(resp.status(), 200, "an oversized body was forwarded");
    }
    let resp = c
        .post(format!("{base}/echo/x"))
        .body(streamed(&[300, 300]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["body_bytes"], 600);
}

#[tokio::test]
async fn metrics_count_each_request_once_by_route_status_and_decision() {
    let toml = "[server]\nlisten = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"open\"\npath_prefix = \"/open\"\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n";
    let gw = start_ready(config(toml)).await;
    let base = format!("http://{}", gw.http_addr.unwrap());
    // A configured route's series are there from the start, at zero.
    let text = gw.metrics_text();
    assert!(
        text.contains("cognito_gate_requests_total{route=\"open\",status=\"200\"} 0"),
        "{text}"
    );
    let c = client();
    for _ in 0..3 {
        let resp = c.get(format!("{base}/open/x")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let resp = c.get(format!("{base}/elsewhere")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let text = gw.metrics_text();
    for line in [
        "cognito_gate_requests_total{route=\"open\",status=\"200\"} 3",
        "cognito_gate_auth_decisions_total{route=\"open\",decision=\"allow\",reason=\"none\"} 3",
        "cognito_gate_request_duration_seconds_count{route=\"open\"} 3",
        "cognito_gate_requests_total{route=\"-\",status=\"404\"} 1",
        "cognito_gate_request_duration_seconds_count{route=\"-\"} 1",
    ] {
        assert!(text.contains(line), "no {line} in\n{text}");
    }
}

#[tokio::test]
async fn every_metric_is_visible_on_a_fresh_process() {
    // No exchange, no JWKS: still every family of DESIGN §5, with its known series at zero.
    let toml = "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[[routes]]\nname = \"open\"\npath_prefix = \"/open\"\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n";
    let gw = start_ready(config(toml)).await;
    let text = scrape(gw.admin_addr.unwrap()).await;
    for family in [
        "cognito_gate_requests_total",
        "cognito_gate_request_duration_seconds",
        "cognito_gate_auth_decisions_total",
        "cognito_gate_jwks_refresh_total",
        "cognito_gate_jwks_age_seconds",
        "cognito_gate_token_exchange_total",
        "cognito_gate_token_exchange_duration_seconds",
        "cognito_gate_token_cache_total",
        "cognito_gate_upstream_errors_total",
        "cognito_gate_connections_active",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(family)),
            "no {family} in\n{text}"
        );
    }
    for line in [
        "cognito_gate_token_cache_total{result=\"hit\"} 0",
        "cognito_gate_token_cache_total{result=\"rate_limited\"} 0",
        "cognito_gate_upstream_errors_total{route=\"open\",kind=\"connect\"} 0",
        "cognito_gate_upstream_errors_total{route=\"open\",kind=\"timeout\"} 0",
        "cognito_gate_jwks_refresh_total{pool=\"default\",outcome=\"failure\"} 0",
        "cognito_gate_token_exchange_total{kind=\"login\",outcome=\"success\"} 0",
        "cognito_gate_token_exchange_total{kind=\"refresh\",outcome=\"rejected\"} 0",
    ] {
        assert!(text.contains(line), "no {line} in\n{text}");
    }
}

#[tokio::test]
async fn plain_upstream_connections_are_reused_and_closed_ones_replaced() {
    let up = EchoUpstream::start().await;
    // Answers one request per connection, without announcing it, then closes.
    let (closing, closing_conns) =
        raw_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
    let route = |name: &str, addr: String| {
        format!("[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\nupstream = \"{addr}\"\nauth = [\"none\"]\nstrip_prefix = true\n")
    };
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{}{}",
        route("echo", up.url()),
        route("closing", format!("http://{closing}")),
    );
    let gw = start_ready(config(&toml)).await;
    let base = format!("http://{}", gw.http_addr.unwrap());
    let c = client();
    for i in 0..20 {
        let resp = c.get(format!("{base}/echo/{i}")).send().await.unwrap();
        let (status, seen) = body_json(resp).await;
        assert_eq!(status, 200);
        // Origin-form request line and the upstream's own Host, as any HTTP/1.1 client sends.
        assert_eq!(seen["uri"], format!("/{i}"));
        assert_eq!(seen["headers"]["host"], up.addr.to_string());
    }
    assert_eq!(up.hits(), 20);
    assert_eq!(
        up.connections(),
        1,
        "sequential requests share one connection"
    );

    // A large response streams through, and its connection is reused afterwards.
    let resp = c
        .post(format!("{base}/echo/big"))
        .body("b".repeat(600_000))
        .send()
        .await
        .unwrap();
    let (status, seen) = body_json(resp).await;
    assert_eq!((status, seen["body_bytes"].as_u64()), (200, Some(600_000)));
    assert_eq!(seen["body"].as_str().map(str::len), Some(600_000));
    let resp = c.get(format!("{base}/echo/after")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.connections(), 1);

    // Concurrent requests open what they need, no more.
    let calls = (0..8).map(|i| {
        let c = c.clone();
        let url = format!("{base}/echo/slow/{}", 50 + i);
        async move { c.get(url).send().await.unwrap().status() }
    });
    for status in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200);
    }
    assert!(up.connections() <= 9, "{}", up.connections());

    // An upstream that closes after each response: every request still succeeds.
    for _ in 0..5 {
        let resp = c.get(format!("{base}/closing/x")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "ok");
    }
    assert_eq!(closing_conns.load(std::sync::atomic::Ordering::SeqCst), 5);
}

#[tokio::test]
async fn cors_preflights_are_answered_here_and_every_response_carries_the_origin() {
    let k1 = TestKey::load("k1");
    let jwks = FakeJwks::start(&[&k1]).await;
    let up = EchoUpstream::start().await;
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:0"
{cognito}
[[routes]]
name = "app"
path_prefix = "/app"
methods = ["GET", "POST"]
upstream = "{u}"
auth = ["jwt"]
[routes.cors]
allow_origins = ["https://app.example.com"]
allow_methods = ["GET", "POST"]
allow_headers = ["authorization", "content-type"]
expose_headers = ["x-request-id"]
max_age = "10m"
allow_credentials = true

[[routes]]
name = "open"
path_prefix = "/open"
upstream = "{u}"
auth = ["none"]
[routes.cors]
allow_origins = ["*"]

[[routes]]
name = "plain"
path_prefix = "/plain"
upstream = "{u}"
auth = ["jwt"]
"#,
        cognito = cognito_section(&jwks.url(), "[]"),
        u = up.url()
    );
    let gw = start_ready(config(&toml)).await;
    let base = format!("http://{}", gw.http_addr.unwrap());
    let c = client();
    let allowed = "https://app.example.com";
    let preflight = |path: &str, origin: &str| {
        c.request(reqwest::Method::OPTIONS, format!("{base}{path}"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    // A preflight: 204, no auth, never forwarded (the route's methods do not list OPTIONS).
    let resp = preflight("/app/orders", allowed).await.unwrap();
    assert_eq!(resp.status(), 204);
    let h = resp.headers();
    assert_eq!(h["access-control-allow-origin"], allowed);
    assert_eq!(h["access-control-allow-methods"], "GET, POST");
    assert_eq!(
        h["access-control-allow-headers"],
        "authorization, content-type"
    );
    assert_eq!(h["access-control-max-age"], "600");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["vary"], "Origin");
    assert_eq!(up.hits(), 0, "answered by the gateway");
    // A disallowed origin: still no auth and no forwarding, but no CORS headers.
    let resp = preflight("/app/orders", "https://evil.example")
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(resp
        .headers()
        .keys()
        .all(|k| !k.as_str().starts_with("access-control-")));
    // The gateway's own 401 carries the origin, so the browser can read it.
    let resp = c
        .get(format!("{base}/app/orders"))
        .header("origin", allowed)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["access-control-allow-origin"], allowed);
    assert_eq!(
        resp.headers()["access-control-expose-headers"],
        "x-request-id"
    );
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    // An allowed request: forwarded, and the response carries the origin.
    let token = k1.sign(&id_claims());
    let resp = c
        .get(format!("{base}/app/orders"))
        .header("origin", allowed)
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["access-control-allow-origin"], allowed);
    assert_eq!(up.hits(), 1);
    // A disallowed origin on an actual request: served as usual, no CORS headers.
    let resp = c
        .get(format!("{base}/app/orders"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    // Any origin: "*".
    let resp = preflight("/open/x", "https://anywhere.example")
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert!(resp
        .headers()
        .get("access-control-allow-credentials")
        .is_none());
    // Without cors, OPTIONS is an ordinary request and needs auth (API Gateway without a MOCK
    // OPTIONS method).
    let resp = preflight("/plain/x", allowed).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("access-control-allow-origin").is_none());
    assert_eq!(up.hits(), 1);
}

#[test]
fn cors_settings_are_checked() {
    let source = cognito_gate::config::Source {
        name: "t".into(),
        base_dir: ".".into(),
    };
    let parse = |cors: &str| {
        cognito_gate::config::Config::parse(
            &format!("[[routes]]\nname = \"r\"\npath_prefix = \"/r\"\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n[routes.cors]\n{cors}"),
            &source,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    };
    assert_eq!(parse("allow_origins = [\"https://a.example:8443\"]"), "");
    let err = parse("allow_origins = [\"*\"]\nallow_credentials = true");
    assert!(
        err.contains(
            "routes[0].cors.allow_origins: \"*\" cannot be combined with allow_credentials"
        ),
        "{err}"
    );
    let err = parse("allow_origins = [\"https://a.example/path\", \"a.example\"]\nallow_methods = [\"G ET\"]\nallow_headers = [\"bad header\"]");
    for line in [
        "routes[0].cors.allow_origins[0]: not an origin (scheme://host[:port]): \"https://a.example/path\"",
        "routes[0].cors.allow_origins[1]: not an origin (scheme://host[:port]): \"a.example\"",
        "routes[0].cors.allow_methods[0]: not a method: \"G ET\"",
        "routes[0].cors.allow_headers[0]: not a header name: \"bad header\"",
    ] {
        assert!(err.contains(line), "no {line} in {err}");
    }
    assert!(parse("").contains("routes[0].cors.allow_origins: required"));
}

type Ws<S> = tokio_tungstenite::WebSocketStream<S>;

/// Answers every text message with the same text until the peer goes.
async fn echo_messages<S>(mut ws: Ws<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    while let Some(Ok(msg)) = ws.next().await {
        if msg.is_text() && ws.send(msg).await.is_err() {
            break;
        }
    }
}

/// Sends `text` and expects it back.
async fn round_trip<S>(ws: &mut Ws<S>, text: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text(text)).await.unwrap();
    let echoed = ws.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), text);
}

/// Whether the connection is closed (a close frame, an error or the end) within `limit`.
async fn closed_within<S>(ws: &mut Ws<S>, limit: Duration) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let closed = async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::time::timeout(limit, closed).await.is_ok()
}

/// A WebSocket echo upstream: answers every text message with the same text; counts the TCP
/// connections it accepted.
async fn websocket_echo() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let c = conns.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = l.accept().await {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(ws) = tokio_tungstenite::accept_async(stream).await {
                    echo_messages(ws).await;
                }
            });
        }
    });
    (addr, conns)
}

/// A tunnel must not outlive what authorized it (issue 20): it ends when the token that opened
/// it expires, however busy it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_tunnels_end_when_the_token_that_opened_them_expires() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let k1 = TestKey::load("k1");
    let jwks = FakeJwks::start(&[&k1]).await;
    let (ws_up, _) = websocket_echo().await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{}\n[[routes]]\nname = \"live\"\npath_prefix = \"/live\"\nupstream = \"http://{ws_up}\"\nauth = [\"jwt\"]\nwebsocket = true\n",
        cognito_section(&jwks.url(), "[]"),
    );
    let gw = start_ready(config(&toml)).await;
    let addr = gw.http_addr.unwrap();
    let open = |token: String| {
        let mut req = format!("ws://{addr}/live/feed")
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        tokio_tungstenite::connect_async(req)
    };
    let short = k1.sign(&with(id_claims(), json!({ "exp": now() + 2 })));
    let long = k1.sign(&id_claims());
    let (mut expiring, _) = open(short).await.expect("handshake");
    let (mut lasting, _) = open(long).await.expect("handshake");
    round_trip(&mut expiring, "while valid").await;
    let started = std::time::Instant::now();
    assert!(
        closed_within(&mut expiring, Duration::from_secs(10)).await,
        "the tunnel outlived its token"
    );
    assert!(started.elapsed() <= Duration::from_secs(3));
    // A token that is still valid keeps its tunnel.
    round_trip(&mut lasting, "still here").await;
}

/// `websocket_max_lifetime` caps a tunnel whose token lives longer; a reload that leaves the
/// route as it was keeps its tunnels, one that changes it ends them after `shutdown_grace`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_tunnels_end_at_max_lifetime_and_when_a_reload_changes_their_route() {
    let (ws_up, _) = websocket_echo().await;
    let toml = |idle: &str, lifetime: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"200ms\"\n[[routes]]\nname = \"live\"\npath_prefix = \"/live\"\nupstream = \"http://{ws_up}\"\nauth = [\"none\"]\nwebsocket = true\nwebsocket_idle_timeout = \"{idle}\"\nwebsocket_max_lifetime = \"{lifetime}\"\n[[routes]]\nname = \"other\"\npath_prefix = \"/other\"\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n"
        )
    };
    let gw = start_ready(config(&toml("10m", "1h"))).await;
    let url = format!("ws://{}/live/x", gw.http_addr.unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    round_trip(&mut ws, "before").await;
    // The same route (another one changed): the tunnel stays.
    let mut same = config(&toml("10m", "1h"));
    same.routes[1].strip_prefix = true;
    gw.reload(same).await.unwrap();
    assert!(
        !closed_within(&mut ws, Duration::from_millis(500)).await,
        "a reload that left the route alone closed its tunnel"
    );
    round_trip(&mut ws, "after an unrelated reload").await;
    // The route changed: closed after the grace.
    gw.reload(config(&toml("5m", "1h"))).await.unwrap();
    round_trip(&mut ws, "during the grace").await;
    assert!(
        closed_within(&mut ws, Duration::from_secs(5)).await,
        "a reload that changed the route kept its tunnel"
    );
    // A tunnel opened now lives at most websocket_max_lifetime.
    gw.reload(config(&toml("5m", "1s"))).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let started = std::time::Instant::now();
    round_trip(&mut ws, "young").await;
    assert!(closed_within(&mut ws, Duration::from_secs(10)).await);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took <= Duration::from_secs(3),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_is_authorized_at_the_handshake_then_tunnelled() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Error as WsError;
    let k1 = TestKey::load("k1");
    let jwks = FakeJwks::start(&[&k1]).await;
    let (ws_up, ws_conns) = websocket_echo().await;
    let http_up = EchoUpstream::start().await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{}\n[[routes]]\nname = \"live\"\npath_prefix = \"/live\"\nupstream = \"http://{ws_up}\"\nauth = [\"jwt\"]\nwebsocket = true\nwebsocket_idle_timeout = \"500ms\"\n\n[[routes]]\nname = \"plain\"\npath_prefix = \"/plain\"\nupstream = \"{}\"\nauth = [\"jwt\"]\n",
        cognito_section(&jwks.url(), "[]"),
        http_up.url()
    );
    let gw = start_ready(config(&toml)).await;
    let addr = gw.http_addr.unwrap();
    let token = k1.sign(&id_claims());
    let request = |path: &str, auth: Option<&str>| {
        let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
        if let Some(a) = auth {
            req.headers_mut()
                .insert("authorization", a.parse().unwrap());
        }
        req
    };
    // Without a token: 401 at the handshake, and the upstream never sees a connection.
    match tokio_tungstenite::connect_async(request("/live/feed", None)).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected a 401, got {:?}", other.map(|r| r.1.status())),
    }
    assert_eq!(ws_conns.load(std::sync::atomic::Ordering::SeqCst), 0);
    // With one: messages both ways through the tunnel, counted while open.
    let (mut ws, resp) =
        tokio_tungstenite::connect_async(request("/live/feed", Some(&format!("Bearer {token}"))))
            .await
            .expect("handshake through the gateway");
    assert_eq!(resp.status(), 101);
    for text in ["hello", "world"] {
        round_trip(&mut ws, text).await;
    }
    let metrics = || gw.metrics_text();
    assert!(
        metrics().contains("cognito_gate_websocket_connections_active{route=\"live\"} 1"),
        "{}",
        metrics()
    );
    // Quiet for longer than websocket_idle_timeout: the tunnel is closed.
    assert!(
        closed_within(&mut ws, Duration::from_secs(5)).await,
        "idle tunnel not closed"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !metrics().contains("cognito_gate_websocket_connections_active{route=\"live\"} 0") {
        assert!(std::time::Instant::now() < deadline, "{}", metrics());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A route without websocket = true never upgrades: the upstream gets a plain GET.
    match tokio_tungstenite::connect_async(request("/plain/feed", Some(&format!("Bearer {token}"))))
        .await
    {
        Err(WsError::Http(resp)) => {
            assert_eq!(resp.status(), 200);
            let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap()).unwrap();
            assert!(body["headers"].get("upgrade").is_none(), "{body}");
            assert!(body["headers"].get("sec-websocket-key").is_some());
        }
        other => panic!("expected no upgrade, got {:?}", other.map(|r| r.1.status())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_a_tls_listener_to_a_tls_upstream() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    // One test CA signs the gateway's listener and the upstream's certificate.
    let p = pki("websocket");
    let server_config = |dir: &std::path::Path| {
        let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(dir.join("server.crt"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
        let mut c = tokio_rustls::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(c)
    };
    use rustls_pki_types::pem::PemObject;
    // The upstream: WebSocket echo behind TLS.
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(&p.dir));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(ws) = tokio_tungstenite::accept_async(tls).await {
                    echo_messages(ws).await;
                }
            });
        }
    });
    let toml = format!(
        "[server]\n[server.tls]\nlisten = \"127.0.0.1:0\"\ncert = \"{d}/server.crt\"\nkey = \"{d}/server.key\"\n[upstream]\nca_file = \"{d}/ca.crt\"\n[[routes]]\nname = \"live\"\npath_prefix = \"/live\"\nupstream = \"https://localhost:{port}\"\nauth = [\"none\"]\nwebsocket = true\n",
        d = p.dir.display(),
        port = up.port()
    );
    let gw = start_ready(config(&toml)).await;
    let https = gw.https_addr.unwrap();
    // The client: TLS to the gateway (trusting the test CA), then the WebSocket handshake.
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(p.dir.join("ca.crt")).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut client = tokio_rustls::rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(https).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let req = format!("wss://localhost:{}/live/x", https.port())
        .into_client_request()
        .unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    assert_eq!(resp.status(), 101);
    round_trip(&mut ws, "over tls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_tunnels_close_at_the_end_of_shutdown_grace() {
    let (ws_up, _) = websocket_echo().await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_drain = \"0s\"\nshutdown_grace = \"400ms\"\n[[routes]]\nname = \"live\"\npath_prefix = \"/live\"\nupstream = \"http://{ws_up}\"\nauth = [\"none\"]\nwebsocket = true\n"
    );
    let gw = start_ready(config(&toml)).await;
    let url = format!("ws://{}/live/x", gw.http_addr.unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    round_trip(&mut ws, "before").await;
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(gw.shutdown());
    // Still open during the grace period...
    round_trip(&mut ws, "during").await;
    // ...then closed.
    assert!(
        closed_within(&mut ws, Duration::from_secs(5)).await,
        "tunnel outlived the grace period"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(350),
        "closed before the grace ended: {took:?}"
    );
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .unwrap()
        .unwrap();
}

/// A plain connection's protocol is read from its first bytes before hyper sees them: a client
/// that sends nothing is closed at `idle_timeout` (counted so), one whose first bytes could be
/// HTTP/2's preface but are not (`P`, then the rest of a `POST`) is served as HTTP/1, and
/// requests that start with other methods are served at once.
#[tokio::test]
async fn a_connection_is_served_by_the_protocol_its_first_bytes_name() {
    let toml = "[server]\nlisten = \"127.0.0.1:0\"\nidle_timeout = \"300ms\"\n\n[[routes]]\nname = \"open\"\npath_prefix = \"/open\"\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n";
    let gw = start_ready(config(toml)).await;
    let addr = gw.http_addr.unwrap();

    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "a silent connection is closed");
    assert!(buf.is_empty());
    let metrics = gw.metrics_text();
    assert!(
        metrics.contains("cognito_gate_connections_closed_total{reason=\"idle_timeout\"} 1"),
        "{metrics}"
    );

    for (first, rest) in [
        (
            "P",
            "OST /open/p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
        ),
        (
            "PRI",
            " /open/p HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ),
        (
            "G",
            "ET /open/g HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ),
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(first.as_bytes()).await.unwrap();
        s.flush().await.unwrap();
        s.write_all(rest.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        // `PRI` over HTTP/1.1 is only an unusual method: the open route takes it.
        assert!(out.starts_with("HTTP/1.1 200"), "{first}{rest:?}: {out}");
    }
}
