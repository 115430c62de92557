//! The admin listener: `/metrics`, and health and readiness at both `/healthz`/`/readyz` and the
//! configured paths.

use http::{Request, Response, StatusCode};

use super::health_response;
use crate::body::Body;
use crate::error::json_message;
use crate::pipeline::Gateway;

pub fn respond<B>(gateway: &Gateway, req: &Request<B>) -> Response<Body> {
    let s = &gateway.config.server;
    let path = req.uri().path();
    if path == "/metrics" {
        let m = &gateway.metrics;
        for (pool, keys) in gateway.authorizer.iter().flat_map(|a| a.key_sets()) {
            if let Some(age) = keys.age() {
                m.jwks_age
                    .get_or_create(&crate::ops::metrics::PoolLabel {
                        pool: pool.to_string(),
                    })
                    .set(age.as_secs_f64());
            }
        }
        let mut resp = Response::new(crate::body::full(m.encode()));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
        );
        return resp;
    }
    health_response(path, "/healthz", "/readyz", &gateway.readiness)
        .or_else(|| health_response(path, &s.health_path, &s.ready_path, &gateway.readiness))
        .unwrap_or_else(|| json_message(StatusCode::NOT_FOUND, "Not Found"))
}
