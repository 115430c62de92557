//! Quotas: requests per caller per UTC day, week (from Monday) or month, like API Gateway's
//! usage plans, counted when a request is sent upstream. Locally a count per key and period;
//! for a fleet, a count per key and period in Valkey, taken in leases of up to a thousandth of
//! the quota (at most 100) so a busy key does not cost a round trip per request — a lease not
//! spent by the end of its period is lost, so a fleet may admit up to `replicas × (lease - 1)`
//! fewer than the quota, never more. While Valkey is unavailable each replica counts alone.

use std::time::Duration;

use time::{Date, Month, OffsetDateTime, Time};

use super::table::{Entry, Table, MAX_KEYS};
use super::{Decision, Fallback};
use crate::config::QuotaPeriod;
use crate::shared::SharedState;

/// The most requests one lease of a shared quota takes.
const MAX_LEASE: u64 = 100;

/// The period `now` (ns since the epoch) falls in: its start and end (ns).
pub(crate) fn period(period: QuotaPeriod, now: u64) -> (u64, u64) {
    let day = date_of(now);
    let (start, end) = match period {
        QuotaPeriod::Day => (day, day.next_day().unwrap_or(day)),
        QuotaPeriod::Week => {
            let start =
                day - time::Duration::days(i64::from(day.weekday().number_days_from_monday()));
            (start, start + time::Duration::days(7))
        }
        QuotaPeriod::Month => {
            let start = Date::from_calendar_date(day.year(), day.month(), 1).unwrap_or(day);
            let (y, m) = match day.month() {
                Month::December => (day.year() + 1, Month::January),
                m => (day.year(), m.next()),
            };
            (start, Date::from_calendar_date(y, m, 1).unwrap_or(day))
        }
    };
    let nanos = |d: Date| {
        let ts = d
            .with_time(Time::MIDNIGHT)
            .assume_utc()
            .unix_timestamp_nanos();
        u64::try_from(ts).unwrap_or(0)
    };
    (nanos(start), nanos(end))
}

/// The name shared keys carry for the period that starts at `start` (ns): `2026-12-07`,
/// `2026-W50`, `2026-12`. Made only for a round trip; a local count needs only the bounds.
pub(crate) fn period_name(period: QuotaPeriod, start: u64) -> String {
    let d = date_of(start);
    match period {
        QuotaPeriod::Day => format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day()),
        QuotaPeriod::Week => {
            let (year, week, _) = d.to_iso_week_date();
            format!("{year:04}-W{week:02}")
        }
        QuotaPeriod::Month => format!("{:04}-{:02}", d.year(), u8::from(d.month())),
    }
}

fn date_of(nanos: u64) -> Date {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .date()
}

/// A quota's length in seconds, as `RateLimit-Policy` states it (a month as 30 days).
pub(crate) fn window_secs(period: QuotaPeriod) -> u64 {
    match period {
        QuotaPeriod::Day => 86_400,
        QuotaPeriod::Week => 7 * 86_400,
        QuotaPeriod::Month => 30 * 86_400,
    }
}

/// Requests counted in the period that ends at `ends`.
#[derive(Default)]
pub(crate) struct Used {
    ends: u64,
    used: u64,
}

impl Entry for Used {
    fn idle(&self, now: u64) -> bool {
        self.ends <= now
    }
}

/// A replica's part of a fleet quota in the period ending at `ends`: requests leased and not
/// spent, or the quota found spent.
#[derive(Default)]
pub(crate) struct Leased {
    ends: u64,
    tokens: u64,
    spent: bool,
}

impl Entry for Leased {
    fn idle(&self, now: u64) -> bool {
        self.ends <= now
    }
}

pub(crate) struct Quota {
    pub quota: u64,
    pub period: QuotaPeriod,
    lease: u64,
    local: Table<Used>,
    leased: Table<Leased>,
}

enum Local {
    Spent,
    Refused,
    Ask,
}

impl Quota {
    pub fn new(quota: u64, period: QuotaPeriod) -> Self {
        Quota {
            quota,
            period,
            lease: (quota / 1000).clamp(1, MAX_LEASE),
            local: Table::new(MAX_KEYS),
            leased: Table::new(MAX_KEYS),
        }
    }

    /// Counts one request on this replica alone.
    pub fn take_local(&self, key: &str, now: u64) -> Decision {
        let (_, ends) = period(self.period, now);
        self.local.with(key, now, |u| {
            if u.ends != ends {
                *u = Used { ends, used: 0 };
            }
            if u.used < self.quota {
                u.used += 1;
                Decision::Admitted {
                    remaining: self.quota - u.used,
                }
            } else {
                Decision::Refused {
                    retry_after: Duration::from_nanos(ends.saturating_sub(now)),
                    remaining: 0,
                }
            }
        })
    }

    /// Counts one request against the fleet's quota (`shared_key` gets the period's name);
    /// this replica's own count when Valkey is unavailable.
    pub async fn take_shared(
        &self,
        key: &str,
        shared_key: impl FnOnce(&str) -> String,
        shared: &SharedState,
        now: u64,
        fallback: &Fallback<'_>,
    ) -> Decision {
        let (start, ends) = period(self.period, now);
        let refused = || Decision::Refused {
            retry_after: Duration::from_nanos(ends.saturating_sub(now)),
            remaining: 0,
        };
        let local = self.leased.with(key, now, |l| {
            if l.ends != ends {
                *l = Leased {
                    ends,
                    ..Leased::default()
                };
            }
            if l.tokens > 0 {
                l.tokens -= 1;
                Local::Spent
            } else if l.spent {
                Local::Refused
            } else {
                Local::Ask
            }
        });
        match local {
            Local::Spent => return Decision::Admitted { remaining: 0 },
            Local::Refused => return refused(),
            Local::Ask => {}
        }
        // Kept a minute past the period's end (clocks differ a little between replicas).
        let keep = Duration::from_nanos(ends.saturating_sub(now)) + Duration::from_secs(60);
        match shared
            .quota_lease(
                &shared_key(&period_name(self.period, start)),
                self.quota,
                self.lease,
                keep,
            )
            .await
        {
            Ok(0) => {
                self.leased.with(key, now, |l| {
                    if l.ends == ends {
                        l.spent = true;
                    }
                });
                refused()
            }
            Ok(n) => {
                self.leased.with(key, now, |l| {
                    if l.ends == ends {
                        l.tokens += n - 1;
                    }
                });
                Decision::Admitted { remaining: 0 }
            }
            Err(_) => {
                fallback.used();
                self.take_local(key, now)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    /// 2026-12-07 (a Monday) 12:00:00 UTC.
    const MONDAY_NOON: u64 = 1_796_644_800 * SEC;

    #[test]
    fn periods_in_utc() {
        let named = |p, now| {
            let (s, e) = period(p, now);
            (s, e, period_name(p, s))
        };
        let (s, e, n) = named(QuotaPeriod::Day, MONDAY_NOON);
        assert_eq!(
            (s, e, n.as_str()),
            (
                MONDAY_NOON - 12 * 3600 * SEC,
                MONDAY_NOON + 12 * 3600 * SEC,
                "2026-12-07"
            )
        );
        // Sunday 23:59:59 is still the week that began the Monday before.
        let sunday = MONDAY_NOON - 12 * 3600 * SEC - SEC;
        let (s, e, n) = named(QuotaPeriod::Week, sunday);
        assert_eq!(n, "2026-W49");
        assert_eq!(e, MONDAY_NOON - 12 * 3600 * SEC);
        assert_eq!(e - s, 7 * 86_400 * SEC);
        let (_, _, n) = named(QuotaPeriod::Week, MONDAY_NOON);
        assert_eq!(n, "2026-W50");
        let (s, e, n) = named(QuotaPeriod::Month, MONDAY_NOON);
        assert_eq!(n, "2026-12");
        assert_eq!(e - s, 31 * 86_400 * SEC);
        let (_, e2, n2) = named(QuotaPeriod::Month, e);
        assert_eq!(n2, "2027-01");
        assert_eq!(e2 - e, 31 * 86_400 * SEC);
    }

    #[test]
    fn a_quota_resets_at_the_utc_boundary() {
        let q = Quota::new(3, QuotaPeriod::Day);
        let midnight = MONDAY_NOON + 12 * 3600 * SEC;
        let before = midnight - SEC;
        let ok: usize = (0..5)
            .filter(|_| matches!(q.take_local("k", before), Decision::Admitted { .. }))
            .count();
        assert_eq!(ok, 3);
        match q.take_local("k", before) {
            Decision::Refused { retry_after, .. } => {
                assert_eq!(retry_after, Duration::from_secs(1))
            }
            other => panic!("{other:?}"),
        }
        let ok: usize = (0..5)
            .filter(|_| matches!(q.take_local("k", midnight), Decision::Admitted { .. }))
            .count();
        assert_eq!(ok, 3);
    }
}
