//! `[tracing]`: OpenTelemetry export of the gateway's spans (DESIGN §12).

use std::time::Duration;

/// How spans reach the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/HTTP with protobuf bodies, `POST {endpoint}/v1/traces`.
    Http,
    /// OTLP/gRPC, `opentelemetry.proto.collector.trace.v1.TraceService/Export`.
    Grpc,
}

impl OtlpProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Http => "http",
            OtlpProtocol::Grpc => "grpc",
        }
    }
}

/// `[tracing]` with an endpoint: spans are exported. Without the section, or with an empty
/// `otlp_endpoint`, nothing is (and the request path pays nothing for it).
#[derive(Debug, Clone, PartialEq)]
pub struct TracingConfig {
    /// For OTLP/HTTP the traces URL (`/v1/traces` added when the endpoint has no path); for
    /// gRPC the collector's address.
    pub endpoint: http::Uri,
    pub protocol: OtlpProtocol,
    /// Parent-based: a request whose `traceparent` says sampled is always kept; others are kept
    /// at this ratio.
    pub sample_ratio: f64,
    /// Sent with every export (e.g. a vendor's API key): values are never printed.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub service_name: String,
    /// Extra resource attributes (`deployment.environment`, `cloud.region`, ...).
    pub resource_attributes: Vec<(String, String)>,
    /// How long one export may take before it is dropped.
    pub timeout: Duration,
    /// A CA bundle (PEM) to trust for an `https` endpoint, beside the system roots.
    pub ca_file: Option<std::path::PathBuf>,
}
