//! Phase "validation": an API's models (JSON Schema draft-04) and, per method, what its
//! request validator checks.
//!
//! ```text
//!  spec.models ── compile_models ──> schemas with every model $ref rewritten to
//!                                   portico_config::model_ref(name), each checked by
//!                                   building a draft-04 validator against the others
//!  method.requestValidator + requestParameters + requestModels
//!               ── compile_validation ──> Route.validation (None when nothing is checked)
//! ```
//!
//! `$ref` forms accepted between models of the same API (nothing is ever fetched):
//! - AWS's `https://apigateway.amazonaws.com/restapis/<api>/models/<Model>` (any api id),
//! - `#/definitions/<Model>` when the schema has no local definition of that name,
//! - a bare `<Model>`.
//!
//! Any of them may carry a fragment (`...#/properties/x`). Local `#...` pointers are kept.
//! Called by `apis`: models once per API, validation per method (it decides `fail_closed`).

use super::Diags;
use crate::api::rest_api::{Method, RequestValidator};
use crate::reasons;
use portico_config::{
    ObjectRef, ParameterLocation, RequestValidation, RequiredParameter, model_ref,
};
use serde_json::Value;
use std::collections::BTreeMap;

const AWS_MODEL_PREFIX: &str = "https://apigateway.amazonaws.com/restapis/";

/// An API's models after `$ref` rewriting: the good ones, and why the others are broken.
#[derive(Debug, Default)]
pub(crate) struct Models {
    pub schemas: BTreeMap<String, Value>,
    pub broken: BTreeMap<String, String>,
}

/// Rewrites and checks every model of the API.
pub(crate) fn compile_models(
    obj: &ObjectRef,
    models: &BTreeMap<String, crate::api::rest_api::Model>,
    diags: &mut Diags,
) -> Models {
    let mut out = Models::default();
    let names: Vec<&str> = models.keys().map(String::as_str).collect();
    for (name, model) in models {
        let field = format!("spec.models.{name}.schema");
        if !model.schema.is_object() {
            let msg = "the schema must be a JSON object".to_string();
            diags.error(obj, &field, reasons::INVALID_MODEL, &msg);
            out.broken.insert(name.clone(), msg);
            continue;
        }
        let mut schema = model.schema.clone();
        let locals = local_definitions(&model.schema);
        let mut errors = Vec::new();
        rewrite_refs(&mut schema, &locals, &names, &mut errors);
        if let Some(e) = errors.into_iter().next() {
            diags.error(obj, &field, reasons::INVALID_MODEL, &e);
            out.broken.insert(name.clone(), e);
            continue;
        }
        out.schemas.insert(name.clone(), schema);
    }
    // Each schema must compile as draft-04 with the others registered: this catches bad
    // keywords' values and references into broken or missing parts.
    let mut bad = Vec::new();
    for (name, schema) in &out.schemas {
        if let Err(e) = portico_config::model::validator(&out.schemas, schema) {
            let msg = format!("not a valid JSON Schema draft-04 document: {e}");
            diags.error(
                obj,
                format!("spec.models.{name}.schema"),
                reasons::INVALID_MODEL,
                &msg,
            );
            bad.push((name.clone(), msg));
        }
    }
    for (name, msg) in bad {
        out.schemas.remove(&name);
        out.broken.insert(name, msg);
    }
    out
}

fn local_definitions(schema: &Value) -> Vec<String> {
    schema
        .get("definitions")
        .and_then(Value::as_object)
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default()
}

/// Rewrites model references in place; what cannot be resolved goes to `errors`.
fn rewrite_refs(v: &mut Value, locals: &[String], models: &[&str], errors: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref") {
                match resolve_ref(r, locals, models) {
                    Ok(Some(new)) => *r = new,
                    Ok(None) => {}
                    Err(e) => errors.push(e),
                }
            }
            for (k, child) in map.iter_mut() {
                if k != "$ref" {
                    rewrite_refs(child, locals, models, errors);
                }
            }
        }
        Value::Array(items) => {
            for child in items {
                rewrite_refs(child, locals, models, errors);
            }
        }
        _ => {}
    }
}

/// The canonical form of `r`, `None` to keep it, or why it cannot be resolved.
pub(crate) fn resolve_ref(
    r: &str,
    locals: &[String],
    models: &[&str],
) -> Result<Option<String>, String> {
    let known = |name: &str, fragment: &str| {
        if models.contains(&name) {
            Ok(Some(format!("{}{fragment}", model_ref(name))))
        } else {
            Err(format!(
                "$ref {r:?} names model {name:?}, which this API does not define"
            ))
        }
    };
    if let Some(rest) = r.strip_prefix(AWS_MODEL_PREFIX) {
        let (path, fragment) = split_fragment(rest);
        return match path.split_once("/models/") {
            Some((api, name)) if !api.is_empty() && !name.is_empty() && !name.contains('/') => {
                known(name, fragment)
            }
            _ => Err(format!(
                "$ref {r:?}: expected {AWS_MODEL_PREFIX}<api>/models/<Model>"
            )),
        };
    }
    if let Some(rest) = r.strip_prefix("#/definitions/") {
        let (name, tail) = rest.split_once('/').map_or((rest, ""), |(n, t)| (n, t));
        if locals.iter().any(|l| l == name) {
            return Ok(None);
        }
        let fragment = if tail.is_empty() {
            String::new()
        } else {
            format!("#/{tail}")
        };
        return known(name, &fragment);
    }
    if r.starts_with('#') {
        return Ok(None);
    }
    let (path, fragment) = split_fragment(r);
    if !path.is_empty() && !path.contains([':', '/', '.']) {
        return known(path, fragment);
    }
    Err(format!(
        "$ref {r:?} refers outside the API's models; only models of the same API can be referenced (nothing is fetched)"
    ))
}

/// `("a", "#/x")` for `a#/x`, `("a", "")` for `a`.
fn split_fragment(s: &str) -> (&str, &str) {
    match s.find('#') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// What one method validates.
#[derive(Default)]
pub(crate) struct MethodValidation {
    pub validation: Option<RequestValidation>,
    /// Why the method must fail closed (an unknown validator or model, a broken model).
    pub fail: Option<String>,
}

/// Compiles the request validation of the method at `field`.
pub(crate) fn compile_validation(
    obj: &ObjectRef,
    field: &str,
    m: &Method,
    validators: &BTreeMap<String, RequestValidator>,
    models: &Models,
    params: &[String],
    diags: &mut Diags,
) -> MethodValidation {
    let mut out = MethodValidation {
        validation: None,
        fail: None,
    };
    let mut fail = |diags: &mut Diags, f: String, reason: &str, msg: String| {
        out.fail.get_or_insert_with(|| format!("{f}: {msg}"));
        diags.error(obj, f, reason, msg);
    };

    let mut required = Vec::new();
    for (key, is_required) in &m.request_parameters {
        let f = format!("{field}.requestParameters[{key:?}]");
        match parse_parameter(key) {
            Ok(p) => {
                if p.location == ParameterLocation::Path && !params.contains(&p.name) {
                    fail(
                        diags,
                        f,
                        reasons::INVALID_REQUEST_PARAMETER,
                        format!("{key}: the resource path has no parameter {{{}}}", p.name),
                    );
                } else if *is_required {
                    required.push(p);
                }
            }
            Err(e) => {
                if *is_required {
                    fail(diags, f, reasons::INVALID_REQUEST_PARAMETER, e);
                } else {
                    diags.warn(obj, f, reasons::INVALID_REQUEST_PARAMETER, e);
                }
            }
        }
    }
    for (content_type, name) in &m.request_models {
        let f = format!("{field}.requestModels[{content_type:?}]");
        if let Some(why) = models.broken.get(name) {
            fail(
                diags,
                f,
                reasons::INVALID_MODEL,
                format!("model {name:?} is invalid ({why}); the method answers 500"),
            );
        } else if !models.schemas.contains_key(name) {
            fail(
                diags,
                f,
                reasons::UNKNOWN_MODEL,
                format!("model {name:?} is not defined in spec.models; the method answers 500"),
            );
        }
    }

    let validator = match m.request_validator.as_deref().filter(|v| !v.is_empty()) {
        None => {
            if !required.is_empty() {
                diags.warn(
                    obj,
                    format!("{field}.requestParameters"),
                    reasons::INVALID_REQUEST_PARAMETER,
                    "required parameters are only enforced by a request validator with validateRequestParameters (as in AWS); set requestValidator",
                );
            }
            return out;
        }
        Some(name) => match validators.get(name) {
            Some(v) => v,
            None => {
                fail(
                    diags,
                    format!("{field}.requestValidator"),
                    reasons::UNKNOWN_VALIDATOR,
                    format!(
                        "request validator {name:?} is not defined in spec.requestValidators; the method answers 500"
                    ),
                );
                return out;
            }
        },
    };
    let mut v = RequestValidation::default();
    if validator.validate_request_parameters {
        v.required_parameters = required;
    }
    if validator.validate_request_body {
        v.body_models = m
            .request_models
            .iter()
            .map(|(ct, name)| (ct.to_ascii_lowercase(), name.clone()))
            .collect();
    }
    // A method that fails closed validates nothing (its models may be broken or missing).
    if v != RequestValidation::default() && out.fail.is_none() {
        out.validation = Some(v);
    }
    out
}

/// `method.request.<path|querystring|header>.<name>`.
fn parse_parameter(key: &str) -> Result<RequiredParameter, String> {
    let rest = key.strip_prefix("method.request.").ok_or_else(|| {
        format!("{key:?} must look like method.request.<path|querystring|header>.<name>")
    })?;
    let (loc, name) = rest
        .split_once('.')
        .filter(|(_, n)| !n.is_empty())
        .ok_or_else(|| format!("{key:?} has no parameter name"))?;
    let location = match loc {
        "path" => ParameterLocation::Path,
        "querystring" | "multivaluequerystring" => ParameterLocation::Querystring,
        "header" | "multivalueheader" => ParameterLocation::Header,
        other => {
            return Err(format!(
                "{key:?}: unknown location {other:?} (expected path, querystring or header)"
            ));
        }
    };
    let name = if location == ParameterLocation::Header {
        name.to_ascii_lowercase()
    } else {
        name.to_string()
    };
    Ok(RequiredParameter { location, name })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rest_api::Model;
    use serde_json::json;

    fn mk_models(m: &[(&str, Value)]) -> BTreeMap<String, Model> {
        m.iter()
            .map(|(n, s)| {
                (
                    n.to_string(),
                    Model {
                        schema: s.clone(),
                        ..Default::default()
                    },
                )
            })
            .collect()
    }

    #[test]
    fn refs_between_models_are_rewritten_in_every_accepted_form() {
        let models = ["Pet", "Owner"];
        let ok = |r: &str, locals: &[&str]| {
            let locals: Vec<String> = locals.iter().map(|s| s.to_string()).collect();
            resolve_ref(r, &locals, &models)
        };
        let pet = model_ref("Pet");
        assert_eq!(
            ok(
                "https://apigateway.amazonaws.com/restapis/abc123/models/Pet",
                &[]
            ),
            Ok(Some(pet.clone()))
        );
        assert_eq!(ok("#/definitions/Pet", &[]), Ok(Some(pet.clone())));
        assert_eq!(ok("#/definitions/Pet", &["Pet"]), Ok(None));
        assert_eq!(
            ok("#/definitions/Pet/properties/name", &[]),
            Ok(Some(format!("{pet}#/properties/name")))
        );
        assert_eq!(ok("Pet", &[]), Ok(Some(pet.clone())));
        assert_eq!(
            ok("Owner#/properties/x", &[]),
            Ok(Some(format!("{}#/properties/x", model_ref("Owner"))))
        );
        assert_eq!(ok("#/properties/a", &[]), Ok(None));
        assert!(ok("Cat", &[]).unwrap_err().contains("does not define"));
        assert!(
            ok("http://example.com/s.json", &[])
                .unwrap_err()
                .contains("nothing is fetched")
        );
    }

    #[test]
    fn models_compile_with_refs_and_invalid_ones_are_reported() {
        let obj = ObjectRef::new("RestApi", "default", "pets");
        let models = mk_models(&[
            (
                "Pet",
                json!({"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"},
                    "owner": {"$ref": "https://apigateway.amazonaws.com/restapis/x/models/Owner"}}}),
            ),
            ("Owner", json!({"type": "object", "required": ["id"]})),
            ("Bad", json!({"type": 12})),
            ("Dangling", json!({"$ref": "Nope"})),
        ]);
        let mut diags = Diags::default();
        let out = compile_models(&obj, &models, &mut diags);
        assert_eq!(out.schemas.keys().collect::<Vec<_>>(), ["Owner", "Pet"]);
        assert_eq!(out.broken.keys().collect::<Vec<_>>(), ["Bad", "Dangling"]);
        let fields: Vec<_> = diags.0.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(
            fields,
            ["spec.models.Dangling.schema", "spec.models.Bad.schema"]
        );

        let v = portico_config::model::validator(&out.schemas, &out.schemas["Pet"]).unwrap();
        assert!(v.is_valid(&json!({"name": "rex", "owner": {"id": 1}})));
        assert!(!v.is_valid(&json!({"name": "rex", "owner": {}})));
        assert!(!v.is_valid(&json!({"owner": {"id": 1}})));
    }

    #[test]
    fn parameters_parse_and_unknown_locations_are_rejected() {
        assert_eq!(
            parse_parameter("method.request.header.X-Id").unwrap(),
            RequiredParameter {
                location: ParameterLocation::Header,
                name: "x-id".into()
            }
        );
        assert_eq!(
            parse_parameter("method.request.querystring.page")
                .unwrap()
                .location,
            ParameterLocation::Querystring
        );
        assert!(parse_parameter("method.request.body.x").is_err());
        assert!(parse_parameter("method.request.path.").is_err());
        assert!(parse_parameter("request.path.id").is_err());
    }
}
