//! `[server]`, `[server.tls]`, `[log]` and `[upstream]`.

use super::*;

pub(super) fn server(cx: &mut Ctx, s: RawServer) -> ServerConfig {
    let tls = s.tls.map(|t| tls(cx, t));
    let listen = match (&s.listen, &tls) {
        (Some(l), _) => cx.addr("server.listen", l),
        (None, Some(_)) => None,
        (None, None) => Some(DEFAULT_LISTEN.parse().expect("valid default")),
    };
    let max_connections = cx.count(
        "server.max_connections",
        s.max_connections,
        DEFAULT_MAX_CONNECTIONS as u64,
        1,
    ) as usize;
    let worker_threads = cx.count("server.worker_threads", s.worker_threads, 0, 0) as usize;
    let max_header_bytes = cx.count(
        "server.max_header_bytes",
        s.max_header_bytes,
        DEFAULT_MAX_HEADER_BYTES as u64,
        1024,
    ) as usize;
    let ipv6_prefix = ipv6_prefix(cx, s.ipv6_prefix);
    let health_path = http_path(cx, "server.health_path", s.health_path, "/healthz");
    let ready_path = http_path(cx, "server.ready_path", s.ready_path, "/readyz");
    ServerConfig {
        listen,
        tls,
        max_connections,
        worker_threads,
        header_read_timeout: cx.positive_duration(
            "server.header_read_timeout",
            s.header_read_timeout.as_deref(),
            DEFAULT_HEADER_READ_TIMEOUT,
        ),
        idle_timeout: cx.positive_duration(
            "server.idle_timeout",
            s.idle_timeout.as_deref(),
            DEFAULT_IDLE_TIMEOUT,
        ),
        max_body_bytes: cx.count(
            "server.max_body_bytes",
            s.max_body_bytes,
            DEFAULT_MAX_BODY_BYTES,
            0,
        ),
        max_header_bytes,
        shutdown_drain: cx.duration(
            "server.shutdown_drain",
            s.shutdown_drain.as_deref(),
            DEFAULT_SHUTDOWN_DRAIN,
        ),
        shutdown_grace: cx.duration(
            "server.shutdown_grace",
            s.shutdown_grace.as_deref(),
            DEFAULT_SHUTDOWN_GRACE,
        ),
        trusted_proxies: cx.cidrs("server.trusted_proxies", &s.trusted_proxies),
        ipv6_prefix,
        health_path,
        ready_path,
    }
}

fn ipv6_prefix(cx: &mut Ctx, value: Option<i64>) -> u8 {
    match value {
        None => DEFAULT_IPV6_PREFIX,
        Some(v @ 1..=128) => v as u8,
        Some(v) => {
            cx.err(
                "server.ipv6_prefix",
                format!("must be a prefix length from 1 to 128, got {v}"),
            );
            DEFAULT_IPV6_PREFIX
        }
    }
}

fn http_path(cx: &mut Ctx, key: &str, value: Option<String>, default: &str) -> String {
    let v = value.unwrap_or_else(|| default.to_string());
    if !v.starts_with('/') || v.contains(['?', '#', ' ']) {
        cx.err(key, format!("must be a path starting with \"/\": {v:?}"));
        return default.to_string();
    }
    v
}

fn tls(cx: &mut Ctx, t: RawTls) -> TlsConfig {
    let listen = match t.listen {
        Some(l) => cx.addr("server.tls.listen", &l),
        None => {
            cx.err("server.tls.listen", "required when [server.tls] is present");
            None
        }
    };
    let file = |cx: &mut Ctx, key: &str, v: Option<String>| match v {
        Some(v) if !v.is_empty() => cx.path(key, &v, true),
        _ => {
            cx.err(key, "required when [server.tls] is present");
            None
        }
    };
    let cert = file(cx, "server.tls.cert", t.cert);
    let key = file(cx, "server.tls.key", t.key);
    let client_ca = t
        .client_ca
        .and_then(|v| cx.path("server.tls.client_ca", &v, true));
    TlsConfig {
        listen: listen.unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
        cert: cert.unwrap_or_default(),
        key: key.unwrap_or_default(),
        client_ca,
        handshake_timeout: cx.positive_duration(
            "server.tls.handshake_timeout",
            t.handshake_timeout.as_deref(),
            DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        ),
    }
}

pub(super) fn log(cx: &mut Ctx, l: RawLog) -> LogConfig {
    let level = l.level.unwrap_or_else(|| "info".into());
    // A bare word that is not a level parses as a target name ("verbose" = trace for a target
    // that does not exist), which silences every line: only levels and target=level.
    if !valid_log_filter(&level) || tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        cx.err(
            "log.level",
            format!(
                "not a log level or filter: {level:?} (use off, error, warn, info, debug, trace, or directives such as \"info,cognito_gate::access=warn\")"
            ),
        );
    }
    let format = match l.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            cx.err(
                "log.format",
                format!("must be \"text\" or \"json\", got {other:?}"),
            );
            LogFormat::Text
        }
    };
    LogConfig { level, format }
}

/// Comma-separated directives, each a level or `target=level`.
fn valid_log_filter(filter: &str) -> bool {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let level = |l: &str| LEVELS.iter().any(|x| x.eq_ignore_ascii_case(l.trim()));
    !filter.trim().is_empty()
        && filter.split(',').all(|d| match d.rsplit_once('=') {
            Some((target, l)) => !target.trim().is_empty() && level(l),
            None => level(d),
        })
}

pub(super) fn upstream(cx: &mut Ctx, u: RawUpstream) -> UpstreamConfig {
    UpstreamConfig {
        ca_file: u
            .ca_file
            .as_deref()
            .and_then(|f| cx.path("upstream.ca_file", f, true)),
        connect_timeout: cx.positive_duration(
            "upstream.connect_timeout",
            u.connect_timeout.as_deref(),
            DEFAULT_CONNECT_TIMEOUT,
        ),
        pool_idle_timeout: cx.positive_duration(
            "upstream.pool_idle_timeout",
            u.pool_idle_timeout.as_deref(),
            DEFAULT_POOL_IDLE_TIMEOUT,
        ),
        pool_max_idle_per_host: cx.count(
            "upstream.pool_max_idle_per_host",
            u.pool_max_idle_per_host,
            DEFAULT_POOL_MAX_IDLE_PER_HOST as u64,
            0,
        ) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::valid_log_filter;

    #[test]
    fn log_levels_and_directives() {
        for ok in [
            "info",
            "DEBUG",
            "off",
            "info,cognito_gate::access=warn",
            "hyper=error, trace",
        ] {
            assert!(valid_log_filter(ok), "{ok}");
        }
        for bad in ["verbose", "", "info,verbose", "cognito_gate=loud", "=info"] {
            assert!(!valid_log_filter(bad), "{bad}");
        }
    }
}
