//! `upstream = "builtin:echo"`: answers with a JSON description of the request exactly as an
//! upstream would have received it.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Map, Value};

use crate::body::json_response;
use crate::body::{is_too_large, Body};
use crate::error::GatewayError;

/// Bodies up to this size are included as text; larger ones are only counted.
const MAX_ECHOED_BODY: usize = 64 * 1024;

pub async fn respond(req: Request<Body>) -> Result<Response<Body>, GatewayError> {
    let (parts, body) = req.into_parts();
    let bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if is_too_large(e.as_ref()) => return Err(GatewayError::BodyTooLarge),
        Err(_) => return Err(GatewayError::BadRequest("request body could not be read")),
    };
    let mut headers = Map::new();
    for name in parts.headers.keys() {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        headers.insert(name.as_str().to_string(), Value::String(values.join(", ")));
    }
    let body_text = match std::str::from_utf8(&bytes) {
        Ok(s) if bytes.len() <= MAX_ECHOED_BODY => Value::String(s.to_string()),
        _ => Value::Null,
    };
    let desc = json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "headers": headers,
        "body_bytes": bytes.len(),
        "body": body_text,
    });
    Ok(json_response(
        StatusCode::OK,
        Bytes::from(serde_json::to_vec(&desc).expect("JSON value serialises")),
    ))
}
