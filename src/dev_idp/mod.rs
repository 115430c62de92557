//! The embedded development IdP: a local stand-in for the private API Gateway that proxies
//! Cognito actions. It serves the apigateway-style resources under `/dev` (answering Cognito
//! errors as HTTP 200 with `__type`, like the real proxy API) and `GET /dev/jwks`, issues
//! Cognito-shaped RS256 tokens, and keeps its users, sessions and refresh tokens in memory.
//!
//! For development and demos only: it is never started unless `[dev_idp]` is configured, and it
//! says so loudly when it starts.

mod error;
mod flows;
mod tokens;
mod users;

#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use error::IdpError;
pub use tokens::{stable_sub, SigningKeys, ACCESS_KID, ID_KID, SIGNIN_SCOPE};

use crate::config::{DevIdpConfig, ExchangeConfig, Secret};
use crate::exchange::Clock;
use tokens::Minter;
use users::Directory;

/// The prefix every resource is served under, like an API Gateway stage.
pub(crate) const STAGE_PREFIX: &str = "/dev";
/// Largest request body read; Cognito requests are small.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long in-flight requests get to finish once the gateway stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the dev IdP could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevIdpStartError {
    #[error("dev_idp.signing_keys: {0}")]
    Keys(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The dev IdP's state: its app client, pool, keys, users, sessions and refresh tokens.
pub struct DevIdp {
    client_id: String,
    client_secret: Option<Secret>,
    user_pool_id: String,
    minter: Minter,
    directory: Directory,
    jwks: Bytes,
    clock: Clock,
}

impl DevIdp {
    /// `exchange` names the app client (`client_id`, `client_secret`) and the pool
    /// (`user_pool_id`); `issuer` is the `iss` of every token.
    pub fn new(
        cfg: &DevIdpConfig,
        exchange: &ExchangeConfig,
        issuer: String,
        keys: SigningKeys,
        clock: Clock,
    ) -> DevIdp {
        let jwks = Bytes::from(keys.jwks().to_string());
        DevIdp {
            client_id: exchange.client_id.clone(),
            client_secret: exchange.client_secret.clone(),
            user_pool_id: exchange.user_pool_id.clone(),
            minter: Minter {
                issuer,
                client_id: exchange.client_id.clone(),
                lifetime: cfg.token_lifetime,
                keys,
            },
            directory: Directory::new(&cfg.users),
            jwks,
            clock,
        }
    }

    /// Loads `dev_idp.signing_keys`, or generates two fresh keys (off the async runtime).
    pub(crate) async fn load_keys(cfg: &DevIdpConfig) -> Result<SigningKeys, DevIdpStartError> {
        match &cfg.signing_keys {
            Some(path) => {
                let pem = std::fs::read_to_string(path).map_err(|e| {
                    DevIdpStartError::Keys(format!("cannot read {}: {e}", path.display()))
                })?;
                SigningKeys::from_pem(&pem)
                    .map_err(|e| DevIdpStartError::Keys(format!("{}: {e}", path.display())))
            }
            None => tokio::task::spawn_blocking(SigningKeys::generate)
                .await
                .map_err(|e| DevIdpStartError::Keys(format!("key generation failed: {e}")))?
                .map_err(DevIdpStartError::Keys),
        }
    }

    /// The JWKS document (`GET /dev/jwks`).
    pub fn jwks(&self) -> &Bytes {
        &self.jwks
    }

    /// Answers one request. Cognito errors are HTTP 200 with `__type`; an unknown resource or
    /// method is API Gateway's 404 `Missing Authentication Token`. Never a 5xx.
    pub(crate) fn handle(&self, method: &Method, path: &str, body: &[u8]) -> Response<Bytes> {
        let resource = path.strip_prefix(STAGE_PREFIX).unwrap_or("");
        if *method == Method::GET && resource == "/jwks" {
            return json_bytes(StatusCode::OK, self.jwks.clone());
        }
        if *method != Method::POST {
            return missing_token();
        }
        let (action, result) = match resource {
            "/admin-initiate-auth" => ("AdminInitiateAuth", self.admin_initiate_auth(body)),
            "/initiate-auth" => ("InitiateAuth", self.initiate_auth(body)),
            "/admin-respond-to-auth-challenge" => (
                "AdminRespondToAuthChallenge",
                self.respond_to_auth_challenge(body, true),
            ),
            "/respond-to-auth-challenge" => (
                "RespondToAuthChallenge",
                self.respond_to_auth_challenge(body, false),
            ),
            "/get-tokens-from-refresh-token" => (
                "GetTokensFromRefreshToken",
                self.get_tokens_from_refresh_token(body),
            ),
            _ => return missing_token(),
        };
        let body = match result {
            Ok(v) => {
                let outcome = if v.get("ChallengeName").is_some() {
                    "challenge"
                } else {
                    "tokens"
                };
                tracing::debug!(action, outcome, "dev IdP");
                v
            }
            Err(e) => {
                tracing::debug!(action, outcome = e.type_name(), "dev IdP");
                e.to_json()
            }
        };
        json_bytes(StatusCode::OK, Bytes::from(body.to_string()))
    }
}

/// A started dev IdP.
pub struct RunningDevIdp {
    pub addr: SocketAddr,
    pub task: JoinHandle<()>,
}

/// Loads or generates the keys, binds `cfg.listen` and serves until `stop` turns true.
pub async fn start(
    cfg: &DevIdpConfig,
    exchange: &ExchangeConfig,
    issuer: String,
    stop: watch::Receiver<bool>,
) -> Result<RunningDevIdp, DevIdpStartError> {
    let keys = DevIdp::load_keys(cfg).await?;
    let idp = Arc::new(DevIdp::new(
        cfg,
        exchange,
        issuer,
        keys,
        crate::exchange::system_clock(),
    ));
    let listener =
        crate::server::bind(cfg.listen)
            .await
            .map_err(|source| DevIdpStartError::Bind {
                addr: cfg.listen,
                source,
            })?;
    let addr = listener.local_addr().unwrap_or(cfg.listen);
    tracing::warn!(
        addr = %addr,
        users = cfg.users.len(),
        "the embedded dev IdP is running: for development only, never use it in production"
    );
    let task = tokio::spawn(serve(listener, idp, stop));
    Ok(RunningDevIdp { addr, task })
}

/// Accepts until `stop`, then lets in-flight requests finish for up to `SHUTDOWN_GRACE`.
pub async fn serve(listener: TcpListener, idp: Arc<DevIdp>, stop: watch::Receiver<bool>) {
    // No header-read timeout: hyper's also fires on idle keep-alive connections, which would
    // race the gateway's pooled private API client. The listener is local and for development.
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    let conn_stop = stop.clone();
    crate::server::accept_loop(listener, None, stop, SHUTDOWN_GRACE, move |stream, _| {
        let idp = idp.clone();
        let builder = builder.clone();
        let mut stop = conn_stop.clone();
        async move {
            let svc = service_fn(move |req: hyper::Request<Incoming>| {
                let idp = idp.clone();
                async move { Ok::<_, Infallible>(respond(&idp, req).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = crate::server::stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "dev IdP: connection ended with an error");
            }
        }
    })
    .await;
}

/// Reads a bounded body and answers; an oversized body gets API Gateway's 413.
async fn respond<B>(idp: &DevIdp, req: hyper::Request<B>) -> Response<Full<Bytes>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<crate::body::BoxError>,
{
    let (parts, body) = req.into_parts();
    let resp = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => idp.handle(&parts.method, parts.uri.path(), &collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => json_bytes(
            StatusCode::PAYLOAD_TOO_LARGE,
            message("Request Entity Too Large"),
        ),
        Err(_) => json_bytes(StatusCode::BAD_REQUEST, message("Bad Request")),
    };
    resp.map(Full::new)
}

fn message(text: &str) -> Bytes {
    Bytes::from(json!({ "message": text }).to_string())
}

/// API Gateway's answer for a resource or method it does not have.
fn missing_token() -> Response<Bytes> {
    json_bytes(
        StatusCode::NOT_FOUND,
        message("Missing Authentication Token"),
    )
}

fn json_bytes(status: StatusCode, body: Bytes) -> Response<Bytes> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}
