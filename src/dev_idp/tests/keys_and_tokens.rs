//! Token shape, key material and the JWKS.

use super::*;

#[test]
fn tokens_are_shaped_like_cognitos_and_verify_against_the_jwks() {
    let idp = idp();
    let v = admin_login(&idp, "test-user", "P@ssword01");
    let r = &v["AuthenticationResult"];
    assert_eq!(r["ExpiresIn"], json!(LIFETIME_SECS));
    assert_eq!(r["TokenType"], "Bearer");
    assert!(r["RefreshToken"].as_str().is_some_and(|t| t.len() >= 48));
    assert_eq!(v["ChallengeParameters"], json!({}));
    let (id, access) = tokens(&v);

    let (hid, hacc) = (header(id), header(access));
    assert_eq!(hid, json!({ "alg": "RS256", "kid": ID_KID }));
    assert_eq!(hacc, json!({ "alg": "RS256", "kid": ACCESS_KID }));

    let c = verify(&idp, id);
    let sub = stable_sub("test-user");
    assert_eq!(c["sub"], sub.as_str());
    assert_eq!(c["aud"], CLIENT);
    assert_eq!(c["email_verified"], json!(true));
    assert_eq!(c["token_use"], "id");
    assert_eq!(c["iss"], ISSUER);
    assert_eq!(c["cognito:username"], "test-user");
    assert_eq!(c["cognito:groups"], json!(["admins", "ops"]));
    assert_eq!(c["email"], "test-user@example.com");
    assert_eq!(c["custom:tenant"], "acme");
    let iat = c["iat"].as_i64().unwrap();
    assert_eq!(c["exp"].as_i64().unwrap() - iat, LIFETIME_SECS);
    assert_eq!(c["auth_time"].as_i64().unwrap(), iat);
    for claim in ["jti", "origin_jti"] {
        assert_eq!(c[claim].as_str().unwrap().len(), 36, "{claim}");
    }

    let a = verify(&idp, access);
    assert_eq!(a["sub"], sub.as_str());
    assert!(a.get("aud").is_none(), "access tokens carry no aud");
    assert_eq!(a["client_id"], CLIENT);
    assert_eq!(a["username"], "test-user");
    assert_eq!(a["token_use"], "access");
    assert_eq!(a["scope"], SIGNIN_SCOPE);
    assert_eq!(a["cognito:groups"], json!(["admins", "ops"]));
    assert_eq!(a["origin_jti"], c["origin_jti"]);
    assert_ne!(a["jti"], c["jti"]);
    assert_eq!(
        a["exp"].as_i64().unwrap() - a["iat"].as_i64().unwrap(),
        LIFETIME_SECS
    );

    // A user without groups gets no cognito:groups claim; subs are stable and distinct.
    let v = admin_login(&idp, "plain", "plain-P@ss1");
    let (id, access) = tokens(&v);
    let (c, a) = (verify(&idp, id), verify(&idp, access));
    assert!(c.get("cognito:groups").is_none() && a.get("cognito:groups").is_none());
    assert_eq!(c["sub"], stable_sub("plain").as_str());
    assert_ne!(stable_sub("plain"), sub);
}

#[tokio::test]
async fn the_gateway_verifier_accepts_both_tokens() {
    let idp = idp();
    let v = admin_login(&idp, "test-user", "P@ssword01");
    let keys = crate::jwt::parse_jwks(idp.jwks(), "dev idp").unwrap();
    let cache = crate::jwt::JwksCache::new(
        Some(keys),
        None,
        Duration::from_secs(10),
        Duration::from_secs(3600),
    );
    let verifier = crate::jwt::Verifier::new(
        vec![ISSUER.into()],
        vec![CLIENT.into()],
        Duration::ZERO,
        cache,
    );
    let set = crate::exchange::TokenSet {
        id_token: tokens(&v).0.to_string(),
        access_token: tokens(&v).1.to_string(),
        refresh_token: None,
        expires_in: 900,
    };
    let t = crate::exchange::verify_tokens(&verifier, set, "x", now(), now())
        .await
        .expect("the gateway accepts dev IdP tokens");
    assert_eq!(t.username, "test-user");
}

#[test]
fn the_shipped_jwks_publishes_the_dev_key_under_both_kids() {
    let served = json_of(&idp().handle(&Method::GET, "/dev/jwks", b""));
    let shipped: Value =
        serde_json::from_slice(&std::fs::read(manifest("certs/dev-jwks.json")).unwrap()).unwrap();
    assert_eq!(served, shipped);
}

#[test]
fn key_files_in_pkcs1_and_pkcs8_and_garbage() {
    let pem8 = std::fs::read_to_string(manifest("certs/dev-idp.key")).unwrap();
    assert!(pem8.contains("BEGIN PRIVATE KEY"));
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem8).unwrap();
    let pem1 = key.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    let (k8, k1) = (
        SigningKeys::from_pem(&pem8).unwrap(),
        SigningKeys::from_pem(&pem1).unwrap(),
    );
    assert_eq!(k8.jwks(), k1.jwks());
    assert_eq!((k8.id_kid(), k8.access_kid()), (ID_KID, ACCESS_KID));
    assert!(SigningKeys::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n").is_err());
    assert!(SigningKeys::from_pem("").is_err());
}

#[test]
fn generated_keys_have_distinct_fresh_kids() {
    let keys = SigningKeys::generate().unwrap();
    assert_ne!(keys.id_kid(), keys.access_kid());
    assert!(keys.id_kid() != ID_KID && keys.access_kid() != ACCESS_KID);
    let jwks = keys.jwks();
    assert_ne!(jwks["keys"][0]["n"], jwks["keys"][1]["n"]);
}

#[test]
fn stable_sub_matches_the_dev_token_script() {
    // scripts/dev-token.sh prints the same sub for test-user.
    assert_eq!(
        stable_sub("test-user"),
        "ac0e54f8-f40c-89a3-939a-da59d35e376f"
    );
}
