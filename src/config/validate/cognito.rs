//! `[cognito]` and `[cognito.jwks]`.

use super::*;

/// Which issuer URLs a pool given by region and id accepts (Cognito's original format, the
/// `issuer-cognito-idp` one of pools with the UPDATED issuer configuration, or either).
fn issuer_format(cx: &mut Ctx, value: Option<&str>) -> (bool, bool) {
    match value {
        None | Some("any") => (true, true),
        Some("original") => (true, false),
        Some("updated") => (false, true),
        Some(other) => {
            cx.err(
                "cognito.issuer_format",
                format!("must be \"original\", \"updated\" or \"any\", got {other:?}"),
            );
            (true, true)
        }
    }
}

pub(super) fn cognito(cx: &mut Ctx, c: RawCognito) -> CognitoConfig {
    let (original, updated) = issuer_format(cx, c.issuer_format.as_deref());
    if c.issuer.is_some() && c.issuer_format.is_some() {
        cx.err(
            "cognito.issuer_format",
            "only with region and user_pool_id: an explicit issuer is compared exactly",
        );
    }
    let issuers = match (&c.issuer, &c.region, &c.user_pool_id) {
        (Some(iss), _, _) => {
            if reqwest::Url::parse(iss).is_err() {
                cx.err("cognito.issuer", format!("not a URL: {iss:?}"));
            }
            vec![iss.clone()]
        }
        (None, Some(region), Some(pool)) => {
            let region_ok = !region.is_empty()
                && region
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
            if !region_ok {
                cx.err("cognito.region", format!("not an AWS region: {region:?}"));
            }
            let pool_ok = pool
                .split_once('_')
                .is_some_and(|(r, id)| r == region && !id.is_empty());
            if !pool_ok {
                cx.err(
                    "cognito.user_pool_id",
                    format!("not a user pool id of region {region:?}: {pool:?}"),
                );
            }
            let mut accepted = Vec::new();
            if original {
                accepted.push(format!("https://cognito-idp.{region}.amazonaws.com/{pool}"));
            }
            if updated {
                accepted.push(format!(
                    "https://issuer-cognito-idp.{region}.amazonaws.com/{pool}"
                ));
            }
            accepted
        }
        _ => {
            cx.err(
                "cognito",
                "set region and user_pool_id, or issuer, to name the accepted issuer",
            );
            vec![String::new()]
        }
    };
    let app_clients = match c.app_clients {
        Some(list) => list,
        None => {
            cx.err(
                "cognito.app_clients",
                "required: list the accepted app client ids, or [] to accept any (as the API Gateway Cognito authorizer does)",
            );
            Vec::new()
        }
    };
    let clock_skew = cx.duration(
        "cognito.clock_skew",
        c.clock_skew.as_deref(),
        Duration::ZERO,
    );
    if clock_skew > Duration::from_secs(300) {
        cx.err("cognito.clock_skew", "must be at most 5m");
    }
    let j = c.jwks;
    let url =
        j.url
            .as_deref()
            .filter(|u| !u.is_empty())
            .and_then(|u| match reqwest::Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    Some(url)
                }
                _ => {
                    cx.err("cognito.jwks.url", format!("not a URL: {u:?}"));
                    None
                }
            });
    let file = j
        .file
        .as_deref()
        .and_then(|f| cx.path("cognito.jwks.file", f, true));
    if j.url.as_deref().unwrap_or("").is_empty() && j.file.as_deref().unwrap_or("").is_empty() {
        cx.err(
            "cognito.jwks",
            "set url (fetched through the private API) and/or file (seed keys)",
        );
    }
    let ca_file = j
        .ca_file
        .as_deref()
        .and_then(|f| cx.path("cognito.jwks.ca_file", f, true));
    CognitoConfig {
        issuer: issuers[0].clone(),
        issuers,
        app_clients,
        clock_skew,
        jwks: JwksConfig {
            url,
            file,
            refresh_interval: cx.positive_duration(
                "cognito.jwks.refresh_interval",
                j.refresh_interval.as_deref(),
                DEFAULT_JWKS_REFRESH,
            ),
            refetch_cooldown: cx.duration(
                "cognito.jwks.refetch_cooldown",
                j.refetch_cooldown.as_deref(),
                DEFAULT_JWKS_COOLDOWN,
            ),
            max_stale: cx.positive_duration(
                "cognito.jwks.max_stale",
                j.max_stale.as_deref(),
                DEFAULT_JWKS_MAX_STALE,
            ),
            timeout: cx.positive_duration(
                "cognito.jwks.timeout",
                j.timeout.as_deref(),
                DEFAULT_JWKS_TIMEOUT,
            ),
            headers: cx.headers("cognito.jwks.headers", &j.headers),
            ca_file,
        },
    }
}
