//! `portico-proxy`: the data plane. Serves a `GatewayConfig` (from a file, from the ConfigMap
//! the operator publishes, read through the Kubernetes API, or compiled from a directory of
//! manifests with feature `standalone`), swapping new versions in atomically.
//!
//! ```text
//!  cli ─> server::run ─┬─ source (load, watch) ──> ArcSwap<Runtime> (runtime: derived tables)
//!                      ├─ admin (/metrics /healthz /readyz)            │ load_full per request
//!                      └─ accept loop ─> pipeline::handle(ctx, req) <──┘
//!                                          route -> api_key -> throttle -> limits
//!                                          -> [transform] -> integrate -> [transform] -> respond
//!                                          └─> metrics, access_log (writer thread -> stdout)
//! ```
//!
//! Entry points: [`run`] (serve), [`vtl::main`] (`portico-proxy vtl`).

pub mod access_log;
pub mod admin;
pub mod body;
pub mod buffer;
pub mod cache;
pub mod cli;
pub mod client_io;
pub mod context;
pub mod drain;
pub mod events;
pub mod hop_by_hop;
pub mod metrics;
pub mod pipeline;
pub mod pool;
pub mod runtime;
pub mod server;
pub mod shared_state;
pub mod sigv4;
pub mod source;
pub mod telemetry;
pub mod template;
pub mod tls;
pub mod usage_plan;
pub mod vtl;
pub mod websocket;

pub use server::run;

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The initial config could not be loaded.
    #[error("config: {0}")]
    Config(#[from] source::LoadError),
    /// A listener could not be bound.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The ready file could not be written.
    #[error("cannot write ready file {path}: {source}")]
    ReadyFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `--ca-file` could not be read or parsed.
    #[error("--ca-file {path}: {message}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Other I/O (runtime, signals).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
