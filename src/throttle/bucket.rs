//! Token buckets (GCRA: one number per key, the theoretical arrival time) on this replica, and
//! in front of the fleet's buckets in Valkey as leases: a replica takes up to `lease` tokens in
//! one round trip and spends them locally for at most the time they represent, and remembers a
//! refusal until the first token is due, so neither a hot key nor a flood against an empty
//! bucket costs a round trip per request.
//!
//! Accuracy traded for that (documented in docs/configuration.md, "Throttling"): the fleet
//! never admits more than the shared bucket allows; a replica may hold up to `lease - 1` tokens
//! it has not spent yet, for at most 50 ms, after which they lapse unspent (a lease is at most
//! 50 ms of the rate, so a token is spent at most 50 ms after the fleet's bucket gave it). While Valkey is unavailable each replica uses its own bucket with
//! the full rate and burst.

use std::time::Duration;

use super::table::{Entry, Table, MAX_KEYS};
use super::{Decision, Fallback};
use crate::shared::{Lease, SharedState};

/// How much of the rate one lease may cover, and how long its tokens may be held (ns).
const LEASE_SPAN_NANOS: u64 = 50_000_000;
/// The most tokens one lease takes.
const MAX_LEASE: u64 = 64;

/// A bucket's shape, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rate {
    /// Time per token.
    interval: u64,
    /// `burst` × `interval`: how far ahead of now the arrival time may run.
    tolerance: u64,
    /// Tokens per lease from the fleet's bucket.
    lease: u64,
}

impl Rate {
    pub fn new(rate: f64, burst: u32) -> Self {
        let interval = (1e9 / rate).round().max(1.0) as u64;
        // A lease covers at most 50 ms of the rate and a tenth of the burst.
        let lease = (rate * LEASE_SPAN_NANOS as f64 / 1e9)
            .min(f64::from(burst) / 10.0)
            .floor()
            .clamp(1.0, MAX_LEASE as f64) as u64;
        Rate {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst)),
            lease,
        }
    }

    /// One token from the bucket whose arrival time is `tat`.
    fn take(&self, tat: &mut u64, now: u64) -> Decision {
        let next = (*tat).max(now).saturating_add(self.interval);
        let ahead = next - now;
        if ahead > self.tolerance {
            return Decision::Refused {
                retry_after: Duration::from_nanos(ahead - self.tolerance),
                remaining: 0,
            };
        }
        *tat = next;
        Decision::Admitted {
            remaining: (self.tolerance - ahead) / self.interval,
        }
    }
}

/// A local bucket: the theoretical arrival time (0 = full).
#[derive(Default)]
pub(crate) struct Tat(u64);

impl Entry for Tat {
    fn idle(&self, now: u64) -> bool {
        self.0 <= now
    }
}

/// A replica's part of a fleet bucket: tokens leased and until when, or a refusal until when.
#[derive(Default)]
pub(crate) struct Leased {
    tokens: u64,
    expires: u64,
    refused_until: u64,
}

impl Entry for Leased {
    fn idle(&self, now: u64) -> bool {
        self.expires <= now && self.refused_until <= now
    }
}

enum Local {
    Spent,
    Refused(u64),
    Ask,
}

/// One rate limit's buckets, local and leased.
pub(crate) struct Buckets {
    pub rate: Rate,
    local: Table<Tat>,
    leased: Table<Leased>,
}

impl Buckets {
    pub fn new(rate: Rate) -> Self {
        Buckets {
            rate,
            local: Table::new(MAX_KEYS),
            leased: Table::new(MAX_KEYS),
        }
    }

    /// This replica's bucket alone.
    pub fn take_local(&self, key: &str, now: u64) -> Decision {
        self.local
            .with(key, now, |tat| self.rate.take(&mut tat.0, now))
    }

    /// The fleet's bucket under `shared_key` (made only when a round trip is needed), through
    /// the lease; this replica's own bucket when Valkey is unavailable.
    pub async fn take_shared(
        &self,
        key: &str,
        shared_key: impl FnOnce() -> String,
        shared: &SharedState,
        now: impl Fn() -> u64,
        fallback: &Fallback<'_>,
    ) -> Decision {
        let t = now();
        let local = self.leased.with(key, t, |l| {
            if l.tokens > 0 && l.expires > t {
                l.tokens -= 1;
                Local::Spent
            } else if l.refused_until > t {
                Local::Refused(l.refused_until - t)
            } else {
                Local::Ask
            }
        });
        match local {
            Local::Spent => return Decision::Admitted { remaining: 0 },
            Local::Refused(wait) => {
                return Decision::Refused {
                    retry_after: Duration::from_nanos(wait),
                    remaining: 0,
                }
            }
            Local::Ask => {}
        }
        let asked = shared
            .gcra_lease(
                &shared_key(),
                Duration::from_nanos(self.rate.interval),
                Duration::from_nanos(self.rate.tolerance),
                self.rate.lease,
            )
            .await;
        let t = now();
        match asked {
            Ok(Lease::Granted(n)) => {
                // Concurrent requests may each have leased: what they did not spend adds up.
                self.leased.with(key, t, |l| {
                    if l.expires <= t {
                        l.tokens = 0;
                    }
                    l.tokens += n - 1;
                    l.expires = t.saturating_add(LEASE_SPAN_NANOS);
                    l.refused_until = 0;
                });
                Decision::Admitted { remaining: 0 }
            }
            Ok(Lease::Empty(wait)) => {
                let wait_nanos = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
                self.leased.with(key, t, |l| {
                    l.tokens = 0;
                    l.refused_until = t.saturating_add(wait_nanos);
                });
                Decision::Refused {
                    retry_after: wait,
                    remaining: 0,
                }
            }
            Err(_) => {
                fallback.used();
                self.take_local(key, t)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn admitted(d: Decision) -> bool {
        matches!(d, Decision::Admitted { .. })
    }

    #[test]
    fn a_burst_of_20_at_5_per_second_admits_20_then_5_a_second() {
        let b = Buckets::new(Rate::new(5.0, 20));
        let t0 = 1_000 * SEC;
        let first: usize = (0..25).filter(|_| admitted(b.take_local("a", t0))).count();
        assert_eq!(first, 20);
        let next: usize = (0..25)
            .filter(|_| admitted(b.take_local("a", t0 + SEC)))
            .count();
        assert_eq!(next, 5);
        // Another key has its own budget.
        assert!(admitted(b.take_local("b", t0 + SEC)));
        // The refusal says when the next token is due: 200 ms.
        match b.take_local("a", t0 + SEC) {
            Decision::Refused { retry_after, .. } => {
                assert_eq!(retry_after, Duration::from_millis(200))
            }
            other => panic!("{other:?}"),
        }
        // Idle long enough, the bucket is full again, not fuller.
        let later: usize = (0..100)
            .filter(|_| admitted(b.take_local("a", t0 + 1000 * SEC)))
            .count();
        assert_eq!(later, 20);
    }

    #[test]
    fn remaining_counts_down() {
        let b = Buckets::new(Rate::new(1.0, 3));
        let r: Vec<u64> = (0..3)
            .map(|_| match b.take_local("k", 10 * SEC) {
                Decision::Admitted { remaining } => remaining,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(r, [2, 1, 0]);
    }

    #[test]
    fn lease_sizes() {
        assert_eq!(Rate::new(5.0, 20).lease, 1);
        assert_eq!(Rate::new(100.0, 200).lease, 5);
        assert_eq!(Rate::new(10_000.0, 20_000).lease, MAX_LEASE);
        assert_eq!(Rate::new(10_000.0, 20).lease, 2);
    }
}
