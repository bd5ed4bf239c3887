//! [`ProxyBody`]: the one body type for responses we send and requests we forward, without
//! boxing: nothing, a buffer, or a streamed hyper body.
//!
//! [`ClientBody`]: a client's request body that, when the gateway answers without reading it
//! all (a 401, a 429, a backend's early 413), is drained for a while in the background (a
//! "lingering close", as nginx): the client is then still uploading, and a connection closed
//! under it resets, so the client would see a broken pipe instead of the answer.

use crate::pool::BackendBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

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
            ProxyBody::Incoming(i) => Pin::new(i)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into))),
            ProxyBody::Backend(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Incoming(i) => i.is_end_stream(),
            ProxyBody::Backend(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ProxyBody::Incoming(i) => i.size_hint(),
            ProxyBody::Backend(b) => b.size_hint(),
        }
    }
}

/// A client's request body; dropped before its end, the rest is drained in the background
/// (bounded by [`LINGER_TIME`] and [`LINGER_BYTES`]) so that the answer reaches a client that
/// is still sending. Hyper keeps reading the connection while the body is alive and closes it
/// once the body is dropped unread.
#[derive(Debug)]
pub struct ClientBody {
    inner: Option<Incoming>,
    /// `Expect: 100-continue` and never polled: the client waits for a go-ahead that an
    /// early answer replaces, so there is nothing in flight to drain.
    awaiting_continue: bool,
    /// The body reported its end (or an error): nothing left to drain.
    done: bool,
}

impl ClientBody {
    /// Wraps a request's body.
    pub fn from_request(req: http::Request<Incoming>) -> http::Request<ClientBody> {
        let done = req.body().is_end_stream();
        // Only a request with a body can be waiting for 100 Continue.
        let awaiting_continue = !done
            && req
                .headers()
                .get(http::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        req.map(|b| ClientBody {
            done,
            inner: Some(b),
            awaiting_continue,
        })
    }

    /// Whether dropping this body now leaves part of it unread on the connection.
    fn needs_drain(&self) -> bool {
        !self.done && !self.awaiting_continue
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        this.awaiting_continue = false;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let r = Pin::new(inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None | Some(Err(_)))) {
            this.done = true;
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        if !self.needs_drain() {
            return;
        }
        let (Some(body), Ok(rt)) = (self.inner.take(), tokio::runtime::Handle::try_current())
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
