//! Serving: the runtime, signal handling (SIGTERM/SIGINT drain and stop, SIGHUP reloads).

use std::path::PathBuf;
use std::process::ExitCode;

use super::{exit, load, server_runtime};
use crate::config::Config;

pub fn serve(config: Config, source: &str, path: Option<PathBuf>) -> ExitCode {
    server_runtime(config.server.worker_threads).block_on(async move {
        let exporting = match crate::observe::init(&config.log, config.tracing.as_ref()) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("cognito-gate: {e}");
                return ExitCode::from(exit::CONFIG);
            }
        };
        tracing::info!(
            config = source,
            version = env!("CARGO_PKG_VERSION"),
            "starting"
        );
        if source == super::EMBEDDED_NAME {
            tracing::warn!(
                "serving the embedded development configuration (the development IdP, its keys and demo passwords): for development only; give --config in production"
            );
        }
        // Signal handlers first, so a signal that arrives during start-up is not lost.
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
        let running = match crate::start(config).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                eprintln!("cognito-gate: {e}");
                let _ = tokio::task::spawn_blocking(move || exporting.shutdown()).await;
                return ExitCode::from(exit::CONFIG);
            }
        };
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
                _ = hup.recv() => {
                    reload(&running, path.as_ref()).await;
                    continue;
                }
            };
            tracing::info!(signal = name, "shutdown requested");
            break;
        }
        running.shutdown().await;
        // The exporter's thread sends what is buffered; the runtime keeps serving its calls.
        let _ = tokio::task::spawn_blocking(move || exporting.shutdown()).await;
        ExitCode::SUCCESS
    })
}

/// SIGHUP: re-reads the configuration (and with it TLS certificates and a JWKS file). A bad
/// configuration is logged key by key and the running one stays in force.
async fn reload(running: &crate::RunningGateway, path: Option<&PathBuf>) {
    let config = match load(path) {
        Ok((c, _)) => c,
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(problem = %e, "reload rejected: configuration invalid");
            }
            running.reload_rejected();
            return;
        }
    };
    match running.reload(config).await {
        Ok(summary) => {
            tracing::info!(
                keys_rebuilt = summary.keys_rebuilt,
                exchange_rebuilt = summary.exchange_rebuilt,
                tls_reloaded = summary.tls_reloaded,
                limits_reset = summary.limits_reset.join(","),
                api_keys = summary.api_keys,
                "configuration reloaded"
            );
            if !summary.needs_restart.is_empty() {
                tracing::warn!(
                    settings = summary.needs_restart.join(","),
                    "these settings changed but only take effect after a restart"
                );
            }
        }
        Err(e) => tracing::error!(error = %e, "reload rejected; the running configuration stays"),
    }
}
