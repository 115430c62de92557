//! Per-key state for one limit: a sharded map (one lock per shard, held for a few arithmetic
//! operations, never across I/O) keyed by the caller's key with SipHash (keys come from
//! clients). It is bounded: entries that carry nothing (a bucket full again, a quota of a past
//! period) are swept when a shard is full, at most once a second; when a shard is still full,
//! newcomers share that shard's overflow entry, so a flood of distinct keys is limited together
//! rather than given fresh budgets or memory.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

const SHARDS: usize = 16;

/// Keys tracked per limit, at most.
pub const MAX_KEYS: usize = 100_000;

/// A sweep of a full shard at most this often (ns).
const SWEEP_EVERY_NANOS: u64 = 1_000_000_000;

pub(crate) trait Entry: Default {
    /// Whether the entry carries nothing at `now` (dropping it changes no decision).
    fn idle(&self, now: u64) -> bool;
}

struct Shard<V> {
    map: HashMap<Box<str>, V, RandomState>,
    overflow: V,
    swept_at: u64,
}

pub(crate) struct Table<V> {
    shards: Box<[Mutex<Shard<V>>]>,
    hasher: RandomState,
    per_shard: usize,
}

impl<V: Entry> Table<V> {
    pub fn new(max_keys: usize) -> Self {
        let hasher = RandomState::new();
        Table {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        map: HashMap::with_hasher(hasher.clone()),
                        overflow: V::default(),
                        swept_at: 0,
                    })
                })
                .collect(),
            hasher,
            per_shard: max_keys.div_ceil(SHARDS).max(1),
        }
    }

    /// Runs `f` on `key`'s entry (made when missing), under its shard's lock.
    pub fn with<R>(&self, key: &str, now: u64, f: impl FnOnce(&mut V) -> R) -> R {
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let mut s = shard.lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut *s;
        if let Some(v) = s.map.get_mut(key) {
            return f(v);
        }
        if s.map.len() >= self.per_shard && now.saturating_sub(s.swept_at) >= SWEEP_EVERY_NANOS {
            s.swept_at = now;
            s.map.retain(|_, v| !v.idle(now));
        }
        if s.map.len() >= self.per_shard {
            return f(&mut s.overflow);
        }
        f(s.map.entry(key.into()).or_default())
    }

    #[cfg(test)]
    fn contains(&self, key: &str) -> bool {
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let s = shard.lock().unwrap_or_else(|e| e.into_inner());
        s.map.contains_key(key)
    }

    /// How many keys are tracked.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Count {
        n: u64,
        until: u64,
    }

    impl Entry for Count {
        fn idle(&self, now: u64) -> bool {
            self.until <= now
        }
    }

    #[test]
    fn keys_apart_bounded_and_swept() {
        let t: Table<Count> = Table::new(32);
        for i in 0..32 {
            t.with(&format!("k{i}"), 0, |c| {
                c.n += 1;
                c.until = 10
            });
        }
        assert_eq!(t.with("k3", 0, |c| c.n), 1, "each key has its own entry");
        // Beyond the bound newcomers share an overflow entry per shard (never unbounded).
        let before = t.len();
        assert!(before <= 32 + SHARDS, "{before}");
        for i in 0..1000 {
            t.with(&format!("new{i}"), 5, |c| c.n += 1);
        }
        assert!(t.len() <= 32 + SHARDS, "bounded: {}", t.len());
        // Once idle, old entries are swept on the next full-shard insert, a second later.
        for i in 0..1000 {
            t.with(&format!("later{i}"), 2 * SWEEP_EVERY_NANOS, |c| {
                c.until = u64::MAX
            });
        }
        assert!(!t.contains("k3"), "k3 was swept");
        assert!(t.len() <= 32, "{}", t.len());
    }
}
