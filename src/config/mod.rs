//! Configuration: `config.toml` is read once, `${ENV}` references are substituted, unknown keys and
//! bad values are collected (all of them, each naming its key), and the result is a typed `Config`
//! that the request path uses without re-parsing anything.

mod env;
mod exchange;
mod raw;
mod validate;

pub use exchange::DEFAULT_PRIVATE_API_TIMEOUT;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use ipnet::IpNet;

/// The configuration shipped with the project, used when no `--config` is given and
/// `./config.toml` does not exist.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config.toml");

/// One problem in the configuration, naming the key that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem found in one configuration file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    fn single(key: &str, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError {
            key: key.to_string(),
            message: message.into(),
        }])
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: Option<AdminConfig>,
    pub log: LogConfig,
    pub cognito: Option<CognitoConfig>,
    pub upstream: UpstreamConfig,
    pub routes: Vec<RouteConfig>,
    pub private_api: Option<PrivateApiConfig>,
    pub exchange: Option<ExchangeConfig>,
    pub service_accounts: Vec<ServiceAccountConfig>,
    pub login_api: Option<LoginApiConfig>,
    pub dev_idp: Option<DevIdpConfig>,
}

/// A secret value (password, client secret): never printed by Debug or Display.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How the private API is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiStyle {
    /// `POST {base_url}{path}` with Cognito's JSON body, one resource per action (the API
    /// Gateway proxy pattern).
    ApiGateway,
    /// `POST {base_url}/` with `X-Amz-Target` (JSON 1.1): a Cognito VPC endpoint or emulator.
    CognitoIdp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiPaths {
    pub admin_initiate_auth: String,
    pub admin_respond_to_auth_challenge: String,
    pub initiate_auth: String,
    pub respond_to_auth_challenge: String,
    pub get_tokens_from_refresh_token: String,
}

impl Default for ApiPaths {
    /// The resource paths of DESIGN §3 (`[private_api.paths]` defaults).
    fn default() -> Self {
        ApiPaths {
            admin_initiate_auth: "/admin-initiate-auth".into(),
            admin_respond_to_auth_challenge: "/admin-respond-to-auth-challenge".into(),
            initiate_auth: "/initiate-auth".into(),
            respond_to_auth_challenge: "/respond-to-auth-challenge".into(),
            get_tokens_from_refresh_token: "/get-tokens-from-refresh-token".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PrivateApiConfig {
    pub base_url: reqwest::Url,
    pub style: ApiStyle,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    pub paths: ApiPaths,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFlow {
    AdminUserPassword,
    AdminNoSrp,
    UserPassword,
}

impl AuthFlow {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFlow::AdminUserPassword => "ADMIN_USER_PASSWORD_AUTH",
            AuthFlow::AdminNoSrp => "ADMIN_NO_SRP_AUTH",
            AuthFlow::UserPassword => "USER_PASSWORD_AUTH",
        }
    }

    /// Admin flows go through AdminInitiateAuth / AdminRespondToAuthChallenge.
    pub fn is_admin(self) -> bool {
        match self {
            AuthFlow::AdminUserPassword | AuthFlow::AdminNoSrp => true,
            AuthFlow::UserPassword => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshFlow {
    RefreshTokenAuth,
    GetTokensFromRefreshToken,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeConfig {
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub user_pool_id: String,
    pub auth_flow: AuthFlow,
    pub refresh_flow: RefreshFlow,
    pub refresh_before: Duration,
    pub cache_capacity: u64,
    pub failure_ttl: Duration,
    pub max_failures_per_minute: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceAccountConfig {
    pub name: String,
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Clone)]
pub struct LoginApiConfig {
    pub path_prefix: String,
}

#[derive(Debug, Clone)]
pub struct DevIdpConfig {
    pub listen: SocketAddr,
    pub token_lifetime: Duration,
    pub signing_keys: Option<PathBuf>,
    pub users: Vec<DevUser>,
}

#[derive(Debug, Clone)]
pub struct DevUser {
    pub username: String,
    pub password: Secret,
    pub groups: Vec<String>,
    pub attributes: Vec<(String, String)>,
    pub force_new_password: bool,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: Option<SocketAddr>,
    pub tls: Option<TlsConfig>,
    pub max_connections: usize,
    /// Runtime worker threads; 0 = one per CPU the process may run on.
    pub worker_threads: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_body_bytes: u64,
    pub max_header_bytes: usize,
    pub shutdown_drain: Duration,
    pub shutdown_grace: Duration,
    pub trusted_proxies: Vec<IpNet>,
    pub health_path: String,
    pub ready_path: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub handshake_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CognitoConfig {
    pub issuer: String,
    /// Accepted `aud` (ID tokens) / `client_id` (access tokens); empty = not checked.
    pub app_clients: Vec<String>,
    pub clock_skew: Duration,
    pub jwks: JwksConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JwksConfig {
    pub url: Option<reqwest::Url>,
    pub file: Option<PathBuf>,
    pub refresh_interval: Duration,
    pub refetch_cooldown: Duration,
    pub max_stale: Duration,
    pub timeout: Duration,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamConfig {
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Jwt,
    Basic,
    Service,
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "jwt",
            AuthMethod::Basic => "basic",
            AuthMethod::Service => "service",
            AuthMethod::None => "none",
        }
    }
}

/// Which kind of token a jwt route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUsePolicy {
    Id,
    Access,
    Any,
}

/// Which token the gateway places in the upstream request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardToken {
    /// The token the route verified, whichever kind it was.
    Verified,
    Id,
    Access,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTarget {
    Url {
        scheme: http::uri::Scheme,
        authority: http::uri::Authority,
        /// Path prefix of the upstream URL, without a trailing slash ("" for none).
        base_path: String,
    },
    Echo,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    pub path_prefix: String,
    pub host: Option<String>,
    pub methods: Vec<Method>,
    pub upstream: UpstreamTarget,
    pub strip_prefix: bool,
    pub upstream_headers: Vec<(HeaderName, HeaderValue)>,
    pub timeout: Duration,
    pub auth: Vec<AuthMethod>,
    pub token_header: HeaderName,
    pub scopes: Vec<String>,
    pub token_use: TokenUsePolicy,
    pub groups: Vec<String>,
    pub allow_from: Vec<IpNet>,
    pub forward_token: ForwardToken,
    pub forward_token_scheme: String,
    pub claim_headers: Vec<(HeaderName, String)>,
    /// Forward the client's own Authorization header (an upstream that does its own auth);
    /// only where the gateway neither reads nor sets Authorization on the route.
    pub pass_client_authorization: bool,
    /// The service account whose token `auth = ["service"]` forwards.
    pub service_account: Option<String>,
}

/// Where a configuration came from: relative paths inside it are resolved against `base_dir`.
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub base_dir: PathBuf,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::single("", format!("cannot read {}: {e}", path.display()))
        })?;
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Config::parse(
            &text,
            &Source {
                name: path.display().to_string(),
                base_dir,
            },
        )
    }

    /// Parses configuration text, reading the process environment for `${NAME}` references.
    pub fn parse(text: &str, source: &Source) -> Result<Config, ConfigErrors> {
        Config::parse_with_env(text, source, &|name| std::env::var(name).ok())
    }

    /// Parses configuration text with an explicit environment lookup (tests use this).
    pub fn parse_with_env(
        text: &str,
        source: &Source,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let mut value: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigErrors::single("", syntax_error(source, text, &e))
        })?;
        let mut errors = Vec::new();
        env::substitute_table(&mut value, "", env, &mut errors);
        // Keys already reported (an unset variable, a value of the wrong type): what validation
        // says later about the same key would only repeat the problem, less clearly.
        let mut reported: HashSet<String> = errors.iter().map(|e| e.key.clone()).collect();

        // A value of the wrong type stops serde at the first one; it is reported, removed, and
        // the rest deserialized again, so one run still reports every problem.
        let (raw, unknown) = loop {
            let mut unknown = Vec::new();
            let de = toml::Value::Table(value.clone());
            let mut on_unknown = |path: serde_ignored::Path| unknown.push(ignored_path(&path));
            let ignored = serde_ignored::Deserializer::new(de, &mut on_unknown);
            let raw: Result<raw::RawConfig, _> = serde_path_to_error::deserialize(ignored);
            match raw {
                Ok(raw) => break (Some(raw), unknown),
                Err(e) => {
                    let key = typed_path(e.path());
                    if reported.insert(key.clone()) {
                        // serde quotes the bad value; a secret's stays out of the message.
                        let secret = key.ends_with("password") || key.ends_with("client_secret");
                        let message = if secret {
                            "must be a string".to_string()
                        } else {
                            e.inner().message().trim().to_string()
                        };
                        errors.push(ConfigError { key, message });
                    }
                    match remove_path(&mut value, e.path()) {
                        Some(removed) => {
                            reported.insert(removed);
                        }
                        None => break (None, unknown),
                    }
                }
            }
        };
        for key in unknown {
            errors.push(ConfigError {
                key,
                message: "unknown key".into(),
            });
        }
        let Some(raw) = raw else {
            return Err(ConfigErrors(errors));
        };
        let mut found = Vec::new();
        let config = validate::validate(raw, source, &mut found);
        errors.extend(found.into_iter().filter(|e| !reported.contains(&e.key)));
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// A short human summary, printed by `check-config`.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let s = &self.server;
        if let Some(l) = s.listen {
            out.push_str(&format!("listen        http://{l} (HTTP/1.1 + h2c)\n"));
        }
        if let Some(t) = &s.tls {
            let mtls = if t.client_ca.is_some() {
                ", client certificates required"
            } else {
                ""
            };
            out.push_str(&format!("listen        https://{} (TLS{mtls})\n", t.listen));
        }
        if let Some(a) = &self.admin {
            out.push_str(&format!("admin         http://{}\n", a.listen));
        }
        if let Some(c) = &self.cognito {
            out.push_str(&format!("issuer        {}\n", c.issuer));
            let clients = if c.app_clients.is_empty() {
                "any (not checked)".to_string()
            } else {
                c.app_clients.join(", ")
            };
            out.push_str(&format!("app clients   {clients}\n"));
            let mut src = Vec::new();
            if let Some(u) = &c.jwks.url {
                src.push(format!("url {u}"));
            }
            if let Some(f) = &c.jwks.file {
                src.push(format!("file {}", f.display()));
            }
            out.push_str(&format!("jwks          {}\n", src.join(" + ")));
        }
        if let Some(p) = &self.private_api {
            let style = match p.style {
                ApiStyle::ApiGateway => "apigateway",
                ApiStyle::CognitoIdp => "cognito-idp",
            };
            out.push_str(&format!("private api   {} ({style})\n", p.base_url));
        }
        if let Some(e) = &self.exchange {
            let secret = if e.client_secret.is_some() {
                ", SECRET_HASH"
            } else {
                ""
            };
            out.push_str(&format!(
                "exchange      client {} pool {} flow {}{secret}\n",
                e.client_id,
                e.user_pool_id,
                e.auth_flow.as_str()
            ));
        }
        for a in &self.service_accounts {
            out.push_str(&format!("service acct  {} (user {})\n", a.name, a.username));
        }
        if let Some(l) = &self.login_api {
            out.push_str(&format!(
                "login api     {}/login, /refresh, /challenge\n",
                l.path_prefix
            ));
        }
        if let Some(d) = &self.dev_idp {
            out.push_str(&format!(
                "dev idp       http://{} ({} users; development only)\n",
                d.listen,
                d.users.len()
            ));
        }
        out.push_str(&format!("routes        {}\n", self.routes.len()));
        for r in &self.routes {
            let upstream = match &r.upstream {
                UpstreamTarget::Echo => "builtin:echo".to_string(),
                UpstreamTarget::Url {
                    scheme,
                    authority,
                    base_path,
                } => format!("{scheme}://{authority}{base_path}"),
            };
            let auth: Vec<&str> = r.auth.iter().map(|a| a.as_str()).collect();
            let mut extra = String::new();
            if !r.scopes.is_empty() {
                extra.push_str(&format!(" scopes={}", r.scopes.join(",")));
            }
            if !r.groups.is_empty() {
                extra.push_str(&format!(" groups={}", r.groups.join(",")));
            }
            let methods = if r.methods.is_empty() {
                "*".to_string()
            } else {
                r.methods
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let host = r.host.as_deref().unwrap_or("");
            out.push_str(&format!(
                "  {:<12} {:<7} {}{} -> {} auth={}{}\n",
                r.name,
                methods,
                host,
                r.path_prefix,
                upstream,
                auth.join(","),
                extra
            ));
        }
        out
    }
}

fn syntax_error(source: &Source, text: &str, e: &toml::de::Error) -> String {
    // toml's message may span lines ("invalid table header\nexpected `.`, `]`"): one line here.
    let msg = e
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    match e.span() {
        Some(span) => {
            let mut start = span.start.min(text.len());
            while !text.is_char_boundary(start) {
                start -= 1;
            }
            let before = &text[..start];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!(
                "{}: invalid TOML at line {line}, column {column}: {msg}",
                source.name
            )
        }
        None => format!("{}: invalid TOML: {msg}", source.name),
    }
}

/// Removes the value at `path` (its nearest enclosing key: a bad array element takes its whole
/// array) so that deserialization can go on past it. Returns the removed key, `None` when there
/// is nothing to remove.
fn remove_path(table: &mut toml::Table, path: &serde_path_to_error::Path) -> Option<String> {
    use serde_path_to_error::Segment;
    fn remove_at(value: &mut toml::Value, segments: &[&Segment]) -> bool {
        match segments {
            [Segment::Map { key }] => value
                .as_table_mut()
                .is_some_and(|t| t.remove(key.as_str()).is_some()),
            [Segment::Map { key }, rest @ ..] => value
                .get_mut(key.as_str())
                .is_some_and(|v| remove_at(v, rest)),
            [Segment::Seq { index }, rest @ ..] => {
                value.get_mut(*index).is_some_and(|v| remove_at(v, rest))
            }
            _ => false,
        }
    }
    let segments: Vec<&Segment> = path.iter().collect();
    let last_key = segments
        .iter()
        .rposition(|s| matches!(s, Segment::Map { .. }))?;
    let segments = &segments[..=last_key];
    let mut root = toml::Value::Table(std::mem::take(table));
    let removed = remove_at(&mut root, segments);
    if let toml::Value::Table(t) = root {
        *table = t;
    }
    removed.then(|| segments_key(segments.iter().copied()))
}

fn ignored_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", ignored_path(parent)),
        P::Map { parent, key } => join_key(&ignored_path(parent), key),
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_path(parent)
        }
    }
}

fn typed_path(path: &serde_path_to_error::Path) -> String {
    segments_key(path.iter())
}

fn segments_key<'a>(segments: impl Iterator<Item = &'a serde_path_to_error::Segment>) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in segments {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => out = join_key(&out, key),
            Segment::Enum { variant } => out = join_key(&out, variant),
            Segment::Unknown => {}
        }
    }
    out
}

pub(crate) fn join_key(parent: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_string()
    } else {
        format!("\"{}\"", key.replace('"', "\\\""))
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        let source = Source {
            name: "test".into(),
            base_dir: PathBuf::from("."),
        };
        match Config::parse_with_env(text, &source, &|_| None) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn values_of_the_wrong_type_do_not_hide_the_other_problems() {
        let mut got = problems(
            r#"
[server]
max_connections = "many"
[[routes]]
name = 5
path_prefix = "/a"
upstream = "htp:/x"
auth = ["none", 3]
"#,
        );
        got.sort();
        assert_eq!(
            got,
            vec![
                r#"routes[0].auth[1]: invalid type: integer `3`, expected a string"#,
                r#"routes[0].name: invalid type: integer `5`, expected a string"#,
                r#"routes[0].upstream: not a URL: "htp:/x""#,
                r#"server.max_connections: invalid type: string "many", expected i64"#,
            ]
        );
    }

    #[test]
    fn worker_threads_defaults_to_auto_and_rejects_negatives() {
        let source = Source {
            name: "test".into(),
            base_dir: PathBuf::from("."),
        };
        let c = Config::parse_with_env("", &source, &|_| None).unwrap();
        assert_eq!(c.server.worker_threads, 0);
        let c =
            Config::parse_with_env("[server]\nworker_threads = 3\n", &source, &|_| None).unwrap();
        assert_eq!(c.server.worker_threads, 3);
        assert_eq!(
            problems("[server]\nworker_threads = -1\n"),
            vec!["server.worker_threads: must be at least 0, got -1".to_string()]
        );
    }

    #[test]
    fn a_secret_of_the_wrong_type_is_not_quoted() {
        let got = problems(
            "[exchange]\nclient_id = \"c\"\nclient_secret = 987654321\n\
             [service_accounts.batch]\nusername = \"u\"\npassword = 123456789\n",
        );
        assert!(
            got.contains(&"exchange.client_secret: must be a string".to_string())
                && got.contains(&"service_accounts.batch.password: must be a string".to_string()),
            "{got:?}"
        );
        assert!(
            !got.iter()
                .any(|p| p.contains("987654321") || p.contains("123456789")),
            "{got:?}"
        );
    }

    #[test]
    fn an_unset_variable_is_reported_once_for_its_key() {
        let got = problems("[server]\nlisten = \"${CG_UNIT_UNSET}\"\n");
        assert_eq!(
            got,
            vec!["server.listen: environment variable CG_UNIT_UNSET is not set"]
        );
    }

    #[test]
    fn a_syntax_error_is_one_line_with_its_position() {
        let got = problems("[server]\nlisten = \n");
        assert_eq!(got.len(), 1);
        assert!(
            got[0].starts_with("test: invalid TOML at line 2, column ") && !got[0].contains('\n'),
            "{got:?}"
        );
        // Non-ASCII text before the error does not throw the column off (or panic).
        let got = problems("# ü ü\n[server]\nlisten = \"é\" x\n");
        assert_eq!(got.len(), 1);
        assert!(
            got[0].starts_with("test: invalid TOML at line 3, column 14: "),
            "{got:?}"
        );
    }
}
