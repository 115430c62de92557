//! OpenTelemetry: the span exporter (OTLP over HTTP or gRPC, batched on its own thread), and
//! W3C trace context continued from the client and sent on to the upstream.
//!
//! Off unless `[tracing]` names an endpoint. Off, [`enabled`] is false and the helpers below
//! return at once: the request path neither reads nor writes trace headers for it (the client's
//! `traceparent` then travels to the upstream untouched, as any other header).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_http::{HeaderExtractor, HeaderInjector, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::{OtlpProtocol, TracingConfig};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (`[tracing]` configured and the exporter installed).
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

pub(super) fn set_enabled() {
    ENABLED.store(true, Ordering::Relaxed);
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("tracing.otlp_endpoint: cannot set up the OTLP exporter: {0}")]
    Build(String),
    #[error("tracing.ca_file: {0}")]
    Ca(String),
}

/// The exporter while the gateway runs; [`Exporting::shutdown`] sends what is still buffered.
pub struct Exporting {
    provider: Option<SdkTracerProvider>,
}

impl Exporting {
    pub(super) fn off() -> Exporting {
        Exporting { provider: None }
    }

    pub(super) fn start(cfg: &TracingConfig) -> Result<Exporting, ExportError> {
        let exporter = match cfg.protocol {
            OtlpProtocol::Http => {
                let client = HttpExport::new(cfg)?;
                opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_http_client(client)
                    .with_endpoint(cfg.endpoint.to_string())
                    .with_timeout(cfg.timeout)
                    .with_headers(
                        cfg.headers
                            .iter()
                            .filter_map(|(k, v)| {
                                Some((k.as_str().to_string(), v.to_str().ok()?.to_string()))
                            })
                            .collect::<HashMap<_, _>>(),
                    )
                    .build()
            }
            OtlpProtocol::Grpc => {
                let mut metadata = tonic::metadata::MetadataMap::new();
                for (k, v) in &cfg.headers {
                    if let (Ok(k), Ok(v)) = (
                        tonic::metadata::MetadataKey::from_bytes(k.as_str().as_bytes()),
                        tonic::metadata::MetadataValue::try_from(v.as_bytes()),
                    ) {
                        metadata.insert(k, v);
                    }
                }
                let mut builder = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(cfg.endpoint.to_string())
                    .with_timeout(cfg.timeout)
                    .with_metadata(metadata);
                if cfg.endpoint.scheme_str() == Some("https") {
                    let mut tls = tonic::transport::ClientTlsConfig::new().with_native_roots();
                    if let Some(ca) = &cfg.ca_file {
                        let pem = std::fs::read(ca)
                            .map_err(|e| ExportError::Ca(format!("{}: {e}", ca.display())))?;
                        tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
                    }
                    builder = builder.with_tls_config(tls);
                }
                builder.build()
            }
        }
        .map_err(|e| ExportError::Build(e.to_string()))?;
        let resource = Resource::builder()
            .with_service_name(cfg.service_name.clone())
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .with_attributes(
                cfg.resource_attributes
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                cfg.sample_ratio,
            ))))
            .with_resource(resource)
            .build();
        Ok(Exporting {
            provider: Some(provider),
        })
    }

    /// The layer that turns the gateway's spans into OpenTelemetry spans, when exporting.
    pub(super) fn layer<S>(&self) -> Option<impl tracing_subscriber::Layer<S>>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        let provider = self.provider.as_ref()?;
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("cognito-gate"))
                .with_tracked_inactivity(false)
                .with_threads(false)
                .with_location(false),
        )
    }

    /// Exports the spans still buffered (up to the export timeout) and stops the exporter.
    pub fn shutdown(self) {
        if let Some(p) = self.provider {
            if let Err(e) = p.shutdown() {
                tracing::warn!(error = %e, "spans still buffered could not be exported");
            }
        }
    }
}

/// Names `span` (once the route is known: `GET orders`); a no-op unless exporting.
pub fn rename(span: &tracing::Span, name: String) {
    if !enabled() {
        return;
    }
    use opentelemetry::trace::TraceContextExt as _;
    span.context().span().update_name(name);
}

/// Continues the client's trace: `traceparent`/`tracestate` make `span`'s parent (its trace id,
/// and a sampled flag that wins over `sample_ratio`). Without them `span` starts a trace.
pub fn continue_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    if !enabled() {
        return;
    }
    if !headers.contains_key("traceparent") {
        return;
    }
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(cx);
}

/// Writes the current span's context as `traceparent`/`tracestate` (replacing the client's),
/// so the upstream continues the same trace with the gateway's span as parent.
pub fn inject(headers: &mut http::HeaderMap) {
    if !enabled() {
        return;
    }
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
}

/// OTLP/HTTP through the gateway's own HTTP client (rustls, the system roots plus
/// `tracing.ca_file`), run on the gateway's runtime: the exporter's batch thread has none.
#[derive(Debug)]
struct HttpExport {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl HttpExport {
    fn new(cfg: &TracingConfig) -> Result<HttpExport, ExportError> {
        let builder = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cognito-gate/", env!("CARGO_PKG_VERSION")));
        let client = crate::tls::reqwest_client(builder, cfg.ca_file.as_deref())
            .map_err(|e| ExportError::Ca(e.to_string()))?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ExportError::Build("no runtime to export from".into()))?;
        Ok(HttpExport { client, runtime })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for HttpExport {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let call = async move {
            let (parts, body) = request.into_parts();
            let url = reqwest::Url::parse(&parts.uri.to_string())?;
            let resp = client
                .request(parts.method, url)
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let mut out = http::Response::builder().status(resp.status());
            if let Some(h) = out.headers_mut() {
                *h = resp.headers().clone();
            }
            // A collector's answer is small; a larger one is not read.
            let body = match resp.content_length() {
                Some(n) if n > 1 << 20 => Bytes::new(),
                _ => resp.bytes().await?,
            };
            Ok::<_, HttpError>(out.body(body)?)
        };
        self.runtime.spawn(call).await?
    }
}
