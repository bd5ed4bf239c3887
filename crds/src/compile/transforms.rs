//! Phase "transforms": the mappings of one method's non-proxy integration (`HTTP`, `MOCK`)
//! to a [`Transform`]: parameter mappings, request templates and passthrough behaviour,
//! integration responses (selection pattern, parameters, templates) and method responses.
//!
//! Called by `apis` for each method, after `integrations` (it needs the integration type).
//! Templates are parsed here once to report syntax errors (the field and line:col); the
//! compiled document keeps their source, which the proxy parses again when it loads the
//! config. A method with an unparsable template or selection pattern fails closed (AWS
//! refuses to deploy it). On `HTTP_PROXY`, templates and integration responses are ignored,
//! as on AWS, with a warning.

use super::Diags;
use crate::api::rest_api::{
    ContentHandling as ContentHandlingSpec, Integration as IntegrationSpec, IntegrationType,
    MethodResponse as MethodResponseSpec, PassthroughBehavior,
};
use crate::reasons;
use portico_config::{
    ContentHandling, IntegrationResponse, MappingSource, MappingTarget, MethodResponse, ObjectRef,
    Passthrough, Transform,
};
use std::collections::BTreeMap;

/// The compiled transform of one method, and why it must fail closed, if it must.
pub(crate) struct CompiledTransform {
    pub transform: Option<Transform>,
    /// `HTTP_PROXY` only: the checked `requestParameters` (they travel in the integration).
    pub proxy_parameters: BTreeMap<String, String>,
    pub fail: Option<String>,
}

/// Compiles the mappings of the method at `field` (e.g. `spec.resources[0].methods.GET`),
/// whose path parameters are `params`.
pub(crate) fn compile_transform(
    obj: &ObjectRef,
    field: &str,
    spec: Option<&IntegrationSpec>,
    method_responses: &[MethodResponseSpec],
    params: &[String],
    diags: &mut Diags,
) -> CompiledTransform {
    let mut out = CompiledTransform {
        transform: None,
        proxy_parameters: BTreeMap::new(),
        fail: None,
    };
    let Some(spec) = spec else { return out };
    let ifield = format!("{field}.integration");
    match spec.type_ {
        IntegrationType::Http | IntegrationType::Mock => {}
        IntegrationType::HttpProxy => {
            let mut ignored = |sub: &str, set: bool| {
                if set {
                    diags.warn(
                        obj,
                        format!("{ifield}.{sub}"),
                        reasons::IGNORED_FIELD,
                        format!(
                            "{sub} has no effect on an HTTP_PROXY integration (requests and responses pass through unchanged, as on AWS); use type HTTP to map them"
                        ),
                    );
                }
            };
            ignored("requestTemplates", !spec.request_templates.is_empty());
            ignored("passthroughBehavior", spec.passthrough_behavior.is_some());
            ignored(
                "integrationResponses",
                !spec.integration_responses.is_empty(),
            );
            ignored("contentHandling", spec.content_handling.is_some());
            // Parameter mappings do apply to HTTP_PROXY (as on AWS): headers, query
            // parameters and path parameters added to the streamed request.
            if let Err(msg) =
                request_parameters(obj, &ifield, spec, params, &mut out.proxy_parameters, diags)
            {
                out.fail = Some(msg);
            }
            return out;
        }
        // Reported by `integrations` / `not_supported`.
        IntegrationType::AwsProxy | IntegrationType::Aws => return out,
    }
    let mut t = Transform::default();
    // Request parameters.
    if let Err(msg) =
        request_parameters(obj, &ifield, spec, params, &mut t.request_parameters, diags)
    {
        out.fail.get_or_insert(msg);
    }

    let mut fail = |diags: &mut Diags, f: String, reason: &str, msg: String| {
        out.fail.get_or_insert_with(|| format!("{f}: {msg}"));
        diags.error(obj, f, reason, msg);
    };

    // Request templates.
    for (ct, src) in &spec.request_templates {
        let f = format!("{ifield}.requestTemplates[\"{ct}\"]");
        match portico_vtl::Template::parse(src) {
            Ok(_) => {
                t.request_templates
                    .insert(ct.trim().to_ascii_lowercase(), src.clone());
            }
            Err(e) => fail(
                diags,
                f,
                reasons::INVALID_TEMPLATE,
                format!("template: {e}"),
            ),
        }
    }
    t.content_handling = spec.content_handling.map(content_handling);
    t.passthrough = match spec.passthrough_behavior.unwrap_or_default() {
        PassthroughBehavior::WhenNoMatch => Passthrough::WhenNoMatch,
        PassthroughBehavior::WhenNoTemplates => Passthrough::WhenNoTemplates,
        PassthroughBehavior::Never => Passthrough::Never,
    };

    // Method responses.
    let mut declared: BTreeMap<u16, MethodResponse> = BTreeMap::new();
    for (i, m) in method_responses.iter().enumerate() {
        let f = format!("{field}.methodResponses[{i}]");
        let Some(status) = status(m.status_code) else {
            fail(
                diags,
                format!("{f}.statusCode"),
                reasons::INVALID_STATUS_CODE,
                format!("status code {} is outside 100..599", m.status_code),
            );
            continue;
        };
        let entry = declared.entry(status).or_insert(MethodResponse {
            status_code: status,
            headers: Default::default(),
        });
        for key in m.response_parameters.keys() {
            match MappingTarget::parse(key) {
                Ok(MappingTarget::ResponseHeader(h)) => {
                    entry.headers.insert(h.to_ascii_lowercase());
                }
                _ => fail(
                    diags,
                    format!("{f}.responseParameters[\"{key}\"]"),
                    reasons::INVALID_MAPPING,
                    format!("{key:?} is not method.response.header.<name>"),
                ),
            }
        }
    }

    // Integration responses.
    let mut default_at: Option<usize> = None;
    for (i, r) in spec.integration_responses.iter().enumerate() {
        let f = format!("{ifield}.integrationResponses[{i}]");
        let Some(status) = status(r.status_code) else {
            fail(
                diags,
                format!("{f}.statusCode"),
                reasons::INVALID_STATUS_CODE,
                format!("status code {} is outside 100..599", r.status_code),
            );
            continue;
        };
        let pattern = r.selection_pattern.clone().filter(|p| !p.is_empty());
        match &pattern {
            None => {
                if let Some(first) = default_at {
                    fail(
                        diags,
                        format!("{f}.selectionPattern"),
                        reasons::INVALID_SELECTION_PATTERN,
                        format!(
                            "integrationResponses[{first}] is already the default response (no selectionPattern)"
                        ),
                    );
                    continue;
                }
                default_at = Some(i);
            }
            Some(p) => {
                if let Err(e) = regex::Regex::new(&format!("^(?:{p})$")) {
                    fail(
                        diags,
                        format!("{f}.selectionPattern"),
                        reasons::INVALID_SELECTION_PATTERN,
                        format!("selectionPattern {p:?} is not a valid regular expression: {e}"),
                    );
                    continue;
                }
            }
        }
        let method = declared.get(&status);
        if method.is_none() {
            diags.warn(
                obj,
                format!("{f}.statusCode"),
                reasons::UNDECLARED_METHOD_RESPONSE,
                format!(
                    "status {status} has no entry in methodResponses; requests that select this response answer 500 Internal server error, as on AWS"
                ),
            );
        }
        let mut out_r = IntegrationResponse {
            selection_pattern: pattern,
            status_code: status,
            response_parameters: BTreeMap::new(),
            response_templates: BTreeMap::new(),
            content_handling: r.content_handling.map(content_handling),
        };
        for (key, value) in &r.response_parameters {
            let pf = format!("{f}.responseParameters[\"{key}\"]");
            let checked = MappingTarget::parse(key).and_then(|target| match target {
                MappingTarget::ResponseHeader(h) => {
                    MappingSource::parse(value)?;
                    Ok(h)
                }
                _ => Err(format!("{key:?} is not method.response.header.<name>")),
            });
            match checked {
                Ok(h) => {
                    if method.is_some_and(|m| !m.headers.contains(&h.to_ascii_lowercase())) {
                        diags.warn(
                            obj,
                            pf.clone(),
                            reasons::UNDECLARED_METHOD_RESPONSE,
                            format!(
                                "header {h:?} is not declared in the method response {status}'s responseParameters (AWS requires it); it is mapped anyway"
                            ),
                        );
                    }
                    out_r.response_parameters.insert(key.clone(), value.clone());
                }
                Err(msg) => fail(diags, pf, reasons::INVALID_MAPPING, msg),
            }
        }
        for (ct, src) in &r.response_templates {
            let tf = format!("{f}.responseTemplates[\"{ct}\"]");
            match portico_vtl::Template::parse(src) {
                Ok(_) => {
                    out_r
                        .response_templates
                        .insert(ct.trim().to_ascii_lowercase(), src.clone());
                }
                Err(e) => fail(
                    diags,
                    tf,
                    reasons::INVALID_TEMPLATE,
                    format!("template: {e}"),
                ),
            }
        }
        t.integration_responses.push(out_r);
    }
    t.method_responses = declared.into_values().collect();

    let used = !t.request_parameters.is_empty()
        || !t.request_templates.is_empty()
        || t.passthrough != Passthrough::WhenNoMatch
        || t.content_handling.is_some()
        || !t.integration_responses.is_empty();
    if used {
        out.transform = Some(t);
    }
    out
}

/// Mapping expressions AWS accepts that Portico does not implement yet.
/// Checks `spec.requestParameters` (integration request mappings) into `into`; the first
/// error (the method then fails closed) is returned as `field: message`.
fn request_parameters(
    obj: &ObjectRef,
    ifield: &str,
    spec: &IntegrationSpec,
    params: &[String],
    into: &mut BTreeMap<String, String>,
    diags: &mut Diags,
) -> Result<(), String> {
    let mut first = None;
    for (key, value) in &spec.request_parameters {
        let f = format!("{ifield}.requestParameters[\"{key}\"]");
        let target = match MappingTarget::parse(key) {
            Ok(MappingTarget::ResponseHeader(_)) => Err(format!(
                "{key:?} is a response mapping; request mappings write integration.request.{{header,querystring,path}}.<name>"
            )),
            other => other,
        };
        let checked = target.and_then(|target| {
            let source = MappingSource::parse(value)?;
            if source.is_response_only() {
                return Err(format!("{value:?} can only be used in integration responses"));
            }
            if let MappingTarget::RequestPath(name) = &target
                && !params.iter().any(|p| p == name)
            {
                return Err(format!(
                    "{key:?}: {{{name}}} is not a path parameter of the method (the integration uri's {{placeholders}} are)"
                ));
            }
            Ok(())
        });
        let (reason, msg) = match checked {
            Ok(()) => {
                into.insert(key.clone(), value.clone());
                continue;
            }
            Err(_) if aws_but_later(key, value) => (
                reasons::NOT_YET_SUPPORTED,
                format!(
                    "{key}: {value}: body and multi-value parameter mappings are not supported yet; the method answers 500"
                ),
            ),
            Err(msg) => (reasons::INVALID_MAPPING, msg),
        };
        first.get_or_insert_with(|| format!("{f}: {msg}"));
        diags.error(obj, f, reason, msg);
    }
    first.map_or(Ok(()), Err)
}

fn aws_but_later(key: &str, value: &str) -> bool {
    key.starts_with("integration.request.multivalue")
        || value.trim().starts_with("method.request.body")
        || value.trim().starts_with("method.request.multivalue")
}

fn content_handling(c: ContentHandlingSpec) -> ContentHandling {
    match c {
        ContentHandlingSpec::ConvertToText => ContentHandling::ConvertToText,
        ContentHandlingSpec::ConvertToBinary => ContentHandling::ConvertToBinary,
    }
}

/// `spec.binaryMediaTypes`: `type/subtype` with `*` wildcards; others are dropped with an
/// error.
pub(crate) fn compile_binary_media_types(
    obj: &ObjectRef,
    types: &[String],
    diags: &mut Diags,
) -> Vec<String> {
    let mut out = Vec::new();
    for (i, t) in types.iter().enumerate() {
        let t = t.trim().to_ascii_lowercase();
        let valid = t
            .split_once('/')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains('/'))
            && !t.contains([';', ' ', ',']);
        if valid {
            if !out.contains(&t) {
                out.push(t);
            }
        } else {
            diags.error(
                obj,
                format!("spec.binaryMediaTypes[{i}]"),
                reasons::INVALID_MEDIA_TYPE,
                format!("{t:?} is not a media type (type/subtype, * allowed); it is ignored"),
            );
        }
    }
    out
}

/// `spec.minimumCompressionSize`: 0..=10485760 bytes, as AWS; others are ignored with an
/// error.
pub(crate) fn compile_minimum_compression_size(
    obj: &ObjectRef,
    size: Option<i64>,
    diags: &mut Diags,
) -> Option<u64> {
    const MAX: i64 = 10 * 1024 * 1024;
    match size {
        None => None,
        Some(n) if (0..=MAX).contains(&n) => u64::try_from(n).ok(),
        Some(n) => {
            diags.error(
                obj,
                "spec.minimumCompressionSize",
                reasons::INVALID_PAYLOAD_LIMIT,
                format!("minimumCompressionSize {n} is outside 0..{MAX}; compression is off"),
            );
            None
        }
    }
}

fn status(code: i32) -> Option<u16> {
    u16::try_from(code).ok().filter(|s| (100..=599).contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::rest_api::IntegrationResponse as IntegrationResponseSpec;

    fn http() -> IntegrationSpec {
        IntegrationSpec {
            type_: IntegrationType::Http,
            uri: Some("http://b/x/{id}".into()),
            ..Default::default()
        }
    }

    fn run(spec: &IntegrationSpec, mr: &[MethodResponseSpec]) -> (CompiledTransform, Diags) {
        let obj = ObjectRef::new("RestApi", "default", "a");
        let mut diags = Diags::default();
        let out = compile_transform(
            &obj,
            "spec.resources[0].methods.POST",
            Some(spec),
            mr,
            &["id".to_string()],
            &mut diags,
        );
        (out, diags)
    }

    #[test]
    fn template_syntax_errors_name_the_field_and_position() {
        let mut spec = http();
        spec.request_templates
            .insert("application/json".into(), "{\n  #if(\n}".into());
        let (out, diags) = run(&spec, &[]);
        assert!(out.fail.is_some());
        let d = &diags.0[0];
        assert_eq!(
            d.field,
            "spec.resources[0].methods.POST.integration.requestTemplates[\"application/json\"]"
        );
        assert_eq!(d.reason, reasons::INVALID_TEMPLATE);
        assert!(
            d.message.starts_with("template: 3:1: syntax error"),
            "{}",
            d.message
        );
    }

    #[test]
    fn mappings_patterns_and_defaults_are_checked() {
        let mut spec = http();
        spec.request_parameters.insert(
            "integration.request.path.id".into(),
            "method.request.path.id".into(),
        );
        spec.request_parameters
            .insert("integration.request.path.nope".into(), "'x'".into());
        spec.integration_responses = vec![
            IntegrationResponseSpec {
                selection_pattern: Some("4\\d{2}".into()),
                status_code: 404,
                ..Default::default()
            },
            IntegrationResponseSpec {
                selection_pattern: Some("(".into()),
                status_code: 500,
                ..Default::default()
            },
            IntegrationResponseSpec {
                status_code: 200,
                ..Default::default()
            },
        ];
        let mr = [MethodResponseSpec {
            status_code: 200,
            ..Default::default()
        }];
        let (out, diags) = run(&spec, &mr);
        let t = out.transform.unwrap();
        assert_eq!(t.request_parameters.len(), 1);
        assert_eq!(t.integration_responses.len(), 2);
        let reasons: Vec<_> = diags.0.iter().map(|d| d.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                reasons::INVALID_MAPPING,
                reasons::UNDECLARED_METHOD_RESPONSE,
                reasons::INVALID_SELECTION_PATTERN,
            ]
        );
    }

    #[test]
    fn http_proxy_templates_are_ignored_with_a_warning() {
        let mut spec = http();
        spec.type_ = IntegrationType::HttpProxy;
        spec.request_templates
            .insert("application/json".into(), "{}".into());
        let (out, diags) = run(&spec, &[]);
        assert!(out.transform.is_none() && out.fail.is_none());
        assert_eq!(diags.0.len(), 1);
        assert!(!diags.0[0].is_error());
        assert_eq!(diags.0[0].reason, reasons::IGNORED_FIELD);
    }
}
