//! Raw values to typed values. Every problem is pushed to `errors` with its key; validation goes
//! on after a problem so that one run reports them all.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use ipnet::IpNet;

use super::raw::*;
use super::*;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
pub const DEFAULT_SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(3600);
pub const DEFAULT_JWKS_COOLDOWN: Duration = Duration::from_secs(10);
pub const DEFAULT_JWKS_MAX_STALE: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(29);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
pub const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 256;

pub(super) struct Ctx<'a> {
    source: &'a Source,
    errors: &'a mut Vec<ConfigError>,
}

impl Ctx<'_> {
    pub(super) fn err(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.into(),
            message: message.into(),
        });
    }

    pub(super) fn duration(
        &mut self,
        key: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Duration {
        let Some(text) = value else { return default };
        match humantime::parse_duration(text.trim()) {
            Ok(d) => d,
            Err(_) => {
                self.err(
                    key,
                    format!(
                        "not a duration: {text:?} (use e.g. \"500ms\", \"30s\", \"5m\", \"1h\")"
                    ),
                );
                default
            }
        }
    }

    pub(super) fn positive_duration(
        &mut self,
        key: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Duration {
        let d = self.duration(key, value, default);
        if d.is_zero() {
            self.err(key, "must be greater than zero");
            return default;
        }
        d
    }

    pub(super) fn addr(&mut self, key: &str, value: &str) -> Option<SocketAddr> {
        match value.trim().parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    key,
                    format!("not a socket address: {value:?} (use e.g. \"127.0.0.1:8080\")"),
                );
                None
            }
        }
    }

    pub(super) fn path(&mut self, key: &str, value: &str, must_exist: bool) -> Option<PathBuf> {
        if value.is_empty() {
            return None;
        }
        let p = PathBuf::from(value);
        let p = if p.is_absolute() {
            p
        } else {
            self.source.base_dir.join(p)
        };
        if must_exist && !p.is_file() {
            self.err(key, format!("file not found: {value:?}"));
            return None;
        }
        Some(p)
    }

    pub(super) fn count(&mut self, key: &str, value: Option<i64>, default: u64, min: u64) -> u64 {
        match value {
            None => default,
            Some(v) if v >= min as i64 => v as u64,
            Some(v) => {
                self.err(key, format!("must be at least {min}, got {v}"));
                default
            }
        }
    }

    pub(super) fn cidrs(&mut self, key: &str, values: &[String]) -> Vec<IpNet> {
        let mut out = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let parsed = v
                .parse::<IpNet>()
                .or_else(|_| v.parse::<std::net::IpAddr>().map(IpNet::from));
            match parsed {
                Ok(n) => out.push(n.trunc()),
                Err(_) => self.err(
                    format!("{key}[{i}]"),
                    format!("not a CIDR or IP address: {v:?}"),
                ),
            }
        }
        out
    }

    pub(super) fn headers(
        &mut self,
        key: &str,
        map: &std::collections::BTreeMap<String, String>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        for (name, value) in map {
            let k = join_key(key, name);
            let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
                self.err(k, format!("not a valid header name: {name:?}"));
                continue;
            };
            if crate::proxy::headers::is_hop_by_hop(&n) || n == http::header::HOST {
                self.err(k, "this header is managed by the gateway and cannot be set");
                continue;
            }
            match HeaderValue::from_str(value) {
                Ok(v) => out.push((n, v)),
                Err(_) => self.err(k, "not a valid header value"),
            }
        }
        out
    }
}

pub(super) fn validate(raw: RawConfig, source: &Source, errors: &mut Vec<ConfigError>) -> Config {
    let mut cx = Ctx { source, errors };
    let server = server(&mut cx, raw.server);
    let admin = raw.admin.map(|a| AdminConfig {
        listen: match a.listen {
            Some(l) => cx
                .addr("admin.listen", &l)
                .unwrap_or_else(|| ([127, 0, 0, 1], 0).into()),
            None => {
                cx.err("admin.listen", "required when [admin] is present");
                ([127, 0, 0, 1], 0).into()
            }
        },
    });
    let log = log(&mut cx, raw.log);
    let pool_from_cognito = raw.cognito.as_ref().and_then(|c| {
        c.user_pool_id.clone().or_else(|| {
            c.issuer
                .as_deref()
                .and_then(|i| i.trim_end_matches('/').rsplit('/').next())
                .map(str::to_string)
        })
    });
    let cognito = raw.cognito.map(|c| cognito(&mut cx, c));
    let upstream = upstream(&mut cx, raw.upstream);
    let private_api = raw
        .private_api
        .map(|p| super::exchange::private_api(&mut cx, p));
    let exchange = raw.exchange.map(|e| {
        super::exchange::exchange(
            &mut cx,
            e,
            pool_from_cognito,
            private_api.as_ref().map(|p| p.style),
        )
    });
    if exchange.is_some() && private_api.is_none() && raw.dev_idp.is_none() {
        cx.err("private_api", "required when [exchange] is present");
    }
    if let (Some(e), Some(p)) = (&exchange, &private_api) {
        if p.style == ApiStyle::CognitoIdp && e.auth_flow.is_admin() {
            // Admin flows need IAM-signed calls, which a Cognito endpoint only takes signed.
            tracing::debug!("admin auth flow over the cognito-idp style");
        }
    }
    let service_accounts = super::exchange::service_accounts(&mut cx, raw.service_accounts);
    let login_api = raw
        .login_api
        .map(|l| super::exchange::login_api(&mut cx, l));
    let dev_idp = raw.dev_idp.map(|d| super::exchange::dev_idp(&mut cx, d));
    let needs_exchange = !service_accounts.is_empty() || login_api.is_some();
    if needs_exchange && exchange.is_none() {
        cx.err(
            "exchange",
            "required when [service_accounts] or [login_api] are configured",
        );
    }
    if dev_idp.is_some() && exchange.is_none() {
        cx.err("exchange", "required when [dev_idp] is present (its client_id and client_secret are the dev IdP's app client)");
    }
    let known = RouteContext {
        has_cognito: cognito.is_some(),
        has_exchange: exchange.is_some(),
        service_accounts: service_accounts.iter().map(|a| a.name.clone()).collect(),
    };
    let routes = routes(&mut cx, raw.routes, &known);
    Config {
        server,
        admin,
        log,
        cognito,
        upstream,
        routes,
        private_api,
        exchange,
        service_accounts,
        login_api,
        dev_idp,
    }
}

/// What routes may refer to.
struct RouteContext {
    has_cognito: bool,
    has_exchange: bool,
    service_accounts: Vec<String>,
}

fn server(cx: &mut Ctx, s: RawServer) -> ServerConfig {
    let tls = s.tls.map(|t| tls(cx, t));
    let listen = match (&s.listen, &tls) {
        (Some(l), _) => cx.addr("server.listen", l),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_LISTEN.parse().expect("valid default")),
    };
    let max_connections = cx.count(
        "server.max_connections",
        s.max_connections,
        DEFAULT_MAX_CONNECTIONS as u64,
        1,
    ) as usize;
    let worker_threads = cx.count("server.worker_threads", s.worker_threads, 0, 0) as usize;
    let max_header_bytes = cx.count(
        "server.max_header_bytes",
        s.max_header_bytes,
        DEFAULT_MAX_HEADER_BYTES as u64,
        1024,
    ) as usize;
    let health_path = http_path(cx, "server.health_path", s.health_path, "/healthz");
    let ready_path = http_path(cx, "server.ready_path", s.ready_path, "/readyz");
    ServerConfig {
        listen,
        tls,
        max_connections,
        worker_threads,
        header_read_timeout: cx.positive_duration(
            "server.header_read_timeout",
            s.header_read_timeout.as_deref(),
            DEFAULT_HEADER_READ_TIMEOUT,
        ),
        idle_timeout: cx.positive_duration(
            "server.idle_timeout",
            s.idle_timeout.as_deref(),
            DEFAULT_IDLE_TIMEOUT,
        ),
        max_body_bytes: cx.count(
            "server.max_body_bytes",
            s.max_body_bytes,
            DEFAULT_MAX_BODY_BYTES,
            0,
        ),
        max_header_bytes,
        shutdown_drain: cx.duration(
            "server.shutdown_drain",
            s.shutdown_drain.as_deref(),
            DEFAULT_SHUTDOWN_DRAIN,
        ),
        shutdown_grace: cx.duration(
            "server.shutdown_grace",
            s.shutdown_grace.as_deref(),
            DEFAULT_SHUTDOWN_GRACE,
        ),
        trusted_proxies: cx.cidrs("server.trusted_proxies", &s.trusted_proxies),
        health_path,
        ready_path,
    }
}

fn http_path(cx: &mut Ctx, key: &str, value: Option<String>, default: &str) -> String {
    let v = value.unwrap_or_else(|| default.to_string());
    if !v.starts_with('/') || v.contains(['?', '#', ' ']) {
        cx.err(key, format!("must be a path starting with \"/\": {v:?}"));
        return default.to_string();
    }
    v
}

fn tls(cx: &mut Ctx, t: RawTls) -> TlsConfig {
    let listen = match t.listen {
        Some(l) => cx.addr("server.tls.listen", &l),
        None => {
            cx.err("server.tls.listen", "required when [server.tls] is present");
            None
        }
    };
    let file = |cx: &mut Ctx, key: &str, v: Option<String>| match v {
        Some(v) if !v.is_empty() => cx.path(key, &v, true),
        _ => {
            cx.err(key, "required when [server.tls] is present");
            None
        }
    };
    let cert = file(cx, "server.tls.cert", t.cert);
    let key = file(cx, "server.tls.key", t.key);
    let client_ca = t
        .client_ca
        .and_then(|v| cx.path("server.tls.client_ca", &v, true));
    TlsConfig {
        listen: listen.unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
        cert: cert.unwrap_or_default(),
        key: key.unwrap_or_default(),
        client_ca,
        handshake_timeout: cx.positive_duration(
            "server.tls.handshake_timeout",
            t.handshake_timeout.as_deref(),
            DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        ),
    }
}

fn log(cx: &mut Ctx, l: RawLog) -> LogConfig {
    let level = l.level.unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        cx.err(
            "log.level",
            format!("not a log level or filter: {level:?} (use error, warn, info, debug, trace)"),
        );
    }
    let format = match l.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            cx.err(
                "log.format",
                format!("must be \"text\" or \"json\", got {other:?}"),
            );
            LogFormat::Text
        }
    };
    LogConfig { level, format }
}

fn cognito(cx: &mut Ctx, c: RawCognito) -> CognitoConfig {
    let issuer = match (&c.issuer, &c.region, &c.user_pool_id) {
        (Some(iss), _, _) => {
            if reqwest::Url::parse(iss).is_err() {
                cx.err("cognito.issuer", format!("not a URL: {iss:?}"));
            }
            iss.clone()
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
            format!("https://cognito-idp.{region}.amazonaws.com/{pool}")
        }
        _ => {
            cx.err(
                "cognito",
                "set region and user_pool_id, or issuer, to name the accepted issuer",
            );
            String::new()
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
        issuer,
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

fn upstream(cx: &mut Ctx, u: RawUpstream) -> UpstreamConfig {
    UpstreamConfig {
        ca_file: u
            .ca_file
            .as_deref()
            .and_then(|f| cx.path("upstream.ca_file", f, true)),
        connect_timeout: cx.positive_duration(
            "upstream.connect_timeout",
            u.connect_timeout.as_deref(),
            DEFAULT_CONNECT_TIMEOUT,
        ),
        pool_idle_timeout: cx.positive_duration(
            "upstream.pool_idle_timeout",
            u.pool_idle_timeout.as_deref(),
            DEFAULT_POOL_IDLE_TIMEOUT,
        ),
        pool_max_idle_per_host: cx.count(
            "upstream.pool_max_idle_per_host",
            u.pool_max_idle_per_host,
            DEFAULT_POOL_MAX_IDLE_PER_HOST as u64,
            0,
        ) as usize,
    }
}

fn routes(cx: &mut Ctx, raw: Vec<RawRoute>, known: &RouteContext) -> Vec<RouteConfig> {
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
            if p.len() > 1 {
                p.trim_end_matches('/').to_string()
            } else {
                p
            }
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
        Some(u) => parse_upstream(u).unwrap_or_else(|| {
            cx.err(k("upstream"), format!("not a URL: {u:?}"));
            UpstreamTarget::Echo
        }),
        None => {
            cx.err(k("upstream"), "required (a URL or \"builtin:echo\")");
            UpstreamTarget::Echo
        }
    };
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
                let method = match a.as_str() {
                    "jwt" => AuthMethod::Jwt,
                    "none" => AuthMethod::None,
                    "basic" => AuthMethod::Basic,
                    "service" => AuthMethod::Service,
                    other => {
                        cx.err(
                            format!("{key}.auth[{j}]"),
                            format!("unknown auth method {other:?} (use \"jwt\", \"basic\", \"service\" or \"none\")"),
                        );
                        continue;
                    }
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
            Ok(n) if crate::proxy::headers::is_hop_by_hop(&n) || n == http::header::HOST => cx.err(
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
    }
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
