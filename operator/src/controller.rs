//! The controller: watches, a debounced whole-snapshot reconcile, and the process wiring.
//!
//! ```text
//!  reflectors ──any event──> changed_tx ──debounce──┐
//!  leader_rx (Lease) ──became leader──────────────────┼──> reconcile(ctx, snapshot)   (leader only)
//!  requeue timer (error_policy / resync) ─────────────┘      api_key::ensure_secrets
//!                                                            compile
//!                                                            publish::Publisher::publish
//!                                                              (credentials Secret, then the
//!                                                               changed shards when sharded,
//!                                                               then the ConfigMap)
//!                                                            status::write_statuses
//! ```
//!
//! Entry points: [`run`] (the `run` subcommand) and [`reconcile`] (one pass, tested against
//! the mocked API server). The [`Context`] a pass runs with, and the
//! [`State`](crate::context::State) the admin server reports, live in [`crate::context`].

use crate::api_key;
use crate::context::Context;
use crate::leader::{LeaderElector, LeaseConfig};
use crate::metrics::Metrics;
use crate::publish::{self, Limits, Published};
use crate::snapshot::Stores;
use crate::status::{self, Programmed};
use crate::telemetry::{self, LogFormat};
use crate::{Error, Result};
use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Api, ListParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use portico_crds::api::{ApiKey, Authorizer, RestApi, Stage, UsagePlan};
use portico_crds::{Snapshot, compile};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long after the last change a reconcile starts.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(500);
/// A reconcile waits at most this long for changes to settle.
const MAX_DEBOUNCE: Duration = Duration::from_secs(5);
/// Periodic full reconcile, in case an event was missed (default of `--resync-seconds`).
const RESYNC: Duration = Duration::from_secs(300);

/// Flags of `portico-operator run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Namespaces to watch, comma-separated; empty watches all namespaces.
    #[arg(long, env = "PORTICO_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Label selector for the Portico resources (e.g. `portico.dev/gateway=public`).
    #[arg(long, env = "PORTICO_LABEL_SELECTOR")]
    pub label_selector: Option<String>,
    /// Label selector for the Secrets the operator reads (API key values); empty reads all.
    #[arg(long, default_value = "portico.dev/secret")]
    pub secret_label_selector: String,
    /// Namespace of the GatewayConfig ConfigMap.
    #[arg(long, env = "POD_NAMESPACE", default_value = "portico-system")]
    pub config_map_namespace: String,
    /// Name of the GatewayConfig ConfigMap.
    #[arg(long, default_value = publish::DEFAULT_CONFIG_MAP_NAME)]
    pub config_map_name: String,
    /// A GatewayConfig stored larger than this (gzipped when large) is published as shards of
    /// about this many bytes of JSON under an index in the ConfigMap
    /// (`docs/config-distribution.md`); at most this size it stays one ConfigMap.
    #[arg(long, default_value_t = publish::DEFAULT_SHARD_BYTES, value_parser = parse_shard_bytes)]
    pub config_shard_bytes: usize,
    /// Name of the leader election Lease.
    #[arg(long, default_value = "portico-operator")]
    pub lease_name: String,
    /// Namespace of the Lease; defaults to --config-map-namespace.
    #[arg(long)]
    pub lease_namespace: Option<String>,
    /// This replica's identity in the Lease; defaults to the host name.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Run without leader election (only for a single replica).
    #[arg(long)]
    pub disable_leader_election: bool,
    /// Debounce before a reconcile, in milliseconds: the quiet time after a change before a
    /// pass. Short, because it adds to every change's latency; a burst (`kubectl apply -f
    /// DIR`) arrives faster than this, and changes during a pass are batched into the next.
    #[arg(long, default_value_t = 100)]
    pub debounce_ms: u64,
    /// Seconds between periodic passes; such a pass re-reads the live ConfigMap and publishes
    /// again if it was deleted or changed by someone else.
    #[arg(long, default_value_t = RESYNC.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub resync_seconds: u64,
    /// Admin server address (/metrics, /healthz, /readyz).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_listen: SocketAddr,
    /// Log format.
    #[arg(long, env = "PORTICO_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// `--config-shard-bytes`: from 1 KiB to half a ConfigMap (a shard a little over the target
/// must still fit).
fn parse_shard_bytes(s: &str) -> std::result::Result<usize, String> {
    let n: usize = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    let max = publish::MAX_CONFIG_MAP_BYTES / 2;
    if !(1024..=max).contains(&n) {
        return Err(format!("{n} is not between 1024 and {max}"));
    }
    Ok(n)
}

/// The current time as RFC 3339 with second precision (condition timestamps).
pub fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// One whole-snapshot pass (leader only): generate missing API key Secrets, compile,
/// publish, write statuses. A config too large to publish still gets its statuses written
/// (`Ready=False ConfigTooLarge`), then returns [`Error::ConfigTooLarge`].
pub async fn reconcile(ctx: &Context, mut snapshot: Snapshot, now: &str) -> Result<()> {
    let _timer = ctx.metrics.count_and_measure();
    let keys = api_key::ensure_secrets(ctx, &mut snapshot).await?;
    let compiled = compile(&snapshot);
    let errors = compiled.diagnostics.iter().filter(|d| d.is_error()).count();
    tracing::info!(
        apis = compiled.config.apis.len(),
        stages = compiled.config.stages.len(),
        errors,
        warnings = compiled.diagnostics.len() - errors,
        "compiled"
    );
    ctx.metrics
        .config_json_bytes
        .set(i64::try_from(compiled.config.to_json().len()).unwrap_or(i64::MAX));
    let (programmed, too_large) = match ctx
        .publisher
        .publish(&compiled.config, &snapshot.secrets)
        .await
    {
        Ok(p) => {
            if let Published::Written { bytes, .. } = &p {
                ctx.metrics.publishes.inc();
                ctx.metrics
                    .config_stored_bytes
                    .set(i64::try_from(*bytes).unwrap_or(i64::MAX));
            }
            (
                Programmed::Published {
                    version: p.version().to_string(),
                },
                None,
            )
        }
        Err(e @ Error::ConfigTooLarge { .. }) => {
            tracing::error!(error = %e, "GatewayConfig not published");
            (
                Programmed::TooLarge {
                    message: e.to_string(),
                },
                Some(e),
            )
        }
        Err(e) => return Err(e),
    };
    status::write_statuses(ctx, &snapshot, &compiled, &programmed, &keys, now).await?;
    match too_large {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Logs and counts a failed pass; returns when to retry.
pub fn error_policy(error: &Error, ctx: &Context) -> Duration {
    tracing::warn!(error = %error, "reconcile failed");
    ctx.metrics.reconcile_failure(error);
    match error {
        // Retrying cannot help until the objects change (which triggers a pass anyway).
        Error::ConfigTooLarge { .. } => RESYNC,
        _ => Duration::from_secs(5),
    }
}

/// Checks that the CRDs are installed: listing each kind answers 404 when it is not.
pub async fn check_crds(client: &Client, namespace: Option<&str>) -> Result<()> {
    async fn one<K>(client: &Client, namespace: Option<&str>) -> Result<()>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let api: Api<K> = match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Err(Error::CrdMissing(format!(
                "{}.{}",
                K::plural(&()),
                K::group(&())
            ))),
            Err(e) => Err(e.into()),
        }
    }
    one::<RestApi>(client, namespace).await?;
    one::<Stage>(client, namespace).await?;
    one::<UsagePlan>(client, namespace).await?;
    one::<ApiKey>(client, namespace).await?;
    one::<Authorizer>(client, namespace).await?;
    Ok(())
}

/// Starts a reflector for `api`; every event is signalled on `changed_tx`.
fn reflect<K>(
    api: Api<K>,
    config: watcher::Config,
    changed_tx: mpsc::UnboundedSender<()>,
) -> (Store<K>, impl Stream<Item = ()> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let kind = K::kind(&()).to_string();
    let stream = watcher(api, config)
        .default_backoff()
        .reflect(writer)
        .map(move |ev| match ev {
            Ok(_) => {
                let _ = changed_tx.send(());
            }
            Err(e) => tracing::warn!(%kind, error = %e, "watch error; retrying"),
        });
    (reader, stream)
}

/// One API per watched namespace (or one for all namespaces).
fn apis<K>(client: &Client, namespaces: &[String]) -> Vec<Api<K>>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
{
    if namespaces.is_empty() {
        vec![Api::all(client.clone())]
    } else {
        namespaces
            .iter()
            .map(|ns| Api::namespaced(client.clone(), ns))
            .collect()
    }
}

/// Builds every reflector; returns the stores and one stream driving them all.
fn watch_all(
    client: &Client,
    args: &RunArgs,
    changed_tx: mpsc::UnboundedSender<()>,
) -> (Stores, futures::stream::BoxStream<'static, ()>) {
    let mut cr_config = watcher::Config::default();
    if let Some(sel) = args.label_selector.as_deref().filter(|s| !s.is_empty()) {
        cr_config = cr_config.labels(sel);
    }
    let mut secret_config = watcher::Config::default();
    if !args.secret_label_selector.is_empty() {
        secret_config = secret_config.labels(&args.secret_label_selector);
    }
    let mut stores = Stores::default();
    let mut streams: Vec<futures::stream::BoxStream<'static, ()>> = Vec::new();
    macro_rules! watch_kind {
        ($field:ident, $kind:ty, $config:expr) => {
            for api in apis::<$kind>(client, &args.namespaces) {
                let (store, stream) = reflect(api, $config.clone(), changed_tx.clone());
                stores.$field.push(store);
                streams.push(stream.boxed());
            }
        };
    }
    watch_kind!(rest_apis, RestApi, cr_config);
    watch_kind!(stages, Stage, cr_config);
    watch_kind!(usage_plans, UsagePlan, cr_config);
    watch_kind!(api_keys, ApiKey, cr_config);
    watch_kind!(authorizers, Authorizer, cr_config);
    watch_kind!(secrets, Secret, secret_config);
    watch_kind!(services, Service, watcher::Config::default());
    (stores, futures::stream::select_all(streams).boxed())
}

/// Waits for the first signal, then until `debounce` passes without another (at most
/// [`MAX_DEBOUNCE`]). Returns false when the senders are gone.
async fn debounced(changed_rx: &mut mpsc::UnboundedReceiver<()>, debounce: Duration) -> bool {
    if changed_rx.recv().await.is_none() {
        return false;
    }
    let deadline = tokio::time::Instant::now() + MAX_DEBOUNCE;
    loop {
        let wait = debounce.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(wait, changed_rx.recv()).await {
            Ok(Some(())) if !wait.is_zero() => continue,
            Ok(None) => return false,
            _ => return true,
        }
    }
}

/// When the run loop wakes up without an event: the periodic resync (on a fixed schedule, so
/// a steady stream of events cannot postpone it forever) and the retry after a failed pass.
#[derive(Debug)]
struct Timers {
    resync: Duration,
    next_resync: tokio::time::Instant,
    retry_at: Option<tokio::time::Instant>,
}

impl Timers {
    fn new(now: tokio::time::Instant, resync: Duration) -> Self {
        Self {
            resync,
            next_resync: now + resync,
            retry_at: None,
        }
    }

    /// The next wake-up.
    fn wake_at(&self) -> tokio::time::Instant {
        self.retry_at
            .map_or(self.next_resync, |r| r.min(self.next_resync))
    }

    /// The timer fired at `now`; true when it is the resync (which is then rescheduled).
    /// A pending retry is consumed either way: the pass that follows is the retry.
    fn fired(&mut self, now: tokio::time::Instant) -> bool {
        self.retry_at = None;
        if now >= self.next_resync {
            self.next_resync = now + self.resync;
            true
        } else {
            false
        }
    }

    /// A pass ended at `now`; `retry` is the error policy's delay when it failed.
    fn after_pass(&mut self, now: tokio::time::Instant, retry: Option<Duration>) {
        self.retry_at = retry.map(|d| now + d);
    }
}

/// Runs the operator until SIGINT/SIGTERM.
pub async fn run(args: RunArgs) -> Result<()> {
    let _log = telemetry::init(args.log_format);
    let client = Client::try_default().await?;
    check_crds(&client, args.namespaces.first().map(String::as_str)).await?;

    let registry = prometheus::Registry::new();
    let metrics = Arc::new(
        Metrics::default()
            .register(&registry)
            .expect("metrics are registered once"),
    );
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("portico-operator-{}", std::process::id()));
    let ctx = Context::new(
        client.clone(),
        &args.config_map_namespace,
        &args.config_map_name,
        Limits {
            shard_bytes: args.config_shard_bytes,
            ..Limits::default()
        },
        metrics.clone(),
        Some(identity.clone()),
    );
    let admin = tokio::spawn(crate::admin::serve(
        args.metrics_listen,
        ctx.state.clone(),
        registry,
    ));

    let (leader_tx, mut leader_rx) = watch::channel(args.disable_leader_election);
    let elector = (!args.disable_leader_election).then(|| {
        let namespace = args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| args.config_map_namespace.clone());
        let cfg = LeaseConfig::new(&args.lease_name, &namespace, &identity);
        Arc::new(LeaderElector::new(client.clone(), cfg))
    });
    metrics.leader.set(i64::from(args.disable_leader_election));
    let election = match elector.clone() {
        // `run` never returns; the Arc stays shared for the release on shutdown.
        Some(e) => tokio::spawn(async move { e.run(leader_tx).await }),
        // Always leading: keep the sender alive so `leader_rx.changed()` never fails.
        None => tokio::spawn(async move { leader_tx.closed().await }),
    };

    let (changed_tx, mut changed_rx) = mpsc::unbounded_channel();
    let (stores, drive) = watch_all(&client, &args, changed_tx.clone());
    let watches = tokio::spawn(drive.for_each(|()| async {}));
    {
        let stores = stores.clone();
        let state = ctx.state.clone();
        tokio::spawn(async move {
            if stores.wait_until_ready().await.is_ok() {
                tracing::info!("all watches synced");
                state.set_ready();
                // Passes are skipped until now: make sure one runs.
                let _ = changed_tx.send(());
            }
        });
    }

    let debounce = Duration::from_millis(args.debounce_ms);
    let mut timers = Timers::new(
        tokio::time::Instant::now(),
        Duration::from_secs(args.resync_seconds),
    );
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            more = debounced(&mut changed_rx, debounce) => if !more { break },
            changed = leader_rx.changed() => {
                if changed.is_err() { break }
                let leading = *leader_rx.borrow();
                metrics.leader.set(i64::from(leading));
                if leading {
                    // Another replica may have published meanwhile: re-read the live version.
                    ctx.publisher.forget().await;
                }
            }
            _ = tokio::time::sleep_until(timers.wake_at()) => {
                if timers.fired(tokio::time::Instant::now()) {
                    // The publisher only remembers what it wrote: re-read the live ConfigMap so
                    // a deleted or overwritten one is published again (no event reports it:
                    // the operator does not watch its ConfigMap).
                    ctx.publisher.forget().await;
                }
            }
            _ = &mut shutdown => break,
        }
        if !*leader_rx.borrow() || !ctx.state.is_ready() {
            continue;
        }
        let retry = match reconcile(&ctx, stores.snapshot(), &now_rfc3339()).await {
            Ok(()) => None,
            Err(e) => Some(error_policy(&e, &ctx)),
        };
        timers.after_pass(tokio::time::Instant::now(), retry);
    }
    tracing::info!("shutting down");
    watches.abort();
    admin.abort();
    election.abort();
    if let Some(e) = elector
        && let Err(err) = e.release().await
    {
        tracing::warn!(error = %err, "could not release the Lease");
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler can be installed");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials;
    use crate::fixtures::{
        AKID, ApiServerVerifier, CM_PATH, CREDENTIALS_PATH, NS, RestApiBuilder, SECRET_ACCESS_KEY,
        TestObject, credentials_secret, timeout_after_1s, websocket_api,
    };
    use http::Method;
    use kube::ResourceExt as _;
    use serde_json::Value;

    const NOW: &str = "2025-01-02T03:04:05Z";

    #[tokio::test]
    async fn a_rest_api_with_a_bad_path_gets_accepted_false_naming_the_field_and_warning_events() {
        let (ctx, verifier) = Context::test(Limits::default());
        let server = verifier.run(|mut s| async move {
            s.expect_first_publish().await;
            let body = s.expect_status("restapis", "pets").await;
            assert_eq!(body["kind"], "RestApi");
            assert_eq!(body["apiVersion"], "portico.dev/v1alpha1");
            let status = &body["status"];
            assert_eq!(status["observedGeneration"], 1);
            let accepted = &status["conditions"][0];
            assert_eq!(accepted["type"], "Accepted");
            assert_eq!(accepted["status"], "False");
            assert_eq!(accepted["reason"], "InvalidPath");
            assert_eq!(accepted["lastTransitionTime"], NOW);
            assert_eq!(accepted["observedGeneration"], 1);
            let message = accepted["message"].as_str().unwrap();
            assert!(message.starts_with("spec.resources[0].path: "), "{message}");
            assert_eq!(status["conditions"][1]["type"], "Ready");
            assert_eq!(status["conditions"][1]["status"], "False");
            let ev = s.expect_event().await;
            assert_eq!(ev["type"], "Warning");
            assert_eq!(ev["reason"], "InvalidPath");
            assert_eq!(ev["regarding"]["kind"], "RestApi");
            assert_eq!(ev["regarding"]["name"], "pets");
            assert!(
                ev["note"]
                    .as_str()
                    .unwrap()
                    .contains("spec.resources[0].path")
            );
            let ev = s.expect_event().await;
            assert_eq!(
                (ev["type"].as_str(), ev["reason"].as_str()),
                (Some("Warning"), Some("NotAccepted"))
            );
            s
        });
        let snapshot = Snapshot {
            rest_apis: vec![RestApi::test().with_path("pets")],
            ..Default::default()
        };
        timeout_after_1s(reconcile(&ctx, snapshot, NOW))
            .await
            .unwrap();
        server.finish().await;
    }

    #[tokio::test]
    async fn a_second_pass_over_unchanged_objects_makes_no_request() {
        let (ctx, verifier) = Context::test(Limits::default());
        let (bodies_tx, bodies_rx) = tokio::sync::oneshot::channel::<(Value, Value, Value)>();
        let server = verifier.run(|mut s| async move {
            let cm = s.expect_first_publish().await;
            let api = s.expect_status("restapis", "pets").await;
            s.expect_event().await;
            s.expect_event().await;
            let stage = s.expect_status("stages", "dev").await;
            assert_eq!(stage["status"]["invokeUrls"][0], "http://*/dev/");
            // The version of what serves this stage (not the ConfigMap's, which changes with
            // every tenant's objects).
            let v = stage["status"]["configVersion"].as_str().unwrap();
            assert_eq!(v.len(), 64, "{v}");
            assert_eq!(stage["status"]["conditions"][1]["reason"], "Published");
            s.expect_event().await;
            s.expect_event().await;
            bodies_tx.send((cm, api, stage)).unwrap();
            s
        });
        let mut snapshot = Snapshot {
            rest_apis: vec![RestApi::test()],
            stages: vec![Stage::test()],
            ..Default::default()
        };
        timeout_after_1s(reconcile(&ctx, snapshot.clone(), NOW))
            .await
            .unwrap();
        let (_, api, stage) = bodies_rx.await.unwrap();
        server.finish().await;
        // What the watch would deliver next: the objects with the statuses just written.
        snapshot.rest_apis[0].status = Some(serde_json::from_value(api["status"].clone()).unwrap());
        snapshot.stages[0].status = Some(serde_json::from_value(stage["status"].clone()).unwrap());
        // A later pass, a second later: nothing to write, not even the ConfigMap. The verifier
        // is gone, so any request would fail the pass.
        timeout_after_1s(reconcile(&ctx, snapshot, "2025-01-02T03:04:06Z"))
            .await
            .unwrap();
    }

    /// The `@connections` credentials: their values go into the credentials Secret, applied
    /// before the ConfigMap, which holds only the references and the Secret's version; an
    /// unchanged pass writes nothing; a rotated value rewrites the Secret and the ConfigMap's
    /// annotation (so proxies read the Secret again), not the statuses.
    #[tokio::test]
    async fn websocket_credentials_go_into_the_credentials_secret_never_into_the_config_map() {
        let (ctx, verifier) = Context::test(Limits::default());
        let (bodies_tx, bodies_rx) = tokio::sync::oneshot::channel::<(Value, Value)>();
        let server = verifier.run(|mut s| async move {
            s.expect(Method::GET, CM_PATH, "").await.not_found();
            s.expect(Method::GET, CREDENTIALS_PATH, "")
                .await
                .not_found();
            let secret = s.expect_apply(CREDENTIALS_PATH).await;
            assert_eq!(
                (&secret["kind"], &secret["apiVersion"]),
                (&"Secret".into(), &"v1".into())
            );
            assert_eq!(secret["metadata"]["namespace"], "portico-system");
            assert_eq!(
                secret["metadata"]["name"],
                "portico-gateway-config-credentials"
            );
            assert_eq!(
                secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                "portico-operator"
            );
            assert!(
                secret["metadata"]["labels"]
                    .get(api_key::SECRET_LABEL)
                    .is_none()
            );
            assert_eq!(secret["type"], "Opaque");
            let data = secret["data"].as_object().unwrap();
            assert_eq!(
                data.keys().collect::<Vec<_>>(),
                ["team-a.chat-management.secretAccessKey"]
            );
            let value: k8s_openapi::ByteString =
                serde_json::from_value(data["team-a.chat-management.secretAccessKey"].clone())
                    .unwrap();
            assert_eq!(value.0, SECRET_ACCESS_KEY.as_bytes());
            let cm = s.expect_apply(CM_PATH).await;
            let text = cm.to_string();
            assert!(!text.contains(SECRET_ACCESS_KEY), "{text}");
            assert!(
                !text.contains(
                    &data["team-a.chat-management.secretAccessKey"]
                        .as_str()
                        .unwrap()[..20]
                )
            );
            assert!(
                text.contains(AKID) && text.contains("chat-management"),
                "the reference is there"
            );
            let creds_version = &secret["metadata"]["annotations"][credentials::VERSION_ANNOTATION];
            assert_eq!(creds_version.as_str().map(str::len), Some(64));
            assert_eq!(
                &cm["metadata"]["annotations"][credentials::VERSION_ANNOTATION],
                creds_version
            );
            let api = s.expect_status("restapis", "chat").await;
            assert_eq!(api["status"]["conditions"][0]["status"], "True", "{api}");
            s.expect_event().await;
            s.expect_event().await;
            let stage = s.expect_status("stages", "dev").await;
            s.expect_event().await;
            s.expect_event().await;
            bodies_tx.send((api, stage)).unwrap();
            s
        });
        let mut stage = Stage::test();
        stage.spec.rest_api_ref = portico_crds::api::ObjectReference::local("chat");
        let mut snapshot = Snapshot {
            rest_apis: vec![websocket_api()],
            stages: vec![stage],
            secrets: vec![credentials_secret(SECRET_ACCESS_KEY)],
            ..Default::default()
        };
        timeout_after_1s(reconcile(&ctx, snapshot.clone(), NOW))
            .await
            .unwrap();
        let (api, stage) = bodies_rx.await.unwrap();
        server.finish().await;
        snapshot.rest_apis[0].status = Some(serde_json::from_value(api["status"].clone()).unwrap());
        snapshot.stages[0].status = Some(serde_json::from_value(stage["status"].clone()).unwrap());
        // Unchanged: no request at all (the verifier is gone: any request fails the pass).
        timeout_after_1s(reconcile(&ctx, snapshot.clone(), "2025-01-02T03:04:06Z"))
            .await
            .unwrap();

        // Another replica (fresh state) after the secret value rotated and the credentials
        // Secret was deleted by hand: the live ConfigMap's annotation is not trusted, the
        // Secret is read, applied again, then the ConfigMap's annotation; the config and so
        // the statuses are the same.
        let (ctx2, verifier) = Context::test(Limits::default());
        let old_cm = crate::publish::config_map(
            "portico-system",
            crate::publish::DEFAULT_CONFIG_MAP_NAME,
            ctx.publisher.current_version().await.as_deref().unwrap(),
            Some(&credentials::version(&credentials::collect(
                &compile(&snapshot).config,
                &snapshot.secrets,
            ))),
            crate::publish::Payload::Json(compile(&snapshot).config.to_json()),
        );
        let server = verifier.run(move |mut s| async move {
            s.expect(Method::GET, CM_PATH, "").await.ok(&old_cm);
            s.expect(Method::GET, CREDENTIALS_PATH, "")
                .await
                .not_found();
            let secret = s.expect_apply(CREDENTIALS_PATH).await;
            let value: k8s_openapi::ByteString = serde_json::from_value(
                secret["data"]["team-a.chat-management.secretAccessKey"].clone(),
            )
            .unwrap();
            assert_eq!(value.0, b"rotated-secret-access-key");
            let cm = s.expect_apply(CM_PATH).await;
            assert_eq!(cm["data"], serde_json::to_value(&old_cm.data).unwrap());
            assert_eq!(
                cm["metadata"]["annotations"][credentials::VERSION_ANNOTATION],
                secret["metadata"]["annotations"][credentials::VERSION_ANNOTATION]
            );
            let old_annotations = old_cm.metadata.annotations.as_ref().unwrap();
            assert_ne!(
                cm["metadata"]["annotations"][credentials::VERSION_ANNOTATION],
                old_annotations[credentials::VERSION_ANNOTATION]
            );
            assert!(!cm.to_string().contains("rotated-secret-access-key"));
            s
        });
        snapshot.secrets = vec![credentials_secret("rotated-secret-access-key")];
        timeout_after_1s(reconcile(&ctx2, snapshot, "2025-01-02T03:04:07Z"))
            .await
            .unwrap();
        server.finish().await;
    }

    #[tokio::test]
    async fn an_api_key_without_value_from_gets_a_generated_owned_secret_and_a_key_id() {
        let (ctx, verifier) = Context::test(Limits::default());
        let server = verifier.run(|mut s| async move {
            let (secret, reply) = s
                .expect(
                    Method::POST,
                    &format!("/api/v1/namespaces/{NS}/secrets"),
                    "?",
                )
                .await
                .json_body()
                .await;
            reply.ok(&secret);
            assert_eq!(secret["metadata"]["name"], "mobile-value");
            assert_eq!(secret["metadata"]["labels"]["portico.dev/secret"], "true");
            let owner = &secret["metadata"]["ownerReferences"][0];
            assert_eq!(owner["kind"], "ApiKey");
            assert_eq!(owner["apiVersion"], "portico.dev/v1alpha1");
            assert_eq!(owner["name"], "mobile");
            assert_eq!(owner["uid"], "uid-1");
            assert_eq!(owner["controller"], true);
            let value: k8s_openapi::ByteString =
                serde_json::from_value(secret["data"]["value"].clone()).unwrap();
            assert_eq!(value.0.len(), 40);
            let cm = s.expect_first_publish().await;
            assert!(
                !cm.to_string()
                    .contains(std::str::from_utf8(&value.0).unwrap()),
                "the key value never reaches the config"
            );
            let status = s.expect_status("apikeys", "mobile").await;
            assert_eq!(status["status"]["secretName"], "mobile-value");
            assert_eq!(status["status"]["keyId"], api_key::key_id(&value.0));
            assert!(
                !status
                    .to_string()
                    .contains(std::str::from_utf8(&value.0).unwrap())
            );
            s.expect_event().await;
            s.expect_event().await;
            s
        });
        let snapshot = Snapshot {
            api_keys: vec![ApiKey::test()],
            ..Default::default()
        };
        timeout_after_1s(reconcile(&ctx, snapshot, NOW))
            .await
            .unwrap();
        server.finish().await;
    }

    #[tokio::test]
    async fn a_config_too_large_to_publish_marks_objects_not_ready_and_is_an_error() {
        let limits = Limits {
            gzip_above: 10,
            max_bytes: 20,
            ..Limits::default()
        };
        let (ctx, verifier) = Context::test(limits);
        let server = verifier.run(|mut s| async move {
            // The read of the live version, then no ConfigMap write.
            s.expect(Method::GET, CM_PATH, "").await.not_found();
            let body = s.expect_status("restapis", "pets").await;
            let ready = &body["status"]["conditions"][1];
            assert_eq!(ready["status"], "False");
            assert_eq!(ready["reason"], "ConfigTooLarge");
            assert!(
                ready["message"]
                    .as_str()
                    .unwrap()
                    .contains("previous ConfigMap keeps serving")
            );
            s.expect_event().await;
            let ev = s.expect_event().await;
            assert_eq!(
                (ev["type"].as_str(), ev["reason"].as_str()),
                (Some("Warning"), Some("ConfigTooLarge"))
            );
            s
        });
        let snapshot = Snapshot {
            rest_apis: vec![RestApi::test()],
            ..Default::default()
        };
        let err = timeout_after_1s(reconcile(&ctx, snapshot, NOW))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::ConfigTooLarge { .. }), "{err}");
        assert_eq!(error_policy(&err, &ctx), RESYNC);
        assert_eq!(
            ctx.metrics
                .failures
                .with_label_values(&["config_too_large"])
                .get(),
            1
        );
        server.finish().await;
    }

    /// Runs a pass answered by [`ApiServerVerifier::answer_all`] and returns the snapshot as
    /// the watches would deliver it next: the objects with the statuses just written.
    async fn settle(
        ctx: &Context,
        verifier: &mut ApiServerVerifier,
        mut snapshot: Snapshot,
    ) -> Snapshot {
        let (result, seen) =
            tokio::join!(reconcile(ctx, snapshot.clone(), NOW), verifier.answer_all());
        result.unwrap();
        let status_of = |plural: &str, name: &str| {
            let path = format!("/apis/portico.dev/v1alpha1/namespaces/{NS}/{plural}/{name}/status");
            seen.iter()
                .rev()
                .find(|(m, p, _)| *m == Method::PATCH && *p == path)
                .map(|(_, _, body)| body["status"].clone())
        };
        for o in &mut snapshot.rest_apis {
            if let Some(st) = status_of("restapis", &o.name_any()) {
                o.status = Some(serde_json::from_value(st).unwrap());
            }
        }
        for o in &mut snapshot.stages {
            if let Some(st) = status_of("stages", &o.name_any()) {
                o.status = Some(serde_json::from_value(st).unwrap());
            }
        }
        for o in &mut snapshot.api_keys {
            if let Some(st) = status_of("apikeys", &o.name_any()) {
                o.status = Some(serde_json::from_value(st).unwrap());
            }
        }
        snapshot
    }

    fn sharded() -> Limits {
        Limits {
            shard_bytes: 2048,
            ..Limits::default()
        }
    }

    /// The shards of `snapshot`'s config whose hash differs from `before`'s.
    fn changed_shards(before: &Snapshot, after: &Snapshot) -> Vec<String> {
        let (a, _) = portico_config::distribution::split(&compile(before).config, 2048);
        let (b, _) = portico_config::distribution::split(&compile(after).config, 2048);
        assert_eq!(a.shards.len(), b.shards.len());
        b.shards
            .iter()
            .filter(|s| !a.shards.contains(s))
            .map(|s| s.name.clone())
            .collect()
    }

    /// A sharded fleet: one ApiKey added writes exactly its key shard, the index and the new
    /// key's status (with its two condition Events), no other object's; the next pass writes
    /// nothing; a stage variable changed writes that API's shard, the index and that Stage's
    /// status only.
    #[tokio::test]
    async fn on_a_sharded_fleet_a_one_object_change_writes_its_shard_the_index_and_its_status() {
        let (ctx, mut verifier) = Context::test(sharded());
        let snapshot = crate::fixtures::fleet(8, 60);
        let snapshot = settle(&ctx, &mut verifier, snapshot).await;
        assert!(ctx.publisher.current_version().await.is_some(), "published");

        let mut more = snapshot.clone();
        let (key, secret) = crate::fixtures::fleet_key("k9999");
        more.api_keys.push(key);
        more.secrets.push(secret);
        let changed = changed_shards(&snapshot, &more);
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert!(changed[0].starts_with("keys-"), "{changed:?}");
        let shard_path = format!("{CM_PATH}-{}", changed[0]);
        let (status_tx, status_rx) = tokio::sync::oneshot::channel::<Value>();
        let server = verifier.run(move |mut s| async move {
            let shard = s.expect_apply(&shard_path).await;
            assert_eq!(
                shard["metadata"]["labels"][publish::CONFIG_OF_LABEL],
                publish::DEFAULT_CONFIG_MAP_NAME
            );
            let index = s.expect_apply(CM_PATH).await;
            assert!(index["data"][publish::INDEX_KEY].is_string(), "{index}");
            let key = s.expect_status("apikeys", "k9999").await;
            assert_eq!(key["status"]["conditions"][1]["status"], "True", "{key}");
            s.expect_event().await;
            s.expect_event().await;
            status_tx.send(key["status"].clone()).unwrap();
            s
        });
        timeout_after_1s(reconcile(&ctx, more.clone(), "2025-01-02T03:04:06Z"))
            .await
            .unwrap();
        server.finish().await;
        let status = status_rx.await.unwrap();
        more.api_keys.last_mut().unwrap().status = Some(serde_json::from_value(status).unwrap());
        // Nothing changed: no request (the verifier is gone: any request fails the pass).
        timeout_after_1s(reconcile(&ctx, more.clone(), "2025-01-02T03:04:07Z"))
            .await
            .unwrap();

        // One stage variable: its API's shard, the index, that Stage's status.
        let (ctx2, verifier) = Context::test(sharded());
        let mut edited = more.clone();
        edited.stages[3]
            .spec
            .variables
            .insert("backend".into(), "v2".into());
        let changed = changed_shards(&more, &edited);
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert!(changed[0].starts_with("apis-"), "{changed:?}");
        let (index, shards) = portico_config::distribution::split(&compile(&more).config, 2048);
        let live_cm = publish::named_config_map(
            "portico-system",
            publish::DEFAULT_CONFIG_MAP_NAME,
            &index.version,
            None,
            publish::Content::Index(index.to_json()),
        );
        let items: Vec<k8s_openapi::api::core::v1::ConfigMap> = shards
            .iter()
            .map(|s| {
                publish::shard_config_map(
                    "portico-system",
                    publish::DEFAULT_CONFIG_MAP_NAME,
                    &s.name,
                    &s.hash,
                    vec![],
                )
            })
            .collect();
        let shard_path = format!("{CM_PATH}-{}", changed[0]);
        let old_version = edited.stages[3]
            .status
            .as_ref()
            .and_then(|s| s.config_version.clone());
        let server = verifier.run(move |mut s| async move {
            s.expect(Method::GET, CM_PATH, "").await.ok(&live_cm);
            s.expect(
                Method::GET,
                "/api/v1/namespaces/portico-system/configmaps",
                "?&labelSelector=portico.dev%2Fconfig-of%3Dportico-gateway-config",
            )
            .await
            .ok(&serde_json::json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {}, "items": items}));
            s.expect_apply(&shard_path).await;
            s.expect_apply(CM_PATH).await;
            let stage = s.expect_status("stages", "t003").await;
            assert_ne!(
                stage["status"]["configVersion"].as_str().map(str::to_string),
                old_version
            );
            s
        });
        timeout_after_1s(reconcile(&ctx2, edited, "2025-01-02T03:04:08Z"))
            .await
            .unwrap();
        server.finish().await;
    }

    /// Proportional writes, one ConfigMap: a one-object change writes the ConfigMap and the
    /// statuses of the objects whose status changed, nothing else.
    #[tokio::test]
    async fn a_one_object_change_writes_only_the_statuses_that_changed() {
        let (ctx, mut verifier) = Context::test(Limits::default());
        let snapshot = settle(&ctx, &mut verifier, crate::fixtures::fleet(3, 3)).await;
        assert!(snapshot.api_keys.iter().all(|k| k.status.is_some()));
        // A stage variable: that Stage's configVersion.
        let mut edited = snapshot.clone();
        edited.stages[1]
            .spec
            .variables
            .insert("backend".into(), "v2".into());
        let server = verifier.run(|mut s| async move {
            let cm = s.expect_apply(CM_PATH).await;
            assert!(cm["data"][publish::DATA_KEY].is_string());
            s.expect_status("stages", "t001").await;
            s
        });
        timeout_after_1s(reconcile(&ctx, edited.clone(), "2025-01-02T03:04:06Z"))
            .await
            .unwrap();
        server.finish().await;
        // A key disabled: that key's Ready is unchanged, no status at all; only the ConfigMap.
        let (ctx, mut verifier) = Context::test(Limits::default());
        let snapshot = settle(&ctx, &mut verifier, snapshot).await;
        let mut disabled = snapshot.clone();
        disabled.api_keys[2].spec.enabled = Some(false);
        let server = verifier.run(|mut s| async move {
            s.expect_apply(CM_PATH).await;
            s
        });
        timeout_after_1s(reconcile(&ctx, disabled, "2025-01-02T03:04:06Z"))
            .await
            .unwrap();
        server.finish().await;
    }

    #[test]
    fn the_resync_keeps_its_schedule_whatever_passes_run_and_a_retry_comes_first() {
        let t0 = tokio::time::Instant::now();
        let s = Duration::from_secs;
        let mut t = Timers::new(t0, s(300));
        assert_eq!(t.wake_at(), t0 + s(300));
        // Event-driven passes do not move the resync.
        t.after_pass(t0 + s(10), None);
        t.after_pass(t0 + s(299), None);
        assert_eq!(t.wake_at(), t0 + s(300));
        // A failed pass retries sooner; the retry firing is not a resync.
        t.after_pass(t0 + s(20), Some(s(5)));
        assert_eq!(t.wake_at(), t0 + s(25));
        assert!(!t.fired(t0 + s(25)));
        assert_eq!(t.wake_at(), t0 + s(300));
        // A retry later than the resync waits for the resync only.
        t.after_pass(t0 + s(200), Some(s(300)));
        assert_eq!(t.wake_at(), t0 + s(300));
        // The resync fires and is rescheduled from when it fired.
        assert!(t.fired(t0 + s(301)));
        assert_eq!(t.wake_at(), t0 + s(601));
    }

    #[tokio::test]
    async fn a_missing_crd_is_reported_with_the_install_command() {
        let (client, verifier) = ApiServerVerifier::new();
        let server = verifier.run(|mut s| async move {
            s.expect(
                Method::GET,
                "/apis/portico.dev/v1alpha1/restapis",
                "?&limit=1",
            )
            .await
            .not_found();
            s
        });
        let err = timeout_after_1s(check_crds(&client, None))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("restapis.portico.dev is not installed; install the CRDs first: kubectl apply -f charts/portico/crds/"),
            "{err}"
        );
        server.finish().await;
    }
}
