//! Usage-plan arithmetic and the counters it runs on.
//!
//! The algorithms are plain functions over `(state, now)` with the clock passed in, so they
//! are unit-tested with explicit instants:
//!
//! ```text
//!  take_token(bucket, throttle, now)     token bucket: refill rate/s up to burst, take one
//!  take_quota(quota_state, quota, unix)  UTC DAY / WEEK (Monday) / MONTH window, offset in the
//!                                        first window the counter sees, take one
//!  period_bounds(period, unix)           [start, end) of the UTC window containing `unix`
//! ```
//!
//! [`Limiter`] holds the counters outside `Runtime`, keyed by stable ids (plan id + key hash,
//! stage id + route id), so a config reload does not reset them. The counters
//! are in process; limits therefore hold per proxy replica.

pub mod redis;

use portico_config::{Quota, QuotaPeriod, Throttle};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One bucket a request must take a token from.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    /// Stable counter id (shared: the usual ones are built once per config, not per request).
    pub id: Arc<str>,
    /// Its limits (from the current config).
    pub throttle: Throttle,
}

/// The answer for all the checks of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Admitted; `remaining`/`reset` describe the first bucket (0/0 when there is none).
    Allow {
        /// Tokens left in the first bucket.
        remaining: u64,
        /// Seconds until the first bucket is full.
        reset: u64,
    },
    /// Refused by bucket `bucket` (index into the checks).
    Throttled {
        /// Which bucket.
        bucket: usize,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// Admitted without a check: Redis gave no answer and the failure mode is open.
    Unchecked,
    /// Refused by the quota.
    QuotaExceeded {
        /// Seconds until the window ends.
        retry_after: u64,
    },
}

/// A token bucket's state: tokens left at `last` (monotonic time since an origin).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// Tokens available at `last` (fractional: refill is continuous).
    pub tokens: f64,
    /// When `tokens` was computed.
    pub last: Duration,
}

/// What a limit said about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Admitted; `remaining` requests are left (`RateLimit-Remaining`), `reset` seconds until
    /// the limit is whole again (`RateLimit-Reset`).
    Allow {
        /// Requests left now.
        remaining: u64,
        /// Seconds until full.
        reset: u64,
    },
    /// Refused; retry after this many seconds (`Retry-After`, at least 1).
    Deny {
        /// Seconds to wait.
        retry_after: u64,
    },
}

fn ceil_secs(s: f64) -> u64 {
    if s <= 0.0 { 0 } else { s.ceil() as u64 }
}

/// Takes one token from `bucket` (created full when `None`) at `now`.
pub fn take_token(bucket: &mut Option<Bucket>, t: Throttle, now: Duration) -> Decision {
    let burst = t.burst_limit as f64;
    let b = bucket.get_or_insert(Bucket {
        tokens: burst,
        last: now,
    });
    let elapsed = now.saturating_sub(b.last).as_secs_f64();
    // A smaller burst after a reload clamps the tokens too.
    b.tokens = (b.tokens + elapsed * t.rate_limit).min(burst);
    b.last = now.max(b.last);
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        Decision::Allow {
            remaining: b.tokens.floor() as u64,
            reset: ceil_secs((burst - b.tokens) / t.rate_limit),
        }
    } else {
        Decision::Deny {
            retry_after: ceil_secs((1.0 - b.tokens) / t.rate_limit).max(1),
        }
    }
}

/// A quota counter: requests used in the window starting at `window_start` (unix seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaState {
    /// Start of the window `used` counts in.
    pub window_start: i64,
    /// Requests counted in that window.
    pub used: u64,
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month) of a day number.
fn civil_from_days(z: i64) -> (i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m)
}

const DAY: i64 = 86_400;

/// `YYYY-MM-DD` (UTC) of a unix time.
pub fn utc_date(unix: i64) -> String {
    let day = unix.div_euclid(DAY);
    let (y, m) = civil_from_days(day);
    let d = day - days_from_civil(y, m, 1) + 1;
    format!("{y:04}-{m:02}-{d:02}")
}

/// `[start, end)` in unix seconds of the UTC window of `period` containing `unix`.
/// DAY: 00:00 UTC; WEEK: Monday 00:00 UTC; MONTH: the 1st, 00:00 UTC.
pub fn period_bounds(period: QuotaPeriod, unix: i64) -> (i64, i64) {
    let day = unix.div_euclid(DAY);
    match period {
        QuotaPeriod::Day => (day * DAY, (day + 1) * DAY),
        QuotaPeriod::Week => {
            // 1970-01-01 was a Thursday: Monday-based weekday = (day + 3) mod 7.
            let monday = day - (day + 3).rem_euclid(7);
            (monday * DAY, (monday + 7) * DAY)
        }
        QuotaPeriod::Month => {
            let (y, m) = civil_from_days(day);
            let start = days_from_civil(y, m, 1);
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            (start * DAY, days_from_civil(ny, nm, 1) * DAY)
        }
    }
}

/// Counts one request against `q` at `unix` (seconds). A new counter starts at `q.offset`
/// (AWS: requests already used in the first period); a new window starts at 0.
pub fn take_quota(state: &mut Option<QuotaState>, q: Quota, unix: i64) -> Decision {
    let (start, end) = period_bounds(q.period, unix);
    let s = state.get_or_insert(QuotaState {
        window_start: start,
        used: q.offset,
    });
    if s.window_start != start {
        *s = QuotaState {
            window_start: start,
            used: 0,
        };
    }
    let reset = u64::try_from(end - unix).unwrap_or(0);
    if s.used >= q.limit {
        return Decision::Deny {
            retry_after: reset.max(1),
        };
    }
    s.used += 1;
    Decision::Allow {
        remaining: q.limit - s.used,
        reset,
    }
}

/// Used and remaining requests of a quota counter at `unix`, as the usage API reports them.
pub fn quota_usage(state: Option<&QuotaState>, q: Quota, unix: i64) -> (u64, u64) {
    let (start, _) = period_bounds(q.period, unix);
    let used = match state {
        Some(s) if s.window_start == start => s.used,
        Some(_) => 0,
        None => q.offset,
    };
    (used, q.limit.saturating_sub(used))
}

/// Runs `f` on the counter `id` (`None` when there is none yet) and keeps what it leaves:
/// in place when the counter exists (no key copy), inserted when it is new.
fn update<V: Copy>(
    map: &mut Counters<V>,
    id: &str,
    f: impl FnOnce(&mut Option<V>) -> Decision,
) -> Decision {
    if let Some(v) = map.get_mut(id) {
        let mut slot = Some(*v);
        let d = f(&mut slot);
        if let Some(new) = slot {
            *v = new;
        }
        return d;
    }
    let mut slot = None;
    let d = f(&mut slot);
    if let Some(new) = slot {
        map.insert(id.to_string(), new);
    }
    d
}

/// Counters by id. The ids come from the config (plan, key hash, stage, route), never from
/// the request, so a fast hasher without flooding protection is fine here.
type Counters<V> = HashMap<String, V, foldhash::fast::RandomState>;

/// In-process counters, keyed by stable ids; lives as long as the process (not the config).
#[derive(Debug)]
pub struct Limiter {
    origin: tokio::time::Instant,
    buckets: Mutex<Counters<Bucket>>,
    quotas: Mutex<Counters<QuotaState>>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            origin: tokio::time::Instant::now(),
            buckets: Mutex::default(),
            quotas: Mutex::default(),
        }
    }
}

impl Limiter {
    /// Monotonic time since the limiter was created (tokio's clock: pausable in tests).
    pub fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Takes a token from the bucket `id` at `now` (monotonic, since any fixed origin).
    pub fn token(&self, id: &str, t: Throttle, now: Duration) -> Decision {
        let mut map = self.buckets.lock().expect("limiter lock is never poisoned");
        update(&mut map, id, |slot| take_token(slot, t, now))
    }

    /// Counts a request against the quota `id` at `unix`.
    pub fn quota(&self, id: &str, q: Quota, unix: i64) -> Decision {
        let mut map = self.quotas.lock().expect("limiter lock is never poisoned");
        update(&mut map, id, |slot| take_quota(slot, q, unix))
    }

    /// All the checks of one request, atomically: when one refuses, nothing is spent.
    pub fn check(
        &self,
        buckets: &[Check],
        quota: Option<(&str, Quota, i64)>,
        now: Duration,
    ) -> Outcome {
        let mut map = self.buckets.lock().expect("limiter lock is never poisoned");
        let mut next = Vec::with_capacity(buckets.len());
        let mut first = (0, 0);
        for (i, c) in buckets.iter().enumerate() {
            let mut slot = map.get(&*c.id).copied();
            match take_token(&mut slot, c.throttle, now) {
                Decision::Allow { remaining, reset } => {
                    if i == 0 {
                        first = (remaining, reset);
                    }
                    next.push(slot.expect("take_token fills the slot"));
                }
                Decision::Deny { retry_after } => {
                    return Outcome::Throttled {
                        bucket: i,
                        retry_after,
                    };
                }
            }
        }
        if let Some((id, q, unix)) = quota
            && let Decision::Deny { retry_after } = self.quota(id, q, unix)
        {
            return Outcome::QuotaExceeded { retry_after };
        }
        for (c, b) in buckets.iter().zip(next) {
            match map.get_mut(&*c.id) {
                Some(slot) => *slot = b,
                None => {
                    map.insert(c.id.to_string(), b);
                }
            }
        }
        Outcome::Allow {
            remaining: first.0,
            reset: first.1,
        }
    }

    /// `(used, remaining)` of the quota `id` at `unix`.
    pub fn quota_usage(&self, id: &str, q: Quota, unix: i64) -> (u64, u64) {
        let map = self.quotas.lock().expect("limiter lock is never poisoned");
        quota_usage(map.get(id), q, unix)
    }
}

/// Where the counters live: in process, or in Redis (`--redis-url`) with a failure mode.
#[derive(Clone, Debug)]
pub struct Limits {
    /// In-process counters (also what `/usage` reads without Redis).
    pub local: Arc<Limiter>,
    /// Redis counters, when the shared state has a store.
    pub redis: Option<Arc<redis::RedisLimiter>>,
    /// The shared-state layer: its failure rule decides when Redis gives no answer.
    pub shared: crate::shared_state::SharedState,
}

impl Default for Limits {
    /// In-process counters only.
    fn default() -> Self {
        Limits {
            local: Arc::default(),
            redis: None,
            shared: crate::shared_state::SharedState::default(),
        }
    }
}

impl Limits {
    /// The counters of `shared`: in Redis when it has a store, else in process.
    pub fn new(shared: crate::shared_state::SharedState) -> Self {
        Limits {
            local: Arc::default(),
            redis: shared.redis.clone().map(redis::RedisLimiter::new),
            shared,
        }
    }

    /// Runs the checks where the counters live. `Err` only when Redis gave no answer and the
    /// failure mode refuses; otherwise such a request is admitted unchecked (counted and
    /// logged by the shared-state layer).
    pub async fn check(
        &self,
        buckets: &[Check],
        quota: Option<(&str, Quota, i64)>,
    ) -> Result<Outcome, crate::shared_state::StoreError> {
        let Some(r) = &self.redis else {
            return Ok(self.local.check(buckets, quota, self.local.now()));
        };
        match r.check(buckets, quota).await {
            Ok(o) => Ok(o),
            Err(e) => match self.shared.failed(crate::shared_state::User::RateLimit, &e) {
                crate::shared_state::Failure::Refuse => Err(e),
                crate::shared_state::Failure::Proceed => Ok(Outcome::Unchecked),
            },
        }
    }
}

/// The counter id of a plan's per-key bucket (optionally per method).
pub fn plan_bucket_id(plan: &str, key_hash: &str, route: Option<&str>) -> String {
    match route {
        Some(r) => format!("{plan}|{key_hash}|{r}"),
        None => format!("{plan}|{key_hash}"),
    }
}

/// The counter id of a plan's per-key quota.
pub fn plan_quota_id(plan: &str, key_hash: &str) -> String {
    format!("{plan}|{key_hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Throttle = Throttle {
        rate_limit: 2.0,
        burst_limit: 3,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_bucket_starts_full_spends_its_burst_then_refills_at_the_rate() {
        let mut b = None;
        for left in [2, 1, 0] {
            assert!(
                matches!(take_token(&mut b, T, ms(0)), Decision::Allow { remaining, .. } if remaining == left)
            );
        }
        assert_eq!(
            take_token(&mut b, T, ms(0)),
            Decision::Deny { retry_after: 1 }
        );
        // 2 req/s: one token after 500 ms, not before.
        assert!(matches!(
            take_token(&mut b, T, ms(499)),
            Decision::Deny { .. }
        ));
        assert!(matches!(
            take_token(&mut b, T, ms(500)),
            Decision::Allow { remaining: 0, .. }
        ));
        // Refill is capped at the burst.
        assert!(matches!(
            take_token(&mut b, T, ms(60_000)),
            Decision::Allow {
                remaining: 2,
                reset: 1
            }
        ));
    }

    #[test]
    fn admitted_requests_never_exceed_burst_plus_rate_times_elapsed() {
        let mut b = None;
        let mut admitted = 0u64;
        for i in 0..10_000u64 {
            // One attempt per millisecond for 10 s.
            if matches!(take_token(&mut b, T, ms(i)), Decision::Allow { .. }) {
                admitted += 1;
            }
        }
        // burst 3 + 2/s * 9.999 s = 22.998 -> at most 22 (21 allows for float rounding).
        assert!((21..=22).contains(&admitted), "{admitted}");
    }

    #[test]
    fn a_smaller_burst_after_a_reload_clamps_the_tokens() {
        let mut b = None;
        take_token(
            &mut b,
            Throttle {
                rate_limit: 1.0,
                burst_limit: 100,
            },
            ms(0),
        );
        assert!(matches!(
            take_token(
                &mut b,
                Throttle {
                    rate_limit: 1.0,
                    burst_limit: 1
                },
                ms(0)
            ),
            Decision::Allow { remaining: 0, .. }
        ));
        assert!(matches!(
            take_token(
                &mut b,
                Throttle {
                    rate_limit: 1.0,
                    burst_limit: 1
                },
                ms(0)
            ),
            Decision::Deny { .. }
        ));
    }

    fn unix(y: i64, m: i64, d: i64, hh: i64, mm: i64, ss: i64) -> i64 {
        days_from_civil(y, m, d) * DAY + hh * 3600 + mm * 60 + ss
    }

    #[test]
    fn periods_are_utc_days_monday_weeks_and_calendar_months() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(utc_date(unix(2028, 2, 29, 23, 59, 59)), "2028-02-29");
        let t = unix(2026, 11, 25, 10, 56, 0); // a Wednesday
        assert_eq!(
            period_bounds(QuotaPeriod::Day, t),
            (unix(2026, 11, 25, 0, 0, 0), unix(2026, 11, 26, 0, 0, 0))
        );
        assert_eq!(
            period_bounds(QuotaPeriod::Week, t),
            (unix(2026, 11, 23, 0, 0, 0), unix(2026, 11, 30, 0, 0, 0))
        );
        assert_eq!(
            period_bounds(QuotaPeriod::Month, t),
            (unix(2026, 11, 1, 0, 0, 0), unix(2026, 12, 1, 0, 0, 0))
        );
        // Boundaries: the last second belongs to the old window, the next to the new one.
        let eod = unix(2026, 11, 25, 23, 59, 59);
        assert_eq!(
            period_bounds(QuotaPeriod::Day, eod).0,
            unix(2026, 11, 25, 0, 0, 0)
        );
        assert_eq!(period_bounds(QuotaPeriod::Day, eod + 1).0, eod + 1);
        // Monday 00:00 starts a week; Sunday 23:59:59 ends one.
        let monday = unix(2026, 11, 30, 0, 0, 0);
        assert_eq!(period_bounds(QuotaPeriod::Week, monday).0, monday);
        assert_eq!(
            period_bounds(QuotaPeriod::Week, monday - 1).0,
            unix(2026, 11, 23, 0, 0, 0)
        );
        // December -> January, and February of a leap year.
        assert_eq!(
            period_bounds(QuotaPeriod::Month, unix(2026, 12, 31, 23, 0, 0)),
            (unix(2026, 12, 1, 0, 0, 0), unix(2027, 1, 1, 0, 0, 0))
        );
        assert_eq!(
            period_bounds(QuotaPeriod::Month, unix(2028, 2, 29, 12, 0, 0)),
            (unix(2028, 2, 1, 0, 0, 0), unix(2028, 3, 1, 0, 0, 0))
        );
        // Before 1970 too.
        assert_eq!(period_bounds(QuotaPeriod::Day, -1), (-DAY, 0));
    }

    #[test]
    fn a_quota_starts_at_its_offset_and_resets_at_the_window_boundary() {
        let q = Quota {
            limit: 3,
            period: QuotaPeriod::Day,
            offset: 1,
        };
        let t = unix(2026, 11, 25, 23, 59, 0);
        let mut s = None;
        assert_eq!(
            take_quota(&mut s, q, t),
            Decision::Allow {
                remaining: 1,
                reset: 60
            }
        );
        assert_eq!(
            take_quota(&mut s, q, t),
            Decision::Allow {
                remaining: 0,
                reset: 60
            }
        );
        assert_eq!(
            take_quota(&mut s, q, t + 59),
            Decision::Deny { retry_after: 1 }
        );
        assert_eq!(quota_usage(s.as_ref(), q, t), (3, 0));
        // Next day: the offset applies only to the first window.
        let next = t + 60;
        assert_eq!(quota_usage(s.as_ref(), q, next), (0, 3));
        assert_eq!(
            take_quota(&mut s, q, next),
            Decision::Allow {
                remaining: 2,
                reset: DAY as u64
            }
        );
    }

    #[test]
    fn the_limiter_keeps_counters_by_id() {
        let l = Limiter::default();
        let t = Throttle {
            rate_limit: 1.0,
            burst_limit: 1,
        };
        assert!(matches!(l.token("a", t, ms(0)), Decision::Allow { .. }));
        assert!(matches!(l.token("a", t, ms(0)), Decision::Deny { .. }));
        assert!(matches!(l.token("b", t, ms(0)), Decision::Allow { .. }));
        assert_eq!(plan_bucket_id("p", "h", Some("r")), "p|h|r");
    }
}
