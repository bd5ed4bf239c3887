//! [`ConnTimer`]: the integration timeout, on one reusable timer per client connection.
//!
//! A fresh `tokio::time::timeout` per request registers a timer entry in the runtime's wheel
//! on its first poll and takes it out again on drop (driver lock, wheel insert and removal).
//! Requests on one HTTP/1.1 connection run one after another, so the connection keeps one
//! `Sleep` and moves its deadline forward for each request: while the entry is still in the
//! wheel, a later deadline is a single atomic update (the wheel re-files the entry when the
//! old deadline comes round). The timeout itself is unchanged: the call fails with
//! [`Elapsed`] once `timeout` has passed without the future completing.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Mutex;
use std::task::Poll;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The integration timeout elapsed.
#[derive(Debug, PartialEq, Eq)]
pub struct Elapsed;

/// One reusable timer for the requests of one client connection.
#[derive(Debug, Default)]
pub struct ConnTimer {
    /// The idle timer between requests (taken while a request uses it).
    slot: Mutex<Option<Pin<Box<Sleep>>>>,
}

impl ConnTimer {
    /// Runs `fut` for at most `timeout`.
    pub async fn timeout<F: Future>(
        &self,
        timeout: Duration,
        fut: F,
    ) -> Result<F::Output, Elapsed> {
        let deadline = Instant::now() + timeout;
        let idle = self.slot.lock().expect("timer lock").take();
        let mut sleep = match idle {
            Some(mut s) => {
                s.as_mut().reset(deadline);
                s
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        let mut fut = pin!(fut);
        let out = poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Ok(v));
            }
            sleep.as_mut().poll(cx).map(|()| Err(Elapsed))
        })
        .await;
        // Only a call that ran to the end gives the timer back; a cancelled one drops it.
        *self.slot.lock().expect("timer lock") = Some(sleep);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_timer_is_reused_and_times_out_each_call() {
        let ms = Duration::from_millis;
        let t = ConnTimer::default();
        assert_eq!(t.timeout(ms(200), async { 7 }).await, Ok(7));
        let started = Instant::now();
        assert_eq!(
            t.timeout(ms(60), tokio::time::sleep(ms(5000))).await,
            Err(Elapsed)
        );
        let took = started.elapsed();
        assert!(took >= ms(60) && took < ms(2000), "{took:?}");
        // A shorter deadline than the one still registered works too.
        assert_eq!(t.timeout(ms(5000), async { 1 }).await, Ok(1));
        let started = Instant::now();
        assert_eq!(
            t.timeout(ms(20), tokio::time::sleep(ms(5000))).await,
            Err(Elapsed)
        );
        assert!(started.elapsed() < ms(2000));
        // An elapsed timer from an earlier call does not fire a later one early.
        tokio::time::sleep(ms(100)).await;
        assert_eq!(t.timeout(ms(300), tokio::time::sleep(ms(30))).await, Ok(()));
    }
}
