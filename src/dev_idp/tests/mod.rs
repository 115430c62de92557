//! The dev IdP's behaviour through `DevIdp::handle` (token shape, SECRET_HASH, flows, errors as
//! HTTP 200 with `__type`), plus its listener over a real socket.

mod actions;
mod keys_and_tokens;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{Method, Response, StatusCode};
use jsonwebtoken::{DecodingKey, Validation};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use serde_json::{json, Value};

use super::users::Bounded;
use super::*;
use crate::config::{Config, Source};
use crate::exchange::secret_hash::secret_hash;

const CLIENT: &str = "dev-client";
const SECRET: &str = "dev-client-secret";
const POOL: &str = "dev-pool";
const ISSUER: &str = "http://127.0.0.1:4577/dev-pool";
const LIFETIME_SECS: i64 = 900;

fn manifest(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn config(client_secret: Option<&str>) -> Config {
    let secret = client_secret
        .map(|s| format!("client_secret = \"{s}\""))
        .unwrap_or_default();
    let text = format!(
        r#"
[cognito]
issuer = "{ISSUER}"
app_clients = ["{CLIENT}"]
[cognito.jwks]
file = "certs/dev-jwks.json"
[exchange]
client_id = "{CLIENT}"
{secret}
user_pool_id = "{POOL}"
[dev_idp]
listen = "127.0.0.1:0"
token_lifetime = "{LIFETIME_SECS}s"
signing_keys = "certs/dev-idp.key"
[[dev_idp.users]]
username = "test-user"
password = "P@ssword01"
groups = ["admins", "ops"]
attributes = {{ email = "test-user@example.com", "custom:tenant" = "acme", sub = "spoofed" }}
[[dev_idp.users]]
username = "plain"
password = "plain-P@ss1"
[[dev_idp.users]]
username = "new-user"
password = "Welcome-1234"
force_new_password = true
"#
    );
    let source = Source {
        name: "test".into(),
        base_dir: manifest(""),
    };
    Config::parse_with_env(&text, &source, &|_| None).expect("valid test config")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn dev_key() -> SigningKeys {
    SigningKeys::from_pem(&std::fs::read_to_string(manifest("certs/dev-idp.key")).unwrap()).unwrap()
}

fn idp_with(client_secret: Option<&str>) -> DevIdp {
    let c = config(client_secret);
    DevIdp::new(
        c.dev_idp.as_ref().unwrap(),
        c.exchange.as_ref().unwrap(),
        ISSUER.into(),
        dev_key(),
        Arc::new(now),
    )
}

fn idp() -> DevIdp {
    idp_with(Some(SECRET))
}

fn hash(user: &str) -> String {
    secret_hash(SECRET, user, CLIENT)
}

fn json_of(resp: &Response<Bytes>) -> Value {
    serde_json::from_slice(resp.body()).unwrap_or(Value::Null)
}

/// POSTs `body` to `/dev{resource}`; the answer must be HTTP 200 JSON.
fn post(idp: &DevIdp, resource: &str, body: Value) -> Value {
    let resp = idp.handle(
        &Method::POST,
        &format!("/dev{resource}"),
        body.to_string().as_bytes(),
    );
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "{resource}: {:?}",
        resp.body()
    );
    assert_eq!(resp.headers()["content-type"], "application/json");
    json_of(&resp)
}

fn admin_login(idp: &DevIdp, user: &str, password: &str) -> Value {
    post(
        idp,
        "/admin-initiate-auth",
        json!({
            "AuthFlow": "ADMIN_USER_PASSWORD_AUTH", "ClientId": CLIENT, "UserPoolId": POOL,
            "AuthParameters": { "USERNAME": user, "PASSWORD": password, "SECRET_HASH": hash(user) }
        }),
    )
}

fn error_of(v: &Value) -> (&str, &str) {
    (
        v["__type"].as_str().unwrap_or("<none>"),
        v["message"].as_str().unwrap_or("<none>"),
    )
}

fn header(token: &str) -> Value {
    let h = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
}

/// Verifies `token` with jsonwebtoken against the key of its kid in the served JWKS.
fn verify(idp: &DevIdp, token: &str) -> Value {
    let resp = idp.handle(&Method::GET, "/dev/jwks", b"");
    assert_eq!(resp.status(), StatusCode::OK);
    let jwks = json_of(&resp);
    let kid = header(token)["kid"].as_str().unwrap().to_string();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("kid {kid} not in the JWKS"));
    assert_eq!(
        (&jwk["kty"], &jwk["alg"], &jwk["use"]),
        (&json!("RSA"), &json!("RS256"), &json!("sig"))
    );
    let key =
        DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap())
            .unwrap();
    let mut v = Validation::new(jsonwebtoken::Algorithm::RS256);
    v.validate_aud = false;
    v.set_issuer(&[ISSUER]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .expect("token verifies against the served JWKS")
        .claims
}

fn tokens(v: &Value) -> (&str, &str) {
    let r = &v["AuthenticationResult"];
    (
        r["IdToken"].as_str().expect("IdToken"),
        r["AccessToken"].as_str().expect("AccessToken"),
    )
}

#[test]
fn bounded_maps_evict_the_oldest() {
    let mut b = Bounded::new(3);
    for i in 0..5 {
        b.insert(format!("k{i}"), i);
    }
    assert_eq!(b.len(), 3);
    assert!(b.get("k0").is_none() && b.get("k1").is_none());
    assert_eq!(b.get("k4"), Some(&4));
    // Removed keys do not make the queue grow without bound.
    for i in 0..100 {
        b.insert(format!("r{i}"), i);
        b.remove(&format!("r{i}"));
    }
    assert_eq!(b.len(), 2);
    assert!(b.get("k4").is_some());

    let c = config(Some(SECRET));
    let dir = users::Directory::with_capacity(&c.dev_idp.as_ref().unwrap().users, 2);
    let origin = tokens::Origin::new(0);
    for _ in 0..5 {
        dir.issue_refresh_token("test-user", &origin);
        let _ = dir.sign_in("new-user", "Welcome-1234", 0);
    }
    assert_eq!(dir.counts(), (2, 2));
}

#[tokio::test]
async fn serves_over_a_socket_and_stops_with_the_gateway() {
    let c = config(Some(SECRET));
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let running = start(
        c.dev_idp.as_ref().unwrap(),
        c.exchange.as_ref().unwrap(),
        ISSUER.into(),
        stop_rx,
    )
    .await
    .unwrap();
    let base = format!("http://{}/dev", running.addr);
    let client = reqwest::Client::new();
    let jwks: Value = client
        .get(format!("{base}/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    let resp = client
        .post(format!("{base}/admin-initiate-auth"))
        .body("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["__type"], "InvalidParameterException");
    let resp = client.get(format!("{base}/other")).send().await.unwrap();
    assert_eq!(resp.status(), 404);

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running.task)
        .await
        .expect("the dev IdP stops")
        .unwrap();
    assert!(client.get(format!("{base}/jwks")).send().await.is_err());
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let idp = idp();
    let req = |len: usize| {
        hyper::Request::post("/dev/admin-initiate-auth")
            .body(http_body_util::Full::new(Bytes::from(vec![b'x'; len])))
            .unwrap()
    };
    let resp = respond(&idp, req(MAX_BODY_BYTES + 1)).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let resp = respond(&idp, req(MAX_BODY_BYTES)).await;
    assert_eq!(resp.status(), StatusCode::OK, "the limit itself is allowed");
}
