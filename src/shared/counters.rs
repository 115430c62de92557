//! Counters with a window (the failed-login limits): each operation is one Lua script that also
//! makes sure the key expires within its window, whatever someone with write access to Valkey
//! put there; the caller decides whether the count it gets back is believable.

use std::time::Duration;

use super::metrics::TamperingLabel;
use super::{SharedState, Unavailable};

/// `INCR` whose key always expires within its window (`ARGV[1]`, ms): the first increment
/// starts the window, and a key that has no expiry or a longer one (written by someone else:
/// `SET` leaves none) is given the window, whatever its value. A value that is not an integer
/// counts as -1, which the caller takes for tampering; nothing in it makes the script fail (a
/// failing script would read as Valkey being down).
const INCR_WINDOW: &str = r"
local window = tonumber(ARGV[1])
local n = redis.pcall('INCR', KEYS[1])
if type(n) ~= 'number' then n = -1 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -1 or ttl > window then redis.call('PEXPIRE', KEYS[1], window) end
return n";

/// `DECR` that never goes below zero and, like `INCR_WINDOW`, leaves no key without an expiry
/// within the window. A missing key stays missing (0); a value that is not an integer is -1.
const DECR_FLOOR: &str = r"
local window = tonumber(ARGV[1])
local v = redis.pcall('GET', KEYS[1])
if not v then return 0 end
local n = tonumber(v)
if n == nil then
  n = -1
elseif n > 0 then
  n = redis.pcall('DECR', KEYS[1])
  if type(n) ~= 'number' then n = -1 end
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -1 or ttl > window then redis.call('PEXPIRE', KEYS[1], window) end
return n";

/// A count above this many times its limit was not left by the gateway: it leaves a counter at
/// most at the limit plus the attempts in flight at that moment, so only a write from outside
/// gets there.
const IMPOSSIBLE_FACTOR: i64 = 1000;

/// Whether a shared count is one this gateway cannot have left for a counter limited at `limit`:
/// below zero, or beyond `IMPOSSIBLE_FACTOR` times the limit. The tampering metric's kind, if so.
pub(crate) fn implausible(n: i64, limit: u32) -> Option<&'static str> {
    if n < 0 {
        Some("counter_negative")
    } else if n > i64::from(limit).saturating_mul(IMPOSSIBLE_FACTOR) {
        Some("counter_too_high")
    } else {
        None
    }
}

impl SharedState {
    /// Increments a counter whose window starts with its first increment; the key expires
    /// within `window` whatever was written to it. The count is as stored: the caller decides
    /// whether it is believable (see `report_tampering`).
    pub(crate) async fn incr_window(
        &self,
        key: &str,
        window: Duration,
    ) -> Result<i64, Unavailable> {
        self.eval_window("incr", INCR_WINDOW, key, window).await
    }

    /// Decrements a counter, never below zero; the key expires within `window`.
    pub(crate) async fn decr(&self, key: &str, window: Duration) -> Result<i64, Unavailable> {
        self.eval_window("decr", DECR_FLOOR, key, window).await
    }

    /// Counts a value read from Valkey that this gateway cannot have written (a counter below
    /// zero or far above its limit): someone with write access to Valkey changed it. The caller
    /// logs what it was and acts on its own for it.
    pub(crate) fn report_tampering(&self, kind: &'static str) {
        if let Some(m) = &self.metrics {
            m.tampering.get_or_create(&TamperingLabel { kind }).inc();
        }
    }

    /// Runs a counter script on `key` with the window in milliseconds.
    async fn eval_window(
        &self,
        op: &'static str,
        script: &str,
        key: &str,
        window: Duration,
    ) -> Result<i64, Unavailable> {
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1);
        self.run(
            op,
            redis::cmd("EVAL")
                .arg(script)
                .arg(1)
                .arg(key)
                .arg(window_ms),
        )
        .await
    }
}
