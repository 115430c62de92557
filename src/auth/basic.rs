//! `auth = ["basic"]`: HTTP Basic credentials (RFC 7617, UTF-8) exchanged for Cognito tokens
//! through the credential cache, then checked against the route's policy like any token.

use std::net::IpAddr;

use http::header::{HeaderValue, AUTHORIZATION};
use http::HeaderMap;

use super::{policy, Identity};
use crate::config::{AuthMethod, RouteConfig};
use crate::error::{Challenge, GatewayError};
use crate::exchange::cache::CredentialError;
use crate::exchange::{route_token_use, Exchange};
use crate::jwt::verify::check_route;
use crate::jwt::AuthError;

/// `Authorization` when its scheme is `Basic`.
pub fn credential(headers: &HeaderMap) -> Option<&HeaderValue> {
    headers.get(AUTHORIZATION).filter(|v| is_basic(v))
}

/// The value's scheme is `Basic` (case-insensitive).
pub(crate) fn is_basic(value: &HeaderValue) -> bool {
    let b = value.as_bytes();
    let b = &b[b.iter().take_while(|c| c.is_ascii_whitespace()).count()..];
    b.len() > 5 && b[..5].eq_ignore_ascii_case(b"basic") && b[5] == b' '
}

pub(crate) async fn authorize(
    value: &HeaderValue,
    exchange: Option<&Exchange>,
    route: &RouteConfig,
    client: IpAddr,
) -> Result<Identity, GatewayError> {
    let deny = |e| GatewayError::Auth(e, Challenge::Basic);
    let (username, password) = parse(value.as_bytes()).map_err(deny)?;
    let cache = exchange
        .map(|x| &x.cache)
        .ok_or(deny(AuthError::KeysUnavailable))?;
    // Boxed to keep the common request future small.
    let tokens = Box::pin(cache.tokens(&username, &password, client))
        .await
        .map_err(|e| match e {
            CredentialError::Exchange(e) => GatewayError::Exchange(e),
            CredentialError::TooManyFailures => GatewayError::TooManyFailures,
        })?;
    let checked = route_token_use(route.token_use);
    check_route(tokens.pick(checked).0, policy(route)).map_err(deny)?;
    Ok(Identity::Exchanged {
        tokens,
        checked,
        via: AuthMethod::Basic,
    })
}

/// `Basic base64(user:password)` (RFC 7617, UTF-8).
pub fn parse(value: &[u8]) -> Result<(String, String), AuthError> {
    use base64::Engine;
    let value = std::str::from_utf8(value).map_err(|_| AuthError::Malformed("not ASCII"))?;
    // ASCII whitespace only, as `is_basic` reads it: a value that only Unicode trimming makes
    // Basic (a leading U+0085) is neither method's.
    let ows = |c: char| c.is_ascii_whitespace();
    let value = value.trim_matches(ows);
    let encoded = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("basic") => rest.trim_matches(ows),
        _ => return Err(AuthError::Malformed("not Basic credentials")),
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| AuthError::Malformed("Basic credentials are not base64"))?;
    let text = String::from_utf8(decoded).map_err(|_| AuthError::Malformed("not UTF-8"))?;
    let (user, pass) = text
        .split_once(':')
        .ok_or(AuthError::Malformed("Basic credentials without ':'"))?;
    if user.is_empty() || pass.is_empty() || user.len() > 256 || pass.len() > 1024 {
        return Err(AuthError::Malformed("Basic credentials out of bounds"));
    }
    Ok((user.to_string(), pass.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_values_are_told_from_tokens() {
        for v in ["Basic dTpw", "basic dTpw", "  BASIC dTpw"] {
            assert!(is_basic(&HeaderValue::from_static(v)), "{v}");
        }
        for v in ["Bearer x.y.z", "eyJ.x.y", "Basic", "Basicx y"] {
            assert!(!is_basic(&HeaderValue::from_static(v)), "{v}");
        }
    }

    #[test]
    fn parses_rfc7617_credentials() {
        assert_eq!(
            parse(b"Basic dTpwOnc=").unwrap(),
            ("u".to_string(), "p:w".to_string())
        );
        for bad in [
            &b"Basic !!!"[..],
            b"Basic dXNlcg==",
            b"Basic ",
            b"Bearer dTpw",
            // Unicode whitespace (U+0085, U+00A0) is not HTTP's: `is_basic` does not skip it,
            // so parse must not either (found by fuzzing).
            "\u{85}Basic dTpw".as_bytes(),
            "Basic dTpw\u{a0}".as_bytes(),
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
