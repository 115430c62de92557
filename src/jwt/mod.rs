//! JWT verification with Cognito's rules: JWKS cache, key parsing and the authorizer checks.
//! Knows nothing of HTTP routing.

pub mod build;
pub mod error;
pub mod flood;
pub mod jwks;
pub mod keys;
pub mod metrics;
pub mod pools;
mod rejected;
pub mod token;
pub mod verify;

pub use build::{build_jwks, JwksBuildError};
pub use error::AuthError;
pub use flood::FloodGuard;
pub use jwks::{HttpJwksFetcher, JwksCache, JwksFetcher, KeyLookupError, RefreshOutcome};
pub use keys::{parse_jwks, KeySet};
pub use pools::{Authorizer, Pool};
pub use verify::{RoutePolicy, TokenUse, Verified, Verifier};
