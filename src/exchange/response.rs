//! What the private API answers, classified by content, not status: API Gateway's default
//! integration response turns Cognito errors into HTTP 200 with `__type` in the body.

use std::fmt;

use serde_json::{json, Map, Value};

use super::error::{CognitoErrorKind, DependencyError, ExchangeError};

/// Tokens returned by Cognito. Debug never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSet {
    pub id_token: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: u64,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("expires_in", &self.expires_in)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// A challenge Cognito wants answered before it issues tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct Challenge {
    pub name: String,
    pub session: Option<String>,
    pub parameters: Map<String, Value>,
}

impl fmt::Debug for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Challenge")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthResult {
    Tokens(TokenSet),
    Challenge(Challenge),
}

impl AuthResult {
    /// The Cognito-shaped JSON answer (what InitiateAuth returns).
    pub(crate) fn to_cognito_json(&self) -> Value {
        match self {
            AuthResult::Tokens(t) => {
                let mut result = json!({
                    "IdToken": t.id_token,
                    "AccessToken": t.access_token,
                    "ExpiresIn": t.expires_in,
                    "TokenType": "Bearer",
                });
                if let Some(r) = &t.refresh_token {
                    result["RefreshToken"] = Value::String(r.clone());
                }
                json!({ "AuthenticationResult": result, "ChallengeParameters": {} })
            }
            AuthResult::Challenge(c) => {
                let mut v = json!({
                    "ChallengeName": c.name,
                    "ChallengeParameters": c.parameters,
                });
                if let Some(s) = &c.session {
                    v["Session"] = Value::String(s.clone());
                }
                v
            }
        }
    }
}

fn status_error(status: u16) -> ExchangeError {
    ExchangeError::Dependency(match status {
        403 => DependencyError::Forbidden,
        429 => DependencyError::Throttled,
        504 => DependencyError::Timeout,
        s if s >= 500 => DependencyError::Status(s),
        _ => DependencyError::Garbage,
    })
}

/// A typed error from the private API. A type the gateway does not know says nothing about the
/// credentials: on a 5xx (API Gateway's own `ServiceUnavailableException`, a 504 integration
/// timeout) the HTTP status tells what happened, so the private API counts as unavailable (503)
/// or timed out (504) rather than misbehaving (502).
fn typed_error(status: u16, type_name: &str, message: Option<&str>) -> ExchangeError {
    match ExchangeError::cognito_with_message(type_name, message) {
        ExchangeError::Cognito {
            kind: CognitoErrorKind::Other,
            ..
        } if status >= 500 => status_error(status),
        e => e,
    }
}

/// The AWS error code of a response, for logs: the `x-amzn-ErrorType` header, a JSON `__type`,
/// or an XML `<Code>` (AWS's query-protocol errors, e.g. a signature refused before the service
/// saw the request). Bounded to a short token.
pub(crate) fn error_code(error_type: Option<&str>, body: &[u8]) -> Option<String> {
    let raw = error_type.map(str::to_string).or_else(|| {
        if let Ok(Value::Object(o)) = serde_json::from_slice::<Value>(body) {
            return o.get("__type").and_then(Value::as_str).map(str::to_string);
        }
        let text = std::str::from_utf8(body).ok()?;
        let start = text.find("<Code>")? + "<Code>".len();
        let len = text[start..].find("</Code>")?;
        Some(text[start..start + len].to_string())
    })?;
    let code = super::error::normalise_type(&raw);
    super::error::is_type_token(code).then(|| code.to_string())
}

/// Classifies a private API response by its content.
pub fn classify(
    status: u16,
    error_type: Option<&str>,
    body: &[u8],
) -> Result<AuthResult, ExchangeError> {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return Err(match error_type {
            Some(t) => typed_error(status, t, None),
            None => match error_code(None, body) {
                // An XML error from AWS's front door (moto answers signatures this way too).
                Some(code) if super::error::is_aws_auth_error(&code) => {
                    ExchangeError::Dependency(DependencyError::Denied)
                }
                _ if (200..300).contains(&status) => {
                    ExchangeError::Dependency(DependencyError::Garbage)
                }
                _ => status_error(status),
            },
        });
    };
    if let Some(Value::Object(r)) = obj.get("AuthenticationResult") {
        let id = r.get("IdToken").and_then(Value::as_str);
        let access = r.get("AccessToken").and_then(Value::as_str);
        let (Some(id), Some(access)) = (id, access) else {
            return Err(ExchangeError::Dependency(DependencyError::Garbage));
        };
        return Ok(AuthResult::Tokens(TokenSet {
            id_token: id.to_string(),
            access_token: access.to_string(),
            refresh_token: r
                .get("RefreshToken")
                .and_then(Value::as_str)
                .map(str::to_string),
            expires_in: r.get("ExpiresIn").and_then(Value::as_u64).unwrap_or(3600),
        }));
    }
    if let Some(Value::String(name)) = obj.get("ChallengeName") {
        return Ok(AuthResult::Challenge(Challenge {
            name: name.clone(),
            session: obj
                .get("Session")
                .and_then(Value::as_str)
                .map(str::to_string),
            parameters: obj
                .get("ChallengeParameters")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        }));
    }
    // Cognito's JSON 1.1 errors say `message`; some API Gateway mappings say `Message`.
    let message = obj
        .get("message")
        .or_else(|| obj.get("Message"))
        .and_then(Value::as_str);
    if let Some(Value::String(t)) = obj.get("__type") {
        return Err(typed_error(status, t, message));
    }
    if let Some(t) = error_type {
        return Err(typed_error(status, t, message));
    }
    Err(if (200..300).contains(&status) {
        ExchangeError::Dependency(DependencyError::Garbage)
    } else {
        status_error(status)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// API Gateway's own answers when the integration is unavailable or slow (issue 20: a 503
    /// was answered 502): an unknown type takes its class from the status.
    #[test]
    fn an_unknown_error_type_on_a_5xx_is_the_private_api_unavailable() {
        let body = br#"{"message":"Service Unavailable"}"#;
        assert_eq!(
            classify(503, Some("ServiceUnavailableException"), body),
            Err(ExchangeError::Dependency(DependencyError::Status(503)))
        );
        assert_eq!(
            classify(
                504,
                Some("IntegrationTimeout"),
                br#"{"message":"Endpoint request timed out"}"#
            ),
            Err(ExchangeError::Dependency(DependencyError::Timeout))
        );
        assert_eq!(
            classify(500, None, br#"{"__type":"SomethingNewException"}"#),
            Err(ExchangeError::Dependency(DependencyError::Status(500)))
        );
        assert_eq!(
            classify(502, Some("BadGatewayException"), b"<html>"),
            Err(ExchangeError::Dependency(DependencyError::Status(502)))
        );
        // A type the gateway knows keeps its meaning whatever the status.
        assert!(matches!(
            classify(500, None, br#"{"__type":"NotAuthorizedException"}"#),
            Err(ExchangeError::Cognito {
                kind: CognitoErrorKind::NotAuthorized,
                ..
            })
        ));
        // An unknown type on a 2xx: Cognito answered something the gateway cannot use (502).
        assert!(matches!(
            classify(200, None, br#"{"__type":"SomethingNewException"}"#),
            Err(ExchangeError::Cognito {
                kind: CognitoErrorKind::Other,
                ..
            })
        ));
        let mapped = crate::error::GatewayError::Exchange(
            classify(503, Some("ServiceUnavailableException"), body).unwrap_err(),
        );
        assert_eq!(mapped.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn classifies_by_content() {
        let ok = br#"{"AuthenticationResult":{"IdToken":"i","AccessToken":"a","RefreshToken":"r","ExpiresIn":60,"TokenType":"Bearer"},"ChallengeParameters":{}}"#;
        assert!(matches!(classify(200, None, ok), Ok(AuthResult::Tokens(t)) if t.expires_in == 60));
        let ch =
            br#"{"ChallengeName":"NEW_PASSWORD_REQUIRED","Session":"s","ChallengeParameters":{}}"#;
        assert!(
            matches!(classify(200, None, ch), Ok(AuthResult::Challenge(c)) if c.name == "NEW_PASSWORD_REQUIRED")
        );
        let err200 =
            br#"{"__type":"NotAuthorizedException","message":"Incorrect username or password."}"#;
        assert!(matches!(
            classify(200, None, err200),
            Err(ExchangeError::Cognito {
                kind: CognitoErrorKind::NotAuthorized,
                ..
            })
        ));
        assert!(matches!(
            classify(400, Some("UserNotFoundException:x"), b"{}"),
            Err(ExchangeError::Cognito {
                kind: CognitoErrorKind::UserNotFound,
                ..
            })
        ));
        let locked =
            br#"{"__type":"NotAuthorizedException","message":"Password attempts exceeded"}"#;
        assert!(matches!(
            classify(200, None, locked),
            Err(ExchangeError::Cognito {
                kind: CognitoErrorKind::PasswordAttemptsExceeded,
                ..
            })
        ));
        assert_eq!(
            classify(403, None, br#"{"message":"Forbidden"}"#).unwrap_err(),
            ExchangeError::Dependency(DependencyError::Forbidden)
        );
        assert_eq!(
            classify(429, None, br#"{"message":"Too Many Requests"}"#).unwrap_err(),
            ExchangeError::Dependency(DependencyError::Throttled)
        );
        assert_eq!(
            classify(500, None, b"<html>boom</html>").unwrap_err(),
            ExchangeError::Dependency(DependencyError::Status(500))
        );
        assert_eq!(
            classify(200, None, b"<html>").unwrap_err(),
            ExchangeError::Dependency(DependencyError::Garbage)
        );
        assert_eq!(
            classify(200, None, br#"{"AuthenticationResult":{"IdToken":1}}"#).unwrap_err(),
            ExchangeError::Dependency(DependencyError::Garbage)
        );
        assert_eq!(
            classify(502, None, br#"{"message":"Internal server error"}"#).unwrap_err(),
            ExchangeError::Dependency(DependencyError::Status(502))
        );
    }

    #[test]
    fn aws_refusing_the_callers_identity_is_a_dependency_failure_not_bad_credentials() {
        let denied = ExchangeError::Dependency(DependencyError::Denied);
        // Real Cognito: HTTP 400, JSON 1.1; through a private API: HTTP 200 with __type.
        for (status, body) in [
            (400, &br#"{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}"#[..]),
            (400, br#"{"__type":"InvalidSignatureException","message":"The request signature we calculated does not match"}"#),
            (200, br#"{"__type":"AccessDeniedException","Message":"User: arn:aws:sts::1:assumed-role/r is not authorized to perform: cognito-idp:AdminInitiateAuth"}"#),
            (400, br#"{"__type":"com.amazon.coral.service#ExpiredTokenException"}"#),
        ] {
            assert_eq!(classify(status, None, body).unwrap_err(), denied, "{body:?}");
        }
        let xml = br#"<?xml version="1.0" encoding="utf-8"?>
<ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error></Errors></ErrorResponse>"#;
        assert_eq!(classify(403, None, xml).unwrap_err(), denied);
        assert_eq!(
            error_code(None, xml).as_deref(),
            Some("SignatureDoesNotMatch")
        );
        assert_eq!(
            error_code(Some("AccessDeniedException:http://x"), b"").as_deref(),
            Some("AccessDeniedException")
        );
        assert_eq!(error_code(None, b"<Code><script></Code>"), None);
        // An XML 403 that is not an identity error stays API Gateway's "forbidden".
        assert_eq!(
            classify(403, None, b"<Error><Code>Other</Code></Error>").unwrap_err(),
            ExchangeError::Dependency(DependencyError::Forbidden)
        );
    }
}
