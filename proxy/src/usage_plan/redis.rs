//! Counters in Redis (`--redis-url`), shared by every replica: the first user of the
//! shared-state layer ([`crate::shared_state`]: connection, timeout, breaker, failure rule).
//!
//! One Lua script per request does every check at once (the key's bucket, the stage's bucket,
//! the key's quota): it reads them all, refuses without spending anything when one is empty,
//! else spends one of each. One round trip at most; none when the local "blocked until"
//! cache already knows the answer. Time is Redis's own (`TIME`), so replicas with skewed
//! clocks share one refill clock; the quota window is chosen by the proxy from UTC.
//!
//! Accuracy: every admission is an atomic script on one Redis, so across replicas the admitted
//! count of a bucket over any interval of length `t` is at most `burst + rate * t` (the same
//! bound as one process), plus nothing: the local cache only refuses, never admits.

use super::{Check, Outcome};
use crate::shared_state::{RedisStore, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SCRIPT: &str = r#"
-- KEYS: nb bucket keys, then (if ARGV[2] == 1) the quota key and its "seen" marker.
-- ARGV: nb, has_quota, then per bucket rate (tokens/ms) and burst, then limit, offset, ttl.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nb = tonumber(ARGV[1])
local has_quota = tonumber(ARGV[2])
local tokens = {}
for i = 1, nb do
  local rate = tonumber(ARGV[1 + 2 * i])
  local burst = tonumber(ARGV[2 + 2 * i])
  local v = redis.call('HMGET', KEYS[i], 't', 'ts')
  local tk = tonumber(v[1]) or burst
  local ts = tonumber(v[2]) or now
  if now > ts then tk = tk + (now - ts) * rate end
  if tk > burst then tk = burst end
  if tk < 1 then
    return {0, i, math.ceil((1 - tk) / rate)}
  end
  tokens[i] = tk
end
local remaining = -1
if has_quota == 1 then
  local base = 2 + 2 * nb
  local limit = tonumber(ARGV[base + 1])
  local offset = tonumber(ARGV[base + 2])
  local ttl = tonumber(ARGV[base + 3])
  local qk = KEYS[nb + 1]
  local used = tonumber(redis.call('GET', qk))
  if not used then
    used = 0
    if redis.call('SET', KEYS[nb + 2], 1, 'NX') then used = offset end
  end
  if used >= limit then
    return {0, nb + 1, 0}
  end
  redis.call('SET', qk, used + 1, 'EX', ttl)
  remaining = limit - used - 1
end
local first = {-1, 0}
for i = 1, nb do
  local rate = tonumber(ARGV[1 + 2 * i])
  local burst = tonumber(ARGV[2 + 2 * i])
  local tk = tokens[i] - 1
  redis.call('HSET', KEYS[i], 't', tostring(tk), 'ts', now)
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate) + 1000)
  if i == 1 then first = {math.floor(tk), math.ceil((burst - tk) / rate)} end
end
return {1, first[1], first[2], remaining}
"#;

/// Counters in Redis, with a local cache of refusals.
pub struct RedisLimiter {
    store: Arc<RedisStore>,
    script: redis::Script,
    /// Counter id -> refused until (tokio clock), so blocked callers cost no round trip.
    blocked: Mutex<HashMap<String, tokio::time::Instant>>,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter").finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// The counters, on the shared `store`.
    pub fn new(store: Arc<RedisStore>) -> Arc<Self> {
        Arc::new(RedisLimiter {
            store,
            script: redis::Script::new(SCRIPT),
            blocked: Mutex::default(),
        })
    }

    /// `(used, remaining)` of the quota `id` at `unix`, read from Redis.
    pub async fn quota_usage(
        &self,
        id: &str,
        q: portico_config::Quota,
        unix: i64,
    ) -> Result<(u64, u64), StoreError> {
        let (start, _) = super::period_bounds(q.period, unix);
        let mut cmd = redis::cmd("MGET");
        cmd.arg(format!("portico:q:{id}:{start}"))
            .arg(format!("portico:qseen:{id}"));
        let (used, seen) = self
            .store
            .run(|mut conn| async move {
                cmd.query_async::<(Option<u64>, Option<u64>)>(&mut conn)
                    .await
            })
            .await?;
        let used = used.unwrap_or(if seen.is_some() { 0 } else { q.offset });
        Ok((used, q.limit.saturating_sub(used)))
    }

    /// Runs the checks: one script call, or none when a counter is known to be blocked.
    pub async fn check(
        &self,
        buckets: &[Check],
        quota: Option<(&str, portico_config::Quota, i64)>,
    ) -> Result<Outcome, StoreError> {
        let now = tokio::time::Instant::now();
        {
            let mut blocked = self.blocked.lock().expect("never poisoned");
            blocked.retain(|_, until| *until > now);
            for (i, b) in buckets.iter().enumerate() {
                if let Some(until) = blocked.get(&*b.id) {
                    let secs = until.duration_since(now).as_secs_f64().ceil() as u64;
                    return Ok(Outcome::Throttled {
                        bucket: i,
                        retry_after: secs.max(1),
                    });
                }
            }
            if let Some(until) = quota.and_then(|(id, _, _)| blocked.get(id)) {
                let secs = until.duration_since(now).as_secs_f64().ceil() as u64;
                return Ok(Outcome::QuotaExceeded {
                    retry_after: secs.max(1),
                });
            }
        }
        let mut inv = self.script.prepare_invoke();
        for b in buckets {
            inv.key(format!("portico:b:{}", b.id));
        }
        let mut window_end = 0;
        if let Some((id, q, unix)) = quota {
            let (start, end) = super::period_bounds(q.period, unix);
            window_end = end;
            inv.key(format!("portico:q:{id}:{start}"));
            inv.key(format!("portico:qseen:{id}"));
        }
        inv.arg(buckets.len()).arg(i32::from(quota.is_some()));
        for b in buckets {
            inv.arg(b.throttle.rate_limit / 1000.0)
                .arg(b.throttle.burst_limit);
        }
        if let Some((_, q, unix)) = quota {
            inv.arg(q.limit)
                .arg(q.offset)
                .arg((window_end - unix).max(1) + 60);
        }
        let reply: Vec<i64> = self
            .store
            .run(|mut conn| async move { inv.invoke_async::<Vec<i64>>(&mut conn).await })
            .await?;
        let get = |i: usize| reply.get(i).copied().unwrap_or(0);
        let nb = buckets.len();
        if get(0) == 1 {
            return Ok(Outcome::Allow {
                remaining: u64::try_from(get(1)).unwrap_or(0),
                reset: u64::try_from(get(2)).unwrap_or(0).div_ceil(1000),
            });
        }
        let which = usize::try_from(get(1)).unwrap_or(1);
        let mut blocked = self.blocked.lock().expect("never poisoned");
        if which == nb + 1 {
            let (id, _, unix) = quota.expect("the script names the quota only when sent");
            let secs = u64::try_from(window_end - unix).unwrap_or(1).max(1);
            blocked.insert(id.to_string(), now + Duration::from_secs(secs));
            return Ok(Outcome::QuotaExceeded { retry_after: secs });
        }
        let ms = u64::try_from(get(2)).unwrap_or(1).max(1);
        let bucket = which.saturating_sub(1).min(nb.saturating_sub(1));
        blocked.insert(
            buckets[bucket].id.to_string(),
            now + Duration::from_millis(ms),
        );
        Ok(Outcome::Throttled {
            bucket,
            retry_after: ms.div_ceil(1000).max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared_state::{BREAKER_FAILURES, BREAKER_OPEN};

    /// A `redis-server` of this test on a free port (the test command installs it).
    struct Server(std::process::Child, u16);

    impl Server {
        fn start() -> Server {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("redis-server (apt-get install -y redis-server; scripts/test.sh does)");
            Server(child, port)
        }

        fn signal(&self, sig: &str) {
            let pid = self.0.id().to_string();
            let ok = std::process::Command::new("kill")
                .args([sig, &pid])
                .status();
            assert!(ok.is_ok_and(|s| s.success()), "kill {sig} {pid}");
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.signal("-CONT");
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Issue 9.8, wired: a Redis that stops answering (SIGSTOP) costs three checks the
    /// timeout; the fourth fails at once without asking; after `BREAKER_OPEN` Redis is asked
    /// again. The clock is tokio's paused one, so no step depends on the machine's speed.
    #[tokio::test]
    async fn a_stopped_redis_is_not_asked_after_three_timeouts() {
        let server = Server::start();
        let url = format!("redis://127.0.0.1:{}", server.1);
        let limiter = loop {
            // Until it listens (bounded: a broken start fails here).
            match tokio::time::timeout(Duration::from_secs(60), RedisStore::connect(&url)).await {
                Ok(Ok(store)) if store.is_connected() => break RedisLimiter::new(store),
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(_) => panic!("redis-server did not start within 60 s"),
            }
        };
        let bucket = [Check {
            id: "breaker-test".into(),
            throttle: portico_config::Throttle {
                rate_limit: 1000.0,
                burst_limit: 1000,
            },
        }];
        assert!(matches!(
            limiter.check(&bucket, None).await,
            Ok(Outcome::Allow { .. })
        ));
        server.signal("-STOP");
        tokio::time::pause();
        for i in 0..BREAKER_FAILURES {
            let r = limiter.check(&bucket, None).await;
            assert!(matches!(r, Err(StoreError::Timeout)), "check {i}: {r:?}");
        }
        let r = limiter.check(&bucket, None).await;
        assert!(matches!(r, Err(StoreError::Unavailable)), "{r:?}");
        tokio::time::advance(BREAKER_OPEN).await;
        let r = limiter.check(&bucket, None).await;
        assert!(matches!(r, Err(StoreError::Timeout)), "asked again: {r:?}");
        let r = limiter.check(&bucket, None).await;
        assert!(matches!(r, Err(StoreError::Unavailable)), "{r:?}");
    }
}
