//! The real binary as a child process: one-shot commands (`check-config`, `login`, `aws ...`)
//! and a served gateway whose bound ports are read from its own `listening` log lines.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

pub const BIN: &str = env!("CARGO_BIN_EXE_cognito-gate");
/// Upper bound for a one-shot command (check-config, verify-token) to finish.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(30);
/// Upper bound for a served binary to log that it listens.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// What a one-shot command printed and how it exited.
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The binary with a clean logging environment (a `RUST_LOG` of the test runner would change
/// what it logs) and killed if the test gives up on it.
pub fn command(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs a one-shot command to completion (bounded by `COMMAND_DEADLINE`).
pub async fn run(mut cmd: tokio::process::Command, stdin: Option<&str>) -> Out {
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("the binary starts");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input.as_bytes()).await.unwrap();
        drop(pipe);
    }
    let out = tokio::time::timeout(COMMAND_DEADLINE, child.wait_with_output())
        .await
        .expect("the command finishes in time")
        .unwrap();
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub async fn run_args(args: &[&str]) -> Out {
    run(command(args), None).await
}

/// A served binary: its stderr is read line by line as it comes, its listeners' addresses are
/// taken from its `listening` log lines.
pub struct Served {
    pub child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every stderr line read so far.
    pub log: Vec<String>,
    pub main: SocketAddr,
    pub admin: Option<SocketAddr>,
}

/// The address and role of a `listening` log line, text or JSON.
pub fn listening(line: &str) -> Option<(SocketAddr, String)> {
    let (addr, role) = match serde_json::from_str::<Value>(line) {
        Ok(v) => {
            if v["message"] != "listening" || v["tls"] != false {
                return None;
            }
            (
                v["addr"].as_str()?.to_string(),
                v["role"].as_str()?.to_string(),
            )
        }
        Err(_) => {
            let rest = &line[line.find("listening addr=")? + "listening addr=".len()..];
            let addr = rest.split_whitespace().next()?.to_string();
            if !rest.contains("tls=false") {
                return None;
            }
            let role = rest[rest.find("role=")? + "role=".len()..]
                .split_whitespace()
                .next()?
                .to_string();
            (addr, role)
        }
    };
    Some((addr.parse().ok()?, role))
}

impl Served {
    /// Starts `cognito-gate --config <config>` and waits until it has logged its plain listener
    /// (and its admin listener when `admin`).
    pub async fn start(config: &Path, envs: &[(&str, &str)], admin: bool) -> Served {
        let mut cmd = command(&["--config", config.to_str().unwrap()]);
        cmd.envs(envs.iter().copied()).stdout(Stdio::null());
        let mut child = cmd.spawn().expect("the binary starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut served = Served {
            child,
            lines,
            log: Vec::new(),
            main: ([0, 0, 0, 0], 0).into(),
            admin: None,
        };
        let deadline = Instant::now() + START_DEADLINE;
        let (mut main, mut admin_addr) = (None, None);
        while main.is_none() || (admin && admin_addr.is_none()) {
            let Some(line) = served.next_line(deadline).await else {
                panic!(
                    "the gateway never logged its listeners:\n{}",
                    served.log.join("\n")
                );
            };
            match listening(&line) {
                Some((addr, role)) if role == "main" => main = Some(addr),
                Some((addr, role)) if role == "admin" => admin_addr = Some(addr),
                _ => {}
            }
        }
        served.main = main.unwrap();
        served.admin = admin_addr;
        served
    }

    /// Waits (at most `within`) for a stderr line containing `needle` and returns it.
    pub async fn wait_for_line(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            match self.next_line(deadline).await {
                Some(line) if line.contains(needle) => return line,
                Some(_) => {}
                None => panic!(
                    "no log line with {needle:?} within {within:?}; log so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// The next stderr line, or `None` when stderr closed or the deadline passed.
    pub async fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = tokio::time::timeout(left, self.lines.recv())
            .await
            .ok()
            .flatten()?;
        self.log.push(line.clone());
        Some(line)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.main)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin.expect("an admin listener"))
    }

    /// Sends a real signal (`TERM`, `INT`, `HUP`) with kill(1).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running");
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// Waits (at most `within`) for the process to exit.
    pub async fn exit(&mut self, within: Duration) -> ExitStatus {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!(
                "the gateway did not exit within {within:?}; log so far:\n{}",
                self.log.join("\n")
            ),
        }
    }

    /// After exit: every line it wrote to stderr.
    pub async fn full_log(mut self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.next_line(deadline).await.is_some() {}
        self.log
    }
}
