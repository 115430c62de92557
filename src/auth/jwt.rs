//! `auth = ["jwt"]`: a client token verified like an API Gateway Cognito user pool authorizer.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::HeaderMap;

use super::{now_secs, Identity};
use crate::config::RouteConfig;
use crate::error::{Challenge, GatewayError};
use crate::jwt::verify::token_from_header;
use crate::jwt::{AuthError, Authorizer, FloodGuard};

/// The route's token header, when it carries a token: raw or `Bearer`. In `Authorization`, a
/// `Basic` value is the basic method's, not a token (so `auth = ["jwt", "basic"]` works).
pub fn credential<'h>(
    headers: &'h HeaderMap,
    token_header: &HeaderName,
) -> Option<&'h HeaderValue> {
    let value = headers.get(token_header)?;
    if *token_header == AUTHORIZATION && super::basic::is_basic(value) {
        return None;
    }
    Some(value)
}

pub(crate) async fn authorize(
    value: &HeaderValue,
    authorizer: Option<&Arc<Authorizer>>,
    route: &RouteConfig,
    flood: Option<&FloodGuard>,
    client: IpAddr,
) -> Result<Identity, GatewayError> {
    let deny = |e| GatewayError::Auth(e, Challenge::Bearer);
    let authorizer = authorizer.ok_or(deny(AuthError::KeysUnavailable))?;
    let token = token_from_header(value.as_bytes()).map_err(deny)?;
    let (verified, _pool) = authorizer
        .verify_from(
            token,
            super::policy(route),
            now_secs(),
            &route.pools,
            flood.map(|g| (g, client)),
        )
        .await
        .map_err(deny)?;
    Ok(Identity::Jwt {
        verified,
        token: token.to_string(),
    })
}
