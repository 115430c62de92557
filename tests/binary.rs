//! The real binary: config errors and exit codes, verify-token, SIGTERM drain and exit code,
//! and log hygiene (no token text in any log line).

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const BIN: &str = env!("CARGO_BIN_EXE_cognito-gate");

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cg-bin-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn shipped_config_checks_ok() {
    let out = Command::new(BIN)
        .arg("check-config")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("config.toml: OK"));
    assert!(stdout.contains("legacy") && stdout.contains("orders"));
}

#[test]
fn every_config_problem_is_reported_at_once_naming_its_key() {
    let dir = temp_dir("badcfg");
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        r#"
[server]
listn = "127.0.0.1:0"
trusted_proxies = ["10.0.0.0/33"]
[cognito]
issuer = "https://issuer.example/pool"
[cognito.jwks]
url = "${CG_TEST_UNSET_VARIABLE}"
[[routes]]
name = "a"
path_prefix = "/a"
upstream = "builtin:echo"
auth = ["none"]
[[routes]]
name = "b"
path_prefix = "/b"
upstream = "htp:/x"
auth = ["jwt", "magic"]
timeout = "5 parsecs"
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .env_remove("CG_TEST_UNSET_VARIABLE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in [
        "server.listn: unknown key",
        "server.trusted_proxies[0]: not a CIDR or IP address: \"10.0.0.0/33\"",
        "cognito.jwks.url: environment variable CG_TEST_UNSET_VARIABLE is not set",
        "cognito.app_clients: required",
        "routes[1].upstream: not a URL: \"htp:/x\"",
        "routes[1].auth[1]: unknown auth method \"magic\"",
        "routes[1].timeout: not a duration: \"5 parsecs\"",
    ] {
        assert!(
            stderr.lines().any(|l| l.starts_with(line)),
            "missing line {line:?} in:\n{stderr}"
        );
    }
    // Unparseable TOML and a missing file are clear one-line errors too.
    std::fs::write(&path, "[server\nlisten=").unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid TOML"));
    let out = Command::new(BIN)
        .args(["check-config", "--config", "/nonexistent/cg.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

fn jwt_config(dir: &std::path::Path, extra: &str) -> PathBuf {
    let k1 = TestKey::load("k1");
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, serde_json::json!({ "keys": [k1.jwk] }).to_string()).unwrap();
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
shutdown_drain = "300ms"
shutdown_grace = "10s"
{extra}
[cognito]
issuer = "{ISSUER}"
app_clients = []
[cognito.jwks]
file = "{}"
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
"#,
            jwks.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn verify_token_explains_allow_and_deny() {
    let dir = temp_dir("verify");
    let cfg = jwt_config(&dir, "");
    let k1 = TestKey::load("k1");
    let token = k1.sign(&id_claims());
    let signature = token.rsplit('.').next().unwrap().to_string();
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(BIN)
            .arg("verify-token")
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(s) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run(&[&token], None);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("decision: allow") && out.contains("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
    );
    assert!(!out.contains(&signature), "the signature is never printed");
    let (code, out) = run(&["-"], Some(&format!("Bearer {token}\n")));
    assert_eq!(code, Some(0), "{out}");
    let expired = k1.sign(&with(id_claims(), serde_json::json!({"exp": now() - 5})));
    let (code, out) = run(&[&expired], None);
    assert_eq!(code, Some(2));
    assert!(
        out.contains("decision: deny") && out.contains("check:    exp"),
        "{out}"
    );
    let (code, out) = run(&["--route", "finance", &token], None);
    assert_eq!(code, Some(2));
    assert!(out.contains("check:    groups"), "{out}");
    let (code, out) = run(&["garbage"], None);
    assert_eq!((code, out.contains("check:    format")), (Some(2), true));
    let (code, _) = run(&["--route", "nosuch", &token], None);
    assert_eq!(code, Some(1));
}

/// Starts the binary, returns it with its stderr reader and the main listener's address.
fn spawn(
    cfg: &std::path::Path,
    envs: &[(&str, &str)],
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<String>,
    String,
) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(cfg)
        .envs(envs.iter().copied())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let Ok(line) =
            rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the gateway never logged its listener");
        };
        if let Some(i) = line.find("listening addr=Some(") {
            let rest = &line[i + "listening addr=Some(".len()..];
            let addr = rest[..rest.find(')').unwrap()].to_string();
            return (child, rx, addr);
        }
    }
}

fn sigterm(child: &std::process::Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[tokio::test]
async fn sigterm_drains_exits_zero_and_no_token_reaches_the_log() {
    let dir = temp_dir("sigterm");
    // One worker thread: the single-threaded runtime serves, drains and stops.
    let cfg = jwt_config(&dir, "worker_threads = 1");
    let (mut child, rx, addr) = spawn(&cfg, &[("RUST_LOG", "trace")]);
    let k1 = TestKey::load("k1");
    let k3 = TestKey::load("k3");
    let tokens = [
        k1.sign(&id_claims()),
        k1.sign(&with(id_claims(), serde_json::json!({"exp": now() - 5}))),
        k3.sign_as("k1", &id_claims()),
        "not.a.token".to_string(),
    ];
    let c = client();
    let mut statuses = Vec::new();
    for t in &tokens {
        statuses.push(
            get(
                &c,
                &format!("http://{addr}/id/x"),
                Some(&format!("Bearer {t}")),
            )
            .await
            .0,
        );
    }
    assert_eq!(statuses, vec![200, 401, 401, 401]);
    sigterm(&child, "-TERM");
    // While draining, readiness fails but requests are still answered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while get(&c, &format!("http://{addr}/readyz"), None).await.0 != 503 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness never failed"
        );
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let log: Vec<String> = rx.try_iter().collect();
    let log = log.join("\n");
    assert!(
        log.contains("cognito_gate::access"),
        "access events are logged"
    );
    for t in &tokens {
        for part in t.split('.').filter(|p| p.len() > 8) {
            assert!(!log.contains(part), "token text in the log");
        }
    }
}

#[tokio::test]
async fn sigint_exits_zero_and_json_logs_one_access_event_per_request() {
    let dir = temp_dir("sigint");
    // Two worker threads: the multi-threaded runtime, whatever the machine's core count.
    let cfg = jwt_config(&dir, "worker_threads = 2\n[log]\nformat = \"json\"\n");
    let (mut child, rx, addr) = {
        // The JSON listener line carries the address in a field.
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .env_remove("RUST_LOG")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let addr = loop {
            let line = rx.recv_timeout(Duration::from_secs(20)).expect("log line");
            let v: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
            if v["message"] == "listening" {
                let a = v["addr"].as_str().unwrap();
                break a
                    .trim_start_matches("Some(")
                    .trim_end_matches(')')
                    .to_string();
            }
        };
        (child, rx, addr)
    };
    let c = client();
    for _ in 0..3 {
        assert_eq!(get(&c, &format!("http://{addr}/id/x"), None).await.0, 401);
    }
    sigterm(&child, "-INT");
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let lines: Vec<serde_json::Value> = rx
        .try_iter()
        .map(|l| serde_json::from_str(&l).expect("every line is JSON"))
        .collect();
    let access = lines
        .iter()
        .filter(|v| v["target"] == "cognito_gate::access")
        .count();
    assert_eq!(access, 3, "one access event per request");
}

#[test]
fn busy_port_is_a_clear_error() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let dir = temp_dir("busy");
    let path = dir.join("c.toml");
    std::fs::write(
        &path,
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[[routes]]\nname = \"a\"\npath_prefix = \"/\"\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains(&format!("cannot listen on 127.0.0.1:{port}")));
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn no_password_secret_or_token_in_the_log_of_the_exchange() {
    let dir = temp_dir("exchange-log");
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).unwrap();
    let mut text = shipped.clone();
    for port in ["8080", "8443", "9901", "4577"] {
        text = text.replace(&format!("127.0.0.1:{port}"), "127.0.0.1:0");
    }
    let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/");
    text = text.replace("\"certs/", &format!("\"{certs}"));
    let cfg = dir.join("config.toml");
    std::fs::write(&cfg, text).unwrap();
    let (mut child, rx, addr) = spawn(&cfg, &[("RUST_LOG", "trace")]);
    let c = client();
    let base = format!("http://{addr}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while get(&c, &format!("{base}/readyz"), None).await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ok = c
        .get(format!("{base}/legacy/x"))
        .basic_auth("test-user", Some("P@ssword01"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let forwarded: serde_json::Value = ok.json().await.unwrap();
    let bad = c
        .get(format!("{base}/legacy/x"))
        .basic_auth("test-user", Some("Wr0ng-P@ss"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let login = c
        .post(format!("{base}/auth/login"))
        .json(&serde_json::json!({"username": "test-user", "password": "P@ssword01"}))
        .send()
        .await
        .unwrap();
    let tokens: serde_json::Value = login.json().await.unwrap();
    assert_eq!(get(&c, &format!("{base}/batch/x"), None).await.0, 200);
    sigterm(&child, "-TERM");
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let log = rx.try_iter().collect::<Vec<_>>().join("\n");
    assert!(log.contains("cognito_gate::access"));
    let mut secrets = vec![
        "P@ssword01".to_string(),
        "Wr0ng-P@ss".to_string(),
        "svc-batch-P@ss1".to_string(),
        "dev-client-secret".to_string(),
        "dGVzdC11c2VyOlBAc3N3b3JkMDE".to_string(), // base64("test-user:P@ssword01")
    ];
    let bearer = forwarded["headers"]["authorization"]
        .as_str()
        .unwrap()
        .trim_start_matches("Bearer ");
    let result = &tokens["AuthenticationResult"];
    for t in [
        bearer,
        result["IdToken"].as_str().unwrap(),
        result["AccessToken"].as_str().unwrap(),
    ] {
        secrets.extend(t.split('.').filter(|p| p.len() > 16).map(str::to_string));
    }
    secrets.push(result["RefreshToken"].as_str().unwrap().to_string());
    for s in &secrets {
        assert!(
            !log.contains(s.as_str()),
            "a secret or token reached the log"
        );
    }
}

#[tokio::test]
async fn sighup_applies_a_good_config_and_rejects_a_bad_one() {
    let dir = temp_dir("sighup");
    let path = dir.join("config.toml");
    let route = |name: &str| {
        format!("[[routes]]\nname = \"{name}\"\npath_prefix = \"/{name}\"\nupstream = \"builtin:echo\"\nauth = [\"none\"]\n")
    };
    let head = "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_drain = \"0s\"\n";
    std::fs::write(&path, format!("{head}{}", route("one"))).unwrap();
    let (mut child, rx, addr) = spawn(&path, &[("RUST_LOG", "info")]);
    let c = client();
    assert_eq!(get(&c, &format!("http://{addr}/one/x"), None).await.0, 200);
    assert_eq!(get(&c, &format!("http://{addr}/two/x"), None).await.0, 404);

    let wait_for = |needle: &'static str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
                .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    };
    // A good configuration: the new route appears, the old one goes.
    std::fs::write(&path, format!("{head}{}", route("two"))).unwrap();
    sigterm(&child, "-HUP");
    wait_for("configuration reloaded");
    assert_eq!(get(&c, &format!("http://{addr}/two/x"), None).await.0, 200);
    assert_eq!(get(&c, &format!("http://{addr}/one/x"), None).await.0, 404);

    // A bad one is rejected key by key; the running configuration keeps serving.
    std::fs::write(
        &path,
        format!("{head}{}timeout = \"soon\"\n", route("three")),
    )
    .unwrap();
    sigterm(&child, "-HUP");
    let line = wait_for("reload rejected");
    assert!(line.contains("routes[0].timeout"), "{line}");
    assert_eq!(get(&c, &format!("http://{addr}/two/x"), None).await.0, 200);
    assert_eq!(
        get(&c, &format!("http://{addr}/three/x"), None).await.0,
        404
    );

    sigterm(&child, "-TERM");
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
