//! The `@connections` management API of a WebSocket stage (AWS's
//! `apigatewaymanagementapi`): `POST` sends a message to a connection, `GET` describes it,
//! `DELETE` closes it. Calls are signed with AWS Signature Version 4 (`crate::sigv4`) by
//! an access key the API lists (`websocket.managementCredentials`), whose secret key comes
//! from a Secret, never from the config.
//!
//! ```text
//!  <stage base>/@connections/{id}
//!    signature (SigV4, service execute-api)  ── none / bad ──> 403 ForbiddenException /
//!                                                             InvalidSignatureException
//!    POST body <= maxMessageBytes ── larger ──> 413 PayloadTooLargeException
//!    registry: the connection on this stage ── none ──> 410 GoneException
//!    POST -> 200 (queued) | GET -> 200 {connectedAt, identity, lastActiveAt} | DELETE -> 204
//! ```
//!
//! Errors carry `x-amzn-ErrorType` and a `{"message": ...}` body, which is how boto3 reads
//! them (`ClientError` with that code).

use super::{Command, Gone};
use crate::body::ProxyBody;
use crate::pipeline::GatewayError;
use crate::pipeline::ctx::Exchange;
use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use portico_config::WebSocketApi;
use std::time::{SystemTime, UNIX_EPOCH};

/// An answer with AWS's error shape.
fn error(status: StatusCode, kind: &'static str, message: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(
        serde_json::json!({ "message": message }).to_string(),
    ));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert("x-amzn-errortype", HeaderValue::from_static(kind));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// ISO 8601 with milliseconds, as AWS's timestamps (`2026-12-05T02:30:00.000Z`).
fn iso8601(epoch_ms: u64) -> String {
    let secs = i64::try_from(epoch_ms / 1000).unwrap_or(0);
    let rem = secs.rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        crate::usage_plan::utc_date(secs),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        epoch_ms % 1000
    )
}

/// Serves one `@connections/{id}` call on the stage the request was routed to.
pub async fn handle(
    ex: Exchange<'_>,
    id: &str,
    settings: &WebSocketApi,
) -> Result<Response<ProxyBody>, GatewayError> {
    let id = percent_encoding::percent_decode_str(id)
        .decode_utf8_lossy()
        .into_owned();
    let runtime = ex.ctx.runtime.clone();
    let h = ex.ctx.handle.expect("routed to a stage");
    let stage_id = runtime.config.stages[h.stage as usize].id.clone();
    let max = settings.max_message_bytes;
    let body = match crate::buffer::collect(
        ex.body,
        crate::pipeline::limits::content_length(&ex.head.headers),
        max,
        &ex.shared.buffers,
    )
    .await
    {
        Ok(b) => b,
        Err(crate::buffer::CollectError::TooLarge(_)) => {
            return Ok(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PayloadTooLargeException",
                &format!("the message is larger than {max} bytes"),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    // The signature: an access key the API lists, its secret from the Secret it names.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let signed = crate::sigv4::SignedRequest {
        method: ex.head.method.as_str(),
        raw_path: ex.head.uri.path(),
        raw_query: ex.head.uri.query(),
        headers: &ex.head.headers,
        body: &body,
    };
    let secret_for = |akid: &str| {
        let c = settings
            .management_credentials
            .iter()
            .find(|c| c.access_key_id == akid)?;
        runtime.secrets.get(&c.secret).cloned()
    };
    if let Err(e) = crate::sigv4::verify(&signed, now, secret_for) {
        use crate::sigv4::SigV4Error;
        return Ok(match e {
            SigV4Error::Mismatch => error(
                StatusCode::FORBIDDEN,
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided.",
            ),
            SigV4Error::Expired => error(
                StatusCode::FORBIDDEN,
                "InvalidSignatureException",
                "Signature expired: the request's date is more than 15 minutes away from the gateway's time.",
            ),
            other => error(
                StatusCode::FORBIDDEN,
                "ForbiddenException",
                &format!("Forbidden: {other}"),
            ),
        });
    }
    let hub = &ex.shared.websockets;
    let gone = || {
        error(
            StatusCode::GONE,
            "GoneException",
            &format!("no connection {id} on this stage"),
        )
    };
    match ex.head.method {
        Method::POST => {
            match hub
                .registry
                .send(&stage_id, &id, Command::Send(Bytes::from(body.to_vec())))
            {
                Ok(()) => {
                    let labels = super::labels(&runtime, h);
                    hub.metrics.messages.with_label_values(&labels).inc();
                    Ok(Response::new(ProxyBody::Empty))
                }
                Err(Gone::Unknown) => Ok(gone()),
                Err(Gone::Full) => Ok(error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "LimitExceededException",
                    "the connection is not reading its messages",
                )),
            }
        }
        Method::GET => {
            let Some(c) = hub.registry.get(&stage_id, &id) else {
                return Ok(gone());
            };
            let last = u64::try_from(c.last_active.load(std::sync::atomic::Ordering::Relaxed))
                .unwrap_or(0);
            // AWS's GetConnection output, as botocore's model names its members on the wire.
            let mut identity = serde_json::json!({ "sourceIp": c.source_ip.to_string() });
            if let Some(ua) = &c.user_agent {
                identity["userAgent"] = serde_json::json!(ua);
            }
            let body = serde_json::json!({
                "connectedAt": iso8601(super::epoch_ms(c.connected_at)),
                "identity": identity,
                "lastActiveAt": iso8601(last),
            });
            let mut resp = Response::new(ProxyBody::full(body.to_string()));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(resp)
        }
        Method::DELETE => match hub.registry.send(&stage_id, &id, Command::Close) {
            Ok(()) => {
                let mut resp = Response::new(ProxyBody::Empty);
                *resp.status_mut() = StatusCode::NO_CONTENT;
                Ok(resp)
            }
            Err(Gone::Unknown) => Ok(gone()),
            Err(Gone::Full) => Ok(error(
                StatusCode::TOO_MANY_REQUESTS,
                "LimitExceededException",
                "the connection is not reading its messages",
            )),
        },
        _ => Ok(error(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadRequestException",
            "use POST, GET or DELETE",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso_8601_with_milliseconds() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_796_437_800_123), "2026-12-05T02:30:00.123Z");
    }
}
