//! Phase "stages": each Stage to a [`portico_config::Stage`].
//!
//! Runs after `apis` (it needs the compiled APIs and the stage variables they use). A stage
//! that references a missing or dropped API, or has an invalid name, base path, hostname or
//! variable, or lacks a variable its API uses, is dropped with an error. Conflicts on
//! host + base path are resolved last, among the stages that survived everything else.

use super::apis::CompiledApis;
use super::normalise::{Inputs, StageInput};
use super::{Diags, is_variable_name};
use crate::reasons;
use portico_config::{
    Api, BackendUri, Canary, CanaryForceHeader, CanarySticky, Integration, PathTemplate, Protocol,
    Segment, Stage, resolve_stage_variables,
};
use std::collections::BTreeMap;

/// The HTTP API stage served at the root.
pub(crate) const DEFAULT_STAGE: &str = "$default";

/// Longest stage variable value accepted (AWS's limit).
pub(crate) const MAX_VARIABLE_VALUE_CHARS: usize = 512;

/// Compiles the stages; `apis` are the compiled APIs.
pub(crate) fn compile_stages(
    inputs: &Inputs<'_>,
    apis: &CompiledApis,
    diags: &mut Diags,
) -> Vec<Stage> {
    let known: BTreeMap<&str, &super::apis::CompiledApi> =
        apis.apis.iter().map(|a| (a.api.id.as_str(), a)).collect();
    let mut candidates: Vec<(&StageInput<'_>, Stage)> = inputs
        .stages
        .iter()
        .filter_map(|s| compile_stage(s, &known, apis, diags).map(|c| (s, c)))
        .collect();

    // Conflicts last: only stages that survived every other check may claim a host + base
    // path. Precedence: the oldest (metadata.creationTimestamp) first, objects without a
    // timestamp after those with one, then namespace/name order.
    candidates.sort_by(|(a, _), (b, _)| {
        (a.created.is_none(), a.created, &a.obj).cmp(&(b.created.is_none(), b.created, &b.obj))
    });
    let mut claims: BTreeMap<(String, String), &StageInput<'_>> = BTreeMap::new();
    let mut out = Vec::new();
    for (input, stage) in candidates {
        let keys: Vec<(String, String)> = if stage.hosts.is_empty() {
            vec![("*".to_string(), stage.base_path.clone())]
        } else {
            stage
                .hosts
                .iter()
                .map(|h| (h.clone(), stage.base_path.clone()))
                .collect()
        };
        if let Some(((host, _), winner)) = keys.iter().find_map(|k| claims.get(k).map(|w| (k, *w)))
        {
            let host = if host == "*" {
                "any host".to_string()
            } else {
                format!("host {host}")
            };
            let base = if stage.base_path.is_empty() {
                "/"
            } else {
                &stage.base_path
            };
            diags.error(
                &input.obj,
                "spec.basePath",
                reasons::STAGE_CONFLICT,
                format!(
                    "{} already serves {host} at base path {base}; this stage is not served",
                    winner.obj
                ),
            );
            diags.warn(
                &winner.obj,
                "spec.basePath",
                reasons::STAGE_CONFLICT,
                format!(
                    "{} also claims {host} at base path {base}; this stage keeps serving it",
                    input.obj
                ),
            );
            continue;
        }
        for k in keys {
            claims.insert(k, input);
        }
        out.push(stage);
    }
    out
}

fn compile_stage(
    s: &StageInput<'_>,
    known: &BTreeMap<&str, &super::apis::CompiledApi>,
    apis: &CompiledApis,
    diags: &mut Diags,
) -> Option<Stage> {
    let obj = &s.obj;
    let api_id = super::api_id(&s.api.namespace, &s.api.name);
    // Before existence: a refused cross-namespace reference must not reveal whether the
    // target exists.
    if !s.api_ref_permitted {
        diags.error(
            obj,
            "spec.restApiRef.namespace",
            reasons::REF_NOT_PERMITTED,
            format!(
                "{}; this stage is not served",
                super::normalise::not_permitted_message(&s.api, &obj.namespace)
            ),
        );
        return None;
    }
    let Some(api) = known.get(api_id.as_str()) else {
        if apis.dropped.contains(&api_id) {
            diags.error(
                obj,
                "spec.restApiRef.name",
                reasons::REFERENCE_NOT_ACCEPTED,
                format!(
                    "{} is not served (see its diagnostics); this stage is not served",
                    s.api
                ),
            );
        } else {
            diags.error(
                obj,
                "spec.restApiRef.name",
                reasons::UNKNOWN_REFERENCE,
                format!("{} does not exist; this stage is not served", s.api),
            );
        }
        return None;
    };
    let mut ok = true;
    // `$default`: an HTTP API's stage served at the root (AWS: "a $default stage that is served
    // from the base of your API's URL", developer guide, "Working with stages for HTTP APIs").
    let default_stage = s.stage_name == DEFAULT_STAGE;
    if default_stage && api.api.protocol != Protocol::Http {
        diags.error(
            obj,
            "spec.stageName",
            reasons::INVALID_STAGE_NAME,
            format!(
                "stage name {DEFAULT_STAGE} is for HTTP APIs (protocol: HTTP); {} is {} API",
                s.api,
                protocol_name(api.api.protocol)
            ),
        );
        ok = false;
    } else if !default_stage
        && (s.stage_name.is_empty()
            || !s
                .stage_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        diags.error(
            obj,
            "spec.stageName",
            reasons::INVALID_STAGE_NAME,
            format!(
                "stage name {:?} must match [A-Za-z0-9_-]+ (or be {DEFAULT_STAGE} on an HTTP API)",
                s.stage_name
            ),
        );
        ok = false;
    }
    let base_path = match normalise_base_path(&s.base_path) {
        Ok(p) => p,
        Err(e) => {
            diags.error(obj, "spec.basePath", reasons::INVALID_BASE_PATH, e);
            ok = false;
            String::new()
        }
    };
    let mut hosts = Vec::new();
    for (i, h) in s.spec.hostnames.iter().enumerate() {
        match normalise_hostname(h) {
            Ok(h) => hosts.push(h),
            Err(e) => {
                diags.error(
                    obj,
                    format!("spec.hostnames[{i}]"),
                    reasons::INVALID_HOSTNAME,
                    e,
                );
                ok = false;
            }
        }
    }
    hosts.sort();
    hosts.dedup();
    for (name, value) in &s.spec.variables {
        let field = format!("spec.variables.{name}");
        if !is_variable_name(name) {
            diags.error(
                obj,
                field,
                reasons::INVALID_STAGE_VARIABLE,
                format!("stage variable name {name:?} must match [A-Za-z0-9_]+"),
            );
            ok = false;
        } else if value.chars().count() > MAX_VARIABLE_VALUE_CHARS {
            diags.error(
                obj,
                field,
                reasons::INVALID_STAGE_VARIABLE,
                format!(
                    "stage variable {name} is {} characters long; at most {MAX_VARIABLE_VALUE_CHARS} are allowed",
                    value.chars().count()
                ),
            );
            ok = false;
        }
    }
    for (name, user) in &api.stage_variables {
        if !s.spec.variables.contains_key(name) {
            diags.error(
                obj,
                "spec.variables",
                reasons::UNDEFINED_STAGE_VARIABLE,
                format!(
                    "stage variable {name} is not defined, but {} uses it in {user}; this stage is not served",
                    s.api
                ),
            );
            ok = false;
        }
    }
    // Each integration uri as this stage serves it (its variables' values substituted):
    // a value that makes one unusable drops the stage here, with the method and the reason,
    // instead of failing that method closed in the proxy.
    if ok && let Some((used, route_key, e)) = unusable_uri(&api.api, &s.spec.variables) {
        let field = match used.as_slice() {
            [one] => format!("spec.variables.{one}"),
            _ => "spec.variables".to_string(),
        };
        diags.error(
            obj,
            field,
            reasons::INVALID_STAGE_VARIABLE,
            format!(
                "with this stage's variables, the integration uri of {route_key} in {} is unusable: {e}; this stage is not served",
                s.api
            ),
        );
        ok = false;
    }
    let canary = if ok {
        compile_canary(s, known, apis, api, diags)
    } else {
        None
    };
    ok.then(|| Stage {
        id: s.id.clone(),
        source: obj.clone(),
        api_id,
        name: s.stage_name.clone(),
        base_path,
        hosts,
        variables: s.spec.variables.clone(),
        access_log: s.access_log.clone(),
        // Filled by the `usage_plans` phase, which needs the compiled API's routes.
        throttle: None,
        method_throttles: BTreeMap::new(),
        canary,
        cache: None,
    })
}

/// An HTTP token (RFC 9110 5.6.2): what a header (or cookie) name may be.
fn http_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The protocol with its article, for messages ("an HTTP API").
fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Rest => "a REST",
        Protocol::Http => "an HTTP",
        Protocol::WebSocket => "a WebSocket",
    }
}

/// The first integration uri of `api` that `vars` make unusable: the variables it uses, its
/// route key, and why.
fn unusable_uri(
    api: &Api,
    vars: &BTreeMap<String, String>,
) -> Option<(Vec<String>, String, String)> {
    for route in &api.routes {
        if route.fail_closed.is_some() {
            continue;
        }
        let Some(template) = route_uri(&route.integration) else {
            continue;
        };
        let used = uri_variables(template);
        if used.is_empty() {
            continue;
        }
        let checked = resolve_stage_variables(template, vars).and_then(|uri| {
            BackendUri::parse(&uri, &route.matcher.param_names().collect::<Vec<_>>()).map(drop)
        });
        if let Err(e) = checked {
            return Some((
                used.into_iter().map(str::to_string).collect(),
                route.route_key.clone(),
                e,
            ));
        }
    }
    None
}

/// `spec.canarySettings`: the canary's API (the stage's own unless `restApiRef` names
/// another of the same protocol), share and variables (the stage's with the overrides on
/// top). What is wrong is an error on the Stage and drops the canary only: the base keeps
/// serving, and the canary's share goes to the base.
fn compile_canary(
    s: &StageInput<'_>,
    known: &BTreeMap<&str, &super::apis::CompiledApi>,
    apis: &CompiledApis,
    base: &super::apis::CompiledApi,
    diags: &mut Diags,
) -> Option<Canary> {
    let c = s.spec.canary_settings.as_ref()?;
    let obj = &s.obj;
    let error = |diags: &mut Diags, field: &str, msg: String| {
        diags.error(
            obj,
            format!("spec.canarySettings{field}"),
            reasons::INVALID_CANARY,
            format!("{msg}; the canary is not served (its share goes to the stage's API)"),
        );
    };
    if base.api.protocol == Protocol::WebSocket {
        // AWS has canary releases on REST API stages only; a WebSocket connection would
        // also have to stay on one side for hours.
        error(
            diags,
            "",
            format!(
                "{} is a WebSocket API, and WebSocket APIs have no canary releases (as on AWS)",
                s.api
            ),
        );
        return None;
    }
    let percent = c.percent_traffic.unwrap_or(0.0);
    if !(percent.is_finite() && (0.0..=100.0).contains(&percent)) {
        error(
            diags,
            ".percentTraffic",
            format!("percentTraffic {percent} is not within 0.0..100.0"),
        );
        return None;
    }
    let api = match &c.rest_api_ref {
        None => base,
        Some(r) => {
            let id = super::api_id(&obj.namespace, &r.name);
            let Some(api) = known.get(id.as_str()) else {
                let why = if apis.dropped.contains(&id) {
                    "is not served (see its diagnostics)"
                } else {
                    "does not exist"
                };
                error(
                    diags,
                    ".restApiRef.name",
                    format!("RestApi {}/{} {why}", obj.namespace, r.name),
                );
                return None;
            };
            if api.api.protocol != base.api.protocol {
                error(
                    diags,
                    ".restApiRef.name",
                    format!(
                        "RestApi {}/{} is {} API but the stage's is {} API",
                        obj.namespace,
                        r.name,
                        protocol_name(api.api.protocol),
                        protocol_name(base.api.protocol)
                    ),
                );
                return None;
            }
            api
        }
    };
    let mut variables = s.spec.variables.clone();
    for (name, value) in &c.stage_variable_overrides {
        if !s.spec.variables.contains_key(name) {
            error(
                diags,
                &format!(".stageVariableOverrides.{name}"),
                format!(
                    "{name} is not a variable of this stage (spec.variables); an override replaces one"
                ),
            );
            return None;
        }
        if value.chars().count() > MAX_VARIABLE_VALUE_CHARS {
            error(
                diags,
                &format!(".stageVariableOverrides.{name}"),
                format!("the value is longer than {MAX_VARIABLE_VALUE_CHARS} characters"),
            );
            return None;
        }
        variables.insert(name.clone(), value.clone());
    }
    if let Some((name, user)) = api
        .stage_variables
        .iter()
        .find(|(name, _)| !variables.contains_key(*name))
    {
        error(
            diags,
            ".restApiRef.name",
            format!(
                "the canary's API uses stage variable {name} in {user}, which the stage does not define"
            ),
        );
        return None;
    }
    if let Some((used, route_key, e)) = unusable_uri(&api.api, &variables) {
        let field = match used.as_slice() {
            [one] if c.stage_variable_overrides.contains_key(one) => {
                format!(".stageVariableOverrides.{one}")
            }
            _ => ".stageVariableOverrides".to_string(),
        };
        error(
            diags,
            &field,
            format!(
                "with the canary's variables, the integration uri of {route_key} is unusable: {e}"
            ),
        );
        return None;
    }
    let sticky = match &c.stickiness {
        None => None,
        Some(st) => {
            let named = |kind: &str| match st.name.as_deref().map(str::trim) {
                Some(n) if !n.is_empty() && http_token(n) => Ok(n.to_ascii_lowercase()),
                _ => Err(format!(
                    "stickiness by {kind} needs a name (a header or cookie name)"
                )),
            };
            let sticky = match st.by.as_str() {
                "sourceIp" => Ok(CanarySticky::SourceIp),
                "apiKey" => Ok(CanarySticky::ApiKey),
                "header" => named("header").map(CanarySticky::Header),
                "cookie" => {
                    named("cookie").map(|n| CanarySticky::Cookie(st.name.clone().unwrap_or(n)))
                }
                other => Err(format!(
                    "stickiness by {other:?}: use sourceIp, apiKey, header or cookie"
                )),
            };
            match sticky {
                Ok(s) => Some(s),
                Err(msg) => {
                    error(diags, ".stickiness", msg);
                    return None;
                }
            }
        }
    };
    let force_header = match &c.force_header {
        None => None,
        Some(f) if http_token(f.name.trim()) => Some(CanaryForceHeader {
            name: f.name.trim().to_ascii_lowercase(),
            require_authorizer: f.require_authorizer == Some(true),
        }),
        Some(f) => {
            error(
                diags,
                ".forceHeader.name",
                format!("{:?} is not a header name", f.name),
            );
            return None;
        }
    };
    Some(Canary {
        api_id: api.api.id.clone(),
        percent_traffic: percent,
        variables,
        use_stage_cache: c.use_stage_cache == Some(true),
        sticky,
        force_header,
    })
}

/// The backend uri of an integration that calls one.
fn route_uri(integration: &Integration) -> Option<&str> {
    match integration {
        Integration::HttpProxy(h) | Integration::Http(h) => Some(&h.uri),
        Integration::AwsProxy(l) => Some(&l.uri),
        Integration::Mock(_) => None,
    }
}

/// The stage variables a uri names, in order, each once.
fn uri_variables(uri: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    let mut rest = uri;
    while let Some(pos) = rest.find("${stageVariables.") {
        let after = &rest[pos + "${stageVariables.".len()..];
        let Some(end) = after.find('}') else { break };
        if !out.contains(&&after[..end]) {
            out.push(&after[..end]);
        }
        rest = &after[end + 1..];
    }
    out
}

/// `"/"` -> `""`, `"/dev/"` -> `"/dev"`; segments must be non-empty literals (no `.`/`..`).
pub(crate) fn normalise_base_path(raw: &str) -> Result<String, String> {
    if !raw.starts_with('/') {
        return Err(format!("base path {raw:?} must start with '/'"));
    }
    let trimmed = raw.strip_suffix('/').unwrap_or(raw);
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed.ends_with('/') {
        return Err(format!("base path {raw:?} has an empty segment"));
    }
    let t =
        PathTemplate::parse(trimmed).map_err(|e| format!("base path {raw:?} is invalid: {e}"))?;
    if t.segments.iter().any(|s| !matches!(s, Segment::Literal(_))) {
        return Err(format!(
            "base path {raw:?} must be literal segments, without {{parameters}}"
        ));
    }
    Ok(trimmed.to_string())
}

/// Lower-cases and checks a DNS hostname. Wildcards and ports are rejected.
pub(crate) fn normalise_hostname(raw: &str) -> Result<String, String> {
    let h = raw.to_ascii_lowercase();
    if h.starts_with("*.") || h.contains('*') {
        return Err(format!(
            "hostname {raw:?}: wildcard hostnames are not supported; list each hostname"
        ));
    }
    if h.contains(':') {
        return Err(format!("hostname {raw:?} must not include a port"));
    }
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if h.is_empty() || h.len() > 253 || !h.split('.').all(valid_label) {
        return Err(format!(
            "hostname {raw:?} is not a valid DNS name (labels of letters, digits and '-', separated by '.')"
        ));
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths_are_normalised() {
        assert_eq!(normalise_base_path("/").unwrap(), "");
        assert_eq!(normalise_base_path("/dev").unwrap(), "/dev");
        assert_eq!(normalise_base_path("/v1/dev/").unwrap(), "/v1/dev");
        for bad in ["dev", "//", "/a//b", "/a/../b", "/./a", "/{x}", "/a b"] {
            assert!(
                normalise_base_path(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn hostnames_are_lower_cased_and_checked() {
        assert_eq!(
            normalise_hostname("API.Example.com").unwrap(),
            "api.example.com"
        );
        assert_eq!(normalise_hostname("localhost").unwrap(), "localhost");
        for bad in [
            "*.example.com",
            "a.com:8080",
            "a..com",
            "-a.com",
            "a_b.com",
            "",
        ] {
            assert!(
                normalise_hostname(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
