//! `RestApi`: one API definition (REST resources and methods, HTTP API route keys, or
//! WebSocket API route keys).
//!
//! Shapes follow `docs/manifest-spec.md` exactly. Fields described as "not supported yet" are
//! accepted by the schema and reported by `compile` with reason `NotYetSupported` (see
//! `compile::not_supported` and the manifest reference's "Not supported yet").

// Each `printcolumn(..)` repeats `type_`, which clippy mistakes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use super::common::{Condition, LocalObjectReference, SecretKeySelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Desired state of a `RestApi`.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "portico.dev",
    version = "v1alpha1",
    kind = "RestApi",
    plural = "restapis",
    namespaced,
    status = "RestApiStatus",
    derive = "PartialEq",
    shortname = "rapi",
    category = "portico",
    doc = "An API Gateway API: REST resources and methods, HTTP API routes, or WebSocket API routes.",
    printcolumn(name = "Protocol", type_ = "string", json_path = ".spec.protocol"),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestApiSpec {
    /// Display name; defaults to `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Free-form description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `REST` (default, `resources`), `HTTP` (`routes`) or `WEBSOCKET` (`routes` with
    /// WebSocket route keys: `$connect`, `$disconnect`, `$default` and custom keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<ApiProtocol>,
    /// Largest request body accepted, in bytes (default 10 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_payload_bytes: Option<i64>,
    /// Media types treated as binary (`image/png`, `image/*`, `*/*`), matched on the
    /// request's Content-Type and the backend response's Content-Type for `contentHandling`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binary_media_types: Vec<String>,
    /// Smallest response size, in bytes (0..10485760), that is gzip-compressed for clients
    /// sending `Accept-Encoding: gzip`; unset: no compression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_compression_size: Option<i64>,
    /// `HEADER` (default, `x-api-key`) or `AUTHORIZER` (the `usageIdentifierKey` a TOKEN or
    /// REQUEST authorizer answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_source: Option<ApiKeySource>,
    /// The same choice written as WebSocket (and HTTP) APIs write it on AWS:
    /// `$request.header.x-api-key` (default, = `HEADER`) or
    /// `$context.authorizer.usageIdentifierKey` (= `AUTHORIZER`). Anything else, or a value
    /// that disagrees with `apiKeySource`, is an error: the API is not served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_selection_expression: Option<String>,
    /// REST APIs: the resource paths (the resource tree, flattened) and their methods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<RestResource>,
    /// HTTP and WebSocket APIs: route keys and their integrations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<HttpRoute>,
    /// WebSocket APIs: where in a JSON message the route key is, `$request.body.<name>[.<name>...]`
    /// or `${request.body.<name>[.<name>...]}` (default `$request.body.action`); a message
    /// without it (or not JSON) goes to `$default`. Anything else is an error: the API is not
    /// served. Ignored on REST and HTTP APIs (a warning, unless an HTTP API's is AWS's only
    /// value `${request.method} ${request.path}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_selection_expression: Option<String>,
    /// WebSocket APIs: message and frame size limits, connection timeouts and the
    /// credentials allowed to call the `@connections` management API. Ignored on REST and
    /// HTTP APIs (a warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket: Option<WebSocketSettings>,
    /// Gateway response overrides keyed by AWS type (`THROTTLED`, `DEFAULT_4XX`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gateway_responses: BTreeMap<String, GatewayResponse>,
    /// Models (JSON Schema draft-04) by name. A `$ref` to another model of this API may be
    /// written `https://apigateway.amazonaws.com/restapis/<api>/models/<Model>`,
    /// `#/definitions/<Model>` or `<Model>`; nothing outside the API is ever fetched.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, Model>,
    /// Request validators by name, selected per method by `requestValidator`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_validators: BTreeMap<String, RequestValidator>,
    /// CORS: the gateway answers preflight requests (unless the resource defines an OPTIONS
    /// method) and adds CORS headers to every response, gateway responses included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
}

/// Kind of API: `REST` (default, resources and methods), `HTTP` (route keys) or
/// `WEBSOCKET` (WebSocket route keys).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ApiProtocol {
    /// REST API (v1): resources and methods.
    #[default]
    #[serde(rename = "REST")]
    Rest,
    /// HTTP API (v2): route keys.
    #[serde(rename = "HTTP")]
    Http,
    /// WebSocket API: `$connect`, `$disconnect`, `$default` and custom route keys, selected
    /// by the connection's lifecycle and `routeSelectionExpression`.
    #[serde(rename = "WEBSOCKET")]
    WebSocket,
}

/// A WebSocket API's limits and management credentials; unset fields have AWS's values.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebSocketSettings {
    /// Largest message, in bytes, 1..=16777216 (default 131072, AWS's 128 KB); a larger one
    /// closes the connection with status 1009.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_bytes: Option<i64>,
    /// Largest frame, in bytes, 1..=`maxMessageBytes` (default 32768, AWS's 32 KB, or
    /// `maxMessageBytes` when that is smaller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_frame_bytes: Option<i64>,
    /// Seconds a connection may stay without a message either way, 1..=7200 (default 600,
    /// AWS's 10 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_seconds: Option<i64>,
    /// Seconds a connection may last, 1..=86400 (default 7200, AWS's 2 hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_seconds: Option<i64>,
    /// Who may call the `@connections` management API (AWS Signature Version 4): each an
    /// access key id and the Secret key (same namespace) holding its secret access key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub management_credentials: Vec<ManagementCredential>,
}

/// An access key id allowed to call `@connections`, and where its secret access key is.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManagementCredential {
    /// The access key id a signed request names (`Credential=<id>/...`): 16..=128 letters,
    /// digits or `_` (AWS's pattern). Unique within the API.
    pub access_key_id: String,
    /// The key of a Secret in the RestApi's namespace holding the secret access key. Only
    /// this reference reaches the compiled config, never the value.
    pub secret_key_ref: SecretKeySelector,
}

/// Where the API key of a request comes from: `HEADER` (default, `x-api-key`) or
/// `AUTHORIZER` (the authorizer's `usageIdentifierKey`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ApiKeySource {
    /// The `x-api-key` header.
    #[default]
    #[serde(rename = "HEADER")]
    Header,
    /// The `usageIdentifierKey` a TOKEN or REQUEST authorizer answers.
    #[serde(rename = "AUTHORIZER")]
    Authorizer,
}

/// One resource path and its methods.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestResource {
    /// Resource path: literal segments, `{param}`, and a greedy `{proxy+}` as the last segment.
    pub path: String,
    /// Methods by HTTP verb: `GET`, `POST`, `PUT`, `PATCH`, `DELETE`, `HEAD`, `OPTIONS` or `ANY`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub methods: BTreeMap<String, Method>,
}

/// How callers are authorized: `NONE` (default), `JWT` or `COGNITO_USER_POOLS` (a JWT
/// Authorizer), or `CUSTOM` (a TOKEN or REQUEST Authorizer).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AuthorizationType {
    /// Open to everyone (default).
    #[default]
    #[serde(rename = "NONE")]
    None,
    /// A JWT Authorizer validates the caller's token.
    #[serde(rename = "JWT")]
    Jwt,
    /// A Lambda-style TOKEN or REQUEST Authorizer decides.
    #[serde(rename = "CUSTOM")]
    Custom,
    /// Cognito user pool tokens, validated by a JWT Authorizer.
    #[serde(rename = "COGNITO_USER_POOLS")]
    CognitoUserPools,
}

/// One method of a REST resource.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Method {
    /// `NONE` (default), `JWT` or `COGNITO_USER_POOLS` (need a JWT Authorizer), or `CUSTOM`
    /// (needs a TOKEN or REQUEST Authorizer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_type: Option<AuthorizationType>,
    /// The Authorizer (same namespace) that checks callers of this method: required unless
    /// `authorizationType` is `NONE`, and not allowed with `NONE`. A missing or invalid
    /// Authorizer is an error: the method answers 500 rather than being served unprotected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorizer_ref: Option<LocalObjectReference>,
    /// OAuth scopes (JWT Authorizers): the token must carry at least one of them, else 403;
    /// ignored with a TOKEN or REQUEST Authorizer (a warning).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_scopes: Vec<String>,
    /// Whether callers must present an API key of a usage plan of the stage (403 otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_required: Option<bool>,
    /// Request parameters, e.g. `method.request.querystring.page: true` (required); required
    /// ones are enforced by a validator with `validateRequestParameters` (400 BAD_REQUEST_PARAMETERS).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_parameters: BTreeMap<String, bool>,
    /// Request models by content type; the body is validated against them by a validator with
    /// `validateRequestBody` (400 BAD_REQUEST_BODY). Other content types use `application/json`'s.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_models: BTreeMap<String, String>,
    /// Name of the request validator (in `spec.requestValidators`) applied to this method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_validator: Option<String>,
    /// Method responses: the statuses (and `method.response.header.*` names) the integration
    /// responses of an HTTP or MOCK integration may answer with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub method_responses: Vec<MethodResponse>,
    /// How the method reaches its backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<Integration>,
}

/// A method response declaration.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MethodResponse {
    /// Status code, e.g. `200`.
    pub status_code: i32,
    /// Response parameters, e.g. `method.response.header.x-id: true`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub response_parameters: BTreeMap<String, bool>,
    /// Response models by content type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub response_models: BTreeMap<String, String>,
}

/// The kind of backend call.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IntegrationType {
    /// Full pass-through to an HTTP endpoint.
    #[default]
    #[serde(rename = "HTTP_PROXY")]
    HttpProxy,
    /// HTTP endpoint with mappings.
    #[serde(rename = "HTTP")]
    Http,
    /// Answered by the gateway itself (`mockResponse`).
    #[serde(rename = "MOCK")]
    Mock,
    /// Lambda proxy: a function's HTTP invoke endpoint (`uri`).
    #[serde(rename = "AWS_PROXY")]
    AwsProxy,
    /// AWS service integration: not supported yet (an error; the method answers 500).
    #[serde(rename = "AWS")]
    Aws,
}

/// What to do with a request whose content type has no template:
/// `WHEN_NO_MATCH` (default), `WHEN_NO_TEMPLATES` or `NEVER`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PassthroughBehavior {
    /// Pass through when no template matches (default).
    #[default]
    #[serde(rename = "WHEN_NO_MATCH")]
    WhenNoMatch,
    /// Pass through only when no template is defined at all.
    #[serde(rename = "WHEN_NO_TEMPLATES")]
    WhenNoTemplates,
    /// Never pass through: answer 415.
    #[serde(rename = "NEVER")]
    Never,
}

/// How payloads are converted: `CONVERT_TO_TEXT` or `CONVERT_TO_BINARY`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentHandling {
    /// Convert binary payloads to base64 text.
    #[serde(rename = "CONVERT_TO_TEXT")]
    ConvertToText,
    /// Convert base64 text payloads to binary.
    #[serde(rename = "CONVERT_TO_BINARY")]
    ConvertToBinary,
}

/// The backend call of a method or route.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Integration {
    /// `HTTP_PROXY`, `HTTP`, `MOCK`, `AWS_PROXY`, or `AWS` (not supported yet: an error, the
    /// method answers 500).
    #[serde(rename = "type")]
    pub type_: IntegrationType,
    /// Endpoint URI (HTTP types); may use `${stageVariables.name}` and `{param}` placeholders.
    /// With `serviceRef`, only the path part (`/content/{id}`, default `/`).
    /// `AWS_PROXY`: the function's invoke endpoint
    /// (`http://fn:8080/2015-03-31/functions/function/invocations`); a URI whose path does
    /// not end in `/invocations` gets `/2015-03-31/functions/function/invocations` appended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// A Kubernetes Service to call (HTTP types): the request goes to
    /// `http://<name>.<namespace>.svc:<port>` followed by `uri`. The Service must exist and
    /// declare the port; another namespace's Service must opt in with the annotation
    /// `portico.dev/allow-references-from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_ref: Option<ServiceReference>,
    /// Method used to call the backend; defaults to the request's method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_method: Option<String>,
    /// Integration timeout in milliseconds, 1..300000 (default 29000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_in_millis: Option<i64>,
    /// The fixed response of a `MOCK` integration (optional when `requestTemplates` pick the
    /// status and `integrationResponses` build the answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock_response: Option<MockResponse>,
    /// `AWS_PROXY`: the proxy event format, `1.0` (REST APIs: the only one) or `2.0`
    /// (HTTP APIs: the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_format_version: Option<String>,
    /// Integration request parameters (HTTP, MOCK, HTTP_PROXY), e.g.
    /// `integration.request.header.x: method.request.path.id`; sources are
    /// `method.request.{path,querystring,header}.<name>`, `context.<name>`,
    /// `stageVariables.<name>` and `'literal'`. Body and multi-value mappings are not
    /// supported yet (an error; the method answers 500); on AWS_PROXY no mapping is (a
    /// warning; ignored).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_parameters: BTreeMap<String, String>,
    /// Request mapping templates (VTL) by content type (HTTP, MOCK; ignored on HTTP_PROXY).
    /// WebSocket routes: by template key (`$default`, or the key `templateSelectionExpression`
    /// names).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_templates: BTreeMap<String, String>,
    /// WebSocket routes: which `requestTemplates` entry applies to a message: `\$default`
    /// (default) or a literal template key (that key's template, else `$default`'s). Other
    /// expressions are not supported (a warning; `$default` is used). Ignored on REST and
    /// HTTP APIs (a warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_selection_expression: Option<String>,
    /// `WHEN_NO_MATCH` (default), `WHEN_NO_TEMPLATES` or `NEVER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passthrough_behavior: Option<PassthroughBehavior>,
    /// `CONVERT_TO_TEXT` (a binary request payload becomes base64 before the template) or
    /// `CONVERT_TO_BINARY` (the base64 text sent to the backend is decoded); HTTP, MOCK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_handling: Option<ContentHandling>,
    /// Integration responses (HTTP, MOCK), selected by `selectionPattern` on the backend
    /// status; the one without a pattern is the default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub integration_responses: Vec<IntegrationResponse>,
    /// REST APIs: request values that tell the method's cached answers apart (with the
    /// stage cache on), each `method.request.path.<name>`, `method.request.querystring.<name>`
    /// or `method.request.header.<Name>`; values of unlisted ones are not part of the key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_key_parameters: Vec<String>,
    /// REST APIs: methods with the same namespace (and key values) share cached answers;
    /// default: the method's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_namespace: Option<String>,
}

/// A Service port to call, in this namespace unless `namespace` is set.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceReference {
    /// Name of the Service.
    pub name: String,
    /// Namespace of the Service; defaults to the RestApi's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Port of the Service (one of its `spec.ports[].port`).
    pub port: i32,
}

/// The fixed response of a `MOCK` integration.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MockResponse {
    /// Status code (100..599).
    pub status_code: i32,
    /// Response headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// One integration response.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntegrationResponse {
    /// Regular expression that must match the whole backend status code; none for the
    /// default response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection_pattern: Option<String>,
    /// Status code of the method response this maps to.
    pub status_code: i32,
    /// Response parameters, e.g. `method.response.header.x: integration.response.header.y`
    /// (or `integration.response.body`, `'literal'`, `context.<name>`, `stageVariables.<name>`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub response_parameters: BTreeMap<String, String>,
    /// Response mapping templates (VTL) by content type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub response_templates: BTreeMap<String, String>,
    /// `CONVERT_TO_TEXT` (a binary backend body, per `binaryMediaTypes`, becomes base64
    /// before the template) or `CONVERT_TO_BINARY` (the base64 text answered is decoded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_handling: Option<ContentHandling>,
}

/// One HTTP API or WebSocket API route.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    /// HTTP APIs: `"<METHOD> <path>"` with an HTTP verb or `ANY`, or `$default`. WebSocket
    /// APIs: `$connect`, `$disconnect`, `$default`, or a custom key (1..=128 characters, not
    /// starting with `$`) that `routeSelectionExpression` selects.
    pub route_key: String,
    /// `NONE` (default), `JWT` or `COGNITO_USER_POOLS` (need a JWT Authorizer), or `CUSTOM`
    /// (needs a TOKEN or REQUEST Authorizer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_type: Option<AuthorizationType>,
    /// The Authorizer (same namespace) that checks callers of this route: required unless
    /// `authorizationType` is `NONE`, and not allowed with `NONE`. A missing or invalid
    /// Authorizer is an error: the route answers 500 rather than being served unprotected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorizer_ref: Option<LocalObjectReference>,
    /// OAuth scopes (JWT Authorizers): the token must carry at least one of them, else 403;
    /// ignored with a TOKEN or REQUEST Authorizer (a warning).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_scopes: Vec<String>,
    /// WebSocket APIs, `$connect` only: the client must present an API key of a usage plan
    /// of the stage to connect. Elsewhere (other WebSocket routes, HTTP APIs, which have no
    /// API keys on AWS) `true` is an error: the route answers 500.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_required: Option<bool>,
    /// WebSocket APIs: `$default` makes the route two-way (the integration's answer is sent
    /// back on the connection); unset: one-way. Only `$default` is valid (as on AWS);
    /// ignored on `$connect`, `$disconnect` and HTTP APIs (a warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_response_selection_expression: Option<String>,
    /// WebSocket APIs: models (of `spec.models`) a message is validated against, by key; the
    /// key `modelSelectionExpression` selects (`$default` when unset or when it selects no
    /// key). A message that does not match gets AWS's `{"message": "Invalid request body"}`
    /// frame and does not reach the integration.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_models: BTreeMap<String, String>,
    /// WebSocket APIs: which of `requestModels` applies: `$default` or a literal key
    /// (expressions reading the message are not supported yet: `$default` is used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_selection_expression: Option<String>,
    /// How the route reaches its backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<Integration>,
}

/// A gateway response override.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayResponse {
    /// Status code to answer with instead of the type's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<i32>,
    /// Extra response headers (literal values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub response_headers: BTreeMap<String, String>,
    /// Body templates by content type; only `application/json` is served today.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub response_templates: BTreeMap<String, String>,
}

/// A model: a JSON Schema (draft-04) for request or response bodies.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Model {
    /// Content type the model applies to (default `application/json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Free-form description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema document, as an object.
    #[schemars(schema_with = "free_form_object")]
    pub schema: serde_json::Value,
}

/// The schema of a free-form JSON object: typed, with unknown fields preserved, so that the
/// CRD stays structural.
fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A request validator.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestValidator {
    /// Validate the request body against the method's request model.
    #[serde(default)]
    pub validate_request_body: bool,
    /// Validate required request parameters.
    #[serde(default)]
    pub validate_request_parameters: bool,
}

/// CORS settings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cors {
    /// Allowed origins (`https://app.example.com`, `http://localhost:3000`) or `*` (not with
    /// `allowCredentials`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<String>,
    /// Allowed methods, or `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    /// Allowed request headers, or `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// Response headers exposed to the browser.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// Seconds a preflight answer may be cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i64>,
    /// Whether credentials are allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
}

/// Observed state of a `RestApi`, written by the operator.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RestApiStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions (`Accepted`, `Ready`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
