//! Prometheus metrics, named after API Gateway's CloudWatch metrics (`portico_<name>`), and
//! the text exposition served on the admin port.
//!
//! Per-route label handles ([`RouteMetrics`]) are resolved once per `Runtime` build, so a
//! request touches only atomics.

use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::time::Duration;

const LABELS: &[&str] = &["api", "stage", "resource", "method"];
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric of the proxy, in its own registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// The per-route series (`portico_count`, ...), from which a route's handles are made.
    pub routes: RouteFamilies,
    /// `portico_config_reload_success`: 1 when the last load succeeded.
    pub reload_success: IntGauge,
    /// `portico_config_reloads_total{result=success|failure|unchanged}`.
    pub reloads_total: IntCounterVec,
    /// `portico_config_info{version}`: 1 for the served config's hash.
    pub config_info: IntGaugeVec,
    /// `portico_access_log_dropped_total`.
    pub access_log_dropped: IntCounter,
    /// `portico_config_source_up`: 1 while the config source is reachable (the Kubernetes
    /// API for `--kube-configmap`; always 1 for files).
    pub source_up: IntGauge,
    /// `portico_api_key_requests_total{plan,key_id}` and `portico_api_key_throttled_total`.
    pub keys: KeyMetrics,
    /// `portico_ratelimit_redis_errors_total`: rate-limit checks Redis gave no answer to
    /// (the older name of `portico_shared_state_errors_total{user="ratelimit"}`).
    pub redis_errors: IntCounter,
    /// `portico_shared_state_errors_total{user}`: commands the shared store gave no answer
    /// to, per user of the shared state.
    pub shared_state_errors: prometheus::IntCounterVec,
    cache_hits: IntCounterVec,
    cache_misses: IntCounterVec,
    /// `portico_cache_size_bytes{stage}`: bytes the stage cache holds in this process.
    pub cache_size: IntGaugeVec,
    /// WebSocket APIs' series (CloudWatch ConnectCount, MessageCount, ...).
    pub websocket: crate::websocket::WsMetrics,
}

/// Per-key series; `key_id` is the first 8 hex digits of the key's SHA-256, never the key.
#[derive(Clone, Debug)]
pub struct KeyMetrics {
    requests: IntCounterVec,
    throttled: IntCounterVec,
}

impl Default for KeyMetrics {
    /// Unregistered series (tests).
    fn default() -> Self {
        let v = |name: &str| {
            IntCounterVec::new(Opts::new(name, name), &["plan", "key_id"]).expect("valid metric")
        };
        KeyMetrics {
            requests: v("portico_api_key_requests_total"),
            throttled: v("portico_api_key_throttled_total"),
        }
    }
}

impl KeyMetrics {
    /// Counts a metered request of `key_id` on `plan`, and whether it was refused with 429.
    pub fn record(&self, plan: &str, key_id: &str, throttled: bool) {
        self.requests.with_label_values(&[plan, key_id]).inc();
        if throttled {
            self.throttled.with_label_values(&[plan, key_id]).inc();
        }
    }
}

/// The per-route metric families, labelled `api, stage, resource, method` (cheap to clone).
#[derive(Clone, Debug)]
pub struct RouteFamilies {
    count: IntCounterVec,
    errors_4xx: IntCounterVec,
    errors_5xx: IntCounterVec,
    latency: HistogramVec,
    integration_latency: HistogramVec,
}

impl RouteFamilies {
    /// Handles for one label set (resolved now, used per request). `api` is the API's stable
    /// id (`restapi/<namespace>/<name>`), so a renamed display name keeps its series.
    pub fn handles(&self, api: &str, stage: &str, resource: &str, method: &str) -> RouteMetrics {
        let l = [api, stage, resource, method];
        RouteMetrics {
            count: self.count.with_label_values(&l),
            errors_4xx: self.errors_4xx.with_label_values(&l),
            errors_5xx: self.errors_5xx.with_label_values(&l),
            latency: self.latency.with_label_values(&l),
            integration_latency: self.integration_latency.with_label_values(&l),
        }
    }
}

/// A route's series, created on the route's first request rather than when the config is
/// loaded: a series set costs about 5 KiB (two 15-bucket histograms, three counters, their
/// label pairs) and 5 KB of `/metrics` text, so 100,000 routes served from one fleet would
/// hold 500 MB of zero-valued series per proxy and make every scrape half a gigabyte. A
/// route that served nothing has no series (as CloudWatch has no data point for it).
#[derive(Debug, Default)]
pub struct LazyRouteMetrics(std::sync::OnceLock<RouteMetrics>);

impl LazyRouteMetrics {
    /// The handles, made from `families` with the labels `labels` gives on first use.
    #[inline]
    pub fn get<'a>(
        &self,
        families: &RouteFamilies,
        labels: impl FnOnce() -> [&'a str; 4],
    ) -> &RouteMetrics {
        self.0.get_or_init(|| {
            let [api, stage, resource, method] = labels();
            families.handles(api, stage, resource, method)
        })
    }

    /// Whether the series exist yet.
    pub fn is_created(&self) -> bool {
        self.0.get().is_some()
    }
}

/// Handles of one (api, stage, resource, method) series set.
#[derive(Clone, Debug)]
pub struct RouteMetrics {
    count: IntCounter,
    errors_4xx: IntCounter,
    errors_5xx: IntCounter,
    latency: Histogram,
    integration_latency: Histogram,
}

impl RouteMetrics {
    /// Counts one request.
    pub fn record(&self, status: u16, latency: Duration, integration: Option<Duration>) {
        self.count.inc();
        match status {
            400..=499 => self.errors_4xx.inc(),
            500..=599 => self.errors_5xx.inc(),
            _ => {}
        }
        self.latency.observe(latency.as_secs_f64());
        if let Some(d) = integration {
            self.integration_latency.observe(d.as_secs_f64());
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), LABELS).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let histogram = |name: &str, help: &str| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
                LABELS,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("registered once");
            h
        };
        let count = counter("portico_count", "Requests (CloudWatch Count).");
        let errors_4xx = counter(
            "portico_4xx_error",
            "Responses with a 4XX status (CloudWatch 4XXError).",
        );
        let errors_5xx = counter(
            "portico_5xx_error",
            "Responses with a 5XX status (CloudWatch 5XXError).",
        );
        let latency = histogram(
            "portico_latency_seconds",
            "Time from request to response head (CloudWatch Latency).",
        );
        let integration_latency = histogram(
            "portico_integration_latency_seconds",
            "Time from backend request to backend response head (CloudWatch IntegrationLatency).",
        );
        let reload_success = IntGauge::new(
            "portico_config_reload_success",
            "1 when the last config load succeeded, 0 when it failed (the old config is kept).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(reload_success.clone()))
            .expect("registered once");
        let reloads_total = IntCounterVec::new(
            Opts::new("portico_config_reloads_total", "Config loads by result."),
            &["result"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(reloads_total.clone()))
            .expect("registered once");
        let config_info = IntGaugeVec::new(
            Opts::new(
                "portico_config_info",
                "The served config version (content hash).",
            ),
            &["version"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(config_info.clone()))
            .expect("registered once");
        let access_log_dropped = IntCounter::new(
            "portico_access_log_dropped_total",
            "Access log lines dropped because the writer fell behind.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(access_log_dropped.clone()))
            .expect("registered once");
        let source_up = IntGauge::new(
            "portico_config_source_up",
            "1 while the config source (the Kubernetes API for --kube-configmap) is reachable.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(source_up.clone()))
            .expect("registered once");
        let keys = KeyMetrics {
            requests: IntCounterVec::new(
                Opts::new(
                    "portico_api_key_requests_total",
                    "Requests metered on an API key, by usage plan and key id (hash prefix).",
                ),
                &["plan", "key_id"],
            )
            .expect("valid metric"),
            throttled: IntCounterVec::new(
                Opts::new(
                    "portico_api_key_throttled_total",
                    "Requests of an API key refused with 429 (THROTTLED or QUOTA_EXCEEDED).",
                ),
                &["plan", "key_id"],
            )
            .expect("valid metric"),
        };
        for c in [&keys.requests, &keys.throttled] {
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
        }
        let redis_errors = IntCounter::new(
            "portico_ratelimit_redis_errors_total",
            "Rate-limit checks Redis gave no answer to (the failure mode decided).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(redis_errors.clone()))
            .expect("registered once");
        let shared_state_errors = prometheus::IntCounterVec::new(
            Opts::new(
                "portico_shared_state_errors_total",
                "Commands the shared store (Redis) gave no answer to, per user of the shared state (the failure mode decided).",
            ),
            &["user"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(shared_state_errors.clone()))
            .expect("registered once");
        let cache_hits = counter(
            "portico_cache_hit_count",
            "Requests served from the stage cache (CloudWatch CacheHitCount).",
        );
        let cache_misses = counter(
            "portico_cache_miss_count",
            "Requests of cached methods served by the integration (CloudWatch CacheMissCount).",
        );
        let cache_size = IntGaugeVec::new(
            Opts::new(
                "portico_cache_size_bytes",
                "Bytes a stage's response cache holds in this process (bounded by its budget; 0 with Redis).",
            ),
            &["stage"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(cache_size.clone()))
            .expect("registered once");
        let websocket = crate::websocket::WsMetrics::new(Some(&registry));
        Metrics {
            websocket,
            cache_size,
            cache_hits,
            cache_misses,
            redis_errors,
            shared_state_errors,
            keys,
            registry,
            routes: RouteFamilies {
                count,
                errors_4xx,
                errors_5xx,
                latency,
                integration_latency,
            },
            reload_success,
            reloads_total,
            config_info,
            access_log_dropped,
            source_up,
        }
    }

    /// Handles for one label set (resolved now, used per request). `api` is the API's stable id
    /// (`restapi/<namespace>/<name>`), so a renamed display name keeps its series.
    pub fn route(&self, api: &str, stage: &str, resource: &str, method: &str) -> RouteMetrics {
        self.routes.handles(api, stage, resource, method)
    }

    /// `portico_cache_hit_count` and `portico_cache_miss_count` for one label set (only
    /// cached methods have them).
    pub fn cache(
        &self,
        api: &str,
        stage: &str,
        resource: &str,
        method: &str,
    ) -> (IntCounter, IntCounter) {
        let l = [api, stage, resource, method];
        (
            self.cache_hits.with_label_values(&l),
            self.cache_misses.with_label_values(&l),
        )
    }

    /// Marks `version` as the served config.
    pub fn set_config_version(&self, version: &str) {
        self.config_info.reset();
        self.config_info.with_label_values(&[version]).set(1);
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding into a Vec does not fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}
