//! WebSocket on a route with `websocket = true` (DESIGN §7): the handshake is authorized like any
//! request (by the time it gets here it has been), then sent to the upstream on a connection of
//! its own (plain or TLS, HTTP/1.1); on the upstream's 101 the client gets the 101 and the bytes
//! are tunnelled both ways until either side closes, nothing moves for the route's
//! `websocket_idle_timeout`, the token that opened the tunnel expires (or
//! `websocket_max_lifetime` passes, 2 h by default, like API Gateway's WebSocket connections), a
//! reload changes or removes the route, or the gateway stops (the last two at the end of
//! `shutdown_grace`). A tunnel must not outlive what authorized it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tracing::Instrument;

use http::header::{HeaderValue, CONNECTION, HOST, UPGRADE};
use http::uri::Scheme;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::metrics::ProxyMetrics;
use crate::body::Body;
use crate::config::UpstreamTarget;
use crate::error::{GatewayError, UpstreamError};
use crate::metrics::RouteLabel;

/// `Upgrade: websocket` with `Connection: upgrade` (HTTP/1.1).
pub(crate) fn is_upgrade<B>(req: &Request<B>) -> bool {
    let upgrade = req
        .headers()
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let connection = req.headers().get_all(CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    });
    upgrade && connection
}

/// What a tunnel needs besides its two ends.
pub struct Tunnel {
    pub route: String,
    pub idle_timeout: Duration,
    /// How long the tunnel may stay open: the route's `websocket_max_lifetime`, or less when
    /// the token that opened it expires sooner.
    pub lifetime: Duration,
    pub grace: Duration,
    pub stop: watch::Receiver<bool>,
    /// Set when a reload changes or removes the route (`RouteGenerations`).
    pub retired: watch::Receiver<bool>,
    pub metrics: ProxyMetrics,
}

/// One signal per WebSocket route that says "this route is no longer what opened your tunnel".
/// A reload keeps the signal of a route it leaves unchanged (so tunnels opened before it still
/// hear later reloads) and fires the old one of a route it changes or removes.
#[derive(Default)]
pub struct RouteGenerations(rustc_hash::FxHashMap<String, Arc<watch::Sender<bool>>>);

impl RouteGenerations {
    /// The signals for `routes`, reusing `previous`'s where the route is the same.
    pub fn new(
        routes: &[crate::config::RouteConfig],
        previous: Option<(&RouteGenerations, &[crate::config::RouteConfig])>,
    ) -> Self {
        let mut map = rustc_hash::FxHashMap::default();
        for r in routes.iter().filter(|r| r.websocket) {
            let kept = previous.and_then(|(gens, old_routes)| {
                old_routes
                    .iter()
                    .find(|o| o.name == r.name)
                    .filter(|o| *o == r)
                    .and_then(|_| gens.0.get(&r.name).cloned())
            });
            let sender = kept.unwrap_or_else(|| Arc::new(watch::Sender::new(false)));
            map.insert(r.name.clone(), sender);
        }
        RouteGenerations(map)
    }

    /// A receiver for tunnels of `route`; one that never fires for a route without a signal.
    pub(crate) fn subscribe(&self, route: &str) -> watch::Receiver<bool> {
        match self.0.get(route) {
            Some(s) => s.subscribe(),
            None => watch::Sender::new(false).subscribe(),
        }
    }

    /// Fires every signal of `self` that `next` does not carry on: those routes changed.
    /// Returns how many routes were retired.
    pub(crate) fn retire_replaced(&self, next: &RouteGenerations) -> usize {
        let mut n = 0;
        for (name, sender) in &self.0 {
            if !next.0.get(name).is_some_and(|s| Arc::ptr_eq(s, sender)) {
                sender.send_replace(true);
                n += 1;
            }
        }
        n
    }
}

/// Sends the handshake `req` (absolute URI, hop-by-hop headers already removed) to the
/// upstream and, on 101, starts the tunnel between `client` and the upstream's connection.
pub async fn forward(
    target: &UpstreamTarget,
    mut req: Request<Body>,
    client: OnUpgrade,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    tunnel: Tunnel,
) -> Result<Response<Body>, GatewayError> {
    let UpstreamTarget::Url {
        scheme, authority, ..
    } = target
    else {
        return Err(GatewayError::Upstream(UpstreamError::Protocol));
    };
    let headers = req.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(h) = HeaderValue::from_str(authority.as_str()) {
        headers.insert(HOST, h);
    }
    // Origin-form on the wire.
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    *req.uri_mut() = pq
        .parse()
        .map_err(|_| GatewayError::BadRequest("path cannot be forwarded"))?;
    let port = authority
        .port_u16()
        .unwrap_or(if *scheme == Scheme::HTTPS { 443 } else { 80 });
    let send = async {
        let tcp = TcpStream::connect((authority.host(), port))
            .await
            .map_err(|_| GatewayError::Upstream(UpstreamError::Connect))?;
        let _ = tcp.set_nodelay(true);
        if *scheme == Scheme::HTTPS {
            let name = rustls_pki_types::ServerName::try_from(authority.host().to_string())
                .map_err(|_| GatewayError::Upstream(UpstreamError::Connect))?;
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|_| GatewayError::Upstream(UpstreamError::Connect))?;
            handshake(TokioIo::new(stream), req).await
        } else {
            handshake(TokioIo::new(tcp), req).await
        }
    };
    let mut resp = tokio::time::timeout(timeout, send)
        .await
        .map_err(|_| GatewayError::Upstream(UpstreamError::Timeout))??;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = resp.into_parts();
        return Ok(Response::from_parts(
            parts,
            body.map_err(Into::into).boxed(),
        ));
    }
    let upstream = hyper::upgrade::on(&mut resp);
    // The tunnel's lines carry the request id and route of the request that opened it.
    tokio::spawn(run(client, upstream, tunnel).in_current_span());
    let (parts, _) = resp.into_parts();
    Ok(Response::from_parts(parts, crate::body::empty()))
}

async fn handshake<IO>(
    io: IO,
    req: Request<Body>,
) -> Result<Response<hyper::body::Incoming>, GatewayError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|_| GatewayError::Upstream(UpstreamError::Protocol))?;
    tokio::spawn(
        async move {
            let _ = conn.with_upgrades().await;
        }
        .in_current_span(),
    );
    sender
        .send_request(req)
        .await
        .map_err(|_| GatewayError::Upstream(UpstreamError::Protocol))
}

/// Tunnels bytes both ways once both sides have switched protocols.
async fn run(client: OnUpgrade, upstream: OnUpgrade, t: Tunnel) {
    let (Ok(client), Ok(upstream)) = (client.await, upstream.await) else {
        return;
    };
    let gauge = t
        .metrics
        .websocket_connections
        .get_or_create(&RouteLabel {
            route: t.route.clone(),
        })
        .clone();
    gauge.inc();
    let started = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let mut client = Idle::new(TokioIo::new(client), started, last.clone());
    let mut upstream = Idle::new(TokioIo::new(upstream), started, last.clone());
    let mut stop = t.stop;
    let idle = async {
        loop {
            let since = Duration::from_millis(last.load(Ordering::Relaxed));
            let quiet = started.elapsed().saturating_sub(since);
            if quiet >= t.idle_timeout {
                return;
            }
            tokio::time::sleep(t.idle_timeout - quiet).await;
        }
    };
    let drained = async {
        let _ = stop.wait_for(|s| *s).await;
        tokio::time::sleep(t.grace).await;
    };
    let mut retired = t.retired;
    let replaced = async {
        // A signal whose sender is gone can no longer fire: it never ends the tunnel.
        if retired.wait_for(|r| *r).await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(t.grace).await;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = idle => tracing::debug!(route = %t.route, "websocket tunnel idle: closed"),
        _ = tokio::time::sleep(t.lifetime) => tracing::info!(route = %t.route,
            "websocket tunnel closed: the token that opened it expired, or websocket_max_lifetime passed"),
        _ = replaced => tracing::info!(route = %t.route,
            "websocket tunnel closed: a reload changed its route (after shutdown_grace)"),
        _ = drained => tracing::debug!(route = %t.route, "websocket tunnel closed at the end of shutdown_grace"),
    }
    gauge.dec();
}

/// An IO that notes when it last read something (milliseconds since `started`).
struct Idle<T> {
    inner: T,
    started: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Idle<T> {
    fn new(inner: T, started: Instant, last: Arc<AtomicU64>) -> Self {
        Idle {
            inner,
            started,
            last,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Idle<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let ms = self.started.elapsed().as_millis() as u64;
            self.last.store(ms, Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Idle<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
