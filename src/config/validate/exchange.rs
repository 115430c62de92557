//! Validation of the credential-exchange sections: `[private_api]`, `[exchange]`,
//! `[service_accounts.*]`, `[login_api]` and `[dev_idp]`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Ctx;
use crate::config::raw::*;
use crate::config::*;

pub const DEFAULT_PRIVATE_API_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_REFRESH_BEFORE: Duration = Duration::from_secs(300);
pub(crate) const DEFAULT_CACHE_CAPACITY: u64 = 10_000;
pub(crate) const DEFAULT_FAILURE_TTL: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_MAX_FAILURES_PER_MINUTE: u32 = 10;

fn api_path(cx: &mut Ctx, key: &str, v: Option<String>, default: &str) -> String {
    let p = v.unwrap_or_else(|| default.to_string());
    if !p.starts_with('/') || p.contains(['?', '#', ' ']) {
        cx.err(key, format!("must be a path starting with \"/\": {p:?}"));
        return default.to_string();
    }
    p
}

pub(super) fn private_api(cx: &mut Ctx, p: RawPrivateApi) -> PrivateApiConfig {
    let base_url = match p.base_url.as_deref() {
        Some(u) => match reqwest::Url::parse(u) {
            Ok(url)
                if matches!(url.scheme(), "http" | "https")
                    && url.host().is_some()
                    && url.query().is_none() =>
            {
                url
            }
            _ => {
                cx.err("private_api.base_url", format!("not a URL: {u:?}"));
                placeholder_url()
            }
        },
        None => {
            cx.err("private_api.base_url", "required");
            placeholder_url()
        }
    };
    let style = match p.style.as_deref() {
        None | Some("apigateway") => ApiStyle::ApiGateway,
        Some("cognito-idp") => ApiStyle::CognitoIdp,
        Some(other) => {
            cx.err(
                "private_api.style",
                format!("must be \"apigateway\" or \"cognito-idp\", got {other:?}"),
            );
            ApiStyle::ApiGateway
        }
    };
    let sign = match p.sign.as_deref() {
        None | Some("none") => Signing::None,
        // The region is settled once the exchange's pool is known (`resolve_signing_region`).
        Some("sigv4") => Signing::SigV4 {
            region: p.region.clone().unwrap_or_default(),
        },
        Some(other) => {
            cx.err(
                "private_api.sign",
                format!("must be \"none\" or \"sigv4\", got {other:?}"),
            );
            Signing::None
        }
    };
    if let Some(r) = &p.region {
        if !is_region(r) {
            cx.err(
                "private_api.region",
                format!("not an AWS region name: {r:?}"),
            );
        } else if sign == Signing::None {
            cx.err("private_api.region", "only used with sign = \"sigv4\"");
        }
    }
    if matches!(sign, Signing::SigV4 { .. }) && style != ApiStyle::CognitoIdp {
        cx.err(
            "private_api.sign",
            "\"sigv4\" signs calls straight to Cognito: it needs style = \"cognito-idp\" (an API Gateway private API signs its own calls with its execution role)",
        );
    }
    let paths = ApiPaths {
        admin_initiate_auth: api_path(
            cx,
            "private_api.paths.admin_initiate_auth",
            p.paths.admin_initiate_auth,
            "/admin-initiate-auth",
        ),
        admin_respond_to_auth_challenge: api_path(
            cx,
            "private_api.paths.admin_respond_to_auth_challenge",
            p.paths.admin_respond_to_auth_challenge,
            "/admin-respond-to-auth-challenge",
        ),
        initiate_auth: api_path(
            cx,
            "private_api.paths.initiate_auth",
            p.paths.initiate_auth,
            "/initiate-auth",
        ),
        respond_to_auth_challenge: api_path(
            cx,
            "private_api.paths.respond_to_auth_challenge",
            p.paths.respond_to_auth_challenge,
            "/respond-to-auth-challenge",
        ),
        get_tokens_from_refresh_token: api_path(
            cx,
            "private_api.paths.get_tokens_from_refresh_token",
            p.paths.get_tokens_from_refresh_token,
            "/get-tokens-from-refresh-token",
        ),
    };
    PrivateApiConfig {
        base_url,
        style,
        sign,
        headers: cx.headers("private_api.headers", &p.headers),
        ca_file: p
            .ca_file
            .as_deref()
            .and_then(|f| cx.path("private_api.ca_file", f, true)),
        timeout: cx.positive_duration(
            "private_api.timeout",
            p.timeout.as_deref(),
            DEFAULT_PRIVATE_API_TIMEOUT,
        ),
        paths,
    }
}

/// `ap-northeast-1`, `us-gov-west-1`, `cn-north-1`: lower-case words and digits joined by `-`.
fn is_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// The signing region of `sign = "sigv4"` when `private_api.region` is not set: the region of
/// the exchange's user pool (`ap-northeast-1_AbCdEf123`), else of a
/// `cognito-idp.{region}.amazonaws.com` base URL.
pub(super) fn resolve_signing_region(
    cx: &mut Ctx,
    api: &mut PrivateApiConfig,
    user_pool_id: Option<&str>,
) {
    let Signing::SigV4 { region } = &mut api.sign else {
        return;
    };
    if !region.is_empty() {
        return;
    }
    let from_pool = user_pool_id
        .and_then(|p| p.split_once('_'))
        .map(|(r, _)| r)
        .filter(|r| is_region(r));
    let from_host = api.base_url.host_str().and_then(|h| {
        h.strip_prefix("cognito-idp.")
            .and_then(|rest| rest.split_once('.'))
            .map(|(r, _)| r)
            .filter(|r| is_region(r))
    });
    match from_pool.or(from_host) {
        Some(r) => *region = r.to_string(),
        None => cx.err(
            "private_api.region",
            "required with sign = \"sigv4\": it cannot be read from exchange.user_pool_id or base_url",
        ),
    }
}

fn placeholder_url() -> reqwest::Url {
    reqwest::Url::parse("http://invalid.invalid/").expect("valid placeholder")
}

/// `pool_from_cognito`: the pool id named by `[cognito]` (its user_pool_id, or the last path
/// segment of its issuer), used when `[exchange]` names none.
pub(super) fn exchange(
    cx: &mut Ctx,
    e: RawExchange,
    cognito: Option<&CognitoConfig>,
    api: Option<&PrivateApiConfig>,
) -> ExchangeConfig {
    // The pool the exchange logs into: named, or the only one.
    let pool = match (e.pool.filter(|p| !p.is_empty()), cognito) {
        (Some(p), Some(c)) => {
            if c.pool(&p).is_none() {
                cx.err("exchange.pool", format!("no pool named {p:?} in [cognito]"));
            }
            p
        }
        (Some(p), None) => {
            cx.err(
                "exchange.pool",
                "there is no [cognito] section to name a pool of",
            );
            p
        }
        (None, Some(c)) if c.pools.len() > 1 => {
            cx.err(
                "exchange.pool",
                "required when [[cognito.pools]] lists several pools",
            );
            c.first().name.clone()
        }
        (None, Some(c)) => c.first().name.clone(),
        (None, None) => DEFAULT_POOL.to_string(),
    };
    let pool_from_cognito = cognito
        .and_then(|c| c.pool(&pool))
        .and_then(|p| p.user_pool_id.clone());
    let client_id = match e.client_id {
        Some(c) if !c.is_empty() => c,
        _ => {
            cx.err("exchange.client_id", "required");
            String::new()
        }
    };
    let client_secret = cx
        .secret_or_file(
            "exchange.client_secret",
            e.client_secret,
            e.client_secret_file,
        )
        .filter(|s| !s.is_empty())
        .map(Secret::new);
    let user_pool_id = match e.user_pool_id.or(pool_from_cognito) {
        Some(p) if !p.is_empty() => p,
        _ => {
            cx.err(
                "exchange.user_pool_id",
                "required when [cognito] names no user_pool_id",
            );
            String::new()
        }
    };
    let auth_flow = match e.auth_flow.as_deref() {
        // Straight to Cognito unsigned, only the unauthenticated flow works; signed (and through
        // a private API, which signs with its role) the admin flow does.
        None => match api.map(|a| (a.style, &a.sign)) {
            Some((ApiStyle::CognitoIdp, Signing::None)) => AuthFlow::UserPassword,
            _ => AuthFlow::AdminUserPassword,
        },
        Some("ADMIN_USER_PASSWORD_AUTH") => AuthFlow::AdminUserPassword,
        Some("ADMIN_NO_SRP_AUTH") => AuthFlow::AdminNoSrp,
        Some("USER_PASSWORD_AUTH") => AuthFlow::UserPassword,
        Some(other) => {
            cx.err(
                "exchange.auth_flow",
                format!("must be ADMIN_USER_PASSWORD_AUTH, ADMIN_NO_SRP_AUTH or USER_PASSWORD_AUTH, got {other:?}"),
            );
            AuthFlow::AdminUserPassword
        }
    };
    let refresh_flow = match e.refresh_flow.as_deref() {
        None | Some("REFRESH_TOKEN_AUTH") => RefreshFlow::RefreshTokenAuth,
        Some("GetTokensFromRefreshToken") => RefreshFlow::GetTokensFromRefreshToken,
        Some(other) => {
            cx.err(
                "exchange.refresh_flow",
                format!("must be REFRESH_TOKEN_AUTH or GetTokensFromRefreshToken, got {other:?}"),
            );
            RefreshFlow::RefreshTokenAuth
        }
    };
    let max_failures = cx.count(
        "exchange.max_failures_per_minute",
        e.max_failures_per_minute,
        DEFAULT_MAX_FAILURES_PER_MINUTE as u64,
        1,
    );
    ExchangeConfig {
        pool,
        client_id,
        client_secret,
        user_pool_id,
        auth_flow,
        refresh_flow,
        refresh_before: cx.duration(
            "exchange.refresh_before",
            e.refresh_before.as_deref(),
            DEFAULT_REFRESH_BEFORE,
        ),
        cache_capacity: cx.count(
            "exchange.cache_capacity",
            e.cache_capacity,
            DEFAULT_CACHE_CAPACITY,
            1,
        ),
        failure_ttl: cx.duration(
            "exchange.failure_ttl",
            e.failure_ttl.as_deref(),
            DEFAULT_FAILURE_TTL,
        ),
        max_failures_per_minute: max_failures.min(u32::MAX as u64) as u32,
    }
}

pub(super) fn service_accounts(
    cx: &mut Ctx,
    raw: BTreeMap<String, RawServiceAccount>,
) -> Vec<ServiceAccountConfig> {
    let mut out = Vec::new();
    for (name, a) in raw {
        let key = join_key("service_accounts", &name);
        let username = match a.username {
            Some(u) if !u.is_empty() => u,
            _ => {
                cx.err(format!("{key}.username"), "required");
                String::new()
            }
        };
        let password =
            match cx.secret_or_file(&format!("{key}.password"), a.password, a.password_file) {
                Some(p) if !p.is_empty() => Secret::new(p),
                _ => {
                    cx.err(format!("{key}.password"), "required");
                    Secret::new("")
                }
            };
        out.push(ServiceAccountConfig {
            name,
            username,
            password,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::{AuthFlow, Config, Signing, Source};

    fn load(private_api: &str, pool: &str) -> Result<Config, Vec<String>> {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[private_api]\n{private_api}\n[exchange]\nclient_id = \"c\"\nuser_pool_id = \"{pool}\"\n"
        );
        let source = Source {
            name: "t".into(),
            base_dir: ".".into(),
        };
        Config::parse_with_env(&text, &source, &|_| None)
            .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    const COGNITO: &str =
        "base_url = \"https://cognito-idp.eu-west-1.amazonaws.com\"\nstyle = \"cognito-idp\"";

    #[test]
    fn sigv4_takes_its_region_from_the_key_the_pool_or_the_host_and_defaults_to_the_admin_flow() {
        let sign = |extra: &str, pool: &str| {
            let c = load(&format!("{COGNITO}\nsign = \"sigv4\"\n{extra}"), pool).unwrap();
            let api = c.private_api.unwrap();
            let Signing::SigV4 { region } = api.sign else {
                panic!("signed")
            };
            (region, c.exchange.unwrap().auth_flow)
        };
        assert_eq!(
            sign("", "ap-northeast-1_AbC"),
            ("ap-northeast-1".to_string(), AuthFlow::AdminUserPassword)
        );
        assert_eq!(sign("", "local-pool").0, "eu-west-1", "from the host");
        assert_eq!(
            sign("region = \"us-gov-west-1\"", "ap-northeast-1_AbC").0,
            "us-gov-west-1"
        );
        // Unsigned straight to Cognito: only the unauthenticated flow can work.
        let c = load(COGNITO, "ap-northeast-1_AbC").unwrap();
        assert_eq!(c.private_api.unwrap().sign, Signing::None);
        assert_eq!(c.exchange.unwrap().auth_flow, AuthFlow::UserPassword);
    }

    #[test]
    fn signing_problems_name_their_key() {
        assert_eq!(
            load("base_url = \"https://x.example/dev\"\nsign = \"sigv4\"", "ap-northeast-1_AbC").unwrap_err(),
            vec!["private_api.sign: \"sigv4\" signs calls straight to Cognito: it needs style = \"cognito-idp\" (an API Gateway private API signs its own calls with its execution role)"]
        );
        assert_eq!(
            load(&format!("{COGNITO}\nsign = \"v2\""), "p").unwrap_err(),
            vec!["private_api.sign: must be \"none\" or \"sigv4\", got \"v2\""]
        );
        assert_eq!(
            load(
                &format!("{COGNITO}\nsign = \"sigv4\"\nregion = \"Tokyo\""),
                "p"
            )
            .unwrap_err(),
            vec!["private_api.region: not an AWS region name: \"Tokyo\""]
        );
        assert_eq!(
            load(&format!("{COGNITO}\nregion = \"eu-west-1\""), "p").unwrap_err(),
            vec!["private_api.region: only used with sign = \"sigv4\""]
        );
        assert_eq!(
            load("base_url = \"http://127.0.0.1:5000\"\nstyle = \"cognito-idp\"\nsign = \"sigv4\"", "local").unwrap_err(),
            vec!["private_api.region: required with sign = \"sigv4\": it cannot be read from exchange.user_pool_id or base_url"]
        );
    }
}
