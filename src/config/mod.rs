//! Configuration: `config.toml` is read once, `${ENV}` references are substituted, unknown keys and
//! bad values are collected (all of them, each naming its key), and the result is a typed `Config`
//! that the request path uses without re-parsing anything.
//!
//! - `types.rs`: the typed configuration;
//! - `load.rs`: reading, `${ENV}` substitution, serde errors, the error list;
//! - `raw.rs`: the serde mirror of the file;
//! - `validate/`: raw -> typed, one file per section, defaults as named constants;
//! - `summary.rs`: what `check-config` prints;
//! - `observe.rs`, `modes.rs`, `throttle.rs`: the typed sections kept apart from `types.rs`.

mod env;
mod load;
mod modes;
mod observe;
mod raw;
mod summary;
mod throttle;
mod types;
mod validate;

pub(crate) use load::join_key;
pub use load::{ConfigError, ConfigErrors, Source};
pub use modes::*;
pub use observe::*;
pub use throttle::*;
pub use types::*;
pub use validate::DEFAULT_PRIVATE_API_TIMEOUT;

/// The configuration shipped with the project, used when no `--config` is given and
/// `./config.toml` does not exist.
#[cfg(feature = "dev-idp")]
pub(crate) const EMBEDDED_DEFAULT: &str = include_str!("../../config.toml");
