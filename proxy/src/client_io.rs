//! The client connection's socket as hyper sees it: requests hyper cannot parse are answered
//! in the gateway's shape rather than with hyper's bare status line, and the socket outlives
//! the hyper connections that serve it, so that an idle connection holds no hyper state (see
//! `server`: a connection parks between requests).
//!
//! ```text
//!  hyper http1 connection ──reads/writes──> ClientIo ──> TcpStream
//!    bytes hyper had read but not parsed when it was let go: replayed first
//!      ([`ClientIo::rewind`])
//!    parse error (400, 414, 431): hyper writes its own empty answer and ends the connection
//!       ClientIo keeps that answer back (it is recognisable: a lone head with no request id)
//!    head timeout: hyper just ends the connection (the server tells a park from a timeout)
//!  connection ended -> the server takes ClientIo back (hyper's `into_parts`) and either
//!    parks it (idle, nothing pending) or asks it what is left unanswered
//!    ([`ClientIo::unanswered`]): the gateway response (request id, `x-amzn-ErrorType`, JSON
//!    body, 408 for a head not complete in time), an access-log line, and a gentle close (see
//!    `server`)
//! ```
//!
//! hyper writes a response of its own only after closing the connection's read side on a
//! parse error, and only when no response of ours is being written, so a write it makes then
//! is the last one on the connection. Were a write of ours ever taken for one (a body chunk
//! that is exactly such a head), it is sent before anything else happens on the connection,
//! unchanged.

use bytes::{Buf as _, Bytes};
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A connection that ended without an answer the gateway should have given.
#[derive(Debug)]
pub struct Unanswered {
    /// The client's socket, still open.
    pub stream: TcpStream,
    /// hyper's answer to an unparseable request that was kept back: 400, 414 or 431.
    pub status: Option<http::StatusCode>,
    /// Bytes arrived since the last response (a request head was under way).
    pub partial_head: bool,
}

/// See the module documentation.
#[derive(Debug)]
pub struct ClientIo {
    stream: TcpStream,
    /// Bytes read from the socket before, handed out again first.
    rewound: Bytes,
    /// hyper's own answer, kept back, and how much of it was sent (when released).
    held: Option<(Vec<u8>, usize)>,
    read_since_write: bool,
    /// Something was written since [`ClientIo::serving`].
    wrote: bool,
    /// Everything written has been flushed (hyper flushes its buffer before the socket).
    flushed: bool,
    /// When the config has functions that get the request's headers (Lambda events), the
    /// raw head of the request that follows each response, for the client's spelling of
    /// header names (hyper keeps only lower-case names).
    capture: Option<HeadCapture>,
}
/// The raw request head last read after a response (or at the connection's start): what
/// [`ClientIo`] publishes for the connection's requests to take.
pub type RawHead = Arc<Mutex<Option<bytes::Bytes>>>;

/// The head under way and where it goes once complete.
#[derive(Debug)]
struct HeadCapture {
    buf: Vec<u8>,
    /// Still looking for the head's end.
    open: bool,
    out: RawHead,
}

/// The longest head captured (larger ones are not: the names fall back to Title-Case).
const MAX_CAPTURED_HEAD: usize = 64 * 1024;

impl HeadCapture {
    /// Starts a head (the first read after a response).
    fn start(&mut self) {
        self.buf.clear();
        self.open = true;
    }

    /// Adds bytes read; publishes the head once its end (`CRLF CRLF`) is seen.
    fn feed(&mut self, bytes: &[u8]) {
        if !self.open {
            return;
        }
        let from = self.buf.len().saturating_sub(3);
        self.buf.extend_from_slice(bytes);
        if let Some(end) = self.buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = from + end + 4;
            *self.out.lock().expect("head lock") =
                Some(bytes::Bytes::copy_from_slice(&self.buf[..end]));
            self.open = false;
        } else if self.buf.len() > MAX_CAPTURED_HEAD {
            self.open = false;
        }
    }
}

impl ClientIo {
    /// Wraps an accepted socket.
    pub fn new(stream: TcpStream) -> Self {
        ClientIo {
            stream,
            rewound: Bytes::new(),
            held: None,
            read_since_write: false,
            wrote: false,
            flushed: true,
            capture: None,
        }
    }

    /// Also captures each request's raw head into `out` (see [`RawHead`]).
    pub fn capturing_heads(mut self, out: RawHead) -> Self {
        self.capture = Some(HeadCapture {
            buf: Vec::new(),
            open: false,
            out,
        });
        self
    }

    /// Where the raw heads go, when they are captured.
    pub fn raw_head(&self) -> Option<RawHead> {
        self.capture.as_ref().map(|c| c.out.clone())
    }

    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(&mut self.stream)
    }

    /// Hands `bytes` (read from the socket earlier, not yet parsed) out again before reading
    /// more: what a hyper connection had buffered when it was let go.
    pub fn rewind(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.rewound = if self.rewound.is_empty() {
            bytes
        } else {
            let mut all = bytes.to_vec();
            all.extend_from_slice(&self.rewound);
            all.into()
        };
    }

    /// Ready once the socket has something to read (or is closed): the wait of a parked
    /// connection. Ready at once when bytes are rewound.
    pub fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.rewound.is_empty() {
            return Poll::Ready(Ok(()));
        }
        self.stream.poll_read_ready(cx)
    }

    /// A new hyper connection starts on this socket: [`ClientIo::wrote`] starts over.
    pub fn serving(&mut self) {
        self.wrote = false;
    }

    /// Whether a response was written since [`ClientIo::serving`].
    pub fn wrote(&self) -> bool {
        self.wrote
    }

    /// Bytes of a request head arrived since the last response.
    pub fn head_under_way(&self) -> bool {
        self.read_since_write
    }

    /// Nothing of ours is waiting to be sent: the socket can be parked without a hyper
    /// connection (hyper empties its buffer into the socket before flushing it).
    pub fn settled(&self) -> bool {
        self.flushed && self.held.is_none()
    }

    /// What the connection leaves unanswered once hyper is done with it: hyper's kept-back
    /// answer to an unparseable head, or a head under way. None: nothing (the socket closes).
    pub fn unanswered(self) -> Option<Unanswered> {
        let status = self
            .held
            .as_ref()
            .filter(|(_, sent)| *sent == 0)
            .and_then(|(b, _)| hyper_error_status(b));
        (status.is_some() || self.read_since_write).then_some(Unanswered {
            stream: self.stream,
            status,
            partial_head: self.read_since_write,
        })
    }

    /// Sends a kept-back write after all (the connection went on, so it was not hyper's last).
    fn poll_release(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while let Some((bytes, sent)) = self.held.take() {
            match Pin::new(&mut self.stream).poll_write(cx, &bytes[sent..]) {
                Poll::Ready(Ok(n)) if sent + n < bytes.len() => self.held = Some((bytes, sent + n)),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.held = Some((bytes, sent));
                    return Poll::Pending;
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Notes a write of `n` bytes to the socket.
    fn written(&mut self, n: usize) {
        self.read_since_write = false;
        if n > 0 {
            self.wrote = true;
            self.flushed = false;
        }
    }

    /// Keeps `buf` back if it is hyper's own answer to an unparseable request.
    fn hold(&mut self, buf: &[u8]) -> bool {
        if self.held.is_none() && hyper_error_status(buf).is_some() {
            self.held = Some((buf.to_vec(), 0));
            return true;
        }
        false
    }
}

/// The status of `buf` when it is a response head hyper writes by itself for a request it
/// could not parse: one whole head, a 400, 414 or 431, without the request id every response
/// of the gateway carries.
pub fn hyper_error_status(buf: &[u8]) -> Option<http::StatusCode> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    let status = match rest.get(..4)? {
        b"400 " => http::StatusCode::BAD_REQUEST,
        b"414 " => http::StatusCode::URI_TOO_LONG,
        b"431 " => http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        _ => return None,
    };
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let lower = buf.to_ascii_lowercase();
    (head_end + 4 == buf.len()
        && !lower.windows(17).any(|w| w == b"x-amzn-requestid:")
        && lower.windows(19).any(|w| w == b"content-length: 0\r\n"))
    .then_some(status)
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.held.is_some() {
            ready!(this.poll_release(cx))?;
        }
        let before = buf.filled().len();
        if this.rewound.is_empty() {
            ready!(this.stream().poll_read(cx, buf))?;
        } else {
            let n = this.rewound.len().min(buf.remaining());
            buf.put_slice(&this.rewound[..n]);
            this.rewound.advance(n);
        }
        if buf.filled().len() > before {
            if let Some(c) = &mut this.capture {
                if !this.read_since_write {
                    c.start();
                }
                c.feed(&buf.filled()[before..]);
            }
            this.read_since_write = true;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.held.is_some() {
            ready!(this.poll_release(cx))?;
        } else if this.hold(buf) {
            return Poll::Ready(Ok(buf.len()));
        }
        let n = ready!(this.stream().poll_write(cx, buf))?;
        this.written(n);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.held.is_some() {
            ready!(this.poll_release(cx))?;
        } else if let [one] = bufs
            && this.hold(one)
        {
            return Poll::Ready(Ok(one.len()));
        }
        let n = ready!(this.stream().poll_write_vectored(cx, bufs))?;
        this.written(n);
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        // A kept-back answer stays back: flushing is not the connection going on.
        let this = self.get_mut();
        ready!(this.stream().poll_flush(cx))?;
        this.flushed = true;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.held.is_some() {
            // The gateway's answer is still to be written on this socket.
            return Poll::Ready(Ok(()));
        }
        this.stream().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_captured_across_reads_and_published_once_complete() {
        let out = RawHead::default();
        let mut c = HeadCapture {
            buf: Vec::new(),
            open: false,
            out: out.clone(),
        };
        c.start();
        c.feed(b"GET / HTTP/1.1\r\nX-Mixed-Case: 1\r");
        assert!(out.lock().unwrap().is_none());
        c.feed(b"\n\r\nbody bytes\r\n\r\n");
        assert_eq!(
            out.lock().unwrap().as_deref(),
            Some(&b"GET / HTTP/1.1\r\nX-Mixed-Case: 1\r\n\r\n"[..])
        );
        // The body that followed is not a head.
        *out.lock().unwrap() = None;
        c.feed(b"POST /x HTTP/1.1\r\n\r\n");
        assert!(out.lock().unwrap().is_none());
    }

    #[test]
    fn hypers_own_answers_are_told_from_the_gateways() {
        let ok = |s: &str| hyper_error_status(s.as_bytes()).map(|s| s.as_u16());
        assert_eq!(
            ok(
                "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n"
            ),
            Some(431)
        );
        assert_eq!(
            ok("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            ok("HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n"),
            Some(414)
        );
        // The gateway's own 400 carries its request id (and a body).
        assert_eq!(
            ok("HTTP/1.1 400 Bad Request\r\nx-amzn-requestid: 1\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        assert_eq!(
            ok("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}"),
            None
        );
        assert_eq!(
            ok("HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n"),
            None
        );
        assert_eq!(ok("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"), None);
        assert_eq!(
            ok("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n"),
            None
        );
    }
}
