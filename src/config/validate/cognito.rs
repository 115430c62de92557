//! `[cognito]`: the single-pool form (one pool named `default`), or `[[cognito.pools]]` with
//! `[cognito.jwks]` as the defaults of every pool's `jwks` table.

use super::*;

/// `[cognito] bad_signature_per_minute` when it is not set (DESIGN §4).
const DEFAULT_BAD_SIGNATURE_PER_MINUTE: u64 = 120;

/// Which issuer URLs a pool given by region and id accepts (Cognito's original format, the
/// `issuer-cognito-idp` one of pools with the UPDATED issuer configuration, or either).
fn issuer_format(cx: &mut Ctx, key: &str, value: Option<&str>) -> (bool, bool) {
    match value {
        None | Some("any") => (true, true),
        Some("original") => (true, false),
        Some("updated") => (false, true),
        Some(other) => {
            cx.err(
                key,
                format!("must be \"original\", \"updated\" or \"any\", got {other:?}"),
            );
            (true, true)
        }
    }
}

/// What names one pool, from `[cognito]` itself or from one `[[cognito.pools]]` entry.
struct RawPoolParts {
    region: Option<String>,
    user_pool_id: Option<String>,
    issuer: Option<String>,
    issuer_format: Option<String>,
    app_clients: Option<Vec<String>>,
    jwks: RawJwks,
}

pub(super) fn cognito(cx: &mut Ctx, c: RawCognito) -> CognitoConfig {
    let clock_skew = cx.duration(
        "cognito.clock_skew",
        c.clock_skew.as_deref(),
        Duration::ZERO,
    );
    if clock_skew > Duration::from_secs(300) {
        cx.err("cognito.clock_skew", "must be at most 5m");
    }
    let bad_signature_per_minute = cx.count(
        "cognito.bad_signature_per_minute",
        c.bad_signature_per_minute,
        DEFAULT_BAD_SIGNATURE_PER_MINUTE,
        0,
    );
    let bad_signature_per_minute = u32::try_from(bad_signature_per_minute).unwrap_or_else(|_| {
        cx.err(
            "cognito.bad_signature_per_minute",
            format!("must be at most {}", u32::MAX),
        );
        0
    });
    if c.pools.is_empty() {
        let defaults = RawJwks::default();
        let single = RawPoolParts {
            region: c.region,
            user_pool_id: c.user_pool_id,
            issuer: c.issuer,
            issuer_format: c.issuer_format,
            app_clients: c.app_clients,
            jwks: c.jwks,
        };
        let pool = pool(cx, "cognito", DEFAULT_POOL.to_string(), single, &defaults);
        return CognitoConfig {
            clock_skew,
            bad_signature_per_minute,
            pools: vec![pool],
        };
    }
    let single_keys = [
        ("region", c.region.is_some()),
        ("user_pool_id", c.user_pool_id.is_some()),
        ("issuer", c.issuer.is_some()),
        ("issuer_format", c.issuer_format.is_some()),
        ("app_clients", c.app_clients.is_some()),
        ("jwks.url", c.jwks.url.is_some()),
        ("jwks.file", c.jwks.file.is_some()),
        ("jwks.headers", !c.jwks.headers.is_empty()),
        ("jwks.ca_file", c.jwks.ca_file.is_some()),
    ];
    for (key, set) in single_keys {
        if set {
            cx.err(
                format!("cognito.{key}"),
                "belongs in each [[cognito.pools]] entry when pools are listed",
            );
        }
    }
    let mut pools: Vec<PoolConfig> = Vec::new();
    for (i, p) in c.pools.into_iter().enumerate() {
        let key = format!("cognito.pools[{i}]");
        let name = match p.name.filter(|n| !n.is_empty()) {
            Some(n)
                if n.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) =>
            {
                n
            }
            Some(n) => {
                cx.err(
                    format!("{key}.name"),
                    format!("letters, digits, '-', '_' and '.' only: {n:?}"),
                );
                n
            }
            None => {
                cx.err(format!("{key}.name"), "required");
                format!("pool{i}")
            }
        };
        if pools.iter().any(|q| q.name == name) {
            cx.err(format!("{key}.name"), format!("{name:?} is used twice"));
        }
        let parts = RawPoolParts {
            region: p.region,
            user_pool_id: p.user_pool_id,
            issuer: p.issuer,
            issuer_format: p.issuer_format,
            app_clients: p.app_clients,
            jwks: p.jwks,
        };
        let pool = pool(cx, &key, name, parts, &c.jwks);
        for iss in &pool.issuers {
            if let Some(other) = pools.iter().find(|q| q.issuers.contains(iss)) {
                cx.err(
                    format!("{key}.issuer"),
                    format!(
                        "{iss:?} is accepted by pool {:?} too: the issuer picks the pool",
                        other.name
                    ),
                );
            }
        }
        pools.push(pool);
    }
    CognitoConfig {
        clock_skew,
        bad_signature_per_minute,
        pools,
    }
}

/// One pool; `key` is `cognito` or `cognito.pools[i]`, `defaults` the `[cognito.jwks]` table
/// whose timings a pool's own `jwks` table may override.
fn pool(cx: &mut Ctx, key: &str, name: String, c: RawPoolParts, defaults: &RawJwks) -> PoolConfig {
    let k = |f: &str| format!("{key}.{f}");
    let (original, updated) = issuer_format(cx, &k("issuer_format"), c.issuer_format.as_deref());
    if c.issuer.is_some() && c.issuer_format.is_some() {
        cx.err(
            k("issuer_format"),
            "only with region and user_pool_id: an explicit issuer is compared exactly",
        );
    }
    let issuers = match (&c.issuer, &c.region, &c.user_pool_id) {
        (Some(iss), _, _) => {
            if reqwest::Url::parse(iss).is_err() {
                cx.err(k("issuer"), format!("not a URL: {iss:?}"));
            }
            vec![iss.clone()]
        }
        (None, Some(region), Some(id)) => {
            let region_ok = !region.is_empty()
                && region
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-');
            if !region_ok {
                cx.err(k("region"), format!("not an AWS region: {region:?}"));
            }
            let id_ok = id
                .split_once('_')
                .is_some_and(|(r, rest)| r == region && !rest.is_empty());
            if !id_ok {
                cx.err(
                    k("user_pool_id"),
                    format!("not a user pool id of region {region:?}: {id:?}"),
                );
            }
            let mut accepted = Vec::new();
            if original {
                accepted.push(format!("https://cognito-idp.{region}.amazonaws.com/{id}"));
            }
            if updated {
                accepted.push(format!(
                    "https://issuer-cognito-idp.{region}.amazonaws.com/{id}"
                ));
            }
            accepted
        }
        _ => {
            cx.err(
                key,
                "set region and user_pool_id, or issuer, to name the accepted issuer",
            );
            vec![String::new()]
        }
    };
    let app_clients = match c.app_clients {
        Some(list) => list,
        None => {
            cx.err(
                k("app_clients"),
                "required: list the accepted app client ids, or [] to accept any (as the API Gateway Cognito authorizer does)",
            );
            Vec::new()
        }
    };
    let user_pool_id = c.user_pool_id.clone().or_else(|| {
        c.issuer
            .as_deref()
            .and_then(|i| i.trim_end_matches('/').rsplit('/').next())
            .map(str::to_string)
    });
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
                    cx.err(k("jwks.url"), format!("not a URL: {u:?}"));
                    None
                }
            });
    let file = j
        .file
        .as_deref()
        .and_then(|f| cx.path(&k("jwks.file"), f, true));
    if j.url.as_deref().unwrap_or("").is_empty() && j.file.as_deref().unwrap_or("").is_empty() {
        cx.err(
            k("jwks"),
            "set url (fetched through the private API) and/or file (seed keys)",
        );
    }
    let ca_file = j
        .ca_file
        .as_deref()
        .and_then(|f| cx.path(&k("jwks.ca_file"), f, true));
    let timing = |own: &Option<String>, default: &Option<String>| own.clone().or(default.clone());
    // Timings named by the pool's own table, else by [cognito.jwks]; errors name where it was set.
    let timing_key = |own: &Option<String>, field: &str| {
        if own.is_some() {
            k(&format!("jwks.{field}"))
        } else {
            format!("cognito.jwks.{field}")
        }
    };
    let (ri, rc, ms, to) = (
        timing(&j.refresh_interval, &defaults.refresh_interval),
        timing(&j.refetch_cooldown, &defaults.refetch_cooldown),
        timing(&j.max_stale, &defaults.max_stale),
        timing(&j.timeout, &defaults.timeout),
    );
    PoolConfig {
        name,
        issuer: issuers[0].clone(),
        issuers,
        user_pool_id,
        app_clients,
        jwks: JwksConfig {
            url,
            file,
            refresh_interval: cx.positive_duration(
                &timing_key(&j.refresh_interval, "refresh_interval"),
                ri.as_deref(),
                DEFAULT_JWKS_REFRESH,
            ),
            refetch_cooldown: cx.duration(
                &timing_key(&j.refetch_cooldown, "refetch_cooldown"),
                rc.as_deref(),
                DEFAULT_JWKS_COOLDOWN,
            ),
            max_stale: cx.positive_duration(
                &timing_key(&j.max_stale, "max_stale"),
                ms.as_deref(),
                DEFAULT_JWKS_MAX_STALE,
            ),
            timeout: cx.positive_duration(
                &timing_key(&j.timeout, "timeout"),
                to.as_deref(),
                DEFAULT_JWKS_TIMEOUT,
            ),
            headers: cx.headers(&k("jwks.headers"), &j.headers),
            ca_file,
        },
    }
}
