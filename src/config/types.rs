//! The typed configuration: what the rest of the gateway reads, parsed once.

use super::modes::{AuthzConfig, ForwardProxyConfig};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use ipnet::IpNet;

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: Option<AdminConfig>,
    pub log: LogConfig,
    /// `[tracing]`: OpenTelemetry export, when configured.
    pub tracing: Option<crate::config::TracingConfig>,
    pub cognito: Option<CognitoConfig>,
    pub upstream: UpstreamConfig,
    pub routes: Vec<RouteConfig>,
    pub private_api: Option<PrivateApiConfig>,
    pub exchange: Option<ExchangeConfig>,
    pub service_accounts: Vec<ServiceAccountConfig>,
    pub login_api: Option<LoginApiConfig>,
    pub dev_idp: Option<DevIdpConfig>,
    pub shared_state: Option<SharedStateConfig>,
    pub authz: Option<AuthzConfig>,
    pub forward_proxy: Option<ForwardProxyConfig>,
    /// `[throttle.*]`: named limits (empty when none).
    pub throttle: crate::config::ThrottleConfig,
}

/// `[shared_state]`: exchange state shared by a fleet of replicas in Valkey or Redis.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedStateConfig {
    /// `redis://` or `rediss://` (TLS); in cluster mode, one node to discover the rest from.
    pub url: String,
    pub cluster: bool,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub ca_file: Option<PathBuf>,
    pub key_prefix: String,
    /// Per operation; beyond it the replica acts on its own.
    pub timeout: Duration,
    /// 32 bytes: seals values (AES-256-GCM) and keys entries (HMAC-SHA256).
    pub encryption_key: Secret,
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

/// How calls to the private API are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signing {
    /// Unsigned: an API Gateway private API (its resource policy guards it), an emulator, or
    /// Cognito's unauthenticated actions.
    None,
    /// SigV4 with credentials from the AWS credential chain, for Cognito's Admin* actions
    /// called directly (its PrivateLink endpoint). `region` is the signing region.
    SigV4 { region: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct PrivateApiConfig {
    pub base_url: reqwest::Url,
    pub style: ApiStyle,
    pub sign: Signing,
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
    pub(crate) fn is_admin(self) -> bool {
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
    /// The user pool the exchange logs into (its tokens are verified with that pool's keys).
    pub pool: String,
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
    /// IPv6 clients are one client per prefix of this length in every per-address limit (a
    /// single host is usually given a whole /64, and can pick any address in it).
    pub ipv6_prefix: u8,
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

/// `[cognito]`: one or several user pools (the single form is one pool named `default`).
#[derive(Debug, Clone, PartialEq)]
pub struct CognitoConfig {
    pub clock_skew: Duration,
    /// Failed signatures a client address may cause per minute before it is answered 429
    /// without RSA work (the flood guard); 0 = off.
    pub bad_signature_per_minute: u32,
    /// In configuration order; names are unique and no issuer is accepted by two pools.
    pub pools: Vec<PoolConfig>,
}

/// The name of the pool of the single-pool `[cognito]` form.
pub(crate) const DEFAULT_POOL: &str = "default";

impl CognitoConfig {
    /// The first pool (the only one in the single form).
    pub fn first(&self) -> &PoolConfig {
        &self.pools[0]
    }

    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// The pool that accepts `iss`.
    pub(crate) fn pool_for_issuer(&self, iss: &str) -> Option<&PoolConfig> {
        self.pools
            .iter()
            .find(|p| p.issuers.iter().any(|i| i == iss))
    }
}

/// One user pool: the issuers it accepts, its app clients and its keys.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    /// The issuer tokens are issued under (the first accepted one): the dev IdP signs with it.
    pub issuer: String,
    /// Every accepted `iss`, compared exactly: an explicit issuer, or the pool's original and/or
    /// updated (`issuer-cognito-idp`) issuer URL (`issuer_format`).
    pub issuers: Vec<String>,
    /// The pool id, when the pool is given by region and id.
    pub user_pool_id: Option<String>,
    /// Accepted `aud` (ID tokens) / `client_id` (access tokens); empty = not checked.
    pub app_clients: Vec<String>,
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
    /// Every method, in the order the config's error messages list them.
    pub(crate) const ALL: [AuthMethod; 4] = [
        AuthMethod::Jwt,
        AuthMethod::Basic,
        AuthMethod::Service,
        AuthMethod::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Jwt => "jwt",
            AuthMethod::Basic => "basic",
            AuthMethod::Service => "service",
            AuthMethod::None => "none",
        }
    }

    /// The method a config names.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
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
    /// `upstream = "none"`: a route only external authorizers decide on (`[authz]`); proxy
    /// mode answers 404 on it.
    None,
    /// `upstream = "origin"`: the host the client named through the forward proxy (an
    /// intercepted `CONNECT` target or absolute-form URL), over TLS verified with `[upstream]`
    /// roots.
    Origin,
}

#[derive(Debug, Clone, PartialEq)]
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
    /// `[routes.cors]`: preflights answered by the gateway, CORS headers on every response.
    pub cors: Option<CorsConfig>,
    /// The user pools whose tokens the route's jwt method accepts; empty = every pool.
    pub pools: Vec<String>,
    /// `Upgrade: websocket` is authorized at the handshake, then tunnelled after the upstream's
    /// 101; without it `Upgrade` is a hop-by-hop header and removed.
    pub websocket: bool,
    pub websocket_idle_timeout: Duration,
    /// The longest a tunnel may stay open; it also ends when the token that opened it expires.
    pub websocket_max_lifetime: Duration,
    /// Route paths that match `path_prefix` ignoring ASCII case here (for case-insensitive
    /// upstreams); without it such a path is refused rather than served by a shorter prefix.
    pub case_insensitive: bool,
    /// The names of the `[throttle.NAME]` limits that apply, in order (the first exhausted
    /// one answers).
    pub throttle: Vec<String>,
}

/// A route's CORS policy, its header values made once.
#[derive(Debug, Clone, PartialEq)]
pub struct CorsConfig {
    /// `None`: any origin (`*`); else the exact origins allowed.
    pub allow_origins: Option<Vec<HeaderValue>>,
    pub allow_methods: HeaderValue,
    pub allow_headers: Option<HeaderValue>,
    pub expose_headers: Option<HeaderValue>,
    pub max_age: HeaderValue,
    pub allow_credentials: bool,
}
