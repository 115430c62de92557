//! Listeners: accept loops with a connection limit, TLS handshakes, HTTP/1.1 + HTTP/2 (h2c on
//! plain listeners, ALPN on TLS), header-read and idle timeouts (`conn_guard.rs`; the HTTP/2
//! SETTINGS budget in `frames.rs`), graceful drain and shutdown, and the admin listener
//! (`admin.rs`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

pub mod admin;
pub mod conn_guard;
mod frames;
pub mod metrics;
mod protocol;

use crate::authz::metrics::AuthzMetrics;
use crate::config::ServerConfig;
use crate::metrics::Registry;
use crate::pipeline::{ConnInfo, Gateway};
use conn_guard::{Activity, Guarded};
use metrics::{CloseReason, ServerMetrics};
use protocol::{sniff, BoxError, Proto, Protocols};

/// What a listener serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Routes, auth and forwarding (health and readiness answered first).
    Main,
    /// Health, readiness and operational endpoints only.
    Admin,
    /// Envoy ext_authz over gRPC (`[authz] grpc_listen`).
    AuthzGrpc,
    /// The HTTP forms of the external authorizer (`[authz] http_listen`).
    AuthzHttp,
}

impl Role {
    /// The `role` log field.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Main => "main",
            Role::Admin => "admin",
            Role::AuthzGrpc => "authz_grpc",
            Role::AuthzHttp => "authz_http",
        }
    }
}

/// Connection-level settings shared by every listener, and where connections are counted.
#[derive(Clone)]
pub struct ConnSettings {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub handshake_timeout: Duration,
    pub shutdown_grace: Duration,
    pub metrics: ServerMetrics,
    /// Every metric family, for the admin listener's `/metrics`.
    pub registry: Arc<Registry>,
    /// Where the authorizer listeners count their checks.
    pub authz: AuthzMetrics,
    /// The forward proxy (`[forward_proxy]`): `CONNECT` on the main listeners.
    pub forward: Option<Arc<crate::forward::ForwardProxy>>,
}

impl ConnSettings {
    pub fn new(
        s: &ServerConfig,
        metrics: ServerMetrics,
        registry: Arc<Registry>,
        authz: AuthzMetrics,
        forward: Option<Arc<crate::forward::ForwardProxy>>,
    ) -> Self {
        ConnSettings {
            metrics,
            registry,
            authz,
            forward,
            header_read_timeout: s.header_read_timeout,
            idle_timeout: s.idle_timeout,
            max_header_bytes: s.max_header_bytes,
            handshake_timeout: s
                .tls
                .as_ref()
                .map(|t| t.handshake_timeout)
                .unwrap_or(Duration::from_secs(10)),
            shutdown_grace: s.shutdown_grace,
        }
    }
}

pub struct Listener {
    pub tcp: TcpListener,
    /// Swapped on reload, so renewed certificates apply to new connections.
    pub tls: Option<Arc<ArcSwap<TlsAcceptor>>>,
    pub role: Role,
}

/// The TLS handshake (within `handshake_timeout`), then the connection, its protocol from ALPN.
async fn serve_tls(
    acceptor: Arc<TlsAcceptor>,
    stream: TcpStream,
    ctx: ConnCtx,
    builder: &Protocols,
) {
    let peer = ctx.info.peer;
    let handshake = Box::pin(acceptor.accept(stream));
    match tokio::time::timeout(ctx.settings.handshake_timeout, handshake).await {
        Ok(Ok(tls_stream)) => {
            let proto = match tls_stream.get_ref().1.alpn_protocol() {
                Some(b"h2") => Proto::H2,
                Some(b"http/1.1") => Proto::H1,
                _ => Proto::Unknown,
            };
            Box::pin(serve_conn(tls_stream, proto, ctx, builder)).await
        }
        Ok(Err(e)) => tracing::debug!(client.addr = %peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(client.addr = %peer, "TLS handshake timed out"),
    }
}

/// Accepts until `stop` turns true, then stops accepting, asks every connection to finish its
/// in-flight requests, and waits up to `shutdown_grace` for them. When `drain` turns true
/// (before `stop`), HTTP/2 connections are sent GOAWAY and HTTP/1 responses close their
/// connections, so that clients move off this gateway while it still serves.
pub async fn serve(
    listener: Listener,
    gateway: Arc<ArcSwap<Gateway>>,
    settings: ConnSettings,
    limit: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
    drain: watch::Receiver<bool>,
) {
    let builder = Arc::new(Protocols::new(&settings));
    // One copy for every connection of the listener.
    let settings = Arc::new(settings);
    let grace = settings.shutdown_grace;
    let tls = listener.tls.clone();
    let role = listener.role;
    accept_loop(
        listener.tcp,
        Some(limit),
        stop.clone(),
        grace,
        move |stream, peer| {
            let gateway = gateway.clone();
            let builder = builder.clone();
            let tls = tls.clone();
            let settings = settings.clone();
            let stop = stop.clone();
            let drain = drain.clone();
            async move {
                let metrics = settings.metrics.clone();
                metrics.connections_active.inc();
                let info = ConnInfo {
                    peer,
                    tls: tls.is_some(),
                };
                let ctx = ConnCtx {
                    info,
                    role,
                    gateway,
                    settings,
                    stop,
                    drain,
                };
                match tls.map(|t| t.load_full()) {
                    // Boxed, each at its own size: a plain connection does not carry the space
                    // a TLS one needs (its handshake, rustls's state) for as long as it lives.
                    Some(acceptor) => Box::pin(serve_tls(acceptor, stream, ctx, &builder)).await,
                    None => match sniff(&stream, &ctx).await {
                        Ok(proto) => Box::pin(serve_conn(stream, proto, ctx, &builder)).await,
                        Err(Some(why)) => metrics.closed(why),
                        Err(None) => {}
                    },
                }
                metrics.connections_active.dec();
            }
        },
    )
    .await;
}

/// Accepts until `stop` turns true — at most `limit` connections at once, when given — and
/// runs `conn` for each on a tracked task; then stops accepting and waits up to `grace` for
/// the connections to finish. The gateway's listeners and the dev IdP's share it.
pub(crate) async fn accept_loop<F, Fut>(
    tcp: TcpListener,
    limit: Option<Arc<Semaphore>>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
    mut conn: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let tracker = TaskTracker::new();
    let local = tcp.local_addr().map(|a| a.to_string()).unwrap_or_default();
    loop {
        let permit = match &limit {
            Some(limit) => tokio::select! {
                p = limit.clone().acquire_owned() => match p { Ok(p) => Some(p), Err(_) => break },
                _ = stopped(&mut stop) => break,
            },
            None => None,
        };
        let (stream, peer) = tokio::select! {
            r = tcp.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // Out of file descriptors and the like: back off briefly instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let _ = stream.set_nodelay(true);
        // `map`, not an async block: a block would hold the connection's future twice (once
        // as its capture, once as what it awaits), for as long as the connection lives.
        tracker.spawn(conn(stream, peer).map(move |()| drop(permit)));
    }
    drop(tcp);
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            listener = local,
            remaining = tracker.len(),
            "shutdown_grace expired; closing the remaining connections"
        );
    }
}

/// What one connection's task needs besides its IO.
struct ConnCtx {
    info: ConnInfo,
    role: Role,
    gateway: Arc<ArcSwap<Gateway>>,
    settings: Arc<ConnSettings>,
    stop: watch::Receiver<bool>,
    drain: watch::Receiver<bool>,
}

/// Serves one connection until it ends, the gateway stops, or conn_guard says to close it.
async fn serve_conn<IO>(io: IO, proto: Proto, ctx: ConnCtx, builder: &Protocols)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let ConnCtx {
        info,
        role,
        gateway,
        settings,
        mut stop,
        mut drain,
    } = ctx;
    let gateway_allows_upgrades = gateway.load().config.routes.iter().any(|r| r.websocket);
    let metrics = settings.metrics.clone();
    // The registry, on the admin listener only (whose requests it answers); the main listener's
    // requests take no reference to it.
    let admin = (role == Role::Admin).then(|| settings.registry.clone());
    let activity = Activity::new(
        proto == Proto::H2,
        settings.header_read_timeout,
        settings.idle_timeout,
    );
    let io = Guarded::new(io, activity.clone());
    let act = activity.clone();
    let authz = settings.authz.clone();
    let forward = settings.forward.clone().filter(|_| role == Role::Main);
    let (handshake_timeout, idle_timeout) = (settings.handshake_timeout, settings.idle_timeout);
    let conn_stop = stop.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let swap = gateway.clone();
        let gateway = gateway.clone();
        let authz = authz.clone();
        let forward = forward.clone();
        let conn_stop = conn_stop.clone();
        let act = act.clone();
        let admin = admin.clone();
        // Boxed: hyper keeps a slot the size of this future in every connection for as long as
        // it lives, and moves the future into it for each request; a pointer is cheaper to keep
        // and to move than the request path's few KiB of state.
        Box::pin(async move {
            act.begin();
            // Each request runs on the configuration current when it arrived.
            let gateway = gateway.load_full();
            let http1 = req.version() <= http::Version::HTTP_11;
            let mut resp = match (role, admin) {
                (Role::Main, _) if req.method() == http::Method::CONNECT && forward.is_some() => {
                    let cx = crate::forward::ConnectCtx {
                        current: swap,
                        info,
                        stop: conn_stop,
                        handshake_timeout,
                        idle_timeout,
                    };
                    let fwd = forward.expect("checked");
                    Box::pin(crate::forward::connect(fwd, cx, req)).await
                }
                // The other roles' futures boxed: the main listener's requests do not carry
                // (and copy) their space.
                (Role::AuthzGrpc, _) => {
                    let peer = info.peer.ip();
                    Box::pin(crate::authz::grpc::serve(
                        gateway.clone(),
                        &authz,
                        peer,
                        req,
                    ))
                    .await
                }
                (Role::AuthzHttp, _) => {
                    let peer = info.peer.ip();
                    Box::pin(crate::authz::http::serve(
                        gateway.clone(),
                        &authz,
                        peer,
                        req,
                    ))
                    .await
                }
                (_, None) => gateway.handle(req, info).await,
                (_, Some(registry)) => {
                    if req.uri().path() == "/metrics" {
                        if let Some(a) = &gateway.authorizer {
                            a.report_key_ages();
                        }
                    }
                    let server = &gateway.config.server;
                    let view = admin::AdminView {
                        registry: &registry,
                        readiness: &gateway.readiness,
                        health_path: &server.health_path,
                        ready_path: &server.ready_path,
                    };
                    admin::respond(&view, &req)
                }
            };
            // While draining, an HTTP/1 connection closes after each response, so that a load
            // balancer's idle keep-alive connections wind down during `shutdown_drain` instead of
            // being cut when the listeners close (a request racing that close fails).
            if http1
                && resp.status() != http::StatusCode::SWITCHING_PROTOCOLS
                && gateway.readiness.is_draining()
            {
                resp.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            act.end();
            Ok::<_, Infallible>(resp)
        })
    });
    // Upgrades (WebSocket) only where a route allows them: a connection that can be upgraded
    // costs hyper a little more per request.
    // The forward proxy's CONNECT is an upgrade too.
    let upgrades = role == Role::Main && (gateway_allows_upgrades || settings.forward.is_some());
    // The same driving loop for both kinds of connection.
    macro_rules! drive {
        ($conn:expr) => {{
            // Boxed: the connection's own size, not the largest of the protocols'.
            let mut conn = Box::pin($conn);
            // Whether GOAWAY was sent because the gateway is draining.
            let mut drained = false;
            loop {
                tokio::select! {
                    r = conn.as_mut() => break r,
                    _ = stopped(&mut drain), if !drained => {
                        drained = true;
                        // HTTP/2: GOAWAY now, so that the client opens its next streams
                        // elsewhere; streams in flight finish. (HTTP/1 closes after the next
                        // response instead: see the service above.)
                        if activity.is_h2() {
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                    _ = stopped(&mut stop) => {
                        if !(drained && activity.is_h2()) {
                            conn.as_mut().graceful_shutdown();
                        }
                        break conn.await;
                    }
                    why = activity.watch() => {
                        tracing::debug!(client.addr = %info.peer, reason = why.as_str(), "closing connection");
                        metrics.closed(why);
                        if why == CloseReason::HeaderReadTimeout {
                            // A client still sending its headers gets no graceful close: drop it.
                            return;
                        }
                        conn.as_mut().graceful_shutdown();
                        break conn.await;
                    }
                }
            }
        }};
    }
    let io = TokioIo::new(io);
    let result: Result<(), BoxError> = match proto {
        Proto::H1 if upgrades => {
            drive!(builder.h1.serve_connection(io, svc).with_upgrades()).map_err(Into::into)
        }
        Proto::H1 => drive!(builder.h1.serve_connection(io, svc)).map_err(Into::into),
        Proto::H2 => drive!(builder.h2.serve_connection(io, svc)).map_err(Into::into),
        Proto::Unknown if upgrades => {
            drive!(builder.auto.serve_connection_with_upgrades(io, svc))
        }
        Proto::Unknown => drive!(builder.auto.serve_connection(io, svc)),
    };
    if activity.flooded() {
        metrics.closed(CloseReason::H2SettingsFlood);
        tracing::warn!(client.addr = %info.peer, error = %conn_guard::Flood,
            "closed an HTTP/2 connection");
    } else if let Err(e) = result {
        tracing::debug!(client.addr = %info.peer, error = %e, "connection ended with an error");
    }
}

/// Resolves once `stop` holds true (at once if it already does).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}
