//! The forward proxy (`[forward_proxy]`, DESIGN §11): apps that can only be given a proxy
//! setting send `CONNECT host:port`. For an intercepted destination the gateway answers 200,
//! terminates TLS with a certificate its CA issues for that name (`ca.rs`), and runs every
//! request inside the tunnel through the normal pipeline with the `CONNECT` target as its
//! authority; for a tunnelled one it copies bytes; anything else is refused with
//! `Proxy-Status` (`pipeline/destination.rs` decides). Absolute-form `http://` requests are checked in the
//! pipeline against the same lists.

pub mod ca;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::header::{HeaderValue, HOST, PROXY_AUTHORIZATION};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::body::{empty, Body};
use crate::error::GatewayError;
use crate::pipeline::destination::{classify, resolved_allowed, Reach, Target};
use crate::pipeline::{ConnInfo, Gateway, Proxied};
use ca::Ca;
use metrics::ForwardMetrics;

/// What the forward proxy keeps across requests: the CA (loaded at start) and its metrics.
pub struct ForwardProxy {
    pub ca: Option<Ca>,
    pub metrics: ForwardMetrics,
}

/// What a `CONNECT` needs from the server.
pub struct ConnectCtx {
    pub current: Arc<ArcSwap<Gateway>>,
    pub info: ConnInfo,
    pub stop: watch::Receiver<bool>,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Answers a `CONNECT`: 200 and the tunnel (intercepted or blind) on a task of its own, or the
/// refusal.
pub async fn connect(
    fwd: Arc<ForwardProxy>,
    cx: ConnectCtx,
    req: Request<Incoming>,
) -> Response<Body> {
    let gateway = cx.current.load_full();
    let refuse = |kind: &'static str| GatewayError::ProxyDestination(kind).into_response();
    let Some(cfg) = gateway.config.forward_proxy.as_ref() else {
        return refuse("destination_not_allowed");
    };
    let Some(target) = req
        .uri()
        .authority()
        .and_then(|a| Target::parse_connect(a.as_str()))
    else {
        fwd.metrics.connect("refused");
        return GatewayError::BadRequest("CONNECT needs host:port").into_response();
    };
    let reach = classify(cfg, &target);
    match reach {
        Reach::Refused(kind) => {
            fwd.metrics.connect("refused");
            let destination = format!("{}:{}", target.host, target.port);
            tracing::info!(target: "cognito_gate::access", method = "CONNECT",
                client.addr = %cx.info.peer.ip(), destination, status = 403u16,
                proxy.error = kind, "forward proxy refused a destination");
            refuse(kind)
        }
        Reach::Tunnel => {
            let upstream = match dial(cfg, &target, gateway.config.upstream.connect_timeout).await {
                Ok(s) => s,
                Err(kind) => {
                    fwd.metrics.connect("refused");
                    tracing::info!(destination = %format_args!("{}:{}", target.host, target.port),
                        proxy.error = kind, "forward proxy could not open a tunnel");
                    return refuse(kind);
                }
            };
            fwd.metrics.connect("tunnelled");
            let destination = format!("{}:{}", target.host, target.port);
            tracing::info!(target: "cognito_gate::access", method = "CONNECT",
                client.addr = %cx.info.peer.ip(), destination, status = 200u16,
                "forward proxy tunnel");
            let idle = cx.idle_timeout;
            let mut stop = cx.stop.clone();
            tokio::spawn(async move {
                let Ok(client) = hyper::upgrade::on(req).await else {
                    return;
                };
                tokio::select! {
                    _ = pump(TokioIo::new(client), upstream, idle) => {}
                    _ = stopped(&mut stop) => {}
                }
            });
            Response::new(empty())
        }
        Reach::Intercept => {
            let Some(tls) = fwd.ca.as_ref().map(|ca| ca.server_config(&target.host)) else {
                return refuse("destination_not_allowed");
            };
            let tls = match tls {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(error = %e, "forward proxy cannot issue a certificate");
                    fwd.metrics.connect("refused");
                    return GatewayError::ProxyDestination("tls_certificate_error").into_response();
                }
            };
            fwd.metrics.connect("intercepted");
            // A credential on the CONNECT is the credential of every request inside.
            let credentials = req.headers().get(PROXY_AUTHORIZATION).cloned();
            tokio::spawn(intercept(cx, req, target, tls, credentials));
            Response::new(empty())
        }
    }
}

/// Terminates TLS on the upgraded connection and serves its requests through the pipeline.
async fn intercept(
    cx: ConnectCtx,
    req: Request<Incoming>,
    target: Target,
    tls: Arc<rustls::ServerConfig>,
    credentials: Option<HeaderValue>,
) {
    let Ok(upgraded) = hyper::upgrade::on(req).await else {
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let stream = match tokio::time::timeout(
        cx.handshake_timeout,
        acceptor.accept(TokioIo::new(upgraded)),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            // Most often: the client does not trust the gateway's CA.
            tracing::info!(client.addr = %cx.info.peer.ip(), name = %target.host, error = %e,
                "TLS inside a CONNECT failed (is the gateway's CA trusted by the client?)");
            return;
        }
        Err(_) => return,
    };
    let authority = authority_of(&target);
    let info = ConnInfo {
        peer: cx.info.peer,
        tls: true,
    };
    let current = cx.current.clone();
    let svc = service_fn(move |mut req: Request<Incoming>| {
        let current = current.clone();
        let proxied = Proxied {
            credentials: credentials.clone(),
        };
        let uri = in_tunnel_uri(&authority, req.uri());
        Box::pin(async move {
            let gateway = current.load_full();
            let resp = match uri {
                Some(uri) => {
                    // The destination is the CONNECT target, never an inner Host.
                    *req.uri_mut() = uri;
                    req.headers_mut().remove(HOST);
                    req.extensions_mut().insert(proxied);
                    gateway.handle(req, info).await
                }
                None => GatewayError::BadRequest("request target").into_response(),
            };
            Ok::<_, std::convert::Infallible>(resp)
        })
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256);
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let mut stop = cx.stop.clone();
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "intercepted connection ended with an error");
            }
        }
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// `https://<target>` with the inner request's path and query.
fn in_tunnel_uri(authority: &str, inner: &Uri) -> Option<Uri> {
    let pq = inner.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    if !pq.starts_with('/') {
        return None;
    }
    Uri::builder()
        .scheme("https")
        .authority(authority)
        .path_and_query(pq)
        .build()
        .ok()
}

/// The target as a URI authority (the port only when it is not 443).
fn authority_of(t: &Target) -> String {
    let host = if t.host.contains(':') {
        format!("[{}]", t.host)
    } else {
        t.host.clone()
    };
    if t.port == 443 {
        host
    } else {
        format!("{host}:{}", t.port)
    }
}

/// Resolves and connects to a tunnelled destination; every resolved address is checked, so a
/// listed name cannot be pointed at the machine itself or the metadata service through DNS.
async fn dial(
    cfg: &crate::config::ForwardProxyConfig,
    target: &Target,
    timeout: Duration,
) -> Result<TcpStream, &'static str> {
    let addrs: Vec<SocketAddr> =
        match tokio::net::lookup_host((target.host.as_str(), target.port)).await {
            Ok(a) => a.collect(),
            Err(_) => return Err("dns_error"),
        };
    let allowed: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| resolved_allowed(cfg, target, a.ip()))
        .collect();
    if allowed.is_empty() {
        return Err("destination_ip_prohibited");
    }
    for addr in allowed {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(_)) | Err(_) => continue,
        }
    }
    Err("connection_refused")
}

/// Copies both ways until either side closes or nothing moves for `idle`.
async fn pump<A, B>(a: A, b: B, idle: Duration)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let mut abuf = vec![0u8; 16 * 1024];
    let mut bbuf = vec![0u8; 16 * 1024];
    loop {
        tokio::select! {
            r = ar.read(&mut abuf) => match r {
                Ok(0) | Err(_) => { let _ = bw.shutdown().await; return; }
                Ok(n) => if bw.write_all(&abuf[..n]).await.is_err() { return; },
            },
            r = br.read(&mut bbuf) => match r {
                Ok(0) | Err(_) => { let _ = aw.shutdown().await; return; }
                Ok(n) => if aw.write_all(&bbuf[..n]).await.is_err() { return; },
            },
            _ = tokio::time::sleep(idle) => return,
        }
    }
}

/// Resolves once `stop` holds true (the gateway is shutting down).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
