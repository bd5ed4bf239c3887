//! WebSocket APIs (AWS API Gateway's): the handshake runs `$connect` (authorizer, API key,
//! throttle, integration) before it completes; each message is routed by the API's
//! `routeSelectionExpression` and sent to its route's integration (a two-way route's answer
//! goes back on the socket); `$disconnect` runs once the socket is gone; the `@connections`
//! management API (`management`) sends to, describes and closes connections.
//!
//! ```text
//!  GET <stage base> + Upgrade: websocket
//!    $connect route: check_served, authorizer, API key, throttle   (401 / 403 / 429 / 500)
//!    $connect integration (CONNECT event) -> not 2XX: the upgrade is refused with it
//!    101 -> a task per connection (registry entry: id, sender, identity, times):
//!      message ── select(route_selection on the JSON body) ── route key | $default | error frame
//!         └─ integration (MESSAGE event) ── two-way: its answer as a frame
//!      @connections POST / DELETE ── the connection's sender ── frame / close
//!      idle timeout, connection lifetime, shutdown: close 1001; too large: 1009;
//!      invalid UTF-8: 1007; protocol error: 1002
//!    socket gone -> $disconnect integration (DISCONNECT event), best effort
//!  <stage base>/@connections/{id}: see `management`
//! ```
//!
//! A message runs on the config current when it arrives (a reload keeps every socket; a
//! changed route applies to the next message). Messages of one connection run in order.
//! The registry is one small interface ([`Registry`]) so that a fleet-wide one can replace
//! the in-process map.

pub mod management;

use crate::body::ProxyBody;
use crate::pipeline::ctx::{ConnInfo, Exchange, RequestCtx, Shared};
use crate::pipeline::{GatewayError, auth, integrate, respond, throttle};
use crate::runtime::{RouteHandle, Runtime};
use arc_swap::ArcSwap;
use base64::Engine as _;
use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use portico_config::WebSocketApi;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, error::CapacityError};

/// Which event a request of a WebSocket API is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// The handshake (`$connect`).
    Connect,
    /// A message.
    Message,
    /// The socket is gone (`$disconnect`).
    Disconnect,
}

impl EventType {
    /// AWS's name (`requestContext.eventType`, `$context.eventType`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Connect => "CONNECT",
            EventType::Message => "MESSAGE",
            EventType::Disconnect => "DISCONNECT",
        }
    }
}

/// The WebSocket part of a request's context.
#[derive(Clone, Debug)]
pub struct WsContext {
    /// `$context.connectionId`.
    pub connection_id: Arc<str>,
    /// When the connection was accepted.
    pub connected_at: SystemTime,
    /// `$context.eventType`.
    pub event_type: EventType,
    /// `$context.messageId` (messages).
    pub message_id: Option<String>,
    /// Whether the message came as a binary frame.
    pub binary: bool,
    /// `$disconnect`: the close code and reason.
    pub disconnect: Option<(u16, String)>,
    /// The request template the message selects (`templateSelectionExpression`), when its
    /// route reads one from the message; else `$default`'s applies.
    pub template_key: Option<String>,
}

impl WsContext {
    /// `connectedAt` in epoch milliseconds.
    pub fn connected_at_ms(&self) -> u64 {
        epoch_ms(self.connected_at)
    }
}

fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A new id: 12 random bytes, URL-safe base64, 16 characters (AWS's ids look like
/// `L0SM9cOFvHcCIhw=`; these never need escaping in an `@connections/{id}` path).
fn new_id() -> String {
    let mut b = [0u8; 12];
    for chunk in b.chunks_mut(8) {
        let r = crate::pipeline::ctx::next_u64().to_le_bytes();
        chunk.copy_from_slice(&r[..chunk.len()]);
    }
    base64::engine::general_purpose::URL_SAFE.encode(b)
}

/// What `@connections` asks of a connection.
#[derive(Debug)]
pub enum Command {
    /// Send this message (text when it is UTF-8, else binary).
    Send(Bytes),
    /// Close the connection (AWS DeleteConnection).
    Close,
}

/// One open connection as the registry knows it.
#[derive(Debug)]
pub struct Connection {
    /// Its id.
    pub id: Arc<str>,
    /// The stage it is on (`stage/<ns>/<name>`).
    pub stage_id: Arc<str>,
    /// When it was accepted.
    pub connected_at: SystemTime,
    /// The client's address.
    pub source_ip: std::net::IpAddr,
    /// The handshake's `User-Agent`.
    pub user_agent: Option<String>,
    /// Epoch milliseconds of its last message either way.
    pub last_active: AtomicI64,
    sender: mpsc::Sender<Command>,
}

impl Connection {
    fn touch(&self) {
        let now = i64::try_from(epoch_ms(SystemTime::now())).unwrap_or(i64::MAX);
        self.last_active.store(now, Ordering::Relaxed);
    }
}

/// Why a command did not reach a connection.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Gone {
    /// No such connection (closed, or never open) on this stage.
    #[error("no such connection")]
    Unknown,
    /// Its outgoing queue is full (a client that does not read).
    #[error("the connection's outgoing queue is full")]
    Full,
}

/// The connection registry: the one interface the data plane and `@connections` use, so
/// that a fleet-wide registry (shared state) can replace the in-process one.
pub trait Registry: Send + Sync + std::fmt::Debug {
    /// Records an open connection.
    fn insert(&self, c: Arc<Connection>);
    /// Forgets a connection.
    fn remove(&self, id: &str);
    /// The connection `id` on `stage_id`.
    fn get(&self, stage_id: &str, id: &str) -> Option<Arc<Connection>>;
    /// Queues `cmd` for connection `id` on `stage_id`.
    fn send(&self, stage_id: &str, id: &str, cmd: Command) -> Result<(), Gone> {
        let c = self.get(stage_id, id).ok_or(Gone::Unknown)?;
        c.sender.try_send(cmd).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Gone::Full,
            mpsc::error::TrySendError::Closed(_) => Gone::Unknown,
        })
    }
    /// How many connections are open.
    fn len(&self) -> usize;
    /// Whether none is.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Connections of this process.
#[derive(Debug, Default)]
pub struct LocalRegistry {
    map: RwLock<HashMap<Arc<str>, Arc<Connection>>>,
}

impl Registry for LocalRegistry {
    fn insert(&self, c: Arc<Connection>) {
        self.map
            .write()
            .expect("never poisoned")
            .insert(c.id.clone(), c);
    }
    fn remove(&self, id: &str) {
        self.map.write().expect("never poisoned").remove(id);
    }
    fn get(&self, stage_id: &str, id: &str) -> Option<Arc<Connection>> {
        let c = self.map.read().expect("never poisoned").get(id).cloned()?;
        (&*c.stage_id == stage_id).then_some(c)
    }
    fn len(&self) -> usize {
        self.map.read().expect("never poisoned").len()
    }
}

/// CloudWatch's WebSocket metrics per API and stage, and the open connections.
#[derive(Clone, Debug)]
pub struct WsMetrics {
    connects: IntCounterVec,
    messages: IntCounterVec,
    integration_errors: IntCounterVec,
    client_errors: IntCounterVec,
    execution_errors: IntCounterVec,
    open: IntGaugeVec,
}

impl WsMetrics {
    /// The families, registered in `registry` (or not, for tests).
    pub fn new(registry: Option<&prometheus::Registry>) -> Self {
        let c = |name: &str, help: &str| {
            let v =
                IntCounterVec::new(Opts::new(name, help), &["api", "stage"]).expect("valid metric");
            if let Some(r) = registry {
                r.register(Box::new(v.clone())).expect("registered once");
            }
            v
        };
        let open = IntGaugeVec::new(
            Opts::new(
                "portico_websocket_connections",
                "Open WebSocket connections.",
            ),
            &["api", "stage"],
        )
        .expect("valid metric");
        if let Some(r) = registry {
            r.register(Box::new(open.clone())).expect("registered once");
        }
        WsMetrics {
            connects: c(
                "portico_connect_count",
                "WebSocket $connect requests (CloudWatch ConnectCount).",
            ),
            messages: c(
                "portico_message_count",
                "WebSocket messages received and sent through @connections (CloudWatch MessageCount).",
            ),
            integration_errors: c(
                "portico_integration_error",
                "WebSocket requests whose integration answered 4XX/5XX or failed (CloudWatch IntegrationError).",
            ),
            client_errors: c(
                "portico_client_error",
                "WebSocket requests refused before the integration (CloudWatch ClientError).",
            ),
            execution_errors: c(
                "portico_execution_error",
                "WebSocket requests that failed in the gateway (CloudWatch ExecutionError).",
            ),
            open,
        }
    }
}

/// Service-wide WebSocket state: the registry, the live config, metrics, shutdown.
#[derive(Debug)]
pub struct Hub {
    /// Open connections.
    pub registry: Arc<dyn Registry>,
    /// The served config (a message runs on the config current when it arrives); `None`:
    /// the config of the handshake (tests).
    pub state: Option<Arc<ArcSwap<Runtime>>>,
    /// Metrics.
    pub metrics: WsMetrics,
    shutdown: watch::Sender<bool>,
    /// How many connection tasks run.
    tasks: watch::Sender<usize>,
}

impl Hub {
    /// A hub over `state`, with `metrics`.
    pub fn new(state: Option<Arc<ArcSwap<Runtime>>>, metrics: WsMetrics) -> Self {
        Hub {
            registry: Arc::new(LocalRegistry::default()),
            state,
            metrics,
            shutdown: watch::channel(false).0,
            tasks: watch::channel(0).0,
        }
    }

    /// Closes every connection with 1001 (after their `$disconnect` runs) and waits, at most
    /// `within`, for their tasks to end.
    pub async fn shutdown(&self, within: Duration) {
        let _ = self.shutdown.send(true);
        let mut rx = self.tasks.subscribe();
        let _ = tokio::time::timeout(within, rx.wait_for(|n| *n == 0)).await;
    }

    /// How many connection tasks run.
    pub fn open(&self) -> usize {
        *self.tasks.borrow()
    }
}

/// The `Sec-WebSocket-Accept` value for a key (RFC 6455 4.2.2).
pub fn accept_key(key: &[u8]) -> String {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key);
    ctx.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref())
}

/// The route key a message selects: the string (or other JSON value, as text) at `path`
/// in the JSON body; `None` when the body is not JSON or has nothing there (`$default`).
pub fn select_route(body: &[u8], path: &[String]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let mut at = &v;
    for name in path {
        at = at.get(name.as_str())?;
    }
    match at {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null | serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
            None
        }
        other => Some(other.to_string()),
    }
}

/// The index of route `key` of the API `api` in `runtime`.
fn route_index(runtime: &Runtime, api: usize, key: &str) -> Option<usize> {
    runtime.config.apis[api]
        .routes
        .iter()
        .position(|r| r.route_key == key)
}

/// A WebSocket API's request: the handshake, or `@connections`.
pub async fn serve(ex: Exchange<'_>) -> Result<Response<ProxyBody>, GatewayError> {
    let runtime = ex.ctx.runtime.clone();
    let h = ex.ctx.handle.expect("routed to a stage");
    let stage = &runtime.config.stages[h.stage as usize];
    let settings = runtime.config.apis[h.api as usize]
        .websocket
        .clone()
        .unwrap_or_default();
    let rest = ex
        .ctx
        .path()
        .strip_prefix(stage.base_path.as_str())
        .unwrap_or("")
        .to_string();
    let no_route = || {
        GatewayError::no_route(
            runtime.apis[h.api as usize].no_route,
            "a WebSocket API has no resource here",
        )
    };
    if let Some(id) = rest.strip_prefix("/@connections/") {
        // With --management-listen, @connections is served there only.
        if ex.shared.management_separate && !ex.conn.management {
            return Err(no_route());
        }
        // Not the $connect route's call (its metrics and access-log fields).
        ex.ctx.handle = Some(RouteHandle { route: None, ..h });
        return management::handle(ex, id, &settings).await;
    }
    if ex.conn.management || !(rest.is_empty() || rest == "/") {
        return Err(GatewayError::no_route(
            runtime.apis[h.api as usize].no_route,
            "a WebSocket API has no resource here",
        ));
    }
    connect(ex, settings).await
}

/// The handshake: `$connect`, then the upgrade.
async fn connect(
    mut ex: Exchange<'_>,
    settings: WebSocketApi,
) -> Result<Response<ProxyBody>, GatewayError> {
    let key = ex.head.headers.get("sec-websocket-key").cloned();
    let (true, Some(key), true) = (
        ex.ctx.websocket_upgrade,
        key,
        ex.head.method == http::Method::GET,
    ) else {
        // Not a WebSocket handshake: 426, as RFC 6455 4.2.2 has a server ask for one.
        let mut resp = Response::new(ProxyBody::full(
            r#"{"message":"Upgrade Required"}"#.to_string(),
        ));
        *resp.status_mut() = StatusCode::UPGRADE_REQUIRED;
        resp.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return Ok(resp);
    };
    let hub = ex.shared.websockets.clone();
    let h = ex.ctx.handle.expect("routed");
    let handshake_runtime = ex.ctx.runtime.clone();
    let labels = labels(&ex.ctx.runtime, h);
    hub.metrics.connects.with_label_values(&labels).inc();
    let id: Arc<str> = Arc::from(new_id());
    let connected_at = SystemTime::now();
    ex.ctx.websocket = Some(Box::new(WsContext {
        connection_id: id.clone(),
        connected_at,
        event_type: EventType::Connect,
        message_id: None,
        binary: false,
        disconnect: None,
        template_key: None,
    }));
    // $connect's checks, as a method's: the authorizer (with the handshake's headers and
    // query), the API key, the stage's and the plan's throttles (new connections per second).
    let checked = async {
        if h.route.is_some() {
            crate::pipeline::integrate::check_served(&mut ex)?;
            auth::phase(&mut ex).await?;
            crate::pipeline::api_key::phase(&mut ex)?;
        }
        throttle::meter(&mut ex).await?;
        Ok::<_, GatewayError>(())
    };
    if let Err(e) = checked.await {
        hub.metrics.client_errors.with_label_values(&labels).inc();
        return Err(e);
    }
    let on_upgrade = ex.head.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let headers = ex.head.headers.clone();
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let remote = ex.conn.remote;
    let shared = ex.shared.clone();
    let authorizer = ex.ctx.authorizer.clone();
    let usage_key = ex.ctx.usage_identifier_key.clone();
    // The $connect integration: anything but 2XX refuses the connection with its status.
    if h.route.is_some() {
        ex.body = ProxyBody::Empty;
        let resp = match integrate::call(ex).await {
            Ok(r) => r,
            Err(e) => {
                hub.metrics
                    .integration_errors
                    .with_label_values(&labels)
                    .inc();
                return Err(e);
            }
        };
        if !resp.status().is_success() {
            hub.metrics
                .integration_errors
                .with_label_values(&labels)
                .inc();
            return Ok(resp);
        }
    }
    let Some(on_upgrade) = on_upgrade else {
        return Err(GatewayError::BadRequest(
            "the connection cannot be upgraded",
        ));
    };
    let runtime = handshake_runtime;
    let stage_id: Arc<str> = Arc::from(runtime.config.stages[h.stage as usize].id.as_str());
    let (tx, rx) = mpsc::channel(64);
    let conn = Arc::new(Connection {
        id: id.clone(),
        stage_id,
        connected_at,
        source_ip: remote.ip(),
        user_agent,
        last_active: AtomicI64::new(i64::try_from(epoch_ms(connected_at)).unwrap_or(0)),
        sender: tx,
    });
    let session = Session {
        shared,
        conn: conn.clone(),
        remote,
        handle: h,
        headers,
        authorizer,
        usage_key,
        settings,
        labels: [labels[0].clone(), labels[1].clone()],
        live: hub.state.clone(),
        snapshot: runtime,
    };
    hub.registry.insert(conn);
    hub.metrics.open.with_label_values(&session.labels).inc();
    hub.tasks.send_modify(|n| *n += 1);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => session.run(upgraded, rx).await,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                session.end(None).await;
            }
        }
    });
    let mut resp = Response::new(ProxyBody::Empty);
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hs = resp.headers_mut();
    hs.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    hs.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    hs.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&accept_key(key.as_bytes())).expect("base64 is a valid value"),
    );
    Ok(resp)
}

fn labels(runtime: &Runtime, h: RouteHandle) -> [String; 2] {
    let api = runtime.config.apis[h.api as usize].id.clone();
    let stage = &runtime.config.stages[h.stage as usize].name;
    let stage = if h.deployment > 0 {
        format!("{stage}/Canary")
    } else {
        stage.clone()
    };
    [api, stage]
}

/// One connection's task state.
struct Session {
    shared: Arc<Shared>,
    conn: Arc<Connection>,
    remote: SocketAddr,
    handle: RouteHandle,
    headers: HeaderMap,
    authorizer: Option<auth::AuthorizerOutput>,
    usage_key: Option<String>,
    settings: WebSocketApi,
    labels: [String; 2],
    /// The served config, when the hub has it; else `snapshot`, the handshake's.
    live: Option<Arc<ArcSwap<Runtime>>>,
    snapshot: Arc<Runtime>,
}

/// How a connection ended: the close code sent or received and its reason.
type Ending = Option<(u16, String)>;

impl Session {
    /// The config a message runs on: the one served now.
    fn current(&self) -> Arc<Runtime> {
        self.live
            .as_ref()
            .map_or_else(|| self.snapshot.clone(), |l| l.load_full())
    }

    /// Serves the socket until it closes, then runs `$disconnect`.
    async fn run(self, upgraded: hyper::upgrade::Upgraded, mut rx: mpsc::Receiver<Command>) {
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_message_size(Some(self.settings.max_message_bytes as usize))
            .max_frame_size(Some(self.settings.max_frame_bytes as usize));
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        let (mut sink, mut stream) = ws.split();
        let idle = Duration::from_secs(self.settings.idle_timeout_seconds);
        let lifetime =
            tokio::time::sleep(Duration::from_secs(self.settings.max_connection_seconds));
        tokio::pin!(lifetime);
        let mut shutdown = self.shared.websockets.shutdown.subscribe();
        let close = |code: CloseCode, reason: &'static str| {
            Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            }))
        };
        let ending: Ending = loop {
            let last = self.conn.last_active.load(Ordering::Relaxed);
            let since =
                epoch_ms(SystemTime::now()).saturating_sub(u64::try_from(last).unwrap_or(0));
            let idle_left = idle.saturating_sub(Duration::from_millis(since));
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        self.conn.touch();
                        let reply = self.message(Bytes::from(t.as_bytes().to_vec()), false).await;
                        if let Some(reply) = reply
                            && sink.send(reply).await.is_err()
                        {
                            break Some((1006, "the client went away".into()));
                        }
                    }
                    Some(Ok(Message::Binary(b))) => {
                        self.conn.touch();
                        let reply = self.message(b, true).await;
                        if let Some(reply) = reply
                            && sink.send(reply).await.is_err()
                        {
                            break Some((1006, "the client went away".into()));
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                        self.conn.touch();
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let _ = sink.close().await;
                        break Some(frame.map_or((1005, String::new()), |f| {
                            (u16::from(f.code), f.reason.to_string())
                        }));
                    }
                    Some(Err(e)) => {
                        let (code, reason) = match &e {
                            WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
                                (CloseCode::Size, "Message too big")
                            }
                            WsError::Utf8(_) => (CloseCode::Invalid, "Invalid UTF-8"),
                            WsError::Protocol(_) => (CloseCode::Protocol, "Protocol error"),
                            _ => break Some((1006, e.to_string())),
                        };
                        let _ = sink.send(close(code, reason)).await;
                        break Some((u16::from(code), reason.to_string()));
                    }
                    None => break Some((1006, "the client went away".into())),
                },
                cmd = rx.recv() => match cmd {
                    Some(Command::Send(bytes)) => {
                        self.conn.touch();
                        let m = match String::from_utf8(bytes.to_vec()) {
                            Ok(s) => Message::Text(s.into()),
                            Err(_) => Message::Binary(bytes),
                        };
                        if sink.send(m).await.is_err() {
                            break Some((1006, "the client went away".into()));
                        }
                    }
                    Some(Command::Close) | None => {
                        let _ = sink.send(close(CloseCode::Normal, "")).await;
                        break Some((1000, "closed by @connections".into()));
                    }
                },
                _ = tokio::time::sleep(idle_left) => {
                    if self.conn.last_active.load(Ordering::Relaxed) == last {
                        let _ = sink.send(close(CloseCode::Away, "Going away")).await;
                        break Some((1001, "idle timeout".into()));
                    }
                }
                _ = &mut lifetime => {
                    let _ = sink.send(close(CloseCode::Away, "Going away")).await;
                    break Some((1001, "connection lifetime reached".into()));
                }
                _ = async { drop(shutdown.wait_for(|s| *s).await) } => {
                    let _ = sink.send(close(CloseCode::Away, "Going away")).await;
                    break Some((1001, "the gateway is shutting down".into()));
                }
            }
        };
        self.end(ending).await;
    }

    /// Forgets the connection and runs `$disconnect` (best effort).
    async fn end(self, ending: Ending) {
        let hub = self.shared.websockets.clone();
        hub.registry.remove(&self.conn.id);
        hub.metrics.open.with_label_values(&self.labels).dec();
        let runtime = self.current();
        if let Some(route) = self.route_of(&runtime, "$disconnect") {
            let ending = ending.unwrap_or((1006, String::new()));
            let _ = self
                .invoke(
                    runtime,
                    route,
                    EventType::Disconnect,
                    Bytes::new(),
                    false,
                    Some(ending),
                )
                .await;
        }
        hub.tasks.send_modify(|n| *n = n.saturating_sub(1));
    }

    /// The route `key` on the connection's API in `runtime` (the stage's deployment, if the
    /// config still has it).
    fn route_of(&self, runtime: &Runtime, key: &str) -> Option<RouteHandle> {
        let st = runtime
            .config
            .stages
            .iter()
            .position(|s| *s.id == *self.conn.stage_id)?;
        let d = (self.handle.deployment as usize).min(runtime.stages[st].deployments.len() - 1);
        let api = runtime.stages[st].deployments[d].api;
        let route = route_index(runtime, api, key)?;
        Some(RouteHandle {
            stage: st as u32,
            deployment: d as u32,
            api: api as u32,
            route: Some(route as u32),
        })
    }

    /// Routes a message and runs its integration; a two-way route's answer (or AWS's error
    /// frame) is what to send back.
    async fn message(&self, body: Bytes, binary: bool) -> Option<Message> {
        let hub = &self.shared.websockets;
        hub.metrics.messages.with_label_values(&self.labels).inc();
        let runtime = self.current();
        let selected = if binary {
            None
        } else {
            select_route(&body, &self.settings.route_selection)
        };
        let route = selected
            .as_deref()
            .and_then(|k| self.route_of(&runtime, k))
            .or_else(|| self.route_of(&runtime, "$default"));
        let request_id = crate::pipeline::ctx::RequestId::generate();
        let Some(route) = route else {
            hub.metrics
                .client_errors
                .with_label_values(&self.labels)
                .inc();
            return Some(error_frame("Forbidden", &self.conn.id, request_id.as_str()));
        };
        let two_way = runtime.config.apis[route.api as usize].routes
            [route.route.expect("a route") as usize]
            .two_way;
        match self
            .invoke(runtime, route, EventType::Message, body, binary, None)
            .await
        {
            Ok((status, answer)) if status.is_success() => two_way.then(|| frame(answer)),
            Ok((_, answer)) => {
                hub.metrics
                    .integration_errors
                    .with_label_values(&self.labels)
                    .inc();
                two_way.then(|| frame(answer))
            }
            Err((id, message, client)) => {
                let family = if client {
                    &hub.metrics.client_errors
                } else {
                    &hub.metrics.execution_errors
                };
                family.with_label_values(&self.labels).inc();
                Some(error_frame(message, &self.conn.id, &id))
            }
        }
    }

    /// Runs `route`'s integration for an event: a request context like a method's (the
    /// handshake's authorizer output, `$context.connectionId`, ...), the integration, then
    /// the metrics and access-log line. A message is metered first by its route's and the
    /// stage's throttles. `Ok`: the integration's status and body; `Err`: a gateway refusal
    /// or failure (request id, AWS's message, whether it is the client's).
    async fn invoke(
        &self,
        runtime: Arc<Runtime>,
        route: RouteHandle,
        event: EventType,
        body: Bytes,
        binary: bool,
        disconnect: Option<(u16, String)>,
    ) -> Result<(StatusCode, Bytes), (String, &'static str, bool)> {
        let mut req = Request::new(());
        *req.method_mut() = http::Method::POST;
        *req.headers_mut() = if event == EventType::Message {
            HeaderMap::new()
        } else {
            self.headers.clone()
        };
        let base = &runtime.config.stages[route.stage as usize].base_path;
        *req.uri_mut() = format!("{}/", base).parse().unwrap_or_default();
        let mut ctx = RequestCtx::new(runtime, self.remote.ip(), &req);
        // `domainName` of every event: the handshake's Host.
        ctx.host = self.headers.get(header::HOST).cloned();
        ctx.handle = Some(route);
        ctx.authorizer = self.authorizer.clone();
        ctx.usage_identifier_key = self.usage_key.clone();
        // Selection by the message: the template's key and the model's.
        let route_cfg = ctx.route_config();
        let pick = |path: &[String]| {
            (event == EventType::Message && !path.is_empty())
                .then(|| select_route(&body, path))
                .flatten()
        };
        let template_key =
            route_cfg.and_then(|r| pick(&r.template_selection).map(|k| k.to_ascii_lowercase()));
        let model_key = route_cfg
            .and_then(|r| pick(&r.model_selection))
            .unwrap_or_else(|| "$default".to_string());
        ctx.websocket = Some(Box::new(WsContext {
            connection_id: self.conn.id.clone(),
            connected_at: self.conn.connected_at,
            event_type: event,
            message_id: (event == EventType::Message).then(new_id),
            binary,
            disconnect,
            template_key,
        }));
        let (head, ()) = req.into_parts();
        if event == EventType::Message
            && let Err(e) = throttle::apply(&self.shared.limits, &mut ctx).await
        {
            let id = ctx.request_id.as_str().to_string();
            let message = e.response_type().default_message();
            let resp = respond::gateway_response(&mut ctx, e);
            respond::finish(&self.shared, ctx, resp);
            return Err((id, message, true));
        }
        // The route's message model (`requestModels`).
        let validation = ctx.stage_route().and_then(|r| r.validation.clone());
        if event == EventType::Message
            && let Some(v) = validation
        {
            let checked = match &*v {
                crate::pipeline::validate::RouteValidation::Broken(why) => Err(
                    GatewayError::ApiConfigurationError(format!("request model: {why}")),
                ),
                _ => crate::pipeline::validate::check_body_keyed(&mut ctx, &model_key, &body, &v),
            };
            if let Err(e) = checked {
                let id = ctx.request_id.as_str().to_string();
                let client = e.response_type().default_message() == "Invalid request body";
                let message = if client {
                    "Invalid request body"
                } else {
                    "Internal server error"
                };
                let resp = respond::gateway_response(&mut ctx, e);
                respond::finish(&self.shared, ctx, resp);
                return Err((id, message, client));
            }
        }
        let conn = ConnInfo::new(self.remote);
        let ex = Exchange {
            shared: &self.shared,
            conn: &conn,
            ctx: &mut ctx,
            head,
            body: ProxyBody::full(body),
        };
        let result = integrate::call(ex).await;
        let id = ctx.request_id.as_str().to_string();
        match result {
            Ok(resp) => {
                let (parts, body) = resp.into_parts();
                let bytes = body
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                let logged = Response::from_parts(parts, ProxyBody::full(bytes.clone()));
                let status = logged.status();
                respond::finish(&self.shared, ctx, logged);
                Ok((status, bytes))
            }
            Err(e) => {
                let resp = respond::gateway_response(&mut ctx, e);
                respond::finish(&self.shared, ctx, resp);
                Err((id, "Internal server error", false))
            }
        }
    }
}

/// An answer as a frame: text when it is UTF-8.
fn frame(body: Bytes) -> Message {
    match String::from_utf8(body.to_vec()) {
        Ok(s) => Message::Text(s.into()),
        Err(_) => Message::Binary(body),
    }
}

/// AWS's error frame: `{"message": ..., "connectionId": ..., "requestId": ...}`.
fn error_frame(message: &str, connection_id: &str, request_id: &str) -> Message {
    Message::Text(
        serde_json::json!({
            "message": message,
            "connectionId": connection_id,
            "requestId": request_id,
        })
        .to_string()
        .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6455 1.3's example handshake.
    #[test]
    fn the_accept_key_is_rfc_6455s() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    /// AWS developer guide, "WebSocket selection expressions": `$request.body.action`
    /// selects the route by the message's `action`; no match (or not JSON) goes to
    /// `$default`.
    #[test]
    fn messages_select_their_route_by_the_expression() {
        let path = vec!["action".to_string()];
        assert_eq!(
            select_route(br#"{"action":"sendmessage","data":"hi"}"#, &path).as_deref(),
            Some("sendmessage")
        );
        assert_eq!(select_route(br#"{"data":"hi"}"#, &path), None);
        assert_eq!(select_route(b"not json", &path), None);
        assert_eq!(select_route(br#"{"action":{"x":1}}"#, &path), None);
        assert_eq!(
            select_route(br#"{"action":7}"#, &path).as_deref(),
            Some("7")
        );
        let nested = vec!["a".to_string(), "b".to_string()];
        assert_eq!(
            select_route(br#"{"a":{"b":"join"}}"#, &nested).as_deref(),
            Some("join")
        );
    }

    /// Route selection takes any bytes (fixed-seed pseudo-random, truncated and nested JSON,
    /// invalid UTF-8) without failing; what is not JSON selects nothing (`$default`).
    #[test]
    fn route_selection_takes_any_bytes() {
        let path = vec!["action".to_string()];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..2000usize {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| (seed.rotate_left(i as u32) & 0xff) as u8)
                .collect();
            let _ = select_route(&bytes, &path);
            let json = br#"{"action":"sendmessage","data":[1,2,{"x":"\\u00e9"}]}"#;
            let _ = select_route(&json[..n % json.len()], &path);
        }
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(select_route(deep.as_bytes(), &path), None);
        assert_eq!(select_route(&[0xff, 0xfe, b'{'], &path), None);
    }

    #[test]
    fn connection_ids_are_unique_and_look_like_aws_ones() {
        let a = new_id();
        assert_eq!(a.len(), 16);
        assert_ne!(a, new_id());
    }

    #[tokio::test]
    async fn the_registry_sends_to_open_connections_of_their_stage_only() {
        let r = LocalRegistry::default();
        let (tx, mut rx) = mpsc::channel(1);
        r.insert(Arc::new(Connection {
            id: "c1".into(),
            stage_id: "stage/default/prod".into(),
            connected_at: SystemTime::now(),
            source_ip: "127.0.0.1".parse().unwrap(),
            user_agent: None,
            last_active: AtomicI64::new(0),
            sender: tx,
        }));
        assert_eq!(
            r.send("stage/default/prod", "c1", Command::Send(Bytes::from("hi"))),
            Ok(())
        );
        assert!(matches!(rx.recv().await, Some(Command::Send(b)) if b == "hi"));
        assert_eq!(
            r.send("stage/default/dev", "c1", Command::Close),
            Err(Gone::Unknown)
        );
        assert_eq!(
            r.send("stage/default/prod", "c2", Command::Close),
            Err(Gone::Unknown)
        );
        r.send("stage/default/prod", "c1", Command::Close).unwrap();
        assert_eq!(
            r.send("stage/default/prod", "c1", Command::Close),
            Err(Gone::Full)
        );
        r.remove("c1");
        assert!(r.is_empty());
    }
}
