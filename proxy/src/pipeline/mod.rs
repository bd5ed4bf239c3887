//! The request pipeline: one function, [`handle`], that runs the phases in order, each
//! entered once. A phase returns `Err(GatewayError)` to refuse (answered with the API's
//! gateway response), or, when it may answer by itself, a [`Flow`] (go on, or answer now).
//!
//! ```text
//!  handle(shared, conn, ctx, req)
//!    ctx::entry          exactly one Host (HTTP/1.1); the client's hop-by-hop
//!                        headers go, before any phase reads or sets one       (400)
//!    route::phase        host + path -> stage, route, path parameters          (403/404)
//!                        then a CORS preflight on a resource without an
//!                        explicit OPTIONS method: Flow::Answer                 (204)
//!    integrate::check_served  a route that cannot be served as configured      (500)
//!    auth::apply         JWT / TOKEN / REQUEST authorizer                      (401/403/500)
//!    api_key::apply      x-api-key (or usageIdentifierKey) -> key + plan       (403)
//!    throttle::meter     plan bucket, stage bucket, quota; key metrics         (429)
//!    limits::phase       required parameters, payload cap, body against its
//!                        model (buffered only for routes that validate it)     (400/413/408)
//!    integrate::call     the one dispatch on the route's integration:
//!      with mappings (HTTP, MOCK with a Transform): integrate::call_mapped
//!        transform::request   params, request template, passthrough           (400/415/500)
//!        integrate::forward | MockResponse                                    (502/504)
//!        transform::response  select, params, template, method response       (500)
//!      HTTP_PROXY | HTTP | MOCK                                               (502/504)
//!      lambda::call      AWS_PROXY: proxy event 1.0/2.0 -> invoke -> result    (502)
//!    compress::apply     gzip above the API's minimumCompressionSize
//!    respond::finish     x-amzn-RequestId, metrics, access log
//!  any GatewayError -> respond::gateway_response
//!  every response of an API with CORS -> cors::decorate (Access-Control-Allow-Origin, ...)
//! ```
//!
//! Per-request state lives in one [`RequestCtx`]; service-wide state (backend client, access
//! log writer) in [`Shared`]; per-connection values in [`ConnInfo`]. All three, and [`Flow`],
//! are defined in `ctx` (below the phases, which use them), not here (above them).

pub mod api_key;
pub mod auth;
pub mod compress;
pub mod cors;
pub mod ctx;
pub mod deadline;
pub mod error;
pub mod integrate;
pub mod lambda;
pub mod limits;
pub mod respond;
pub mod route;
pub mod throttle;
pub mod transform;
pub mod validate;

pub use ctx::{ConnInfo, Flow, RequestCtx, RequestId, Shared};
pub use error::GatewayError;

use crate::body::{ClientBody, ProxyBody};
use http::{Request, Response};

/// Runs one request through the pipeline. Never fails: errors become gateway responses.
pub async fn handle(
    shared: &Shared,
    conn: &ConnInfo,
    mut ctx: RequestCtx,
    req: Request<ClientBody>,
) -> Response<ProxyBody> {
    // Read from the head before the request moves into the pipeline.
    let gzip = ctx.runtime.compression && compress::accepts_gzip(req.headers());
    // Kept for CORS: run consumes the request.
    let origin = req.headers().get(http::header::ORIGIN).cloned();
    let resp = match run(shared, conn, &mut ctx, req).await {
        Ok(resp) => resp,
        Err(err) => respond::gateway_response(&mut ctx, err),
    };
    let mut resp = match compress::apply(&ctx, gzip, resp).await {
        Ok(resp) => resp,
        Err(err) => respond::gateway_response(&mut ctx, err),
    };
    cors::decorate(&ctx, origin.as_ref(), &mut resp);
    if let Some(h) = ctx.rate_limit {
        h.insert(resp.headers_mut());
    }
    respond::finish(shared, ctx, resp)
}

async fn run(
    shared: &Shared,
    conn: &ConnInfo,
    ctx: &mut RequestCtx,
    req: Request<ClientBody>,
) -> Result<Response<ProxyBody>, GatewayError> {
    let (mut parts, body) = req.into_parts();
    // Host, and the client's hop-by-hop headers, before any phase reads or sets a header.
    ctx::entry(ctx, &mut parts.headers)?;
    // Route first: the payload cap and the integration are per API / per route. A CORS
    // preflight may answer here.
    if let Flow::Answer(resp) = route::phase(ctx, &parts.headers)? {
        return Ok(*resp);
    }
    integrate::check_served(ctx)?;
    // Authorizers right after routing, before API keys, throttling, validation and the
    // integration (AWS's order); key, then limits (plans meter keys). All before the body is
    // read, so a refused request costs no body transfer.
    auth::apply(ctx, &parts.headers).await?;
    api_key::apply(ctx, &parts.headers)?;
    throttle::meter(shared, ctx).await?;
    // Parameters and body against the route's validator, and the payload cap.
    let body = limits::phase(shared, ctx, &parts, body).await?;
    // One dispatch: pass-through (streamed both ways), or with mappings around it.
    integrate::call(shared, conn, ctx, parts, body).await
}

#[cfg(test)]
mod tests;
