//! Request validation: required parameters (400 BAD_REQUEST_PARAMETERS with AWS's message),
//! bodies against models with `$ref` (400 BAD_REQUEST_BODY), `validationErrorString` in a
//! gateway response template, and a validated body still reaching the backend.

use http::Method;
use portico_e2e::yaml::{http_proxy, rest_api, stage};
use portico_e2e::{Backend, Client, Proxy};

fn api(backend: &str) -> String {
    rest_api(
        "pets",
        &format!(
            r#"  models:
    Owner: {{schema: {{type: object, required: [id], properties: {{id: {{type: integer}}}}}}}}
    Pet:
      schema:
        $schema: 'http://json-schema.org/draft-04/schema#'
        type: object
        required: [name]
        properties:
          name: {{type: string}}
          owner: {{$ref: 'https://apigateway.amazonaws.com/restapis/abc123/models/Owner'}}
  requestValidators:
    all: {{validateRequestBody: true, validateRequestParameters: true}}
  gatewayResponses:
    BAD_REQUEST_BODY:
      responseTemplates:
        application/json: '{{"message": "$context.error.validationErrorString", "type": "$context.error.responseType"}}'
  resources:
    - path: /pets/{{id}}
      methods:
        POST:
          requestValidator: all
          requestParameters:
            method.request.path.id: true
            method.request.querystring.page: true
            method.request.header.x-trace: true
          requestModels: {{application/json: Pet}}
          integration: {}
"#,
            http_proxy(&format!("http://{backend}/pets/{{id}}"))
        ),
    )
}

#[tokio::test]
async fn validation_answers_400_for_missing_parameters_and_invalid_bodies() {
    let be = Backend::start("pets").await;
    let proxy = Proxy::start(&[
        ("api.yaml", &api(&be.host_port())),
        (
            "stage.yaml",
            &stage("pets-dev", "pets", "  stageName: dev\n"),
        ),
    ])
    .await;
    let c = Client::new();
    let json = [("content-type", "application/json")];

    // Both parameters missing: parameters are checked first, listed in key order.
    let r = c
        .send(Method::POST, &proxy.url("/dev/pets/7"), &json, "{}")
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"message": "Missing required request parameters: [x-trace, page]"})
    );
    assert_eq!(r.header("x-amzn-errortype"), "BadRequestException");

    let with_params = [("content-type", "application/json"), ("x-trace", "t1")];
    let url = proxy.url("/dev/pets/7?page=1");
    // Invalid body against Pet -> Owner ($ref): the override template shows the errors.
    let r = c
        .send(
            Method::POST,
            &url,
            &with_params,
            r#"{"name": "rex", "owner": {"id": "x"}}"#,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({
            "message": "[/owner/id: 'x' is not of type 'integer']",
            "type": "BAD_REQUEST_BODY"
        })
    );
    // Not JSON at all.
    let r = c.send(Method::POST, &url, &with_params, "{nope").await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("[Invalid JSON")
    );
    assert!(
        be.received().is_empty(),
        "the backend saw an invalid request"
    );

    // Valid: the buffered body reaches the backend unchanged.
    let body = r#"{"name": "rex", "owner": {"id": 1}}"#;
    let r = c.send(Method::POST, &url, &with_params, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let got = be.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].path, "/pets/7");
    assert_eq!(got[0].body.as_ref(), body.as_bytes());
}
