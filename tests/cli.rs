//! The binary, end to end: the real binary is started the way an operator starts it
//! (`check-config`, `verify-token`, serving), with its configuration in a temp dir (removed when
//! the test ends), its bound ports read from its own `listening` log lines, and real signals for
//! shutdown (drain on the single- and the multi-threaded runtime) and reload. Its logs are
//! searched for token, password and secret text.

mod common;
#[path = "cli/observe.rs"]
mod observe;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::binary::*;
use common::*;
use serde_json::{json, Value};

/// `check-config --config <path>`.
async fn check_config(path: &Path) -> Out {
    run_args(&["check-config", "--config", path.to_str().unwrap()]).await
}

/// A client that opens a new connection for every request (so each request also shows that
/// the listener still accepts) and gives up quickly.
fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// The status of GET `url`, `None` when the request failed.
async fn status_of(client: &reqwest::Client, url: &str) -> Option<u16> {
    client
        .get(url)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// Polls GET `url` until it answers `want`; panics after `within`.
async fn wait_status(client: &reqwest::Client, url: &str, want: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let got = status_of(client, url).await;
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} never answered {want} within {within:?} (last: {got:?})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls a condition (e.g. a hit counter); panics after `within`.
async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// True when a new TCP connection to `addr` is refused.
async fn refused(addr: SocketAddr) -> bool {
    matches!(
        tokio::net::TcpStream::connect(addr).await,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// A JWKS file with the k1 fixture key.
fn jwks_file(dir: &TempDir) -> PathBuf {
    let k1 = TestKey::load("k1");
    dir.write("jwks.json", &json!({ "keys": [k1.jwk] }).to_string())
}

/// A `[cognito]` section for the test pool, accepting any app client, keys from `jwks`
/// (a `file = ...` or `url = ...` line).
fn cognito(jwks: &str) -> String {
    format!("[cognito]\nissuer = \"{ISSUER}\"\napp_clients = []\n[cognito.jwks]\n{jwks}\n")
}

/// Two jwt routes: "id" (no scopes: ID tokens) and "finance" (group "finance").
const JWT_ROUTES: &str = r#"
[[routes]]
name = "id"
path_prefix = "/id"
upstream = "builtin:echo"
auth = ["jwt"]

[[routes]]
name = "finance"
path_prefix = "/finance"
upstream = "builtin:echo"
auth = ["jwt"]
groups = ["finance"]
"#;

/// The parts of a JWT worth searching a log for (every dot-separated segment longer than 8).
fn token_parts(token: &str) -> Vec<&str> {
    token.split('.').filter(|p| p.len() > 8).collect()
}

// ---------------------------------------------------------------------------------------------
// 1. check-config on the shipped configuration
// ---------------------------------------------------------------------------------------------

fn shipped() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config.toml")
}

#[test]
fn shipped_config_loads_in_process() {
    let config = cognito_gate::config::Config::load(&shipped())
        .unwrap_or_else(|e| panic!("the shipped config.toml is invalid:\n{e}"));
    assert!(
        !config.routes.is_empty(),
        "the shipped config has no routes"
    );
    assert!(config.cognito.is_some(), "the shipped config verifies JWTs");
    let summary = config.summary();
    for route in &config.routes {
        assert!(summary.contains(&route.name), "{summary}");
    }
}

#[tokio::test]
async fn check_config_accepts_the_shipped_config_and_lists_its_routes() {
    let mut cmd = command(&["check-config"]);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    let out = run(cmd, None).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout.lines().next() == Some("config.toml: OK"),
        "{out}"
    );
    assert!(out.stderr.is_empty(), "nothing on stderr when valid: {out}");
    let config = cognito_gate::config::Config::load(&shipped()).unwrap();
    assert!(
        out.stdout
            .contains(&format!("routes        {}\n", config.routes.len())),
        "{out}"
    );
    // One summary line per route: its name, its path prefix, its auth methods.
    for route in &config.routes {
        let auth: Vec<&str> = route.auth.iter().map(|a| a.as_str()).collect();
        let listed = out.stdout.lines().any(|l| {
            let mut words = l.split_whitespace();
            words.next() == Some(route.name.as_str())
                && l.contains(&route.path_prefix)
                && l.contains(&format!("auth={}", auth.join(",")))
        });
        assert!(listed, "route {} is not listed:\n{out}", route.name);
    }
    // The routes the quick start uses are among them.
    for name in ["legacy", "orders"] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "route {name} is not listed:\n{out}"
        );
    }
    // The same file named explicitly.
    let out = check_config(&shipped()).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("config.toml: OK"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// 2. Bad configurations: every problem at once, one line each, naming the key
// ---------------------------------------------------------------------------------------------

const BAD_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
listn = "127.0.0.1:0"
max_connections = "lots"
trusted_proxies = ["10.0.0.0/8", "10.0.0.0/33"]

[log]
format = "yaml"

[cognito]
issuer = "https://cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_TestPool"

[cognito.jwks]
url = "${UNSET_VAR_XYZ}"

[[routes]]
name = "fine"
path_prefix = "/fine"
upstream = "builtin:echo"
auth = ["none"]

[[routes]]
name = "broken"
path_prefix = "/broken"
upstream = "htp:/x"
auth = ["jwt", "magic"]
timeout = "5 parsecs"
"#;

/// Every problem in `BAD_CONFIG`, exactly as the operator reads it (order aside).
const BAD_CONFIG_LINES: &[&str] = &[
    "cognito.jwks.url: environment variable UNSET_VAR_XYZ is not set",
    "server.max_connections: invalid type: string \"lots\", expected i64",
    "server.listn: unknown key",
    "server.trusted_proxies[1]: not a CIDR or IP address: \"10.0.0.0/33\"",
    "log.format: must be \"text\" or \"json\", got \"yaml\"",
    "cognito.app_clients: required: list the accepted app client ids, or [] to accept any (as the API Gateway Cognito authorizer does)",
    "routes[1].upstream: not a URL: \"htp:/x\"",
    "routes[1].auth[1]: unknown auth method \"magic\" (use \"jwt\", \"basic\", \"service\" or \"none\")",
    "routes[1].timeout: not a duration: \"5 parsecs\" (use e.g. \"500ms\", \"30s\", \"5m\", \"1h\")",
];

fn assert_bad_config_lines(out: &Out) {
    assert_eq!(out.code, Some(1), "{out}");
    let mut got: Vec<&str> = out.stderr.lines().collect();
    let mut want = BAD_CONFIG_LINES.to_vec();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(
        got, want,
        "one line per problem, each naming its key:\n{out}"
    );
    // The one DESIGN spells out, verbatim.
    assert!(
        out.stderr
            .lines()
            .any(|l| l == r#"routes[1].upstream: not a URL: "htp:/x""#),
        "{out}"
    );
}

/// A usage error is 64 (EX_USAGE), never clap's 2, which means "denied" for verify-token and
/// login; --help and --version succeed.
#[tokio::test]
async fn a_usage_error_exits_64_and_help_exits_0() {
    for args in [
        &["--no-such-flag"][..],
        &["verify-token"],
        &["login"],
        &["aws", "template", "--format", "xml"],
    ] {
        let out = run_args(args).await;
        assert_eq!(out.code, Some(64), "{args:?}: {out}");
        assert!(out.stderr.contains("error:"), "{args:?}: {out}");
    }
    for args in [&["--help"][..], &["--version"], &["verify-token", "--help"]] {
        let out = run_args(args).await;
        assert_eq!(out.code, Some(0), "{args:?}: {out}");
        assert!(!out.stdout.is_empty(), "{args:?}: {out}");
    }
}

#[tokio::test]
async fn check_config_reports_every_problem_on_its_own_line_naming_the_key() {
    let dir = TempDir::new("bad-config");
    let path = dir.write("bad.toml", BAD_CONFIG);
    let mut cmd = command(&["check-config", "--config", path.to_str().unwrap()]);
    cmd.env_remove("UNSET_VAR_XYZ");
    let out = run(cmd, None).await;
    assert_bad_config_lines(&out);
    assert!(out.stdout.is_empty(), "no summary for a bad config: {out}");

    // Serving with it fails the same way, before binding anything.
    let mut cmd = command(&["--config", path.to_str().unwrap()]);
    cmd.env_remove("UNSET_VAR_XYZ");
    let out = run(cmd, None).await;
    assert_bad_config_lines(&out);
}

#[tokio::test]
async fn invalid_toml_is_one_clear_line_with_its_position() {
    let dir = TempDir::new("bad-toml");
    let path = dir.write(
        "syntax.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\n[[routes]\nname = \"a\"\n",
    );
    let out = check_config(&path).await;
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stderr.lines().count(), 1, "one line: {out}");
    let line = out.stderr.trim_end();
    assert!(
        line.starts_with(&format!("{}: invalid TOML", path.display())),
        "names the file: {out}"
    );
    assert!(line.contains("line 3"), "names the line: {out}");
    assert!(out.stdout.is_empty(), "{out}");

    // A table header left open at the end of the file: the same one line.
    let path = dir.write("unclosed.toml", "[server\nlisten=");
    let out = check_config(&path).await;
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(out.stderr.lines().count(), 1, "one line: {out}");
    assert!(
        out.stderr
            .starts_with(&format!("{}: invalid TOML", path.display())),
        "names the file: {out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
}

#[tokio::test]
async fn a_missing_config_file_is_an_error() {
    let dir = TempDir::new("missing");
    // A missing file in a directory that exists, and one in a directory that does not.
    for path in [
        dir.0.join("does-not-exist.toml"),
        PathBuf::from("/nonexistent/cg.toml"),
    ] {
        let out = check_config(&path).await;
        assert_eq!(out.code, Some(1), "{out}");
        assert!(
            out.stderr.contains("cannot read") && out.stderr.contains(&path.display().to_string()),
            "{out}"
        );
        assert_eq!(out.stderr.lines().count(), 1, "{out}");
    }
    let path = dir.0.join("does-not-exist.toml");
    // Serving from a missing file does not fall back to any default either.
    let out = run_args(&["--config", path.to_str().unwrap()]).await;
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("cannot read"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// 3. ${NAME} substitution
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn env_references_are_substituted_and_an_unset_one_names_its_key() {
    let dir = TempDir::new("env");
    let path = dir.write(
        "env.toml",
        r#"
[server]
listen = "${CG_TEST_LISTEN}"

[[routes]]
name = "echo"
path_prefix = "${CG_TEST_PREFIX}"
upstream = "builtin:echo"
auth = ["none"]
"#,
    );
    let mut cmd = command(&["check-config", "--config", path.to_str().unwrap()]);
    cmd.env("CG_TEST_LISTEN", "127.0.0.1:0")
        .env("CG_TEST_PREFIX", "/from-env");
    let out = run(cmd, None).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout.contains("listen        http://127.0.0.1:0 "),
        "{out}"
    );
    assert!(out.stdout.contains("/from-env -> builtin:echo"), "{out}");

    // Unset: one line, for the key that held the reference (not a second one about the
    // unexpanded text).
    let mut cmd = command(&["check-config", "--config", path.to_str().unwrap()]);
    cmd.env_remove("CG_TEST_LISTEN")
        .env("CG_TEST_PREFIX", "/from-env");
    let out = run(cmd, None).await;
    assert_eq!(out.code, Some(1), "{out}");
    assert_eq!(
        out.stderr, "server.listen: environment variable CG_TEST_LISTEN is not set\n",
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. verify-token
// ---------------------------------------------------------------------------------------------

struct VerifyEnv {
    _dir: TempDir,
    config: PathBuf,
}

impl VerifyEnv {
    fn new(test: &str) -> VerifyEnv {
        let dir = TempDir::new(test);
        let jwks = jwks_file(&dir);
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{}{JWT_ROUTES}",
            cognito(&format!("file = \"{}\"", jwks.display()))
        );
        let config = dir.write("verify.toml", &text);
        VerifyEnv { _dir: dir, config }
    }

    async fn verify(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut all = vec!["verify-token", "--config", self.config.to_str().unwrap()];
        all.extend_from_slice(args);
        run(command(&all), stdin).await
    }
}

/// The third (signature) segment of a JWT.
fn signature(token: &str) -> &str {
    token.rsplit('.').next().unwrap()
}

#[tokio::test]
async fn verify_token_allows_a_valid_id_token_and_shows_its_claims_but_not_its_signature() {
    let env = VerifyEnv::new("verify-allow");
    let k1 = TestKey::load("k1");
    let claims = id_claims();
    let token = k1.sign(&claims);
    let out = env.verify(&[&token], None).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("decision: allow"), "{out}");
    assert!(
        out.stdout.contains("route:    id "),
        "the first jwt route: {out}"
    );
    for claim in ["sub", "cognito:username", "email"] {
        let value = claims[claim].as_str().unwrap();
        assert!(
            out.stdout.contains(&format!("\"{claim}\": \"{value}\"")),
            "claim {claim} shown: {out}"
        );
    }
    assert!(
        !out.stdout.contains(signature(&token)),
        "the signature is never printed: {out}"
    );
    assert!(!out.stderr.contains(signature(&token)), "{out}");

    // "Bearer <token>" (any case) is accepted like the raw token.
    for input in [format!("Bearer {token}"), format!("bearer {token}")] {
        let out = env.verify(&[&input], None).await;
        assert_eq!(out.code, Some(0), "{out}");
        assert!(out.stdout.contains("decision: allow"), "{out}");
    }

    // "-" reads the token from stdin (a trailing newline is fine).
    let out = env.verify(&["-"], Some(&format!("{token}\n"))).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("decision: allow"), "{out}");
    assert!(
        out.stdout.contains(claims["sub"].as_str().unwrap()),
        "{out}"
    );
    for input in [format!("Bearer {token}"), format!("Bearer {token}\n")] {
        let out = env.verify(&["-"], Some(&input)).await;
        assert_eq!(out.code, Some(0), "{out}");
        assert!(out.stdout.contains("decision: allow"), "{out}");
    }
}

#[tokio::test]
async fn verify_token_denies_with_exit_2_and_names_the_check() {
    let env = VerifyEnv::new("verify-deny");
    let k1 = TestKey::load("k1");
    let k3 = TestKey::load("k3");
    let valid = k1.sign(&id_claims());
    let expired = k1.sign(&with(id_claims(), json!({ "exp": now() - 60 })));
    let forged = k3.sign_as(&k1.kid, &id_claims());
    let other_issuer = k1.sign(&with(
        id_claims(),
        json!({ "iss": "https://cognito-idp.ap-northeast-1.amazonaws.com/ap-northeast-1_Other" }),
    ));
    let access = k1.sign(&access_claims());

    // (case, args, expected check)
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("expired", vec![&expired], "exp"),
        (
            "not in the route's group",
            vec!["--route", "finance", &valid],
            "groups",
        ),
        ("garbage", vec!["this-is-not-a-jwt"], "format"),
        ("three garbage segments", vec!["aaa.bbb.ccc"], "format"),
        ("signed by another key", vec![&forged], "signature"),
        ("another issuer", vec![&other_issuer], "iss"),
        (
            "access token on an ID-token route",
            vec![&access],
            "token_use",
        ),
    ];
    for (case, args, check) in cases {
        let out = env.verify(&args, None).await;
        assert_eq!(out.code, Some(2), "{case}: {out}");
        assert!(
            out.stdout.contains("decision: deny"),
            "{case}: decision shown: {out}"
        );
        assert!(
            out.stdout
                .lines()
                .any(|l| l.trim_end() == format!("check:    {check}")),
            "{case}: the check {check:?} is named: {out}"
        );
        for arg in &args {
            if arg.matches('.').count() == 2 && arg.len() > 40 {
                assert!(
                    !out.stdout.contains(signature(arg)),
                    "{case}: the signature is never printed: {out}"
                );
            }
        }
    }

    // The group check passes on the same route for a member.
    let member = k1.sign(&with(id_claims(), json!({ "cognito:groups": ["finance"] })));
    let out = env.verify(&["--route", "finance", &member], None).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("route:    finance "), "{out}");
}

#[tokio::test]
async fn verify_token_with_an_unknown_route_is_an_error() {
    let env = VerifyEnv::new("verify-route");
    let token = TestKey::load("k1").sign(&id_claims());
    let out = env.verify(&["--route", "nosuchroute", &token], None).await;
    assert_eq!(out.code, Some(1), "{out}");
    assert!(out.stderr.contains("nosuchroute"), "{out}");
    assert!(!out.stdout.contains("decision:"), "no decision: {out}");
}

// ---------------------------------------------------------------------------------------------
// 5. Graceful drain on SIGTERM / SIGINT, on the single- and the multi-threaded runtime
// ---------------------------------------------------------------------------------------------

/// The drain after `signal` with `worker_threads` set: 1 is the single-threaded runtime, 2 the
/// multi-threaded one whatever the machine's core count.
async fn drains_on(signal: &str, worker_threads: usize, test: &str) {
    let upstream = EchoUpstream::start().await;
    let dir = TempDir::new(test);
    let config = dir.write(
        "drain.toml",
        &format!(
            r#"
[server]
listen = "127.0.0.1:0"
shutdown_drain = "1s"
shutdown_grace = "10s"
worker_threads = {worker_threads}

[admin]
listen = "127.0.0.1:0"

[[routes]]
name = "up"
path_prefix = "/"
upstream = "{}"
auth = ["none"]
"#,
            upstream.url()
        ),
    );
    let mut gw = Served::start(&config, &[], true).await;
    let c = fresh_client();
    wait_status(&c, &gw.url("/readyz"), 200, Duration::from_secs(10)).await;
    assert_eq!(status_of(&c, &gw.admin_url("/readyz")).await, Some(200));

    // A slow request is in flight (it has reached the upstream) when the signal arrives.
    let slow = tokio::spawn(
        client()
            .get(gw.url("/slow/2500"))
            .timeout(Duration::from_secs(20))
            .send(),
    );
    wait_until(
        "the slow request reaches the upstream",
        Duration::from_secs(10),
        || upstream.hits() >= 1,
    )
    .await;
    let hits_before = upstream.hits();
    let signalled = Instant::now();
    gw.signal(signal);

    // Readiness fails promptly, on both listeners...
    wait_status(&c, &gw.url("/readyz"), 503, Duration::from_millis(900)).await;
    let to_503 = signalled.elapsed();
    assert_eq!(status_of(&c, &gw.admin_url("/readyz")).await, Some(503));
    // ...while liveness and ordinary requests are still served on new connections.
    assert_eq!(status_of(&c, &gw.url("/healthz")).await, Some(200));
    assert_eq!(status_of(&c, &gw.admin_url("/healthz")).await, Some(200));
    let (status, _, body) = get(&c, &gw.url("/during-drain"), None).await;
    assert_eq!(status, 200, "served during the drain window");
    assert_eq!(body["uri"], "/during-drain");
    assert_eq!(upstream.hits(), hits_before + 1);
    let still_serving = signalled.elapsed();
    assert!(
        still_serving < Duration::from_secs(1),
        "the checks above ran inside shutdown_drain (took {still_serving:?}); the results \
         do not prove the drain window"
    );

    // The in-flight request completes normally.
    let resp = slow
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["uri"], "/slow/2500");

    let status = gw.exit(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0), "exit code 0 after {signal}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(1),
        "exited before shutdown_drain was over"
    );
    assert!(refused(gw.main).await, "the listener is closed after exit");
    assert!(refused(gw.admin.unwrap()).await, "the admin listener too");

    let log = gw.full_log().await;
    let name = format!("SIG{signal}");
    assert!(
        log.iter()
            .any(|l| l.contains("shutdown requested") && l.contains(&name)),
        "the log says which signal: {log:#?}"
    );
    assert!(log.iter().any(|l| l.contains("stopped")), "{log:#?}");
    eprintln!("{name}, worker_threads = {worker_threads}: readiness 503 after {to_503:?}");
}

#[tokio::test]
async fn sigterm_fails_readiness_keeps_serving_finishes_in_flight_and_exits_0_single_threaded() {
    drains_on("TERM", 1, "drain-term-1").await;
}

#[tokio::test]
async fn sigterm_fails_readiness_keeps_serving_finishes_in_flight_and_exits_0_multi_threaded() {
    drains_on("TERM", 2, "drain-term-2").await;
}

#[tokio::test]
async fn sigint_drains_the_same_way_single_threaded() {
    drains_on("INT", 1, "drain-int-1").await;
}

#[tokio::test]
async fn sigint_drains_the_same_way_multi_threaded() {
    drains_on("INT", 2, "drain-int-2").await;
}

// ---------------------------------------------------------------------------------------------
// 6. shutdown_grace expiry
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn shutdown_grace_cuts_a_request_that_outlives_it_and_still_exits_0() {
    let upstream = EchoUpstream::start().await;
    let dir = TempDir::new("grace");
    let config = dir.write(
        "grace.toml",
        &format!(
            r#"
[server]
listen = "127.0.0.1:0"
shutdown_drain = "0s"
shutdown_grace = "500ms"

[[routes]]
name = "up"
path_prefix = "/"
upstream = "{}"
auth = ["none"]
"#,
            upstream.url()
        ),
    );
    let mut gw = Served::start(&config, &[], false).await;
    let slow = tokio::spawn(
        client()
            .get(gw.url("/slow/10000"))
            .timeout(Duration::from_secs(30))
            .send(),
    );
    wait_until(
        "the slow request reaches the upstream",
        Duration::from_secs(10),
        || upstream.hits() >= 1,
    )
    .await;
    let signalled = Instant::now();
    gw.signal("TERM");
    let status = gw.exit(Duration::from_secs(5)).await;
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "exit code 0 after grace expiry");
    assert!(
        took < Duration::from_secs(4),
        "exited {took:?} after SIGTERM: shutdown_grace (500ms) did not bound the wait"
    );
    let result = tokio::time::timeout(Duration::from_secs(5), slow)
        .await
        .expect("the client learns that its request was cut")
        .unwrap();
    match result {
        Err(_) => {}
        Ok(resp) => assert_ne!(resp.status(), 200, "the cut request cannot succeed"),
    }
    let log = gw.full_log().await;
    assert!(
        log.iter().any(|l| l.contains("shutdown_grace expired")),
        "the log says connections were cut: {log:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 7. No token text in the logs, access log present
// ---------------------------------------------------------------------------------------------

/// Tokens a client might send: valid, expired, forged signature, garbage.
fn log_test_tokens() -> Vec<(&'static str, String, u16)> {
    let k1 = TestKey::load("k1");
    let k3 = TestKey::load("k3");
    vec![
        ("valid", k1.sign(&id_claims()), 200),
        (
            "expired",
            k1.sign(&with(id_claims(), json!({ "exp": now() - 60 }))),
            401,
        ),
        ("bad signature", k3.sign_as(&k1.kid, &id_claims()), 401),
        (
            "garbage",
            "garbage-TOKEN-q8Zr1xKv.payload-Pw3nB6sLmT.sig-Xc9Ty2Hu4J".to_string(),
            401,
        ),
    ]
}

fn assert_no_token_text(log: &str, tokens: &[(&str, String, u16)]) {
    for (case, token, _) in tokens {
        assert!(!log.contains(token.as_str()), "the {case} token is logged");
        for part in token_parts(token) {
            assert!(
                !log.contains(part),
                "a segment of the {case} token is logged: {part}"
            );
        }
    }
}

#[tokio::test]
async fn trace_level_text_log_has_access_lines_but_no_token_text() {
    let k1 = TestKey::load("k1");
    let jwks = FakeJwks::start(&[&k1]).await;
    let dir = TempDir::new("log-text");
    let tokens = log_test_tokens();
    // On the single-threaded runtime, and on the one worker_threads' default picks.
    for (runtime, server) in [("single-threaded", "worker_threads = 1\n"), ("default", "")] {
        let config = dir.write(
            &format!("log-{runtime}.toml"),
            &format!(
                "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_drain = \"0s\"\n{server}{}{JWT_ROUTES}",
                cognito(&format!("url = \"{}\"", jwks.url()))
            ),
        );
        let mut gw = Served::start(&config, &[("RUST_LOG", "trace")], false).await;
        let c = fresh_client();
        wait_status(&c, &gw.url("/readyz"), 200, Duration::from_secs(10)).await;
        for (case, token, want) in &tokens {
            let (status, _, _) = get(&c, &gw.url("/id/x"), Some(&format!("Bearer {token}"))).await;
            assert_eq!(status, *want, "{runtime}: {case}");
        }
        // A token in the query string is not logged either.
        let valid = &tokens[0].1;
        let (status, _, _) = get(
            &c,
            &gw.url(&format!("/id/q?id_token={valid}")),
            Some(&format!("Bearer {valid}")),
        )
        .await;
        assert_eq!(status, 200, "{runtime}");

        gw.signal("TERM");
        assert_eq!(
            gw.exit(Duration::from_secs(10)).await.code(),
            Some(0),
            "{runtime}: exit code 0 after SIGTERM"
        );
        let log = gw.full_log().await;
        assert!(
            log.iter().any(|l| l.contains(" TRACE ")),
            "{runtime}: RUST_LOG=trace took effect"
        );
        assert!(
            log.iter()
                .any(|l| l.contains(" DEBUG ") && l.contains("request denied")),
            "{runtime}: the denials' details are logged"
        );
        let access: Vec<&String> = log
            .iter()
            .filter(|l| l.contains("cognito_gate::access"))
            .collect();
        assert_eq!(
            access.len(),
            tokens.len() + 1,
            "{runtime}: one access line per request: {access:#?}"
        );
        let mut wanted: Vec<u16> = tokens.iter().map(|t| t.2).collect();
        wanted.push(200);
        for (line, status) in access.iter().zip(wanted) {
            assert!(line.contains("route=id "), "{runtime}: {line}");
            assert!(
                line.contains(&format!("status={status} ")),
                "{runtime}: {line}"
            );
        }
        assert_no_token_text(&log.join("\n"), &tokens);
    }
}

#[tokio::test]
async fn json_log_is_one_object_per_line_with_one_access_event_per_request_and_no_token_text() {
    let dir = TempDir::new("log-json");
    let jwks = jwks_file(&dir);
    let tokens = log_test_tokens();
    // (run, RUST_LOG, [server] lines, signal): at trace level stopped by SIGTERM, and at the
    // default level on the multi-threaded runtime stopped by SIGINT.
    let runs = [
        ("RUST_LOG=trace", Some("trace"), "", "TERM"),
        (
            "default level, worker_threads = 2",
            None,
            "worker_threads = 2\n",
            "INT",
        ),
    ];
    for (i, (label, level, server, signal)) in runs.into_iter().enumerate() {
        let config = dir.write(
            &format!("log-{i}.toml"),
            &format!(
                "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_drain = \"0s\"\n{server}[log]\nformat = \"json\"\n{}{JWT_ROUTES}",
                cognito(&format!("file = \"{}\"", jwks.display()))
            ),
        );
        let envs: Vec<(&str, &str)> = level.map(|l| ("RUST_LOG", l)).into_iter().collect();
        let mut gw = Served::start(&config, &envs, false).await;
        let c = fresh_client();
        let mut expected = Vec::new();
        for (case, token, want) in &tokens {
            let (status, _, _) = get(&c, &gw.url("/id/x"), Some(&format!("Bearer {token}"))).await;
            assert_eq!(status, *want, "{label}: {case}");
            expected.push((*want, "id"));
        }
        let (status, _, _) = get(&c, &gw.url("/id/x"), None).await;
        assert_eq!(status, 401, "{label}: no Authorization");
        expected.push((401, "id"));
        let (status, _, _) = get(&c, &gw.url("/nowhere"), Some(&tokens[0].1)).await;
        assert_eq!(status, 404, "{label}");
        expected.push((404, ""));

        gw.signal(signal);
        assert_eq!(
            gw.exit(Duration::from_secs(10)).await.code(),
            Some(0),
            "{label}: exit code 0 after SIG{signal}"
        );
        let log = gw.full_log().await;
        let events: Vec<Value> = log
            .iter()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("{label}: not a JSON line ({e}): {l}"))
            })
            .collect();
        assert!(
            events.iter().all(|e| e.is_object()),
            "{label}: every line is a JSON object"
        );
        let denial_details = events
            .iter()
            .any(|e| e["level"] == "DEBUG" && e["message"] == "request denied");
        if level.is_some() {
            assert!(
                denial_details,
                "{label}: RUST_LOG=trace took effect: the denials' details are logged"
            );
        } else {
            assert!(
                events
                    .iter()
                    .all(|e| e["level"] != "DEBUG" && e["level"] != "TRACE"),
                "{label}: no debug or trace events at the default level"
            );
        }
        let access: Vec<&Value> = events
            .iter()
            .filter(|e| e["target"] == "cognito_gate::access")
            .collect();
        let got: Vec<(u16, &str)> = access
            .iter()
            .map(|e| {
                (
                    e["status"].as_u64().unwrap_or(0) as u16,
                    e["route"].as_str().unwrap_or("?"),
                )
            })
            .collect();
        assert_eq!(
            got, expected,
            "{label}: one access event per request: {access:#?}"
        );
        for e in &access {
            assert!(
                e["request_id"].as_str().is_some_and(|s| !s.is_empty()),
                "{label}: {e}"
            );
            assert_eq!(e["method"], "GET", "{label}: {e}");
        }
        assert_no_token_text(&log.join("\n"), &tokens);
    }
}

/// The shipped configuration (its embedded dev IdP, private API and service account) on ports
/// of its own, at trace level: the passwords, the client secret, the Basic credentials and every
/// token of the exchange stay out of the log.
#[tokio::test]
async fn no_password_secret_or_token_in_the_log_of_the_exchange() {
    let dir = TempDir::new("exchange-log");
    let mut text = std::fs::read_to_string(shipped()).unwrap();
    for port in ["8080", "8443", "9901", "4577"] {
        text = text.replace(&format!("127.0.0.1:{port}"), "127.0.0.1:0");
    }
    let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/");
    text = text.replace("\"certs/", &format!("\"{certs}"));
    let config = dir.write("config.toml", &text);
    let mut gw = Served::start(&config, &[("RUST_LOG", "trace")], false).await;
    let c = client();
    wait_status(&c, &gw.url("/readyz"), 200, Duration::from_secs(20)).await;

    let ok = c
        .get(gw.url("/legacy/x"))
        .basic_auth("test-user", Some("P@ssword01"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let forwarded: Value = ok.json().await.unwrap();
    let bad = c
        .get(gw.url("/legacy/x"))
        .basic_auth("test-user", Some("Wr0ng-P@ss"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let login = c
        .post(gw.url("/auth/login"))
        .json(&json!({"username": "test-user", "password": "P@ssword01"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let tokens: Value = login.json().await.unwrap();
    assert_eq!(get(&c, &gw.url("/batch/x"), None).await.0, 200);

    gw.signal("TERM");
    assert_eq!(gw.exit(Duration::from_secs(15)).await.code(), Some(0));
    let log = gw.full_log().await.join("\n");
    assert!(log.contains("cognito_gate::access"), "access lines logged");
    let mut secrets = vec![
        "P@ssword01".to_string(),
        "Wr0ng-P@ss".to_string(),
        "svc-batch-P@ss1".to_string(),
        "dev-client-secret".to_string(),
        "dGVzdC11c2VyOlBAc3N3b3JkMDE".to_string(), // base64("test-user:P@ssword01")
    ];
    let bearer = forwarded["headers"]["authorization"]
        .as_str()
        .expect("the upstream got a bearer token")
        .trim_start_matches("Bearer ");
    let result = &tokens["AuthenticationResult"];
    for token in [
        bearer,
        result["IdToken"].as_str().unwrap(),
        result["AccessToken"].as_str().unwrap(),
    ] {
        secrets.extend(token_parts(token).into_iter().map(str::to_string));
    }
    secrets.push(result["RefreshToken"].as_str().unwrap().to_string());
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "a secret or token reached the log: {secret}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 8. --version, --help
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn version_and_help() {
    let out = run_args(&["--version"]).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert_eq!(
        out.stdout,
        format!("cognito-gate {}\n", env!("CARGO_PKG_VERSION")),
        "{out}"
    );
    let out = run_args(&["--help"]).await;
    assert_eq!(out.code, Some(0), "{out}");
    for word in ["check-config", "verify-token", "login", "--config"] {
        assert!(out.stdout.contains(word), "--help mentions {word}: {out}");
    }
    let out = run_args(&["verify-token", "--help"]).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("--route"), "{out}");
    // An unknown subcommand is a usage error, not a server start.
    let out = run_args(&["no-such-command"]).await;
    assert!(!matches!(out.code, Some(0) | None), "{out}");
    assert!(out.stderr.contains("no-such-command"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// 9. A port already in use
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_port_in_use_exits_1_naming_the_address() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let dir = TempDir::new("busy");
    let route = "[[routes]]\nname = \"a\"\npath_prefix = \"/\"\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n";

    // The main listener, then the admin listener, on the busy port.
    for (case, text) in [
        ("main", format!("[server]\nlisten = \"{addr}\"\n{route}")),
        (
            "admin",
            format!("[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"{addr}\"\n{route}"),
        ),
    ] {
        let path = dir.write(&format!("{case}.toml"), &text);
        let out = run_args(&["--config", path.to_str().unwrap()]).await;
        assert_eq!(out.code, Some(1), "{case}: {out}");
        assert!(
            out.stderr.contains(&format!("cannot listen on {addr}")),
            "{case}: the message names the address: {out}"
        );
        assert!(
            out.stderr.to_lowercase().contains("in use"),
            "{case}: the message says why: {out}"
        );
    }
    drop(busy);
}

// ---------------------------------------------------------------------------------------------
// 10. SIGHUP reload
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn sighup_applies_a_good_config_and_rejects_a_bad_one() {
    let dir = TempDir::new("sighup");
    let route = |name: &str| {
        format!("[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n")
    };
    let head = "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_drain = \"0s\"\n";
    let config = dir.write("config.toml", &format!("{head}{}", route("one")));
    let mut gw = Served::start(&config, &[("RUST_LOG", "info")], false).await;
    // One pooled client: the connection it keeps open sees each reload too.
    let c = client();
    assert_eq!(get(&c, &gw.url("/one/x"), None).await.0, 200);
    assert_eq!(get(&c, &gw.url("/two/x"), None).await.0, 404);

    // A good configuration: the new route appears, the old one goes.
    dir.write("config.toml", &format!("{head}{}", route("two")));
    gw.signal("HUP");
    gw.wait_for_line("configuration reloaded", Duration::from_secs(10))
        .await;
    assert_eq!(get(&c, &gw.url("/two/x"), None).await.0, 200);
    assert_eq!(get(&c, &gw.url("/one/x"), None).await.0, 404);

    // A bad one is rejected key by key; the running configuration keeps serving.
    dir.write(
        "config.toml",
        &format!("{head}{}timeout = \"soon\"\n", route("three")),
    );
    gw.signal("HUP");
    let line = gw
        .wait_for_line("reload rejected", Duration::from_secs(10))
        .await;
    assert!(line.contains("routes[0].timeout"), "{line}");
    assert_eq!(get(&c, &gw.url("/two/x"), None).await.0, 200);
    assert_eq!(get(&c, &gw.url("/three/x"), None).await.0, 404);

    gw.signal("TERM");
    assert_eq!(gw.exit(Duration::from_secs(10)).await.code(), Some(0));
}

#[tokio::test]
async fn verify_token_picks_the_pool_by_issuer_and_names_it() {
    let dir = TempDir::new("verify-pools");
    let (k1, k2) = (TestKey::load("k1"), TestKey::load("k2"));
    let ja = dir.write("a.json", &json!({ "keys": [k1.jwk] }).to_string());
    let jb = dir.write("b.json", &json!({ "keys": [k2.jwk] }).to_string());
    let config = dir.write(
        "pools.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[cognito]\n[[cognito.pools]]\nname = \"a\"\nissuer = \"https://issuer.example/a\"\napp_clients = []\n[cognito.pools.jwks]\nfile = \"{}\"\n[[cognito.pools]]\nname = \"b\"\nissuer = \"https://issuer.example/b\"\napp_clients = []\n[cognito.pools.jwks]\nfile = \"{}\"\n[[routes]]\nname = \"only-b\"\npath_prefix = \"/b\"\nupstream = \"builtin:echo\"\nauth = [\"jwt\"]\npools = [\"b\"]\n",
            ja.display(),
            jb.display()
        ),
    );
    let cfg = config.to_str().unwrap();
    let tb = k2.sign(&with(
        id_claims(),
        json!({"iss": "https://issuer.example/b"}),
    ));
    let out = run_args(&["verify-token", "--config", cfg, &tb]).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("pool:     b"), "{out}");
    let ta = k1.sign(&with(
        id_claims(),
        json!({"iss": "https://issuer.example/a"}),
    ));
    let out = run_args(&["verify-token", "--config", cfg, &ta]).await;
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stdout.contains("check:    pool"), "{out}");
    assert!(out.stdout.contains("pool:     a"), "{out}");
}

/// Secrets from files (`*_file`, e.g. mounted Kubernetes or Docker secrets): the file's text
/// without its trailing newline; a secret given both ways is an error naming the key.
#[test]
fn secrets_from_files() {
    let dir = TempDir::new("cli-secret-files");
    dir.write("client_secret", "s3cr3t\n");
    dir.write("svc_password", "pw-svc\r\n");
    dir.write(
        "state_key",
        "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=\n",
    );
    let source = cognito_gate::config::Source {
        name: "test".into(),
        base_dir: dir.0.clone(),
    };
    let base = format!(
        "{}\n[private_api]\nbase_url = \"http://127.0.0.1:1/dev\"\n[exchange]\nclient_id = \"c\"\nuser_pool_id = \"ap-northeast-1_TestPool\"\n{{secret}}\n[service_accounts.batch]\nusername = \"svc\"\npassword_file = \"svc_password\"\n[shared_state]\nurl = \"redis://127.0.0.1:1\"\nencryption_key_file = \"state_key\"\n[[routes]]\nname = \"a\"\npath_prefix = \"/a\"\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n",
        cognito_section("http://127.0.0.1:1/jwks", "[]")
    );
    let cfg = cognito_gate::config::Config::parse(
        &base.replace("{secret}", "client_secret_file = \"client_secret\""),
        &source,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let x = cfg.exchange.as_ref().unwrap();
    assert_eq!(x.client_secret.as_ref().unwrap().expose(), "s3cr3t");
    assert_eq!(cfg.service_accounts[0].password.expose(), "pw-svc");
    assert_eq!(
        cfg.shared_state.as_ref().unwrap().encryption_key.expose(),
        "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio="
    );
    let err = cognito_gate::config::Config::parse(
        &base.replace(
            "{secret}",
            "client_secret = \"x\"\nclient_secret_file = \"client_secret\"",
        ),
        &source,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("exchange.client_secret: set exchange.client_secret or exchange.client_secret_file, not both"),
        "{err}"
    );
    let err = cognito_gate::config::Config::parse(
        &base.replace("{secret}", "client_secret_file = \"missing\""),
        &source,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("exchange.client_secret_file: file not found"),
        "{err}"
    );
}
