//! The body type used on both sides of the proxy, a streaming size limit, and the gateway's own
//! JSON answers.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// `{"message": ...}` with `content-type: application/json`.
pub(crate) fn json_message(status: StatusCode, message: &str) -> Response<Body> {
    // `{"message":...}` written directly: no intermediate JSON map on the (hot) denial path.
    let mut body = Vec::with_capacity(message.len() + 16);
    body.extend_from_slice(b"{\"message\":");
    serde_json::to_writer(&mut body, message).expect("a string always serialises");
    body.push(b'}');
    json_response(status, Bytes::from(body))
}

pub(crate) fn json_response(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The error a `Capped` body yields once more than its limit has been read.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {limit} bytes")]
pub(crate) struct TooLarge {
    pub limit: u64,
}

/// Streams a body through, failing once more than `limit` bytes have passed (so a chunked
/// upload is cut off without buffering it).
pub(crate) struct Capped<B> {
    inner: B,
    remaining: u64,
    limit: u64,
    /// Where the bytes that passed are added up (for the access log), when it is on.
    counted: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl<B> Capped<B> {
    pub fn new(inner: B, limit: u64) -> Self {
        Capped {
            inner,
            remaining: limit,
            limit,
            counted: None,
        }
    }

    /// Also adds the bytes that pass to `counter`.
    pub fn counting(
        mut self,
        counter: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    ) -> Self {
        self.counted = counter;
        self
    }
}

impl<B> HttpBody for Capped<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > this.remaining {
                        this.remaining = 0;
                        return Poll::Ready(Some(Err(Box::new(TooLarge { limit: this.limit }))));
                    }
                    this.remaining -= len;
                    if let Some(c) = &this.counted {
                        c.fetch_add(len, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            // The client's body did not parse (a bad chunk size, a connection cut mid-body):
            // the client's fault, not the upstream's.
            Poll::Ready(Some(Err(e))) => {
                Poll::Ready(Some(Err(Box::new(ClientBodyError(e.into())))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The error a `Capped` body yields when the client's body itself fails.
#[derive(Debug, thiserror::Error)]
#[error("malformed request body: {0}")]
pub(crate) struct ClientBodyError(#[source] BoxError);

/// True when `err` (or one of its sources) is a `TooLarge`.
pub(crate) fn is_too_large(err: &(dyn std::error::Error + 'static)) -> bool {
    has_source::<TooLarge>(err)
}

/// True when `err` (or one of its sources) is a `ClientBodyError`.
pub(crate) fn is_client_body_error(err: &(dyn std::error::Error + 'static)) -> bool {
    has_source::<ClientBodyError>(err)
}

fn has_source<T: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<T>() {
            return true;
        }
        cur = e.source();
    }
    false
}
