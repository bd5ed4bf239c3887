//! Phase "apis": each RestApi to an [`Api`] with its routes.
//!
//! REST APIs flatten `spec.resources[].methods` into routes; HTTP and WebSocket APIs compile
//! `spec.routes[].routeKey`. A method with an invalid path, verb or route key cannot be
//! matched and is dropped; a duplicate (same verb and path shape, or the same WebSocket route
//! key) is dropped; a method whose integration or security settings cannot be honoured
//! becomes a route that fails closed. An API whose selection expressions cannot be honoured
//! is dropped (see `websocket`).

use super::authorizers::{CompiledAuthorizers, MethodAuth, resolve_method};
use super::gateway_responses::compile_gateway_responses;
use super::integrations::compile_integration;
use super::normalise::ApiInput;
use super::not_supported::{self, MethodView};
use super::transforms::{
    compile_binary_media_types, compile_minimum_compression_size, compile_transform,
};
use super::validation::{compile_models, compile_validation};
use super::websocket::{self, CONNECT, DISCONNECT};
use super::{Diags, METHODS, escape_id};
use crate::api::rest_api::{
    ApiProtocol, AuthorizationType, Integration as IntegrationSpec, IntegrationType, Method,
};
use crate::reasons;
use crate::snapshot::Service;
use portico_config::{
    Api, Authorizer, DEFAULT_MAX_PAYLOAD_BYTES, Integration, ObjectRef, PathTemplate, Protocol,
    Route, RouteMatch,
};
use std::collections::{BTreeMap, BTreeSet};

/// One compiled API and what stages need to know about it.
pub(crate) struct CompiledApi {
    pub api: Api,
    /// Stage variables used by the API's serving routes, with the first method using each
    /// (for the message when a stage does not define it).
    pub stage_variables: BTreeMap<String, String>,
}

/// The compiled APIs, plus the ids of RestApis that exist but were dropped.
pub(crate) struct CompiledApis {
    pub apis: Vec<CompiledApi>,
    pub dropped: BTreeSet<String>,
}

impl IntoIterator for CompiledApis {
    type Item = CompiledApi;
    type IntoIter = std::vec::IntoIter<CompiledApi>;
    fn into_iter(self) -> Self::IntoIter {
        self.apis.into_iter()
    }
}

/// Compiles every API (inputs are already sorted).
pub(crate) fn compile_apis(
    inputs: &[ApiInput<'_>],
    services: &[Service],
    secrets: &super::usage_plans::SecretIndex<'_>,
    authorizers: &CompiledAuthorizers,
    diags: &mut Diags,
) -> CompiledApis {
    let mut out = CompiledApis {
        apis: Vec::new(),
        dropped: BTreeSet::new(),
    };
    for input in inputs {
        match compile_api(input, services, secrets, authorizers, diags) {
            Some(api) => out.apis.push(api),
            None => {
                out.dropped.insert(input.id.clone());
            }
        }
    }
    out
}

/// A route under construction, before duplicate detection.
struct Candidate<'a> {
    field: String,
    verb: String,
    matcher: RouteMatch,
    resource_path: String,
    route_key: String,
    id: String,
    view: MethodView<'a>,
    integration: Option<&'a IntegrationSpec>,
    /// WebSocket routes: the integration without the fields not supported there yet (they
    /// are warned about); used instead of `integration` when set.
    ws_integration: Option<IntegrationSpec>,
    /// The REST method (request validation); `None` for HTTP routes.
    method: Option<&'a Method>,
    /// WebSocket routes: the integration's answer is sent back on the connection.
    two_way: bool,
    /// WebSocket routes: the models messages are validated against (`requestModels`).
    ws_model: Option<websocket::WsModels>,
    /// Why the route must fail closed, decided before its authorizer is resolved (which is
    /// then skipped): authorization the route cannot have.
    fail: Option<String>,
}

fn compile_api(
    input: &ApiInput<'_>,
    services: &[Service],
    secrets: &super::usage_plans::SecretIndex<'_>,
    authorizers: &CompiledAuthorizers,
    diags: &mut Diags,
) -> Option<CompiledApi> {
    let obj = &input.obj;
    let spec = input.spec;
    let protocol = match input.protocol {
        ApiProtocol::Rest => Protocol::Rest,
        ApiProtocol::Http => Protocol::Http,
        ApiProtocol::WebSocket => Protocol::WebSocket,
    };
    let ws = protocol == Protocol::WebSocket;
    // Selection expressions first: an API whose routes or keys cannot be selected as written
    // is not served at all.
    let selection = websocket::selection(obj, input.protocol, spec, diags).ok()?;
    websocket::ignored_api_fields(obj, input.protocol, spec, diags);
    let max_payload_bytes = match spec.max_payload_bytes {
        None => DEFAULT_MAX_PAYLOAD_BYTES,
        // Warned about (`ignored_api_fields`): the upgrade request has no body.
        Some(_) if ws => DEFAULT_MAX_PAYLOAD_BYTES,
        Some(n) if n > 0 => u64::try_from(n).expect("checked positive"),
        Some(n) => {
            diags.error(
                obj,
                "spec.maxPayloadBytes",
                reasons::INVALID_PAYLOAD_LIMIT,
                format!("maxPayloadBytes {n} must be positive; the default {DEFAULT_MAX_PAYLOAD_BYTES} is used"),
            );
            DEFAULT_MAX_PAYLOAD_BYTES
        }
    };

    let candidates = match protocol {
        Protocol::Rest => {
            if !spec.routes.is_empty() {
                diags.error(
                    obj,
                    "spec.routes",
                    reasons::PROTOCOL_MISMATCH,
                    "REST APIs use spec.resources; spec.routes is ignored (set protocol: HTTP to use route keys)",
                );
            }
            rest_candidates(input, diags)
        }
        Protocol::Http => {
            if !spec.resources.is_empty() {
                diags.error(
                    obj,
                    "spec.resources",
                    reasons::PROTOCOL_MISMATCH,
                    "HTTP APIs use spec.routes; spec.resources is ignored (set protocol: REST to use resources)",
                );
            }
            http_candidates(input, diags)
        }
        Protocol::WebSocket => {
            if !spec.resources.is_empty() {
                diags.error(
                    obj,
                    "spec.resources",
                    reasons::PROTOCOL_MISMATCH,
                    "WebSocket APIs use spec.routes ($connect, $disconnect, $default and custom route keys); spec.resources is ignored (set protocol: REST to use resources)",
                );
            }
            websocket_candidates(input, authorizers, diags)
        }
    };

    // Models before methods: a method's validation (or a WebSocket route's `requestModels`)
    // names them.
    let models = compile_models(obj, &spec.models, diags);

    // Duplicates: the same verb on the same path shape (`/a/{x}` and `/a/{y}` collide). The
    // first in manifest order wins; the others are dropped.
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut routes = Vec::new();
    let mut stage_variables = BTreeMap::new();
    let mut used_authorizers = BTreeMap::new();
    for c in candidates {
        let shape = match &c.matcher {
            RouteMatch::Path(t) => t.shape(),
            RouteMatch::Default => "$default".to_string(),
            RouteMatch::Message => c.route_key.clone(),
        };
        if let Some(first) = seen.get(&(c.verb.clone(), shape.clone())) {
            diags.error(
                obj,
                &c.field,
                reasons::DUPLICATE_ROUTE,
                format!(
                    "{} duplicates {first} ({}); it is not served",
                    c.route_key,
                    if ws {
                        "same route key"
                    } else {
                        "same method and path shape"
                    }
                ),
            );
            continue;
        }
        seen.insert((c.verb.clone(), shape), c.field.clone());

        let params: Vec<String> = c.matcher.param_names().map(str::to_string).collect();
        // Authorization first: a method whose authorizer cannot be honoured fails closed.
        let (authorization, auth_fail) = match &c.fail {
            Some(why) => (None, Some(why.clone())),
            None => match resolve_method(
                obj,
                &c.field,
                &c.view.auth,
                authorizers,
                &mut used_authorizers,
                diags,
            ) {
                Ok(a) => (a, None),
                Err(reason) => (None, Some(reason)),
            },
        };
        let integration_spec = c.ws_integration.as_ref().or(c.integration);
        not_supported::method(obj, &c.field, integration_spec, diags);
        let validation = match c.method {
            Some(m) => compile_validation(
                obj,
                &c.field,
                m,
                &spec.request_validators,
                &models,
                &params,
                diags,
            ),
            None => Default::default(),
        };
        // A WebSocket route's message model: validated as a body of `application/json`.
        let mut validation = validation;
        let mut model_selection = Vec::new();
        if let Some(ws) = &c.ws_model {
            // Keyed by selection value (`$default` when the expression is a literal or unset).
            if let Some(missing) = ws
                .models
                .values()
                .find(|m| !models.schemas.contains_key(*m))
            {
                diags.error(
                    obj,
                    &ws.field,
                    reasons::UNKNOWN_REFERENCE,
                    format!(
                        "model {missing:?} is not in spec.models; the route's messages are not validated and it fails closed"
                    ),
                );
                validation.fail = Some(format!("model {missing:?} is not in spec.models"));
            } else {
                validation.validation = Some(portico_config::RequestValidation {
                    required_parameters: Vec::new(),
                    body_models: ws.models.clone(),
                });
                model_selection = ws.path.clone();
            }
        }
        let ifield = format!("{}.integration", c.field);
        let integ = compile_integration(
            obj,
            &ifield,
            integration_spec,
            &params,
            services,
            protocol,
            diags,
        );
        // After the integration: the mappings depend on its type.
        let mut transform = compile_transform(
            obj,
            &c.field,
            integration_spec,
            c.view.method_responses,
            &params,
            diags,
        );
        let template_selection =
            integration_spec.and_then(|i| i.template_selection_expression.as_deref());
        let mut template_path = Vec::new();
        if ws {
            template_path = websocket::select_template(
                obj,
                &ifield,
                template_selection,
                &mut transform.transform,
                diags,
            );
        } else if template_selection.is_some() {
            diags.warn(
                obj,
                format!("{ifield}.templateSelectionExpression"),
                reasons::NOT_SUPPORTED_BY_PROTOCOL,
                "templateSelectionExpression applies to WebSocket APIs (templates are chosen by the request's Content-Type here); ignored",
            );
        }
        let fail_closed = auth_fail
            .or(validation.fail)
            .or(integ.fail)
            .or(transform.fail);
        if fail_closed.is_none() {
            for v in integ.stage_variables {
                stage_variables
                    .entry(v)
                    .or_insert_with(|| format!("{} ({}.integration.uri)", c.route_key, c.field));
            }
        }
        let cache_key =
            super::cache::compile_cache_key(obj, &c.field, c.integration, &params, protocol, diags);
        let mut integration = integ.integration;
        if let Integration::HttpProxy(h) = &mut integration {
            h.request_parameters = transform.proxy_parameters;
        }
        // A message has no HTTP method to pass on: WebSocket routes call HTTP backends with
        // POST unless `httpMethod` says otherwise (AWS requires one there).
        if ws
            && let Integration::Http(h) | Integration::HttpProxy(h) = &mut integration
            && h.http_method.is_none()
        {
            h.http_method = Some("POST".into());
        }
        routes.push(Route {
            id: c.id,
            resource_path: c.resource_path,
            route_key: c.route_key,
            http_method: c.verb,
            matcher: c.matcher,
            integration,
            timeout_ms: integ.timeout_ms,
            cache_key_parameters: cache_key.parameters,
            cache_namespace: cache_key.namespace,
            two_way: c.two_way,
            template_selection: template_path,
            model_selection,
            validation: validation.validation,
            fail_closed,
            transform: transform.transform,
            api_key_required: c.view.api_key_required == Some(true),
            authorization,
        });
    }

    let uses_models = routes.iter().any(|r| {
        r.validation
            .as_ref()
            .is_some_and(|v| !v.body_models.is_empty())
    });
    Some(CompiledApi {
        api: Api {
            id: input.id.clone(),
            source: obj.clone(),
            name: input.display_name.clone(),
            protocol,
            routes,
            gateway_responses: compile_gateway_responses(obj, &spec.gateway_responses, diags),
            max_payload_bytes,
            // WebSocket APIs have none of these (warned about in `ignored_api_fields`).
            binary_media_types: if ws {
                Vec::new()
            } else {
                compile_binary_media_types(obj, &spec.binary_media_types, diags)
            },
            minimum_compression_size: if ws {
                None
            } else {
                compile_minimum_compression_size(obj, spec.minimum_compression_size, diags)
            },
            cors: if ws {
                None
            } else {
                super::cors::compile_cors(obj, spec.cors.as_ref(), diags)
            },
            websocket: ws.then(|| {
                websocket::compile_settings(obj, spec, selection.route_selection, secrets, diags)
            }),
            // The proxy registers every model, so a route's model can refer to any other.
            models: if uses_models {
                models.schemas
            } else {
                BTreeMap::new()
            },
            api_key_source: selection.api_key_source,
            authorizers: used_authorizers,
        },
        stage_variables,
    })
}

fn check_verb(obj: &ObjectRef, field: &str, verb: &str, diags: &mut Diags) -> bool {
    if METHODS.contains(&verb) {
        return true;
    }
    diags.error(
        obj,
        field,
        reasons::INVALID_METHOD,
        format!(
            "method {verb:?} is not one of {} (upper case); it is not served",
            METHODS.join(", ")
        ),
    );
    false
}

fn rest_candidates<'a>(input: &ApiInput<'a>, diags: &mut Diags) -> Vec<Candidate<'a>> {
    let obj = &input.obj;
    let mut out = Vec::new();
    for (i, res) in input.spec.resources.iter().enumerate() {
        let field = format!("spec.resources[{i}]");
        let template = match PathTemplate::parse(&res.path) {
            Ok(t) => t,
            Err(e) => {
                diags.error(
                    obj,
                    format!("{field}.path"),
                    reasons::INVALID_PATH,
                    format!("{e}; the resource's methods are not served"),
                );
                continue;
            }
        };
        let path = template.to_string();
        for (verb, m) in &res.methods {
            let mfield = format!("{field}.methods.{verb}");
            if !check_verb(obj, &mfield, verb, diags) {
                continue;
            }
            out.push(Candidate {
                id: format!("{}/resource/{}/method/{verb}", input.id, escape_id(&path)),
                route_key: format!("{verb} {path}"),
                resource_path: path.clone(),
                verb: verb.clone(),
                matcher: RouteMatch::Path(template.clone()),
                view: MethodView {
                    auth: MethodAuth {
                        authorization_type: m.authorization_type,
                        authorizer_ref: m.authorizer_ref.as_ref(),
                        scopes: &m.authorization_scopes,
                    },
                    api_key_required: m.api_key_required,
                    method_responses: &m.method_responses,
                },
                integration: m.integration.as_ref(),
                ws_integration: None,
                ws_model: None,
                method: Some(m),
                two_way: false,
                fail: None,
                field: mfield,
            });
        }
    }
    out
}

fn http_candidates<'a>(input: &ApiInput<'a>, diags: &mut Diags) -> Vec<Candidate<'a>> {
    let obj = &input.obj;
    let mut out = Vec::new();
    for (i, r) in input.spec.routes.iter().enumerate() {
        let field = format!("spec.routes[{i}]");
        let key = r.route_key.trim();
        let (verb, matcher, resource_path, route_key) = if key == "$default" {
            (
                "ANY".to_string(),
                RouteMatch::Default,
                "$default".to_string(),
                "$default".to_string(),
            )
        } else {
            let parsed = key
                .split_once(' ')
                .ok_or_else(|| "expected \"<METHOD> <path>\" or \"$default\"".to_string())
                .and_then(|(verb, path)| {
                    if !METHODS.contains(&verb) {
                        return Err(format!(
                            "method {verb:?} is not one of {}",
                            METHODS.join(", ")
                        ));
                    }
                    PathTemplate::parse(path.trim())
                        .map(|t| (verb.to_string(), t))
                        .map_err(|e| e.to_string())
                });
            match parsed {
                Ok((verb, t)) => {
                    let path = t.to_string();
                    let route_key = format!("{verb} {path}");
                    (verb, RouteMatch::Path(t), path, route_key)
                }
                Err(e) => {
                    diags.error(
                        obj,
                        format!("{field}.routeKey"),
                        reasons::INVALID_ROUTE_KEY,
                        format!("route key {:?}: {e}; the route is not served", r.route_key),
                    );
                    continue;
                }
            }
        };
        // AWS's HTTP APIs have neither API keys nor route responses.
        let mut fail = None;
        if r.api_key_required == Some(true) {
            let f = format!("{field}.apiKeyRequired");
            let msg = "HTTP APIs have no API keys (as on AWS; use a REST API, or an authorizer)";
            diags.error(
                obj,
                &f,
                reasons::INVALID_AUTHORIZATION,
                format!(
                    "{msg}; the route answers 500 rather than being served without the key check"
                ),
            );
            fail = Some(format!("{f}: {msg}"));
        }
        if r.route_response_selection_expression.is_some() {
            diags.warn(
                obj,
                format!("{field}.routeResponseSelectionExpression"),
                reasons::NOT_SUPPORTED_BY_PROTOCOL,
                "routeResponseSelectionExpression applies to WebSocket APIs (an HTTP route always answers); ignored",
            );
        }
        if !r.request_models.is_empty() || r.model_selection_expression.is_some() {
            diags.warn(
                obj,
                format!("{field}.requestModels"),
                reasons::NOT_SUPPORTED_BY_PROTOCOL,
                "requestModels and modelSelectionExpression apply to WebSocket routes (HTTP APIs do not validate bodies); ignored",
            );
        }
        out.push(Candidate {
            id: format!("{}/route/{}", input.id, escape_id(&route_key)),
            field,
            verb,
            matcher,
            resource_path,
            route_key,
            view: MethodView {
                auth: MethodAuth {
                    authorization_type: r.authorization_type,
                    authorizer_ref: r.authorizer_ref.as_ref(),
                    scopes: &r.authorization_scopes,
                },
                api_key_required: r.api_key_required,
                ..Default::default()
            },
            integration: r.integration.as_ref(),
            ws_integration: None,
            ws_model: None,
            method: None,
            two_way: false,
            fail,
        });
    }
    out
}

/// WebSocket routes: `$connect`, `$disconnect`, `$default` and custom keys, selected by the
/// connection's lifecycle and the message, never by path. Authorization and API keys belong
/// to `$connect` (the connection is authorized once, as on AWS); elsewhere they are errors
/// and the route fails closed.
fn websocket_candidates<'a>(
    input: &ApiInput<'a>,
    authorizers: &CompiledAuthorizers,
    diags: &mut Diags,
) -> Vec<Candidate<'a>> {
    let obj = &input.obj;
    let mut out = Vec::new();
    for (i, r) in input.spec.routes.iter().enumerate() {
        let field = format!("spec.routes[{i}]");
        let key = r.route_key.as_str();
        if let Err(e) = websocket::check_route_key(key) {
            diags.error(
                obj,
                format!("{field}.routeKey"),
                reasons::INVALID_ROUTE_KEY,
                format!("route key {key:?}: {e}; the route is not served"),
            );
            continue;
        }
        let connect = key == CONNECT;
        let mut fail: Option<String> = None;
        let mut refuse = |diags: &mut Diags, sub: &str, msg: String| {
            let f = format!("{field}.{sub}");
            diags.error(
                obj,
                &f,
                reasons::INVALID_AUTHORIZATION,
                format!("{msg}; the route answers 500 rather than being served unprotected"),
            );
            fail.get_or_insert(format!("{f}: {msg}"));
        };
        let typed = r
            .authorization_type
            .is_some_and(|t| t != AuthorizationType::None);
        let authorized = typed || r.authorizer_ref.is_some() || !r.authorization_scopes.is_empty();
        if authorized && !connect {
            let sub = if typed {
                "authorizationType"
            } else if r.authorizer_ref.is_some() {
                "authorizerRef"
            } else {
                "authorizationScopes"
            };
            refuse(
                diags,
                sub,
                format!(
                    "a WebSocket API authorizes a connection once, on {CONNECT} (as on AWS); route {key} cannot have an authorizer"
                ),
            );
        }
        if connect
            && r.authorization_type == Some(AuthorizationType::Custom)
            && let Some(a) = r.authorizer_ref.as_ref()
            && let Some(c) = authorizers.get(&(obj.namespace.clone(), a.name.clone()))
            && matches!(c.result, Ok(Authorizer::Token(_)))
        {
            refuse(
                diags,
                "authorizerRef.name",
                format!(
                    "{} is a TOKEN authorizer; WebSocket APIs take REQUEST authorizers (as on AWS) or JWT ones",
                    c.obj
                ),
            );
        }
        if r.api_key_required == Some(true) && !connect {
            refuse(
                diags,
                "apiKeyRequired",
                format!(
                    "a WebSocket API checks the API key once, on {CONNECT}; route {key} cannot require one"
                ),
            );
        }
        let two_way = match r.route_response_selection_expression.as_deref() {
            None => false,
            Some(_) if connect || key == DISCONNECT => {
                diags.warn(
                    obj,
                    format!("{field}.routeResponseSelectionExpression"),
                    reasons::IGNORED_FIELD,
                    format!(
                        "{key} has no route response (nothing is sent back on it); routeResponseSelectionExpression is ignored"
                    ),
                );
                false
            }
            Some(websocket::DEFAULT) => true,
            Some(e) => {
                diags.error(
                    obj,
                    format!("{field}.routeResponseSelectionExpression"),
                    reasons::INVALID_SELECTION_EXPRESSION,
                    format!(
                        "{e:?}: only $default is supported (as on AWS); the route is served one-way"
                    ),
                );
                false
            }
        };
        // Mappings the WebSocket routes do not support yet: warned about and left out.
        let ws_integration = r.integration.as_ref().and_then(|integ| {
            // requestParameters are served (e.g. `context.connectionId` or an authorizer's
            // context into a backend header); integration responses are not yet.
            let later = [(
                "integrationResponses",
                !integ.integration_responses.is_empty() && integ.type_ != IntegrationType::AwsProxy,
            )];
            if !later.iter().any(|(_, set)| *set) {
                return None;
            }
            for (sub, set) in later {
                if set {
                    let f = format!("{field}.integration.{sub}");
                    diags.warn(
                        obj,
                        &f,
                        reasons::NOT_YET_SUPPORTED,
                        format!("{f} is not supported yet on WebSocket routes; served without it"),
                    );
                }
            }
            let mut owned = integ.clone();
            owned.integration_responses.clear();
            Some(owned)
        });
        let ws_model = websocket::select_model(
            obj,
            &field,
            r.model_selection_expression.as_deref(),
            &r.request_models,
            diags,
        );
        out.push(Candidate {
            id: format!("{}/route/{}", input.id, escape_id(key)),
            field,
            verb: String::new(),
            matcher: RouteMatch::Message,
            resource_path: key.to_string(),
            route_key: key.to_string(),
            view: MethodView {
                auth: MethodAuth {
                    authorization_type: r.authorization_type,
                    authorizer_ref: r.authorizer_ref.as_ref(),
                    scopes: &r.authorization_scopes,
                },
                api_key_required: r.api_key_required,
                ..Default::default()
            },
            integration: r.integration.as_ref(),
            ws_integration,
            ws_model,
            method: None,
            two_way,
            fail,
        });
    }
    out
}
