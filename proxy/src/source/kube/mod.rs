//! `--kube-configmap NAMESPACE/NAME`: the GatewayConfig the operator publishes, read through
//! the Kubernetes API (list + watch), without kube-client (the dependency rules in
//! `docs/architecture.md`).
//!
//! ```text
//!  config.rs       kubeconfig | in-cluster service account -> Settings (server, TLS, auth)
//!  client.rs       hyper + rustls: list (fieldSelector=metadata.name | labelSelector) / watch
//!                  (NDJSON events) / get of the credentials Secret
//!  configmap.rs    ConfigMap -> data | gunzip(binaryData) -> GatewayConfig::from_json (+ validate)
//!                  | data[index] -> Index;  shard ConfigMap -> gunzip -> Shard
//!  credentials.rs  Secret "<configmap>-credentials" -> Runtime.secrets (values the config names)
//!  mod.rs          the loop below; every load goes through watch::apply (one ArcSwap::store)
//!
//!   ┌─> list ──(items[0]? apply : "missing", keep)──> rv
//!   │     └─ error: source_up 0, backoff, retry
//!   │   watch(rv) ─ ADDED/MODIFIED: apply ─ DELETED: keep ─ BOOKMARK: rv ─ end: re-watch(rv)
//!   │     │        (beside it: shard events from the shard watcher, and the credentials retry)
//!   │     └─ error/disconnect: source_up 0, backoff, re-watch(rv)
//!   └──── 410 Gone (HTTP or ERROR event): relist
//!
//!  apply = index? ──no──> decode ─> config names credentials? get Secret ─> watch::apply(config + secrets)
//!          (Secret problem: log once, keep the last values, retry the get beside the watch)
//!            └─yes─> start the shard watcher (once) ─> assemble
//!
//!  shard watcher (a task): list + watch labelSelector=portico.dev/config-of=NAME, the same
//!                 relist/backoff rules ─> Listed | Upsert | Deleted ─> channel ─> the loop
//!  assemble = every shard the index names present with its hash (annotation)?
//!               no: log what is missing, reload_success 0, keep the last good config, wait
//!               yes: decode the shards not cached by (name, hash) ─> distribution::assemble
//!                    (hashes, version) ─> validate ─> credentials ─> watch::apply
//! ```
//!
//! A sharded config (`docs/config-distribution.md`) is served only complete and consistent:
//! the operator writes the changed shards before the index, but the two watches may deliver
//! them in any order, so an index naming a shard not seen yet waits for it, and the previous
//! config keeps serving. A shard deleted after its index was served changes nothing served.
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
use portico_config::distribution::{self, Index, Shard};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

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
        watch_path(&self.list_path(), resource_version)
    }

    /// The list request of the shards (label `portico.dev/config-of=NAME`). RBAC cannot grant
    /// by label: listing them needs `list`/`watch` on the namespace's ConfigMaps.
    pub fn shards_list_path(&self) -> String {
        format!(
            "/api/v1/namespaces/{}/configmaps?labelSelector={}%3D{}",
            self.namespace,
            configmap::CONFIG_OF_LABEL.replace('/', "%2F"),
            self.name
        )
    }

    /// The watch request of the shards from `resource_version`.
    pub fn shards_watch_path(&self, resource_version: &str) -> String {
        watch_path(&self.shards_list_path(), resource_version)
    }

    /// The ConfigMap name of shard `shard` (`keys-3`).
    pub fn shard_name(&self, shard: &str) -> String {
        format!("{}-{shard}", self.name)
    }
}

fn watch_path(list_path: &str, resource_version: &str) -> String {
    let rv: String =
        percent_encoding::utf8_percent_encode(resource_version, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    format!(
        "{list_path}&watch=true&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds={}",
        client::WATCH_TIMEOUT_SECONDS
    )
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
    shard_decodes: Arc<AtomicUsize>,
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
    sharded: Sharded,
}

/// What the shard watcher reports.
#[derive(Debug)]
enum ShardEvent {
    /// A (re)list: every shard ConfigMap there is.
    Listed(Vec<ConfigMap>),
    /// A shard ConfigMap created or changed.
    Upsert(ConfigMap),
    /// A shard ConfigMap deleted (its name).
    Deleted(String),
}

/// A sharded config as far as the loop knows it.
#[derive(Debug, Default)]
struct Sharded {
    /// The index the named ConfigMap holds (`None`: it holds the whole config).
    index: Option<Index>,
    /// The version of the index last served.
    served: Option<String>,
    /// The shard ConfigMaps by name (`None` until the watcher's first list).
    live: Option<BTreeMap<String, ConfigMap>>,
    /// Decoded shards by (ConfigMap name, hash): only changed shards are decoded again.
    decoded: HashMap<(String, String), Arc<Shard>>,
    /// What the last wait was for (logged when it changes).
    waiting: Option<String>,
    /// Events of the shard watcher (started by the first index).
    rx: Option<mpsc::UnboundedReceiver<ShardEvent>>,
    /// Shards decoded so far (tests and logs).
    decodes: Arc<AtomicUsize>,
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
            shard_decodes: Arc::default(),
        })
    }

    /// Counts the shard ConfigMaps decoded (a shard unchanged since the last decode is not
    /// decoded again).
    pub fn shard_decodes(&self) -> Arc<AtomicUsize> {
        self.shard_decodes.clone()
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
            sharded: Sharded {
                decodes: self.shard_decodes.clone(),
                ..Sharded::default()
            },
        };
        tokio::spawn(run(self.client, self.target, self.backoff, ctx))
    }
}

/// What follows a watch that ended, for both list/watch loops (the ConfigMap's, the shards').
enum WatchEnd {
    /// The server ended it (timeoutSeconds): watch again from the last resourceVersion.
    Resume,
    /// 410 Gone: the resourceVersion expired; list again.
    Relist,
}

/// Decides what follows a watch that ended with `result` after `events` events since
/// `started`. A watch that ends at once without an event (a server that ends every watch
/// at once, or keeps answering 410) waits a backoff step first, so that nothing spins; one
/// that ran normally resets the backoff. An error is handed back (after resetting the
/// backoff if events had come) for the caller to report and wait on.
async fn watch_ended(
    result: Result<(), ClientError>,
    events: usize,
    started: Instant,
    backoff: &mut Backoff,
) -> Result<WatchEnd, ClientError> {
    let quick = events == 0 && started.elapsed() < Duration::from_secs(1);
    match result {
        Ok(()) if quick => tokio::time::sleep(backoff.next_delay()).await,
        Ok(()) => backoff.reset(),
        Err(ClientError::Gone) => {
            if quick {
                tokio::time::sleep(backoff.next_delay()).await;
            }
            return Ok(WatchEnd::Relist);
        }
        Err(e) => {
            if events > 0 {
                backoff.reset();
            }
            return Err(e);
        }
    }
    Ok(WatchEnd::Resume)
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
            match watch_ended(result, events, started, &mut backoff).await {
                Ok(WatchEnd::Resume) => {}
                Ok(WatchEnd::Relist) => {
                    tracing::info!(configmap = %target, "resourceVersion {rv} expired; listing again");
                    continue 'list;
                }
                Err(e) => down(&ctx, &e, &mut backoff, "watch").await,
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
        // watch; shard events are handled alongside it too (`WatchStream::next` is
        // cancel-safe: a frame is buffered before it returns).
        let next = {
            let retry_at = ctx.creds.retry_at;
            let shards = ctx.sharded.rx.as_mut();
            tokio::select! {
                ev = stream.next() => Next::Watch(ev?),
                () = sleep_until_some(retry_at) => Next::Retry,
                ev = recv_some(shards) => Next::Shard(ev),
            }
        };
        let ev = match next {
            Next::Watch(ev) => ev,
            Next::Retry => {
                ctx.retry_credentials().await;
                continue;
            }
            Next::Shard(Some(ev)) => {
                ctx.on_shard_event(ev).await;
                continue;
            }
            Next::Shard(None) => {
                // The watcher is gone (it never ends by itself): start it again.
                ctx.sharded.rx = None;
                ctx.start_shard_watch();
                continue;
            }
        };
        let Some(ev) = ev else { break };
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

/// What woke the watch loop.
enum Next {
    Watch(Option<WatchEvent>),
    Retry,
    Shard(Option<ShardEvent>),
}

/// Sleeps until `at`; forever when `None`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next event of `rx`; pending forever when there is no receiver.
async fn recv_some(rx: Option<&mut mpsc::UnboundedReceiver<ShardEvent>>) -> Option<ShardEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The shard watcher: list + watch the ConfigMaps labelled `portico.dev/config-of=NAME`,
/// reporting every change on `tx`, until the loop drops the receiver.
async fn run_shards(
    client: Client,
    target: Target,
    tx: mpsc::UnboundedSender<ShardEvent>,
    mut backoff: Backoff,
) {
    let is_shard = |cm: &ConfigMap| {
        cm.metadata.labels.get(configmap::CONFIG_OF_LABEL) == Some(&target.name)
            && cm.metadata.name != target.name
    };
    let failed = |what: &str, e: &ClientError, delay: Duration| {
        tracing::warn!(configmap = %target, error = %e, retry_in = ?delay, "Kubernetes API {what} of the shard ConfigMaps failed; keeping the current config");
    };
    'list: loop {
        let list = match client.list_at(&target.shards_list_path()).await {
            Ok(l) => l,
            Err(e) => {
                let delay = backoff.next_delay();
                failed("list", &e, delay);
                tokio::time::sleep(delay).await;
                continue;
            }
        };
        let mut rv = list.metadata.resource_version;
        let items = list.items.into_iter().filter(|cm| is_shard(cm)).collect();
        if tx.send(ShardEvent::Listed(items)).is_err() {
            return;
        }
        loop {
            let started = Instant::now();
            let mut events = 0usize;
            let result: Result<(), ClientError> = async {
                let mut stream = client.watch_at(&target.shards_watch_path(&rv)).await?;
                while let Some(ev) = stream.next().await? {
                    events += 1;
                    let sent = match ev {
                        WatchEvent::Added(cm) | WatchEvent::Modified(cm) => {
                            rv.clone_from(&cm.metadata.resource_version);
                            !is_shard(&cm) || tx.send(ShardEvent::Upsert(cm)).is_ok()
                        }
                        WatchEvent::Deleted(cm) => {
                            rv.clone_from(&cm.metadata.resource_version);
                            !is_shard(&cm) || tx.send(ShardEvent::Deleted(cm.metadata.name)).is_ok()
                        }
                        WatchEvent::Bookmark(v) => {
                            if !v.is_empty() {
                                rv = v;
                            }
                            true
                        }
                        WatchEvent::Error(s) if s.code == 410 => return Err(ClientError::Gone),
                        WatchEvent::Error(s) => {
                            return Err(ClientError::Status {
                                code: s.code,
                                message: s.message,
                            });
                        }
                    };
                    if !sent {
                        return Ok(());
                    }
                }
                Ok(())
            }
            .await;
            if tx.is_closed() {
                return;
            }
            match watch_ended(result, events, started, &mut backoff).await {
                Ok(WatchEnd::Resume) => {}
                Ok(WatchEnd::Relist) => continue 'list,
                Err(e) => {
                    let delay = backoff.next_delay();
                    failed("watch", &e, delay);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
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
        match configmap::index(&cm) {
            Some(Ok(index)) => {
                self.creds.wanted = wanted;
                self.sharded.index = Some(index);
                self.sharded.served = None;
                self.start_shard_watch();
                self.assemble().await;
                return;
            }
            Some(Err(e)) => {
                self.finish(Err(e)).await;
                return;
            }
            None => self.sharded.index = None,
        }
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
        self.finish(loaded).await;
    }

    /// Hands a load to `watch::apply` (off the async workers); the first success makes the
    /// proxy ready.
    async fn finish(&mut self, loaded: Result<Loaded, LoadError>) -> Reload {
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
        result
    }

    /// Starts the shard watcher unless it runs.
    fn start_shard_watch(&mut self) {
        if self.sharded.rx.is_some() {
            return;
        }
        tracing::info!(configmap = %self.target, "the ConfigMap holds an index; following its shards");
        let (tx, rx) = mpsc::unbounded_channel();
        self.sharded.rx = Some(rx);
        tokio::spawn(run_shards(
            self.client.clone(),
            self.target.clone(),
            tx,
            self.creds.backoff.clone(),
        ));
    }

    async fn on_shard_event(&mut self, ev: ShardEvent) {
        let live = self.sharded.live.get_or_insert_with(BTreeMap::new);
        match ev {
            ShardEvent::Listed(items) => {
                *live = items
                    .into_iter()
                    .map(|cm| (cm.metadata.name.clone(), cm))
                    .collect();
            }
            ShardEvent::Upsert(cm) => {
                live.insert(cm.metadata.name.clone(), cm);
            }
            ShardEvent::Deleted(name) => {
                live.remove(&name);
                let named = self.sharded.index.as_ref().is_some_and(|i| {
                    i.shards
                        .iter()
                        .any(|s| self.target.shard_name(&s.name) == name)
                });
                if named {
                    tracing::warn!(configmap = %self.target, shard = %name, "a shard ConfigMap the index names was deleted; the config built from it keeps serving");
                }
            }
        }
        self.assemble().await;
    }

    /// Serves the config the index names once every shard it names is present with its hash;
    /// until then logs what is missing and keeps the last good config.
    async fn assemble(&mut self) {
        let Some(index) = self.sharded.index.clone() else {
            return;
        };
        if self.sharded.served.as_deref() == Some(index.version.as_str()) {
            return;
        }
        let Some(live) = &self.sharded.live else {
            // The watcher's first list is on its way.
            return;
        };
        let missing: Vec<String> = index
            .shards
            .iter()
            .map(|r| (self.target.shard_name(&r.name), r))
            .filter(|(n, r)| live.get(n).map(configmap::shard_version) != Some(r.hash.as_str()))
            .map(|(n, _)| n)
            .collect();
        if !missing.is_empty() {
            self.wait_for(format!(
                "index {} names shard ConfigMap(s) not present with its hash: {}",
                &index.version[..12.min(index.version.len())],
                missing.join(", ")
            ));
            return;
        }
        // Decode the shards not cached (by name and hash).
        let todo: Vec<(ConfigMap, distribution::ShardRef)> = index
            .shards
            .iter()
            .filter(|r| {
                !self
                    .sharded
                    .decoded
                    .contains_key(&(self.target.shard_name(&r.name), r.hash.clone()))
            })
            .map(|r| (live[&self.target.shard_name(&r.name)].clone(), r.clone()))
            .collect();
        self.sharded
            .decodes
            .fetch_add(todo.len(), Ordering::Relaxed);
        let decoded = tokio::task::spawn_blocking(move || {
            todo.into_iter()
                .map(|(cm, r)| {
                    let d = configmap::decode_shard(&cm, &r);
                    (cm.metadata.name, r, d)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut errors = Vec::new();
        for (name, r, d) in decoded {
            match d {
                Ok(shard) if shard.hash == r.hash => {
                    self.sharded.decoded.insert((name, r.hash), Arc::new(shard));
                }
                Ok(shard) => errors.push(format!(
                    "shard ConfigMap {name} holds hash {} but is annotated {}",
                    shard.hash, r.hash
                )),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            self.finish(Err(LoadError::Decode(errors.join("; ")))).await;
            return;
        }
        // Only the index's shards stay cached.
        let keep: HashMap<(String, String), Arc<Shard>> = index
            .shards
            .iter()
            .filter_map(|r| {
                let k = (self.target.shard_name(&r.name), r.hash.clone());
                let v = self.sharded.decoded.get(&k)?.clone();
                Some((k, v))
            })
            .collect();
        self.sharded.decoded = keep;
        let shards: HashMap<String, Arc<Shard>> = self
            .sharded
            .decoded
            .iter()
            .map(|((_, _), s)| (s.name.clone(), s.clone()))
            .collect();
        let idx = index.clone();
        // `assemble` checks the assembled config's content hash against the index's.
        let version = index.version.clone();
        let what = format!("ConfigMap {} (sharded)", self.target);
        let assembled = tokio::task::spawn_blocking(move || {
            let config = distribution::assemble(&idx, |r| shards.get(&r.name).map(|s| &**s))
                .map_err(|e| LoadError::Decode(format!("{what}: {e}")))?;
            config
                .validate()
                .map_err(|e| LoadError::Decode(format!("{what}: {e}")))?;
            Ok::<_, LoadError>(config)
        })
        .await
        .unwrap_or_else(|e| Err(LoadError::Decode(format!("assembling the shards: {e}"))));
        let loaded = match assembled {
            Ok(config) => {
                let secrets = self.secrets_for(&config).await;
                Ok(Loaded {
                    config,
                    diagnostics: Vec::new(),
                    secrets,
                    version: Some(version),
                })
            }
            Err(e) => Err(e),
        };
        let ok = loaded.is_ok();
        if self.finish(loaded).await != Reload::Failed && ok {
            if self.sharded.waiting.take().is_some() {
                tracing::info!(configmap = %self.target, shards = index.shards.len(), "every shard the index names is present");
            }
            self.sharded.served = Some(index.version);
        }
    }

    /// Logs (when it changed) and counts a wait for shards; the last good config keeps serving.
    fn wait_for(&mut self, what: String) {
        let m = &self.metrics;
        m.reload_success.set(0);
        if self.sharded.waiting.as_ref() != Some(&what) {
            m.reloads_total.with_label_values(&["failure"]).inc();
            tracing::warn!(configmap = %self.target, "{what}; keeping the last good config until the set is complete");
            self.sharded.waiting = Some(what);
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

/// What the fake-API-server tests below share: the server, a kubeconfig naming it, and an
/// empty served state.
#[cfg(all(test, feature = "standalone"))]
mod test_support {
    use super::*;
    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::combinators::BoxBody;
    use hyper::body::Incoming;
    use hyper_util::rt::TokioIo;
    use std::convert::Infallible;
    use std::path::PathBuf;

    /// Serves `handle` on a free 127.0.0.1 port until aborted.
    pub async fn serve<F>(handle: F) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>)
    where
        F: Fn(&Request<Incoming>) -> Response<BoxBody<Bytes, Infallible>>
            + Clone
            + Send
            + Sync
            + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let handle = handle.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let resp = handle(&req);
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

    /// A kubeconfig (in the temp dir, named after `tag`) whose server is `addr`.
    pub fn kubeconfig(addr: std::net::SocketAddr, tag: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("portico-kube-{tag}-{}.yaml", std::process::id()));
        std::fs::write(
            &path,
            format!("apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster:\n    server: http://{addr}\nusers:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n"),
        )
        .unwrap();
        path
    }

    /// The proxy's side: metrics, pools, an empty served config, health.
    pub fn empty_state() -> (Arc<Metrics>, Arc<Pools>, Arc<ArcSwap<Runtime>>, Arc<Health>) {
        let metrics = Arc::new(Metrics::new());
        let pools = Pools::new();
        let state = Arc::new(ArcSwap::from_pointee(Runtime::build(
            GatewayConfig::empty(),
            &metrics,
            &pools,
        )));
        (metrics, pools, state, Arc::new(Health::default()))
    }

    /// A JSON answer of the fake API server.
    pub fn json(
        status: http::StatusCode,
        v: &serde_json::Value,
    ) -> Response<BoxBody<Bytes, Infallible>> {
        use http_body_util::BodyExt as _;
        let mut r = Response::new(http_body_util::Full::new(Bytes::from(v.to_string())).boxed());
        *r.status_mut() = status;
        r
    }

    /// A watch answer of the fake API server: each line `rx` receives, as an NDJSON event.
    pub fn watch(
        rx: tokio::sync::broadcast::Receiver<String>,
    ) -> Response<BoxBody<Bytes, Infallible>> {
        let live = futures::stream::unfold(rx, |mut rx| async {
            let line = rx.recv().await.ok()?;
            Some((
                Ok::<_, Infallible>(hyper::body::Frame::data(Bytes::from(line + "\n"))),
                rx,
            ))
        });
        Response::new(BoxBody::new(http_body_util::StreamBody::new(live)))
    }

    /// Waits (at most 10 s, then panics naming `what`) until `cond` holds.
    pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out: {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A source for `ns/gw` through `kubeconfig`, retrying fast.
    pub fn source(kubeconfig: &std::path::Path) -> KubeSource {
        KubeSource::new("ns/gw".parse().unwrap(), Some(kubeconfig), None)
            .unwrap()
            .with_backoff(Backoff::new(
                Duration::from_millis(20),
                Duration::from_millis(100),
                false,
            ))
    }
}

/// The credentials Secret against a small fake API server: ConfigMap list + watch, Secret get.
#[cfg(all(test, feature = "standalone"))]
mod credentials_tests {
    use super::test_support::wait_for;
    use super::*;
    use base64::Engine as _;
    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::combinators::BoxBody;
    use hyper::body::Incoming;
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
            let json = super::test_support::json;
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
                    super::test_support::watch(self.live.subscribe())
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
        let (addr, server) = {
            let fake = fake.clone();
            super::test_support::serve(move |req| fake.handle(req)).await
        };
        let kubeconfig = super::test_support::kubeconfig(addr, "credentials");
        let (metrics, pools, state, health) = super::test_support::empty_state();
        let task = super::test_support::source(&kubeconfig).spawn(
            state.clone(),
            metrics.clone(),
            pools,
            health.clone(),
        );

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

/// A sharded config against a small fake API server: the named ConfigMap (field selector) and
/// its shards (label selector), each listed and watched.
#[cfg(all(test, feature = "standalone"))]
mod shard_tests {
    use super::test_support::wait_for;
    use super::*;
    use base64::Engine as _;
    use bytes::Bytes;
    use flate2::{Compression, write::GzEncoder};
    use http::{Request, Response, StatusCode};
    use http_body_util::combinators::BoxBody;
    use hyper::body::Incoming;
    use serde_json::{Value, json};
    use std::convert::Infallible;
    use std::io::Write as _;
    use std::sync::Mutex;
    use tokio::sync::broadcast;

    /// `apis` RestApis with a Stage each and `keys` ApiKeys on one plan, compiled.
    fn fleet(apis: usize, keys: usize) -> GatewayConfig {
        let mut yaml = String::new();
        for i in 0..apis {
            yaml.push_str(&format!("---\napiVersion: portico.dev/v1alpha1\nkind: RestApi\nmetadata: {{name: t{i}, namespace: ns}}\nspec:\n  resources:\n    - path: /r\n      methods:\n        GET: {{apiKeyRequired: true, integration: {{type: MOCK, mockResponse: {{statusCode: 200}}}}}}\n---\napiVersion: portico.dev/v1alpha1\nkind: Stage\nmetadata: {{name: t{i}, namespace: ns}}\nspec: {{restApiRef: {{name: t{i}}}}}\n"));
        }
        yaml.push_str("---\napiVersion: portico.dev/v1alpha1\nkind: UsagePlan\nmetadata: {name: p, namespace: ns}\nspec:\n  apiStages:\n");
        for i in 0..apis {
            yaml.push_str(&format!("    - stageRef: {{name: t{i}}}\n"));
        }
        for k in 0..keys {
            yaml.push_str(&format!("---\napiVersion: portico.dev/v1alpha1\nkind: ApiKey\nmetadata: {{name: k{k}, namespace: ns}}\nspec:\n  valueFrom: {{secretKeyRef: {{name: k{k}, key: v}}}}\n  usagePlanRefs: [{{name: p}}]\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: k{k}, namespace: ns}}\nstringData: {{v: value-{k}}}\n"));
        }
        let resources = portico_crds::parse_manifests("test", &yaml).unwrap();
        let out = portico_crds::compile(&portico_crds::Snapshot::from_resources(resources));
        assert!(
            !out.diagnostics.iter().any(|d| d.is_error()),
            "{:?}",
            out.diagnostics
        );
        assert_eq!(out.config.api_keys.len(), keys);
        out.config
    }

    #[derive(Default)]
    struct State {
        rv: u64,
        named: Option<Value>,
        shards: BTreeMap<String, Value>,
    }

    #[derive(Clone)]
    struct Fake {
        state: Arc<Mutex<State>>,
        named_live: broadcast::Sender<String>,
        shards_live: broadcast::Sender<String>,
    }

    fn gz_b64(text: &str) -> String {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(text.as_bytes()).unwrap();
        base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
    }

    impl Fake {
        fn new() -> Self {
            Fake {
                state: Arc::default(),
                named_live: broadcast::channel(64).0,
                shards_live: broadcast::channel(1024).0,
            }
        }

        fn set_named(&self, data: Value) {
            let mut s = self.state.lock().unwrap();
            s.rv += 1;
            let cm = json!({"kind": "ConfigMap", "metadata": {"name": "gw", "namespace": "ns",
                "resourceVersion": s.rv.to_string()}, "data": data});
            s.named = Some(cm.clone());
            let _ = self
                .named_live
                .send(json!({"type": "MODIFIED", "object": cm}).to_string());
        }

        fn index(&self, index: &Index) {
            self.set_named(json!({configmap::INDEX_KEY: index.to_json()}));
        }

        fn whole(&self, config: &GatewayConfig) {
            self.set_named(json!({configmap::DATA_KEY: config.to_json()}));
        }

        fn shard(&self, shard: &Shard) {
            let mut s = self.state.lock().unwrap();
            s.rv += 1;
            let name = format!("gw-{}", shard.name);
            let cm = json!({"kind": "ConfigMap", "metadata": {"name": name, "namespace": "ns",
                "resourceVersion": s.rv.to_string(),
                "labels": {configmap::CONFIG_OF_LABEL: "gw"},
                "annotations": {configmap::SHARD_VERSION_ANNOTATION: shard.hash}},
                "binaryData": {configmap::SHARD_KEY: gz_b64(&shard.to_json())}});
            s.shards.insert(name, cm.clone());
            let _ = self
                .shards_live
                .send(json!({"type": "MODIFIED", "object": cm}).to_string());
        }

        fn delete_shard(&self, shard: &str) {
            let mut s = self.state.lock().unwrap();
            s.rv += 1;
            let mut cm = s.shards.remove(&format!("gw-{shard}")).unwrap();
            cm["metadata"]["resourceVersion"] = s.rv.to_string().into();
            let _ = self
                .shards_live
                .send(json!({"type": "DELETED", "object": cm}).to_string());
        }

        fn handle(&self, req: &Request<Incoming>) -> Response<BoxBody<Bytes, Infallible>> {
            let (path, query) = (req.uri().path(), req.uri().query().unwrap_or(""));
            let s = self.state.lock().unwrap();
            let json = super::test_support::json;
            let shards = query.contains("labelSelector=portico.dev%2Fconfig-of%3Dgw");
            let named = query.contains("fieldSelector=metadata.name%3Dgw");
            if path != "/api/v1/namespaces/ns/configmaps" || shards == named {
                return json(
                    StatusCode::NOT_FOUND,
                    &json!({"kind": "Status", "code": 404}),
                );
            }
            if query.contains("watch=true") {
                let rx = if shards {
                    self.shards_live.subscribe()
                } else {
                    self.named_live.subscribe()
                };
                return super::test_support::watch(rx);
            }
            let items: Vec<Value> = if shards {
                s.shards.values().cloned().collect()
            } else {
                s.named.iter().cloned().collect()
            };
            json(
                StatusCode::OK,
                &json!({"metadata": {"resourceVersion": s.rv.to_string()}, "items": items}),
            )
        }
    }

    /// Served once complete; a new index arriving before its changed shard keeps the old config
    /// until the shard comes, and decodes only that shard; a deleted shard changes nothing
    /// served; an index naming a missing shard waits; the single-document format still works.
    #[tokio::test]
    async fn a_sharded_config_is_served_only_complete_and_only_changed_shards_are_decoded() {
        let v1 = fleet(6, 30);
        // v1's objects and one more key.
        let v2 = fleet(6, 31);
        let (index1, shards1) = distribution::split(&v1, 2048);
        let (index2, shards2) = distribution::split(&v2, 2048);
        assert!(index1.shards.len() >= 4, "{index1:?}");
        assert_eq!(index1.shards.len(), index2.shards.len());
        let changed: Vec<&Shard> = shards2.iter().filter(|s| !shards1.contains(s)).collect();
        assert!(
            !changed.is_empty() && changed.len() <= 2,
            "one key shard (and the plan's, which names no key): {:?}",
            changed.iter().map(|s| &s.name).collect::<Vec<_>>()
        );

        let fake = Fake::new();
        for s in &shards1 {
            fake.shard(s);
        }
        fake.index(&index1);
        let (addr, server) = {
            let fake = fake.clone();
            super::test_support::serve(move |req| fake.handle(req)).await
        };
        let kubeconfig = super::test_support::kubeconfig(addr, "shards");
        let (metrics, pools, state, health) = super::test_support::empty_state();
        let source = super::test_support::source(&kubeconfig);
        let decodes = source.shard_decodes();
        let task = source.spawn(state.clone(), metrics.clone(), pools, health.clone());

        // Complete: served.
        wait_for("ready", || health.is_ready()).await;
        assert_eq!(state.load().version, v1.content_hash());
        assert_eq!(*state.load().config, v1);
        assert_eq!(decodes.load(Ordering::Relaxed), index1.shards.len());
        assert_eq!(metrics.reload_success.get(), 1);

        // The index before its changed shard(s): v1 keeps serving, the wait is counted.
        fake.index(&index2);
        wait_for("the wait counted", || metrics.reload_success.get() == 0).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(state.load().version, v1.content_hash());
        for s in &changed {
            fake.shard(s);
        }
        wait_for("v2 served", || state.load().version == v2.content_hash()).await;
        assert_eq!(*state.load().config, v2);
        assert_eq!(metrics.reload_success.get(), 1);
        assert_eq!(
            decodes.load(Ordering::Relaxed),
            index1.shards.len() + changed.len(),
            "only the changed shards are decoded again"
        );

        // A shard deleted: v2 keeps serving.
        fake.delete_shard(&index2.shards[0].name);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(state.load().version, v2.content_hash());
        assert_eq!(metrics.reload_success.get(), 1);

        // Back to v1's index: v1's shard(s) are missing (only v2's are there), so it waits,
        // then is served when they come back.
        fake.index(&index1);
        wait_for("waiting", || metrics.reload_success.get() == 0).await;
        assert_eq!(state.load().version, v2.content_hash());
        for s in &shards1 {
            fake.shard(s);
        }
        wait_for("v1 served", || state.load().version == v1.content_hash()).await;

        // The single-document format: served as before.
        let small = fleet(1, 1);
        fake.whole(&small);
        wait_for("whole served", || {
            state.load().version == small.content_hash()
        })
        .await;
        assert_eq!(metrics.reload_success.get(), 1);
        task.abort();
        server.abort();
        let _ = std::fs::remove_file(&kubeconfig);
    }
}
