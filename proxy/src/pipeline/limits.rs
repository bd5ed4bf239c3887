//! Limits phase: the API's payload cap (`maxPayloadBytes`).
//!
//! Runs after routing (the cap is per API) and before the integration. Reads the request's
//! `Content-Length` and body; short-circuits with `RequestTooLarge` (413). The backend never
//! sees an over-limit body: a declared length over the cap is refused before a byte is read;
//! a body without a length (chunked) is buffered up to the cap first, and only then forwarded.
//! Buffering goes through [`crate::buffer::collect`]: one buffer at about the body's size,
//! charged to the process-wide budget (503 past it). A body sent too slowly fails with 408
//! ([`crate::body::BodyTimeouts`]). (The request head limit, 431, is enforced by hyper:
//! `--max-header-bytes`.)

use super::ctx::{Exchange, Flow};
use super::error::GatewayError;
use crate::body::ClientBody;
use crate::body::ProxyBody;
use crate::buffer::{self, BufferBudget};
use http::HeaderMap;
use http_body::Body as _;
use std::sync::Arc;

/// What to do with a request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadPlan {
    /// No body.
    Empty,
    /// A declared length within the cap: stream it (hyper enforces the length).
    Stream,
    /// No declared length: buffer up to the cap, then forward.
    Buffer,
}

/// Decides from the head alone; `Err` is the 413 answered without reading the body.
pub fn plan(
    content_length: Option<u64>,
    end_stream: bool,
    max: u64,
) -> Result<PayloadPlan, GatewayError> {
    match content_length {
        Some(n) if n > max => Err(GatewayError::RequestTooLarge { limit: max }),
        Some(0) => Ok(PayloadPlan::Empty),
        Some(_) => Ok(PayloadPlan::Stream),
        None if end_stream => Ok(PayloadPlan::Empty),
        None => Ok(PayloadPlan::Buffer),
    }
}

/// The declared `Content-Length`, if any and valid.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// The declared length of a body that has one: an empty body (hyper knows from the head)
/// needs no header lookup.
fn declared_length(headers: &HeaderMap, body: &ClientBody) -> Option<u64> {
    if body.is_end_stream() {
        None
    } else {
        content_length(headers)
    }
}

/// The body phase: the route's validator on the parameters (before the body, as AWS: a
/// request missing both gets BAD_REQUEST_PARAMETERS), then the cap, which runs before the
/// integration so that a backend never sees an over-limit body; only a route that validates
/// its body buffers it (and checks it), the others stream.
pub async fn phase(ex: &mut Exchange<'_>) -> Result<Flow, GatewayError> {
    // The client's body, read once, here.
    let ProxyBody::Incoming(body) = std::mem::replace(&mut ex.body, ProxyBody::Empty) else {
        unreachable!("no phase before limits reads the body")
    };
    let ctx = &mut *ex.ctx;
    let max = ctx.api_config().map_or(u64::MAX, |a| a.max_payload_bytes);
    let validation = ctx.stage_route().and_then(|r| r.validation.clone());
    if let Some(v) = &validation {
        super::validate::check_parameters(ctx, &ex.head, v)?;
    }
    let headers = &ex.head.headers;
    let budget = &ex.shared.buffers;
    ex.body = match validation {
        Some(v) if v.validates_body() => {
            let bytes = read_full(headers, body, max, budget).await?;
            super::validate::check_body(ctx, headers, &bytes, &v)?;
            ProxyBody::full(bytes)
        }
        _ => read_body(headers, body, max, budget).await?,
    };
    Ok(Flow::Continue)
}

/// Applies the cap to `body` and returns what to forward.
pub async fn read_body(
    headers: &HeaderMap,
    body: ClientBody,
    max: u64,
    budget: &Arc<BufferBudget>,
) -> Result<ProxyBody, GatewayError> {
    match plan(declared_length(headers, &body), body.is_end_stream(), max)? {
        PayloadPlan::Empty => Ok(ProxyBody::Empty),
        PayloadPlan::Stream => Ok(ProxyBody::Incoming(body)),
        PayloadPlan::Buffer => Ok(ProxyBody::full(
            buffer::collect(body, None, max, budget).await?,
        )),
    }
}

/// Reads the whole body (bounded by the cap), for phases that must look at it (validation).
pub async fn read_full(
    headers: &HeaderMap,
    body: ClientBody,
    max: u64,
    budget: &Arc<BufferBudget>,
) -> Result<bytes::Bytes, GatewayError> {
    let declared = declared_length(headers, &body);
    if plan(declared, body.is_end_stream(), max)? == PayloadPlan::Empty {
        return Ok(bytes::Bytes::new());
    }
    Ok(buffer::collect(body, declared, max, budget).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_cap_decisions() {
        assert!(matches!(
            plan(Some(11), false, 10),
            Err(GatewayError::RequestTooLarge { limit: 10 })
        ));
        assert_eq!(plan(Some(10), false, 10).unwrap(), PayloadPlan::Stream);
        assert_eq!(plan(Some(0), true, 10).unwrap(), PayloadPlan::Empty);
        assert_eq!(plan(None, true, 10).unwrap(), PayloadPlan::Empty);
        assert_eq!(plan(None, false, 10).unwrap(), PayloadPlan::Buffer);
    }

    #[test]
    fn content_length_parses_only_valid_values() {
        let mut h = HeaderMap::new();
        assert_eq!(content_length(&h), None);
        h.insert(http::header::CONTENT_LENGTH, "42".parse().unwrap());
        assert_eq!(content_length(&h), Some(42));
        h.insert(http::header::CONTENT_LENGTH, "x".parse().unwrap());
        assert_eq!(content_length(&h), None);
    }
}
