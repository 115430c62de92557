//! Envoy ext_authz over gRPC (`envoy.service.auth.v3.Authorization/Check`, also Istio's
//! `CUSTOM` provider): the original request from `attributes.request.http` and
//! `attributes.source.address`; allow as `OkHttpResponse` (headers to set, overwriting, and
//! headers to remove), deny as `DeniedHttpResponse` with proxy mode's status, JSON body and
//! `WWW-Authenticate`. Served on the gateway's own connection handling (h2c), so drain,
//! shutdown and the connection limits are the main listener's.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use envoy_types::ext_authz::v3::pb::{
    Address, Authorization, AuthorizationServer, CheckRequest, CheckResponse, DeniedHttpResponse,
    HeaderAppendAction, HeaderValue as PbHeaderValue, HeaderValueOption, HttpResponse, HttpStatus,
    OkHttpResponse,
};
use envoy_types::pb::google::rpc;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tonic::codegen::Service;

use super::metrics::AuthzMetrics;
use super::{may_ask, Original, Protocol, Verdict};
use crate::body::{Body, BoxError};
use crate::pipeline::client::client_addr;
use crate::pipeline::Gateway;

/// gRPC status codes (google.rpc.Code) the answers use.
const OK: i32 = 0;
const INVALID_ARGUMENT: i32 = 3;
const PERMISSION_DENIED: i32 = 7;
const UNAUTHENTICATED: i32 = 16;

struct Checker {
    gateway: Arc<Gateway>,
    metrics: AuthzMetrics,
    peer: IpAddr,
}

#[tonic::async_trait]
impl Authorization for Checker {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        if !may_ask(&self.gateway, self.peer) {
            tracing::warn!(peer = %self.peer, "ext_authz check from outside [authz] allow_from: refused");
            return Err(tonic::Status::permission_denied(
                "not in [authz] allow_from",
            ));
        }
        let original = match original(&self.gateway, request.into_inner()) {
            Ok(o) => o,
            Err(why) => {
                return Ok(tonic::Response::new(status_only(INVALID_ARGUMENT, why)));
            }
        };
        let (verdict, _rid) = self
            .gateway
            .check(original, Protocol::Grpc, &self.metrics)
            .await;
        Ok(tonic::Response::new(answer(verdict).await))
    }
}

/// Answers one HTTP/2 request on the gRPC listener.
pub(crate) async fn serve(
    gateway: Arc<Gateway>,
    metrics: &AuthzMetrics,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let mut svc = AuthorizationServer::new(Checker {
        gateway,
        metrics: metrics.clone(),
        peer,
    });
    let resp = match svc.call(req).await {
        Ok(resp) => resp,
        Err(never) => match never {},
    };
    let (parts, body) = resp.into_parts();
    // A unary answer: collected, then sent as its data and its trailers (grpc-status).
    let frames: Vec<Result<Frame<Bytes>, BoxError>> = match body.collect().await {
        Ok(collected) => {
            let trailers = collected.trailers().cloned();
            let mut frames = vec![Ok(Frame::data(collected.to_bytes()))];
            if let Some(t) = trailers {
                frames.push(Ok(Frame::trailers(t)));
            }
            frames
        }
        Err(status) => vec![Err(Box::new(status) as BoxError)],
    };
    Response::from_parts(
        parts,
        StreamBody::new(futures_util::stream::iter(frames)).boxed(),
    )
}

/// The client's request from the check's attributes.
fn original(gateway: &Gateway, check: CheckRequest) -> Result<Original, &'static str> {
    let attributes = check.attributes.ok_or("no attributes")?;
    let http = attributes
        .request
        .and_then(|r| r.http)
        .ok_or("no attributes.request.http")?;
    let method = Method::from_bytes(http.method.as_bytes()).map_err(|_| "invalid method")?;
    let mut headers = HeaderMap::with_capacity(http.headers.len());
    for (name, value) in &http.headers {
        // Pseudo-headers travel in their own fields.
        if name.starts_with(':') {
            continue;
        }
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| "invalid header name")?;
        let value = HeaderValue::from_str(value).map_err(|_| "invalid header value")?;
        headers.append(name, value);
    }
    // `path` is the request target (path and query) as the client sent it.
    let path = if http.path.is_empty() {
        return Err("no path");
    } else {
        http.path
    };
    let source = attributes
        .source
        .and_then(|p| p.address)
        .and_then(|a| a.address)
        .and_then(|a| match a {
            Address::SocketAddress(s) => s.address.parse::<IpAddr>().ok(),
            _ => None,
        })
        .ok_or("no attributes.source.address")?;
    let client = client_addr(source, &headers, &gateway.config.server.trusted_proxies);
    Ok(Original {
        method,
        path,
        host: (!http.host.is_empty()).then_some(http.host),
        headers,
        client,
    })
}

/// The verdict as Envoy's answer.
async fn answer(verdict: Verdict) -> CheckResponse {
    match verdict {
        Verdict::Allow {
            set,
            remove,
            response,
        } => CheckResponse {
            status: Some(rpc::Status {
                code: OK,
                ..Default::default()
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers: set
                    .iter()
                    .map(|(n, v)| option(n, v, HeaderAppendAction::OverwriteIfExistsOrAdd))
                    .collect(),
                headers_to_remove: remove.iter().map(|n| n.as_str().to_string()).collect(),
                response_headers_to_add: response
                    .iter()
                    .map(|(n, v)| option(n, v, HeaderAppendAction::OverwriteIfExistsOrAdd))
                    .collect(),
                ..Default::default()
            })),
            ..Default::default()
        },
        Verdict::Respond(resp) => {
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let code = if parts.status == http::StatusCode::UNAUTHORIZED {
                UNAUTHENTICATED
            } else {
                PERMISSION_DENIED
            };
            CheckResponse {
                status: Some(rpc::Status {
                    code,
                    ..Default::default()
                }),
                http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                    status: Some(HttpStatus {
                        code: i32::from(parts.status.as_u16()),
                    }),
                    headers: parts
                        .headers
                        .iter()
                        .map(|(n, v)| option(n, v, HeaderAppendAction::OverwriteIfExistsOrAdd))
                        .collect(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                })),
                ..Default::default()
            }
        }
    }
}

fn status_only(code: i32, message: &str) -> CheckResponse {
    CheckResponse {
        status: Some(rpc::Status {
            code,
            message: message.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[allow(deprecated)]
fn option(name: &HeaderName, value: &HeaderValue, action: HeaderAppendAction) -> HeaderValueOption {
    HeaderValueOption {
        // `value`, not `raw_value`: Envoy reads `value` in these answers (1.40 left the headers
        // empty with `raw_value`). A header value the gateway sets is visible ASCII.
        header: Some(PbHeaderValue {
            key: name.as_str().to_string(),
            value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
            raw_value: Vec::new(),
        }),
        append_action: action.into(),
        ..Default::default()
    }
}
