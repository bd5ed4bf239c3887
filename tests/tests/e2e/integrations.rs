//! Integrations: HTTP_PROXY pass-through, stage variables, MOCK, gateway responses, the
//! integration timeout and the payload cap.

use http::Method;
use portico_e2e::yaml::{http_proxy, mock, rest_api, stage};
use portico_e2e::{Backend, Client, Proxy, raw_exchange};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[tokio::test]
async fn http_proxy_passes_method_path_params_query_headers_and_body_both_ways() {
    let be = Backend::start("orders").await;
    let api = rest_api(
        "orders",
        &format!(
            r#"  resources:
    - path: /users/{{userId}}/orders/{{proxy+}}
      methods:
        ANY: {{integration: {}}}
"#,
            http_proxy(&format!(
                "http://{}/u/{{userId}}/o/{{proxy}}",
                be.host_port()
            ))
        ),
    );
    let proxy = Proxy::start(&[
        ("api.yaml", &api),
        (
            "stage.yaml",
            &stage("orders-dev", "orders", "  stageName: dev\n"),
        ),
    ])
    .await;
    let c = Client::new();
    let body: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let r = c
        .send(
            Method::PUT,
            &proxy.url("/dev/users/42/orders/a/b?x=1&y=two%20words&x=3"),
            &[
                ("x-custom", "hello"),
                ("content-type", "application/octet-stream"),
                ("x-echo-status", "201"),
                ("x-echo-header", "x-backend-reply=yes"),
            ],
            body.clone(),
        )
        .await;

    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("x-backend-reply"), "yes");
    assert_eq!(r.header("x-backend"), "orders");
    assert_eq!(r.header("content-type"), "application/json");
    r.request_id();
    let echoed = r.json();
    assert_eq!(echoed["bodyLength"], 1000);

    let got = be.received();
    assert_eq!(got.len(), 1, "backend requests: {got:?}");
    let got = &got[0];
    assert_eq!(got.method, "PUT");
    assert_eq!(got.path, "/u/42/o/a/b");
    let query = got.query.clone().unwrap_or_default();
    for want in ["x=1", "x=3"] {
        assert!(
            query.split('&').any(|kv| kv == want),
            "query {query:?} lacks {want}"
        );
    }
    assert!(
        query
            .split('&')
            .any(|kv| kv == "y=two%20words" || kv == "y=two+words"),
        "query {query:?} lacks y=two words"
    );
    assert_eq!(got.header("x-custom"), "hello");
    assert_eq!(got.header("content-type"), "application/octet-stream");
    assert_eq!(got.body.as_ref(), body.as_slice(), "body bytes differ");
}

#[tokio::test]
async fn http_proxy_parameter_mappings_set_headers_query_and_path_and_keep_the_rest_streamed() {
    let be = Backend::start("items").await;
    let api = rest_api(
        "items",
        &format!(
            r#"  resources:
    - path: /items/{{id}}
      methods:
        POST:
          integration:
            type: HTTP_PROXY
            uri: http://{}/v2/items/{{id}}
            requestParameters:
              integration.request.header.x-env: stageVariables.env
              integration.request.header.x-request-id: context.requestId
              integration.request.header.x-item: method.request.path.id
              integration.request.header.x-trace: method.request.header.x-client-trace
              integration.request.header.x-missing: method.request.header.x-not-sent
              integration.request.querystring.source: "'gateway'"
              integration.request.querystring.page: method.request.querystring.p
              integration.request.path.id: method.request.header.x-item-override
"#,
            be.host_port()
        ),
    );
    let proxy = Proxy::start(&[
        ("api.yaml", &api),
        (
            "stage.yaml",
            &stage(
                "items-dev",
                "items",
                "  stageName: dev\n  variables: {env: development}\n",
            ),
        ),
    ])
    .await;
    let c = Client::new();
    let body = "x".repeat(100_000);
    let r = c
        .send(
            Method::POST,
            &proxy.url("/dev/items/7?p=3&source=client&keep=me"),
            &[
                ("x-client-trace", "t-1"),
                ("x-env", "from-client"),
                ("x-missing", "spoofed"),
                ("x-other", "passes"),
            ],
            body.clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let request_id = r.request_id();
    let got = &be.received()[0];
    assert_eq!(
        got.path, "/v2/items/7",
        "no x-item-override: the method's {{id}}"
    );
    assert_eq!(
        got.header("x-env"),
        "development",
        "a mapping replaces the client's header"
    );
    assert_eq!(got.header("x-request-id"), request_id);
    assert_eq!(got.header("x-item"), "7");
    assert_eq!(got.header("x-trace"), "t-1");
    assert_eq!(
        got.header("x-other"),
        "passes",
        "HTTP_PROXY keeps unmapped headers"
    );
    assert!(
        got.headers.get("x-missing").is_none(),
        "absent source: no header, not even the client's"
    );
    let mut query: Vec<&str> = got
        .query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .collect();
    query.sort_unstable();
    // The client's query passes through, less the names a mapping sets.
    assert_eq!(query, ["keep=me", "p=3", "page=3", "source=gateway"]);
    assert_eq!(got.body.len(), body.len());

    // A path mapping replaces the method's parameter (percent-encoded).
    let r = c
        .send(
            Method::POST,
            &proxy.url("/dev/items/7?source=client"),
            &[("x-item-override", "a b/c")],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(be.received()[1].path, "/v2/items/a%20b%2Fc");
    assert_eq!(be.received()[1].query.as_deref(), Some("source=gateway"));
}

#[tokio::test]
async fn stage_variables_send_dev_and_prod_of_one_api_to_different_backends() {
    let dev = Backend::start("dev").await;
    let prod = Backend::start("prod").await;
    let api = rest_api(
        "svc",
        &format!(
            r#"  resources:
    - path: /content/{{id}}
      methods:
        GET: {{integration: {}}}
"#,
            http_proxy("http://${stageVariables.backend}/content/{id}")
        ),
    );
    let proxy = Proxy::start(&[
        ("api.yaml", &api),
        (
            "dev.yaml",
            &stage(
                "svc-dev",
                "svc",
                &format!(
                    "  stageName: dev\n  variables: {{backend: \"{}\"}}\n",
                    dev.host_port()
                ),
            ),
        ),
        (
            "prod.yaml",
            &stage(
                "svc-prod",
                "svc",
                &format!(
                    "  stageName: prod\n  variables: {{backend: \"{}\"}}\n",
                    prod.host_port()
                ),
            ),
        ),
    ])
    .await;
    let c = Client::new();
    for (path, want) in [("/dev/content/1", "dev"), ("/prod/content/2", "prod")] {
        let r = c.get(&proxy.url(path)).await;
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        assert_eq!(r.header("x-backend"), want, "GET {path}");
    }
    let dev_paths: Vec<_> = dev.received().into_iter().map(|r| r.path).collect();
    let prod_paths: Vec<_> = prod.received().into_iter().map(|r| r.path).collect();
    assert_eq!(dev_paths, ["/content/1"]);
    assert_eq!(prod_paths, ["/content/2"]);
}

#[tokio::test]
async fn mock_integration_answers_its_status_headers_and_body() {
    let api = rest_api(
        "mocky",
        r#"  resources:
    - path: /profile
      methods:
        GET:
          integration:
            type: MOCK
            mockResponse:
              statusCode: 202
              headers: {content-type: application/json, x-mock: "1"}
              body: '{"mocked":true}'
"#,
    );
    let proxy = Proxy::start(&[
        ("api.yaml", &api),
        (
            "stage.yaml",
            &stage("mocky-dev", "mocky", "  stageName: dev\n"),
        ),
    ])
    .await;
    let r = Client::new().get(&proxy.url("/dev/profile")).await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("x-mock"), "1");
    assert_eq!(r.json(), serde_json::json!({"mocked": true}));
    r.request_id();
}

#[tokio::test]
async fn gateway_response_override_changes_status_headers_and_body_of_missing_token() {
    let api = rest_api(
        "custom",
        &format!(
            r#"  resources:
    - path: /known
      methods:
        GET: {{integration: {}}}
  gatewayResponses:
    MISSING_AUTHENTICATION_TOKEN:
      statusCode: 404
      responseHeaders: {{x-portico: "yes"}}
      responseTemplates:
        application/json: '{{"error":"$context.error.message","kind":"custom"}}'
"#,
            mock("known")
        ),
    );
    let proxy = Proxy::start(&[
        ("api.yaml", &api),
        (
            "stage.yaml",
            &stage("custom-dev", "custom", "  stageName: dev\n"),
        ),
    ])
    .await;
    let c = Client::new();
    let r = c.get(&proxy.url("/dev/unknown")).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("x-portico"), "yes");
    assert_eq!(
        r.json(),
        serde_json::json!({"error": "Missing Authentication Token", "kind": "custom"})
    );
    r.request_id();
    let r = c.get(&proxy.url("/dev/known")).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "known".to_string()));
    assert_eq!(
        r.header("x-portico"),
        "",
        "override leaked onto a normal response"
    );
}

#[tokio::test]
async fn integration_slower_than_its_timeout_answers_504() {
    let be = Backend::start("slow").await;
    be.set_delay(Duration::from_secs(3));
    let api = rest_api(
        "slowapi",
        &format!(
            r#"  resources:
    - path: /slow
      methods:
        GET:
          integration:
            type: HTTP_PROXY
            uri: "http://{}/slow"
            timeoutInMillis: 200
"#,
            be.host_port()
        ),
    );
    let proxy = Proxy::start(&[
        ("api.yaml", &api),
        (
            "stage.yaml",
            &stage("slow-dev", "slowapi", "  stageName: dev\n"),
        ),
    ])
    .await;
    let r = Client::new().get(&proxy.url("/dev/slow")).await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"message": "Endpoint request timed out"})
    );
    r.request_id();
    // Called at most once: a timed-out request is not retried. (Not "exactly once": on a busy
    // machine the 200 ms can run out before the request reached the backend.)
    assert!(
        be.started() <= 1,
        "the backend was called {} times",
        be.started()
    );
}

fn capped_proxy_manifests(be: &Backend) -> (String, String) {
    let api = rest_api(
        "capped",
        &format!(
            r#"  maxPayloadBytes: 1024
  resources:
    - path: /upload
      methods:
        POST: {{integration: {}}}
"#,
            http_proxy(&format!("http://{}/upload", be.host_port()))
        ),
    );
    (api, stage("capped-dev", "capped", "  stageName: dev\n"))
}

fn post_with_length(addr: std::net::SocketAddr, len: usize) -> Vec<u8> {
    let mut req = format!(
        "POST /dev/upload HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/octet-stream\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    req.extend(std::iter::repeat_n(b'a', len));
    req
}

fn post_chunked(addr: std::net::SocketAddr, chunks: usize, chunk: usize) -> Vec<u8> {
    let mut req = format!(
        "POST /dev/upload HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..chunks {
        req.extend(format!("{chunk:x}\r\n").into_bytes());
        req.extend(std::iter::repeat_n(b'b', chunk));
        req.extend(b"\r\n");
    }
    req.extend(b"0\r\n\r\n");
    req
}

#[tokio::test]
async fn body_over_max_payload_bytes_answers_413_and_never_reaches_the_backend() {
    let be = Backend::start("upload").await;
    let (api, st) = capped_proxy_manifests(&be);
    let proxy = Proxy::start(&[("api.yaml", &api), ("stage.yaml", &st)]).await;

    let r = raw_exchange(proxy.listen, &post_with_length(proxy.listen, 2048)).await;
    assert_eq!(r.status, 413, "content-length 2048: {}", r.text());
    r.request_id();
    assert!(
        r.json()["message"].is_string(),
        "413 body should be a gateway response: {}",
        r.text()
    );

    let r = raw_exchange(proxy.listen, &post_chunked(proxy.listen, 4, 512)).await;
    assert_eq!(r.status, 413, "chunked 4x512: {}", r.text());
    r.request_id();

    assert_eq!(
        be.started(),
        0,
        "the backend saw requests whose body was over the cap: {:?}",
        be.received()
    );
}

#[tokio::test]
async fn body_within_max_payload_bytes_reaches_the_backend_whole() {
    let be = Backend::start("upload").await;
    let (api, st) = capped_proxy_manifests(&be);
    let proxy = Proxy::start(&[("api.yaml", &api), ("stage.yaml", &st)]).await;

    let r = raw_exchange(proxy.listen, &post_with_length(proxy.listen, 1024)).await;
    assert_eq!(r.status, 200, "content-length 1024: {}", r.text());
    let r = raw_exchange(proxy.listen, &post_chunked(proxy.listen, 2, 500)).await;
    assert_eq!(r.status, 200, "chunked 2x500: {}", r.text());

    let got = be.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].body.len(), 1024);
    assert!(got[0].body.iter().all(|b| *b == b'a'));
    assert_eq!(got[1].body.len(), 1000);
    assert!(got[1].body.iter().all(|b| *b == b'b'));
}

fn passthrough_proxy_manifests(be_host_port: &str) -> (String, String) {
    let api = rest_api(
        "pass",
        &format!(
            "  resources:\n    - path: /{{proxy+}}\n      methods:\n        ANY: {{integration: {}}}\n",
            http_proxy(&format!("http://{be_host_port}/{{proxy}}"))
        ),
    );
    (api, stage("pass-dev", "pass", "  stageName: dev\n"))
}

#[tokio::test]
async fn large_bodies_stream_through_http_proxy_intact_both_ways() {
    let be = Backend::start("big").await;
    let (api, st) = passthrough_proxy_manifests(&be.host_port());
    let proxy = Proxy::start(&[("api.yaml", &api), ("stage.yaml", &st)]).await;
    let c = Client::new();

    let up = portico_e2e::pattern(3 * 1024 * 1024 + 7);
    let r = c
        .send(Method::POST, &proxy.url("/dev/upload"), &[], up.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = be.received();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].body.as_ref() == up.as_slice(),
        "request body differs"
    );

    let r = c
        .send(
            Method::GET,
            &proxy.url("/dev/download"),
            &[("x-echo-bytes", "2097169")],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 2_097_169);
    assert!(
        r.body.as_ref() == portico_e2e::pattern(2_097_169).as_slice(),
        "response body differs"
    );
}

/// RFC 9110 7.6.1: `Connection` and the headers it names are for one hop only.
#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded_to_the_backend() {
    let be = Backend::start("hop").await;
    let (api, st) = passthrough_proxy_manifests(&be.host_port());
    let proxy = Proxy::start(&[("api.yaml", &api), ("stage.yaml", &st)]).await;
    let req = format!(
        "GET /dev/hop HTTP/1.1\r\nhost: {}\r\nconnection: close, x-hop\r\nx-hop: secret\r\nkeep-alive: timeout=5\r\nproxy-connection: keep-alive\r\nx-end-to-end: kept\r\n\r\n",
        proxy.listen
    );
    let r = raw_exchange(proxy.listen, req.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = be.received();
    assert_eq!(got.len(), 1);
    let got = &got[0];
    assert_eq!(got.header("x-end-to-end"), "kept");
    for hop in ["x-hop", "keep-alive", "proxy-connection"] {
        assert_eq!(
            got.header(hop),
            "",
            "{hop} was forwarded: {:?}",
            got.headers
        );
    }
    assert!(
        !got.header("connection").contains("x-hop"),
        "the client's Connection header was forwarded: {:?}",
        got.headers
    );
}

#[tokio::test]
async fn unreachable_backend_answers_the_integration_failure_gateway_response() {
    // A port that was just free: bind, read the port, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("pick a free port");
    let (api, st) = passthrough_proxy_manifests(&dead.to_string());
    let proxy = Proxy::start(&[("api.yaml", &api), ("stage.yaml", &st)]).await;
    let r = Client::new().get(&proxy.url("/dev/anything")).await;
    let ty = portico_config::GatewayResponseType::IntegrationFailure;
    assert_eq!(r.status.as_u16(), ty.default_status(), "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"message": ty.default_message()})
    );
    r.request_id();
}

/// Reads one request head from `s` (bytes after it stay in `buf`); `None` at end of stream.
async fn read_request_head(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return Some(head);
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// An HTTP/1.0 backend (one response per connection, then close), written by hand.
async fn start_http10_backend() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use tokio::io::AsyncWriteExt;
    portico_e2e::serve_connections(|mut s| async move {
        if read_request_head(&mut s, &mut Vec::new()).await.is_none() {
            return;
        }
        let _ = s
            .write_all(
                b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nhello",
            )
            .await;
    })
    .await
}

/// The proxy speaks HTTP/1.1 to an HTTP/1.1 client whatever version its backend spoke;
/// answering with the backend's `HTTP/1.0` makes every client drop its keep-alive connection.
#[tokio::test]
async fn an_http10_backend_is_answered_to_http11_clients_as_http11() {
    let (addr, task) = start_http10_backend().await;
    let (api, st) = passthrough_proxy_manifests(&addr.to_string());
    let proxy = Proxy::start(&[("api.yaml", &api), ("stage.yaml", &st)]).await;
    let r = Client::new().get(&proxy.url("/dev/old")).await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "hello".to_string()));
    assert_eq!(
        r.version,
        http::Version::HTTP_11,
        "the proxy answered an HTTP/1.1 request with the backend's version"
    );
    task.abort();
}

/// A hand-written HTTP/1.1 backend that answers by path with the framings the proxy's
/// backend client must handle; counts the connections it accepted.
async fn start_framing_backend() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::AsyncWriteExt;
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let (addr, _) = portico_e2e::serve_connections(move |mut s| {
        count.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut buf = Vec::new();
            loop {
                let Some(head) = read_request_head(&mut s, &mut buf).await else {
                    return;
                };
                let line = head.lines().next().unwrap_or_default();
                let path = line.split(' ').nth(1).unwrap_or_default();
                let w = |b: &'static [u8]| b;
                match path {
                    "/chunked" => {
                        // Split mid-chunk, with pauses, to exercise partial reads.
                        for part in [
                            w(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=1\r\nhel"),
                            w(b"lo\r\n6\r\n world\r\n0\r\ntrailer: t\r\n"),
                            w(b"\r\n"),
                        ] {
                            let _ = s.write_all(part).await;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    "/until-close" => {
                        let _ = s
                            .write_all(
                                b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil close",
                            )
                            .await;
                        return;
                    }
                    "/no-content" => {
                        let _ = s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
                    }
                    "/head" => {
                        // HEAD: a Content-Length and no body.
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n")
                            .await;
                    }
                    "/interim" => {
                        let _ = s
                            .write_all(b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                    "/then-close" => {
                        // Says keep-alive, then closes the idle connection.
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nonce")
                            .await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return;
                    }
                    "/truncated" => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort")
                            .await;
                        return;
                    }
                    "/garbage" => {
                        let _ = s.write_all(b"SPDY/9 what\r\n\r\n").await;
                        return;
                    }
                    "/early-reject" => {
                        // Answers before the body and never reads it (for 120 s: longer than
                        // the client's 30 s request timeout and the integration's 29 s).
                        let _ = s
                            .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\n\r\ntoo big!")
                            .await;
                        tokio::time::sleep(Duration::from_secs(120)).await;
                        return;
                    }
                    _ => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                    }
                }
            }
        }
    })
    .await;
    (addr, accepted)
}

#[tokio::test]
async fn backend_responses_are_framed_as_rfc_9112_says_and_connections_reused_only_when_safe() {
    let (addr, accepted) = start_framing_backend().await;
    let (api, st) = passthrough_proxy_manifests(&addr.to_string());
    let proxy = Proxy::start(&[("api.yaml", &api), ("stage.yaml", &st)]).await;
    let c = Client::new();
    let get = |path: &str| {
        let (c, url) = (c.clone(), proxy.url(&format!("/dev{path}")));
        async move { c.get(&url).await }
    };

    // Keep-alive: sequential requests share one backend connection.
    for _ in 0..3 {
        let r = get("/plain").await;
        assert_eq!((r.status.as_u16(), r.text()), (200, "ok".to_string()));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    let r = get("/chunked").await;
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (200, "hello world".to_string())
    );
    let r = get("/interim").await;
    assert_eq!((r.status.as_u16(), r.text()), (200, "ok".to_string()));
    let r = get("/no-content").await;
    assert_eq!((r.status.as_u16(), r.text()), (204, String::new()));
    let r = c.send(Method::HEAD, &proxy.url("/dev/head"), &[], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), "100");
    assert!(r.body.is_empty());
    // Still the first connection: all of those were read to their end and reusable.
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // A body delimited by the close: read to the end; that connection is not reused.
    let r = get("/until-close").await;
    assert_eq!(
        (r.status.as_u16(), r.text()),
        (200, "until close".to_string())
    );
    let before = accepted.load(Ordering::SeqCst);
    let r = get("/plain").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        before + 1,
        "a new connection after the close"
    );

    // The backend closes an idle keep-alive connection: the next request is retried once on a
    // fresh connection instead of failing.
    let r = get("/then-close").await;
    assert_eq!(r.text(), "once");
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..2 {
        let r = get("/plain").await;
        assert_eq!((r.status.as_u16(), r.text()), (200, "ok".to_string()));
    }

    // A malformed head is INTEGRATION_FAILURE (504, as AWS); a truncated body aborts the
    // response.
    let r = get("/garbage").await;
    assert_eq!(r.status, 504, "{}", r.text());
    let line = proxy
        .access_log_line(&r.request_id(), Duration::from_secs(10))
        .await;
    assert_eq!(line["errorType"], "INTEGRATION_FAILURE", "{line}");
    assert!(
        c.try_send(Method::GET, &proxy.url("/dev/truncated"), &[], "")
            .await
            .is_err(),
        "a body shorter than its Content-Length must not look complete"
    );
    // The proxy is fine afterwards.
    assert_eq!(get("/plain").await.status, 200);
}

#[tokio::test]
async fn an_early_backend_answer_to_a_large_upload_is_relayed_at_once() {
    let (addr, _) = start_framing_backend().await;
    let api = rest_api(
        "pass",
        &format!(
            "  maxPayloadBytes: 100000000\n  resources:\n    - path: /{{proxy+}}\n      methods:\n        ANY: {{integration: {}}}\n",
            http_proxy(&format!("http://{addr}/{{proxy}}"))
        ),
    );
    let st = stage("pass-dev", "pass", "  stageName: dev\n");
    let proxy = Proxy::start(&[("api.yaml", &api), ("stage.yaml", &st)]).await;
    // 40 MB: far more than the socket buffers hold, so a proxy that sent the whole body
    // before reading would block for as long as the backend does not read (120 s): the
    // client's request would time out (30 s) or the integration's (29 s, a 504). No clock
    // is read: the answer arrives only if it was relayed before the upload finished.
    let r = Client::new()
        .try_send(
            Method::POST,
            &proxy.url("/dev/early-reject"),
            &[("content-type", "application/octet-stream")],
            vec![7u8; 40 * 1024 * 1024],
        )
        .await;
    match r {
        Ok(r) => assert_eq!((r.status.as_u16(), r.text()), (413, "too big!".to_string())),
        // The rest of the upload is drained, not reset: the client finishes and reads.
        Err(e) => panic!("no answer: {e:#}"),
    }
}

/// A gateway that answers before reading the body (here 403: no API key) must not reset
/// the connection under a client that is still uploading: the rest of the body is drained
/// (bounded), the client finishes its upload, reads the answer, and the connection stays
/// usable. With `Expect: 100-continue` nothing was sent: the answer comes without a 100.
#[tokio::test]
async fn a_client_still_uploading_gets_the_early_answer_without_a_reset() {
    use tokio::io::AsyncWriteExt;
    let api = rest_api(
        "keyed",
        &format!(
            "  maxPayloadBytes: 100000000\n  resources:\n    - path: /upload\n      methods:\n        POST: {{apiKeyRequired: true, integration: {}}}\n    - path: /open\n      methods:\n        GET: {{integration: {}}}\n",
            mock("stored"),
            mock("open")
        ),
    );
    let st = stage("keyed-dev", "keyed", "  stageName: dev\n");
    let proxy = Proxy::start(&[("api.yaml", &api), ("stage.yaml", &st)]).await;
    let addr = proxy.listen;

    // 40 MB, far more than the socket buffers hold: a connection closed after the answer
    // would fail the upload with a reset.
    const SIZE: usize = 40 * 1024 * 1024;
    let exchange = async {
        let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut rd, mut wr) = s.into_split();
        let upload = async move {
            let head =
                format!("POST /dev/upload HTTP/1.1\r\nhost: a\r\ncontent-length: {SIZE}\r\n\r\n");
            wr.write_all(head.as_bytes()).await?;
            let chunk = vec![7u8; 64 * 1024];
            for _ in 0..SIZE / chunk.len() {
                wr.write_all(&chunk).await?;
            }
            std::io::Result::Ok(wr)
        };
        let mut buf = Vec::new();
        let (up, (status, body)) = tokio::join!(
            upload,
            portico_e2e::read_response_with_length(&mut rd, &mut buf)
        );
        let mut wr = up.unwrap_or_else(|e| panic!("the upload was cut: {e}"));
        assert!(status.starts_with("HTTP/1.1 403"), "{status}: {body}");
        assert!(body.contains("Forbidden"), "{body}");
        // The same connection serves the next request.
        wr.write_all(b"GET /dev/open HTTP/1.1\r\nhost: a\r\n\r\n")
            .await
            .expect("second request");
        let (status, body) = portico_e2e::read_response_with_length(&mut rd, &mut buf).await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}: {body}");
        assert_eq!(body, "open");
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .expect("the exchange timed out");

    // Expect: 100-continue and no body sent: the 403 comes first, no 100 Continue.
    let r = raw_exchange(
        addr,
        format!(
            "POST /dev/upload HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: {SIZE}\r\nconnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
}

/// An API "secure" (stage dev) whose `{proxy+}` route is HTTP_PROXY to `https://addr/v1/...`.
fn https_api(addr: std::net::SocketAddr) -> (String, String) {
    let api = rest_api(
        "secure",
        &format!(
            "  resources:\n    - path: /{{proxy+}}\n      methods:\n        ANY: {{integration: {}}}\n",
            http_proxy(&format!("https://{addr}/v1/{{proxy}}"))
        ),
    );
    (api, stage("secure-dev", "secure", "  stageName: dev\n"))
}

#[tokio::test]
async fn https_backends_are_called_over_tls_trusting_the_ca_file_only() {
    let be = Backend::start("secure").await;
    let front = crate::tls_front::TlsFront::start(be.host_port().parse().unwrap()).await;
    let (api, st) = https_api(front.addr);
    let manifests = [("api.yaml", api.as_str()), ("stage.yaml", st.as_str())];
    let c = Client::new();

    // Trusted through --ca-file: requests (with and without a body) reach the backend.
    let mut builder = Proxy::builder().arg("--ca-file").arg(front.ca_path());
    for (name, content) in manifests {
        builder = builder.manifest(name, content);
    }
    let proxy = builder.start().await;
    for _ in 0..2 {
        let r = c.get(&proxy.url("/dev/items/7?x=1")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-backend"), "secure");
    }
    let body = portico_e2e::pattern(300_000);
    let r = c
        .send(Method::POST, &proxy.url("/dev/upload"), &[], body.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = be.received();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[0].path, "/v1/items/7");
    assert_eq!(got[0].query.as_deref(), Some("x=1"));
    assert_eq!(
        got[2].body.as_ref(),
        body.as_slice(),
        "the body crossed TLS intact"
    );

    // Not trusted (no --ca-file): the handshake fails, nothing reaches the backend.
    let untrusting = Proxy::start(&manifests).await;
    let r = c.get(&untrusting.url("/dev/items/7")).await;
    assert_eq!(r.status, 504, "{}", r.text());
    let line = untrusting
        .access_log_line(&r.request_id(), Duration::from_secs(10))
        .await;
    assert_eq!(line["errorType"], "INTEGRATION_FAILURE", "{line}");
    assert!(
        untrusting.logs().contains("TLS with"),
        "{}",
        untrusting.logs()
    );
    assert_eq!(be.received().len(), 3);
}

/// A pooled TLS connection the backend closed while it was idle is noticed at checkout, so a
/// request whose body cannot be sent twice (streamed from the client) goes out on a fresh
/// connection instead of failing on the stale one.
#[tokio::test]
async fn a_tls_connection_the_backend_closed_while_idle_is_not_reused() {
    let be = Backend::start("secure").await;
    let front = crate::tls_front::TlsFront::start(be.host_port().parse().unwrap()).await;
    let (api, st) = https_api(front.addr);
    let proxy = Proxy::builder()
        .arg("--ca-file")
        .arg(front.ca_path())
        .manifest("api.yaml", &api)
        .manifest("stage.yaml", &st)
        .start()
        .await;
    let c = Client::new();
    for round in 0..3 {
        let r = c.get(&proxy.url("/dev/items/1")).await;
        assert_eq!(r.status, 200, "round {round}: {}", r.text());
        // The front closes the pooled connection meanwhile (as its idle timeout would).
        front.close_connections().await;
        let body = portico_e2e::pattern(100_000);
        let r = c
            .send(Method::POST, &proxy.url("/dev/upload"), &[], body.clone())
            .await;
        assert_eq!(r.status, 200, "round {round}: {}", r.text());
        assert_eq!(be.received().last().unwrap().body.as_ref(), body.as_slice());
        front.close_connections().await;
    }
}

/// `X-Amzn-Trace-Id`: "API Gateway adds a tracing header to incoming HTTP requests that don't
/// already have one" (AWS X-Ray developer guide, "Amazon API Gateway active tracing
/// support"), in X-Ray's `Root=1-<8 hex epoch seconds>-<24 hex>` form; a client's valid one is
/// kept. `$context.xrayTraceId` is its root.
#[tokio::test]
async fn integrations_get_a_trace_id_and_the_access_log_has_its_root() {
    let be = Backend::start("traced").await;
    let api = rest_api(
        "traced",
        &format!(
            "  resources:\n    - path: /t\n      methods:\n        GET: {{integration: {}}}\n",
            http_proxy(&format!("http://{}/t", be.host_port()))
        ),
    );
    let st = stage(
        "traced-dev",
        "traced",
        "  stageName: dev\n  accessLogSettings:\n    format: '{\"requestId\":\"$context.requestId\",\"trace\":\"$context.xrayTraceId\"}'\n",
    );
    let proxy = Proxy::start(&[("api.yaml", &api), ("stage.yaml", &st)]).await;
    let c = Client::new();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let r = c.send(Method::GET, &proxy.url("/dev/t"), &[], "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = be.received()[0].header("x-amzn-trace-id").to_string();
    let root = sent.strip_prefix("Root=").expect("a Root= field");
    let parts: Vec<&str> = root.split('-').collect();
    assert_eq!(parts.len(), 3, "{sent}");
    assert_eq!(parts[0], "1");
    let secs = u64::from_str_radix(parts[1], 16).expect("8 hex digits");
    assert_eq!(parts[1].len(), 8);
    assert!(secs >= before.saturating_sub(1), "{secs} < {before}");
    assert_eq!(parts[2].len(), 24);
    assert!(parts[2].bytes().all(|b| b.is_ascii_hexdigit()));
    let line = proxy
        .access_log_line(&r.request_id(), Duration::from_secs(10))
        .await;
    assert_eq!(line["trace"], root);

    // A client's valid header is kept whole; a malformed one is replaced.
    let client = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    let r = c
        .send(
            Method::GET,
            &proxy.url("/dev/t"),
            &[("x-amzn-trace-id", client)],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(be.received()[1].header("x-amzn-trace-id"), client);
    let r = c
        .send(
            Method::GET,
            &proxy.url("/dev/t"),
            &[("x-amzn-trace-id", "Root=forged")],
            "",
        )
        .await;
    assert_eq!(r.status, 200);
    let replaced = be.received()[2].header("x-amzn-trace-id").to_string();
    assert!(
        replaced.starts_with("Root=1-") && replaced.len() == 40,
        "{replaced}"
    );
}
