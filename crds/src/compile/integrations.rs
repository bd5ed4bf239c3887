//! Integrations: checks one method's `integration` and builds the compiled
//! [`portico_config::Integration`].
//!
//! Called by `apis` for each method. HTTP types need an absolute `http(s)://` uri once
//! `${stageVariables.x}` placeholders are substituted; `{param}` placeholders must be path
//! parameters of the method (`{proxy}` for a greedy `{proxy+}`); MOCK needs `mockResponse`.

use super::{Diags, METHODS, is_variable_name};
use crate::api::rest_api::{Integration as IntegrationSpec, IntegrationType, ServiceReference};
use crate::reasons;
use crate::snapshot::Service;
use portico_config::{
    AwsProxyIntegration, DEFAULT_TIMEOUT_MS, HttpIntegration, Integration, LAMBDA_INVOKE_PATH,
    MockIntegration, ObjectRef, PayloadFormatVersion, Protocol,
};
use std::collections::BTreeSet;

/// Largest integration timeout accepted (ms); AWS's 29 s is the default, not the ceiling.
pub(crate) const MAX_TIMEOUT_MS: i64 = 300_000;

/// A compiled integration.
pub(crate) struct CompiledIntegration {
    pub integration: Integration,
    pub timeout_ms: u64,
    /// Stage variables referenced by the uri.
    pub stage_variables: BTreeSet<String>,
    /// Why the method must fail closed, if it must.
    pub fail: Option<String>,
}

/// The integration a method that cannot reach its backend compiles to; the route carries
/// `fail_closed`, so the proxy answers API_CONFIGURATION_ERROR before using it.
fn placeholder() -> Integration {
    Integration::Mock(MockIntegration {
        status_code: 500,
        headers: Default::default(),
        body: String::new(),
    })
}

/// Compiles the integration at `field` (e.g. `spec.resources[0].methods.GET.integration`)
/// for a method whose path parameters are `params`.
pub(crate) fn compile_integration(
    obj: &ObjectRef,
    field: &str,
    spec: Option<&IntegrationSpec>,
    params: &[String],
    services: &[Service],
    protocol: Protocol,
    diags: &mut Diags,
) -> CompiledIntegration {
    let mut out = CompiledIntegration {
        integration: placeholder(),
        timeout_ms: DEFAULT_TIMEOUT_MS,
        stage_variables: BTreeSet::new(),
        fail: None,
    };
    let Some(spec) = spec else {
        let msg = "the method has no integration";
        diags.error(obj, field, reasons::INVALID_INTEGRATION, msg);
        out.fail = Some(format!("{field}: {msg}"));
        return out;
    };
    let mut fail = |diags: &mut Diags, sub: &str, reason: &str, msg: String| {
        let f = format!("{field}{sub}");
        out.fail.get_or_insert_with(|| format!("{f}: {msg}"));
        diags.error(obj, f, reason, msg);
    };

    match spec.timeout_in_millis {
        None => {}
        Some(t) if (1..=MAX_TIMEOUT_MS).contains(&t) => {
            out.timeout_ms = u64::try_from(t).expect("checked positive above");
        }
        Some(t) => fail(
            diags,
            ".timeoutInMillis",
            reasons::INVALID_TIMEOUT,
            format!("timeout {t} ms is outside 1..{MAX_TIMEOUT_MS}"),
        ),
    }
    let http_method = match spec.http_method.as_deref() {
        None => None,
        Some(m) if METHODS.contains(&m) && m != "ANY" => Some(m.to_string()),
        Some(m) => {
            fail(
                diags,
                ".httpMethod",
                reasons::INVALID_INTEGRATION,
                format!(
                    "httpMethod {m:?} is not one of GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
                ),
            );
            None
        }
    };

    match spec.type_ {
        IntegrationType::AwsProxy => {
            // WebSocket APIs have one event format (the proxy builds AWS's WebSocket event);
            // AWS reports it as "1.0".
            let version = match (spec.payload_format_version.as_deref(), protocol) {
                (None, Protocol::Rest | Protocol::WebSocket) | (Some("1.0"), _) => {
                    Some(PayloadFormatVersion::V1)
                }
                (None, _) | (Some("2.0"), Protocol::Http) => Some(PayloadFormatVersion::V2),
                (Some(v), Protocol::WebSocket) => {
                    fail(
                        diags,
                        ".payloadFormatVersion",
                        reasons::INVALID_INTEGRATION,
                        format!(
                            "payloadFormatVersion {v:?}: WebSocket APIs have one event format (\"1.0\", or leave it unset)"
                        ),
                    );
                    None
                }
                (Some(v), _) => {
                    fail(
                        diags,
                        ".payloadFormatVersion",
                        reasons::INVALID_INTEGRATION,
                        format!(
                            "payloadFormatVersion {v:?}: REST APIs support \"1.0\", HTTP APIs \"1.0\" or \"2.0\""
                        ),
                    );
                    None
                }
            };
            let uri = match backend_uri(obj, spec, services) {
                Ok(uri) => uri,
                Err((sub, reason, msg)) => {
                    fail(diags, sub, reason, msg);
                    return out;
                }
            };
            let uri = lambda_invoke_uri(&uri);
            if uri.starts_with("arn:") {
                fail(
                    diags,
                    ".uri",
                    reasons::INVALID_INTEGRATION,
                    format!(
                        "uri {uri:?}: AWS_PROXY calls a function's HTTP invoke endpoint (http://host:port[/2015-03-31/functions/function/invocations]), not an ARN"
                    ),
                );
                return out;
            }
            match (check_uri(&uri, &[]), version) {
                (Ok(vars), Some(payload_format_version)) => {
                    out.stage_variables = vars;
                    out.integration = Integration::AwsProxy(AwsProxyIntegration {
                        uri,
                        payload_format_version,
                    });
                }
                (Ok(_), None) => {}
                (Err((reason, msg)), _) => fail(diags, ".uri", reason, msg),
            }
        }
        IntegrationType::HttpProxy | IntegrationType::Http => {
            let uri = match backend_uri(obj, spec, services) {
                Ok(uri) => uri,
                Err((sub, reason, msg)) => {
                    fail(diags, sub, reason, msg);
                    return out;
                }
            };
            let uri = uri.as_str();
            match check_uri(uri, params) {
                Ok(vars) => {
                    out.stage_variables = vars;
                    let http = HttpIntegration {
                        uri: uri.to_string(),
                        http_method,
                        request_parameters: Default::default(),
                    };
                    out.integration = if spec.type_ == IntegrationType::HttpProxy {
                        Integration::HttpProxy(http)
                    } else {
                        Integration::Http(http)
                    };
                }
                Err((reason, msg)) => fail(diags, ".uri", reason, msg),
            }
        }
        IntegrationType::Mock => match &spec.mock_response {
            // AWS's MOCK: the request template picks the status (`{"statusCode": 200}`)
            // and the integration responses build the answer (see `transforms`).
            None if !spec.request_templates.is_empty()
                || !spec.integration_responses.is_empty() =>
            {
                out.integration = Integration::Mock(MockIntegration {
                    status_code: 200,
                    headers: Default::default(),
                    body: String::new(),
                });
            }
            None => fail(
                diags,
                ".mockResponse",
                reasons::INVALID_INTEGRATION,
                "MOCK integrations need mockResponse (or requestTemplates and integrationResponses)".into(),
            ),
            Some(m) => match u16::try_from(m.status_code) {
                Ok(status) if (100..=599).contains(&status) => {
                    out.integration = Integration::Mock(MockIntegration {
                        status_code: status,
                        headers: m.headers.clone(),
                        body: m.body.clone().unwrap_or_default(),
                    });
                }
                _ => fail(
                    diags,
                    ".mockResponse.statusCode",
                    reasons::INVALID_INTEGRATION,
                    format!("status code {} is outside 100..599", m.status_code),
                ),
            },
        },
        IntegrationType::Aws => fail(
            diags,
            ".type",
            reasons::NOT_YET_SUPPORTED,
            "AWS integrations are not supported yet; the method answers 500".into(),
        ),
    }
    out
}

/// The invoke endpoint of an `AWS_PROXY` uri: kept when its path ends in `/invocations`,
/// else [`LAMBDA_INVOKE_PATH`] is appended to it (a base URL such as `http://fn:8080`).
pub(crate) fn lambda_invoke_uri(uri: &str) -> String {
    let path = uri.split(['?', '#']).next().unwrap_or(uri);
    // Only http(s) URLs: anything else (an ARN) is reported as written by `check_uri`.
    if path.ends_with("/invocations")
        || !(uri.starts_with("http://") || uri.starts_with("https://"))
    {
        uri.to_string()
    } else {
        format!("{}{LAMBDA_INVOKE_PATH}", path.trim_end_matches('/'))
    }
}

/// The backend URI as written: `uri`, or with a `serviceRef` the Service's address plus the
/// path in `uri`. Errors carry the sub-field, the reason and the message.
fn backend_uri(
    obj: &ObjectRef,
    spec: &IntegrationSpec,
    services: &[Service],
) -> Result<String, (&'static str, &'static str, String)> {
    match &spec.service_ref {
        None => Ok(spec.uri.clone().unwrap_or_default()),
        Some(svc) => service_uri(obj, svc, spec.uri.as_deref(), services),
    }
}

/// Resolves a `serviceRef` (+ the path in `uri`) to `http://<name>.<ns>.svc:<port><path>`.
/// Errors carry the sub-field, the reason and the message.
fn service_uri(
    obj: &ObjectRef,
    svc: &ServiceReference,
    path: Option<&str>,
    services: &[Service],
) -> Result<String, (&'static str, &'static str, String)> {
    let ns = svc.namespace.as_deref().unwrap_or(&obj.namespace);
    let path = path.unwrap_or("/");
    if !path.starts_with('/') {
        return Err((
            ".uri",
            reasons::INVALID_INTEGRATION,
            format!(
                "with serviceRef, uri is the path on the Service and must start with '/', got {path:?}"
            ),
        ));
    }
    let found = services
        .iter()
        .find(|s| s.namespace == ns && s.name == svc.name);
    let permitted = found.is_some_and(|s| {
        crate::api::common::reference_permitted(Some(&s.annotations), ns, &obj.namespace)
    });
    match found {
        // Refused and missing look alike across namespaces, so tenants cannot probe.
        _ if ns != obj.namespace && !permitted => Err((
            ".serviceRef",
            reasons::REF_NOT_PERMITTED,
            format!(
                "Service {ns}/{} is in another namespace and does not allow references from {:?} (annotation portico.dev/allow-references-from)",
                svc.name, obj.namespace
            ),
        )),
        None => Err((
            ".serviceRef.name",
            reasons::UNKNOWN_REFERENCE,
            format!("Service {ns}/{} does not exist", svc.name),
        )),
        Some(s) if !s.ports.iter().any(|p| p.port == svc.port) => Err((
            ".serviceRef.port",
            reasons::UNKNOWN_REFERENCE,
            format!(
                "Service {ns}/{} has no port {} (ports: {})",
                svc.name,
                svc.port,
                s.ports
                    .iter()
                    .map(|p| p.port.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
        Some(_) => Ok(format!("http://{}.{ns}.svc:{}{path}", svc.name, svc.port)),
    }
}

/// Checks an HTTP integration uri and returns the stage variables it uses.
fn check_uri(uri: &str, params: &[String]) -> Result<BTreeSet<String>, (&'static str, String)> {
    if uri.is_empty() {
        return Err((
            reasons::INVALID_INTEGRATION,
            "HTTP, HTTP_PROXY and AWS_PROXY integrations need a uri".into(),
        ));
    }
    // 1. `${stageVariables.x}` placeholders, replaced by a dummy host-safe value.
    let mut vars = BTreeSet::new();
    let mut rest = uri;
    let mut substituted = String::new();
    while let Some(start) = rest.find("${") {
        substituted.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err((
                reasons::INVALID_STAGE_VARIABLE,
                format!("unterminated placeholder in uri {uri:?}"),
            ));
        };
        let inner = &after[..end];
        match inner.strip_prefix("stageVariables.") {
            Some(name) if is_variable_name(name) => {
                vars.insert(name.to_string());
            }
            _ => {
                return Err((
                    reasons::INVALID_STAGE_VARIABLE,
                    format!(
                        "placeholder ${{{inner}}} in uri is not ${{stageVariables.<name>}} with a name of [A-Za-z0-9_]+"
                    ),
                ));
            }
        }
        substituted.push_str("stagevar");
        rest = &after[end + 1..];
    }
    substituted.push_str(rest);

    // 2. `{param}` placeholders: path parameters of the method.
    let mut rest = substituted.as_str();
    let mut checked = String::new();
    while let Some(start) = rest.find('{') {
        checked.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            return Err((
                reasons::INVALID_INTEGRATION,
                format!("unterminated {{ in uri {uri:?}"),
            ));
        };
        let name = &after[..end];
        if !params.iter().any(|p| p == name) {
            let hint = match name.strip_suffix('+') {
                Some(base) if params.iter().any(|p| p == base) => {
                    format!("; write {{{base}}} for the greedy parameter {{{base}+}}")
                }
                _ if params.is_empty() => "; the method's path has no parameters".to_string(),
                _ => format!(
                    "; the method's path parameters are {}",
                    params
                        .iter()
                        .map(|p| format!("{{{p}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            return Err((
                reasons::UNKNOWN_PATH_PARAMETER,
                format!("uri placeholder {{{name}}} is not a path parameter of the method{hint}"),
            ));
        }
        checked.push_str("param");
        rest = &after[end + 1..];
    }
    checked.push_str(rest);

    // 3. What is left must be an absolute http(s) URL with a host.
    let Some(after_scheme) = checked
        .strip_prefix("http://")
        .or_else(|| checked.strip_prefix("https://"))
    else {
        return Err((
            reasons::INVALID_INTEGRATION,
            format!("uri {uri:?} must be an absolute http:// or https:// URL"),
        ));
    };
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    if authority.is_empty() || checked.chars().any(char::is_whitespace) {
        return Err((
            reasons::INVALID_INTEGRATION,
            format!("uri {uri:?} has no host or contains whitespace"),
        ));
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn uris_with_stage_variables_and_params_are_accepted() {
        let vars = check_uri(
            "http://${stageVariables.backend}/content/{id}",
            &params(&["id"]),
        )
        .unwrap();
        assert_eq!(vars, BTreeSet::from(["backend".to_string()]));
        // https backends: trusted as the proxy's outbound roots say (Mozilla + --ca-file).
        assert!(check_uri("https://example.com/{proxy}", &params(&["proxy"])).is_ok());
    }

    #[test]
    fn lambda_uris_get_the_invoke_path_unless_they_have_it() {
        assert_eq!(
            lambda_invoke_uri("http://fn:8080"),
            "http://fn:8080/2015-03-31/functions/function/invocations"
        );
        assert_eq!(
            lambda_invoke_uri("http://fn:8080/"),
            "http://fn:8080/2015-03-31/functions/function/invocations"
        );
        assert_eq!(
            lambda_invoke_uri("http://fn/2015-03-31/functions/f/invocations"),
            "http://fn/2015-03-31/functions/f/invocations"
        );
    }

    #[test]
    fn bad_uris_are_rejected_with_a_reason() {
        let reason = |uri: &str, p: &[&str]| check_uri(uri, &params(p)).unwrap_err().0;
        assert_eq!(reason("", &[]), reasons::INVALID_INTEGRATION);
        assert_eq!(reason("ftp://x/", &[]), reasons::INVALID_INTEGRATION);
        assert_eq!(reason("http:///x", &[]), reasons::INVALID_INTEGRATION);
        assert_eq!(
            reason("http://x/{id}", &["other"]),
            reasons::UNKNOWN_PATH_PARAMETER
        );
        assert_eq!(
            reason("http://x/{proxy+}", &["proxy"]),
            reasons::UNKNOWN_PATH_PARAMETER
        );
        assert_eq!(
            reason("http://${stage.x}/", &[]),
            reasons::INVALID_STAGE_VARIABLE
        );
        assert_eq!(
            reason("http://${stageVariables.a-b}/", &[]),
            reasons::INVALID_STAGE_VARIABLE
        );
    }
}
