//! `[throttle.NAME]` and `[throttle.api_keys]`: limits defined once by name and attached to
//! routes (`routes[].throttle`), like API Gateway's stage and usage-plan throttling.

use std::collections::BTreeMap;
use std::path::PathBuf;

use http::HeaderName;

use super::Secret;

/// What a limit counts by: one budget per value of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ThrottleKey {
    /// The route as a whole (every caller shares one budget per route).
    Route,
    /// The caller's app client (`client_id`, or an ID token's `aud`), after authorization.
    ClientId,
    /// The caller's `sub`, after authorization.
    Sub,
    /// The name of the API key the request presented (`[throttle.api_keys]`).
    ApiKey,
    /// The client address (IPv6 by `server.ipv6_prefix`), before authorization.
    ClientAddress,
}

impl ThrottleKey {
    pub fn as_str(self) -> &'static str {
        match self {
            ThrottleKey::Route => "route",
            ThrottleKey::ClientId => "client_id",
            ThrottleKey::Sub => "sub",
            ThrottleKey::ApiKey => "api_key",
            ThrottleKey::ClientAddress => "client_address",
        }
    }

    /// Keys known only once the request is authorized.
    pub fn is_identity(self) -> bool {
        matches!(self, ThrottleKey::ClientId | ThrottleKey::Sub)
    }
}

/// A quota's period, in UTC like API Gateway's usage plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaPeriod {
    Day,
    /// From Monday 00:00 UTC.
    Week,
    /// From the 1st, 00:00 UTC.
    Month,
}

impl QuotaPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaPeriod::Day => "day",
            QuotaPeriod::Week => "week",
            QuotaPeriod::Month => "month",
        }
    }
}

/// A token bucket or a quota.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LimitKind {
    /// `rate` tokens per second, at most `burst` at once (GCRA).
    Rate { rate: f64, burst: u32 },
    /// At most `quota` requests reaching the upstream per `period`.
    Quota { quota: u64, period: QuotaPeriod },
}

/// One `[throttle.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitConfig {
    pub name: String,
    pub kind: LimitKind,
    pub key: ThrottleKey,
}

/// `[throttle.api_keys]`: the header API keys arrive in and the keys known, by name (from
/// `file`, read at start and at each reload, and inline `keys`).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeysConfig {
    pub header: HeaderName,
    pub file: Option<PathBuf>,
    /// `(name, key)`, names unique.
    pub keys: Vec<(String, Secret)>,
}

/// Every `[throttle.*]` table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThrottleConfig {
    pub limits: BTreeMap<String, LimitConfig>,
    pub api_keys: Option<ApiKeysConfig>,
}
