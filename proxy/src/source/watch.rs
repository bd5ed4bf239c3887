//! The watcher: notices changes to the source, reloads, and swaps the `Runtime`.
//!
//! Change detection is belt and braces: `notify` events (debounced 200 ms) and a 1 s poll of
//! the files' mtimes and lengths (for filesystems where events do not arrive). A reload
//! builds the new `Runtime` on the blocking pool, skips the store when the content hash is
//! unchanged, and keeps the old config on any failure (`portico_config_reload_success 0`).

use super::{LoadError, Loaded, Source, log_diagnostics, log_load_error};
use crate::metrics::Metrics;
use crate::pool::Pools;
use crate::runtime::Runtime;
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
    apply(source.load(), state, metrics, pools)
}

/// Swaps in a loaded config if its content hash differs from the served one; on a load
/// error keeps the old config. Blocking (builds the `Runtime`). Every source ends here.
pub fn apply(
    loaded: Result<Loaded, LoadError>,
    state: &ArcSwap<Runtime>,
    metrics: &Metrics,
    pools: &Pools,
) -> Reload {
    let loaded = match loaded {
        Ok(l) => l,
        Err(e) => {
            log_load_error(&e);
            tracing::error!("keeping the previous config");
            metrics.reload_success.set(0);
            metrics.reloads_total.with_label_values(&["failure"]).inc();
            return Reload::Failed;
        }
    };
    log_diagnostics(&loaded.diagnostics);
    metrics.reload_success.set(1);
    if loaded.config.content_hash() == state.load().version {
        metrics
            .reloads_total
            .with_label_values(&["unchanged"])
            .inc();
        return Reload::Unchanged;
    }
    let runtime = Runtime::build(loaded.config, metrics, pools);
    let version = runtime.version.clone();
    state.store(Arc::new(runtime));
    metrics.set_config_version(&version);
    metrics.reloads_total.with_label_values(&["success"]).inc();
    tracing::info!(%version, "config reloaded");
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
