//! `[[routes]]`: the route table's entries, each checked against what the rest of the
//! configuration provides.

use super::cors::cors;
use super::*;

/// What routes may refer to.
pub(super) struct RouteContext {
    /// The names of the configured user pools.
    pub(super) pools: Vec<String>,
    pub(super) has_cognito: bool,
    pub(super) has_exchange: bool,
    /// The pool the exchange logs into, when there is an exchange.
    pub(super) exchange_pool: Option<String>,
    pub(super) service_accounts: Vec<String>,
    /// `[throttle.NAME]` limits by name, with what each is keyed by.
    pub(super) limits: std::collections::BTreeMap<String, crate::config::ThrottleKey>,
}

pub(super) fn routes(cx: &mut Ctx, raw: Vec<RawRoute>, known: &RouteContext) -> Vec<RouteConfig> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let key = format!("routes[{i}]");
        let route = route(cx, &key, r, known);
        if !names.insert(route.name.clone()) {
            cx.err(
                format!("{key}.name"),
                format!("duplicate route name {:?}", route.name),
            );
        }
        out.push(route);
    }
    out
}

fn route(cx: &mut Ctx, key: &str, r: RawRoute, known: &RouteContext) -> RouteConfig {
    let k = |field: &str| format!("{key}.{field}");
    let name = match r.name {
        Some(n)
            if !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) =>
        {
            n
        }
        Some(n) => {
            cx.err(
                k("name"),
                format!("use letters, digits, '_', '-' or '.': {n:?}"),
            );
            n
        }
        None => {
            cx.err(k("name"), "required");
            String::new()
        }
    };
    let path_prefix = match r.path_prefix {
        Some(p) if p.starts_with('/') && !p.contains(['?', '#', ' ']) => {
            // Trailing slashes do not count (`/orders/` is `/orders`); only slashes is `/`.
            let p = match p.trim_end_matches('/') {
                "" => "/".to_string(),
                trimmed => trimmed.to_string(),
            };
            if let Some(why) = unmatchable_prefix(&p) {
                cx.err(k("path_prefix"), format!("{p:?} never matches: {why}"));
            }
            p
        }
        Some(p) => {
            cx.err(
                k("path_prefix"),
                format!("must be a path starting with \"/\": {p:?}"),
            );
            "/".into()
        }
        None => {
            cx.err(k("path_prefix"), "required");
            "/".into()
        }
    };
    let host = r
        .host
        .filter(|h| !h.is_empty())
        .map(|h| h.to_ascii_lowercase());
    let mut methods = Vec::new();
    for (j, m) in r.methods.iter().enumerate() {
        match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
            Ok(m) => methods.push(m),
            Err(_) => cx.err(
                format!("{key}.methods[{j}]"),
                format!("not a method: {m:?}"),
            ),
        }
    }
    let upstream = match r.upstream.as_deref() {
        Some("builtin:echo") => UpstreamTarget::Echo,
        Some("none") => UpstreamTarget::None,
        Some("origin") => UpstreamTarget::Origin,
        Some(u) => parse_upstream(u).unwrap_or_else(|| {
            cx.err(k("upstream"), format!("not a URL: {u:?}"));
            UpstreamTarget::Echo
        }),
        None => {
            cx.err(k("upstream"), "required (a URL, \"builtin:echo\", or \"none\" for a route only [authz] answers on)");
            UpstreamTarget::Echo
        }
    };
    if r.websocket
        && matches!(
            upstream,
            UpstreamTarget::Echo | UpstreamTarget::None | UpstreamTarget::Origin
        )
    {
        cx.err(
            k("websocket"),
            "needs an http(s) upstream that speaks WebSocket",
        );
    }
    if r.websocket_max_lifetime.is_some() && !r.websocket {
        cx.err(
            k("websocket_max_lifetime"),
            "only applies with websocket = true",
        );
    }
    let websocket_max_lifetime = cx.positive_duration(
        &k("websocket_max_lifetime"),
        r.websocket_max_lifetime.as_deref(),
        DEFAULT_WEBSOCKET_MAX_LIFETIME,
    );
    let mut auth = Vec::new();
    match r.auth {
        None => cx.err(
            k("auth"),
            "required: any of \"jwt\", \"none\" (tried in order)",
        ),
        Some(list) if list.is_empty() => {
            cx.err(k("auth"), "must name at least one of \"jwt\", \"none\"")
        }
        Some(list) => {
            for (j, a) in list.iter().enumerate() {
                let Some(method) = AuthMethod::from_name(a) else {
                    let names: Vec<String> = AuthMethod::ALL
                        .iter()
                        .map(|m| format!("{:?}", m.as_str()))
                        .collect();
                    let (last, rest) = names.split_last().expect("methods exist");
                    cx.err(
                        format!("{key}.auth[{j}]"),
                        format!(
                            "unknown auth method {a:?} (use {} or {last})",
                            rest.join(", ")
                        ),
                    );
                    continue;
                };
                if auth.contains(&method) {
                    cx.err(format!("{key}.auth[{j}]"), format!("{a:?} is listed twice"));
                } else {
                    auth.push(method);
                }
            }
        }
    }
    let has_jwt = auth.contains(&AuthMethod::Jwt);
    let exchanges = auth.contains(&AuthMethod::Basic) || auth.contains(&AuthMethod::Service);
    if (has_jwt || exchanges) && !known.has_cognito {
        cx.err(
            k("auth"),
            "\"jwt\", \"basic\" and \"service\" need a [cognito] section (tokens are verified)",
        );
    }
    if exchanges && !known.has_exchange {
        cx.err(
            k("auth"),
            "\"basic\" and \"service\" need the [exchange] and [private_api] sections",
        );
    }
    let service_account = match (&r.service_account, auth.contains(&AuthMethod::Service)) {
        (Some(name), true) => {
            if !known.service_accounts.contains(name) {
                cx.err(
                    k("service_account"),
                    format!("no [service_accounts.{name}] is configured"),
                );
            }
            Some(name.clone())
        }
        (None, true) => {
            cx.err(
                k("service_account"),
                "required when auth includes \"service\"",
            );
            None
        }
        (Some(_), false) => {
            cx.err(k("service_account"), "only used with auth \"service\"");
            None
        }
        (None, false) => None,
    };
    let token_header = match r.token_header.as_deref() {
        None => http::header::AUTHORIZATION,
        Some(h) => HeaderName::from_bytes(h.as_bytes()).unwrap_or_else(|_| {
            cx.err(k("token_header"), format!("not a header name: {h:?}"));
            http::header::AUTHORIZATION
        }),
    };
    for (j, s) in r.scopes.iter().enumerate() {
        if s.is_empty() || s.contains(char::is_whitespace) {
            cx.err(format!("{key}.scopes[{j}]"), format!("not a scope: {s:?}"));
        }
    }
    let token_use = match r.token_use.as_deref() {
        None | Some("") if r.scopes.is_empty() => TokenUsePolicy::Id,
        None | Some("") => TokenUsePolicy::Access,
        Some("id") => TokenUsePolicy::Id,
        Some("access") => TokenUsePolicy::Access,
        Some("any") => TokenUsePolicy::Any,
        Some(other) => {
            cx.err(
                k("token_use"),
                format!("must be \"id\", \"access\" or \"any\", got {other:?}"),
            );
            TokenUsePolicy::Id
        }
    };
    if token_use == TokenUsePolicy::Id && !r.scopes.is_empty() {
        cx.err(
            k("token_use"),
            "\"id\" cannot be combined with scopes: ID tokens carry no scopes",
        );
    }
    let forward_token = match r.forward_token.as_deref() {
        None => ForwardToken::Verified,
        Some("id") => ForwardToken::Id,
        Some("access") => ForwardToken::Access,
        Some("none") => ForwardToken::None,
        Some(other) => {
            cx.err(
                k("forward_token"),
                format!("must be \"id\", \"access\" or \"none\", got {other:?}"),
            );
            ForwardToken::Verified
        }
    };
    if has_jwt && !exchanges {
        let never = match (forward_token, token_use) {
            (ForwardToken::Id, TokenUsePolicy::Access) => Some("id"),
            (ForwardToken::Access, TokenUsePolicy::Id) => Some("access"),
            _ => None,
        };
        if let Some(kind) = never {
            cx.err(
                k("forward_token"),
                format!("this route never accepts an {kind} token, so it cannot forward one"),
            );
        }
    }
    let forward_token_scheme = r.forward_token_scheme.unwrap_or_else(|| "Bearer".into());
    if forward_token_scheme.contains(|c: char| !c.is_ascii_alphanumeric() && c != '-') {
        cx.err(
            k("forward_token_scheme"),
            format!("not an authorization scheme: {forward_token_scheme:?}"),
        );
    }
    let mut claim_headers = Vec::new();
    for (h, claim) in &r.claim_headers {
        let hk = join_key(&k("claim_headers"), h);
        match HeaderName::from_bytes(h.as_bytes()) {
            Ok(n) if crate::hop::is_hop_by_hop(&n) || n == http::header::HOST => cx.err(
                hk,
                "this header is managed by the gateway and cannot be set",
            ),
            Ok(n) if n == token_header || n == http::header::AUTHORIZATION => {
                cx.err(hk, "cannot carry a claim: the token is forwarded in it")
            }
            Ok(n) if claim.is_empty() => cx.err(hk, format!("name a claim for header {n}")),
            Ok(n) => claim_headers.push((n, claim.clone())),
            Err(_) => cx.err(hk, format!("not a header name: {h:?}")),
        }
    }
    if r.pass_client_authorization {
        let reads = auth.contains(&AuthMethod::Basic)
            || (has_jwt && token_header == http::header::AUTHORIZATION);
        let sets =
            forward_token != ForwardToken::None && auth.iter().any(|m| *m != AuthMethod::None);
        if reads {
            cx.err(
                k("pass_client_authorization"),
                "the route reads Authorization itself (basic, or jwt with token_header \"Authorization\")",
            );
        } else if sets {
            cx.err(
                k("pass_client_authorization"),
                "the gateway forwards the route's token in Authorization; set forward_token = \"none\" to pass the client's own",
            );
        }
    }
    if !has_jwt
        && !exchanges
        && (!r.scopes.is_empty() || !r.groups.is_empty() || !claim_headers.is_empty())
    {
        cx.err(
            k("auth"),
            "scopes, groups and claim_headers need \"jwt\", \"basic\" or \"service\" in auth",
        );
    }
    let pools = route_pools(cx, key, r.pools, &auth, known);
    let throttle = super::throttle::route_throttle(
        cx,
        &k("throttle"),
        r.throttle,
        has_jwt || exchanges,
        &known.limits,
    );
    RouteConfig {
        timeout: cx.positive_duration(&k("timeout"), r.timeout.as_deref(), DEFAULT_ROUTE_TIMEOUT),
        upstream_headers: cx.headers(&k("upstream_headers"), &r.upstream_headers),
        allow_from: cx.cidrs(&k("allow_from"), &r.allow_from),
        name,
        path_prefix,
        host,
        methods,
        upstream,
        strip_prefix: r.strip_prefix,
        auth,
        token_header,
        scopes: r.scopes,
        token_use,
        groups: r.groups,
        forward_token,
        forward_token_scheme,
        claim_headers,
        pass_client_authorization: r.pass_client_authorization,
        service_account,
        cors: r.cors.map(|c| cors(cx, &k("cors"), c)),
        pools,
        websocket: r.websocket,
        websocket_idle_timeout: cx.positive_duration(
            &k("websocket_idle_timeout"),
            r.websocket_idle_timeout.as_deref(),
            DEFAULT_WEBSOCKET_IDLE_TIMEOUT,
        ),
        websocket_max_lifetime,
        case_insensitive: r.case_insensitive,
        throttle,
    }
}

/// Why no request could ever match `prefix`: requests are routed on their normalised path
/// (`pipeline::path`: `/` runs merged, no `.`/`..` segment, unreserved escapes decoded,
/// `;params` dropped, other bytes percent-encoded), so a prefix must already be one, spelled
/// with plain characters. The `routes` fuzz target checks that every prefix this accepts is a
/// fixed point of the normaliser.
fn unmatchable_prefix(prefix: &str) -> Option<String> {
    if prefix == "/" {
        return None;
    }
    let Some(rest) = prefix.strip_prefix('/') else {
        return Some("a path prefix starts with '/'".into());
    };
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        let merged: Vec<&str> = segments.into_iter().filter(|s| !s.is_empty()).collect();
        return Some(format!(
            "requests are routed with runs of '/' merged; write {:?}",
            format!("/{}", merged.join("/"))
        ));
    }
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Some("a dot segment (requests with one are refused)".into());
    }
    if prefix.contains('%') {
        return Some("percent-escapes are not accepted here: write the characters".into());
    }
    if prefix.contains(';') {
        return Some("';' starts parameters, which routing ignores".into());
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,=:@".contains(&b);
    if let Some(c) = prefix.chars().find(|c| !c.is_ascii() || !allowed(*c as u8)) {
        return Some(format!(
            "{c:?} arrives percent-encoded, so it cannot be matched as written"
        ));
    }
    None
}

pub(crate) const DEFAULT_WEBSOCKET_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// API Gateway closes a WebSocket connection after 2 hours; a tunnel here lives no longer by
/// default, and never past the expiry of the token that opened it.
pub(crate) const DEFAULT_WEBSOCKET_MAX_LIFETIME: Duration = Duration::from_secs(2 * 3600);

/// `routes[].pools`: pools the route's jwt method accepts tokens of.
fn route_pools(
    cx: &mut Ctx,
    key: &str,
    pools: Vec<String>,
    auth: &[AuthMethod],
    known: &RouteContext,
) -> Vec<String> {
    if !pools.is_empty() && !auth.contains(&AuthMethod::Jwt) {
        cx.err(join_key(key, "pools"), "only applies to auth \"jwt\"");
    }
    // Basic and service accounts forward tokens of the exchange's pool: a route that refuses
    // that pool's tokens must not accept them through the exchange either.
    if let Some(exchange_pool) = known.exchange_pool.as_deref() {
        let exchanged = auth
            .iter()
            .find(|a| matches!(a, AuthMethod::Basic | AuthMethod::Service));
        if let Some(method) = exchanged.filter(|_| !pools.is_empty()) {
            if !pools.iter().any(|p| p == exchange_pool) {
                cx.err(
                    join_key(key, "pools"),
                    format!(
                        "does not list {exchange_pool:?}, the pool auth \"{}\" logs into ([exchange] pool); add it or remove \"{}\"",
                        method.as_str(),
                        method.as_str()
                    ),
                );
            }
        }
    }
    for (j, p) in pools.iter().enumerate() {
        if !known.pools.contains(p) {
            cx.err(
                format!("{key}.pools[{j}]"),
                format!("no pool named {p:?} in [cognito]"),
            );
        }
    }
    pools
}

fn parse_upstream(u: &str) -> Option<UpstreamTarget> {
    let uri: http::Uri = u.parse().ok()?;
    let scheme = uri.scheme()?.clone();
    if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
        return None;
    }
    let authority = uri.authority()?.clone();
    if authority.host().is_empty() || authority.as_str().contains('@') {
        return None;
    }
    if uri.query().is_some() {
        return None;
    }
    let base_path = uri.path().trim_end_matches('/').to_string();
    Some(UpstreamTarget::Url {
        scheme,
        authority,
        base_path,
    })
}
