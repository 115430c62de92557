//! `auth = ["service"]`: the route forwards the token of a service account the gateway logs in
//! with itself; the client presents nothing (combine with `allow_from`).

use super::{policy, Identity};
use crate::config::{AuthMethod, RouteConfig};
use crate::error::{Challenge, GatewayError};
use crate::exchange::{route_token_use, Exchange};
use crate::jwt::verify::check_route;

pub(crate) fn authorize(
    exchange: Option<&Exchange>,
    route: &RouteConfig,
) -> Result<Identity, GatewayError> {
    let name = route.service_account.as_deref().unwrap_or("");
    let tokens = exchange
        .and_then(|x| x.services.tokens(name))
        .ok_or_else(|| GatewayError::ServiceTokenUnavailable(name.to_string()))?;
    let checked = route_token_use(route.token_use);
    check_route(tokens.pick(checked).0, policy(route))
        .map_err(|e| GatewayError::Auth(e, Challenge::None))?;
    Ok(Identity::Exchanged {
        tokens,
        checked,
        via: AuthMethod::Service,
    })
}
