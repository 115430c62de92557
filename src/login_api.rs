//! The login API (`[login_api]`): token endpoints for apps that cannot call Cognito themselves.
//! `POST {prefix}/login`, `/refresh`, `/challenge` answer Cognito-shaped JSON; the gateway adds
//! SECRET_HASH so apps never hold the client secret. Wrong credentials and unknown users look
//! the same (no user enumeration), and failures count against the failed-login limit.

use std::net::IpAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::body::Body;
use crate::error::{json_message, json_response};
use crate::exchange::limit::Attempt;
use crate::exchange::{AuthResult, CognitoErrorKind, DependencyError, ExchangeError};
use crate::Exchange;

/// Login requests are small; anything larger is refused before parsing.
const MAX_LOGIN_BODY: usize = 64 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    refresh_token: String,
    username: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChallengeBody {
    challenge_name: String,
    session: String,
    username: String,
    #[serde(default)]
    responses: Map<String, Value>,
}

enum Endpoint {
    Login,
    Refresh,
    Challenge,
}

/// Handles a request under the login API's prefix. `None` when the path is not the login API's.
pub async fn handle(
    exchange: &Exchange,
    prefix: &str,
    req: Request<hyper::body::Incoming>,
    client: IpAddr,
) -> Result<Response<Body>, Request<hyper::body::Incoming>> {
    let endpoint = match req.uri().path().strip_prefix(prefix) {
        Some("/login") => Endpoint::Login,
        Some("/refresh") => Endpoint::Refresh,
        Some("/challenge") => Endpoint::Challenge,
        _ => return Err(req),
    };
    if req.method() != Method::POST {
        let mut resp = json_message(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        resp.headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
        return Ok(resp);
    }
    let body = match Limited::new(req.into_body(), MAX_LOGIN_BODY)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return Ok(json_message(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request Entity Too Large",
            ))
        }
    };
    Ok(match endpoint {
        Endpoint::Login => login(exchange, &body, client).await,
        Endpoint::Refresh => refresh(exchange, &body, client).await,
        Endpoint::Challenge => challenge(exchange, &body, client).await,
    })
}

/// The body as `T`, or `None` when it is not the documented JSON object.
fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Option<T> {
    serde_json::from_slice(body).ok()
}

fn bad_body() -> Response<Body> {
    json_message(
        StatusCode::BAD_REQUEST,
        "Bad Request: expected a JSON object with the documented fields",
    )
}

fn valid_username(u: &str) -> bool {
    !u.is_empty() && u.len() <= 256
}

async fn login(x: &Exchange, body: &Bytes, client: IpAddr) -> Response<Body> {
    let Some(b) = parse::<LoginBody>(body) else {
        return bad_body();
    };
    if !valid_username(&b.username) || b.password.is_empty() || b.password.len() > 1024 {
        return json_message(StatusCode::BAD_REQUEST, "Bad Request");
    }
    let Some(attempt) = x.limiter.reserve(Some(&b.username), client) else {
        return too_many();
    };
    let result = x.api.login(&b.username, &b.password).await;
    answer(result, attempt, "Incorrect username or password.")
}

async fn refresh(x: &Exchange, body: &Bytes, client: IpAddr) -> Response<Body> {
    let Some(b) = parse::<RefreshBody>(body) else {
        return bad_body();
    };
    if !valid_username(&b.username) || b.refresh_token.is_empty() {
        return json_message(StatusCode::BAD_REQUEST, "Bad Request");
    }
    // The username here only feeds SECRET_HASH: nothing proves the client is that user, so a
    // failed refresh is charged to the client's address, never to the name it gives.
    let Some(attempt) = x.limiter.reserve(None, client) else {
        return too_many();
    };
    let result = x.api.refresh(&b.refresh_token, &b.username).await;
    answer(result, attempt, "Invalid refresh token.")
}

async fn challenge(x: &Exchange, body: &Bytes, client: IpAddr) -> Response<Body> {
    let Some(b) = parse::<ChallengeBody>(body) else {
        return bad_body();
    };
    if !valid_username(&b.username) || b.challenge_name.is_empty() || b.session.is_empty() {
        return json_message(StatusCode::BAD_REQUEST, "Bad Request");
    }
    // As for refresh: the session, not the named user, is what the client holds (Cognito
    // limits code attempts per session itself), so failures are charged to the address.
    let Some(attempt) = x.limiter.reserve(None, client) else {
        return too_many();
    };
    let result = x
        .api
        .respond(&b.challenge_name, &b.session, &b.username, &b.responses)
        .await;
    answer(result, attempt, "Incorrect username or password.")
}

fn too_many() -> Response<Body> {
    json_message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests")
}

/// The answer to a private API call made under a reserved attempt, which stays charged only
/// when the call failed on the credentials.
fn answer(
    result: Result<AuthResult, ExchangeError>,
    attempt: Attempt,
    denied: &str,
) -> Response<Body> {
    match result {
        Ok(r) => {
            attempt.refund();
            json_response(
                StatusCode::OK,
                Bytes::from(serde_json::to_vec(&r.to_cognito_json()).expect("JSON serialises")),
            )
        }
        Err(e) => {
            if !e.is_credential_failure() {
                attempt.refund();
            }
            error_response(&e, denied)
        }
    }
}

/// Maps an exchange failure to the login API's answer (DESIGN §4).
pub fn error_response(e: &ExchangeError, denied: &str) -> Response<Body> {
    let typed = |status: StatusCode, message: &str, t: &str| {
        json_response(
            status,
            Bytes::from(json!({ "message": message, "type": t }).to_string()),
        )
    };
    match e {
        ExchangeError::Cognito { kind, type_name } => match kind {
            CognitoErrorKind::NotAuthorized | CognitoErrorKind::UserNotFound => {
                json_message(StatusCode::UNAUTHORIZED, denied)
            }
            CognitoErrorKind::UserNotConfirmed => {
                typed(StatusCode::FORBIDDEN, "User is not confirmed.", type_name)
            }
            CognitoErrorKind::PasswordResetRequired => typed(
                StatusCode::FORBIDDEN,
                "Password reset required for the user.",
                type_name,
            ),
            CognitoErrorKind::TooManyRequests | CognitoErrorKind::PasswordAttemptsExceeded => {
                json_message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests")
            }
            CognitoErrorKind::InvalidParameter => {
                typed(StatusCode::BAD_REQUEST, "Invalid parameter.", type_name)
            }
            CognitoErrorKind::InvalidPassword => typed(
                StatusCode::BAD_REQUEST,
                "The new password does not meet the password policy.",
                type_name,
            ),
            CognitoErrorKind::CodeMismatch | CognitoErrorKind::ExpiredCode => typed(
                StatusCode::UNAUTHORIZED,
                "Invalid or expired code.",
                type_name,
            ),
            CognitoErrorKind::ResourceNotFound
            | CognitoErrorKind::InternalError
            | CognitoErrorKind::Other => json_message(StatusCode::BAD_GATEWAY, "Bad Gateway"),
        },
        ExchangeError::ChallengeRequired(_) | ExchangeError::InvalidTokens(_) => {
            json_message(StatusCode::BAD_GATEWAY, "Bad Gateway")
        }
        ExchangeError::Dependency(DependencyError::Timeout) => {
            json_message(StatusCode::GATEWAY_TIMEOUT, "Endpoint request timed out")
        }
        ExchangeError::Dependency(
            DependencyError::Connect
            | DependencyError::Forbidden
            | DependencyError::Throttled
            | DependencyError::Status(_)
            | DependencyError::Garbage
            | DependencyError::CircuitOpen,
        ) => json_message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
    }
}
