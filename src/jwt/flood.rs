//! The flood guard, `[cognito] bad_signature_per_minute`: a client address whose tokens keep
//! failing the signature check is answered 429 before any RSA work once it has used up its
//! budget for the minute (counted from its first failure). A forgery nobody has seen must be
//! checked with RSA by every verifier (about 22 µs of CPU each); past the budget, the flooding
//! client costs a lookup.
//!
//! - Only a failed signature is charged: a valid token never is, an expired or malformed one
//!   neither. A client over its budget still gets the tokens verified before (they need no RSA),
//!   so a valid user behind the same address is not cut off from them.
//! - A client is its `crate::client_key` (IPv4 address, IPv6 prefix), like the failed-login
//!   limits.
//! - With shared state the budget is the fleet's: each failure is counted with one Valkey
//!   `INCR` (HMAC'd key, expiring with the window) after the RSA check that found it, and a
//!   replica that sees the fleet's count pass the budget refuses that client until its own
//!   window for it ends. The check before RSA never waits for Valkey. While Valkey is
//!   unavailable, and for a counter that holds a value this gateway cannot have written, this
//!   replica's own count decides.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use moka::sync::Cache;
use prometheus_client::encoding::EncodeLabelSet;

use crate::client_key::client_key;
use crate::metrics::{Counter, Family, Registry};
use crate::shared::{implausible, SharedState};

/// A client's minute, from its first failure; also the refusal's `Retry-After`.
pub(crate) const WINDOW_SECS: u64 = 60;
const WINDOW: Duration = Duration::from_secs(WINDOW_SECS);
/// Bounds the memory a flood from many addresses can make the guard use.
const MAX_TRACKED: u64 = 100_000;

/// What `cognito_gate_bad_signature_flood_total{event}` counts.
pub(crate) const FLOOD_EVENTS: [&str; 2] = ["charged", "refused"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

/// `cognito_gate_bad_signature_flood_total{event}`: failed signatures charged to a client, and
/// requests refused before RSA because their client had used up its budget.
#[derive(Clone)]
pub(crate) struct FloodMetrics {
    charged: Counter,
    refused: Counter,
}

impl FloodMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let family = Family::<EventLabel, Counter>::default();
        registry.register(
            "bad_signature_flood",
            "Failed token signatures charged to a client address, and requests refused with 429 \
             before any RSA work because their address used up [cognito] bad_signature_per_minute",
            family.clone(),
        );
        let get = |event| family.get_or_create(&EventLabel { event }).clone();
        FloodMetrics {
            charged: get(FLOOD_EVENTS[0]),
            refused: get(FLOOD_EVENTS[1]),
        }
    }
}

/// One client's minute.
#[derive(Default)]
struct Window {
    failures: AtomicU32,
    /// The fleet's count for this client passed the budget.
    fleet_over: AtomicBool,
}

pub struct FloodGuard {
    budget: u32,
    ipv6_prefix: u8,
    local: Cache<IpNet, Arc<Window>>,
    shared: Option<Arc<SharedState>>,
    metrics: FloodMetrics,
}

impl FloodGuard {
    /// `None` when the budget is 0 (the guard is off).
    pub(crate) fn new(
        budget: u32,
        ipv6_prefix: u8,
        shared: Option<Arc<SharedState>>,
        metrics: FloodMetrics,
    ) -> Option<Self> {
        (budget > 0).then(|| FloodGuard {
            budget,
            ipv6_prefix,
            local: Cache::builder()
                .time_to_live(WINDOW)
                .max_capacity(MAX_TRACKED)
                .build(),
            shared,
            metrics,
        })
    }

    pub(crate) fn budget(&self) -> u32 {
        self.budget
    }

    /// Whether `client` may have a token checked with RSA; counts a refusal. Never waits.
    pub(crate) fn admits(&self, client: IpAddr) -> bool {
        let Some(w) = self.local.get(&client_key(client, self.ipv6_prefix)) else {
            return true;
        };
        let over = w.failures.load(Ordering::Relaxed) >= self.budget
            || w.fleet_over.load(Ordering::Relaxed);
        if over {
            self.metrics.refused.inc();
        }
        !over
    }

    /// A token from `client` failed the signature check: one failure against its budget, this
    /// replica's and, with shared state, the fleet's.
    pub(crate) async fn charge(&self, client: IpAddr) {
        let net = client_key(client, self.ipv6_prefix);
        let w = self.local.get_with(net, Default::default);
        let _ = w
            .failures
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_add(1));
        self.metrics.charged.inc();
        let Some(shared) = &self.shared else {
            return;
        };
        let key = shared
            .sealer()
            .key("flood-addr", &[net.to_string().as_bytes()]);
        // Unavailable: this replica's own count decides.
        if let Ok(n) = shared.incr_window(&key, WINDOW).await {
            if let Some(kind) = implausible(n, self.budget) {
                tracing::warn!(
                    value = n,
                    "a shared bad-signature counter holds a value this gateway cannot have \
                     written (someone with write access to the shared state changed it); this \
                     replica's own count decides for it until the key expires"
                );
                shared.report_tampering(kind);
            } else if n >= i64::from(self.budget) {
                w.fleet_over.store(true, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(budget: u32) -> FloodGuard {
        let mut registry = crate::metrics::registry();
        FloodGuard::new(budget, 64, None, FloodMetrics::register(&mut registry)).unwrap()
    }

    #[test]
    fn zero_is_off() {
        let mut registry = crate::metrics::registry();
        assert!(FloodGuard::new(0, 64, None, FloodMetrics::register(&mut registry)).is_none());
    }

    #[tokio::test]
    async fn a_client_is_refused_once_its_failures_reach_the_budget() {
        let g = guard(3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(g.admits(a));
            g.charge(a).await;
        }
        assert!(!g.admits(a), "three failures used the budget");
        assert!(g.admits(b), "per client");
        assert_eq!(g.metrics.charged.get(), 3);
        assert_eq!(g.metrics.refused.get(), 1);
    }

    #[tokio::test]
    async fn an_ipv6_client_is_its_prefix() {
        let g = guard(2);
        g.charge("2001:db8:1:2::1".parse().unwrap()).await;
        g.charge("2001:db8:1:2::2".parse().unwrap()).await;
        assert!(!g.admits("2001:db8:1:2::ffff".parse().unwrap()));
        assert!(g.admits("2001:db8:1:3::1".parse().unwrap()));
        g.charge("::ffff:10.0.0.9".parse().unwrap()).await;
        g.charge("10.0.0.9".parse().unwrap()).await;
        assert!(
            !g.admits("10.0.0.9".parse().unwrap()),
            "a mapped address is the IPv4 one"
        );
    }
}
