//! Throttling state for a fleet: token buckets (GCRA) and quotas, each decided by one Lua
//! script in one round trip. Both hand out a *lease* of up to `want` requests at once, which the
//! replica then spends locally, so a hot key costs one round trip per lease rather than per
//! request. The buckets run on Valkey's own clock (`TIME`), so replicas' clocks need not agree.
//! Stored values are plain numbers (a time or a count, nothing about the caller: the key names
//! are HMACs, `Sealer::key`); a value someone else wrote is clamped or reset, never trusted to
//! grant more than the limit.

use std::time::Duration;

use super::{SharedState, Unavailable};

/// GCRA, in microseconds: `ARGV` = emission interval, tolerance (burst × interval), want.
/// Grants `min(want, available)` and returns `{granted, 0}`, or `{0, µs until one is}`. A
/// theoretical arrival time beyond now + tolerance (not something this script writes) is
/// clamped to it; one that is not a number is taken as a full bucket.
const GCRA_LEASE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local v = redis.pcall('GET', KEYS[1])
local tat = nil
if type(v) == 'string' then tat = tonumber(v) end
if tat == nil or tat < now then tat = now end
if tat > now + tolerance then tat = now + tolerance end
local available = math.floor((now + tolerance - tat) / interval)
if available > want then available = want end
if available <= 0 then
  return {0, math.ceil(tat + interval - tolerance - now)}
end
tat = tat + available * interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return {available, 0}";

/// A quota's count for one period: `ARGV` = quota, want, ms until the key may go. Grants
/// `min(want, quota - used)` and returns it (0 when the quota is spent). A count that is not a
/// number, or below zero, is taken as 0; one above the quota as spent.
const QUOTA_LEASE: &str = r"
local quota = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local v = redis.pcall('GET', KEYS[1])
local used = nil
if type(v) == 'string' then used = tonumber(v) end
if used == nil or used < 0 then used = 0 end
local granted = quota - used
if granted > want then granted = want end
if granted <= 0 then return 0 end
redis.call('SET', KEYS[1], string.format('%.0f', used + granted), 'PX', ARGV[3])
return granted";

/// What a bucket's lease came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lease {
    Granted(u64),
    /// None now; the first is available after this long.
    Empty(Duration),
}

impl SharedState {
    /// Takes up to `want` tokens from the fleet's bucket under `key`.
    pub(crate) async fn gcra_lease(
        &self,
        key: &str,
        interval: Duration,
        tolerance: Duration,
        want: u64,
    ) -> Result<Lease, Unavailable> {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        let (granted, wait): (i64, i64) = self
            .run(
                "throttle",
                redis::cmd("EVAL")
                    .arg(GCRA_LEASE)
                    .arg(1)
                    .arg(key)
                    .arg(micros(interval))
                    .arg(micros(tolerance))
                    .arg(want.max(1)),
            )
            .await?;
        Ok(if granted > 0 {
            Lease::Granted(granted as u64)
        } else {
            Lease::Empty(Duration::from_micros(wait.max(1) as u64))
        })
    }

    /// Counts up to `want` requests against the fleet's quota under `key` (one key per
    /// period, kept for `keep`); how many were granted.
    pub(crate) async fn quota_lease(
        &self,
        key: &str,
        quota: u64,
        want: u64,
        keep: Duration,
    ) -> Result<u64, Unavailable> {
        let keep_ms = u64::try_from(keep.as_millis()).unwrap_or(u64::MAX).max(1);
        let granted: i64 = self
            .run(
                "quota",
                redis::cmd("EVAL")
                    .arg(QUOTA_LEASE)
                    .arg(1)
                    .arg(key)
                    .arg(quota)
                    .arg(want.max(1))
                    .arg(keep_ms),
            )
            .await?;
        Ok(granted.max(0) as u64)
    }
}
