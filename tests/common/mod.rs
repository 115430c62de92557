//! Shared test fixtures: RSA keys and token minting, a fake JWKS server that can rotate keys and
//! count fetches, an echo upstream, raw misbehaving upstreams, and the gateway started in-process
//! on 127.0.0.1:0. Everything runs over real sockets.
#![allow(dead_code)]

pub mod binary;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub const ISSUER: &str = "https://cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_TestPool";
pub const CLIENT_ID: &str = "testclient0123456789abcdef";

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// One of the fixture RSA keys (k1, k2, k3), with its public JWK.
pub struct TestKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

impl TestKey {
    pub fn load(name: &str) -> TestKey {
        let pem = std::fs::read(fixture(&format!("rsa-{name}.pem"))).unwrap();
        let jwk: Value = serde_json::from_slice(
            &std::fs::read(fixture(&format!("rsa-{name}.jwk.json"))).unwrap(),
        )
        .unwrap();
        TestKey {
            kid: jwk["kid"].as_str().unwrap().to_string(),
            encoding: EncodingKey::from_rsa_pem(&pem).unwrap(),
            jwk,
        }
    }

    /// Signs `claims` with this key under its own kid.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// Signs `claims` with this key, claiming `kid` in the header.
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut h = Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some(kid.to_string());
        jsonwebtoken::encode(&h, claims, &self.encoding).unwrap()
    }
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims shaped like a Cognito ID token.
pub fn id_claims() -> Value {
    let now = now();
    json!({
        "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "aud": CLIENT_ID,
        "email_verified": true,
        "token_use": "id",
        "auth_time": now - 10,
        "iss": ISSUER,
        "cognito:username": "test-user",
        "cognito:groups": ["admins", "ops"],
        "exp": now + 3600,
        "iat": now - 10,
        "jti": "11111111-2222-3333-4444-555555555555",
        "origin_jti": "66666666-7777-8888-9999-000000000000",
        "email": "test-user@example.com"
    })
}

/// Claims shaped like a Cognito access token.
pub fn access_claims() -> Value {
    let now = now();
    json!({
        "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "cognito:groups": ["admins"],
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin orders/read",
        "auth_time": now - 10,
        "iss": ISSUER,
        "exp": now + 3600,
        "iat": now - 10,
        "jti": "11111111-2222-3333-4444-555555555555",
        "client_id": CLIENT_ID,
        "username": "test-user"
    })
}

/// Sets fields of a JSON object (`null` removes the field).
pub fn with(mut v: Value, changes: Value) -> Value {
    let obj = v.as_object_mut().unwrap();
    for (k, val) in changes.as_object().unwrap() {
        if val.is_null() {
            obj.remove(k);
        } else {
            obj.insert(k.clone(), val.clone());
        }
    }
    v
}

type Handler = Arc<dyn Fn(Request<Bytes>) -> Response<Full<Bytes>> + Send + Sync>;

/// A private API that logs in `alice` / `pw-alice` (an hour's tokens signed by k1, naming her)
/// after `delay`, refuses anyone else, and counts the logins it answered.
pub async fn alice_private_api(delay: Duration) -> (SocketAddr, Arc<AtomicU64>) {
    let k1 = Arc::new(TestKey::load("k1"));
    let logins = Arc::new(AtomicU64::new(0));
    let counted = logins.clone();
    let addr = serve_fn_delayed(
        Arc::new(move |req: Request<Bytes>| {
            let body: Value = serde_json::from_slice(req.body()).unwrap_or(Value::Null);
            let p = &body["AuthParameters"];
            counted.fetch_add(1, Ordering::SeqCst);
            if p["USERNAME"] != "alice" || p["PASSWORD"] != "pw-alice" {
                return Response::new(Full::new(Bytes::from(
                    json!({"__type": "NotAuthorizedException", "message": "x"}).to_string(),
                )));
            }
            let exp = now() + 3600;
            let id = k1.sign(&with(
                id_claims(),
                json!({"cognito:username": "alice", "exp": exp}),
            ));
            let access = k1.sign(&with(
                access_claims(),
                json!({"username": "alice", "exp": exp}),
            ));
            Response::new(Full::new(Bytes::from(
                json!({"AuthenticationResult": {"IdToken": id, "AccessToken": access,
                    "RefreshToken": "rt-alice", "ExpiresIn": 3600, "TokenType": "Bearer"},
                    "ChallengeParameters": {}})
                .to_string(),
            )))
        }),
        Arc::new(Mutex::new(delay)),
    )
    .await;
    (addr, logins)
}

/// A tiny HTTP server on 127.0.0.1:0 running `handler` for every request (body collected).
pub async fn serve_fn(handler: Handler) -> SocketAddr {
    serve_fn_delayed(handler, Arc::new(Mutex::new(Duration::ZERO))).await
}

pub async fn serve_fn_delayed(handler: Handler, delay: Arc<Mutex<Duration>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            let handler = handler.clone();
            let delay = delay.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let handler = handler.clone();
                    let delay = *delay.lock().unwrap();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        Ok::<_, Infallible>(handler(Request::from_parts(parts, body)))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A JWKS endpoint whose key set can be changed, taken down, and whose fetches are counted.
pub struct FakeJwks {
    pub addr: SocketAddr,
    keys: Arc<Mutex<Vec<Value>>>,
    down: Arc<AtomicBool>,
    hits: Arc<AtomicU64>,
    pub delay: Arc<Mutex<Duration>>,
}

impl FakeJwks {
    pub async fn start(keys: &[&TestKey]) -> FakeJwks {
        let keys = Arc::new(Mutex::new(keys.iter().map(|k| k.jwk.clone()).collect()));
        let down = Arc::new(AtomicBool::new(false));
        let hits = Arc::new(AtomicU64::new(0));
        let delay = Arc::new(Mutex::new(Duration::ZERO));
        let (k, d, h) = (keys.clone(), down.clone(), hits.clone());
        let addr = serve_fn_delayed(
            Arc::new(move |_req| {
                h.fetch_add(1, Ordering::SeqCst);
                if d.load(Ordering::SeqCst) {
                    return Response::builder()
                        .status(503)
                        .body(Full::new(Bytes::from_static(b"down")))
                        .unwrap();
                }
                let body = json!({ "keys": *k.lock().unwrap() }).to_string();
                Response::new(Full::new(Bytes::from(body)))
            }),
            delay.clone(),
        )
        .await;
        FakeJwks {
            addr,
            keys,
            down,
            hits,
            delay,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/dev/jwks", self.addr)
    }

    pub fn set_keys(&self, keys: &[&TestKey]) {
        *self.keys.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

/// An upstream that answers every request with a JSON description of what it received, and
/// counts requests. `/slow/<ms>` waits that long first; `/status/<code>` answers that status.
pub struct EchoUpstream {
    pub addr: SocketAddr,
    hits: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
}

impl EchoUpstream {
    pub async fn start() -> EchoUpstream {
        let hits = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let (h, conns) = (hits.clone(), connections.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let h = h.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        h.fetch_add(1, Ordering::SeqCst);
                        async move { Ok::<_, Infallible>(echo(req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        EchoUpstream {
            addr,
            hits,
            connections,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn echo(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if let Some(ms) = path
        .strip_prefix("/slow/")
        .and_then(|s| s.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = path
        .strip_prefix("/status/")
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(200);
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        headers.insert(
            k.as_str().to_string(),
            Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        );
    }
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let desc = json!({
        "method": method,
        "uri": uri,
        "headers": headers,
        "body_bytes": body.len(),
        "body": String::from_utf8_lossy(&body),
    });
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("connection", "keep-alive")
        .header("x-upstream", "echo")
        .body(Full::new(Bytes::from(desc.to_string())))
        .unwrap()
}

/// A TCP server that reads a request and answers with `reply` (raw bytes), then closes; an empty
/// `reply` closes the connection without answering. Counts connections.
pub async fn raw_upstream(reply: &'static [u8]) -> (SocketAddr, Arc<AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                break;
            };
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = stream.read(&mut buf).await;
                if !reply.is_empty() {
                    let _ = stream.write_all(reply).await;
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    (addr, count)
}

/// An address nothing listens on (bound, then closed).
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// Parses a configuration for tests (relative paths resolve against the crate root).
pub fn config(toml: &str) -> cognito_gate::config::Config {
    let source = cognito_gate::config::Source {
        name: "test".into(),
        base_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    };
    match cognito_gate::config::Config::parse(toml, &source) {
        Ok(c) => c,
        Err(e) => panic!("test config invalid:\n{e}\n---\n{toml}"),
    }
}

/// The `[cognito]` section for the test pool with JWKS from `url`.
pub fn cognito_section(jwks_url: &str, app_clients: &str) -> String {
    format!(
        r#"
[cognito]
issuer = "{ISSUER}"
app_clients = {app_clients}
[cognito.jwks]
url = "{jwks_url}"
refetch_cooldown = "10s"
refresh_interval = "1h"
"#
    )
}

/// Starts the gateway and waits until it reports ready.
pub async fn start_ready(cfg: cognito_gate::config::Config) -> cognito_gate::RunningGateway {
    let gw = cognito_gate::start(cfg).await.expect("gateway starts");
    wait_ready(&gw).await;
    gw
}

pub async fn wait_ready(gw: &cognito_gate::RunningGateway) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while gw.gateway().readiness.check().is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gateway never became ready"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// GET `url` with optional Authorization; returns (status, headers, body JSON or Null).
/// The Prometheus text an admin listener serves.
pub async fn scrape(admin: SocketAddr) -> String {
    let url = format!("http://{admin}/metrics");
    let resp = client().get(&url).send().await.expect("metrics answer");
    assert_eq!(resp.status(), 200, "{url}");
    resp.text().await.expect("metrics text")
}

pub async fn get(
    client: &reqwest::Client,
    url: &str,
    auth: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client.get(url);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap_or_default();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, headers, json)
}

/// A directory of its own per test (process id + name), removed when the test ends, even when
/// it fails. Derefs to its path.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        // Unique within the process too: tests run concurrently and may share a name.
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("cognito-gate-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Writes `contents` to `name` in the directory; returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A notifier tests can use to hold a fake until they say so.
pub fn gate() -> Arc<Notify> {
    Arc::new(Notify::new())
}

/// A token for `k` whose signature was never produced: right kid, issuer, client and exp, and
/// 256 random bytes below any 2048-bit modulus (a leading zero byte) as the signature. The
/// nonce makes each one a token no cache has seen.
pub fn unseen_forgery(k: &TestKey, nonce: usize) -> String {
    let token = k.sign(&with(
        id_claims(),
        json!({ "jti": format!("forged-{nonce}") }),
    ));
    let signed = token.rsplit_once('.').unwrap().0;
    let mut sig: Vec<u8> = (0..256)
        .map(|i| ((nonce * 131 + i * 29) % 251) as u8)
        .collect();
    sig[0] = 0;
    use base64::Engine;
    format!(
        "{signed}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&sig)
    )
}
