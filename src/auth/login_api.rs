//! The login API (`[login_api]`): token endpoints for apps that cannot call Cognito themselves.
//! `POST {prefix}/login`, `/refresh`, `/challenge` answer Cognito-shaped JSON; the gateway adds
//! SECRET_HASH so apps never hold the client secret. Refusals are answered from the one error
//! map (`GatewayError::Login`): wrong credentials and unknown users look the same (no user
//! enumeration). Every call reserves an attempt against the failed-login limit: a login against
//! the username and the address, a refresh or challenge against the address only (the username
//! in those bodies proves nothing).

use std::net::IpAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::body::json_response;
use crate::body::Body;
use crate::error::{GatewayError, LoginEndpoint};
use crate::exchange::limit::Attempt;
use crate::exchange::{AuthResult, Exchange, ExchangeError};

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
    /// Optional for refresh tokens this gateway issued: it remembers their canonical username.
    #[serde(default)]
    username: Option<String>,
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

/// The endpoint a path names under `prefix`, if any.
pub fn endpoint(prefix: &str, path: &str) -> Option<LoginEndpoint> {
    match path.strip_prefix(prefix)? {
        "/login" => Some(LoginEndpoint::Login),
        "/refresh" => Some(LoginEndpoint::Refresh),
        "/challenge" => Some(LoginEndpoint::Challenge),
        _ => None,
    }
}

/// Answers one login API request.
pub async fn serve(
    exchange: &Exchange,
    endpoint: LoginEndpoint,
    req: Request<hyper::body::Incoming>,
    client: IpAddr,
) -> Result<Response<Body>, GatewayError> {
    if req.method() != Method::POST {
        return Err(GatewayError::MethodNotAllowed(
            http::HeaderValue::from_static("POST"),
        ));
    }
    let body = Limited::new(req.into_body(), MAX_LOGIN_BODY)
        .collect()
        .await
        .map_err(|_| GatewayError::BodyTooLarge)?
        .to_bytes();
    let fail = |e| GatewayError::Login(e, endpoint);
    let result = match endpoint {
        LoginEndpoint::Login => {
            let b: LoginBody = parse(&body)?;
            if !valid_username(&b.username) || b.password.is_empty() || b.password.len() > 1024 {
                return Err(GatewayError::BadRequest(
                    "username or password out of bounds",
                ));
            }
            let attempt = reserve(exchange, Some(&b.username), client).await?;
            let r = exchange.api.login(&b.username, &b.password).await;
            if let Ok(AuthResult::Tokens(set)) = &r {
                exchange.issued.remember(set);
            }
            settle(r, attempt)
        }
        LoginEndpoint::Refresh => {
            let b: RefreshBody = parse(&body)?;
            // SECRET_HASH needs the canonical username, not an alias the client may send: the
            // one this gateway saw in the tokens it issued with this refresh token wins.
            let username = exchange
                .issued
                .username(&b.refresh_token)
                .or(b.username.filter(|u| valid_username(u)))
                .ok_or(GatewayError::BadRequest("username required"))?;
            if b.refresh_token.is_empty() {
                return Err(GatewayError::BadRequest("refresh_token required"));
            }
            let attempt = reserve(exchange, None, client).await?;
            let r = exchange.api.refresh(&b.refresh_token, &username).await;
            if let Ok(AuthResult::Tokens(set)) = &r {
                // A rotated refresh token (GetTokensFromRefreshToken) is remembered too.
                exchange.issued.remember(set);
            }
            settle(r, attempt)
        }
        LoginEndpoint::Challenge => {
            let b: ChallengeBody = parse(&body)?;
            if !valid_username(&b.username) || b.challenge_name.is_empty() || b.session.is_empty() {
                return Err(GatewayError::BadRequest("challenge fields missing"));
            }
            // The session, not the named user, is what the client holds (Cognito limits code
            // attempts per session itself): failures are charged to the address.
            let attempt = reserve(exchange, None, client).await?;
            let r = exchange
                .api
                .respond(&b.challenge_name, &b.session, &b.username, &b.responses)
                .await;
            if let Ok(AuthResult::Tokens(set)) = &r {
                exchange.issued.remember(set);
            }
            settle(r, attempt)
        }
    };
    let answer = result.map_err(fail)?;
    Ok(json_response(
        StatusCode::OK,
        Bytes::from(serde_json::to_vec(&answer.to_cognito_json()).expect("JSON serialises")),
    ))
}

/// The body as `T`, or 400 when it is not the documented JSON object.
fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, GatewayError> {
    serde_json::from_slice(body)
        .map_err(|_| GatewayError::BadRequest("expected a JSON object with the documented fields"))
}

fn valid_username(u: &str) -> bool {
    !u.is_empty() && u.len() <= 256
}

async fn reserve(
    x: &Exchange,
    username: Option<&str>,
    client: IpAddr,
) -> Result<Attempt, GatewayError> {
    x.limiter
        .reserve(username, client)
        .await
        .ok_or(GatewayError::TooManyFailures)
}

/// A private API call made under a reserved attempt, which stays charged only when the call
/// failed on the credentials.
fn settle(
    result: Result<AuthResult, ExchangeError>,
    attempt: Attempt,
) -> Result<AuthResult, ExchangeError> {
    match &result {
        Err(e) if e.is_credential_failure() => drop(attempt),
        Ok(_) | Err(_) => attempt.refund(),
    }
    result
}
