//! The compiled document: [`GatewayConfig`] and everything in it.
//!
//! Ids are stable paths (`restapi/<ns>/<name>`, `<api id>/resource/<path>/method/<VERB>`,
//! `stage/<ns>/<name>`) so that counters, caches and metrics survive a reload. Collections
//! are sorted so the serialized form is deterministic and golden-testable.

use crate::gateway_response::{GatewayResponseOverride, GatewayResponseType};
use crate::{Error, ObjectRef, PathTemplate, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;
/// AWS's integration timeout, our default (milliseconds).
pub const DEFAULT_TIMEOUT_MS: u64 = 29_000;
/// AWS's payload limit, our default (bytes).
pub const DEFAULT_MAX_PAYLOAD_BYTES: u64 = 10 * 1024 * 1024;
/// The access log format used when a stage does not set one (AWS's JSON example format).
pub const DEFAULT_ACCESS_LOG_FORMAT: &str = r#"{"requestId":"$context.requestId","ip":"$context.identity.sourceIp","requestTime":"$context.requestTime","httpMethod":"$context.httpMethod","routeKey":"$context.routeKey","resourcePath":"$context.resourcePath","path":"$context.path","status":"$context.status","protocol":"$context.protocol","responseLength":"$context.responseLength","responseLatency":"$context.responseLatency","integrationLatency":"$context.integrationLatency","apiId":"$context.apiId","stage":"$context.stage","errorType":"$context.error.responseType"}"#;

/// The whole compiled configuration served by a proxy fleet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayConfig {
    /// Document schema version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// APIs, sorted by id.
    pub apis: Vec<Api>,
    /// Stages, sorted by id. A stage binds one API to a base path and/or hostnames.
    pub stages: Vec<Stage>,
    /// Usage plans, sorted by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usage_plans: Vec<UsagePlan>,
    /// API keys (hashes only), sorted by id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<ApiKey>,
}

/// Which kind of API Gateway API this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    /// REST API (v1): resource tree, unknown route answers 403 Missing Authentication Token.
    #[serde(rename = "REST")]
    Rest,
    /// HTTP API (v2): route keys and `$default`, unknown route answers 404 Not Found.
    #[serde(rename = "HTTP")]
    Http,
    /// WebSocket API.
    #[serde(rename = "WEBSOCKET")]
    WebSocket,
}

/// One API (from one `RestApi` object).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Api {
    /// Stable id, `restapi/<namespace>/<name>`: also `$context.apiId` (access logs, templates)
    /// and the `api` label of the per-route metrics, which must not change when the display
    /// name does.
    pub id: String,
    /// The object it was compiled from.
    pub source: ObjectRef,
    /// Display name (`spec.displayName` or the object name).
    pub name: String,
    /// REST, HTTP or WEBSOCKET.
    pub protocol: Protocol,
    /// Routes, sorted by id.
    pub routes: Vec<Route>,
    /// Gateway response overrides by type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gateway_responses: BTreeMap<GatewayResponseType, GatewayResponseOverride>,
    /// Largest request body accepted, in bytes; larger ones get 413 REQUEST_TOO_LARGE.
    pub max_payload_bytes: u64,
    /// Authorizers its routes may reference, by id (`authorizer/<ns>/<name>`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub authorizers: BTreeMap<String, Authorizer>,
    /// Where the API key of a request comes from (default `x-api-key`).
    #[serde(default, skip_serializing_if = "ApiKeySource::is_header")]
    pub api_key_source: ApiKeySource,
    /// Media types treated as binary (`binaryMediaTypes`: `image/png`, `image/*`, `*/*`),
    /// see [`crate::is_binary_media_type`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binary_media_types: Vec<String>,
    /// Responses of at least this many bytes are gzip-compressed for clients that accept it
    /// (`minimumCompressionSize`); `None` disables compression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_compression_size: Option<u64>,
    /// Models (JSON Schema draft-04) by name, with every `$ref` to another model of the API
    /// rewritten to [`model_ref`]`(name)`; only the models some route validates against.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, serde_json::Value>,
    /// CORS: automatic preflight answers and CORS headers on every response of the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// WebSocket APIs: how a message picks its route, the limits, and who may call the
    /// `@connections` management API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket: Option<WebSocketApi>,
}

/// A WebSocket API's settings (AWS's defaults in [`WebSocketApi::default`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebSocketApi {
    /// `routeSelectionExpression` as the names under `$request.body` it reads
    /// (`$request.body.action` and `${request.body.action}` -> `["action"]`); the selected
    /// value is the route key, else `$default`.
    pub route_selection: Vec<String>,
    /// Largest message, in bytes (AWS: 128 KB); larger ones close the connection with 1009.
    pub max_message_bytes: u64,
    /// Largest frame, in bytes (AWS: 32 KB).
    pub max_frame_bytes: u64,
    /// Seconds a connection may stay without a message either way (AWS: 10 minutes).
    pub idle_timeout_seconds: u64,
    /// Seconds a connection may last (AWS: 2 hours).
    pub max_connection_seconds: u64,
    /// Who may call `@connections` (AWS Signature Version 4): access key ids and where their
    /// secret keys are (never in the config itself).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub management_credentials: Vec<ManagementCredential>,
}

impl Default for WebSocketApi {
    fn default() -> Self {
        WebSocketApi {
            route_selection: vec!["action".into()],
            max_message_bytes: 128 * 1024,
            max_frame_bytes: 32 * 1024,
            idle_timeout_seconds: 600,
            max_connection_seconds: 7200,
            management_credentials: Vec::new(),
        }
    }
}

/// An access key id allowed to call `@connections`, and the Secret key holding its secret
/// access key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagementCredential {
    /// `AKIA...`-style access key id (what the client's `Credential=` names).
    pub access_key_id: String,
    /// Where the secret access key is.
    pub secret: SecretKeyRef,
}

/// One key of one Secret.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Its namespace.
    pub namespace: String,
    /// The Secret's name.
    pub name: String,
    /// The key in its data.
    pub key: String,
}

/// Longest data key of a Secret (a DNS subdomain's length).
pub const MAX_SECRET_DATA_KEY_LEN: usize = 253;

impl SecretKeyRef {
    /// Its data key in the operator's credentials Secret (written by the operator, read by
    /// the proxies): `<namespace>.<name>.<key>`, each part escaped so that only
    /// `[A-Za-z0-9-]` stay as they are and every other byte becomes `_XX` (uppercase hex),
    /// one to one; past 253 characters, `sha256.<hex>` of the three parts.
    pub fn data_key(&self) -> String {
        fn escape(part: &str, out: &mut String) {
            for b in part.bytes() {
                if b.is_ascii_alphanumeric() || b == b'-' {
                    out.push(char::from(b));
                } else {
                    out.push_str(&format!("_{b:02X}"));
                }
            }
        }
        let mut out = String::new();
        escape(&self.namespace, &mut out);
        out.push('.');
        escape(&self.name, &mut out);
        out.push('.');
        escape(&self.key, &mut out);
        if out.len() <= MAX_SECRET_DATA_KEY_LEN {
            return out;
        }
        let mut h = Sha256::new();
        for part in [&self.namespace, &self.name, &self.key] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        format!("sha256.{}", hex::encode(h.finalize()))
    }
}

/// An API's CORS policy, normalised at compile time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cors {
    /// Allowed origins, lower case, `scheme://host[:port]`; `*` allows any origin (never
    /// together with `allowCredentials`).
    pub allow_origins: Vec<String>,
    /// Allowed methods, upper case, or `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    /// Allowed request headers, lower case, or `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// Response headers exposed to scripts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// `Access-Control-Max-Age` of preflight answers, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
    /// `Access-Control-Allow-Credentials: true`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_credentials: bool,
}

/// The base of the canonical `$ref` URI of a model: `https://portico.invalid/models/<name>`.
/// The `.invalid` host is reserved: nothing is ever fetched, the proxy registers every model
/// of the API under this base before compiling validators.
pub const MODEL_REF_BASE: &str = "https://portico.invalid/models/";

/// The canonical `$ref` URI of model `name`.
pub fn model_ref(name: &str) -> String {
    format!("{MODEL_REF_BASE}{name}")
}

/// How a route matches the path after the stage's base path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RouteMatch {
    /// A resource path template.
    Path(PathTemplate),
    /// HTTP API `$default`: matches whatever no other route matches.
    Default,
    /// A WebSocket route (`$connect`, `$disconnect`, `$default` or a custom key): selected by
    /// the connection's lifecycle or the message, never by path.
    Message,
}

impl RouteMatch {
    /// Path parameter names in template order (none for `$default`); see
    /// [`PathTemplate::param_names`].
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        let t = match self {
            RouteMatch::Path(t) => Some(t),
            RouteMatch::Default | RouteMatch::Message => None,
        };
        t.into_iter().flat_map(PathTemplate::param_names)
    }
}

/// One method on one resource (REST) or one route key (HTTP).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// Stable id: `<api id>/resource/<path>/method/<VERB>` or `<api id>/route/<route key>`.
    pub id: String,
    /// `$context.resourcePath`, e.g. `/content/{id}` (or `$default`).
    pub resource_path: String,
    /// `$context.routeKey`, e.g. `GET /content/{id}` or `$default`.
    pub route_key: String,
    /// Upper-case HTTP method, or `ANY`. Empty for WebSocket routes ([`RouteMatch::Message`]):
    /// no HTTP method selects them (an HTTP integration's own `httpMethod` is set at compile
    /// time, default `POST`).
    pub http_method: String,
    /// What paths it matches.
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    /// The backend call.
    pub integration: Integration,
    /// Integration timeout in milliseconds (default 29 000); exceeded -> 504 INTEGRATION_TIMEOUT.
    pub timeout_ms: u64,
    /// Request validation (required parameters, body model); `None` validates nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<RequestValidation>,
    /// Set when the method could not be compiled: it answers 500 API_CONFIGURATION_ERROR
    /// (fails closed) while its siblings keep serving. The text is logged, never sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_closed: Option<String>,
    /// Who may call it: the authorizer (an id in the API's `authorizers`) and the scopes
    /// required; `None` means open (`authorizationType: NONE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<RouteAuthorization>,
    /// Whether the method needs a valid API key (403 INVALID_API_KEY otherwise); usage plans
    /// meter only such methods, as AWS.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub api_key_required: bool,
    /// Mappings of a non-proxy (HTTP, MOCK) integration: parameters, templates,
    /// passthrough, integration and method responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<crate::Transform>,
    /// Request values that tell the method's cached answers apart (`cacheKeyParameters` of
    /// the integration), in the order given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_key_parameters: Vec<RequiredParameter>,
    /// `cacheNamespace` of the integration: methods with the same namespace and key values
    /// share entries. `None`: the route's own (its id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_namespace: Option<String>,
    /// WebSocket routes: the integration's answer is sent back on the socket (the route has
    /// a `routeResponseSelectionExpression`); else the route is one-way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub two_way: bool,
    /// WebSocket routes: the names under `$request.body` whose value picks the request
    /// template (`templateSelectionExpression`); empty: the `$default` one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub template_selection: Vec<String>,
    /// WebSocket routes: the names under `$request.body` whose value picks the model
    /// (`modelSelectionExpression`; models are `validation.bodyModels` by that value);
    /// empty: the `$default` one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_selection: Vec<String>,
}

/// A route's authorization settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteAuthorization {
    /// Id of the authorizer in [`Api::authorizers`].
    pub authorizer_id: String,
    /// Scopes of which the token must carry at least one (JWT); empty: none required.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// A compiled authorizer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Authorizer {
    /// Validates a JWT (Cognito / OIDC style) against an issuer's keys.
    #[serde(rename = "JWT")]
    Jwt(JwtAuthorizer),
    /// Calls a function with the bearer token (Lambda TOKEN authorizer).
    #[serde(rename = "TOKEN")]
    Token(FunctionAuthorizer),
    /// Calls a function with the request's identity sources (Lambda REQUEST authorizer).
    #[serde(rename = "REQUEST")]
    Request(FunctionAuthorizer),
}

/// A Lambda-style authorizer: an HTTP endpoint receiving the AWS authorizer event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionAuthorizer {
    /// The object it was compiled from.
    pub source: ObjectRef,
    /// `http://` URL the event is POSTed to (a plain URL or a Lambda invoke endpoint).
    pub function_uri: String,
    /// Identity sources: `header:<lower-case name>` or `query:<name>`. TOKEN: exactly one
    /// header. A request missing any of them gets 401 without a call.
    pub identity_sources: Vec<String>,
    /// TOKEN: the token must match this regular expression, else 401 without a call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_validation_expression: Option<String>,
    /// Seconds a result is cached per identity-source values (0: not cached).
    pub result_ttl_seconds: u32,
    /// The function answers `{"isAuthorized": bool, "context": {}}` instead of a policy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub simple_responses: bool,
    /// REQUEST authorizers of HTTP APIs: the event format (unset: `2.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_format_version: Option<PayloadFormatVersion>,
}

/// JWT authorizer settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JwtAuthorizer {
    /// The object it was compiled from.
    pub source: ObjectRef,
    /// Where the token is read from: a lower-case request header name (from
    /// `$request.header.<Name>`); a `Bearer ` prefix is stripped.
    pub header: String,
    /// Required `iss`.
    pub issuer: String,
    /// Accepted `aud` (or `client_id`) values; empty: any audience.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Accepted `alg` values (asymmetric only: RS*, PS*, ES256, ES384, EdDSA).
    pub algorithms: Vec<String>,
    /// The key set (inline JWKS, parsed and checked by compile); empty when `jwks_uri` is set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<Jwk>,
    /// `http://` URL the proxy fetches the key set from (cached, refreshed, refetched on an
    /// unknown `kid` at most once per interval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
}

/// One public key of a JWKS (only the members verification needs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// `RSA`, `EC` or `OKP`.
    pub kty: String,
    /// Algorithm the key is restricted to, when the JWKS says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Curve (`P-256`, `P-384`, `Ed25519`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// RSA modulus (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// RSA exponent (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// EC / OKP x coordinate (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// EC y coordinate (base64url).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// `sig` or `enc`; `enc` keys are never used to verify.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

/// What a method's request validator checks (AWS `validateRequestParameters` /
/// `validateRequestBody`), resolved at compile time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestValidation {
    /// Parameters that must be present, in the order the error message lists them (the
    /// order of their `method.request.*` keys).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_parameters: Vec<RequiredParameter>,
    /// Body models by content type (names of [`Api::models`]); empty: the body is not
    /// validated. A request whose content type has no entry uses `application/json`'s.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub body_models: BTreeMap<String, String>,
}

/// One required request parameter (`method.request.<location>.<name>: true`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequiredParameter {
    /// Where it is looked up.
    pub location: ParameterLocation,
    /// Its name (headers: case-insensitive).
    pub name: String,
}

/// Where a request parameter lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParameterLocation {
    /// `method.request.path.<name>`.
    Path,
    /// `method.request.querystring.<name>`.
    Querystring,
    /// `method.request.header.<name>`.
    Header,
}

/// How a method reaches its backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Integration {
    /// Full pass-through to an HTTP endpoint.
    #[serde(rename = "HTTP_PROXY")]
    HttpProxy(HttpIntegration),
    /// HTTP endpoint with mappings (pass-through until mapping templates land).
    #[serde(rename = "HTTP")]
    Http(HttpIntegration),
    /// Answered by the gateway itself.
    #[serde(rename = "MOCK")]
    Mock(MockIntegration),
    /// Lambda proxy: the request becomes an API Gateway proxy event POSTed to a function's
    /// invoke endpoint; the function's result becomes the response.
    #[serde(rename = "AWS_PROXY")]
    AwsProxy(AwsProxyIntegration),
}

/// The path of the Lambda invoke endpoint (the Runtime Interface Emulator's).
pub const LAMBDA_INVOKE_PATH: &str = "/2015-03-31/functions/function/invocations";

/// A Lambda proxy integration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwsProxyIntegration {
    /// The function's invoke endpoint, e.g.
    /// `http://fn.default.svc:8080/2015-03-31/functions/function/invocations`; may contain
    /// `${stageVariables.name}`.
    pub uri: String,
    /// The proxy event and result format.
    pub payload_format_version: PayloadFormatVersion,
}

/// Lambda proxy payload format: `1.0` (REST APIs, HTTP APIs) or `2.0` (HTTP APIs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayloadFormatVersion {
    /// Format 1.0.
    #[serde(rename = "1.0")]
    V1,
    /// Format 2.0.
    #[serde(rename = "2.0")]
    V2,
}

/// An HTTP(S) endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpIntegration {
    /// Endpoint URI. May contain `${stageVariables.name}` (resolved per stage) and `{param}`
    /// (a path parameter of the method, e.g. `{id}` or `{proxy}` for a greedy `{proxy+}`).
    pub uri: String,
    /// Method to call the backend with; `None` uses the request's method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_method: Option<String>,
    /// `HTTP_PROXY` only: parameter mappings applied to the streamed request
    /// (`integration.request.{header,querystring,path}.<name>` -> `method.request.*`,
    /// `context.*`, `stageVariables.*` or `'literal'`), checked by `compile`. `HTTP`
    /// integrations carry theirs in the route's `Transform`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_parameters: BTreeMap<String, String>,
}

/// A fixed response produced by the gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MockIntegration {
    /// Status code.
    pub status_code: u16,
    /// Response headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Response body.
    #[serde(default)]
    pub body: String,
}

/// One stage: serves one API at a base path and/or on hostnames.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stage {
    /// Stable id, `stage/<namespace>/<name>`.
    pub id: String,
    /// The object it was compiled from.
    pub source: ObjectRef,
    /// Id of the [`Api`] it serves.
    pub api_id: String,
    /// Stage name (`$context.stage`).
    pub name: String,
    /// Base path: `""` for the root, else `/seg[/seg...]` without a trailing slash.
    pub base_path: String,
    /// Lower-case hostnames; empty means any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Stage variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// Access log settings; `None` disables access logging for the stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLog>,
    /// Stage-wide throttle, for every caller (no key needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<Throttle>,
    /// Per-method throttles for every caller, keyed by route id (`methodSettings`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub method_throttles: BTreeMap<String, Throttle>,
    /// A canary: a share of the stage's requests served by another API version and/or with
    /// other stage variables (`canarySettings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// The stage's response cache (`cacheClusterEnabled`), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<StageCache>,
}

/// The longest a method may cache an answer (`cacheTtlInSeconds`, AWS's limit), seconds.
pub const MAX_CACHE_TTL_SECONDS: u32 = 3600;

/// A stage's response cache: its budget, how a flush is asked for, and what each method
/// caches. A method's settings are resolved here: `methods` holds every method whose
/// settings differ from `defaults`' rule (GET methods cached with `defaults`, others not).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageCache {
    /// Bytes the stage's entries may hold in memory (per proxy process without Redis).
    pub budget_bytes: u64,
    /// A change of this value flushes the stage's cache: it is part of every entry's key,
    /// so no replica finds an entry stored before the change (the Stage's
    /// `portico.dev/flush-cache` annotation).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub flush_token: String,
    /// Settings of the GET methods without settings of their own (`*/*`).
    pub defaults: MethodCache,
    /// Settings per route key (`GET /content/{id}`) of the methods that have their own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub methods: BTreeMap<String, MethodCache>,
}

impl StageCache {
    /// The settings of the method with `route_key` and `http_method`, when it is cached.
    pub fn method(&self, route_key: &str, http_method: &str) -> Option<&MethodCache> {
        let m = match self.methods.get(route_key) {
            Some(m) => m,
            None if http_method == "GET" => &self.defaults,
            None => return None,
        };
        (m.enabled && m.ttl_seconds > 0).then_some(m)
    }
}

/// How one method uses the stage cache (`methodSettings` caching fields).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MethodCache {
    /// `cachingEnabled`.
    pub enabled: bool,
    /// `cacheTtlInSeconds` (1..=3600 when enabled).
    pub ttl_seconds: u32,
    /// `cacheDataEncrypted`: entries in Redis are encrypted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    /// `requireAuthorizationForCacheControl`: only callers their authorizer allows
    /// `execute-api:InvalidateCache` may invalidate with `Cache-Control: max-age=0`.
    pub require_authorization: bool,
    /// `unauthorizedCacheControlHeaderStrategy`.
    pub unauthorized: UnauthorizedCacheControl,
}

/// What a `Cache-Control: max-age=0` from a caller that may not invalidate gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UnauthorizedCacheControl {
    /// 403 (AccessDeniedException).
    // `SCREAMING_SNAKE_CASE` would spell it `FAIL_WITH403`.
    #[serde(rename = "FAIL_WITH_403")]
    FailWith403,
    /// Served as without the header, plus a `Warning` response header.
    SucceedWithResponseHeader,
    /// Served as without the header.
    SucceedWithoutResponseHeader,
}

/// A stage's canary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Canary {
    /// Id of the [`Api`] the canary serves (the stage's own when only variables differ).
    pub api_id: String,
    /// Share of the stage's requests, in percent (0.0..=100.0).
    pub percent_traffic: f64,
    /// The canary's stage variables: the stage's with the overrides on top.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// `useStageCache` (honoured by the response cache).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub use_stage_cache: bool,
    /// Sticky assignment: what identifies a caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<CanarySticky>,
    /// Forced assignment: a header and whether it needs an authorizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_header: Option<CanaryForceHeader>,
}

/// What identifies a caller for sticky canary assignment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "by", content = "name")]
pub enum CanarySticky {
    /// The client's address.
    SourceIp,
    /// The `x-api-key` header's value.
    ApiKey,
    /// A request header (lower-case name).
    Header(String),
    /// A cookie.
    Cookie(String),
}

/// The header that forces the canary (`always`) or the base (`never`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryForceHeader {
    /// Lower-case header name.
    pub name: String,
    /// Honoured only on methods with an authorizer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_authorizer: bool,
}

// The percentage is validated finite, so equality is reflexive.
impl Eq for Canary {}

/// Access log settings of a stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessLog {
    /// Line format with `$context.*` variables (one line per request).
    pub format: String,
}

/// Where an API's key comes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApiKeySource {
    /// The `x-api-key` header.
    #[default]
    #[serde(rename = "HEADER")]
    Header,
    /// The `usageIdentifierKey` a Lambda-style authorizer returns.
    #[serde(rename = "AUTHORIZER")]
    Authorizer,
}

impl ApiKeySource {
    /// True for the default (serde `skip_serializing_if`).
    pub fn is_header(&self) -> bool {
        *self == ApiKeySource::Header
    }
}

/// A token bucket: `rate_limit` requests per second refill, `burst_limit` capacity.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Throttle {
    /// Steady-state requests per second (> 0).
    pub rate_limit: f64,
    /// Bucket capacity (>= 1).
    pub burst_limit: u64,
}

// Rates are validated finite, so equality is reflexive.
impl Eq for Throttle {}

/// Quota period, in UTC (as AWS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuotaPeriod {
    /// From 00:00 UTC to the next 00:00 UTC.
    #[serde(rename = "DAY")]
    Day,
    /// From Monday 00:00 UTC to the next Monday.
    #[serde(rename = "WEEK")]
    Week,
    /// From the 1st of the month 00:00 UTC to the next 1st.
    #[serde(rename = "MONTH")]
    Month,
}

/// A request quota per API key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// Requests per period.
    pub limit: u64,
    /// The period.
    pub period: QuotaPeriod,
    /// Requests counted as already used in the first period a counter sees.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A usage plan: throttle and quota per API key on its stages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsagePlan {
    /// Stable id, `usageplan/<namespace>/<name>`.
    pub id: String,
    /// The object it was compiled from.
    pub source: ObjectRef,
    /// Per-key throttle, shared by all the plan's stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<Throttle>,
    /// Per-key quota, shared by all the plan's stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    /// The stages it applies to, sorted by stage id.
    pub stages: Vec<PlanStage>,
}

/// One stage of a usage plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanStage {
    /// The stage id.
    pub stage_id: String,
    /// Per-key method throttles keyed by route id (instead of the plan's throttle).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub method_throttles: BTreeMap<String, Throttle>,
}

/// An API key: only the SHA-256 of its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    /// Stable id, `apikey/<namespace>/<name>`.
    pub id: String,
    /// The object it was compiled from.
    pub source: ObjectRef,
    /// SHA-256 of the value.
    pub hash: KeyHash,
    /// Disabled keys are refused (403).
    pub enabled: bool,
    /// Ids of the usage plans it belongs to, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usage_plans: Vec<String>,
}

/// The SHA-256 of a secret value, hex. `Debug`, `Display` and `Serialize` show only the hash,
/// never the value it was computed from (which this type never holds).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyHash(String);

impl KeyHash {
    /// Hashes a secret value.
    pub fn of(value: &[u8]) -> Self {
        KeyHash(hex::encode(Self::digest_of(value)))
    }

    /// The SHA-256 of a secret value, as bytes (what the proxy looks presented keys up by:
    /// no hex text per request).
    pub fn digest_of(value: &[u8]) -> [u8; 32] {
        Sha256::digest(value).into()
    }

    /// This hash as bytes; `None` when it is not 64 hex digits.
    pub fn digest(&self) -> Option<[u8; 32]> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(&self.0, &mut out).ok()?;
        Some(out)
    }

    /// The 64 hex digits.
    pub fn as_hex(&self) -> &str {
        &self.0
    }

    /// The first 8 hex digits: the key id used in metrics, logs and the usage API.
    pub fn key_id(&self) -> &str {
        &self.0[..8.min(self.0.len())]
    }

    /// True when the text is 64 lower-case hex digits.
    pub fn is_well_formed(&self) -> bool {
        self.0.len() == 64
            && self
                .0
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyHash({})", self.0)
    }
}

impl std::fmt::Display for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn throttle_ok(t: &Throttle) -> bool {
    t.rate_limit.is_finite() && t.rate_limit > 0.0 && t.burst_limit >= 1
}

impl GatewayConfig {
    /// An empty document of the current schema version.
    pub fn empty() -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            apis: Vec::new(),
            stages: Vec::new(),
            usage_plans: Vec::new(),
            api_keys: Vec::new(),
        }
    }

    /// Decodes a JSON document and checks its version and invariants.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let cfg: GatewayConfig = serde_json::from_slice(bytes)?;
        if cfg.schema_version != SCHEMA_VERSION {
            return Err(Error::SchemaVersion {
                found: cfg.schema_version,
                expected: SCHEMA_VERSION,
            });
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Canonical JSON (the serialized form is deterministic: sorted collections only).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect(
            "GatewayConfig serializes: it holds only strings, numbers and maps with string keys",
        )
    }

    /// SHA-256 of the canonical JSON, hex; the config version shown in status and metrics.
    pub fn content_hash(&self) -> String {
        hex::encode(Sha256::digest(self.to_json().as_bytes()))
    }

    /// Per stage id, the content hash of what serves it: the stage, its API, its canary's
    /// API, and the usage plans naming it. It changes when, and only when, that stage's
    /// served config does (a Stage's `status.configVersion`). API keys are not part of it:
    /// they are data a plan admits, reported on each ApiKey's own status, and a key added to
    /// a plan of 5,000 stages would otherwise rewrite 5,000 Stage statuses. Linear in the
    /// config: each plan is hashed once.
    pub fn stage_versions(&self) -> BTreeMap<String, String> {
        fn put(h: &mut Sha256, v: impl Serialize) {
            let s = serde_json::to_string(&v).expect("config values serialize");
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
        let apis: BTreeMap<&str, &Api> = self.apis.iter().map(|a| (a.id.as_str(), a)).collect();
        // Each plan, once.
        let plan_hashes: BTreeMap<&str, Vec<u8>> = self
            .usage_plans
            .iter()
            .map(|p| {
                let mut h = Sha256::new();
                put(&mut h, p);
                (p.id.as_str(), h.finalize().to_vec())
            })
            .collect();
        let mut plans_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for p in &self.usage_plans {
            for s in &p.stages {
                plans_of
                    .entry(s.stage_id.as_str())
                    .or_default()
                    .push(p.id.as_str());
            }
        }
        self.stages
            .iter()
            .map(|stage| {
                let mut h = Sha256::new();
                put(&mut h, stage);
                put(&mut h, apis.get(stage.api_id.as_str()));
                if let Some(c) = &stage.canary {
                    put(&mut h, apis.get(c.api_id.as_str()));
                }
                for p in plans_of.get(stage.id.as_str()).into_iter().flatten() {
                    h.update(&plan_hashes[p]);
                }
                (stage.id.clone(), hex::encode(h.finalize()))
            })
            .collect()
    }

    /// The API a stage serves.
    pub fn api(&self, id: &str) -> Option<&Api> {
        self.apis.iter().find(|a| a.id == id)
    }

    /// Checks the invariants the proxy relies on:
    /// unique api/route/stage ids, every stage names an existing api, base paths and hosts are
    /// normalised, no two stages claim the same host + base path, timeouts and limits are
    /// positive, a stage cache has a budget and caches for at most [`MAX_CACHE_TTL_SECONDS`].
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        let mut api_ids = BTreeSet::new();
        for api in &self.apis {
            if !api_ids.insert(api.id.as_str()) {
                return bad(format!("duplicate api id {}", api.id));
            }
            if api.max_payload_bytes == 0 {
                return bad(format!("api {} has maxPayloadBytes 0", api.id));
            }
            let mut route_ids = BTreeSet::new();
            for r in &api.routes {
                if !route_ids.insert(r.id.as_str()) {
                    return bad(format!("duplicate route id {}", r.id));
                }
                for m in r.validation.iter().flat_map(|v| v.body_models.values()) {
                    if !api.models.contains_key(m) {
                        return bad(format!(
                            "route {} validates against unknown model {m}",
                            r.id
                        ));
                    }
                }
                if r.timeout_ms == 0 {
                    return bad(format!("route {} has timeoutMs 0", r.id));
                }
                if let Some(a) = &r.authorization
                    && !api.authorizers.contains_key(&a.authorizer_id)
                {
                    return bad(format!(
                        "route {} names unknown authorizer {}",
                        r.id, a.authorizer_id
                    ));
                }
                let message = r.matcher == RouteMatch::Message;
                if message != r.http_method.is_empty()
                    || r.http_method != r.http_method.to_ascii_uppercase()
                {
                    return bad(format!(
                        "route {} has method {:?}, expected upper case (empty for WebSocket routes only)",
                        r.id, r.http_method
                    ));
                }
            }
        }
        let mut stage_ids = BTreeSet::new();
        let mut claims: BTreeMap<(String, String), &str> = BTreeMap::new();
        for s in &self.stages {
            if !stage_ids.insert(s.id.as_str()) {
                return bad(format!("duplicate stage id {}", s.id));
            }
            if let Some(c) = &s.canary {
                if !api_ids.contains(c.api_id.as_str()) {
                    return bad(format!(
                        "stage {}'s canary serves unknown api {}",
                        s.id, c.api_id
                    ));
                }
                if !(c.percent_traffic.is_finite() && (0.0..=100.0).contains(&c.percent_traffic)) {
                    return bad(format!(
                        "stage {}'s canary percentTraffic {} is not within 0..100",
                        s.id, c.percent_traffic
                    ));
                }
            }
            if !api_ids.contains(s.api_id.as_str()) {
                return bad(format!("stage {} serves unknown api {}", s.id, s.api_id));
            }
            if !is_normalised_base_path(&s.base_path) {
                return bad(format!(
                    "stage {} has base path {:?}, expected \"\" or /a/b",
                    s.id, s.base_path
                ));
            }
            let hosts: Vec<String> = if s.hosts.is_empty() {
                vec!["*".into()]
            } else {
                s.hosts.clone()
            };
            for h in hosts {
                if h != h.to_ascii_lowercase() {
                    return bad(format!(
                        "stage {} has host {h:?}, expected lower case",
                        s.id
                    ));
                }
                if let Some(other) = claims.insert((h.clone(), s.base_path.clone()), &s.id) {
                    return bad(format!(
                        "stages {other} and {} both claim host {h} base path {:?}",
                        s.id, s.base_path
                    ));
                }
            }
            if !s
                .throttle
                .iter()
                .chain(s.method_throttles.values())
                .all(throttle_ok)
            {
                return bad(format!(
                    "stage {} has a throttle with a non-positive limit",
                    s.id
                ));
            }
            if let Some(c) = &s.cache {
                if c.budget_bytes == 0 {
                    return bad(format!("stage {} has a cache of 0 bytes", s.id));
                }
                if let Some((key, m)) = std::iter::once(("*/*", &c.defaults))
                    .chain(c.methods.iter().map(|(k, m)| (k.as_str(), m)))
                    .find(|(_, m)| m.enabled && m.ttl_seconds > MAX_CACHE_TTL_SECONDS)
                {
                    return bad(format!(
                        "stage {} caches {key} for {} s, more than {MAX_CACHE_TTL_SECONDS}",
                        s.id, m.ttl_seconds
                    ));
                }
            }
        }
        self.validate_plans(&stage_ids)
    }

    fn validate_plans(&self, stage_ids: &BTreeSet<&str>) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        let mut plan_ids = BTreeSet::new();
        for p in &self.usage_plans {
            if !plan_ids.insert(p.id.as_str()) {
                return bad(format!("duplicate usage plan id {}", p.id));
            }
            if !p.throttle.iter().all(throttle_ok) {
                return bad(format!("usage plan {} has a non-positive throttle", p.id));
            }
            for s in &p.stages {
                if !stage_ids.contains(s.stage_id.as_str()) {
                    return bad(format!(
                        "usage plan {} names unknown stage {}",
                        p.id, s.stage_id
                    ));
                }
                if !s.method_throttles.values().all(throttle_ok) {
                    return bad(format!(
                        "usage plan {} has a non-positive method throttle",
                        p.id
                    ));
                }
            }
        }
        let mut key_ids = BTreeSet::new();
        for k in &self.api_keys {
            if !key_ids.insert(k.id.as_str()) {
                return bad(format!("duplicate api key id {}", k.id));
            }
            if !k.hash.is_well_formed() {
                return bad(format!("api key {} has a malformed hash", k.id));
            }
            if let Some(p) = k
                .usage_plans
                .iter()
                .find(|p| !plan_ids.contains(p.as_str()))
            {
                return bad(format!("api key {} names unknown usage plan {p}", k.id));
            }
        }
        Ok(())
    }
}

/// True for `""` and for `/seg[/seg...]` with non-empty segments and no trailing slash.
pub fn is_normalised_base_path(p: &str) -> bool {
    p.is_empty()
        || (p.starts_with('/')
            && p[1..]
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".."))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn r(ns: &str, name: &str, key: &str) -> SecretKeyRef {
        SecretKeyRef {
            namespace: ns.into(),
            name: name.into(),
            key: key.into(),
        }
    }

    /// The credentials Secret's data keys (written by the operator, read by the proxies).
    #[test]
    fn data_keys_are_escaped_one_to_one_and_valid_secret_keys() {
        assert_eq!(
            r("team-a", "chat-management", "secretAccessKey").data_key(),
            "team-a.chat-management.secretAccessKey"
        );
        assert_eq!(r("a", "b.c", "d").data_key(), "a.b_2Ec.d");
        assert_eq!(r("a", "b", "c.d").data_key(), "a.b.c_2Ed");
        assert_eq!(r("a", "b", "c_d").data_key(), "a.b.c_5Fd");
        assert_eq!(r("a", "b", "c_2Ed").data_key(), "a.b.c_5F2Ed");
        let long = r("ns", &"n".repeat(200), &"k".repeat(100)).data_key();
        assert_eq!(
            long,
            "sha256.872965acd2b58b89578e8c036239565c0d68bc402c75cb9942ac8f35c5f043d5"
        );
        assert!(
            long.starts_with("sha256.") && long.len() == 7 + 64,
            "{long}"
        );
        for k in [
            r("a", "b.c", "d").data_key(),
            r("a", "b", "c_d").data_key(),
            long,
        ] {
            assert!(k.len() <= MAX_SECRET_DATA_KEY_LEN);
            assert!(
                k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)),
                "{k}"
            );
        }
    }

    /// Issue 16: a Stage's `configVersion` is what serves it, so a change to another
    /// stage's API leaves it as it was, a change to its own API or its plan changes it, and
    /// a key added to its plan does not (keys are data; each ApiKey has its own status).
    #[test]
    fn stage_versions_change_only_with_what_serves_the_stage() {
        let mut two = mk_config();
        let mut other_api = two.apis[0].clone();
        other_api.id = "restapi/default/other".into();
        other_api.name = "other".into();
        two.apis.push(other_api);
        let mut other_stage = two.stages[0].clone();
        other_stage.id = "stage/default/other".into();
        other_stage.api_id = "restapi/default/other".into();
        other_stage.base_path = "/other".into();
        two.stages.push(other_stage);
        let before = two.stage_versions();
        assert_eq!(before.len(), 2);
        assert_ne!(before["stage/default/dev"], before["stage/default/other"]);
        // Another tenant's API changes: this stage's version does not.
        let mut changed = two.clone();
        changed.apis[1].max_payload_bytes += 1;
        let after = changed.stage_versions();
        assert_eq!(after["stage/default/dev"], before["stage/default/dev"]);
        assert_ne!(after["stage/default/other"], before["stage/default/other"]);
        // Its own API changes: it does.
        let mut own = two.clone();
        own.apis[0].max_payload_bytes += 1;
        assert_ne!(
            own.stage_versions()["stage/default/dev"],
            before["stage/default/dev"]
        );
        // A plan on the stage: its settings count, the keys it admits do not.
        let mut planned = two.clone();
        planned.usage_plans.push(UsagePlan {
            id: "usageplan/default/gold".into(),
            source: ObjectRef::new("UsagePlan", "default", "gold"),
            throttle: None,
            quota: None,
            stages: vec![PlanStage {
                stage_id: "stage/default/dev".into(),
                method_throttles: BTreeMap::new(),
            }],
        });
        let with_plan = planned.stage_versions();
        assert_ne!(with_plan["stage/default/dev"], before["stage/default/dev"]);
        assert_eq!(
            with_plan["stage/default/other"],
            before["stage/default/other"]
        );
        let mut keyed = planned.clone();
        keyed.api_keys.push(ApiKey {
            id: "apikey/default/k".into(),
            source: ObjectRef::new("ApiKey", "default", "k"),
            hash: KeyHash::of(b"a key value"),
            enabled: true,
            usage_plans: vec!["usageplan/default/gold".into()],
        });
        assert_eq!(keyed.stage_versions(), with_plan);
        let mut throttled = planned.clone();
        throttled.usage_plans[0].throttle = Some(Throttle {
            rate_limit: 10.0,
            burst_limit: 20,
        });
        assert_ne!(
            throttled.stage_versions()["stage/default/dev"],
            with_plan["stage/default/dev"]
        );
    }

    #[test]
    fn a_key_hash_and_its_digest_agree() {
        let h = KeyHash::of(b"k3y");
        assert!(h.is_well_formed());
        assert_eq!(h.digest(), Some(KeyHash::digest_of(b"k3y")));
        assert_eq!(h.as_hex(), hex::encode(KeyHash::digest_of(b"k3y")));
        let bad: KeyHash = serde_json::from_value(serde_json::json!("abc")).unwrap();
        assert_eq!(bad.digest(), None);
    }

    /// `GET <path>` of API `api_id`: a MOCK answering 200 with `body` (the tests' route).
    pub(crate) fn mock_get_route(api_id: &str, path: &str, body: &str) -> Route {
        Route {
            id: format!("{api_id}/resource/{}/method/GET", path.replace('/', "~1")),
            resource_path: path.into(),
            route_key: format!("GET {path}"),
            http_method: "GET".into(),
            matcher: RouteMatch::Path(PathTemplate::parse(path).unwrap()),
            integration: Integration::Mock(MockIntegration {
                status_code: 200,
                headers: BTreeMap::new(),
                body: body.into(),
            }),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            validation: None,
            fail_closed: None,
            transform: None,
            api_key_required: false,
            authorization: None,
            cache_key_parameters: Vec::new(),
            cache_namespace: None,
            two_way: false,
            template_selection: Vec::new(),
            model_selection: Vec::new(),
        }
    }

    fn mk_config() -> GatewayConfig {
        let source = ObjectRef::new("RestApi", "default", "pets");
        GatewayConfig {
            schema_version: SCHEMA_VERSION,
            apis: vec![Api {
                id: "restapi/default/pets".into(),
                source: source.clone(),
                name: "pets".into(),
                protocol: Protocol::Rest,
                routes: vec![mock_get_route("restapi/default/pets", "/pets", "[]")],
                gateway_responses: BTreeMap::new(),
                max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
                binary_media_types: Vec::new(),
                minimum_compression_size: None,
                models: BTreeMap::new(),
                cors: None,
                websocket: None,
                api_key_source: Default::default(),
                authorizers: Default::default(),
            }],
            stages: vec![Stage {
                id: "stage/default/dev".into(),
                source: ObjectRef::new("Stage", "default", "dev"),
                api_id: "restapi/default/pets".into(),
                name: "dev".into(),
                base_path: "/dev".into(),
                hosts: vec![],
                variables: BTreeMap::new(),
                access_log: None,
                throttle: None,
                method_throttles: BTreeMap::new(),
                canary: None,
                cache: None,
            }],
            ..GatewayConfig::empty()
        }
    }

    #[test]
    fn round_trips_through_json_with_a_stable_hash() {
        let cfg = mk_config();
        let back = GatewayConfig::from_json(cfg.to_json().as_bytes()).unwrap();
        assert_eq!(back, cfg);
        assert_eq!(back.content_hash(), cfg.content_hash());
        assert_eq!(cfg.content_hash().len(), 64);
    }

    #[test]
    fn validate_rejects_unknown_api_and_conflicting_stages() {
        let mut cfg = mk_config();
        cfg.stages[0].api_id = "restapi/default/nope".into();
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("unknown api")
        );

        let mut cfg = mk_config();
        let mut twin = cfg.stages[0].clone();
        twin.id = "stage/other/dev".into();
        cfg.stages.push(twin);
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("both claim")
        );
    }

    #[test]
    fn only_websocket_routes_have_no_method() {
        let mut cfg = mk_config();
        cfg.apis[0].routes[0].http_method = String::new();
        assert!(cfg.validate().is_err(), "a path route needs a method");

        let mut cfg = mk_config();
        cfg.apis[0].protocol = Protocol::WebSocket;
        cfg.apis[0].websocket = Some(WebSocketApi::default());
        let r = &mut cfg.apis[0].routes[0];
        r.matcher = RouteMatch::Message;
        r.route_key = "$connect".into();
        assert!(cfg.validate().is_err(), "a WebSocket route has no method");
        cfg.apis[0].routes[0].http_method = String::new();
        cfg.validate().unwrap();
    }

    #[test]
    fn validate_rejects_unnormalised_base_paths() {
        for bad in ["/", "dev", "/dev/", "/a//b", "/a/../b"] {
            let mut cfg = mk_config();
            cfg.stages[0].base_path = bad.into();
            assert!(cfg.validate().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn validate_rejects_an_empty_cache_budget_and_a_ttl_past_an_hour() {
        let cache = StageCache {
            budget_bytes: 1 << 20,
            flush_token: String::new(),
            defaults: MethodCache {
                enabled: true,
                ttl_seconds: 300,
                encrypted: false,
                require_authorization: true,
                unauthorized: UnauthorizedCacheControl::SucceedWithResponseHeader,
            },
            methods: BTreeMap::new(),
        };
        let mut cfg = mk_config();
        cfg.stages[0].cache = Some(cache.clone());
        cfg.validate().unwrap();
        let back = GatewayConfig::from_json(cfg.to_json().as_bytes()).unwrap();
        assert_eq!(back, cfg);
        assert_eq!(
            serde_json::to_value(UnauthorizedCacheControl::FailWith403).unwrap(),
            "FAIL_WITH_403"
        );

        let mut c = cache.clone();
        c.budget_bytes = 0;
        cfg.stages[0].cache = Some(c);
        assert!(cfg.validate().unwrap_err().to_string().contains("0 bytes"));

        let mut c = cache.clone();
        c.defaults.ttl_seconds = 3601;
        cfg.stages[0].cache = Some(c);
        assert!(cfg.validate().unwrap_err().to_string().contains("3601"));

        let mut c = cache.clone();
        let mut m = c.defaults.clone();
        m.ttl_seconds = 7200;
        c.methods.insert("POST /pets".into(), m.clone());
        cfg.stages[0].cache = Some(c.clone());
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("POST /pets")
        );
        // A method that is not cached may carry any TTL.
        m.enabled = false;
        c.methods.insert("POST /pets".into(), m);
        cfg.stages[0].cache = Some(c);
        cfg.validate().unwrap();
    }

    #[test]
    fn from_json_refuses_other_schema_versions() {
        let mut cfg = mk_config();
        cfg.schema_version = 99;
        let err = GatewayConfig::from_json(cfg.to_json().as_bytes()).unwrap_err();
        assert!(matches!(err, Error::SchemaVersion { found: 99, .. }));
    }
}
