//! In-process tests of `handle`: the proxy's connection handler on 127.0.0.1:0, a hyper
//! backend on 127.0.0.1:0 that records what it receives, and a hyper client.

use super::Shared;
use super::route::tests::{mk_api, mk_route, mk_stage};
use crate::access_log::AccessLog;
use crate::drain::Drain;
use crate::metrics::Metrics;
use crate::pool::Pools;
use crate::runtime::Runtime;
use crate::server::{http_builder, spawn_connection};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portico_config::{
    AccessLog as AccessLogSettings, GatewayConfig, GatewayResponseOverride, GatewayResponseType,
    HttpIntegration, Integration, Protocol, SCHEMA_VERSION,
};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// What the backend saw: method, path and query, headers, body.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    uri: String,
    headers: http::HeaderMap,
    body: Bytes,
}

async fn start_backend() -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let (addr, seen, _) = start_counting_backend().await;
    (addr, seen)
}

/// Also counts accepted connections.
async fn start_counting_backend() -> (
    SocketAddr,
    Arc<Mutex<Vec<Seen>>>,
    Arc<std::sync::atomic::AtomicUsize>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_ = seen.clone();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let accepted_ = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            accepted_.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let seen = seen_.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        if parts.uri.path() == "/slow" {
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        let body = body.collect().await.unwrap().to_bytes();
                        seen.lock().unwrap().push(Seen {
                            method: parts.method.to_string(),
                            uri: parts.uri.to_string(),
                            headers: parts.headers,
                            body,
                        });
                        let mut resp =
                            Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
                        resp.headers_mut()
                            .insert("connection", "keep-alive".parse().unwrap());
                        resp.headers_mut().insert("x-backend", "1".parse().unwrap());
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen, accepted)
}

struct Proxy {
    addr: SocketAddr,
    state: Arc<ArcSwap<Runtime>>,
    metrics: Arc<Metrics>,
    pools: Arc<Pools>,
    log: Arc<Mutex<Vec<u8>>>,
    shared: Arc<Shared>,
    _graceful: Arc<Drain>,
}

#[derive(Clone)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Service-wide state for tests; access-log lines go to `log`.
fn mk_shared(metrics: &Metrics, log: &Arc<Mutex<Vec<u8>>>, port: u16) -> Arc<Shared> {
    Arc::new(Shared {
        access_log: AccessLog::start(SharedBuf(log.clone()), metrics.access_log_dropped.clone()),
        forwarded_port: port.into(),
        listen_port: port,
        limits: Default::default(),
        key_metrics: metrics.keys.clone(),
        buffers: crate::buffer::BufferBudget::new(1 << 30),
        body_timeouts: Default::default(),
        cache: Arc::new(crate::cache::ResponseCache::in_process()),
        websockets: Arc::new(crate::websocket::Hub::new(
            None,
            crate::websocket::WsMetrics::new(None),
        )),
        management_separate: false,
    })
}

async fn start_proxy(config: GatewayConfig) -> Proxy {
    config.validate().unwrap();
    let metrics = Arc::new(Metrics::new());
    let pools = Pools::new();
    let state = Arc::new(ArcSwap::from_pointee(Runtime::build(
        config, &metrics, &pools,
    )));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let shared = mk_shared(&metrics, &log, addr.port());
    let graceful = Arc::new(Drain::new());
    {
        let (shared, state, graceful) = (shared.clone(), state.clone(), graceful.clone());
        tokio::spawn(async move {
            let http = http_builder(16384, std::time::Duration::from_secs(30));
            loop {
                let (stream, remote) = listener.accept().await.unwrap();
                spawn_connection(stream, remote, &shared, &state, &http, &graceful, false);
            }
        });
    }
    Proxy {
        addr,
        state,
        metrics,
        pools,
        log,
        shared,
        _graceful: graceful,
    }
}

fn mk_config(protocol: Protocol, routes: Vec<portico_config::Route>) -> GatewayConfig {
    let mut api = mk_api(protocol, &[]);
    api.routes = routes;
    let mut stage = mk_stage("stage/default/dev", "/dev", &[]);
    stage.api_id = api.id.clone();
    GatewayConfig {
        schema_version: SCHEMA_VERSION,
        apis: vec![api],
        stages: vec![stage],
        ..GatewayConfig::empty()
    }
}

fn http_route(verb: &str, path: &str, uri: &str) -> portico_config::Route {
    let mut r = mk_route(verb, path);
    r.integration = Integration::HttpProxy(HttpIntegration {
        uri: uri.into(),
        http_method: None,
        request_parameters: Default::default(),
    });
    r
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn send(addr: SocketAddr, req: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build_http();
    let (scheme_less, rest) = (format!("http://{addr}"), req.uri().to_string());
    let (mut parts, body) = req.into_parts();
    parts.uri = format!("{scheme_less}{rest}").parse().unwrap();
    let resp = client
        .request(Request::from_parts(parts, body))
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .body(Full::new(Bytes::new()).boxed())
        .unwrap()
}

#[tokio::test]
async fn mock_routes_answer_from_config_with_a_request_id() {
    let p = start_proxy(mk_config(Protocol::Rest, vec![mk_route("GET", "/pets")])).await;
    let (status, headers, body) = send(p.addr, get("/dev/pets")).await;
    assert_eq!(status, 200);
    assert_eq!(body, "GET /pets");
    let id = headers["x-amzn-requestid"].to_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
}

#[tokio::test]
async fn unknown_routes_answer_403_for_rest_and_404_for_http_apis() {
    let p = start_proxy(mk_config(
        Protocol::Rest,
        vec![mk_route("GET", "/pets"), mk_route("POST", "/orders")],
    ))
    .await;
    for path in ["/dev/nope", "/dev/orders", "/other"] {
        let (status, headers, body) = send(p.addr, get(path)).await;
        assert_eq!(status, 403, "{path}");
        assert_eq!(body, r#"{"message":"Missing Authentication Token"}"#);
        assert!(headers.contains_key("x-amzn-requestid"));
    }
    let p = start_proxy(mk_config(Protocol::Http, vec![mk_route("GET", "/pets")])).await;
    let (status, _, body) = send(p.addr, get("/dev/nope")).await;
    assert_eq!(status, 404);
    assert_eq!(body, r#"{"message":"Not Found"}"#);
}

#[tokio::test]
async fn gateway_response_overrides_render_context_variables() {
    let mut config = mk_config(Protocol::Rest, vec![mk_route("GET", "/pets")]);
    config.apis[0].gateway_responses.insert(
        GatewayResponseType::MissingAuthenticationToken,
        GatewayResponseOverride {
            status_code: Some(404),
            headers: [("x-portico".to_string(), "yes".to_string())].into(),
            body_template: Some(
                r#"{"error":$context.error.messageString,"type":"$context.error.responseType","stage":"$context.stage","id":"$context.requestId","raw":"$context.error.message"}"#
                    .into(),
            ),
        },
    );
    let p = start_proxy(config).await;
    let (status, headers, body) = send(p.addr, get("/dev/nope")).await;
    assert_eq!(status, 404);
    assert_eq!(headers["x-portico"], "yes");
    let id = headers["x-amzn-requestid"].to_str().unwrap();
    assert_eq!(
        body,
        format!(
            r#"{{"error":"Missing Authentication Token","type":"MISSING_AUTHENTICATION_TOKEN","stage":"dev","id":"{id}","raw":"Missing Authentication Token"}}"#
        )
    );
}

#[tokio::test]
async fn http_proxy_passes_the_request_through_with_parameters_and_query() {
    let (backend, seen) = start_backend().await;
    let mut config = mk_config(
        Protocol::Rest,
        vec![
            http_route(
                "ANY",
                "/items/{id}",
                "http://${stageVariables.backend}/v1/items/{id}",
            ),
            http_route(
                "ANY",
                "/files/{proxy+}",
                "http://${stageVariables.backend}/f/{proxy}",
            ),
        ],
    );
    config.stages[0]
        .variables
        .insert("backend".into(), backend.to_string());
    let p = start_proxy(config).await;
    let req = Request::post("/dev/items/a%2Fb?x=1&y=2")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "1")
        .header("x-forwarded-for", "10.0.0.9")
        .header("x-custom", "kept")
        .body(Full::new(Bytes::from_static(b"hello")).boxed())
        .unwrap();
    let (status, headers, body) = send(p.addr, req).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "{\"ok\":true}"));
    assert_eq!(headers["x-backend"], "1");
    assert!(!headers.contains_key("connection") || headers["connection"] != "keep-alive");
    let s = seen.lock().unwrap().pop().unwrap();
    assert_eq!(s.method, "POST");
    assert_eq!(s.uri, "/v1/items/a%2Fb?x=1&y=2");
    assert_eq!(s.body, "hello");
    assert_eq!(s.headers["host"], backend.to_string().as_str());
    assert_eq!(s.headers["x-forwarded-for"], "10.0.0.9, 127.0.0.1");
    assert_eq!(s.headers["x-forwarded-proto"], "http");
    assert_eq!(s.headers["x-custom"], "kept");
    assert!(!s.headers.contains_key("x-hop"));

    let (status, _, _) = send(p.addr, get("/dev/files/a/b%20c/d?q")).await;
    assert_eq!(status, 200);
    let s = seen.lock().unwrap().pop().unwrap();
    assert_eq!(s.uri, "/f/a/b%20c/d?q");
}

#[tokio::test]
async fn payload_cap_answers_413_and_the_backend_never_sees_the_body() {
    let (backend, seen) = start_backend().await;
    let mut config = mk_config(
        Protocol::Rest,
        vec![http_route("POST", "/up", &format!("http://{backend}/up"))],
    );
    config.apis[0].max_payload_bytes = 10;
    let p = start_proxy(config).await;

    let big = Request::post("/dev/up")
        .body(Full::new(Bytes::from(vec![b'a'; 11])).boxed())
        .unwrap();
    let (status, _, body) = send(p.addr, big).await;
    assert_eq!(status, 413);
    // AWS's bytes, a space after the colon (koki-develop/lgtm-generator#10: 31 bytes).
    assert_eq!(body, r#"{"message": "Request Too Long"}"#);

    let chunks = |n: usize| {
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = (0..n)
            .map(|_| Ok(Frame::data(Bytes::from_static(b"abcd"))))
            .collect();
        StreamBody::new(futures::stream::iter(frames)).boxed()
    };
    let (status, _, _) = send(p.addr, Request::post("/dev/up").body(chunks(3)).unwrap()).await;
    assert_eq!(status, 413);
    assert!(
        seen.lock().unwrap().is_empty(),
        "the backend saw an over-limit request"
    );

    let (status, _, _) = send(p.addr, Request::post("/dev/up").body(chunks(2)).unwrap()).await;
    assert_eq!(status, 200);
    let s = seen.lock().unwrap().pop().unwrap();
    assert_eq!(s.body, "abcdabcd");
}

#[tokio::test]
async fn integration_timeouts_failures_and_fail_closed_routes() {
    let (backend, _) = start_backend().await;
    let mut slow = http_route("GET", "/slow", &format!("http://{backend}/slow"));
    slow.timeout_ms = 100;
    let down = http_route("GET", "/down", "http://127.0.0.1:1/x");
    let mut closed = mk_route("GET", "/closed");
    closed.fail_closed = Some("authorizer not supported".into());
    let missing_var = http_route("GET", "/var", "http://${stageVariables.nope}/x");
    let p = start_proxy(mk_config(
        Protocol::Rest,
        vec![slow, down, closed, missing_var],
    ))
    .await;

    let (status, _, body) = send(p.addr, get("/dev/slow")).await;
    assert_eq!(status, 504);
    // AWS's bytes, a space after the colon (ks888/LambStatus#36).
    assert_eq!(body, r#"{"message": "Endpoint request timed out"}"#);
    let (status, _, body) = send(p.addr, get("/dev/down")).await;
    assert_eq!(status, 504);
    assert_eq!(body, r#"{"message":"Internal server error"}"#);
    for path in ["/dev/closed", "/dev/var"] {
        let (status, _, body) = send(p.addr, get(path)).await;
        assert_eq!(status, 500, "{path}");
        assert_eq!(body, r#"{"message":"Internal server error"}"#);
    }
    let m = p.metrics.encode();
    assert!(
        m.contains(r#"portico_5xx_error{api="restapi/default/t",method="GET",resource="/slow",stage="dev"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn a_route_has_series_once_it_served_a_request_and_not_before() {
    let p = start_proxy(mk_config(
        Protocol::Rest,
        vec![mk_route("GET", "/served"), mk_route("GET", "/idle")],
    ))
    .await;
    let before = p.metrics.encode();
    assert!(!before.contains(r#"stage="dev""#), "{before}");
    send(p.addr, get("/dev/served")).await;
    send(p.addr, get("/dev/nothing-here")).await;
    let m = p.metrics.encode();
    assert!(
        m.contains(r#"portico_count{api="restapi/default/t",method="GET",resource="/served",stage="dev"} 1"#),
        "{m}"
    );
    // All five series of a route appear together: a 4XX count of 0 is a value, not a gap.
    assert!(
        m.contains(r#"portico_4xx_error{api="restapi/default/t",method="GET",resource="/served",stage="dev"} 0"#),
        "{m}"
    );
    // The stage's unmatched requests: the stage's API, empty resource and method.
    assert!(
        m.contains(
            r#"portico_4xx_error{api="restapi/default/t",method="",resource="",stage="dev"} 1"#
        ),
        "{m}"
    );
    assert!(!m.contains(r#"resource="/idle""#), "{m}");
}

#[tokio::test]
async fn access_log_lines_are_rendered_off_the_request_path() {
    let mut config = mk_config(Protocol::Rest, vec![mk_route("GET", "/pets")]);
    config.stages[0].access_log = Some(AccessLogSettings {
        format: r#"{"id":"$context.requestId","status":"$context.status","path":"$context.path","ua":"$context.identity.userAgent","err":"$context.error.responseType","x":"$context.nope"}"#.into(),
    });
    let p = start_proxy(config).await;
    let req = Request::get("/dev/pets")
        .header("user-agent", "evil\"agent")
        .body(Full::new(Bytes::new()).boxed())
        .unwrap();
    let (_, headers, _) = send(p.addr, req).await;
    let (_, headers2, _) = send(p.addr, get("/dev/nope")).await;
    p.shared.access_log.flush(Duration::from_secs(2));
    let log = String::from_utf8(p.log.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert_eq!(
        lines[0]["id"],
        headers["x-amzn-requestid"].to_str().unwrap()
    );
    assert_eq!(lines[0]["status"], "200");
    assert_eq!(lines[0]["ua"], "evil\"agent");
    assert_eq!(lines[0]["err"], "-");
    assert_eq!(lines[0]["x"], "-");
    assert_eq!(
        lines[1]["id"],
        headers2["x-amzn-requestid"].to_str().unwrap()
    );
    assert_eq!(lines[1]["status"], "403");
    assert_eq!(lines[1]["err"], "MISSING_AUTHENTICATION_TOKEN");
}

#[tokio::test]
async fn a_swapped_config_serves_new_requests() {
    let p = start_proxy(mk_config(Protocol::Rest, vec![mk_route("GET", "/pets")])).await;
    let (status, _, _) = send(p.addr, get("/dev/cats")).await;
    assert_eq!(status, 403);
    let next = mk_config(Protocol::Rest, vec![mk_route("GET", "/cats")]);
    p.state
        .store(Arc::new(Runtime::build(next, &p.metrics, &p.pools)));
    let (status, _, body) = send(p.addr, get("/dev/cats")).await;
    assert_eq!((status.as_u16(), body.as_str()), (200, "GET /cats"));
}

#[tokio::test]
async fn backend_connections_are_kept_alive_and_reused() {
    let (backend, seen, accepted) = start_counting_backend().await;
    let p = start_proxy(mk_config(
        Protocol::Rest,
        vec![http_route("GET", "/a", &format!("http://{backend}/a"))],
    ))
    .await;
    for _ in 0..5 {
        let (status, _, _) = send(p.addr, get("/dev/a")).await;
        assert_eq!(status, 200);
    }
    assert_eq!(seen.lock().unwrap().len(), 5);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// Issue 9: a fuzz target for the request head and body path. Mutated and generated requests
/// (broken heads, chunked framing with bad sizes and extensions, huge declared lengths, stray
/// bytes, folded headers, NULs) go to the proxy's real connection handler on 127.0.0.1, in
/// front of a recording backend. Each must end in a well-formed HTTP/1.1 response, or a
/// close, within a bounded time, and the proxy must go on serving. Seeded and reproducible:
/// `PORTICO_FUZZ_CASES` (default 1,000, run by the test command) and `PORTICO_FUZZ_SEED` run
/// it longer by hand, e.g. `PORTICO_FUZZ_CASES=20000 cargo test -p portico-proxy --lib fuzz`.
#[tokio::test]
async fn fuzz_request_heads_and_bodies() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (backend, _) = start_backend().await;
    let mut config = mk_config(
        Protocol::Rest,
        vec![
            http_route("ANY", "/p", &format!("http://{backend}/p")),
            mk_route("ANY", "/m"),
        ],
    );
    config.apis[0].max_payload_bytes = 64 * 1024;
    let proxy = start_proxy(config).await;
    let cases: u64 = std::env::var("PORTICO_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let seed: u64 = std::env::var("PORTICO_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9e37_79b9_7f4a_7c15);
    let mut rng = XorShift(seed | 1);
    for case in 0..cases {
        let input = fuzz_input(&mut rng);
        let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        let exchange = async {
            // The proxy may answer and close before it has read everything: a failed write
            // is not a finding.
            let _ = s.write_all(&input).await;
            let _ = s.shutdown().await;
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out).await;
            out
        };
        let out = tokio::time::timeout(Duration::from_secs(20), exchange)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "case {case} (seed {seed}): no answer or close in 20 s for {:?}",
                    String::from_utf8_lossy(&input)
                )
            });
        if !out.is_empty() {
            assert!(
                (out.starts_with(b"HTTP/1.1 ") || out.starts_with(b"HTTP/1.0 "))
                    && out.windows(4).any(|w| w == b"\r\n\r\n"),
                "case {case} (seed {seed}): malformed answer {:?} to {:?}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&input)
            );
        }
    }
    // Still serving, and no request left a budget charge behind.
    let (status, _, _) = send(proxy.addr, get("/dev/m")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(proxy.shared.buffers.in_use(), 0);
}

/// A small seeded generator (xorshift64*), so that a failing case can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

/// One request: a plausible one built from parts, then mutated.
fn fuzz_input(rng: &mut XorShift) -> Vec<u8> {
    let method = rng.pick(&[
        "GET", "POST", "PUT", "DELETE", "TRACE", "G ET", "", "POST\0",
    ]);
    let path = rng.pick(&[
        "/dev/p",
        "/dev/m",
        "/dev/p?a=1&a=2",
        "/dev/../dev/p",
        "/dev/%2e%2e/p",
        "//dev//p",
        "*",
        "http://other/dev/p",
        "/dev/p#frag",
        "/dev/\u{7f}",
    ]);
    let version = rng.pick(&["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 ", "http/1.1"]);
    let mut out = format!("{method} {path} {version}\r\n").into_bytes();
    let headers = [
        "host: api",
        "host: other",
        "content-length: 5",
        "content-length: 99999999999999999999",
        "content-length: -1",
        "content-length: 5, 6",
        "transfer-encoding: chunked",
        "transfer-encoding: gzip, chunked",
        "transfer-encoding: chunked, identity",
        "expect: 100-continue",
        "connection: close, x-a",
        "x-a: 1",
        "authorization: Bearer x",
        "x-folded: one\r\n two",
        "bad header: x",
        ": empty-name",
        "x-nul: a\0b",
        "x-long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ];
    for _ in 0..rng.below(6) {
        out.extend_from_slice(rng.pick(&headers).as_bytes());
        out.extend_from_slice(if rng.below(10) == 0 { b"\n" } else { b"\r\n" });
    }
    out.extend_from_slice(b"\r\n");
    let bodies = [
        "hello",
        "5\r\nhello\r\n0\r\n\r\n",
        "5;ext=1\r\nhello\r\n0\r\n\r\n",
        "ffffffffffffffffff\r\nx\r\n",
        "3\r\nhello\r\n0\r\n\r\n",
        "1\r\na\r\n1\r\nb\r\n0\r\nx-trailer: 1\r\n\r\n",
        "0\r\n\r\nGET /dev/m HTTP/1.1\r\nhost: api\r\n\r\n",
        "zz\r\n",
        "",
    ];
    out.extend_from_slice(rng.pick(&bodies).as_bytes());
    // Mutations: flip, insert, truncate, duplicate a slice.
    for _ in 0..rng.below(4) {
        if out.is_empty() {
            break;
        }
        let at = rng.below(out.len());
        match rng.below(4) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => out.insert(
                at,
                rng.pick(&["\r", "\n", ":", " ", "\0", ";", "0"]).as_bytes()[0],
            ),
            2 => out.truncate(at.max(1)),
            _ => {
                let end = (at + rng.below(32)).min(out.len());
                let dup = out[at..end].to_vec();
                out.splice(at..at, dup);
            }
        }
    }
    out
}

/// The pipeline called in process, without a socket (issue 11): a request in, the response
/// out, with what the phases decided (routing, the unknown-route answer, the payload cap, a
/// malformed request) and the request id on every answer.
#[tokio::test]
async fn the_pipeline_answers_without_a_socket() {
    let mut config = mk_config(Protocol::Rest, vec![mk_route("ANY", "/m")]);
    config.apis[0].max_payload_bytes = 4;
    config.validate().unwrap();
    let metrics = Metrics::new();
    let runtime = Arc::new(Runtime::build(config, &metrics, &Pools::new()));
    let gateway = super::Gateway {
        shared: mk_shared(&metrics, &Arc::default(), 8080),
        state: Arc::new(ArcSwap::new(runtime)),
        conn: super::ConnInfo::new("192.0.2.7:50000".parse().unwrap()),
    };
    let call = |method: &str, path: &str, host: Option<&str>, body: &'static str| {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(h) = host {
            req = req.header("host", h);
        }
        let req = req
            .body(crate::body::ClientBody::given(Bytes::from_static(
                body.as_bytes(),
            )))
            .unwrap();
        let gateway = &gateway;
        async move {
            let resp = gateway.call(req).await;
            assert!(resp.headers().contains_key("x-amzn-requestid"));
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    assert_eq!(
        call("GET", "/dev/m", Some("api"), "").await,
        (200, "ANY /m".into())
    );
    assert_eq!(call("POST", "/dev/m", Some("api"), "ok").await.0, 200);
    assert_eq!(call("POST", "/dev/m", Some("api"), "12345").await.0, 413);
    assert_eq!(call("GET", "/dev/nope", Some("api"), "").await.0, 403);
    let (status, body) = call("GET", "/dev/m", None, "").await;
    assert_eq!(
        (status, body.as_str()),
        (400, r#"{"message":"Bad Request"}"#)
    );

    // A reload: the service's next request runs on the new config, where /m fails closed
    // (decided once, before the integration) and /ok is served.
    let mut broken = mk_route("GET", "/m");
    broken.fail_closed = Some("spec.resources[0]: no backend".into());
    let config = mk_config(Protocol::Rest, vec![broken, mk_route("GET", "/ok")]);
    config.validate().unwrap();
    gateway
        .state
        .store(Arc::new(Runtime::build(config, &metrics, &Pools::new())));
    let (status, body) = call("GET", "/dev/m", Some("api"), "").await;
    assert_eq!(
        (status, body.as_str()),
        (500, r#"{"message":"Internal server error"}"#)
    );
    assert_eq!(
        call("GET", "/dev/ok", Some("api"), "").await,
        (200, "GET /ok".into())
    );
}
