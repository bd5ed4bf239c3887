//! Backend connection pool and HTTP/1.1 client: keep-alive connections per backend authority,
//! shared by every route (and every config version) that calls the same `host:port`.
//!
//! ```text
//!  Pools (registry, authority -> Arc<HostPool>)      one sweeper task: drops idle > 90 s
//!   └─ HostPool { idle: Vec<Conn>, tls }  LIFO; `https://` backends: rustls, outbound roots
//!        send(req): checkout idle (still open) | connect
//!                   write head (+ buffered body in the same write) | stream the body
//!                   read + parse the response head (httparse)
//!        response body (BackendBody: Content-Length, chunked or until close) read from the
//!        connection by whoever polls it; at its end the connection goes back to idle
//! ```
//!
//! A purpose-built client rather than hyper's: hyper's client runs each connection on its own
//! task and hands requests, responses and body chunks through channels, which cost a third of
//! the proxy's CPU per request. Here the connection has no task: the request future writes and
//! reads it, then the response body (polled by the client connection's task) reads the rest.
//!
//! Rules: the request goes out as HTTP/1.1 with its headers as given (hop-by-hop ones were
//! stripped by the caller), plus, for a forwarded client request, the gateway's
//! [`Forwarded`] headers, which the head encoder writes itself; a buffered body gets
//! `Content-Length`, a streamed one keeps the client's `Content-Length` or is sent chunked.
//! The response is framed as RFC 9112 6.3 says (HEAD, 1xx/204/304: no body; chunked;
//! Content-Length; otherwise until close); interim 1xx responses are skipped, 101 is
//! refused; its hop-by-hop headers are dropped as the head is parsed. A body larger than one
//! write is sent while the answer is watched for, so an early answer (a backend's own 401 or
//! 413) is relayed and the rest of the body is not sent (the client's is drained:
//! [`crate::body::ClientBody`]). A connection is reused only when the request was sent
//! whole, the response was read to its end, the backend did not ask to close
//! (`Connection: close`, HTTP/1.0 without keep-alive) and nothing is left unread. An idle
//! connection the backend closed is noticed at checkout (plain and TLS). One closed in the
//! meantime (the request's write fails, or the connection ends before a response) is retried
//! at most once, on a new connection, and only when that cannot make the backend act twice:
//! no byte of the request was written, or the method is idempotent (RFC 9110 9.2.2) and its
//! body is buffered. A `POST` that reached a backend which then closed is never sent again.

use crate::body::{BodyError, ProxyBody};
use crate::hop_by_hop;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use std::collections::HashMap;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Idle connections older than this are closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const MAX_IDLE_PER_HOST: usize = 512;
/// Largest response head accepted from a backend.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const MAX_RESPONSE_HEADERS: usize = 128;
/// Buffered bodies up to this size go out in the same write as the head.
const COALESCE_BODY: usize = 16 * 1024;
const READ_CHUNK: usize = 16 * 1024;

/// Why a backend call failed before a response head arrived.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// TCP connect failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The backend address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS handshake failed (untrusted certificate, wrong name, no common protocol).
    #[error("TLS with {addr}: {source}")]
    Tls {
        /// The backend address.
        addr: String,
        /// The handshake error.
        source: std::io::Error,
    },
    /// Writing the request or reading the response failed.
    #[error("backend connection: {0}")]
    Io(#[from] std::io::Error),
    /// The first write of the request failed: no byte of it reached the backend.
    #[error("backend connection: {0}")]
    NotSent(std::io::Error),
    /// The backend closed the connection before a complete response head.
    #[error("the backend closed the connection before responding")]
    Closed,
    /// The response head is not HTTP/1.x as this client accepts it.
    #[error("malformed response from the backend: {0}")]
    Protocol(String),
    /// The request body failed while being sent.
    #[error("request body: {0}")]
    Body(BodyError),
}

/// The registry of per-authority pools.
#[derive(Debug, Default)]
pub struct Pools {
    hosts: Mutex<HashMap<String, Arc<HostPool>>>,
    /// Key sets fetched for JWT authorizers (outlive config reloads, like the pools).
    pub jwks: crate::pipeline::auth::jwks::JwksStore,
    /// Cached TOKEN / REQUEST authorizer results (outlive config reloads).
    pub authorizer_results: Arc<crate::pipeline::auth::function::ResultCache>,
}

impl Pools {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Pools::default())
    }

    /// The pool for `authority` (`host[:port]`, port 80 when absent).
    pub fn host(&self, authority: &str) -> Arc<HostPool> {
        self.pool(authority.to_string(), || {
            HostPool::new(with_port(authority, 80), None)
        })
    }

    /// The pool for `https://authority` (port 443 when absent): TLS with the outbound trust
    /// roots ([`crate::tls::outbound`]: Mozilla's and `--ca-file`), SNI and certificate name
    /// from the host.
    pub fn host_tls(&self, authority: &str) -> Result<Arc<HostPool>, String> {
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        };
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| format!("TLS server name {host:?}: {e}"))?;
        Ok(self.pool(format!("https://{authority}"), || {
            let connector = tokio_rustls::TlsConnector::from(crate::tls::outbound());
            HostPool::new(with_port(authority, 443), Some((connector, name)))
        }))
    }

    fn pool(&self, key: String, make: impl FnOnce() -> HostPool) -> Arc<HostPool> {
        self.hosts
            .lock()
            .expect("pool registry lock")
            .entry(key)
            .or_insert_with(|| Arc::new(make()))
            .clone()
    }

    /// Closes idle connections older than [`IDLE_TIMEOUT`] or closed by the backend.
    pub fn sweep(&self) {
        let hosts: Vec<Arc<HostPool>> = self
            .hosts
            .lock()
            .expect("pool registry lock")
            .values()
            .cloned()
            .collect();
        for h in hosts {
            h.idle
                .lock()
                .expect("pool lock")
                .retain(|c| c.since.elapsed() < IDLE_TIMEOUT && c.still_open());
        }
    }

    /// Runs [`Pools::sweep`] every 30 s on the current runtime.
    pub fn spawn_sweeper(self: &Arc<Self>) {
        let pools = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                match pools.upgrade() {
                    Some(p) => p.sweep(),
                    None => return,
                }
            }
        });
    }
}

/// `host:port`, with `port` when the authority names none.
fn with_port(authority: &str, port: u16) -> String {
    let has_port = match authority.strip_prefix('[') {
        Some(v6) => v6.contains("]:"),
        None => authority.contains(':'),
    };
    if has_port {
        authority.to_string()
    } else {
        format!("{authority}:{port}")
    }
}

/// A backend connection's transport.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One backend connection and what was read from it but not consumed yet.
struct Conn {
    io: Io,
    buf: BytesMut,
    since: Instant,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("since", &self.since).finish()
    }
}

impl Conn {
    /// False when the backend closed it (or sent something unasked) while it was idle. Free
    /// when the socket is not readable (tokio knows without a system call). A TLS connection
    /// is probed on its TCP socket with a peek (reading would take bytes from the TLS
    /// stream): anything there on an idle connection, a close_notify alert or the end of the
    /// stream, means it cannot carry another request.
    fn still_open(&self) -> bool {
        let mut probe = [0u8; 1];
        match &self.io {
            Io::Plain(io) => matches!(
                io.try_read(&mut probe),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            ),
            Io::Tls(io) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut buf = tokio::io::ReadBuf::new(&mut probe);
                io.get_ref().0.poll_peek(&mut cx, &mut buf).is_pending()
            }
        }
    }

    /// Reads more bytes into `buf`; `Ok(0)` at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        match &mut self.io {
            Io::Plain(io) => loop {
                ready!(io.poll_read_ready(cx))?;
                match io.try_read_buf(&mut self.buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    other => return Poll::Ready(other),
                }
            },
            Io::Tls(io) => {
                let mut tmp = [0u8; READ_CHUNK];
                let mut rb = tokio::io::ReadBuf::new(&mut tmp);
                ready!(tokio::io::AsyncRead::poll_read(
                    Pin::new(io.as_mut()),
                    cx,
                    &mut rb
                ))?;
                self.buf.extend_from_slice(rb.filled());
                Poll::Ready(Ok(rb.filled().len()))
            }
        }
    }
}

/// Keep-alive connections to one backend address.
pub struct HostPool {
    addr: String,
    idle: Mutex<Vec<Conn>>,
    /// `https://`: the connector and the name the certificate must carry.
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
}

impl std::fmt::Debug for HostPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostPool")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// How the request body goes out.
enum Outgoing {
    /// Nothing after the head.
    None,
    /// Buffered: `Content-Length` set; can be sent again.
    Buffered(Bytes),
    /// Streamed with the client's `Content-Length`.
    Length(ProxyBody),
    /// Streamed, chunked.
    Chunked(ProxyBody),
}

impl HostPool {
    fn new(
        addr: String,
        tls: Option<(
            tokio_rustls::TlsConnector,
            rustls::pki_types::ServerName<'static>,
        )>,
    ) -> Self {
        HostPool {
            addr,
            idle: Mutex::new(Vec::new()),
            tls,
        }
    }

    /// Sends `req` (origin-form URI, hop-by-hop headers stripped, Host set or given in `fwd`)
    /// and returns the response head; the body streams, and the connection returns to the
    /// pool when it has been read to the end.
    /// The response carries end-to-end headers only (see [`ResponseHead`]).
    pub async fn send(
        self: &Arc<Self>,
        req: Request<ProxyBody>,
        fwd: Option<Forwarded<'_>>,
    ) -> Result<Response<ProxyBody>, SendError> {
        let (parts, body) = req.into_parts();
        let mut headers = parts.headers;
        let outgoing = outgoing(&parts.method, &mut headers, body);
        let head = encode_head(&parts.method, &parts.uri, &headers, fwd.as_ref());
        let head_only = matches!(parts.method, Method::HEAD);
        // A request may go out a second time only when its body can be sent again and
        // repeating it is harmless (RFC 9110 9.2.2), or when no byte of it left the gateway.
        let replayable = matches!(outgoing, Outgoing::None | Outgoing::Buffered(_))
            && is_idempotent(&parts.method);
        let mut outgoing = Some(outgoing);
        let mut retried = false;
        loop {
            // The retry goes out on a new connection: another idle one may be just as stale.
            let (mut conn, reused) = match (retried, self.checkout()) {
                (false, Some(c)) => (c, true),
                _ => (self.connect().await?, false),
            };
            let body = match &outgoing {
                Some(Outgoing::None) => Outgoing::None,
                Some(Outgoing::Buffered(b)) => Outgoing::Buffered(b.clone()),
                _ => outgoing.take().expect("a streamed body is sent once"),
            };
            match exchange(&mut conn, &head, body, head_only).await {
                Ok(resp_head) => {
                    let body = BackendBody::new(
                        conn,
                        resp_head.framing,
                        resp_head.keep_alive,
                        self.clone(),
                    );
                    let mut resp = Response::new(ProxyBody::Backend(body));
                    *resp.status_mut() = resp_head.status;
                    *resp.version_mut() = resp_head.version;
                    *resp.headers_mut() = resp_head.headers;
                    return Ok(resp);
                }
                // The backend closed an idle connection under us: once more, on a fresh one,
                // when the request cannot have been acted on twice.
                Err(e)
                    if reused
                        && e.is_stale_connection()
                        && (replayable || e.nothing_sent())
                        && outgoing.is_some() =>
                {
                    tracing::debug!(backend = %self.addr, error = %e, "stale pooled connection; retrying once on a new one");
                    retried = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn checkout(&self) -> Option<Conn> {
        loop {
            let conn = self.idle.lock().expect("pool lock").pop()?;
            if conn.still_open() {
                return Some(conn);
            }
        }
    }

    fn release(&self, mut conn: Conn) {
        conn.since = Instant::now();
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.len() < MAX_IDLE_PER_HOST {
            idle.push(conn);
        }
    }

    async fn connect(&self) -> Result<Conn, SendError> {
        let io = TcpStream::connect(&self.addr)
            .await
            .map_err(|source| SendError::Connect {
                addr: self.addr.clone(),
                source,
            })?;
        let _ = io.set_nodelay(true);
        let io = match &self.tls {
            None => Io::Plain(io),
            Some((connector, name)) => Io::Tls(Box::new(
                connector
                    .connect(name.clone(), io)
                    .await
                    .map_err(|source| SendError::Tls {
                        addr: self.addr.clone(),
                        source,
                    })?,
            )),
        };
        Ok(Conn {
            io,
            buf: BytesMut::with_capacity(READ_CHUNK),
            since: Instant::now(),
        })
    }
}

impl SendError {
    /// True when no byte of the request left the gateway, so that even a non-idempotent
    /// request can be sent again.
    fn nothing_sent(&self) -> bool {
        matches!(self, SendError::NotSent(_))
    }

    /// The error a reused connection gives when the backend had closed it.
    fn is_stale_connection(&self) -> bool {
        match self {
            SendError::Closed => true,
            SendError::Io(e) | SendError::NotSent(e) => matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }
}

/// Idempotent methods (RFC 9110 9.2.2): a request the backend may have acted on can be sent
/// again only with one of these.
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Writes the start of a request: a first write that fails is [`SendError::NotSent`] (no
/// byte reached the backend), a later one [`SendError::Io`].
async fn write_request<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    bytes: &[u8],
) -> Result<(), SendError> {
    let n = wr.write(bytes).await.map_err(SendError::NotSent)?;
    if n == 0 && !bytes.is_empty() {
        return Err(SendError::NotSent(std::io::ErrorKind::WriteZero.into()));
    }
    wr.write_all(&bytes[n..]).await?;
    Ok(())
}

/// Decides the body's framing and sets `Content-Length` / `Transfer-Encoding` to match.
fn outgoing(method: &Method, headers: &mut HeaderMap, body: ProxyBody) -> Outgoing {
    let sized = |headers: &mut HeaderMap, n: usize| {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    };
    let expects_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    match body {
        ProxyBody::Full(Some(b)) => {
            sized(headers, b.len());
            Outgoing::Buffered(b)
        }
        // Nothing to send (`Empty`, a taken buffer, a finished stream).
        empty if empty.is_end_stream() => {
            if expects_body || headers.contains_key(header::CONTENT_LENGTH) {
                sized(headers, 0);
            }
            Outgoing::None
        }
        streamed if headers.contains_key(header::CONTENT_LENGTH) => Outgoing::Length(streamed),
        streamed => {
            headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
            Outgoing::Chunked(streamed)
        }
    }
}

/// `METHOD path HTTP/1.1`, the headers, and the empty line; with `fwd`, `Host` first and the
/// `X-Forwarded-*` headers last, in place of the request's own (see [`Forwarded`]).
fn encode_head(
    method: &Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    fwd: Option<&Forwarded<'_>>,
) -> Vec<u8> {
    fn line(out: &mut Vec<u8>, name: &HeaderName, value: &[u8]) {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = Vec::with_capacity(160 + target.len() + headers.len() * 32);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let Some(fwd) = fwd else {
        for (name, value) in headers {
            line(&mut out, name, value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        return out;
    };
    line(&mut out, &header::HOST, fwd.host.as_bytes());
    let mut client_xff = false;
    for (name, value) in headers {
        if name == X_FORWARDED_FOR {
            client_xff = true;
        } else if !(name == header::HOST
            || name == header::EXPECT
            || name == X_FORWARDED_PROTO
            || name == X_FORWARDED_PORT
            || name == X_AMZN_TRACE_ID)
        {
            line(&mut out, name, value.as_bytes());
        }
    }
    out.extend_from_slice(b"x-forwarded-for: ");
    if client_xff {
        for v in headers.get_all(X_FORWARDED_FOR) {
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(fwd.client_ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    line(&mut out, &X_FORWARDED_PROTO, fwd.proto.as_bytes());
    line(&mut out, &X_FORWARDED_PORT, fwd.port.as_bytes());
    line(&mut out, &X_AMZN_TRACE_ID, fwd.trace);
    out.extend_from_slice(b"\r\n");
    out
}

/// The gateway's own headers on a forwarded client request: `Host`, `X-Forwarded-*` and
/// `X-Amzn-Trace-Id`.
///
/// The head encoder writes them instead of the request's headers of those names (and drops
/// `Expect`: the gateway, not the backend, answers the client's `100-continue`), rather than
/// the caller inserting them into the request's `HeaderMap`: five fewer hash-map operations
/// per request. The client's `X-Forwarded-For` values come first in the one sent, then
/// `client_ip`.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded<'a> {
    /// The backend's authority.
    pub host: &'a HeaderValue,
    /// Appended to `X-Forwarded-For`.
    pub client_ip: &'a HeaderValue,
    /// `X-Forwarded-Proto`.
    pub proto: &'a HeaderValue,
    /// `X-Forwarded-Port`.
    pub port: &'a HeaderValue,
    /// `X-Amzn-Trace-Id` (the client's when valid, else the gateway's).
    pub trace: &'a [u8],
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_AMZN_TRACE_ID: HeaderName = crate::pipeline::ctx::X_AMZN_TRACE_ID;

/// A parsed response head, with what the connection needs to know about it.
#[derive(Debug)]
struct ResponseHead {
    status: StatusCode,
    version: Version,
    /// End-to-end headers only: the hop-by-hop ones, and those `Connection` names, describe
    /// this connection and are not passed on.
    headers: HeaderMap,
    /// How the body is delimited (RFC 9112 6.3).
    framing: Framing,
    /// Whether the connection may carry another request after this response's body.
    keep_alive: bool,
}

/// Writes the request on `conn` and reads the response head.
async fn exchange(
    conn: &mut Conn,
    head: &[u8],
    body: Outgoing,
    head_only: bool,
) -> Result<ResponseHead, SendError> {
    let (body, chunked) = match body {
        Outgoing::None => {
            write_request(&mut conn.io, head).await?;
            return read_response(&mut conn.io, &mut conn.buf, head_only).await;
        }
        Outgoing::Buffered(b) if b.len() <= COALESCE_BODY => {
            let mut one = Vec::with_capacity(head.len() + b.len());
            one.extend_from_slice(head);
            one.extend_from_slice(&b);
            write_request(&mut conn.io, &one).await?;
            return read_response(&mut conn.io, &mut conn.buf, head_only).await;
        }
        Outgoing::Buffered(b) => (ProxyBody::full(b), false),
        Outgoing::Length(b) => (b, false),
        Outgoing::Chunked(b) => (b, true),
    };
    // Boxed: the common requests (no body, a small one) keep a small future to move around.
    Box::pin(exchange_streamed(conn, head, body, chunked, head_only)).await
}

/// [`exchange`] for a larger or streamed body: it is sent while the answer is watched for,
/// since a backend may answer early (its own 401 or 413) and stop reading. Then the rest of
/// the body is not sent and the connection is not reused.
async fn exchange_streamed(
    conn: &mut Conn,
    head: &[u8],
    body: ProxyBody,
    chunked: bool,
    head_only: bool,
) -> Result<ResponseHead, SendError> {
    let (mut rd, mut wr) = tokio::io::split(&mut conn.io);
    let upload = send_body(&mut wr, head, body, chunked);
    let answer = read_response(&mut rd, &mut conn.buf, head_only);
    tokio::pin!(upload, answer);
    let mut sent: Option<Result<(), SendError>> = None;
    loop {
        tokio::select! {
            r = &mut answer => {
                let all_sent = matches!(sent, Some(Ok(())));
                let mut resp = match (r, sent) {
                    (Ok(r), _) => r,
                    // No answer after a failed write: the write's error says more.
                    (Err(_), Some(Err(e))) => return Err(e),
                    (Err(e), _) => return Err(e),
                };
                resp.keep_alive &= all_sent;
                return Ok(resp);
            }
            u = &mut upload, if sent.is_none() => {
                if let Err(SendError::Body(e)) = u {
                    // The client's body broke: nothing complete can reach the backend.
                    return Err(SendError::Body(e));
                }
                sent = Some(u);
            }
        }
    }
}

/// Writes the head and a streamed body (as is, or chunked).
async fn send_body<W: tokio::io::AsyncWrite + Unpin>(
    wr: &mut W,
    head: &[u8],
    mut body: ProxyBody,
    chunked: bool,
) -> Result<(), SendError> {
    write_request(wr, head).await?;
    let mut size = Vec::with_capacity(16);
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(SendError::Body)?.into_data() else {
            continue;
        };
        if !chunked {
            wr.write_all(&data).await?;
        } else if !data.is_empty() {
            size.clear();
            write!(size, "{:x}\r\n", data.len()).expect("writing to a Vec");
            wr.write_all(&size).await?;
            wr.write_all(&data).await?;
            wr.write_all(b"\r\n").await?;
        }
    }
    if chunked {
        wr.write_all(b"0\r\n\r\n").await?;
    }
    Ok(())
}

/// Reads the response head, skipping interim 1xx responses.
async fn read_response<R: tokio::io::AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    head_only: bool,
) -> Result<ResponseHead, SendError> {
    loop {
        if let Some(head) = parse_head(buf, head_only)? {
            // Interim responses (100 Continue, 103 Early Hints) come before the real one.
            if head.status.is_informational() {
                if head.status == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(SendError::Protocol(
                        "101 Switching Protocols is not supported".into(),
                    ));
                }
                continue;
            }
            return Ok(head);
        }
        if buf.len() >= MAX_RESPONSE_HEAD {
            return Err(SendError::Protocol(format!(
                "response head larger than {MAX_RESPONSE_HEAD} bytes"
            )));
        }
        buf.reserve(READ_CHUNK);
        if rd.read_buf(buf).await? == 0 {
            return Err(if buf.is_empty() {
                SendError::Closed
            } else {
                SendError::Protocol("connection closed inside the response head".into())
            });
        }
    }
}

/// Parses a complete response head at the start of `buf` and removes it from `buf`, in one
/// pass over its headers: end-to-end ones go into the map (values are slices of the head's
/// bytes, no copy per header), hop-by-hop ones are read for framing and reuse and dropped.
/// `head_only`: the request was HEAD (no body follows, whatever the head says).
fn parse_head(buf: &mut BytesMut, head_only: bool) -> Result<Option<ResponseHead>, SendError> {
    let mut raw =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let n = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut raw)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(SendError::Protocol(e.to_string())),
    };
    let status = StatusCode::from_u16(resp.code.unwrap_or(0))
        .map_err(|e| SendError::Protocol(e.to_string()))?;
    let version = if resp.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Where each header's name and value sit in the head (the values become slices of it
    // once it is split off the buffer).
    let base = buf.as_ptr() as usize;
    let mut spans = Vec::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|e| SendError::Protocol(format!("header name {:?}: {e}", h.name)))?;
        let start = h.value.as_ptr() as usize - base;
        spans.push((name, start..start + h.value.len()));
    }
    let head = buf.split_to(n).freeze();

    // Room for the headers the gateway adds to a response (request id, rate limits, CORS)
    // without growing the map.
    let mut headers = HeaderMap::with_capacity(spans.len() + 8);
    let (mut close, mut keep_alive_token) = (false, false);
    // The last transfer coding (the one that frames the body), when any is given.
    let mut last_coding: Option<bool> = None;
    let mut length: Option<Result<u64, SendError>> = None;
    // Extra names `Connection` lists (rare).
    let mut listed: Vec<HeaderName> = Vec::new();
    for (name, range) in spans {
        let value = HeaderValue::from_maybe_shared(head.slice(range))
            .map_err(|e| SendError::Protocol(format!("header {name}: {e}")))?;
        let bit = hop_by_hop::bit(name.as_str());
        if bit == 0 {
            if name == header::CONTENT_LENGTH {
                length = Some(match (length, content_length(&value)) {
                    (None, n) | (Some(Ok(_)), n @ Err(_)) => n,
                    (Some(Ok(a)), Ok(b)) if a != b => Err(SendError::Protocol(
                        "conflicting Content-Length values".into(),
                    )),
                    (Some(first), _) => first,
                });
            }
            headers.append(name, value);
        } else if name == header::CONNECTION {
            for token in hop_by_hop::tokens(&value) {
                if token.eq_ignore_ascii_case("close") {
                    close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive_token = true;
                } else if let Ok(n) = HeaderName::from_bytes(token.as_bytes()) {
                    listed.push(n);
                }
            }
        } else if name == header::TRANSFER_ENCODING
            && let Some(last) = hop_by_hop::tokens(&value).last()
        {
            last_coding = Some(last.eq_ignore_ascii_case("chunked"));
        }
    }
    for name in listed {
        headers.remove(name);
    }

    let framing = if head_only
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Length(0)
    } else if let Some(chunked) = last_coding {
        // Transfer-Encoding overrides Content-Length, which a proxy must then not pass on
        // (RFC 9112 6.3). Another coding last: the body runs until the backend closes.
        headers.remove(header::CONTENT_LENGTH);
        if chunked {
            Framing::Chunked(Chunk::Size)
        } else {
            Framing::Close
        }
    } else {
        match length {
            Some(n) => Framing::Length(n?),
            None => Framing::Close,
        }
    };
    let keep_alive = match version {
        Version::HTTP_10 => keep_alive_token,
        _ => !close,
    } && !matches!(framing, Framing::Close);
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
        framing,
        keep_alive,
    }))
}

/// A `Content-Length` value: digits only (optional whitespace around them).
fn content_length(v: &HeaderValue) -> Result<u64, SendError> {
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| SendError::Protocol(format!("invalid Content-Length {v:?}")))
}

#[derive(Debug)]
enum Framing {
    /// This many bytes.
    Length(u64),
    /// Chunked, in this state.
    Chunked(Chunk),
    /// Until the backend closes the connection (never reused).
    Close,
}

/// Chunked decoding states.
#[derive(Debug)]
enum Chunk {
    /// Expecting a size line.
    Size,
    /// This many bytes of chunk data left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// Reading (and dropping) trailer lines until the empty one.
    Trailers,
    /// The last chunk and its trailers were read.
    Done,
}

/// A backend response body read from its connection; the connection returns to the pool at
/// the end of the body (when reusable).
pub struct BackendBody {
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
    pool: Arc<HostPool>,
}

impl std::fmt::Debug for BackendBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendBody")
            .field("framing", &self.framing)
            .finish()
    }
}

/// A body that ended before its framing said it would.
fn truncated() -> BodyError {
    "the backend closed the connection inside the response body".into()
}

impl BackendBody {
    fn new(conn: Conn, framing: Framing, keep_alive: bool, pool: Arc<HostPool>) -> Self {
        let mut b = BackendBody {
            conn: Some(conn),
            framing,
            keep_alive,
            pool,
        };
        if b.is_end_stream() {
            b.finish();
        }
        b
    }

    /// The body was read to its end: the connection goes back to the pool when it may.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.keep_alive
            && conn.buf.is_empty()
        {
            self.pool.release(conn);
        }
    }

    /// The next piece of the body. On an error the caller ([`Body::poll_frame`]) drops the
    /// connection.
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut self.framing {
                Framing::Length(0) | Framing::Chunked(Chunk::Done) => {
                    self.finish();
                    return Poll::Ready(None);
                }
                Framing::Length(left) => {
                    if conn.buf.is_empty() {
                        if ready!(conn.poll_fill(cx))? == 0 {
                            return Poll::Ready(Some(Err(truncated())));
                        }
                        continue;
                    }
                    let data = take_counted(left, &mut conn.buf);
                    if *left == 0 {
                        self.finish();
                    }
                    return Poll::Ready(Some(Ok(data)));
                }
                Framing::Close => {
                    if !conn.buf.is_empty() {
                        let data = conn.buf.split().freeze();
                        return Poll::Ready(Some(Ok(data)));
                    }
                    if ready!(conn.poll_fill(cx))? == 0 {
                        self.conn = None;
                        return Poll::Ready(None);
                    }
                }
                Framing::Chunked(state) => {
                    let step = chunk_step(state, &mut conn.buf)?;
                    match step {
                        ChunkStep::Data(data) => return Poll::Ready(Some(Ok(data))),
                        ChunkStep::Again => {}
                        ChunkStep::NeedMore => {
                            if conn.buf.len() > MAX_RESPONSE_HEAD {
                                return Poll::Ready(Some(Err(
                                    "chunk size or trailer line too long".into(),
                                )));
                            }
                            if ready!(conn.poll_fill(cx))? == 0 {
                                return Poll::Ready(Some(Err(truncated())));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Up to `left` bytes from the front of `buf` (a length-framed body, or one chunk's data),
/// counted off `left`.
fn take_counted(left: &mut u64, buf: &mut BytesMut) -> Bytes {
    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
    *left -= n as u64;
    buf.split_to(n).freeze()
}

/// What one step of chunked decoding produced.
enum ChunkStep {
    /// Chunk data for the caller.
    Data(Bytes),
    /// The state advanced; step again.
    Again,
    /// `buf` does not hold enough to advance.
    NeedMore,
}

/// Advances chunked decoding over `buf` by one step.
fn chunk_step(state: &mut Chunk, buf: &mut BytesMut) -> Result<ChunkStep, BodyError> {
    let line_end = |buf: &BytesMut| buf.windows(2).position(|w| w == b"\r\n");
    match state {
        Chunk::Size => {
            let Some(end) = line_end(buf) else {
                return Ok(ChunkStep::NeedMore);
            };
            let line = std::str::from_utf8(&buf[..end]).map_err(|_| "chunk size is not text")?;
            let hex = line.split(';').next().unwrap_or_default().trim();
            let size =
                u64::from_str_radix(hex, 16).map_err(|_| format!("invalid chunk size {hex:?}"))?;
            buf.advance(end + 2);
            *state = if size == 0 {
                Chunk::Trailers
            } else {
                Chunk::Data(size)
            };
            Ok(ChunkStep::Again)
        }
        Chunk::Data(left) => {
            if buf.is_empty() {
                return Ok(ChunkStep::NeedMore);
            }
            let data = take_counted(left, buf);
            if *left == 0 {
                *state = Chunk::DataEnd;
            }
            Ok(ChunkStep::Data(data))
        }
        Chunk::DataEnd => {
            if buf.len() < 2 {
                return Ok(ChunkStep::NeedMore);
            }
            if &buf[..2] != b"\r\n" {
                return Err("chunk data not followed by CRLF".into());
            }
            buf.advance(2);
            *state = Chunk::Size;
            Ok(ChunkStep::Again)
        }
        Chunk::Trailers => {
            let Some(end) = line_end(buf) else {
                return Ok(ChunkStep::NeedMore);
            };
            buf.advance(end + 2);
            if end == 0 {
                *state = Chunk::Done;
            }
            Ok(ChunkStep::Again)
        }
        Chunk::Done => Ok(ChunkStep::Again),
    }
}

impl Body for BackendBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        match ready!(this.poll_next(cx)) {
            Some(Ok(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Some(Err(e)) => {
                // A broken body: the connection is not reusable.
                this.conn = None;
                Poll::Ready(Some(Err(e)))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none()
            || matches!(
                self.framing,
                Framing::Length(0) | Framing::Chunked(Chunk::Done)
            )
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_without_a_port_dial_port_80() {
        let p = Pools::default();
        assert_eq!(p.host("backend").addr, "backend:80");
        assert_eq!(p.host("backend:9000").addr, "backend:9000");
        assert_eq!(p.host("10.0.0.1:1").addr, "10.0.0.1:1");
        assert_eq!(p.host("[::1]").addr, "[::1]:80");
        assert_eq!(p.host("[::1]:8080").addr, "[::1]:8080");
        assert!(Arc::ptr_eq(&p.host("backend"), &p.host("backend")));
    }

    #[test]
    fn https_authorities_dial_port_443_with_the_host_as_server_name() {
        let p = Pools::default();
        let tls = p.host_tls("api.example.com").unwrap();
        assert_eq!(tls.addr, "api.example.com:443");
        let name = &tls.tls.as_ref().unwrap().1;
        assert_eq!(name.to_str(), "api.example.com");
        assert_eq!(p.host_tls("10.0.0.1:8443").unwrap().addr, "10.0.0.1:8443");
        let v6 = p.host_tls("[::1]").unwrap();
        assert_eq!(v6.addr, "[::1]:443");
        assert_eq!(v6.tls.as_ref().unwrap().1.to_str(), "::1");
        // One pool per scheme: http and https to the same authority do not share connections.
        assert!(!Arc::ptr_eq(&p.host("b:1"), &p.host_tls("b:1").unwrap()));
        assert!(p.host_tls("bad_name!").is_err());
    }

    fn head(raw: &str) -> ResponseHead {
        head_of(raw, false).unwrap()
    }

    fn head_of(raw: &str, head_only: bool) -> Result<ResponseHead, SendError> {
        let mut buf = BytesMut::from(raw.as_bytes());
        let head = parse_head(&mut buf, head_only)?.unwrap();
        assert!(buf.is_empty());
        Ok(head)
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let f =
            |raw: &str, head_only: bool| format!("{:?}", head_of(raw, head_only).unwrap().framing);
        assert_eq!(
            f("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", false),
            "Length(5)"
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", true),
            "Length(0)"
        );
        assert_eq!(f("HTTP/1.1 204 No Content\r\n\r\n", false), "Length(0)");
        assert_eq!(
            f(
                "HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
                false
            ),
            "Length(0)"
        );
        // Transfer-Encoding wins over Content-Length, which is then not passed on.
        let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n");
        assert_eq!(format!("{:?}", h.framing), "Chunked(Size)");
        assert!(h.headers.is_empty(), "{:?}", h.headers);
        // The last coding of the last line frames the body.
        assert_eq!(
            f(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\nTransfer-Encoding: x, Chunked\r\n\r\n",
                false
            ),
            "Chunked(Size)"
        );
        assert_eq!(
            f("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", false),
            "Close"
        );
        assert_eq!(f("HTTP/1.0 200 OK\r\n\r\n", false), "Close");
        assert_eq!(
            f(
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n",
                false
            ),
            "Length(5)"
        );
        for bad in [
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
        ] {
            assert!(head_of(bad, false).is_err(), "{bad}");
        }
        let mut partial = BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-le"[..]);
        assert!(parse_head(&mut partial, false).unwrap().is_none());
        assert_eq!(partial.len(), 27, "a partial head is left in place");
        assert!(parse_head(&mut BytesMut::from(&b"NOT HTTP\r\n\r\n"[..]), false).is_err());
        // The head is consumed, the body's first bytes stay; values are kept exactly.
        let mut buf =
            BytesMut::from(&b"HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a: two words\r\n\r\nbody"[..]);
        let h = parse_head(&mut buf, false).unwrap().unwrap();
        assert_eq!(&buf[..], b"body");
        let values: Vec<_> = h.headers.get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "two words"]);
    }

    #[test]
    fn hop_by_hop_response_headers_are_dropped_as_the_head_is_parsed() {
        let h = head(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Conn-Only\r\nKeep-Alive: timeout=5\r\n\
             X-Conn-Only: 1\r\nTrailer: x-t\r\nUpgrade: h2c\r\nProxy-Authenticate: Basic\r\n\
             Content-Length: 2\r\nDate: x\r\nX-App: y\r\n\r\n",
        );
        let mut names: Vec<_> = h.headers.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-length", "date", "x-app"]);
        assert_eq!(format!("{:?}", h.framing), "Length(2)");
        assert!(h.keep_alive);
    }

    #[test]
    fn keep_alive_by_version_and_connection_header() {
        let ka = |raw: &str| head(raw).keep_alive;
        assert!(ka("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(!ka(
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!ka(
            "HTTP/1.1 200 OK\r\nConnection: x-a\r\nConnection: Close\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!ka("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(ka(
            "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\ncontent-length: 0\r\n\r\n"
        ));
        // A body delimited by the close is never followed by another response.
        assert!(!ka("HTTP/1.1 200 OK\r\n\r\n"));
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n";
        for split in 1..wire.len() {
            let mut state = Chunk::Size;
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            let mut fed = 0;
            loop {
                match chunk_step(&mut state, &mut buf).unwrap() {
                    ChunkStep::Data(d) => out.extend_from_slice(&d),
                    ChunkStep::Again if matches!(state, Chunk::Done) => break,
                    ChunkStep::Again => {}
                    ChunkStep::NeedMore => {
                        let end = (fed + split).min(wire.len());
                        assert!(fed < end, "ran out of input at split {split}");
                        buf.extend_from_slice(&wire[fed..end]);
                        fed = end;
                    }
                }
            }
            assert_eq!(out, b"hello world", "split {split}");
            assert!(buf.is_empty(), "split {split}");
        }
        let mut state = Chunk::Size;
        let mut buf = BytesMut::from(&b"zz\r\n"[..]);
        assert!(chunk_step(&mut state, &mut buf).is_err());
        let mut state = Chunk::DataEnd;
        let mut buf = BytesMut::from(&b"xx"[..]);
        assert!(chunk_step(&mut state, &mut buf).is_err());
    }

    #[test]
    fn request_framing_sets_the_length_or_chunks() {
        let mut h = HeaderMap::new();
        assert!(matches!(
            outgoing(&Method::GET, &mut h, ProxyBody::Empty),
            Outgoing::None
        ));
        assert!(h.get(header::CONTENT_LENGTH).is_none());
        assert!(matches!(
            outgoing(&Method::POST, &mut h, ProxyBody::Empty),
            Outgoing::None
        ));
        assert_eq!(h[header::CONTENT_LENGTH], "0");
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        let out = outgoing(&Method::PUT, &mut h, ProxyBody::full("abc"));
        assert!(matches!(out, Outgoing::Buffered(b) if b == "abc"));
        assert_eq!(h[header::CONTENT_LENGTH], "3");
        let head = encode_head(&Method::PUT, &"/a?b=1".parse().unwrap(), &h, None);
        assert_eq!(head, b"PUT /a?b=1 HTTP/1.1\r\ncontent-length: 3\r\n\r\n");
    }

    #[test]
    fn forwarded_headers_replace_the_clients_and_extend_its_forwarded_for() {
        let v = HeaderValue::from_static;
        let fwd = Forwarded {
            host: &v("backend:9000"),
            client_ip: &v("10.1.2.3"),
            proto: &v("http"),
            port: &v("8080"),
            trace: b"Root=1-5759e988-bd862e3fe1be46a994272793",
        };
        let encode = |h: &HeaderMap| {
            String::from_utf8(encode_head(
                &Method::GET,
                &"/x".parse().unwrap(),
                h,
                Some(&fwd),
            ))
            .unwrap()
        };
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, v("*/*"));
        assert_eq!(
            encode(&h),
            "GET /x HTTP/1.1\r\nhost: backend:9000\r\naccept: */*\r\n\
             x-forwarded-for: 10.1.2.3\r\nx-forwarded-proto: http\r\n\
             x-forwarded-port: 8080\r\n\
             x-amzn-trace-id: Root=1-5759e988-bd862e3fe1be46a994272793\r\n\r\n"
        );
        // The client's Host, Expect, X-Forwarded-Proto/Port and X-Amzn-Trace-Id (the caller
        // passes the one to send: the client's when valid) never pass; its
        // X-Forwarded-For values (every line of them) come first.
        h.insert(header::HOST, v("spoofed"));
        h.insert(header::EXPECT, v("100-continue"));
        h.append(X_FORWARDED_FOR, v("1.1.1.1"));
        h.append(X_FORWARDED_FOR, v("2.2.2.2, 3.3.3.3"));
        h.insert(X_FORWARDED_PROTO, v("https"));
        h.insert(X_FORWARDED_PORT, v("443"));
        h.insert(X_AMZN_TRACE_ID, v("Root=forged"));
        assert_eq!(
            encode(&h),
            "GET /x HTTP/1.1\r\nhost: backend:9000\r\naccept: */*\r\n\
             x-forwarded-for: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.1.2.3\r\n\
             x-forwarded-proto: http\r\nx-forwarded-port: 8080\r\n\
             x-amzn-trace-id: Root=1-5759e988-bd862e3fe1be46a994272793\r\n\r\n"
        );
    }

    /// A raw HTTP/1.1 backend for the retry tests: it reads each request (head, and a body
    /// of `Content-Length` bytes), counts it by method, and answers 200 keep-alive, except
    /// that `close_on(method, nth request on its connection)` closes the connection after
    /// reading the request, without answering.
    async fn raw_backend(
        close_on: fn(&str, usize) -> bool,
    ) -> (String, Arc<Mutex<HashMap<String, usize>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
        let seen_ = seen.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let seen = seen_.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for nth in 1.. {
                        let end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            let mut chunk = [0u8; 4096];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let method = head.split(' ').next().unwrap().to_ascii_uppercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        while buf.len() < end + len {
                            let mut chunk = [0u8; 4096];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..end + len);
                        *seen.lock().unwrap().entry(method.clone()).or_default() += 1;
                        if close_on(&method, nth) {
                            return;
                        }
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, seen)
    }

    fn request(method: Method, body: &'static str) -> Request<ProxyBody> {
        let mut req = Request::new(ProxyBody::full(body));
        *req.method_mut() = method;
        *req.uri_mut() = "/r".parse().unwrap();
        req
    }

    /// Sends `n` requests at once so that the pool ends up with `n` idle connections.
    async fn fill_pool(pool: &Arc<HostPool>, n: usize) {
        let sends = (0..n).map(|_| async {
            let resp = pool.send(request(Method::GET, ""), None).await.unwrap();
            resp.into_body().collect().await.unwrap();
        });
        futures::future::join_all(sends).await;
        assert_eq!(pool.idle.lock().unwrap().len(), n);
    }

    /// Issue 9: a POST reached the backend once per idle pooled connection (11 times) when
    /// the backend closed after reading it. RFC 9110 9.2.2: a non-idempotent request that
    /// may have been acted on is not sent again.
    #[tokio::test]
    async fn a_post_the_backend_read_is_never_sent_again() {
        let (addr, seen) = raw_backend(|m, _| m == "POST").await;
        let pool = Pools::default().host(&addr);
        fill_pool(&pool, 5).await;
        let err = pool
            .send(request(Method::POST, "{\"order\":1}"), None)
            .await
            .unwrap_err();
        assert!(err.is_stale_connection(), "{err}");
        assert_eq!(seen.lock().unwrap().get("POST"), Some(&1));
    }

    /// An idempotent request with a buffered body is retried, but once, on a new connection.
    #[tokio::test]
    async fn an_idempotent_request_is_retried_at_most_once() {
        let (addr, seen) = raw_backend(|m, _| m == "PUT").await;
        let pool = Pools::default().host(&addr);
        fill_pool(&pool, 5).await;
        pool.send(request(Method::PUT, "x"), None)
            .await
            .unwrap_err();
        assert_eq!(seen.lock().unwrap().get("PUT"), Some(&2));
    }

    /// The race a retry is for: the backend closes a kept-alive connection as the next
    /// request arrives (here: every connection's second request). The request succeeds on a
    /// new connection.
    #[tokio::test]
    async fn a_stale_pooled_connection_gets_its_one_safe_retry() {
        let (addr, seen) = raw_backend(|_, nth| nth == 2).await;
        let pool = Pools::default().host(&addr);
        fill_pool(&pool, 1).await;
        let resp = pool.send(request(Method::GET, ""), None).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(seen.lock().unwrap().get("GET"), Some(&3));
    }
}
