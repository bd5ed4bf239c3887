//! The admin HTTP server (`--metrics-listen`, default `0.0.0.0:8080`): `/metrics`
//! (Prometheus text), `/healthz` (the process runs) and `/readyz` (every watch has listed once).
//! Not exposed by any public Service.
//!
//! Entry point: [`serve`].

use crate::context::State;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Registry, TextEncoder};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Answers one admin request.
pub fn respond(path: &str, state: &State, registry: &Registry) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match path {
        "/metrics" => {
            let mut buf = Vec::new();
            let encoder = TextEncoder::new();
            match encoder.encode(&registry.gather(), &mut buf) {
                Ok(()) => (StatusCode::OK, encoder.format_type().to_string(), buf),
                Err(e) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain".into(),
                    e.to_string().into_bytes(),
                ),
            }
        }
        "/healthz" => (StatusCode::OK, "text/plain".into(), b"ok\n".to_vec()),
        "/readyz" if state.is_ready() => (StatusCode::OK, "text/plain".into(), b"ready\n".to_vec()),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain".into(),
            b"watches not synced yet\n".to_vec(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain".into(),
            b"not found\n".to_vec(),
        ),
    };
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid")
}

/// Binds `addr` and serves until the task is dropped.
pub async fn serve(addr: SocketAddr, state: Arc<State>, registry: Registry) -> crate::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "admin server listening");
    loop {
        let (stream, _) = listener.accept().await?;
        let state = state.clone();
        let registry = registry.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let resp = respond(req.uri().path(), &state, &registry);
                async move { Ok::<_, Infallible>(resp) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(error = %e, "admin connection ended");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_follows_the_state_and_metrics_are_exposed() {
        let registry = Registry::new();
        let metrics = crate::metrics::Metrics::default()
            .register(&registry)
            .unwrap();
        metrics.publishes.inc();
        let state = State::default();
        assert_eq!(
            respond("/healthz", &state, &registry).status(),
            StatusCode::OK
        );
        assert_eq!(
            respond("/readyz", &state, &registry).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.set_ready();
        assert_eq!(
            respond("/readyz", &state, &registry).status(),
            StatusCode::OK
        );
        let m = respond("/metrics", &state, &registry);
        assert_eq!(m.status(), StatusCode::OK);
        assert_eq!(
            respond("/nope", &state, &registry).status(),
            StatusCode::NOT_FOUND
        );
    }
}
