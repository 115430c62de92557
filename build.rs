//! Build metadata for `cognito_gate_build_info{version,commit}`: the commit from
//! `COGNITO_GATE_COMMIT` (a Docker build without `.git` sets it) or `git rev-parse`, else
//! "unknown".

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=COGNITO_GATE_COMMIT");
    for f in [".git/HEAD", ".git/refs/heads"] {
        if Path::new(f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
    let commit = std::env::var("COGNITO_GATE_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| {
            std::process::Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=COGNITO_GATE_COMMIT={commit}");
}
