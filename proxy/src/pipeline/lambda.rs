//! The `AWS_PROXY` (Lambda proxy) integration: called by `integrate::call` for routes whose
//! integration is [`LambdaTarget`].
//!
//! ```text
//!  request (body buffered, already under the payload cap)
//!    -> proxy event (payload format 1.0 or 2.0, as API Gateway builds it)
//!    -> POST <uri> (the function's invoke endpoint, pooled keep-alive connection)
//!    -> result: X-Amz-Function-Error or not an object as the format requires -> 502
//!    -> response (statusCode, headers, multiValueHeaders, cookies (2.0), body, base64)
//! ```
//!
//! Reads the route, stage, path parameters and `$context` values from [`RequestCtx`]; writes
//! `integration_latency` / `integration_status`. Short-circuits with `IntegrationTimeout`
//! (no complete result within the route's timeout), `IntegrationFailure` (the endpoint cannot
//! be reached) or `BadGateway` (a function error or a malformed result: 502
//! `{"message": "Internal server error"}`, as AWS).

use super::ctx::query_pairs;
use super::ctx::{ConnInfo, RequestCtx, Shared};
use super::error::GatewayError;
use super::integrate::HttpTarget;
use crate::body::ProxyBody;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::header::{self, HeaderName};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt as _;
use portico_config::PayloadFormatVersion;
use serde_json::{Map, Value, json};
use std::time::{Instant, UNIX_EPOCH};

/// The header the invoke endpoint sets when the function failed.
const X_AMZ_FUNCTION_ERROR: &str = "x-amz-function-error";

/// A compiled Lambda proxy integration.
#[derive(Debug)]
pub struct LambdaTarget {
    /// The invoke endpoint (method POST, fixed URI).
    pub http: HttpTarget,
    /// Event and result format.
    pub version: PayloadFormatVersion,
}

/// Invokes the function with the proxy event for this request and maps its result.
pub async fn call(
    shared: &Shared,
    conn: &ConnInfo,
    ctx: &mut RequestCtx,
    target: &LambdaTarget,
    timeout: std::time::Duration,
    parts: Parts,
    body: ProxyBody,
) -> Result<Response<ProxyBody>, GatewayError> {
    let max = ctx.api_config().map_or(u64::MAX, |a| a.max_payload_bytes);
    let body = crate::buffer::collect(body, None, max, &shared.buffers).await?;
    let event = match target.version {
        PayloadFormatVersion::V1 => event_v1(ctx, &parts.headers, &body),
        PayloadFormatVersion::V2 => event_v2(ctx, &parts.headers, &body),
    };
    let payload = serde_json::to_vec(&event).expect("a JSON value serializes");
    // The invoke URI is fixed: the request's query string travels in the event, not here.
    let uri = match target.http.fixed_uri() {
        Some(u) => u.clone(),
        None => target.http.uri(ctx)?,
    };
    let req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .version(Version::HTTP_11)
        .header(header::HOST, target.http.host.clone())
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
        .body(ProxyBody::full(payload))
        .expect("method, uri and headers are valid");

    let started = Instant::now();
    let pool = target.http.pool.clone();
    let exchange = async move {
        let resp = pool
            .send(req, None)
            .await
            .map_err(|e| GatewayError::IntegrationFailure(e.to_string()))?;
        let (head, body) = resp.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|e| GatewayError::IntegrationFailure(format!("reading result: {e}")))?
            .to_bytes();
        Ok::<_, GatewayError>((head, bytes))
    };
    let sent = conn.timer.timeout(timeout, exchange).await;
    ctx.integration_latency = Some(started.elapsed());
    let (head, result) = match sent {
        Err(_) => return Err(GatewayError::IntegrationTimeout(timeout)),
        Ok(r) => r?,
    };
    ctx.integration_status = Some(head.status.as_u16());
    if let Some(kind) = head.headers.get(X_AMZ_FUNCTION_ERROR) {
        return Err(GatewayError::BadGateway(format!(
            "function error {:?}: {}",
            kind,
            String::from_utf8_lossy(&result[..result.len().min(512)])
        )));
    }
    if !head.status.is_success() {
        return Err(GatewayError::BadGateway(format!(
            "invoke endpoint answered {}",
            head.status
        )));
    }
    map_result(target.version, &result).map_err(GatewayError::BadGateway)
}

/// The body as the event carries it: text, or base64 when it is not UTF-8.
fn event_body(body: &Bytes) -> (Value, bool) {
    if body.is_empty() {
        return (Value::Null, false);
    }
    match std::str::from_utf8(body) {
        Ok(s) => (Value::String(s.to_string()), false),
        Err(_) => (Value::String(BASE64.encode(body)), true),
    }
}

fn header_str(v: &HeaderValue) -> String {
    String::from_utf8_lossy(v.as_bytes()).into_owned()
}

fn path_parameters(ctx: &RequestCtx) -> Option<Map<String, Value>> {
    let m: Map<String, Value> = ctx
        .path_parameters()
        .map(|(n, v)| (n.to_string(), Value::String(v.into_owned())))
        .collect();
    (!m.is_empty()).then_some(m)
}

fn stage_variables(ctx: &RequestCtx) -> Option<Map<String, Value>> {
    ctx.stage_variables().filter(|v| !v.is_empty()).map(|v| {
        v.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect()
    })
}

fn epoch_ms(ctx: &RequestCtx) -> u64 {
    ctx.request_time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn request_time(ctx: &RequestCtx) -> String {
    let mut s = String::new();
    crate::template::write_clf_time(ctx.request_time, &mut s);
    s
}

fn protocol(ctx: &RequestCtx) -> &'static str {
    match ctx.protocol {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    }
}

fn domain(ctx: &RequestCtx) -> (String, String) {
    let host = ctx.host.as_ref().map(header_str).unwrap_or_default();
    let name = host.split(':').next().unwrap_or("").to_string();
    let prefix = name.split('.').next().unwrap_or("").to_string();
    (name, prefix)
}

/// The path after the stage's base path (`event.path` of format 1.0).
fn stage_relative_path(ctx: &RequestCtx) -> String {
    let base = ctx.stage_config().map_or("", |s| s.base_path.as_str());
    let p = ctx.path().strip_prefix(base).unwrap_or(ctx.path());
    if p.is_empty() { "/".into() } else { p.into() }
}

/// The payload format 1.0 event (REST APIs, and HTTP APIs that ask for it).
pub fn event_v1(ctx: &RequestCtx, headers: &HeaderMap, body: &Bytes) -> Value {
    let mut single = Map::new();
    let mut multi: Map<String, Value> = Map::new();
    for (name, value) in headers {
        let v = header_str(value);
        single.insert(name.as_str().to_string(), Value::String(v.clone()));
        multi
            .entry(name.as_str().to_string())
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .expect("inserted as an array")
            .push(Value::String(v));
    }
    let pairs = query_pairs(ctx.uri.query().unwrap_or(""));
    let (query, multi_query) = if pairs.is_empty() {
        (Value::Null, Value::Null)
    } else {
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
    };
    let (domain_name, domain_prefix) = domain(ctx);
    let route = ctx.route_config();
    let resource = route.map_or("", |r| r.resource_path.as_str());
    let (body, is_base64) = event_body(body);
    let mut event = json!({
        "resource": resource,
        "path": stage_relative_path(ctx),
        "httpMethod": ctx.http_method.as_str(),
        "headers": if single.is_empty() { Value::Null } else { Value::Object(single) },
        "multiValueHeaders": if multi.is_empty() { Value::Null } else { Value::Object(multi) },
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": path_parameters(ctx),
        "stageVariables": stage_variables(ctx),
        "requestContext": {
            "resourceId": route.map(|r| r.id.as_str()),
            "resourcePath": resource,
            "httpMethod": ctx.http_method.as_str(),
            "extendedRequestId": ctx.request_id.as_str(),
            "requestTime": request_time(ctx),
            "path": ctx.path(),
            "protocol": protocol(ctx),
            "stage": ctx.stage_config().map_or("", |s| s.name.as_str()),
            "domainPrefix": domain_prefix,
            "requestTimeEpoch": epoch_ms(ctx),
            "requestId": ctx.request_id.as_str(),
            "identity": {
                "cognitoIdentityPoolId": null,
                "accountId": null,
                "cognitoIdentityId": null,
                "caller": null,
                "sourceIp": ctx.source_ip.to_string(),
                "principalOrgId": null,
                "accessKey": null,
                "cognitoAuthenticationType": null,
                "cognitoAuthenticationProvider": null,
                "userArn": null,
                "userAgent": ctx.user_agent.as_ref().map(header_str),
                "user": null
            },
            "domainName": domain_name,
            "apiId": ctx.api_config().map_or("", |a| a.name.as_str()),
        },
        "body": body,
        "isBase64Encoded": is_base64,
    });
    // HTTP APIs label format 1.0 events; REST APIs' events have no version.
    if ctx
        .api_config()
        .is_some_and(|a| a.protocol == portico_config::Protocol::Http)
    {
        event
            .as_object_mut()
            .expect("built as an object")
            .insert("version".into(), Value::String("1.0".into()));
    }
    event
}

/// The payload format 2.0 event (HTTP APIs).
pub fn event_v2(ctx: &RequestCtx, headers: &HeaderMap, body: &Bytes) -> Value {
    let mut hs: Map<String, Value> = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in headers {
        let v = header_str(value);
        if name == header::COOKIE {
            cookies.extend(
                v.split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(|c| Value::String(c.to_string())),
            );
            continue;
        }
        match hs.get_mut(name.as_str()) {
            Some(Value::String(prev)) => {
                prev.push(',');
                prev.push_str(&v);
            }
            _ => {
                hs.insert(name.as_str().to_string(), Value::String(v));
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
    let (domain_name, domain_prefix) = domain(ctx);
    let route_key = ctx.route_config().map_or("", |r| r.route_key.as_str());
    let mut event = json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": ctx.path(),
        "rawQueryString": raw_query,
        "headers": hs,
        "requestContext": {
            "apiId": ctx.api_config().map_or("", |a| a.name.as_str()),
            "domainName": domain_name,
            "domainPrefix": domain_prefix,
            "http": {
                "method": ctx.http_method.as_str(),
                "path": ctx.path(),
                "protocol": protocol(ctx),
                "sourceIp": ctx.source_ip.to_string(),
                "userAgent": ctx.user_agent.as_ref().map(header_str).unwrap_or_default(),
            },
            "requestId": ctx.request_id.as_str(),
            "routeKey": route_key,
            "stage": ctx.stage_config().map_or("", |s| s.name.as_str()),
            "time": request_time(ctx),
            "timeEpoch": epoch_ms(ctx),
        },
        "isBase64Encoded": false,
    });
    let obj = event.as_object_mut().expect("built as an object");
    // 2.0 leaves out what the request does not have.
    if !cookies.is_empty() {
        obj.insert("cookies".into(), Value::Array(cookies));
    }
    if !query.is_empty() {
        obj.insert("queryStringParameters".into(), Value::Object(query));
    }
    if let Some(p) = path_parameters(ctx) {
        obj.insert("pathParameters".into(), Value::Object(p));
    }
    if let Some(v) = stage_variables(ctx) {
        obj.insert("stageVariables".into(), Value::Object(v));
    }
    let (body, is_base64) = event_body(body);
    if !body.is_null() {
        obj.insert("body".into(), body);
        obj.insert("isBase64Encoded".into(), Value::Bool(is_base64));
    }
    event
}

/// Maps the function's result to the response; `Err` is why it is malformed (-> 502).
pub fn map_result(
    version: PayloadFormatVersion,
    result: &[u8],
) -> Result<Response<ProxyBody>, String> {
    let value: Value = serde_json::from_slice(result)
        .map_err(|e| format!("the function's result is not JSON: {e}"))?;
    let obj = match (&value, version) {
        (Value::Object(o), _) if o.contains_key("statusCode") => o,
        (Value::Object(_), PayloadFormatVersion::V1) => {
            return Err("the result has no statusCode".into());
        }
        (_, PayloadFormatVersion::V1) => return Err("the result is not a JSON object".into()),
        // 2.0: a bare value (or an object without statusCode) is a 200 JSON body.
        (_, PayloadFormatVersion::V2) => {
            let mut resp = Response::new(ProxyBody::full(Bytes::copy_from_slice(result)));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Ok(resp);
        }
    };
    // 1.0 is strict about the fields (AWS answers 502 for others); 2.0 reads what it knows
    // (no multiValueHeaders there) and ignores the rest.
    if version == PayloadFormatVersion::V1 {
        const ALLOWED: [&str; 5] = [
            "statusCode",
            "headers",
            "multiValueHeaders",
            "body",
            "isBase64Encoded",
        ];
        if let Some(k) = obj.keys().find(|k| !ALLOWED.contains(&k.as_str())) {
            return Err(format!("the result has an unexpected field {k:?}"));
        }
    }
    let status = obj["statusCode"]
        .as_u64()
        .or_else(|| obj["statusCode"].as_str().and_then(|s| s.parse().ok()))
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| format!("statusCode {} is not a status code", obj["statusCode"]))?;
    let mut headers = HeaderMap::new();
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let put = |headers: &mut HeaderMap, k: &str, v: &Value, append: bool| {
        let v = scalar(v).ok_or_else(|| format!("header {k:?} has a non-scalar value"))?;
        let name =
            HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("bad header name {k:?}"))?;
        let value = HeaderValue::from_str(&v).map_err(|_| format!("bad value for {k:?}"))?;
        if append {
            headers.append(name, value);
        } else {
            headers.insert(name, value);
        }
        Ok::<_, String>(())
    };
    let multi = match version {
        PayloadFormatVersion::V1 => obj.get("multiValueHeaders"),
        PayloadFormatVersion::V2 => None,
    };
    match multi {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, vs) in m {
                let vs = vs
                    .as_array()
                    .ok_or_else(|| format!("multiValueHeaders {k:?} is not an array"))?;
                for v in vs {
                    put(&mut headers, k, v, true)?;
                }
            }
        }
        Some(_) => return Err("multiValueHeaders is not an object".into()),
    }
    match obj.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                put(&mut headers, k, v, false)?;
            }
        }
        Some(_) => return Err("headers is not an object".into()),
    }
    let cookies = match version {
        PayloadFormatVersion::V1 => None,
        PayloadFormatVersion::V2 => obj.get("cookies"),
    };
    match cookies {
        None | Some(Value::Null) => {}
        Some(Value::Array(cs)) => {
            for c in cs {
                put(&mut headers, "set-cookie", c, true)?;
            }
        }
        Some(_) => return Err("cookies is not an array".into()),
    }
    crate::hop_by_hop::strip(&mut headers);
    headers.remove(header::CONTENT_LENGTH);
    let is_base64 = match obj.get("isBase64Encoded") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("isBase64Encoded is not a boolean".into()),
    };
    let body = match obj.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) if is_base64 => BASE64
            .decode(s)
            .map(Bytes::from)
            .map_err(|e| format!("body is not valid base64: {e}"))?,
        Some(Value::String(s)) => Bytes::copy_from_slice(s.as_bytes()),
        Some(_) => return Err("body is not a string".into()),
    };
    if !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

#[cfg(test)]
mod tests;
