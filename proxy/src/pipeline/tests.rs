//! In-process tests of `handle`: the proxy's connection handler on 127.0.0.1:0, a hyper
//! backend on 127.0.0.1:0 that records what it receives, and a hyper client.

use super::Shared;
use super::route::tests::{mk_api, mk_route, mk_stage};
use crate::access_log::AccessLog;
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
use hyper_util::server::graceful::GracefulShutdown;
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
    _graceful: Arc<GracefulShutdown>,
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
    let shared = Arc::new(Shared {
        access_log: AccessLog::start(SharedBuf(log.clone()), metrics.access_log_dropped.clone()),
        forwarded_port: addr.port().into(),
        limits: Default::default(),
        key_metrics: metrics.keys.clone(),
        buffers: crate::buffer::BufferBudget::new(1 << 30),
        body_timeouts: Default::default(),
    });
    let graceful = Arc::new(GracefulShutdown::new());
    {
        let (shared, state, graceful) = (shared.clone(), state.clone(), graceful.clone());
        tokio::spawn(async move {
            let http = http_builder(16384, std::time::Duration::from_secs(30));
            loop {
                let (stream, remote) = listener.accept().await.unwrap();
                spawn_connection(stream, remote, &shared, &state, &http, &graceful);
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
    assert_eq!(body, r#"{"message":"Request Too Long"}"#);

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
    assert_eq!(body, r#"{"message":"Endpoint request timed out"}"#);
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
