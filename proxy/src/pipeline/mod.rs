//! The request pipeline: one function, [`handle`], that runs the phases in order.
//!
//! ```text
//!  handle(shared, conn, ctx, req)
//!    ctx.bad_host      exactly one Host (HTTP/1.1)                    (400)
//!    hop_by_hop::strip the client's hop-by-hop headers, before any phase reads or sets one
//!    route::apply      host + path -> stage, route, path parameters   (403/404 when none)
//!    cors::preflight   OPTIONS + Origin + Access-Control-Request-Method on a resource
//!                      without an explicit OPTIONS method             (204)
//!    auth::apply       JWT / TOKEN / REQUEST authorizer               (401/403/500)
//!    api_key::apply    x-api-key (or usageIdentifierKey) -> key + plan (403 INVALID_API_KEY)
//!    throttle::meter   plan bucket, stage bucket, quota; key metrics   (429)
//!    limits::read_body payload cap                                    (413)
//!    validate::*       required parameters, body against its model   (400; body buffered
//!                      only for routes that validate it)
//!    integrate::call   the one dispatch on the route's integration:
//!      with mappings (HTTP, MOCK with a Transform):
//!        transform::request   params, request template, passthrough    (400/415/500)
//!        integrate::forward | MockResponse                             (502/504)
//!        transform::response  select, params, template, method response (500)
//!      HTTP_PROXY | HTTP | MOCK | fail-closed                          (500/502/504)
//!      lambda::call    AWS_PROXY: proxy event 1.0/2.0 -> invoke -> result (502 malformed)
//!    compress::apply   gzip above the API's minimumCompressionSize (Accept-Encoding: gzip)
//!    respond::finish   x-amzn-RequestId, metrics, access log
//!  any GatewayError -> respond::gateway_response
//!  every response of an API with CORS -> cors::decorate (Access-Control-Allow-Origin, ...)
//! ```
//!
//! Per-request state lives in one [`RequestCtx`]; service-wide state (backend client, access
//! log writer) in [`Shared`]; per-connection values in [`ConnInfo`]. All three are defined in
//! `ctx` (below the phases, which use them), not here (above them).

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

pub use ctx::{ConnInfo, RequestCtx, RequestId, Shared};
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
    mut req: Request<ClientBody>,
) -> Result<Response<ProxyBody>, GatewayError> {
    if let Some(why) = ctx.bad_host {
        return Err(GatewayError::BadRequest(why));
    }
    // The client's hop-by-hop headers (and those its `Connection` names) go before any phase
    // reads the headers or maps its own into them: `Connection: x-user-id` cannot remove the
    // caller id that a mapping sets later.
    crate::hop_by_hop::strip(req.headers_mut());
    // Route first: the payload cap and the integration are per API / per route.
    let routed = route::apply(ctx);
    // Preflight right after routing (before validation, authorization and the integration),
    // as AWS: on a resource without an explicit OPTIONS method, which routing reports as no
    // method for the verb, or as an ANY route.
    let resource_exists = match &routed {
        Ok(()) => true,
        Err(_) => ctx.stage.is_some() && routed_to_resource(&routed),
    };
    if let Some(resp) = cors::preflight(ctx, req.headers(), resource_exists) {
        return Ok(resp);
    }
    routed?;
    if let Some(integrate::CompiledIntegration::FailClosed(reason)) =
        ctx.stage_route().map(|r| &r.integration)
    {
        return Err(GatewayError::ApiConfigurationError(reason.to_string()));
    }
    // Authorizers run right after routing, before API keys, throttling, validation and the
    // integration (AWS's order), and before the body is read.
    auth::apply(ctx, req.headers()).await?;
    // Key, then limits: plans meter keys; both before the body is read, so a refused
    // request costs no body transfer.
    api_key::apply(ctx, req.headers())?;
    throttle::meter(shared, ctx).await?;
    let (parts, body) = req.into_parts();
    let runtime = ctx.runtime.clone();
    let max = ctx.api_config().map_or(u64::MAX, |a| a.max_payload_bytes);
    let validation = match (ctx.stage(), ctx.route) {
        (Some(s), Some(r)) => runtime.apis[s.api].validation[r].as_ref(),
        _ => None,
    };
    // Parameters before the body, as AWS: a request missing both gets BAD_REQUEST_PARAMETERS.
    if let Some(v) = validation {
        validate::check_parameters(ctx, &parts, v)?;
    }
    // The cap runs before the integration so that a backend never sees an over-limit body.
    // Only a route that validates its body buffers it; the others stream.
    let body = match validation {
        Some(v) if v.validates_body() => {
            let bytes = limits::read_full(&parts.headers, body, max, &shared.buffers).await?;
            validate::check_body(ctx, &parts.headers, &bytes, v)?;
            ProxyBody::full(bytes)
        }
        _ => limits::read_body(&parts.headers, body, max, &shared.buffers).await?,
    };
    // One dispatch: pass-through (streamed both ways), or with mappings around it.
    integrate::call(shared, conn, ctx, parts, body).await
}

/// True when routing found the resource but not the verb.
fn routed_to_resource(routed: &Result<(), GatewayError>) -> bool {
    matches!(
        routed,
        Err(GatewayError::MissingAuthenticationToken(why) | GatewayError::ResourceNotFound(why))
            if *why == route::NO_METHOD
    )
}

#[cfg(test)]
mod tests;
