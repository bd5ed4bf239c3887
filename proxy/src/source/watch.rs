//! The watcher: notices changes to the source, reloads, and swaps the `Runtime`.
//!
//! Change detection is belt and braces: `notify` events (debounced 200 ms) and a 1 s poll of
//! the files' mtimes and lengths (for filesystems where events do not arrive). A reload
//! builds the new `Runtime` on the blocking pool (taking what is unchanged from the one
//! serving: `Runtime::rebuild`), skips the store when the content hash is
//! unchanged (unless the secret values the config names changed: [`replace_secrets`]), and
//! keeps the old config on any failure (`portico_config_reload_success 0`).

use super::{LoadError, Loaded, Source, log_diagnostics, log_refusal};
use crate::metrics::Metrics;
use crate::pool::Pools;
use crate::runtime::{Runtime, Secrets};
use arc_swap::ArcSwap;
use notify::{EventKind, RecursiveMode, Watcher as _};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const DEBOUNCE: Duration = Duration::from_millis(200);
const POLL: Duration = Duration::from_secs(1);

/// What a reload did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reload {
    /// A new config is served.
    Swapped,
    /// Same content hash: nothing stored.
    Unchanged,
    /// Refused: the old config keeps serving.
    Failed,
}

/// Loads `source` and swaps it in if it changed. Blocking (run it on the blocking pool).
pub fn reload(
    source: &Source,
    state: &ArcSwap<Runtime>,
    metrics: &Metrics,
    pools: &Pools,
) -> Reload {
    let started = std::time::Instant::now();
    let loaded = source.load();
    tracing::debug!(
        load_ms = started.elapsed().as_millis() as u64,
        "source read, parsed and compiled"
    );
    apply(loaded, state, metrics, pools)
}

/// Swaps in a loaded config if its content hash differs from the served one; on a load
/// error keeps the old config. Blocking (builds the `Runtime`). Every source ends here.
pub fn apply(
    loaded: Result<Loaded, LoadError>,
    state: &ArcSwap<Runtime>,
    metrics: &Metrics,
    pools: &Pools,
) -> Reload {
    let mut loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            log_refusal(
                &e,
                "config change refused; the previous config keeps serving",
            );
            metrics.reload_success.set(0);
            metrics.reloads_total.with_label_values(&["failure"]).inc();
            return Reload::Failed;
        }
    };
    log_diagnostics(&loaded.diagnostics);
    // The last load failed: this one ends the refusals the log shows.
    let recovered = metrics.reload_success.get() == 0;
    metrics.reload_success.set(1);
    let version = loaded.version();
    if version == state.load().version {
        // The same config with other secret values (a rotated `@connections` credential).
        if replace_secrets(loaded.secrets, state, metrics, pools) == Reload::Swapped {
            metrics.reloads_total.with_label_values(&["success"]).inc();
            return Reload::Swapped;
        }
        metrics
            .reloads_total
            .with_label_values(&["unchanged"])
            .inc();
        if recovered {
            // Typically the good file restored after a bad edit: nothing to swap, but the
            // refusals logged before are over.
            tracing::info!(%version, "config valid again; it is the one already served");
        }
        return Reload::Unchanged;
    }
    let started = std::time::Instant::now();
    // What is unchanged is taken from the runtime serving now (APIs, stages).
    let previous = state.load_full();
    let mut runtime = Runtime::rebuild(loaded.config, version, &previous, metrics, pools);
    drop(previous);
    runtime.secrets = loaded.secrets;
    let version = runtime.version.clone();
    let build_ms = started.elapsed().as_millis() as u64;
    state.store(Arc::new(runtime));
    metrics.set_config_version(&version);
    metrics.reloads_total.with_label_values(&["success"]).inc();
    tracing::info!(%version, build_ms, "config reloaded");
    Reload::Swapped
}

/// Serves the current config with `secrets` (the values of the Secrets it names) unless it
/// already has exactly those: the `Runtime` is rebuilt from the served config, which stays the
/// same (version, reload metrics). Blocking (builds the `Runtime`). Never logs a value.
pub fn replace_secrets(
    secrets: Secrets,
    state: &ArcSwap<Runtime>,
    metrics: &Metrics,
    pools: &Pools,
) -> Reload {
    let current = state.load_full();
    if current.secrets == secrets {
        return Reload::Unchanged;
    }
    let mut runtime = Runtime::rebuild(
        (*current.config).clone(),
        current.version.clone(),
        &current,
        metrics,
        pools,
    );
    runtime.secrets = secrets;
    let (version, values) = (runtime.version.clone(), runtime.secrets.len());
    state.store(Arc::new(runtime));
    tracing::info!(%version, values, "secret values changed; serving the same config with them");
    Reload::Swapped
}

/// Spawns the watch loop on the current tokio runtime.
pub fn spawn(
    source: Source,
    state: Arc<ArcSwap<Runtime>>,
    metrics: Arc<Metrics>,
    pools: Arc<Pools>,
) {
    tokio::spawn(watch_loop(source, state, metrics, pools));
}

async fn watch_loop(
    source: Source,
    state: Arc<ArcSwap<Runtime>>,
    metrics: Arc<Metrics>,
    pools: Arc<Pools>,
) {
    let changed = Arc::new(Notify::new());
    let watcher = {
        let changed = changed.clone();
        let source_ = source.clone();
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                // Reads (ours included) produce access events; only writes matter.
                let relevant = !matches!(ev.kind, EventKind::Access(_))
                    || matches!(
                        ev.kind,
                        EventKind::Access(notify::event::AccessKind::Close(
                            notify::event::AccessMode::Write
                        ))
                    );
                if relevant && (ev.paths.is_empty() || ev.paths.iter().any(|p| source_.concerns(p)))
                {
                    changed.notify_one();
                }
            }
        })
        .and_then(|mut w| {
            w.watch(&source.watch_dir(), RecursiveMode::NonRecursive)?;
            Ok(w)
        })
    };
    let _watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, dir = %source.watch_dir().display(), "file events unavailable; polling only");
            None
        }
    };
    let mut last = source.fingerprint();
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = changed.notified() => {
                tokio::time::sleep(DEBOUNCE).await;
                // A burst of events for a change already loaded (create + modify + close).
                if source.fingerprint() == last {
                    continue;
                }
            }
            _ = poll.tick() => {
                if source.fingerprint() == last {
                    continue;
                }
            }
        }
        last = source.fingerprint();
        let (source, state, metrics, pools) = (
            source.clone(),
            state.clone(),
            metrics.clone(),
            pools.clone(),
        );
        let _ =
            tokio::task::spawn_blocking(move || reload(&source, &state, &metrics, &pools)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_config::{Diagnostic, GatewayConfig, ObjectRef};
    use std::sync::Mutex;

    /// An `io::Write` into a shared buffer (the captured log).
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Runs `f`, returning what it logged (text format).
    fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || Captured(sink.clone()))
            .with_ansi(false)
            .without_time()
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        (out, text)
    }

    fn served() -> (ArcSwap<Runtime>, Metrics, Arc<Pools>) {
        let (metrics, pools) = (Metrics::new(), Pools::new());
        let runtime = Runtime::build(GatewayConfig::empty(), &metrics, &pools);
        metrics.reload_success.set(1);
        (ArcSwap::from_pointee(runtime), metrics, pools)
    }

    fn same_config() -> Result<Loaded, LoadError> {
        Ok(Loaded {
            config: GatewayConfig::empty(),
            diagnostics: Vec::new(),
            secrets: Default::default(),
            version: None,
        })
    }

    #[test]
    fn restoring_the_served_config_after_a_refused_change_is_logged() {
        let (state, metrics, pools) = served();
        let bad = Err(LoadError::Decode(
            "m/bad.yaml: document 1: did not find expected node content".into(),
        ));
        let (r, log) = logged(|| apply(bad, &state, &metrics, &pools));
        assert_eq!(r, Reload::Failed);
        assert!(
            log.contains("config change refused; the previous config keeps serving"),
            "{log}"
        );
        assert_eq!(log.matches("m/bad.yaml").count(), 1, "{log}");
        assert_eq!(metrics.reload_success.get(), 0);

        let (r, log) = logged(|| apply(same_config(), &state, &metrics, &pools));
        assert_eq!(r, Reload::Unchanged);
        assert!(
            log.contains("config valid again; it is the one already served"),
            "{log}"
        );
        assert_eq!(metrics.reload_success.get(), 1);

        // An unchanged load after a good one has nothing to say.
        let (r, log) = logged(|| apply(same_config(), &state, &metrics, &pools));
        assert_eq!(r, Reload::Unchanged);
        assert_eq!(log, "");
    }

    #[test]
    fn the_same_config_with_other_secret_values_is_swapped_in_and_the_same_ones_are_not() {
        let (state, metrics, pools) = served();
        let key = portico_config::SecretKeyRef {
            namespace: "team-a".into(),
            name: "m".into(),
            key: "k".into(),
        };
        let with = |value: &str| {
            let mut l = same_config().unwrap();
            l.secrets.insert(key.clone(), value.to_string());
            Ok(l)
        };
        let version = state.load().version.clone();
        let (r, log) = logged(|| apply(with("v1"), &state, &metrics, &pools));
        assert_eq!(r, Reload::Swapped);
        assert_eq!(state.load().secrets[&key], "v1");
        assert_eq!(state.load().version, version);
        assert!(log.contains("secret values changed"), "{log}");
        assert!(!log.contains("v1"), "values are never logged: {log}");
        assert_eq!(
            apply(with("v1"), &state, &metrics, &pools),
            Reload::Unchanged
        );
        assert_eq!(apply(with("v2"), &state, &metrics, &pools), Reload::Swapped);
        assert_eq!(state.load().secrets[&key], "v2");
        // Only the values: a refused load keeps them, the metrics say nothing new.
        metrics.reload_success.set(0);
        let mut fresh = Secrets::new();
        fresh.insert(key.clone(), "v3".into());
        assert_eq!(
            replace_secrets(fresh, &state, &metrics, &pools),
            Reload::Swapped
        );
        assert_eq!(state.load().secrets[&key], "v3");
        assert_eq!(metrics.reload_success.get(), 0);
        assert_eq!(
            apply(same_config(), &state, &metrics, &pools),
            Reload::Swapped
        );
        assert!(state.load().secrets.is_empty());
    }

    #[test]
    fn a_change_refused_as_a_whole_does_not_say_the_method_answers_500() {
        let (state, metrics, pools) = served();
        let api = ObjectRef::new("RestApi", "default", "pets");
        let rejected = Err(LoadError::Rejected(vec![Diagnostic::error(
            &api,
            "spec.resources[0].methods.POST.requestValidator",
            "UnknownValidator",
            "request validator \"nope\" is not defined in spec.requestValidators; the method answers 500",
        )]));
        let (r, log) = logged(|| apply(rejected, &state, &metrics, &pools));
        assert_eq!(r, Reload::Failed);
        assert!(
            log.contains("request validator \"nope\" is not defined in spec.requestValidators"),
            "{log}"
        );
        assert!(log.contains("reason=UnknownValidator"), "{log}");
        assert!(!log.contains("answers 500"), "{log}");
        assert!(
            log.contains("config change refused; the previous config keeps serving"),
            "{log}"
        );
    }
}
