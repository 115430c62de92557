//! A JWT taken apart without trusting it: the token from a header value, its three parts
//! decoded and bounded, and typed readers for the claims the authorizer checks.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use super::error::AuthError;

/// Tokens longer than this are rejected before any decoding (Cognito tokens are ~1-4 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// A decoded but not yet verified token: what `verify-token` shows even when the token is denied.
#[derive(Debug, Clone)]
pub struct Decoded<'t> {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
    pub(super) kid: String,
    pub(super) signed: &'t str,
    pub(super) signature: &'t str,
}

/// Takes the token out of a header value: the raw token or `Bearer <token>` (scheme matched
/// case-insensitively).
pub fn token_from_header(value: &[u8]) -> Result<&str, AuthError> {
    let value = std::str::from_utf8(value).map_err(|_| AuthError::Malformed("not ASCII"))?;
    let value = value.trim();
    if value.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Missing);
    }
    let token = match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => value[7..].trim_start(),
        _ => value,
    };
    if token.is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token)
}

/// Splits and decodes a JWT without verifying it. Only the structure and the header's `alg` and
/// `kid` are checked here; header fields such as `jku`, `x5u` and `jwk` are ignored.
pub fn decode(token: &str) -> Result<Decoded<'_>, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed("token too long"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("not three dot-separated parts"));
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(AuthError::Malformed("empty part"));
    }
    let header = json_object(h).ok_or(AuthError::Malformed("header is not base64url JSON"))?;
    match header.get("alg") {
        Some(Value::String(a)) if a == "RS256" => {}
        Some(Value::String(a)) => return Err(AuthError::Algorithm(truncate(a, 32))),
        _ => return Err(AuthError::Malformed("header has no alg")),
    }
    let kid = match header.get("kid") {
        Some(Value::String(k)) if !k.is_empty() && k.len() <= 256 => k.clone(),
        _ => return Err(AuthError::Malformed("header has no usable kid")),
    };
    let claims = json_object(p).ok_or(AuthError::Malformed("payload is not base64url JSON"))?;
    if !s.bytes().all(is_base64url) {
        return Err(AuthError::Malformed("signature is not base64url"));
    }
    Ok(Decoded {
        header,
        claims,
        kid,
        signed: &token[..h.len() + 1 + p.len()],
        signature: s,
    })
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn json_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

pub(super) fn str_claim<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(AuthError::Malformed(match name {
            "iss" => "iss is not a string",
            "token_use" => "token_use is not a string",
            "scope" => "scope is not a string",
            "client_id" => "client_id is not a string",
            _ => "claim of the wrong type",
        })),
    }
}

pub(super) fn int_claim(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or(AuthError::Malformed("numeric date out of range")),
        Some(_) => Err(AuthError::Malformed(match name {
            "exp" => "exp is not a number",
            "nbf" => "nbf is not a number",
            _ => "claim of the wrong type",
        })),
    }
}

pub(super) fn groups_claim(claims: &Map<String, Value>) -> Result<Vec<&str>, AuthError> {
    match claims.get("cognito:groups") {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or(AuthError::Malformed("cognito:groups holds a non-string"))
            })
            .collect(),
        Some(_) => Err(AuthError::Malformed("cognito:groups is not an array")),
    }
}

/// A claim value as a header string: strings as they are, arrays comma-joined (like API
/// Gateway's `$context.authorizer.claims`), other values in their JSON form.
pub fn claim_as_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(claim_as_string)
            .collect::<Vec<_>>()
            .join(","),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_optional_and_case_insensitive() {
        assert_eq!(token_from_header(b"Bearer abc").unwrap(), "abc");
        assert_eq!(token_from_header(b"bEaReR   abc").unwrap(), "abc");
        assert_eq!(token_from_header(b"abc").unwrap(), "abc");
        assert_eq!(
            token_from_header(b"Bearer ").unwrap_err(),
            AuthError::Missing
        );
        assert!(token_from_header(b"\xff").is_err());
    }

    #[test]
    fn claim_strings() {
        let v: Value = serde_json::json!(["a", "b", 3]);
        assert_eq!(claim_as_string(&v), "a,b,3");
        assert_eq!(claim_as_string(&serde_json::json!(true)), "true");
        assert_eq!(claim_as_string(&serde_json::json!(12)), "12");
    }

    #[test]
    fn structure_errors() {
        assert!(matches!(decode("a.b"), Err(AuthError::Malformed(_))));
        assert!(matches!(decode("a.b.c.d"), Err(AuthError::Malformed(_))));
        assert!(matches!(decode("!!.b.c"), Err(AuthError::Malformed(_))));
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k"}"#);
        let p = URL_SAFE_NO_PAD.encode(br#"{}"#);
        assert_eq!(
            decode(&format!("{h}.{p}.c")).unwrap_err(),
            AuthError::Algorithm("none".into())
        );
    }
}
