//! Route matching: precedence, methods, base paths, unknown routes, dot segments.

use http::Method;
use portico_e2e::yaml::{http_proxy, mock, rest_api, stage};
use portico_e2e::{Backend, Client, Proxy};

fn precedence_api() -> String {
    rest_api(
        "shop",
        &format!(
            r#"  protocol: REST
  resources:
    - path: /
      methods:
        GET: {{integration: {root}}}
    - path: /items/special
      methods:
        GET: {{integration: {literal}}}
    - path: /items/{{id}}
      methods:
        GET: {{integration: {param}}}
    - path: /items/{{proxy+}}
      methods:
        ANY: {{integration: {greedy}}}
    - path: /things
      methods:
        GET: {{integration: {things_get}}}
        ANY: {{integration: {things_any}}}
"#,
            root = mock("root"),
            literal = mock("literal"),
            param = mock("param"),
            greedy = mock("greedy"),
            things_get = mock("things-get"),
            things_any = mock("things-any"),
        ),
    )
}

#[tokio::test]
async fn rest_routes_prefer_literal_then_param_then_greedy_and_a_method_over_any() {
    let proxy = Proxy::start(&[
        ("api.yaml", &precedence_api()),
        (
            "stage.yaml",
            &stage("shop-dev", "shop", "  stageName: dev\n"),
        ),
    ])
    .await;
    let c = Client::new();
    let cases: &[(Method, &str, &str)] = &[
        (Method::GET, "/dev/items/special", "literal"),
        (Method::GET, "/dev/items/42", "param"),
        (Method::GET, "/dev/items/special/more", "greedy"),
        (Method::GET, "/dev/items/42/a/b", "greedy"),
        (Method::DELETE, "/dev/items/42/a", "greedy"),
        (Method::GET, "/dev/things", "things-get"),
        (Method::DELETE, "/dev/things", "things-any"),
        (Method::POST, "/dev/things", "things-any"),
        (Method::GET, "/dev", "root"),
    ];
    for (method, path, want) in cases {
        let r = c
            .send(method.clone(), &proxy.url(path), &[], bytes::Bytes::new())
            .await;
        assert_eq!(
            (r.status.as_u16(), r.text().as_str()),
            (200, *want),
            "{method} {path}"
        );
        r.request_id();
    }
}

#[tokio::test]
async fn unknown_rest_route_answers_403_missing_authentication_token_with_a_request_id() {
    let proxy = Proxy::start(&[
        ("api.yaml", &precedence_api()),
        (
            "stage.yaml",
            &stage("shop-dev", "shop", "  stageName: dev\n"),
        ),
    ])
    .await;
    let c = Client::new();
    for path in ["/dev/nope", "/dev/things/x", "/dev/items"] {
        let r = c.get(&proxy.url(path)).await;
        assert_eq!(r.status, 403, "GET {path}: {}", r.text());
        assert_eq!(
            r.json(),
            serde_json::json!({"message": "Missing Authentication Token"}),
            "GET {path}"
        );
        r.request_id();
    }
}

#[tokio::test]
async fn stages_are_selected_by_the_longest_base_path_on_segment_boundaries() {
    let alpha = rest_api(
        "alpha",
        &format!(
            "  resources:\n    - path: /who\n      methods:\n        GET: {{integration: {}}}\n",
            mock("alpha")
        ),
    );
    let beta = rest_api(
        "beta",
        &format!(
            "  resources:\n    - path: /who\n      methods:\n        GET: {{integration: {}}}\n",
            mock("beta")
        ),
    );
    let proxy = Proxy::start(&[
        ("alpha.yaml", &alpha),
        ("beta.yaml", &beta),
        (
            "alpha-dev.yaml",
            &stage("alpha-dev", "alpha", "  stageName: dev\n"),
        ),
        (
            "beta-v2.yaml",
            &stage(
                "beta-v2",
                "beta",
                "  stageName: v2\n  basePath: /dev/beta\n",
            ),
        ),
    ])
    .await;
    let c = Client::new();
    for (path, want) in [("/dev/who", "alpha"), ("/dev/beta/who", "beta")] {
        let r = c.get(&proxy.url(path)).await;
        assert_eq!(
            (r.status.as_u16(), r.text()),
            (200, want.to_string()),
            "GET {path}"
        );
    }
    // `/devx` is not under the base path `/dev`, and `/beta` alone is no stage.
    for path in ["/devx/who", "/beta/who", "/who"] {
        let r = c.get(&proxy.url(path)).await;
        assert!(
            r.status == 403 || r.status == 404,
            "GET {path} must match no stage, got {} {}",
            r.status,
            r.text()
        );
        r.request_id();
    }
}

#[tokio::test]
async fn http_api_matches_route_keys_falls_back_to_default_and_answers_404_otherwise() {
    let be = Backend::start("http-api").await;
    let b = be.host_port();
    let strict = rest_api(
        "strict",
        &format!(
            r#"  protocol: HTTP
  routes:
    - routeKey: GET /items/{{id}}
      integration: {get_item}
    - routeKey: ANY /items
      integration: {any_items}
"#,
            get_item = http_proxy(&format!("http://{b}/strict/items/{{id}}")),
            any_items = http_proxy(&format!("http://{b}/strict/items")),
        ),
    );
    let loose = rest_api(
        "loose",
        &format!(
            r#"  protocol: HTTP
  routes:
    - routeKey: POST /orders
      integration: {orders}
    - routeKey: $default
      integration: {fallback}
"#,
            orders = http_proxy(&format!("http://{b}/loose/orders")),
            fallback = http_proxy(&format!("http://{b}/loose/default")),
        ),
    );
    let proxy = Proxy::start(&[
        ("strict.yaml", &strict),
        ("loose.yaml", &loose),
        (
            "strict-s.yaml",
            &stage("strict-s", "strict", "  stageName: strict\n"),
        ),
        (
            "loose-s.yaml",
            &stage("loose-s", "loose", "  stageName: loose\n"),
        ),
    ])
    .await;
    let c = Client::new();

    let r = c.get(&proxy.url("/strict/items/7")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/strict/items/7");
    let r = c
        .send(Method::PATCH, &proxy.url("/strict/items"), &[], "x")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/strict/items");
    assert_eq!(r.json()["method"], "PATCH");

    for (method, path) in [
        (Method::GET, "/strict/nope"),
        (Method::POST, "/strict/items/7"),
        (Method::GET, "/strict/items/7/8"),
    ] {
        let r = c
            .send(method.clone(), &proxy.url(path), &[], bytes::Bytes::new())
            .await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
        assert_eq!(r.json(), serde_json::json!({"message": "Not Found"}));
        r.request_id();
    }

    let r = c
        .send(Method::POST, &proxy.url("/loose/orders"), &[], "{}")
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/loose/orders");
    for (method, path) in [
        (Method::GET, "/loose/orders"),
        (Method::GET, "/loose/anything/at/all"),
    ] {
        let r = c
            .send(method.clone(), &proxy.url(path), &[], bytes::Bytes::new())
            .await;
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
        assert_eq!(
            r.header("x-backend"),
            "http-api",
            "{method} {path} should reach $default"
        );
        assert!(
            r.json()["path"]
                .as_str()
                .is_some_and(|p| p.starts_with("/loose/default")),
            "{method} {path} should reach the $default integration: {}",
            r.text()
        );
    }
}

/// `/public/{proxy+}` forwards to the `public` backend; `/admin` exists only as a literal
/// route to the `admin` backend. A path that climbs out of `/public` with `..` (plain or
/// percent-encoded) must either be normalised first (and then honestly reach `/admin`) or be
/// rejected; it must never reach the public backend with the dot segments in its path.
#[tokio::test]
async fn dot_segments_are_normalised_before_routing_and_never_forwarded() {
    let public = Backend::start("public").await;
    let admin = Backend::start("admin").await;
    let api = rest_api(
        "dots",
        &format!(
            r#"  resources:
    - path: /public/{{proxy+}}
      methods:
        ANY: {{integration: {public}}}
    - path: /admin
      methods:
        GET: {{integration: {admin}}}
"#,
            public = http_proxy(&format!("http://{}/files/{{proxy}}", public.host_port())),
            admin = http_proxy(&format!("http://{}/admin", admin.host_port())),
        ),
    );
    let proxy = Proxy::start(&[
        ("api.yaml", &api),
        (
            "stage.yaml",
            &stage("dots-dev", "dots", "  stageName: dev\n"),
        ),
    ])
    .await;
    let c = Client::new();

    // Sanity: both routes work as written.
    let r = c.get(&proxy.url("/dev/public/a/b")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["path"], "/files/a/b");

    let escaping = [
        "/dev/public/../admin",
        "/dev/public/%2e%2e/admin",
        "/dev/public/%2E%2E/admin",
        "/dev/public/.%2e/admin",
        "/dev/public/x/../../admin",
    ];
    for path in escaping {
        let admin_before = admin.received().len();
        let r = c.get(&proxy.url(path)).await;
        r.request_id();
        if r.status == 200 {
            assert_eq!(
                r.header("x-backend"),
                "admin",
                "GET {path} answered 200 from the public route: {}",
                r.text()
            );
            let got = admin.received();
            assert_eq!(got.len(), admin_before + 1, "GET {path}");
            assert_eq!(got.last().map(|x| x.path.as_str()), Some("/admin"));
        } else {
            assert!(
                r.status.is_client_error(),
                "GET {path}: expected the normalised route or a 4xx, got {} {}",
                r.status,
                r.text()
            );
        }
    }
    // A dot segment inside /public stays inside /public, normalised.
    let r = c.get(&proxy.url("/dev/public/a/../b")).await;
    if r.status == 200 {
        assert_eq!(r.json()["path"], "/files/b", "GET /dev/public/a/../b");
    } else {
        assert!(r.status.is_client_error(), "{} {}", r.status, r.text());
    }

    for rec in public.received() {
        let p = rec.path.to_ascii_lowercase();
        assert!(
            !p.contains("..") && !p.contains("%2e") && !p.contains("/./"),
            "the public backend received a path with dot segments: {:?}",
            rec.path
        );
    }
}
