//! The credential exchange against moto (a third-party Cognito emulator, ../shared/MOTO.md),
//! through a small API-Gateway-like layer that maps `POST /dev/<action>` to moto's JSON 1.1 API
//! and, like a private API with only the default integration response, answers Cognito errors
//! with HTTP 200. Also the `cognito-idp` style directly against moto.
//!
//! moto comes from `MOTO_PYTHON` (scripts/test.sh installs it in `.venv-moto`). Without it the
//! tests skip, except with `CI=true`, where they fail.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::{Request, Response};
use serde_json::{json, Value};

const REGION: &str = "ap-northeast-1";
const SIGV4: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/ap-northeast-1/cognito-idp/aws4_request, SignedHeaders=host, Signature=0";

struct Moto {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts moto, or returns `None` (skip) when it is not installed and this is not CI.
fn start_moto() -> Option<Moto> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let Ok(python) = std::env::var("MOTO_PYTHON") else {
        assert!(
            !ci,
            "MOTO_PYTHON is not set: run the tests with scripts/test.sh"
        );
        eprintln!("skipping: MOTO_PYTHON is not set (scripts/test.sh installs moto)");
        return None;
    };
    let mut child = match Command::new(&python)
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            assert!(!ci, "cannot start moto with {python}: {e}");
            eprintln!("skipping: cannot start moto: {e}");
            return None;
        }
    };
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(i) = line.find("Running on http://") {
                let _ = tx.send(line[i + "Running on ".len()..].trim().to_string());
            }
        }
    });
    let Ok(url) = rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("moto did not report its address");
    };
    Some(Moto {
        child,
        url,
        http: reqwest::Client::new(),
    })
}

impl Moto {
    async fn call(&self, action: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(&self.url)
            .header("content-type", "application/x-amz-json-1.1")
            .header(
                "x-amz-target",
                format!("AWSCognitoIdentityProviderService.{action}"),
            )
            .header("authorization", SIGV4)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{action}: {status} {v}");
        v
    }
}

struct Pool {
    id: String,
    client_id: String,
    client_secret: String,
}

async fn seed(m: &Moto) -> Pool {
    let pool = m.call("CreateUserPool", json!({"PoolName": "gate"})).await;
    let id = pool["UserPool"]["Id"].as_str().unwrap().to_string();
    let client = m
        .call(
            "CreateUserPoolClient",
            json!({"UserPoolId": id, "ClientName": "gate", "GenerateSecret": true,
                "ExplicitAuthFlows": ["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_USER_PASSWORD_AUTH",
                    "ALLOW_REFRESH_TOKEN_AUTH"]}),
        )
        .await;
    let client_id = client["UserPoolClient"]["ClientId"]
        .as_str()
        .unwrap()
        .to_string();
    let client_secret = client["UserPoolClient"]["ClientSecret"]
        .as_str()
        .unwrap()
        .to_string();
    for user in ["alice", "svc-batch"] {
        m.call(
            "AdminCreateUser",
            json!({"UserPoolId": id, "Username": user,
            "UserAttributes": [{"Name": "email", "Value": format!("{user}@example.com")}]}),
        )
        .await;
        m.call(
            "AdminSetUserPassword",
            json!({"UserPoolId": id, "Username": user,
            "Password": format!("Pw-{user}-1234"), "Permanent": true}),
        )
        .await;
    }
    m.call(
        "AdminCreateUser",
        json!({"UserPoolId": id, "Username": "newbie",
        "TemporaryPassword": "Temp-1234-abcd"}),
    )
    .await;
    m.call(
        "CreateGroup",
        json!({"UserPoolId": id, "GroupName": "admins"}),
    )
    .await;
    m.call(
        "AdminAddUserToGroup",
        json!({"UserPoolId": id, "Username": "alice", "GroupName": "admins"}),
    )
    .await;
    Pool {
        id,
        client_id,
        client_secret,
    }
}

/// The private API Gateway stand-in: `POST /dev/<resource>` -> moto action; Cognito errors as
/// HTTP 200; moto's HTML 500 as API Gateway's 502. Counts calls.
async fn api_gateway(moto_url: String) -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let addr = serve_fn(Arc::new(move |req: Request<Bytes>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let action = match req.uri().path() {
            "/dev/admin-initiate-auth" => "AdminInitiateAuth",
            "/dev/admin-respond-to-auth-challenge" => "AdminRespondToAuthChallenge",
            "/dev/initiate-auth" => "InitiateAuth",
            "/dev/respond-to-auth-challenge" => "RespondToAuthChallenge",
            _ => {
                return Response::builder()
                    .status(403)
                    .body(Full::new(Bytes::from_static(
                        br#"{"message":"Missing Authentication Token"}"#,
                    )))
                    .unwrap()
            }
        };
        // The handler is synchronous; the upstream call runs on a helper thread.
        let url = moto_url.clone();
        let body = req.body().clone();
        let (status, text) = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let resp = reqwest::Client::new()
                    .post(url)
                    .header("content-type", "application/x-amz-json-1.1")
                    .header(
                        "x-amz-target",
                        format!("AWSCognitoIdentityProviderService.{action}"),
                    )
                    .header("authorization", SIGV4)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                (
                    resp.status().as_u16(),
                    resp.text().await.unwrap_or_default(),
                )
            })
        })
        .join()
        .unwrap();
        if status >= 500 && serde_json::from_str::<Value>(&text).is_err() {
            return Response::builder()
                .status(502)
                .body(Full::new(Bytes::from_static(
                    br#"{"message": "Internal server error"}"#,
                )))
                .unwrap();
        }
        Response::new(Full::new(Bytes::from(text)))
    }))
    .await;
    (addr, calls)
}

fn gateway_toml(m: &Moto, pool: &Pool, private_api: &str, upstream: &str) -> String {
    let moto_port = m.url.rsplit(':').next().unwrap();
    format!(
        r#"[server]
listen = "127.0.0.1:0"
[cognito]
issuer = "https://cognito-idp.{REGION}.amazonaws.com/{pool_id}"
app_clients = ["{client}"]
[cognito.jwks]
url = "http://127.0.0.1:{moto_port}/{pool_id}/.well-known/jwks.json"
{private_api}
[exchange]
client_id = "{client}"
client_secret = "{secret}"
user_pool_id = "{pool_id}"
[service_accounts.batch]
username = "svc-batch"
password = "Pw-svc-batch-1234"
[login_api]
path_prefix = "/auth"
[[routes]]
name = "legacy"
path_prefix = "/legacy"
upstream = "{upstream}"
auth = ["basic"]
groups = ["admins"]
claim_headers = {{ "x-cognito-groups" = "cognito:groups", "x-cognito-username" = "cognito:username" }}
[[routes]]
name = "batch"
path_prefix = "/batch"
upstream = "{upstream}"
auth = ["service"]
service_account = "batch"
allow_from = ["127.0.0.0/8"]
"#,
        pool_id = pool.id,
        client = pool.client_id,
        secret = pool.client_secret,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_through_an_api_gateway_in_front_of_moto() {
    let Some(moto) = start_moto() else { return };
    let pool = seed(&moto).await;
    let (shim, calls) = api_gateway(moto.url.clone()).await;
    let up = EchoUpstream::start().await;
    let private_api =
        format!("[private_api]\nbase_url = \"http://{shim}/dev\"\nstyle = \"apigateway\"\n");
    let gw = start_ready(config(&gateway_toml(&moto, &pool, &private_api, &up.url()))).await;
    let base = format!("http://{}", gw.http_addr.unwrap());
    let c = client();

    // Basic happy path: forwarded with the ID token and claims; one login for many requests.
    let before = calls.load(Ordering::SeqCst);
    for _ in 0..5 {
        let resp = c
            .get(format!("{base}/legacy/r"))
            .basic_auth("alice", Some("Pw-alice-1234"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let seen: Value = resp.json().await.unwrap();
        assert!(seen["headers"]["authorization"]
            .as_str()
            .unwrap()
            .starts_with("Bearer ey"));
        assert_eq!(seen["headers"]["x-cognito-groups"], "admins");
        assert_eq!(seen["headers"]["x-cognito-username"], "alice");
    }
    assert_eq!(calls.load(Ordering::SeqCst) - before, 1, "one login");

    // Wrong password and unknown user: the same 401 with the Basic challenge.
    for (user, pw) in [("alice", "wrong-password"), ("nobody", "whatever-1")] {
        let resp = c
            .get(format!("{base}/legacy/r"))
            .basic_auth(user, Some(pw))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{user}");
        assert_eq!(
            resp.headers()["www-authenticate"],
            "Basic realm=\"cognito-gate\""
        );
        assert_eq!(
            resp.json::<Value>().await.unwrap(),
            json!({"message": "Unauthorized"})
        );
    }
    // A user in FORCE_CHANGE_PASSWORD cannot use Basic.
    let resp = c
        .get(format!("{base}/legacy/r"))
        .basic_auth("newbie", Some("Temp-1234-abcd"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Login API: wrong password and unknown user look the same.
    let login = |body: Value| {
        let c = c.clone();
        let url = format!("{base}/auth/login");
        async move {
            let r = c.post(url).json(&body).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let denied = (401, json!({"message": "Incorrect username or password."}));
    assert_eq!(
        login(json!({"username": "alice", "password": "nope-nope"})).await,
        denied
    );
    assert_eq!(
        login(json!({"username": "ghost", "password": "nope-nope"})).await,
        denied
    );

    // NEW_PASSWORD_REQUIRED through the login API.
    let (status, challenge) =
        login(json!({"username": "newbie", "password": "Temp-1234-abcd"})).await;
    assert_eq!(
        (status, challenge["ChallengeName"].as_str()),
        (200, Some("NEW_PASSWORD_REQUIRED")),
        "{challenge}"
    );
    let resp = c
        .post(format!("{base}/auth/challenge"))
        .json(
            &json!({"challenge_name": "NEW_PASSWORD_REQUIRED", "session": challenge["Session"],
            "username": "newbie", "responses": {"NEW_PASSWORD": "Brand-new-Pw-42"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let done: Value = resp.json().await.unwrap();
    assert!(
        done["AuthenticationResult"]["IdToken"].is_string(),
        "{done}"
    );

    // Refresh with the secret-bearing client (moto checks SECRET_HASH on this call).
    let (status, tokens) = login(json!({"username": "alice", "password": "Pw-alice-1234"})).await;
    assert_eq!(status, 200);
    let refresh_token = tokens["AuthenticationResult"]["RefreshToken"]
        .as_str()
        .unwrap();
    let resp = c
        .post(format!("{base}/auth/refresh"))
        .json(&json!({"refresh_token": refresh_token, "username": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let refreshed: Value = resp.json().await.unwrap();
    assert!(
        refreshed["AuthenticationResult"]["AccessToken"].is_string(),
        "{refreshed}"
    );
    // An unknown refresh token (moto answers HTML 500 to the admin variant; the InitiateAuth
    // variant used here answers an error) never yields a 500 from the gateway.
    let resp = c
        .post(format!("{base}/auth/refresh"))
        .json(
            &json!({"refresh_token": "00000000-0000-0000-0000-000000000000", "username": "alice"}),
        )
        .send()
        .await
        .unwrap();
    assert!(
        matches!(resp.status().as_u16(), 401 | 502 | 503),
        "{}",
        resp.status()
    );

    // The service account route: forwarded with the account's token; ready only with it.
    assert_eq!(get(&c, &format!("{base}/readyz"), None).await.0, 200);
    let (status, _, seen) = get(&c, &format!("{base}/batch/jobs"), None).await;
    assert_eq!(status, 200);
    let auth = seen["headers"]["authorization"].as_str().unwrap();
    let payload = auth
        .trim_start_matches("Bearer ")
        .split('.')
        .nth(1)
        .unwrap();
    use base64::Engine;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["cognito:username"], "svc-batch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cognito_idp_style_directly_against_moto() {
    let Some(moto) = start_moto() else { return };
    let pool = seed(&moto).await;
    let up = EchoUpstream::start().await;
    let private_api = format!(
        "[private_api]\nbase_url = \"{}\"\nstyle = \"cognito-idp\"\nheaders = {{ \"authorization\" = \"{SIGV4}\" }}\n",
        moto.url
    );
    let toml = gateway_toml(&moto, &pool, &private_api, &up.url()).replace(
        "user_pool_id =",
        "auth_flow = \"USER_PASSWORD_AUTH\"\nuser_pool_id =",
    );
    let gw = start_ready(config(&toml)).await;
    let base = format!("http://{}", gw.http_addr.unwrap());
    let c = client();
    let resp = c
        .get(format!("{base}/legacy/r"))
        .basic_auth("alice", Some("Pw-alice-1234"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.unwrap();
    assert_eq!(seen["headers"]["x-cognito-username"], "alice");
    let resp = c
        .get(format!("{base}/legacy/r"))
        .basic_auth("alice", Some("bad-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}
