//! Validate phase: AWS request validators (`validateRequestParameters`,
//! `validateRequestBody`).
//!
//! Runs after routing and the payload cap, before the integration. Reads the route's
//! [`RouteValidation`] (built once per API at `Runtime` build: draft-04 validators compiled
//! with every model of the API registered under its canonical `$ref` URI, offline), the query
//! string, headers and path parameters, and the buffered body. Writes
//! `$context.error.message` / `$context.error.validationErrorString`. Short-circuits with
//! `BadRequestParameters` (400 `Missing required request parameters: [a, b]`),
//! `BadRequestBody` (400 `Invalid request body`) or, for a route whose model cannot be
//! compiled, `ApiConfigurationError`.
//!
//! Parameters are checked before the body (as AWS). Only a route that validates its body has
//! it buffered (bounded by the payload cap); every other route keeps streaming.
//!
//! Body model selection: the model for the request's media type (parameters dropped, case
//! ignored), else `$default`, else `application/json`'s. An empty body is validated as `{}`;
//! a body that is not JSON fails with `[Invalid JSON: ...]`.

use super::ctx::RequestCtx;
use super::error::GatewayError;
use http::HeaderMap;
use http::request::Parts;
use percent_encoding::percent_decode_str;
use portico_config::{Api, ParameterLocation, RequestValidation};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The most schema errors listed in `validationErrorString`.
const MAX_ERRORS: usize = 10;

/// One route's request validation, compiled.
#[derive(Debug)]
pub enum RouteValidation {
    /// What to check.
    Checks(Checks),
    /// A model could not be compiled: the route answers 500 (logged at build).
    Broken(Arc<str>),
}

/// Compiled checks of one route.
#[derive(Debug)]
pub struct Checks {
    params: Vec<(ParameterLocation, Box<str>)>,
    /// Validators by lower-case media type.
    bodies: Vec<(Box<str>, Arc<jsonschema::Validator>)>,
}

impl RouteValidation {
    /// Whether the body must be buffered for this route.
    pub fn validates_body(&self) -> bool {
        matches!(self, RouteValidation::Checks(c) if !c.bodies.is_empty())
    }
}

/// Compiles the validation of every route of `api` (same order as `api.routes`); models are
/// compiled once per API and shared by its routes.
pub fn build(api: &Api) -> Vec<Option<RouteValidation>> {
    let mut cache: BTreeMap<&str, Result<Arc<jsonschema::Validator>, String>> = BTreeMap::new();
    api.routes
        .iter()
        .map(|route| {
            let v = route.validation.as_ref()?;
            Some(compile_route(api, v, &mut cache).unwrap_or_else(|reason| {
                tracing::warn!(route = %route.id, %reason, "request validation cannot be built; the route fails closed");
                RouteValidation::Broken(reason.into())
            }))
        })
        .collect()
}

fn compile_route<'a>(
    api: &'a Api,
    v: &'a RequestValidation,
    cache: &mut BTreeMap<&'a str, Result<Arc<jsonschema::Validator>, String>>,
) -> Result<RouteValidation, String> {
    let mut bodies = Vec::new();
    for (ct, model) in &v.body_models {
        let compiled = cache
            .entry(model.as_str())
            .or_insert_with(|| compile_model(&api.models, model).map(Arc::new))
            .clone()?;
        bodies.push((ct.to_ascii_lowercase().into(), compiled));
    }
    Ok(RouteValidation::Checks(Checks {
        params: v
            .required_parameters
            .iter()
            .map(|p| (p.location, p.name.as_str().into()))
            .collect(),
        bodies,
    }))
}

/// A draft-04 validator for model `name`, every model of the API registered, nothing fetched.
pub fn compile_model(
    models: &BTreeMap<String, Value>,
    name: &str,
) -> Result<jsonschema::Validator, String> {
    let schema = models
        .get(name)
        .ok_or_else(|| format!("model {name:?} is not in the config"))?;
    portico_config::model::validator(models, schema).map_err(|e| format!("model {name:?}: {e}"))
}

/// Checks required parameters.
pub fn check_parameters(
    ctx: &mut RequestCtx,
    parts: &Parts,
    v: &RouteValidation,
) -> Result<(), GatewayError> {
    let checks = match v {
        RouteValidation::Broken(reason) => {
            return Err(GatewayError::ApiConfigurationError(reason.to_string()));
        }
        RouteValidation::Checks(c) => c,
    };
    if checks.params.is_empty() {
        return Ok(());
    }
    let query = ctx.uri.query().unwrap_or("");
    let missing: Vec<&str> = checks
        .params
        .iter()
        .filter(|(loc, name)| match loc {
            ParameterLocation::Querystring => !query_has(query, name),
            ParameterLocation::Header => !parts.headers.contains_key(&**name),
            ParameterLocation::Path => !ctx
                .path_parameters()
                .any(|(n, value)| n == &**name && !value.is_empty()),
        })
        .map(|(_, n)| &**n)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let msg = format!(
        "Missing required request parameters: [{}]",
        missing.join(", ")
    );
    ctx.validation_error = Some(msg.clone().into());
    ctx.error_message = Some(msg.into());
    Err(GatewayError::BadRequestParameters)
}

/// True when the query string has `name` (decoded, `+` as space), with any value.
fn query_has(query: &str, name: &str) -> bool {
    query.split('&').any(|pair| {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if key == name {
            return true;
        }
        let key = key.replace('+', " ");
        percent_decode_str(&key).decode_utf8_lossy() == name
    })
}

/// Checks the body against the model for its content type.
pub fn check_body(
    ctx: &mut RequestCtx,
    headers: &HeaderMap,
    body: &[u8],
    v: &RouteValidation,
) -> Result<(), GatewayError> {
    let RouteValidation::Checks(checks) = v else {
        return Ok(());
    };
    match select(checks, headers) {
        Some(validator) => check_with(ctx, validator, body),
        None => Ok(()),
    }
}

/// `body` against `validator`: 400 BAD_REQUEST_BODY with the errors in
/// `$context.error.validationErrorString` when it does not match.
fn check_with(
    ctx: &mut RequestCtx,
    validator: &jsonschema::Validator,
    body: &[u8],
) -> Result<(), GatewayError> {
    match errors_of(validator, body) {
        None => Ok(()),
        Some(errors) => {
            ctx.validation_error = Some(errors.into());
            Err(GatewayError::BadRequestBody)
        }
    }
}

/// Checks a WebSocket message against the model its route selects by `key` (the value its
/// `modelSelectionExpression` read, or `$default`), else `$default`'s; none: nothing checked.
pub fn check_body_keyed(
    ctx: &mut RequestCtx,
    key: &str,
    body: &[u8],
    v: &RouteValidation,
) -> Result<(), GatewayError> {
    let RouteValidation::Checks(checks) = v else {
        return Ok(());
    };
    let find = |k: &str| {
        checks
            .bodies
            .iter()
            .find(|(c, _)| &**c == k)
            .map(|(_, v)| &**v)
    };
    match find(&key.to_ascii_lowercase()).or_else(|| find("$default")) {
        Some(validator) => check_with(ctx, validator, body),
        None => Ok(()),
    }
}

fn select<'a>(checks: &'a Checks, headers: &HeaderMap) -> Option<&'a jsonschema::Validator> {
    let media = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let find = |ct: &str| {
        checks
            .bodies
            .iter()
            .find(|(c, _)| &**c == ct)
            .map(|(_, v)| &**v)
    };
    media
        .as_deref()
        .and_then(find)
        .or_else(|| find("$default"))
        .or_else(|| find("application/json"))
}

/// `None` when `body` is valid, else the `validationErrorString`: `[error, error, ...]`.
/// Double quotes in messages become single quotes, so that the string can be placed inside a
/// JSON string in a gateway response template (which renders it raw, as AWS does).
fn errors_of(validator: &jsonschema::Validator, body: &[u8]) -> Option<String> {
    let instance: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                return Some(format!(
                    "[Invalid JSON: {}]",
                    e.to_string().replace('"', "'")
                ));
            }
        }
    };
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .take(MAX_ERRORS)
        .map(|e| {
            let path = e.instance_path().to_string();
            let msg = e.to_string().replace('"', "'");
            if path.is_empty() {
                msg
            } else {
                format!("{path}: {msg}")
            }
        })
        .collect();
    if errors.is_empty() {
        None
    } else {
        Some(format!("[{}]", errors.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_config::model_ref;
    use serde_json::json;

    fn mk_models() -> BTreeMap<String, Value> {
        [
            (
                "Pet".to_string(),
                json!({"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"},
                    "owner": {"$ref": model_ref("Owner")}}}),
            ),
            (
                "Owner".to_string(),
                json!({"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}),
            ),
        ]
        .into()
    }

    #[test]
    fn bodies_are_validated_against_models_with_refs() {
        let v = compile_model(&mk_models(), "Pet").unwrap();
        assert_eq!(errors_of(&v, br#"{"name":"rex","owner":{"id":1}}"#), None);
        assert_eq!(
            errors_of(&v, br#"{"name":"rex","owner":{"id":"x"}}"#).as_deref(),
            Some("[/owner/id: 'x' is not of type 'integer']")
        );
        assert_eq!(
            errors_of(&v, b"").as_deref(),
            Some("['name' is a required property]")
        );
        assert!(
            errors_of(&v, b"{nope")
                .unwrap()
                .starts_with("[Invalid JSON: ")
        );
    }

    #[test]
    fn an_unknown_ref_does_not_compile_and_nothing_is_fetched() {
        let mut models = mk_models();
        models.insert(
            "Far".into(),
            json!({"$ref": "https://example.com/schema.json"}),
        );
        assert!(compile_model(&models, "Far").is_err());
        assert!(compile_model(&models, "Nope").is_err());
    }

    #[test]
    fn query_parameters_are_found_decoded_with_any_value() {
        assert!(query_has("a=1&page=", "page"));
        assert!(query_has("page", "page"));
        assert!(query_has("my%20key=1", "my key"));
        assert!(query_has("my+key=1", "my key"));
        assert!(!query_has("pages=1", "page"));
        assert!(!query_has("", "page"));
    }

    #[test]
    fn the_body_model_follows_the_content_type_then_json() {
        let models = mk_models();
        let pet = Arc::new(compile_model(&models, "Pet").unwrap());
        let owner = Arc::new(compile_model(&models, "Owner").unwrap());
        let checks = Checks {
            params: vec![],
            bodies: vec![
                ("application/json".into(), pet.clone()),
                ("application/x-owner".into(), owner.clone()),
            ],
        };
        let mut h = HeaderMap::new();
        let is = |h: &HeaderMap, want: &Arc<jsonschema::Validator>| {
            std::ptr::eq(select(&checks, h).unwrap(), &**want)
        };
        assert!(is(&h, &pet));
        h.insert(
            http::header::CONTENT_TYPE,
            "Application/X-Owner; charset=utf-8".parse().unwrap(),
        );
        assert!(is(&h, &owner));
        h.insert(http::header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(is(&h, &pet));
    }
}
