//! One record per request: the request metrics (by route, status, auth decision, upstream
//! error) and, when enabled, one access-log event (`cognito_gate::access`), written when the
//! response body has been sent (so that it can say how many bytes were).

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Uri, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use rustc_hash::FxHashMap;

use crate::body::{Body, BoxError};

use super::metrics::{AuthLabels, RequestMetrics, RouteKind, RouteSeries, RouteStatus};
use crate::config::RouteConfig;
use crate::error::{Audit, Decision, UpstreamError};
use crate::metrics::RouteLabel;

/// What the metrics and the access log record about one request.
#[derive(Default)]
pub struct Outcome {
    pub route: Option<Arc<RouteConfig>>,
    pub audit: Option<Audit>,
    pub upstream_error: Option<UpstreamError>,
    pub sub: Option<String>,
    pub client_id: Option<String>,
    pub client: Option<IpAddr>,
    /// The access log is on: record `sub` and `client_id`.
    pub logged: bool,
    /// The authority the request was routed on (kept when the access log is on).
    pub host: Option<String>,
    /// The upstream's answer and how long it took to its response headers.
    pub upstream_status: Option<u16>,
    pub upstream_latency: Option<Duration>,
    /// The limit that answered 429 (`[throttle.NAME]`).
    pub throttled: Option<Arc<str>>,
    /// The name of the API key the request presented (never the key).
    pub api_key: Option<Arc<str>>,
}

/// What the access line says of the request itself, kept only when the access log is on.
pub struct RequestLine {
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    pub user_agent: Option<HeaderValue>,
    /// The `X-Amzn-Trace-Id` an ALB added.
    pub amzn_trace_id: Option<HeaderValue>,
    /// The request body's bytes, counted as they are forwarded (else its Content-Length).
    pub bytes_in: Arc<AtomicU64>,
}

impl RequestLine {
    pub fn new(method: Method, uri: Uri, version: Version, headers: &HeaderMap) -> RequestLine {
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        RequestLine {
            method,
            uri,
            version,
            user_agent: headers.get(http::header::USER_AGENT).cloned(),
            amzn_trace_id: headers.get(X_AMZN_TRACE_ID).cloned(),
            bytes_in: Arc::new(AtomicU64::new(declared.unwrap_or(0))),
        }
    }
}

/// The header an AWS load balancer adds to each request.
pub const X_AMZN_TRACE_ID: &str = "x-amzn-trace-id";

impl Outcome {
    pub(crate) fn route_name(&self) -> &str {
        self.route.as_ref().map(|r| r.name.as_str()).unwrap_or("")
    }
}

/// The access log is on (checked once per request, so what only it needs is kept only then).
pub fn enabled() -> bool {
    tracing::enabled!(target: "cognito_gate::access", tracing::Level::INFO)
}

/// Counts the request in the metrics.
pub(crate) fn record(
    metrics: &RequestMetrics,
    series: &FxHashMap<String, RouteSeries>,
    outcome: &Outcome,
    status: u16,
    started: Instant,
) {
    let name = outcome.route_name();
    let route = if name.is_empty() { "-" } else { name };
    let series = series.get(route);
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(up) = outcome.upstream_latency {
        match series {
            Some(s) => s.upstream.observe(up.as_secs_f64()),
            None => metrics
                .upstream_duration
                .get_or_create(&RouteLabel {
                    route: route.to_string(),
                })
                .observe(up.as_secs_f64()),
        }
    }
    match series {
        Some(s) => s.duration.observe(elapsed),
        None => metrics
            .request_duration
            .get_or_create(&RouteLabel {
                route: route.to_string(),
            })
            .observe(elapsed),
    }
    match series {
        Some(s) => s.count_status(metrics, status),
        None => {
            metrics
                .requests
                .get_or_create(&RouteStatus {
                    route: route.to_string(),
                    status,
                })
                .inc();
        }
    };
    if let (Some(kind), false) = (outcome.upstream_error, name.is_empty()) {
        metrics
            .upstream_errors
            .get_or_create(&RouteKind {
                route: name.to_string(),
                kind: kind.kind(),
            })
            .inc();
    }
    let Some(audit) = outcome.audit.filter(|_| !name.is_empty()) else {
        return;
    };
    let (decision, reason) = (audit.decision.as_str(), audit.reason.as_str());
    match series {
        Some(s) => {
            let allowed = (audit.decision == Decision::Allow)
                .then(|| s.allowed(reason))
                .flatten();
            match allowed {
                Some(c) => {
                    c.inc();
                }
                None => s.count_decision(metrics, decision, reason),
            }
        }
        None => {
            metrics
                .auth_decisions
                .get_or_create(&AuthLabels {
                    route: route.to_string(),
                    decision,
                    reason,
                })
                .inc();
        }
    }
}

/// Milliseconds, rounded to the microsecond.
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

fn text(v: Option<&HeaderValue>) -> &str {
    v.and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "",
    }
}

/// Everything the access line needs, held until the response body is done.
pub struct Entry {
    pub rid: HeaderValue,
    pub peer: IpAddr,
    pub request: RequestLine,
    pub status: u16,
    /// Time to the response headers.
    pub latency: Duration,
    pub outcome: Outcome,
}

impl Entry {
    /// Writes the access-log event; `bytes_out` is `None` where no body was sent (the
    /// authorizer's checks).
    pub fn write(&self, bytes_out: Option<u64>, complete: bool) {
        let outcome = &self.outcome;
        let (decision, reason) = match outcome.audit {
            Some(a) => (a.decision.as_str(), a.reason.as_str()),
            None => ("", ""),
        };
        let r = &self.request;
        tracing::info!(
            target: "cognito_gate::access",
            request_id = %self.rid.to_str().unwrap_or(""),
            client.addr = %outcome.client.unwrap_or(self.peer),
            method = %r.method,
            host = %outcome.host.as_deref().unwrap_or(""),
            path = %r.uri.path(),
            protocol = %protocol(r.version),
            route = %outcome.route_name(),
            status = self.status,
            latency_ms = millis(self.latency),
            bytes_in = r.bytes_in.load(Ordering::Relaxed),
            bytes_out = bytes_out.unwrap_or(0),
            complete,
            upstream.status = outcome.upstream_status.unwrap_or(0),
            upstream.latency_ms = outcome.upstream_latency.map_or(0.0, millis),
            auth.decision = %decision,
            auth.reason = %reason,
            sub = %outcome.sub.as_deref().unwrap_or(""),
            client_id = %outcome.client_id.as_deref().unwrap_or(""),
            api_key = %outcome.api_key.as_deref().unwrap_or(""),
            throttled = %outcome.throttled.as_deref().unwrap_or(""),
            user_agent = %text(r.user_agent.as_ref()),
            amzn_trace_id = %text(r.amzn_trace_id.as_ref()),
        );
    }

    /// The response with its body counted; the line is written when the body is done (or
    /// dropped, when the client went away first: `complete=false`).
    pub fn on_body_end(self, resp: http::Response<Body>) -> http::Response<Body> {
        resp.map(|inner| {
            Logged {
                inner,
                entry: Some(self),
                bytes: 0,
                complete: false,
            }
            .boxed()
        })
    }
}

/// A response body that writes the access line when it is dropped.
struct Logged {
    inner: Body,
    entry: Option<Entry>,
    bytes: u64,
    complete: bool,
}

impl HttpBody for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
            }
            Poll::Ready(None) => this.complete = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            let complete = self.complete || self.inner.is_end_stream();
            entry.write(Some(self.bytes), complete);
        }
    }
}
