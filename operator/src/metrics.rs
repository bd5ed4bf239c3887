//! Prometheus metrics of the operator, served by [`crate::admin`] at `/metrics`.
//!
//! Entry point: [`Metrics::register`]. [`Metrics::count_and_measure`] returns a
//! [`ReconcileMeasurer`] whose `Drop` records the reconcile duration (controller-rs pattern).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio::time::Instant;

/// All operator metrics.
#[derive(Clone)]
pub struct Metrics {
    /// Reconcile runs (whole-snapshot compiles).
    pub reconciles: IntCounter,
    /// Failed reconcile runs by error label ([`crate::Error::metric_label`]).
    pub failures: IntCounterVec,
    /// Reconcile duration.
    pub reconcile_duration: Histogram,
    /// ConfigMap writes (a skipped, unchanged publish does not count).
    pub publishes: IntCounter,
    /// Size in bytes of the last compiled GatewayConfig JSON.
    pub config_json_bytes: IntGauge,
    /// Size in bytes of what the last publish wrote (the ConfigMap's JSON or gzip; sharded: the
    /// changed shards and the index).
    pub config_stored_bytes: IntGauge,
    /// Status subresource patches.
    pub status_patches: IntCounter,
    /// 1 while this replica holds the Lease.
    pub leader: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let counter = |n: &str, h: &str| IntCounter::new(n, h).expect("metric names are valid");
        let gauge = |n: &str, h: &str| IntGauge::new(n, h).expect("metric names are valid");
        Self {
            reconciles: counter(
                "portico_operator_reconcile_total",
                "Whole-snapshot reconcile runs",
            ),
            failures: IntCounterVec::new(
                Opts::new(
                    "portico_operator_reconcile_errors_total",
                    "Failed reconcile runs by error",
                ),
                &["error"],
            )
            .expect("metric names are valid"),
            reconcile_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "portico_operator_reconcile_duration_seconds",
                    "Duration of a reconcile run",
                )
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1., 5., 15.]),
            )
            .expect("metric names are valid"),
            publishes: counter(
                "portico_operator_publish_total",
                "GatewayConfig ConfigMap writes",
            ),
            config_json_bytes: gauge(
                "portico_operator_config_json_bytes",
                "Size of the last compiled GatewayConfig JSON",
            ),
            config_stored_bytes: gauge(
                "portico_operator_config_stored_bytes",
                "Size of what the last publish wrote (the ConfigMap payload, or the changed shards and the index)",
            ),
            status_patches: counter(
                "portico_operator_status_patches_total",
                "Status subresource patches",
            ),
            leader: gauge(
                "portico_operator_leader",
                "1 while this replica holds the leader Lease",
            ),
        }
    }
}

impl Metrics {
    /// Registers every metric in `registry`.
    pub fn register(self, registry: &Registry) -> prometheus::Result<Self> {
        registry.register(Box::new(self.reconciles.clone()))?;
        registry.register(Box::new(self.failures.clone()))?;
        registry.register(Box::new(self.reconcile_duration.clone()))?;
        registry.register(Box::new(self.publishes.clone()))?;
        registry.register(Box::new(self.config_json_bytes.clone()))?;
        registry.register(Box::new(self.config_stored_bytes.clone()))?;
        registry.register(Box::new(self.status_patches.clone()))?;
        registry.register(Box::new(self.leader.clone()))?;
        Ok(self)
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failure(&self, e: &crate::Error) {
        self.failures.with_label_values(&[&e.metric_label()]).inc();
    }

    /// Counts a reconcile and returns a timer that records its duration when dropped.
    pub fn count_and_measure(&self) -> ReconcileMeasurer {
        self.reconciles.inc();
        ReconcileMeasurer {
            start: Instant::now(),
            metric: self.reconcile_duration.clone(),
        }
    }
}

/// Records the reconcile duration when dropped, so early returns are measured too.
pub struct ReconcileMeasurer {
    start: Instant,
    metric: Histogram,
}

impl Drop for ReconcileMeasurer {
    fn drop(&mut self) {
        self.metric
            .observe(self.start.elapsed().as_millis() as f64 / 1000.0);
    }
}
