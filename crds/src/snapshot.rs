//! [`Snapshot`]: everything `compile` reads, as plain values (no client, no clock).
//!
//! The operator fills it from its reflectors; the standalone proxy from
//! [`crate::parse_manifests`] and [`Snapshot::from_resources`].

use crate::api::{ApiKey, Authorizer, RestApi, Stage, UsagePlan};
use crate::manifest::Resource;
use std::collections::BTreeMap;
use std::fmt;

/// The input of [`crate::compile()`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// RestApi objects.
    pub rest_apis: Vec<RestApi>,
    /// Stage objects.
    pub stages: Vec<Stage>,
    /// UsagePlan objects.
    pub usage_plans: Vec<UsagePlan>,
    /// ApiKey objects.
    pub api_keys: Vec<ApiKey>,
    /// Authorizer objects.
    pub authorizers: Vec<Authorizer>,
    /// Secrets referenced by the objects above.
    pub secrets: Vec<Secret>,
    /// Services referenced by the objects above.
    pub services: Vec<Service>,
}

impl Snapshot {
    /// Sorts decoded manifests into a snapshot (input order is kept; `compile` sorts).
    pub fn from_resources(resources: Vec<Resource>) -> Self {
        let mut s = Snapshot::default();
        for r in resources {
            match r {
                Resource::RestApi(o) => s.rest_apis.push(o),
                Resource::Stage(o) => s.stages.push(o),
                Resource::UsagePlan(o) => s.usage_plans.push(o),
                Resource::ApiKey(o) => s.api_keys.push(o),
                Resource::Authorizer(o) => s.authorizers.push(o),
                Resource::Secret {
                    namespace,
                    name,
                    data,
                } => s.secrets.push(Secret {
                    namespace,
                    name,
                    data,
                }),
                Resource::Service {
                    namespace,
                    name,
                    ports,
                    annotations,
                } => s.services.push(Service {
                    namespace,
                    name,
                    ports,
                    annotations,
                }),
            }
        }
        s
    }
}

/// A Secret's decoded data. `Debug` prints the keys, never the values.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Values by key (`data` base64-decoded, then `stringData` on top).
    pub data: BTreeMap<String, Vec<u8>>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secret")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A Service: what compile needs to resolve backend references.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Declared ports.
    pub ports: Vec<ServicePort>,
    /// Annotations (`portico.dev/allow-references-from` opts in to cross-namespace refs).
    pub annotations: BTreeMap<String, String>,
}

/// One port of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// Port name, if any.
    pub name: Option<String>,
    /// Port number.
    pub port: i32,
}
