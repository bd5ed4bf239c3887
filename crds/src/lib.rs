//! `portico-crds`: the Portico API (custom resources) and `compile` into `GatewayConfig`.
//!
//! ```text
//!  YAML / JSON text --parse_manifests--> Vec<Resource> --Snapshot::from_resources--> Snapshot
//!  (or kube reflectors in the operator)                                                  |
//!                                                                                    compile
//!                                                                                       v
//!                                            Compiled { config: GatewayConfig, diagnostics }
//! ```
//!
//! Entry points: [`api`] (the CRD types and [`all_crds_yaml`]), [`parse_manifests`],
//! [`Snapshot`], [`compile()`]. This crate depends on kube's derive/core only, never on a kube
//! client or runtime, so the standalone proxy can link it.

pub mod api;
pub mod compile;
pub mod conditions;
pub mod manifest;
pub mod reasons;
pub mod snapshot;

pub use api::{all_crds, all_crds_yaml};
pub use compile::{Compiled, compile};
pub use manifest::{ManifestError, Resource, parse_manifests};
pub use snapshot::{Secret, Service, ServicePort, Snapshot};
