//! API keys, usage plans and stage throttles through the real proxy binary: 403 without a
//! valid key, 429 once a bucket or a quota is spent, per-method overrides, and the
//! `RateLimit-*` / `Retry-After` headers.

use http::Method;
use portico_e2e::yaml::{mock, rest_api, stage};
use portico_e2e::{Client, Proxy, Response};

const GOOD: &str = "good-key-0123456789abcdef";
const OFF: &str = "disabled-key-0123456789abcdef";
const QUOTA: &str = "quota-key-0123456789abcdef";

/// `/content` GET and POST need a key, `/open` does not. Stage `prod`: plan `throttled`
/// (burst 3, POST overridden to burst 1); stage `metered`: plan `quota` (3 a day). `/open`
/// has a stage method throttle for everyone (burst 2). Every bucket refills one token per
/// 1,000 s, so no token comes back during a test however slowly the machine runs.
fn manifests() -> Vec<(&'static str, String)> {
    let api = rest_api(
        "content",
        &format!(
            r#"  resources:
    - path: /content
      methods:
        GET: {{apiKeyRequired: true, integration: {get}}}
        POST: {{apiKeyRequired: true, integration: {post}}}
    - path: /open
      methods:
        GET: {{integration: {open}}}
"#,
            get = mock("content"),
            post = mock("posted"),
            open = mock("open"),
        ),
    );
    let plans = format!(
        r#"apiVersion: portico.dev/v1alpha1
kind: UsagePlan
metadata: {{name: throttled, namespace: default}}
spec:
  throttle: {{rateLimit: 0.001, burstLimit: 3}}
  apiStages:
    - stageRef: {{name: prod}}
      throttle: {{"/content/POST": {{rateLimit: 0.001, burstLimit: 1}}}}
---
apiVersion: portico.dev/v1alpha1
kind: UsagePlan
metadata: {{name: quota, namespace: default}}
spec:
  quota: {{limit: 3, period: DAY}}
  apiStages: [{{stageRef: {{name: metered}}}}]
---
apiVersion: portico.dev/v1alpha1
kind: ApiKey
metadata: {{name: good, namespace: default}}
spec:
  valueFrom: {{secretKeyRef: {{name: keys, key: good}}}}
  usagePlanRefs: [{{name: throttled}}]
---
apiVersion: portico.dev/v1alpha1
kind: ApiKey
metadata: {{name: off, namespace: default}}
spec:
  enabled: false
  valueFrom: {{secretKeyRef: {{name: keys, key: off}}}}
  usagePlanRefs: [{{name: throttled}}]
---
apiVersion: portico.dev/v1alpha1
kind: ApiKey
metadata: {{name: metered, namespace: default}}
spec:
  valueFrom: {{secretKeyRef: {{name: keys, key: quota}}}}
  usagePlanRefs: [{{name: quota}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: keys, namespace: default}}
stringData: {{good: {GOOD}, "off": {OFF}, quota: {QUOTA}}}
"#
    );
    vec![
        ("api.yaml", api),
        (
            "prod.yaml",
            stage(
                "prod",
                "content",
                "  methodSettings: {\"/open/GET\": {throttle: {rateLimit: 0.001, burstLimit: 2}}}\n",
            ),
        ),
        ("metered.yaml", stage("metered", "content", "")),
        ("plans.yaml", plans),
    ]
}

async fn start() -> Proxy {
    let m = manifests();
    let refs: Vec<(&str, &str)> = m.iter().map(|(n, c)| (*n, c.as_str())).collect();
    Proxy::start(&refs).await
}

async fn call(c: &Client, p: &Proxy, method: Method, path: &str, key: Option<&str>) -> Response {
    let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
    c.send(method, &p.url(path), &headers, "").await
}

#[tokio::test]
async fn a_method_requiring_a_key_refuses_missing_unknown_and_disabled_keys() {
    let p = start().await;
    let c = Client::new();
    for key in [None, Some("nope"), Some(OFF), Some(QUOTA)] {
        // QUOTA is valid but its plan does not cover stage prod: refused as AWS does.
        let r = call(&c, &p, Method::GET, "/prod/content", key).await;
        assert_eq!(r.status, 403, "{key:?}: {}", r.text());
        assert_eq!(r.json(), serde_json::json!({"message": "Forbidden"}));
        assert_eq!(r.header("x-amzn-errortype"), "ForbiddenException");
    }
    let r = call(&c, &p, Method::GET, "/prod/content", Some(GOOD)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "content");
    assert_eq!(r.header("ratelimit-limit"), "3");
    assert_eq!(r.header("ratelimit-remaining"), "2");
    // A method without apiKeyRequired needs no key.
    assert_eq!(
        call(&c, &p, Method::GET, "/prod/open", None).await.status,
        200
    );
    // The key never appears in the logs.
    assert!(!p.logs().contains(GOOD));
}

#[tokio::test]
async fn a_spent_burst_answers_429_with_retry_after_and_a_method_override_has_its_own_bucket() {
    let p = start().await;
    let c = Client::new();
    // POST is overridden to burst 1: its second call is throttled...
    assert_eq!(
        call(&c, &p, Method::POST, "/prod/content", Some(GOOD))
            .await
            .status,
        200
    );
    let r = call(&c, &p, Method::POST, "/prod/content", Some(GOOD)).await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"message": "Too Many Requests"})
    );
    // ...while GET still has the plan's burst of 3 (separate buckets).
    for left in ["2", "1", "0"] {
        let r = call(&c, &p, Method::GET, "/prod/content", Some(GOOD)).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("ratelimit-remaining"), left);
    }
    let r = call(&c, &p, Method::GET, "/prod/content", Some(GOOD)).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-amzn-errortype"), "TooManyRequestsException");
    let retry: u64 = r
        .header("retry-after")
        .parse()
        .expect("Retry-After is seconds");
    // The next token is at most 1,000 s away (one per 1,000 s).
    assert!((1..=1000).contains(&retry), "Retry-After {retry}");
    assert_eq!(r.header("ratelimit-remaining"), "0");
}

#[tokio::test]
async fn a_stage_method_throttle_applies_to_every_caller() {
    let p = start().await;
    let c = Client::new();
    for _ in 0..2 {
        assert_eq!(
            call(&c, &p, Method::GET, "/prod/open", None).await.status,
            200
        );
    }
    let r = call(&c, &p, Method::GET, "/prod/open", None).await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.json(),
        serde_json::json!({"message": "Too Many Requests"})
    );
    // Another stage of the same API is not affected.
    assert_eq!(
        call(&c, &p, Method::GET, "/metered/open", None)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_spent_quota_answers_429_limit_exceeded_until_the_period_ends() {
    let p = start().await;
    let c = Client::new();
    for _ in 0..3 {
        let r = call(&c, &p, Method::GET, "/metered/content", Some(QUOTA)).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = call(&c, &p, Method::GET, "/metered/content", Some(QUOTA)).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.json(), serde_json::json!({"message": "Limit Exceeded"}));
    // A spent quota is LimitExceededException on AWS, a spent bucket TooManyRequestsException
    // (recorded: massif-press/compcon#2237, "responds with 429 Notable Header:
    // LimitExceededException").
    assert_eq!(r.header("x-amzn-errortype"), "LimitExceededException");
    let retry: u64 = r.header("retry-after").parse().unwrap();
    assert!((1..=86_400).contains(&retry), "Retry-After {retry}");

    // The usage API (admin port) and the per-key series name the key by its hash prefix.
    let key_id = portico_config::KeyHash::of(QUOTA.as_bytes())
        .key_id()
        .to_string();
    let u = c
        .get(&p.admin_url(&format!("/usage?plan=default/quota&keyId={key_id}")))
        .await;
    assert_eq!(u.status, 200, "{}", u.text());
    let u = u.json();
    assert_eq!(u["usagePlanId"], "usageplan/default/quota");
    assert_eq!(u["items"][&key_id], serde_json::json!([[3, 0]]));
    assert_eq!(u["startDate"], u["endDate"], "a DAY window: {u}");
    assert_eq!(
        c.get(&p.admin_url("/usage?plan=default/nope")).await.status,
        404
    );
    assert_eq!(c.get(&p.admin_url("/usage")).await.status, 400);
    let text = p.metrics(&c).await;
    let labels = [
        ("plan", "usageplan/default/quota"),
        ("key_id", key_id.as_str()),
    ];
    assert_eq!(
        portico_e2e::metric_sum(&text, "portico_api_key_requests_total", &labels),
        Some(4.0)
    );
    assert_eq!(
        portico_e2e::metric_sum(&text, "portico_api_key_throttled_total", &labels),
        Some(1.0)
    );
    assert!(!text.contains(QUOTA));
}
