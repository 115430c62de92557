//! The serde mirror of `config.toml`: plain TOML types only. Every value is turned into a typed
//! value by `validate`, which reports all problems at once with the key that holds them.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawConfig {
    pub server: RawServer,
    pub admin: Option<RawAdmin>,
    pub log: RawLog,
    pub cognito: Option<RawCognito>,
    pub upstream: RawUpstream,
    pub routes: Vec<RawRoute>,
    pub private_api: Option<RawPrivateApi>,
    pub exchange: Option<RawExchange>,
    pub service_accounts: BTreeMap<String, RawServiceAccount>,
    pub login_api: Option<RawLoginApi>,
    pub dev_idp: Option<RawDevIdp>,
    pub shared_state: Option<RawSharedState>,
    pub authz: Option<RawAuthz>,
    pub forward_proxy: Option<RawForwardProxy>,
    pub tracing: Option<RawTracing>,
    pub throttle: BTreeMap<String, RawThrottle>,
}

/// One `[throttle.NAME]`: a limit (`rate`/`burst` or `quota`/`period`, and `key`), or, under
/// the name `api_keys`, the API keys (`header`, `file`, `keys`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawThrottle {
    pub rate: Option<f64>,
    pub burst: Option<i64>,
    pub quota: Option<i64>,
    pub period: Option<String>,
    pub key: Option<String>,
    pub header: Option<String>,
    pub file: Option<String>,
    pub keys: Vec<RawApiKey>,
}

/// `[[keys]]` of an API keys file, or of `[throttle.api_keys]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawApiKey {
    pub name: Option<String>,
    pub key: Option<String>,
}

/// An API keys file: `[[keys]] name = "…" key = "…"`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawApiKeysFile {
    pub keys: Vec<RawApiKey>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawTracing {
    pub otlp_endpoint: Option<String>,
    pub protocol: Option<String>,
    pub sample_ratio: Option<f64>,
    pub headers: BTreeMap<String, String>,
    pub service_name: Option<String>,
    pub resource_attributes: BTreeMap<String, String>,
    pub timeout: Option<String>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawForwardProxy {
    pub intercept: Vec<String>,
    pub tunnel: Vec<String>,
    pub ca_cert: Option<String>,
    pub ca_key: Option<String>,
    pub upstream_tls: Option<bool>,
    pub leaf_validity: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawAuthz {
    pub grpc_listen: Option<String>,
    pub http_listen: Option<String>,
    pub allow_from: Option<Vec<String>>,
    pub path_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawSharedState {
    pub url: Option<String>,
    pub cluster: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub ca_file: Option<String>,
    pub key_prefix: Option<String>,
    pub timeout: Option<String>,
    pub encryption_key: Option<String>,
    pub encryption_key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawServer {
    pub listen: Option<String>,
    pub max_connections: Option<i64>,
    pub worker_threads: Option<i64>,
    pub header_read_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub max_body_bytes: Option<i64>,
    pub max_header_bytes: Option<i64>,
    pub shutdown_drain: Option<String>,
    pub shutdown_grace: Option<String>,
    pub trusted_proxies: Vec<String>,
    pub ipv6_prefix: Option<i64>,
    pub health_path: Option<String>,
    pub ready_path: Option<String>,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawTls {
    pub listen: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca: Option<String>,
    pub handshake_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawAdmin {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawLog {
    pub level: Option<String>,
    pub format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawCognito {
    pub region: Option<String>,
    pub user_pool_id: Option<String>,
    pub issuer: Option<String>,
    pub issuer_format: Option<String>,
    pub app_clients: Option<Vec<String>>,
    pub clock_skew: Option<String>,
    pub bad_signature_per_minute: Option<i64>,
    pub jwks: RawJwks,
    pub pools: Vec<RawPool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawPool {
    pub name: Option<String>,
    pub region: Option<String>,
    pub user_pool_id: Option<String>,
    pub issuer: Option<String>,
    pub issuer_format: Option<String>,
    pub app_clients: Option<Vec<String>>,
    pub jwks: RawJwks,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawJwks {
    pub url: Option<String>,
    pub file: Option<String>,
    pub refresh_interval: Option<String>,
    pub refetch_cooldown: Option<String>,
    pub max_stale: Option<String>,
    pub timeout: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawUpstream {
    pub ca_file: Option<String>,
    pub connect_timeout: Option<String>,
    pub pool_idle_timeout: Option<String>,
    pub pool_max_idle_per_host: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawRoute {
    pub name: Option<String>,
    pub path_prefix: Option<String>,
    pub host: Option<String>,
    pub methods: Vec<String>,
    pub upstream: Option<String>,
    pub strip_prefix: bool,
    pub upstream_headers: BTreeMap<String, String>,
    pub timeout: Option<String>,
    pub auth: Option<Vec<String>>,
    pub token_header: Option<String>,
    pub scopes: Vec<String>,
    pub token_use: Option<String>,
    pub groups: Vec<String>,
    pub allow_from: Vec<String>,
    pub forward_token: Option<String>,
    pub forward_token_scheme: Option<String>,
    pub claim_headers: BTreeMap<String, String>,
    pub pass_client_authorization: bool,
    pub service_account: Option<String>,
    pub cors: Option<RawCors>,
    pub pools: Vec<String>,
    pub websocket: bool,
    pub websocket_idle_timeout: Option<String>,
    pub websocket_max_lifetime: Option<String>,
    pub case_insensitive: bool,
    pub throttle: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawCors {
    pub allow_origins: Vec<String>,
    pub allow_methods: Vec<String>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age: Option<String>,
    pub allow_credentials: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawPrivateApi {
    pub base_url: Option<String>,
    pub style: Option<String>,
    pub sign: Option<String>,
    pub region: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub ca_file: Option<String>,
    pub timeout: Option<String>,
    pub paths: RawApiPaths,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawApiPaths {
    pub admin_initiate_auth: Option<String>,
    pub admin_respond_to_auth_challenge: Option<String>,
    pub initiate_auth: Option<String>,
    pub respond_to_auth_challenge: Option<String>,
    pub get_tokens_from_refresh_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawExchange {
    pub pool: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
    pub user_pool_id: Option<String>,
    pub auth_flow: Option<String>,
    pub refresh_flow: Option<String>,
    pub refresh_before: Option<String>,
    pub cache_capacity: Option<i64>,
    pub failure_ttl: Option<String>,
    pub max_failures_per_minute: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawServiceAccount {
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawLoginApi {
    pub path_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawDevIdp {
    pub listen: Option<String>,
    pub token_lifetime: Option<String>,
    pub signing_keys: Option<String>,
    pub users: Vec<RawDevUser>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawDevUser {
    pub username: Option<String>,
    pub password: Option<String>,
    pub groups: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    pub force_new_password: bool,
}
