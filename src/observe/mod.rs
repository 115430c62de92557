//! What the gateway tells about what it does, besides metrics: log lines (text or JSON, to
//! stderr) and OpenTelemetry spans (`[tracing]`, exported over OTLP).
//!
//! Each request runs inside a `request` span (request id, method, host, client address, route),
//! so every line logged while serving it — exchange, JWKS, upstream, WebSocket, authorizer —
//! carries those fields, in text (`request{request_id=… route=…}: …`) and in JSON (as top-level
//! keys). Inner spans (authorization, the private API call, JWKS fetches, Valkey round trips,
//! the upstream call) are at debug level: nothing records them unless `[tracing]` exports spans
//! or the log level is debug, so they cost nothing otherwise.

mod json;
pub mod otel;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat, TracingConfig};

/// The log lines' layer: text, or JSON with the span fields as top-level keys.
fn lines<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(json::SpanFields)
            .event_format(json::JsonLines)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .boxed(),
    }
}

/// Log lines only (the command-line tools).
pub(crate) fn init_logs(log: &LogConfig) {
    let _ = init(log, None);
}

/// Installs the global subscriber: the log lines (RUST_LOG wins over `log.level` when set) and,
/// with `[tracing]`, the span exporter. Must run inside the Tokio runtime (the gRPC exporter's
/// channel lives there). Safe to call twice (the second call installs nothing). The returned
/// guard flushes the spans still buffered when the gateway stops.
pub(crate) fn init(
    log: &LogConfig,
    tracing: Option<&TracingConfig>,
) -> Result<otel::Exporting, otel::ExportError> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let exporting = match tracing {
        Some(cfg) => otel::Exporting::start(cfg)?,
        None => otel::Exporting::off(),
    };
    // Two shapes, so that without an exporter the filter is global: a callsite it disables
    // (hyper's, h2's, the gateway's debug spans) is cached as disabled and costs nothing. With
    // one, each layer has its own filter: the log lines the configured level, the exporter the
    // gateway's own spans and events at debug and above.
    let installed = match exporting.layer() {
        None => tracing_subscriber::registry()
            .with(filter)
            .with(lines(log.format))
            .try_init()
            .is_ok(),
        Some(spans) => {
            let ours = tracing_subscriber::filter::Targets::new()
                .with_target("cognito_gate", tracing::Level::DEBUG);
            tracing_subscriber::registry()
                .with(lines(log.format).with_filter(filter))
                .with(spans.with_filter(ours))
                .try_init()
                .is_ok()
        }
    };
    if installed && tracing.is_some() {
        otel::set_enabled();
    }
    Ok(exporting)
}
