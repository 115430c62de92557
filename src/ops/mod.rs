//! What operators see: health and readiness, the admin endpoint, metrics and the access log.

pub mod access_log;
pub mod admin;
pub mod metrics;
pub mod readiness;

pub use readiness::{health_response, Readiness};
