//! What a reconcile pass runs with ([`Context`]: the clients, the publisher, the event sink
//! and the metrics) and what the admin server reports ([`State`]).
//!
//! Kept apart from [`crate::controller`] so that the modules a pass calls (`api_key`,
//! `status`) and the admin server depend on this module only, never on the controller that
//! calls them.

use crate::events::EventSink;
use crate::metrics::Metrics;
use crate::publish::{Limits, Publisher};
use kube::Client;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the admin server reports.
#[derive(Default)]
pub struct State {
    ready: AtomicBool,
}

impl State {
    /// True once every watch has listed once.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Marks the watches synced.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed)
    }
}

/// What a reconcile pass needs.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// The ConfigMap publisher (remembers the last version).
    pub publisher: Publisher,
    /// Events on condition transitions.
    pub events: EventSink,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Admin-visible state.
    pub state: Arc<State>,
}

impl Context {
    /// A context around `client`, publishing to `namespace/name`.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        limits: Limits,
        metrics: Arc<Metrics>,
        identity: Option<String>,
    ) -> Self {
        Self {
            publisher: Publisher::new(client.clone(), namespace, name, limits),
            events: EventSink::new(client.clone(), identity),
            client,
            metrics,
            state: Arc::default(),
        }
    }
}
