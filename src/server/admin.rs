//! The admin listener: `/metrics`, and health and readiness at both `/healthz`/`/readyz` and the
//! configured paths. It sees the metrics registry and readiness, nothing else of the gateway.

use http::{Request, Response, StatusCode};

use crate::body::json_message;
use crate::body::Body;
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
        // OpenMetrics for a scraper that asks for it (Prometheus does); the Prometheus text
        // format 0.0.4 for anything else (curl, older agents).
        let openmetrics = req
            .headers()
            .get_all(http::header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("application/openmetrics-text"));
        let text = metrics::encode(view.registry);
        let (body, content_type) = if openmetrics {
            (
                text,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        } else {
            (
                metrics::to_prometheus_text(&text),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        };
        let mut resp = Response::new(crate::body::full(body));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        return resp;
    }
    health_response(path, "/healthz", "/readyz", view.readiness)
        .or_else(|| health_response(path, view.health_path, view.ready_path, view.readiness))
        .unwrap_or_else(|| json_message(StatusCode::NOT_FOUND, "Not Found"))
}
