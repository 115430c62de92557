//! `cognito-gate verify-token`: runs the authorizer on one token against one route and explains
//! the decision: allow or deny, the check that decided, and the claims (never the signature).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::config::{AuthMethod, Config, RouteConfig, TokenUsePolicy};
use crate::error::{Challenge, GatewayError};
use crate::jwt::verify::{decode, token_from_header};
use crate::jwt::{RoutePolicy, Verifier};

/// The result of an explanation: the text to print and whether the token was allowed.
pub(crate) struct Explanation {
    pub allowed: bool,
    pub text: String,
}

/// Picks the route: the named one, or the first route that verifies JWTs.
pub(crate) fn pick_route<'a>(
    config: &'a Config,
    name: Option<&str>,
) -> Result<&'a RouteConfig, String> {
    match name {
        Some(n) => config
            .routes
            .iter()
            .find(|r| r.name == n)
            .ok_or_else(|| format!("no route named {n:?}")),
        None => config
            .routes
            .iter()
            .find(|r| r.auth.contains(&AuthMethod::Jwt))
            .ok_or_else(|| "no route verifies JWTs; name one with --route".to_string()),
    }
}

fn policy_text(route: &RouteConfig) -> String {
    let use_ = match route.token_use {
        TokenUsePolicy::Id => "id",
        TokenUsePolicy::Access => "access",
        TokenUsePolicy::Any => "any",
    };
    let list = |l: &[String]| {
        if l.is_empty() {
            "-".to_string()
        } else {
            l.join(",")
        }
    };
    format!(
        "{} (token_use={use_}, scopes={}, groups={})",
        route.name,
        list(&route.scopes),
        list(&route.groups)
    )
}

fn time_text(v: Option<&Value>) -> Option<String> {
    let secs = v?.as_i64()?;
    let t = UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).ok()?);
    Some(humantime::format_rfc3339_seconds(t).to_string())
}

/// Verifies `input` (a raw token or `Bearer <token>`) on `route` and explains the outcome.
/// `pool` names the user pool `verifier` checks (the one the token's issuer names).
pub(crate) async fn explain(
    verifier: &Verifier,
    pool: &str,
    route: &RouteConfig,
    input: &str,
) -> Explanation {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut text = String::new();
    let deny = |text: &mut String, e: crate::jwt::AuthError| {
        let status = GatewayError::Auth(e.clone(), Challenge::Bearer).status();
        let _ = writeln!(text, "decision: deny ({status})");
        let _ = writeln!(text, "check:    {}", e.check());
        let _ = writeln!(text, "reason:   {e}");
    };
    let token = match token_from_header(input.as_bytes()) {
        Ok(t) => t,
        Err(e) => {
            deny(&mut text, e);
            return Explanation {
                allowed: false,
                text,
            };
        }
    };
    let decoded = match decode(token) {
        Ok(d) => d,
        Err(e) => {
            deny(&mut text, e);
            let _ = writeln!(text, "route:    {}", policy_text(route));
            return Explanation {
                allowed: false,
                text,
            };
        }
    };
    let header = Value::Object(decoded.header.clone());
    let claims = Value::Object(decoded.claims.clone());
    let policy = RoutePolicy {
        token_use: route.token_use,
        scopes: &route.scopes,
        groups: &route.groups,
    };
    let on_route = route.pools.is_empty() || route.pools.iter().any(|p| p == pool);
    let checked = if on_route {
        verifier.verify_decoded(decoded, policy, now).await
    } else {
        Err(crate::jwt::AuthError::Pool {
            pool: pool.to_string(),
        })
    };
    let allowed = match checked {
        Ok(v) => {
            let _ = writeln!(text, "decision: allow");
            let _ = writeln!(
                text,
                "check:    all checks passed ({} token)",
                v.token_use.as_str()
            );
            true
        }
        Err(e) => {
            deny(&mut text, e);
            false
        }
    };
    let _ = writeln!(text, "route:    {}", policy_text(route));
    let _ = writeln!(text, "pool:     {pool}");
    let _ = writeln!(text, "header:   {header}");
    if let Some(exp) = time_text(claims.get("exp")) {
        let _ = writeln!(text, "expires:  {exp}");
    }
    let _ = writeln!(
        text,
        "claims:\n{}",
        serde_json::to_string_pretty(&claims).unwrap_or_default()
    );
    Explanation { allowed, text }
}
