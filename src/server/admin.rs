//! The admin listener: `/metrics`, and health and readiness at both `/healthz`/`/readyz` and the
//! configured paths. It sees the metrics registry and readiness, nothing else of the gateway.

use http::{Request, Response, StatusCode};

use crate::body::Body;
use crate::error::json_message;
use crate::metrics::{self, Registry};
use crate::ops::{health_response, Readiness};

/// What the admin listener answers from.
pub struct AdminView<'a> {
    pub registry: &'a Registry,
    pub readiness: &'a Readiness,
    /// The configured health and readiness paths (answered besides `/healthz` and `/readyz`).
    pub health_path: &'a str,
    pub ready_path: &'a str,
}

pub fn respond<B>(view: &AdminView<'_>, req: &Request<B>) -> Response<Body> {
    let path = req.uri().path();
    if path == "/metrics" {
        let mut resp = Response::new(crate::body::full(metrics::encode(view.registry)));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
        );
        return resp;
    }
    health_response(path, "/healthz", "/readyz", view.readiness)
        .or_else(|| health_response(path, view.health_path, view.ready_path, view.readiness))
        .unwrap_or_else(|| json_message(StatusCode::NOT_FOUND, "Not Found"))
}
