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
    let max = ctx.api_config().map_or(u64::MAX, |a| a.max_payload_bytes);
    let body = crate::buffer::collect(body, None, max, &shared.buffers).await?;
    let event = match target.version {
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
