//! Failed-login limits per username and per client address: at most `max` failures within a
//! minute (counted from the first). An attempt is reserved before the private API is called and
//! refunded when it did not fail on the credentials, so parallel attempts cannot pass the limit
//! between a check and the answer. Usernames are compared the way Cognito compares them by
//! default (case-insensitively), after Unicode compatibility normalisation, so `ALICE`,
//! `alice ` and a full-width `ａlice` share one budget. An IPv6 client is its `/ipv6_prefix`
//! network (`crate::client_key`), since one host can use any address of its /64.
//!
//! With shared state the counters are the fleet's (Valkey `INCR`, keys HMAC'd, every key
//! expiring within the window whatever was written to it); while it is unavailable, this
//! replica's own. Valkey is not trusted with the decision: a shared count below zero or far
//! above the limit was written by someone else (to lock a user out, or to give themselves
//! unlimited guesses); it is logged and counted, and this replica's own counter decides for it.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use ipnet::IpNet;
use moka::sync::Cache;
use unicode_normalization::UnicodeNormalization;

use crate::client_key::client_key;
use crate::shared::{implausible, SharedState, Unavailable};

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

/// One charged counter of an attempt: the fleet's (its key) or this replica's own.
enum Slot {
    Shared(String),
    Local(Counter),
}

/// One reserved attempt. Dropping it keeps it charged (a failed login, or a caller that went
/// away after the private API was called); `refund` gives it back.
#[must_use = "an attempt is charged unless refunded"]
pub(crate) struct Attempt {
    shared: Option<Arc<SharedState>>,
    slots: Vec<Slot>,
}

impl Attempt {
    /// The attempt did not fail on the credentials: it does not count.
    pub(crate) fn refund(self) {
        if self.has_shared() {
            tokio::spawn(self.undo().in_current_span());
        } else {
            self.undo_local();
        }
    }

    fn has_shared(&self) -> bool {
        self.slots.iter().any(|s| matches!(s, Slot::Shared(_)))
    }

    /// Gives every charged counter back, the fleet's included, before returning.
    async fn undo(self) {
        for slot in &self.slots {
            match (slot, &self.shared) {
                (Slot::Shared(key), Some(shared)) => {
                    let _ = shared.decr(key, WINDOW).await;
                }
                (Slot::Local(c), _) => release(c),
                (Slot::Shared(_), None) => {}
            }
        }
    }

    fn undo_local(self) {
        for slot in &self.slots {
            if let Slot::Local(c) = slot {
                release(c);
            }
        }
    }
}

/// Never below zero, even if the window reset the counter meanwhile.
fn release(c: &Counter) {
    let _ = c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
}

/// The key a username is limited under: NFKC, lower-cased, trimmed.
pub(crate) fn normalise_username(username: &str) -> String {
    let folded: String = username.nfkc().collect::<String>().to_lowercase();
    folded.trim().to_string()
}

/// One of the two things an attempt is counted against.
enum Subject<'a> {
    Address(IpNet),
    Username(&'a str),
}

impl Subject<'_> {
    /// For logs and the shared key's kind; never the address or the username themselves.
    fn name(&self) -> &'static str {
        match self {
            Subject::Address(_) => "address",
            Subject::Username(_) => "username",
        }
    }
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
    pub(crate) async fn reserve(&self, username: Option<&str>, addr: IpAddr) -> Option<Attempt> {
        if let Some(shared) = &self.shared {
            let user = username.map(normalise_username);
            let subjects = [
                Some(Subject::Address(client_key(addr, self.ipv6_prefix))),
                user.as_deref().map(Subject::Username),
            ];
            if let Ok(r) = self.reserve_shared(shared, subjects).await {
                return r;
            }
        }
        self.reserve_local(username, addr)
    }

    /// The fleet's counters decide, each one unless it holds a value this gateway cannot have
    /// written (tampering: then this replica's own counter decides for it). `Unavailable`: none
    /// was left charged, and the replica's own counters decide for all.
    async fn reserve_shared(
        &self,
        shared: &Arc<SharedState>,
        subjects: [Option<Subject<'_>>; 2],
    ) -> Result<Option<Attempt>, Unavailable> {
        let mut attempt = Attempt {
            shared: Some(shared.clone()),
            slots: Vec::with_capacity(2),
        };
        for subject in subjects.iter().flatten() {
            let key = match subject {
                Subject::Address(net) => shared
                    .sealer()
                    .key("limit-addr", &[net.to_string().as_bytes()]),
                Subject::Username(u) => shared.sealer().key("limit-user", &[u.as_bytes()]),
            };
            let n = match shared.incr_window(&key, WINDOW).await {
                Ok(n) => n,
                Err(e) => {
                    attempt.undo().await;
                    return Err(e);
                }
            };
            if let Some(kind) = implausible(n, self.max) {
                tracing::warn!(
                    counter = subject.name(),
                    value = n,
                    "a shared failed-login counter holds a value this gateway cannot have written \
                     (someone with write access to the shared state changed it); this replica's \
                     own counter decides for it until the key expires"
                );
                shared.report_tampering(kind);
                let counter = self.local_counter(subject);
                if !self.take(&counter) {
                    attempt.undo().await;
                    return Ok(None);
                }
                attempt.slots.push(Slot::Local(counter));
                continue;
            }
            attempt.slots.push(Slot::Shared(key));
            if n > i64::from(self.max) {
                attempt.undo().await;
                return Ok(None);
            }
        }
        Ok(Some(attempt))
    }

    fn local_counter(&self, subject: &Subject<'_>) -> Counter {
        match subject {
            Subject::Address(net) => self.by_addr.get_with(*net, Default::default),
            Subject::Username(u) => self.by_user.get_with(u.to_string(), Default::default),
        }
    }

    /// This replica's own counters.
    pub(crate) fn reserve_local(&self, username: Option<&str>, addr: IpAddr) -> Option<Attempt> {
        let addr_counter = self
            .by_addr
            .get_with(client_key(addr, self.ipv6_prefix), Default::default);
        if !self.take(&addr_counter) {
            return None;
        }
        let mut attempt = Attempt {
            shared: None,
            slots: vec![Slot::Local(addr_counter)],
        };
        if let Some(u) = username {
            let c = self
                .by_user
                .get_with(normalise_username(u), Default::default);
            if !self.take(&c) {
                attempt.undo_local();
                return None;
            }
            attempt.slots.push(Slot::Local(c));
        }
        Some(attempt)
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
