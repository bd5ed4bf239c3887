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
