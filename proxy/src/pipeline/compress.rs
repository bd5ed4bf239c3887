//! Compress phase: gzip response compression above the API's `minimumCompressionSize`.
//!
//! Runs on every response (integration or gateway response) before `respond::finish`. Only
//! acts when the client sent `Accept-Encoding: gzip` (checked once from the request head by
//! [`accepts_gzip`]) and the matched API sets a minimum: everything else returns at once,
//! so streamed pass-through is untouched. A response that is already encoded, has no body
//! (HEAD, 1xx, 204, 304) or is smaller than the minimum is sent as is. Bodies of unknown
//! length are buffered (at most [`RESPONSE_CAP`] bytes) to decide; larger declared bodies
//! are not compressed.
//!
//! Writes `Content-Encoding: gzip` and `Vary: Accept-Encoding`; short-circuits with
//! `IntegrationFailure` when the backend body fails while it is read.

use super::ctx::RequestCtx;
use super::error::GatewayError;
use super::transform::RESPONSE_CAP;
use crate::body::ProxyBody;
use flate2::Compression;
use flate2::write::GzEncoder;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body::Body as _;
use http_body_util::{BodyExt as _, Limited};
use std::io::Write as _;

/// True when `Accept-Encoding` lists `gzip` (or `*`) with a non-zero q.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            let zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !zero
        })
}

/// Compresses `resp` when the client accepts gzip and the API's minimum applies.
pub async fn apply(
    ctx: &RequestCtx,
    gzip: bool,
    resp: Response<ProxyBody>,
) -> Result<Response<ProxyBody>, GatewayError> {
    if !gzip {
        return Ok(resp);
    }
    let Some(min) = ctx.api_config().and_then(|a| a.minimum_compression_size) else {
        return Ok(resp);
    };
    let status = resp.status();
    if ctx.http_method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || resp.headers().contains_key(header::CONTENT_ENCODING)
    {
        return Ok(resp);
    }
    match resp.body().size_hint().exact() {
        Some(n) if n < min || n > RESPONSE_CAP as u64 => return Ok(resp),
        _ => {}
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = Limited::new(body, RESPONSE_CAP)
        .collect()
        .await
        .map_err(|e| GatewayError::IntegrationFailure(format!("reading response body: {e}")))?
        .to_bytes();
    if (bytes.len() as u64) < min {
        return Ok(Response::from_parts(parts, ProxyBody::full(bytes)));
    }
    let mut enc = GzEncoder::new(Vec::with_capacity(bytes.len() / 2), Compression::default());
    enc.write_all(&bytes)
        .map_err(|e| GatewayError::Default5xx(format!("gzip: {e}")))?;
    let gz = enc
        .finish()
        .map_err(|e| GatewayError::Default5xx(format!("gzip: {e}")))?;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    Ok(Response::from_parts(parts, ProxyBody::full(gz)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::ACCEPT_ENCODING, v.parse().unwrap());
        m
    }

    #[test]
    fn accept_encoding_is_parsed_with_q_values() {
        assert!(accepts_gzip(&h("gzip")));
        assert!(accepts_gzip(&h("deflate, GZIP;q=0.5, br")));
        assert!(accepts_gzip(&h("*")));
        assert!(!accepts_gzip(&h("gzip;q=0")));
        assert!(!accepts_gzip(&h("br, deflate")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
