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
    /// For `upstream = "origin"`: the forward proxy's destination, resolved by
    /// `OriginResolver`, which drops the machine's and the link's addresses.
    origin: Client<HttpsConnector<HttpConnector<OriginResolver>>, Body>,
    direct: Arc<DirectPool>,
    /// TLS for WebSocket handshakes: HTTP/1.1 only (an upgrade needs it).
    pub websocket_tls: Arc<rustls::ClientConfig>,
}

impl UpstreamClient {
    /// `verbatim`: the forward proxy's destinations listed by exact name (no wildcard), whose
    /// addresses `upstream = "origin"` may reach whatever they are.
    pub fn new(cfg: &UpstreamConfig, verbatim: Vec<String>) -> Result<Self, crate::tls::TlsError> {
        let tls = crate::tls::client_config(cfg.ca_file.as_deref())?;
        let mut websocket_tls = tls.clone();
        websocket_tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        fn pooled<R>(
            cfg: &UpstreamConfig,
            tls: rustls::ClientConfig,
            mut http: HttpConnector<R>,
        ) -> Client<HttpsConnector<HttpConnector<R>>, Body>
        where
            R: tower_service::Service<hyper_util::client::legacy::connect::dns::Name>
                + Clone
                + Send
                + Sync
                + 'static,
            R::Response: Iterator<Item = std::net::SocketAddr>,
            R::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
            R::Future: Send,
        {
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
            Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .pool_idle_timeout(cfg.pool_idle_timeout)
                .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
                .build(connector)
        }
        let client = pooled(cfg, tls.clone(), HttpConnector::new());
        let origin = pooled(
            cfg,
            tls,
            HttpConnector::new_with_resolver(OriginResolver {
                verbatim: Arc::new(verbatim),
            }),
        );
        let direct = DirectPool::new(
            cfg.connect_timeout,
            cfg.pool_idle_timeout,
            cfg.pool_max_idle_per_host,
        );
        Ok(UpstreamClient {
            client,
            origin,
            direct,
            websocket_tls: Arc::new(websocket_tls),
        })
    }

    /// Sends the request (absolute URI) to `target`; the timeout covers everything up to the
    /// response headers.
    pub async fn send(
        &self,
        target: &UpstreamTarget,
        req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<Body>, GatewayError> {
        self.send_via(target, req, timeout, false).await
    }

    /// `send` for `upstream = "origin"`: through the client whose resolver drops special
    /// addresses (a destination the forward proxy admitted by a wildcard cannot be pointed at
    /// the machine or the metadata service through DNS).
    pub async fn send_origin(
        &self,
        target: &UpstreamTarget,
        req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<Body>, GatewayError> {
        self.send_via(target, req, timeout, true).await
    }

    async fn send_via(
        &self,
        target: &UpstreamTarget,
        mut req: Request<Body>,
        timeout: Duration,
        origin: bool,
    ) -> Result<Response<Body>, GatewayError> {
        if let (
            false,
            UpstreamTarget::Url {
                scheme, authority, ..
            },
        ) = (origin, target)
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
                    Ok(Err(DirectError::Connect(why, cause))) => {
                        tracing::warn!(error = %why, kind = %"connect", cause = %cause.as_str(),
                            "upstream request failed: {cause}");
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
        let sent = if origin {
            self.origin.request(req)
        } else {
            self.client.request(req)
        };
        match tokio::time::timeout(timeout, sent).await {
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
                let cause = crate::cause::Cause::of(&e);
                tracing::warn!(error = %error_chain(&e), kind = %kind.kind(), cause = %cause.as_str(),
                    "upstream request failed: {cause}");
                Err(GatewayError::Upstream(kind))
            }
        }
    }
}

/// Resolves an origin's name and keeps only the addresses the forward proxy may reach: all of
/// them for a name listed verbatim, otherwise none of the machine's or the link's
/// (`config::special_address`).
#[derive(Clone)]
pub(crate) struct OriginResolver {
    verbatim: Arc<Vec<String>>,
}

impl tower_service::Service<hyper_util::client::legacy::connect::dns::Name> for OriginResolver {
    type Response = std::vec::IntoIter<std::net::SocketAddr>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let verbatim = self.verbatim.clone();
        Box::pin(async move {
            let host = name.as_str().to_ascii_lowercase();
            let addrs: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept = keep_reachable(&host, addrs, &verbatim);
            if kept.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "the origin resolves only to addresses the forward proxy does not reach",
                ));
            }
            Ok(kept.into_iter())
        })
    }
}

/// The addresses of `host` an origin request may connect to.
pub(crate) fn keep_reachable(
    host: &str,
    addrs: Vec<std::net::SocketAddr>,
    verbatim: &[String],
) -> Vec<std::net::SocketAddr> {
    if verbatim.iter().any(|v| v == host) {
        return addrs;
    }
    addrs
        .into_iter()
        .filter(|a| !crate::config::special_address(a.ip()))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_reaches_special_addresses_only_when_listed_by_name() {
        let addrs: Vec<std::net::SocketAddr> =
            ["127.0.0.1:0", "169.254.169.254:0", "10.0.0.7:0", "[::1]:0"]
                .iter()
                .map(|a| a.parse().unwrap())
                .collect();
        let kept = keep_reachable("api.example", addrs.clone(), &["other.example".into()]);
        assert_eq!(kept, vec!["10.0.0.7:0".parse().unwrap()]);
        assert_eq!(
            keep_reachable("api.example", addrs.clone(), &["api.example".into()]),
            addrs
        );
        assert!(
            keep_reachable("x.example", vec!["169.254.169.254:0".parse().unwrap()], &[]).is_empty()
        );
    }
}
