//! [`RequestCtx`]: the per-request state every phase reads and writes, and the `$context`
//! values the access log renders. One per request, created at entry, moved to the access log
//! writer at the end.

use crate::body::ProxyBody;
use crate::runtime::{CompiledApi, CompiledStage, Deployment, RouteHandle, Runtime, StageRoute};
use http::{HeaderValue, Method, Request, Uri, Version};
use portico_config::{Api, GatewayResponseType, Route, Stage};
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// `X-Amzn-Trace-Id`.
pub const X_AMZN_TRACE_ID: http::header::HeaderName =
    http::header::HeaderName::from_static("x-amzn-trace-id");

/// A request id: a random UUID v4 in its 36-character hyphenated form.
#[derive(Clone, Copy)]
pub struct RequestId([u8; 36]);

thread_local! {
    // wyrand state, seeded once per thread from the OS generator through uuid.
    static RNG: Cell<u64> = Cell::new(uuid::Uuid::new_v4().as_u64_pair().0 | 1);
}

/// A random number from the per-thread generator (not for secrets).
pub fn next_u64() -> u64 {
    RNG.with(|s| {
        let x = s.get().wrapping_add(0xa076_1d64_78bd_642f);
        s.set(x);
        let t = u128::from(x) * u128::from(x ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) ^ t) as u64
    })
}

impl RequestId {
    /// A fresh id. Uses a per-thread non-cryptographic generator: ids must be unique, not
    /// unguessable, and this keeps a syscall off the request path.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&next_u64().to_le_bytes());
        bytes[8..].copy_from_slice(&next_u64().to_le_bytes());
        let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
        let mut buf = [0u8; 36];
        id.hyphenated().encode_lower(&mut buf);
        RequestId(buf)
    }

    /// The hyphenated form.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a hyphenated UUID is ASCII")
    }

    /// As a header value (`x-amzn-RequestId`).
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.0).expect("a hyphenated UUID is a valid header value")
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `X-Amzn-Trace-Id`: the client's, when it carries a valid X-Ray root
/// (`Root=1-<8 hex>-<24 hex>`), else one the gateway makes (`Root=1-<epoch seconds, 8 hex>-<96
/// random bits, 24 hex>`), as API Gateway does ("adds a tracing header to incoming HTTP
/// requests that don't already have one", AWS X-Ray developer guide, "Amazon API Gateway
/// active tracing support"). Sent to every integration; `$context.xrayTraceId` is its root.
#[derive(Clone, Debug)]
pub enum TraceId {
    /// The client's header (its `Root=` field valid).
    Client(HeaderValue),
    /// The gateway's: `Root=1-<8 hex>-<24 hex>`.
    Made([u8; TRACE_ROOT_LEN]),
}

/// `Root=1-` + 8 + `-` + 24.
const TRACE_ROOT_LEN: usize = 40;

/// A byte's two lower-case hex digits.
static HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 0xf]];
        i += 1;
    }
    t
};

impl TraceId {
    /// The client's header when valid, else a new one for a request that arrived at `now`.
    pub fn of(client: Option<&HeaderValue>, now: SystemTime) -> Self {
        if let Some(v) = client.filter(|v| Self::root_of(v.as_bytes()).is_some()) {
            return TraceId::Client(v.clone());
        }
        let secs = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()) as u32;
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&secs.to_be_bytes());
        raw[4..12].copy_from_slice(&next_u64().to_le_bytes());
        raw[12..].copy_from_slice(&next_u64().to_le_bytes()[..4]);
        let mut hex = [0u8; 32];
        for (pair, b) in hex.chunks_exact_mut(2).zip(raw) {
            pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
        }
        let mut buf = [0u8; TRACE_ROOT_LEN];
        buf[..7].copy_from_slice(b"Root=1-");
        buf[7..15].copy_from_slice(&hex[..8]);
        buf[15] = b'-';
        buf[16..].copy_from_slice(&hex[8..]);
        TraceId::Made(buf)
    }

    /// The trace id in `v` (`1-xxxxxxxx-xxxxxxxxxxxxxxxxxxxxxxxx`), when `v` has a valid
    /// `Root=` field.
    fn root_of(v: &[u8]) -> Option<&str> {
        let v = std::str::from_utf8(v).ok()?;
        let root = v.split(';').find_map(|f| f.trim().strip_prefix("Root="))?;
        let b = root.as_bytes();
        let hex = |s: &[u8]| s.iter().all(u8::is_ascii_hexdigit);
        (b.len() == 35 && b.starts_with(b"1-") && b[10] == b'-' && hex(&b[2..10]) && hex(&b[11..]))
            .then_some(root)
    }

    /// The header value to send.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            TraceId::Client(v) => v.as_bytes(),
            TraceId::Made(b) => b,
        }
    }

    /// The header value to send, as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("checked or made ASCII")
    }

    /// `$context.xrayTraceId`: the root trace id.
    pub fn root(&self) -> &str {
        Self::root_of(self.as_bytes()).expect("checked when made")
    }
}

/// One request in flight as the request phases see it: service-wide and per-connection
/// state, the request's context, its head, and its body.
///
/// Every request phase is `phase(&mut Exchange) -> Result<Flow, GatewayError>` (async where
/// it waits); the integration, last, turns the exchange into the response.
pub struct Exchange<'a> {
    /// Service-wide state (an `Arc`: a WebSocket connection keeps it past the request).
    pub shared: &'a Arc<Shared>,
    /// The connection the request came on.
    pub conn: &'a ConnInfo,
    /// Per-request state; the response phases and the access log read it after the request
    /// phases.
    pub ctx: &'a mut RequestCtx,
    /// The request head (the client's hop-by-hop headers removed at entry).
    pub head: http::request::Parts,
    /// The client's body (`ProxyBody::Incoming`) until the limits phase reads it; then what
    /// the integration sends (streamed, buffered, or empty).
    pub body: ProxyBody,
}

/// What a request phase decides when it may answer by itself: go on to the next phase, or
/// answer now (e.g. a CORS preflight). A refusal is the phase's `Err(GatewayError)`.
pub enum Flow {
    /// Go on.
    Continue,
    /// Answer with this response; no later phase runs (boxed: answering early is the rare
    /// case, and `Continue` should cost a word).
    Answer(Box<http::Response<crate::body::ProxyBody>>),
}

/// A header that must come at most once came twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentTwice;

/// The value of a header that must come at most once (`Host`, an identity source,
/// `x-api-key`): a request that sends two must not be judged by whichever one a component
/// happens to read, so the caller refuses it.
pub fn one_value(
    headers: &http::HeaderMap,
    name: impl http::header::AsHeaderName,
) -> Result<Option<&HeaderValue>, SentTwice> {
    let mut all = headers.get_all(name).iter();
    match (all.next(), all.next()) {
        (Some(_), Some(_)) => Err(SentTwice),
        (first, _) => Ok(first),
    }
}

/// The entry checks: the request's `Host` (400 when it makes the request malformed), and the
/// client's hop-by-hop headers (and those its `Connection` names), which go before any phase
/// reads the headers or maps its own into them: `Connection: x-user-id` cannot remove the
/// caller id that a mapping sets later.
pub fn entry(ex: &mut Exchange<'_>) -> Result<Flow, super::error::GatewayError> {
    if let Some(why) = ex.ctx.bad_host {
        return Err(super::error::GatewayError::BadRequest(why));
    }
    // A WebSocket handshake is told by `Upgrade: websocket`, a hop-by-hop header: noted
    // before it goes.
    ex.ctx.websocket_upgrade = ex
        .head
        .headers
        .get(http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    crate::hop_by_hop::strip(&mut ex.head.headers);
    Ok(Flow::Continue)
}

/// Service-wide state shared by every request.
pub struct Shared {
    /// Access log writer.
    pub access_log: crate::access_log::AccessLog,
    /// `X-Forwarded-Port` (the public listener's port).
    pub forwarded_port: HeaderValue,
    /// The public listener's port, as a number.
    pub listen_port: u16,
    /// Usage-plan and throttle counters (outside `Runtime`: reloads keep them).
    pub limits: crate::usage_plan::Limits,
    /// Per-key request and throttle counters.
    pub key_metrics: crate::metrics::KeyMetrics,
    /// What all buffered request bodies may hold together.
    pub buffers: std::sync::Arc<crate::buffer::BufferBudget>,
    /// How slowly a client may send its request body.
    pub body_timeouts: crate::body::BodyTimeouts,
    /// The stages' response caches (outside `Runtime`: reloads keep the entries).
    pub cache: std::sync::Arc<crate::cache::ResponseCache>,
    /// WebSocket connections: the registry, their metrics, shutdown.
    pub websockets: std::sync::Arc<crate::websocket::Hub>,
    /// Whether `@connections` is served only on the management listener
    /// (`--management-listen`).
    pub management_separate: bool,
}

/// Per-connection values, computed once per accepted connection.
#[derive(Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub remote: std::net::SocketAddr,
    /// The client's IP as a header value (`X-Forwarded-For`).
    pub source_ip_header: HeaderValue,
    /// The integration timeout's timer, reused by the connection's requests.
    pub timer: super::deadline::ConnTimer,
    /// Raw request heads, when the connection captures them (see `client_io::RawHead`).
    pub raw_head: Option<crate::client_io::RawHead>,
    /// Whether it came on the management listener (`--management-listen`: `@connections`
    /// only).
    pub management: bool,
}

impl ConnInfo {
    /// Values for a connection from `remote`.
    pub fn new(remote: std::net::SocketAddr) -> Self {
        ConnInfo {
            remote,
            source_ip_header: HeaderValue::from_str(&remote.ip().to_string())
                .expect("an IP address is a valid header value"),
            timer: super::deadline::ConnTimer::default(),
            raw_head: None,
            management: false,
        }
    }
}

/// Per-request state (Pingora's `CTX`). Phases fill it in order; the access log and metrics
/// read it at the end.
pub struct RequestCtx {
    /// The config snapshot this request runs on (loaded once at entry).
    pub runtime: Arc<Runtime>,
    /// `$context.requestId`.
    pub request_id: RequestId,
    /// When the request arrived (monotonic).
    pub start: Instant,
    /// When the request arrived (wall clock): `requestTime`, `requestTimeEpoch`.
    pub request_time: SystemTime,
    /// `$context.httpMethod`.
    pub http_method: Method,
    /// The request URI as received.
    pub uri: Uri,
    /// The normalised path when it differs from `uri.path()` beyond a trailing slash.
    pub normalised_path: Option<Box<str>>,
    /// `$context.protocol`.
    pub protocol: Version,
    /// `$context.identity.sourceIp`.
    pub source_ip: IpAddr,
    /// `$context.identity.userAgent`.
    pub user_agent: Option<HeaderValue>,
    /// The Host header (`$context.domainName`).
    pub host: Option<HeaderValue>,
    /// Why the request's `Host` makes it malformed (RFC 9112 3.2: an HTTP/1.1 request carries
    /// exactly one; HTTP/1.0 at most one): answered 400 before routing, since stages are
    /// selected by host and two would make the choice depend on which one is read.
    pub bad_host: Option<&'static str>,
    /// Where routing got: stage, deployment, and route once matched (set by `route`).
    pub handle: Option<RouteHandle>,
    /// Path parameter values (canonical, still percent-encoded) as ranges of [`Self::path`],
    /// in the order the route's template names them.
    pub params: Vec<Range<usize>>,
    /// `$context.status`.
    pub status: u16,
    /// `$context.responseLength` (when known at response head time).
    pub response_length: Option<u64>,
    /// `$context.responseLatency`.
    pub response_latency: Duration,
    /// `$context.integrationLatency` (backend calls only).
    pub integration_latency: Option<Duration>,
    /// `$context.integration.status`.
    pub integration_status: Option<u16>,
    /// `$context.error.responseType` (and the message) when a gateway response was sent.
    pub error: Option<GatewayResponseType>,
    /// `$context.error.message` when it is not the type's default (e.g. BAD_REQUEST_PARAMETERS'
    /// `Missing required request parameters: [page]`).
    pub error_message: Option<Box<str>>,
    /// `$context.error.validationErrorString`, set by the validate phase.
    pub validation_error: Option<Box<str>>,
    /// The API key source AUTHORIZER reads this: the `usageIdentifierKey` a Lambda-style
    /// authorizer returned. Set by the authorizer phase (which runs before `api_key`); `None`
    /// means no key, so a method requiring one answers 403.
    pub usage_identifier_key: Option<String>,
    /// The API key and usage plan the request is metered on (phase `api_key`).
    pub api_key: Option<super::api_key::KeyMatch>,
    /// `RateLimit-*` / `Retry-After` values to send (phase `throttle`).
    pub rate_limit: Option<super::throttle::RateLimitHeaders>,
    /// `$context.authorizer.*`: set by the auth phase when the route has an authorizer.
    pub authorizer: Option<super::auth::AuthorizerOutput>,
    /// `X-Amzn-Trace-Id` sent to integrations; `$context.xrayTraceId`.
    pub trace_id: TraceId,
    /// The public listener's port (`X-Forwarded-Port` in events); set by the service.
    pub forwarded_port: u16,
    /// The request's raw head, when the connection captured it: the client's spelling of
    /// header names for REST-style events.
    pub raw_head: Option<bytes::Bytes>,
    /// WebSocket APIs: the connection and event this request is (`$context.connectionId`,
    /// `eventType`, ...).
    pub websocket: Option<Box<crate::websocket::WsContext>>,
    /// Whether the request asked for a WebSocket upgrade (`Upgrade: websocket`).
    pub websocket_upgrade: bool,
}

impl RequestCtx {
    /// A context for `req` arriving from `source_ip`, on `runtime`.
    pub fn new<B>(runtime: Arc<Runtime>, source_ip: IpAddr, req: &Request<B>) -> Self {
        let headers = req.headers();
        let host = one_value(headers, http::header::HOST);
        let request_time = SystemTime::now();
        RequestCtx {
            runtime,
            request_id: RequestId::generate(),
            start: Instant::now(),
            // A scan, not a hash lookup: a request has few headers, and this one is rare.
            trace_id: TraceId::of(
                headers
                    .iter()
                    .find_map(|(n, v)| (*n == X_AMZN_TRACE_ID).then_some(v)),
                request_time,
            ),
            forwarded_port: 80,
            raw_head: None,
            request_time,
            http_method: req.method().clone(),
            uri: req.uri().clone(),
            normalised_path: None,
            protocol: req.version(),
            source_ip,
            user_agent: headers.get(http::header::USER_AGENT).cloned(),
            host: host.ok().flatten().cloned().or_else(|| {
                req.uri()
                    .authority()
                    .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            }),
            bad_host: match host {
                Err(SentTwice) => Some("more than one Host header"),
                Ok(None) if req.version() == Version::HTTP_11 => {
                    Some("an HTTP/1.1 request without Host")
                }
                Ok(_) => None,
            },
            handle: None,
            params: Vec::new(),
            status: 0,
            response_length: None,
            response_latency: Duration::ZERO,
            integration_latency: None,
            integration_status: None,
            error: None,
            error_message: None,
            validation_error: None,
            usage_identifier_key: None,
            api_key: None,
            rate_limit: None,
            authorizer: None,
            websocket: None,
            websocket_upgrade: false,
        }
    }

    /// A context for a request whose head could not be parsed (method and path unknown:
    /// `-` in the access log).
    pub fn unparsed(runtime: Arc<Runtime>, source_ip: IpAddr) -> Self {
        let mut ctx = RequestCtx::new(runtime, source_ip, &Request::new(()));
        ctx.http_method = Method::from_bytes(b"-").expect("- is a token");
        ctx.normalised_path = Some("-".into());
        ctx.bad_host = None;
        ctx
    }

    /// `$context.path`: the normalised request path (base path included).
    pub fn path(&self) -> &str {
        self.normalised_path
            .as_deref()
            .unwrap_or_else(|| self.uri.path())
    }

    /// The compiled stage, once routed.
    #[inline]
    pub fn stage(&self) -> Option<&CompiledStage> {
        self.handle.map(|h| &*self.runtime.stages[h.stage as usize])
    }

    /// The stage as configured, once routed.
    #[inline]
    pub fn stage_config(&self) -> Option<&Stage> {
        self.handle
            .map(|h| &self.runtime.config.stages[h.stage as usize])
    }

    /// The deployment serving the request, once routed.
    pub fn deployment(&self) -> Option<&Deployment> {
        self.handle.map(|h| self.runtime.deployment(h))
    }

    /// The compiled API of the deployment, once routed.
    #[inline]
    pub fn api(&self) -> Option<&CompiledApi> {
        self.handle.map(|h| &*self.runtime.apis[h.api as usize])
    }

    /// The API as configured, once routed.
    #[inline]
    pub fn api_config(&self) -> Option<&Api> {
        self.handle
            .map(|h| &self.runtime.config.apis[h.api as usize])
    }

    /// The route as configured, once matched.
    #[inline]
    pub fn route_config(&self) -> Option<&Route> {
        let h = self.handle?;
        Some(&self.runtime.config.apis[h.api as usize].routes[h.route? as usize])
    }

    /// The route as the deployment serves it, once matched.
    #[inline]
    pub fn stage_route(&self) -> Option<&StageRoute> {
        self.runtime.stage_route(self.handle?)
    }

    /// The `i`-th path parameter value, canonical (percent-encoded where needed).
    pub fn param(&self, i: usize) -> &str {
        &self.path()[self.params[i].clone()]
    }

    /// `pathParameters`: names and decoded values.
    pub fn path_parameters(&self) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
        let names = self
            .stage_route()
            .map(|r| r.param_names.as_slice())
            .unwrap_or_default();
        names
            .iter()
            .enumerate()
            .filter(|(i, _)| *i < self.params.len())
            .map(|(i, n)| (&**n, super::route::decode_value(self.param(i))))
    }

    /// `stageVariables`: the deployment's.
    pub fn stage_variables(&self) -> Option<&BTreeMap<String, String>> {
        self.deployment().map(|d| &d.variables)
    }
}

/// `(name, value)` pairs of a query string in order, decoded (`%XX`, `+` as a space); a pair
/// without `=` has an empty value.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// X-Ray's form (AWS X-Ray developer guide, "Tracing header": `Root=1-5759e988-
    /// bd862e3fe1be46a994272793`: version 1, epoch seconds in 8 hex digits, 96 bits in 24): a
    /// valid client header is kept whole, anything else is replaced by a new root.
    #[test]
    fn trace_ids_keep_a_valid_client_root_and_make_one_otherwise() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(0x5759_e988);
        let made = TraceId::of(None, t);
        let v = made.as_str();
        assert_eq!(v.len(), 40);
        assert!(v.starts_with("Root=1-5759e988-"), "{v}");
        assert_eq!(made.root(), &v[5..]);
        assert_ne!(TraceId::of(None, t).root(), made.root(), "random part");
        let client = HeaderValue::from_static(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        );
        let kept = TraceId::of(Some(&client), t);
        assert_eq!(kept.as_bytes(), client.as_bytes());
        assert_eq!(kept.root(), "1-5759e988-bd862e3fe1be46a994272793");
        for bad in [
            "Root=1-xyz",
            "Root=2-5759e988-bd862e3fe1be46a994272793",
            "Sampled=1",
            "",
        ] {
            let v = HeaderValue::from_str(bad).unwrap();
            let t2 = TraceId::of(Some(&v), t);
            assert_ne!(t2.as_bytes(), v.as_bytes(), "{bad:?} replaced");
            assert!(t2.root().starts_with("1-5759e988-"));
        }
    }

    #[test]
    fn request_ids_are_distinct_v4_uuids() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_ne!(a.as_str(), b.as_str());
        let u = uuid::Uuid::parse_str(a.as_str()).unwrap();
        assert_eq!(u.get_version_num(), 4);
        assert_eq!(a.header_value().to_str().unwrap(), a.as_str());
    }
}
