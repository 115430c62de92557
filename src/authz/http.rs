//! The HTTP forms of the external authorizer, told apart by where they ask:
//! - `/nginx`: nginx `auth_request` (and oauth2-proxy-style `/auth` endpoints), the client's
//!   request in `X-Original-URI` and `X-Original-Method`, its host in `Host`;
//! - `/traefik`: Traefik `forwardAuth`, in `X-Forwarded-Uri`, `-Method`, `-Host`, `-Proto`,
//!   `-For`;
//! - under `[authz] path_prefix` (default `/envoy`): Envoy ext_authz HTTP, where the check itself
//!   is the client's request (method, path after the prefix, Host).
//!
//! Allow is a 200 whose headers are the ones to set upstream (nginx: `auth_request_set`,
//! Traefik: `authResponseHeaders`, Envoy: `allowed_upstream_headers`), with the ones to remove
//! in `x-envoy-auth-headers-to-remove`. Deny is proxy mode's answer; nginx passes only 401 and
//! 403 through and shows its own page, so the JSON body also travels in `x-cognito-gate-body`
//! for its `error_page` locations (docs/configuration.md, "Authorizer mode").

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName, HeaderValue, HOST};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::metrics::AuthzMetrics;
use super::{forwarded_client, may_ask, Original, Protocol, Verdict};
use crate::body::json_message;
use crate::body::{empty, full, Body};
use crate::config::DEFAULT_AUTHZ_PATH_PREFIX as DEFAULT_PATH_PREFIX;
use crate::pipeline::Gateway;
use crate::proxy::headers::{X_FORWARDED_HOST, X_REQUEST_ID};

const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
/// Envoy's HTTP ext_authz reads the headers to remove upstream from this response header.
pub(crate) const HEADERS_TO_REMOVE: HeaderName =
    HeaderName::from_static("x-envoy-auth-headers-to-remove");
/// The denial's JSON body, for nginx, which shows its own page for a failed `auth_request`.
pub(crate) const BODY_HEADER: HeaderName = HeaderName::from_static("x-cognito-gate-body");

/// Answers one request on the HTTP authorizer listener.
pub(crate) async fn serve(
    gateway: Arc<Gateway>,
    metrics: &AuthzMetrics,
    peer: IpAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    if !may_ask(&gateway, peer) {
        tracing::warn!(peer = %peer, "authorizer check from outside [authz] allow_from: refused");
        return json_message(StatusCode::FORBIDDEN, "Forbidden");
    }
    let (parts, _body) = req.into_parts();
    let (protocol, original) =
        match original(&gateway, peer, parts.method, &parts.uri, parts.headers) {
            Ok(o) => o,
            Err(why) => return json_message(StatusCode::BAD_REQUEST, why),
        };
    let (verdict, rid) = gateway.check(original, protocol, metrics).await;
    match verdict {
        Verdict::Allow {
            set,
            remove,
            response,
        } => {
            let mut resp = Response::new(empty());
            let headers = resp.headers_mut();
            for (name, value) in set {
                headers.insert(name, value);
            }
            if !remove.is_empty() {
                let list: Vec<&str> = remove.iter().map(HeaderName::as_str).collect();
                if let Ok(v) = HeaderValue::from_str(&list.join(",")) {
                    headers.insert(HEADERS_TO_REMOVE, v);
                }
            }
            for (name, value) in &response {
                headers.insert(name.clone(), value.clone());
            }
            resp
        }
        Verdict::Respond(resp) => {
            let (mut parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            if protocol == Protocol::Nginx {
                if let Ok(v) = HeaderValue::from_bytes(&body) {
                    parts.headers.insert(BODY_HEADER, v);
                }
            }
            parts.headers.insert(X_REQUEST_ID, rid);
            Response::from_parts(parts, full(body))
        }
    }
}

/// Where each form asks on the HTTP listener. The form is chosen by the check's path, never by
/// the headers it carries: nginx and Traefik pass the client's own headers to the checker, so a
/// client's `X-Original-URI` must not turn a Traefik check into an nginx one.
pub const NGINX_PATH: &str = "/nginx";
pub const TRAEFIK_PATH: &str = "/traefik";

/// Which form the check is in, and the client's request it describes.
fn original(
    gateway: &Gateway,
    peer: IpAddr,
    method: Method,
    uri: &http::Uri,
    mut headers: HeaderMap,
) -> Result<(Protocol, Original), &'static str> {
    let client = forwarded_client(gateway, peer, &headers);
    let prefix = gateway
        .config
        .authz
        .as_ref()
        .map(|a| a.path_prefix.as_str())
        .unwrap_or(DEFAULT_PATH_PREFIX);
    // The headers of the forms this check is not in are the client's: never read, never passed.
    let nginx = (
        headers.remove(X_ORIGINAL_URI),
        headers.remove(X_ORIGINAL_METHOD),
    );
    let traefik = (
        headers.remove(X_FORWARDED_URI),
        headers.remove(X_FORWARDED_METHOD),
    );
    let (protocol, method, path, host) = match uri.path() {
        NGINX_PATH => {
            let (Some(target), Some(method)) = nginx else {
                return Err("an nginx check needs X-Original-URI and X-Original-Method (proxy_set_header X-Original-URI $request_uri; proxy_set_header X-Original-Method $request_method)");
            };
            // Host as nginx sets it (proxy_set_header Host $host): nginx passes the client's
            // own X-Forwarded-Host through, so it is not read here.
            let host = headers.get(HOST).cloned();
            (Protocol::Nginx, method_of(&method)?, text(&target)?, host)
        }
        TRAEFIK_PATH => {
            let (Some(target), Some(method)) = traefik else {
                return Err("a Traefik check needs X-Forwarded-Uri and X-Forwarded-Method");
            };
            // Traefik sets X-Forwarded-Host itself (trustForwardHeader: false).
            let host = headers.get(X_FORWARDED_HOST).or(headers.get(HOST)).cloned();
            (Protocol::Traefik, method_of(&method)?, text(&target)?, host)
        }
        _ => {
            // Envoy HTTP: the check is the client's request, its path under the prefix.
            let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let path = match pq.strip_prefix(prefix) {
                Some(rest) if rest.starts_with('/') => rest.to_string(),
                Some(rest) if rest.is_empty() || rest.starts_with('?') => format!("/{rest}"),
                _ => {
                    return Err(
                        "not a check: nginx asks on /nginx, Traefik on /traefik, Envoy under [authz] path_prefix",
                    )
                }
            };
            let host = headers.get(HOST).cloned();
            (Protocol::EnvoyHttp, method, path, host)
        }
    };
    let host = match host {
        Some(h) => Some(text(&h)?),
        None => None,
    };
    // The check's own framing is not the client's.
    headers.remove(HOST);
    Ok((
        protocol,
        Original {
            method,
            path,
            host,
            headers,
            client,
        },
    ))
}

fn method_of(v: &HeaderValue) -> Result<Method, &'static str> {
    Method::from_bytes(v.as_bytes()).map_err(|_| "invalid original method")
}

fn text(v: &HeaderValue) -> Result<String, &'static str> {
    v.to_str()
        .map(str::to_string)
        .map_err(|_| "original request header is not text")
}
