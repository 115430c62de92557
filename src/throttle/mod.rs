//! Throttling like API Gateway (`[throttle.NAME]`, `routes[].throttle`): token buckets and
//! quotas defined once by name and attached to routes, keyed by the route, the client address,
//! an API key, or — once the request is authorized — the caller's `sub` or `client_id`. With
//! `[shared_state]` the budgets are the fleet's (`bucket.rs`, `quota.rs` say how, and what
//! accuracy that trades); without it, or while Valkey is away, each replica's own.
//!
//! The pipeline asks twice: `before_auth` (a known API key where a limit is keyed by one, then
//! the limits keyed by route, address or API key, so an unauthenticated flood never reaches the
//! token checks) and `after_auth` (the limits keyed by identity, then the quotas, which count
//! only requests that go on to the upstream). The first exhausted limit answers.
//! A reload keeps the state of every limit whose definition did not change.

mod api_keys;
mod bucket;
mod clock;
pub mod metrics;
mod quota;
mod table;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use rustc_hash::FxHashMap;

pub use clock::Clock;

use crate::client_key::client_key;
use crate::config::{Config, LimitConfig, LimitKind, ThrottleKey};
use crate::jwt::Verified;
use crate::shared::SharedState;
use api_keys::ApiKeys;
use bucket::{Buckets, Rate};
use metrics::{LimitLabel, ThrottleMetrics, ThrottledLabels};
use quota::Quota;

/// One limit's answer for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Admitted {
        remaining: u64,
    },
    Refused {
        retry_after: Duration,
        remaining: u64,
    },
}

/// Counts a decision a shared limit took on this replica's own state (Valkey unavailable).
pub(crate) struct Fallback<'a> {
    metrics: &'a ThrottleMetrics,
    limit: &'a str,
}

impl Fallback<'_> {
    fn used(&self) {
        self.metrics
            .fallback
            .get_or_create(&LimitLabel {
                limit: self.limit.to_string(),
            })
            .inc();
    }
}

/// A request a limit refused: what the 429 says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttled {
    /// The limit's name (for the access log; never the caller's key).
    pub limit: Arc<str>,
    pub retry_after: Duration,
    /// `RateLimit-Policy`: `"name";q=…;w=…`.
    pub policy: HeaderValue,
}

impl Throttled {
    /// Whole seconds to wait, at least 1 (`Retry-After` has no fractions).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_nanos().div_ceil(1_000_000_000).max(1) as u64
    }

    /// `Retry-After`, and the IETF fields (draft-ietf-httpapi-ratelimit-headers):
    /// `RateLimit-Policy` and `RateLimit: "name";r=0;t=…`.
    pub fn write_headers(&self, h: &mut HeaderMap) {
        let secs = self.retry_after_secs();
        h.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        h.insert(RATELIMIT_POLICY, self.policy.clone());
        if let Ok(v) = HeaderValue::from_str(&format!("\"{}\";r=0;t={secs}", self.limit)) {
            h.insert(RATELIMIT, v);
        }
    }
}

const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// Why a request goes no further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// An api_key-limited route without a known API key: 403, like API Gateway.
    ApiKey,
    Limited(Box<Throttled>),
}

enum Kind {
    Rate(Buckets),
    Quota(Quota),
}

/// One `[throttle.NAME]` with its state.
struct Limit {
    config: LimitConfig,
    name: Arc<str>,
    policy: HeaderValue,
    kind: Kind,
    /// The prefix its address keys were made with (a change starts it afresh).
    ipv6_prefix: u8,
}

impl Limit {
    fn new(config: &LimitConfig, ipv6_prefix: u8) -> Self {
        let (kind, q, w) = match config.kind {
            LimitKind::Rate { rate, burst } => (
                Kind::Rate(Buckets::new(Rate::new(rate, burst))),
                u64::from(burst),
                (f64::from(burst) / rate).ceil().max(1.0) as u64,
            ),
            LimitKind::Quota { quota, period } => (
                Kind::Quota(Quota::new(quota, period)),
                quota,
                quota::window_secs(period),
            ),
        };
        Limit {
            name: Arc::from(config.name.as_str()),
            policy: HeaderValue::from_str(&format!("\"{}\";q={q};w={w}", config.name))
                .unwrap_or_else(|_| HeaderValue::from_static("q=0")),
            config: config.clone(),
            kind,
            ipv6_prefix,
        }
    }

    fn is_quota(&self) -> bool {
        matches!(self.kind, Kind::Quota(_))
    }
}

/// A route's limits, in the order they are asked.
#[derive(Default)]
struct RouteLimits {
    /// Buckets keyed by route, address or API key.
    before: Vec<Arc<Limit>>,
    /// Buckets keyed by identity, then every quota.
    after: Vec<Arc<Limit>>,
    /// Whether a known API key is required.
    api_key: bool,
}

pub struct Throttle {
    limits: BTreeMap<String, Arc<Limit>>,
    routes: FxHashMap<String, RouteLimits>,
    api_keys: Option<ApiKeys>,
    clock: Arc<Clock>,
    shared: Option<Arc<SharedState>>,
    ipv6_prefix: u8,
    metrics: ThrottleMetrics,
}

impl Throttle {
    /// The throttle for `config`, or `None` when no route is throttled. Limits whose definition
    /// is unchanged from `previous` keep their state, and the clock is kept.
    pub(crate) fn build(
        config: &Config,
        previous: Option<&Throttle>,
        shared: Option<Arc<SharedState>>,
        metrics: &ThrottleMetrics,
    ) -> Option<Arc<Throttle>> {
        if config.routes.iter().all(|r| r.throttle.is_empty()) {
            return None;
        }
        let prefix = config.server.ipv6_prefix;
        let limits: BTreeMap<String, Arc<Limit>> = config
            .throttle
            .limits
            .iter()
            .map(|(name, cfg)| {
                let kept = previous
                    .and_then(|p| p.limits.get(name))
                    .filter(|l| {
                        l.config == *cfg
                            && (l.ipv6_prefix == prefix || cfg.key != ThrottleKey::ClientAddress)
                    })
                    .cloned();
                (
                    name.clone(),
                    kept.unwrap_or_else(|| Arc::new(Limit::new(cfg, prefix))),
                )
            })
            .collect();
        let mut routes = FxHashMap::default();
        for r in &config.routes {
            let mut rl = RouteLimits::default();
            let attached = r.throttle.iter().filter_map(|n| limits.get(n));
            for l in attached.clone().filter(|l| !l.is_quota()) {
                metrics.preset(&r.name, &l.config.name);
                if l.config.key.is_identity() {
                    rl.after.push(l.clone());
                } else {
                    rl.before.push(l.clone());
                }
            }
            for l in attached {
                rl.api_key |= l.config.key == ThrottleKey::ApiKey;
                if l.is_quota() {
                    metrics.preset(&r.name, &l.config.name);
                    rl.after.push(l.clone());
                }
            }
            routes.insert(r.name.clone(), rl);
        }
        Some(Arc::new(Throttle {
            limits,
            routes,
            api_keys: config.throttle.api_keys.as_ref().map(ApiKeys::new),
            clock: previous.map(|p| p.clock.clone()).unwrap_or_default(),
            shared,
            ipv6_prefix: prefix,
            metrics: metrics.clone(),
        }))
    }

    /// The throttle's clock (tests set and move it to cross a quota's period).
    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    /// The limits that start afresh against `old` (new, or defined differently).
    pub fn reset_since(&self, old: Option<&Throttle>) -> Vec<String> {
        self.limits
            .iter()
            .filter(|(name, l)| {
                old.and_then(|o| o.limits.get(*name))
                    .is_none_or(|o| !Arc::ptr_eq(o, l))
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The header API keys arrive in, removed before forwarding.
    pub(crate) fn api_key_header(&self) -> Option<&HeaderName> {
        self.api_keys.as_ref().map(|k| &k.header)
    }

    /// How many API keys are known (the reload log says it).
    pub fn api_key_count(&self) -> usize {
        self.api_keys.as_ref().map_or(0, ApiKeys::len)
    }

    /// Before authorization: a known API key where the route needs one (its name is put in
    /// `api_key_out` for `after_auth` and the access log, refused or not), then the limits
    /// keyed by route, address or key.
    pub(crate) async fn before_auth(
        &self,
        route: &str,
        headers: &HeaderMap,
        client: IpAddr,
        api_key_out: &mut Option<Arc<str>>,
    ) -> Result<(), Refusal> {
        let Some(rl) = self.routes.get(route) else {
            return Ok(());
        };
        let api_key = match (&self.api_keys, rl.api_key) {
            (Some(keys), true) => match keys.find(headers) {
                Some(name) => Some(name),
                None => {
                    self.metrics
                        .api_key_rejected
                        .get_or_create(&crate::metrics::RouteLabel {
                            route: route.to_string(),
                        })
                        .inc();
                    return Err(Refusal::ApiKey);
                }
            },
            _ => None,
        };
        api_key_out.clone_from(&api_key);
        for l in &rl.before {
            let key = match l.config.key {
                ThrottleKey::Route => Cow::Borrowed(route),
                ThrottleKey::ApiKey => Cow::Borrowed(api_key.as_deref().unwrap_or("")),
                _ => Cow::Owned(self.address_key(client)),
            };
            self.ask(l, route, &key).await?;
        }
        Ok(())
    }

    /// After authorization, just before forwarding: the limits keyed by identity (a token
    /// without the claim is keyed by its client address), then the quotas.
    pub(crate) async fn after_auth(
        &self,
        route: &str,
        verified: Option<&Verified>,
        api_key: Option<&str>,
        client: IpAddr,
    ) -> Result<(), Refusal> {
        let Some(rl) = self.routes.get(route) else {
            return Ok(());
        };
        for l in &rl.after {
            let claim = match l.config.key {
                ThrottleKey::Route => Some(route),
                ThrottleKey::ApiKey => api_key,
                ThrottleKey::Sub => verified.and_then(|v| v.sub()),
                ThrottleKey::ClientId => verified.and_then(|v| v.client_id()),
                ThrottleKey::ClientAddress => None,
            };
            let key = match claim {
                Some(c) => Cow::Borrowed(c),
                None => Cow::Owned(self.address_key(client)),
            };
            self.ask(l, route, &key).await?;
        }
        Ok(())
    }

    fn address_key(&self, client: IpAddr) -> String {
        format!("address {}", client_key(client, self.ipv6_prefix))
    }

    async fn ask(&self, l: &Limit, route: &str, key: &str) -> Result<(), Refusal> {
        let fallback = Fallback {
            metrics: &self.metrics,
            limit: &l.config.name,
        };
        let now = self.clock.now();
        let decision = match (&l.kind, &self.shared) {
            (Kind::Rate(b), None) => b.take_local(key, now),
            (Kind::Quota(q), None) => q.take_local(key, now),
            (Kind::Rate(b), Some(s)) => {
                let shared_key = || {
                    s.sealer()
                        .key("throttle", &[l.config.name.as_bytes(), key.as_bytes()])
                };
                b.take_shared(key, shared_key, s, || self.clock.now(), &fallback)
                    .await
            }
            (Kind::Quota(q), Some(s)) => {
                let shared_key = |period: &str| {
                    s.sealer().key(
                        "quota",
                        &[l.config.name.as_bytes(), key.as_bytes(), period.as_bytes()],
                    )
                };
                q.take_shared(key, shared_key, s, now, &fallback).await
            }
        };
        match decision {
            Decision::Admitted { .. } => Ok(()),
            Decision::Refused { retry_after, .. } => {
                self.metrics
                    .throttled
                    .get_or_create(&ThrottledLabels {
                        route: route.to_string(),
                        limit: l.config.name.clone(),
                    })
                    .inc();
                Err(Refusal::Limited(Box::new(Throttled {
                    limit: l.name.clone(),
                    retry_after,
                    policy: l.policy.clone(),
                })))
            }
        }
    }
}
