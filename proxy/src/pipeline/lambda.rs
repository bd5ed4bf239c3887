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
use serde_json::Value;
use std::time::Instant;

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
    let api = ctx.api_config().expect("a route matched");
    let max = api.max_payload_bytes;
    let rules = ResultRules {
        version: target.version,
        rest: api.protocol == portico_config::Protocol::Rest,
        binary: accepts_binary(&parts.headers, &api.binary_media_types),
    };
    let body = crate::buffer::collect(body, None, max, &shared.buffers).await?;
    let event = match target.version {
        _ if ctx.websocket.is_some() => crate::events::websocket(ctx, &parts.headers, &body),
        PayloadFormatVersion::V1 => crate::events::proxy_v1(ctx, &parts.headers, &body),
        PayloadFormatVersion::V2 => crate::events::proxy_v2(ctx, &parts.headers, &body),
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
        return Err(rules.failure(format!(
            "function error {:?}: {}",
            kind,
            String::from_utf8_lossy(&result[..result.len().min(512)])
        )));
    }
    if !head.status.is_success() {
        return Err(rules.failure(format!("invoke endpoint answered {}", head.status)));
    }
    map_result(rules, &result).map_err(|why| rules.error(why))
}

/// Whether the client's first `Accept` media type is one of `binary_types` (AWS: "API Gateway
/// uses the first Accept header from clients to determine if a response should return binary
/// media", developer guide, "Return binary media from a Lambda proxy integration").
fn accepts_binary(headers: &HeaderMap, binary_types: &[String]) -> bool {
    let first = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|t| t.split(';').next().unwrap_or("").trim())
        .unwrap_or("");
    !first.is_empty() && portico_config::is_binary_media_type(binary_types, first)
}

/// How a function's result is read: the payload format, and what the API is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResultRules {
    /// Payload format 1.0 or 2.0.
    pub version: PayloadFormatVersion,
    /// A REST API (else an HTTP API).
    pub rest: bool,
    /// REST: whether an `isBase64Encoded` body is decoded, i.e. whether the client's first
    /// `Accept` type is one of the API's `binaryMediaTypes` (else the client gets the base64
    /// text). HTTP APIs always decode.
    pub binary: bool,
}

impl ResultRules {
    /// The error a failed function (or a refusing invoke endpoint) answers: REST
    /// INTEGRATION_FAILURE 502, HTTP APIs 500 `Internal Server Error`.
    pub fn failure(&self, why: String) -> GatewayError {
        if self.rest {
            GatewayError::FunctionFailure(why)
        } else {
            GatewayError::HttpApiFunctionError(why)
        }
    }

    /// The error a malformed result or a failed function answers: REST 502 `Internal server
    /// error`, HTTP APIs 500 `Internal Server Error`.
    pub fn error(&self, why: String) -> GatewayError {
        if self.rest {
            GatewayError::BadGateway(why)
        } else {
            GatewayError::HttpApiFunctionError(why)
        }
    }
}

/// Maps the function's result to the response; `Err` is why it is malformed. As AWS reads
/// results (sources: the developer guide, "Output format of a Lambda function for proxy
/// integration" and "Working with AWS Lambda proxy integrations for HTTP APIs"; and answers
/// recorded on AWS in LocalStack's `test_aws_proxy_response_payload_format_validation` tests
/// and in aws-lambda-dotnet's test tool suites):
///
/// - REST, 1.0: a JSON object of `statusCode`, `headers`, `multiValueHeaders`, `body`,
///   `isBase64Encoded`; another field, or an empty object, is malformed; no `statusCode` is
///   200. No `Content-Type`: `application/json`.
/// - HTTP APIs, 1.0: the same fields, others ignored; no `statusCode` is malformed. No
///   `Content-Type`: `text/plain; charset=utf-8`.
/// - HTTP APIs, 2.0: an object with `statusCode` is read as above (plus `cookies`); an
///   object with `errorMessage` (a function that threw) is an error; a JSON string is the
///   body (unquoted), unless it looks like an object and is not JSON; any other JSON value,
///   or a result that is not JSON, is a 200 `application/json` body as returned.
/// - `headers` and `multiValueHeaders` together: every value of both, a pair given in both
///   once.
pub fn map_result(rules: ResultRules, result: &[u8]) -> Result<Response<ProxyBody>, String> {
    let v2 = rules.version == PayloadFormatVersion::V2;
    let value: Value = match serde_json::from_slice(result) {
        Ok(v) => v,
        Err(_) if v2 => return Ok(inferred(Bytes::copy_from_slice(result))),
        Err(e) => return Err(format!("the function's result is not JSON: {e}")),
    };
    let obj = match value {
        Value::Object(o) if o.contains_key("statusCode") => o,
        Value::Object(o) if v2 && o.contains_key("errorMessage") => {
            return Err(format!("the function failed: {}", o["errorMessage"]));
        }
        Value::String(s) if v2 => {
            if s.trim_start().starts_with('{') && serde_json::from_str::<Value>(&s).is_err() {
                return Err(
                    "the result is a string that looks like an object but is not JSON".into(),
                );
            }
            return Ok(inferred(Bytes::from(s)));
        }
        _ if v2 => return Ok(inferred(Bytes::copy_from_slice(result))),
        Value::Object(o) if rules.rest && !o.is_empty() => o,
        Value::Object(_) => return Err("the result has no statusCode".into()),
        _ => return Err("the result is not a JSON object".into()),
    };
    // REST is strict about the fields (AWS answers 502 for others); HTTP APIs read what they
    // know and ignore the rest.
    if rules.rest {
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
    let status = match obj.get("statusCode") {
        None => StatusCode::OK,
        Some(code) => code
            .as_u64()
            .or_else(|| code.as_str().and_then(|s| s.parse().ok()))
            .and_then(|s| u16::try_from(s).ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .ok_or_else(|| format!("statusCode {code} is not a status code"))?,
    };
    let mut headers = HeaderMap::new();
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let pair = |k: &str, v: &Value| {
        let v = scalar(v).ok_or_else(|| format!("header {k:?} has a non-scalar value"))?;
        let name =
            HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("bad header name {k:?}"))?;
        let value = HeaderValue::from_str(&v).map_err(|_| format!("bad value for {k:?}"))?;
        Ok::<_, String>((name, value))
    };
    match obj.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let (name, value) = pair(k, v)?;
                headers.append(name, value);
            }
        }
        Some(_) => return Err("headers is not an object".into()),
    }
    let multi = if v2 {
        None
    } else {
        obj.get("multiValueHeaders")
    };
    match multi {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, vs) in m {
                let vs = vs
                    .as_array()
                    .ok_or_else(|| format!("multiValueHeaders {k:?} is not an array"))?;
                for v in vs {
                    let (name, value) = pair(k, v)?;
                    // A pair given in `headers` too appears once.
                    if !headers.get_all(&name).iter().any(|have| have == value) {
                        headers.append(name, value);
                    }
                }
            }
        }
        Some(_) => return Err("multiValueHeaders is not an object".into()),
    }
    let cookies = if v2 { obj.get("cookies") } else { None };
    match cookies {
        None | Some(Value::Null) => {}
        Some(Value::Array(cs)) => {
            for c in cs {
                let (name, value) = pair("set-cookie", c)?;
                headers.append(name, value);
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
    let decode = is_base64 && (!rules.rest || rules.binary);
    let body = match obj.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) if decode => BASE64
            .decode(s)
            .map(Bytes::from)
            .map_err(|e| format!("body is not valid base64: {e}"))?,
        Some(Value::String(s)) => Bytes::copy_from_slice(s.as_bytes()),
        Some(_) => return Err("body is not a string".into()),
    };
    if !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(if rules.rest {
                "application/json"
            } else {
                "text/plain; charset=utf-8"
            }),
        );
    }
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

/// A 2.0 result without `statusCode`: 200, `application/json`, the body as given.
fn inferred(body: Bytes) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests;
