//! cognito-gate: an in-VPC gateway that verifies Cognito JWTs exactly like an API Gateway Cognito
//! user pool authorizer, exchanges legacy credentials for Cognito tokens through a private API,
//! and forwards what it allows to private upstream APIs.
//!
//! Data flows one way: `server` accepts -> `pipeline` (the stages) -> `auth` (jwt | basic |
//! service, over `jwt` and `exchange`) -> `proxy` -> the response; `error` is the one map from
//! failures to responses, `ops` what operators see, `runtime` builds, reloads and stops it all.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod authz;
pub mod aws;
pub mod body;
pub mod cause;
pub mod cli;
pub mod client_key;
pub mod config;
#[cfg(feature = "dev-idp")]
pub mod dev_idp;
pub mod error;
pub mod exchange;
pub mod forward;
/// The fuzz targets' bodies (`fuzz/`), replayed on stable by `tests/hostile.rs`; only with the
/// `fuzz-harness` feature, which the fuzz crate and `scripts/test.sh` enable.
#[cfg(feature = "fuzz-harness")]
#[doc(hidden)]
pub mod fuzz_harness;
pub mod hop;
pub mod jwt;
pub mod metrics;
pub mod observe;
pub mod ops;
pub mod pipeline;
pub mod proxy;
pub mod runtime;
pub mod server;
pub mod shared;
pub mod throttle;
pub mod tls;

pub use runtime::{start, start_with, ReloadError, ReloadSummary, RunningGateway, StartError};
