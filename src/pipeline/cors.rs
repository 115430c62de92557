//! CORS on a route (`[routes.cors]`): preflights answered by the gateway itself, with no auth and
//! never forwarded, and `Access-Control-Allow-Origin` on every response of the route for an
//! allowed origin — the gateway's own 401/403/429/5xx included, so a browser can read the error
//! (API Gateway's gateway responses). A disallowed origin gets no CORS headers at all.

use http::header::{
    HeaderMap, HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS,
    ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS,
    ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{Method, Request, Response, StatusCode};

use crate::body::{empty, Body};
use crate::config::CorsConfig;

/// A preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`; returns the method
/// the actual request will use (what the route is chosen by).
pub(crate) fn preflight_method<B>(req: &Request<B>) -> Option<Method> {
    if req.method() != Method::OPTIONS || !req.headers().contains_key(ORIGIN) {
        return None;
    }
    let m = req.headers().get(ACCESS_CONTROL_REQUEST_METHOD)?;
    Method::from_bytes(m.as_bytes()).ok()
}

/// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed.
fn allow_origin(cors: &CorsConfig, origin: &HeaderValue) -> Option<HeaderValue> {
    match &cors.allow_origins {
        None => Some(HeaderValue::from_static("*")),
        Some(list) => list.iter().any(|o| o == origin).then(|| origin.clone()),
    }
}

/// The answer to a preflight: 204, with what the route allows when the origin is allowed (the
/// origin headers themselves are added by `decorate`, as on every response of the route).
pub fn preflight(cors: &CorsConfig, origin: Option<&HeaderValue>) -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    if origin.and_then(|o| allow_origin(cors, o)).is_some() {
        let h = resp.headers_mut();
        h.insert(ACCESS_CONTROL_ALLOW_METHODS, cors.allow_methods.clone());
        if let Some(v) = &cors.allow_headers {
            h.insert(ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
        }
        h.insert(ACCESS_CONTROL_MAX_AGE, cors.max_age.clone());
    }
    resp
}

/// Removes every `Access-Control-*` header (an upstream's response on a CORS route, before the
/// gateway adds its own).
pub(crate) fn remove_upstream_headers(headers: &mut HeaderMap) {
    let names: Vec<http::HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

/// Adds the CORS headers to a response of the route, when the request's origin is allowed.
pub(crate) fn decorate(headers: &mut HeaderMap, cors: &CorsConfig, origin: Option<&HeaderValue>) {
    let Some(allowed) = origin.and_then(|o| allow_origin(cors, o)) else {
        return;
    };
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
    headers.append(VARY, HeaderValue::from_static("Origin"));
    if cors.allow_credentials {
        headers.insert(
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    if let Some(v) = &cors.expose_headers {
        headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
    }
}
