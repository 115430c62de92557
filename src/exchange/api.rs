//! The private API client: Cognito actions through an API Gateway private API (one resource per
//! action) or a Cognito-compatible endpoint (`X-Amz-Target`). Responses are classified by their
//! content, not their status: API Gateway's default integration response turns Cognito errors
//! into HTTP 200 with `__type` in the body.

use bytes::Bytes;
use serde_json::{json, Map, Value};
use tracing::Instrument;

use super::breaker::Breaker;
use super::error::{DependencyError, ExchangeError};
pub use super::response::{classify, AuthResult, Challenge, TokenSet};
use super::secret_hash::secret_hash;
use super::sigv4::Signer;
use crate::config::{
    ApiPaths, ApiStyle, AuthFlow, ExchangeConfig, PrivateApiConfig, RefreshFlow, Signing,
};

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
    /// The `[private_api.paths]` key and path of the action (style `apigateway`).
    pub fn path(self, paths: &ApiPaths) -> (&'static str, &str) {
        match self {
            Action::AdminInitiateAuth => ("admin_initiate_auth", &paths.admin_initiate_auth),
            Action::AdminRespondToAuthChallenge => (
                "admin_respond_to_auth_challenge",
                &paths.admin_respond_to_auth_challenge,
            ),
            Action::InitiateAuth => ("initiate_auth", &paths.initiate_auth),
            Action::RespondToAuthChallenge => (
                "respond_to_auth_challenge",
                &paths.respond_to_auth_challenge,
            ),
            Action::GetTokensFromRefreshToken => (
                "get_tokens_from_refresh_token",
                &paths.get_tokens_from_refresh_token,
            ),
        }
    }

    /// The actions an exchange calls, in a fixed order: the auth flow picks login and challenge
    /// (Admin* or not), the refresh flow the refresh, as `login`, `respond` and `refresh` do.
    pub(crate) fn used_by(auth: AuthFlow, refresh: RefreshFlow) -> Vec<Action> {
        let mut used = if auth.is_admin() {
            vec![
                Action::AdminInitiateAuth,
                Action::AdminRespondToAuthChallenge,
            ]
        } else {
            vec![Action::InitiateAuth, Action::RespondToAuthChallenge]
        };
        used.push(match refresh {
            RefreshFlow::RefreshTokenAuth => Action::InitiateAuth,
            RefreshFlow::GetTokensFromRefreshToken => Action::GetTokensFromRefreshToken,
        });
        used.sort_by_key(|a| *a as u8);
        used.dedup();
        used
    }

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

/// A private API answer before classification.
#[derive(Debug, Clone)]
pub struct RawAnswer {
    pub status: u16,
    /// The `x-amzn-ErrorType` header.
    pub error_type: Option<String>,
    pub body: Bytes,
}

/// Upper bound on a private API response body.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

pub struct PrivateApi {
    breaker: std::sync::Mutex<Breaker>,
    client: reqwest::Client,
    api: PrivateApiConfig,
    exchange: ExchangeConfig,
    metrics: Option<super::metrics::ExchangeMetrics>,
    /// `sign = "sigv4"`: signs every call.
    signer: Option<Signer>,
}

impl PrivateApi {
    pub fn new(
        api: PrivateApiConfig,
        exchange: ExchangeConfig,
    ) -> Result<Self, crate::tls::ClientError> {
        let mut headers = http::HeaderMap::new();
        for (k, v) in &api.headers {
            headers.insert(k.clone(), v.clone());
        }
        let builder = reqwest::Client::builder()
            .timeout(api.timeout)
            .connect_timeout(api.timeout)
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(std::time::Duration::from_secs(60))
            .user_agent(concat!("cognito-gate/", env!("CARGO_PKG_VERSION")));
        let client = crate::tls::reqwest_client(builder, api.ca_file.as_deref())?;
        let signer = match &api.sign {
            Signing::None => None,
            Signing::SigV4 { region } => Some(Signer::from_environment(region, api.timeout)),
        };
        Ok(PrivateApi {
            breaker: Default::default(),
            client,
            api,
            exchange,
            metrics: None,
            signer,
        })
    }

    /// Records every call in `cognito_gate_token_exchange_*`.
    pub(crate) fn with_metrics(mut self, metrics: super::metrics::ExchangeMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn metrics(&self) -> Option<&super::metrics::ExchangeMetrics> {
        self.metrics.as_ref()
    }

    pub fn config(&self) -> &PrivateApiConfig {
        &self.api
    }

    /// The SigV4 signer, with `sign = "sigv4"`.
    pub fn signer(&self) -> Option<&Signer> {
        self.signer.as_ref()
    }

    fn hash(&self, username: &str) -> Option<String> {
        self.exchange
            .client_secret
            .as_ref()
            .map(|s| secret_hash(s.expose(), username, &self.exchange.client_id))
    }

    /// Logs in with a username and password using the configured auth flow.
    pub async fn login(&self, username: &str, password: &str) -> Result<AuthResult, ExchangeError> {
        let (action, body) = self.login_request(username, password);
        self.call(action, body).await
    }

    /// The action and body of a login with the configured auth flow.
    pub(crate) fn login_request(&self, username: &str, password: &str) -> (Action, Value) {
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
        (action, body)
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

    /// The URL and the headers (besides the client's defaults and the signature) of a call.
    pub fn target(&self, action: Action) -> (String, Vec<(&'static str, String)>) {
        match self.api.style {
            ApiStyle::ApiGateway => {
                let (_, path) = action.path(&self.api.paths);
                let base = self.api.base_url.as_str().trim_end_matches('/');
                (
                    format!("{base}{path}"),
                    vec![("content-type", "application/json".to_string())],
                )
            }
            ApiStyle::CognitoIdp => (
                self.api.base_url.to_string(),
                vec![
                    ("content-type", "application/x-amz-json-1.1".to_string()),
                    (
                        "x-amz-target",
                        format!("AWSCognitoIdentityProviderService.{}", action.name()),
                    ),
                ],
            ),
        }
    }

    /// The request of a call, signed when `sign = "sigv4"`.
    async fn request(
        &self,
        action: Action,
        body: &Value,
    ) -> Result<reqwest::RequestBuilder, ExchangeError> {
        let payload = serde_json::to_vec(body).expect("JSON value serialises");
        let (url, headers) = self.target(action);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut req = self.client.post(&url);
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        if let Some(signer) = &self.signer {
            let (signed, _provider) = signer.sign(&url, &headers, &payload).await.map_err(|e| {
                tracing::error!(action = action.name(), error = %e,
                            "cannot sign the call to Cognito (sign = \"sigv4\")");
                ExchangeError::Dependency(DependencyError::Credentials)
            })?;
            for (k, v) in signed {
                req = req.header(k, v);
            }
        }
        Ok(req.body(payload))
    }

    /// One call: sends, reads a bounded body, classifies.
    pub async fn call(&self, action: Action, body: Value) -> Result<AuthResult, ExchangeError> {
        let span = tracing::debug_span!(target: "cognito_gate::exchange", "private_api",
            otel.kind = "client", action = action.name(), outcome = tracing::field::Empty);
        let result = self
            .call_counted(action, body)
            .instrument(span.clone())
            .await;
        span.record(
            "outcome",
            match &result {
                Ok(_) => "ok",
                Err(e) => e.outcome(),
            },
        );
        result
    }

    async fn call_counted(&self, action: Action, body: Value) -> Result<AuthResult, ExchangeError> {
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
        // Milliseconds, rounded to the microsecond.
        let ms = (elapsed * 1_000_000.0).round() / 1000.0;
        if let Some(m) = &self.metrics {
            let kind = match action {
                Action::AdminInitiateAuth | Action::InitiateAuth => {
                    if body.get("AuthFlow").and_then(Value::as_str) == Some("REFRESH_TOKEN_AUTH") {
                        super::metrics::KINDS[1]
                    } else {
                        super::metrics::KINDS[0]
                    }
                }
                Action::GetTokensFromRefreshToken => super::metrics::KINDS[1],
                Action::AdminRespondToAuthChallenge | Action::RespondToAuthChallenge => {
                    super::metrics::KINDS[2]
                }
            };
            let outcome = match &result {
                Ok(AuthResult::Tokens(_)) => "success",
                Ok(AuthResult::Challenge(_)) => "challenge",
                Err(e) => e.outcome(),
            };
            m.calls
                .get_or_create(&super::metrics::ExchangeLabels { kind, outcome })
                .inc();
            m.duration.observe(elapsed);
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
        let RawAnswer {
            status,
            error_type,
            body: bytes,
        } = self.send(action, body).await?;
        let result = classify(status, error_type.as_deref(), &bytes);
        if let Err(ExchangeError::Dependency(DependencyError::Denied)) = &result {
            tracing::error!(
                action = action.name(),
                status,
                aws_error = super::response::error_code(error_type.as_deref(), &bytes).as_deref(),
                signed_by = self.signer.as_ref().map(|_| "sigv4"),
                "AWS refused the call: check the credentials (sign = \"sigv4\") or the private API's execution role and its IAM policy"
            );
        }
        result
    }

    /// One call, unclassified: what came back, or why nothing did (not signed, not sent, timed
    /// out, too large). For diagnostics (`aws check`); requests go through `call`.
    pub async fn send(&self, action: Action, body: &Value) -> Result<RawAnswer, ExchangeError> {
        let resp = self
            .request(action, body)
            .await?
            .send()
            .await
            .map_err(|e| {
                let cause = crate::cause::Cause::of_reqwest(&e);
                ExchangeError::Dependency(match cause {
                    crate::cause::Cause::Timeout => DependencyError::Timeout,
                    crate::cause::Cause::Other if !e.is_connect() => DependencyError::Garbage,
                    cause => DependencyError::Connect(cause),
                })
            })?;
        let status = resp.status().as_u16();
        let error_type = resp
            .headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_bounded(resp).await?;
        Ok(RawAnswer {
            status,
            error_type,
            body,
        })
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
