//! CORS: automatic preflight (204) unless the resource has an explicit OPTIONS method, CORS
//! headers on normal responses and on gateway responses (a 403 still carries
//! Access-Control-Allow-Origin), `Vary: Origin` when the origin is echoed.

use bytes::Bytes;
use http::Method;
use portico_e2e::yaml::{mock, rest_api, stage};
use portico_e2e::{Client, Proxy};

#[tokio::test]
async fn preflight_and_cors_headers_on_responses_and_gateway_responses() {
    let api = rest_api(
        "web",
        &format!(
            r#"  cors:
    allowOrigins: ['https://app.example.com']
    allowMethods: [GET, POST]
    allowHeaders: [content-type, x-api-key]
    exposeHeaders: [x-request-id]
    maxAge: 600
    allowCredentials: true
  resources:
    - path: /items
      methods:
        GET: {{integration: {}}}
    - path: /explicit
      methods:
        OPTIONS: {{integration: {}}}
"#,
            mock("items"),
            mock("explicit options")
        ),
    );
    let proxy = Proxy::start(&[
        ("api.yaml", &api),
        ("stage.yaml", &stage("web-dev", "web", "  stageName: dev\n")),
    ])
    .await;
    let c = Client::new();
    let origin = ("origin", "https://app.example.com");

    // Automatic preflight.
    let r = c
        .send(
            Method::OPTIONS,
            &proxy.url("/dev/items"),
            &[
                origin,
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "content-type"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        r.header("access-control-allow-origin"),
        "https://app.example.com"
    );
    assert_eq!(r.header("access-control-allow-methods"), "GET,POST");
    assert_eq!(
        r.header("access-control-allow-headers"),
        "content-type,x-api-key"
    );
    assert_eq!(r.header("access-control-max-age"), "600");
    assert_eq!(r.header("access-control-allow-credentials"), "true");
    assert_eq!(r.header("vary"), "Origin");

    // An explicit OPTIONS method runs instead.
    let r = c
        .send(
            Method::OPTIONS,
            &proxy.url("/dev/explicit"),
            &[origin, ("access-control-request-method", "GET")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "explicit options");

    // A normal response.
    let r = c
        .send(
            Method::GET,
            &proxy.url("/dev/items"),
            &[origin],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        "https://app.example.com"
    );
    assert_eq!(r.header("access-control-expose-headers"), "x-request-id");
    assert_eq!(r.header("vary"), "Origin");

    // A gateway response (403 Missing Authentication Token) carries them too.
    let r = c
        .send(
            Method::GET,
            &proxy.url("/dev/nope"),
            &[origin],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("access-control-allow-origin"),
        "https://app.example.com"
    );

    // Another origin gets no CORS headers (the browser then refuses).
    let r = c
        .send(
            Method::GET,
            &proxy.url("/dev/items"),
            &[("origin", "https://evil.example.com")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.headers.get("access-control-allow-origin").is_none());
}
