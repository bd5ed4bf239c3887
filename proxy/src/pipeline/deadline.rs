//! [`ConnTimer`]: the integration timeout, on one reusable timer per client connection.
//!
//! A fresh `tokio::time::timeout` per request registers a timer entry in the runtime's wheel
//! on its first poll and takes it out again on drop (driver lock, wheel insert and removal).
//! Requests on one HTTP/1.1 connection run one after another, so the connection keeps one
//! `Sleep` and moves its deadline forward for each request: while the entry is still in the
//! wheel, a later deadline is a single atomic update (the wheel re-files the entry when the
//! old deadline comes round). The timeout itself is unchanged: the call fails with
//! [`Elapsed`] once `timeout` has passed without the future completing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
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
    ///
    /// A named future rather than an `async fn`: an `async fn` keeps its argument and the
    /// pinned copy of it side by side, doubling the size of every future that awaits it, and
    /// the request's whole future chain is copied as it is built.
    pub fn timeout<F: Future>(&self, timeout: Duration, fut: F) -> Timeout<'_, F> {
        Timeout {
            fut,
            timer: self,
            deadline: Instant::now() + timeout,
            sleep: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`ConnTimer::timeout`].
    pub struct Timeout<'a, F> {
        #[pin]
        fut: F,
        timer: &'a ConnTimer,
        deadline: Instant,
        // The connection's timer while this call uses it (taken on the first poll).
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

impl<F: Future> Future for Timeout<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            // Only a call that ran to the end gives the timer back; a cancelled one drops it.
            if let Some(sleep) = this.sleep.take() {
                *this.timer.slot.lock().expect("timer lock") = Some(sleep);
            }
            return Poll::Ready(Ok(v));
        }
        let deadline = *this.deadline;
        let sleep = this.sleep.get_or_insert_with(|| {
            let idle = this.timer.slot.lock().expect("timer lock").take();
            match idle {
                Some(mut s) => {
                    s.as_mut().reset(deadline);
                    s
                }
                None => Box::pin(tokio::time::sleep_until(deadline)),
            }
        });
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                if let Some(sleep) = this.sleep.take() {
                    *this.timer.slot.lock().expect("timer lock") = Some(sleep);
                }
                Poll::Ready(Err(Elapsed))
            }
            Poll::Pending => Poll::Pending,
        }
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
