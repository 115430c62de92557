//! Following one request: OpenTelemetry spans exported over OTLP (HTTP and gRPC) to a real
//! receiver that decodes them, the client's trace continued to the upstream, every log line
//! of a request carrying its request id and route, and dependency failures that name their
//! cause (in the logs and in `aws check`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tower_service::Service;

use super::*;

/// One export as received: the decoded request and the `x-otlp-key` it came with.
type Export = (ExportTraceServiceRequest, Option<String>);

/// What an OTLP receiver was sent.
#[derive(Default, Clone)]
struct Received {
    exports: Arc<Mutex<Vec<Export>>>,
}

impl Received {
    fn spans(&self) -> Vec<Exported> {
        let mut out = Vec::new();
        for (req, key) in self.exports.lock().unwrap().iter() {
            for rs in &req.resource_spans {
                let resource: Vec<(String, String)> = rs
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .map(|kv| (kv.key.clone(), string_value(kv.value.as_ref())))
                    .collect();
                for ss in &rs.scope_spans {
                    for s in &ss.spans {
                        out.push(Exported {
                            name: s.name.clone(),
                            kind: s.kind,
                            trace_id: hex(&s.trace_id),
                            span_id: hex(&s.span_id),
                            parent: hex(&s.parent_span_id),
                            attributes: s
                                .attributes
                                .iter()
                                .map(|kv| (kv.key.clone(), string_value(kv.value.as_ref())))
                                .collect(),
                            resource: resource.clone(),
                            key: key.clone(),
                        });
                    }
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone)]
struct Exported {
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: Vec<(String, String)>,
    resource: Vec<(String, String)>,
    key: Option<String>,
}

impl Exported {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn string_value(v: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// OTLP/HTTP: `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`.
async fn otlp_http_receiver() -> (SocketAddr, Received) {
    let received = Received::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let r = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let r = r.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let r = r.clone();
                    async move {
                        let ok = req.uri().path() == "/v1/traces"
                            && req.headers().get("content-type").map(|v| v.as_bytes())
                                == Some(b"application/x-protobuf");
                        let key = req
                            .headers()
                            .get("x-otlp-key")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let status = match ExportTraceServiceRequest::decode(body) {
                            Ok(decoded) if ok => {
                                r.exports.lock().unwrap().push((decoded, key));
                                200
                            }
                            _ => 400,
                        };
                        let answer = ExportTraceServiceResponse::default().encode_to_vec();
                        Ok::<_, Infallible>(
                            Response::builder()
                                .status(status)
                                .header("content-type", "application/x-protobuf")
                                .body(Full::new(Bytes::from(answer)))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, received)
}

#[derive(Clone)]
struct GrpcReceiver(Received);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let key = request
            .metadata()
            .get("x-otlp-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        self.0
            .exports
            .lock()
            .unwrap()
            .push((request.into_inner(), key));
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// OTLP/gRPC: the collector's `TraceService/Export` over h2c.
async fn otlp_grpc_receiver() -> (SocketAddr, Received) {
    let received = Received::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let r = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let server = TraceServiceServer::new(GrpcReceiver(r.clone()));
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let mut server = server.clone();
                    async move { server.call(req).await }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, received)
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// Through the real binary, for OTLP/HTTP and OTLP/gRPC: a request with a sampled
/// `traceparent` is exported under the client's trace id (server span `GET id`, child spans
/// `authorize` and `upstream`), the upstream receives the same trace id with the gateway's
/// upstream span as parent, the export carries the configured header and resource attributes;
/// a request without `traceparent` (sample_ratio 0) is not exported but still gets a
/// `traceparent` upstream.
#[tokio::test]
async fn spans_are_exported_over_otlp_and_the_trace_continues_upstream() {
    for protocol in ["http", "grpc"] {
        let (addr, received) = match protocol {
            "http" => otlp_http_receiver().await,
            _ => otlp_grpc_receiver().await,
        };
        let upstream = EchoUpstream::start().await;
        let dir = TempDir::new("otlp");
        let jwks = jwks_file(&dir);
        let text = format!(
            r#"
[server]
listen = "127.0.0.1:0"
shutdown_drain = "0s"
[log]
format = "json"
[tracing]
otlp_endpoint = "http://{addr}"
protocol = "{protocol}"
sample_ratio = 0.0
headers = {{ "x-otlp-key" = "k-{protocol}" }}
resource_attributes = {{ "deployment.environment" = "test" }}
{cognito}
[[routes]]
name = "id"
path_prefix = "/id"
upstream = "{up}"
auth = ["jwt"]
"#,
            cognito = cognito(&format!("file = \"{}\"", jwks.display())),
            up = upstream.url(),
        );
        let config = dir.write("config.toml", &text);
        let mut gw = Served::start(&config, &[], false).await;
        let c = client();
        let token = TestKey::load("k1").sign(&id_claims());
        let traced = c
            .get(gw.url("/id/x"))
            .bearer_auth(&token)
            .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
            .header("tracestate", "vendor=1")
            .send()
            .await
            .unwrap();
        assert_eq!(traced.status(), 200, "{protocol}");
        let seen: Value = traced.json().await.unwrap();
        let sent_up = seen["headers"]["traceparent"].as_str().unwrap().to_string();
        let parts: Vec<&str> = sent_up.split('-').collect();
        assert_eq!(parts.len(), 4, "{sent_up}");
        assert_eq!(parts[1], CLIENT_TRACE, "{protocol}: same trace upstream");
        assert_ne!(
            parts[2], CLIENT_SPAN,
            "{protocol}: the gateway's span is the parent"
        );
        assert_eq!(parts[3], "01", "{protocol}: sampled");
        assert_eq!(seen["headers"]["tracestate"], "vendor=1", "{protocol}");

        let untraced = c
            .get(gw.url("/id/y"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(untraced.status(), 200);
        let seen: Value = untraced.json().await.unwrap();
        let fresh = seen["headers"]["traceparent"].as_str().unwrap().to_string();
        assert!(
            fresh.ends_with("-00"),
            "{protocol}: not sampled at ratio 0: {fresh}"
        );
        let fresh_trace = fresh.split('-').nth(1).unwrap().to_string();
        assert_ne!(fresh_trace, CLIENT_TRACE);

        gw.signal("TERM");
        assert_eq!(gw.exit(Duration::from_secs(20)).await.code(), Some(0));
        let log = gw.full_log().await.join("\n");
        let spans = received.spans();
        let ours: Vec<&Exported> = spans
            .iter()
            .filter(|s| s.trace_id == CLIENT_TRACE)
            .collect();
        let server = ours
            .iter()
            .find(|s| s.kind == SpanKind::Server as i32)
            .unwrap_or_else(|| panic!("{protocol}: no server span in {spans:#?}\n{log}"));
        assert_eq!(server.name, "GET id", "{protocol}");
        assert_eq!(
            server.parent, CLIENT_SPAN,
            "{protocol}: continues the client's span"
        );
        assert_eq!(server.attr("route"), Some("id"));
        assert_eq!(server.attr("http.response.status_code"), Some("200"));
        assert!(server.attr("request_id").is_some_and(|r| !r.is_empty()));
        let up = ours
            .iter()
            .find(|s| s.name == "upstream")
            .unwrap_or_else(|| panic!("{protocol}: no upstream span in {ours:#?}"));
        assert_eq!(up.kind, SpanKind::Client as i32);
        assert_eq!(up.parent, server.span_id, "{protocol}");
        assert_eq!(
            up.span_id, parts[2],
            "{protocol}: the upstream's parent is this span"
        );
        let auth = ours
            .iter()
            .find(|s| s.name == "authorize")
            .unwrap_or_else(|| panic!("{protocol}: no authorize span in {ours:#?}"));
        assert_eq!(auth.parent, server.span_id);
        assert_eq!(auth.attr("auth.decision"), Some("allow"));
        assert!(
            spans.iter().all(|s| s.trace_id != fresh_trace),
            "{protocol}: an unsampled request is not exported"
        );
        assert_eq!(
            server.key.as_deref(),
            Some(format!("k-{protocol}").as_str())
        );
        for (k, v) in [
            ("service.name", "cognito-gate"),
            ("deployment.environment", "test"),
        ] {
            assert!(
                server.resource.iter().any(|(rk, rv)| rk == k && rv == v),
                "{protocol}: resource {k}={v} in {:?}",
                server.resource
            );
        }
    }
}

/// A collector that is not there costs the gateway nothing but a warning: requests are served
/// and it stops in time.
#[tokio::test]
async fn an_unreachable_collector_does_not_hold_up_requests_or_the_stop() {
    let dir = TempDir::new("otlp-down");
    let closed = closed_port().await;
    let config = dir.write(
        "config.toml",
        &format!(
            r#"
[server]
listen = "127.0.0.1:0"
shutdown_drain = "0s"
[tracing]
otlp_endpoint = "http://{closed}"
timeout = "1s"
[[routes]]
name = "public"
path_prefix = "/"
upstream = "builtin:echo"
auth = ["none"]
"#
        ),
    );
    let mut gw = Served::start(&config, &[], false).await;
    let c = client();
    for _ in 0..5 {
        assert_eq!(get(&c, &gw.url("/x"), None).await.0, 200);
    }
    gw.signal("TERM");
    assert_eq!(gw.exit(Duration::from_secs(20)).await.code(), Some(0));
}

/// Every line logged while serving a request carries its request id and route — in JSON as
/// top-level keys, in text in the `request{…}` prefix — and a failed upstream names its cause.
#[tokio::test]
async fn every_line_of_a_request_carries_its_id_and_route_and_failures_their_cause() {
    let closed = closed_port().await;
    for format in ["json", "text"] {
        let dir = TempDir::new("request-lines");
        let config = dir.write(
            "config.toml",
            &format!(
                r#"
[server]
listen = "127.0.0.1:0"
shutdown_drain = "0s"
[log]
format = "{format}"
[[routes]]
name = "down"
path_prefix = "/down"
upstream = "http://{closed}"
auth = ["none"]
"#
            ),
        );
        let mut gw = Served::start(&config, &[], false).await;
        let c = client();
        let resp = c
            .get(gw.url("/down/x"))
            .header("x-request-id", format!("req-{format}-1"))
            .header(
                "x-amzn-trace-id",
                "Root=1-5759e988-bd862e3fe1be46a994272793",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 502);
        gw.signal("TERM");
        assert_eq!(gw.exit(Duration::from_secs(20)).await.code(), Some(0));
        let log = gw.full_log().await;
        let ours: Vec<&String> = log
            .iter()
            .filter(|l| l.contains(&format!("req-{format}-1")))
            .collect();
        let failed = ours
            .iter()
            .find(|l| l.contains("upstream request failed"))
            .unwrap_or_else(|| panic!("{format}: no upstream failure line in\n{}", log.join("\n")));
        let access = ours
            .iter()
            .find(|l| l.contains("cognito_gate::access"))
            .unwrap_or_else(|| panic!("{format}: no access line in\n{}", log.join("\n")));
        if format == "json" {
            let line: Value = serde_json::from_str(failed).unwrap();
            assert_eq!(line["request_id"], "req-json-1", "{line}");
            assert_eq!(line["route"], "down", "{line}");
            assert_eq!(line["cause"], "connection_refused", "{line}");
            assert_eq!(line["client.addr"], "127.0.0.1", "{line}");
            let access: Value = serde_json::from_str(access).unwrap();
            for (k, v) in [
                ("status", json!(502)),
                ("route", json!("down")),
                ("protocol", json!("HTTP/1.1")),
                (
                    "amzn_trace_id",
                    json!("Root=1-5759e988-bd862e3fe1be46a994272793"),
                ),
                ("upstream.status", json!(0)),
            ] {
                assert_eq!(access[k], v, "{k}: {access}");
            }
            assert!(access["host"]
                .as_str()
                .is_some_and(|h| h.starts_with("127.0.0.1")));
            assert!(
                access["bytes_out"].as_u64().is_some_and(|b| b > 0),
                "{access}"
            );
            assert!(access["user_agent"].is_string(), "{access}");
            assert!(access["upstream.latency_ms"].as_f64().is_some(), "{access}");
        } else {
            assert!(
                failed.contains("request{request_id=req-text-1 method=GET")
                    && failed.contains("route=down}")
                    && failed.contains("cause=connection_refused"),
                "{failed}"
            );
            assert!(!failed.contains("Some("), "{failed}");
            assert!(
                access.contains("status=502") && access.contains("route=down"),
                "{access}"
            );
        }
    }
}

/// A TLS server on 127.0.0.1 with `cert` (what `aws check` meets as its JWKS url).
async fn tls_server(cert: &rcgen::CertifiedKey) -> SocketAddr {
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // The handshake fails on the client's side; nothing more to serve.
                let _ = acceptor.accept(stream).await;
            });
        }
    });
    addr
}

/// `aws check` names what went wrong on the way to the JWKS and the private API, and what to
/// fix: a name that does not resolve, a refused port, a CA not trusted (→ ca_file), a
/// certificate for another name, an expired one.
#[tokio::test]
async fn aws_check_names_each_cause_and_its_fix() {
    let closed = closed_port().await;
    let make = |names: Vec<String>, expired: bool| {
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key_pair = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key_pair).unwrap();
        rcgen::CertifiedKey { cert, key_pair }
    };
    let untrusted = make(vec!["localhost".into()], false);
    let other_name = make(vec!["other.example".into()], false);
    let expired = make(vec!["localhost".into()], true);
    let dir = TempDir::new("aws-check-causes");
    let other_ca = dir.write("other.pem", &other_name.cert.pem());
    let expired_ca = dir.write("expired.pem", &expired.cert.pem());
    let cases: Vec<(String, Option<std::path::PathBuf>, &str, &str)> = vec![
        (
            "https://no-such-host.invalid/jwks.json".into(),
            None,
            "did not resolve (DNS)",
            "does not resolve from this host",
        ),
        (
            format!("http://{closed}/jwks.json"),
            None,
            "connection refused",
            "nothing listens on",
        ),
        (
            format!(
                "https://localhost:{}/jwks.json",
                tls_server(&untrusted).await.port()
            ),
            None,
            "signed by a CA the gateway does not trust",
            "set ca_file",
        ),
        (
            format!(
                "https://localhost:{}/jwks.json",
                tls_server(&other_name).await.port()
            ),
            Some(other_ca),
            "not for this host name",
            "use the name it was issued for",
        ),
        (
            format!(
                "https://localhost:{}/jwks.json",
                tls_server(&expired).await.port()
            ),
            Some(expired_ca),
            "expired or is not valid yet",
            "renew it",
        ),
    ];
    for (url, ca, said, fix) in cases {
        let ca_line = ca
            .map(|p| format!("ca_file = \"{}\"\n", p.display()))
            .unwrap_or_default();
        let config = dir.write(
            "config.toml",
            &format!(
                "{}\n[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"builtin:echo\"\nauth = [\"jwt\"]\n",
                cognito(&format!("url = \"{url}\"\ntimeout = \"5s\"\n{ca_line}"))
            ),
        );
        let out = run_args(&["aws", "check", "--config", config.to_str().unwrap()]).await;
        assert_eq!(out.code, Some(1), "{url}: {out}");
        assert!(
            out.stdout.contains(said),
            "{url}: expected {said:?} in\n{out}"
        );
        assert!(
            out.stdout.contains(fix),
            "{url}: expected {fix:?} in\n{out}"
        );
    }
}
