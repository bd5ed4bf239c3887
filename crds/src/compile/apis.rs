//! Phase "apis": each RestApi to an [`Api`] with its routes.
//!
//! REST APIs flatten `spec.resources[].methods` into routes; HTTP APIs compile
//! `spec.routes[].routeKey`. A method with an invalid path, verb or route key cannot be
//! matched and is dropped; a duplicate (same verb and path shape) is dropped; a method whose
//! integration or security settings cannot be honoured becomes a route that fails closed.
//! WEBSOCKET APIs are not supported yet and are dropped.

use super::authorizers::{CompiledAuthorizers, MethodAuth, resolve_method};
use super::gateway_responses::compile_gateway_responses;
use super::integrations::compile_integration;
use super::normalise::ApiInput;
use super::not_supported::{self, MethodView};
use super::transforms::{
    compile_binary_media_types, compile_minimum_compression_size, compile_transform,
};
use super::validation::{compile_models, compile_validation};
use super::{Diags, METHODS, escape_id};
use crate::api::rest_api::{ApiProtocol, Integration as IntegrationSpec, Method};
use crate::reasons;
use crate::snapshot::Service;
use portico_config::{
    Api, DEFAULT_MAX_PAYLOAD_BYTES, Integration, ObjectRef, PathTemplate, Protocol, Route,
    RouteMatch,
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
    authorizers: &CompiledAuthorizers,
    diags: &mut Diags,
) -> CompiledApis {
    let mut out = CompiledApis {
        apis: Vec::new(),
        dropped: BTreeSet::new(),
    };
    for input in inputs {
        match compile_api(input, services, authorizers, diags) {
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
    /// The REST method (request validation); `None` for HTTP routes.
    method: Option<&'a Method>,
}

fn compile_api(
    input: &ApiInput<'_>,
    services: &[Service],
    authorizers: &CompiledAuthorizers,
    diags: &mut Diags,
) -> Option<CompiledApi> {
    let obj = &input.obj;
    let spec = input.spec;
    let protocol = match input.protocol {
        ApiProtocol::Rest => Protocol::Rest,
        ApiProtocol::Http => Protocol::Http,
        ApiProtocol::WebSocket => {
            diags.error(
                obj,
                "spec.protocol",
                reasons::NOT_YET_SUPPORTED,
                "WEBSOCKET APIs are not supported yet; the API is not served",
            );
            return None;
        }
    };
    let max_payload_bytes = match spec.max_payload_bytes {
        None => DEFAULT_MAX_PAYLOAD_BYTES,
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
        _ => {
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
    };

    // Models before methods: a method's validation names them.
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
                    "{} duplicates {first} (same method and path shape); it is not served",
                    c.route_key
                ),
            );
            continue;
        }
        seen.insert((c.verb.clone(), shape), c.field.clone());

        let params: Vec<String> = c.matcher.param_names().map(str::to_string).collect();
        // Authorization first: a method whose authorizer cannot be honoured fails closed.
        let (authorization, auth_fail) = match resolve_method(
            obj,
            &c.field,
            &c.view.auth,
            authorizers,
            &mut used_authorizers,
            diags,
        ) {
            Ok(a) => (a, None),
            Err(reason) => (None, Some(reason)),
        };
        not_supported::method(obj, &c.field, c.integration, diags);
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
        let integ = compile_integration(
            obj,
            &format!("{}.integration", c.field),
            c.integration,
            &params,
            services,
            protocol,
            diags,
        );
        // After the integration: the mappings depend on its type.
        let transform = compile_transform(
            obj,
            &c.field,
            c.integration,
            c.view.method_responses,
            &params,
            diags,
        );
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
            two_way: false,
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
            binary_media_types: compile_binary_media_types(obj, &spec.binary_media_types, diags),
            minimum_compression_size: compile_minimum_compression_size(
                obj,
                spec.minimum_compression_size,
                diags,
            ),
            // The proxy registers every model, so a route's model can refer to any other.
            cors: super::cors::compile_cors(obj, spec.cors.as_ref(), diags),
            websocket: None,
            models: if uses_models {
                models.schemas
            } else {
                BTreeMap::new()
            },
            api_key_source: match spec.api_key_source {
                Some(crate::api::rest_api::ApiKeySource::Authorizer) => {
                    portico_config::ApiKeySource::Authorizer
                }
                _ => portico_config::ApiKeySource::Header,
            },
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
                method: Some(m),
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
                ..Default::default()
            },
            integration: r.integration.as_ref(),
            method: None,
        });
    }
    out
}
