//! What can go wrong when exchanging credentials: Cognito said no (a typed Cognito error), or the
//! private API could not be used (a dependency error, with a hint for operators).

/// Cognito's error types that change what the client sees. Others keep their name in `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CognitoErrorKind {
    NotAuthorized,
    /// Cognito's own lockout after repeated wrong passwords: a `NotAuthorizedException` whose
    /// message is "Password attempts exceeded". Temporary; says nothing about the password.
    PasswordAttemptsExceeded,
    UserNotFound,
    UserNotConfirmed,
    PasswordResetRequired,
    TooManyRequests,
    InvalidParameter,
    CodeMismatch,
    ExpiredCode,
    InvalidPassword,
    ResourceNotFound,
    InternalError,
    Other,
}

impl CognitoErrorKind {
    pub(crate) fn from_type(name: &str) -> Self {
        match name {
            "NotAuthorizedException" => CognitoErrorKind::NotAuthorized,
            "UserNotFoundException" => CognitoErrorKind::UserNotFound,
            "UserNotConfirmedException" => CognitoErrorKind::UserNotConfirmed,
            "PasswordResetRequiredException" => CognitoErrorKind::PasswordResetRequired,
            "TooManyRequestsException" | "LimitExceededException" => {
                CognitoErrorKind::TooManyRequests
            }
            "InvalidParameterException" => CognitoErrorKind::InvalidParameter,
            "CodeMismatchException" => CognitoErrorKind::CodeMismatch,
            "ExpiredCodeException" => CognitoErrorKind::ExpiredCode,
            "InvalidPasswordException" => CognitoErrorKind::InvalidPassword,
            "ResourceNotFoundException" => CognitoErrorKind::ResourceNotFound,
            "InternalErrorException" => CognitoErrorKind::InternalError,
            _ => CognitoErrorKind::Other,
        }
    }

    /// Wrong credentials (or an unknown user, which must look the same to clients).
    /// The kind for a type and its message: the message only tells Cognito's lockout apart
    /// from a wrong password.
    pub(crate) fn from_type_and_message(name: &str, message: Option<&str>) -> Self {
        match Self::from_type(name) {
            CognitoErrorKind::NotAuthorized
                if message.is_some_and(|m| {
                    m.to_ascii_lowercase()
                        .contains("password attempts exceeded")
                }) =>
            {
                CognitoErrorKind::PasswordAttemptsExceeded
            }
            kind => kind,
        }
    }

    pub(crate) fn is_bad_credentials(self) -> bool {
        matches!(
            self,
            CognitoErrorKind::NotAuthorized | CognitoErrorKind::UserNotFound
        )
    }
}

/// Normalises an error type: `com.amazonaws...#NotAuthorizedException:http://...` becomes
/// `NotAuthorizedException`.
pub(crate) fn normalise_type(raw: &str) -> &str {
    let after_hash = raw.rsplit('#').next().unwrap_or(raw);
    after_hash.split(':').next().unwrap_or(after_hash).trim()
}

/// Whether a normalised error type reads as one (`NotAuthorizedException`,
/// `com.amazonaws.Foo`): up to 100 letters, digits and dots. The private API's answer is
/// untrusted; anything else is never logged, stored or echoed as it came.
pub(crate) fn is_type_token(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
}

/// What an error type that is not [`is_type_token`] is called in logs and the shared state.
pub(crate) const UNREADABLE_TYPE: &str = "(unreadable error type)";

/// Why the private API could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DependencyError {
    #[error("private API timed out")]
    Timeout,
    #[error("private API unreachable: {0}")]
    Connect(crate::cause::Cause),
    #[error("private API refused the request (HTTP 403): check its resource policy and the x-apigw-api-id header")]
    Forbidden,
    #[error("private API throttled the request (HTTP 429)")]
    Throttled,
    #[error("private API failed (HTTP {0})")]
    Status(u16),
    #[error("private API answered with a body that is not a Cognito response")]
    Garbage,
    /// Recent calls failed in a row; calls are refused without trying until the backoff ends.
    #[error("private API failing: calls paused by the circuit breaker")]
    CircuitOpen,
    /// `sign = "sigv4"` and no usable AWS credentials (the log line before names the provider).
    #[error("no usable AWS credentials to sign the call to Cognito")]
    Credentials,
    /// AWS refused the gateway's (or the private API's role's) identity: a bad signature,
    /// unknown or expired credentials, or an IAM policy without the action.
    #[error(
        "AWS refused the caller's identity or permissions (signature, credentials or IAM policy)"
    )]
    Denied,
}

impl DependencyError {
    pub fn kind(self) -> &'static str {
        match self {
            DependencyError::Timeout => "timeout",
            DependencyError::Connect(_) => "connect",
            DependencyError::Forbidden => "forbidden",
            DependencyError::Throttled => "throttled",
            DependencyError::Status(_) => "status",
            DependencyError::Garbage => "garbage",
            DependencyError::CircuitOpen => "circuit_open",
            DependencyError::Credentials => "credentials",
            DependencyError::Denied => "denied",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// Cognito answered with an error (`__type`). The message is kept for logs only.
    #[error("Cognito error {type_name}")]
    Cognito {
        kind: CognitoErrorKind,
        type_name: String,
    },
    #[error("{0}")]
    Dependency(DependencyError),
    /// Cognito wants a challenge answered (NEW_PASSWORD_REQUIRED, MFA) where none can be.
    #[error("Cognito requires the {0} challenge")]
    ChallengeRequired(String),
    /// Tokens came back but did not pass verification.
    #[error("tokens from the private API failed verification: {0}")]
    InvalidTokens(String),
}

/// Every value of `cognito_gate_token_exchange_total{outcome}`: a call's result
/// (`success`, `challenge`) or `ExchangeError::outcome`.
pub const OUTCOMES: [&str; 15] = [
    "success",
    "challenge",
    "rejected",
    "locked_out",
    "cognito_error",
    "invalid_tokens",
    "timeout",
    "connect",
    "forbidden",
    "throttled",
    "status",
    "garbage",
    "circuit_open",
    "credentials",
    "denied",
];

/// AWS's authentication and authorization errors (any service, JSON or XML protocol): they say
/// the caller's identity is wrong, not the user's password.
pub(crate) fn is_aws_auth_error(type_name: &str) -> bool {
    matches!(
        type_name,
        "AccessDeniedException"
            | "AccessDenied"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "SignatureDoesNotMatch"
            | "IncompleteSignatureException"
            | "IncompleteSignature"
            | "MissingAuthenticationTokenException"
            | "MissingAuthenticationToken"
            | "InvalidClientTokenId"
            | "ExpiredTokenException"
            | "ExpiredToken"
            | "UnauthorizedOperation"
    )
}

impl ExchangeError {
    pub fn cognito(type_name: &str) -> Self {
        Self::cognito_with_message(type_name, None)
    }

    /// A Cognito error with its `message` (which is only used to classify, never shown).
    pub(crate) fn cognito_with_message(type_name: &str, message: Option<&str>) -> Self {
        let name = match normalise_type(type_name) {
            name if is_type_token(name) => name,
            _ => UNREADABLE_TYPE,
        };
        if is_aws_auth_error(name) {
            return ExchangeError::Dependency(DependencyError::Denied);
        }
        ExchangeError::Cognito {
            kind: CognitoErrorKind::from_type_and_message(name, message),
            type_name: name.to_string(),
        }
    }

    /// Failures that say something about the credentials (cached negatively, counted against
    /// the failure limit), as opposed to the dependency failing. A username Cognito rejects as
    /// invalid is bad credentials; Cognito's own lockout is not (the password may be right).
    pub(crate) fn is_credential_failure(&self) -> bool {
        match self {
            ExchangeError::Cognito { kind, .. } => match kind {
                CognitoErrorKind::NotAuthorized
                | CognitoErrorKind::UserNotFound
                | CognitoErrorKind::UserNotConfirmed
                | CognitoErrorKind::PasswordResetRequired
                | CognitoErrorKind::InvalidParameter => true,
                CognitoErrorKind::PasswordAttemptsExceeded
                | CognitoErrorKind::TooManyRequests
                | CognitoErrorKind::CodeMismatch
                | CognitoErrorKind::ExpiredCode
                | CognitoErrorKind::InvalidPassword
                | CognitoErrorKind::ResourceNotFound
                | CognitoErrorKind::InternalError
                | CognitoErrorKind::Other => false,
            },
            ExchangeError::ChallengeRequired(_) => true,
            ExchangeError::Dependency(_) | ExchangeError::InvalidTokens(_) => false,
        }
    }

    /// A bounded label for metrics and logs.
    pub fn outcome(&self) -> &'static str {
        match self {
            ExchangeError::Cognito { kind, .. } if kind.is_bad_credentials() => "rejected",
            ExchangeError::Cognito {
                kind: CognitoErrorKind::PasswordAttemptsExceeded,
                ..
            } => "locked_out",
            ExchangeError::Cognito { .. } => "cognito_error",
            ExchangeError::Dependency(d) => d.kind(),
            ExchangeError::ChallengeRequired(_) => "challenge",
            ExchangeError::InvalidTokens(_) => "invalid_tokens",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_normalised() {
        assert_eq!(
            normalise_type("com.amazonaws.cognito#NotAuthorizedException:http://internal"),
            "NotAuthorizedException"
        );
        assert_eq!(
            normalise_type("UserNotFoundException"),
            "UserNotFoundException"
        );
        assert_eq!(
            ExchangeError::cognito("x#TooManyRequestsException"),
            ExchangeError::Cognito {
                kind: CognitoErrorKind::TooManyRequests,
                type_name: "TooManyRequestsException".into()
            }
        );
    }

    /// The private API's answer is untrusted: an error type that is not a short token (a log
    /// line forged with a newline, a megabyte of text) is never carried as it came.
    #[test]
    fn an_unreadable_type_is_not_carried() {
        for raw in [
            "NotAuthorized\nlevel=INFO msg=forged".to_string(),
            "x".repeat(101),
            "Bad Exception".to_string(),
            "Ünïcode".to_string(),
            " # ".to_string(),
        ] {
            assert_eq!(
                ExchangeError::cognito(&raw),
                ExchangeError::Cognito {
                    kind: CognitoErrorKind::Other,
                    type_name: UNREADABLE_TYPE.into()
                },
                "{raw:?}"
            );
        }
        assert_eq!(
            ExchangeError::cognito(&"x".repeat(100)).to_string(),
            format!("Cognito error {}", "x".repeat(100))
        );
    }

    #[test]
    fn every_outcome_is_a_known_label() {
        let mut errors: Vec<ExchangeError> = [
            "NotAuthorizedException",
            "UserNotFoundException",
            "UserNotConfirmedException",
            "PasswordResetRequiredException",
            "TooManyRequestsException",
            "InvalidParameterException",
            "CodeMismatchException",
            "ExpiredCodeException",
            "InvalidPasswordException",
            "ResourceNotFoundException",
            "InternalErrorException",
            "SomethingNewException",
        ]
        .iter()
        .map(|t| ExchangeError::cognito(t))
        .collect();
        errors.push(ExchangeError::cognito_with_message(
            "NotAuthorizedException",
            Some("Password attempts exceeded"),
        ));
        errors.push(ExchangeError::ChallengeRequired("MFA".into()));
        errors.push(ExchangeError::InvalidTokens("x".into()));
        for d in [
            DependencyError::Timeout,
            DependencyError::Connect(crate::cause::Cause::Refused),
            DependencyError::Forbidden,
            DependencyError::Throttled,
            DependencyError::Status(502),
            DependencyError::Garbage,
            DependencyError::CircuitOpen,
            DependencyError::Credentials,
            DependencyError::Denied,
        ] {
            errors.push(ExchangeError::Dependency(d));
        }
        for e in errors {
            assert!(OUTCOMES.contains(&e.outcome()), "{e:?}: {}", e.outcome());
        }
    }
}
