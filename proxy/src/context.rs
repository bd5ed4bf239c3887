//! `$context`: the one source of a request's context values. Access logs and gateway
//! response bodies (through `template`), mapping templates and `context.*` mappings (through
//! [`json`] and [`value`]), and the Lambda proxy and authorizer events (`events`) all read
//! them here, so a value is computed one way wherever it appears.
//!
//! ```text
//!  RequestCtx ──Var::write──> one value as text      (templates, access log, mappings)
//!             ──json────────> the $context tree      (VTL: $context.requestId, ...)
//!             ──protocol, epoch_ms, request_time, domain, path_parameters,
//!               stage_variables, stage_relative_path──> typed values for events
//! ```

use crate::pipeline::RequestCtx;
use crate::template::json_escape_into;
use http::HeaderValue;
use portico_config::GatewayResponseType;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// A `$context` variable this build knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    /// `requestId`, `extendedRequestId`.
    RequestId,
    /// `stage`.
    Stage,
    /// `apiId`: the API's stable id (`restapi/<namespace>/<name>`), not its display name.
    ApiId,
    /// `resourcePath`.
    ResourcePath,
    /// `resourceId` (the route's stable id).
    ResourceId,
    /// `routeKey`.
    RouteKey,
    /// `httpMethod`.
    HttpMethod,
    /// `path` (the normalised request path, base path included).
    Path,
    /// `protocol`, e.g. `HTTP/1.1`.
    Protocol,
    /// `identity.sourceIp`.
    SourceIp,
    /// `identity.userAgent`.
    UserAgent,
    /// `requestTime` (CLF: `25/Nov/2026:09:35:27 +0000`).
    RequestTime,
    /// `requestTimeEpoch` (milliseconds).
    RequestTimeEpoch,
    /// `status`.
    Status,
    /// `responseLength`.
    ResponseLength,
    /// `responseLatency` (milliseconds).
    ResponseLatency,
    /// `integrationLatency`, `integration.latency` (milliseconds).
    IntegrationLatency,
    /// `integrationStatus`, `integration.status`.
    IntegrationStatus,
    /// `error.message`.
    ErrorMessage,
    /// `error.messageString` (JSON-quoted message).
    ErrorMessageString,
    /// `error.responseType`.
    ErrorResponseType,
    /// `error.validationErrorString` (what request validation found; raw).
    ValidationErrorString,
    /// `domainName` (the Host header).
    DomainName,
    /// `xrayTraceId`: the root of the request's `X-Amzn-Trace-Id`.
    XrayTraceId,
    /// `isCanaryRequest`: `true` when the stage's canary served the request.
    IsCanaryRequest,
    /// `connectionId` (WebSocket APIs).
    ConnectionId,
    /// `connectedAt` (WebSocket APIs; epoch milliseconds).
    ConnectedAt,
    /// `eventType`: `CONNECT`, `MESSAGE` or `DISCONNECT` (WebSocket APIs).
    EventType,
    /// `messageId` (WebSocket messages).
    MessageId,
    /// `messageDirection`: `IN` (WebSocket APIs).
    MessageDirection,
}

impl Var {
    /// Looks up a variable by its name after `$context.`.
    pub fn from_name(name: &str) -> Option<Var> {
        Some(match name {
            "requestId" | "extendedRequestId" => Var::RequestId,
            "stage" => Var::Stage,
            "apiId" => Var::ApiId,
            "resourcePath" => Var::ResourcePath,
            "resourceId" => Var::ResourceId,
            "routeKey" => Var::RouteKey,
            "httpMethod" => Var::HttpMethod,
            "path" => Var::Path,
            "protocol" => Var::Protocol,
            "identity.sourceIp" => Var::SourceIp,
            "identity.userAgent" => Var::UserAgent,
            "requestTime" => Var::RequestTime,
            "requestTimeEpoch" => Var::RequestTimeEpoch,
            "status" => Var::Status,
            "responseLength" => Var::ResponseLength,
            "responseLatency" => Var::ResponseLatency,
            "integrationLatency" | "integration.latency" => Var::IntegrationLatency,
            "integrationStatus" | "integration.status" => Var::IntegrationStatus,
            "error.message" => Var::ErrorMessage,
            "error.messageString" => Var::ErrorMessageString,
            "error.responseType" => Var::ErrorResponseType,
            "error.validationErrorString" => Var::ValidationErrorString,
            "domainName" => Var::DomainName,
            "xrayTraceId" => Var::XrayTraceId,
            "isCanaryRequest" => Var::IsCanaryRequest,
            "connectionId" => Var::ConnectionId,
            "connectedAt" => Var::ConnectedAt,
            "eventType" => Var::EventType,
            "messageId" => Var::MessageId,
            "messageDirection" => Var::MessageDirection,
            _ => return None,
        })
    }

    /// Writes the raw value; false when the request has none.
    pub fn write(self, ctx: &RequestCtx, out: &mut String) -> bool {
        let start = out.len();
        match self {
            Var::RequestId => out.push_str(ctx.request_id.as_str()),
            Var::Stage => out.push_str(ctx.stage_config().map_or("", |s| s.name.as_str())),
            Var::ApiId => out.push_str(ctx.api_config().map_or("", |a| a.id.as_str())),
            Var::ResourcePath => {
                out.push_str(ctx.route_config().map_or("", |r| r.resource_path.as_str()))
            }
            Var::ResourceId => out.push_str(ctx.route_config().map_or("", |r| r.id.as_str())),
            Var::RouteKey => out.push_str(ctx.route_config().map_or("", |r| r.route_key.as_str())),
            Var::HttpMethod => out.push_str(ctx.http_method.as_str()),
            Var::Path => out.push_str(ctx.path()),
            Var::Protocol => out.push_str(protocol(ctx)),
            Var::SourceIp => {
                let _ = write!(out, "{}", ctx.source_ip);
            }
            Var::UserAgent => {
                if let Some(ua) = &ctx.user_agent {
                    out.push_str(&header_text(ua));
                }
            }
            Var::RequestTime => write_clf_time(ctx.request_time, out),
            Var::RequestTimeEpoch => {
                let _ = write!(out, "{}", epoch_ms(ctx));
            }
            Var::Status => {
                if ctx.status != 0 {
                    let _ = write!(out, "{}", ctx.status);
                }
            }
            Var::ResponseLength => {
                if let Some(n) = ctx.response_length {
                    let _ = write!(out, "{n}");
                }
            }
            Var::ResponseLatency => {
                let _ = write!(out, "{}", ctx.response_latency.as_millis());
            }
            Var::IntegrationLatency => {
                if let Some(d) = ctx.integration_latency {
                    let _ = write!(out, "{}", d.as_millis());
                }
            }
            Var::IntegrationStatus => {
                if let Some(s) = ctx.integration_status {
                    let _ = write!(out, "{s}");
                }
            }
            Var::ErrorMessage => {
                if let Some(t) = ctx.error {
                    out.push_str(ctx.error_message.as_deref().unwrap_or(t.default_message()));
                }
            }
            Var::ErrorMessageString => {
                if let Some(t) = ctx.error {
                    // AWS's messageString of these types starts with a space, so the default
                    // body is `{"message": "Endpoint request timed out"}` (recorded bodies:
                    // ks888/LambStatus#36; `{"message": "Request Too Long"}`, 31 bytes:
                    // koki-develop/lgtm-generator#10; a Lambda failure's `{"message":
                    // "Internal server error"}`, 36 bytes: aws-lambda-dotnet test cases, for a
                    // function's failure only;
                    // and the access log value `" "Endpoint request timed out""`:
                    // DataBiosphere/azul#6284). Others have none (`{"message":"Missing
                    // Authentication Token"}`, 42 bytes).
                    let lambda = || {
                        ctx.route_config().is_some_and(|r| {
                            matches!(r.integration, portico_config::Integration::AwsProxy(_))
                        })
                    };
                    if matches!(
                        t,
                        GatewayResponseType::IntegrationTimeout
                            | GatewayResponseType::RequestTooLarge
                    ) || (t == GatewayResponseType::IntegrationFailure && lambda())
                    {
                        out.push(' ');
                    }
                    out.push('"');
                    json_escape_into(
                        ctx.error_message.as_deref().unwrap_or(t.default_message()),
                        out,
                    );
                    out.push('"');
                }
            }
            Var::ConnectionId => {
                if let Some(w) = &ctx.websocket {
                    out.push_str(&w.connection_id);
                }
            }
            Var::ConnectedAt => {
                if let Some(w) = &ctx.websocket {
                    let _ = write!(out, "{}", w.connected_at_ms());
                }
            }
            Var::EventType => {
                if let Some(w) = &ctx.websocket {
                    out.push_str(w.event_type.as_str());
                }
            }
            Var::MessageId => {
                if let Some(id) = ctx.websocket.as_ref().and_then(|w| w.message_id.as_deref()) {
                    out.push_str(id);
                }
            }
            Var::MessageDirection => {
                if ctx.websocket.is_some() {
                    out.push_str("IN");
                }
            }
            Var::ValidationErrorString => {
                if let Some(v) = &ctx.validation_error {
                    out.push_str(v);
                }
            }
            Var::ErrorResponseType => {
                if let Some(t) = ctx.error {
                    out.push_str(t.as_str());
                }
            }
            Var::XrayTraceId => out.push_str(ctx.trace_id.root()),
            Var::IsCanaryRequest => out.push_str(if is_canary(ctx) { "true" } else { "false" }),
            Var::DomainName => {
                if let Some(h) = &ctx.host {
                    out.push_str(&header_text(h));
                }
            }
        }
        out.len() > start
    }
}

/// The raw value of `$context.<name>` (a parameter mapping's `context.<name>`, including
/// `authorizer.principalId`, `authorizer.claims.<name>` and `authorizer.<key>`); `None` when
/// the name is unknown or the request has no value.
pub fn value(ctx: &RequestCtx, name: &str) -> Option<String> {
    let mut out = String::new();
    let found = match name.strip_prefix("authorizer.") {
        Some(key) => write_authorizer(ctx, key, &mut out),
        None => Var::from_name(name)?.write(ctx, &mut out),
    };
    found.then_some(out)
}

/// Writes `$context.authorizer.<key>`; false when the request has no such value.
pub fn write_authorizer(ctx: &RequestCtx, key: &str, out: &mut String) -> bool {
    let Some(a) = &ctx.authorizer else {
        return false;
    };
    if key == "principalId" {
        return a.principal_id.as_deref().is_some_and(|p| {
            out.push_str(p);
            !p.is_empty()
        });
    }
    let v = match key.strip_prefix("claims.") {
        Some(n) => a.claims.get(n),
        None => a.context.get(key),
    };
    let Some(v) = v else {
        return false;
    };
    let start = out.len();
    match v {
        serde_json::Value::String(s) => out.push_str(s),
        other => {
            let _ = write!(out, "{other}");
        }
    }
    out.len() > start
}

/// `$context` for templates and `context.*` mappings.
pub fn json(ctx: &RequestCtx) -> Map<String, Value> {
    const NAMES: [&str; 14] = [
        "requestId",
        "extendedRequestId",
        "stage",
        "apiId",
        "resourcePath",
        "resourceId",
        "routeKey",
        "httpMethod",
        "path",
        "protocol",
        "domainName",
        "requestTime",
        "identity.sourceIp",
        "identity.userAgent",
    ];
    let mut map = serde_json::Map::new();
    let mut put = |name: &str, v: serde_json::Value| match name.split_once('.') {
        Some((parent, child)) => {
            let entry = map
                .entry(parent)
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            if let serde_json::Value::Object(o) = entry {
                o.insert(child.to_string(), v);
            }
        }
        None => {
            map.insert(name.to_string(), v);
        }
    };
    for name in NAMES {
        let mut s = String::new();
        if let Some(var) = Var::from_name(name) {
            var.write(ctx, &mut s);
        }
        put(name, serde_json::Value::String(s));
    }
    put("requestTimeEpoch", serde_json::Value::from(epoch_ms(ctx)));
    put("isCanaryRequest", serde_json::Value::Bool(is_canary(ctx)));
    if let Some(w) = &ctx.websocket {
        put(
            "connectionId",
            serde_json::Value::String(w.connection_id.to_string()),
        );
        put("connectedAt", serde_json::Value::from(w.connected_at_ms()));
        put(
            "eventType",
            serde_json::Value::String(w.event_type.as_str().into()),
        );
        if let Some(id) = &w.message_id {
            put("messageId", serde_json::Value::String(id.clone()));
        }
        put("messageDirection", serde_json::Value::String("IN".into()));
    }
    // `$context.authorizer.*`: the function's context keys, `principalId`, and a JWT's
    // `claims`.
    if let Some(a) = &ctx.authorizer {
        let mut o = a.context.clone();
        if let Some(p) = &a.principal_id {
            o.insert("principalId".into(), serde_json::Value::String(p.clone()));
        }
        if !a.claims.is_empty() {
            o.insert(
                "claims".into(),
                serde_json::Value::Object((*a.claims).clone()),
            );
        }
        map.insert("authorizer".into(), serde_json::Value::Object(o));
    }
    map
}

static ACCOUNT_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The account id events and method ARNs carry (`requestContext.accountId`,
/// `arn:aws:execute-api:<region>:<account>:...`): `--account-id`, by default `000000000000`.
pub fn account_id() -> &'static str {
    ACCOUNT_ID.get().map_or(DEFAULT_ACCOUNT_ID, String::as_str)
}

/// The account id without `--account-id`.
pub const DEFAULT_ACCOUNT_ID: &str = "000000000000";

/// Sets [`account_id`] for the process (once, at startup; later calls are ignored).
pub fn set_account_id(id: String) {
    let _ = ACCOUNT_ID.set(id);
}

/// `requestContext.deploymentId`: the first 10 hex digits of the served config's content
/// hash (a deployment is a config version here).
pub fn deployment_id(ctx: &RequestCtx) -> &str {
    let v = ctx.runtime.version.as_str();
    &v[..v.len().min(10)]
}

/// Whether the stage's canary serves the request.
pub fn is_canary(ctx: &RequestCtx) -> bool {
    ctx.handle.is_some_and(|h| h.deployment > 0)
}

/// The value of `var` as text (empty when the request has none).
pub fn text(ctx: &RequestCtx, var: Var) -> String {
    let mut s = String::new();
    var.write(ctx, &mut s);
    s
}

/// The API's display name: what the Lambda events and method ARNs carry as `apiId` (where
/// templates and logs carry the stable id, [`Var::ApiId`]).
pub fn api_name(ctx: &RequestCtx) -> &str {
    ctx.api_config().map_or("", |a| a.name.as_str())
}

/// `$context.protocol`: the request's HTTP version as AWS writes it (`HTTP/1.1`).
pub fn protocol(ctx: &RequestCtx) -> &'static str {
    match ctx.protocol {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// `$context.requestTimeEpoch`: milliseconds since the epoch.
pub fn epoch_ms(ctx: &RequestCtx) -> u64 {
    ctx.request_time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `$context.requestTime` (CLF).
pub fn request_time(ctx: &RequestCtx) -> String {
    let mut s = String::new();
    write_clf_time(ctx.request_time, &mut s);
    s
}

/// A header value as text (invalid UTF-8 replaced).
pub fn header_text(v: &HeaderValue) -> Cow<'_, str> {
    String::from_utf8_lossy(v.as_bytes())
}

/// `$context.identity.userAgent`, when the request sent one.
pub fn user_agent(ctx: &RequestCtx) -> Option<String> {
    ctx.user_agent.as_ref().map(|v| header_text(v).into_owned())
}

/// `(domainName, domainPrefix)` of the events: the Host without its port, and its first
/// label.
pub fn domain(ctx: &RequestCtx) -> (String, String) {
    let host = ctx.host.as_ref().map(header_text).unwrap_or_default();
    let name = host.split(':').next().unwrap_or("").to_string();
    let prefix = name.split('.').next().unwrap_or("").to_string();
    (name, prefix)
}

/// The path after the stage's base path (`/` when nothing is left).
pub fn stage_relative_path(ctx: &RequestCtx) -> String {
    let base = ctx.stage_config().map_or("", |s| s.base_path.as_str());
    let p = ctx.path().strip_prefix(base).unwrap_or(ctx.path());
    if p.is_empty() { "/".into() } else { p.into() }
}

/// `pathParameters`: names and decoded values; `None` when the route has none.
pub fn path_parameters(ctx: &RequestCtx) -> Option<Map<String, Value>> {
    let m: Map<String, Value> = ctx
        .path_parameters()
        .map(|(n, v)| (n.to_string(), Value::String(v.into_owned())))
        .collect();
    (!m.is_empty()).then_some(m)
}

/// `stageVariables` of the deployment; `None` when it has none.
pub fn stage_variables(ctx: &RequestCtx) -> Option<Map<String, Value>> {
    ctx.stage_variables().filter(|v| !v.is_empty()).map(|v| {
        v.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect()
    })
}

/// Appends `t` in Common Log Format, UTC: `25/Nov/2026:09:35:27 +0000`.
pub fn write_clf_time(t: SystemTime, out: &mut String) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, sod) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let _ = write!(
        out,
        "{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn clf_time_matches_aws_format() {
        let mut s = String::new();
        write_clf_time(UNIX_EPOCH + Duration::from_secs(1_795_599_327), &mut s);
        assert_eq!(s, "25/Nov/2026:09:35:27 +0000");
        s.clear();
        write_clf_time(UNIX_EPOCH, &mut s);
        assert_eq!(s, "01/Jan/1970:00:00:00 +0000");
        s.clear();
        write_clf_time(UNIX_EPOCH + Duration::from_secs(951_782_400), &mut s);
        assert_eq!(s, "29/Feb/2000:00:00:00 +0000");
    }
}
