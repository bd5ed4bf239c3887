//! Gateway responses: `spec.gatewayResponses` to [`GatewayResponseOverride`]s.
//!
//! Keys must be AWS gateway response types; only `application/json` templates are served
//! (others are warned about and ignored). A bad entry is dropped with an error; the API and
//! its other overrides are still served.

use super::Diags;
use crate::api::rest_api::GatewayResponse;
use crate::reasons;
use portico_config::{GatewayResponseOverride, GatewayResponseType, ObjectRef};
use std::collections::BTreeMap;

/// The only content type whose template is served today.
const JSON: &str = "application/json";

/// Compiles the overrides of one API.
pub(crate) fn compile_gateway_responses(
    obj: &ObjectRef,
    spec: &BTreeMap<String, GatewayResponse>,
    diags: &mut Diags,
) -> BTreeMap<GatewayResponseType, GatewayResponseOverride> {
    let mut out = BTreeMap::new();
    for (key, gr) in spec {
        let field = format!("spec.gatewayResponses.{key}");
        let ty = match key.parse::<GatewayResponseType>() {
            Ok(ty) => ty,
            Err(e) => {
                diags.error(
                    obj,
                    field,
                    reasons::INVALID_GATEWAY_RESPONSE,
                    format!("{e}; use an AWS type such as DEFAULT_4XX, THROTTLED or MISSING_AUTHENTICATION_TOKEN"),
                );
                continue;
            }
        };
        let status_code = match gr.status_code {
            None => None,
            Some(s) => match u16::try_from(s) {
                Ok(s) if (100..=599).contains(&s) => Some(s),
                _ => {
                    diags.error(
                        obj,
                        format!("{field}.statusCode"),
                        reasons::INVALID_GATEWAY_RESPONSE,
                        format!("status code {s} is outside 100..599; the override is ignored"),
                    );
                    continue;
                }
            },
        };
        for content_type in gr.response_templates.keys().filter(|c| *c != JSON) {
            diags.warn(
                obj,
                format!("{field}.responseTemplates.{content_type}"),
                reasons::UNSUPPORTED_CONTENT_TYPE,
                format!("only {JSON} response templates are served; {content_type} is ignored"),
            );
        }
        out.insert(
            ty,
            GatewayResponseOverride {
                status_code,
                headers: gr.response_headers.clone(),
                body_template: gr.response_templates.get(JSON).cloned(),
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_templates_map_to_body_and_bad_entries_are_dropped() {
        let obj = ObjectRef::new("RestApi", "default", "a");
        let spec: BTreeMap<String, GatewayResponse> = [
            (
                "THROTTLED".to_string(),
                GatewayResponse {
                    status_code: Some(503),
                    response_headers: [("x-a".to_string(), "1".to_string())].into(),
                    response_templates: [
                        (JSON.to_string(), "{}".to_string()),
                        ("text/plain".to_string(), "slow".to_string()),
                    ]
                    .into(),
                },
            ),
            ("NOPE".to_string(), GatewayResponse::default()),
            (
                "DEFAULT_4XX".to_string(),
                GatewayResponse {
                    status_code: Some(99),
                    ..Default::default()
                },
            ),
        ]
        .into();
        let mut diags = Diags::default();
        let out = compile_gateway_responses(&obj, &spec, &mut diags);
        assert_eq!(
            out,
            BTreeMap::from([(
                GatewayResponseType::Throttled,
                GatewayResponseOverride {
                    status_code: Some(503),
                    headers: [("x-a".to_string(), "1".to_string())].into(),
                    body_template: Some("{}".into()),
                }
            )])
        );
        let reasons: Vec<_> = diags
            .0
            .iter()
            .map(|d| (d.is_error(), d.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            [
                (true, reasons::INVALID_GATEWAY_RESPONSE),
                (true, reasons::INVALID_GATEWAY_RESPONSE),
                (false, reasons::UNSUPPORTED_CONTENT_TYPE),
            ]
        );
    }
}
