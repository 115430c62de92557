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

/// Spans the exporter is given: the gateway's own, at debug level or above.
fn exported(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span()
        && meta.target().starts_with("cognito_gate")
        && *meta.level() <= tracing::Level::DEBUG
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
    let lines = match log.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(json::JsonLines)
            .with_writer(std::io::stderr)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let exporting = match tracing {
        Some(cfg) => otel::Exporting::start(cfg)?,
        None => otel::Exporting::off(),
    };
    let spans = exporting
        .layer()
        .map(|l| l.with_filter(tracing_subscriber::filter::filter_fn(exported)));
    let installed = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(spans)
        .try_init()
        .is_ok();
    if installed && tracing.is_some() {
        otel::set_enabled();
    }
    Ok(exporting)
}
