//! `deploy/monitoring/`: the alert rules pass `promtool check rules` and their unit tests
//! (`promtool test rules`), every dashboard expression parses, and every metric name an alert
//! or the dashboard uses is one a running gateway exports on its /metrics (with every optional
//! feature configured, so that each family shows), or Prometheus's own `up`.
//!
//! promtool comes from `PROMTOOL` (scripts/test.sh unpacks it from Debian's prometheus package
//! into .promtool and exports it).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// The alerts the rule group must have.
const ALERTS: [&str; 9] = [
    "CognitoGateDown",
    "CognitoGateJwksStale",
    "CognitoGatePrivateApiFailing",
    "CognitoGateUpstreamErrors",
    "CognitoGateFailedLoginSurge",
    "CognitoGateForgeryFlood",
    "CognitoGateValkeyDown",
    "CognitoGateDrainStuck",
    "CognitoGateCertificateExpiry",
];

fn monitoring_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/monitoring")
}

fn read(name: &str) -> String {
    let path = monitoring_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn promtool() -> PathBuf {
    match std::env::var_os("PROMTOOL") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "PROMTOOL is not set: run the suite through scripts/test.sh, which unpacks promtool \
             from Debian's prometheus package into .promtool and exports PROMTOOL \
             (or set PROMTOOL to a promtool binary)"
        ),
    }
}

/// Runs promtool with `args` in the crate root; panics with its output unless it succeeds.
fn run_promtool(args: &[&str]) -> String {
    let bin = promtool();
    let out = Command::new(&bin)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} (PROMTOOL): {e}", bin.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    text
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let checked = run_promtool(&["check", "rules", "deploy/monitoring/alerts.yml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = run_promtool(&["test", "rules", "deploy/monitoring/alerts.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // Every alert has unit tests: one where it fires and one where it must not.
    let tests = read("alerts.test.yml");
    for alert in ALERTS {
        let blocks: Vec<&str> = tests
            .split("- eval_time:")
            .filter(|b| b.contains(&format!("alertname: {alert}\n")))
            .collect();
        assert!(
            blocks.iter().any(|b| b.contains("exp_labels:")
                && b.contains("exp_annotations:")
                && b.contains("severity:")),
            "no firing case with exp_labels and exp_annotations for {alert}"
        );
        assert!(
            blocks.iter().any(|b| b.contains("exp_alerts: []")),
            "no silent case for {alert}"
        );
    }
}

#[test]
fn dashboard_expressions_parse() {
    // promtool parses PromQL in rule files: each dashboard query becomes a recording rule, with
    // Grafana's variables replaced the way Grafana would (intervals, and `.*` for "All").
    let dashboard = dashboard();
    let rules: Vec<Value> = dashboard_queries(&dashboard)
        .into_iter()
        .enumerate()
        .map(|(i, (expr, _))| {
            json!({"record": format!("dashboard:query_{i}"), "expr": grafana_to_promql(&expr)})
        })
        .collect();
    assert!(!rules.is_empty());
    let dir = TempDir::new("monitoring-dashboard-rules");
    // JSON is YAML: promtool reads it as a rule file.
    let file = dir.write(
        "dashboard-rules.json",
        &json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string(),
    );
    run_promtool(&["check", "rules", file.to_str().unwrap()]);
}

#[test]
fn dashboard_is_grafana_json_with_a_query_on_every_panel() {
    let d = dashboard();
    let schema = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!(schema >= 36, "schemaVersion {schema}");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let var = |name: &str| vars.iter().find(|v| v["name"] == name);
    assert_eq!(
        var("datasource").map(|v| &v["type"]),
        Some(&json!("datasource")),
        "a datasource variable"
    );
    for name in ["job", "instance"] {
        assert!(var(name).is_some(), "no {name} variable");
    }
    let mut seen = 0;
    for panel in panels(&d) {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        let uid = panel["datasource"]["uid"].as_str();
        assert_eq!(uid, Some("${datasource}"), "panel {title}: datasource");
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel {title} has no target");
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or("");
            assert!(
                !expr.trim().is_empty(),
                "panel {title}: a target without expr"
            );
        }
        seen += 1;
    }
    assert!(seen >= 20, "{seen} panels");
    let mut ids: Vec<u64> = all_panels(&d)
        .iter()
        .filter_map(|p| p["id"].as_u64())
        .collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "panel ids are unique");
}

#[test]
fn alert_rules_file_has_the_expected_alerts() {
    let text = read("alerts.yml");
    let names: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- alert:"))
        .map(str::trim)
        .collect();
    assert_eq!(names, ALERTS.into_iter().collect::<BTreeSet<_>>());
    let rules = text
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            t.starts_with("- alert:") || t.starts_with("- record:")
        })
        .count();
    assert_eq!(yaml_exprs(&text).len(), rules, "one expr per rule");
    assert!(
        text.contains("- name: cognito-gate\n"),
        "the rule group's name"
    );
}

/// The live check: a gateway with every optional feature configured (JWKS, the private API and
/// the exchange, shared state, the external authorizer, a WebSocket route, TLS, the forward
/// proxy's CA), a request through a route and an authorizer check made so that the families
/// created on first use show too, then its /metrics against every name the rules and the
/// dashboard use.
#[tokio::test]
async fn every_metric_in_alerts_and_dashboard_is_exported() {
    let (gw, _fixtures) = full_gateway().await;
    let c = client();

    let open = format!("http://{}/open/x", gw.http_addr.unwrap());
    assert_eq!(get(&c, &open, None).await.0, 200, "{open}");
    let check = format!("http://{}/envoy/open/x", gw.authz_http_addr.unwrap());
    assert_eq!(get(&c, &check, None).await.0, 200, "{check}");

    // The shared state's operation counts appear with its first operation (the health probe
    // pings at start; Valkey is not there, which is an operation too).
    let admin = gw.admin_addr.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut text = scrape(admin).await;
    while !text.contains("cognito_gate_shared_state_ops_total")
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = scrape(admin).await;
    }
    let exported = exported_names(&text);

    let mut used: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let alerts = read("alerts.yml");
    let exprs = yaml_exprs(&alerts);
    assert!(exprs.len() >= ALERTS.len(), "{exprs:?}");
    for (i, expr) in exprs.iter().enumerate() {
        for name in metric_names(expr) {
            used.entry(name)
                .or_default()
                .insert(format!("alerts.yml rule {}", i + 1));
        }
    }
    for (expr, place) in dashboard_queries(&dashboard()) {
        for name in metric_names(&expr) {
            used.entry(name).or_default().insert(place.clone());
        }
    }
    for expected in [
        "up",
        "cognito_gate_requests_total",
        "cognito_gate_jwks_age_seconds",
        "cognito_gate_token_exchange_total",
        "cognito_gate_draining",
        "cognito_gate_certificate_expiry_timestamp_seconds",
        "process_cpu_seconds_total",
    ] {
        assert!(
            used.contains_key(expected),
            "the tokenizer missed {expected}"
        );
    }
    let missing: Vec<String> = used
        .iter()
        .filter(|(name, _)| name.as_str() != "up" && !exported.contains(name.as_str()))
        .map(|(name, places)| {
            format!(
                "{name} (in {})",
                places.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    assert!(
        missing.is_empty(),
        "{} metric name(s) used by deploy/monitoring/ that the gateway does not export:\n  {}\n\
         --- /metrics:\n{text}",
        missing.len(),
        missing.join("\n  ")
    );
    gw.shutdown().await;
}

/// /metrics speaks OpenMetrics to a scraper that asks for it and the Prometheus text format
/// 0.0.4 otherwise; promtool's linter (`check metrics`, which reads 0.0.4) finds nothing wrong.
#[tokio::test]
async fn metrics_are_served_in_both_text_formats_and_pass_promtool_lint() {
    let (gw, _fixtures) = full_gateway().await;
    let url = format!("http://{}/metrics", gw.admin_addr.unwrap());
    let c = client();
    let om = c
        .get(&url)
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert!(om.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let om = om.text().await.unwrap();
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("# TYPE cognito_gate_requests counter"));
    let plain = c.get(&url).send().await.unwrap();
    assert_eq!(
        plain.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let plain = plain.text().await.unwrap();
    assert!(!plain.contains("# EOF"));
    assert!(plain.contains("# TYPE cognito_gate_requests_total counter"));
    assert!(plain.contains("# TYPE process_cpu_seconds_total counter"));
    let mut lint = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    lint.stdin
        .take()
        .unwrap()
        .write_all(plain.as_bytes())
        .unwrap();
    let out = lint.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics:\n{said}\n--- /metrics:\n{plain}"
    );
    gw.shutdown().await;
}

/// What the full gateway needs kept alive next to it.
struct Fixtures {
    _dir: TempDir,
    _jwks: FakeJwks,
    _upstream: EchoUpstream,
}

async fn full_gateway() -> (cognito_gate::RunningGateway, Fixtures) {
    use base64::Engine as _;
    use std::os::unix::fs::PermissionsExt as _;

    let dir = TempDir::new("monitoring");
    let server = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    dir.write("server.crt", &server.cert.pem());
    dir.write("server.key", &server.key_pair.serialize_pem());
    let (ca_pem, ca_key) = cognito_gate::forward::ca::generate("monitoring test CA").unwrap();
    dir.write("ca.pem", &ca_pem);
    let key_path = dir.write("ca.key", &ca_key);
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();

    let k1 = TestKey::load("k1");
    let jwks = FakeJwks::start(&[&k1]).await;
    let (api, _logins) = alice_private_api(Duration::ZERO).await;
    let upstream = EchoUpstream::start().await;
    let valkey = closed_port().await;
    let state_key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:0"
shutdown_drain = "0s"
[server.tls]
listen = "127.0.0.1:0"
cert = "{d}/server.crt"
key = "{d}/server.key"
[admin]
listen = "127.0.0.1:0"
{cognito}
[private_api]
base_url = "http://{api}/dev"
timeout = "2s"
[exchange]
client_id = "{CLIENT_ID}"
user_pool_id = "ap-northeast-1_TestPool"
[shared_state]
url = "redis://{valkey}"
encryption_key = "{state_key}"
timeout = "100ms"
[authz]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
allow_from = ["127.0.0.0/8"]
[forward_proxy]
intercept = ["api.internal.example"]
ca_cert = "{d}/ca.pem"
ca_key = "{d}/ca.key"

[[routes]]
name = "open"
path_prefix = "/open"
upstream = "{up}"
auth = ["none"]

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "{up}"
auth = ["jwt"]

[[routes]]
name = "legacy"
path_prefix = "/legacy"
upstream = "{up}"
auth = ["basic"]

[[routes]]
name = "live"
path_prefix = "/live"
upstream = "{up}"
auth = ["none"]
websocket = true
"#,
        d = dir.display(),
        cognito = cognito_section(&jwks.url(), &format!("[\"{CLIENT_ID}\"]")),
        up = upstream.url(),
    );
    let gw = start_ready(config(&toml)).await;
    (
        gw,
        Fixtures {
            _dir: dir,
            _jwks: jwks,
            _upstream: upstream,
        },
    )
}

/// Every name a scrape shows: each family of a `# TYPE` line with the sample names its type
/// has (a counter's `_total` and `_created`, a histogram's `_bucket`, `_sum`, `_count`), and
/// every sample's own name.
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(family), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            names.insert(family.to_string());
            let suffixes: &[&str] = match kind {
                "counter" => &["_total", "_created"],
                "histogram" | "gaugehistogram" => {
                    &["_bucket", "_sum", "_count", "_created", "_gcount", "_gsum"]
                }
                "summary" => &["_sum", "_count", "_created"],
                "info" => &["_info"],
                _ => &[],
            };
            for s in suffixes {
                names.insert(format!("{family}{s}"));
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

fn dashboard() -> Value {
    serde_json::from_str(&read("dashboard.json")).expect("dashboard.json is JSON")
}

/// Every panel, rows and the panels inside collapsed rows included.
fn all_panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner);
        }
    }
    out
}

/// The panels that show data (rows are only headings).
fn panels(d: &Value) -> Vec<&Value> {
    all_panels(d)
        .into_iter()
        .filter(|p| p["type"] != "row")
        .collect()
}

/// Every PromQL expression in the dashboard, with where it is: the panels' targets, and the
/// query variables (`label_values(SELECTOR, LABEL)` gives its selector, `query_result(EXPR)`
/// its expression).
fn dashboard_queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in panels(d) {
        let title = p["title"].as_str().unwrap_or("(untitled)");
        for t in p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(expr) = t["expr"].as_str() {
                out.push((expr.to_string(), format!("dashboard panel \"{title}\"")));
            }
        }
    }
    for v in d["templating"]["list"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        if v["type"] != "query" {
            continue;
        }
        let query = match &v["query"] {
            Value::String(s) => s.as_str(),
            q => q["query"].as_str().unwrap_or(""),
        };
        let place = format!("dashboard variable {}", v["name"]);
        if let Some(expr) = variable_expr(query) {
            out.push((expr, place));
        }
    }
    out
}

/// The PromQL inside a Grafana Prometheus variable query, if it has any.
fn variable_expr(query: &str) -> Option<String> {
    let q = query.trim();
    let inner = |prefix: &str| {
        let rest = q.strip_prefix(prefix)?.trim_start().strip_prefix('(')?;
        Some(rest.strip_suffix(')')?.trim().to_string())
    };
    if let Some(args) = inner("label_values") {
        // label_values(LABEL) has no selector; label_values(SELECTOR, LABEL) does.
        let comma = top_level_commas(&args).last().copied()?;
        return Some(args[..comma].to_string());
    }
    if let Some(expr) = inner("query_result") {
        return Some(expr);
    }
    if inner("label_names").is_some() || inner("metrics").is_some() {
        return None;
    }
    (!q.is_empty()).then(|| q.to_string())
}

/// Byte offsets of the commas outside parentheses, braces, brackets and strings.
fn top_level_commas(s: &str) -> Vec<usize> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let (mut depth, mut i) = (0usize, 0);
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' | b'`' => i = skip_string(b, i),
            b'(' | b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b')' | b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b',' if depth == 0 => {
                out.push(i);
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// A dashboard expression as Prometheus would get it: Grafana's interval variables as
/// durations, every other variable (used in label matchers) as `.*`.
fn grafana_to_promql(expr: &str) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').expect("closed ${...}");
            (&braced[..end], end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        let name = name.split(':').next().unwrap_or(name);
        out.push_str(match name {
            "__rate_interval" | "__interval" | "__range" => "5m",
            _ => ".*",
        });
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// Words that are part of PromQL's syntax, not metric names.
const KEYWORDS: [&str; 15] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "and",
    "or",
    "unless",
    "atan2",
    "inf",
    "nan",
    "start",
];

/// Aggregation operators, which may stand before `by (...)` instead of their `(`.
const AGGREGATIONS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Keywords followed by a list of label names in parentheses.
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression selects: identifiers (`[a-zA-Z_:][a-zA-Z0-9_:]*`) that
/// are not calls (followed by `(`), not inside label matchers (`{...}`), strings, ranges
/// (`[...]`) or label lists (`by (...)`, `on (...)`), not keywords, aggregation operators,
/// numbers or durations, and not Grafana variables (`$name`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => i = skip_string(b, i),
            b'{' => i = skip_group(b, i, b'{', b'}'),
            b'[' => i = skip_group(b, i, b'[', b']'),
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'$' => {
                i += 1;
                if i < b.len() && b[i] == b'{' {
                    i = skip_group(b, i, b'{', b'}');
                } else {
                    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                        i += 1;
                    }
                }
            }
            b'0'..=b'9' | b'.' => {
                // A number or a duration (0.99, 1e3, 0x1f, 5m, 1h30m).
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.')
                {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = &expr[start..i];
                let mut next = i;
                while next < b.len() && b[next].is_ascii_whitespace() {
                    next += 1;
                }
                let called = next < b.len() && b[next] == b'(';
                let lower = word.to_ascii_lowercase();
                let syntax = called
                    || KEYWORDS.contains(&lower.as_str())
                    || AGGREGATIONS.contains(&lower.as_str());
                if LABEL_LISTS.contains(&lower.as_str()) {
                    if called {
                        i = skip_group(b, next, b'(', b')');
                    }
                } else if !syntax {
                    names.insert(word.to_string());
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// The index after the string starting at `b[i]` (a quote), escapes honoured except in
/// backquoted raw strings.
fn skip_string(b: &[u8], i: usize) -> usize {
    let quote = b[i];
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' if quote != b'`' => j += 2,
            c if c == quote => return j + 1,
            _ => j += 1,
        }
    }
    b.len()
}

/// The index after the group opening at `b[i]`, nested groups and strings inside skipped.
fn skip_group(b: &[u8], i: usize, open: u8, close: u8) -> usize {
    let mut depth = 0usize;
    let mut j = i;
    while j < b.len() {
        match b[j] {
            b'"' | b'\'' | b'`' => {
                j = skip_string(b, j);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    b.len()
}

/// The `expr:` values of a Prometheus rule file, read line by line (no YAML parser in the
/// dependencies): plain, quoted, and block scalars (`|`, `|-`, `>`, `>-`), with plain scalars
/// continued on more indented lines.
fn yaml_exprs(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let mut key_indent = indent(line);
        let mut body = line.trim_start();
        if let Some(item) = body.strip_prefix("- ") {
            key_indent += 2 + (item.len() - item.trim_start().len());
            body = item.trim_start();
        }
        i += 1;
        let Some(value) = body.strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        // The lines that belong to the value: more indented than the key, blank ones included.
        let mut continued = Vec::new();
        while i < lines.len() && (lines[i].trim().is_empty() || indent(lines[i]) > key_indent) {
            continued.push(lines[i]);
            i += 1;
        }
        while continued.last().is_some_and(|l| l.trim().is_empty()) {
            continued.pop();
        }
        let expr = if value.starts_with('|') || value.starts_with('>') {
            let common = continued
                .iter()
                .filter(|l| !l.trim().is_empty())
                .map(|l| indent(l))
                .min()
                .unwrap_or(0);
            let body: Vec<&str> = continued
                .iter()
                .map(|l| if l.len() >= common { &l[common..] } else { "" })
                .collect();
            body.join(if value.starts_with('|') { "\n" } else { " " })
        } else if let Some(q) = value.strip_prefix('"') {
            assert!(continued.is_empty(), "multi-line quoted expr: {line}");
            let end = q.rfind('"').expect("closing quote");
            q[..end].replace("\\\"", "\"").replace("\\\\", "\\")
        } else if let Some(q) = value.strip_prefix('\'') {
            assert!(continued.is_empty(), "multi-line quoted expr: {line}");
            let end = q.rfind('\'').expect("closing quote");
            q[..end].replace("''", "'")
        } else {
            let first = value.split(" #").next().unwrap_or(value);
            std::iter::once(first)
                .chain(continued.iter().map(|l| l.trim()))
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert!(!expr.trim().is_empty(), "empty expr after: {line}");
        out.push(expr);
    }
    out
}

#[test]
fn the_tokenizer_finds_metric_names_only() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le, route) (rate(x_bucket{job=~"$job", route!="a b"}[$__rate_interval])))"#
        ),
        ["x_bucket"]
    );
    assert_eq!(
        names("sum without (kind) (a_total) / on (job) group_left (pool) b > bool 0.5 unless c offset 5m"),
        ["a_total", "b", "c"]
    );
    assert_eq!(
        names("max by (job) (g) and on(job) time() - h @ start() < 14 * 86400 or vector(1) # by (x) y"),
        ["g", "h"]
    );
    assert_eq!(
        names(r#"count_values("v", build_info) or absent(up{job="x"})"#),
        ["build_info", "up"]
    );
    assert_eq!(
        names("sum(rate(ns:metric:rate5m[1h:5m]))"),
        ["ns:metric:rate5m"]
    );
    assert_eq!(
        variable_expr(r#"label_values(cognito_gate_build_info{job=~"$job"}, instance)"#),
        Some(r#"cognito_gate_build_info{job=~"$job"}"#.to_string())
    );
    assert_eq!(variable_expr("label_values(job)"), None);
    assert_eq!(
        grafana_to_promql(r#"rate(x{job=~"$job",i=~"${instance}"}[$__rate_interval])"#),
        r#"rate(x{job=~".*",i=~".*"}[5m])"#
    );
    let yaml = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n      - alert: B\n        expr: |\n          sum(x)\n            > 1\n        for: 1m\n      - expr: \"y{a=\\\"b\\\"}\"\n        record: r\n      - alert: C\n        expr: z\n          > 2\n        labels: {}\n";
    assert_eq!(
        yaml_exprs(yaml),
        ["up == 0", "sum(x)\n  > 1", "y{a=\"b\"}", "z > 2"]
    );
}
