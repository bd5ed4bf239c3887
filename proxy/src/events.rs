//! The events Portico sends to functions, one function per format, each built from the
//! request's `$context` values ([`crate::context`]) and its head:
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
    self, Var, api_name, domain, epoch_ms, header_text, path_parameters, protocol, request_time,
    stage_relative_path, stage_variables, text,
};
use crate::pipeline::ctx::{RequestCtx, query_pairs};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::HeaderMap;
use http::header;
use serde_json::{Map, Value, json};

use crate::pipeline::auth::function::ACCOUNT;

fn header_str(v: &http::HeaderValue) -> String {
    header_text(v).into_owned()
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

/// The payload format 1.0 event (REST APIs, and HTTP APIs that ask for it).
pub fn proxy_v1(ctx: &RequestCtx, headers: &HeaderMap, body: &Bytes) -> Value {
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
        "httpMethod": text(ctx, Var::HttpMethod),
        "headers": if single.is_empty() { Value::Null } else { Value::Object(single) },
        "multiValueHeaders": if multi.is_empty() { Value::Null } else { Value::Object(multi) },
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": path_parameters(ctx),
        "stageVariables": stage_variables(ctx),
        "requestContext": {
            "resourceId": route.map(|r| r.id.as_str()),
            "resourcePath": resource,
            "httpMethod": text(ctx, Var::HttpMethod),
            "extendedRequestId": text(ctx, Var::RequestId),
            "requestTime": request_time(ctx),
            "path": ctx.path(),
            "protocol": protocol(ctx),
            "stage": text(ctx, Var::Stage),
            "domainPrefix": domain_prefix,
            "requestTimeEpoch": epoch_ms(ctx),
            "requestId": text(ctx, Var::RequestId),
            "identity": {
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
            },
            "domainName": domain_name,
            "apiId": api_name(ctx),
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
pub fn proxy_v2(ctx: &RequestCtx, headers: &HeaderMap, body: &Bytes) -> Value {
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
            "apiId": api_name(ctx),
            "domainName": domain_name,
            "domainPrefix": domain_prefix,
            "http": {
                "method": text(ctx, Var::HttpMethod),
                "path": ctx.path(),
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

/// The REQUEST authorizer event (`methodArn`, identity sources, request values).
pub fn authorizer_request(
    ctx: &RequestCtx,
    headers: &HeaderMap,
    values: &[String],
    arn: &str,
    query: Vec<(String, String)>,
) -> Value {
    let mut hdrs = Map::new();
    for (k, v) in headers {
        if let Ok(v) = v.to_str() {
            hdrs.insert(k.as_str().to_string(), Value::String(v.to_string()));
        }
    }
    let qs: Map<String, Value> = query
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let path_params = path_parameters(ctx).unwrap_or_default();
    let stage_vars = stage_variables(ctx).unwrap_or_default();
    let resource = ctx.route_config().map_or("", |r| r.resource_path.as_str());
    let stage = text(ctx, Var::Stage);
    let api = api_name(ctx);
    json!({
        "type": "REQUEST",
        "methodArn": arn,
        "routeArn": arn,
        "identitySource": values,
        "resource": resource,
        "path": ctx.path(),
        "httpMethod": text(ctx, Var::HttpMethod),
        "headers": hdrs,
        "queryStringParameters": qs,
        "pathParameters": path_params,
        "stageVariables": stage_vars,
        "requestContext": {
            "path": ctx.path(),
            "stage": stage,
            "requestId": text(ctx, Var::RequestId),
            "resourcePath": resource,
            "httpMethod": text(ctx, Var::HttpMethod),
            "apiId": api,
            "accountId": ACCOUNT,
            "identity": {
                "sourceIp": text(ctx, Var::SourceIp),
                "userAgent": context::user_agent(ctx),
            },
        },
    })
}

#[cfg(test)]
mod tests;
