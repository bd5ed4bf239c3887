//! Canary releases (`canarySettings`): a stage's requests split at random between its API and
//! the canary (another RestApi, or the same one with stage-variable overrides), as AWS does;
//! `$context.isCanaryRequest` in the access log.

use http::Method;
use portico_e2e::yaml::{http_proxy, rest_api, stage};
use portico_e2e::{Backend, Client, Proxy};
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
