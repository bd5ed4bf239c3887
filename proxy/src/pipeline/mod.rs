//! The request pipeline: one function, [`handle`], that runs the phases in order.
//!
//! ```text
//!  handle(shared, conn, ctx, req)
//!    route::apply      host + path -> stage, route, path parameters   (403/404 when none)
//!    auth::apply       JWT / TOKEN / REQUEST authorizer               (401/403/500)
//!    limits::read_body payload cap                                    (413)
//!    integrate::call   HTTP_PROXY | HTTP | MOCK | fail-closed         (500/502/504)
//!    respond::finish   x-amzn-RequestId, metrics, access log
//!  any GatewayError -> respond::gateway_response
//! ```
//!
//! Per-request state lives in one [`RequestCtx`]; service-wide state (backend client, access
//! log writer) in [`Shared`]; per-connection values in [`ConnInfo`].

pub mod auth;
pub mod ctx;
pub mod deadline;
pub mod error;
pub mod integrate;
pub mod limits;
pub mod respond;
pub mod route;

pub use ctx::{RequestCtx, RequestId};
pub use error::GatewayError;

use crate::access_log::AccessLog;
use crate::body::ProxyBody;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use std::net::SocketAddr;

/// Service-wide state shared by every request.
pub struct Shared {
    /// Access log writer.
    pub access_log: AccessLog,
    /// `X-Forwarded-Port` (the public listener's port).
    pub forwarded_port: HeaderValue,
}

/// Per-connection values, computed once per accepted connection.
#[derive(Debug)]
pub struct ConnInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// The client's IP as a header value (`X-Forwarded-For`).
    pub source_ip_header: HeaderValue,
    /// The integration timeout's timer, reused by the connection's requests.
    pub timer: deadline::ConnTimer,
}

impl ConnInfo {
    /// Values for a connection from `remote`.
    pub fn new(remote: SocketAddr) -> Self {
        ConnInfo {
            remote,
            source_ip_header: HeaderValue::from_str(&remote.ip().to_string())
                .expect("an IP address is a valid header value"),
            timer: deadline::ConnTimer::default(),
        }
    }
}

/// Runs one request through the pipeline. Never fails: errors become gateway responses.
pub async fn handle(
    shared: &Shared,
    conn: &ConnInfo,
    mut ctx: RequestCtx,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let resp = match run(shared, conn, &mut ctx, req).await {
        Ok(resp) => resp,
        Err(err) => respond::gateway_response(&mut ctx, err),
    };
    respond::finish(shared, ctx, resp)
}

async fn run(
    shared: &Shared,
    conn: &ConnInfo,
    ctx: &mut RequestCtx,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, GatewayError> {
    // Route first: the payload cap and the integration are per API / per route.
    route::apply(ctx)?;
    let max = ctx.api_config().map_or(u64::MAX, |a| a.max_payload_bytes);
    if let Some(integrate::CompiledIntegration::FailClosed(reason)) =
        ctx.stage_route().map(|r| &r.integration)
    {
        return Err(GatewayError::ApiConfigurationError(reason.to_string()));
    }
    // Authorizers run right after routing, before API keys, throttling, validation and the
    // integration (AWS's order), and before the body is read.
    auth::apply(ctx, req.headers()).await?;
    let (parts, body) = req.into_parts();
    // The cap runs before the integration so that a backend never sees an over-limit body.
    let body = limits::read_body(&parts.headers, body, max).await?;
    integrate::call(shared, conn, ctx, parts, body).await
}

#[cfg(test)]
mod tests;
