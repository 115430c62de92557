//! What the gateway decided about a request and why, in bounded labels: for the access log,
//! `auth_decisions_total` and `authz_checks_total`. The error map (`error.rs`) gives each
//! failure its audit; the pipeline and the authorizer record allowed requests.

use crate::config::AuthMethod;

/// Whether the request was let through, for the access log and `auth_decisions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    /// Answered by the login API (no route, no auth decision of its own).
    LoginApi,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::LoginApi => "login_api",
        }
    }
}

/// Why: a bounded label. Token and exchange reasons come from their subsystems' closed enums
/// (`AuthError::reason`, `ExchangeError::outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Allowed by this auth method.
    Method(AuthMethod),
    Token(&'static str),
    Exchange(&'static str),
    RateLimited,
    ServiceTokenUnavailable,
    AllowFrom,
    /// Nothing more to say (a login API call that succeeded).
    None,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Method(m) => m.as_str(),
            Reason::Token(r) | Reason::Exchange(r) => r,
            Reason::RateLimited => "rate_limited",
            Reason::ServiceTokenUnavailable => "service_token_unavailable",
            Reason::AllowFrom => "allow_from",
            Reason::None => "",
        }
    }
}

/// An auth decision and its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audit {
    pub decision: Decision,
    pub reason: Reason,
}

impl Audit {
    pub fn deny(reason: Reason) -> Self {
        Audit {
            decision: Decision::Deny,
            reason,
        }
    }
}
