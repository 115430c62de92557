//! The one place that turns a failed request into a response. The status follows where the
//! error came from: the client's credentials (401/403), the client's request (400/404/413), an
//! upstream (502/504), or a dependency of the gateway (503). Internal error text never reaches
//! the client; it goes to the log.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

use crate::body::{full, Body};
use crate::exchange::{CognitoErrorKind, DependencyError, ExchangeError};
use crate::jwt::AuthError;

/// The status for an exchange failure on a Basic route: the credentials' fault is 401, a
/// throttled Cognito 429, a timeout 504, anything else about the dependency 503.
fn exchange_status(e: &ExchangeError) -> StatusCode {
    match e {
        ExchangeError::Cognito { kind, .. } => match kind {
            CognitoErrorKind::NotAuthorized
            | CognitoErrorKind::UserNotFound
            | CognitoErrorKind::UserNotConfirmed
            | CognitoErrorKind::PasswordResetRequired
            | CognitoErrorKind::CodeMismatch
            | CognitoErrorKind::ExpiredCode
            | CognitoErrorKind::InvalidPassword
            | CognitoErrorKind::InvalidParameter => StatusCode::UNAUTHORIZED,
            CognitoErrorKind::TooManyRequests | CognitoErrorKind::PasswordAttemptsExceeded => {
                StatusCode::TOO_MANY_REQUESTS
            }
            CognitoErrorKind::ResourceNotFound
            | CognitoErrorKind::InternalError
            | CognitoErrorKind::Other => StatusCode::SERVICE_UNAVAILABLE,
        },
        ExchangeError::ChallengeRequired(_) => StatusCode::UNAUTHORIZED,
        ExchangeError::Dependency(DependencyError::Timeout) => StatusCode::GATEWAY_TIMEOUT,
        ExchangeError::Dependency(
            DependencyError::Connect
            | DependencyError::Forbidden
            | DependencyError::Throttled
            | DependencyError::Status(_)
            | DependencyError::Garbage
            | DependencyError::CircuitOpen,
        ) => StatusCode::SERVICE_UNAVAILABLE,
        ExchangeError::InvalidTokens(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The standard message for a status the gateway produces itself.
fn status_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => MSG_UNAUTHORIZED,
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        504 => "Endpoint request timed out",
        _ => "Bad Gateway",
    }
}

/// How a 401 invites the client to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    Bearer,
    Basic,
    None,
}

/// What went wrong with an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("connection to the upstream failed")]
    Connect,
    #[error("the upstream closed or reset the connection, or sent a malformed response")]
    Protocol,
    #[error("the upstream did not answer within the route's timeout")]
    Timeout,
}

impl UpstreamError {
    pub fn kind(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Protocol => "protocol",
            UpstreamError::Timeout => "timeout",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("authorization failed: {0}")]
    Auth(AuthError, Challenge),
    #[error("client address is not in the route's allow_from")]
    ClientNotAllowed,
    #[error("no route matches the request")]
    NoRoute,
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("request body larger than max_body_bytes")]
    BodyTooLarge,
    #[error("{0}")]
    Upstream(UpstreamError),
    /// Basic credentials could not be exchanged for tokens.
    #[error("credential exchange failed: {0}")]
    Exchange(ExchangeError),
    /// Too many failed logins for the username or the client address.
    #[error("too many failed logins")]
    TooManyFailures,
    /// The route's service account holds no valid token.
    #[error("service account {0:?} holds no valid token")]
    ServiceTokenUnavailable(String),
}

pub const MSG_UNAUTHORIZED: &str = "Unauthorized";
pub const MSG_EXPIRED: &str = "The incoming token has expired";
pub const MSG_GROUP_DENIED: &str = "User is not authorized to access this resource";

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::Auth(e, _) => match e {
                AuthError::Missing
                | AuthError::Malformed(_)
                | AuthError::Algorithm(_)
                | AuthError::Issuer { .. }
                | AuthError::UnknownKid
                | AuthError::BadSignature
                | AuthError::Expired { .. }
                | AuthError::NotYetValid { .. }
                | AuthError::TokenUse { .. }
                | AuthError::Client { .. }
                | AuthError::Scope { .. } => StatusCode::UNAUTHORIZED,
                AuthError::Group { .. } => StatusCode::FORBIDDEN,
                AuthError::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            },
            GatewayError::ClientNotAllowed => StatusCode::FORBIDDEN,
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::Upstream(UpstreamError::Connect | UpstreamError::Protocol) => {
                StatusCode::BAD_GATEWAY
            }
            GatewayError::Upstream(UpstreamError::Timeout) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Exchange(e) => exchange_status(e),
            GatewayError::TooManyFailures => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::ServiceTokenUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The message of the JSON body: API Gateway's wording, never internal detail.
    pub fn message(&self) -> &'static str {
        match self {
            GatewayError::Auth(e, _) => match e {
                AuthError::Expired { .. } => MSG_EXPIRED,
                AuthError::Group { .. } => MSG_GROUP_DENIED,
                AuthError::KeysUnavailable => "Service Unavailable",
                AuthError::Missing
                | AuthError::Malformed(_)
                | AuthError::Algorithm(_)
                | AuthError::Issuer { .. }
                | AuthError::UnknownKid
                | AuthError::BadSignature
                | AuthError::NotYetValid { .. }
                | AuthError::TokenUse { .. }
                | AuthError::Client { .. }
                | AuthError::Scope { .. } => MSG_UNAUTHORIZED,
            },
            GatewayError::ClientNotAllowed => "Forbidden",
            GatewayError::NoRoute => "Not Found",
            GatewayError::BadRequest(_) => "Bad Request",
            GatewayError::BodyTooLarge => "Request Entity Too Large",
            GatewayError::Upstream(UpstreamError::Connect | UpstreamError::Protocol) => {
                "Bad Gateway"
            }
            GatewayError::Upstream(UpstreamError::Timeout) => "Endpoint request timed out",
            GatewayError::Exchange(e) => status_message(exchange_status(e)),
            GatewayError::TooManyFailures => "Too Many Requests",
            GatewayError::ServiceTokenUnavailable(_) => "Service Unavailable",
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let mut resp = json_message(status, self.message());
        let challenge = match &self {
            GatewayError::Auth(_, c) => *c,
            GatewayError::Exchange(_) => Challenge::Basic,
            _ => Challenge::None,
        };
        if status == StatusCode::UNAUTHORIZED {
            let value = match challenge {
                Challenge::Bearer => Some(HeaderValue::from_static("Bearer")),
                Challenge::Basic => Some(HeaderValue::from_static("Basic realm=\"cognito-gate\"")),
                Challenge::None => None,
            };
            if let Some(v) = value {
                resp.headers_mut().insert(WWW_AUTHENTICATE, v);
            }
        }
        resp
    }
}

/// `{"message": ...}` with `content-type: application/json`.
pub fn json_message(status: StatusCode, message: &str) -> Response<Body> {
    // `{"message":...}` written directly: no intermediate JSON map on the (hot) denial path.
    let mut body = Vec::with_capacity(message.len() + 16);
    body.extend_from_slice(b"{\"message\":");
    serde_json::to_writer(&mut body, message).expect("a string always serialises");
    body.push(b'}');
    json_response(status, Bytes::from(body))
}

pub fn json_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the status and body of every variant.
    #[test]
    fn every_variant_has_its_status_and_message() {
        let cases: Vec<(GatewayError, u16, &str)> = vec![
            (
                GatewayError::Auth(AuthError::Missing, Challenge::Bearer),
                401,
                MSG_UNAUTHORIZED,
            ),
            (
                GatewayError::Auth(AuthError::Malformed("x"), Challenge::Bearer),
                401,
                MSG_UNAUTHORIZED,
            ),
            (
                GatewayError::Auth(AuthError::Algorithm("HS256".into()), Challenge::Bearer),
                401,
                MSG_UNAUTHORIZED,
            ),
            (
                GatewayError::Auth(
                    AuthError::Issuer {
                        expected: "a".into(),
                        actual: "b".into(),
                    },
                    Challenge::Bearer,
                ),
                401,
                MSG_UNAUTHORIZED,
            ),
            (
                GatewayError::Auth(AuthError::UnknownKid, Challenge::Bearer),
                401,
                MSG_UNAUTHORIZED,
            ),
            (
                GatewayError::Auth(AuthError::BadSignature, Challenge::Bearer),
                401,
                MSG_UNAUTHORIZED,
            ),
            (
                GatewayError::Auth(AuthError::Expired { exp: 1, now: 2 }, Challenge::Bearer),
                401,
                MSG_EXPIRED,
            ),
            (
                GatewayError::Auth(AuthError::NotYetValid { nbf: 2, now: 1 }, Challenge::Bearer),
                401,
                MSG_UNAUTHORIZED,
            ),
            (
                GatewayError::Auth(
                    AuthError::TokenUse {
                        expected: "id",
                        actual: "access".into(),
                    },
                    Challenge::Bearer,
                ),
                401,
                MSG_UNAUTHORIZED,
            ),
            (
                GatewayError::Auth(AuthError::Client { actual: "c".into() }, Challenge::Bearer),
                401,
                MSG_UNAUTHORIZED,
            ),
            (
                GatewayError::Auth(
                    AuthError::Scope {
                        required: vec![],
                        actual: String::new(),
                    },
                    Challenge::Bearer,
                ),
                401,
                MSG_UNAUTHORIZED,
            ),
            (
                GatewayError::Auth(
                    AuthError::Group {
                        required: vec![],
                        actual: vec![],
                    },
                    Challenge::Bearer,
                ),
                403,
                MSG_GROUP_DENIED,
            ),
            (
                GatewayError::Auth(AuthError::KeysUnavailable, Challenge::Bearer),
                503,
                "Service Unavailable",
            ),
            (GatewayError::ClientNotAllowed, 403, "Forbidden"),
            (GatewayError::NoRoute, 404, "Not Found"),
            (GatewayError::BadRequest("x"), 400, "Bad Request"),
            (GatewayError::BodyTooLarge, 413, "Request Entity Too Large"),
            (
                GatewayError::Upstream(UpstreamError::Connect),
                502,
                "Bad Gateway",
            ),
            (
                GatewayError::Upstream(UpstreamError::Protocol),
                502,
                "Bad Gateway",
            ),
            (
                GatewayError::Upstream(UpstreamError::Timeout),
                504,
                "Endpoint request timed out",
            ),
        ];
        for (err, status, msg) in cases {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            assert_eq!(err.message(), msg, "{err:?}");
            let resp = err.clone().into_response();
            assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
            let challenge = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .map(|v| v.to_str().unwrap().to_string());
            match (&err, status) {
                (GatewayError::Exchange(_), 401) => {
                    assert_eq!(challenge.as_deref(), Some("Basic realm=\"cognito-gate\""))
                }
                (_, 401) => assert_eq!(challenge.as_deref(), Some("Bearer"), "{err:?}"),
                _ => assert_eq!(challenge, None, "{err:?}"),
            }
        }
    }
}
