//! The shipped config.toml end to end, with its embedded dev IdP: every listener moved to
//! 127.0.0.1:0, then HTTP Basic exchanged for tokens, the login API (login, refresh,
//! NEW_PASSWORD_REQUIRED), its tokens on jwt routes, the service-account route, and the dev
//! IdP stopping with the gateway.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use serde_json::{json, Value};

/// The shipped configuration with every listen port (and the URLs naming the dev IdP) on port 0.
fn shipped_on_free_ports() -> cognito_gate::config::Config {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"))
        .expect("config.toml");
    let mut replaced = text.clone();
    for port in ["8080", "8443", "9901", "4577"] {
        let from = format!("127.0.0.1:{port}");
        assert!(text.contains(&from), "config.toml no longer names {from}");
        replaced = replaced.replace(&from, "127.0.0.1:0");
    }
    config(&replaced)
}

fn claims(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn kid(token: &str) -> String {
    let part = token.split('.').next().unwrap();
    let h: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap();
    h["kid"].as_str().unwrap().to_string()
}

async fn post_json(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let resp = client.post(url).json(&body).send().await.expect("sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn bearer_of(echo: &Value) -> &str {
    echo["headers"]["authorization"]
        .as_str()
        .and_then(|a| a.strip_prefix("Bearer "))
        .expect("forwarded with a Bearer token")
}

#[tokio::test]
async fn the_shipped_config_runs_end_to_end_on_the_dev_idp() {
    let gw = start_ready(shipped_on_free_ports()).await;
    let idp = gw.dev_idp_addr.expect("the dev IdP runs");
    assert_ne!(idp.port(), 0);
    // The URLs that named the dev IdP's port 0 follow it to the port it bound.
    let cfg = &gw.gateway().config;
    let jwks_url = cfg
        .cognito
        .as_ref()
        .unwrap()
        .first()
        .jwks
        .url
        .as_ref()
        .unwrap();
    assert_eq!(jwks_url.as_str(), format!("http://{idp}/dev/jwks"));
    let api_url = &cfg.private_api.as_ref().unwrap().base_url;
    assert_eq!(api_url.as_str(), format!("http://{idp}/dev"));
    let base = format!("http://{}", gw.http_addr.unwrap());
    let client = client();

    // The dev IdP publishes the same keys as the shipped seed file.
    let (status, _, jwks) = get(&client, &format!("http://{idp}/dev/jwks"), None).await;
    assert_eq!(status, 200);
    let shipped: Value = serde_json::from_slice(
        &std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-jwks.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(jwks, shipped);

    // HTTP Basic: exchanged through the dev IdP, forwarded to builtin:echo with the ID token.
    let basic = |user: &str, pass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    let (status, _, echo) = get(
        &client,
        &format!("{base}/legacy/report"),
        Some(&basic("test-user", "P@ssword01")),
    )
    .await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(echo["path"], "/legacy/report");
    let id = bearer_of(&echo);
    assert_eq!(kid(id), "dev-idp-1");
    let c = claims(id);
    assert_eq!(c["token_use"], "id");
    assert_eq!(c["aud"], "dev-client");
    assert_eq!(c["cognito:username"], "test-user");
    assert_eq!(echo["headers"]["x-cognito-sub"], c["sub"]);
    assert_eq!(echo["headers"]["x-cognito-groups"], "admins");

    let (status, headers, body) = get(
        &client,
        &format!("{base}/legacy/report"),
        Some(&basic("test-user", "wrong")),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(headers["www-authenticate"], "Basic realm=\"cognito-gate\"");

    // The login API, then its ID token on the jwt route.
    let (status, login) = post_json(
        &client,
        &format!("{base}/auth/login"),
        json!({ "username": "test-user", "password": "P@ssword01" }),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let r = &login["AuthenticationResult"];
    let (id, access) = (
        r["IdToken"].as_str().unwrap(),
        r["AccessToken"].as_str().unwrap(),
    );
    assert_eq!(kid(access), "dev-idp-2");
    assert_eq!(r["ExpiresIn"], 3600);
    let (status, _, echo) = get(
        &client,
        &format!("{base}/orders/42"),
        Some(&format!("Bearer {id}")),
    )
    .await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(echo["headers"]["x-cognito-username"], "test-user");
    assert_eq!(echo["headers"]["x-cognito-groups"], "admins");
    let (status, _, _) = get(
        &client,
        &format!("{base}/admin/x"),
        Some(&format!("Bearer {id}")),
    )
    .await;
    assert_eq!(status, 200, "test-user is in admins");
    // A route without scopes takes ID tokens only, like the Cognito authorizer.
    let (status, _, _) = get(
        &client,
        &format!("{base}/orders/42"),
        Some(&format!("Bearer {access}")),
    )
    .await;
    assert_eq!(status, 401);

    // Refresh: new tokens from the same origin, no new refresh token.
    let (status, refreshed) = post_json(
        &client,
        &format!("{base}/auth/refresh"),
        json!({ "refresh_token": r["RefreshToken"], "username": "test-user" }),
    )
    .await;
    assert_eq!(status, 200, "{refreshed}");
    let rr = &refreshed["AuthenticationResult"];
    assert!(rr.get("RefreshToken").is_none());
    assert_eq!(
        claims(rr["IdToken"].as_str().unwrap())["origin_jti"],
        claims(id)["origin_jti"]
    );

    // NEW_PASSWORD_REQUIRED through the login API.
    let (status, challenge) = post_json(
        &client,
        &format!("{base}/auth/login"),
        json!({ "username": "new-user", "password": "Welcome-1234" }),
    )
    .await;
    assert_eq!(status, 200, "{challenge}");
    assert_eq!(challenge["ChallengeName"], "NEW_PASSWORD_REQUIRED");
    let (status, done) = post_json(
        &client,
        &format!("{base}/auth/challenge"),
        json!({ "challenge_name": "NEW_PASSWORD_REQUIRED", "session": challenge["Session"],
                "username": "new-user", "responses": { "NEW_PASSWORD": "Chosen-P@ss9" } }),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    let new_id = done["AuthenticationResult"]["IdToken"].as_str().unwrap();
    assert_eq!(claims(new_id)["cognito:username"], "new-user");
    let (status, again) = post_json(
        &client,
        &format!("{base}/auth/login"),
        json!({ "username": "new-user", "password": "Chosen-P@ss9" }),
    )
    .await;
    assert_eq!(status, 200);
    assert!(again["AuthenticationResult"].is_object(), "{again}");

    // The service-account route forwards the gateway's own svc-batch token.
    let (status, _, echo) = get(&client, &format!("{base}/batch/jobs"), None).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(claims(bearer_of(&echo))["cognito:username"], "svc-batch");

    // scripts/dev-token.sh's tokens (kid dev-idp-1, signed with certs/dev-idp.key) still pass.
    let pem = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-idp.key")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("dev-idp-1".into());
    let script_like = jsonwebtoken::encode(
        &header,
        &with(
            claims(id),
            json!({ "cognito:username": "bob", "cognito:groups": ["readers"] }),
        ),
        &key,
    )
    .unwrap();
    let (status, _, echo) = get(
        &client,
        &format!("{base}/orders/1"),
        Some(&format!("Bearer {script_like}")),
    )
    .await;
    assert_eq!(status, 200, "{echo}");
    let (status, _, _) = get(
        &client,
        &format!("{base}/admin/x"),
        Some(&format!("Bearer {script_like}")),
    )
    .await;
    assert_eq!(status, 403);

    // The dev IdP stops with the gateway.
    gw.shutdown().await;
    assert!(client
        .get(format!("http://{idp}/dev/jwks"))
        .send()
        .await
        .is_err());
}

/// Without `[private_api]` the gateway calls the dev IdP; without `signing_keys` the dev IdP
/// generates fresh keys, which the gateway fetches from its JWKS (no seed file).
#[tokio::test]
async fn fresh_keys_fetched_from_the_dev_idp_and_an_implicit_private_api() {
    let cfg = config(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_drain = "0s"

[cognito]
issuer = "http://dev-idp.local/pool-1"
app_clients = ["client-1"]
[cognito.jwks]
url = "http://127.0.0.1:0/dev/jwks"

[exchange]
client_id = "client-1"
user_pool_id = "pool-1"

[login_api]

[dev_idp]
listen = "127.0.0.1:0"
token_lifetime = "5m"
[[dev_idp.users]]
username = "alice"
password = "alice-P@ss1"

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "builtin:echo"
auth = ["jwt", "basic"]
"#,
    );
    let gw = start_ready(cfg).await;
    let idp = gw.dev_idp_addr.unwrap();
    let gateway = gw.gateway();
    let api_url = &gateway.config.private_api.as_ref().unwrap().base_url;
    assert_eq!(api_url.as_str(), format!("http://{idp}/dev"));
    let base = format!("http://{}", gw.http_addr.unwrap());
    let client = client();

    let (status, login) = post_json(
        &client,
        &format!("{base}/auth/login"),
        json!({ "username": "alice", "password": "alice-P@ss1" }),
    )
    .await;
    assert_eq!(status, 200, "{login}");
    let id = login["AuthenticationResult"]["IdToken"].as_str().unwrap();
    assert!(kid(id).starts_with("dev-idp-id-"), "{}", kid(id));
    assert_eq!(claims(id)["iss"], "http://dev-idp.local/pool-1");
    assert_eq!(login["AuthenticationResult"]["ExpiresIn"], 300);
    let (status, _, echo) = get(
        &client,
        &format!("{base}/api/x"),
        Some(&format!("Bearer {id}")),
    )
    .await;
    assert_eq!(status, 200, "{echo}");
    let (status, body) = post_json(
        &client,
        &format!("{base}/auth/login"),
        json!({ "username": "alice", "password": "nope" }),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    gw.shutdown().await;
}

/// `aws check` on the shipped configuration, pointed at a running dev IdP: every line passes.
/// With a wrong client secret, the SECRET_HASH line says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_check_passes_against_the_dev_idp_and_names_a_wrong_client_secret() {
    let gw = start_ready(shipped_on_free_ports()).await;
    let idp = gw.dev_idp_addr.expect("the dev IdP runs");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"))
        .expect("config.toml")
        .replace("127.0.0.1:4577", &idp.to_string())
        .replace(
            "\"certs/",
            concat!("\"", env!("CARGO_MANIFEST_DIR"), "/certs/"),
        );
    let dir = TempDir::new("aws-check-dev-idp");
    let check = |toml: String| {
        let path = dir.write("check.toml", &toml);
        async move {
            let cmd =
                common::binary::command(&["aws", "check", "--config", path.to_str().unwrap()]);
            common::binary::run(cmd, None).await
        }
    };
    let out = check(text.clone()).await;
    assert_eq!(out.code, Some(0), "{out}");
    for want in [
        format!("PASS  jwks[default]: 2 key(s) from http://{idp}/dev/jwks"),
        "PASS  private API: the private API reached Cognito, which answered".to_string(),
        "PASS  x-apigw-api-id: not needed".to_string(),
        "PASS  SECRET_HASH: sent, and Cognito did not object".to_string(),
        "all checks passed".to_string(),
    ] {
        assert!(out.stdout.contains(&want), "want {want:?}\n{out}");
    }
    let wrong = text.replace(
        "client_secret = \"dev-client-secret\"",
        "client_secret = \"not-the-client-secret\"",
    );
    assert_ne!(wrong, text);
    let out = check(wrong).await;
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stdout
            .contains("FAIL  SECRET_HASH: Cognito could not verify the SECRET_HASH")
            && out
                .stdout
                .contains("fix: exchange.client_secret is not the secret of app client dev-client"),
        "{out}"
    );
    assert!(
        !out.stdout.contains("not-the-client-secret"),
        "no secret in the output\n{out}"
    );
}
