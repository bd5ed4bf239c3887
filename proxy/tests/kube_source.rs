//! `--kube-configmap` against an in-process fake API server (hyper on 127.0.0.1:0) that speaks
//! the list + chunked watch protocol for one ConfigMap: initial load, MODIFIED swaps within a
//! second, bad and deleted ConfigMaps keep the old config, reconnect after the server goes
//! away, 410 Gone relists, not ready until the ConfigMap exists.

use arc_swap::ArcSwap;
use base64::Engine as _;
use bytes::Bytes;
use flate2::{Compression, write::GzEncoder};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use portico_config::{GatewayConfig, Integration};
use portico_proxy::admin::Health;
use portico_proxy::metrics::Metrics;
use portico_proxy::pool::Pools;
use portico_proxy::runtime::Runtime;
use portico_proxy::source::kube::{Backoff, KubeSource, Target};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

const TOKEN: &str = "t0ken";

/// A GatewayConfig with one REST API whose `GET /dev/hello` answers `body` (MOCK).
fn mk_config(body: &str) -> GatewayConfig {
    let doc = json!({
        "schemaVersion": 1,
        "apis": [{
            "id": "restapi/demo/hello",
            "source": {"kind": "RestApi", "namespace": "demo", "name": "hello"},
            "name": "hello",
            "protocol": "REST",
            "routes": [{
                "id": "restapi/demo/hello/resource/~1hello/method/GET",
                "resourcePath": "/hello",
                "routeKey": "GET /hello",
                "httpMethod": "GET",
                "match": {"path": [{"literal": "hello"}]},
                "integration": {"type": "MOCK", "statusCode": 200, "body": body},
                "timeoutMs": 29000
            }],
            "maxPayloadBytes": 10485760
        }],
        "stages": [{
            "id": "stage/demo/dev",
            "source": {"kind": "Stage", "namespace": "demo", "name": "dev"},
            "apiId": "restapi/demo/hello",
            "name": "dev",
            "basePath": "/dev"
        }]
    });
    GatewayConfig::from_json(doc.to_string().as_bytes()).expect("fixture config is valid")
}

fn cm_plain(json_text: &str) -> Value {
    json!({"data": {"gateway-config.json": json_text}})
}

fn cm_gzip(json_text: &str) -> Value {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(json_text.as_bytes()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
    json!({"binaryData": {"gateway-config.json.gz": b64}})
}

/// The body the served config answers on GET /dev/hello ("" for the empty startup config).
fn served(state: &ArcSwap<Runtime>) -> String {
    let rt = state.load();
    match rt.config.apis.first().map(|a| &a.routes[0].integration) {
        Some(Integration::Mock(m)) => m.body.clone(),
        _ => String::new(),
    }
}

async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

#[derive(Default)]
struct FakeState {
    rv: u64,
    object: Option<Value>,
    /// (resourceVersion, event line) of every change, for watches that resume from an rv.
    history: Vec<(u64, String)>,
    /// Watches from an rv below this get 410 Gone (the server "compacted").
    gone_below: u64,
    requests: Vec<String>,
}

/// The fake API server: one ConfigMap `ns/gw`, list + watch, bearer token required.
#[derive(Clone)]
struct Fake {
    state: Arc<Mutex<FakeState>>,
    live: broadcast::Sender<String>,
}

impl Fake {
    fn new() -> Self {
        Fake {
            state: Arc::new(Mutex::new(FakeState {
                rv: 100,
                ..Default::default()
            })),
            live: broadcast::channel(64).0,
        }
    }

    fn with_meta(obj: &Value, rv: u64) -> Value {
        let mut o = obj.clone();
        o["kind"] = json!("ConfigMap");
        o["apiVersion"] = json!("v1");
        o["metadata"] = json!({"name": "gw", "namespace": "ns", "resourceVersion": rv.to_string()});
        o
    }

    /// Creates or replaces the ConfigMap (ADDED / MODIFIED event).
    fn put(&self, obj: Value) {
        let mut s = self.state.lock().unwrap();
        s.rv += 1;
        let rv = s.rv;
        let kind = if s.object.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let full = Self::with_meta(&obj, rv);
        let line = json!({"type": kind, "object": full}).to_string();
        s.object = Some(full);
        s.history.push((rv, line.clone()));
        let _ = self.live.send(line);
    }

    fn delete(&self) {
        let mut s = self.state.lock().unwrap();
        s.rv += 1;
        let rv = s.rv;
        let mut obj = s.object.take().expect("delete of an existing ConfigMap");
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let line = json!({"type": "DELETED", "object": obj}).to_string();
        s.history.push((rv, line.clone()));
        let _ = self.live.send(line);
    }

    /// Compacts: replaces the object without an event, makes every older rv Gone, and tells
    /// live watches so with an ERROR 410 event (as the API server does).
    fn compact_and_replace(&self, obj: Value) {
        let mut s = self.state.lock().unwrap();
        s.rv += 1;
        let rv = s.rv;
        s.object = Some(Self::with_meta(&obj, rv));
        s.history.clear();
        s.gone_below = rv;
        let _ = self.live.send(gone_line());
    }

    fn lists(&self) -> usize {
        let s = self.state.lock().unwrap();
        s.requests
            .iter()
            .filter(|r| !r.contains("watch=true"))
            .count()
    }

    fn handle(&self, req: &Request<Incoming>) -> Response<BoxBody<Bytes, Infallible>> {
        let uri = req.uri().to_string();
        self.state.lock().unwrap().requests.push(uri.clone());
        let authorized = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .is_some_and(|v| v == format!("Bearer {TOKEN}").as_str());
        if !authorized {
            return json_response(
                StatusCode::UNAUTHORIZED,
                json!({"kind": "Status", "code": 401, "message": "Unauthorized"}),
            );
        }
        let path = req.uri().path();
        let query = req.uri().query().unwrap_or("");
        if path != "/api/v1/namespaces/ns/configmaps"
            || !query.contains("fieldSelector=metadata.name%3Dgw")
        {
            return json_response(
                StatusCode::NOT_FOUND,
                json!({"kind": "Status", "code": 404, "message": uri}),
            );
        }
        let s = self.state.lock().unwrap();
        if !query.contains("watch=true") {
            let items: Vec<Value> = s.object.iter().cloned().collect();
            return json_response(
                StatusCode::OK,
                json!({"kind": "ConfigMapList", "apiVersion": "v1",
                       "metadata": {"resourceVersion": s.rv.to_string()}, "items": items}),
            );
        }
        let from: u64 = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("resourceVersion="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        // Subscribe under the lock: no event falls between the replay and the live stream.
        let live = self.live.subscribe();
        let replay: Vec<String> = if from < s.gone_below {
            vec![gone_line()]
        } else {
            s.history
                .iter()
                .filter(|(rv, _)| *rv > from)
                .map(|(_, l)| l.clone())
                .collect()
        };
        let gone = from < s.gone_below;
        drop(s);
        let replay = futures::stream::iter(replay.into_iter().map(line_frame));
        let body = if gone {
            BoxBody::new(StreamBody::new(replay))
        } else {
            let live = futures::stream::unfold(live, |mut rx| async move {
                match rx.recv().await {
                    Ok(line) => Some((line_frame(line), rx)),
                    Err(_) => None,
                }
            });
            BoxBody::new(StreamBody::new(futures::StreamExt::chain(replay, live)))
        };
        let mut resp = Response::new(body);
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        resp
    }

    /// Serves on `addr` until the returned task is aborted (which drops every connection).
    async fn serve(&self, addr: SocketAddr) -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fake = self.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let fake = fake.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let resp = fake.handle(&req);
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (addr, task)
    }
}

fn gone_line() -> String {
    json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
           "message": "too old resource version", "reason": "Expired", "code": 410}})
    .to_string()
}

fn line_frame(line: String) -> Result<Frame<Bytes>, Infallible> {
    Ok(Frame::data(Bytes::from(line + "\n")))
}

fn json_response(status: StatusCode, v: Value) -> Response<BoxBody<Bytes, Infallible>> {
    let mut resp = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *resp.status_mut() = status;
    resp
}

struct Proxy {
    state: Arc<ArcSwap<Runtime>>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    task: JoinHandle<()>,
    kubeconfig: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

/// Starts the source against `server` with a kubeconfig (bearer token) and a short backoff.
fn start_source(server: SocketAddr, test: &str) -> Proxy {
    let kubeconfig = std::env::temp_dir().join(format!(
        "portico-kube-source-{}-{test}.yaml",
        std::process::id()
    ));
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: http://{server}\nusers:\n- name: u\n  user:\n    token: {TOKEN}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: u\n"
        ),
    )
    .unwrap();
    let metrics = Arc::new(Metrics::new());
    let pools = Pools::new();
    let state = Arc::new(ArcSwap::from_pointee(Runtime::build(
        GatewayConfig::empty(),
        &metrics,
        &pools,
    )));
    let health = Arc::new(Health::default());
    let src = KubeSource::new("ns/gw".parse::<Target>().unwrap(), Some(&kubeconfig), None)
        .unwrap()
        .with_backoff(Backoff::new(
            Duration::from_millis(20),
            Duration::from_millis(200),
            false,
        ));
    let task = src.spawn(state.clone(), metrics.clone(), pools, health.clone());
    Proxy {
        state,
        metrics,
        health,
        task,
        kubeconfig,
    }
}

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_changes_swap_within_a_second_and_bad_ones_keep_the_old_config() {
    let fake = Fake::new();
    fake.put(cm_plain(&mk_config("v1").to_json()));
    let (addr, _server) = fake.serve("127.0.0.1:0".parse().unwrap()).await;
    let p = start_source(addr, "swap");
    // (Not asserting "not ready yet" here: the spawned source may already have loaded on a
    // busy machine; readiness before the first config has its own test.)

    wait_for("initial load", WAIT, || p.health.is_ready()).await;
    assert_eq!(served(&p.state), "v1");
    assert_eq!(p.metrics.source_up.get(), 1);
    assert_eq!(p.metrics.reload_success.get(), 1);

    // MODIFIED: swapped well within a second.
    fake.put(cm_plain(&mk_config("v2").to_json()));
    let took = wait_for("v2", WAIT, || served(&p.state) == "v2").await;
    assert!(took < Duration::from_secs(1), "swap took {took:?}");

    // Undecodable, other schema version, invalid, no key: each keeps v2.
    let other_version = mk_config("v9")
        .to_json()
        .replace("\"schemaVersion\":1", "\"schemaVersion\":2");
    let mut invalid = mk_config("v9");
    invalid.stages[0].api_id = "restapi/demo/missing".into();
    for bad in [
        cm_plain("{not json"),
        cm_plain(&other_version),
        cm_plain(&invalid.to_json()),
        json!({"data": {"something-else": "x"}}),
    ] {
        p.metrics.reload_success.set(1);
        fake.put(bad);
        wait_for("failed reload", WAIT, || {
            p.metrics.reload_success.get() == 0
        })
        .await;
        assert_eq!(served(&p.state), "v2");
    }
    assert!(p.health.is_ready());

    // DELETED keeps the config too.
    p.metrics.reload_success.set(1);
    fake.delete();
    wait_for("delete noticed", WAIT, || {
        p.metrics.reload_success.get() == 0
    })
    .await;
    assert_eq!(served(&p.state), "v2");

    // Re-created, gzipped in binaryData: served.
    fake.put(cm_gzip(&mk_config("v3").to_json()));
    wait_for("v3 (gzip)", WAIT, || served(&p.state) == "v3").await;
    assert_eq!(p.metrics.reload_success.get(), 1);
    assert_eq!(p.metrics.source_up.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_reconnects_when_the_api_server_comes_back() {
    let fake = Fake::new();
    fake.put(cm_plain(&mk_config("v1").to_json()));
    let (addr, server) = fake.serve("127.0.0.1:0".parse().unwrap()).await;
    let p = start_source(addr, "reconnect");
    wait_for("initial load", WAIT, || served(&p.state) == "v1").await;

    server.abort();
    let _ = server.await;
    wait_for("source down", WAIT, || p.metrics.source_up.get() == 0).await;
    // The config keeps serving while the API server is away.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(served(&p.state), "v1");
    assert!(p.health.is_ready());

    // Changed while away; the watch resumes from its resourceVersion and sees it.
    fake.put(cm_plain(&mk_config("v2").to_json()));
    let (_, _server) = fake.serve(addr).await;
    wait_for("v2 after reconnect", WAIT, || served(&p.state) == "v2").await;
    wait_for("source up", WAIT, || p.metrics.source_up.get() == 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_makes_the_source_list_again() {
    let fake = Fake::new();
    fake.put(cm_plain(&mk_config("v1").to_json()));
    let (addr, _server) = fake.serve("127.0.0.1:0".parse().unwrap()).await;
    let p = start_source(addr, "gone");
    wait_for("initial load", WAIT, || served(&p.state) == "v1").await;
    assert_eq!(fake.lists(), 1);

    // No MODIFIED event: only a relist can find v2.
    fake.compact_and_replace(cm_plain(&mk_config("v2").to_json()));
    wait_for("v2 after relist", WAIT, || served(&p.state) == "v2").await;
    assert!(fake.lists() >= 2);
    assert_eq!(p.metrics.source_up.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_the_configmap_exists() {
    let fake = Fake::new();
    let (addr, _server) = fake.serve("127.0.0.1:0".parse().unwrap()).await;
    let p = start_source(addr, "missing");
    wait_for("listed", WAIT, || p.metrics.source_up.get() == 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!p.health.is_ready());
    assert_eq!(p.metrics.reload_success.get(), 0);
    assert_eq!(served(&p.state), "");

    fake.put(cm_plain(&mk_config("v1").to_json()));
    wait_for("ready", WAIT, || p.health.is_ready()).await;
    assert_eq!(served(&p.state), "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_reported_as_source_down() {
    let fake = Fake::new();
    fake.put(cm_plain(&mk_config("v1").to_json()));
    let (addr, _server) = fake.serve("127.0.0.1:0".parse().unwrap()).await;
    let p = start_source(addr, "token");
    wait_for("ready", WAIT, || p.health.is_ready()).await;
    // A second source whose kubeconfig carries another token gets 401s.
    let bad = p.kubeconfig.with_extension("bad.yaml");
    let text = std::fs::read_to_string(&p.kubeconfig)
        .unwrap()
        .replace(TOKEN, "wrong");
    std::fs::write(&bad, text).unwrap();
    let metrics = Arc::new(Metrics::new());
    let pools = Pools::new();
    let state = Arc::new(ArcSwap::from_pointee(Runtime::build(
        GatewayConfig::empty(),
        &metrics,
        &pools,
    )));
    let health = Arc::new(Health::default());
    let task = KubeSource::new("ns/gw".parse().unwrap(), Some(&bad), None)
        .unwrap()
        .with_backoff(Backoff::new(
            Duration::from_millis(20),
            Duration::from_millis(100),
            false,
        ))
        .spawn(state.clone(), metrics.clone(), pools, health.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(metrics.source_up.get(), 0);
    assert!(!health.is_ready());
    task.abort();
    let _ = std::fs::remove_file(&bad);
}
