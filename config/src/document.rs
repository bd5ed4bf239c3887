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
    /// Stable id, `restapi/<namespace>/<name>`.
    pub id: String,
    /// The object it was compiled from.
    pub source: ObjectRef,
    /// Display name (`spec.name` or the object name), used as `$context.apiId` label.
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
}

/// How a route matches the path after the stage's base path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RouteMatch {
    /// A resource path template.
    Path(PathTemplate),
    /// HTTP API `$default`: matches whatever no other route matches.
    Default,
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
    /// Upper-case HTTP method, or `ANY`.
    pub http_method: String,
    /// What paths it matches.
    #[serde(rename = "match")]
    pub matcher: RouteMatch,
    /// The backend call.
    pub integration: Integration,
    /// Integration timeout in milliseconds (default 29 000); exceeded -> 504 INTEGRATION_TIMEOUT.
    pub timeout_ms: u64,
    /// Set when the method could not be compiled: it answers 500 API_CONFIGURATION_ERROR
    /// (fails closed) while its siblings keep serving. The text is logged, never sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_closed: Option<String>,
    /// Who may call it: the authorizer (an id in the API's `authorizers`) and the scopes
    /// required; `None` means open (`authorizationType: NONE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<RouteAuthorization>,
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
}

/// Access log settings of a stage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessLog {
    /// Line format with `$context.*` variables (one line per request).
    pub format: String,
}

impl GatewayConfig {
    /// An empty document of the current schema version.
    pub fn empty() -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            apis: Vec::new(),
            stages: Vec::new(),
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

    /// The API a stage serves.
    pub fn api(&self, id: &str) -> Option<&Api> {
        self.apis.iter().find(|a| a.id == id)
    }

    /// Checks the invariants the proxy relies on:
    /// unique api/route/stage ids, every stage names an existing api, base paths and hosts are
    /// normalised, no two stages claim the same host + base path, timeouts and limits are
    /// positive.
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
                if r.http_method.is_empty() || r.http_method != r.http_method.to_ascii_uppercase() {
                    return bad(format!(
                        "route {} has method {:?}, expected upper case",
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
mod tests {
    use super::*;

    fn mk_config() -> GatewayConfig {
        let source = ObjectRef::new("RestApi", "default", "pets");
        GatewayConfig {
            schema_version: SCHEMA_VERSION,
            apis: vec![Api {
                id: "restapi/default/pets".into(),
                source: source.clone(),
                name: "pets".into(),
                protocol: Protocol::Rest,
                routes: vec![Route {
                    id: "restapi/default/pets/resource/~1pets/method/GET".into(),
                    resource_path: "/pets".into(),
                    route_key: "GET /pets".into(),
                    http_method: "GET".into(),
                    matcher: RouteMatch::Path(PathTemplate::parse("/pets").unwrap()),
                    integration: Integration::Mock(MockIntegration {
                        status_code: 200,
                        headers: BTreeMap::new(),
                        body: "[]".into(),
                    }),
                    timeout_ms: DEFAULT_TIMEOUT_MS,
                    fail_closed: None,
                    authorization: None,
                }],
                gateway_responses: BTreeMap::new(),
                max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
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
            }],
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
    fn validate_rejects_unnormalised_base_paths() {
        for bad in ["/", "dev", "/dev/", "/a//b", "/a/../b"] {
            let mut cfg = mk_config();
            cfg.stages[0].base_path = bad.into();
            assert!(cfg.validate().is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn from_json_refuses_other_schema_versions() {
        let mut cfg = mk_config();
        cfg.schema_version = 99;
        let err = GatewayConfig::from_json(cfg.to_json().as_bytes()).unwrap_err();
        assert!(matches!(err, Error::SchemaVersion { found: 99, .. }));
    }
}
