//! Failed-login limits per username and per client address: after `max` failures within a
//! minute (counted from the first), further attempts are refused without calling Cognito.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;

const WINDOW: Duration = Duration::from_secs(60);
/// Bounds the memory an attacker can make the limiter use.
const MAX_TRACKED: u64 = 100_000;

pub struct FailureLimiter {
    max: u32,
    by_user: Cache<String, Arc<AtomicU32>>,
    by_addr: Cache<IpAddr, Arc<AtomicU32>>,
}

impl FailureLimiter {
    pub fn new(max: u32) -> Self {
        FailureLimiter {
            max,
            by_user: Cache::builder()
                .time_to_live(WINDOW)
                .max_capacity(MAX_TRACKED)
                .build(),
            by_addr: Cache::builder()
                .time_to_live(WINDOW)
                .max_capacity(MAX_TRACKED)
                .build(),
        }
    }

    /// True when this username or address has used up its failures for the window.
    pub fn is_limited(&self, username: &str, addr: IpAddr) -> bool {
        let over =
            |c: Option<Arc<AtomicU32>>| c.is_some_and(|c| c.load(Ordering::Relaxed) >= self.max);
        over(self.by_user.get(username)) || over(self.by_addr.get(&addr))
    }

    pub fn record_failure(&self, username: &str, addr: IpAddr) {
        self.by_user
            .get_with(username.to_string(), Default::default)
            .fetch_add(1, Ordering::Relaxed);
        self.by_addr
            .get_with(addr, Default::default)
            .fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_by_user_and_by_address() {
        let l = FailureLimiter::new(3);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(!l.is_limited("alice", a));
            l.record_failure("alice", a);
        }
        assert!(l.is_limited("alice", b), "per username");
        assert!(l.is_limited("bob", a), "per address");
        assert!(!l.is_limited("bob", b));
    }
}
