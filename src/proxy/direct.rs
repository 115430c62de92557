//! Plain-HTTP upstream connections driven by the request that uses them.
//!
//! A pooled client (hyper-util's) runs every upstream connection as a task of its own, so each
//! proxied request crosses from the client connection's task to the upstream connection's task
//! and back. Here the request's own task polls the upstream connection: while waiting for the
//! response head, and, through [`PooledBody`], while the response body streams to the client.
//! When the body has been read to its end the connection goes back to an idle list for the next
//! request to the same authority; a connection whose response was not read to the end is closed.
//!
//! At most `pool_max_idle_per_host` connections per authority stay idle, each for at most
//! `pool_idle_timeout` (expired ones are dropped as others come back). An idle connection is not
//! polled, so an upstream that closes it is noticed when it is next taken: taking drives it once, and a connection that is closed or not at once ready is dropped
//! for the next one. A request that a reused connection failed to even start sending (it closed
//! in that instant) is retried once on a new connection; nothing that reached the upstream is
//! sent twice.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use rustc_hash::FxHashMap;
use tokio::net::TcpStream;

use crate::body::{Body, BoxError};

type Conn = Pin<Box<Connection<TokioIo<TcpStream>, Body>>>;

/// One upstream connection: the sending half and the connection state it needs polled.
struct Link {
    sender: SendRequest<Body>,
    conn: Conn,
}

struct Idle {
    link: Link,
    since: Instant,
}

/// Why a request could not be sent.
#[derive(Debug)]
pub(crate) enum DirectError {
    /// No TCP connection within the connect timeout, or refused.
    Connect(String, crate::cause::Cause),
    /// The connection failed or the upstream answered something that is not HTTP/1.
    Http(hyper::Error),
}

pub(crate) struct DirectPool {
    /// Per authority, oldest first; taken from the back (the most recently used connection is
    /// the most likely to still be open), expired ones dropped from the front.
    /// (Keys come from the configuration, so a fast non-keyed hash is safe.)
    idle: Mutex<FxHashMap<Authority, VecDeque<Idle>>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
}

impl DirectPool {
    pub fn new(connect_timeout: Duration, idle_timeout: Duration, max_idle: usize) -> Arc<Self> {
        Arc::new(DirectPool {
            idle: Mutex::new(FxHashMap::default()),
            connect_timeout,
            idle_timeout,
            max_idle,
        })
    }

    /// Sends `req` (origin-form URI, Host set) to `authority` and returns the response, whose
    /// body keeps driving the connection.
    pub async fn send(
        self: &Arc<Self>,
        authority: &Authority,
        mut req: Request<Body>,
    ) -> Result<Response<Body>, DirectError> {
        let mut reuse = true;
        loop {
            let (mut link, reused) = match reuse.then(|| self.take_ready(authority)).flatten() {
                Some(link) => (link, true),
                None => (self.connect(authority).await?, false),
            };
            let sending = link.sender.try_send_request(req);
            let mut sending = std::pin::pin!(sending);
            let mut conn = Some(link.conn);
            let result = poll_fn(|cx| {
                if let Some(c) = conn.as_mut() {
                    if c.as_mut().poll(cx).is_ready() {
                        conn = None;
                    }
                }
                sending.as_mut().poll(cx)
            })
            .await;
            match result {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let body = PooledBody {
                        body,
                        state: BodyState::Streaming,
                        link: conn.map(|conn| Link {
                            sender: link.sender,
                            conn,
                        }),
                        pool: self.clone(),
                        authority: authority.clone(),
                    };
                    return Ok(Response::from_parts(parts, Body::new(body)));
                }
                Err(mut e) => match e.take_message() {
                    // A reused connection closed before the request was written: once more on
                    // a new one.
                    Some(r) if reused => {
                        req = r;
                        reuse = false;
                    }
                    _ => return Err(DirectError::Http(e.into_error())),
                },
            }
        }
    }

    /// An idle connection to `authority` that is open and ready for a request.
    fn take_ready(&self, authority: &Authority) -> Option<Link> {
        loop {
            let Idle { mut link, since } = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                idle.get_mut(authority)?.pop_back()?
            };
            if since.elapsed() >= self.idle_timeout {
                continue;
            }
            // Drive it once: this reads a close the upstream sent meanwhile, and lets the
            // connection signal that it wants the next request.
            let waker = std::task::Waker::noop();
            let mut cx = Context::from_waker(waker);
            if link.conn.as_mut().poll(&mut cx).is_ready() {
                continue;
            }
            if let Poll::Ready(Ok(())) = link.sender.poll_ready(&mut cx) {
                return Some(link);
            }
        }
    }

    async fn connect(&self, authority: &Authority) -> Result<Link, DirectError> {
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| {
                DirectError::Connect(
                    format!("connect to {authority} timed out"),
                    crate::cause::Cause::Timeout,
                )
            })?
            .map_err(|e| {
                let cause = crate::cause::Cause::of(&e);
                DirectError::Connect(format!("connect to {authority}: {e}"), cause)
            })?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(DirectError::Http)?;
        Ok(Link {
            sender,
            conn: Box::pin(conn),
        })
    }

    fn release(&self, authority: &Authority, link: Link) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(authority.clone()).or_default();
        while list
            .front()
            .is_some_and(|i| i.since.elapsed() >= self.idle_timeout)
        {
            list.pop_front();
        }
        if list.len() < self.max_idle {
            list.push_back(Idle {
                link,
                since: Instant::now(),
            });
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyState {
    Streaming,
    Ended,
    Failed,
}

/// An upstream response body that keeps its connection going and hands it back to the pool
/// once read to the end.
pub(crate) struct PooledBody {
    body: Incoming,
    state: BodyState,
    link: Option<Link>,
    pool: Arc<DirectPool>,
    authority: Authority,
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(link) = this.link.as_mut() {
            if link.conn.as_mut().poll(cx).is_ready() {
                this.link = None;
            }
        }
        let frame = std::task::ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &frame {
            None => this.state = BodyState::Ended,
            Some(Err(_)) => this.state = BodyState::Failed,
            Some(Ok(_)) if this.body.is_end_stream() => this.state = BodyState::Ended,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        let ended = match self.state {
            BodyState::Ended => true,
            BodyState::Failed => false,
            BodyState::Streaming => self.body.is_end_stream(),
        };
        if let (true, Some(link)) = (ended, self.link.take()) {
            self.pool.release(&self.authority, link);
        }
    }
}
