//! Test helpers (controller-rs `src/fixtures.rs` pattern): a mocked API server
//! ([`ApiServerVerifier`]) that asserts each request's method, path, query and body, object
//! builders (`RestApi::test().with_..()`) and [`timeout_after_1s`].
//!
//! ```text
//!  kube::Client ──tower_test::mock──> ApiServerVerifier::run(|s| async { s.expect(..).await.ok(..); s })
//!                                      └─ ServerTask::finish: the scenario ran and no request is left
//! ```

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::{Client, Resource};
use portico_config::GatewayConfig;
use portico_crds::api::rest_api::{
    Integration, IntegrationType, Method as MethodSpec, MockResponse, RestResource,
};
use portico_crds::api::{
    ApiKey, ApiKeySpec, ObjectReference, RestApi, RestApiSpec, Stage, StageSpec,
};
use serde::Serialize;
use serde_json::Value;
use std::future::Future;
use std::time::Duration;
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle, SendResponse};

/// Namespace of every test object.
pub const NS: &str = "team-a";

/// Runs `f` and panics if it takes more than a second (a request nobody answers hangs).
pub async fn timeout_after_1s<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(1), f)
        .await
        .expect("timeout on mock apiserver")
}

/// The mocked API server side of a [`Client`].
pub struct ApiServerVerifier(Handle<Request<Body>, Response<Body>>);

/// A running scenario; [`ServerTask::finish`] waits for it and checks nothing else came.
pub struct ServerTask(JoinHandle<ApiServerVerifier>);

/// One request received, after its method and URI were checked.
pub struct Exchange {
    request: Request<Body>,
    send: SendResponse<Response<Body>>,
}

/// The responder half once the body has been read.
pub struct Reply(SendResponse<Response<Body>>);

impl ApiServerVerifier {
    /// A client whose every request reaches the returned verifier.
    pub fn new() -> (Client, Self) {
        let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
        (Client::new(svc, NS), Self(handle))
    }

    /// Runs a scenario on a task; it must return the verifier when done.
    pub fn run<F, Fut>(self, scenario: F) -> ServerTask
    where
        F: FnOnce(Self) -> Fut + Send + 'static,
        Fut: Future<Output = Self> + Send + 'static,
    {
        ServerTask(tokio::spawn(scenario(self)))
    }

    /// Waits for the next request and asserts its method, path and query (`""` for none; as
    /// kube writes it, e.g. `"?&force=true&fieldManager=portico-operator"`).
    pub async fn expect(&mut self, method: Method, path: &str, query: &str) -> Exchange {
        let (request, send) =
            self.0.next_request().await.unwrap_or_else(|| {
                panic!("expected {method} {path}{query}, but the client is gone")
            });
        let uri = request.uri().clone();
        let got_query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
        assert_eq!(
            (request.method(), uri.path(), got_query.as_str()),
            (&method, path, query),
            "unexpected request {} {uri}",
            request.method()
        );
        Exchange { request, send }
    }

    /// Asserts that no request arrives within 50 ms.
    pub async fn expect_nothing(&mut self) {
        if let Ok(Some((req, _))) =
            tokio::time::timeout(Duration::from_millis(50), self.0.next_request()).await
        {
            panic!("unexpected request {} {}", req.method(), req.uri());
        }
    }
}

impl ServerTask {
    /// Waits for the scenario (1 s at most), then asserts no further request came.
    pub async fn finish(self) {
        let mut verifier = timeout_after_1s(self.0)
            .await
            .expect("scenario completed without panic");
        verifier.expect_nothing().await;
    }
}

fn respond(send: SendResponse<Response<Body>>, status: StatusCode, body: Vec<u8>) {
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(body))
            .expect("a valid response"),
    );
}

impl Exchange {
    /// Reads the request body as JSON.
    pub async fn json_body(self) -> (Value, Reply) {
        let bytes = self
            .request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body");
        let v = serde_json::from_slice(&bytes).expect("request body is JSON");
        (v, Reply(self.send))
    }

    /// Answers 200 with `body`.
    pub fn ok<T: Serialize>(self, body: &T) {
        Reply(self.send).ok(body)
    }

    /// Answers 404 NotFound as the API server does.
    pub fn not_found(self) {
        Reply(self.send).status(StatusCode::NOT_FOUND, "NotFound")
    }
}

impl Reply {
    /// Answers 200 (or 201) with `body`.
    pub fn ok<T: Serialize>(self, body: &T) {
        respond(
            self.0,
            StatusCode::OK,
            serde_json::to_vec(body).expect("serializable"),
        )
    }

    /// Answers an error `Status` with `code` and `reason`.
    pub fn status(self, code: StatusCode, reason: &str) {
        let status = serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("mock {reason}"), "reason": reason, "code": code.as_u16(),
        });
        respond(self.0, code, serde_json::to_vec(&status).expect("json"))
    }
}

/// A one-route config.
pub fn mk_config() -> GatewayConfig {
    let snap = portico_crds::Snapshot {
        rest_apis: vec![RestApi::test()],
        stages: vec![Stage::test()],
        ..Default::default()
    };
    let out = portico_crds::compile(&snap);
    assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
    out.config
}

fn mock_method() -> MethodSpec {
    MethodSpec {
        integration: Some(Integration {
            type_: IntegrationType::Mock,
            mock_response: Some(MockResponse {
                status_code: 200,
                headers: Default::default(),
                body: Some("ok".into()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `Kind::test()`: a valid object in namespace [`NS`] with generation 1 (a trait: the types
/// live in `portico-crds`).
pub trait TestObject: Sized {
    /// The default test object of the kind.
    fn test() -> Self;
}

/// Builders on [`RestApi::test`].
pub trait RestApiBuilder {
    /// Replaces the path of the first resource (e.g. with an invalid one).
    fn with_path(self, path: &str) -> Self;
    /// Sets the status.
    fn with_status(self, status: portico_crds::api::RestApiStatus) -> Self;
}

/// Builders on [`Stage::test`].
pub trait StageBuilder {
    /// Adds a hostname.
    fn with_host(self, host: &str) -> Self;
}

impl TestObject for RestApi {
    /// `team-a/pets`: `GET /pets` answered by a MOCK integration; generation 1.
    fn test() -> Self {
        let mut api = RestApi::new(
            "pets",
            RestApiSpec {
                resources: vec![RestResource {
                    path: "/pets".into(),
                    methods: [("GET".to_string(), mock_method())].into(),
                }],
                ..Default::default()
            },
        );
        api.meta_mut().namespace = Some(NS.into());
        api.meta_mut().generation = Some(1);
        api
    }
}

impl RestApiBuilder for RestApi {
    fn with_path(mut self, path: &str) -> Self {
        self.spec.resources[0].path = path.into();
        self
    }

    fn with_status(mut self, status: portico_crds::api::RestApiStatus) -> Self {
        self.status = Some(status);
        self
    }
}

impl TestObject for Stage {
    /// `team-a/dev` serving `pets` at `/dev`; generation 1.
    fn test() -> Self {
        let mut s = Stage::new(
            "dev",
            StageSpec {
                rest_api_ref: ObjectReference::local("pets"),
                ..Default::default()
            },
        );
        s.meta_mut().namespace = Some(NS.into());
        s.meta_mut().generation = Some(1);
        s
    }
}

impl StageBuilder for Stage {
    fn with_host(mut self, host: &str) -> Self {
        self.spec.hostnames.push(host.into());
        self
    }
}

/// The access key id of [`websocket_api`]'s credential.
pub const AKID: &str = "AKIAPORTICOTEST00001";
/// The secret access key in [`credentials_secret`].
pub const SECRET_ACCESS_KEY: &str = "test-secret-access-key-0123456789";

/// `team-a/chat`: a WebSocket API (`$connect` MOCK) whose `@connections` credential
/// [`AKID`] names key `secretAccessKey` of Secret `chat-management`; generation 1.
pub fn websocket_api() -> RestApi {
    let mut api: RestApi = serde_yaml::from_str(&format!(
        r#"apiVersion: portico.dev/v1alpha1
kind: RestApi
metadata: {{name: chat, namespace: {NS}, generation: 1}}
spec:
  protocol: WEBSOCKET
  routeSelectionExpression: $request.body.action
  websocket:
    managementCredentials:
      - accessKeyId: {AKID}
        secretKeyRef: {{name: chat-management, key: secretAccessKey}}
  routes:
    - routeKey: $connect
      integration: {{type: MOCK, mockResponse: {{statusCode: 200}}}}
"#
    ))
    .expect("a valid RestApi");
    api.meta_mut().generation = Some(1);
    api
}

/// Secret `team-a/chat-management` holding `secretAccessKey` (as the snapshot sees it).
pub fn credentials_secret(value: &str) -> portico_crds::Secret {
    portico_crds::Secret {
        namespace: NS.into(),
        name: "chat-management".into(),
        data: [("secretAccessKey".to_string(), value.as_bytes().to_vec())].into(),
    }
}

/// The config of [`websocket_api`] served at stage `dev`, and the Secrets it was compiled with.
pub fn mk_websocket_config(value: &str) -> (GatewayConfig, Vec<portico_crds::Secret>) {
    let mut stage = Stage::test();
    stage.spec.rest_api_ref = ObjectReference::local("chat");
    let snap = portico_crds::Snapshot {
        rest_apis: vec![websocket_api()],
        stages: vec![stage],
        secrets: vec![credentials_secret(value)],
        ..Default::default()
    };
    let out = portico_crds::compile(&snap);
    assert!(
        !out.diagnostics.iter().any(|d| d.is_error()),
        "{:?}",
        out.diagnostics
    );
    (out.config, snap.secrets)
}

impl TestObject for ApiKey {
    /// `team-a/mobile` without `valueFrom` (the operator generates its value); uid `uid-1`.
    fn test() -> Self {
        let mut k = ApiKey::new("mobile", ApiKeySpec::default());
        k.meta_mut().namespace = Some(NS.into());
        k.meta_mut().generation = Some(1);
        k.meta_mut().uid = Some("uid-1".into());
        k
    }
}

impl crate::context::Context {
    /// A context on a mocked client, publishing `portico-system/portico-gateway-config`.
    pub fn test(limits: crate::publish::Limits) -> (Self, ApiServerVerifier) {
        let (client, verifier) = ApiServerVerifier::new();
        let ctx = Self::new(
            client,
            "portico-system",
            crate::publish::DEFAULT_CONFIG_MAP_NAME,
            limits,
            std::sync::Arc::default(),
            Some("pod-a".into()),
        );
        (ctx, verifier)
    }
}

/// The ConfigMap path used by [`crate::context::Context::test`].
pub const CM_PATH: &str = "/api/v1/namespaces/portico-system/configmaps/portico-gateway-config";
/// The credentials Secret path used by [`crate::context::Context::test`].
pub const CREDENTIALS_PATH: &str =
    "/api/v1/namespaces/portico-system/secrets/portico-gateway-config-credentials";
/// The server-side apply query kube writes.
pub const APPLY_QUERY: &str = "?&force=true&fieldManager=portico-operator";

impl ApiServerVerifier {
    /// Expects an Event POST in [`NS`], answers it, and returns its body.
    pub async fn expect_event(&mut self) -> Value {
        let (body, reply) = self
            .expect(
                Method::POST,
                &format!("/apis/events.k8s.io/v1/namespaces/{NS}/events"),
                "?",
            )
            .await
            .json_body()
            .await;
        reply.ok(&body);
        body
    }

    /// Expects a status apply on `/apis/portico.dev/v1alpha1/namespaces/team-a/<plural>/<name>/status`,
    /// answers it, and returns its body.
    pub async fn expect_status(&mut self, plural: &str, name: &str) -> Value {
        let (body, reply) = self
            .expect(
                Method::PATCH,
                &format!("/apis/portico.dev/v1alpha1/namespaces/{NS}/{plural}/{name}/status"),
                APPLY_QUERY,
            )
            .await
            .json_body()
            .await;
        reply.ok(&body);
        body
    }

    /// Expects an apply on `path`, answers it, and returns its body.
    pub async fn expect_apply(&mut self, path: &str) -> Value {
        let (body, reply) = self
            .expect(Method::PATCH, path, APPLY_QUERY)
            .await
            .json_body()
            .await;
        reply.ok(&body);
        body
    }

    /// Expects the ConfigMap read (answered 404) and its apply; returns the applied body.
    pub async fn expect_first_publish(&mut self) -> Value {
        self.expect(Method::GET, CM_PATH, "").await.not_found();
        let (body, reply) = self
            .expect(Method::PATCH, CM_PATH, APPLY_QUERY)
            .await
            .json_body()
            .await;
        reply.ok(&body);
        body
    }
}

impl Exchange {
    /// The request's method.
    pub fn method(&self) -> &Method {
        self.request.method()
    }

    /// The request's path.
    pub fn path(&self) -> &str {
        self.request.uri().path()
    }
}

impl ApiServerVerifier {
    /// The next request, whatever it is; `None` when none comes within `wait`.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Exchange> {
        let (request, send) = tokio::time::timeout(wait, self.0.next_request())
            .await
            .ok()??;
        Some(Exchange { request, send })
    }

    /// Answers every request as an empty cluster that accepts every write would, until none
    /// comes for 200 ms: a get 404, a list (`labelSelector`) empty, a write echoes its body, a
    /// delete succeeds. Returns `(method, path, body)` of each.
    pub async fn answer_all(&mut self) -> Vec<(Method, String, Value)> {
        let mut seen = Vec::new();
        while let Some(ex) = self.next_within(Duration::from_millis(200)).await {
            let (method, path) = (ex.method().clone(), ex.path().to_string());
            let query = ex.request.uri().query().unwrap_or_default().to_string();
            match method {
                Method::GET if query.contains("labelSelector") => {
                    ex.ok(&serde_json::json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {}, "items": []}));
                    seen.push((method, path, Value::Null));
                }
                Method::GET => {
                    ex.not_found();
                    seen.push((method, path, Value::Null));
                }
                Method::DELETE => {
                    ex.ok(&serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}));
                    seen.push((method, path, Value::Null));
                }
                _ => {
                    let (body, reply) = ex.json_body().await;
                    reply.ok(&body);
                    seen.push((method, path, body));
                }
            }
        }
        seen
    }
}

/// A fleet in [`NS`]: `apis` RestApis `t000`... (the [`RestApi::test`] route) each served by
/// Stage `t000`..., and `keys` ApiKeys `k0000`... (no usage plan) valued from Secrets of the
/// same names (in the snapshot), all with generation 1.
pub fn fleet(apis: usize, keys: usize) -> portico_crds::Snapshot {
    let mut s = portico_crds::Snapshot::default();
    for i in 0..apis {
        let name = format!("t{i:03}");
        let mut api = RestApi::test();
        api.meta_mut().name = Some(name.clone());
        let mut stage = Stage::test();
        stage.meta_mut().name = Some(name.clone());
        stage.spec.rest_api_ref = ObjectReference::local(&name);
        s.rest_apis.push(api);
        s.stages.push(stage);
    }
    for i in 0..keys {
        let (key, secret) = fleet_key(&format!("k{i:04}"));
        s.api_keys.push(key);
        s.secrets.push(secret);
    }
    s
}

/// ApiKey `name` valued from key `value` of Secret `name` (returned too, as the snapshot holds
/// it), generation 1.
pub fn fleet_key(name: &str) -> (ApiKey, portico_crds::Secret) {
    let mut k = ApiKey::new(
        name,
        ApiKeySpec {
            value_from: Some(portico_crds::api::api_key::ApiKeyValueSource {
                secret_key_ref: portico_crds::api::SecretKeySelector {
                    name: name.into(),
                    key: "value".into(),
                },
            }),
            ..Default::default()
        },
    );
    k.meta_mut().namespace = Some(NS.into());
    k.meta_mut().generation = Some(1);
    let secret = portico_crds::Secret {
        namespace: NS.into(),
        name: name.into(),
        data: [("value".to_string(), format!("value-of-{name}").into_bytes())].into(),
    };
    (k, secret)
}
