//! The stage response cache (`cacheClusterEnabled`, `methodSettings` caching fields,
//! `cacheKeyParameters`), end to end with a backend that counts its calls.
//!
//! AWS behaviour pinned here is from the AWS developer guide, "Enable API caching for REST
//! APIs in API Gateway" (docs.aws.amazon.com/apigateway/latest/developerguide/
//! api-gateway-caching.html): GET methods are cached when the stage's cache is on, TTL
//! default 300 s (0..3600), responses up to 1,048,576 bytes, the key is the cache key
//! parameters' values, `Cache-Control: max-age=0` invalidates an entry when the caller may
//! (`execute-api:InvalidateCache`) or the unauthorized strategy decides (FAIL_WITH_403,
//! SUCCEED_WITH_RESPONSE_HEADER, SUCCEED_WITHOUT_RESPONSE_HEADER), FlushStageCache empties it.
//!
//! Nothing here depends on the machine's speed: a hit is asserted only for entries whose TTL
//! (3600 s) cannot pass during the test, an expiry only after the TTL surely passed, and
//! coalescing is checked on a backend that holds the first call until every request is out.

use http::Method;
use portico_e2e::yaml::{rest_api, stage};
use portico_e2e::{Backend, Client, Proxy, RedisServer, eventually, metric_sum};
use serde_json::json;
use std::time::Duration;

/// A RestApi `shop` with `/items/{id}` (GET keyed by id and `lang`, POST cached explicitly,
/// PUT not), `/plain` (GET, no key parameters), `/short` (GET, TTL 1 s), all proxied to
/// `backend`.
fn shop(backend: &Backend) -> String {
    let b = backend.host_port();
    rest_api(
        "shop",
        &format!(
            r#"  resources:
    - path: /items/{{id}}
      methods:
        GET:
          integration:
            type: HTTP_PROXY
            uri: http://{b}/items/{{id}}
            cacheKeyParameters: [method.request.path.id, method.request.querystring.lang]
        POST: {{integration: {{type: HTTP_PROXY, uri: 'http://{b}/items/{{id}}'}}}}
        PUT: {{integration: {{type: HTTP_PROXY, uri: 'http://{b}/items/{{id}}'}}}}
    - path: /plain
      methods:
        GET: {{integration: {{type: HTTP_PROXY, uri: 'http://{b}/plain'}}}}
    - path: /short
      methods:
        GET: {{integration: {{type: HTTP_PROXY, uri: 'http://{b}/short'}}}}
"#
        ),
    )
}

/// The stage `prod` of `shop` with a cache of `budget` bytes; `annotation`: the flush token.
fn shop_stage(budget: u64, annotation: Option<&str>) -> String {
    let st = stage(
        "shop-prod",
        "shop",
        &format!(
            r#"  stageName: prod
  cacheClusterEnabled: true
  cacheClusterSizeBytes: {budget}
  methodSettings:
    "*/*": {{cacheTtlInSeconds: 3600}}
    "/items/{{id}}/POST": {{cachingEnabled: true}}
    "/short/GET": {{cacheTtlInSeconds: 1}}
"#
        ),
    );
    match annotation {
        None => st,
        Some(a) => st.replace(
            "metadata: {name: shop-prod, namespace: default}",
            &format!(
                "metadata: {{name: shop-prod, namespace: default, annotations: {{portico.dev/flush-cache: '{a}'}}}}"
            ),
        ),
    }
}

async fn get(c: &Client, proxy: &Proxy, path: &str, headers: &[(&str, &str)]) -> serde_json::Value {
    let r = c.send(Method::GET, &proxy.url(path), headers, "").await;
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.json()
}

#[tokio::test]
async fn hits_misses_key_parameters_methods_ttl_and_metrics() {
    let backend = Backend::start("shop").await;
    let proxy = Proxy::start(&[
        ("api.yaml", &shop(&backend)),
        ("stage.yaml", &shop_stage(1 << 20, None)),
    ])
    .await;
    let c = Client::new();
    let calls = || backend.started();

    // A miss, then hits: the backend is called once.
    let first = get(&c, &proxy, "/prod/items/1?lang=en", &[]).await;
    assert_eq!(calls(), 1);
    for _ in 0..3 {
        assert_eq!(get(&c, &proxy, "/prod/items/1?lang=en", &[]).await, first);
    }
    assert_eq!(calls(), 1, "hits do not reach the backend");
    // Unlisted query strings and headers are not part of the key: still a hit, and the
    // cached answer (with the first request's query) comes back.
    let r = get(
        &c,
        &proxy,
        "/prod/items/1?lang=en&utm=x",
        &[("x-other", "1")],
    )
    .await;
    assert_eq!((r["query"].clone(), calls()), (json!("lang=en"), 1));
    // Each listed parameter is: another id, another lang, no lang.
    for path in [
        "/prod/items/2?lang=en",
        "/prod/items/1?lang=de",
        "/prod/items/1",
    ] {
        let before = calls();
        get(&c, &proxy, path, &[]).await;
        assert_eq!(calls(), before + 1, "{path} is a miss");
        get(&c, &proxy, path, &[]).await;
        assert_eq!(calls(), before + 1, "{path} again is a hit");
    }
    // Only GET by default: PUT is never cached; POST is, because its settings say so.
    let before = calls();
    for _ in 0..2 {
        let r = c
            .send(Method::PUT, &proxy.url("/prod/items/1"), &[], "x")
            .await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(calls(), before + 2, "PUT is not cached");
    for _ in 0..2 {
        let r = c
            .send(Method::POST, &proxy.url("/prod/items/1"), &[], "x")
            .await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(calls(), before + 3, "POST is cached (cachingEnabled: true)");
    // Errors are not stored (AWS is silent; a 5XX or 429 is not replayed for the TTL).
    let before = calls();
    for _ in 0..2 {
        let r = c
            .send(
                Method::GET,
                &proxy.url("/prod/items/9"),
                &[("x-echo-status", "503")],
                "",
            )
            .await;
        assert_eq!(r.status, 503);
    }
    assert_eq!(calls(), before + 2);
    // TTL: /short lives 1 s; once more than that has passed, it is a miss again.
    let before = calls();
    get(&c, &proxy, "/prod/short", &[]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    get(&c, &proxy, "/prod/short", &[]).await;
    assert_eq!(calls(), before + 2, "expired after its TTL");
    // CacheHitCount / CacheMissCount per method.
    let text = proxy.metrics(&c).await;
    let m = |name: &str, resource: &str, method: &str| {
        metric_sum(
            &text,
            name,
            &[
                ("stage", "prod"),
                ("resource", resource),
                ("method", method),
            ],
        )
        .unwrap_or(0.0) as u64
    };
    assert_eq!(m("portico_cache_miss_count", "/items/{id}", "GET"), 4 + 2);
    assert_eq!(m("portico_cache_hit_count", "/items/{id}", "GET"), 4 + 3);
    assert_eq!(m("portico_cache_hit_count", "/items/{id}", "POST"), 1);
    assert_eq!(
        metric_sum(&text, "portico_cache_hit_count", &[("method", "PUT")]),
        None,
        "an uncached method has no cache series"
    );
}

/// 100 concurrent requests for one uncached key make one backend call (nginx's
/// `proxy_cache_lock`): the backend holds the first until every request has been sent;
/// whichever arrive while it is held wait for it, the later ones find the entry.
#[tokio::test]
async fn concurrent_misses_for_one_key_make_one_backend_call() {
    let backend = Backend::start("shop").await;
    let proxy = Proxy::start(&[
        ("api.yaml", &shop(&backend)),
        ("stage.yaml", &shop_stage(1 << 20, None)),
    ])
    .await;
    backend.hold();
    let url = proxy.url("/prod/plain");
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (c, url) = (Client::new(), url.clone());
        tasks.push(tokio::spawn(async move {
            let r = c.send(Method::GET, &url, &[], "").await;
            (r.status.as_u16(), r.text())
        }));
    }
    backend.wait_started(1, Duration::from_secs(30)).await;
    // Give the other requests time to reach the proxy (not needed for the assertion: a
    // late one finds the entry), then answer.
    tokio::time::sleep(Duration::from_millis(200)).await;
    backend.release();
    let mut bodies = std::collections::BTreeSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
        bodies.insert(body);
    }
    assert_eq!(bodies.len(), 1, "every caller got the one answer");
    assert_eq!(
        backend.started(),
        1,
        "one backend call for 100 concurrent misses"
    );
}

/// A flush: the admin endpoint (AWS FlushStageCache) and a change of the Stage's
/// `portico.dev/flush-cache` annotation both make the next request a miss.
#[tokio::test]
async fn flushes_by_admin_endpoint_and_by_annotation() {
    let backend = Backend::start("shop").await;
    let proxy = Proxy::start(&[
        ("api.yaml", &shop(&backend)),
        ("stage.yaml", &shop_stage(1 << 20, None)),
    ])
    .await;
    let c = Client::new();
    get(&c, &proxy, "/prod/plain", &[]).await;
    get(&c, &proxy, "/prod/plain", &[]).await;
    assert_eq!(backend.started(), 1);
    let flush = |q: &str| {
        let (c, url) = (c.clone(), proxy.admin_url(&format!("/cache/flush{q}")));
        async move { c.send(Method::POST, &url, &[], "").await }
    };
    let r = flush("?stage=default/shop-prod").await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["flushed"], "process");
    get(&c, &proxy, "/prod/plain", &[]).await;
    assert_eq!(backend.started(), 2, "a miss after the flush");
    assert_eq!(flush("?stage=default/nope").await.status, 404);
    assert_eq!(flush("").await.status, 400);
    let r = c
        .get(&proxy.admin_url("/cache/flush?stage=default/shop-prod"))
        .await;
    assert_eq!(r.status, 405);
    // The annotation: a new value flushes (the config carries it into every key).
    get(&c, &proxy, "/prod/plain", &[]).await;
    assert_eq!(backend.started(), 2);
    proxy.write_manifest("stage.yaml", &shop_stage(1 << 20, Some("2026-12-05T04:00")));
    eventually(
        "the annotated config and a miss",
        Duration::from_secs(20),
        || {
            let (c, proxy, backend) = (c.clone(), &proxy, &backend);
            async move {
                get(&c, proxy, "/prod/plain", &[]).await;
                (backend.started() > 2).then_some(())
            }
        },
    )
    .await;
    let n = backend.started();
    get(&c, &proxy, "/prod/plain", &[]).await;
    assert_eq!(backend.started(), n, "cached again under the new token");
}

/// The budget bounds what a stage holds: 300 answers of ~1 KiB into a 64 KiB cache.
#[tokio::test]
async fn the_budget_bounds_the_bytes_held() {
    let backend = Backend::start("shop").await;
    let proxy = Proxy::start(&[
        ("api.yaml", &shop(&backend)),
        ("stage.yaml", &shop_stage(65_536, None)),
    ])
    .await;
    let c = Client::new();
    for i in 0..300 {
        let r = c
            .send(
                Method::GET,
                &proxy.url(&format!("/prod/items/{i}?lang=en")),
                &[("x-echo-bytes", "1000")],
                "",
            )
            .await;
        assert_eq!((r.status.as_u16(), r.body.len()), (200, 1000));
    }
    assert_eq!(backend.started(), 300);
    let text = proxy.metrics(&c).await;
    let held = metric_sum(
        &text,
        "portico_cache_size_bytes",
        &[("stage", "stage/default/shop-prod")],
    )
    .expect("the gauge");
    assert!(held > 0.0 && held <= 65_536.0, "{held} bytes held");
    // Something recent is still there.
    let before = backend.started();
    c.send(Method::GET, &proxy.url("/prod/items/299?lang=en"), &[], "")
        .await;
    assert_eq!(backend.started(), before, "the newest entry is kept");
}

/// `Cache-Control: max-age=0`: with authorization required, a caller whose authorizer's
/// policy allows `execute-api:InvalidateCache` refreshes the entry; others get the method's
/// strategy; without required authorization anyone refreshes.
#[tokio::test]
async fn max_age_zero_follows_authorization_and_the_strategy() {
    let backend = Backend::start("shop").await;
    let function = PolicyFunction::start().await;
    let b = backend.host_port();
    let api = rest_api(
        "inv",
        &format!(
            r#"  resources:
    - path: /{{strategy}}
      methods:
        GET:
          authorizationType: CUSTOM
          authorizerRef: {{name: fn}}
          integration:
            type: HTTP_PROXY
            uri: http://{b}/x
            cacheKeyParameters: [method.request.path.strategy]
"#
        ),
    );
    let authorizer = format!(
        "apiVersion: portico.dev/v1alpha1\nkind: Authorizer\nmetadata: {{name: fn, namespace: default}}\nspec:\n  type: TOKEN\n  functionUri: http://{}/\n  resultTtlInSeconds: 0\n",
        function.addr
    );
    let st = stage(
        "inv-prod",
        "inv",
        r#"  stageName: prod
  cacheClusterEnabled: true
  cacheClusterSizeBytes: 1048576
  methodSettings:
    "*/*": {cacheTtlInSeconds: 3600, unauthorizedCacheControlHeaderStrategy: FAIL_WITH_403}
"#,
    );
    // Per-strategy routes: /fail (403), /warn and /quiet through the path parameter are one
    // method, so the strategies are three stages of one API instead.
    let st_warn = st
        .replace("inv-prod", "inv-warn")
        .replace("stageName: prod", "stageName: warn")
        .replace("FAIL_WITH_403", "SUCCEED_WITH_RESPONSE_HEADER");
    let st_quiet = st
        .replace("inv-prod", "inv-quiet")
        .replace("stageName: prod", "stageName: quiet")
        .replace("FAIL_WITH_403", "SUCCEED_WITHOUT_RESPONSE_HEADER");
    let st_open = st
        .replace("inv-prod", "inv-open")
        .replace("stageName: prod", "stageName: open")
        .replace(
            "unauthorizedCacheControlHeaderStrategy: FAIL_WITH_403",
            "requireAuthorizationForCacheControl: false",
        );
    let proxy = Proxy::start(&[
        ("api.yaml", &api),
        ("authorizer.yaml", &authorizer),
        (
            "stages.yaml",
            &[st, st_warn, st_quiet, st_open].join("---\n"),
        ),
    ])
    .await;
    let c = Client::new();
    let call = |path: &str, token: &'static str, invalidate: bool| {
        let (c, url) = (c.clone(), proxy.url(path));
        async move {
            let mut h = vec![("authorization", token)];
            if invalidate {
                h.push(("cache-control", "max-age=0"));
            }
            c.send(Method::GET, &url, &h, "").await
        }
    };
    for stage in ["prod", "warn", "quiet", "open"] {
        let path = format!("/{stage}/s");
        let r = call(&path, "reader", false).await;
        assert_eq!(r.status, 200, "{stage}: {}", r.text());
        let filled = backend.started();
        // A caller the policy allows to invalidate: the integration answers, the entry is
        // replaced (the next plain request is a hit on it).
        let r = call(&path, "invalidator", true).await;
        assert_eq!(r.status, 200);
        assert_eq!(backend.started(), filled + 1, "{stage}: refreshed");
        call(&path, "reader", false).await;
        assert_eq!(
            backend.started(),
            filled + 1,
            "{stage}: hit on the new entry"
        );
        // The authorizer runs before the cache: a cached answer is not served without it.
        let r = c.send(Method::GET, &proxy.url(&path), &[], "").await;
        assert_eq!(r.status, 401, "{stage}: {}", r.text());
        // A caller without the permission.
        let r = call(&path, "reader", true).await;
        match stage {
            "prod" => {
                assert_eq!(r.status, 403, "{}", r.text());
                assert_eq!(r.header("x-amzn-errortype"), "AccessDeniedException");
                assert_eq!(backend.started(), filled + 1);
            }
            "warn" | "quiet" => {
                assert_eq!(r.status, 200);
                assert_eq!(
                    backend.started(),
                    filled + 1,
                    "{stage}: served from the cache"
                );
                assert_eq!(
                    !r.header("warning").is_empty(),
                    stage == "warn",
                    "{:?}",
                    r.headers
                );
            }
            _ => {
                assert_eq!(r.status, 200);
                assert_eq!(backend.started(), filled + 2, "open: anyone invalidates");
            }
        }
    }
}

/// A canary with `useStageCache` uses the stage's cache (its own entries: the canary's
/// answers are not the base's); without it canary requests are not cached (AWS). The
/// stage's throttle counts cached requests like any other.
#[tokio::test]
async fn canaries_use_the_stage_cache_only_when_told_and_throttling_counts_hits() {
    let base = Backend::start("base").await;
    let canary = Backend::start("canary").await;
    let api = rest_api(
        "app",
        "  resources:\n    - path: /x\n      methods:\n        GET: {integration: {type: HTTP_PROXY, uri: 'http://${stageVariables.backend}/x'}}\n",
    );
    for use_stage_cache in [true, false] {
        let st = stage(
            "app-prod",
            "app",
            &format!(
                "  stageName: prod\n  variables: {{backend: '{}'}}\n  cacheClusterEnabled: true\n  cacheClusterSizeBytes: 1048576\n  canarySettings: {{percentTraffic: 50, stageVariableOverrides: {{backend: '{}'}}, useStageCache: {use_stage_cache}, forceHeader: {{name: x-canary}}}}\n",
                base.host_port(),
                canary.host_port()
            ),
        );
        let proxy = Proxy::start(&[("api.yaml", &api), ("stage.yaml", &st)]).await;
        let c = Client::new();
        let (b0, c0) = (base.started(), canary.started());
        for side in ["never", "always", "never", "always", "always"] {
            let r = c
                .send(
                    Method::GET,
                    &proxy.url("/prod/x"),
                    &[("x-canary", side)],
                    "",
                )
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
            let want = if side == "always" { "canary" } else { "base" };
            assert_eq!(
                r.header("x-backend"),
                want,
                "the canary's answers stay its own"
            );
        }
        assert_eq!(base.started() - b0, 1, "the base is cached");
        let canary_calls = if use_stage_cache { 1 } else { 3 };
        assert_eq!(
            canary.started() - c0,
            canary_calls,
            "useStageCache: {use_stage_cache}"
        );
    }
    // Throttling applies to hits: a stage bucket of 3 admits 3 requests, cached or not.
    let st = stage(
        "app-prod",
        "app",
        &format!(
            "  stageName: prod\n  variables: {{backend: '{}'}}\n  cacheClusterEnabled: true\n  throttle: {{rateLimit: 0.001, burstLimit: 3}}\n",
            base.host_port()
        ),
    );
    let proxy = Proxy::start(&[("api.yaml", &api), ("stage.yaml", &st)]).await;
    let c = Client::new();
    let statuses: Vec<u16> = futures_statuses(&c, &proxy.url("/prod/x"), 4).await;
    assert_eq!(statuses, [200, 200, 200, 429]);
}

async fn futures_statuses(c: &Client, url: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(c.send(Method::GET, url, &[], "").await.status.as_u16());
    }
    out
}

/// A TOKEN authorizer function: `invalidator` may invoke and invalidate, `reader` may invoke.
struct PolicyFunction {
    addr: std::net::SocketAddr,
}

impl PolicyFunction {
    async fn start() -> PolicyFunction {
        use http_body_util::BodyExt;
        let (addr, _) = portico_e2e::serve_connections(|stream| async move {
            let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let mut actions = vec!["execute-api:Invoke"];
                if event["authorizationToken"] == "invalidator" {
                    actions.push("execute-api:InvalidateCache");
                }
                let answer = json!({"principalId": "u", "policyDocument": {"Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}});
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .header("content-type", "application/json")
                        .body(http_body_util::Full::new(bytes::Bytes::from(answer.to_string())))
                        .unwrap(),
                )
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        })
        .await;
        PolicyFunction { addr }
    }
}

/// Two proxies sharing one `redis-server`: an entry cached through one is a hit on the
/// other, a flush on one reaches the other, encrypted entries hold no plaintext in Redis,
/// and once Redis is gone every request is a miss that still succeeds.
#[tokio::test]
async fn two_proxies_share_the_cache_in_redis_and_survive_its_loss() {
    let redis = RedisServer::start().await;
    let backend = Backend::start("shop").await;
    let key_file = std::env::temp_dir().join(format!("portico-cache-key-{}", std::process::id()));
    std::fs::write(&key_file, "ab".repeat(32)).unwrap();
    let st = shop_stage(1 << 20, None).replace(
        "\"*/*\": {cacheTtlInSeconds: 3600}",
        "\"*/*\": {cacheTtlInSeconds: 3600, cacheDataEncrypted: true}",
    );
    let start = || {
        Proxy::builder()
            .manifest("api.yaml", &shop(&backend))
            .manifest("stage.yaml", &st)
            .arg("--redis-url")
            .arg(&redis.url())
            .arg("--cache-encryption-key-file")
            .arg(key_file.to_str().unwrap())
            .start()
    };
    let (a, b) = (start().await, start().await);
    let c = Client::new();
    get(&c, &a, "/prod/items/7?lang=en", &[]).await;
    assert_eq!(backend.started(), 1);
    // The write to Redis follows the answer: B finds the entry once it is there, and from
    // then on never calls the backend for it.
    eventually("B hits A's entry", Duration::from_secs(10), || {
        let (c, b, backend) = (c.clone(), &b, &backend);
        async move {
            let before = backend.started();
            get(&c, b, "/prod/items/7?lang=en", &[]).await;
            (backend.started() == before).then_some(())
        }
    })
    .await;
    let n = backend.started();
    get(&c, &b, "/prod/items/7?lang=en", &[]).await;
    get(&c, &a, "/prod/items/7?lang=en", &[]).await;
    assert_eq!(backend.started(), n);
    // Sealed in Redis: the backend's pattern bytes are not there in clear.
    let keys = redis_cli(&redis, &["--scan", "--pattern", "portico:c:*"]);
    let first = keys.lines().next().expect("an entry in redis").to_string();
    let raw = redis_cli(&redis, &["GET", &first]);
    assert!(!raw.contains("backend"), "plaintext in redis: {raw}");
    // A flush through A: B's next request is a miss.
    let r = c
        .send(
            Method::POST,
            &a.admin_url("/cache/flush?stage=default/shop-prod"),
            &[],
            "",
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.json()["flushed"].clone()),
        (202, json!("redis"))
    );
    get(&c, &b, "/prod/items/7?lang=en", &[]).await;
    assert_eq!(backend.started(), n + 1, "flushed on every replica");
    // Redis gone: misses, never errors.
    drop(redis);
    let before = backend.started();
    for _ in 0..5 {
        get(&c, &a, "/prod/items/7?lang=en", &[]).await;
    }
    assert_eq!(backend.started(), before + 5);
    let text = a.metrics(&c).await;
    assert!(
        metric_sum(
            &text,
            "portico_shared_state_errors_total",
            &[("user", "cache")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "the outage is counted"
    );
    let _ = std::fs::remove_file(&key_file);
}

fn redis_cli(redis: &RedisServer, args: &[&str]) -> String {
    let port = redis.url().rsplit(':').next().unwrap().to_string();
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port])
        .args(args)
        .output()
        .expect("redis-cli (installed with redis-server)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
