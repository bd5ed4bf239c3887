//! Backend connection pool: keep-alive HTTP/1.1 connections per backend authority, shared by
//! every route (and every config version) that calls the same `host:port`.
//!
//! ```text
//!  Pools (registry, authority -> Arc<HostPool>)      one sweeper task: drops idle > 90 s
//!   └─ HostPool { idle: Vec<SendRequest> }  LIFO
//!        send(req): checkout idle (ready) | connect --> response head
//!        response body (BackendBody) at end of stream --> sender back to idle
//! ```
//!
//! Built directly on `hyper::client::conn::http1` rather than hyper-util's legacy client:
//! that one spawns a task per request to return the connection and boxes its futures, which
//! showed up as a sizeable share of the proxy's CPU per request. A connection goes back to the
//! pool only once its response body has been read to the end; a reused connection that the
//! backend closed meanwhile is retried once on a fresh one (the request was never sent).

use crate::body::ProxyBody;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Idle connections older than this are closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const MAX_IDLE_PER_HOST: usize = 512;

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
    /// The HTTP exchange failed.
    #[error("{0}")]
    Http(#[from] hyper::Error),
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
        let mut hosts = self.hosts.lock().expect("pool registry lock");
        hosts
            .entry(authority.to_string())
            .or_insert_with(|| {
                let has_port = match authority.strip_prefix('[') {
                    Some(v6) => v6.contains("]:"),
                    None => authority.contains(':'),
                };
                Arc::new(HostPool {
                    addr: if has_port {
                        authority.to_string()
                    } else {
                        format!("{authority}:80")
                    },
                    idle: Mutex::new(Vec::new()),
                })
            })
            .clone()
    }

    /// Closes idle connections older than [`IDLE_TIMEOUT`] or already closed.
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
                .retain(|i| i.since.elapsed() < IDLE_TIMEOUT && !i.sender.is_closed());
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

struct Idle {
    sender: SendRequest<ProxyBody>,
    since: Instant,
}

impl std::fmt::Debug for Idle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idle").field("since", &self.since).finish()
    }
}

/// Keep-alive connections to one backend address.
#[derive(Debug)]
pub struct HostPool {
    addr: String,
    idle: Mutex<Vec<Idle>>,
}

impl HostPool {
    /// Sends `req` (origin-form URI, Host set) and returns the response head; the body
    /// streams, and the connection returns to the pool when it has been read to the end.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, SendError> {
        loop {
            let (mut sender, reused) = match self.checkout().await {
                Some(s) => (s, true),
                None => (self.connect().await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let body = BackendBody::new(body, sender, self.clone());
                    return Ok(Response::from_parts(parts, ProxyBody::Backend(body)));
                }
                Err(mut e) => match e.take_message() {
                    // Not sent: the backend closed the idle connection under us. Retry once
                    // on a fresh connection (a fresh one is not retried).
                    Some(r) if reused => req = r,
                    _ => return Err(SendError::Http(e.into_error())),
                },
            }
        }
    }

    async fn checkout(&self) -> Option<SendRequest<ProxyBody>> {
        loop {
            let idle = self.idle.lock().expect("pool lock").pop()?;
            let mut sender = idle.sender;
            if sender.is_ready() {
                return Some(sender);
            }
            // Closed, or its connection task has not yet noticed the last exchange ended.
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    fn release(&self, sender: SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.len() < MAX_IDLE_PER_HOST {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self) -> Result<SendRequest<ProxyBody>, SendError> {
        let stream = TcpStream::connect(&self.addr)
            .await
            .map_err(|source| SendError::Connect {
                addr: self.addr.clone(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "backend connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// A backend response body that returns its connection to the pool at end of stream.
pub struct BackendBody {
    inner: Incoming,
    release: Option<(SendRequest<ProxyBody>, Arc<HostPool>)>,
}

impl std::fmt::Debug for BackendBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendBody")
            .field("inner", &self.inner)
            .finish()
    }
}

impl BackendBody {
    fn new(inner: Incoming, sender: SendRequest<ProxyBody>, pool: Arc<HostPool>) -> Self {
        let mut b = BackendBody {
            inner,
            release: Some((sender, pool)),
        };
        if b.inner.is_end_stream() {
            b.done();
        }
        b
    }

    fn done(&mut self) {
        if let Some((sender, pool)) = self.release.take() {
            pool.release(sender);
        }
    }
}

impl Body for BackendBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => this.done(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.done(),
            // A broken body: the connection is not reusable.
            Poll::Ready(Some(Err(_))) => this.release = None,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
}
