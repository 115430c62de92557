//! Load generator for `bench/forward.sh`: N keep-alive connections, each sending GETs back to
//! back for a fixed time, either directly to the gateway (`direct`: plain HTTP with the route's
//! Host) or through its forward proxy (`connect`: one CONNECT and one TLS handshake per
//! connection, then the same requests inside the tunnel). Prints JSON: requests, requests/s,
//! p50/p99 in ms, non-2xx. wrk cannot speak through a proxy, hence this.
//!
//! forward_load MODE GATEWAY_ADDR HOST CA_PEM CONNECTIONS SECONDS TOKEN

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 8 {
        eprintln!(
            "usage: forward_load direct|connect GATEWAY_ADDR HOST CA_PEM CONNECTIONS SECONDS TOKEN"
        );
        std::process::exit(64);
    }
    let (mode, gw, host, ca, conns, secs, token) = (
        a[1].clone(),
        a[2].clone(),
        a[3].clone(),
        a[4].clone(),
        a[5].parse::<usize>().expect("connections"),
        a[6].parse::<u64>().expect("seconds"),
        a[7].clone(),
    );
    let tls = Arc::new(client_config(&ca));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (mode, gw, host, token, tls) = (
            mode.clone(),
            gw.clone(),
            host.clone(),
            token.clone(),
            tls.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut sender = match mode.as_str() {
                "direct" => handshake(TcpStream::connect(&gw).await.expect("connect")).await,
                _ => tunnel(&gw, &host, tls).await,
            };
            let mut lat = Vec::new();
            let mut bad = 0u64;
            while Instant::now() < deadline {
                let req = Request::get("/bench")
                    .header("host", &host)
                    .header("authorization", format!("Bearer {token}"))
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let t = Instant::now();
                let resp = sender.send_request(req).await.expect("request");
                let ok = resp.status().is_success();
                let _ = resp.into_body().collect().await;
                lat.push(t.elapsed());
                if !ok {
                    bad += 1;
                }
            }
            (lat, bad)
        }));
    }
    let mut all = Vec::new();
    let mut bad = 0;
    for t in tasks {
        let (l, b) = t.await.unwrap();
        all.extend(l);
        bad += b;
    }
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "{{\"requests\":{},\"rps\":{:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"non_2xx\":{}}}",
        all.len(),
        all.len() as f64 / secs as f64,
        pct(0.50),
        pct(0.99),
        bad
    );
}

async fn handshake<IO>(io: IO) -> Sender
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

/// CONNECT host:443, then TLS (trusting the gateway's CA), then HTTP/1.1 inside.
async fn tunnel(gw: &str, host: &str, tls: Arc<rustls::ClientConfig>) -> Sender {
    let mut tcp = TcpStream::connect(gw).await.expect("connect");
    tcp.set_nodelay(true).unwrap();
    tcp.write_all(format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut b).await.expect("CONNECT answer");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .expect("TLS");
    handshake(stream).await
}

fn client_config(ca: &str) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(c.unwrap()).unwrap();
    }
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    c
}
