//! The private API client: Cognito actions through an API Gateway private API (one resource per
//! action) or a Cognito-compatible endpoint (`X-Amz-Target`). Responses are classified by their
//! content, not their status: API Gateway's default integration response turns Cognito errors
//! into HTTP 200 with `__type` in the body.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::breaker::Breaker;
use super::error::{DependencyError, ExchangeError};
pub use super::response::{classify, AuthResult, Challenge, TokenSet};
use super::secret_hash::secret_hash;
use crate::config::{ApiStyle, ExchangeConfig, PrivateApiConfig, RefreshFlow};

/// The Cognito actions the gateway uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    AdminInitiateAuth,
    AdminRespondToAuthChallenge,
    InitiateAuth,
    RespondToAuthChallenge,
    GetTokensFromRefreshToken,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::AdminInitiateAuth => "AdminInitiateAuth",
            Action::AdminRespondToAuthChallenge => "AdminRespondToAuthChallenge",
            Action::InitiateAuth => "InitiateAuth",
            Action::RespondToAuthChallenge => "RespondToAuthChallenge",
            Action::GetTokensFromRefreshToken => "GetTokensFromRefreshToken",
        }
    }
}

/// Every value of `cognito_gate_token_exchange_total{kind}`.
pub const KINDS: [&str; 3] = ["login", "refresh", "challenge"];

/// Upper bound on a private API response body.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

pub struct PrivateApi {
    breaker: std::sync::Mutex<Breaker>,
    client: reqwest::Client,
    api: PrivateApiConfig,
    exchange: ExchangeConfig,
    metrics: Option<std::sync::Arc<crate::ops::metrics::Metrics>>,
}

impl PrivateApi {
    pub fn new(api: PrivateApiConfig, exchange: ExchangeConfig) -> Result<Self, String> {
        let mut headers = http::HeaderMap::new();
        for (k, v) in &api.headers {
            headers.insert(k.clone(), v.clone());
        }
        let mut builder = reqwest::Client::builder()
            .timeout(api.timeout)
            .connect_timeout(api.timeout)
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .user_agent(concat!("cognito-gate/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &api.ca_file {
            for cert in crate::tls::load_reqwest_roots(ca)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the private API client: {e}"))?;
        Ok(PrivateApi {
            breaker: Default::default(),
            client,
            api,
            exchange,
            metrics: None,
        })
    }

    /// Records every call in `cognito_gate_token_exchange_*`.
    pub fn with_metrics(mut self, metrics: std::sync::Arc<crate::ops::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn metrics(&self) -> Option<&std::sync::Arc<crate::ops::metrics::Metrics>> {
        self.metrics.as_ref()
    }

    pub fn exchange_config(&self) -> &ExchangeConfig {
        &self.exchange
    }

    fn hash(&self, username: &str) -> Option<String> {
        self.exchange
            .client_secret
            .as_ref()
            .map(|s| secret_hash(s.expose(), username, &self.exchange.client_id))
    }

    /// Logs in with a username and password using the configured auth flow.
    pub async fn login(&self, username: &str, password: &str) -> Result<AuthResult, ExchangeError> {
        let mut params = json!({ "USERNAME": username, "PASSWORD": password });
        if let Some(h) = self.hash(username) {
            params["SECRET_HASH"] = Value::String(h);
        }
        let flow = self.exchange.auth_flow;
        let mut body = json!({
            "AuthFlow": flow.as_str(),
            "ClientId": self.exchange.client_id,
            "AuthParameters": params,
        });
        let action = if flow.is_admin() {
            body["UserPoolId"] = Value::String(self.exchange.user_pool_id.clone());
            Action::AdminInitiateAuth
        } else {
            Action::InitiateAuth
        };
        self.call(action, body).await
    }

    /// New tokens for a refresh token. `username` must be the canonical user name
    /// (`cognito:username`), which SECRET_HASH needs; aliases do not work there.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        username: &str,
    ) -> Result<AuthResult, ExchangeError> {
        match self.exchange.refresh_flow {
            RefreshFlow::RefreshTokenAuth => {
                let mut params = json!({ "REFRESH_TOKEN": refresh_token });
                if let Some(h) = self.hash(username) {
                    params["SECRET_HASH"] = Value::String(h);
                }
                let body = json!({
                    "AuthFlow": "REFRESH_TOKEN_AUTH",
                    "ClientId": self.exchange.client_id,
                    "AuthParameters": params,
                });
                self.call(Action::InitiateAuth, body).await
            }
            RefreshFlow::GetTokensFromRefreshToken => {
                let mut body = json!({
                    "ClientId": self.exchange.client_id,
                    "RefreshToken": refresh_token,
                });
                if let Some(s) = &self.exchange.client_secret {
                    body["ClientSecret"] = Value::String(s.expose().to_string());
                }
                self.call(Action::GetTokensFromRefreshToken, body).await
            }
        }
    }

    /// Answers a challenge (NEW_PASSWORD_REQUIRED, MFA codes...). `responses` are the
    /// challenge-specific fields; USERNAME and SECRET_HASH are added here.
    pub async fn respond(
        &self,
        challenge_name: &str,
        session: &str,
        username: &str,
        responses: &Map<String, Value>,
    ) -> Result<AuthResult, ExchangeError> {
        let mut r = responses.clone();
        r.insert("USERNAME".into(), Value::String(username.to_string()));
        if let Some(h) = self.hash(username) {
            r.insert("SECRET_HASH".into(), Value::String(h));
        }
        let mut body = json!({
            "ChallengeName": challenge_name,
            "ClientId": self.exchange.client_id,
            "Session": session,
            "ChallengeResponses": r,
        });
        let action = if self.exchange.auth_flow.is_admin() {
            body["UserPoolId"] = Value::String(self.exchange.user_pool_id.clone());
            Action::AdminRespondToAuthChallenge
        } else {
            Action::RespondToAuthChallenge
        };
        self.call(action, body).await
    }

    fn request(&self, action: Action, body: &Value) -> reqwest::RequestBuilder {
        let payload = serde_json::to_vec(body).expect("JSON value serialises");
        match self.api.style {
            ApiStyle::ApiGateway => {
                let p = &self.api.paths;
                let path = match action {
                    Action::AdminInitiateAuth => &p.admin_initiate_auth,
                    Action::AdminRespondToAuthChallenge => &p.admin_respond_to_auth_challenge,
                    Action::InitiateAuth => &p.initiate_auth,
                    Action::RespondToAuthChallenge => &p.respond_to_auth_challenge,
                    Action::GetTokensFromRefreshToken => &p.get_tokens_from_refresh_token,
                };
                let base = self.api.base_url.as_str().trim_end_matches('/');
                self.client
                    .post(format!("{base}{path}"))
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(payload)
            }
            ApiStyle::CognitoIdp => self
                .client
                .post(self.api.base_url.clone())
                .header(http::header::CONTENT_TYPE, "application/x-amz-json-1.1")
                .header(
                    "x-amz-target",
                    format!("AWSCognitoIdentityProviderService.{}", action.name()),
                )
                .body(payload),
        }
    }

    /// One call: sends, reads a bounded body, classifies.
    pub async fn call(&self, action: Action, body: Value) -> Result<AuthResult, ExchangeError> {
        let started = std::time::Instant::now();
        let allowed = self.breaker.lock().expect("breaker lock").allows(started);
        let result = if allowed {
            let r = self.call_inner(action, &body).await;
            let failed = matches!(r, Err(ExchangeError::Dependency(_)));
            self.breaker
                .lock()
                .expect("breaker lock")
                .record(failed, std::time::Instant::now());
            r
        } else {
            Err(ExchangeError::Dependency(DependencyError::CircuitOpen))
        };
        let elapsed = started.elapsed().as_secs_f64();
        let ms = elapsed * 1000.0;
        if let Some(m) = &self.metrics {
            let kind = match action {
                Action::AdminInitiateAuth | Action::InitiateAuth => {
                    if body.get("AuthFlow").and_then(Value::as_str) == Some("REFRESH_TOKEN_AUTH") {
                        KINDS[1]
                    } else {
                        KINDS[0]
                    }
                }
                Action::GetTokensFromRefreshToken => KINDS[1],
                Action::AdminRespondToAuthChallenge | Action::RespondToAuthChallenge => KINDS[2],
            };
            let outcome = match &result {
                Ok(AuthResult::Tokens(_)) => "success",
                Ok(AuthResult::Challenge(_)) => "challenge",
                Err(e) => e.outcome(),
            };
            m.token_exchange
                .get_or_create(&crate::ops::metrics::ExchangeLabels { kind, outcome })
                .inc();
            m.token_exchange_duration.observe(elapsed);
        }
        match &result {
            Ok(r) => tracing::debug!(
                action = action.name(),
                latency_ms = ms,
                challenge = matches!(r, AuthResult::Challenge(_)),
                "private API call"
            ),
            Err(ExchangeError::Dependency(DependencyError::CircuitOpen)) => {
                tracing::debug!(
                    action = action.name(),
                    "private API call skipped: circuit open"
                )
            }
            Err(ExchangeError::Dependency(d)) => tracing::warn!(action = action.name(),
                latency_ms = ms, error = %d, "private API unavailable"),
            Err(e) => tracing::info!(action = action.name(), latency_ms = ms, error = %e,
                "private API call refused"),
        }
        result
    }

    async fn call_inner(&self, action: Action, body: &Value) -> Result<AuthResult, ExchangeError> {
        let resp = self.request(action, body).send().await.map_err(|e| {
            ExchangeError::Dependency(if e.is_timeout() {
                DependencyError::Timeout
            } else if e.is_connect() {
                DependencyError::Connect
            } else {
                DependencyError::Garbage
            })
        })?;
        let status = resp.status().as_u16();
        let error_type = resp
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = read_bounded(resp).await?;
        classify(status, error_type.as_deref(), &bytes)
    }
}

async fn read_bounded(mut resp: reqwest::Response) -> Result<Bytes, ExchangeError> {
    let mut buf = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(ExchangeError::Dependency(DependencyError::Garbage));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(Bytes::from(buf)),
            Err(e) if e.is_timeout() => {
                return Err(ExchangeError::Dependency(DependencyError::Timeout))
            }
            Err(_) => return Err(ExchangeError::Dependency(DependencyError::Garbage)),
        }
    }
}
