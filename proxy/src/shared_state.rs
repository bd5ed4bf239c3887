//! State the proxy replicas share, in one place: one Redis handle (connection, timeout,
//! circuit breaker), one rule for a store that gives no answer (`--redis-failure-mode`), and
//! one metric family (`portico_shared_state_errors_total{user}`).
//!
//! ```text
//!  SharedState ── redis: RedisStore ──run(cmd)──> connected? breaker closed? answer within
//!       │                                         TIMEOUT? ── no ──> StoreError
//!       └── failed(user, error) ── count {user}, log (at most once a second per user)
//!                                 ── Closed: Refuse (the request gets 500) / Open: Proceed
//! ```
//!
//! Users: the rate-limit counters (`usage_plan::redis`), keyed `portico:b:*`, `portico:q:*`.
//! The response cache (`cache`, keyed `portico:c:*`, `portico:cg:*`) is the second; a
//! WebSocket connection registry will be the next: each runs its
//! commands through [`RedisStore::run`] under its own [`User`] and key prefix, and asks
//! [`SharedState::failed`] what to do when the store does not answer. Without `--redis-url`
//! every user keeps its state in process (per replica).

use arc_swap::ArcSwapOption;
use redis::aio::ConnectionManager;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest wait for Redis before the failure mode applies.
pub const TIMEOUT: Duration = Duration::from_millis(250);
/// Consecutive failed commands after which Redis is not asked for [`BREAKER_OPEN`].
pub const BREAKER_FAILURES: u32 = 3;
/// How long the failure mode applies without asking Redis once it kept failing; then
/// commands go to Redis again, and one more failure opens the breaker again.
pub const BREAKER_OPEN: Duration = Duration::from_secs(1);
/// At most one warning per user in this interval while the store fails (the metric counts
/// every failure).
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Who uses the shared state: the `user` label of the metric and of the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum User {
    /// Usage-plan and throttle counters.
    RateLimit,
    /// The stage response cache (a store that does not answer is a miss).
    Cache,
}

impl User {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            User::RateLimit => "ratelimit",
            User::Cache => "cache",
        }
    }

    const ALL: [User; 2] = [User::RateLimit, User::Cache];
}

/// What to do when the shared store gave no answer (`--redis-failure-mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailureMode {
    /// Go on without the shared state (a limit is not enforced meanwhile).
    #[default]
    Open,
    /// Refuse the request (500).
    Closed,
}

/// The failure mode's decision for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Go on without the store's answer.
    Proceed,
    /// Refuse the request.
    Refuse,
}

/// Why the store gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Not connected yet (or reconnecting).
    #[error("not connected to redis")]
    NotConnected,
    /// No answer within the timeout.
    #[error("redis did not answer within {TIMEOUT:?}")]
    Timeout,
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Not asked: the last commands failed ([`Breaker`]).
    #[error("redis not asked for {BREAKER_OPEN:?} after {BREAKER_FAILURES} failed commands")]
    Unavailable,
}

/// The shared state of a process: the store, the failure rule, the metric.
#[derive(Clone, Debug)]
pub struct SharedState {
    /// The Redis store, when `--redis-url` is set.
    pub redis: Option<Arc<RedisStore>>,
    /// What a user does when the store gives no answer.
    pub failure_mode: FailureMode,
    errors: prometheus::IntCounterVec,
    /// `portico_ratelimit_redis_errors_total`, the rate-limit user's counter before this
    /// family existed; kept so that dashboards keep working.
    legacy_ratelimit_errors: prometheus::IntCounter,
    last_logged: Arc<Mutex<[Option<tokio::time::Instant>; User::ALL.len()]>>,
}

impl Default for SharedState {
    /// No store (every user in process), unregistered metrics.
    fn default() -> Self {
        SharedState::new(
            None,
            FailureMode::Open,
            prometheus::IntCounterVec::new(
                prometheus::Opts::new("unregistered", "unregistered"),
                &["user"],
            )
            .expect("valid metric"),
            prometheus::IntCounter::new("unregistered", "unregistered").expect("valid metric"),
        )
    }
}

impl SharedState {
    /// The shared state over `redis` (none: in process), with the metric family `errors`
    /// (label `user`) and the rate-limit user's older counter.
    pub fn new(
        redis: Option<Arc<RedisStore>>,
        failure_mode: FailureMode,
        errors: prometheus::IntCounterVec,
        legacy_ratelimit_errors: prometheus::IntCounter,
    ) -> Self {
        SharedState {
            redis,
            failure_mode,
            errors,
            legacy_ratelimit_errors,
            last_logged: Arc::default(),
        }
    }

    /// The one failure rule: counts the failure under `user`, logs it (at most once a
    /// second per user), and says whether the request goes on.
    pub fn failed(&self, user: User, error: &StoreError) -> Failure {
        self.errors.with_label_values(&[user.as_str()]).inc();
        if user == User::RateLimit {
            self.legacy_ratelimit_errors.inc();
        }
        let now = tokio::time::Instant::now();
        let log = {
            let mut last = self.last_logged.lock().expect("never poisoned");
            let slot = &mut last[user as usize];
            let due = slot.is_none_or(|t| now.duration_since(t) >= LOG_EVERY);
            if due {
                *slot = Some(now);
            }
            due
        };
        let decision = match self.failure_mode {
            FailureMode::Open => Failure::Proceed,
            FailureMode::Closed => Failure::Refuse,
        };
        if log {
            tracing::warn!(
                user = user.as_str(),
                %error,
                ?decision,
                "shared state unavailable (further failures within 1 s are counted, not logged)"
            );
        }
        decision
    }
}

/// A circuit breaker: during an outage the failure mode applies at once instead of after
/// [`TIMEOUT`] on every command (a Redis that stopped answering added 250 ms to each).
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

    /// Records how a command that went to Redis ended.
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

/// The one Redis handle: a reconnecting connection, the timeout and the breaker.
pub struct RedisStore {
    conn: Arc<ArcSwapOption<ConnectionManager>>,
    breaker: Breaker,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
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
                tracing::info!("connected to redis for shared state");
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
                            tracing::info!("connected to redis for shared state");
                            return;
                        }
                    }
                });
            }
        }
        Ok(Arc::new(RedisStore {
            conn,
            breaker: Breaker::default(),
        }))
    }

    /// Whether a connection is up (or being re-established by the connection manager).
    pub fn is_connected(&self) -> bool {
        self.conn.load().is_some()
    }

    /// Runs `command` on the connection: refused at once while not connected or while the
    /// breaker is open, bounded by [`TIMEOUT`], and its outcome recorded by the breaker.
    pub async fn run<T, F, Fut>(&self, command: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, redis::RedisError>>,
    {
        let Some(conn) = self.conn.load_full() else {
            return Err(StoreError::NotConnected);
        };
        if !self.breaker.allows(tokio::time::Instant::now()) {
            return Err(StoreError::Unavailable);
        }
        let reply = tokio::time::timeout(TIMEOUT, command((*conn).clone())).await;
        self.breaker
            .record(matches!(reply, Ok(Ok(_))), tokio::time::Instant::now());
        Ok(reply.map_err(|_| StoreError::Timeout)??)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 9.8: a Redis that stopped answering cost every metered request the 250 ms
    /// timeout. After three failed commands, Redis is not asked for a second; then it is
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

    /// The failure rule: every failure is counted under its user (and the rate-limit one
    /// under its older name too), the mode decides, and the log is not per failure.
    #[tokio::test(start_paused = true)]
    async fn failures_are_counted_per_user_and_the_mode_decides() {
        let errors =
            prometheus::IntCounterVec::new(prometheus::Opts::new("e", "e"), &["user"]).unwrap();
        let legacy = prometheus::IntCounter::new("l", "l").unwrap();
        let open = SharedState::new(None, FailureMode::Open, errors.clone(), legacy.clone());
        assert_eq!(
            open.failed(User::RateLimit, &StoreError::Timeout),
            Failure::Proceed
        );
        let closed = SharedState::new(None, FailureMode::Closed, errors.clone(), legacy.clone());
        assert_eq!(
            closed.failed(User::RateLimit, &StoreError::NotConnected),
            Failure::Refuse
        );
        assert_eq!(errors.with_label_values(&["ratelimit"]).get(), 2);
        assert_eq!(legacy.get(), 2);
        // Logged once, then not again within the second; due again after it.
        let due = |s: &SharedState| s.last_logged.lock().unwrap()[0];
        let first = due(&closed);
        closed.failed(User::RateLimit, &StoreError::Unavailable);
        assert_eq!(due(&closed), first);
        tokio::time::advance(LOG_EVERY).await;
        closed.failed(User::RateLimit, &StoreError::Unavailable);
        assert_ne!(due(&closed), first);
    }
}
