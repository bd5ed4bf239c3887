//! Admin server on its own port: `/metrics` (Prometheus text), `/healthz` (200 while the
//! process lives), `/readyz` (200 once a config is loaded and until shutdown starts, else 503),
//! `/usage?plan=<plan id>[&keyId=<key id>]` (quota used and remaining per key, as AWS
//! GetUsage; key ids are hash prefixes, never keys), `POST /cache/flush?stage=<ns>/<name>`
//! (AWS FlushStageCache: 202; with Redis for every replica, else this process's entries).

use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::usage_plan::{Limits, period_bounds, plan_quota_id, utc_date};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;

/// Readiness, shared with the server.
#[derive(Debug, Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Sets readiness.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Current readiness.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// What `/usage` reads: the served config and the counters.
#[derive(Clone, Debug)]
pub struct Usage {
    /// The served config.
    pub state: Arc<ArcSwap<Runtime>>,
    /// The request counters.
    pub limits: Limits,
    /// The stages' response caches (`POST /cache/flush`).
    pub cache: Arc<crate::cache::ResponseCache>,
}

impl Usage {
    /// `POST /cache/flush?stage=<namespace>/<name>`: `(status, JSON body)`.
    pub async fn flush(&self, method: &http::Method, query: &str) -> (StatusCode, String) {
        let err = |status, msg: String| (status, serde_json::json!({ "message": msg }).to_string());
        if method != http::Method::POST {
            return err(
                StatusCode::METHOD_NOT_ALLOWED,
                "use POST /cache/flush?stage=<namespace>/<name>".into(),
            );
        }
        let Some(name) = query.split('&').find_map(|kv| kv.strip_prefix("stage=")) else {
            return err(
                StatusCode::BAD_REQUEST,
                "stage=<namespace>/<name> is required".into(),
            );
        };
        let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
        let id = format!("stage/{name}");
        let runtime = self.state.load();
        let Some(stage) = runtime.config.stages.iter().find(|s| s.id == id) else {
            return err(StatusCode::NOT_FOUND, format!("no stage {name} is served"));
        };
        if stage.cache.is_none() {
            return err(
                StatusCode::NOT_FOUND,
                format!("stage {name} has no cache (spec.cacheClusterEnabled)"),
            );
        }
        match self.cache.flush(&id).await {
            Ok(scope) => {
                tracing::info!(stage = %id, scope, "stage cache flushed");
                (
                    StatusCode::ACCEPTED,
                    serde_json::json!({ "stage": id, "flushed": scope }).to_string(),
                )
            }
            Err(e) => err(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the shared cache did not answer ({e}); flush again, or change the Stage's portico.dev/flush-cache annotation"
                ),
            ),
        }
    }

    /// `GET /usage?plan=..&keyId=..`: `(status, JSON body)`.
    pub async fn get(&self, query: &str, unix: i64) -> (StatusCode, String) {
        let param = |name: &str| {
            query.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == name).then(|| {
                    percent_encoding::percent_decode_str(v)
                        .decode_utf8_lossy()
                        .into_owned()
                })
            })
        };
        let err = |status, msg: &str| (status, serde_json::json!({ "message": msg }).to_string());
        let Some(plan_param) = param("plan") else {
            return err(StatusCode::BAD_REQUEST, "query parameter plan is required");
        };
        let rt = self.state.load_full();
        let cfg = &rt.config;
        // `usageplan/<ns>/<name>` or `<ns>/<name>`.
        let Some(plan) = cfg.usage_plans.iter().find(|p| {
            p.id == plan_param || p.id.strip_prefix("usageplan/") == Some(plan_param.as_str())
        }) else {
            return err(StatusCode::NOT_FOUND, "no such usage plan");
        };
        let key_param = param("keyId");
        let mut items = serde_json::Map::new();
        for k in cfg
            .api_keys
            .iter()
            .filter(|k| k.usage_plans.contains(&plan.id))
        {
            let key_id = k.hash.key_id();
            if key_param
                .as_deref()
                .is_some_and(|want| want != key_id && want != k.id)
            {
                continue;
            }
            let id = plan_quota_id(&plan.id, k.hash.as_hex());
            let (used, remaining) = match (plan.quota, &self.limits.redis) {
                (Some(q), Some(r)) => match r.quota_usage(&id, q, unix).await {
                    Ok(u) => u,
                    Err(e) => return err(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
                },
                (Some(q), None) => self.limits.local.quota_usage(&id, q, unix),
                (None, _) => (0, 0),
            };
            items.insert(key_id.to_string(), serde_json::json!([[used, remaining]]));
        }
        if key_param.is_some() && items.is_empty() {
            return err(StatusCode::NOT_FOUND, "no such key in the usage plan");
        }
        let (start, end) = plan
            .quota
            .map_or((unix, unix + 1), |q| period_bounds(q.period, unix));
        let body = serde_json::json!({
            "usagePlanId": plan.id,
            "startDate": utc_date(start),
            "endDate": utc_date(end - 1),
            "quota": plan.quota.map(|q| serde_json::json!({"limit": q.limit, "period": q.period})),
            "items": items,
        });
        (StatusCode::OK, body.to_string())
    }
}

async fn respond(
    metrics: &Metrics,
    health: &Health,
    usage: &Usage,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (status, ctype, body) = match req.uri().path() {
        "/cache/flush" => {
            let (status, body) = usage
                .flush(req.method(), req.uri().query().unwrap_or(""))
                .await;
            (status, "application/json", Bytes::from(body))
        }
        "/usage" => {
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            let (status, body) = usage.get(req.uri().query().unwrap_or(""), unix).await;
            (status, "application/json", Bytes::from(body))
        }
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            Bytes::from(metrics.encode()),
        ),
        "/healthz" => (StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n")),
        "/readyz" if health.is_ready() => {
            (StatusCode::OK, "text/plain", Bytes::from_static(b"ready\n"))
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            Bytes::from_static(b"not ready\n"),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found\n"),
        ),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    resp
}

/// Serves the admin endpoints until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    usage: Usage,
    header_timeout: std::time::Duration,
) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let (metrics, health, usage) = (metrics.clone(), health.clone(), usage.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (metrics, health, usage) = (metrics.clone(), health.clone(), usage.clone());
                async move { Ok::<_, Infallible>(respond(&metrics, &health, &usage, &req).await) }
            });
            // A connection that sends no complete head in time is closed, with the public
            // listener's --client-header-timeout-seconds: an open admin connection costs as
            // much as any other.
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
