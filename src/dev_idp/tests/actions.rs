//! The Cognito actions: SECRET_HASH, refresh, NEW_PASSWORD_REQUIRED, errors as HTTP 200.

use super::*;

#[test]
fn secret_hash_is_checked_on_every_flow() {
    let idp = idp();
    let bad = "Unable to verify secret hash for client dev-client";
    let login = |params: Value| {
        post(
            &idp,
            "/admin-initiate-auth",
            json!({ "AuthFlow": "ADMIN_NO_SRP_AUTH", "ClientId": CLIENT, "UserPoolId": POOL,
                    "AuthParameters": params }),
        )
    };
    let missing = login(json!({ "USERNAME": "test-user", "PASSWORD": "P@ssword01" }));
    assert_eq!(error_of(&missing), ("NotAuthorizedException", bad));
    let wrong = login(json!({ "USERNAME": "test-user", "PASSWORD": "P@ssword01",
                              "SECRET_HASH": hash("plain") }));
    assert_eq!(error_of(&wrong), ("NotAuthorizedException", bad));
    let ok = login(json!({ "USERNAME": "test-user", "PASSWORD": "P@ssword01",
                           "SECRET_HASH": hash("test-user") }));
    let refresh = ok["AuthenticationResult"]["RefreshToken"].as_str().unwrap();

    // USER_PASSWORD_AUTH on InitiateAuth.
    let user_flow = |h: Option<String>| {
        post(
            &idp,
            "/initiate-auth",
            json!({ "AuthFlow": "USER_PASSWORD_AUTH", "ClientId": CLIENT,
                    "AuthParameters": { "USERNAME": "plain", "PASSWORD": "plain-P@ss1",
                                        "SECRET_HASH": h } }),
        )
    };
    assert_eq!(error_of(&user_flow(None)), ("NotAuthorizedException", bad));
    assert!(user_flow(Some(hash("plain")))["AuthenticationResult"].is_object());

    // REFRESH_TOKEN_AUTH: the hash of the canonical user name (or the sub).
    let refresh_with = |h: Option<String>| {
        post(
            &idp,
            "/initiate-auth",
            json!({ "AuthFlow": "REFRESH_TOKEN_AUTH", "ClientId": CLIENT,
                    "AuthParameters": { "REFRESH_TOKEN": refresh, "SECRET_HASH": h } }),
        )
    };
    assert_eq!(
        error_of(&refresh_with(None)),
        ("NotAuthorizedException", bad)
    );
    assert_eq!(
        error_of(&refresh_with(Some(hash("plain")))),
        ("NotAuthorizedException", bad)
    );
    assert!(refresh_with(Some(hash("test-user")))["AuthenticationResult"].is_object());
    assert!(refresh_with(Some(hash(&stable_sub("test-user"))))["AuthenticationResult"].is_object());

    // GetTokensFromRefreshToken: the raw secret.
    let rotate = |secret: Option<&str>| {
        post(
            &idp,
            "/get-tokens-from-refresh-token",
            json!({ "ClientId": CLIENT, "RefreshToken": refresh, "ClientSecret": secret }),
        )
    };
    assert_eq!(error_of(&rotate(None)), ("NotAuthorizedException", bad));
    assert_eq!(
        error_of(&rotate(Some("wrong"))),
        ("NotAuthorizedException", bad)
    );
    assert!(rotate(Some(SECRET))["AuthenticationResult"].is_object());

    // Without a client secret no SECRET_HASH is needed.
    let open = idp_with(None);
    let v = post(
        &open,
        "/admin-initiate-auth",
        json!({ "AuthFlow": "ADMIN_USER_PASSWORD_AUTH", "ClientId": CLIENT, "UserPoolId": POOL,
                "AuthParameters": { "USERNAME": "plain", "PASSWORD": "plain-P@ss1" } }),
    );
    assert!(v["AuthenticationResult"].is_object(), "{v}");
}

#[test]
fn refresh_keeps_the_origin_and_only_rotation_returns_a_refresh_token() {
    let idp = idp();
    let first = admin_login(&idp, "test-user", "P@ssword01");
    let origin = verify(&idp, tokens(&first).0);
    let refresh = first["AuthenticationResult"]["RefreshToken"]
        .as_str()
        .unwrap();
    for (resource, pool) in [
        ("/admin-initiate-auth", Some(POOL)),
        ("/initiate-auth", None),
    ] {
        let v = post(
            &idp,
            resource,
            json!({ "AuthFlow": "REFRESH_TOKEN_AUTH", "ClientId": CLIENT, "UserPoolId": pool,
                    "AuthParameters": { "REFRESH_TOKEN": refresh,
                                        "SECRET_HASH": hash("test-user") } }),
        );
        let r = &v["AuthenticationResult"];
        assert!(r.get("RefreshToken").is_none(), "{resource}: {v}");
        let c = verify(&idp, tokens(&v).0);
        assert_eq!(c["origin_jti"], origin["origin_jti"]);
        assert_eq!(c["auth_time"], origin["auth_time"]);
        assert_ne!(c["jti"], origin["jti"]);
        assert_eq!(verify(&idp, tokens(&v).1)["token_use"], "access");
    }
    let rotate = |token: &str| {
        post(
            &idp,
            "/get-tokens-from-refresh-token",
            json!({ "ClientId": CLIENT, "RefreshToken": token, "ClientSecret": SECRET }),
        )
    };
    let v = rotate(refresh);
    let new_refresh = v["AuthenticationResult"]["RefreshToken"].as_str().unwrap();
    assert_ne!(new_refresh, refresh);
    assert_eq!(
        verify(&idp, tokens(&v).0)["origin_jti"],
        origin["origin_jti"]
    );
    let invalid = ("NotAuthorizedException", "Invalid Refresh Token");
    assert_eq!(
        error_of(&rotate(refresh)),
        invalid,
        "the old token is spent"
    );
    assert!(rotate(new_refresh)["AuthenticationResult"].is_object());
    assert_eq!(error_of(&rotate("nope")), invalid);
}

#[test]
fn new_password_required_round_trip() {
    let idp = idp();
    let v = admin_login(&idp, "new-user", "Welcome-1234");
    assert_eq!(v["ChallengeName"], "NEW_PASSWORD_REQUIRED");
    assert!(v.get("AuthenticationResult").is_none());
    let p = &v["ChallengeParameters"];
    assert_eq!(p["USER_ID_FOR_SRP"], "new-user");
    assert_eq!(p["requiredAttributes"], "[]");
    assert!(p["userAttributes"].as_str().is_some());
    let session = v["Session"].as_str().unwrap().to_string();

    let respond = |session: &str, user: &str, new_password: Option<&str>| {
        post(
            &idp,
            "/admin-respond-to-auth-challenge",
            json!({ "ChallengeName": "NEW_PASSWORD_REQUIRED", "ClientId": CLIENT,
                    "UserPoolId": POOL, "Session": session,
                    "ChallengeResponses": { "USERNAME": user, "NEW_PASSWORD": new_password,
                                            "SECRET_HASH": hash(user) } }),
        )
    };
    let invalid = ("NotAuthorizedException", "Invalid session for the user.");
    assert_eq!(
        error_of(&respond("bogus", "new-user", Some("Chosen-P@ss9"))),
        invalid
    );
    assert_eq!(
        error_of(&respond(&session, "test-user", Some("Chosen-P@ss9"))),
        invalid
    );
    assert_eq!(
        error_of(&respond(&session, "new-user", Some("short"))),
        (
            "InvalidPasswordException",
            "Password does not conform to policy: Password not long enough"
        )
    );
    assert_eq!(
        error_of(&respond(&session, "new-user", Some(""))).0,
        "InvalidPasswordException"
    );
    assert_eq!(
        error_of(&respond(&session, "new-user", None)).0,
        "InvalidParameterException"
    );
    // A refused password leaves the session usable.
    let done = respond(&session, "new-user", Some("Chosen-P@ss9"));
    let (id, _) = tokens(&done);
    assert_eq!(verify(&idp, id)["cognito:username"], "new-user");
    assert!(done["AuthenticationResult"]["RefreshToken"].is_string());
    assert_eq!(
        error_of(&respond(&session, "new-user", Some("Again-P@ss9"))),
        invalid
    );

    // The flag is cleared and the password changed.
    assert_eq!(
        error_of(&admin_login(&idp, "new-user", "Welcome-1234")),
        ("NotAuthorizedException", "Incorrect username or password.")
    );
    assert!(admin_login(&idp, "new-user", "Chosen-P@ss9")["AuthenticationResult"].is_object());
}

#[test]
fn new_password_through_the_non_admin_actions() {
    let idp = idp();
    let v = post(
        &idp,
        "/initiate-auth",
        json!({ "AuthFlow": "USER_PASSWORD_AUTH", "ClientId": CLIENT,
                "AuthParameters": { "USERNAME": "new-user", "PASSWORD": "Welcome-1234",
                                    "SECRET_HASH": hash("new-user") } }),
    );
    let session = v["Session"].as_str().unwrap();
    let done = post(
        &idp,
        "/respond-to-auth-challenge",
        json!({ "ChallengeName": "NEW_PASSWORD_REQUIRED", "ClientId": CLIENT, "Session": session,
                "ChallengeResponses": { "USERNAME": "new-user", "NEW_PASSWORD": "Chosen-P@ss9",
                                        "SECRET_HASH": hash("new-user") } }),
    );
    assert!(
        done["AuthenticationResult"]["IdToken"].is_string(),
        "{done}"
    );
}

#[test]
fn errors_are_http_200_with_the_cognito_type() {
    let idp = idp();
    let admin = |flow: &str, client: &str, pool: &str, user: &str, password: &str| {
        json!({ "AuthFlow": flow, "ClientId": client, "UserPoolId": pool,
                "AuthParameters": { "USERNAME": user, "PASSWORD": password,
                                    "SECRET_HASH": hash(user) } })
    };
    let flow = "ADMIN_USER_PASSWORD_AUTH";
    let cases: Vec<(&str, Value, &str, Option<&str>)> = vec![
        (
            "/admin-initiate-auth",
            admin(flow, CLIENT, POOL, "ghost", "x"),
            "UserNotFoundException",
            Some("User does not exist."),
        ),
        (
            "/admin-initiate-auth",
            admin(flow, CLIENT, POOL, "test-user", "wrong"),
            "NotAuthorizedException",
            Some("Incorrect username or password."),
        ),
        (
            "/admin-initiate-auth",
            admin(flow, "other-client", POOL, "test-user", "P@ssword01"),
            "ResourceNotFoundException",
            None,
        ),
        (
            "/admin-initiate-auth",
            admin(flow, CLIENT, "other-pool", "test-user", "P@ssword01"),
            "ResourceNotFoundException",
            None,
        ),
        (
            "/admin-initiate-auth",
            admin(
                "USER_PASSWORD_AUTH",
                CLIENT,
                POOL,
                "test-user",
                "P@ssword01",
            ),
            "InvalidParameterException",
            None,
        ),
        (
            "/admin-initiate-auth",
            admin("USER_SRP_AUTH", CLIENT, POOL, "test-user", "P@ssword01"),
            "InvalidParameterException",
            None,
        ),
        (
            "/initiate-auth",
            admin(flow, CLIENT, POOL, "test-user", "P@ssword01"),
            "InvalidParameterException",
            None,
        ),
        (
            "/admin-initiate-auth",
            json!({ "AuthFlow": flow, "ClientId": CLIENT, "UserPoolId": POOL }),
            "InvalidParameterException",
            Some("Missing required parameter USERNAME"),
        ),
        (
            "/admin-initiate-auth",
            json!({ "AuthFlow": flow, "ClientId": CLIENT }),
            "InvalidParameterException",
            None,
        ),
        (
            "/admin-initiate-auth",
            json!({ "AuthFlow": 7, "ClientId": CLIENT, "UserPoolId": POOL }),
            "InvalidParameterException",
            None,
        ),
        (
            "/admin-initiate-auth",
            json!({ "AuthFlow": flow, "ClientId": CLIENT, "UserPoolId": POOL,
                    "AuthParameters": "USERNAME=x" }),
            "InvalidParameterException",
            None,
        ),
        (
            "/admin-initiate-auth",
            json!([1, 2]),
            "InvalidParameterException",
            None,
        ),
        (
            "/admin-respond-to-auth-challenge",
            json!({ "ChallengeName": "SMS_MFA", "ClientId": CLIENT, "UserPoolId": POOL,
                    "Session": "s", "ChallengeResponses": { "USERNAME": "test-user" } }),
            "InvalidParameterException",
            None,
        ),
        (
            "/respond-to-auth-challenge",
            json!({ "ChallengeName": "NEW_PASSWORD_REQUIRED", "ClientId": CLIENT,
                    "ChallengeResponses": { "USERNAME": "test-user" } }),
            "InvalidParameterException",
            Some("Missing required parameter Session"),
        ),
        (
            "/get-tokens-from-refresh-token",
            json!({ "ClientId": "nope", "RefreshToken": "r" }),
            "ResourceNotFoundException",
            Some("User pool client nope does not exist."),
        ),
        (
            "/get-tokens-from-refresh-token",
            json!({ "ClientId": CLIENT }),
            "InvalidParameterException",
            None,
        ),
    ];
    for (resource, body, ty, message) in cases {
        let v = post(&idp, resource, body.clone());
        assert_eq!(v["__type"], ty, "{resource} {body}: {v}");
        assert!(v["message"].is_string(), "{resource} {body}: {v}");
        if let Some(m) = message {
            assert_eq!(v["message"], m, "{resource} {body}");
        }
    }

    // Bodies that are not JSON at all.
    for body in [&b"not json"[..], b"", b"\xff\xfe", b"{\"AuthFlow\":"] {
        let resp = idp.handle(&Method::POST, "/dev/admin-initiate-auth", body);
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(json_of(&resp)["__type"], "InvalidParameterException");
    }

    // Unknown resources and methods: API Gateway's 404.
    for (method, path) in [
        (Method::POST, "/dev/nope"),
        (Method::POST, "/admin-initiate-auth"),
        (Method::GET, "/dev/admin-initiate-auth"),
        (Method::PUT, "/dev/initiate-auth"),
        (Method::POST, "/dev/jwks"),
        (Method::GET, "/dev/jwks/"),
        (Method::GET, "/"),
    ] {
        let resp = idp.handle(&method, path, b"{}");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(
            json_of(&resp),
            json!({ "message": "Missing Authentication Token" })
        );
    }
}
