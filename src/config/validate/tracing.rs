//! `[tracing]`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Ctx;
use crate::config::raw::RawTracing;
use crate::config::{OtlpProtocol, TracingConfig};

/// How long one export may take, by default.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// `None` when tracing is off (no section, or an empty `otlp_endpoint`).
pub(super) fn tracing(cx: &mut Ctx, t: RawTracing) -> Option<TracingConfig> {
    let protocol = match t.protocol.as_deref() {
        None | Some("http") => OtlpProtocol::Http,
        Some("grpc") => OtlpProtocol::Grpc,
        Some(other) => {
            cx.err(
                "tracing.protocol",
                format!("must be \"http\" or \"grpc\", got {other:?}"),
            );
            OtlpProtocol::Http
        }
    };
    let sample_ratio = t.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        cx.err(
            "tracing.sample_ratio",
            format!("must be between 0.0 and 1.0, got {sample_ratio}"),
        );
    }
    let headers = cx.headers("tracing.headers", &t.headers);
    let service_name = t.service_name.unwrap_or_else(|| "cognito-gate".into());
    if service_name.is_empty() {
        cx.err("tracing.service_name", "must not be empty");
    }
    let resource_attributes = resource_attributes(cx, t.resource_attributes);
    let timeout = cx.positive_duration(
        "tracing.timeout",
        t.timeout.as_deref(),
        DEFAULT_EXPORT_TIMEOUT,
    );
    let ca_file = t.ca_file.and_then(|p| cx.path("tracing.ca_file", &p, true));
    let raw = t.otlp_endpoint.unwrap_or_default();
    if raw.is_empty() {
        return None;
    }
    let endpoint = endpoint(cx, &raw, protocol)?;
    Some(TracingConfig {
        endpoint,
        protocol,
        sample_ratio,
        headers,
        service_name,
        resource_attributes,
        timeout,
        ca_file,
    })
}

/// An `http`/`https` URL with a host; for OTLP/HTTP, `/v1/traces` when it has no path.
fn endpoint(cx: &mut Ctx, raw: &str, protocol: OtlpProtocol) -> Option<http::Uri> {
    let bad = |cx: &mut Ctx, why: &str| {
        cx.err(
            "tracing.otlp_endpoint",
            format!("{why}: {raw:?} (e.g. \"http://otel-collector:4318\", or :4317 with protocol = \"grpc\")"),
        );
        None
    };
    let Ok(uri) = raw.parse::<http::Uri>() else {
        return bad(cx, "not a URL");
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return bad(cx, "must be an http:// or https:// URL with a host");
    }
    if protocol == OtlpProtocol::Grpc || !matches!(uri.path(), "" | "/") {
        return Some(uri);
    }
    let scheme = uri.scheme_str().unwrap_or("http");
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or("");
    format!("{scheme}://{authority}/v1/traces").parse().ok()
}

fn resource_attributes(cx: &mut Ctx, map: BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (k, v) in map {
        if k.is_empty() || k.chars().any(|c| c.is_control()) {
            cx.err(
                "tracing.resource_attributes",
                format!("not an attribute name: {k:?}"),
            );
            continue;
        }
        out.push((k, v));
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, OtlpProtocol, Source};

    fn parse(text: &str) -> Result<Config, String> {
        let source = Source {
            name: "t".into(),
            base_dir: ".".into(),
        };
        Config::parse_with_env(text, &source, &|_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn off_unless_an_endpoint_is_given() {
        assert!(parse("").unwrap().tracing.is_none());
        assert!(parse("[tracing]\notlp_endpoint = \"\"\n")
            .unwrap()
            .tracing
            .is_none());
    }

    #[test]
    fn http_endpoints_gain_the_traces_path_and_grpc_ones_do_not() {
        let t = parse("[tracing]\notlp_endpoint = \"http://c:4318\"\n")
            .unwrap()
            .tracing
            .unwrap();
        assert_eq!(t.endpoint.to_string(), "http://c:4318/v1/traces");
        assert_eq!(t.protocol, OtlpProtocol::Http);
        assert_eq!(t.service_name, "cognito-gate");
        let t = parse("[tracing]\notlp_endpoint = \"https://c/custom/path\"\n")
            .unwrap()
            .tracing
            .unwrap();
        assert_eq!(t.endpoint.to_string(), "https://c/custom/path");
        let t = parse("[tracing]\notlp_endpoint = \"http://c:4317\"\nprotocol = \"grpc\"\n")
            .unwrap()
            .tracing
            .unwrap();
        assert_eq!(t.endpoint.to_string(), "http://c:4317/");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("otlp_endpoint = \"c:4318\"", "tracing.otlp_endpoint"),
            ("otlp_endpoint = \"ftp://c\"", "tracing.otlp_endpoint"),
            (
                "otlp_endpoint = \"http://c\"\nprotocol = \"udp\"",
                "tracing.protocol",
            ),
            (
                "otlp_endpoint = \"http://c\"\nsample_ratio = 1.5",
                "tracing.sample_ratio",
            ),
            (
                "otlp_endpoint = \"http://c\"\nheaders = { \"bad name\" = \"x\" }",
                "tracing.headers",
            ),
            (
                "otlp_endpoint = \"http://c\"\ntimeout = \"0s\"",
                "tracing.timeout",
            ),
            (
                "otlp_endpoint = \"http://c\"\nservice_name = \"\"",
                "tracing.service_name",
            ),
        ] {
            let err = parse(&format!("[tracing]\n{text}\n")).unwrap_err();
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
