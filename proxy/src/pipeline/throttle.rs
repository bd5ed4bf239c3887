//! Throttle phase: the key's usage plan (per-method throttle or the plan's, and its quota)
//! and the stage's throttles for everyone (per-method `methodSettings` or the stage's).
//!
//! Runs after `api_key` (it meters [`RequestCtx::api_key`]) and before the body is read and
//! the integration called. Reads the counters through [`Limits`] (in process, or Redis with
//! `--redis-url`; outside `Runtime`, keyed by stable ids, so a reload does not reset them).
//! All checks of a request are decided together: when one refuses, nothing is spent.
//! Sets [`RequestCtx::rate_limit`] (the `RateLimit-*` headers of the key's bucket, else the
//! stage's). Short-circuits with `Throttled` (429 `Too Many Requests`), `QuotaExceeded`
//! (429 `Limit Exceeded`), both with `Retry-After`, or, when Redis is down and the failure
//! mode is closed, `Default5xx` (500).

use super::ctx::RequestCtx;
use super::error::GatewayError;
use crate::usage_plan::{Check, Limits, Outcome, plan_bucket_id, plan_quota_id};
use http::{HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

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
        const LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
        const REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
        const RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
        h.insert(LIMIT, HeaderValue::from(self.limit));
        h.insert(REMAINING, HeaderValue::from(self.remaining));
        h.insert(RESET, HeaderValue::from(self.reset));
        if let Some(r) = self.retry_after {
            h.insert(http::header::RETRY_AFTER, HeaderValue::from(r));
        }
    }
}

/// The buckets and quota of a request: `(buckets, quota id and limits)`.
fn checks(ctx: &RequestCtx) -> (Vec<Check>, Option<(Arc<str>, portico_config::Quota)>) {
    let rt = &ctx.runtime;
    let cfg = &rt.config;
    let (Some(s), Some(stage), Some(route)) = (
        ctx.handle.map(|h| h.stage as usize),
        ctx.stage_config(),
        ctx.route_config(),
    ) else {
        return (Vec::new(), None);
    };
    let (stage_id, route_id) = (stage.id.as_str(), route.id.as_str());
    let mut buckets = Vec::new();
    let mut quota = None;
    if let Some(m) = ctx.api_key {
        let plan = &cfg.usage_plans[m.plan];
        let key = cfg.api_keys[m.key].hash.as_hex();
        // The key's counter id in this plan, built with the config (`plan|hash`).
        let key_id = rt.key_plans[m.key]
            .iter()
            .find(|(p, _)| *p == m.plan)
            .map_or_else(
                || Arc::from(plan_quota_id(&plan.id, key)),
                |(_, id)| id.clone(),
            );
        let method = rt.plan_stages[m.plan]
            .get(stage_id)
            .map(|&j| &plan.stages[j])
            .and_then(|s| s.method_throttles.get(route_id));
        if let Some(t) = method.or(plan.throttle.as_ref()) {
            let id = match method {
                Some(_) => Arc::from(plan_bucket_id(&plan.id, key, Some(route_id))),
                None => key_id.clone(),
            };
            buckets.push(Check { id, throttle: *t });
        }
        quota = plan.quota.map(|q| (key_id, q));
    }
    match stage.method_throttles.get(route_id) {
        Some(t) => buckets.push(Check {
            id: Arc::from(format!("{stage_id}|{route_id}")),
            throttle: *t,
        }),
        None => {
            if let Some(t) = stage.throttle {
                buckets.push(Check {
                    id: rt.stage_bucket_ids[s].clone(),
                    throttle: t,
                });
            }
        }
    }
    (buckets, quota)
}

/// The throttle phase: [`apply`], then the request and throttle counts of the request's API
/// key (`portico_api_key_*`), refused or not.
pub async fn meter(ex: &mut super::ctx::Exchange<'_>) -> Result<super::ctx::Flow, GatewayError> {
    let (shared, ctx) = (ex.shared, &mut *ex.ctx);
    let limited = apply(&shared.limits, ctx).await;
    if let Some(m) = ctx.api_key {
        let rt = &ctx.runtime.config;
        shared.key_metrics.record(
            &rt.usage_plans[m.plan].id,
            rt.api_keys[m.key].hash.key_id(),
            limited.is_err(),
        );
    }
    limited.map(|()| super::ctx::Flow::Continue)
}

/// Applies the limits of the request's key and stage.
pub async fn apply(limits: &Limits, ctx: &mut RequestCtx) -> Result<(), GatewayError> {
    let (buckets, quota) = checks(ctx);
    if buckets.is_empty() && quota.is_none() {
        return Ok(());
    }
    let unix = ctx
        .request_time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let q = quota.as_ref().map(|(id, q)| (&**id, *q, unix));
    let outcome = limits
        .check(&buckets, q)
        .await
        .map_err(|e| GatewayError::Default5xx(format!("rate-limit counters unavailable: {e}")))?;
    match outcome {
        Outcome::Allow { remaining, reset } => {
            ctx.rate_limit = buckets.first().map(|b| RateLimitHeaders {
                limit: b.throttle.burst_limit,
                remaining,
                reset,
                retry_after: None,
            });
            Ok(())
        }
        Outcome::Unchecked => Ok(()),
        Outcome::Throttled {
            bucket,
            retry_after,
        } => {
            ctx.rate_limit = Some(RateLimitHeaders {
                limit: buckets[bucket].throttle.burst_limit,
                remaining: 0,
                reset: retry_after,
                retry_after: Some(retry_after),
            });
            Err(GatewayError::Throttled)
        }
        Outcome::QuotaExceeded { retry_after } => {
            ctx.rate_limit = Some(RateLimitHeaders {
                limit: quota.map_or(0, |(_, q)| q.limit),
                remaining: 0,
                reset: retry_after,
                retry_after: Some(retry_after),
            });
            Err(GatewayError::QuotaExceeded)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::pipeline::route::tests::{mk_api, mk_stage};
    use crate::pipeline::{api_key, route};
    use crate::pool::Pools;
    use crate::runtime::Runtime;
    use portico_config::{
        ApiKey, GatewayConfig, KeyHash, ObjectRef, PlanStage, Protocol, Quota, QuotaPeriod,
        Throttle, UsagePlan,
    };
    use std::sync::Arc;
    use std::time::Duration;

    fn mk_runtime() -> Arc<Runtime> {
        let mut api = mk_api(Protocol::Rest, &[("GET", "/pets")]);
        api.routes[0].api_key_required = true;
        let mut stage = mk_stage("stage/default/dev", "/dev", &[]);
        stage.throttle = Some(Throttle {
            rate_limit: 100.0,
            burst_limit: 100,
        });
        let cfg = GatewayConfig {
            apis: vec![api],
            stages: vec![stage],
            usage_plans: vec![UsagePlan {
                id: "usageplan/default/p".into(),
                source: ObjectRef::new("UsagePlan", "default", "p"),
                throttle: Some(Throttle {
                    rate_limit: 1.0,
                    burst_limit: 2,
                }),
                quota: Some(Quota {
                    limit: 4,
                    period: QuotaPeriod::Month,
                    offset: 0,
                }),
                stages: vec![PlanStage {
                    stage_id: "stage/default/dev".into(),
                    method_throttles: Default::default(),
                }],
            }],
            api_keys: vec![ApiKey {
                id: "apikey/default/k".into(),
                source: ObjectRef::new("ApiKey", "default", "k"),
                hash: KeyHash::of(b"k3y"),
                enabled: true,
                usage_plans: vec!["usageplan/default/p".into()],
            }],
            ..GatewayConfig::empty()
        };
        cfg.validate().unwrap();
        Arc::new(Runtime::build(cfg, &Metrics::new(), &Pools::new()))
    }

    async fn call(rt: &Arc<Runtime>, limits: &Limits) -> Result<RequestCtx, GatewayError> {
        let req = http::Request::get("/dev/pets")
            .header("x-api-key", "k3y")
            .body(())
            .unwrap();
        let mut ctx = RequestCtx::new(rt.clone(), [127, 0, 0, 1].into(), &req);
        route::apply(&mut ctx)?;
        api_key::apply(&mut ctx, req.headers())?;
        apply(limits, &mut ctx).await?;
        Ok(ctx)
    }

    #[test]
    fn counter_ids_are_the_stable_plan_key_and_stage_ids() {
        // They name Redis keys shared by replicas: a change here strands every counter.
        let rt = mk_runtime();
        let req = http::Request::get("/dev/pets")
            .header("x-api-key", "k3y")
            .body(())
            .unwrap();
        let mut ctx = RequestCtx::new(rt.clone(), [127, 0, 0, 1].into(), &req);
        route::apply(&mut ctx).unwrap();
        api_key::apply(&mut ctx, req.headers()).unwrap();
        let (buckets, quota) = checks(&ctx);
        let key_id = format!("usageplan/default/p|{}", KeyHash::of(b"k3y").as_hex());
        let ids: Vec<&str> = buckets.iter().map(|b| &*b.id).collect();
        assert_eq!(ids, [key_id.as_str(), "stage/default/dev"]);
        assert_eq!(quota.map(|(id, _)| id.to_string()), Some(key_id));
    }

    #[tokio::test(start_paused = true)]
    async fn the_plan_bucket_refills_with_time_and_the_quota_does_not() {
        let rt = mk_runtime();
        let limits = Limits::default();
        let first = call(&rt, &limits).await.unwrap();
        assert_eq!(
            first.rate_limit,
            Some(RateLimitHeaders {
                limit: 2,
                remaining: 1,
                reset: 1,
                retry_after: None
            })
        );
        call(&rt, &limits).await.unwrap();
        assert!(matches!(
            call(&rt, &limits).await,
            Err(GatewayError::Throttled)
        ));
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(matches!(
            call(&rt, &limits).await,
            Err(GatewayError::Throttled)
        ));
        tokio::time::advance(Duration::from_millis(1)).await;
        call(&rt, &limits).await.unwrap();
        // A reload (a new Runtime of the same config) keeps the counters.
        let reloaded = mk_runtime();
        tokio::time::advance(Duration::from_secs(10)).await;
        call(&reloaded, &limits).await.unwrap();
        // 4 admitted: the monthly quota is spent; refused requests did not use it.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(matches!(
            call(&reloaded, &limits).await,
            Err(GatewayError::QuotaExceeded)
        ));
    }
}
