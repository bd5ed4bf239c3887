//! `RestApi`: one API definition (REST resources and methods, or HTTP API route keys).
//!
//! Shapes follow `docs/manifest-spec.md` exactly. Fields marked "(later)" are accepted by the
//! schema now and reported by `compile` (see `compile::not_supported`).

// Each `printcolumn(..)` repeats `type_`, which clippy mistakes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use super::common::{Condition, LocalObjectReference};
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
    doc = "An API Gateway API: REST resources and methods, or HTTP API routes.",
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
    /// `REST` (default), `HTTP` or `WEBSOCKET` (later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<ApiProtocol>,
    /// Largest request body accepted, in bytes (default 10 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_payload_bytes: Option<i64>,
    /// (later) Media types served as binary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binary_media_types: Vec<String>,
    /// (later) Smallest response size, in bytes, that is compressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_compression_size: Option<i64>,
    /// `HEADER` (default, `x-api-key`) or `AUTHORIZER` (later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_source: Option<ApiKeySource>,
    /// REST APIs: the resource paths (the resource tree, flattened) and their methods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<RestResource>,
    /// HTTP APIs: route keys and their integrations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<HttpRoute>,
    /// (later) WebSocket APIs: expression selecting the route key, e.g. `$request.body.action`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_selection_expression: Option<String>,
    /// Gateway response overrides keyed by AWS type (`THROTTLED`, `DEFAULT_4XX`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gateway_responses: BTreeMap<String, GatewayResponse>,
    /// (later) Models (JSON Schema draft-04) by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, Model>,
    /// (later) Request validators by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_validators: BTreeMap<String, RequestValidator>,
    /// (later) CORS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
}

/// Kind of API: `REST` (default, resources and methods), `HTTP` (route keys) or
/// `WEBSOCKET` (later).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ApiProtocol {
    /// REST API (v1): resources and methods.
    #[default]
    #[serde(rename = "REST")]
    Rest,
    /// HTTP API (v2): route keys.
    #[serde(rename = "HTTP")]
    Http,
    /// WebSocket API (later).
    #[serde(rename = "WEBSOCKET")]
    WebSocket,
}

/// Where the API key of a request comes from: `HEADER` (default, `x-api-key`) or
/// `AUTHORIZER` (later).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ApiKeySource {
    /// The `x-api-key` header.
    #[default]
    #[serde(rename = "HEADER")]
    Header,
    /// The authorizer's `usageIdentifierKey` (later).
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

/// How callers are authorized: `NONE` (default), or (later) `JWT`, `CUSTOM`,
/// `COGNITO_USER_POOLS`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AuthorizationType {
    /// Open to everyone (default).
    #[default]
    #[serde(rename = "NONE")]
    None,
    /// (later) JWT authorizer.
    #[serde(rename = "JWT")]
    Jwt,
    /// (later) Lambda-style TOKEN or REQUEST authorizer.
    #[serde(rename = "CUSTOM")]
    Custom,
    /// (later) Cognito user pool authorizer (JWT).
    #[serde(rename = "COGNITO_USER_POOLS")]
    CognitoUserPools,
}

/// One method of a REST resource.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Method {
    /// `NONE` (default), or (later) `JWT`, `CUSTOM`, `COGNITO_USER_POOLS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_type: Option<AuthorizationType>,
    /// (later) The Authorizer object used by this method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorizer_ref: Option<LocalObjectReference>,
    /// (later) OAuth scopes required by the method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_scopes: Vec<String>,
    /// Whether callers must present an API key of a usage plan of the stage (403 otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_required: Option<bool>,
    /// (later) Request parameters, e.g. `method.request.querystring.page: true` (required).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_parameters: BTreeMap<String, bool>,
    /// (later) Request models by content type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_models: BTreeMap<String, String>,
    /// (later) Name of the request validator applied to this method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_validator: Option<String>,
    /// (later) Method responses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub method_responses: Vec<MethodResponse>,
    /// How the method reaches its backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<Integration>,
}

/// (later) A method response declaration.
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
    /// (later) Lambda-style function proxy.
    #[serde(rename = "AWS_PROXY")]
    AwsProxy,
    /// (later) AWS service integration.
    #[serde(rename = "AWS")]
    Aws,
}

/// (later) What to do with a request whose content type has no template:
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

/// (later) How payloads are converted: `CONVERT_TO_TEXT` or `CONVERT_TO_BINARY`.
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
    /// `HTTP_PROXY`, `HTTP`, `MOCK`, or (later) `AWS_PROXY`, `AWS`.
    #[serde(rename = "type")]
    pub type_: IntegrationType,
    /// Endpoint URI (HTTP types); may use `${stageVariables.name}` and `{param}` placeholders.
    /// With `serviceRef`, only the path part (`/content/{id}`, default `/`).
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
    /// The fixed response of a `MOCK` integration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock_response: Option<MockResponse>,
    /// (later) Integration request parameters, e.g. `integration.request.header.x: method.request.path.id`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_parameters: BTreeMap<String, String>,
    /// (later) Request mapping templates (VTL) by content type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_templates: BTreeMap<String, String>,
    /// (later) `WHEN_NO_MATCH` (default), `WHEN_NO_TEMPLATES` or `NEVER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passthrough_behavior: Option<PassthroughBehavior>,
    /// (later) `CONVERT_TO_TEXT` or `CONVERT_TO_BINARY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_handling: Option<ContentHandling>,
    /// (later) Integration responses, selected by `selectionPattern`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub integration_responses: Vec<IntegrationResponse>,
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

/// The fixed response of a `MOCK` integration (required for `MOCK`).
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

/// (later) One integration response.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntegrationResponse {
    /// Regular expression matched against the backend status (or error message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection_pattern: Option<String>,
    /// Status code of the method response this maps to.
    pub status_code: i32,
    /// Response parameters, e.g. `method.response.header.x: integration.response.header.y`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub response_parameters: BTreeMap<String, String>,
    /// Response mapping templates (VTL) by content type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub response_templates: BTreeMap<String, String>,
    /// `CONVERT_TO_TEXT` or `CONVERT_TO_BINARY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_handling: Option<ContentHandling>,
}

/// One HTTP API route.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    /// `"<METHOD> <path>"` with an HTTP verb or `ANY`, or `$default`.
    pub route_key: String,
    /// `NONE` (default), or (later) `JWT`, `CUSTOM`, `COGNITO_USER_POOLS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_type: Option<AuthorizationType>,
    /// (later) The Authorizer object used by this route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorizer_ref: Option<LocalObjectReference>,
    /// (later) OAuth scopes required by the route.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_scopes: Vec<String>,
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

/// (later) A model: a JSON Schema (draft-04) for request or response bodies.
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

/// (later) A request validator.
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

/// (later) CORS settings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cors {
    /// Allowed origins (`Access-Control-Allow-Origin`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<String>,
    /// Allowed methods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    /// Allowed request headers.
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
    /// Conditions (`Accepted`, `ResolvedRefs`, `Programmed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
