//! `portico-operator`: the kube I/O around `portico_crds::compile`.
//!
//! ```text
//!  reflectors (RestApi, Stage, UsagePlan, ApiKey, Authorizer, Secret, Service)
//!        │  any change, debounced                                  [controller]
//!        v
//!  snapshot::Stores::snapshot ──> api_key::ensure_secrets ──> compile   [snapshot, api_key]
//!        │                                     (leader only from here on: [leader])
//!        v
//!  publish::publish (ConfigMap, SSA, gzip when large, shards + index past
//!                   --config-shard-bytes, skipped when unchanged)              [publish]
//!    └─ first the credentials Secret: the secret values the config references    [credentials]
//!        v
//!  status::write_statuses (Accepted / Ready, patched only on change) ──> events on transitions
//!                                                                    [status, events]
//! ```
//!
//! Entry point: [`controller::run`]. `main.rs` only parses flags. [`context`] holds what a
//! pass runs with and what the admin server reports, so that no module imports the
//! controller back. [`admin`] serves `/metrics`, `/healthz` and `/readyz`; [`telemetry`] sets
//! up logging.

pub mod admin;
pub mod api_key;
pub mod context;
pub mod controller;
pub mod credentials;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod publish;
pub mod snapshot;
pub mod status;
pub mod telemetry;

#[cfg(test)]
pub mod fixtures;

/// Everything that can go wrong in the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed.
    #[error("Kubernetes API error: {0}")]
    Kube(#[from] kube::Error),
    /// A value could not be serialized (a bug: our types are plain data).
    #[error("serialization error: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The compiled config does not fit in one ConfigMap even gzipped; nothing was published.
    #[error(
        "the compiled GatewayConfig is {gzipped_bytes} bytes gzipped ({json_bytes} bytes of JSON), over the {limit} byte ConfigMap limit; it was not published and the previous ConfigMap keeps serving"
    )]
    ConfigTooLarge {
        /// Size of the JSON document.
        json_bytes: usize,
        /// Size after gzip.
        gzipped_bytes: usize,
        /// The most a ConfigMap may hold.
        limit: usize,
    },
    /// The Portico CustomResourceDefinitions are not installed in the cluster.
    #[error(
        "the CustomResourceDefinition {0} is not installed; install the CRDs first: kubectl apply -f charts/portico/crds/"
    )]
    CrdMissing(String),
    /// The leader election Lease could not be read or written.
    #[error("leader election: {0}")]
    Leader(String),
    /// Local I/O (binding the admin port, ...).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// A short, stable label for the `error` label of the error metrics.
    pub fn metric_label(&self) -> String {
        match self {
            Error::Kube(_) => "kube",
            Error::Serialize(_) => "serialize",
            Error::ConfigTooLarge { .. } => "config_too_large",
            Error::CrdMissing(_) => "crd_missing",
            Error::Leader(_) => "leader",
            Error::Io(_) => "io",
        }
        .to_string()
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The field manager (server-side apply) and event reporter name.
pub const MANAGER: &str = "portico-operator";
