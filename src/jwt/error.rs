//! Why a token was not accepted: one closed enum for every check the authorizer makes, with the
//! expected and actual values (for logs and `verify-token`), a bounded reason (metrics, access
//! log) and the check's name. Its own file, so that the token decoder and the verifier both use
//! it without importing each other.

/// Why a token was not accepted. `reason()` is the bounded label used in metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no token in the request")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("algorithm {0:?} is not accepted (RS256 only)")]
    Algorithm(String),
    #[error("issuer {actual:?} is not the configured issuer {expected:?}")]
    Issuer { expected: String, actual: String },
    #[error("no key with this kid in the JWKS")]
    UnknownKid,
    #[error("signature does not verify")]
    BadSignature,
    #[error("token expired at {exp} (now {now})")]
    Expired { exp: i64, now: i64 },
    #[error("token not valid before {nbf} (now {now})")]
    NotYetValid { nbf: i64, now: i64 },
    #[error("token_use {actual:?} is not accepted here (expected {expected})")]
    TokenUse {
        expected: &'static str,
        actual: String,
    },
    #[error("app client {actual:?} is not in cognito.app_clients")]
    Client { actual: String },
    #[error("none of the route's scopes {required:?} is in the token's scope {actual:?}")]
    Scope {
        required: Vec<String>,
        actual: String,
    },
    #[error("none of the route's groups {required:?} is in cognito:groups {actual:?}")]
    Group {
        required: Vec<String>,
        actual: Vec<String>,
    },
    #[error("signing keys are unavailable (not loaded yet, or older than max_stale)")]
    KeysUnavailable,
    #[error("the token's user pool {pool:?} is not one of the route's pools")]
    Pool { pool: String },
    #[error(
        "this client address sent more tokens with a failing signature than \
         cognito.bad_signature_per_minute allows; refused before the signature check"
    )]
    TooManyBadSignatures,
}

impl AuthError {
    /// A bounded label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed(_) => "malformed",
            AuthError::Algorithm(_) => "algorithm",
            AuthError::Issuer { .. } => "issuer",
            AuthError::UnknownKid => "unknown_kid",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired { .. } => "expired",
            AuthError::NotYetValid { .. } => "not_yet_valid",
            AuthError::TokenUse { .. } => "token_use",
            AuthError::Client { .. } => "client",
            AuthError::Scope { .. } => "scope",
            AuthError::Group { .. } => "group",
            AuthError::KeysUnavailable => "jwks_unavailable",
            AuthError::Pool { .. } => "pool",
            AuthError::TooManyBadSignatures => "bad_signature_flood",
        }
    }

    /// The name of the check that decided, for `verify-token`.
    pub fn check(&self) -> &'static str {
        match self {
            AuthError::Missing | AuthError::Malformed(_) => "format",
            AuthError::Algorithm(_) => "alg",
            AuthError::Issuer { .. } => "iss",
            AuthError::UnknownKid | AuthError::KeysUnavailable => "kid",
            AuthError::Pool { .. } => "pool",
            AuthError::BadSignature | AuthError::TooManyBadSignatures => "signature",
            AuthError::Expired { .. } => "exp",
            AuthError::NotYetValid { .. } => "nbf",
            AuthError::TokenUse { .. } => "token_use",
            AuthError::Client { .. } => "client",
            AuthError::Scope { .. } => "scope",
            AuthError::Group { .. } => "groups",
        }
    }
}
