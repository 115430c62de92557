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

mod authz;
mod cognito;
mod cors;
mod dev_idp;
mod exchange;
mod forward_proxy;
mod login_api;
mod routes;
mod server;
mod shared;
mod throttle;
mod tracing;

use cognito::cognito;
pub use exchange::DEFAULT_PRIVATE_API_TIMEOUT;
use routes::{routes, RouteContext};
use server::{log, server, upstream};

pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub(crate) const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
pub(crate) const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
pub(crate) const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// A /64 is what one IPv6 host (a home, a VM, a container network) is usually given.
pub(crate) const DEFAULT_IPV6_PREFIX: u8 = 64;
pub(crate) const DEFAULT_SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
pub(crate) const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(3600);
pub(crate) const DEFAULT_JWKS_COOLDOWN: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_JWKS_MAX_STALE: Duration = Duration::from_secs(24 * 3600);
pub(crate) const DEFAULT_JWKS_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(29);
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
pub(crate) const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 256;

pub(super) struct Ctx<'a> {
    source: &'a Source,
    errors: &'a mut Vec<ConfigError>,
}

impl Ctx<'_> {
    /// Records a problem once: a shared default (`[cognito.jwks]` for every pool) is checked
    /// where it is used, and one bad value must not become a line per use.
    pub(super) fn err(&mut self, key: impl Into<String>, message: impl Into<String>) {
        let e = ConfigError {
            key: key.into(),
            message: message.into(),
        };
        if !self.errors.contains(&e) {
            self.errors.push(e);
        }
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

    /// A secret given inline (`key`) or in a file (`key_file`, e.g. a mounted Kubernetes or
    /// Docker secret; one trailing newline removed). Both at once is an error.
    pub(super) fn secret_or_file(
        &mut self,
        key: &str,
        value: Option<String>,
        file: Option<String>,
    ) -> Option<String> {
        match (value, file) {
            (Some(_), Some(_)) => {
                self.err(key, format!("set {key} or {key}_file, not both"));
                None
            }
            (Some(v), None) => Some(v),
            (None, Some(f)) => {
                let file_key = format!("{key}_file");
                let path = self.path(&file_key, &f, true)?;
                match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        let text = text.strip_suffix('\n').unwrap_or(&text);
                        Some(text.strip_suffix('\r').unwrap_or(text).to_string())
                    }
                    Err(e) => {
                        self.err(file_key, format!("cannot read {}: {e}", path.display()));
                        None
                    }
                }
            }
            (None, None) => None,
        }
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
            if crate::hop::is_hop_by_hop(&n) || n == http::header::HOST {
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
    let cognito = raw.cognito.map(|c| cognito(&mut cx, c));
    let upstream = upstream(&mut cx, raw.upstream);
    let mut private_api = raw.private_api.map(|p| exchange::private_api(&mut cx, p));
    let exchange = raw
        .exchange
        .map(|e| exchange::exchange(&mut cx, e, cognito.as_ref(), private_api.as_ref()));
    if exchange.is_some() && private_api.is_none() && raw.dev_idp.is_none() {
        cx.err("private_api", "required when [exchange] is present");
    }
    if let Some(p) = private_api.as_mut() {
        let pool = exchange.as_ref().map(|e| e.user_pool_id.as_str());
        exchange::resolve_signing_region(&mut cx, p, pool);
    }
    let service_accounts = exchange::service_accounts(&mut cx, raw.service_accounts);
    let login_api = raw.login_api.map(|l| login_api::login_api(&mut cx, l));
    if cfg!(not(feature = "dev-idp")) && raw.dev_idp.is_some() {
        cx.err(
            "dev_idp",
            "this build has no development IdP (it was built without the dev-idp feature, as production images are)",
        );
    }
    let dev_idp = raw.dev_idp.map(|d| dev_idp::dev_idp(&mut cx, d));
    let shared_state = raw.shared_state.map(|s| shared::shared_state(&mut cx, s));
    let throttle = throttle::throttle(&mut cx, raw.throttle);
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
        pools: cognito
            .as_ref()
            .map(|c| c.pools.iter().map(|p| p.name.clone()).collect())
            .unwrap_or_default(),
        has_cognito: cognito.is_some(),
        has_exchange: exchange.is_some(),
        exchange_pool: exchange.as_ref().map(|e| e.pool.clone()),
        service_accounts: service_accounts.iter().map(|a| a.name.clone()).collect(),
        limits: throttle
            .limits
            .iter()
            .map(|(n, l)| (n.clone(), l.key))
            .collect(),
    };
    let routes = routes(&mut cx, raw.routes, &known);
    let authz = raw.authz.map(|a| authz::authz(&mut cx, a));
    let forward_proxy = raw
        .forward_proxy
        .map(|f| forward_proxy::forward_proxy(&mut cx, f));
    if forward_proxy
        .as_ref()
        .is_none_or(|f| f.intercept.is_empty())
    {
        for (i, r) in routes.iter().enumerate() {
            if r.upstream == UpstreamTarget::Origin {
                cx.err(
                    format!("routes[{i}].upstream"),
                    "\"origin\" forwards to the forward proxy's target: it needs [forward_proxy] intercept",
                );
            }
        }
    }
    if authz.is_none() {
        for (i, r) in routes.iter().enumerate() {
            if r.upstream == UpstreamTarget::None {
                cx.err(
                    format!("routes[{i}].upstream"),
                    "\"none\" is for routes only [authz] answers on, and there is no [authz]",
                );
            }
        }
    }
    let tracing = raw.tracing.and_then(|t| tracing::tracing(&mut cx, t));
    Config {
        server,
        admin,
        log,
        tracing,
        cognito,
        upstream,
        routes,
        private_api,
        exchange,
        service_accounts,
        login_api,
        dev_idp,
        shared_state,
        authz,
        forward_proxy,
        throttle,
    }
}
