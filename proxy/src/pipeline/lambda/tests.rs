use super::*;

async fn body_of(resp: Response<ProxyBody>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn a_v1_result_maps_status_headers_multi_value_headers_and_base64_body() {
    // AWS's documented 1.0 response shape.
    let result = br#"{
        "isBase64Encoded": true,
        "statusCode": 201,
        "headers": {"x-one": "1", "content-type": "application/octet-stream"},
        "multiValueHeaders": {"set-cookie": ["a=1", "b=2"]},
        "body": "AAEC/w=="
    }"#;
    let resp = map_result(PayloadFormatVersion::V1, result).unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["x-one"], "1");
    let cookies: Vec<_> = resp.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert_eq!(body_of(resp).await.as_ref(), &[0u8, 1, 2, 255]);
}

#[tokio::test]
async fn a_v2_bare_value_or_object_without_status_is_a_200_json_body() {
    for result in [&br#""hello""#[..], br#"{"a": 1}"#, b"[1,2]", b"42"] {
        let resp = map_result(PayloadFormatVersion::V2, result).unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(body_of(resp).await.as_ref(), result);
    }
    let resp = map_result(
        PayloadFormatVersion::V2,
        br#"{"statusCode": 302, "cookies": ["c=1"], "headers": {"location": "/x"}}"#,
    )
    .unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["set-cookie"], "c=1");
    assert_eq!(resp.headers()["location"], "/x");
    // 2.0 ignores fields it does not know.
    let resp = map_result(
        PayloadFormatVersion::V2,
        br#"{"statusCode": 204, "extra": 1}"#,
    )
    .unwrap();
    assert_eq!(resp.status(), 204);
}

#[test]
fn malformed_results_are_rejected() {
    use PayloadFormatVersion::{V1, V2};
    for (v, bad) in [
        (V1, &b"not json"[..]),
        (V2, b"not json"),
        (V1, br#""hello""#),
        (V1, br#"{"body": "x"}"#),
        (V1, br#"{"statusCode": 200, "extra": 1}"#),
        (V1, br#"{"statusCode": 200, "cookies": []}"#),
        (V2, br#"{"statusCode": 200, "cookies": "c=1"}"#),
        (V2, br#"{"statusCode": "x"}"#),
        (V1, br#"{"statusCode": 99}"#),
        (V1, br#"{"statusCode": 200, "body": {"a": 1}}"#),
        (V1, br#"{"statusCode": 200, "headers": {"a": {"b": 1}}}"#),
        (
            V2,
            br#"{"statusCode": 200, "isBase64Encoded": true, "body": "%%%"}"#,
        ),
    ] {
        assert!(
            map_result(v, bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn query_strings_and_bodies_are_decoded_as_api_gateway_does() {
    assert_eq!(
        query_pairs("a=1&a=2&b=two+words&c&d=%2F"),
        [
            ("a".into(), "1".into()),
            ("a".into(), "2".into()),
            ("b".into(), "two words".into()),
            ("c".into(), String::new()),
            ("d".into(), "/".into())
        ]
    );
    assert_eq!(event_body(&Bytes::new()), (Value::Null, false));
    assert_eq!(
        event_body(&Bytes::from_static(b"hi")),
        (Value::String("hi".into()), false)
    );
    assert_eq!(
        event_body(&Bytes::from_static(&[0xff, 0x00])),
        (Value::String("/wA=".into()), true)
    );
}

mod events {
    use super::super::*;
    use crate::metrics::Metrics;
    use crate::pipeline::route::{self, tests::*};
    use crate::pool::Pools;
    use crate::runtime::Runtime;
    use portico_config::{GatewayConfig, Protocol, SCHEMA_VERSION};
    use std::collections::BTreeSet;
    use std::sync::Arc;

    fn mk_ctx(
        protocol: Protocol,
        verb: &str,
        template: &str,
        uri: &str,
    ) -> (RequestCtx, HeaderMap) {
        let api = mk_api(protocol, &[(verb, template)]);
        let mut stage = mk_stage("stage/default/dev", "/dev", &[]);
        stage.variables.insert("color".into(), "blue".into());
        let config = GatewayConfig {
            schema_version: SCHEMA_VERSION,
            apis: vec![api],
            stages: vec![stage],
            ..GatewayConfig::empty()
        };
        let rt = Arc::new(Runtime::build(config, &Metrics::new(), &Pools::new()));
        let req = http::Request::builder()
            .method(verb)
            .uri(uri)
            .header("host", "api.example.com")
            .header("user-agent", "agent")
            .header("cookie", "c1=1; c2=2")
            .header("x-multi", "a")
            .header("x-multi", "b")
            .body(())
            .unwrap();
        let mut ctx = RequestCtx::new(rt, "192.0.2.1".parse().unwrap(), &req);
        route::apply(&mut ctx).unwrap();
        (ctx, req.headers().clone())
    }

    fn keys(v: &Value) -> BTreeSet<&str> {
        v.as_object().unwrap().keys().map(String::as_str).collect()
    }

    /// The top-level and requestContext keys of AWS's documented example events, less what
    /// has no meaning here (accountId, authorizer, authentication).
    #[test]
    fn a_1_0_event_has_the_documented_shape_and_values() {
        let (ctx, headers) = mk_ctx(Protocol::Rest, "POST", "/my/{p}", "/dev/my/x%20y?a=1&a=2");
        let e = event_v1(&ctx, &headers, &Bytes::from_static(b"Hello from Lambda!"));
        assert_eq!(
            keys(&e),
            BTreeSet::from([
                "resource",
                "path",
                "httpMethod",
                "headers",
                "multiValueHeaders",
                "queryStringParameters",
                "multiValueQueryStringParameters",
                "pathParameters",
                "stageVariables",
                "requestContext",
                "body",
                "isBase64Encoded",
            ])
        );
        assert_eq!(
            keys(&e["requestContext"]),
            BTreeSet::from([
                "apiId",
                "domainName",
                "domainPrefix",
                "extendedRequestId",
                "httpMethod",
                "identity",
                "path",
                "protocol",
                "requestId",
                "requestTime",
                "requestTimeEpoch",
                "resourceId",
                "resourcePath",
                "stage",
            ])
        );
        assert_eq!(e["resource"], "/my/{p}");
        assert_eq!(e["path"], "/my/x%20y");
        assert_eq!(e["pathParameters"], json!({"p": "x y"}));
        assert_eq!(e["headers"]["x-multi"], "b");
        assert_eq!(e["multiValueHeaders"]["x-multi"], json!(["a", "b"]));
        assert_eq!(e["queryStringParameters"], json!({"a": "2"}));
        assert_eq!(
            e["multiValueQueryStringParameters"],
            json!({"a": ["1", "2"]})
        );
        assert_eq!(e["stageVariables"], json!({"color": "blue"}));
        assert_eq!(e["body"], "Hello from Lambda!");
        assert_eq!(e["requestContext"]["domainName"], "api.example.com");
        assert_eq!(e["requestContext"]["domainPrefix"], "api");
        assert_eq!(e["requestContext"]["path"], "/dev/my/x%20y");
        assert_eq!(e["requestContext"]["stage"], "dev");
        assert_eq!(e["requestContext"]["identity"]["sourceIp"], "192.0.2.1");
        assert_eq!(e["requestContext"]["identity"]["userAgent"], "agent");
    }

    #[test]
    fn a_2_0_event_has_the_documented_shape_and_values() {
        let (ctx, headers) = mk_ctx(
            Protocol::Http,
            "GET",
            "/my/{p}",
            "/dev/my/path?parameter1=value1&parameter1=value2&parameter2=value",
        );
        let e = event_v2(&ctx, &headers, &Bytes::from_static(b"Hello from Lambda"));
        assert_eq!(
            keys(&e),
            BTreeSet::from([
                "version",
                "routeKey",
                "rawPath",
                "rawQueryString",
                "cookies",
                "headers",
                "queryStringParameters",
                "requestContext",
                "body",
                "pathParameters",
                "isBase64Encoded",
                "stageVariables",
            ])
        );
        assert_eq!(
            keys(&e["requestContext"]),
            BTreeSet::from([
                "apiId",
                "domainName",
                "domainPrefix",
                "http",
                "requestId",
                "routeKey",
                "stage",
                "time",
                "timeEpoch",
            ])
        );
        assert_eq!(
            e["rawQueryString"],
            "parameter1=value1&parameter1=value2&parameter2=value"
        );
        assert_eq!(e["cookies"], json!(["c1=1", "c2=2"]));
        assert_eq!(e["headers"]["x-multi"], "a,b");
        assert_eq!(
            e["queryStringParameters"],
            json!({"parameter1": "value1,value2", "parameter2": "value"})
        );
        assert_eq!(
            e["requestContext"]["http"],
            json!({"method": "GET", "path": "/dev/my/path", "protocol": "HTTP/1.1",
                   "sourceIp": "192.0.2.1", "userAgent": "agent"})
        );
        // An HTTP API asking for 1.0 gets the version label.
        assert_eq!(event_v1(&ctx, &headers, &Bytes::new())["version"], "1.0");
    }
}
