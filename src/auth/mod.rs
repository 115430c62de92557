//! Authentication methods, one file each: `jwt` (the Cognito authorizer), `basic` (HTTP Basic
//! exchanged for tokens), `service` (the gateway's own service-account tokens), and the login
//! API beside them. A route lists its methods in order; a method applies only to credentials of
//! its own kind, and the first that applies decides.

pub mod basic;
pub mod jwt;
pub mod login_api;
pub mod service;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;

use crate::config::{AuthMethod, ForwardToken, RouteConfig};
use crate::error::{Challenge, GatewayError};
use crate::exchange::{Exchange, Tokens};
use crate::jwt::{AuthError, Authorizer, FloodGuard, RoutePolicy, TokenUse, Verified};

/// Who a request is, once a route's auth has allowed it.
pub enum Identity {
    Anonymous,
    /// A client token the authorizer verified.
    Jwt {
        verified: Arc<Verified>,
        token: String,
    },
    /// Tokens obtained for Basic credentials or a service account; `checked` is the kind the
    /// route's policy was checked on.
    Exchanged {
        tokens: Arc<Tokens>,
        checked: TokenUse,
        via: AuthMethod,
    },
}

impl Identity {
    /// The method that allowed the request.
    pub fn method(&self) -> AuthMethod {
        match self {
            Identity::Anonymous => AuthMethod::None,
            Identity::Jwt { .. } => AuthMethod::Jwt,
            Identity::Exchanged { via, .. } => *via,
        }
    }

    /// The claims the route's policy was checked on.
    pub fn verified(&self) -> Option<&Verified> {
        match self {
            Identity::Anonymous => None,
            Identity::Jwt { verified, .. } => Some(verified),
            Identity::Exchanged {
                tokens, checked, ..
            } => Some(tokens.pick(*checked).0),
        }
    }

    /// The token to place upstream under the route's `forward_token`, if any.
    pub(crate) fn token_to_forward(&self, forward: ForwardToken) -> Option<&str> {
        match self {
            Identity::Anonymous => None,
            Identity::Jwt { verified, token } => {
                let send = match forward {
                    ForwardToken::Verified => true,
                    ForwardToken::Id => verified.token_use == TokenUse::Id,
                    ForwardToken::Access => verified.token_use == TokenUse::Access,
                    ForwardToken::None => false,
                };
                send.then_some(token.as_str())
            }
            Identity::Exchanged {
                tokens, checked, ..
            } => {
                let use_ = match forward {
                    ForwardToken::Verified => *checked,
                    ForwardToken::Id => TokenUse::Id,
                    ForwardToken::Access => TokenUse::Access,
                    ForwardToken::None => return None,
                };
                Some(tokens.pick(use_).1)
            }
        }
    }
}

/// What the auth methods may use: built once per configuration.
#[derive(Clone, Copy)]
pub(crate) struct Authorities<'a> {
    pub authorizer: Option<&'a Arc<Authorizer>>,
    /// The flood guard the authorizer checks unseen tokens under.
    pub flood: Option<&'a FloodGuard>,
    pub exchange: Option<&'a Exchange>,
}

/// The route's policy for the authorizer's route checks.
pub fn policy(route: &RouteConfig) -> RoutePolicy<'_> {
    RoutePolicy {
        token_use: route.token_use,
        scopes: &route.scopes,
        groups: &route.groups,
    }
}

/// Tries the route's methods in order; the first that applies decides. No method applying is a
/// 401 with the first method's challenge.
pub(crate) async fn authorize(
    headers: &HeaderMap,
    route: &RouteConfig,
    by: Authorities<'_>,
    client: IpAddr,
) -> Result<Identity, GatewayError> {
    for method in &route.auth {
        match method {
            AuthMethod::None => return Ok(Identity::Anonymous),
            AuthMethod::Jwt => {
                if let Some(value) = jwt::credential(headers, &route.token_header) {
                    return jwt::authorize(value, by.authorizer, route, by.flood, client).await;
                }
            }
            AuthMethod::Basic => {
                if let Some(value) = basic::credential(headers) {
                    return basic::authorize(value, by.exchange, route, client).await;
                }
            }
            AuthMethod::Service => return service::authorize(by.exchange, route),
        }
    }
    let challenge = match route.auth.first() {
        Some(AuthMethod::Jwt) => Challenge::Bearer,
        Some(AuthMethod::Basic) => Challenge::Basic,
        Some(AuthMethod::Service | AuthMethod::None) | None => Challenge::None,
    };
    Err(GatewayError::Auth(AuthError::Missing, challenge))
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
