//! Logging: `tracing-subscriber` with an `EnvFilter` (`RUST_LOG`, default `info`), as text or
//! JSON lines. Entry point: [`init`], which returns a handle to change the filter at run time.

use tracing_subscriber::{
    EnvFilter, Registry, layer::SubscriberExt, reload, util::SubscriberInitExt,
};

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Changes the log filter after [`init`].
pub type ReloadHandle = reload::Handle<EnvFilter, Registry>;

/// Installs the global subscriber. Safe to call once per process.
pub fn init(format: LogFormat) -> ReloadHandle {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json())
            .try_init(),
        LogFormat::Text => registry.with(tracing_subscriber::fmt::layer()).try_init(),
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "a tracing subscriber was already installed");
    }
    handle
}
