//! Phase "not supported": fields listed under "Not supported yet" in `docs/manifest-spec.md`
//! that are set to a non-default value.
//!
//! Security-relevant fields are decided elsewhere (authorization: `authorizers`; API keys:
//! `usage_plans`; required parameters and validators: `validation`); the rules left here are
//! errors and make the method fail closed, so nothing is served less protected than its
//! author wrote; everything else is a warning and is served without the feature.

use super::Diags;
use super::authorizers::MethodAuth;
use super::normalise::Inputs;
use crate::api::rest_api::{Integration, IntegrationType, MethodResponse, PassthroughBehavior};
use crate::reasons::NOT_YET_SUPPORTED;
use portico_config::ObjectRef;

/// The method-level fields the rules look at; HTTP routes leave the REST-only ones empty.
#[derive(Default)]
pub(crate) struct MethodView<'a> {
    pub auth: MethodAuth<'a>,
    pub api_key_required: Option<bool>,
    pub method_responses: &'a [MethodResponse],
}

/// Object-level rules (RestApi, Stage). Warnings only.
pub(crate) fn objects(inputs: &Inputs<'_>, diags: &mut Diags) {
    // RestApi: nothing left (`routeSelectionExpression` compiles in `websocket`).
    for stage in &inputs.stages {
        let s = stage.spec;
        let mut later = |field: &str, set: bool| {
            if set {
                warn_later(diags, &stage.obj, field.to_string());
            }
        };
        // `throttle` and `methodSettings[..].throttle` are compiled (phase `usage_plans`), the
        // caching fields by phase `cache`.
        later(
            "spec.methodSettings",
            s.method_settings
                .values()
                .any(|m| m.metrics_enabled.is_some()),
        );
    }
}

fn warn_later(diags: &mut Diags, obj: &ObjectRef, field: String) {
    let msg = format!("{field} is not supported yet; served without it");
    diags.warn(obj, field, NOT_YET_SUPPORTED, msg);
}

/// Method-level rules for the method at `field` (e.g. `spec.resources[0].methods.GET`):
/// warnings only. Nothing security-relevant is unsupported any more, so no rule here fails a
/// method closed: authorizationType / authorizerRef / authorizationScopes: see `authorizers`;
/// apiKeyRequired: see `usage_plans`; requestParameters, requestValidator and requestModels:
/// see `validation`.
pub(crate) fn method(
    obj: &ObjectRef,
    field: &str,
    integration: Option<&Integration>,
    diags: &mut Diags,
) {
    let mut later = |sub: &str, set: bool| {
        if set {
            warn_later(diags, obj, format!("{field}.{sub}"));
        }
    };
    if let Some(i) = integration {
        // HTTP, MOCK and HTTP_PROXY mappings compile in `transforms` (which also warns
        // where HTTP_PROXY ignores templates); parameter mappings of AWS_PROXY are later.
        let aws = matches!(i.type_, IntegrationType::AwsProxy | IntegrationType::Aws);
        later(
            "integration.requestParameters",
            aws && !i.request_parameters.is_empty(),
        );
        later(
            "integration.requestTemplates",
            aws && !i.request_templates.is_empty(),
        );
        later(
            "integration.passthroughBehavior",
            aws && i
                .passthrough_behavior
                .is_some_and(|p| p != PassthroughBehavior::WhenNoMatch),
        );
        later(
            "integration.contentHandling",
            aws && i.content_handling.is_some(),
        );
        later(
            "integration.integrationResponses",
            aws && !i.integration_responses.is_empty(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_integration_fields_warn_and_nothing_is_an_error() {
        let obj = ObjectRef::new("RestApi", "default", "a");
        let integration = Integration {
            type_: IntegrationType::AwsProxy,
            request_templates: [("application/json".to_string(), "{}".to_string())].into(),
            ..Default::default()
        };
        let mut diags = Diags::default();
        method(
            &obj,
            "spec.resources[0].methods.GET",
            Some(&integration),
            &mut diags,
        );
        let fields: Vec<_> = diags
            .0
            .iter()
            .map(|d| (d.is_error(), d.field.as_str()))
            .collect();
        assert_eq!(
            fields,
            [(
                false,
                "spec.resources[0].methods.GET.integration.requestTemplates"
            )]
        );
    }
}
