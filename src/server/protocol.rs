//! Which HTTP a connection speaks, decided before hyper reads from it where it can be (ALPN on
//! TLS, the first bytes on a plain connection), and the builders that serve each kind alike.

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;

use super::metrics::CloseReason;
use super::{stopped, ConnCtx, ConnSettings};

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The HTTP version of a connection, when known before hyper reads from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Proto {
    H1,
    H2,
    /// hyper-util's auto connection reads the first bytes and decides (a plain connection whose
    /// first bytes could still be HTTP/2's preface; TLS without ALPN).
    Unknown,
}

/// How each kind of connection is served, configured alike. A connection whose protocol is
/// known is served by its own builder directly: hyper-util's auto connection reads the first
/// bytes itself and hands them back through a rewind buffer, which makes hyper's read buffer
/// grow to 16 KiB on the first request and keeps it there for the connection's life.
pub(super) struct Protocols {
    pub(super) auto: auto::Builder<TokioExecutor>,
    pub(super) h1: hyper::server::conn::http1::Builder,
    pub(super) h2: hyper::server::conn::http2::Builder<TokioExecutor>,
}

impl Protocols {
    pub(super) fn new(settings: &ConnSettings) -> Self {
        let max_buf = settings.max_header_bytes.max(8192);
        let max_headers = settings.max_header_bytes.min(u32::MAX as usize) as u32;
        let mut auto = auto::Builder::new(TokioExecutor::new());
        // The header-read timeout is enforced by conn_guard: hyper's own timer also runs while
        // a keep-alive connection is idle.
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(max_buf)
            .keep_alive(true);
        auto.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(max_headers)
            .max_concurrent_streams(256);
        let mut h1 = hyper::server::conn::http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_buf_size(max_buf)
            .keep_alive(true);
        let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(max_headers)
            .max_concurrent_streams(256);
        Protocols { auto, h1, h2 }
    }
}

/// HTTP/2's connection preface (RFC 9113 §3.4), which a client with prior knowledge (h2c)
/// sends first.
const H2C_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A plain connection's protocol, from its first bytes (peeked: they stay in the socket for
/// hyper). Waits for them as long as an idle connection may stay (`idle_timeout`, the reason
/// given when it passes) and not beyond the gateway's stop; `Err(None)` when the client went
/// away or the gateway stops.
pub(super) async fn sniff(stream: &TcpStream, ctx: &ConnCtx) -> Result<Proto, Option<CloseReason>> {
    let mut first = [0u8; 24];
    let mut stop = ctx.stop.clone();
    let peeked = tokio::select! {
        r = tokio::time::timeout(ctx.settings.idle_timeout, stream.peek(&mut first)) => r,
        _ = stopped(&mut stop) => return Err(None),
    };
    let n = match peeked {
        Err(_) => return Err(Some(CloseReason::IdleTimeout)),
        Ok(Ok(0) | Err(_)) => return Err(None),
        Ok(Ok(n)) => n,
    };
    Ok(if first[..n] != H2C_PREFACE[..n] {
        Proto::H1
    } else if n == H2C_PREFACE.len() {
        Proto::H2
    } else {
        Proto::Unknown
    })
}
