//! Counters in Redis (`--redis-url`), shared by every replica.
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
use arc_swap::ArcSwapOption;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest wait for Redis before the failure mode applies.
const TIMEOUT: Duration = Duration::from_millis(250);
/// Consecutive failed checks after which Redis is not asked for [`BREAKER_OPEN`].
const BREAKER_FAILURES: u32 = 3;
/// How long the failure mode applies without asking Redis once it kept failing; then checks
/// go to Redis again, and one more failure opens the breaker again.
const BREAKER_OPEN: Duration = Duration::from_secs(1);

/// A circuit breaker: during an outage the failure mode applies at once instead of after
/// [`TIMEOUT`] on every metered request (a Redis that stopped answering added 250 ms each).
#[derive(Debug, Default)]
struct Breaker {
    state: Mutex<(u32, Option<tokio::time::Instant>)>,
}

impl Breaker {
    /// Whether Redis may be asked now.
    fn allows(&self, now: tokio::time::Instant) -> bool {
        let mut s = self.state.lock().expect("never poisoned");
        match s.1 {
            Some(until) if now < until => false,
            Some(_) => {
                s.1 = None;
                true
            }
            None => true,
        }
    }

    /// Records how a check that went to Redis ended.
    fn record(&self, ok: bool, now: tokio::time::Instant) {
        let mut s = self.state.lock().expect("never poisoned");
        if ok {
            *s = (0, None);
        } else {
            s.0 = s.0.saturating_add(1);
            if s.0 >= BREAKER_FAILURES {
                s.1 = Some(now + BREAKER_OPEN);
            }
        }
    }
}

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
    conn: Arc<ArcSwapOption<ConnectionManager>>,
    script: redis::Script,
    /// Counter id -> refused until (tokio clock), so blocked callers cost no round trip.
    blocked: Mutex<HashMap<String, tokio::time::Instant>>,
    breaker: Breaker,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter").finish_non_exhaustive()
    }
}

/// Why a Redis check gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// Not connected yet (or reconnecting).
    #[error("not connected to redis")]
    NotConnected,
    /// No answer within the timeout.
    #[error("redis did not answer within {TIMEOUT:?}")]
    Timeout,
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Not asked: the last checks failed ([`Breaker`]).
    #[error("redis not asked for {BREAKER_OPEN:?} after {BREAKER_FAILURES} failed checks")]
    Unavailable,
}

impl RedisLimiter {
    /// Connects: one attempt (at most 2 s) before returning, so a proxy that reports ready
    /// with Redis up is connected; then, if that failed, retries every second in the
    /// background while serving under the failure mode.
    pub async fn connect(url: &str) -> Result<Arc<Self>, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let conn: Arc<ArcSwapOption<ConnectionManager>> = Arc::default();
        let first = tokio::time::timeout(Duration::from_secs(2), client.get_connection_manager());
        match first.await {
            Ok(Ok(c)) => {
                conn.store(Some(Arc::new(c)));
                tracing::info!("connected to redis for rate-limit counters");
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_string(),
                };
                tracing::warn!(error = %why, "cannot connect to redis; retrying every second");
                let slot = conn.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if let Ok(c) = client.get_connection_manager().await {
                            slot.store(Some(Arc::new(c)));
                            tracing::info!("connected to redis for rate-limit counters");
                            return;
                        }
                    }
                });
            }
        }
        Ok(Arc::new(RedisLimiter {
            conn,
            script: redis::Script::new(SCRIPT),
            blocked: Mutex::default(),
            breaker: Breaker::default(),
        }))
    }

    /// `(used, remaining)` of the quota `id` at `unix`, read from Redis.
    pub async fn quota_usage(
        &self,
        id: &str,
        q: portico_config::Quota,
        unix: i64,
    ) -> Result<(u64, u64), RedisError> {
        let Some(conn) = self.conn.load_full() else {
            return Err(RedisError::NotConnected);
        };
        let mut conn = (*conn).clone();
        let (start, _) = super::period_bounds(q.period, unix);
        let mut cmd = redis::cmd("MGET");
        cmd.arg(format!("portico:q:{id}:{start}"))
            .arg(format!("portico:qseen:{id}"));
        let fut = cmd.query_async::<(Option<u64>, Option<u64>)>(&mut conn);
        let (used, seen) = tokio::time::timeout(TIMEOUT, fut)
            .await
            .map_err(|_| RedisError::Timeout)??;
        let used = used.unwrap_or(if seen.is_some() { 0 } else { q.offset });
        Ok((used, q.limit.saturating_sub(used)))
    }

    /// Runs the checks: one script call, or none when a counter is known to be blocked.
    pub async fn check(
        &self,
        buckets: &[Check],
        quota: Option<(&str, portico_config::Quota, i64)>,
    ) -> Result<Outcome, RedisError> {
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
        let Some(conn) = self.conn.load_full() else {
            return Err(RedisError::NotConnected);
        };
        let mut conn = (*conn).clone();
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
        if !self.breaker.allows(now) {
            return Err(RedisError::Unavailable);
        }
        let reply = tokio::time::timeout(TIMEOUT, inv.invoke_async::<Vec<i64>>(&mut conn)).await;
        self.breaker
            .record(matches!(reply, Ok(Ok(_))), tokio::time::Instant::now());
        let reply: Vec<i64> = reply.map_err(|_| RedisError::Timeout)??;
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
            match tokio::time::timeout(Duration::from_secs(60), RedisLimiter::connect(&url)).await {
                Ok(Ok(l)) if l.conn.load().is_some() => break l,
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
            assert!(matches!(r, Err(RedisError::Timeout)), "check {i}: {r:?}");
        }
        let r = limiter.check(&bucket, None).await;
        assert!(matches!(r, Err(RedisError::Unavailable)), "{r:?}");
        tokio::time::advance(BREAKER_OPEN).await;
        let r = limiter.check(&bucket, None).await;
        assert!(matches!(r, Err(RedisError::Timeout)), "asked again: {r:?}");
        let r = limiter.check(&bucket, None).await;
        assert!(matches!(r, Err(RedisError::Unavailable)), "{r:?}");
    }

    /// Issue 9.8: a Redis that stopped answering cost every metered request the 250 ms
    /// timeout. After three failed checks, Redis is not asked for a second; then it is
    /// asked again, and one more failure opens the breaker again at once.
    #[test]
    fn the_breaker_opens_after_failures_and_retries_after_a_while() {
        let b = Breaker::default();
        let t0 = tokio::time::Instant::now();
        for i in 0..BREAKER_FAILURES {
            assert!(b.allows(t0), "failure {i}");
            b.record(false, t0);
        }
        assert!(!b.allows(t0));
        assert!(!b.allows(t0 + BREAKER_OPEN - Duration::from_millis(1)));
        let later = t0 + BREAKER_OPEN;
        assert!(b.allows(later));
        b.record(false, later);
        assert!(!b.allows(later), "one more failure reopens it");
        // A success closes it for good.
        let after = later + BREAKER_OPEN;
        assert!(b.allows(after));
        b.record(true, after);
        b.record(false, after);
        assert!(
            b.allows(after),
            "one failure after a success does not open it"
        );
    }
}
