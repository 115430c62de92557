//! The forward proxy over real sockets, with the clients legacy apps are: curl, Python
//! `requests` and Node (`https-proxy-agent`), each given only `HTTPS_PROXY` and the gateway's CA,
//! reaching a TLS upstream by a name that resolves nowhere but in the gateway's configuration.
//! Refusals are checked with raw `CONNECT`s: unlisted names, the gateway's own admin port, the
//! instance metadata service, a listed name on another port. And the CA's command line.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTPS upstream on 127.0.0.1 that answers with a JSON description of each request (its
/// HTTP version too) and counts them. Its certificate names `orders.internal.test`,
/// `legacy.internal.test` and 127.0.0.1, signed by a CA of its own (or by nobody the gateway
/// trusts, with `trusted = false`).
struct TlsUpstream {
    addr: SocketAddr,
    hits: Arc<AtomicU64>,
}

struct Pki {
    dir: TempDir,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = TempDir::new("forward-pki");
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let names = [
        "orders.internal.test",
        "legacy.internal.test",
        "localhost",
        "127.0.0.1",
    ];
    let cert = CertificateParams::new(names.map(String::from).to_vec())
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    std::fs::write(dir.join("upstream-ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("upstream.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("upstream.key"), key.serialize_pem()).unwrap();
    // The gateway's own forward-proxy CA, as `ca init` writes it.
    let (ca_pem, ca_key_pem) =
        cognito_gate::forward::ca::generate("test forward proxy CA").unwrap();
    std::fs::write(dir.join("ca.pem"), ca_pem).unwrap();
    std::fs::write(dir.join("ca.key"), ca_key_pem).unwrap();
    chmod(&dir.join("ca.key"), 0o600);
    Pki { dir }
}

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl TlsUpstream {
    async fn start(p: &Pki) -> TlsUpstream {
        use rustls_pki_types::pem::PemObject;
        let certs: Vec<_> =
            rustls_pki_types::CertificateDer::pem_file_iter(p.dir.join("upstream.pem"))
                .unwrap()
                .map(Result::unwrap)
                .collect();
        let key =
            rustls_pki_types::PrivateKeyDer::from_pem_file(p.dir.join("upstream.key")).unwrap();
        let mut c = tokio_rustls::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(c));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let hits = Arc::new(AtomicU64::new(0));
        let h = hits.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                let h = h.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        h.fetch_add(1, Ordering::SeqCst);
                        async move {
                            let mut headers = serde_json::Map::new();
                            for (k, v) in req.headers() {
                                headers.insert(
                                    k.to_string(),
                                    Value::String(String::from_utf8_lossy(v.as_bytes()).into()),
                                );
                            }
                            // The path and query (over HTTP/2 the URI also has the authority).
                            let uri = req
                                .uri()
                                .path_and_query()
                                .map(|p| p.to_string())
                                .unwrap_or_default();
                            let desc = json!({"method": req.method().as_str(), "uri": uri,
                                "headers": headers});
                            let _ = req.into_body().collect().await;
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                Bytes::from(desc.to_string()),
                            )))
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        TlsUpstream { addr, hits }
    }
}

struct Env {
    gw: cognito_gate::RunningGateway,
    proxy: String,
    p: Pki,
    up: TlsUpstream,
    logins: Arc<AtomicU64>,
    k1: TestKey,
    _jwks: FakeJwks,
}

async fn env() -> Env {
    let p = pki();
    let up = TlsUpstream::start(&p).await;
    let k1 = TestKey::load("k1");
    let jwks = FakeJwks::start(&[&k1]).await;
    let (api, logins) = alice_private_api(Duration::from_millis(20)).await;
    let (bad_up, _) = raw_upstream(b"").await;
    let d = p.dir.display();
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:0"
shutdown_drain = "0s"
[admin]
listen = "127.0.0.1:0"
{cognito}
[upstream]
ca_file = "{d}/upstream-ca.pem"
[private_api]
base_url = "http://{api}/dev"
[exchange]
client_id = "{CLIENT_ID}"
user_pool_id = "ap-northeast-1_TestPool"
[forward_proxy]
intercept = ["orders.internal.test", "legacy.internal.test", "untrusted.internal.test", "localhost:{port}"]
tunnel = ["127.0.0.1:{port}"]
ca_cert = "{d}/ca.pem"
ca_key = "{d}/ca.key"

[[routes]]
name = "orders"
host = "orders.internal.test"
path_prefix = "/"
upstream = "https://127.0.0.1:{port}"
auth = ["jwt"]
claim_headers = {{ "x-cognito-sub" = "sub" }}

[[routes]]
name = "legacy"
host = "legacy.internal.test"
path_prefix = "/"
upstream = "https://127.0.0.1:{port}"
auth = ["basic"]
claim_headers = {{ "x-cognito-username" = "cognito:username" }}

[[routes]]
name = "origin"
host = "localhost"
path_prefix = "/"
upstream = "origin"
auth = ["jwt"]

[[routes]]
name = "untrusted"
host = "untrusted.internal.test"
path_prefix = "/"
upstream = "https://127.0.0.1:{bad}"
auth = ["none"]
"#,
        cognito = cognito_section(&jwks.url(), &format!("[\"{CLIENT_ID}\"]")),
        port = up.addr.port(),
        bad = bad_up.port(),
    );
    let gw = start_ready(config(&toml)).await;
    let proxy = format!("http://{}", gw.http_addr.unwrap());
    Env {
        gw,
        proxy,
        p,
        up,
        logins,
        k1,
        _jwks: jwks,
    }
}

/// Runs a client program with only a proxy setting and the gateway's CA; its stdout.
async fn run(env: &Env, program: &str, args: &[&str], extra_env: &[(&str, String)]) -> String {
    let out = tokio::process::Command::new(program)
        .args(args)
        .env("HTTPS_PROXY", &env.proxy)
        .env("https_proxy", &env.proxy)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Each response of a curl run with `-w "\n@@STATUS %{http_code} %{http_version}\n"`: its
/// status and its (one-line JSON) body.
fn curl_results(out: &str) -> Vec<(u16, Value)> {
    let mut results = Vec::new();
    let mut body = "";
    for line in out.lines() {
        match line.strip_prefix("@@STATUS ") {
            Some(rest) => {
                let status = rest.split(' ').next().unwrap_or("0").parse().unwrap_or(0);
                results.push((status, serde_json::from_str(body).unwrap_or(Value::Null)));
            }
            None => body = line,
        }
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_https_proxy() {
    let env = env().await;
    let ca = env.p.dir.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let token = env.k1.sign(&id_claims());
    let fmt = "\n@@STATUS %{http_code} %{http_version}\n";

    // A jwt route with a valid token, over HTTP/2 inside the tunnel and over HTTP/1.1.
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = run(
            &env,
            "curl",
            &[
                "-sS",
                flag,
                "--cacert",
                ca,
                "-w",
                fmt,
                "-H",
                &format!("Authorization: Bearer {token}"),
                "-H",
                "x-cognito-sub: spoofed",
                "https://orders.internal.test/orders/7?x=1",
            ],
            &[],
        )
        .await;
        assert!(out.contains(&format!("@@STATUS 200 {version}")), "{out}");
        let seen: Value = serde_json::from_str(out.split("\n@@STATUS").next().unwrap()).unwrap();
        assert_eq!(seen["uri"], "/orders/7?x=1");
        assert_eq!(seen["headers"]["authorization"], format!("Bearer {token}"));
        assert_eq!(
            seen["headers"]["x-cognito-sub"],
            "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
        );
    }

    // A basic route with the proxy's credentials (curl sends them on the CONNECT): the upstream
    // sees a Bearer token and never Proxy-Authorization; one login for five requests on one
    // tunnel and five more on another.
    let url = "https://legacy.internal.test/report";
    let urls: Vec<&str> = std::iter::repeat_n(url, 5).collect();
    for _ in 0..2 {
        let mut args = vec![
            "-sS",
            "--cacert",
            ca,
            "--proxy-user",
            "alice:pw-alice",
            "-w",
            fmt,
        ];
        args.extend(urls.iter().copied());
        let out = run(&env, "curl", &args, &[]).await;
        let results = curl_results(&out);
        assert_eq!(results.len(), 5, "{out}");
        for (status, seen) in results {
            assert_eq!(status, 200, "{seen}");
            let auth = seen["headers"]["authorization"].as_str().unwrap_or("");
            assert!(auth.starts_with("Bearer ey"), "{seen}");
            assert!(
                seen["headers"].get("proxy-authorization").is_none(),
                "{seen}"
            );
            assert_eq!(seen["headers"]["x-cognito-username"], "alice");
        }
    }
    assert_eq!(
        env.logins.load(Ordering::SeqCst),
        1,
        "one login for ten requests"
    );

    // Without a credential: 407 with the proxy challenge.
    let hits = env.up.hits.load(Ordering::SeqCst);
    let out = run(
        &env,
        "curl",
        &["-sS", "--cacert", ca, "-D", "-", "-o", "/dev/null", url],
        &[],
    )
    .await;
    assert!(
        out.contains("HTTP/2 407") || out.contains("HTTP/1.1 407"),
        "{out}"
    );
    assert!(
        out.to_ascii_lowercase()
            .contains("proxy-authenticate: basic realm=\"cognito-gate\""),
        "{out}"
    );

    // The upstream's certificate is not trusted: 502, nothing sent in clear.
    let out = run(
        &env,
        "curl",
        &[
            "-sS",
            "--cacert",
            ca,
            "-w",
            fmt,
            "https://untrusted.internal.test/x",
        ],
        &[],
    )
    .await;
    assert!(out.contains("@@STATUS 502"), "{out}");
    assert_eq!(env.up.hits.load(Ordering::SeqCst), hits);

    // upstream = "origin": the CONNECT target itself (listed verbatim), over verified TLS.
    let origin = format!("https://localhost:{}/from-origin", env.up.addr.port());
    let out = run(
        &env,
        "curl",
        &[
            "-sS",
            "--cacert",
            ca,
            "-w",
            fmt,
            "-H",
            &format!("Authorization: Bearer {token}"),
            &origin,
        ],
        &[],
    )
    .await;
    let results = curl_results(&out);
    assert_eq!(results[0].0, 200, "{out}");
    assert_eq!(results[0].1["uri"], "/from-origin");
    assert_eq!(env.up.hits.load(Ordering::SeqCst), hits + 1);

    // A leaf certificate per name, once: orders, legacy, untrusted and localhost.
    let metrics = env.gw.metrics_text();
    assert!(
        metrics.contains("cognito_gate_proxy_certificates_issued_total 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cognito_gate_proxy_connects_total{outcome=\"intercepted\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_requests_and_node_through_https_proxy() {
    let env = env().await;
    let ca = env.p.dir.join("ca.pem").display().to_string();
    let token = env.k1.sign(&id_claims());
    let python = std::env::var("MOTO_PYTHON").expect("MOTO_PYTHON: run through scripts/test.sh");
    let script = r#"
import json, os, requests
s = requests.Session()
r = s.get("https://orders.internal.test/py", headers={"Authorization": "Bearer " + os.environ["TOKEN"]})
print(r.status_code, json.dumps(r.json()))
r = s.get("https://legacy.internal.test/py")
print(r.status_code)
"#;
    let out = run(
        &env,
        &python,
        &["-c", script],
        &[("REQUESTS_CA_BUNDLE", ca.clone()), ("TOKEN", token.clone())],
    )
    .await;
    let mut lines = out.lines();
    let first = lines.next().unwrap();
    assert!(first.starts_with("200 "), "{out}");
    let seen: Value = serde_json::from_str(&first[4..]).unwrap();
    assert_eq!(seen["headers"]["authorization"], format!("Bearer {token}"));
    assert_eq!(lines.next(), Some("407"), "{out}");

    let modules =
        std::env::var("NODE_TEST_MODULES").expect("NODE_TEST_MODULES: run through scripts/test.sh");
    let script = r#"
const https = require("https");
const { HttpsProxyAgent } = require(process.env.NODE_TEST_MODULES + "/https-proxy-agent");
const agent = new HttpsProxyAgent(process.env.HTTPS_PROXY);
https.get("https://orders.internal.test/node", { agent, headers: { Authorization: "Bearer " + process.env.TOKEN } }, (res) => {
  let body = "";
  res.on("data", (c) => (body += c));
  res.on("end", () => { console.log(res.statusCode, body); });
}).on("error", (e) => { console.error(e); process.exit(1); });
"#;
    let out = run(
        &env,
        "node",
        &["-e", script],
        &[
            ("NODE_EXTRA_CA_CERTS", ca.clone()),
            ("NODE_TEST_MODULES", modules),
            ("TOKEN", token.clone()),
        ],
    )
    .await;
    assert!(out.starts_with("200 "), "{out}");
    let seen: Value = serde_json::from_str(out[4..].trim()).unwrap();
    assert_eq!(seen["uri"], "/node");
    assert_eq!(seen["headers"]["authorization"], format!("Bearer {token}"));
}

/// Sends a raw CONNECT and returns the response head.
async fn connect(proxy: SocketAddr, target: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn only_listed_destinations_are_reached() {
    let env = env().await;
    let proxy = env.gw.http_addr.unwrap();
    let admin = env.gw.admin_addr.unwrap();
    let hits = env.up.hits.load(Ordering::SeqCst);
    for target in [
        "unlisted.example:443".to_string(),
        format!("127.0.0.1:{}", admin.port()),
        format!("127.0.0.1:{}", proxy.port()),
        "169.254.169.254:80".to_string(),
        "[::1]:443".to_string(),
        "orders.internal.test:8443".to_string(),
        "localhost:443".to_string(),
        "orders.internal.test".to_string(),
    ] {
        let head = connect(proxy, &target).await;
        let first = head.lines().next().unwrap_or("");
        assert!(
            first.contains(" 403 ") || first.contains(" 400 "),
            "CONNECT {target}: {head}"
        );
        if first.contains(" 403 ") {
            assert!(
                head.to_ascii_lowercase()
                    .contains("proxy-status: cognito-gate; error="),
                "{head}"
            );
        }
    }
    // A listed tunnel: bytes both ways (here, a TLS handshake with the upstream itself).
    let head = connect(proxy, &format!("127.0.0.1:{}", env.up.addr.port())).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    // Absolute-form http:// to a name the lists do not intercept: 403, never fetched.
    let resp = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(&env.proxy).unwrap())
        .build()
        .unwrap()
        .get("http://unlisted.example/x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().contains_key("proxy-status"));
    // Absolute-form http:// to an intercepted name goes on over TLS to the route's upstream.
    let resp = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(&env.proxy).unwrap())
        .build()
        .unwrap()
        .get("http://orders.internal.test/plain")
        .header(
            "authorization",
            format!("Bearer {}", env.k1.sign(&id_claims())),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(env.up.hits.load(Ordering::SeqCst), hits + 1);
    let metrics = env.gw.metrics_text();
    assert!(
        metrics.contains("cognito_gate_proxy_connects_total{outcome=\"tunnelled\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn ca_init_and_export() {
    let dir = TempDir::new("forward-ca-cli");
    let out = dir.join("ca");
    let r = run_binary(&["ca", "init", "--out", out.to_str().unwrap()]).await;
    assert_eq!(r.0, Some(0), "{}", r.1);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(out.join("ca.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!r.1.contains("PRIVATE KEY"), "the key is never printed");
    // Never overwritten.
    let again = run_binary(&["ca", "init", "--out", out.to_str().unwrap()]).await;
    assert_eq!(again.0, Some(1), "{}", again.1);
    // export prints the certificate the configuration names.
    let cfg = dir.write(
        "config.toml",
        &format!(
            "[forward_proxy]\nintercept = [\"api.internal.example\"]\nca_cert = \"{d}/ca.pem\"\nca_key = \"{d}/ca.key\"\n[[routes]]\nname = \"o\"\npath_prefix = \"/\"\nupstream = \"origin\"\nauth = [\"none\"]\n",
            d = out.display()
        ),
    );
    let exported = run_binary(&["--config", cfg.to_str().unwrap(), "ca", "export"]).await;
    assert_eq!(exported.0, Some(0), "{}", exported.1);
    assert_eq!(
        exported.1,
        std::fs::read_to_string(out.join("ca.pem")).unwrap()
    );
    // check-config refuses a CA key others can read.
    chmod(&out.join("ca.key"), 0o644);
    let checked = run_binary(&["--config", cfg.to_str().unwrap(), "check-config"]).await;
    assert_eq!(checked.0, Some(1));
    assert!(checked.2.contains("forward_proxy.ca_key"), "{}", checked.2);
    // ... and an intercept list without a CA.
    let cfg = dir.write(
        "no-ca.toml",
        "[forward_proxy]\nintercept = [\"api.internal.example\"]\n",
    );
    let checked = run_binary(&["--config", cfg.to_str().unwrap(), "check-config"]).await;
    assert_eq!(checked.0, Some(1));
    assert!(
        checked.2.contains("forward_proxy.intercept"),
        "{}",
        checked.2
    );
}

/// The binary's exit code, stdout and stderr.
async fn run_binary(args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cognito-gate"))
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
