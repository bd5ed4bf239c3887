//! Throttle phase: the key's usage plan (per-method throttle or the plan's, then its quota)
//! and the stage's throttles for everyone (per-method `methodSettings` or the stage's).
//!
//! Runs after `api_key` (it meters [`RequestCtx::api_key`]) and before the body is read and
//! the integration called. Reads the counters in [`Limiter`] (outside `Runtime`, keyed by
//! stable ids, so a reload does not reset them). Order: key bucket, then stage bucket, then
//! quota, so a request refused by a bucket does not use quota. Sets
//! [`RequestCtx::rate_limit`] (the `RateLimit-*` headers of the key's bucket, else the
//! stage's). Short-circuits with `Throttled` (429 `Too Many Requests`) or `QuotaExceeded`
//! (429 `Limit Exceeded`), both with `Retry-After`.

use super::{GatewayError, RequestCtx};
use crate::usage_plan::{Decision, Limiter, plan_bucket_id, plan_quota_id};
use http::{HeaderMap, HeaderName, HeaderValue};
use portico_config::Throttle;
use std::time::{Duration, UNIX_EPOCH};

/// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (IETF draft) and
/// `Retry-After`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitHeaders {
    /// The limit (bucket size or quota).
    pub limit: u64,
    /// Requests left.
    pub remaining: u64,
    /// Seconds until the limit is whole again.
    pub reset: u64,
    /// Seconds to wait, on 429.
    pub retry_after: Option<u64>,
}

impl RateLimitHeaders {
    /// Adds the headers to a response.
    pub fn insert(&self, h: &mut HeaderMap) {
        let mut put = |name: &'static str, v: u64| {
            h.insert(HeaderName::from_static(name), HeaderValue::from(v));
        };
        put("ratelimit-limit", self.limit);
        put("ratelimit-remaining", self.remaining);
        put("ratelimit-reset", self.reset);
        if let Some(r) = self.retry_after {
            put("retry-after", r);
        }
    }
}

fn bucket(
    limiter: &Limiter,
    id: &str,
    t: Throttle,
    now: Duration,
) -> Result<RateLimitHeaders, RateLimitHeaders> {
    match limiter.token(id, t, now) {
        Decision::Allow { remaining, reset } => Ok(RateLimitHeaders {
            limit: t.burst_limit,
            remaining,
            reset,
            retry_after: None,
        }),
        Decision::Deny { retry_after } => Err(RateLimitHeaders {
            limit: t.burst_limit,
            remaining: 0,
            reset: retry_after,
            retry_after: Some(retry_after),
        }),
    }
}

/// Applies the limits at `now` (monotonic, from the limiter's origin).
pub fn apply(limiter: &Limiter, ctx: &mut RequestCtx, now: Duration) -> Result<(), GatewayError> {
    let rt = ctx.runtime.clone();
    let (Some(stage), Some(route)) = (ctx.stage_config(), ctx.route_config()) else {
        return Ok(());
    };
    let (stage_id, route_id) = (stage.id.as_str(), route.id.as_str());
    let mut headers = None;
    let mut quota = None;
    if let Some(m) = ctx.api_key {
        let plan = &rt.config.usage_plans[m.plan];
        let key = rt.config.api_keys[m.key].hash.as_hex();
        let method = plan
            .stages
            .iter()
            .find(|s| s.stage_id == stage_id)
            .and_then(|s| s.method_throttles.get(route_id));
        let throttle = method.or(plan.throttle.as_ref());
        if let Some(t) = throttle {
            let id = plan_bucket_id(&plan.id, key, method.map(|_| route_id));
            match bucket(limiter, &id, *t, now) {
                Ok(h) => headers = Some(h),
                Err(h) => {
                    ctx.rate_limit = Some(h);
                    return Err(GatewayError::Throttled);
                }
            }
        }
        quota = plan.quota.map(|q| (plan_quota_id(&plan.id, key), q));
    }
    let (stage_bucket, throttle) = match stage.method_throttles.get(route_id) {
        Some(t) => (format!("{stage_id}|{route_id}"), Some(t)),
        None => (stage_id.to_string(), stage.throttle.as_ref()),
    };
    if let Some(t) = throttle {
        match bucket(limiter, &stage_bucket, *t, now) {
            Ok(h) => {
                headers.get_or_insert(h);
            }
            Err(h) => {
                ctx.rate_limit = Some(h);
                return Err(GatewayError::Throttled);
            }
        }
    }
    if let Some((id, q)) = quota {
        let unix = ctx
            .request_time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if let Decision::Deny { retry_after } = limiter.quota(&id, q, unix) {
            ctx.rate_limit = Some(RateLimitHeaders {
                limit: q.limit,
                remaining: 0,
                reset: retry_after,
                retry_after: Some(retry_after),
            });
            return Err(GatewayError::QuotaExceeded);
        }
    }
    ctx.rate_limit = headers;
    Ok(())
}
