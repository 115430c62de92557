//! The throttle's time: nanoseconds since the Unix epoch, taken from a monotonic clock anchored
//! to the wall clock once (a bucket never refills backwards when the wall clock is stepped), or
//! set by hand (tests, and `tokio::time::pause`-free checks of quota periods).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub struct Clock {
    anchor_unix_nanos: u64,
    anchor: Instant,
    /// Nanoseconds since the epoch when set by hand; 0 = the running clock.
    manual: AtomicU64,
}

impl Default for Clock {
    fn default() -> Self {
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Clock {
            anchor_unix_nanos: u64::try_from(unix.as_nanos()).unwrap_or(u64::MAX / 2),
            anchor: Instant::now(),
            manual: AtomicU64::new(0),
        }
    }
}

impl Clock {
    /// Now, in nanoseconds since the Unix epoch.
    pub fn now(&self) -> u64 {
        match self.manual.load(Ordering::Relaxed) {
            0 => self
                .anchor_unix_nanos
                .saturating_add(u64::try_from(self.anchor.elapsed().as_nanos()).unwrap_or(0)),
            set => set,
        }
    }

    /// Stops the clock at `since_epoch` (it moves only by `set` and `advance` from then on).
    pub fn set(&self, since_epoch: Duration) {
        let nanos = u64::try_from(since_epoch.as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        self.manual.store(nanos, Ordering::Relaxed);
    }

    /// Moves a stopped clock forward (a running one is stopped at now first).
    pub fn advance(&self, by: Duration) {
        let now = self.now();
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.manual
            .store(now.saturating_add(by).max(1), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_until_set_then_moves_only_by_hand() {
        let c = Clock::default();
        let a = c.now();
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(a.abs_diff(wall.as_nanos() as u64) < 5_000_000_000);
        assert!(c.now() >= a);
        c.set(Duration::from_secs(86_400));
        assert_eq!(c.now(), 86_400_000_000_000);
        c.advance(Duration::from_millis(1500));
        assert_eq!(c.now(), 86_401_500_000_000);
        assert_eq!(c.now(), 86_401_500_000_000);
    }
}
