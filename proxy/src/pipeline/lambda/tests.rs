//! Function results as AWS maps them. Sources: the developer guide ("Output format of a
//! Lambda function for proxy integration"; "Working with AWS Lambda proxy integrations for
//! HTTP APIs"), LocalStack's AWS-validated `test_aws_proxy_response_payload_format_validation`
//! (REST) and `..._v1` / `..._v2` (HTTP APIs) in tests/aws/services/apigateway, and the
//! answers recorded on API Gateway in aws/aws-lambda-dotnet's test tool
//! (`ApiGatewayResponseTestCases.cs`, `ApiGatewayResponseExtensionsJsonInference.cs`).

use super::*;
use PayloadFormatVersion::{V1, V2};

const REST: ResultRules = ResultRules {
    version: V1,
    rest: true,
    binary: false,
};
const REST_BINARY: ResultRules = ResultRules {
    binary: true,
    ..REST
};
const HTTP_V1: ResultRules = ResultRules {
    version: V1,
    rest: false,
    binary: false,
};
const HTTP_V2: ResultRules = ResultRules {
    version: V2,
    rest: false,
    binary: false,
};

async fn body_of(resp: Response<ProxyBody>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn a_rest_result_maps_status_headers_and_a_base64_body_for_binary_clients() {
    let result = br#"{
        "isBase64Encoded": true,
        "statusCode": 201,
        "headers": {"x-one": "1", "content-type": "application/octet-stream"},
        "multiValueHeaders": {"set-cookie": ["a=1", "b=2"]},
        "body": "AAEC/w=="
    }"#;
    let resp = map_result(REST_BINARY, result).unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["x-one"], "1");
    let cookies: Vec<_> = resp.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert_eq!(body_of(resp).await.as_ref(), &[0u8, 1, 2, 255]);
    // Without a binary Accept, the client gets the base64 text ("Return binary media from a
    // Lambda proxy integration": the first Accept decides).
    let resp = map_result(REST, result).unwrap();
    assert_eq!(body_of(resp).await.as_ref(), b"AAEC/w==");
}

/// "If you specify values for both headers and multiValueHeaders, API Gateway merges them
/// into a single list. If the same key-value pair is specified in both, only the values from
/// multiValueHeaders will appear" (developer guide); recorded: `Combined-Header:
/// single-value, multi-value1, multi-value2` (aws-lambda-dotnet,
/// `V1_CombinesSingleAndMultiValueHeaders`).
#[tokio::test]
async fn headers_and_multi_value_headers_are_merged() {
    let result = br#"{"statusCode": 200,
        "headers": {"Combined-Header": "single-value", "Same": "x"},
        "multiValueHeaders": {"Combined-Header": ["multi-value1", "multi-value2"], "Same": ["x"]}}"#;
    for rules in [REST, HTTP_V1] {
        let resp = map_result(rules, result).unwrap();
        let all: Vec<_> = resp.headers().get_all("combined-header").iter().collect();
        assert_eq!(all, ["single-value", "multi-value1", "multi-value2"]);
        let same: Vec<_> = resp.headers().get_all("same").iter().collect();
        assert_eq!(same, ["x"]);
    }
}

/// REST: `{"headers": ...}` without statusCode is 200 (LocalStack `invoke-api-only-headers`,
/// expected 200 on AWS); `{}` is 502; another field is 502. Default content type
/// `application/json` (REST), `text/plain; charset=utf-8` (HTTP APIs, recorded).
#[tokio::test]
async fn rest_results_without_status_code_are_200_but_an_empty_object_is_not() {
    let resp = map_result(REST, br#"{"headers": {"test-header": "value"}}"#).unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["test-header"], "value");
    assert_eq!(resp.headers()["content-type"], "application/json");
    for bad in [&b"{}"[..], br#"{"statusCode": 200, "wrongValue": "value"}"#] {
        assert!(map_result(REST, bad).is_err());
    }
    // HTTP APIs ignore unknown fields, but need statusCode in 1.0.
    let resp = map_result(HTTP_V1, br#"{"statusCode": 200, "wrongValue": "value"}"#).unwrap();
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
    for bad in [&b"{}"[..], br#"{"headers": {"a": "b"}}"#] {
        assert!(map_result(HTTP_V1, bad).is_err());
    }
    // Errors: 502 on REST, 500 on HTTP APIs.
    assert!(matches!(
        REST.error(String::new()),
        GatewayError::BadGateway(_)
    ));
    assert!(matches!(
        HTTP_V1.error(String::new()),
        GatewayError::HttpApiFunctionError(_)
    ));
}

/// 2.0 inference ("API Gateway makes the following assumptions if your Lambda function
/// returns valid JSON and doesn't return a statusCode", developer guide), as recorded: a JSON
/// string is the body without its quotes; a string that looks like an object but is not JSON
/// is 500; `{"errorMessage": ...}` (a function that threw) is 500; other values are the body.
#[tokio::test]
async fn v2_results_without_a_status_code_are_inferred() {
    for (result, body) in [
        (&br#""Hello from lambda""#[..], &b"Hello from lambda"[..]),
        (br#""{\"key\" : \"value\"}""#, br#"{"key" : "value"}"#),
        (br#"{"a": 1}"#, br#"{"a": 1}"#),
        (b"[1,2]", b"[1,2]"),
        (b"null", b"null"),
        (b"not json at all", b"not json at all"),
    ] {
        let resp = map_result(HTTP_V2, result).unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "application/json");
        assert_eq!(body_of(resp).await.as_ref(), body);
    }
    for bad in [
        &br#""{\"key\"}""#[..],
        br#"{"errorMessage": "test fake error message"}"#,
    ] {
        assert!(map_result(HTTP_V2, bad).is_err());
    }
    let resp = map_result(
        HTTP_V2,
        br#"{"statusCode": 302, "cookies": ["c=1"], "headers": {"location": "/x"}, "extra": 1}"#,
    )
    .unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["set-cookie"], "c=1");
    assert_eq!(resp.headers()["location"], "/x");
    assert_eq!(resp.headers()["content-type"], "text/plain; charset=utf-8");
}

#[test]
fn malformed_results_are_rejected() {
    for (rules, bad) in [
        (REST, &b"not json"[..]),
        (REST, br#""hello""#),
        (REST, br#"{"statusCode": 200, "extra": 1}"#),
        (REST, br#"{"statusCode": 200, "cookies": []}"#),
        (REST, br#"{"statusCode": "test"}"#),
        (REST, br#"{"statusCode": 99}"#),
        (REST, br#"{"statusCode": 200, "body": {"a": 1}}"#),
        (REST, br#"{"statusCode": 200, "headers": {"a": {"b": 1}}}"#),
        (
            REST,
            br#"{"statusCode": 200, "multiValueHeaders": {"test-multi-invalid": "value1"}}"#,
        ),
        (HTTP_V2, br#"{"statusCode": 200, "cookies": "c=1"}"#),
        (HTTP_V2, br#"{"statusCode": "x"}"#),
        (
            HTTP_V2,
            br#"{"statusCode": 200, "isBase64Encoded": true, "body": "%%%"}"#,
        ),
    ] {
        assert!(
            map_result(rules, bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    // A string status code is read (LocalStack: `{"statusCode": "201"}` is 201 on AWS).
    assert_eq!(
        map_result(REST, br#"{"statusCode": "201"}"#)
            .unwrap()
            .status(),
        201
    );
}
