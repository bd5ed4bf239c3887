//! Phase "not supported": fields marked (later) in `docs/manifest-spec.md` that are set to a
//! non-default value, and the kinds that compile to nothing yet.
//!
//! Security-relevant fields (API keys, required parameters, validators; authorization is decided in `authorizers`) are
//! errors and make the method fail closed, so nothing is served less protected than its
//! author wrote; everything else is a warning and is served without the feature.

use super::Diags;
use super::authorizers::MethodAuth;
use super::normalise::Inputs;
use crate::api::rest_api::{ApiKeySource, Integration, MethodResponse, PassthroughBehavior};
use crate::reasons::NOT_YET_SUPPORTED;
use portico_config::ObjectRef;
use std::collections::BTreeMap;

/// The method-level fields the rules look at; HTTP routes leave the REST-only ones empty.
#[derive(Default)]
pub(crate) struct MethodView<'a> {
    pub auth: MethodAuth<'a>,
    pub api_key_required: Option<bool>,
    pub request_parameters: Option<&'a BTreeMap<String, bool>>,
    pub request_validator: Option<&'a str>,
    pub request_models: Option<&'a BTreeMap<String, String>>,
    pub method_responses: &'a [MethodResponse],
}

/// Object-level rules (RestApi, Stage) and the whole kinds compiled to nothing yet. Warnings
/// only.
pub(crate) fn objects(inputs: &Inputs<'_>, diags: &mut Diags) {
    for obj in &inputs.later_kinds {
        diags.warn(
            obj,
            "spec",
            NOT_YET_SUPPORTED,
            format!(
                "{} objects are accepted but not enforced yet; they compile to nothing",
                obj.kind
            ),
        );
    }
    for api in &inputs.apis {
        let s = api.spec;
        let mut later = |field: &str, set: bool| {
            if set {
                warn_later(diags, &api.obj, field.to_string());
            }
        };
        later("spec.binaryMediaTypes", !s.binary_media_types.is_empty());
        later(
            "spec.minimumCompressionSize",
            s.minimum_compression_size.is_some(),
        );
        later(
            "spec.apiKeySource",
            s.api_key_source == Some(ApiKeySource::Authorizer),
        );
        later(
            "spec.routeSelectionExpression",
            s.route_selection_expression.is_some(),
        );
        later("spec.models", !s.models.is_empty());
        later("spec.requestValidators", !s.request_validators.is_empty());
        later(
            "spec.cors",
            s.cors.as_ref().is_some_and(|c| *c != Default::default()),
        );
    }
    for stage in &inputs.stages {
        let s = stage.spec;
        let mut later = |field: &str, set: bool| {
            if set {
                warn_later(diags, &stage.obj, field.to_string());
            }
        };
        later("spec.throttle", s.throttle.is_some());
        later("spec.methodSettings", !s.method_settings.is_empty());
        later(
            "spec.cacheClusterEnabled",
            s.cache_cluster_enabled == Some(true),
        );
        later("spec.canarySettings", s.canary_settings.is_some());
    }
}

fn warn_later(diags: &mut Diags, obj: &ObjectRef, field: String) {
    let msg = format!("{field} is not supported yet; served without it");
    diags.warn(obj, field, NOT_YET_SUPPORTED, msg);
}

/// Method-level rules for the method at `field` (e.g. `spec.resources[0].methods.GET`).
/// Returns the fail-closed reason when a security-relevant field is set.
pub(crate) fn method(
    obj: &ObjectRef,
    field: &str,
    m: &MethodView<'_>,
    integration: Option<&Integration>,
    diags: &mut Diags,
) -> Option<String> {
    let mut fail: Option<String> = None;
    let mut deny = |sub: &str, set: bool, diags: &mut Diags| {
        if set {
            let f = format!("{field}.{sub}");
            let msg = format!(
                "{f} is not supported yet; the method answers 500 rather than being served unprotected"
            );
            fail.get_or_insert_with(|| format!("{f} is not supported yet"));
            diags.error(obj, f, NOT_YET_SUPPORTED, msg);
        }
    };
    // authorizationType / authorizerRef / authorizationScopes: see `authorizers`.
    deny("apiKeyRequired", m.api_key_required == Some(true), diags);
    let required_params = m
        .request_parameters
        .is_some_and(|p| p.values().any(|required| *required));
    deny("requestParameters", required_params, diags);
    deny(
        "requestValidator",
        m.request_validator.is_some_and(|v| !v.is_empty()),
        diags,
    );

    let mut later = |sub: &str, set: bool| {
        if set {
            warn_later(diags, obj, format!("{field}.{sub}"));
        }
    };
    later(
        "requestParameters",
        !required_params && m.request_parameters.is_some_and(|p| !p.is_empty()),
    );
    later(
        "requestModels",
        m.request_models.is_some_and(|p| !p.is_empty()),
    );
    later("methodResponses", !m.method_responses.is_empty());
    if let Some(i) = integration {
        later(
            "integration.requestParameters",
            !i.request_parameters.is_empty(),
        );
        later(
            "integration.requestTemplates",
            !i.request_templates.is_empty(),
        );
        later(
            "integration.passthroughBehavior",
            i.passthrough_behavior
                .is_some_and(|p| p != PassthroughBehavior::WhenNoMatch),
        );
        later("integration.contentHandling", i.content_handling.is_some());
        later(
            "integration.integrationResponses",
            !i.integration_responses.is_empty(),
        );
    }
    fail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_relevant_fields_fail_closed_and_others_warn() {
        let obj = ObjectRef::new("RestApi", "default", "a");
        let params: BTreeMap<String, bool> =
            [("method.request.querystring.page".to_string(), true)].into();
        let view = MethodView {
            api_key_required: Some(true),
            request_parameters: Some(&params),
            ..Default::default()
        };
        let mut diags = Diags::default();
        let fail = method(
            &obj,
            "spec.resources[0].methods.GET",
            &view,
            None,
            &mut diags,
        );
        assert_eq!(
            fail.as_deref(),
            Some("spec.resources[0].methods.GET.apiKeyRequired is not supported yet")
        );
        let fields: Vec<_> = diags
            .0
            .iter()
            .map(|d| (d.is_error(), d.field.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                (true, "spec.resources[0].methods.GET.apiKeyRequired"),
                (true, "spec.resources[0].methods.GET.requestParameters"),
            ]
        );

        let optional: BTreeMap<String, bool> =
            [("method.request.querystring.page".to_string(), false)].into();
        let view = MethodView {
            request_parameters: Some(&optional),
            ..Default::default()
        };
        let mut diags = Diags::default();
        assert_eq!(method(&obj, "m", &view, None, &mut diags), None);
        assert_eq!(diags.0.len(), 1);
        assert!(!diags.0[0].is_error());
    }
}
