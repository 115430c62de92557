//! Liveness and readiness: ready when the signing keys are loaded and fresh, every service
//! account holds a token, and the gateway is not draining.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{Response, StatusCode};

use crate::body::json_response;
use crate::body::Body;
use crate::exchange::ServiceAccounts;
use crate::jwt::JwksCache;

/// Readiness: every pool's keys loaded once and some pool's still fresh, service accounts
/// holding tokens, and not draining.
pub struct Readiness {
    draining: AtomicBool,
    jwks: Vec<Arc<JwksCache>>,
    services: Option<Arc<ServiceAccounts>>,
}

impl Readiness {
    pub fn new(jwks: Vec<Arc<JwksCache>>, services: Option<Arc<ServiceAccounts>>) -> Self {
        Readiness {
            draining: AtomicBool::new(false),
            jwks,
            services,
        }
    }

    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// `Ok` when ready, else the reason it is not.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.is_draining() {
            return Err("draining");
        }
        // Ready once every pool has had keys; afterwards a pool whose keys went stale answers
        // its own tokens 503, and readiness fails only when no pool has usable keys.
        if self.jwks.iter().any(|j| j.age().is_none()) {
            return Err("jwks not loaded");
        }
        if !self.jwks.is_empty() && !self.jwks.iter().any(|j| j.is_usable()) {
            return Err("jwks stale");
        }
        if let Some(s) = &self.services {
            if !s.all_ready() {
                return Err("service accounts hold no valid token");
            }
        }
        Ok(())
    }
}

/// Answers the health and readiness paths; `None` for any other path.
pub fn health_response(
    path: &str,
    health_path: &str,
    ready_path: &str,
    readiness: &Readiness,
) -> Option<Response<Body>> {
    if path == health_path {
        return Some(json_response(StatusCode::OK, r#"{"status":"ok"}"#.into()));
    }
    if path == ready_path {
        return Some(match readiness.check() {
            Ok(()) => json_response(StatusCode::OK, r#"{"status":"ready"}"#.into()),
            Err(why) => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "status": "not ready", "reason": why })
                    .to_string()
                    .into(),
            ),
        });
    }
    None
}
