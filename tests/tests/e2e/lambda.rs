//! AWS_PROXY: a small function server that speaks the Lambda invoke endpoint
//! (`POST /2015-03-31/functions/function/invocations`) and echoes the event it received, in
//! payload formats 1.0 (REST) and 2.0 (HTTP API); malformed results and function errors are
//! 502.

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use portico_e2e::yaml::{rest_api, stage};
use portico_e2e::{Client, Proxy};
use serde_json::{Value, json};
use std::net::SocketAddr;

/// Answers the invoke endpoint: the event body `malformed` gets a non-JSON result, `error` a
/// function error, anything else the event echoed as a JSON body with status 201.
async fn start_function() -> SocketAddr {
    let (addr, _) = portico_e2e::serve_connections(|stream| async move {
        let svc =
            hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                // The invoke URI never carries the request's query string.
                let path = req.uri().to_string();
                let bytes = req.into_body().collect().await.unwrap().to_bytes();
                let event: Value = serde_json::from_slice(&bytes).unwrap();
                let mut resp = http::Response::builder().status(200);
                let body = if path != "/2015-03-31/functions/function/invocations" {
                    resp = resp.status(404);
                    "not the invoke path".to_string()
                } else {
                    match event["body"].as_str() {
                        Some("malformed") => "this is not json".into(),
                        // Both header maps (AWS merges them).
                        Some("merge") => json!({
                            "statusCode": 200,
                            "headers": {"Combined-Header": "single-value"},
                            "multiValueHeaders": {"Combined-Header": ["multi-value1", "multi-value2"]},
                        })
                        .to_string(),
                        // A base64 body (decoded only for a client that accepts binary).
                        Some("b64") => json!({
                            "statusCode": 200,
                            "headers": {"content-type": "image/png"},
                            "isBase64Encoded": true,
                            "body": "aGk=",
                        })
                        .to_string(),
                        // No statusCode (REST: 200).
                        Some("no-status") => json!({"headers": {"x-only": "headers"}}).to_string(),
                        Some("error") => {
                            resp = resp.header("X-Amz-Function-Error", "Unhandled");
                            r#"{"errorMessage": "boom", "errorType": "Error"}"#.into()
                        }
                        _ => json!({
                            "statusCode": 201,
                            "headers": {"content-type": "application/json", "x-fn": "yes"},
                            "multiValueHeaders": {"x-multi": ["a", "b"]},
                            "body": event.to_string(),
                        })
                        .to_string(),
                    }
                };
                Ok::<_, std::convert::Infallible>(resp.body(Full::new(Bytes::from(body))).unwrap())
            });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), svc)
            .await;
    })
    .await;
    addr
}

#[tokio::test]
async fn rest_api_sends_a_1_0_event_and_maps_the_result() {
    let f = start_function().await;
    let api = rest_api(
        "fn",
        &format!(
            r#"  binaryMediaTypes: [image/png]
  resources:
    - path: /items/{{id}}
      methods:
        POST: {{integration: {{type: AWS_PROXY, uri: "http://{f}"}}}}
"#
        ),
    );
    let proxy = Proxy::start(&[
        ("api.yaml", &api),
        (
            "stage.yaml",
            &stage(
                "fn-dev",
                "fn",
                "  stageName: dev\n  variables: {color: blue}\n",
            ),
        ),
    ])
    .await;
    let c = Client::new();
    let r = c
        .send(
            Method::POST,
            &proxy.url("/dev/items/42?a=1&a=2&b=x%20y"),
            &[
                ("x-h", "v"),
                ("user-agent", "e2e"),
                ("content-type", "text/plain"),
            ],
            "hello",
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("x-fn"), "yes");
    let multi: Vec<_> = r.headers.get_all("x-multi").iter().collect();
    assert_eq!(multi, ["a", "b"]);
    let e = r.json();
    assert_eq!(e["resource"], "/items/{id}");
    assert_eq!(e["path"], "/items/42");
    assert_eq!(e["httpMethod"], "POST");
    // Header names as the client spelled them (this client sends lower case), the gateway's
    // X-Forwarded-* and X-Amzn-Trace-Id added, Content-Length left out (recorded REST
    // events: LocalStack test_apigateway_lambda.snapshot.json).
    let h = &e["headers"];
    assert_eq!(h["x-h"], "v");
    assert_eq!(e["multiValueHeaders"]["x-h"], json!(["v"]));
    assert_eq!(h["X-Forwarded-For"], "127.0.0.1");
    assert_eq!(h["X-Forwarded-Proto"], "http");
    assert_eq!(h["X-Forwarded-Port"], proxy.listen.port().to_string());
    let trace = h["X-Amzn-Trace-Id"].as_str().unwrap();
    assert!(trace.starts_with("Root=1-") && trace.len() == 40, "{trace}");
    assert!(h.get("Content-Length").is_none() && h.get("content-length").is_none());
    assert_eq!(e["queryStringParameters"], json!({"a": "2", "b": "x y"}));
    assert_eq!(
        e["multiValueQueryStringParameters"],
        json!({"a": ["1", "2"], "b": ["x y"]})
    );
    assert_eq!(e["pathParameters"], json!({"id": "42"}));
    assert_eq!(e["stageVariables"], json!({"color": "blue"}));
    assert_eq!(e["body"], "hello");
    assert_eq!(e["isBase64Encoded"], false);
    let rc = &e["requestContext"];
    assert_eq!(rc["stage"], "dev");
    assert_eq!(rc["resourcePath"], "/items/{id}");
    assert_eq!(rc["httpMethod"], "POST");
    assert_eq!(rc["path"], "/dev/items/42");
    assert_eq!(rc["protocol"], "HTTP/1.1");
    assert_eq!(rc["apiId"], "fn");
    assert_eq!(rc["accountId"], "000000000000");
    assert_eq!(rc["deploymentId"].as_str().unwrap().len(), 10);
    assert_eq!(rc["identity"]["sourceIp"], "127.0.0.1");
    assert_eq!(rc["identity"]["userAgent"], "e2e");
    assert_eq!(rc["requestId"], r.request_id());
    assert!(rc["requestTimeEpoch"].as_u64().unwrap() > 1_600_000_000_000);
    assert!(rc["requestTime"].as_str().unwrap().ends_with(" +0000"));

    // Binary bodies travel base64-encoded.
    let r = c
        .send(
            Method::POST,
            &proxy.url("/dev/items/1"),
            &[],
            vec![0xffu8, 0, 1],
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["body"], "/wAB");
    assert_eq!(r.json()["isBase64Encoded"], true);

    // Results as AWS maps them: both header maps merged; a base64 body decoded only for a
    // client whose first Accept type is binary; no statusCode is 200 (sources in
    // proxy/src/pipeline/lambda/tests.rs).
    let r = c
        .send(Method::POST, &proxy.url("/dev/items/1"), &[], "merge")
        .await;
    let all: Vec<_> = r.headers.get_all("combined-header").iter().collect();
    assert_eq!(all, ["single-value", "multi-value1", "multi-value2"]);
    let r = c
        .send(Method::POST, &proxy.url("/dev/items/1"), &[], "b64")
        .await;
    assert_eq!(r.text(), "aGk=");
    let r = c
        .send(
            Method::POST,
            &proxy.url("/dev/items/1"),
            &[("accept", "image/png")],
            "b64",
        )
        .await;
    assert_eq!(r.text(), "hi");
    let r = c
        .send(Method::POST, &proxy.url("/dev/items/1"), &[], "no-status")
        .await;
    assert_eq!((r.status.as_u16(), r.header("x-only")), (200, "headers"));
    // A client that spells names its own way gets them back so (recorded on AWS:
    // `"tEsT-HEADeR": "aValUE"`).
    let out = portico_e2e::raw_exchange(
        proxy.listen,
        b"POST /dev/items/9 HTTP/1.1\r\nHost: api\r\ntEsT-HEADeR: aValUE\r\n\
          Content-Length: 1\r\nConnection: close\r\n\r\nx",
    )
    .await;
    assert_eq!(out.status, 201, "{}", out.text());
    let e = out.json();
    assert_eq!(e["headers"]["tEsT-HEADeR"], "aValUE", "{e}");
    assert_eq!(e["headers"]["Host"], "api");
    assert_eq!(e["headers"]["X-Forwarded-Proto"], "http");

    // A path as sent: a trailing slash, an escape (recorded REST events keep both).
    let r = c
        .send(Method::POST, &proxy.url("/dev/items/a%2Bb/"), &[], "x")
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let e = r.json();
    assert_eq!(e["path"], "/items/a%2Bb/");
    assert_eq!(e["requestContext"]["path"], "/dev/items/a%2Bb/");
    assert_eq!(e["pathParameters"], json!({"id": "a%2Bb"}));

    // Malformed result and function error: 502 {"message": "Internal server error"}.
    for body in ["malformed", "error"] {
        let r = c
            .send(Method::POST, &proxy.url("/dev/items/1"), &[], body)
            .await;
        assert_eq!(r.status, 502, "{body}: {}", r.text());
        assert_eq!(r.json(), json!({"message": "Internal server error"}));
        // A function error is INTEGRATION_FAILURE (answered 502, as AWS logs a Lambda
        // customer function error: DataBiosphere/azul#6624); a malformed result DEFAULT_5XX.
        let line = proxy
            .access_log_line(&r.request_id(), std::time::Duration::from_secs(10))
            .await;
        let want = if body == "error" {
            "INTEGRATION_FAILURE"
        } else {
            "DEFAULT_5XX"
        };
        assert_eq!(line["errorType"], want, "{line}");
        // The bytes AWS sends for a function's failure (36, a space after the colon:
        // aws-lambda-dotnet V1_HandlesZeroStatusCode); the malformed result's template has none.
        let bytes = if body == "error" {
            r#"{"message": "Internal server error"}"#
        } else {
            r#"{"message":"Internal server error"}"#
        };
        assert_eq!(r.text(), bytes);
        assert_eq!(r.header("x-amzn-errortype"), "InternalServerErrorException");
    }
}

#[tokio::test]
async fn http_api_sends_a_2_0_event() {
    let f = start_function().await;
    let api = rest_api(
        "fn2",
        &format!(
            r#"  protocol: HTTP
  routes:
    - routeKey: GET /items/{{id}}
      integration: {{type: AWS_PROXY, uri: "http://{f}/2015-03-31/functions/function/invocations"}}
    - routeKey: POST /v1
      integration: {{type: AWS_PROXY, payloadFormatVersion: "1.0", uri: "http://{f}"}}
"#
        ),
    );
    let proxy = Proxy::start(&[
        ("api.yaml", &api),
        ("stage.yaml", &stage("fn2-dev", "fn2", "  stageName: dev\n")),
    ])
    .await;
    let c = Client::new();
    let r = c
        .send(
            Method::GET,
            &proxy.url("/dev/items/7?a=1&a=2"),
            &[("cookie", "c1=1; c2=2"), ("user-agent", "e2e")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let e = r.json();
    assert_eq!(e["version"], "2.0");
    assert_eq!(e["routeKey"], "GET /items/{id}");
    assert_eq!(e["rawPath"], "/dev/items/7");
    assert_eq!(e["rawQueryString"], "a=1&a=2");
    assert_eq!(e["cookies"], json!(["c1=1", "c2=2"]));
    assert!(e["headers"].get("cookie").is_none());
    assert_eq!(e["queryStringParameters"], json!({"a": "1,2"}));
    assert_eq!(e["pathParameters"], json!({"id": "7"}));
    assert!(e.get("body").is_none());
    let http = &e["requestContext"]["http"];
    assert_eq!(http["method"], "GET");
    assert_eq!(http["path"], "/dev/items/7");
    assert_eq!(http["sourceIp"], "127.0.0.1");
    assert_eq!(http["userAgent"], "e2e");
    assert_eq!(e["requestContext"]["stage"], "dev");

    // payloadFormatVersion 1.0 on an HTTP API.
    let r = c.send(Method::POST, &proxy.url("/dev/v1"), &[], "x").await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["httpMethod"], "POST");
    assert_eq!(r.json()["version"], "1.0");

    // HTTP APIs answer a malformed result 500 {"message":"Internal Server Error"} (LocalStack's
    // AWS-validated TestHttpApiAwsProxyIntegration; aws-lambda-dotnet V1_HandlesZeroStatusCode).
    let r = c
        .send(Method::POST, &proxy.url("/dev/v1"), &[], "malformed")
        .await;
    assert_eq!(r.status, 500);
    assert_eq!(r.json(), json!({"message": "Internal Server Error"}));
    // HTTP APIs name the request id apigw-requestid and send no x-amzn-ErrorType (recorded
    // HTTP API error responses: aws-lambda-dotnet test tool snapshots, headers Date,
    // Connection, Apigw-Requestid, Content-Type, Content-Length).
    assert!(!r.header("apigw-requestid").is_empty());
    assert_eq!(r.header("x-amzn-requestid"), "");
    assert_eq!(r.header("x-amzn-errortype"), "");
}
