//! Failed-login limits per username and per client address: at most `max` failures within a
//! minute (counted from the first). An attempt is reserved before the private API is called and
//! refunded when it did not fail on the credentials, so parallel attempts cannot pass the limit
//! between a check and the answer. Usernames are compared the way Cognito compares them by
//! default (case-insensitively), after Unicode compatibility normalisation, so `ALICE`,
//! `alice ` and a full-width `ａlice` share one budget. An IPv6 client is its `/ipv6_prefix`
//! network (`crate::client_key`), since one host can use any address of its /64. With shared
//! state the counters are the fleet's (Valkey `INCR` with the window as expiry, keys HMAC'd);
//! while it is unavailable, this replica's own.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use moka::sync::Cache;
use unicode_normalization::UnicodeNormalization;

use crate::client_key::client_key;
use crate::shared::{SharedState, Unavailable};

const WINDOW: Duration = Duration::from_secs(60);
/// Bounds the memory an attacker can make the limiter use.
const MAX_TRACKED: u64 = 100_000;

type Counter = Arc<AtomicU32>;

pub struct FailureLimiter {
    max: u32,
    /// IPv6 clients are counted per prefix of this length (`[server] ipv6_prefix`).
    ipv6_prefix: u8,
    by_user: Cache<String, Counter>,
    by_addr: Cache<IpNet, Counter>,
    shared: Option<Arc<SharedState>>,
}

enum Charge {
    Local([Option<Counter>; 2]),
    Shared {
        shared: Arc<SharedState>,
        keys: Vec<String>,
    },
}

/// One reserved attempt. Dropping it keeps it charged (a failed login, or a caller that went
/// away after the private API was called); `refund` gives it back.
#[must_use = "an attempt is charged unless refunded"]
pub struct Attempt {
    charge: Charge,
}

impl Attempt {
    /// The attempt did not fail on the credentials: it does not count.
    pub fn refund(self) {
        match self.charge {
            Charge::Local(counters) => {
                for c in counters.iter().flatten() {
                    // Never below zero, even if the window reset the counter meanwhile.
                    let _ =
                        c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
                }
            }
            Charge::Shared { shared, keys } => {
                tokio::spawn(async move {
                    for k in keys {
                        let _ = shared.decr(&k).await;
                    }
                });
            }
        }
    }
}

/// The key a username is limited under: NFKC, lower-cased, trimmed.
pub fn normalise_username(username: &str) -> String {
    let folded: String = username.nfkc().collect::<String>().to_lowercase();
    folded.trim().to_string()
}

impl FailureLimiter {
    pub fn new(max: u32, ipv6_prefix: u8, shared: Option<Arc<SharedState>>) -> Self {
        FailureLimiter {
            max,
            ipv6_prefix,
            by_user: Cache::builder()
                .time_to_live(WINDOW)
                .max_capacity(MAX_TRACKED)
                .build(),
            by_addr: Cache::builder()
                .time_to_live(WINDOW)
                .max_capacity(MAX_TRACKED)
                .build(),
            shared,
        }
    }

    /// Reserves one attempt against the address (its IPv6 prefix) and, when given, the
    /// username. `None` when either has used up its failures for the window (nothing is then
    /// charged).
    pub async fn reserve(&self, username: Option<&str>, addr: IpAddr) -> Option<Attempt> {
        if let Some(shared) = &self.shared {
            if let Ok(r) = self.reserve_shared(shared, username, addr).await {
                return r;
            }
        }
        self.reserve_local(username, addr)
    }

    async fn reserve_shared(
        &self,
        shared: &Arc<SharedState>,
        username: Option<&str>,
        addr: IpAddr,
    ) -> Result<Option<Attempt>, Unavailable> {
        let client = client_key(addr, self.ipv6_prefix);
        let addr_key = shared
            .sealer()
            .key("limit-addr", &[client.to_string().as_bytes()]);
        let n = shared.incr_window(&addr_key, WINDOW).await?;
        if n > i64::from(self.max) {
            let _ = shared.decr(&addr_key).await;
            return Ok(None);
        }
        let mut keys = vec![addr_key];
        if let Some(u) = username {
            let user_key = shared
                .sealer()
                .key("limit-user", &[normalise_username(u).as_bytes()]);
            let n = match shared.incr_window(&user_key, WINDOW).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = shared.decr(&keys[0]).await;
                    return Err(e);
                }
            };
            keys.push(user_key);
            if n > i64::from(self.max) {
                for k in &keys {
                    let _ = shared.decr(k).await;
                }
                return Ok(None);
            }
        }
        Ok(Some(Attempt {
            charge: Charge::Shared {
                shared: shared.clone(),
                keys,
            },
        }))
    }

    /// This replica's own counters.
    pub fn reserve_local(&self, username: Option<&str>, addr: IpAddr) -> Option<Attempt> {
        let addr_counter = self
            .by_addr
            .get_with(client_key(addr, self.ipv6_prefix), Default::default);
        if !self.take(&addr_counter) {
            return None;
        }
        let user_counter = match username {
            None => None,
            Some(u) => {
                let c = self
                    .by_user
                    .get_with(normalise_username(u), Default::default);
                if !self.take(&c) {
                    Attempt {
                        charge: Charge::Local([Some(addr_counter), None]),
                    }
                    .refund();
                    return None;
                }
                Some(c)
            }
        };
        Some(Attempt {
            charge: Charge::Local([Some(addr_counter), user_counter]),
        })
    }

    /// Increments the counter unless it is at the limit, in one atomic step.
    fn take(&self, c: &Counter) -> bool {
        c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < self.max).then_some(n + 1)
        })
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max: u32) -> FailureLimiter {
        FailureLimiter::new(max, 64, None)
    }

    #[tokio::test]
    async fn limits_by_user_and_by_address() {
        let l = limiter(3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            drop(l.reserve(Some("alice"), a).await.expect("under the limit"));
        }
        assert!(l.reserve(Some("alice"), b).await.is_none(), "per username");
        assert!(l.reserve(Some("bob"), a).await.is_none(), "per address");
        assert!(l.reserve(Some("bob"), b).await.is_some());
    }

    #[tokio::test]
    async fn refunded_attempts_do_not_count_and_a_refusal_charges_nothing() {
        let l = limiter(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..10 {
            l.reserve(Some("alice"), a).await.unwrap().refund();
        }
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(l.reserve(Some("bob"), b).await.unwrap());
        }
        // bob is at the limit: a refusal for bob must not use up the address's budget.
        assert!(l.reserve(Some("bob"), a).await.is_none());
        assert!(l.reserve(Some("carol"), a).await.is_some());
        drop(held);
    }

    #[tokio::test]
    async fn usernames_share_a_budget_across_case_space_and_width() {
        assert_eq!(normalise_username(" Test-User "), "test-user");
        assert_eq!(normalise_username("ｔest-user"), "test-user");
        assert_eq!(normalise_username("TEST-USER"), "test-user");
        let l = limiter(1);
        drop(
            l.reserve(Some("test-user"), "10.0.0.1".parse().unwrap())
                .await,
        );
        for (i, variant) in ["TEST-USER", "test-user ", "ｔest-user"].iter().enumerate() {
            let addr: IpAddr = format!("10.0.1.{i}").parse().unwrap();
            assert!(
                l.reserve(Some(variant), addr).await.is_none(),
                "{variant:?}"
            );
        }
    }

    #[tokio::test]
    async fn addresses_alone_for_requests_that_name_no_trustworthy_username() {
        let l = limiter(1);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        drop(l.reserve(None, a).await);
        assert!(l.reserve(None, a).await.is_none());
        assert!(l
            .reserve(Some("alice"), "10.0.0.2".parse().unwrap())
            .await
            .is_some());
    }

    #[tokio::test]
    async fn ipv6_clients_share_a_budget_per_prefix() {
        let l = limiter(3);
        let mut granted = 0;
        for i in 1..=12 {
            let addr: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            // Another username each time: only the address can hold them back.
            if let Some(a) = l.reserve(Some(&format!("user{i}")), addr).await {
                granted += 1;
                drop(a);
            }
        }
        assert_eq!(granted, 3, "twelve addresses of one /64 are one client");
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(
            l.reserve(Some("other"), other).await.is_some(),
            "another /64 has its own budget"
        );

        let l = FailureLimiter::new(1, 48, None);
        drop(l.reserve(None, "2001:db8:1:2::1".parse().unwrap()).await);
        assert!(
            l.reserve(None, "2001:db8:1:ffff::1".parse().unwrap())
                .await
                .is_none(),
            "ipv6_prefix = 48: one /48"
        );
    }

    #[tokio::test]
    async fn ipv4_stays_per_address_and_mapped_ipv6_is_ipv4() {
        let l = limiter(1);
        drop(l.reserve(None, "192.0.2.1".parse().unwrap()).await);
        assert!(
            l.reserve(None, "::ffff:192.0.2.1".parse().unwrap())
                .await
                .is_none(),
            "the same client"
        );
        assert!(l
            .reserve(None, "192.0.2.2".parse().unwrap())
            .await
            .is_some());
    }

    #[test]
    fn parallel_reservations_never_pass_the_limit() {
        let l = Arc::new(limiter(10));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let granted = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (l, g) = (l.clone(), granted.clone());
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        if let Some(t) = l.reserve_local(Some("alice"), a) {
                            g.fetch_add(1, Ordering::SeqCst);
                            drop(t);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(granted.load(Ordering::SeqCst), 10);
    }
}
