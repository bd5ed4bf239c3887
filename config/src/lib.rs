//! `portico-config`: the compiled `GatewayConfig` document.
//!
//! This crate is the contract between the compiler (`portico-crds::compile`) and the data
//! plane (`portico-proxy`). It holds plain serde data and the pure helpers both sides need;
//! it never depends on Kubernetes types, so the proxy links no kube code in `--config` mode.
//!
//! ```text
//!  manifests --compile--> GatewayConfig { apis[], stages[] } --serde--> proxy Runtime
//!                              |                 |
//!                              |                 +-- Stage: base path / hosts -> one Api
//!                              +-- Api: routes[] (resource tree flattened), gateway responses
//! ```
//!
//! Entry points: [`GatewayConfig`] (the document), [`GatewayConfig::validate`] (its
//! invariants), [`Diagnostic`] (what compile reports), [`gateway_response`] (AWS response
//! types and their defaults), [`path`] (path templates), [`model`] (request-model validators).

pub mod backend_uri;
pub mod diagnostic;
pub mod distribution;
pub mod document;
pub mod gateway_response;
pub mod model;
pub mod path;
pub mod transform;

pub use backend_uri::{BackendUri, UriPiece, resolve_stage_variables};
pub use diagnostic::{Diagnostic, ObjectRef, Severity};
pub use document::*;
pub use gateway_response::{GatewayResponseOverride, GatewayResponseType};
pub use path::{PathTemplate, PathTemplateError, Segment};
pub use transform::{
    ContentHandling, IntegrationResponse, MappingSource, MappingTarget, MethodResponse,
    Passthrough, Transform, is_binary_media_type,
};

/// Errors raised while checking or decoding a [`GatewayConfig`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The document breaks one of its invariants (see [`GatewayConfig::validate`]).
    #[error("invalid GatewayConfig: {0}")]
    Invalid(String),
    /// The document is not valid JSON for this schema.
    #[error("cannot decode GatewayConfig: {0}")]
    Decode(#[from] serde_json::Error),
    /// The document was written for another schema version.
    #[error("GatewayConfig schemaVersion {found} is not supported (this build reads {expected})")]
    SchemaVersion {
        /// Version found in the document.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
