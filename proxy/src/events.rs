//! The events Portico sends to functions, one function per format, each built from the
//! request's `$context` values ([`crate::context`]) and its head, as AWS builds them (the
//! field-by-field comparison is in docs/manifest-spec.md, "Lambda compatibility"):
//!
//! ```text
//!  proxy_v1            Lambda proxy integration, payload format 1.0 (REST APIs; HTTP APIs
//!                      that ask for it)
//!  proxy_v2            Lambda proxy integration, payload format 2.0 (HTTP APIs)
//!  authorizer_request  REQUEST authorizer
//! ```
//!
//! A new format (WebSocket's) is one more function here.

use crate::context::{
    self, Var, api_name, domain, epoch_ms, header_text, protocol, request_time, stage_variables,
    text,
};
use crate::pipeline::ctx::{RequestCtx, X_AMZN_TRACE_ID, query_pairs};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::HeaderMap;
use http::header;
use portico_config::{PayloadFormatVersion, Protocol, RouteMatch, Segment};
use serde_json::{Map, Value, json};

const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_PORT: &str = "x-forwarded-port";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";

/// `content-type` -> `Content-Type`: the spelling REST events give header names. AWS keeps
/// the client's own spelling; hyper does not expose it, and this is what HTTP/1.1 clients
/// (curl, browsers, Go, Python) send for the common headers.
fn title_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper { c.to_ascii_uppercase() } else { c });
        upper = c == '-';
    }
    out
}

/// The request headers as the events carry them, in order, names lower case: the client's
/// (its hop-by-hop ones went at entry) less those the gateway sets, then the gateway's
/// `X-Forwarded-For` (the client's values, then its address), `X-Forwarded-Port`,
/// `X-Forwarded-Proto` and `X-Amzn-Trace-Id`, as AWS adds them. REST events leave out
/// `Content-Length`; HTTP API events always carry it (`0` without a body), as recorded on AWS.
fn event_headers(ctx: &RequestCtx, headers: &HeaderMap, body_len: usize) -> Vec<(String, String)> {
    let rest = is_rest(ctx);
    let mut out = Vec::with_capacity(headers.len() + 5);
    let mut forwarded_for = Vec::new();
    for (name, value) in headers {
        let n = name.as_str();
        if n == X_FORWARDED_FOR {
            forwarded_for.push(header_text(value).into_owned());
        } else if !(n == X_FORWARDED_PORT
            || n == X_FORWARDED_PROTO
            || *name == X_AMZN_TRACE_ID
            || *name == header::CONTENT_LENGTH)
        {
            out.push((n.to_string(), header_text(value).into_owned()));
        }
    }
    if !rest {
        out.push(("content-length".into(), body_len.to_string()));
    }
    forwarded_for.push(text(ctx, Var::SourceIp));
    out.push((X_FORWARDED_FOR.into(), forwarded_for.join(", ")));
    out.push((X_FORWARDED_PORT.into(), ctx.forwarded_port.to_string()));
    out.push((
        X_FORWARDED_PROTO.into(),
        header_text(&crate::pipeline::integrate::FORWARDED_PROTO).into_owned(),
    ));
    out.push((
        X_AMZN_TRACE_ID.as_str().into(),
        ctx.trace_id.as_str().into(),
    ));
    out
}

/// The client's spelling of each header name (lower case -> as sent), from the request's raw
/// head when the connection captured it and it is this request's (same method and target).
fn spellings(ctx: &RequestCtx) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    let Some(raw) = ctx
        .raw_head
        .as_deref()
        .and_then(|r| std::str::from_utf8(r).ok())
    else {
        return out;
    };
    let mut lines = raw.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let target = ctx
        .uri
        .path_and_query()
        .map_or_else(|| ctx.uri.to_string(), |p| p.as_str().to_string());
    if request_line.next() != Some(ctx.http_method.as_str())
        || request_line.next() != Some(target.as_str())
    {
        return out;
    }
    for line in lines {
        if let Some((name, _)) = line.split_once(':') {
            out.entry(name.to_ascii_lowercase())
                .or_insert_with(|| name.to_string());
        }
    }
    out
}

/// `headers` (the last value of each name) and `multiValueHeaders` (all); names as the
/// client spelled them when known (AWS keeps the client's spelling: `tEsT-HEADeR`), else
/// Title-Case; or, `title` false, as they are (lower case).
fn v1_headers(ctx: &RequestCtx, pairs: &[(String, String)], title: bool) -> (Value, Value) {
    let mut single = Map::new();
    let mut multi: Map<String, Value> = Map::new();
    let spelled = if title {
        spellings(ctx)
    } else {
        Default::default()
    };
    for (name, value) in pairs {
        let name = match spelled.get(name) {
            Some(s) => s.clone(),
            None if title => title_case(name),
            None => name.clone(),
        };
        single.insert(name.clone(), Value::String(value.clone()));
        multi
            .entry(name)
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .expect("inserted as an array")
            .push(Value::String(value.clone()));
    }
    (Value::Object(single), Value::Object(multi))
}

/// `queryStringParameters` (last value) and `multiValueQueryStringParameters`, decoded;
/// both `null` without a query.
fn v1_query(ctx: &RequestCtx) -> (Value, Value) {
    let pairs = query_pairs(ctx.uri.query().unwrap_or(""));
    if pairs.is_empty() {
        return (Value::Null, Value::Null);
    }
    let mut q = Map::new();
    let mut mq: Map<String, Value> = Map::new();
    for (k, v) in pairs {
        q.insert(k.clone(), Value::String(v.clone()));
        mq.entry(k)
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .expect("inserted as an array")
            .push(Value::String(v));
    }
    (Value::Object(q), Value::Object(mq))
}

fn is_rest(ctx: &RequestCtx) -> bool {
    ctx.api_config()
        .is_none_or(|a| a.protocol == Protocol::Rest)
}

/// The body as the event carries it, and `isBase64Encoded`: base64 when its `Content-Type`
/// is binary (REST: one of the API's `binaryMediaTypes`; HTTP APIs, which have none:
/// `application/octet-stream`, `image/*`, `audio/*`, `video/*`) or when it is not UTF-8.
fn event_body(ctx: &RequestCtx, headers: &HeaderMap, body: &Bytes) -> (Value, bool) {
    if body.is_empty() {
        return (Value::Null, false);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let binary = !content_type.is_empty()
        && match ctx.api_config() {
            Some(a) if a.protocol == Protocol::Rest => {
                portico_config::is_binary_media_type(&a.binary_media_types, content_type)
            }
            _ => portico_config::is_binary_media_type(
                &[
                    "application/octet-stream".into(),
                    "image/*".into(),
                    "audio/*".into(),
                    "video/*".into(),
                ],
                content_type,
            ),
        };
    match std::str::from_utf8(body) {
        Ok(s) if !binary => (Value::String(s.to_string()), false),
        _ => (Value::String(BASE64.encode(body)), true),
    }
}

/// The request path with a run of leading slashes as one (`requestContext.path` of REST
/// events: AWS keeps the path as sent otherwise, `//` and escapes included).
fn raw_path(ctx: &RequestCtx) -> String {
    let p = ctx.uri.path();
    format!("/{}", p.trim_start_matches('/'))
}

/// A REST event's `path` (after the stage's base path, leading slashes as one, the rest as
/// sent) and `pathParameters` (as sent, not decoded), as recorded on AWS (LocalStack's
/// `test_lambda_aws_proxy_integration` snapshots). When the path has dot segments (which
/// routing resolved) the raw path cannot be lined up with the route: the canonical values
/// are used.
fn rest_path_and_params(ctx: &RequestCtx) -> (String, Option<Map<String, Value>>) {
    let raw = raw_path(ctx);
    let base_segments = ctx.stage_config().map_or(0, |s| {
        s.base_path.split('/').filter(|s| !s.is_empty()).count()
    });
    // The raw path after the base path's segments.
    let mut rest = raw.as_str();
    for _ in 0..base_segments {
        rest = rest.trim_start_matches('/');
        rest = rest.find('/').map_or("", |i| &rest[i..]);
    }
    let rest = rest.trim_start_matches('/');
    let path = format!("/{rest}");
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let dotted = segments.iter().any(|s| {
        let d = s.replace("%2e", ".").replace("%2E", ".");
        d == "." || d == ".."
    });
    let template = match ctx.route_config().map(|r| &r.matcher) {
        Some(RouteMatch::Path(t)) => &t.segments,
        _ => return (path, None),
    };
    if template.is_empty() {
        return (path, None);
    }
    if dotted {
        return (path, context::path_parameters(ctx));
    }
    let mut params = Map::new();
    for (i, seg) in template.iter().enumerate() {
        match seg {
            Segment::Literal(_) => {}
            Segment::Param(n) => {
                if let Some(v) = segments.get(i) {
                    params.insert(n.clone(), Value::String((*v).to_string()));
                }
            }
            Segment::Greedy(n) => {
                // From the i-th segment to the end, inner `//` kept, a trailing `/` not.
                let mut tail = rest;
                for _ in 0..i {
                    tail = tail.trim_start_matches('/');
                    tail = tail.find('/').map_or("", |j| &tail[j..]);
                }
                let v = tail.trim_start_matches('/').trim_end_matches('/');
                params.insert(n.clone(), Value::String(v.to_string()));
            }
        }
    }
    (path, (!params.is_empty()).then_some(params))
}

/// `path` and `pathParameters` of the 1.0 formats: REST as sent ([`rest_path_and_params`]);
/// HTTP APIs (recorded on AWS) the path after the base path and the parameters decoded.
fn v1_path_and_params(ctx: &RequestCtx) -> (String, Option<Map<String, Value>>) {
    if is_rest(ctx) {
        rest_path_and_params(ctx)
    } else {
        (
            context::stage_relative_path(ctx),
            context::path_parameters(ctx),
        )
    }
}

/// `requestContext.accountId`, `deploymentId` and `identity` values of the 1.0 formats.
fn identity(ctx: &RequestCtx, headers: &HeaderMap) -> Value {
    let mut id = json!({
        "cognitoIdentityPoolId": null,
        "accountId": null,
        "cognitoIdentityId": null,
        "caller": null,
        "sourceIp": text(ctx, Var::SourceIp),
        "principalOrgId": null,
        "accessKey": null,
        "cognitoAuthenticationType": null,
        "cognitoAuthenticationProvider": null,
        "userArn": null,
        "userAgent": context::user_agent(ctx),
        "user": null
    });
    // The API key the request was metered on, as AWS adds it (`apiKey`, `apiKeyId`).
    if let Some(m) = ctx.api_key {
        let key = headers
            .get("x-api-key")
            .map(|v| header_text(v).into_owned())
            .or_else(|| ctx.usage_identifier_key.clone());
        let o = id.as_object_mut().expect("built as an object");
        o.insert("apiKey".into(), json!(key));
        o.insert(
            "apiKeyId".into(),
            json!(ctx.runtime.config.api_keys[m.key].hash.key_id()),
        );
    }
    id
}

/// `requestContext.authorizer` of the 1.0 formats, when the route has an authorizer: the
/// function's `context` keys and `principalId`, or a JWT's `claims` (and, on HTTP APIs,
/// `scopes`).
fn authorizer_v1(ctx: &RequestCtx) -> Option<Value> {
    let a = ctx.authorizer.as_ref()?;
    let mut o = a.context.clone();
    if let Some(p) = &a.principal_id
        && a.claims.is_empty()
    {
        o.insert("principalId".into(), Value::String(p.clone()));
    }
    if !a.claims.is_empty() {
        o.insert("claims".into(), Value::Object((*a.claims).clone()));
        if !is_rest(ctx) {
            o.insert("scopes".into(), scopes(&a.claims));
        }
    }
    Some(Value::Object(o))
}

/// A token's scopes (`scope`, space-separated, or `scp`, a list); `null` without.
fn scopes(claims: &Map<String, Value>) -> Value {
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => s.split_whitespace().map(|s| json!(s)).collect(),
        (_, Some(Value::Array(a))) => Value::Array(a.clone()),
        _ => Value::Null,
    }
}

/// `requestContext` of the 1.0 formats (the proxy event and the REST REQUEST authorizer).
fn request_context_v1(ctx: &RequestCtx, headers: &HeaderMap) -> Value {
    let (domain_name, domain_prefix) = domain(ctx);
    let route = ctx.route_config();
    let resource = route.map_or("", |r| r.resource_path.as_str());
    let mut rc = json!({
        "accountId": context::account_id(),
        "apiId": api_name(ctx),
        "deploymentId": context::deployment_id(ctx),
        "domainName": domain_name,
        "domainPrefix": domain_prefix,
        "extendedRequestId": text(ctx, Var::RequestId),
        "httpMethod": text(ctx, Var::HttpMethod),
        "identity": identity(ctx, headers),
        "path": raw_path(ctx),
        "protocol": protocol(ctx),
        "requestId": text(ctx, Var::RequestId),
        "requestTime": request_time(ctx),
        "requestTimeEpoch": epoch_ms(ctx),
        "resourceId": route.map(|r| r.id.as_str()),
        "resourcePath": resource,
        "stage": text(ctx, Var::Stage),
    });
    if let Some(a) = authorizer_v1(ctx) {
        rc.as_object_mut()
            .expect("built as an object")
            .insert("authorizer".into(), a);
    }
    rc
}

/// The request's fields in the 1.0 formats (the proxy event and the REQUEST authorizer
/// event): `resource`, `path`, `httpMethod`, `headers`, `multiValueHeaders`, the query maps,
/// `pathParameters` (`null` without), `stageVariables`, `requestContext`. Header names as
/// the client spelled them (`title`), or lower case.
fn v1_request(ctx: &RequestCtx, headers: &HeaderMap, body_len: usize, title: bool) -> Value {
    let pairs = event_headers(ctx, headers, body_len);
    let (single, multi) = v1_headers(ctx, &pairs, title);
    let (query, multi_query) = v1_query(ctx);
    let (path, params) = v1_path_and_params(ctx);
    let resource = ctx.route_config().map_or("", |r| r.resource_path.as_str());
    json!({
        "resource": resource,
        "path": path,
        "httpMethod": text(ctx, Var::HttpMethod),
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": params,
        "stageVariables": stage_variables(ctx),
        "requestContext": request_context_v1(ctx, headers),
    })
}

/// The payload format 1.0 event (REST APIs, and HTTP APIs that ask for it).
pub fn proxy_v1(ctx: &RequestCtx, headers: &HeaderMap, body: &Bytes) -> Value {
    let mut event = v1_request(ctx, headers, body.len(), true);
    let (body, is_base64) = event_body(ctx, headers, body);
    let o = event.as_object_mut().expect("built as an object");
    o.insert("body".into(), body);
    o.insert("isBase64Encoded".into(), Value::Bool(is_base64));
    // HTTP APIs label format 1.0 events; REST APIs' events have no version.
    if !is_rest(ctx) {
        o.insert("version".into(), Value::String("1.0".into()));
    }
    event
}

/// The WebSocket event (AWS's Lambda proxy event of WebSocket APIs, "Setting up WebSocket API
/// integrations"): `requestContext` with `routeKey`, `eventType` (`CONNECT`, `MESSAGE`,
/// `DISCONNECT`), `messageId` (messages), `connectionId`, `connectedAt`, `messageDirection`,
/// `identity` and `authorizer`; the handshake's headers and query on `CONNECT` (and
/// `DISCONNECT`); the message as `body` on `MESSAGE`.
pub fn websocket(ctx: &RequestCtx, headers: &HeaderMap, body: &Bytes) -> Value {
    let (domain_name, _) = domain(ctx);
    let mut rc = json!({
        "routeKey": text(ctx, Var::RouteKey),
        "eventType": text(ctx, Var::EventType),
        "extendedRequestId": text(ctx, Var::RequestId),
        "requestTime": request_time(ctx),
        "messageDirection": "IN",
        "stage": text(ctx, Var::Stage),
        "connectedAt": ctx.websocket.as_ref().map_or(0, |w| w.connected_at_ms()),
        "requestTimeEpoch": epoch_ms(ctx),
        "identity": {"userAgent": context::user_agent(ctx), "sourceIp": text(ctx, Var::SourceIp)},
        "requestId": text(ctx, Var::RequestId),
        "domainName": domain_name,
        "connectionId": text(ctx, Var::ConnectionId),
        "apiId": api_name(ctx),
    });
    let o = rc.as_object_mut().expect("built as an object");
    if let Some(w) = &ctx.websocket {
        if let Some(id) = &w.message_id {
            o.insert("messageId".into(), json!(id));
        }
        if let Some((code, reason)) = &w.disconnect {
            o.insert("disconnectStatusCode".into(), json!(code));
            o.insert("disconnectReason".into(), json!(reason));
        }
    }
    if let Some(a) = authorizer_v1(ctx) {
        o.insert("authorizer".into(), a);
    }
    let message = ctx
        .websocket
        .as_ref()
        .is_some_and(|w| w.event_type == crate::websocket::EventType::Message);
    let mut event = Map::new();
    if !message {
        let pairs = event_headers(ctx, headers, 0);
        let (single, multi) = v1_headers(ctx, &pairs, true);
        let (query, multi_query) = v1_query(ctx);
        event.insert("headers".into(), single);
        event.insert("multiValueHeaders".into(), multi);
        if !query.is_null() {
            event.insert("queryStringParameters".into(), query);
            event.insert("multiValueQueryStringParameters".into(), multi_query);
        }
    }
    event.insert("requestContext".into(), rc);
    if message {
        let (b, is_base64) = match std::str::from_utf8(body) {
            Ok(s) if !ctx.websocket.as_ref().is_some_and(|w| w.binary) => (json!(s), false),
            _ => (json!(BASE64.encode(body)), true),
        };
        event.insert("body".into(), b);
        event.insert("isBase64Encoded".into(), Value::Bool(is_base64));
    } else {
        event.insert("isBase64Encoded".into(), Value::Bool(false));
    }
    Value::Object(event)
}

/// The payload format 2.0 event (HTTP APIs).
pub fn proxy_v2(ctx: &RequestCtx, headers: &HeaderMap, body: &Bytes) -> Value {
    let mut hs: Map<String, Value> = Map::new();
    let mut cookies = Vec::new();
    for (name, v) in event_headers(ctx, headers, body.len()) {
        if name == header::COOKIE.as_str() {
            cookies.extend(
                v.split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| Value::String(c.to_string())),
            );
            continue;
        }
        match hs.get_mut(&name) {
            Some(Value::String(prev)) => {
                prev.push(',');
                prev.push_str(&v);
            }
            _ => {
                hs.insert(name, Value::String(v));
            }
        }
    }
    let raw_query = ctx.uri.query().unwrap_or("");
    let mut query: Map<String, Value> = Map::new();
    for (k, v) in query_pairs(raw_query) {
        match query.get_mut(&k) {
            Some(Value::String(prev)) => {
                prev.push(',');
                prev.push_str(&v);
            }
            _ => {
                query.insert(k, Value::String(v));
            }
        }
    }
    // HTTP APIs give the path decoded (recorded on AWS: `%20` as a space).
    let path = percent_encoding::percent_decode_str(&raw_path(ctx))
        .decode_utf8_lossy()
        .into_owned();
    let (domain_name, domain_prefix) = domain(ctx);
    let route_key = ctx.route_config().map_or("", |r| r.route_key.as_str());
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": hs,
        "requestContext": {
            "accountId": context::account_id(),
            "apiId": api_name(ctx),
            "domainName": domain_name,
            "domainPrefix": domain_prefix,
            "http": {
                "method": text(ctx, Var::HttpMethod),
                "path": path,
                "protocol": protocol(ctx),
                "sourceIp": text(ctx, Var::SourceIp),
                "userAgent": context::user_agent(ctx).unwrap_or_default(),
            },
            "requestId": text(ctx, Var::RequestId),
            "routeKey": route_key,
            "stage": text(ctx, Var::Stage),
            "time": request_time(ctx),
            "timeEpoch": epoch_ms(ctx),
        },
        "isBase64Encoded": false,
    });
    let obj = event.as_object_mut().expect("built as an object");
    // `authorizer`: `{"lambda": context}` or `{"jwt": {"claims", "scopes"}}`.
    if let Some(a) = &ctx.authorizer {
        let v = if a.claims.is_empty() {
            json!({"lambda": a.context})
        } else {
            json!({"jwt": {"claims": *a.claims, "scopes": scopes(&a.claims)}})
        };
        obj["requestContext"]
            .as_object_mut()
            .expect("built as an object")
            .insert("authorizer".into(), v);
    }
    // 2.0 leaves out what the request does not have.
    if !cookies.is_empty() {
        obj.insert("cookies".into(), Value::Array(cookies));
    }
    if !query.is_empty() {
        obj.insert("queryStringParameters".into(), Value::Object(query));
    }
    if let Some(p) = context::path_parameters(ctx) {
        obj.insert("pathParameters".into(), Value::Object(p));
    }
    if let Some(v) = stage_variables(ctx) {
        obj.insert("stageVariables".into(), Value::Object(v));
    }
    let (body, is_base64) = event_body(ctx, headers, body);
    if !body.is_null() {
        obj.insert("body".into(), body);
        obj.insert("isBase64Encoded".into(), Value::Bool(is_base64));
    }
    event
}

/// The REQUEST authorizer event ("Input to a Lambda authorizer"; for HTTP APIs "Working with
/// AWS Lambda authorizers for HTTP APIs"):
///
/// - REST APIs: `type`, `methodArn`, `resource`, `path`, `httpMethod`, `headers`,
///   `multiValueHeaders`, `queryStringParameters`, `multiValueQueryStringParameters`,
///   `pathParameters`, `stageVariables` and the proxy event's `requestContext`.
/// - HTTP APIs, format 2.0 (the default): the 2.0 proxy event's fields without the body,
///   plus `type`, `routeArn` and `identitySource` (a list).
/// - HTTP APIs, format 1.0: the REST fields (header names in lower case) plus `version`,
///   and `identitySource` and `authorizationToken`: the identity source values joined with
///   `,`.
pub fn authorizer_request(
    ctx: &RequestCtx,
    headers: &HeaderMap,
    values: &[String],
    arn: &str,
    version: Option<PayloadFormatVersion>,
) -> Value {
    let rest = is_rest(ctx);
    if !rest && version != Some(PayloadFormatVersion::V1) {
        let mut event = proxy_v2(ctx, headers, &Bytes::new());
        let o = event.as_object_mut().expect("built as an object");
        o.remove("isBase64Encoded");
        // The 2.0 proxy event without a body (`isBase64Encoded` goes with it).
        o.insert("type".into(), json!("REQUEST"));
        o.insert("routeArn".into(), json!(arn));
        o.insert("identitySource".into(), json!(values));
        return event;
    }
    // HTTP APIs give authorizers lower-case names.
    let mut event = v1_request(ctx, headers, 0, rest);
    let o = event.as_object_mut().expect("built as an object");
    o.insert("type".into(), json!("REQUEST"));
    o.insert("methodArn".into(), json!(arn));
    // The authorizer event has `{}` where the proxy event has `null`.
    if o["pathParameters"].is_null() {
        o.insert("pathParameters".into(), json!({}));
    }
    if !rest {
        let joined = values.join(",");
        o.insert("version".into(), json!("1.0"));
        o.insert("identitySource".into(), json!(joined));
        o.insert("authorizationToken".into(), json!(joined));
    }
    event
}

#[cfg(test)]
mod tests;
