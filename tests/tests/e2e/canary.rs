//! Canary releases (`canarySettings`): a stage's requests split at random between its API and
//! the canary (another RestApi, or the same one with stage-variable overrides), as AWS does;
//! `$context.isCanaryRequest` in the access log.

use http::Method;
use portico_e2e::yaml::{http_proxy, rest_api, stage};
use portico_e2e::{Backend, Client, Proxy, eventually};
use std::time::Duration;

/// 10% to the canary over 20,000 requests lands within 8.5-11.5% (a binomial share's
/// standard deviation is 0.21 points here: the bounds are 7 of them, so the test does not
/// depend on luck), and the canary sees its overridden variable (the other backend).
#[tokio::test]
async fn ten_percent_of_requests_reach_the_canary_with_its_variables() {
    let base = Backend::start("base").await;
    let canary = Backend::start("canary").await;
    let api = rest_api(
        "split",
        &format!(
            "  resources:\n    - path: /x\n      methods:\n        GET: {{integration: {}}}\n",
            http_proxy("http://${stageVariables.backend}/x")
        ),
    );
    let st = stage(
        "split-prod",
        "split",
        &format!(
            "  stageName: prod\n  variables: {{backend: '{}'}}\n  canarySettings: {{percentTraffic: 10, stageVariableOverrides: {{backend: '{}'}}}}\n  accessLogSettings:\n    format: '{{\"requestId\":\"$context.requestId\",\"canary\":\"$context.isCanaryRequest\"}}'\n",
            base.host_port(),
            canary.host_port()
        ),
    );
    let proxy = Proxy::start(&[("api.yaml", &api), ("stage.yaml", &st)]).await;
    const TOTAL: usize = 20_000;
    const CLIENTS: usize = 16;
    let url = proxy.url("/prod/x");
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (c, url) = (Client::new(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut to_canary = 0usize;
            let mut last_canary_id = None;
            for _ in 0..TOTAL / CLIENTS {
                let r = c.send(Method::GET, &url, &[], "").await;
                assert_eq!(r.status, 200, "{}", r.text());
                if r.header("x-backend") == "canary" {
                    to_canary += 1;
                    last_canary_id = Some(r.request_id());
                } else {
                    assert_eq!(r.header("x-backend"), "base");
                }
            }
            (to_canary, last_canary_id)
        }));
    }
    let mut to_canary = 0;
    let mut canary_id = None;
    for t in tasks {
        let (n, id) = t.await.unwrap();
        to_canary += n;
        canary_id = canary_id.or(id);
    }
    let share = to_canary as f64 * 100.0 / TOTAL as f64;
    assert!((8.5..=11.5).contains(&share), "canary share {share}%");
    let line = proxy
        .access_log_line(&canary_id.unwrap(), Duration::from_secs(10))
        .await;
    assert_eq!(line["canary"], "true", "{line}");
    // Metrics tell the sides apart by the stage label, `prod/Canary` for the canary (AWS's
    // canary stage dimension), so one query compares them:
    // sum by (stage) (rate(portico_5xx_error{stage=~"prod(/Canary)?"}[5m])).
    let text = proxy.metrics(&Client::new()).await;
    let count = |stage: &str| {
        portico_e2e::metric_sum(&text, "portico_count", &[("stage", stage)]).unwrap_or(0.0)
    };
    assert_eq!(count("prod/Canary") as usize, to_canary);
    assert_eq!(count("prod") as usize, TOTAL - to_canary);
}

/// A canary on another RestApi (a new version): its own resources answer canary requests;
/// at 100% every request reaches it, at 0% none.
#[tokio::test]
async fn a_canary_on_another_rest_api_serves_its_own_routes() {
    let v1 = rest_api(
        "shop",
        "  resources:\n    - path: /v\n      methods:\n        GET: {integration: {type: MOCK, mockResponse: {statusCode: 200, body: v1}}}\n",
    );
    let v2 = rest_api(
        "shop-v2",
        "  resources:\n    - path: /v\n      methods:\n        GET: {integration: {type: MOCK, mockResponse: {statusCode: 200, body: v2}}}\n",
    );
    for (percent, want) in [(100, "v2"), (0, "v1")] {
        let st = stage(
            "shop-prod",
            "shop",
            &format!(
                "  stageName: prod\n  canarySettings: {{percentTraffic: {percent}, restApiRef: {{name: shop-v2}}}}\n"
            ),
        );
        let proxy = Proxy::start(&[("v1.yaml", &v1), ("v2.yaml", &v2), ("stage.yaml", &st)]).await;
        let c = Client::new();
        for _ in 0..50 {
            let r = c.get(&proxy.url("/prod/v")).await;
            assert_eq!((r.status.as_u16(), r.text()), (200, want.to_string()));
        }
    }
}

fn versions() -> (String, String) {
    let v = |name: &str, body: &str| {
        rest_api(
            name,
            &format!(
                "  resources:\n    - path: /v\n      methods:\n        GET: {{integration: {{type: MOCK, mockResponse: {{statusCode: 200, body: {body}}}}}}}\n"
            ),
        )
    };
    (v("app", "v1"), v("app-v2", "v2"))
}

fn canary_stage(settings: &str) -> String {
    stage(
        "app-prod",
        "app",
        &format!(
            "  stageName: prod\n  canarySettings: {{restApiRef: {{name: app-v2}}, {settings}}}\n"
        ),
    )
}

/// Sticky assignment (past AWS): each of 200 callers (named by a header) stays on one side
/// over repeated calls, and raising the share from 10% to 50% only moves callers from the
/// base to the canary, never back (a threshold on a stable hash, not a new draw).
#[tokio::test]
async fn sticky_callers_stay_on_their_side_and_a_larger_share_only_adds_canary_callers() {
    let (v1, v2) = versions();
    let st = |p: u32| {
        canary_stage(&format!(
            "percentTraffic: {p}, stickiness: {{by: header, name: x-user}}"
        ))
    };
    let proxy = Proxy::start(&[("v1.yaml", &v1), ("v2.yaml", &v2), ("stage.yaml", &st(10))]).await;
    let c = Client::new();
    let url = proxy.url("/prod/v");
    let side = |user: usize| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let r = c
                .send(Method::GET, &url, &[("x-user", &format!("u{user}"))], "")
                .await;
            assert_eq!(r.status, 200, "{}", r.text());
            r.text()
        }
    };
    let mut before = Vec::new();
    for user in 0..200 {
        let first = side(user).await;
        for _ in 0..2 {
            assert_eq!(side(user).await, first, "caller u{user} changed sides");
        }
        before.push(first);
    }
    let canary_before = before.iter().filter(|s| *s == "v2").count();
    assert!(
        canary_before < 200,
        "at 10% not every caller is on the canary"
    );

    proxy.write_manifest("stage.yaml", &st(50));
    // Some base caller moves once the new share is served (each base caller moves with
    // probability 4/9, so with about 180 of them one does).
    eventually(
        "the 50% share is served",
        Duration::from_secs(60),
        || async {
            for (user, was) in before.iter().enumerate() {
                if was == "v1" && side(user).await == "v2" {
                    return Some(());
                }
            }
            None
        },
    )
    .await;
    for (user, was) in before.iter().enumerate() {
        let now = side(user).await;
        if was == "v2" {
            assert_eq!(now, "v2", "canary caller u{user} moved back to the base");
        }
    }
}

/// Forced assignment (past AWS): the configured header picks the side regardless of the
/// share; with `requireAuthorizer` it is ignored on a method without an authorizer.
#[tokio::test]
async fn the_force_header_picks_the_side() {
    let (v1, v2) = versions();
    let st = |p: u32, require: bool| {
        canary_stage(&format!(
            "percentTraffic: {p}, forceHeader: {{name: X-Portico-Canary, requireAuthorizer: {require}}}"
        ))
    };
    let proxy = Proxy::start(&[
        ("v1.yaml", &v1),
        ("v2.yaml", &v2),
        ("stage.yaml", &st(0, false)),
    ])
    .await;
    let c = Client::new();
    let url = proxy.url("/prod/v");
    let get = |force: Option<&'static str>| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let headers: Vec<(&str, &str)> =
                force.map(|f| ("x-portico-canary", f)).into_iter().collect();
            c.send(Method::GET, &url, &headers, "").await.text()
        }
    };
    for _ in 0..20 {
        assert_eq!(get(None).await, "v1");
        assert_eq!(get(Some("always")).await, "v2");
    }
    proxy.write_manifest("stage.yaml", &st(100, false));
    eventually("100% is served", Duration::from_secs(60), || async {
        (get(None).await == "v2").then_some(())
    })
    .await;
    for _ in 0..20 {
        assert_eq!(get(Some("never")).await, "v1");
        assert_eq!(get(Some("garbage")).await, "v2");
    }
    // requireAuthorizer: the canary's method has none, so the header is not honoured.
    proxy.write_manifest("stage.yaml", &st(0, true));
    eventually(
        "0% with requireAuthorizer is served",
        Duration::from_secs(60),
        || async { (get(None).await == "v1").then_some(()) },
    )
    .await;
    for _ in 0..20 {
        assert_eq!(get(Some("always")).await, "v1");
    }
}

/// A change of the share is a config swap: no request fails while it is changed 50 times
/// under load (8 clients), and both sides answer.
#[tokio::test]
async fn changing_the_share_fifty_times_under_load_fails_no_request() {
    let (v1, v2) = versions();
    let st = |p: u32| canary_stage(&format!("percentTraffic: {p}"));
    let proxy = Proxy::start(&[("v1.yaml", &v1), ("v2.yaml", &v2), ("stage.yaml", &st(50))]).await;
    let url = proxy.url("/prod/v");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (c, url, stop) = (Client::new(), url.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let (mut failed, mut v1, mut v2) = (Vec::new(), 0usize, 0usize);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let r = c.get(&url).await;
                match (r.status.as_u16(), r.text().as_str()) {
                    (200, "v1") => v1 += 1,
                    (200, "v2") => v2 += 1,
                    (status, body) => failed.push(format!("{status} {body}")),
                }
            }
            (failed, v1, v2)
        }));
    }
    for i in 0..50u32 {
        proxy.write_manifest("stage.yaml", &st((i * 37) % 101));
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    // Let the last change land while the clients still run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut v1, mut v2) = (0, 0);
    for c in clients {
        let (failed, a, b) = c.await.unwrap();
        assert!(failed.is_empty(), "failed requests: {failed:?}");
        v1 += a;
        v2 += b;
    }
    assert!(v1 > 0 && v2 > 0, "both sides answered: {v1} v1, {v2} v2");
}
