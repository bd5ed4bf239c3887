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
//!    cache::call         the stage cache, on cached methods: a hit answers; a miss
//!                        calls the integration (one call per key at a time) and
//!                        stores a 2XX answer of at most 1 MiB as it streams       (403)
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
pub mod cache;
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

pub use ctx::{ConnInfo, Exchange, Flow, RequestCtx, RequestId, Shared};
pub use error::GatewayError;

use crate::body::{ClientBody, ProxyBody};
use crate::runtime::Runtime;
use arc_swap::ArcSwap;
use http::{Request, Response};
use std::sync::Arc;

/// The pipeline as a service: one per connection, called once per request. The server calls
/// it with each request hyper parses; tests call it with requests built in process
/// ([`ClientBody::given`]), no socket involved.
pub struct Gateway {
    /// Service-wide state.
    pub shared: Arc<Shared>,
    /// The current config; each request loads it once and finishes on that snapshot.
    pub state: Arc<ArcSwap<Runtime>>,
    /// The connection's values.
    pub conn: ConnInfo,
}

impl Gateway {
    /// Answers one request. Never fails: errors become gateway responses.
    pub async fn call(&self, req: Request<ClientBody>) -> Response<ProxyBody> {
        let mut ctx = RequestCtx::new(self.state.load_full(), self.conn.remote.ip(), &req);
        ctx.forwarded_port = self.shared.listen_port;
        if let Some(raw) = &self.conn.raw_head {
            ctx.raw_head = raw.lock().expect("head lock").take();
        }
        handle(&self.shared, &self.conn, ctx, req).await
    }
}

/// Runs one request through the pipeline: the request phases ([`run`]), then, on both
/// endings (the integration's response or a gateway response), the response phases.
pub async fn handle(
    shared: &Arc<Shared>,
    conn: &ConnInfo,
    mut ctx: RequestCtx,
    req: Request<ClientBody>,
) -> Response<ProxyBody> {
    // Read from the head before the request moves into the pipeline.
    let gzip = ctx.runtime.compression && compress::accepts_gzip(req.headers());
    // Kept for CORS: run consumes the request.
    let origin = req.headers().get(http::header::ORIGIN).cloned();
    let (head, body) = req.into_parts();
    let ex = Exchange {
        shared,
        conn,
        ctx: &mut ctx,
        head,
        body: ProxyBody::Incoming(body),
    };
    let resp = match run(ex).await {
        Ok(resp) => resp,
        Err(err) => respond::gateway_response(&mut ctx, err),
    };
    // Response phases.
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

/// The request phases in order, each entered once: a phase refuses (`Err`), answers
/// (`Flow::Answer`) or lets the next one run; the integration, last, gives the response.
async fn run(mut ex: Exchange<'_>) -> Result<Response<ProxyBody>, GatewayError> {
    macro_rules! phase {
        ($step:expr) => {
            if let Flow::Answer(resp) = $step? {
                return Ok(*resp);
            }
        };
    }
    // Host, and the client's hop-by-hop headers, before any phase reads or sets a header.
    phase!(ctx::entry(&mut ex));
    // Route first: the payload cap and the integration are per API / per route. A CORS
    // preflight may answer here.
    phase!(route::phase(&mut ex));
    // A WebSocket API: the handshake ($connect) or @connections, in its own module.
    if ex
        .ctx
        .api_config()
        .is_some_and(|a| a.protocol == portico_config::Protocol::WebSocket)
    {
        // Boxed: a handshake is rare, and inline its future would make every request's
        // (which hyper keeps per connection) half again as large.
        return Box::pin(crate::websocket::serve(ex)).await;
    }
    // The management listener serves @connections and nothing else.
    if ex.conn.management {
        return Err(GatewayError::no_route(
            ex.ctx.runtime.no_stage,
            "the management listener serves @connections only",
        ));
    }
    phase!(integrate::check_served(&mut ex));
    // Authorizers right after routing, before API keys, throttling, validation and the
    // integration (AWS's order); key, then limits (plans meter keys). All before the body is
    // read, so a refused request costs no body transfer.
    phase!(auth::phase(&mut ex).await);
    phase!(api_key::phase(&mut ex));
    phase!(throttle::meter(&mut ex).await);
    // Parameters and body against the route's validator, and the payload cap.
    phase!(limits::phase(&mut ex).await);
    // The stage's response cache, then one dispatch: pass-through (streamed both ways),
    // mapped, MOCK or Lambda.
    if cache::applies(&ex) {
        cache::call(ex).await
    } else {
        integrate::call(ex).await
    }
}

#[cfg(test)]
mod tests;
