//! WebSocket APIs: the API-level settings (`routeSelectionExpression`, `spec.websocket`),
//! the route key rules, and the checks of the fields AWS's WebSocket APIs do not have.
//!
//! Called by `apis` for every RestApi: [`selection`] decides the route selection and the API
//! key source (a bad expression drops the API); [`compile_settings`] the limits and the
//! management credentials (a bad limit falls back to its default, a bad credential is
//! dropped: nothing is served with a credential that cannot be checked); the route-level
//! rules (keys, authorization only on `$connect`, two-way routes, templates) run per route
//! in `apis`.

use super::Diags;
use super::usage_plans::{SecretLookup, find_secret_value, secret_not_found_message};
use crate::api::rest_api::{ApiKeySource as ApiKeySourceSpec, ApiProtocol, RestApiSpec};
use crate::reasons;
use portico_config::{
    ApiKeySource, ManagementCredential, ObjectRef, SecretKeyRef, Transform, WebSocketApi,
};
use std::collections::BTreeMap;
use std::collections::BTreeSet;

/// The route of a new connection (the upgrade request).
pub(crate) const CONNECT: &str = "$connect";
/// The route called when a connection ends.
pub(crate) const DISCONNECT: &str = "$disconnect";
/// The route of messages no other route's key matches.
pub(crate) const DEFAULT: &str = "$default";

/// `routeSelectionExpression` when unset (what AWS's console and CDK use).
pub(crate) const DEFAULT_ROUTE_SELECTION: &str = "$request.body.action";
/// The only route selection expression of AWS's HTTP APIs.
const HTTP_ROUTE_SELECTION: &str = "${request.method} ${request.path}";
/// `apiKeySelectionExpression` for `HEADER`.
pub(crate) const API_KEY_HEADER: &str = "$request.header.x-api-key";
/// `apiKeySelectionExpression` for `AUTHORIZER`.
pub(crate) const API_KEY_AUTHORIZER: &str = "$context.authorizer.usageIdentifierKey";

/// Longest custom route key (AWS's limit on a route key).
pub(crate) const MAX_ROUTE_KEY_CHARS: usize = 128;
/// Largest `maxMessageBytes` accepted: 16 MiB.
pub(crate) const MAX_MESSAGE_BYTES: i64 = 16 * 1024 * 1024;
/// Largest `idleTimeoutSeconds` accepted (2 hours: the default connection duration).
pub(crate) const MAX_IDLE_TIMEOUT_SECONDS: i64 = 7200;
/// Largest `maxConnectionSeconds` accepted (one day).
pub(crate) const MAX_CONNECTION_SECONDS: i64 = 86_400;
/// Access key ids: AWS IAM's `[\w]+`, 16..=128 characters.
pub(crate) const ACCESS_KEY_ID_CHARS: std::ops::RangeInclusive<usize> = 16..=128;

/// What the API-level selection expressions decide.
pub(crate) struct Selection {
    /// WebSocket APIs: the names under `$request.body` that the route key is read from.
    pub route_selection: Vec<String>,
    pub api_key_source: ApiKeySource,
}

/// `routeSelectionExpression` -> the names under `$request.body`:
/// `$request.body.a.b` and `${request.body.a.b}` -> `["a", "b"]`.
pub(crate) fn parse_route_selection(expr: &str) -> Result<Vec<String>, String> {
    let path = expr
        .strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .or_else(|| expr.strip_prefix('$'))
        .and_then(|r| r.strip_prefix("request.body."))
        .ok_or_else(|| {
            format!(
                "{expr:?} is not supported: Portico selects routes by a JSON property of the message, $request.body.<name>[.<name>...] or ${{request.body.<name>[.<name>...]}}"
            )
        })?;
    let names: Vec<String> = path.split('.').map(str::to_string).collect();
    if let Some(bad) = names.iter().find(|n| {
        n.is_empty()
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }) {
        return Err(format!(
            "{expr:?}: property name {bad:?} must be letters, digits, '_' or '-' (one expression, no literal text around it)"
        ));
    }
    Ok(names)
}

/// Decides the route selection (WebSocket APIs) and the API key source. `Err(())`: an
/// expression cannot be honoured (errors recorded); the API is not served.
pub(crate) fn selection(
    obj: &ObjectRef,
    protocol: ApiProtocol,
    spec: &RestApiSpec,
    diags: &mut Diags,
) -> Result<Selection, ()> {
    let mut ok = true;
    let field = "spec.routeSelectionExpression";
    let route_selection = match (protocol, spec.route_selection_expression.as_deref()) {
        (ApiProtocol::WebSocket, expr) => {
            match parse_route_selection(expr.unwrap_or(DEFAULT_ROUTE_SELECTION)) {
                Ok(names) => names,
                Err(e) => {
                    diags.error(
                        obj,
                        field,
                        reasons::INVALID_SELECTION_EXPRESSION,
                        format!("{e}; the API is not served"),
                    );
                    ok = false;
                    Vec::new()
                }
            }
        }
        (_, None) => Vec::new(),
        (ApiProtocol::Http, Some(HTTP_ROUTE_SELECTION)) => Vec::new(),
        (p, Some(_)) => {
            diags.warn(
                obj,
                field,
                reasons::NOT_SUPPORTED_BY_PROTOCOL,
                format!(
                    "routeSelectionExpression applies to WebSocket APIs; {} routes are selected by {}; ignored",
                    if p == ApiProtocol::Rest { "a REST API's" } else { "an HTTP API's" },
                    if p == ApiProtocol::Rest {
                        "resource path and method"
                    } else {
                        "route key (${request.method} ${request.path})"
                    }
                ),
            );
            Vec::new()
        }
    };

    let from_source = spec.api_key_source.map(|s| match s {
        ApiKeySourceSpec::Header => ApiKeySource::Header,
        ApiKeySourceSpec::Authorizer => ApiKeySource::Authorizer,
    });
    let field = "spec.apiKeySelectionExpression";
    let from_expression = match spec.api_key_selection_expression.as_deref() {
        None => None,
        Some(API_KEY_HEADER) => Some(ApiKeySource::Header),
        Some(API_KEY_AUTHORIZER) => Some(ApiKeySource::Authorizer),
        Some(e) => {
            diags.error(
                obj,
                field,
                reasons::INVALID_SELECTION_EXPRESSION,
                format!(
                    "{e:?} is not {API_KEY_HEADER} or {API_KEY_AUTHORIZER} (AWS's two values); the API is not served"
                ),
            );
            ok = false;
            None
        }
    };
    if let (Some(a), Some(b)) = (from_source, from_expression)
        && a != b
    {
        diags.error(
            obj,
            field,
            reasons::INVALID_SELECTION_EXPRESSION,
            format!(
                "{:?} disagrees with spec.apiKeySource {}; set one of them (or both alike); the API is not served",
                spec.api_key_selection_expression.as_deref().unwrap_or_default(),
                if a == ApiKeySource::Header { "HEADER" } else { "AUTHORIZER" }
            ),
        );
        ok = false;
    }
    ok.then(|| Selection {
        route_selection,
        api_key_source: from_source.or(from_expression).unwrap_or_default(),
    })
    .ok_or(())
}

/// A WebSocket route key: `$connect`, `$disconnect`, `$default` or a custom key.
pub(crate) fn check_route_key(key: &str) -> Result<(), String> {
    if matches!(key, CONNECT | DISCONNECT | DEFAULT) {
        return Ok(());
    }
    let chars = key.chars().count();
    if chars == 0 || chars > MAX_ROUTE_KEY_CHARS {
        return Err(format!(
            "a custom route key has 1..={MAX_ROUTE_KEY_CHARS} characters (this one {chars})"
        ));
    }
    if key.starts_with('$') {
        return Err(format!(
            "only {CONNECT}, {DISCONNECT} and {DEFAULT} may start with '$'"
        ));
    }
    if key.chars().any(char::is_control) || key.trim() != key {
        return Err("a route key has no control characters or surrounding spaces".into());
    }
    if let Some((verb, path)) = key.split_once(' ')
        && super::METHODS.contains(&verb)
        && path.starts_with('/')
    {
        return Err(format!(
            "this is an HTTP route key; a WebSocket API's routes are {CONNECT}, {DISCONNECT}, {DEFAULT} and the values routeSelectionExpression selects (set protocol: HTTP for HTTP routes)"
        ));
    }
    Ok(())
}

/// `spec.websocket` of a WebSocket API.
pub(crate) fn compile_settings(
    obj: &ObjectRef,
    spec: &RestApiSpec,
    route_selection: Vec<String>,
    secrets: &super::usage_plans::SecretIndex<'_>,
    diags: &mut Diags,
) -> WebSocketApi {
    let defaults = WebSocketApi::default();
    let mut out = WebSocketApi {
        route_selection,
        ..defaults.clone()
    };
    let Some(ws) = &spec.websocket else {
        return out;
    };
    let limit =
        |sub: &str, value: Option<i64>, max: i64, default: u64, diags: &mut Diags| match value {
            None => default,
            Some(v) if (1..=max).contains(&v) => u64::try_from(v).expect("checked positive"),
            Some(v) => {
                diags.error(
                    obj,
                    format!("spec.websocket.{sub}"),
                    reasons::INVALID_LIMIT,
                    format!("{sub} {v} is outside 1..={max}; the default {default} is used"),
                );
                default
            }
        };
    out.max_message_bytes = limit(
        "maxMessageBytes",
        ws.max_message_bytes,
        MAX_MESSAGE_BYTES,
        defaults.max_message_bytes,
        diags,
    );
    let message = out.max_message_bytes;
    out.max_frame_bytes = limit(
        "maxFrameBytes",
        ws.max_frame_bytes,
        i64::try_from(message).expect("at most 16 MiB"),
        defaults.max_frame_bytes.min(message),
        diags,
    );
    out.idle_timeout_seconds = limit(
        "idleTimeoutSeconds",
        ws.idle_timeout_seconds,
        MAX_IDLE_TIMEOUT_SECONDS,
        defaults.idle_timeout_seconds,
        diags,
    );
    out.max_connection_seconds = limit(
        "maxConnectionSeconds",
        ws.max_connection_seconds,
        MAX_CONNECTION_SECONDS,
        defaults.max_connection_seconds,
        diags,
    );

    let mut seen = BTreeSet::new();
    for (i, c) in ws.management_credentials.iter().enumerate() {
        let field = format!("spec.websocket.managementCredentials[{i}]");
        let id = &c.access_key_id;
        if !ACCESS_KEY_ID_CHARS.contains(&id.chars().count())
            || !id.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
        {
            diags.error(
                obj,
                format!("{field}.accessKeyId"),
                reasons::INVALID_CREDENTIAL,
                format!(
                    "access key id {id:?} must be {}..={} letters, digits or '_' (AWS's pattern); the credential is not served",
                    ACCESS_KEY_ID_CHARS.start(),
                    ACCESS_KEY_ID_CHARS.end()
                ),
            );
            continue;
        }
        if !seen.insert(id.as_str()) {
            diags.error(
                obj,
                format!("{field}.accessKeyId"),
                reasons::INVALID_CREDENTIAL,
                format!(
                    "access key id {id} is listed more than once; only the first entry is served"
                ),
            );
            continue;
        }
        let r = &c.secret_key_ref;
        // Only checked for presence: the value stays in the Secret, never in the config.
        if let Err(missing) = find_secret_value(secrets, &obj.namespace, &r.name, &r.key) {
            let sub = match missing {
                SecretLookup::NoSecret => "name",
                SecretLookup::NoKey => "key",
            };
            diags.error(
                obj,
                format!("{field}.secretKeyRef.{sub}"),
                reasons::SECRET_NOT_FOUND,
                secret_not_found_message(
                    &obj.namespace,
                    &r.name,
                    "named by the credential",
                    &r.key,
                    "the credential is not served",
                ),
            );
            continue;
        }
        out.management_credentials.push(ManagementCredential {
            access_key_id: id.clone(),
            secret: SecretKeyRef {
                namespace: obj.namespace.clone(),
                name: r.name.clone(),
                key: r.key.clone(),
            },
        });
    }
    out
}

/// Warnings for the API-level fields a WebSocket API does not have (ignored), or for
/// `spec.websocket` on another protocol.
pub(crate) fn ignored_api_fields(
    obj: &ObjectRef,
    protocol: ApiProtocol,
    spec: &RestApiSpec,
    diags: &mut Diags,
) {
    if protocol != ApiProtocol::WebSocket {
        if spec.websocket.is_some() {
            diags.warn(
                obj,
                "spec.websocket",
                reasons::NOT_SUPPORTED_BY_PROTOCOL,
                "spec.websocket applies to WebSocket APIs (protocol: WEBSOCKET); ignored",
            );
        }
        return;
    }
    for (field, set, what) in [
        ("spec.cors", spec.cors.is_some(), "CORS"),
        (
            "spec.binaryMediaTypes",
            !spec.binary_media_types.is_empty(),
            "binary media types (binary frames are binary)",
        ),
        (
            "spec.minimumCompressionSize",
            spec.minimum_compression_size.is_some(),
            "response compression",
        ),
        (
            "spec.requestValidators",
            !spec.request_validators.is_empty(),
            "request validators",
        ),
        (
            "spec.maxPayloadBytes",
            spec.max_payload_bytes.is_some(),
            "request body limit (messages: spec.websocket.maxMessageBytes)",
        ),
    ] {
        if set {
            diags.warn(
                obj,
                field,
                reasons::NOT_SUPPORTED_BY_PROTOCOL,
                format!("{field} is ignored: WebSocket APIs have no {what}"),
            );
        }
    }
}

/// The model a WebSocket route validates messages against: the `requestModels` entry
/// `modelSelectionExpression` selects (a literal key, else `$default`); with the field that
/// names it, for diagnostics. Models no message can select get a warning.
pub(crate) fn select_model(
    obj: &ObjectRef,
    field: &str,
    expression: Option<&str>,
    models: &BTreeMap<String, String>,
    diags: &mut Diags,
) -> Option<WsModels> {
    if models.is_empty() {
        if expression.is_some() {
            diags.warn(
                obj,
                format!("{field}.modelSelectionExpression"),
                reasons::IGNORED_FIELD,
                "modelSelectionExpression without requestModels has no effect",
            );
        }
        return None;
    }
    // An expression reading the message: every model stays, picked per message by the
    // value at that path (else `$default`'s).
    if let Some(e) = expression
        && let Ok(path) = parse_route_selection(e)
    {
        return Some(WsModels {
            field: format!("{field}.requestModels"),
            models: models.clone(),
            path,
        });
    }
    let key = match expression {
        None | Some("\\$default") | Some("$default") => DEFAULT.to_string(),
        Some(e) if !e.is_empty() && !e.contains(['$', '{', '}']) => e.trim().to_string(),
        Some(e) => {
            diags.warn(
                obj,
                format!("{field}.modelSelectionExpression"),
                reasons::INVALID_SELECTION_EXPRESSION,
                format!(
                    "{e:?}: use $default, a literal model key or $request.body.<name>[.<name>...]; the $default model is used"
                ),
            );
            DEFAULT.to_string()
        }
    };
    let chosen = models
        .get_key_value(&key)
        .or_else(|| models.get_key_value(DEFAULT));
    for k in models.keys().filter(|k| Some(*k) != chosen.map(|(k, _)| k)) {
        diags.warn(
            obj,
            format!("{field}.requestModels[\"{k}\"]"),
            reasons::IGNORED_FIELD,
            format!("the model for {k:?} never applies: the route validates with the one its modelSelectionExpression selects ({key}), else $default's"),
        );
    }
    chosen.map(|(k, m)| WsModels {
        field: format!("{field}.requestModels[\"{k}\"]"),
        models: [(DEFAULT.to_string(), m.clone())].into(),
        path: Vec::new(),
    })
}

/// A WebSocket route's message models: by selection key, the path that picks the key
/// (empty: always `$default`), and the field naming them (diagnostics).
#[derive(Debug)]
pub(crate) struct WsModels {
    pub field: String,
    pub models: BTreeMap<String, String>,
    pub path: Vec<String>,
}

/// The request template of a WebSocket route: the one `templateSelectionExpression` selects
/// (a literal key, else `$default`), alone under `$default`, which is what the proxy applies
/// to a message. Templates that can never apply get a warning.
pub(crate) fn select_template(
    obj: &ObjectRef,
    ifield: &str,
    expression: Option<&str>,
    transform: &mut Option<Transform>,
    diags: &mut Diags,
) -> Vec<String> {
    // An expression reading the message: every template stays, picked per message by the
    // value at that path (else `$default`'s).
    if let Some(e) = expression
        && let Ok(path) = parse_route_selection(e)
    {
        return path;
    }
    let key = match expression {
        None | Some("\\$default") | Some("$default") => DEFAULT.to_string(),
        Some(e) if !e.is_empty() && !e.contains(['$', '{', '}']) && !e.starts_with('/') => {
            e.trim().to_ascii_lowercase()
        }
        Some(e) => {
            diags.warn(
                obj,
                format!("{ifield}.templateSelectionExpression"),
                reasons::INVALID_SELECTION_EXPRESSION,
                format!(
                    "{e:?}: use \\$default, a literal template key or $request.body.<name>[.<name>...]; the $default template is used"
                ),
            );
            DEFAULT.to_string()
        }
    };
    let Some(t) = transform else {
        return Vec::new();
    };
    let templates = std::mem::take(&mut t.request_templates);
    let chosen = templates
        .get(&key)
        .map(|_| key.as_str())
        .or_else(|| templates.contains_key(DEFAULT).then_some(DEFAULT));
    for k in templates.keys().filter(|k| Some(k.as_str()) != chosen) {
        diags.warn(
            obj,
            format!("{ifield}.requestTemplates[\"{k}\"]"),
            reasons::IGNORED_FIELD,
            format!(
                "the template {k:?} never applies: a WebSocket route applies the template its templateSelectionExpression selects ({key}), else $default's"
            ),
        );
    }
    if let Some(c) = chosen {
        t.request_templates
            .insert(DEFAULT.to_string(), templates[c].clone());
    }
    if *t == Transform::default() {
        *transform = None;
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_selection_reads_body_paths_in_both_spellings() {
        assert_eq!(
            parse_route_selection("$request.body.action").unwrap(),
            ["action"]
        );
        assert_eq!(
            parse_route_selection("${request.body.message.type}").unwrap(),
            ["message", "type"]
        );
        for bad in [
            "$request.header.x",
            "$request.body.",
            "$request.body.a..b",
            "${request.body.a}-beta",
            "request.body.a",
            "$context.routeKey",
            "${request.body.a",
        ] {
            assert!(parse_route_selection(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn route_keys_follow_aws() {
        for ok in [
            "$connect",
            "$disconnect",
            "$default",
            "sendmessage",
            "a b",
            "x/y",
        ] {
            assert!(check_route_key(ok).is_ok(), "{ok}");
        }
        let long = "k".repeat(MAX_ROUTE_KEY_CHARS + 1);
        for bad in ["", "$other", "GET /x", " padded", "a\u{7}", long.as_str()] {
            assert!(check_route_key(bad).is_err(), "{bad:?}");
        }
    }
}
