//! Hostile input over real sockets, each case with its exact outcome: request smuggling attempts
//! (ambiguous framing, broken chunking, bare LF), oversized and malformed heads, which authority
//! routes (absolute-form targets, HTTP/2 `:authority` against `Host`), HTTP/2 floods (rapid
//! reset, CONTINUATION, SETTINGS, PING), and the upstream as the attacker (an endless header, a 1xx storm,
//! broken chunking, an endless body). After each, the gateway still serves other clients.
//! Property tests (route matching, header hygiene, authorizer parity) are in `properties`.

mod common;
#[path = "hostile/fuzz_corpus.rs"]
mod fuzz_corpus;
#[path = "hostile/properties.rs"]
mod properties;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bound on any single exchange with the gateway in these tests: a connection the gateway should
/// have closed and did not shows up as this timeout.
const DEADLINE: Duration = Duration::from_secs(10);

fn toml(jwks: &FakeJwks, up: &str, hostile: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
max_header_bytes = 16384
{cognito}
[[routes]]
name = "private"
path_prefix = "/"
host = "private.example"
upstream = "{up}"
auth = ["jwt"]

[[routes]]
name = "public-host"
path_prefix = "/"
host = "public.example"
upstream = "{up}"
auth = ["none"]

[[routes]]
name = "admin"
path_prefix = "/admin"
upstream = "{up}"
auth = ["jwt"]

[[routes]]
name = "hostile"
path_prefix = "/hostile"
upstream = "{hostile}"
auth = ["none"]
timeout = "1s"

[[routes]]
name = "public"
path_prefix = "/"
upstream = "{up}"
auth = ["none"]
"#,
        cognito = cognito_section(&jwks.url(), "[]")
    )
}

struct Env {
    gw: cognito_gate::RunningGateway,
    up: EchoUpstream,
    hostile: Hostile,
    _jwks: FakeJwks,
}

impl Env {
    async fn start() -> Env {
        let k1 = TestKey::load("k1");
        let jwks = FakeJwks::start(&[&k1]).await;
        let up = EchoUpstream::start().await;
        let hostile = Hostile::start().await;
        let gw = start_ready(config(&toml(&jwks, &up.url(), &hostile.url()))).await;
        Env {
            gw,
            up,
            hostile,
            _jwks: jwks,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.gw.http_addr.unwrap()
    }

    /// A normal client still gets its answer.
    async fn still_serves(&self) {
        let (status, _, _) = get(
            &client(),
            &format!("http://{}/public/ok", self.addr()),
            None,
        )
        .await;
        assert_eq!(status, 200, "the gateway still serves other clients");
    }
}

/// Sends `bytes` on a new connection and reads until the gateway closes it. Returns what came
/// back, or panics when the connection stays open past `DEADLINE`.
async fn exchange(gw: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(gw).await.unwrap();
    // The gateway may answer and close before everything is written.
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    match tokio::time::timeout(DEADLINE, s.read_to_end(&mut out)).await {
        Ok(_) => String::from_utf8_lossy(&out).into_owned(),
        Err(_) => panic!(
            "the connection stayed open; read so far: {}",
            String::from_utf8_lossy(&out)
        ),
    }
}

fn statuses(text: &str) -> Vec<u16> {
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text[i + 9..].get(..3)?.parse().ok())
        .collect()
}

#[tokio::test]
async fn ambiguous_framing_is_refused_and_the_connection_closed_before_anything_is_forwarded() {
    let env = Env::start().await;
    // Each carries a second request that a parser reading the other framing would see; it asks
    // for a public path, so the upstream would count it.
    let smuggled = "GET /public/smuggled HTTP/1.1\r\nHost: gw\r\n\r\n";
    let cases: Vec<(&str, String)> = vec![
        (
            "two Content-Lengths",
            format!("POST /public/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}", smuggled.len()),
        ),
        (
            "a Content-Length list",
            format!("POST /public/x HTTP/1.1\r\nHost: gw\r\nContent-Length: {0}, {0}\r\n\r\n{smuggled}", smuggled.len()),
        ),
        (
            "chunked, identity",
            format!("POST /public/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "two Transfer-Encoding lines",
            format!("POST /public/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n{smuggled}"),
        ),
        (
            "a coding other than chunked",
            format!("POST /public/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip\r\n\r\n{smuggled}"),
        ),
        (
            "obs-fold",
            format!("POST /public/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 0\r\n\r\n{smuggled}"),
        ),
    ];
    for (what, request) in cases {
        let text = exchange(env.addr(), request.as_bytes()).await;
        assert_eq!(
            statuses(&text),
            vec![400],
            "{what}: one 400, then closed\n{text}"
        );
        assert_eq!(env.up.hits(), 0, "{what}: nothing reached the upstream");
    }
    // Content-Length with Transfer-Encoding: hyper reads the body as chunked (RFC 9112 §6.3:
    // Transfer-Encoding wins), drops Content-Length before the gateway sees the request, and
    // closes the connection after the response. One request reaches the upstream, re-framed
    // by the gateway; what a Content-Length reader would have taken for a second request is
    // discarded with the connection.
    let request = format!("POST /public/x HTTP/1.1\r\nHost: gw\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}", 5 + smuggled.len());
    let text = exchange(env.addr(), request.as_bytes()).await;
    assert_eq!(
        statuses(&text),
        vec![200],
        "one response, then closed\n{text}"
    );
    let body: Value =
        serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or("")).unwrap_or(Value::Null);
    assert_eq!(body["uri"], "/public/x", "{body}");
    assert_eq!(body["body_bytes"], 0, "{body}");
    assert_eq!(
        env.up.hits(),
        1,
        "the smuggled request never reached the upstream"
    );
    // The same Content-Length twice: one length (RFC 9110 §8.6 lets a recipient take identical
    // values as one), so the second "request" is that request's body, forwarded as a body.
    let request = format!("POST /public/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nContent-Length: {0}\r\nContent-Length: {0}\r\n\r\n{smuggled}", smuggled.len());
    let text = exchange(env.addr(), request.as_bytes()).await;
    assert_eq!(statuses(&text), vec![200], "{text}");
    let body: Value =
        serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or("")).unwrap_or(Value::Null);
    assert_eq!(body["body"], smuggled, "{body}");
    assert_eq!(env.up.hits(), 2, "one request each time");
    env.still_serves().await;
}

#[tokio::test]
async fn a_body_with_broken_chunking_is_a_400_and_closes_the_connection() {
    let env = Env::start().await;
    for body in [
        "zz\r\nhello\r\n0\r\n\r\n",                  // not hex
        "5\r\nhelloXX0\r\n\r\n",                     // no CRLF after the data
        "fffffffffffffffffff\r\nhello\r\n0\r\n\r\n", // a size that overflows
    ] {
        let request = format!(
            "POST /public/x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n{body}GET /admin/secret HTTP/1.1\r\nHost: gw\r\n\r\n"
        );
        let text = exchange(env.addr(), request.as_bytes()).await;
        assert_eq!(statuses(&text), vec![400], "{body:?}\n{text}");
        assert!(
            text.to_ascii_lowercase().contains("connection: close"),
            "{text}"
        );
    }
    // The request line and headers went upstream before the body broke (the body streams);
    // the smuggled second request never did.
    assert!(env.up.hits() <= 3, "{}", env.up.hits());
    env.still_serves().await;
}

#[tokio::test]
async fn bare_lf_lines_make_one_request_each_and_nothing_is_smuggled() {
    let env = Env::start().await;
    // RFC 9112 §2.2 lets a recipient read a bare LF as a line end; the gateway does, for both
    // requests, and re-frames them with CRLF upstream: the second request is routed and
    // authorised like any other (no token: 401), never passed through inside the first.
    let request = b"POST /public/x HTTP/1.1\nHost: gw\nContent-Length: 5\n\nhelloGET /admin/secret HTTP/1.1\nHost: gw\nConnection: close\n\n";
    let text = exchange(env.addr(), request).await;
    assert_eq!(statuses(&text), vec![200, 401], "{text}");
    assert_eq!(
        env.up.hits(),
        1,
        "only the first request reached the upstream"
    );
}

#[tokio::test]
async fn oversized_and_malformed_heads_get_their_status_and_reach_nothing() {
    let env = Env::start().await;
    let long_line = format!(
        "GET /public/x HTTP/1.1\r\nHost: gw\r\nX-Long: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let mut many = String::from("GET /public/x HTTP/1.1\r\nHost: gw\r\n");
    for i in 0..10_000 {
        many.push_str(&format!("X-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("a 1 MiB header line", long_line.into_bytes(), 431),
        ("10,000 headers", many.into_bytes(), 431),
        (
            "a NUL byte in the path",
            b"GET /public/a\0b HTTP/1.1\r\nHost: gw\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a percent-encoded NUL",
            b"GET /public/a%00b HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a percent-encoded slash",
            b"GET /admin%2fx HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a percent-encoded backslash",
            b"GET /public/..%5cadmin HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".to_vec(),
            400,
        ),
        (
            "a NUL in a header value",
            b"GET /public/x HTTP/1.1\r\nHost: gw\r\nX-A: a\0b\r\n\r\n".to_vec(),
            400,
        ),
        (
            "two Host headers",
            b"GET /public/x HTTP/1.1\r\nHost: gw\r\nHost: private.example\r\nConnection: close\r\n\r\n"
                .to_vec(),
            400,
        ),
        (
            "HTTP/1.1 without Host",
            b"GET /public/x HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
            400,
        ),
    ];
    for (what, request, want) in cases {
        let text = exchange(env.addr(), &request).await;
        assert_eq!(
            statuses(&text).first(),
            Some(&want),
            "{what}\n{}",
            &text[..text.len().min(300)]
        );
    }
    assert_eq!(env.up.hits(), 0);
    env.still_serves().await;
}

#[tokio::test]
async fn the_target_authority_routes_an_absolute_form_request_not_its_host_header() {
    let env = Env::start().await;
    // RFC 9112 §3.2.2: with an absolute-form target, Host is ignored. `private.example` needs a
    // token; naming it in the target and `public.example` in Host must not get around that.
    let text = exchange(
        env.addr(),
        b"GET http://private.example/x HTTP/1.1\r\nHost: public.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&text), vec![401], "{text}");
    assert_eq!(env.up.hits(), 0);
    // The other way round it is the public route, and the upstream is told that authority.
    let text = exchange(
        env.addr(),
        b"GET http://public.example/x HTTP/1.1\r\nHost: private.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(statuses(&text), vec![200], "{text}");
    let body: Value =
        serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or("")).unwrap_or(Value::Null);
    assert_eq!(
        body["headers"]["x-forwarded-host"], "public.example",
        "{body}"
    );
    assert_eq!(env.up.hits(), 1);
}

/// An HTTP/2 (h2c, prior knowledge) connection to the gateway.
async fn h2(gw: SocketAddr) -> h2::client::SendRequest<bytes::Bytes> {
    let tcp = TcpStream::connect(gw).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

async fn h2_status(
    send: &mut h2::client::SendRequest<bytes::Bytes>,
    req: http::Request<()>,
) -> u16 {
    let (resp, _) = send.send_request(req, true).unwrap();
    resp.await.unwrap().status().as_u16()
}

#[tokio::test]
async fn an_http2_request_whose_host_differs_from_its_authority_is_malformed() {
    let env = Env::start().await;
    let mut send = h2(env.addr()).await.ready().await.unwrap();
    let req = |authority: &str, host: Option<&str>| {
        let mut b = http::Request::get(format!("http://{authority}/x"));
        if let Some(h) = host {
            b = b.header("host", h);
        }
        b.body(()).unwrap()
    };
    // RFC 9113 §8.3.1: Host and :authority must agree.
    assert_eq!(
        h2_status(&mut send, req("private.example", Some("public.example"))).await,
        400
    );
    assert_eq!(
        h2_status(&mut send, req("public.example", Some("private.example"))).await,
        400
    );
    assert_eq!(env.up.hits(), 0);
    // Agreeing, or :authority alone, routes by that authority.
    assert_eq!(
        h2_status(&mut send, req("private.example", None)).await,
        401
    );
    assert_eq!(
        h2_status(&mut send, req("public.example", Some("PUBLIC.example"))).await,
        200
    );
    assert_eq!(env.up.hits(), 1);
}

/// Requests from a well-behaved client while `attack` runs: all must succeed; returns the
/// slowest.
async fn bystander(gw: SocketAddr, stop: Arc<tokio::sync::Notify>) -> Duration {
    let c = client();
    let mut worst = Duration::ZERO;
    let mut count = 0;
    loop {
        let started = Instant::now();
        let (status, _, _) = get(&c, &format!("http://{gw}/public/ok"), None).await;
        assert_eq!(
            status, 200,
            "a bystander's request failed during the attack"
        );
        worst = worst.max(started.elapsed());
        count += 1;
        if count >= 5
            && tokio::time::timeout(Duration::ZERO, stop.notified())
                .await
                .is_ok()
        {
            return worst;
        }
        tokio::task::yield_now().await;
    }
}

/// A process's resident memory.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Frames an HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Writes `frames` repeatedly until the gateway closes the connection (or `limit` bytes were
/// sent). Returns the bytes written before it did.
async fn flood(gw: SocketAddr, head: &[u8], repeated: &[u8], limit: usize) -> usize {
    let mut s = TcpStream::connect(gw).await.unwrap();
    s.write_all(head).await.unwrap();
    let (mut r, mut w) = s.into_split();
    // Drain what the gateway sends (settings, GOAWAY) so that it never blocks on us.
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    let mut sent = 0;
    while sent < limit {
        match tokio::time::timeout(DEADLINE, w.write_all(repeated)).await {
            Ok(Ok(())) => sent += repeated.len(),
            Ok(Err(_)) => break,
            Err(_) => panic!("the gateway stopped reading but kept the connection open"),
        }
    }
    if sent >= limit {
        // Still open: the attacker gives up.
        reader.abort();
    } else {
        let _ = tokio::time::timeout(DEADLINE, reader).await;
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_floods_close_the_attacking_connection_and_spare_the_others() {
    // The gateway as its own process, so that its memory can be read alone.
    let up = EchoUpstream::start().await;
    let dir = TempDir::new("h2-floods");
    let path = dir.write(
        "gateway.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[[routes]]\nname = \"public\"\npath_prefix = \"/\"\nupstream = \"{}\"\nauth = [\"none\"]\n",
            up.url()
        ),
    );
    let gateway = common::binary::Served::start(&path, &[], true).await;
    let gw = gateway.main;
    let pid = gateway.child.id().expect("running");
    let stop = Arc::new(tokio::sync::Notify::new());
    let watcher = tokio::spawn(bystander(gw, stop.clone()));

    // CONTINUATION flood: a HEADERS frame without END_HEADERS, then CONTINUATION frames of
    // header bytes without end. The header list limit (server.max_header_bytes) ends it.
    let settings = frame(0x4, 0, 0, &[]);
    let mut head = PREFACE.to_vec();
    head.extend(&settings);
    head.extend(frame(0x1, 0x1, 1, &[0x82, 0x86, 0x84])); // GET, http, /; END_STREAM only
                                                          // A literal header `x: <1024 bytes>` (HPACK: new name, 7-bit length prefix 127 + 897).
    let mut literal = vec![0x40, 0x01, b'x', 0x7f, 0x81, 0x07];
    literal.extend(std::iter::repeat_n(b'a', 1024));
    let continuation = frame(0x9, 0, 1, &literal);
    let sent = flood(gw, &head, &continuation, 64 << 20).await;
    eprintln!("CONTINUATION flood: connection closed after {sent} bytes");
    assert!(
        sent < 16 << 20,
        "CONTINUATION frames kept being read: {sent} bytes"
    );

    // SETTINGS flood (CVE-2019-9515): frames the server must apply and acknowledge, as fast as
    // they can be sent. h2 acknowledges each and has no limit; the gateway's budget (100 at
    // once, 10/s after) closes the connection.
    let mut preface = PREFACE.to_vec();
    preface.extend(&settings);
    let change = frame(0x4, 0, 0, &[0x00, 0x04, 0x00, 0x01, 0x00, 0x00]); // INITIAL_WINDOW_SIZE
    let before = rss_kib(pid);
    let sent = flood(gw, &preface, &change, 4 << 20).await;
    let grown = rss_kib(pid).saturating_sub(before);
    eprintln!(
        "SETTINGS flood: connection closed after {sent} bytes ({} frames), RSS grew {grown} KiB",
        sent / change.len()
    );
    // The frames in flight when the budget ran out are the socket buffers' worth, not the 4 MiB
    // the attacker had to send.
    assert!(sent < 4 << 20, "a SETTINGS flood was never cut off");
    assert!(
        grown < 32 * 1024,
        "RSS grew {grown} KiB during a SETTINGS flood"
    );

    // PING flood (CVE-2019-9512): not cut off (a client estimating its bandwidth sends one PING
    // per round trip while data arrives), but acknowledged with bounded memory while the other
    // clients are served.
    let ping = frame(0x6, 0, 0, &[7; 8]);
    let before = rss_kib(pid);
    let sent = flood(gw, &preface, &ping, 2 << 20).await;
    let grown = rss_kib(pid).saturating_sub(before);
    eprintln!(
        "PING flood: {sent} bytes ({} frames) sent, RSS grew {grown} KiB",
        sent / ping.len()
    );
    assert!(
        grown < 32 * 1024,
        "RSS grew {grown} KiB during a PING flood"
    );

    // A client that sent PINGs and a few SETTINGS frames (window updates) is served.
    let mut keepalive = preface.clone();
    for _ in 0..500 {
        keepalive.extend(&ping);
    }
    for _ in 0..10 {
        keepalive.extend(&change);
    }
    keepalive.extend(frame(
        0x1,
        0x5,
        1,
        &[0x82, 0x86, 0x84, 0x41, 0x02, b'g', b'w'],
    )); // GET http / :authority gw
    let mut s = TcpStream::connect(gw).await.unwrap();
    s.write_all(&keepalive).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    // The answer's HEADERS frame on stream 1, with :status 200 (HPACK static index 8: 0x88).
    let answered = |got: &[u8]| {
        let mut at = 0;
        while at + 9 <= got.len() {
            let len = u32::from_be_bytes([0, got[at], got[at + 1], got[at + 2]]) as usize;
            let (kind, stream) = (
                got[at + 3],
                u32::from_be_bytes(got[at + 5..at + 9].try_into().unwrap()),
            );
            if kind == 0x1 && stream == 1 && got.get(at + 9) == Some(&0x88) {
                return true;
            }
            at += 9 + len;
        }
        false
    };
    while !answered(&got) {
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(n > 0, "a client within the frame budget was cut off");
        got.extend_from_slice(&buf[..n]);
    }
    // The SETTINGS flood is counted, with its reason; nothing else is.
    let admin = gateway.admin.expect("admin listener");
    let metrics = scrape(admin).await;
    assert!(
        metrics.contains("cognito_gate_connections_closed_total{reason=\"h2_settings_flood\"} 1"),
        "{metrics}"
    );

    // Rapid reset (CVE-2023-44487): streams opened and cancelled at once, in bulk.
    let mut send = h2(gw).await.ready().await.unwrap();
    let mut refused = false;
    let mut opened = 0;
    for i in 0..20_000 {
        opened = i;
        let req = http::Request::get(format!("http://gw/public/reset-{i}"))
            .body(())
            .unwrap();
        match send.send_request(req, true) {
            Ok((_, mut stream)) => stream.send_reset(h2::Reason::CANCEL),
            Err(_) => {
                refused = true;
                break;
            }
        }
        if i % 100 == 0 {
            match tokio::time::timeout(DEADLINE, send.clone().ready()).await {
                Ok(Ok(s)) => send = s,
                Ok(Err(_)) => {
                    refused = true;
                    break;
                }
                Err(_) => panic!("the connection stalled"),
            }
        }
    }
    assert!(refused, "20,000 reset streams did not end the connection");
    eprintln!("rapid reset: connection refused after {opened} streams");
    // Each reset stream that became a request reached the upstream at most once.
    assert!(up.hits() <= 20_000);

    stop.notify_one();
    let worst = watcher.await.unwrap();
    eprintln!("slowest bystander request during the floods: {worst:?}");
    assert!(worst < DEADLINE, "a bystander waited {worst:?}");
}

/// An upstream that misbehaves by path: `/hostile/header` (an endless header), `/hostile/1xx`
/// (informational responses forever), `/hostile/chunks` (broken chunking after the head),
/// `/hostile/endless` (a body without end). Counts how many connections it saw closed by the
/// gateway.
struct Hostile {
    addr: SocketAddr,
    closed: Arc<AtomicU64>,
}

impl Hostile {
    async fn start() -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let closed = Arc::new(AtomicU64::new(0));
        let c = closed.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let c = c.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let path = head.split(' ').nth(1).unwrap_or("").to_string();
                    let (first, repeated): (&[u8], Vec<u8>) = match path.as_str() {
                        "/hostile/header" => (b"HTTP/1.1 200 OK\r\nX-Big: ", vec![b'a'; 65536]),
                        "/hostile/1xx" => (b"", b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
                        "/hostile/chunks" => (
                            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
                            Vec::new(),
                        ),
                        _ => (
                            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
                            vec![b'x'; 65536],
                        ),
                    };
                    if s.write_all(first).await.is_err() {
                        c.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    if repeated.is_empty() {
                        let _ = s.flush().await;
                        // Keep the connection open; the gateway decides.
                        let _ = s.read(&mut buf).await;
                        c.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    // Up to 100 MiB, or until the gateway hangs up.
                    for _ in 0..1600 {
                        if s.write_all(&repeated).await.is_err() {
                            c.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    }
                    let _ = s.read(&mut buf).await;
                    c.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Hostile { addr, closed }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

#[tokio::test]
async fn an_attacking_upstream_gets_the_client_a_502_or_504_and_the_gateway_stays_healthy() {
    let env = Env::start().await;
    let c = client();
    let base = format!("http://{}", env.addr());
    // A header without end: the upstream response head limit ends it.
    let (status, _, _) = get(&c, &format!("{base}/hostile/header"), None).await;
    assert_eq!(status, 502);
    // Informational responses forever: the route's timeout (1 s) ends it.
    let (status, _, _) = get(&c, &format!("{base}/hostile/1xx"), None).await;
    assert_eq!(status, 504);
    // Broken chunking after a 200 head: the head was forwarded, so the client sees the body
    // cut off (the connection is closed mid-body), never a complete response.
    // (When the broken chunk arrives with the head, the connection is cut before the head is
    // flushed and the client sees no response at all.)
    match c.get(format!("{base}/hostile/chunks")).send().await {
        Err(e) => assert!(e.is_request(), "{e}"),
        Ok(resp) => {
            assert_eq!(resp.status(), 200);
            assert!(
                resp.bytes().await.is_err(),
                "a cut body must not look complete"
            );
        }
    }
    // A body without end: the client reads some and hangs up; the gateway lets go upstream.
    let mut resp = c
        .get(format!("{base}/hostile/endless"))
        .send()
        .await
        .unwrap();
    let mut read = 0;
    while read < 1 << 20 {
        read += resp.chunk().await.unwrap().expect("more body").len();
    }
    drop(resp);
    let deadline = Instant::now() + DEADLINE;
    while env.hostile.closed.load(Ordering::SeqCst) < 4 {
        assert!(
            Instant::now() < deadline,
            "the gateway kept an upstream connection open"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    env.still_serves().await;
    let (status, _, _) = get(&c, &format!("{base}/healthz"), None).await;
    assert_eq!(status, 200);
}
