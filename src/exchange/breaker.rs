//! The private API's circuit breaker.

/// Stops calling a private API that keeps failing: after `BREAKER_THRESHOLD` dependency
/// failures in a row, calls are refused at once for a backoff that doubles (1 s .. 30 s) while
/// the trial call after each pause fails. Any answer from Cognito closes it.
#[derive(Default)]
pub(super) struct Breaker {
    failures: u32,
    open_until: Option<std::time::Instant>,
    backoff: std::time::Duration,
}

const BREAKER_THRESHOLD: u32 = 5;
const BREAKER_MIN: std::time::Duration = std::time::Duration::from_secs(1);
const BREAKER_MAX: std::time::Duration = std::time::Duration::from_secs(30);

impl Breaker {
    pub(super) fn allows(&self, now: std::time::Instant) -> bool {
        self.open_until.is_none_or(|t| now >= t)
    }

    pub(super) fn record(&mut self, dependency_failed: bool, now: std::time::Instant) {
        if !dependency_failed {
            *self = Breaker::default();
            return;
        }
        self.failures += 1;
        if self.failures >= BREAKER_THRESHOLD {
            self.backoff = if self.backoff.is_zero() {
                BREAKER_MIN
            } else {
                (self.backoff * 2).min(BREAKER_MAX)
            };
            self.open_until = Some(now + self.backoff);
            tracing::warn!(
                pause_ms = self.backoff.as_millis() as u64,
                "private API keeps failing: pausing calls"
            );
        }
    }
}
