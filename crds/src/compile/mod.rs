//! `compile`: the single place where meaning is decided. A pure function from a [`Snapshot`]
//! to a [`GatewayConfig`] plus [`Diagnostic`]s: no I/O, no clock, deterministic output.
//!
//! ```text
//!  Snapshot ─ normalise ─> inputs (defaults resolved, sorted by namespace/name)
//!               │
//!               ├─ not_supported::objects ─> warnings for (later) fields and kinds
//!               ├─ authorizers ─> JWT, TOKEN and REQUEST authorizers
//!               ├─ apis ─────> Api { routes } per RestApi   (models: validation; methods:
//!               │               │       authorizers, not_supported::method, validation,
//!               │               │       integrations, cache keys, gateway_responses;
//!               │               │       WebSocket APIs: websocket, management credentials
//!               │               │       checked against the Secrets)
//!               │               └─ stage variables each api uses
//!               ├─ stages ───> Stage per Stage object (refs, base path, hosts, variables),
//!               │               then host + base path conflicts
//!               ├─ usage_plans ─> stage throttles, UsagePlans, ApiKeys (SHA-256 only)
//!               └─ cache ───> Stage { cache } (methodSettings caching fields, size, flush
//!                              annotation) + warnings about what cached methods' keys miss
//!  ─> Compiled { config (sorted, validates), diagnostics (sorted) }
//! ```
//!
//! The pass never aborts: a bad object gets diagnostics naming the field path; a broken
//! method compiles to a route that fails closed; a broken stage or API is dropped.

mod apis;
mod authorizers;
mod cache;
mod cors;
mod gateway_responses;
mod integrations;
mod normalise;
mod not_supported;
mod stages;
mod transforms;
mod usage_plans;
mod validation;
mod websocket;

use crate::Snapshot;
use portico_config::{Diagnostic, GatewayConfig, ObjectRef, SCHEMA_VERSION};

/// The result of [`compile`].
#[derive(Clone, Debug, PartialEq)]
pub struct Compiled {
    /// The compiled document; always passes [`GatewayConfig::validate`].
    pub config: GatewayConfig,
    /// Findings about the input objects, sorted by object, then field.
    pub diagnostics: Vec<Diagnostic>,
}

impl Compiled {
    /// True when some diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Compiles a snapshot. Never fails: problems become diagnostics.
/// Stage inputs and compiled APIs by id, for the phases that walk the compiled stages (an
/// index: a fleet has thousands of stages, and a scan per stage is quadratic).
pub(crate) struct StageIndex<'a> {
    inputs: std::collections::HashMap<&'a str, &'a normalise::StageInput<'a>>,
    apis: std::collections::HashMap<&'a str, &'a portico_config::Api>,
}

impl<'a> StageIndex<'a> {
    pub(crate) fn new(inputs: &'a normalise::Inputs<'a>, apis: &'a [portico_config::Api]) -> Self {
        StageIndex {
            inputs: inputs.stages.iter().map(|s| (s.id.as_str(), s)).collect(),
            apis: apis.iter().map(|a| (a.id.as_str(), a)).collect(),
        }
    }

    /// The stage `stage_id`'s input and its API `api_id`, when both exist.
    pub(crate) fn get(
        &self,
        stage_id: &str,
        api_id: &str,
    ) -> Option<(&'a normalise::StageInput<'a>, &'a portico_config::Api)> {
        Some((*self.inputs.get(stage_id)?, *self.apis.get(api_id)?))
    }

    /// The API `id`.
    pub(crate) fn api(&self, id: &str) -> Option<&'a portico_config::Api> {
        self.apis.get(id).copied()
    }
}

pub fn compile(snapshot: &Snapshot) -> Compiled {
    let mut diags = Diags::default();
    // 1. Defaults and ordering are decided once, here; later phases never look at raw specs
    //    for values that have defaults.
    let inputs = normalise::normalise(snapshot, &mut diags);
    // 2. Object-level (later) fields: warnings only, so the position does not matter; the
    //    security-relevant method-level rules run inside `apis`, because they decide
    //    `fail_closed`.
    not_supported::objects(&inputs, &mut diags);
    // 3. APIs before stages: a stage needs to know whether its API compiled and which stage
    //    variables the API's integrations use.
    //    Authorizers before APIs: a method's authorization resolves against them.
    let authorizers = authorizers::compile_authorizers(&inputs.authorizers, &mut diags);
    let secrets = usage_plans::SecretIndex::new(&snapshot.secrets);
    let apis = apis::compile_apis(
        &inputs.apis,
        &snapshot.services,
        &secrets,
        &authorizers,
        &mut diags,
    );
    // 4. Stages, with host + base path conflicts resolved last among the surviving stages.
    let stages = stages::compile_stages(&inputs, &apis, &mut diags);

    let mut config = GatewayConfig {
        schema_version: SCHEMA_VERSION,
        apis: apis.into_iter().map(|a| a.api).collect(),
        stages,
        ..GatewayConfig::empty()
    };
    // 5. Stage throttles, usage plans and API keys last: they name compiled stages and routes.
    usage_plans::compile_usage(&inputs, snapshot, &mut config, &mut diags);
    // 6. Stage caches: they resolve methodSettings keys against the routes, whose cache keys
    //    they check.
    cache::compile_stage_caches(&inputs, &mut config, &mut diags);
    config.apis.sort_by(|a, b| a.id.cmp(&b.id));
    for api in &mut config.apis {
        api.routes.sort_by(|a, b| a.id.cmp(&b.id));
    }
    config.stages.sort_by(|a, b| a.id.cmp(&b.id));
    config.usage_plans.sort_by(|a, b| a.id.cmp(&b.id));
    config.api_keys.sort_by(|a, b| a.id.cmp(&b.id));
    if let Err(e) = config.validate() {
        // Every phase is written to keep the invariants; reaching this is a compiler bug.
        // Serve nothing rather than something the proxy would refuse.
        diags.0.push(Diagnostic::error(
            &ObjectRef::new("GatewayConfig", "", ""),
            "",
            "InternalError",
            format!("compile produced an invalid config: {e}"),
        ));
        config = GatewayConfig::empty();
    }
    let mut diagnostics = diags.0;
    diagnostics.sort_by(|a, b| {
        (&a.object, &a.field, a.severity, &a.reason, &a.message)
            .cmp(&(&b.object, &b.field, b.severity, &b.reason, &b.message))
    });
    diagnostics.dedup();
    Compiled {
        config,
        diagnostics,
    }
}

/// Collects diagnostics during a pass.
#[derive(Debug, Default)]
pub(crate) struct Diags(pub(crate) Vec<Diagnostic>);

impl Diags {
    /// Records an error.
    pub(crate) fn error(
        &mut self,
        obj: &ObjectRef,
        field: impl Into<String>,
        reason: &str,
        msg: impl Into<String>,
    ) {
        self.0.push(Diagnostic::error(obj, field, reason, msg));
    }

    /// Records a warning.
    pub(crate) fn warn(
        &mut self,
        obj: &ObjectRef,
        field: impl Into<String>,
        reason: &str,
        msg: impl Into<String>,
    ) {
        self.0.push(Diagnostic::warning(obj, field, reason, msg));
    }
}

/// HTTP verbs a method or route key may use (`ANY` matches every verb).
pub(crate) const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY",
];

/// Escapes a path or route key for use inside an id (JSON-pointer style: `~` -> `~0`,
/// `/` -> `~1`), so ids stay unambiguous: `/content/{id}` -> `~1content~1{id}`.
pub(crate) fn escape_id(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// `restapi/<ns>/<name>`.
pub(crate) fn api_id(namespace: &str, name: &str) -> String {
    format!("restapi/{namespace}/{name}")
}

/// `stage/<ns>/<name>`.
pub(crate) fn stage_id(namespace: &str, name: &str) -> String {
    format!("stage/{namespace}/{name}")
}

/// True for `[A-Za-z0-9_]+` (stage variable names).
pub(crate) fn is_variable_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_escape_slashes_like_json_pointers() {
        assert_eq!(escape_id("/content/{id}"), "~1content~1{id}");
        assert_eq!(escape_id("GET /a~b"), "GET ~1a~0b");
        assert_eq!(api_id("default", "pets"), "restapi/default/pets");
        assert_eq!(stage_id("default", "dev"), "stage/default/dev");
    }

    use crate::api::rest_api::{
        Integration as IntegrationSpec, IntegrationType, Method, MockResponse, RestResource,
    };
    use crate::api::{ObjectReference, RestApi, RestApiSpec, Stage as StageCr, StageSpec};
    use portico_config::{
        AccessLog, Api, DEFAULT_ACCESS_LOG_FORMAT, DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_TIMEOUT_MS,
        Integration, MockIntegration, PathTemplate, Protocol, Route, RouteMatch, Stage,
    };

    fn mk_mock_api(name: &str, path: &str) -> RestApi {
        let method = Method {
            integration: Some(IntegrationSpec {
                type_: IntegrationType::Mock,
                mock_response: Some(MockResponse {
                    status_code: 200,
                    headers: Default::default(),
                    body: Some("ok".into()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut api = RestApi::new(
            name,
            RestApiSpec {
                resources: vec![RestResource {
                    path: path.into(),
                    methods: [("GET".to_string(), method)].into(),
                }],
                ..Default::default()
            },
        );
        api.metadata.namespace = Some("default".into());
        api
    }

    fn mk_stage(name: &str, api: &str) -> StageCr {
        let mut s = StageCr::new(
            name,
            StageSpec {
                rest_api_ref: ObjectReference::local(api),
                ..Default::default()
            },
        );
        s.metadata.namespace = Some("default".into());
        s
    }

    #[test]
    fn a_mock_method_and_a_stage_compile_to_the_whole_expected_config() {
        let snapshot = Snapshot {
            rest_apis: vec![mk_mock_api("pets", "/pets")],
            stages: vec![mk_stage("dev", "pets")],
            ..Default::default()
        };
        let out = compile(&snapshot);
        assert_eq!(out.diagnostics, vec![]);
        assert_eq!(
            out.config,
            GatewayConfig {
                schema_version: SCHEMA_VERSION,
                apis: vec![Api {
                    id: "restapi/default/pets".into(),
                    source: ObjectRef::new("RestApi", "default", "pets"),
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
                            headers: Default::default(),
                            body: "ok".into(),
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
                    }],
                    gateway_responses: Default::default(),
                    max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
                    binary_media_types: Vec::new(),
                    minimum_compression_size: None,
                    models: Default::default(),
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
                    variables: Default::default(),
                    access_log: Some(AccessLog {
                        format: DEFAULT_ACCESS_LOG_FORMAT.into(),
                    }),
                    throttle: None,
                    method_throttles: Default::default(),
                    canary: None,
                    cache: None,
                }],
                ..GatewayConfig::empty()
            }
        );
    }

    #[test]
    fn a_stage_of_a_missing_api_is_dropped_with_an_unknown_reference() {
        let snapshot = Snapshot {
            stages: vec![mk_stage("dev", "nope")],
            ..Default::default()
        };
        let out = compile(&snapshot);
        assert_eq!(out.config, GatewayConfig::empty());
        assert_eq!(
            out.diagnostics,
            vec![Diagnostic::error(
                &ObjectRef::new("Stage", "default", "dev"),
                "spec.restApiRef.name",
                crate::reasons::UNKNOWN_REFERENCE,
                "RestApi default/nope does not exist; this stage is not served",
            )]
        );
    }

    #[test]
    fn duplicate_objects_keep_the_first_definition() {
        let snapshot = Snapshot {
            rest_apis: vec![mk_mock_api("pets", "/pets"), mk_mock_api("pets", "/other")],
            ..Default::default()
        };
        let out = compile(&snapshot);
        assert_eq!(out.config.apis[0].routes[0].resource_path, "/pets");
        assert_eq!(out.diagnostics.len(), 1);
        assert_eq!(out.diagnostics[0].reason, crate::reasons::DUPLICATE_OBJECT);
    }

    #[test]
    fn an_empty_snapshot_compiles_to_an_empty_valid_config() {
        let out = compile(&Snapshot::default());
        assert_eq!(out.config, GatewayConfig::empty());
        assert!(out.diagnostics.is_empty());
    }
}
