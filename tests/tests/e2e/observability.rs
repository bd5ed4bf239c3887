//! What operators see: request ids, the access log, metrics and health endpoints.

use http::Method;
use portico_e2e::yaml::{mock, rest_api, stage};
use portico_e2e::{Client, Proxy, metric_sum};
use std::time::Duration;

fn observed_api() -> (String, String) {
    let api = rest_api(
        "observed",
        &format!(
            r#"  displayName: Observed API
  resources:
    - path: /ping
      methods:
        GET: {{integration: {ping}}}
    - path: /gone
      methods:
        GET:
          integration:
            type: MOCK
            mockResponse: {{statusCode: 404, body: gone}}
    - path: /broken
      methods:
        GET:
          integration:
            type: MOCK
            mockResponse: {{statusCode: 502, body: broken}}
"#,
            ping = mock("pong"),
        ),
    );
    (api, stage("observed-dev", "observed", "  stageName: dev\n"))
}

#[tokio::test]
async fn metrics_count_requests_errors_and_latency_per_api_stage_resource_and_method() {
    let (api, st) = observed_api();
    let proxy = Proxy::start(&[("api.yaml", &api), ("stage.yaml", &st)]).await;
    let c = Client::new();
    for (path, times, status) in [
        ("/dev/ping", 3, 200),
        ("/dev/gone", 2, 404),
        ("/dev/broken", 1, 502),
    ] {
        for _ in 0..times {
            let r = c.get(&proxy.url(path)).await;
            assert_eq!(r.status, status, "GET {path}");
        }
    }
    let m = proxy.metrics(&c).await;
    let labels = |resource| [("stage", "dev"), ("resource", resource), ("method", "GET")];
    assert_eq!(
        metric_sum(&m, "portico_count", &labels("/ping")),
        Some(3.0),
        "\n{m}"
    );
    assert_eq!(
        metric_sum(&m, "portico_count", &labels("/gone")),
        Some(2.0),
        "\n{m}"
    );
    assert_eq!(
        metric_sum(&m, "portico_count", &labels("/broken")),
        Some(1.0),
        "\n{m}"
    );
    assert_eq!(
        metric_sum(&m, "portico_4xx_error", &labels("/gone")),
        Some(2.0),
        "\n{m}"
    );
    assert_eq!(
        metric_sum(&m, "portico_5xx_error", &labels("/broken")),
        Some(1.0),
        "\n{m}"
    );
    for errors in ["portico_4xx_error", "portico_5xx_error"] {
        let v = metric_sum(&m, errors, &labels("/ping")).unwrap_or(0.0);
        assert_eq!(v, 0.0, "{errors} for /ping\n{m}");
    }
    assert_eq!(
        metric_sum(&m, "portico_latency_seconds_count", &labels("/ping")),
        Some(3.0),
        "portico_latency_seconds should be a histogram\n{m}"
    );
    // The api label is the API's stable id, not its display name (which may change).
    assert_eq!(
        metric_sum(
            &m,
            "portico_count",
            &[("api", "restapi/default/observed"), ("resource", "/ping")]
        ),
        Some(3.0),
        "portico_count should carry the API's id as its api label\n{m}"
    );
    assert!(!m.contains("Observed API"), "\n{m}");
    assert!(
        m.contains("portico_integration_latency_seconds"),
        "portico_integration_latency_seconds missing\n{m}"
    );
    assert_eq!(
        metric_sum(&m, "portico_config_reload_success", &[]),
        Some(1.0),
        "\n{m}"
    );

    for path in ["/healthz", "/readyz"] {
        let r = c.get(&proxy.admin_url(path)).await;
        assert_eq!(r.status, 200, "admin {path}: {}", r.text());
    }
}

#[tokio::test]
async fn access_log_line_carries_the_request_id_returned_in_x_amzn_request_id() {
    let (api, st) = observed_api();
    let proxy = Proxy::start(&[("api.yaml", &api), ("stage.yaml", &st)]).await;
    let c = Client::new();

    let r = c.get(&proxy.url("/dev/ping")).await;
    assert_eq!(r.status, 200);
    let id = r.request_id();
    let line = proxy.access_log_line(&id, Duration::from_secs(10)).await;
    assert_eq!(
        line["status"].to_string().trim_matches('"'),
        "200",
        "{line}"
    );
    assert_eq!(line["stage"], "dev", "{line}");
    assert_eq!(line["httpMethod"], "GET", "{line}");
    assert_eq!(line["resourcePath"], "/ping", "{line}");
    assert_eq!(line["apiId"], "restapi/default/observed", "{line}");

    // A request id is unique per request.
    let r2 = c.get(&proxy.url("/dev/ping")).await;
    assert_ne!(r2.request_id(), id);

    // Gateway responses carry a request id too, and are logged under it.
    let r = c
        .send(Method::POST, &proxy.url("/dev/nowhere"), &[], "x")
        .await;
    assert_eq!(r.status, 403);
    let id = r.request_id();
    let line = proxy.access_log_line(&id, Duration::from_secs(10)).await;
    assert_eq!(
        line["status"].to_string().trim_matches('"'),
        "403",
        "{line}"
    );
    assert_eq!(line["httpMethod"], "POST", "{line}");
}
