//! `--kube-configmap NAMESPACE/NAME`: the GatewayConfig the operator publishes, read through
//! the Kubernetes API (list + watch), without kube-client (the dependency rules in
//! `docs/architecture.md`).
//!
//! ```text
//!  config.rs       kubeconfig | in-cluster service account -> Settings (server, TLS, auth)
//!  client.rs       hyper + rustls: list (fieldSelector=metadata.name) / watch (NDJSON events)
//!                  / get of the credentials Secret
//!  configmap.rs    ConfigMap -> data | gunzip(binaryData) -> GatewayConfig::from_json (+ validate)
//!  credentials.rs  Secret "<configmap>-credentials" -> Runtime.secrets (values the config names)
//!  mod.rs          the loop below; every load goes through watch::apply (one ArcSwap::store)
//!
//!   ┌─> list ──(items[0]? apply : "missing", keep)──> rv
//!   │     └─ error: source_up 0, backoff, retry
//!   │   watch(rv) ─ ADDED/MODIFIED: apply ─ DELETED: keep ─ BOOKMARK: rv ─ end: re-watch(rv)
//!   │     └─ error/disconnect: source_up 0, backoff, re-watch(rv)
//!   └──── 410 Gone (HTTP or ERROR event): relist
//!
//!  apply = decode ─> config names credentials? get Secret ─> watch::apply(config + secrets)
//!          (Secret problem: log once, keep the last values, retry the get beside the watch)
//! ```
//!
//! Secret values (WebSocket `@connections` credentials) are never in the ConfigMap: the operator
//! writes them into Secret `<configmap>-credentials` before the ConfigMap, and annotates the
//! ConfigMap with their version (`portico.dev/credentials-version`), so that a rotated value is a
//! ConfigMap change too. Each ConfigMap whose config names credentials is applied with the
//! Secret read (get) just before; a Secret that is missing, unreadable, or of another version
//! than the ConfigMap says is logged once, the last values read keep serving (none before the
//! first read: `@connections` answers 403 for what it cannot verify), and the get is retried
//! with backoff alongside the watch until it succeeds, then the served config is rebuilt with
//! the new values (`watch::replace_secrets`). A config naming no credentials reads nothing.
//!
//! The proxy starts serving an empty config with `/readyz` 503; the first successful load
//! makes it ready. Afterwards nothing the API server or the operator does takes the served
//! config away: a missing, undecodable, wrong-version or invalid ConfigMap is logged, sets
//! `portico_config_reload_success 0`, and the last good config keeps serving.
//!
//! Entry points: [`Target`], [`KubeSource::new`], [`KubeSource::spawn`].

pub mod client;
pub mod config;
pub mod configmap;
pub mod credentials;

use super::watch::{self, Reload};
use super::{LoadError, Loaded};
use crate::admin::Health;
use crate::metrics::Metrics;
use crate::pool::Pools;
use crate::runtime::{Runtime, Secrets};
use arc_swap::ArcSwap;
use client::{Client, ClientError, WatchEvent};
use configmap::ConfigMap;
use portico_config::GatewayConfig;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The ConfigMap to follow, `NAMESPACE/NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Namespace.
    pub namespace: String,
    /// ConfigMap name.
    pub name: String,
}

impl FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ns, name) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not NAMESPACE/NAME"))?;
        // DNS-1123 subdomain characters only, so neither part needs escaping in a URL.
        let ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 253
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        if !ok(ns) || !ok(name) {
            return Err(format!(
                "{s:?}: namespace and name must be non-empty lower-case DNS names"
            ));
        }
        Ok(Target {
            namespace: ns.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl Target {
    /// The list request (one object, by field selector, so `resourceNames` RBAC applies).
    pub fn list_path(&self) -> String {
        format!(
            "/api/v1/namespaces/{}/configmaps?fieldSelector=metadata.name%3D{}",
            self.namespace, self.name
        )
    }

    /// The watch request from `resource_version`.
    pub fn watch_path(&self, resource_version: &str) -> String {
        let rv: String = percent_encoding::utf8_percent_encode(
            resource_version,
            percent_encoding::NON_ALPHANUMERIC,
        )
        .to_string();
        format!(
            "{}&watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds={}",
            self.list_path(),
            client::WATCH_TIMEOUT_SECONDS
        )
    }
}

/// Exponential backoff with jitter: `initial`, doubling, capped at `max`; each delay is
/// scaled by a random factor in [0.5, 1.0] so that many proxies do not reconnect in step.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
    jitter: bool,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(200), Duration::from_secs(30), true)
    }
}

impl Backoff {
    /// A backoff from `initial` up to `max`.
    pub fn new(initial: Duration, max: Duration, jitter: bool) -> Self {
        Backoff {
            initial,
            max,
            current: initial,
            jitter,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        if self.jitter {
            d.mul_f64(0.5 + 0.5 * random_unit())
        } else {
            d
        }
    }

    /// Back to `initial` (after a success).
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

/// A number in [0, 1) from std's per-process random hash keys (no rand dependency).
fn random_unit() -> f64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The Kubernetes source: where to connect and what to follow.
#[derive(Clone, Debug)]
pub struct KubeSource {
    client: Client,
    target: Target,
    backoff: Backoff,
}

/// What the loop shares with the server.
struct Ctx {
    client: Client,
    state: Arc<ArcSwap<Runtime>>,
    metrics: Arc<Metrics>,
    pools: Arc<Pools>,
    health: Arc<Health>,
    target: Target,
    /// resourceVersion of the last ConfigMap handled (skips replays of the same object).
    seen: Option<String>,
    creds: Creds,
}

/// The credentials Secret as far as the loop knows it.
#[derive(Debug)]
struct Creds {
    /// `<configmap>-credentials`.
    name: String,
    /// The `data` last read (kept when the Secret later cannot be read or is gone).
    data: BTreeMap<String, String>,
    /// The version the last decoded ConfigMap names (its credentials annotation).
    wanted: Option<String>,
    /// What is wrong now; logged when it changes.
    problem: Option<String>,
    /// When to read the Secret again (only while there is a problem).
    retry_at: Option<tokio::time::Instant>,
    backoff: Backoff,
}

impl KubeSource {
    /// Resolves the API server settings (`--kubeconfig`, `$KUBECONFIG`, in-cluster).
    pub fn new(
        target: Target,
        kubeconfig: Option<&std::path::Path>,
        context: Option<&str>,
    ) -> Result<Self, LoadError> {
        let settings = config::Settings::infer(kubeconfig, context)
            .map_err(|e| LoadError::Decode(format!("Kubernetes API: {e}")))?;
        let client =
            Client::new(settings).map_err(|e| LoadError::Decode(format!("Kubernetes API: {e}")))?;
        Ok(KubeSource {
            client,
            target,
            backoff: Backoff::default(),
        })
    }

    /// Replaces the reconnect backoff (tests use short ones).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Spawns the list/watch loop on the current tokio runtime. `health` turns ready on the
    /// first successful load.
    pub fn spawn(
        self,
        state: Arc<ArcSwap<Runtime>>,
        metrics: Arc<Metrics>,
        pools: Arc<Pools>,
        health: Arc<Health>,
    ) -> tokio::task::JoinHandle<()> {
        // Nothing loaded yet: the empty startup config is not a successful load.
        metrics.source_up.set(0);
        metrics.reload_success.set(0);
        let ctx = Ctx {
            client: self.client.clone(),
            state,
            metrics,
            pools,
            health,
            target: self.target.clone(),
            seen: None,
            creds: Creds {
                name: credentials::secret_name(&self.target.name),
                data: BTreeMap::new(),
                wanted: None,
                problem: None,
                retry_at: None,
                backoff: self.backoff.clone(),
            },
        };
        tokio::spawn(run(self.client, self.target, self.backoff, ctx))
    }
}

async fn run(client: Client, target: Target, mut backoff: Backoff, mut ctx: Ctx) {
    let server = client.server().to_string();
    tracing::info!(configmap = %target, %server, "following the GatewayConfig ConfigMap");
    'list: loop {
        let list = match client.list(&target).await {
            Ok(l) => l,
            Err(e) => {
                down(&ctx, &e, &mut backoff, "list").await;
                continue;
            }
        };
        up(&ctx);
        let mut rv = list.metadata.resource_version;
        match list.items.into_iter().find(|cm| ctx.concerns(cm)) {
            Some(cm) => ctx.apply(cm).await,
            None => ctx.missing("not found"),
        }
        loop {
            let started = Instant::now();
            let mut events = 0usize;
            let result = watch_once(&client, &target, &mut rv, &mut ctx, &mut events).await;
            let quick = events == 0 && started.elapsed() < Duration::from_secs(1);
            match result {
                Ok(()) => {
                    // The server ended the watch (timeoutSeconds): resume from rv. A server
                    // that ends every watch at once must not make us spin.
                    if quick {
                        tokio::time::sleep(backoff.next_delay()).await;
                    } else {
                        backoff.reset();
                    }
                }
                Err(ClientError::Gone) => {
                    tracing::info!(configmap = %target, "resourceVersion {rv} expired; listing again");
                    if quick {
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                    continue 'list;
                }
                Err(e) => {
                    if events > 0 {
                        backoff.reset();
                    }
                    down(&ctx, &e, &mut backoff, "watch").await;
                }
            }
        }
    }
}

/// One watch request: handles events until the stream ends or fails.
async fn watch_once(
    client: &Client,
    target: &Target,
    rv: &mut String,
    ctx: &mut Ctx,
    events: &mut usize,
) -> Result<(), ClientError> {
    let mut stream = client.watch(target, rv).await?;
    up(ctx);
    loop {
        // While the credentials Secret could not be read, it is read again alongside the
        // watch (`WatchStream::next` is cancel-safe: a frame is buffered before it returns).
        let next = match ctx.creds.retry_at {
            Some(at) => tokio::select! {
                ev = stream.next() => ev?,
                () = tokio::time::sleep_until(at) => {
                    ctx.retry_credentials().await;
                    continue;
                }
            },
            None => stream.next().await?,
        };
        let Some(ev) = next else { break };
        *events += 1;
        match ev {
            WatchEvent::Added(cm) | WatchEvent::Modified(cm) => {
                if ctx.concerns(&cm) {
                    rv.clone_from(&cm.metadata.resource_version);
                    ctx.apply(cm).await;
                }
            }
            WatchEvent::Deleted(cm) => {
                if ctx.concerns(&cm) {
                    rv.clone_from(&cm.metadata.resource_version);
                    ctx.seen = None;
                    ctx.missing("deleted");
                }
            }
            WatchEvent::Bookmark(v) => {
                if !v.is_empty() {
                    *rv = v;
                }
            }
            WatchEvent::Error(s) if s.code == 410 => return Err(ClientError::Gone),
            WatchEvent::Error(s) => {
                return Err(ClientError::Status {
                    code: s.code,
                    message: s.message,
                });
            }
        }
    }
    Ok(())
}

fn up(ctx: &Ctx) {
    if ctx.metrics.source_up.get() != 1 {
        tracing::info!(configmap = %ctx.target, "Kubernetes API reachable");
    }
    ctx.metrics.source_up.set(1);
}

async fn down(ctx: &Ctx, e: &ClientError, backoff: &mut Backoff, what: &str) {
    ctx.metrics.source_up.set(0);
    let delay = backoff.next_delay();
    tracing::warn!(configmap = %ctx.target, error = %e, retry_in = ?delay, "Kubernetes API {what} failed; keeping the current config");
    tokio::time::sleep(delay).await;
}

impl Ctx {
    /// The field selector should have filtered, but not every server honours it.
    fn concerns(&self, cm: &ConfigMap) -> bool {
        cm.metadata.name.is_empty() || cm.metadata.name == self.target.name
    }

    fn missing(&self, why: &str) {
        let m = &self.metrics;
        m.reload_success.set(0);
        m.reloads_total.with_label_values(&["failure"]).inc();
        if self.health.is_ready() {
            tracing::error!(configmap = %self.target, "GatewayConfig ConfigMap {why}; keeping the previous config");
        } else {
            tracing::error!(configmap = %self.target, "GatewayConfig ConfigMap {why}; not ready until it exists");
        }
    }

    async fn apply(&mut self, cm: ConfigMap) {
        let rv = cm.metadata.resource_version.clone();
        if !rv.is_empty() && self.seen.as_deref() == Some(rv.as_str()) {
            return;
        }
        self.seen = Some(rv);
        let wanted = cm
            .metadata
            .annotations
            .get(credentials::VERSION_ANNOTATION)
            .cloned();
        // Decoding (gunzip, JSON, validate) and Runtime::build stay off the async workers.
        let decoded = tokio::task::spawn_blocking(move || configmap::decode(&cm))
            .await
            .unwrap_or_else(|e| Err(LoadError::Decode(format!("decoding the ConfigMap: {e}"))));
        let loaded: Result<Loaded, LoadError> = match decoded {
            Ok(mut loaded) => {
                self.creds.wanted = wanted;
                loaded.secrets = self.secrets_for(&loaded.config).await;
                Ok(loaded)
            }
            Err(e) => Err(e),
        };
        let (state, metrics, pools) =
            (self.state.clone(), self.metrics.clone(), self.pools.clone());
        let result =
            tokio::task::spawn_blocking(move || watch::apply(loaded, &state, &metrics, &pools))
                .await
                .unwrap_or(Reload::Failed);
        if result != Reload::Failed && !self.health.is_ready() {
            tracing::info!(configmap = %self.target, "first config loaded; ready");
            self.health.set_ready(true);
        }
    }
}

impl Ctx {
    /// The values of the credentials `config` names, from the credentials Secret (read now),
    /// or from the last read when it cannot be read; nothing is read for a config without
    /// credentials. Problems are logged when they change and schedule a retry.
    async fn secrets_for(&mut self, config: &GatewayConfig) -> Secrets {
        if credentials::refs(config).next().is_none() {
            self.report(None);
            return Secrets::new();
        }
        let (ns, name) = (&self.target.namespace, &self.creds.name);
        let problem = match self.client.get_secret(ns, name).await {
            Ok(Some(secret)) => {
                let version = secret.version().map(str::to_string);
                self.creds.data = secret.data;
                match &self.creds.wanted {
                    // Usually a publish in progress (the operator writes the Secret, then
                    // the ConfigMap), so the values read are the newer ones.
                    Some(w) if version.as_ref() != Some(w) => Some(format!(
                        "credentials Secret {ns}/{name} has version {} but the ConfigMap names {w} (a publish in progress, or an edited Secret)",
                        version.as_deref().unwrap_or("(none)")
                    )),
                    _ => None,
                }
            }
            Ok(None) => Some(format!("credentials Secret {ns}/{name} not found")),
            Err(e) => Some(format!("credentials Secret {ns}/{name} unreadable: {e}")),
        };
        let (secrets, missing) = credentials::resolve(config, &self.creds.data);
        let problem = problem.or_else(|| {
            (!missing.is_empty()).then(|| {
                let names: Vec<String> = missing
                    .iter()
                    .map(|r| format!("{}/{} key {}", r.namespace, r.name, r.key))
                    .collect();
                format!(
                    "credentials Secret {ns}/{name} has no value for {}",
                    names.join(", ")
                )
            })
        });
        self.report(problem);
        secrets
    }

    /// Logs a new problem (or its end) once; schedules the next read while there is one.
    fn report(&mut self, problem: Option<String>) {
        let c = &mut self.creds;
        match &problem {
            Some(p) => {
                if c.problem.as_ref() != Some(p) {
                    tracing::warn!(configmap = %self.target, "{p}; @connections answers 403 for the credentials it cannot verify (the last values read keep serving); retrying");
                }
                c.retry_at = Some(tokio::time::Instant::now() + c.backoff.next_delay());
            }
            None => {
                if c.problem.is_some() {
                    tracing::info!(configmap = %self.target, secret = %c.name, "credentials Secret read; every credential can be verified");
                }
                c.retry_at = None;
                c.backoff.reset();
            }
        }
        c.problem = problem;
    }

    /// The retry: reads the Secret again for the served config; new values are swapped in.
    async fn retry_credentials(&mut self) {
        let config = self.state.load().config.clone();
        let secrets = self.secrets_for(&config).await;
        let (state, metrics, pools) =
            (self.state.clone(), self.metrics.clone(), self.pools.clone());
        let _ = tokio::task::spawn_blocking(move || {
            watch::replace_secrets(secrets, &state, &metrics, &pools)
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_build_paths() {
        let t: Target = "portico-system/portico-gateway-config".parse().unwrap();
        assert_eq!(t.to_string(), "portico-system/portico-gateway-config");
        assert_eq!(
            t.list_path(),
            "/api/v1/namespaces/portico-system/configmaps?fieldSelector=metadata.name%3Dportico-gateway-config"
        );
        assert_eq!(
            t.watch_path("12"),
            "/api/v1/namespaces/portico-system/configmaps?fieldSelector=metadata.name%3Dportico-gateway-config&watch=true&resourceVersion=12&allowWatchBookmarks=true&timeoutSeconds=290"
        );
        for bad in ["", "a", "/b", "a/", "A/b", "a/b/c", "a/b?x"] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(500),
            false,
        );
        let ms: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        let mut j = Backoff::new(Duration::from_millis(1000), Duration::from_secs(10), true);
        for _ in 0..20 {
            let d = j.next_delay();
            j.reset();
            assert!(
                d >= Duration::from_millis(500) && d <= Duration::from_millis(1000),
                "{d:?}"
            );
        }
    }
}

/// The credentials Secret against a small fake API server: ConfigMap list + watch, Secret get.
#[cfg(all(test, feature = "standalone"))]
mod credentials_tests {
    use super::*;
    use base64::Engine as _;
    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::{BodyExt as _, Full, StreamBody, combinators::BoxBody};
    use hyper::body::{Frame, Incoming};
    use hyper_util::rt::TokioIo;
    use portico_config::SecretKeyRef;
    use serde_json::{Value, json};
    use std::convert::Infallible;
    use std::sync::Mutex;
    use tokio::sync::broadcast;

    const AKID: &str = "AKIAPORTICOTEST00001";

    /// A WebSocket API naming `team-a/m` key `k`, compiled from manifests.
    fn ws_config_json() -> String {
        let yaml = format!(
            "apiVersion: portico.dev/v1alpha1\nkind: RestApi\nmetadata: {{name: chat, namespace: team-a}}\nspec:\n  protocol: WEBSOCKET\n  websocket:\n    managementCredentials:\n      - accessKeyId: {AKID}\n        secretKeyRef: {{name: m, key: k}}\n  routes:\n    - routeKey: $connect\n      integration: {{type: MOCK, mockResponse: {{statusCode: 200}}}}\n---\napiVersion: portico.dev/v1alpha1\nkind: Stage\nmetadata: {{name: prod, namespace: team-a}}\nspec: {{restApiRef: {{name: chat}}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: m, namespace: team-a}}\nstringData: {{k: unused}}\n"
        );
        let resources = portico_crds::parse_manifests("test", &yaml).unwrap();
        let out = portico_crds::compile(&portico_crds::Snapshot::from_resources(resources));
        assert!(
            !out.diagnostics.iter().any(|d| d.is_error()),
            "{:?}",
            out.diagnostics
        );
        out.config.to_json()
    }

    fn key() -> SecretKeyRef {
        SecretKeyRef {
            namespace: "team-a".into(),
            name: "m".into(),
            key: "k".into(),
        }
    }

    #[derive(Default)]
    struct State {
        rv: u64,
        config_map: Value,
        secret: Option<Value>,
        secret_gets: usize,
    }

    #[derive(Clone)]
    struct Fake {
        state: Arc<Mutex<State>>,
        live: broadcast::Sender<String>,
    }

    impl Fake {
        fn config_map(&self, credentials_version: &str) {
            let mut s = self.state.lock().unwrap();
            s.rv += 1;
            s.config_map = json!({
                "kind": "ConfigMap",
                "metadata": {"name": "gw", "namespace": "ns", "resourceVersion": s.rv.to_string(),
                             "annotations": {credentials::VERSION_ANNOTATION: credentials_version}},
                "data": {configmap::DATA_KEY: ws_config_json()},
            });
            let line = json!({"type": "MODIFIED", "object": s.config_map}).to_string();
            let _ = self.live.send(line);
        }

        fn secret(&self, version: &str, value: &str) {
            let data = base64::engine::general_purpose::STANDARD.encode(value);
            self.state.lock().unwrap().secret = Some(json!({
                "kind": "Secret",
                "metadata": {"name": "gw-credentials", "namespace": "ns",
                             "annotations": {credentials::VERSION_ANNOTATION: version}},
                "data": {credentials::data_key(&key()): data},
            }));
        }

        fn gets(&self) -> usize {
            self.state.lock().unwrap().secret_gets
        }

        fn handle(&self, req: &Request<Incoming>) -> Response<BoxBody<Bytes, Infallible>> {
            let (path, query) = (req.uri().path(), req.uri().query().unwrap_or(""));
            let mut s = self.state.lock().unwrap();
            let json = |status: StatusCode, v: &Value| {
                let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
                *r.status_mut() = status;
                r
            };
            match path {
                "/api/v1/namespaces/ns/secrets/gw-credentials" => {
                    s.secret_gets += 1;
                    match &s.secret {
                        Some(v) => json(StatusCode::OK, v),
                        None => json(
                            StatusCode::NOT_FOUND,
                            &json!({"kind": "Status", "code": 404}),
                        ),
                    }
                }
                "/api/v1/namespaces/ns/configmaps" if query.contains("watch=true") => {
                    let live = futures::stream::unfold(self.live.subscribe(), |mut rx| async {
                        let line = rx.recv().await.ok()?;
                        Some((
                            Ok::<_, Infallible>(Frame::data(Bytes::from(line + "\n"))),
                            rx,
                        ))
                    });
                    Response::new(BoxBody::new(StreamBody::new(live)))
                }
                "/api/v1/namespaces/ns/configmaps" => json(
                    StatusCode::OK,
                    &json!({"metadata": {"resourceVersion": s.rv.to_string()}, "items": [s.config_map]}),
                ),
                _ => json(
                    StatusCode::NOT_FOUND,
                    &json!({"kind": "Status", "code": 404}),
                ),
            }
        }
    }

    async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out: {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Missing at first: the config serves without the value (403 for the credential) and the
    /// get is retried until the Secret appears, then no more; a rotated value arrives with
    /// the ConfigMap whose annotation changed, the config itself unchanged.
    #[tokio::test]
    async fn the_credentials_secret_fills_the_runtime_retried_until_it_exists() {
        let fake = Fake {
            state: Arc::default(),
            live: broadcast::channel(16).0,
        };
        fake.config_map("v1");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = {
            let fake = fake.clone();
            tokio::spawn(async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let fake = fake.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let resp = fake.handle(&req);
                            async move { Ok::<_, Infallible>(resp) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            })
        };
        let kubeconfig = std::env::temp_dir().join(format!(
            "portico-kube-credentials-{}.yaml",
            std::process::id()
        ));
        std::fs::write(
            &kubeconfig,
            format!("apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n    server: http://{addr}\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n"),
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
        let task = KubeSource::new("ns/gw".parse().unwrap(), Some(&kubeconfig), None)
            .unwrap()
            .with_backoff(Backoff::new(
                Duration::from_millis(20),
                Duration::from_millis(100),
                false,
            ))
            .spawn(state.clone(), metrics.clone(), pools, health.clone());

        wait_for("ready", || health.is_ready()).await;
        assert_eq!(state.load().config.apis.len(), 1);
        assert!(state.load().secrets.is_empty());
        wait_for("retries", || fake.gets() >= 3).await;

        fake.secret("v1", "first-secret");
        wait_for("the value", || {
            state.load().secrets.get(&key()).map(String::as_str) == Some("first-secret")
        })
        .await;
        let gets = fake.gets();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(fake.gets(), gets, "no retry once the Secret is read");
        assert_eq!(metrics.reload_success.get(), 1);

        let version = state.load().version.clone();
        fake.secret("v2", "rotated-secret");
        fake.config_map("v2");
        wait_for("the rotated value", || {
            state.load().secrets.get(&key()).map(String::as_str) == Some("rotated-secret")
        })
        .await;
        assert_eq!(state.load().version, version);
        task.abort();
        server.abort();
        let _ = std::fs::remove_file(&kubeconfig);
    }
}
