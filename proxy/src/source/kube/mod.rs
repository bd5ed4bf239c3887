//! `--kube-configmap NAMESPACE/NAME`: the GatewayConfig the operator publishes, read through
//! the Kubernetes API (list + watch), without kube-client (the dependency rules in
//! `docs/architecture.md`).
//!
//! ```text
//!  config.rs     kubeconfig | in-cluster service account -> Settings (server, TLS, auth)
//!  client.rs     hyper + rustls: list (fieldSelector=metadata.name) / watch (NDJSON events)
//!  configmap.rs  ConfigMap -> data | gunzip(binaryData) -> GatewayConfig::from_json (+ validate)
//!  mod.rs        the loop below; every load goes through watch::apply (one ArcSwap::store)
//!
//!   ┌─> list ──(items[0]? apply : "missing", keep)──> rv
//!   │     └─ error: source_up 0, backoff, retry
//!   │   watch(rv) ─ ADDED/MODIFIED: apply ─ DELETED: keep ─ BOOKMARK: rv ─ end: re-watch(rv)
//!   │     └─ error/disconnect: source_up 0, backoff, re-watch(rv)
//!   └──── 410 Gone (HTTP or ERROR event): relist
//! ```
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

use super::watch::{self, Reload};
use super::{LoadError, Loaded};
use crate::admin::Health;
use crate::metrics::Metrics;
use crate::pool::Pools;
use crate::runtime::Runtime;
use arc_swap::ArcSwap;
use client::{Client, ClientError, WatchEvent};
use configmap::ConfigMap;
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
    state: Arc<ArcSwap<Runtime>>,
    metrics: Arc<Metrics>,
    pools: Arc<Pools>,
    health: Arc<Health>,
    target: Target,
    /// resourceVersion of the last ConfigMap handled (skips replays of the same object).
    seen: Option<String>,
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
            state,
            metrics,
            pools,
            health,
            target: self.target.clone(),
            seen: None,
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
    while let Some(ev) = stream.next().await? {
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
        let (state, metrics, pools) =
            (self.state.clone(), self.metrics.clone(), self.pools.clone());
        // Decoding (gunzip, JSON, validate) and Runtime::build stay off the async workers.
        let result = tokio::task::spawn_blocking(move || {
            let loaded: Result<Loaded, LoadError> = configmap::decode(&cm);
            watch::apply(loaded, &state, &metrics, &pools)
        })
        .await
        .unwrap_or(Reload::Failed);
        if result != Reload::Failed && !self.health.is_ready() {
            tracing::info!(configmap = %self.target, "first config loaded; ready");
            self.health.set_ready(true);
        }
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
