//! The commands besides serving, one file each (`verify-token`, `login`, `aws`), and what
//! they share: loading the configuration, a runtime for one-shot commands, the exit codes.
//! `main.rs` parses the arguments and dispatches here.

mod aws;
mod ca;
pub mod explain;
mod login;
mod serve;
mod verify_token;

use std::path::PathBuf;

use crate::config::{Config, ConfigErrors};
#[cfg(feature = "dev-idp")]
use crate::config::{Source, EMBEDDED_DEFAULT};

pub use aws::{aws_check, aws_template};
pub use ca::{ca_export, ca_init};
pub use login::login;
pub use serve::serve;
pub use verify_token::verify_token;

/// Exit codes. clap would answer a usage error with 2, which a script around `verify-token` or
/// `login` would read as "denied": here it is `USAGE` (sysexits' EX_USAGE), so each code means
/// one thing.
pub mod exit {
    /// A bad configuration or a failure to run at all.
    pub const CONFIG: u8 = 1;
    /// `verify-token`: the token is denied; `login`: wrong username or password.
    pub(crate) const DENY: u8 = 2;
    /// `login`: Cognito wants a challenge answered (printed).
    pub(crate) const CHALLENGE: u8 = 3;
    /// `login`: the private API is unavailable.
    pub(crate) const UNAVAILABLE: u8 = 4;
    /// Arguments that do not parse (an unknown flag, a missing value).
    pub const USAGE: u8 = 64;
}

/// The configuration at `path`, else `./config.toml`, else the embedded default; with the name
/// to report it by.
pub fn load(path: Option<&PathBuf>) -> Result<(Config, String), ConfigErrors> {
    match path {
        Some(p) => Config::load(p).map(|c| (c, p.display().to_string())),
        None => {
            let default = PathBuf::from("config.toml");
            if default.is_file() {
                Config::load(&default).map(|c| (c, "config.toml".to_string()))
            } else {
                embedded()
            }
        }
    }
}

/// How the embedded configuration is named in logs and summaries.
pub(crate) const EMBEDDED_NAME: &str = "embedded development config";

/// The development configuration compiled into the binary (the shipped config.toml).
#[cfg(feature = "dev-idp")]
fn embedded() -> Result<(Config, String), ConfigErrors> {
    let source = Source {
        name: EMBEDDED_NAME.into(),
        base_dir: PathBuf::from("."),
    };
    Config::parse(EMBEDDED_DEFAULT, &source).map(|c| (c, source.name))
}

/// A production build carries no configuration: it needs one given.
#[cfg(not(feature = "dev-idp"))]
fn embedded() -> Result<(Config, String), ConfigErrors> {
    Err(ConfigErrors::single(
        "",
        "no configuration: pass --config PATH or put a config.toml in the working directory (this build has no embedded development configuration)",
    ))
}

/// The runtime for the CLI's one-shot commands.
pub fn runtime() -> tokio::runtime::Runtime {
    server_runtime(1)
}

/// The gateway's runtime: `worker_threads` (0 = one per CPU the process may run on). With one
/// thread, a single-threaded scheduler: every task runs on the thread that polls the sockets, with
/// no cross-thread hand-off, which costs about 15% less CPU per proxied request.
pub(crate) fn server_runtime(worker_threads: usize) -> tokio::runtime::Runtime {
    let threads = match worker_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder
        .enable_all()
        .thread_name("cognito-gate")
        .build()
        .expect("tokio runtime")
}
