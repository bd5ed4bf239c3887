//! [`ProxyBody`]: the one body type for responses we send and requests we forward, without
//! boxing: nothing, a buffer, or a streamed hyper body.
//!
//! [`ClientBody`]: a client's request body that, when the gateway answers without reading it
//! all (a 401, a 429, a backend's early 413), is drained for a while in the background (a
//! "lingering close", as nginx): the client is then still uploading, and a connection closed
//! under it resets, so the client would see a broken pipe instead of the answer. It is also
//! where a slow body is cut off ([`BodyTimeouts`]): a client that stops sending, or trickles,
//! gets a [`BodyTimeout`] error, which the pipeline answers with 408.

use crate::pool::BackendBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// How long an unread request body is drained after the answer, at most.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
/// How many bytes of an unread request body are drained after the answer, at most.
pub const LINGER_BYTES: u64 = 128 * 1024 * 1024;

/// Why a body stopped: a client body's hyper error or a backend body's I/O or framing error.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body.
#[derive(Debug)]
pub enum ProxyBody {
    /// No body.
    Empty,
    /// A buffered body (taken on first poll).
    Full(Option<Bytes>),
    /// A streamed body from a client.
    Incoming(ClientBody),
    /// A streamed backend response (returns its connection to the pool at the end).
    Backend(BackendBody),
    /// A response body copied into the stage cache as it streams.
    Filling(Box<crate::pipeline::cache::Fill>),
}

impl ProxyBody {
    /// A buffered body.
    pub fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        if b.is_empty() {
            ProxyBody::Empty
        } else {
            ProxyBody::Full(Some(b))
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ProxyBody::Empty => Poll::Ready(None),
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Incoming(i) => Pin::new(i).poll_frame(cx),
            ProxyBody::Backend(b) => Pin::new(b).poll_frame(cx),
            ProxyBody::Filling(f) => f.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Incoming(i) => i.is_end_stream(),
            ProxyBody::Backend(b) => b.is_end_stream(),
            ProxyBody::Filling(f) => f.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ProxyBody::Incoming(i) => i.size_hint(),
            ProxyBody::Backend(b) => b.size_hint(),
            ProxyBody::Filling(f) => f.size_hint(),
        }
    }
}

/// How long a client may take over its request body (`--client-body-timeout-seconds`,
/// `--client-body-min-rate`): at most `idle` between two reads, and, once the first `idle`
/// has passed, on average at least `min_rate` bytes per second since the body began (0: no
/// minimum). nginx's `client_body_timeout` is the first rule; Apache's
/// `RequestReadTimeout body=..,MinRate=..` the second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyTimeouts {
    /// The longest wait for the next bytes of the body.
    pub idle: Duration,
    /// The lowest average rate, in bytes per second, after the first `idle`.
    pub min_rate: u64,
}

impl Default for BodyTimeouts {
    fn default() -> Self {
        BodyTimeouts {
            idle: Duration::from_secs(30),
            min_rate: 500,
        }
    }
}

impl BodyTimeouts {
    /// When the body must have made progress by: `idle` after the last bytes, and the time at
    /// which `received` bytes fall below the minimum rate.
    fn deadline(&self, started: Instant, last: Instant, received: u64) -> Instant {
        let idle = last + self.idle;
        if self.min_rate == 0 {
            return idle;
        }
        let allowed = Duration::from_secs_f64(received as f64 / self.min_rate as f64);
        idle.min(started + self.idle + allowed)
    }
}

/// The error a client body ends with when it breaks [`BodyTimeouts`].
#[derive(Debug, thiserror::Error)]
#[error("the client sent its request body too slowly ({received} bytes in {elapsed:?})")]
pub struct BodyTimeout {
    /// Bytes received before the cut.
    pub received: u64,
    /// Time since the body began.
    pub elapsed: Duration,
}

/// True when `e` (or what it wraps) is a [`BodyTimeout`].
pub fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<BodyTimeout>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// A client's request body; dropped before its end, the rest is drained in the background
/// (bounded by [`LINGER_TIME`] and [`LINGER_BYTES`]) so that the answer reaches a client that
/// is still sending. Hyper keeps reading the connection while the body is alive and closes it
/// once the body is dropped unread. Reads are held to [`BodyTimeouts`]; the clock starts at
/// the first read, and its timer is allocated only when a read has to wait.
#[derive(Debug)]
pub struct ClientBody {
    inner: Option<Source>,
    /// `Expect: 100-continue` and never polled: the client waits for a go-ahead that an
    /// early answer replaces, so there is nothing in flight to drain.
    awaiting_continue: bool,
    /// The body reported its end (or an error): nothing left to drain.
    done: bool,
    /// [`BodyTimeouts`] in 8 bytes (idle in milliseconds, rate), and the clock, boxed and
    /// made at the first read: a request moves through several futures, and a body without
    /// bytes (most requests) should cost no more to move than before the timeouts were added.
    idle_ms: u32,
    min_rate: u32,
    clock: Option<Box<Clock>>,
}

/// Where a client body's bytes come from.
#[derive(Debug)]
enum Source {
    /// The client connection (hyper).
    Client(Incoming),
    /// Given whole ([`ClientBody::given`]): a request made in process, e.g. by a test.
    Given(Bytes),
}

/// The progress of a body being read, for [`BodyTimeouts`].
#[derive(Debug)]
struct Clock {
    started: Instant,
    last: Instant,
    received: u64,
    timer: Option<Pin<Box<Sleep>>>,
}

impl ClientBody {
    /// Wraps a request's body.
    pub fn from_request(
        req: http::Request<Incoming>,
        timeouts: BodyTimeouts,
    ) -> http::Request<ClientBody> {
        let done = req.body().is_end_stream();
        // Only a request with a body can be waiting for 100 Continue.
        let awaiting_continue = !done
            && req
                .headers()
                .get(http::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        req.map(|b| ClientBody {
            done,
            inner: Some(Source::Client(b)),
            awaiting_continue,
            idle_ms: u32::try_from(timeouts.idle.as_millis()).unwrap_or(u32::MAX),
            min_rate: u32::try_from(timeouts.min_rate).unwrap_or(u32::MAX),
            clock: None,
        })
    }

    /// A body given whole, for a request that did not come from a client connection (the
    /// pipeline called in process, as its tests do): no timeouts, nothing to drain.
    pub fn given(bytes: Bytes) -> ClientBody {
        ClientBody {
            done: bytes.is_empty(),
            inner: (!bytes.is_empty()).then_some(Source::Given(bytes)),
            awaiting_continue: false,
            idle_ms: u32::MAX,
            min_rate: 0,
            clock: None,
        }
    }

    /// Whether dropping this body now leaves part of it unread on the connection.
    fn needs_drain(&self) -> bool {
        !self.done && !self.awaiting_continue
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        this.awaiting_continue = false;
        let inner = match this.inner.as_mut() {
            None => return Poll::Ready(None),
            Some(Source::Client(inner)) => inner,
            Some(Source::Given(_)) => {
                this.done = true;
                let Some(Source::Given(b)) = this.inner.take() else {
                    unreachable!("matched above")
                };
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
        };
        let now = Instant::now();
        let clock = this.clock.get_or_insert_with(|| {
            Box::new(Clock {
                started: now,
                last: now,
                received: 0,
                timer: None,
            })
        });
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    clock.received += d.len() as u64;
                    clock.last = now;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(end) => {
                this.done = true;
                Poll::Ready(end.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeouts = BodyTimeouts {
                    idle: Duration::from_millis(this.idle_ms.into()),
                    min_rate: this.min_rate.into(),
                };
                let deadline = timeouts.deadline(clock.started, clock.last, clock.received);
                let timer = clock
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // Too slow: the rest is not read (nor drained), and the connection closes
                // after the answer.
                this.done = true;
                let err = BodyTimeout {
                    received: clock.received,
                    elapsed: now - clock.started,
                };
                Poll::Ready(Some(Err(err.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
            || match &self.inner {
                None => true,
                Some(Source::Client(i)) => i.is_end_stream(),
                Some(Source::Given(_)) => false,
            }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            None => SizeHint::with_exact(0),
            Some(Source::Client(i)) => i.size_hint(),
            Some(Source::Given(b)) => SizeHint::with_exact(b.len() as u64),
        }
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        if !self.needs_drain() {
            return;
        }
        let (Some(Source::Client(body)), Ok(rt)) =
            (self.inner.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        rt.spawn(drain(body));
    }
}

/// Reads and discards the rest of `body`, within [`LINGER_TIME`] and [`LINGER_BYTES`].
async fn drain(mut body: Incoming) {
    use http_body_util::BodyExt as _;
    let read = async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen += data.len() as u64;
                if seen > LINGER_BYTES {
                    break;
                }
            }
        }
        seen
    };
    match tokio::time::timeout(LINGER_TIME, read).await {
        Ok(seen) => tracing::debug!(bytes = seen, "drained an unread request body"),
        Err(_) => tracing::debug!("stopped draining an unread request body (time)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_must_keep_moving_and_keep_its_average_rate() {
        let t = BodyTimeouts {
            idle: Duration::from_secs(2),
            min_rate: 100,
        };
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // Nothing yet: the idle bound (the rate's grace is as long).
        assert_eq!(t.deadline(t0, t0, 0), t0 + s(2));
        // Bytes just arrived: idle from then, unless the rate runs out first. 300 bytes buy
        // 3 s past the grace: the rate's deadline is t0 + 5 s.
        assert_eq!(t.deadline(t0, t0 + s(1), 300), t0 + s(3));
        assert_eq!(t.deadline(t0, t0 + s(4), 300), t0 + s(5));
        // No minimum rate: idle only.
        let idle_only = BodyTimeouts { min_rate: 0, ..t };
        assert_eq!(idle_only.deadline(t0, t0 + s(60), 1), t0 + s(62));
    }
}
