//! End-to-end tests: one binary, one module per area. Each test starts its own proxy (and
//! backends) on ephemeral 127.0.0.1 ports, so they run in parallel safely.
//!
//! The proxy binary is `PORTICO_PROXY_BIN` or `target/debug/portico-proxy` (built on demand,
//! see `portico_e2e::proxy_bin`).

mod auth;
mod cache;
mod canary;
mod cors;
mod example;
mod hardening;
mod integrations;
mod keepalive;
mod lambda;
mod lifecycle;
mod observability;
mod reload;
mod routing;
mod tls_front;
mod transform;
mod usage_plans;
mod usage_plans_redis;
mod validation;
mod websocket;
