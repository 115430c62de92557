//! Per-connection timeouts that hyper does not give us the way a load-balancer target needs
//! them: hyper's own header-read timer also runs while a keep-alive connection is idle, which
//! would close idle connections after `header_read_timeout` instead of `idle_timeout` (and a
//! backend that closes keep-alive connections before the load balancer does causes 502s).
//!
//! `Guarded` wraps the connection's IO and notes when bytes of a new request start arriving;
//! `Activity` counts requests in flight. `watch` resolves when the connection should close:
//! a request's headers have been arriving for longer than `header_read_timeout` (slowloris), or
//! nothing has been in flight for `idle_timeout`. On HTTP/2 it also reads the frame headers the
//! client sends and closes a connection that floods SETTINGS frames (`frames`).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use super::frames::ControlFrames;
pub use super::frames::Flood;
use super::metrics::CloseReason;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Shared between the IO wrapper, the service and the watchdog of one connection.
pub(crate) struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `start` when the last request finished (or the connection opened).
    last_done_ms: AtomicU64,
    /// Milliseconds since `start` (+1) when bytes of a not yet dispatched request first arrived;
    /// 0 when none are pending.
    pending_since_ms: AtomicU64,
    /// HTTP/2 connections carry frames between requests; the header timer does not apply.
    h2: AtomicBool,
    bytes_read: AtomicU64,
    /// When (ms since `start`) the watchdog next looks; a new request only wakes it when its
    /// header deadline comes before that.
    armed_ms: AtomicU64,
    header_read_ms: u64,
    idle_ms: u64,
    /// Wakes the watchdog when the bytes of a new request start arriving.
    wake: tokio::sync::Notify,
    /// The client flooded HTTP/2 SETTINGS frames; the connection was closed for it.
    flooded: AtomicBool,
}

impl Activity {
    pub fn new(h2: bool, header_read_timeout: Duration, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            pending_since_ms: AtomicU64::new(0),
            h2: AtomicBool::new(h2),
            bytes_read: AtomicU64::new(0),
            armed_ms: AtomicU64::new(0),
            header_read_ms: header_read_timeout.as_millis() as u64,
            idle_ms: idle_timeout.as_millis() as u64,
            wake: tokio::sync::Notify::new(),
            flooded: AtomicBool::new(false),
        })
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// A request was dispatched to the service (its headers are complete).
    pub(crate) fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.pending_since_ms.store(0, Ordering::SeqCst);
    }

    /// The service answered a request.
    pub fn end(&self) {
        self.last_done_ms.store(self.now_ms(), Ordering::SeqCst);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    fn on_read(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let before = self
            .bytes_read
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        if before == 0 && data.starts_with(H2_PREFACE) {
            self.h2.store(true, Ordering::Relaxed);
        }
        if self.in_flight.load(Ordering::SeqCst) == 0 {
            let now = self.now_ms() + 1;
            let started = self
                .pending_since_ms
                .compare_exchange(0, now, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok();
            // Under load the watchdog's next look is already due before this request's header
            // deadline, and it is not woken (re-arming its timer on every request costs more
            // than the rest of the guard).
            let deadline = now - 1 + self.header_read_ms;
            if started && deadline < self.armed_ms.load(Ordering::SeqCst) {
                self.wake.notify_one();
            }
        }
    }

    /// Whether the connection speaks HTTP/2 (by ALPN or by its preface).
    pub(crate) fn is_h2(&self) -> bool {
        self.h2.load(Ordering::Relaxed)
    }

    /// Whether the connection was closed for flooding HTTP/2 SETTINGS frames.
    pub(crate) fn flooded(&self) -> bool {
        self.flooded.load(Ordering::Relaxed)
    }

    /// Resolves when the connection should be closed; says why.
    pub(crate) async fn watch(&self) -> CloseReason {
        let (hrt, idle) = (self.header_read_ms, self.idle_ms);
        loop {
            let now = self.now_ms();
            let next_check = if self.in_flight.load(Ordering::SeqCst) > 0 {
                now + hrt.min(idle)
            } else {
                let pending = self.pending_since_ms.load(Ordering::SeqCst);
                let h2 = self.h2.load(Ordering::Relaxed);
                if pending != 0 && !h2 {
                    let deadline = pending - 1 + hrt;
                    if now >= deadline {
                        return CloseReason::HeaderReadTimeout;
                    }
                    deadline
                } else {
                    let deadline = self.last_done_ms.load(Ordering::SeqCst) + idle;
                    if now >= deadline {
                        return CloseReason::IdleTimeout;
                    }
                    deadline
                }
            };
            let target = next_check.max(now + 1);
            self.armed_ms.store(target, Ordering::SeqCst);
            // Bytes of a request that began arriving while the target was worked out, with an
            // earlier deadline (`on_read` may have seen the previous target and not woken us).
            let pending = self.pending_since_ms.load(Ordering::SeqCst);
            if pending != 0
                && pending - 1 + hrt < target
                && self.in_flight.load(Ordering::SeqCst) == 0
                && !self.h2.load(Ordering::Relaxed)
            {
                continue;
            }
            let until = self.start + Duration::from_millis(target);
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = self.wake.notified() => {}
            }
        }
    }
}

/// The connection's IO, noting when request bytes arrive.
pub(crate) struct Guarded<IO> {
    inner: IO,
    activity: Arc<Activity>,
    frames: ControlFrames,
}

impl<IO> Guarded<IO> {
    pub fn new(inner: IO, activity: Arc<Activity>) -> Self {
        Guarded {
            inner,
            activity,
            frames: ControlFrames::new(),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let read = &buf.filled()[before..];
            this.activity.on_read(read);
            if !this.frames.is_off() {
                if let Err(flood) = this.frames.scan(read, this.activity.now_ms()) {
                    // An error from the IO ends the connection at once: h2 would otherwise
                    // acknowledge the frames already read before any GOAWAY.
                    this.activity.flooded.store(true, Ordering::Relaxed);
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, flood)));
                }
            }
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn partial_headers_time_out_but_idle_keepalive_does_not() {
        let a = Activity::new(false, Duration::from_secs(10), Duration::from_secs(60));
        // Idle: the header timer does not run, the idle timer does.
        let w = a.watch();
        tokio::pin!(w);
        assert!(tokio::time::timeout(Duration::from_secs(30), &mut w)
            .await
            .is_err());
        assert_eq!(w.await, CloseReason::IdleTimeout);

        // Bytes of a request arrive but the headers never complete.
        let a = Activity::new(false, Duration::from_secs(10), Duration::from_secs(60));
        a.on_read(b"GET / HT");
        assert_eq!(a.watch().await, CloseReason::HeaderReadTimeout);

        // A request in flight keeps the connection open however long it takes.
        let a = Activity::new(false, Duration::from_secs(10), Duration::from_secs(60));
        a.on_read(b"GET / HTTP/1.1\r\n\r\n");
        a.begin();
        let w = a.watch();
        assert!(tokio::time::timeout(Duration::from_secs(300), w)
            .await
            .is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn h2_connections_only_idle_out() {
        let a = Activity::new(false, Duration::from_secs(10), Duration::from_secs(60));
        a.on_read(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        let w = a.watch();
        tokio::pin!(w);
        assert!(tokio::time::timeout(Duration::from_secs(30), &mut w)
            .await
            .is_err());
        assert_eq!(w.await, CloseReason::IdleTimeout);
    }
}

#[cfg(test)]
mod wake_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bytes_arriving_on_an_idle_connection_start_the_header_timer() {
        let a = Activity::new(false, Duration::from_secs(10), Duration::from_secs(60));
        let watcher = {
            let a = a.clone();
            tokio::spawn(async move { a.watch().await })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        a.on_read(b"GET / HT");
        let started = Instant::now();
        assert_eq!(watcher.await.unwrap(), CloseReason::HeaderReadTimeout);
        assert!(
            started.elapsed() <= Duration::from_secs(11),
            "not the idle deadline: {:?}",
            started.elapsed()
        );
    }
}
