//! The credential exchange against moto (a third-party Cognito emulator, ../shared/MOTO.md),
//! through a small API-Gateway-like layer that maps `POST /dev/<action>` to moto's JSON 1.1 API
//! and, like a private API with only the default integration response, answers Cognito errors
//! with HTTP 200. Also the `cognito-idp` style directly against moto.
//!
//! moto comes from `MOTO_PYTHON` (scripts/test.sh installs it in `.venv-moto`). Without it the
//! tests skip, except with `CI=true`, where they fail.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::binary;
use crate::common::*;
use bytes::Bytes;
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
    start_moto_with(&[])
}

fn start_moto_with(envs: &[(&str, &str)]) -> Option<Moto> {
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
        .envs(envs.iter().copied())
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

/// How the API Gateway stand-in behaves.
#[derive(Default, Clone)]
struct StandIn {
    /// Like a call to the VPC endpoint's own hostname: without `x-apigw-api-id: <id>` API
    /// Gateway cannot tell which API is meant and answers 403 Forbidden.
    api_id: Option<String>,
    /// The integration's execution role: calls to moto are SigV4-signed with these keys (moto
    /// with IAM enforcement checks them); otherwise a routing-only header.
    role: Option<AwsKeys>,
}

/// The private API Gateway stand-in: `POST /dev/<resource>` -> moto action; Cognito errors as
/// HTTP 200; moto's HTML 500 as API Gateway's 502. Counts calls.
async fn api_gateway(moto_url: String) -> (std::net::SocketAddr, Arc<AtomicU64>) {
    api_gateway_with(moto_url, StandIn::default()).await
}

async fn api_gateway_with(
    moto_url: String,
    opts: StandIn,
) -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    let addr = serve_fn(Arc::new(move |req: Request<Bytes>| {
        counter.fetch_add(1, Ordering::SeqCst);
        if let Some(id) = &opts.api_id {
            if req.headers().get("x-apigw-api-id").and_then(|v| v.to_str().ok()) != Some(id) {
                return Response::builder()
                    .status(403)
                    .body(Full::new(Bytes::from_static(br#"{"message":"Forbidden"}"#)))
                    .unwrap();
            }
        }
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
        let role = opts.role.clone();
        let (status, text) = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let target = format!("AWSCognitoIdentityProviderService.{action}");
                let mut req = reqwest::Client::new()
                    .post(&url)
                    .header("content-type", "application/x-amz-json-1.1")
                    .header("x-amz-target", &target);
                match role {
                    Some(k) => {
                        let creds = aws_credential_types::Credentials::new(k.id, k.secret, k.token, None, "role");
                        let signer = cognito_gate::exchange::sigv4::Signer::with_provider(REGION, creds);
                        let (headers, _) = signer
                            .sign(&format!("{url}/"), &[("content-type", "application/x-amz-json-1.1"), ("x-amz-target", &target)], &body)
                            .await
                            .unwrap();
                        for (k, v) in headers {
                            req = req.header(k, v);
                        }
                    }
                    None => req = req.header("authorization", SIGV4),
                }
                let resp = req.body(body).send().await.unwrap();
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
        // moto answers IAM refusals as XML; Cognito answers them as JSON 1.1, which the default
        // integration response passes through as HTTP 200.
        if text.starts_with("<?xml") {
            let code = xml_value(&text, "Code");
            let message = xml_value(&text, "Message");
            let body = json!({"__type": format!("{code}Exception").replace("ExceptionException", "Exception"), "message": message});
            return Response::new(Full::new(Bytes::from(body.to_string())));
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

// ---------------------------------------------------------------------------------------------
// SigV4 straight to Cognito, checked for real: moto with IAM enforcement verifies every
// signature against the IAM users and roles it created, and their policies.
// ---------------------------------------------------------------------------------------------

/// A SigV4-shaped header that only routes a seeding call (before enforcement starts) to a service.
fn routing_header(service: &str) -> String {
    format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0")
}

/// The text of the first `<tag>` in an XML answer.
fn xml_value(xml: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let start = xml
        .find(&open)
        .unwrap_or_else(|| panic!("no <{tag}> in {xml}"))
        + open.len();
    let len = xml[start..].find(&format!("</{tag}>")).unwrap();
    xml[start..start + len].to_string()
}

/// An IAM policy document allowing `actions` on every resource.
fn allow(actions: &[&str]) -> String {
    json!({"Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]})
    .to_string()
}

#[derive(Clone)]
struct AwsKeys {
    id: String,
    secret: String,
    token: Option<String>,
}

impl Moto {
    /// moto whose every request after the seeding must be SigV4-signed by an identity it knows.
    fn start_enforcing() -> Option<Moto> {
        start_moto_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "100000")])
    }

    /// A query-protocol call (IAM, STS) during seeding; the XML answer.
    async fn query(&self, service: &str, params: &[(&str, &str)]) -> String {
        let resp = self
            .http
            .post(&self.url)
            .header("authorization", routing_header(service))
            .form(params)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{service} {params:?}: {status} {text}");
        text
    }

    /// An IAM call during seeding (query protocol, API version 2010-05-08).
    async fn iam(&self, action: &str, params: &[(&str, &str)]) -> String {
        let mut all = vec![("Action", action), ("Version", "2010-05-08")];
        all.extend_from_slice(params);
        self.query("iam", &all).await
    }

    /// An IAM user allowed exactly `actions` (on every resource), and its access key.
    async fn iam_user(&self, name: &str, actions: &[&str]) -> AwsKeys {
        self.iam("CreateUser", &[("UserName", name)]).await;
        let policy = allow(actions);
        self.iam(
            "PutUserPolicy",
            &[
                ("UserName", name),
                ("PolicyName", "gateway"),
                ("PolicyDocument", &policy),
            ],
        )
        .await;
        let key = self.iam("CreateAccessKey", &[("UserName", name)]).await;
        AwsKeys {
            id: xml_value(&key, "AccessKeyId"),
            secret: xml_value(&key, "SecretAccessKey"),
            token: None,
        }
    }

    /// A role allowed exactly `actions`, and `sessions` sets of temporary credentials for it
    /// (what an ECS task role or IRSA hands out).
    async fn role_sessions(&self, name: &str, actions: &[&str], sessions: usize) -> Vec<AwsKeys> {
        let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
        let role = self
            .iam(
                "CreateRole",
                &[
                    ("RoleName", name),
                    ("AssumeRolePolicyDocument", &trust.to_string()),
                ],
            )
            .await;
        let arn = xml_value(&role, "Arn");
        let policy = allow(actions);
        self.iam(
            "PutRolePolicy",
            &[
                ("RoleName", name),
                ("PolicyName", "gateway"),
                ("PolicyDocument", &policy),
            ],
        )
        .await;
        let mut out = Vec::new();
        for i in 0..sessions {
            let session = format!("task-{i}");
            let c = self
                .query(
                    "sts",
                    &[
                        ("Action", "AssumeRole"),
                        ("Version", "2011-06-15"),
                        ("RoleArn", &arn),
                        ("RoleSessionName", &session),
                    ],
                )
                .await;
            out.push(AwsKeys {
                id: xml_value(&c, "AccessKeyId"),
                secret: xml_value(&c, "SecretAccessKey"),
                token: Some(xml_value(&c, "SessionToken")),
            });
        }
        out
    }

    /// From now on every request must be signed.
    async fn enforce(&self) {
        let resp = self
            .http
            .post(format!("{}/moto-api/reset-auth", self.url))
            .body("0")
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "reset-auth: {}", resp.status());
    }
}

const ADMIN_ACTIONS: &[&str] = &[
    "cognito-idp:AdminInitiateAuth",
    "cognito-idp:AdminRespondToAuthChallenge",
];

/// Enforcing moto with the seeded pool, an IAM identity allowed the admin actions and one that
/// is not; `None` to skip (no moto outside CI).
async fn enforcing_with_two_identities() -> Option<(Moto, Pool, AwsKeys, AwsKeys)> {
    let moto = Moto::start_enforcing()?;
    let pool = seed(&moto).await;
    let allowed = moto.iam_user("gateway", ADMIN_ACTIONS).await;
    let not_allowed = moto
        .iam_user("reader", &["cognito-idp:ListUserPools"])
        .await;
    moto.enforce().await;
    Some((moto, pool, allowed, not_allowed))
}

/// A gateway calling moto directly, Admin* actions signed with SigV4; Basic on /legacy.
fn sigv4_toml(m: &Moto, pool: &Pool, upstream: &str) -> String {
    let moto_port = m.url.rsplit(':').next().unwrap();
    format!(
        r#"[server]
listen = "127.0.0.1:0"
[log]
format = "json"
[cognito]
issuer = "https://cognito-idp.{REGION}.amazonaws.com/{pool_id}"
app_clients = ["{client}"]
[cognito.jwks]
url = "http://127.0.0.1:{moto_port}/{pool_id}/.well-known/jwks.json"
[private_api]
base_url = "{moto}"
style = "cognito-idp"
sign = "sigv4"
[exchange]
client_id = "{client}"
client_secret = "{secret}"
user_pool_id = "{pool_id}"
[[routes]]
name = "legacy"
path_prefix = "/legacy"
upstream = "{upstream}"
auth = ["basic"]
claim_headers = {{ "x-cognito-username" = "cognito:username" }}
"#,
        moto = m.url,
        pool_id = pool.id,
        client = pool.client_id,
        secret = pool.client_secret,
    )
}

/// The environment of a gateway process that finds credentials only where a test puts them:
/// no shared config or credentials files, no instance metadata.
fn aws_env<'a>(dir: &TempDir, extra: &[(&'a str, &'a str)]) -> Vec<(String, String)> {
    let none = dir.0.join("no-such-file").to_string_lossy().into_owned();
    let mut env: Vec<(String, String)> = vec![
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ("AWS_CONFIG_FILE".into(), none.clone()),
        ("AWS_SHARED_CREDENTIALS_FILE".into(), none),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

async fn served(dir: &TempDir, toml: &str, env: &[(String, String)]) -> binary::Served {
    let path = dir.write("gateway.toml", toml);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    binary::Served::start(&path, &env, false).await
}

async fn basic_status(s: &binary::Served, user: &str, password: &str) -> u16 {
    client()
        .get(s.url("/legacy/x"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `cognito-gate login` with the given environment; the password on stdin.
async fn cli_login(
    dir: &TempDir,
    toml: &str,
    env: &[(String, String)],
    user: &str,
    password: &str,
) -> binary::Out {
    let path = dir.write("login.toml", toml);
    let mut cmd = binary::command(&[
        "login",
        "--config",
        path.to_str().unwrap(),
        "--username",
        user,
    ]);
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    binary::run(cmd, Some(&format!("{password}\n"))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigv4_signed_admin_calls_are_accepted_by_moto_with_iam_enforcement() {
    let Some((moto, pool, allowed, not_allowed)) = enforcing_with_two_identities().await else {
        return;
    };
    let dir = TempDir::new("sigv4-env");
    let up = EchoUpstream::start().await;
    let toml = sigv4_toml(&moto, &pool, &up.url());

    // The IAM user's keys in the environment: the one-shot login and the served gateway work.
    let good = aws_env(
        &dir,
        &[
            ("AWS_ACCESS_KEY_ID", &allowed.id),
            ("AWS_SECRET_ACCESS_KEY", &allowed.secret),
        ],
    );
    let out = cli_login(&dir, &toml, &good, "alice", "Pw-alice-1234").await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(out.stdout.contains("\"IdToken\""), "{out}");
    let mut gw = served(&dir, &toml, &good).await;
    assert_eq!(basic_status(&gw, "alice", "Pw-alice-1234").await, 200);
    assert_eq!(
        basic_status(&gw, "alice", "wrong-password").await,
        401,
        "a signed call still checks the password"
    );
    gw.child.kill().await.unwrap();

    // A wrong secret: refused by AWS, 503 (not 401: the user did nothing wrong), and the log
    // says what AWS said.
    let bad = aws_env(
        &dir,
        &[
            ("AWS_ACCESS_KEY_ID", &allowed.id),
            ("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
        ],
    );
    let mut gw = served(&dir, &toml, &bad).await;
    assert_eq!(basic_status(&gw, "alice", "Pw-alice-1234").await, 503);
    let line = gw
        .wait_for_line("AWS refused the call", Duration::from_secs(10))
        .await;
    assert!(
        line.contains("SignatureDoesNotMatch") && line.contains("AdminInitiateAuth"),
        "{line}"
    );
    assert!(
        !line.contains("not-the-secret") && !line.contains("Pw-alice"),
        "{line}"
    );
    gw.child.kill().await.unwrap();
    let out = cli_login(&dir, &toml, &bad, "alice", "Pw-alice-1234").await;
    assert_eq!(out.code, Some(4), "the private API is unavailable: {out}");

    // Keys whose policy lacks the action: AccessDenied, the same 503.
    let denied = aws_env(
        &dir,
        &[
            ("AWS_ACCESS_KEY_ID", &not_allowed.id),
            ("AWS_SECRET_ACCESS_KEY", &not_allowed.secret),
        ],
    );
    let mut gw = served(&dir, &toml, &denied).await;
    assert_eq!(basic_status(&gw, "alice", "Pw-alice-1234").await, 503);
    let line = gw
        .wait_for_line("AWS refused the call", Duration::from_secs(10))
        .await;
    assert!(line.contains("AccessDenied"), "{line}");
    gw.child.kill().await.unwrap();

    // No credentials anywhere: 503, and the log says none was found and where it looked.
    let nothing = aws_env(&dir, &[]);
    let mut gw = served(&dir, &toml, &nothing).await;
    assert_eq!(basic_status(&gw, "alice", "Pw-alice-1234").await, 503);
    let line = gw
        .wait_for_line("cannot sign the call to Cognito", Duration::from_secs(10))
        .await;
    assert!(
        line.contains("no AWS credentials found") && line.contains("EcsContainer"),
        "{line}"
    );
    gw.child.kill().await.unwrap();
}

/// A stand-in for the ECS agent's credentials endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI`):
/// hands out the given sessions in turn, each expiring `lifetime` from when it is served, and
/// counts the requests.
async fn ecs_endpoint(sessions: Vec<AwsKeys>, lifetime: Duration) -> (String, Arc<AtomicU64>) {
    let hits = Arc::new(AtomicU64::new(0));
    let h = hits.clone();
    let addr = serve_fn(Arc::new(move |req: Request<Bytes>| {
        let n = h.fetch_add(1, Ordering::SeqCst) as usize;
        let k = &sessions[n.min(sessions.len() - 1)];
        assert_eq!(
            req.headers()["authorization"],
            "ecs-agent-token",
            "the agent token is sent"
        );
        let expiration = humantime::format_rfc3339_seconds(std::time::SystemTime::now() + lifetime);
        let body = json!({"AccessKeyId": k.id, "SecretAccessKey": k.secret,
            "Token": k.token, "Expiration": expiration.to_string()});
        Response::new(Full::new(Bytes::from(body.to_string())))
    }))
    .await;
    (format!("http://{addr}/v2/credentials/task"), hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecs_task_role_credentials_are_used_cached_and_reread_before_they_expire() {
    let Some(moto) = Moto::start_enforcing() else {
        return;
    };
    let pool = seed(&moto).await;
    let sessions = moto.role_sessions("gateway-task", ADMIN_ACTIONS, 2).await;
    moto.enforce().await;
    let dir = TempDir::new("sigv4-ecs");
    let up = EchoUpstream::start().await;
    let toml = sigv4_toml(&moto, &pool, &up.url());

    // Credentials valid for an hour: two logins (two users, so two calls to Cognito), one read.
    let (uri, hits) = ecs_endpoint(sessions.clone(), Duration::from_secs(3600)).await;
    let env = aws_env(
        &dir,
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ecs-agent-token"),
        ],
    );
    let mut gw = served(&dir, &toml, &env).await;
    assert_eq!(basic_status(&gw, "alice", "Pw-alice-1234").await, 200);
    assert_eq!(
        basic_status(&gw, "svc-batch", "Pw-svc-batch-1234").await,
        200
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "cached while far from expiry"
    );
    gw.child.kill().await.unwrap();

    // Credentials that expire within the renewal margin are read again for the next call: the
    // second call is signed with the second session (both are valid role sessions for moto).
    let (uri, hits) = ecs_endpoint(sessions, Duration::from_secs(120)).await;
    let env = aws_env(
        &dir,
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "ecs-agent-token"),
        ],
    );
    let mut gw = served(&dir, &toml, &env).await;
    assert_eq!(basic_status(&gw, "alice", "Pw-alice-1234").await, 200);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(
        basic_status(&gw, "svc-batch", "Pw-svc-batch-1234").await,
        200
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2, "re-read before expiry");
    gw.child.kill().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// `cognito-gate aws check` against moto behind the API Gateway stand-in, and straight to moto
// with SigV4.
// ---------------------------------------------------------------------------------------------

fn check_toml(m: &Moto, pool: &Pool, jwks_url: Option<&str>, private_api: &str) -> String {
    let jwks = jwks_url.map_or_else(
        || format!("{}/{}/.well-known/jwks.json", m.url, pool.id),
        str::to_string,
    );
    format!(
        r#"[cognito]
issuer = "https://cognito-idp.{REGION}.amazonaws.com/{pool_id}"
app_clients = ["{client}"]
[cognito.jwks]
url = "{jwks}"
{private_api}
[exchange]
client_id = "{client}"
client_secret = "{secret}"
user_pool_id = "{pool_id}"
[[routes]]
name = "legacy"
path_prefix = "/legacy"
upstream = "builtin:echo"
auth = ["basic"]
"#,
        pool_id = pool.id,
        client = pool.client_id,
        secret = pool.client_secret,
    )
}

/// `aws check --config <toml>`: its exit code and its checklist.
async fn aws_check(dir: &TempDir, toml: &str, env: &[(String, String)]) -> binary::Out {
    let path = dir.write("check.toml", toml);
    let mut cmd = binary::command(&["aws", "check", "--config", path.to_str().unwrap()]);
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    binary::run(cmd, None).await
}

/// The checklist line of `item` (`PASS  item: ...`) and its `fix:` line, if any.
fn check_line<'a>(out: &'a binary::Out, item: &str) -> (&'a str, Option<&'a str>) {
    let lines: Vec<&str> = out.stdout.lines().collect();
    let i = lines
        .iter()
        .position(|l| {
            l.get(6..)
                .is_some_and(|rest| rest.starts_with(&format!("{item}: ")))
        })
        .unwrap_or_else(|| panic!("no {item:?} line in\n{out}"));
    let fix = lines
        .get(i + 1)
        .and_then(|l| l.trim_start().strip_prefix("fix: "));
    (lines[i], fix)
}

fn assert_check(out: &binary::Out, item: &str, status: &str, detail: &str, fix: &str) {
    let (line, got_fix) = check_line(out, item);
    assert!(line.starts_with(status), "{item}: want {status}\n{out}");
    assert!(
        line.contains(detail),
        "{item}: want {detail:?} in the line\n{out}"
    );
    if fix.is_empty() {
        assert!(got_fix.is_none(), "{item}: no fix expected\n{out}");
    } else {
        assert!(
            got_fix.is_some_and(|f| f.contains(fix)),
            "{item}: want {fix:?} in the fix\n{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_check_names_the_failing_dependency_and_what_to_fix() {
    let Some((moto, pool, role, weak_role)) = enforcing_with_two_identities().await else {
        return;
    };
    let dir = TempDir::new("aws-check");
    let env = aws_env(&dir, &[]);
    let api_id = "abc123defg";
    let (shim, _) = api_gateway_with(
        moto.url.clone(),
        StandIn {
            api_id: Some(api_id.into()),
            role: Some(role.clone()),
        },
    )
    .await;
    let with_id = format!(
        "[private_api]\nbase_url = \"http://{shim}/dev\"\nheaders = {{ \"x-apigw-api-id\" = \"{api_id}\" }}\n"
    );

    // Everything in place: every line passes, exit 0.
    let out = aws_check(&dir, &check_toml(&moto, &pool, None, &with_id), &env).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert_check(&out, "jwks[default]", "PASS", "1 key(s) from", "");
    assert_check(&out, "private API", "PASS", "for an unknown user", "");
    assert_check(
        &out,
        "private API",
        "PASS",
        "the private API's execution role may call AdminInitiateAuth",
        "",
    );
    assert_check(&out, "x-apigw-api-id", "PASS", "accepted", "");
    assert_check(&out, "SECRET_HASH", "PASS", "sent", "");
    assert!(out.stdout.contains("all checks passed"), "{out}");

    // The api-id header missing: API Gateway's 403; the header line says to add it.
    let without_id = format!("[private_api]\nbase_url = \"http://{shim}/dev\"\n");
    let out = aws_check(&dir, &check_toml(&moto, &pool, None, &without_id), &env).await;
    assert_eq!(out.code, Some(1), "{out}");
    assert_check(
        &out,
        "private API",
        "FAIL",
        "HTTP 403",
        "see the x-apigw-api-id line",
    );
    assert_check(
        &out,
        "x-apigw-api-id",
        "FAIL",
        "not sent",
        "headers = { \"x-apigw-api-id\" = \"<api-id>\" }",
    );
    assert_check(&out, "SECRET_HASH", "SKIP", "not reached", "");
    assert_check(&out, "jwks[default]", "PASS", "key(s)", "");

    // The integration role may not call the admin action: AccessDenied, and which grant is missing.
    let (weak_shim, _) = api_gateway_with(
        moto.url.clone(),
        StandIn {
            api_id: None,
            role: Some(weak_role),
        },
    )
    .await;
    let weak = format!("[private_api]\nbase_url = \"http://{weak_shim}/dev\"\n");
    let out = aws_check(&dir, &check_toml(&moto, &pool, None, &weak), &env).await;
    assert_eq!(out.code, Some(1), "{out}");
    assert_check(
        &out,
        "private API",
        "FAIL",
        "AccessDenied",
        &format!("allow cognito-idp:AdminInitiateAuth on arn:aws:cognito-idp:<region>:<account>:userpool/{} for the private API's execution role", pool.id),
    );
    assert_check(&out, "SECRET_HASH", "SKIP", "not reached", "");

    // The JWKS unreachable: that line fails, the others still pass.
    let closed = closed_port().await;
    let jwks = format!("http://{closed}/jwks");
    let out = aws_check(&dir, &check_toml(&moto, &pool, Some(&jwks), &with_id), &env).await;
    assert_eq!(out.code, Some(1), "{out}");
    assert_check(
        &out,
        "jwks[default]",
        "FAIL",
        "connection refused",
        "nothing listens on",
    );
    assert_check(&out, "private API", "PASS", "for an unknown user", "");
    assert!(out.stdout.contains("1 check(s) failed"), "{out}");

    // Straight to moto with SigV4: the provider is named and the signature checked.
    let signed = format!(
        "[private_api]\nbase_url = \"{}\"\nstyle = \"cognito-idp\"\nsign = \"sigv4\"\n",
        moto.url
    );
    let toml = check_toml(&moto, &pool, None, &signed);
    let good = aws_env(
        &dir,
        &[
            ("AWS_ACCESS_KEY_ID", &role.id),
            ("AWS_SECRET_ACCESS_KEY", &role.secret),
        ],
    );
    let out = aws_check(&dir, &toml, &good).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert_check(
        &out,
        "SigV4 credentials",
        "PASS",
        "found by the environment provider, long-term",
        "",
    );
    assert_check(
        &out,
        "SigV4 signature",
        "PASS",
        &format!("region {REGION}"),
        "",
    );
    assert_check(
        &out,
        "private API",
        "PASS",
        "the gateway's AWS identity may call AdminInitiateAuth",
        "",
    );
    let bad = aws_env(
        &dir,
        &[
            ("AWS_ACCESS_KEY_ID", &role.id),
            ("AWS_SECRET_ACCESS_KEY", "wrong"),
        ],
    );
    let out = aws_check(&dir, &toml, &bad).await;
    assert_eq!(out.code, Some(1), "{out}");
    assert_check(
        &out,
        "private API",
        "FAIL",
        "SignatureDoesNotMatch",
        "does not belong to the access key id",
    );
    assert_check(&out, "SigV4 signature", "FAIL", "refused", "region");
    let out = aws_check(&dir, &toml, &env).await;
    assert_eq!(out.code, Some(1), "{out}");
    assert_check(
        &out,
        "SigV4 credentials",
        "FAIL",
        "no AWS credentials found",
        "ECS task role",
    );
}
