//! Upstream clients, and sending a prepared request with the route's timeout: plain `http://`
//! upstreams over connections the request drives itself (`direct`), `https://` ones through
//! hyper-util's pooled client (TLS, and HTTP/2 when the upstream offers it).

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, HOST};
use http::uri::Scheme;
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{is_client_body_error, is_too_large, Body};
use crate::config::{UpstreamConfig, UpstreamTarget};
use crate::error::{GatewayError, UpstreamError};
use crate::proxy::direct::{DirectError, DirectPool};

#[derive(Clone)]
pub struct UpstreamClient {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    direct: Arc<DirectPool>,
    /// TLS for WebSocket handshakes: HTTP/1.1 only (an upgrade needs it).
    pub websocket_tls: Arc<rustls::ClientConfig>,
}

impl UpstreamClient {
    pub fn new(cfg: &UpstreamConfig) -> Result<Self, crate::tls::TlsError> {
        let tls = crate::tls::client_config(cfg.ca_file.as_deref())?;
        let mut websocket_tls = tls.clone();
        websocket_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(cfg.connect_timeout));
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
            .build(connector);
        let direct = DirectPool::new(
            cfg.connect_timeout,
            cfg.pool_idle_timeout,
            cfg.pool_max_idle_per_host,
        );
        Ok(UpstreamClient {
            client,
            direct,
            websocket_tls: Arc::new(websocket_tls),
        })
    }

    /// Sends the request (absolute URI) to `target`; the timeout covers everything up to the
    /// response headers.
    pub async fn send(
        &self,
        target: &UpstreamTarget,
        mut req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<Body>, GatewayError> {
        if let UpstreamTarget::Url {
            scheme, authority, ..
        } = target
        {
            if *scheme == Scheme::HTTP {
                // Origin-form request line, and the Host the pooled client would have set.
                if let Some(pq) = req.uri().path_and_query().cloned() {
                    *req.uri_mut() = Uri::from(pq);
                }
                if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                    req.headers_mut().entry(HOST).or_insert(host);
                }
                return match tokio::time::timeout(timeout, self.direct.send(authority, req)).await {
                    Err(_) => Err(GatewayError::Upstream(UpstreamError::Timeout)),
                    Ok(Ok(resp)) => Ok(resp),
                    Ok(Err(DirectError::Connect(why))) => {
                        tracing::warn!(error = %why, kind = "connect", "upstream request failed");
                        Err(GatewayError::Upstream(UpstreamError::Connect))
                    }
                    Ok(Err(DirectError::Http(e))) => {
                        if is_too_large(&e) {
                            return Err(GatewayError::BodyTooLarge);
                        }
                        if is_client_body_error(&e) {
                            return Err(GatewayError::BadFraming("malformed request body"));
                        }
                        tracing::warn!(error = %error_chain(&e), kind = "protocol", "upstream request failed");
                        Err(GatewayError::Upstream(UpstreamError::Protocol))
                    }
                };
            }
        }
        match tokio::time::timeout(timeout, self.client.request(req)).await {
            Err(_) => Err(GatewayError::Upstream(UpstreamError::Timeout)),
            Ok(Ok(resp)) => {
                let (parts, body) = resp.into_parts();
                Ok(Response::from_parts(
                    parts,
                    body.map_err(Into::into).boxed(),
                ))
            }
            Ok(Err(e)) => {
                if is_too_large(&e) {
                    return Err(GatewayError::BodyTooLarge);
                }
                if is_client_body_error(&e) {
                    return Err(GatewayError::BadFraming("malformed request body"));
                }
                let kind = if e.is_connect() {
                    UpstreamError::Connect
                } else {
                    UpstreamError::Protocol
                };
                tracing::warn!(error = %error_chain(&e), kind = kind.kind(), "upstream request failed");
                Err(GatewayError::Upstream(kind))
            }
        }
    }
}

/// An error and its sources on one line, for logs.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// The upstream URI for a request path (already stripped as the route says) and query.
pub(crate) fn upstream_uri(
    target: &UpstreamTarget,
    path: &str,
    query: Option<&str>,
) -> Option<Uri> {
    let UpstreamTarget::Url {
        scheme,
        authority,
        base_path,
    } = target
    else {
        return None;
    };
    let mut pq = String::with_capacity(base_path.len() + path.len() + 1);
    pq.push_str(base_path);
    pq.push_str(path);
    if pq.is_empty() {
        pq.push('/');
    }
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    Uri::builder()
        .scheme(scheme.clone())
        .authority(authority.clone())
        .path_and_query(pq)
        .build()
        .ok()
}
