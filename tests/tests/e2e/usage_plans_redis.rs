//! Usage-plan counters in Redis shared by several proxy processes (`--redis-url`): the
//! accuracy bound across replicas, and the failure modes when Redis is down.
//! Each test starts its own `redis-server` (see `portico_e2e::RedisServer`).

use http::Method;
use portico_e2e::yaml::{mock, rest_api, stage};
use portico_e2e::{Client, Proxy, RedisServer, metric_sum};
use std::time::{Duration, Instant};

const KEY: &str = "shared-key-0123456789abcdef";
const RATE: f64 = 20.0;
const BURST: u64 = 10;

fn manifests() -> Vec<(&'static str, String)> {
    let api = rest_api(
        "content",
        &format!(
            "  resources:\n    - path: /content\n      methods:\n        GET: {{apiKeyRequired: true, integration: {}}}\n",
            mock("content")
        ),
    );
    let plan = format!(
        r#"apiVersion: portico.dev/v1alpha1
kind: UsagePlan
metadata: {{name: shared, namespace: default}}
spec:
  throttle: {{rateLimit: {RATE}, burstLimit: {BURST}}}
  apiStages: [{{stageRef: {{name: prod}}}}]
---
apiVersion: portico.dev/v1alpha1
kind: ApiKey
metadata: {{name: shared, namespace: default}}
spec:
  valueFrom: {{secretKeyRef: {{name: keys, key: shared}}}}
  usagePlanRefs: [{{name: shared}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: keys, namespace: default}}
stringData: {{shared: {KEY}}}
"#
    );
    vec![
        ("api.yaml", api),
        ("prod.yaml", stage("prod", "content", "")),
        ("plan.yaml", plan),
    ]
}

async fn start_proxy(args: &[&str]) -> Proxy {
    let mut b = Proxy::builder();
    for (name, content) in manifests() {
        b = b.manifest(name, &content);
    }
    for a in args {
        b = b.arg(a);
    }
    b.start().await
}

/// Accuracy guarantee: across any number of replicas sharing one Redis, the requests admitted
/// for one key over an interval of `t` seconds are at most `burst + rate * t` (+1 for
/// rounding), because every admission is one atomic script against Redis's own clock. The
/// bound is checked for the time that actually elapsed, so it holds on a slow machine too;
/// whether these clients outrun the rate there is not up to the test, so the shared count's
/// 429 is shown with a bucket that cannot refill during the test (the next test).
#[tokio::test]
async fn three_proxies_sharing_redis_admit_no_more_than_the_bucket_allows() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let mut proxies = Vec::new();
    for _ in 0..3 {
        proxies.push(start_proxy(&["--redis-url", &url]).await);
    }
    // A proxy reports ready only after its first connection attempt: all are connected.
    let c = Client::new();
    let urls: Vec<String> = proxies.iter().map(|p| p.url("/prod/content")).collect();
    let started = Instant::now();
    let run_for = Duration::from_secs(2);
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (c, url) = (c.clone(), urls[i % urls.len()].clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut throttled) = (0u64, 0u64);
            while started.elapsed() < run_for {
                let r = c.send(Method::GET, &url, &[("x-api-key", KEY)], "").await;
                match r.status.as_u16() {
                    200 => ok += 1,
                    429 => throttled += 1,
                    s => panic!("unexpected status {s}: {}", r.text()),
                }
            }
            (ok, throttled)
        }));
    }
    let (mut ok, mut throttled) = (0, 0);
    for t in tasks {
        let (o, th) = t.await.unwrap();
        ok += o;
        throttled += th;
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!("3 proxies, 12 clients, {elapsed:.2}s: admitted {ok}, throttled {throttled}");
    let bound = BURST as f64 + RATE * elapsed + 1.0;
    assert!(
        (ok as f64) <= bound,
        "admitted {ok} > burst {BURST} + rate {RATE} * {elapsed:.2}s + 1 = {bound:.1} (throttled {throttled})"
    );
    assert!(
        ok >= BURST,
        "admitted {ok}, expected at least the burst {BURST}"
    );
    // Every proxy took part, and none counted a Redis error.
    for p in &proxies {
        let text = p.metrics(&c).await;
        assert_eq!(
            metric_sum(&text, "portico_ratelimit_redis_errors_total", &[]),
            Some(0.0)
        );
        assert_eq!(
            metric_sum(&text, "portico_shared_state_errors_total", &[]),
            None,
            "no shared-state user saw a failure"
        );
        assert!(metric_sum(&text, "portico_api_key_requests_total", &[]).unwrap_or(0.0) > 0.0);
    }
}

/// The count is shared, deterministically: a bucket of 2 that refills one token per 1,000 s
/// admits two requests through three proxies, one each through the first two, and the third
/// proxy answers 429, however slowly the requests are sent.
#[tokio::test]
async fn a_bucket_in_redis_is_spent_once_across_three_proxies() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let small = |m: Vec<(&'static str, String)>| {
        m.into_iter()
            .map(|(n, c)| {
                let c = c.replace(
                    &format!("  throttle: {{rateLimit: {RATE}, burstLimit: {BURST}}}\n"),
                    "  throttle: {rateLimit: 0.001, burstLimit: 2}\n",
                );
                (n, c)
            })
            .collect::<Vec<_>>()
    };
    let mut proxies = Vec::new();
    for _ in 0..3 {
        let mut b = Proxy::builder().arg("--redis-url").arg(&url);
        for (n, c) in small(manifests()) {
            b = b.manifest(n, &c);
        }
        proxies.push(b.start().await);
    }
    let c = Client::new();
    let mut statuses = Vec::new();
    for p in &proxies {
        let r = c
            .send(
                Method::GET,
                &p.url("/prod/content"),
                &[("x-api-key", KEY)],
                "",
            )
            .await;
        statuses.push(r.status.as_u16());
        if r.status == 429 {
            assert_eq!(
                r.json(),
                serde_json::json!({"message": "Too Many Requests"})
            );
            assert!(r.header("retry-after").parse::<u64>().unwrap() >= 1);
        }
    }
    assert_eq!(statuses, [200, 200, 429]);
}

#[tokio::test]
async fn without_redis_fail_open_admits_and_counts_and_fail_closed_answers_500() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}");
    let c = Client::new();

    let open = start_proxy(&["--redis-url", &url]).await;
    let r = c
        .send(
            Method::GET,
            &open.url("/prod/content"),
            &[("x-api-key", KEY)],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = open.metrics(&c).await;
    assert!(metric_sum(&text, "portico_ratelimit_redis_errors_total", &[]).unwrap() >= 1.0);
    assert!(
        metric_sum(
            &text,
            "portico_shared_state_errors_total",
            &[("user", "ratelimit")]
        )
        .unwrap()
            >= 1.0
    );
    assert!(open.logs().contains("shared state unavailable"));

    let closed = start_proxy(&["--redis-url", &url, "--redis-failure-mode", "closed"]).await;
    let r = c
        .send(
            Method::GET,
            &closed.url("/prod/content"),
            &[("x-api-key", KEY)],
            "",
        )
        .await;
    assert_eq!(r.status, 500, "{}", r.text());
    // A refused key is refused before any counter is read.
    let r = c
        .send(Method::GET, &closed.url("/prod/content"), &[], "")
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn a_quota_in_redis_is_shared_by_two_proxies_and_reported_by_either() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let quota_plan = |m: Vec<(&'static str, String)>| {
        m.into_iter()
            .map(|(n, c)| {
                let c = c.replace(
                    &format!("  throttle: {{rateLimit: {RATE}, burstLimit: {BURST}}}\n"),
                    "  quota: {limit: 3, period: WEEK, offset: 1}\n",
                );
                (n, c)
            })
            .collect::<Vec<_>>()
    };
    let mut proxies = Vec::new();
    for _ in 0..2 {
        let mut b = Proxy::builder().arg("--redis-url").arg(&url);
        for (n, c) in quota_plan(manifests()) {
            b = b.manifest(n, &c);
        }
        proxies.push(b.start().await);
    }
    let c = Client::new();
    let get = |p: &Proxy| {
        let (c, url) = (c.clone(), p.url("/prod/content"));
        async move { c.send(Method::GET, &url, &[("x-api-key", KEY)], "").await }
    };
    // offset 1: two requests left this week, one through each proxy.
    assert_eq!(get(&proxies[0]).await.status, 200);
    assert_eq!(get(&proxies[1]).await.status, 200);
    for p in &proxies {
        let r = get(p).await;
        assert_eq!(r.status, 429, "{}", r.text());
        assert_eq!(r.json(), serde_json::json!({"message": "Limit Exceeded"}));
        assert!(r.header("retry-after").parse::<u64>().unwrap() >= 1);
    }
    let key_id = portico_config::KeyHash::of(KEY.as_bytes())
        .key_id()
        .to_string();
    for p in &proxies {
        let u = c
            .get(&p.admin_url(&format!("/usage?plan=default/shared&keyId={key_id}")))
            .await;
        assert_eq!(u.status, 200, "{}", u.text());
        assert_eq!(u.json()["items"][&key_id], serde_json::json!([[3, 0]]));
    }
}
