//! The event formats against AWS's documented examples and recorded events. Sources: the
//! developer guide ("Input format of a Lambda function for proxy integration"; "Working with
//! AWS Lambda proxy integrations for HTTP APIs"; "Input to a Lambda authorizer"), events
//! recorded on AWS in LocalStack's `test_apigateway_lambda.snapshot.json`
//! (`test_lambda_aws_proxy_integration`), aws/aws-lambda-go's
//! `events/testdata/apigw-v2-request-no-authorizer.json` (a capture), and the events
//! recorded by aws/aws-lambda-dotnet's test tool (`Snapshots/*.json`).

use super::*;
use crate::metrics::Metrics;
use crate::pipeline::route::{self, tests::*};
use crate::pool::Pools;
use crate::runtime::Runtime;
use portico_config::{GatewayConfig, Protocol, SCHEMA_VERSION};
use std::collections::BTreeSet;
use std::sync::Arc;

fn mk_ctx(protocol: Protocol, verb: &str, template: &str, uri: &str) -> (RequestCtx, HeaderMap) {
    mk_ctx_with(protocol, verb, template, uri, &[])
}

fn mk_ctx_with(
    protocol: Protocol,
    verb: &str,
    template: &str,
    uri: &str,
    extra: &[(&str, &str)],
) -> (RequestCtx, HeaderMap) {
    let mut api = mk_api(protocol, &[(verb, template)]);
    api.binary_media_types = vec!["image/png".into()];
    let mut stage = mk_stage("stage/default/dev", "/dev", &[]);
    stage.variables.insert("color".into(), "blue".into());
    let config = GatewayConfig {
        schema_version: SCHEMA_VERSION,
        apis: vec![api],
        stages: vec![stage],
        ..GatewayConfig::empty()
    };
    let rt = Arc::new(Runtime::build(config, &Metrics::new(), &Pools::new()));
    let mut req = http::Request::builder()
        .method(verb)
        .uri(uri)
        .header("host", "api.example.com")
        .header("user-agent", "agent")
        .header("cookie", "c1=1; c2=2")
        .header("x-multi", "a")
        .header("x-multi", "b")
        .header("content-length", "5")
        .header("x-forwarded-for", "203.0.113.9");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let req = req.body(()).unwrap();
    let mut ctx = RequestCtx::new(rt, "192.0.2.1".parse().unwrap(), &req);
    ctx.forwarded_port = 8080;
    route::apply(&mut ctx).unwrap();
    (ctx, req.headers().clone())
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

#[test]
fn query_strings_decode_as_api_gateway_does() {
    // Recorded (LocalStack): `plus=test+alias@gmail.com` -> "test alias@gmail.com",
    // `email=test%2Balias...` -> "test+alias@...".
    assert_eq!(
        query_pairs("a=1&a=2&b=two+words&c&d=%2F&e=test%2Balias"),
        [
            ("a".into(), "1".into()),
            ("a".into(), "2".into()),
            ("b".into(), "two words".into()),
            ("c".into(), String::new()),
            ("d".into(), "/".into()),
            ("e".into(), "test+alias".into())
        ]
    );
}

/// Bodies are base64 when their type is binary (REST: `binaryMediaTypes`; HTTP APIs:
/// octet-stream, images, audio, video: aws-lambda-dotnet `BinaryContentHttpV1.json` records
/// 5 bytes of `application/octet-stream` as `"AQIDBAU="`), or when they are not UTF-8.
#[test]
fn bodies_are_base64_for_binary_types_or_bytes_that_are_not_text() {
    let (ctx, h) = mk_ctx(Protocol::Rest, "POST", "/f", "/dev/f");
    assert_eq!(event_body(&ctx, &h, &Bytes::new()), (Value::Null, false));
    assert_eq!(
        event_body(&ctx, &h, &Bytes::from_static(b"hi")),
        (json!("hi"), false)
    );
    assert_eq!(
        event_body(&ctx, &h, &Bytes::from_static(&[0xff, 0x00])),
        (json!("/wA="), true)
    );
    let mut png = h.clone();
    png.insert(header::CONTENT_TYPE, "image/png".parse().unwrap());
    assert_eq!(
        event_body(&ctx, &png, &Bytes::from_static(b"hi")),
        (json!("aGk="), true)
    );
    let (ctx, mut h) = mk_ctx(Protocol::Http, "POST", "/f", "/dev/f");
    h.insert(
        header::CONTENT_TYPE,
        "application/octet-stream".parse().unwrap(),
    );
    assert_eq!(
        event_body(&ctx, &h, &Bytes::from_static(&[1, 2, 3, 4, 5])),
        (json!("AQIDBAU="), true)
    );
}

/// The key sets of LocalStack's recorded REST event (`requestContext` with `accountId` and
/// `deploymentId`; `identity` with AWS's nulls); headers Title-Case; `Content-Length` left
/// out; `X-Forwarded-*` and `X-Amzn-Trace-Id` added, as in every recorded event.
#[test]
fn a_1_0_event_has_the_recorded_shape_and_values() {
    let (ctx, headers) = mk_ctx(Protocol::Rest, "POST", "/my/{p}", "/dev/my/x%20y?a=1&a=2");
    let e = proxy_v1(&ctx, &headers, &Bytes::from_static(b"Hello"));
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
    let rc = &e["requestContext"];
    assert_eq!(
        keys(rc),
        BTreeSet::from([
            "accountId",
            "apiId",
            "deploymentId",
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
    assert_eq!(
        keys(&rc["identity"]),
        BTreeSet::from([
            "accessKey",
            "accountId",
            "caller",
            "cognitoAuthenticationProvider",
            "cognitoAuthenticationType",
            "cognitoIdentityId",
            "cognitoIdentityPoolId",
            "principalOrgId",
            "sourceIp",
            "user",
            "userAgent",
            "userArn",
        ])
    );
    assert_eq!(rc["identity"]["accessKey"], Value::Null);
    assert_eq!(rc["accountId"], "000000000000");
    assert_eq!(rc["deploymentId"], &ctx.runtime.version[..10]);
    assert_eq!(e["resource"], "/my/{p}");
    // As sent: not decoded (recorded: `test%2Balias@gmail.com` stays encoded).
    assert_eq!(e["path"], "/my/x%20y");
    assert_eq!(e["pathParameters"], json!({"p": "x%20y"}));
    assert_eq!(rc["path"], "/dev/my/x%20y");
    let h = &e["headers"];
    assert_eq!(
        keys(h),
        BTreeSet::from([
            "Cookie",
            "Host",
            "User-Agent",
            "X-Multi",
            "X-Forwarded-For",
            "X-Forwarded-Port",
            "X-Forwarded-Proto",
            "X-Amzn-Trace-Id",
        ])
    );
    assert_eq!(h["X-Multi"], "b");
    assert_eq!(e["multiValueHeaders"]["X-Multi"], json!(["a", "b"]));
    assert_eq!(h["X-Forwarded-For"], "203.0.113.9, 192.0.2.1");
    assert_eq!(h["X-Forwarded-Port"], "8080");
    assert_eq!(h["X-Forwarded-Proto"], "http");
    assert_eq!(h["X-Amzn-Trace-Id"], ctx.trace_id.as_str());
    assert_eq!(e["queryStringParameters"], json!({"a": "2"}));
    assert_eq!(
        e["multiValueQueryStringParameters"],
        json!({"a": ["1", "2"]})
    );
    assert_eq!(e["stageVariables"], json!({"color": "blue"}));
    assert_eq!(e["body"], "Hello");
    assert_eq!(rc["domainName"], "api.example.com");
    assert_eq!(rc["domainPrefix"], "api");
    assert_eq!(rc["stage"], "dev");
    assert_eq!(rc["identity"]["sourceIp"], "192.0.2.1");
    assert_eq!(rc["identity"]["userAgent"], "agent");
}

/// `path`, `requestContext.path` and `pathParameters` of REST events, as recorded on AWS
/// (LocalStack `test_lambda_aws_proxy_integration`, stage `stage`, resource `/{proxy+}`):
/// a trailing slash stays in `path` but not in the parameter, inner `//` stay, leading ones
/// collapse, escapes stay as sent.
#[test]
fn rest_paths_and_parameters_are_as_sent() {
    for (uri, path, rc_path, proxy) in [
        (
            "/dev/proxy-value/",
            "/proxy-value/",
            "/dev/proxy-value/",
            "proxy-value",
        ),
        (
            "/dev/proxy-value//double-slash",
            "/proxy-value//double-slash",
            "/dev/proxy-value//double-slash",
            "proxy-value//double-slash",
        ),
        (
            "//dev/proxy-value",
            "/proxy-value",
            "/dev/proxy-value",
            "proxy-value",
        ),
        (
            "/dev//proxy-value",
            "/proxy-value",
            "/dev//proxy-value",
            "proxy-value",
        ),
        (
            "/dev/api/user/test%2Balias@gmail.com/plus/test+alias@gmail.com",
            "/api/user/test%2Balias@gmail.com/plus/test+alias@gmail.com",
            "/dev/api/user/test%2Balias@gmail.com/plus/test+alias@gmail.com",
            "api/user/test%2Balias@gmail.com/plus/test+alias@gmail.com",
        ),
    ] {
        let (ctx, headers) = mk_ctx(Protocol::Rest, "GET", "/{proxy+}", uri);
        let e = proxy_v1(&ctx, &headers, &Bytes::new());
        assert_eq!(e["path"], path, "{uri}");
        assert_eq!(e["requestContext"]["path"], rc_path, "{uri}");
        assert_eq!(e["pathParameters"], json!({"proxy": proxy}), "{uri}");
    }
    // A literal resource: no parameters (`null`), and the same slash rules.
    let (ctx, headers) = mk_ctx(Protocol::Rest, "GET", "/hardcoded", "/dev//hardcoded");
    let e = proxy_v1(&ctx, &headers, &Bytes::new());
    assert_eq!(e["path"], "/hardcoded");
    assert_eq!(e["pathParameters"], Value::Null);
    // Dot segments (routing resolved them): the canonical values.
    let (ctx, headers) = mk_ctx(Protocol::Rest, "GET", "/a/{id}", "/dev/x/../a/7");
    let e = proxy_v1(&ctx, &headers, &Bytes::new());
    assert_eq!(e["pathParameters"], json!({"id": "7"}));
}

/// The recorded 2.0 capture's key sets (aws-lambda-go `apigw-v2-request-no-authorizer.json`):
/// `requestContext.accountId`; headers lower case with `content-length` (`0` without a
/// body), `x-forwarded-*` and `x-amzn-trace-id`; the path decoded (aws-lambda-dotnet
/// `V2_SpecialCharactersInPath.json`: `%20` as a space).
#[test]
fn a_2_0_event_has_the_recorded_shape_and_values() {
    let (ctx, headers) = mk_ctx(
        Protocol::Http,
        "GET",
        "/my/{p}",
        "/dev/my/a%20b?parameter1=value1&parameter1=value2&parameter2=value",
    );
    let e = proxy_v2(&ctx, &headers, &Bytes::from_static(b"Hello"));
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
    let rc = &e["requestContext"];
    assert_eq!(
        keys(rc),
        BTreeSet::from([
            "accountId",
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
    assert_eq!(e["rawPath"], "/dev/my/a b");
    assert_eq!(e["pathParameters"], json!({"p": "a b"}));
    assert_eq!(
        e["rawQueryString"],
        "parameter1=value1&parameter1=value2&parameter2=value"
    );
    assert_eq!(e["cookies"], json!(["c1=1", "c2=2"]));
    let h = &e["headers"];
    assert_eq!(h["x-multi"], "a,b");
    assert_eq!(h["content-length"], "5");
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 192.0.2.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert!(
        h["x-amzn-trace-id"]
            .as_str()
            .unwrap()
            .starts_with("Root=1-")
    );
    assert!(h.get("cookie").is_none());
    assert_eq!(
        e["queryStringParameters"],
        json!({"parameter1": "value1,value2", "parameter2": "value"})
    );
    assert_eq!(
        rc["http"],
        json!({"method": "GET", "path": "/dev/my/a b", "protocol": "HTTP/1.1",
               "sourceIp": "192.0.2.1", "userAgent": "agent"})
    );
    // An HTTP API asking for 1.0 gets the version label and Title-Case names.
    let v1 = proxy_v1(&ctx, &headers, &Bytes::new());
    assert_eq!(v1["version"], "1.0");
    assert_eq!(v1["headers"]["Content-Length"], "0");
}

/// The REST REQUEST authorizer event of the developer guide ("Input to a Lambda
/// authorizer"; aws-lambda-go `apigw-custom-auth-request-type-request.json`): no `routeArn`
/// or `identitySource` on REST; multi-value headers and query; the path after the stage;
/// the proxy event's requestContext.
#[test]
fn a_rest_request_authorizer_event_has_the_documented_shape() {
    let (ctx, headers) = mk_ctx(Protocol::Rest, "GET", "/request", "/dev/request?q=1");
    let e = authorizer_request(&ctx, &headers, &["v".into()], "arn:x", None);
    assert_eq!(
        keys(&e),
        BTreeSet::from([
            "type",
            "methodArn",
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
        ])
    );
    assert_eq!(e["path"], "/request");
    assert_eq!(e["pathParameters"], json!({}));
    assert_eq!(e["queryStringParameters"], json!({"q": "1"}));
    assert_eq!(e["headers"]["Host"], "api.example.com");
    assert_eq!(e["requestContext"]["accountId"], "000000000000");
}

/// HTTP API authorizer events, as the developer guide ("Working with AWS Lambda authorizers
/// for HTTP APIs") and aws-lambda-go's `apigw-v2-custom-authorizer-v2-request.json` /
/// `-v1-request.json` show them: 2.0 is the 2.0 proxy event without a body, with `type`,
/// `routeArn` and `identitySource` as a list; 1.0 the REST shape with `version`, and
/// `identitySource` and `authorizationToken` joined with commas.
#[test]
fn http_api_request_authorizer_events_have_both_documented_formats() {
    let (ctx, headers) = mk_ctx(Protocol::Http, "GET", "/request", "/dev/request?q=1");
    let values = ["user1".to_string(), "123".to_string()];
    for v2 in [
        authorizer_request(&ctx, &headers, &values, "arn:x", None),
        authorizer_request(
            &ctx,
            &headers,
            &values,
            "arn:x",
            Some(PayloadFormatVersion::V2),
        ),
    ] {
        assert_eq!(
            keys(&v2),
            BTreeSet::from([
                "version",
                "type",
                "routeArn",
                "identitySource",
                "routeKey",
                "rawPath",
                "rawQueryString",
                "cookies",
                "headers",
                "queryStringParameters",
                "requestContext",
                "stageVariables",
            ])
        );
        assert_eq!(v2["version"], "2.0");
        assert_eq!(v2["type"], "REQUEST");
        assert_eq!(v2["identitySource"], json!(["user1", "123"]));
        assert_eq!(v2["headers"]["host"], "api.example.com");
    }
    let v1 = authorizer_request(
        &ctx,
        &headers,
        &values,
        "arn:x",
        Some(PayloadFormatVersion::V1),
    );
    assert_eq!(v1["version"], "1.0");
    assert_eq!(v1["identitySource"], "user1,123");
    assert_eq!(v1["authorizationToken"], "user1,123");
    assert_eq!(v1["methodArn"], "arn:x");
    assert!(v1.get("routeArn").is_none());
    assert_eq!(v1["headers"]["host"], "api.example.com");
    assert_eq!(v1["queryStringParameters"], json!({"q": "1"}));
}

/// AWS keeps the client's spelling of header names in REST events (recorded:
/// `"tEsT-HEADeR": "aValUE"`, LocalStack test_apigateway_lambda.snapshot.json). The proxy
/// reads it from the request's raw head when the connection captured it, and only when that
/// head is this request's (same method and target); else Title-Case.
#[test]
fn rest_events_keep_the_clients_spelling_of_header_names() {
    let (mut ctx, headers) = mk_ctx_with(
        Protocol::Rest,
        "GET",
        "/f",
        "/dev/f?a=1",
        &[("test-header", "aValUE")],
    );
    ctx.raw_head = Some(Bytes::from_static(
        b"GET /dev/f?a=1 HTTP/1.1\r\nHOST: api.example.com\r\ntEsT-HEADeR: aValUE\r\nx-multi: a\r\n\r\n",
    ));
    let e = proxy_v1(&ctx, &headers, &Bytes::new());
    assert_eq!(e["headers"]["tEsT-HEADeR"], "aValUE");
    assert_eq!(e["headers"]["HOST"], "api.example.com");
    assert_eq!(e["multiValueHeaders"]["x-multi"], json!(["a", "b"]));
    assert_eq!(
        e["headers"]["User-Agent"], "agent",
        "not in the raw head: Title-Case"
    );
    // Another request's head is not used.
    ctx.raw_head = Some(Bytes::from_static(
        b"GET /dev/other HTTP/1.1\r\ntEsT-HEADeR: x\r\n\r\n",
    ));
    let e = proxy_v1(&ctx, &headers, &Bytes::new());
    assert_eq!(e["headers"]["Test-Header"], "aValUE");
}

#[test]
fn names_are_title_cased_per_dash_separated_word() {
    assert_eq!(title_case("x-amzn-trace-id"), "X-Amzn-Trace-Id");
    assert_eq!(title_case("content-type"), "Content-Type");
    assert_eq!(title_case("host"), "Host");
}
