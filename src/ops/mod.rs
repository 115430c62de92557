//! What sits on top of the request path for operators: health and readiness, the request
//! metrics and the access log.

pub mod access_log;
pub mod metrics;
pub mod process;
pub mod readiness;

pub use readiness::{health_response, Readiness};
