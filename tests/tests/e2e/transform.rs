//! Mapping templates and integration responses (HTTP and MOCK integrations): parameter
//! mappings, request templates, passthrough/415, integration response selection, method
//! responses, and the `portico-proxy vtl` command.

use http::Method;
use portico_e2e::yaml::{rest_api, stage};
use portico_e2e::{Backend, Client, Proxy, proxy_bin};

async fn serve(api: &str, stage_extra: &str) -> Proxy {
    let stage_extra = format!("  stageName: dev\n{stage_extra}");
    Proxy::start(&[
        ("api.yaml", api),
        ("stage.yaml", &stage("s", "t", &stage_extra)),
    ])
    .await
}

#[tokio::test]
async fn request_template_reshapes_the_body_and_mappings_fill_headers_and_query() {
    let be = Backend::start("pets").await;
    // After the AWS developer guide's PetStore request mapping: the template reads the
    // payload through $input.path/$input.json and the path through $input.params.
    let api = rest_api(
        "t",
        &format!(
            r#"  resources:
    - path: /pets/{{petId}}
      methods:
        POST:
          integration:
            type: HTTP
            uri: "http://{}/backend/pets/{{petId}}"
            requestParameters:
              integration.request.header.x-pet-id: method.request.path.petId
              integration.request.header.x-stage: context.stage
              integration.request.header.x-lit: "'fixed'"
              integration.request.querystring.mode: method.request.querystring.mode
              integration.request.querystring.src: stageVariables.src
            requestTemplates:
              application/json: |
                #set($body = $input.path('$'))
                #set($context.requestOverride.header.x-override = "ov")
                {{"petId": "$input.params('petId')", "kind": "$body.type", "price": $body.price, "tags": $input.json('$.tags')}}
"#,
            be.host_port()
        ),
    );
    let proxy = serve(&api, "  variables: {src: e2e}\n").await;
    let r = Client::new()
        .send(
            Method::POST,
            &proxy.url("/dev/pets/42?mode=full&other=2"),
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("x-not-mapped", "1"),
            ],
            br#"{"type": "dog", "price": 249.99, "tags": ["a", "b"]}"#.to_vec(),
        )
        .await;
    // No integration responses: the backend's response passes through.
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-backend"), "pets");

    let got = be.received();
    assert_eq!(got.len(), 1);
    let got = &got[0];
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, "/backend/pets/42");
    let body: serde_json::Value = serde_json::from_slice(&got.body).expect("JSON body");
    assert_eq!(
        body,
        serde_json::json!({"petId": "42", "kind": "dog", "price": 249.99, "tags": ["a", "b"]})
    );
    assert_eq!(got.header("content-type"), "application/json");
    assert_eq!(got.header("x-pet-id"), "42");
    assert_eq!(got.header("x-stage"), "dev");
    assert_eq!(got.header("x-lit"), "fixed");
    assert_eq!(got.header("x-override"), "ov");
    // As on AWS, only mapped headers and query parameters reach an HTTP integration.
    assert_eq!(got.header("x-not-mapped"), "");
    let mut query: Vec<&str> = got.query.as_deref().unwrap_or("").split('&').collect();
    query.sort_unstable();
    assert_eq!(query, ["mode=full", "src=e2e"]);
}

#[tokio::test]
async fn mock_status_comes_from_the_request_template_and_the_body_from_the_response_template() {
    let api = rest_api(
        "t",
        r#"  resources:
    - path: /things
      methods:
        GET:
          methodResponses:
            - {statusCode: 201, responseParameters: {method.response.header.x-mock: true}}
          integration:
            type: MOCK
            requestTemplates: {application/json: '{"statusCode": 201}'}
            integrationResponses:
              - statusCode: 201
                responseParameters: {method.response.header.x-mock: "'yes'"}
                responseTemplates:
                  application/json: '{"created": true, "stage": "$context.stage", "id": "$input.params(''id'')"}'
"#,
    );
    let proxy = serve(&api, "").await;
    let r = Client::new().get(&proxy.url("/dev/things?id=9")).await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("x-mock"), "yes");
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(
        r.json(),
        serde_json::json!({"created": true, "stage": "dev", "id": "9"})
    );
}

#[tokio::test]
async fn passthrough_behaviours_answer_415_as_aws() {
    let be = Backend::start("b").await;
    let integ = |path: &str, extra: &str| {
        format!(
            r#"    - path: {path}
      methods:
        POST:
          integration:
            type: HTTP
            uri: "http://{}{path}"
{extra}"#,
            be.host_port()
        )
    };
    let tpl =
        "            requestTemplates: {application/json: '{\"wrapped\": $input.json(''$'')}'}\n";
    let api = rest_api(
        "t",
        &format!(
            "  resources:\n{}{}{}{}",
            integ(
                "/never",
                &format!("            passthroughBehavior: NEVER\n{tpl}")
            ),
            integ(
                "/no-templates",
                &format!("            passthroughBehavior: WHEN_NO_TEMPLATES\n{tpl}")
            ),
            integ(
                "/no-templates-none",
                "            passthroughBehavior: WHEN_NO_TEMPLATES\n            requestParameters: {integration.request.header.x-a: \"'1'\"}\n"
            ),
            integ("/no-match", tpl),
        ),
    );
    let proxy = serve(&api, "").await;
    let c = Client::new();
    let post = |path: &'static str, ct: Option<&'static str>, body: &'static str| {
        let c = &c;
        let url = proxy.url(path);
        async move {
            let headers: Vec<(&str, &str)> =
                ct.map(|ct| ("content-type", ct)).into_iter().collect();
            c.send(Method::POST, &url, &headers, body.as_bytes().to_vec())
                .await
        }
    };

    for path in ["/dev/never", "/dev/no-templates"] {
        let r = post(path, Some("text/plain"), "hello").await;
        assert_eq!(r.status, 415, "{path}: {}", r.text());
        assert_eq!(
            r.json(),
            serde_json::json!({"message": "Unsupported Media Type"})
        );
        // BadRequestException, as AWS answers UNSUPPORTED_MEDIA_TYPE (validated against AWS
        // in LocalStack's gateway_response.py: `UnsupportedMediaTypeError`).
        assert_eq!(r.header("x-amzn-errortype"), "BadRequestException");
        let r = post(path, Some("application/json"), r#"{"a":1}"#).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    // WHEN_NO_TEMPLATES without templates, and WHEN_NO_MATCH: unmapped types pass through.
    for path in ["/dev/no-templates-none", "/dev/no-match"] {
        let r = post(path, Some("text/plain"), "hello").await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    // No Content-Type: the application/json template applies, as on AWS.
    let r = post("/dev/no-match", None, r#"{"a":1}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The template reads a payload that is not JSON: 400 BAD_REQUEST_BODY.
    let r = post("/dev/no-match", Some("application/json"), "{nope").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"message": "Invalid request body"})
    );

    let got = be.received();
    let bodies: Vec<(String, String, String)> = got
        .iter()
        .map(|g| {
            (
                g.path.clone(),
                g.header("content-type").to_string(),
                String::from_utf8_lossy(&g.body).into_owned(),
            )
        })
        .collect();
    let expect = |p: &str, ct: &str, b: &str| (p.to_string(), ct.to_string(), b.to_string());
    assert_eq!(
        bodies,
        [
            expect("/never", "application/json", r#"{"wrapped": {"a":1}}"#),
            expect(
                "/no-templates",
                "application/json",
                r#"{"wrapped": {"a":1}}"#
            ),
            expect("/no-templates-none", "text/plain", "hello"),
            expect("/no-match", "text/plain", "hello"),
            expect("/no-match", "application/json", r#"{"wrapped": {"a":1}}"#),
        ]
    );
}

#[tokio::test]
async fn integration_responses_are_selected_by_backend_status() {
    let be = Backend::start("items").await;
    let api = rest_api(
        "t",
        &format!(
            r#"  resources:
    - path: /items/{{id}}
      methods:
        GET:
          methodResponses:
            - {{statusCode: 200, responseParameters: {{method.response.header.x-backend: true}}}}
            - {{statusCode: 404}}
          integration:
            type: HTTP
            uri: "http://{}/items/{{id}}"
            requestParameters:
              integration.request.header.x-echo-status: method.request.header.x-want
            integrationResponses:
              - selectionPattern: '4\d{{2}}'
                statusCode: 404
                responseTemplates:
                  application/json: '{{"error": "not found", "path": "$input.path(''$.path'')"}}'
              - selectionPattern: '50[0-9]'
                statusCode: 502
              - selectionPattern: '2'
                statusCode: 404
              - statusCode: 200
                responseParameters:
                  method.response.header.x-backend: integration.response.header.x-backend
"#,
            be.host_port()
        ),
    );
    let proxy = serve(&api, "").await;
    let c = Client::new();
    let get = |want: Option<&'static str>| {
        let c = &c;
        let url = proxy.url("/dev/items/5");
        async move {
            let headers: Vec<(&str, &str)> = want.map(|w| ("x-want", w)).into_iter().collect();
            c.send(Method::GET, &url, &headers, Vec::new()).await
        }
    };

    // Backend 404 -> pattern 4\d{2} -> method response 404 with its template.
    let r = get(Some("404")).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(
        r.json(),
        serde_json::json!({"error": "not found", "path": "/items/5"})
    );
    // Only mapped headers come back.
    assert_eq!(r.header("x-backend"), "");

    // Backend 200 -> no pattern matches the whole status ('2' does not) -> the default:
    // the body passes through, x-backend is mapped.
    let r = get(None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-backend"), "items");
    assert_eq!(r.json()["path"], "/items/5");

    // Backend 503 -> 502, which has no method response: 500 as AWS.
    let r = get(Some("503")).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"message": "Internal server error"})
    );
}

#[tokio::test]
async fn content_handling_converts_binary_payloads_per_binary_media_types() {
    let be = Backend::start("bin").await;
    // After the AWS developer guide's binary-support examples: an image posted to a JSON
    // backend arrives base64 inside the template; a binary backend body is answered as
    // base64 text (CONVERT_TO_TEXT), and base64 text as binary (CONVERT_TO_BINARY).
    let api = rest_api(
        "t",
        &format!(
            r#"  binaryMediaTypes: [image/*, application/octet-stream]
  resources:
    - path: /upload
      methods:
        POST:
          integration:
            type: HTTP
            uri: "http://{be}/upload"
            contentHandling: CONVERT_TO_TEXT
            requestTemplates: {{image/png: '{{"image": "$input.body"}}'}}
    - path: /download
      methods:
        GET:
          methodResponses: [{{statusCode: 200}}]
          integration:
            type: HTTP
            uri: "http://{be}/download"
            requestParameters: {{integration.request.header.x-echo-bytes: "'5'"}}
            integrationResponses:
              - statusCode: 200
                contentHandling: CONVERT_TO_TEXT
                responseParameters: {{method.response.header.content-type: "'text/plain'"}}
    - path: /decode
      methods:
        GET:
          methodResponses: [{{statusCode: 200}}]
          integration:
            type: MOCK
            requestTemplates: {{application/json: '{{"statusCode": 200}}'}}
            integrationResponses:
              - statusCode: 200
                contentHandling: CONVERT_TO_BINARY
                responseTemplates: {{application/json: aGVsbG8gYmluYXJ5}}
"#,
            be = be.host_port()
        ),
    );
    let proxy = serve(&api, "").await;
    let c = Client::new();
    let png: Vec<u8> = vec![0x89, b'P', b'N', b'G', 0, 0xff];
    let r = c
        .send(
            Method::POST,
            &proxy.url("/dev/upload"),
            &[("content-type", "image/png")],
            png.clone(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = be.received();
    assert_eq!(base64_of(&png), "iVBORwD/");
    assert_eq!(
        String::from_utf8_lossy(&got[0].body),
        r#"{"image": "iVBORwD/"}"#
    );
    assert_eq!(got[0].header("content-type"), "image/png");

    let r = c.get(&proxy.url("/dev/download")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let want = base64_of(&portico_e2e::pattern(5));
    assert_eq!(r.text(), want);
    assert_eq!(r.header("content-type"), "text/plain");

    let r = c.get(&proxy.url("/dev/decode")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "hello binary");
}

fn base64_of(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &x)| acc | (u32::from(x) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[tokio::test]
async fn responses_above_minimum_compression_size_are_gzipped_for_clients_that_accept_it() {
    use std::io::Read as _;
    let be = Backend::start("z").await;
    let api = rest_api(
        "t",
        &format!(
            r#"  minimumCompressionSize: 100
  resources:
    - path: /{{proxy+}}
      methods:
        ANY: {{integration: {{type: HTTP_PROXY, uri: "http://{}/{{proxy}}"}}}}
"#,
            be.host_port()
        ),
    );
    let proxy = serve(&api, "").await;
    let c = Client::new();
    let get = |n: &'static str, enc: Option<&'static str>| {
        let c = &c;
        let url = proxy.url("/dev/x");
        async move {
            let mut headers = vec![("x-echo-bytes", n)];
            headers.extend(enc.map(|e| ("accept-encoding", e)));
            c.send(Method::GET, &url, &headers, Vec::new()).await
        }
    };
    let r = get("1000", Some("br, gzip")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), "gzip");
    assert_eq!(r.header("vary"), "Accept-Encoding");
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&r.body[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, portico_e2e::pattern(1000));
    assert!(r.body.len() < 1000);
    // Below the minimum, or without Accept-Encoding: gzip, the body is sent as is.
    for (n, enc) in [
        ("99", Some("gzip")),
        ("1000", None),
        ("1000", Some("gzip;q=0")),
    ] {
        let r = get(n, enc).await;
        assert_eq!(r.header("content-encoding"), "", "{n} {enc:?}");
        assert_eq!(r.body.len(), n.parse::<usize>().unwrap());
    }
}

#[tokio::test]
async fn template_render_errors_answer_500() {
    let api = rest_api(
        "t",
        r#"  resources:
    - path: /boom
      methods:
        GET:
          methodResponses: [{statusCode: 200}]
          integration:
            type: MOCK
            requestTemplates: {application/json: '{"statusCode": 200}'}
            integrationResponses:
              - statusCode: 200
                responseTemplates: {application/json: '$context.stage.substring(10)'}
"#,
    );
    let proxy = serve(&api, "").await;
    let r = Client::new().get(&proxy.url("/dev/boom")).await;
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"message": "Internal server error"})
    );
    assert!(
        proxy.logs().contains("response template"),
        "{}",
        proxy.logs()
    );
}

#[test]
fn vtl_command_renders_and_reports_errors_with_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let tpl = dir.path().join("t.vm");
    let body = dir.path().join("body.json");
    // The AWS developer guide's "photos" example, reshaped.
    std::fs::write(
        &tpl,
        "#set($inputRoot = $input.path('$'))\n{\"photos\": [\n#foreach($p in $inputRoot.photos)\n  {\"id\": \"$p.id\", \"title\": \"$p.title\"}#if($foreach.hasNext),#end\n#end\n], \"stage\": \"$context.stage\", \"q\": \"$input.params('q')\", \"v\": \"$stageVariables.v\"}",
    )
    .unwrap();
    std::fs::write(
        &body,
        r#"{"photos": [{"id": 1, "title": "a"}, {"id": 2, "title": "b"}]}"#,
    )
    .unwrap();
    let out = std::process::Command::new(proxy_bin())
        .arg("vtl")
        .arg("--template")
        .arg(&tpl)
        .arg("--body")
        .arg(&body)
        .arg("--input")
        .arg(r#"{"params": {"querystring": {"q": "x"}}, "context": {"stage": "dev"}, "stageVariables": {"v": "1"}}"#)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    });
    assert_eq!(
        v,
        serde_json::json!({"photos": [{"id": "1", "title": "a"}, {"id": "2", "title": "b"}], "stage": "dev", "q": "x", "v": "1"})
    );

    std::fs::write(&tpl, "{\n  \"a\": #if(\n}").unwrap();
    let out = std::process::Command::new(proxy_bin())
        .args(["vtl", "--template"])
        .arg(&tpl)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("t.vm:3:1: syntax error"), "{err}");
    assert!(out.stdout.is_empty());
}
