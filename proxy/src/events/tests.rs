//! The event formats against AWS's documented examples.

use super::*;
use crate::metrics::Metrics;
use crate::pipeline::ctx::query_pairs;
use crate::pipeline::route::{self, tests::*};
use crate::pool::Pools;
use crate::runtime::Runtime;
use portico_config::{GatewayConfig, Protocol, SCHEMA_VERSION};
use std::collections::BTreeSet;
use std::sync::Arc;

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

fn mk_ctx(protocol: Protocol, verb: &str, template: &str, uri: &str) -> (RequestCtx, HeaderMap) {
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
    let e = proxy_v1(&ctx, &headers, &Bytes::from_static(b"Hello from Lambda!"));
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
    let e = proxy_v2(&ctx, &headers, &Bytes::from_static(b"Hello from Lambda"));
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
    assert_eq!(proxy_v1(&ctx, &headers, &Bytes::new())["version"], "1.0");
}
