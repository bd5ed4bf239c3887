//! The process: load the config, bind, serve, reload, drain on SIGTERM/SIGINT.
//!
//! ```text
//!  run(cli) -> tokio runtime (current-thread for --workers 1) -> serve(args)
//!    load (errors: exit 1) -> Runtime -> ArcSwap
//!    bind public + admin -> log addresses, write --ready-file
//!    spawn: watcher, admin server; accept loop: one task per connection, serving it with a
//!      hyper http1 connection while requests come and parking it without one when idle
//!    signal -> /readyz 503, close listener, drain (`drain::Drain`, grace period), exit 0
//! ```

use crate::access_log::AccessLog;
use crate::admin::{self, Health};
use crate::body::ClientBody;
use crate::cli::{Cli, ServeArgs};
use crate::client_io;
use crate::drain::{Drain, Watch};
use crate::metrics::Metrics;
use crate::pipeline::{self, ConnInfo, Gateway, RequestCtx, Shared};
use crate::pool::Pools;
use crate::runtime::Runtime;
use crate::source;
use crate::{Error, Result};
use arc_swap::ArcSwap;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

/// Runs the proxy until SIGTERM/SIGINT (then drains) or a startup error.
pub fn run(cli: Cli) -> Result<()> {
    let args = cli.serve;
    crate::telemetry::init(args.log_format);
    if let Some(warning) = args.per_replica_limits_warning() {
        tracing::warn!("{warning}");
    }
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let rt = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()?
    };
    let result = rt.block_on(serve(args));
    rt.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn serve(args: ServeArgs) -> Result<()> {
    if let Some(path) = &args.ca_file {
        let ca_error = |message: String| Error::CaFile {
            path: path.clone(),
            message,
        };
        let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
        let roots = crate::tls::parse_certs("PEM", &pem).map_err(|e| ca_error(e.to_string()))?;
        crate::tls::init_outbound(roots).map_err(|e| ca_error(e.to_string()))?;
    }
    crate::context::set_account_id(args.account_id.clone());
    let source = source::Configured::from_args(&args)?;
    let metrics = Arc::new(Metrics::new());
    let mut loaded = source.initial().await.inspect_err(source::log_load_error)?;
    source::log_diagnostics(&loaded.diagnostics);
    let pools = Pools::new();
    let version = loaded.version();
    let mut runtime = Runtime::build_hashed(loaded.config, version, &metrics, &pools);
    runtime.secrets = loaded.secrets;
    metrics.set_config_version(&runtime.version);
    metrics.reload_success.set(1);
    let version = runtime.version.clone();
    let state = Arc::new(ArcSwap::from_pointee(runtime));

    // Signals first, so that a SIGTERM right after the ready file is written is handled.
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;

    let listener = bind(args.listen).await?;
    let admin_listener = bind(args.admin_listen).await?;
    let listen = listener.local_addr()?;
    let admin = admin_listener.local_addr()?;

    // The shared-state layer: one Redis handle and failure rule for every user of it.
    let store = match &args.redis_url {
        Some(url) => Some(
            crate::shared_state::RedisStore::connect(url)
                .await
                .map_err(|e| std::io::Error::other(format!("--redis-url: {e}")))?,
        ),
        None => None,
    };
    let shared_state = crate::shared_state::SharedState::new(
        store,
        match args.redis_failure_mode {
            crate::cli::RedisFailureMode::Closed => crate::shared_state::FailureMode::Closed,
            crate::cli::RedisFailureMode::Open => crate::shared_state::FailureMode::Open,
        },
        metrics.shared_state_errors.clone(),
        metrics.redis_errors.clone(),
    );
    let sealer = match &args.cache_encryption_key_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                std::io::Error::other(format!(
                    "--cache-encryption-key-file {}: {e}",
                    path.display()
                ))
            })?;
            let key = crate::cache::Sealer::parse_key(&text).map_err(|e| {
                std::io::Error::other(format!(
                    "--cache-encryption-key-file {}: {e}",
                    path.display()
                ))
            })?;
            crate::cache::Sealer::new(&key)
        }
        None => crate::cache::Sealer::random(),
    };
    let cache = Arc::new(crate::cache::ResponseCache::new(
        shared_state.clone(),
        sealer,
        metrics.cache_size.clone(),
    ));
    let limits = crate::usage_plan::Limits::new(shared_state);
    let shared = Arc::new(Shared {
        access_log: AccessLog::stdout(metrics.access_log_dropped.clone()),
        // Static: a clone per request is a copy, not a reference count all workers share.
        forwarded_port: listen.port().into(),
        listen_port: listen.port(),
        limits: limits.clone(),
        key_metrics: metrics.keys.clone(),
        buffers: crate::buffer::BufferBudget::new(args.max_buffered_request_bytes),
        body_timeouts: args.body_timeouts(),
        cache: cache.clone(),
        websockets: Arc::new(crate::websocket::Hub::new(
            Some(state.clone()),
            metrics.websocket.clone(),
        )),
        management_separate: args.management_listen.is_some(),
    });
    let health = Arc::new(Health::default());
    health.set_ready(source.ready_at_start());
    tokio::spawn(admin::serve(
        admin_listener,
        metrics.clone(),
        health.clone(),
        admin::Usage {
            state: state.clone(),
            limits,
            cache,
        },
        Duration::from_secs(args.client_header_timeout_seconds),
    ));
    pools.spawn_sweeper();
    source.spawn(
        state.clone(),
        metrics.clone(),
        pools.clone(),
        health.clone(),
    );

    tracing::info!(%listen, %admin, %version, "portico-proxy serving");
    if let Some(path) = &args.ready_file {
        write_ready_file(path, listen, admin)?;
    }

    let http = http_builder(
        args.max_header_bytes,
        Duration::from_secs(args.client_header_timeout_seconds),
    );
    let drain = Drain::new();
    // The management listener (`@connections` only), when asked for.
    let management = match args.management_listen {
        Some(addr) => {
            let l = bind(addr).await?;
            tracing::info!(management = %l.local_addr()?, "@connections served on the management listener only");
            let (shared, state, http, drain) =
                (shared.clone(), state.clone(), http.clone(), drain.clone());
            Some(tokio::spawn(async move {
                loop {
                    match l.accept().await {
                        Ok((stream, remote)) => {
                            spawn_connection(stream, remote, &shared, &state, &http, &drain, true)
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "management accept failed");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            }))
        }
        None => None,
    };
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        };
        spawn_connection(stream, remote, &shared, &state, &http, &drain, false);
    }

    health.set_ready(false);
    drop(listener);
    if let Some(m) = management {
        m.abort();
    }
    let grace = Duration::from_secs(args.shutdown_grace_seconds);
    tracing::info!(
        connections = drain.count(),
        ?grace,
        "shutting down: draining in-flight requests"
    );
    let deadline = tokio::time::Instant::now() + grace;
    tokio::select! {
        _ = drain.shutdown() => tracing::info!("drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!("grace period over; closing remaining connections"),
    }
    // WebSocket connections keep going for the rest of the grace period; then each is closed
    // with 1001 and its $disconnect runs (at most 5 s for all).
    let sockets = shared.websockets.open();
    if sockets > 0 {
        tracing::info!(
            sockets,
            "WebSocket connections open: closing them after the grace period"
        );
        tokio::time::sleep_until(deadline).await;
        shared.websockets.shutdown(Duration::from_secs(5)).await;
    }
    shared.access_log.flush(Duration::from_secs(2));
    Ok(())
}

/// How long a kept-alive connection waits for its next request inside hyper before it is
/// parked (see [`spawn_connection`]). Busy connections never park; an idle one gives its hyper
/// state back this long after its last response.
pub const PARK_AFTER: Duration = Duration::from_millis(250);

/// The HTTP/1.1 server settings (see [`http_builder`]).
#[derive(Debug)]
pub struct Http {
    builder: http1::Builder,
    header_timeout: Duration,
}

/// The HTTP/1.1 server settings: keep-alive, request heads up to `max_header_bytes`
/// (larger ones get hyper's 431 and the connection closes), a whole head within
/// `header_timeout` of the connection opening or of the last response (else the connection
/// closes: this is also the keep-alive idle timeout).
pub fn http_builder(max_header_bytes: usize, header_timeout: Duration) -> Arc<Http> {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .max_header_size(max_header_bytes)
        .max_buf_size(max_header_bytes.max(8192) + 8192)
        .keep_alive(true);
    Arc::new(Http {
        builder,
        header_timeout,
    })
}

/// Serves one accepted connection on its own task, watching `drain`: once it is raised, the
/// request in flight finishes and the connection closes (an idle one closes at once).
///
/// The task holds a hyper connection only while requests come: hyper keeps its buffers and
/// the slot for the request future for as long as it serves a connection (about 39 KiB), so
/// a connection that has waited [`PARK_AFTER`] for its next request is parked instead, with
/// just its socket, until it is readable again:
///
/// ```text
///  loop:
///    parked (no head under way): wait until readable, the header deadline (close, no
///      answer), or the drain signal (close)
///    a fresh hyper connection on the socket (bytes it had read but not parsed replayed
///      first), its head timeout the rest of the header deadline but at most PARK_AFTER,
///      serving a fresh `Gateway` (the connection's values: made per wake, not kept parked)
///    it ends with that head timeout while nothing of ours is unsent: take the socket back
///      (`into_parts`); after a response the header deadline starts over; loop (parks, or
///      goes on with a head under way until the deadline: then 408)
///    any other end (closed, `Connection: close`, an error, an upgrade): as hyper left it,
///      and a head hyper could not parse, or one still incomplete at the deadline, answered
///      in the gateway's shape (`answer_unparsed`)
/// ```
///
/// hyper runs its head timer only while it awaits a request head, that is once the previous
/// exchange is over at its level (the service's future done, the request body read, the
/// response written), so its timing out is a safe point to let it go.
pub fn spawn_connection(
    stream: TcpStream,
    remote: SocketAddr,
    shared: &Arc<Shared>,
    state: &Arc<ArcSwap<Runtime>>,
    http: &Arc<Http>,
    drain: &Drain,
    management: bool,
) {
    let _ = stream.set_nodelay(true);
    let mut io = client_io::ClientIo::new(stream);
    // Raw heads only where a function gets the client's header spellings.
    if state.load().header_spelling {
        io = io.capturing_heads(client_io::RawHead::default());
    }
    let client = Client {
        shared: shared.clone(),
        state: state.clone(),
        remote,
        management,
    };
    tokio::spawn(serve_client(io, client, http.clone(), drain.watch()));
}

/// What a connection keeps while parked to make its [`Gateway`] again when a request comes.
struct Client {
    shared: Arc<Shared>,
    state: Arc<ArcSwap<Runtime>>,
    remote: SocketAddr,
    management: bool,
}

impl Client {
    /// The connection's pipeline service, made when a hyper connection starts: a parked
    /// connection holds neither it nor its per-connection values (the integration timer).
    fn gateway(&self, io: &client_io::ClientIo) -> Arc<Gateway> {
        let mut conn = ConnInfo::new(self.remote);
        conn.management = self.management;
        conn.raw_head = io.raw_head();
        Arc::new(Gateway {
            shared: self.shared.clone(),
            state: self.state.clone(),
            conn,
        })
    }
}

/// The pipeline as hyper's service for one connection.
fn service(
    gateway: Arc<Gateway>,
) -> impl hyper::service::Service<
    http::Request<Incoming>,
    Response = http::Response<crate::body::ProxyBody>,
    Error = Infallible,
    Future: Send + 'static,
> + Send
+ 'static {
    hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let gateway = gateway.clone();
        async move {
            let req = ClientBody::from_request(req, gateway.shared.body_timeouts);
            Ok::<_, Infallible>(gateway.call(req).await)
        }
    })
}

/// The connection's loop (see [`spawn_connection`]).
///
/// An `async` block rather than an `async fn`: an `async fn` keeps its arguments twice in
/// its future (as arguments, then as locals), and this future is each connection's task.
fn serve_client(
    mut io: client_io::ClientIo,
    client: Client,
    http: Arc<Http>,
    mut watch: Watch,
) -> impl std::future::Future<Output = ()> + Send {
    // When the head now awaited began to be awaited: the connection's start, then each
    // response.
    let mut head_since = Instant::now();
    async move {
        loop {
            let deadline = head_since + http.header_timeout;
            if !io.head_under_way() && !park(&mut io, deadline, &mut watch).await {
                return;
            }
            let window = deadline.saturating_duration_since(Instant::now());
            let last_window = window <= PARK_AFTER;
            let timeout = window.min(PARK_AFTER);
            io.serving();
            let gateway = client.gateway(&io);
            let svc = service(gateway.clone());
            let mut builder = http.builder.clone();
            builder.header_read_timeout(timeout);
            // With upgrades: a response that switches protocols (101) hands the connection to
            // whoever awaits `hyper::upgrade::on` for its request (websocket).
            let mut conn = Box::new(
                builder
                    .serve_connection(TokioIo::new(io), svc)
                    .with_upgrades(),
            );
            let result = tokio::select! {
                // The connection first, and no random branch order: this is polled on every
                // wake-up of the connection's task.
                biased;
                result = std::pin::Pin::new(&mut *conn) => result,
                () = watch.draining() => {
                    std::pin::Pin::new(&mut *conn).graceful_shutdown();
                    std::pin::Pin::new(&mut *conn).await
                }
            };
            // None: upgraded, the socket is the upgrade's now.
            let Some(parts) = conn.into_parts() else {
                return;
            };
            io = parts.io.into_inner();
            let timed_out = result.as_ref().is_err_and(hyper::Error::is_timeout);
            if timed_out && io.settled() {
                io.rewind(parts.read_buf);
                if io.wrote() {
                    // The head timer started with the last response.
                    head_since = Instant::now() - timeout;
                    continue;
                }
                if !last_window {
                    continue;
                }
            } else if let Err(e) = &result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            if let Some(u) = io.unanswered() {
                // Boxed: a rare path, and its buffers would otherwise be part of every
                // connection's task, idle or not.
                Box::pin(answer_unparsed(u, timed_out, &gateway)).await;
            }
            return;
        }
    }
}

/// A parked connection's wait: true once the socket is readable; false at `deadline` (the
/// keep-alive idle timeout), on the drain signal, or on a socket error (the connection then
/// closes, without an answer).
async fn park(io: &mut client_io::ClientIo, deadline: Instant, watch: &mut Watch) -> bool {
    tokio::select! {
        biased;
        () = watch.draining() => false,
        ready = std::future::poll_fn(|cx| io.poll_read_ready(cx)) => ready.is_ok(),
        () = tokio::time::sleep_until(deadline) => false,
    }
}

/// Answers a connection hyper ended without the gateway's answer (see [`client_io`]): a head
/// it could not parse (400, 414, 431), or a head still incomplete at the header timeout
/// (408; a connection idle between requests is closed without one). The answer is the
/// gateway response of no API, with a request id and an access-log line; then the socket is
/// closed gently: the rest of what the client sends is read for a moment, so that the close
/// does not reset the connection before the client has read the answer.
async fn answer_unparsed(u: client_io::Unanswered, timed_out: bool, cs: &Gateway) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let err = match u.status {
        Some(http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE) => {
            pipeline::GatewayError::RequestHeaderFieldsTooLarge
        }
        Some(http::StatusCode::URI_TOO_LONG) => pipeline::GatewayError::UriTooLong,
        Some(_) => pipeline::GatewayError::BadRequest("a request head that cannot be parsed"),
        None if timed_out && u.partial_head => {
            pipeline::GatewayError::RequestTimeout("an incomplete request head".into())
        }
        None => return,
    };
    let mut ctx = RequestCtx::unparsed(cs.state.load_full(), cs.conn.remote.ip());
    let resp = pipeline::respond::gateway_response(&mut ctx, err);
    let resp = pipeline::respond::finish(&cs.shared, ctx, resp);
    let (parts, body) = resp.into_parts();
    let body = match body {
        crate::body::ProxyBody::Full(Some(b)) => b,
        _ => bytes::Bytes::new(),
    };
    let mut out = Vec::with_capacity(256 + body.len());
    let reason = parts.status.canonical_reason().unwrap_or("");
    out.extend_from_slice(format!("HTTP/1.1 {} {reason}\r\n", parts.status.as_u16()).as_bytes());
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&body);
    let mut stream = u.stream;
    let linger = async {
        stream.write_all(&out).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 8192];
        let mut seen = 0;
        while seen < crate::body::LINGER_BYTES {
            match stream.read(&mut sink).await? {
                0 => break,
                n => seen += n as u64,
            }
        }
        std::io::Result::Ok(())
    };
    let _ = tokio::time::timeout(crate::body::LINGER_TIME, linger).await;
}

async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })
}

/// Writes `{"listen":"ADDR","admin":"ADDR"}` atomically (temp file + rename).
fn write_ready_file(path: &Path, listen: SocketAddr, admin: SocketAddr) -> Result<()> {
    let body = serde_json::json!({ "listen": listen.to_string(), "admin": admin.to_string() });
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        std::fs::write(&tmp, body.to_string())?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| Error::ReadyFile {
        path: path.to_path_buf(),
        source,
    })
}
