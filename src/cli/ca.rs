//! `cognito-gate ca init --out DIR` and `cognito-gate ca export`: the forward proxy's issuing CA.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use super::exit;
use crate::config::Config;

/// Writes a new CA to `DIR/ca.pem` and `DIR/ca.key` (mode 0600, created, never overwritten).
pub fn ca_init(out: &Path) -> ExitCode {
    let (cert, key) = match crate::forward::ca::generate("cognito-gate forward proxy CA") {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("cannot generate a CA: {e}");
            return ExitCode::from(exit::CONFIG);
        }
    };
    if let Err(e) = std::fs::create_dir_all(out) {
        eprintln!("cannot create {}: {e}", out.display());
        return ExitCode::from(exit::CONFIG);
    }
    let key_path = out.join("ca.key");
    let cert_path = out.join("ca.pem");
    for p in [&key_path, &cert_path] {
        if p.exists() {
            eprintln!(
                "{} exists: not overwritten (a new CA means every client trusts it anew)",
                p.display()
            );
            return ExitCode::from(exit::CONFIG);
        }
    }
    if let Err(e) = write_private(&key_path, key.as_bytes()) {
        eprintln!("cannot write {}: {e}", key_path.display());
        return ExitCode::from(exit::CONFIG);
    }
    if let Err(e) = std::fs::write(&cert_path, cert.as_bytes()) {
        eprintln!("cannot write {}: {e}", cert_path.display());
        return ExitCode::from(exit::CONFIG);
    }
    println!(
        "wrote {} (give it to the apps' trust stores: cognito-gate ca export)",
        cert_path.display()
    );
    println!("wrote {} (mode 0600; keep it secret)", key_path.display());
    println!(
        "\n[forward_proxy]\nca_cert = \"{}\"\nca_key = \"{}\"",
        cert_path.display(),
        key_path.display()
    );
    ExitCode::SUCCESS
}

/// Prints the configured CA certificate (PEM) for trust stores.
pub fn ca_export(config: &Config) -> ExitCode {
    let Some(ca) = config.forward_proxy.as_ref().and_then(|f| f.ca.as_ref()) else {
        eprintln!(
            "no [forward_proxy] ca_cert in the configuration (cognito-gate ca init --out DIR)"
        );
        return ExitCode::from(exit::CONFIG);
    };
    match std::fs::read_to_string(&ca.cert) {
        Ok(pem) => {
            print!("{pem}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot read {}: {e}", ca.cert.display());
            ExitCode::from(exit::CONFIG)
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}
