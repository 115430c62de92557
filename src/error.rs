//! The one place that turns a failed request into a response and an audit record. The status
//! follows where the error came from: the client's credentials (401/403/429), the client's
//! request (400/404/405/413), an upstream (502/504), or a dependency of the gateway (502/503/504).
//! Every variant maps, in one exhaustive match, to its status, body, challenge and audit
//! (decision, reason); the login API's answers come from the same map. Internal error text
//! never reaches the client; it goes to the log.

use bytes::Bytes;
use http::header::{HeaderValue, ALLOW, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

pub use crate::audit::{Audit, Decision, Reason};
use crate::body::{json_message, json_response, Body};
use crate::exchange::{CognitoErrorKind, DependencyError, ExchangeError};
use crate::jwt::AuthError;
use crate::throttle::Throttled;

pub(crate) const MSG_UNAUTHORIZED: &str = "Unauthorized";
pub(crate) const MSG_EXPIRED: &str = "The incoming token has expired";
pub(crate) const MSG_GROUP_DENIED: &str = "User is not authorized to access this resource";
const MSG_FORBIDDEN: &str = "Forbidden";
const MSG_TOO_MANY: &str = "Too Many Requests";
const MSG_BAD_GATEWAY: &str = "Bad Gateway";
const MSG_UNAVAILABLE: &str = "Service Unavailable";
const MSG_TIMEOUT: &str = "Endpoint request timed out";
const MSG_BAD_REQUEST: &str = "Bad Request";

/// How a 401 invites the client to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    Bearer,
    Basic,
    None,
}

impl Challenge {
    fn header(self) -> Option<HeaderValue> {
        match self {
            Challenge::Bearer => Some(HeaderValue::from_static("Bearer")),
            Challenge::Basic => Some(HeaderValue::from_static("Basic realm=\"cognito-gate\"")),
            Challenge::None => None,
        }
    }
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

    pub(crate) const ALL: [UpstreamError; 3] = [
        UpstreamError::Connect,
        UpstreamError::Protocol,
        UpstreamError::Timeout,
    ];
}

/// The login API's endpoints: each words a refusal of the credentials its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginEndpoint {
    Login,
    Refresh,
    Challenge,
}

impl LoginEndpoint {
    fn denied(self) -> &'static str {
        match self {
            LoginEndpoint::Login | LoginEndpoint::Challenge => "Incorrect username or password.",
            LoginEndpoint::Refresh => "Invalid refresh token.",
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
    /// The request's body does not parse (a bad chunk size, a chunk without its CRLF): 400, and
    /// the connection is closed, since where the next request starts is no longer known. (hyper
    /// refuses ambiguous heads itself before the gateway sees them; `tests/hostile.rs`.)
    #[error("bad framing: {0}")]
    BadFraming(&'static str),
    #[error("method not allowed (only {0:?})")]
    MethodNotAllowed(HeaderValue),
    #[error("request body larger than the limit")]
    BodyTooLarge,
    #[error("{0}")]
    Upstream(UpstreamError),
    /// Basic credentials could not be exchanged for tokens.
    #[error("credential exchange failed: {0}")]
    Exchange(ExchangeError),
    /// A login API call failed; answered in Cognito's terms (typed 403s, 400s).
    #[error("login API call failed: {0}")]
    Login(ExchangeError, LoginEndpoint),
    /// Too many failed logins for the username or the client address.
    #[error("too many failed logins")]
    TooManyFailures,
    /// The route's service account holds no valid token.
    #[error("service account {0:?} holds no valid token")]
    ServiceTokenUnavailable(String),
    /// A request through the forward proxy on a basic route, with no credential: 407.
    #[error("proxy authentication required")]
    ProxyAuthRequired,
    /// The forward proxy does not reach this destination (RFC 9209 error type): 403, or 502
    /// when it could not be reached.
    #[error("forward proxy destination refused: {0}")]
    ProxyDestination(&'static str),
    /// A `[throttle]` limit is exhausted: 429 with `Retry-After` and the `RateLimit` headers.
    #[error("throttled by limit {:?}", .0.limit)]
    Throttled(Box<Throttled>),
    /// An api_key-limited route without a known API key: 403, API Gateway's answer.
    #[error("no known API key")]
    ApiKeyRequired,
}

/// The JSON body of an error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorBody {
    /// `{"message": ...}`
    Message(&'static str),
    /// `{"message": ..., "type": ...}`: the login API names Cognito's error type where the
    /// client can act on it (unconfirmed user, password reset, a bad parameter).
    Typed {
        message: &'static str,
        type_name: String,
    },
}

/// Everything an error becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub status: StatusCode,
    pub body: ErrorBody,
    pub challenge: Challenge,
    /// `None` for errors that are not an auth decision (no route, bad request, upstream).
    pub audit: Option<Audit>,
}

fn plain(status: StatusCode, message: &'static str) -> (StatusCode, ErrorBody) {
    (status, ErrorBody::Message(message))
}

fn typed(status: StatusCode, message: &'static str, type_name: &str) -> (StatusCode, ErrorBody) {
    (
        status,
        ErrorBody::Typed {
            message,
            type_name: type_name.to_string(),
        },
    )
}

/// An exchange failure on a Basic route (`None`) or in the login API.
fn exchange(e: &ExchangeError, login: Option<LoginEndpoint>) -> (StatusCode, ErrorBody) {
    let denied = |endpoint: Option<LoginEndpoint>| match endpoint {
        Some(ep) => plain(StatusCode::UNAUTHORIZED, ep.denied()),
        None => plain(StatusCode::UNAUTHORIZED, MSG_UNAUTHORIZED),
    };
    match e {
        ExchangeError::Cognito { kind, type_name } => match (kind, login) {
            (CognitoErrorKind::NotAuthorized | CognitoErrorKind::UserNotFound, ep) => denied(ep),
            // On a Basic route every refusal of the credentials is the same 401: the client
            // can only try other credentials.
            (
                CognitoErrorKind::UserNotConfirmed
                | CognitoErrorKind::PasswordResetRequired
                | CognitoErrorKind::InvalidParameter
                | CognitoErrorKind::InvalidPassword
                | CognitoErrorKind::CodeMismatch
                | CognitoErrorKind::ExpiredCode,
                None,
            ) => denied(None),
            (CognitoErrorKind::UserNotConfirmed, Some(_)) => {
                typed(StatusCode::FORBIDDEN, "User is not confirmed.", type_name)
            }
            (CognitoErrorKind::PasswordResetRequired, Some(_)) => typed(
                StatusCode::FORBIDDEN,
                "Password reset required for the user.",
                type_name,
            ),
            (CognitoErrorKind::InvalidParameter, Some(_)) => {
                typed(StatusCode::BAD_REQUEST, "Invalid parameter.", type_name)
            }
            (CognitoErrorKind::InvalidPassword, Some(_)) => typed(
                StatusCode::BAD_REQUEST,
                "The new password does not meet the password policy.",
                type_name,
            ),
            (CognitoErrorKind::CodeMismatch | CognitoErrorKind::ExpiredCode, Some(_)) => typed(
                StatusCode::UNAUTHORIZED,
                "Invalid or expired code.",
                type_name,
            ),
            (CognitoErrorKind::TooManyRequests | CognitoErrorKind::PasswordAttemptsExceeded, _) => {
                plain(StatusCode::TOO_MANY_REQUESTS, MSG_TOO_MANY)
            }
            // Cognito answered, but not about the credentials: the private API misbehaves.
            (
                CognitoErrorKind::ResourceNotFound
                | CognitoErrorKind::InternalError
                | CognitoErrorKind::Other,
                _,
            ) => plain(StatusCode::BAD_GATEWAY, MSG_BAD_GATEWAY),
        },
        // A user who must answer a challenge cannot use Basic; the login API returns
        // challenges as answers, so there it means the private API misbehaved.
        ExchangeError::ChallengeRequired(_) => match login {
            None => denied(None),
            Some(_) => plain(StatusCode::BAD_GATEWAY, MSG_BAD_GATEWAY),
        },
        ExchangeError::InvalidTokens(_) => plain(StatusCode::BAD_GATEWAY, MSG_BAD_GATEWAY),
        ExchangeError::Dependency(DependencyError::Timeout) => {
            plain(StatusCode::GATEWAY_TIMEOUT, MSG_TIMEOUT)
        }
        ExchangeError::Dependency(
            DependencyError::Connect(_)
            | DependencyError::Forbidden
            | DependencyError::Throttled
            | DependencyError::Status(_)
            | DependencyError::Garbage
            | DependencyError::CircuitOpen
            | DependencyError::Credentials
            | DependencyError::Denied,
        ) => plain(StatusCode::SERVICE_UNAVAILABLE, MSG_UNAVAILABLE),
    }
}

impl GatewayError {
    /// The one map: status, body, challenge and audit of every error.
    pub fn map(&self) -> Mapped {
        let ((status, body), challenge, audit) = match self {
            GatewayError::Auth(e, challenge) => {
                let out = match e {
                    AuthError::Missing
                    | AuthError::Malformed(_)
                    | AuthError::Algorithm(_)
                    | AuthError::Issuer { .. }
                    | AuthError::UnknownKid
                    | AuthError::BadSignature
                    | AuthError::NotYetValid { .. }
                    | AuthError::TokenUse { .. }
                    | AuthError::Client { .. }
                    | AuthError::Scope { .. }
                    | AuthError::Pool { .. } => plain(StatusCode::UNAUTHORIZED, MSG_UNAUTHORIZED),
                    AuthError::Expired { .. } => plain(StatusCode::UNAUTHORIZED, MSG_EXPIRED),
                    AuthError::Group { .. } => plain(StatusCode::FORBIDDEN, MSG_GROUP_DENIED),
                    AuthError::KeysUnavailable => {
                        plain(StatusCode::SERVICE_UNAVAILABLE, MSG_UNAVAILABLE)
                    }
                    AuthError::TooManyBadSignatures => {
                        plain(StatusCode::TOO_MANY_REQUESTS, MSG_TOO_MANY)
                    }
                };
                (
                    out,
                    *challenge,
                    Some(Audit::deny(Reason::Token(e.reason()))),
                )
            }
            GatewayError::ClientNotAllowed => (
                plain(StatusCode::FORBIDDEN, MSG_FORBIDDEN),
                Challenge::None,
                Some(Audit::deny(Reason::AllowFrom)),
            ),
            GatewayError::NoRoute => (
                plain(StatusCode::NOT_FOUND, "Not Found"),
                Challenge::None,
                None,
            ),
            GatewayError::BadRequest(_) | GatewayError::BadFraming(_) => (
                plain(StatusCode::BAD_REQUEST, MSG_BAD_REQUEST),
                Challenge::None,
                None,
            ),
            GatewayError::MethodNotAllowed(_) => (
                plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
                Challenge::None,
                None,
            ),
            GatewayError::BodyTooLarge => (
                plain(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
                Challenge::None,
                None,
            ),
            GatewayError::Upstream(UpstreamError::Connect | UpstreamError::Protocol) => (
                plain(StatusCode::BAD_GATEWAY, MSG_BAD_GATEWAY),
                Challenge::None,
                None,
            ),
            GatewayError::Upstream(UpstreamError::Timeout) => (
                plain(StatusCode::GATEWAY_TIMEOUT, MSG_TIMEOUT),
                Challenge::None,
                None,
            ),
            GatewayError::Exchange(e) => (
                exchange(e, None),
                Challenge::Basic,
                Some(Audit::deny(Reason::Exchange(e.outcome()))),
            ),
            GatewayError::Login(e, endpoint) => (
                exchange(e, Some(*endpoint)),
                Challenge::None,
                Some(Audit {
                    decision: Decision::LoginApi,
                    reason: Reason::Exchange(e.outcome()),
                }),
            ),
            GatewayError::TooManyFailures => (
                plain(StatusCode::TOO_MANY_REQUESTS, MSG_TOO_MANY),
                Challenge::None,
                Some(Audit::deny(Reason::RateLimited)),
            ),
            GatewayError::ServiceTokenUnavailable(_) => (
                plain(StatusCode::SERVICE_UNAVAILABLE, MSG_UNAVAILABLE),
                Challenge::None,
                Some(Audit::deny(Reason::ServiceTokenUnavailable)),
            ),
            GatewayError::ProxyAuthRequired => (
                plain(
                    StatusCode::PROXY_AUTHENTICATION_REQUIRED,
                    "Proxy Authentication Required",
                ),
                Challenge::None,
                Some(Audit::deny(Reason::Token(AuthError::Missing.reason()))),
            ),
            GatewayError::ProxyDestination(kind) => (
                if proxy_unreachable(kind) {
                    plain(StatusCode::BAD_GATEWAY, MSG_BAD_GATEWAY)
                } else {
                    plain(StatusCode::FORBIDDEN, MSG_FORBIDDEN)
                },
                Challenge::None,
                None,
            ),
            GatewayError::Throttled(_) => (
                plain(StatusCode::TOO_MANY_REQUESTS, MSG_TOO_MANY),
                Challenge::None,
                None,
            ),
            GatewayError::ApiKeyRequired => (
                plain(StatusCode::FORBIDDEN, MSG_FORBIDDEN),
                Challenge::None,
                None,
            ),
        };
        Mapped {
            status,
            body,
            challenge,
            audit,
        }
    }

    pub fn status(&self) -> StatusCode {
        self.map().status
    }

    /// The response: the mapped status and JSON body, `WWW-Authenticate` on a 401 with a
    /// challenge, `Allow` on a 405.
    pub(crate) fn into_response(self) -> Response<Body> {
        let mapped = self.map();
        let mut resp = match &mapped.body {
            ErrorBody::Message(m) => json_message(mapped.status, m),
            ErrorBody::Typed { message, type_name } => json_response(
                mapped.status,
                Bytes::from(
                    serde_json::json!({ "message": message, "type": type_name }).to_string(),
                ),
            ),
        };
        if mapped.status == StatusCode::UNAUTHORIZED {
            if let Some(v) = mapped.challenge.header() {
                resp.headers_mut().insert(WWW_AUTHENTICATE, v);
            }
        }
        match self {
            GatewayError::MethodNotAllowed(allow) => {
                resp.headers_mut().insert(ALLOW, allow);
            }
            GatewayError::ProxyAuthRequired => {
                resp.headers_mut().insert(
                    http::header::PROXY_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"cognito-gate\""),
                );
            }
            GatewayError::ProxyDestination(kind) => {
                // RFC 9209: which proxy, and why.
                if let Ok(v) = HeaderValue::from_str(&format!("cognito-gate; error={kind}")) {
                    resp.headers_mut().insert(PROXY_STATUS, v);
                }
            }
            GatewayError::BadFraming(_) => {
                resp.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            GatewayError::Throttled(t) => t.write_headers(resp.headers_mut()),
            // The budget's window, from the client's first failure.
            GatewayError::Auth(AuthError::TooManyBadSignatures, _) => {
                resp.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    HeaderValue::from(crate::jwt::flood::WINDOW_SECS),
                );
            }
            _ => {}
        }
        resp
    }
}

/// RFC 9209's response header.
pub(crate) const PROXY_STATUS: http::HeaderName = http::HeaderName::from_static("proxy-status");

/// RFC 9209 error types that mean "tried, and could not reach it" (502) rather than "may not".
fn proxy_unreachable(kind: &str) -> bool {
    matches!(
        kind,
        "dns_error" | "destination_unavailable" | "connection_refused" | "connection_timeout"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(e: AuthError) -> GatewayError {
        GatewayError::Auth(e, Challenge::Bearer)
    }

    fn cognito(kind: CognitoErrorKind) -> ExchangeError {
        ExchangeError::Cognito {
            kind,
            type_name: format!("{kind:?}Exception"),
        }
    }

    fn msg(m: &'static str) -> ErrorBody {
        ErrorBody::Message(m)
    }

    fn typed_body(m: &'static str, kind: CognitoErrorKind) -> ErrorBody {
        ErrorBody::Typed {
            message: m,
            type_name: format!("{kind:?}Exception"),
        }
    }

    /// An error, its status, body, challenge and audit.
    type Case = (
        GatewayError,
        u16,
        ErrorBody,
        Option<&'static str>,
        Option<Audit>,
    );
    /// An exchange error as a Basic route (status, body, challenge) and the login API see it.
    type ExchangeCase = (
        ExchangeError,
        (u16, ErrorBody, Option<&'static str>),
        (u16, ErrorBody),
    );

    #[test]
    fn a_throttled_answer_says_when_to_retry() {
        let resp = GatewayError::Throttled(Box::new(Throttled {
            limit: "per_app".into(),
            retry_after: std::time::Duration::from_millis(1200),
            policy: HeaderValue::from_static("\"per_app\";q=20;w=4"),
        }))
        .into_response();
        assert_eq!(resp.status(), 429);
        let h = resp.headers();
        assert_eq!(h["retry-after"], "2");
        assert_eq!(h["ratelimit-policy"], "\"per_app\";q=20;w=4");
        assert_eq!(h["ratelimit"], "\"per_app\";r=0;t=2");
    }

    /// Pins the status, body, challenge and audit of every variant (and of every exchange
    /// error on both sides that map it).
    #[test]
    fn every_variant_maps_to_its_status_body_challenge_and_audit() {
        use CognitoErrorKind as K;
        let deny = |r| Some(Audit::deny(r));
        let token = |r| deny(Reason::Token(r));
        let mut cases: Vec<Case> = vec![
            (
                auth(AuthError::Missing),
                401,
                msg(MSG_UNAUTHORIZED),
                Some("Bearer"),
                token("missing"),
            ),
            (
                auth(AuthError::Malformed("x")),
                401,
                msg(MSG_UNAUTHORIZED),
                Some("Bearer"),
                token("malformed"),
            ),
            (
                auth(AuthError::Algorithm("HS256".into())),
                401,
                msg(MSG_UNAUTHORIZED),
                Some("Bearer"),
                token("algorithm"),
            ),
            (
                auth(AuthError::Issuer {
                    expected: "a".into(),
                    actual: "b".into(),
                }),
                401,
                msg(MSG_UNAUTHORIZED),
                Some("Bearer"),
                token("issuer"),
            ),
            (
                auth(AuthError::UnknownKid),
                401,
                msg(MSG_UNAUTHORIZED),
                Some("Bearer"),
                token("unknown_kid"),
            ),
            (
                auth(AuthError::BadSignature),
                401,
                msg(MSG_UNAUTHORIZED),
                Some("Bearer"),
                token("bad_signature"),
            ),
            (
                auth(AuthError::Expired { exp: 1, now: 2 }),
                401,
                msg(MSG_EXPIRED),
                Some("Bearer"),
                token("expired"),
            ),
            (
                auth(AuthError::NotYetValid { nbf: 2, now: 1 }),
                401,
                msg(MSG_UNAUTHORIZED),
                Some("Bearer"),
                token("not_yet_valid"),
            ),
            (
                auth(AuthError::TokenUse {
                    expected: "id",
                    actual: "access".into(),
                }),
                401,
                msg(MSG_UNAUTHORIZED),
                Some("Bearer"),
                token("token_use"),
            ),
            (
                auth(AuthError::Client { actual: "c".into() }),
                401,
                msg(MSG_UNAUTHORIZED),
                Some("Bearer"),
                token("client"),
            ),
            (
                auth(AuthError::Scope {
                    required: vec![],
                    actual: String::new(),
                }),
                401,
                msg(MSG_UNAUTHORIZED),
                Some("Bearer"),
                token("scope"),
            ),
            (
                auth(AuthError::Group {
                    required: vec![],
                    actual: vec![],
                }),
                403,
                msg(MSG_GROUP_DENIED),
                None,
                token("group"),
            ),
            (
                auth(AuthError::KeysUnavailable),
                503,
                msg(MSG_UNAVAILABLE),
                None,
                token("jwks_unavailable"),
            ),
            (
                GatewayError::Auth(AuthError::Missing, Challenge::Basic),
                401,
                msg(MSG_UNAUTHORIZED),
                Some("Basic realm=\"cognito-gate\""),
                token("missing"),
            ),
            (
                GatewayError::Auth(AuthError::Missing, Challenge::None),
                401,
                msg(MSG_UNAUTHORIZED),
                None,
                token("missing"),
            ),
            (
                GatewayError::ClientNotAllowed,
                403,
                msg("Forbidden"),
                None,
                deny(Reason::AllowFrom),
            ),
            (GatewayError::NoRoute, 404, msg("Not Found"), None, None),
            (
                GatewayError::BadRequest("x"),
                400,
                msg("Bad Request"),
                None,
                None,
            ),
            (
                GatewayError::BadFraming("x"),
                400,
                msg("Bad Request"),
                None,
                None,
            ),
            (
                GatewayError::MethodNotAllowed(HeaderValue::from_static("POST")),
                405,
                msg("Method Not Allowed"),
                None,
                None,
            ),
            (
                GatewayError::BodyTooLarge,
                413,
                msg("Request Entity Too Large"),
                None,
                None,
            ),
            (
                GatewayError::Upstream(UpstreamError::Connect),
                502,
                msg("Bad Gateway"),
                None,
                None,
            ),
            (
                GatewayError::Upstream(UpstreamError::Protocol),
                502,
                msg("Bad Gateway"),
                None,
                None,
            ),
            (
                GatewayError::Upstream(UpstreamError::Timeout),
                504,
                msg("Endpoint request timed out"),
                None,
                None,
            ),
            (
                GatewayError::TooManyFailures,
                429,
                msg("Too Many Requests"),
                None,
                deny(Reason::RateLimited),
            ),
            (
                GatewayError::ServiceTokenUnavailable("b".into()),
                503,
                msg(MSG_UNAVAILABLE),
                None,
                deny(Reason::ServiceTokenUnavailable),
            ),
            (
                GatewayError::Throttled(Box::new(Throttled {
                    limit: "per_app".into(),
                    retry_after: std::time::Duration::from_millis(1200),
                    policy: HeaderValue::from_static("\"per_app\";q=20;w=4"),
                })),
                429,
                msg("Too Many Requests"),
                None,
                None,
            ),
            (
                GatewayError::ApiKeyRequired,
                403,
                msg("Forbidden"),
                None,
                None,
            ),
        ];
        // Every exchange error, on a Basic route and in each login API endpoint.
        let basic_401 = Some("Basic realm=\"cognito-gate\"");
        let exchange_cases: Vec<ExchangeCase> = vec![
            (
                cognito(K::NotAuthorized),
                (401, msg(MSG_UNAUTHORIZED), basic_401),
                (401, msg("Incorrect username or password.")),
            ),
            (
                cognito(K::UserNotFound),
                (401, msg(MSG_UNAUTHORIZED), basic_401),
                (401, msg("Incorrect username or password.")),
            ),
            (
                cognito(K::PasswordAttemptsExceeded),
                (429, msg("Too Many Requests"), None),
                (429, msg("Too Many Requests")),
            ),
            (
                cognito(K::UserNotConfirmed),
                (401, msg(MSG_UNAUTHORIZED), basic_401),
                (
                    403,
                    typed_body("User is not confirmed.", K::UserNotConfirmed),
                ),
            ),
            (
                cognito(K::PasswordResetRequired),
                (401, msg(MSG_UNAUTHORIZED), basic_401),
                (
                    403,
                    typed_body(
                        "Password reset required for the user.",
                        K::PasswordResetRequired,
                    ),
                ),
            ),
            (
                cognito(K::TooManyRequests),
                (429, msg("Too Many Requests"), None),
                (429, msg("Too Many Requests")),
            ),
            (
                cognito(K::InvalidParameter),
                (401, msg(MSG_UNAUTHORIZED), basic_401),
                (400, typed_body("Invalid parameter.", K::InvalidParameter)),
            ),
            (
                cognito(K::CodeMismatch),
                (401, msg(MSG_UNAUTHORIZED), basic_401),
                (401, typed_body("Invalid or expired code.", K::CodeMismatch)),
            ),
            (
                cognito(K::ExpiredCode),
                (401, msg(MSG_UNAUTHORIZED), basic_401),
                (401, typed_body("Invalid or expired code.", K::ExpiredCode)),
            ),
            (
                cognito(K::InvalidPassword),
                (401, msg(MSG_UNAUTHORIZED), basic_401),
                (
                    400,
                    typed_body(
                        "The new password does not meet the password policy.",
                        K::InvalidPassword,
                    ),
                ),
            ),
            (
                cognito(K::ResourceNotFound),
                (502, msg("Bad Gateway"), None),
                (502, msg("Bad Gateway")),
            ),
            (
                cognito(K::InternalError),
                (502, msg("Bad Gateway"), None),
                (502, msg("Bad Gateway")),
            ),
            (
                cognito(K::Other),
                (502, msg("Bad Gateway"), None),
                (502, msg("Bad Gateway")),
            ),
            (
                ExchangeError::ChallengeRequired("MFA".into()),
                (401, msg(MSG_UNAUTHORIZED), basic_401),
                (502, msg("Bad Gateway")),
            ),
            (
                ExchangeError::InvalidTokens("x".into()),
                (502, msg("Bad Gateway"), None),
                (502, msg("Bad Gateway")),
            ),
            (
                ExchangeError::Dependency(DependencyError::Timeout),
                (504, msg("Endpoint request timed out"), None),
                (504, msg("Endpoint request timed out")),
            ),
        ];
        let mut dependency: Vec<_> = [
            DependencyError::Connect(crate::cause::Cause::Dns),
            DependencyError::Forbidden,
            DependencyError::Throttled,
            DependencyError::Status(500),
            DependencyError::Garbage,
            DependencyError::CircuitOpen,
            DependencyError::Credentials,
            DependencyError::Denied,
        ]
        .into_iter()
        .map(|d| {
            (
                ExchangeError::Dependency(d),
                (503, msg(MSG_UNAVAILABLE), None),
                (503, msg(MSG_UNAVAILABLE)),
            )
        })
        .collect();
        dependency.extend(exchange_cases);
        for (e, (bs, bb, bc), (ls, lb)) in dependency {
            let reason = Reason::Exchange(e.outcome());
            cases.push((GatewayError::Exchange(e.clone()), bs, bb, bc, deny(reason)));
            for ep in [
                LoginEndpoint::Login,
                LoginEndpoint::Refresh,
                LoginEndpoint::Challenge,
            ] {
                let body = match (&lb, ep) {
                    (
                        ErrorBody::Message("Incorrect username or password."),
                        LoginEndpoint::Refresh,
                    ) => msg("Invalid refresh token."),
                    (b, _) => b.clone(),
                };
                let audit = Some(Audit {
                    decision: Decision::LoginApi,
                    reason,
                });
                cases.push((GatewayError::Login(e.clone(), ep), ls, body, None, audit));
            }
        }
        for (err, status, body, challenge, audit) in cases {
            let m = err.map();
            assert_eq!(m.status.as_u16(), status, "{err:?}");
            assert_eq!(m.body, body, "{err:?}");
            assert_eq!(m.audit, audit, "{err:?}");
            let resp = err.clone().into_response();
            assert_eq!(resp.status().as_u16(), status);
            assert_eq!(
                resp.headers()[http::header::CONTENT_TYPE],
                "application/json"
            );
            let got = resp
                .headers()
                .get(WWW_AUTHENTICATE)
                .map(|v| v.to_str().unwrap().to_string());
            assert_eq!(got.as_deref(), challenge, "{err:?}");
        }
        let resp = GatewayError::MethodNotAllowed(HeaderValue::from_static("POST")).into_response();
        assert_eq!(resp.headers()[ALLOW], "POST");
    }
}
