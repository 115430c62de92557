//! The Cognito errors the dev IdP answers with. Every one of them goes out as HTTP 200 with
//! `{"__type": ..., "message": ...}`, the way a private API Gateway with only the default
//! integration response passes Cognito errors through.

use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdpError {
    /// Malformed body, missing field, unsupported flow or challenge.
    #[error("{0}")]
    InvalidParameter(String),
    /// Wrong password, bad SECRET_HASH, unknown session or refresh token.
    #[error("{0}")]
    NotAuthorized(String),
    #[error("User does not exist.")]
    UserNotFound,
    /// Unknown app client or user pool.
    #[error("{0}")]
    ResourceNotFound(String),
    /// A new password that breaks the password policy.
    #[error("{0}")]
    InvalidPassword(String),
    /// The IdP could not sign a token (never expected with a loaded key).
    #[error("Internal server error.")]
    Internal,
}

impl IdpError {
    /// Cognito's `__type` for this error.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            IdpError::InvalidParameter(_) => "InvalidParameterException",
            IdpError::NotAuthorized(_) => "NotAuthorizedException",
            IdpError::UserNotFound => "UserNotFoundException",
            IdpError::ResourceNotFound(_) => "ResourceNotFoundException",
            IdpError::InvalidPassword(_) => "InvalidPasswordException",
            IdpError::Internal => "InternalErrorException",
        }
    }

    /// The body API Gateway passes through: `{"__type":..., "message":...}`.
    pub(crate) fn to_json(&self) -> Value {
        json!({ "__type": self.type_name(), "message": self.to_string() })
    }

    pub(crate) fn missing(name: &str) -> IdpError {
        IdpError::InvalidParameter(format!("Missing required parameter {name}"))
    }

    pub(crate) fn bad_credentials() -> IdpError {
        IdpError::NotAuthorized("Incorrect username or password.".into())
    }

    pub(crate) fn bad_secret_hash(client_id: &str) -> IdpError {
        IdpError::NotAuthorized(format!(
            "Unable to verify secret hash for client {client_id}"
        ))
    }

    pub(crate) fn invalid_session() -> IdpError {
        IdpError::NotAuthorized("Invalid session for the user.".into())
    }

    pub(crate) fn invalid_refresh_token() -> IdpError {
        IdpError::NotAuthorized("Invalid Refresh Token".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_its_cognito_type_and_message() {
        let cases = [
            (
                IdpError::InvalidParameter("x".into()),
                "InvalidParameterException",
                "x",
            ),
            (
                IdpError::bad_credentials(),
                "NotAuthorizedException",
                "Incorrect username or password.",
            ),
            (
                IdpError::UserNotFound,
                "UserNotFoundException",
                "User does not exist.",
            ),
            (
                IdpError::ResourceNotFound("y".into()),
                "ResourceNotFoundException",
                "y",
            ),
            (
                IdpError::InvalidPassword("z".into()),
                "InvalidPasswordException",
                "z",
            ),
            (
                IdpError::Internal,
                "InternalErrorException",
                "Internal server error.",
            ),
        ];
        for (err, ty, msg) in cases {
            assert_eq!(err.to_json(), json!({ "__type": ty, "message": msg }));
        }
    }
}
