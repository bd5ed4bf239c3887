//! The reflector stores and the [`Snapshot`] built from them.
//!
//! ```text
//!  one reflector per (kind, watched namespace) ──> Stores { rest_apis: [Store], ... }
//!                                                         │ snapshot()
//!                                                         v
//!                          portico_crds::Snapshot (Secrets as plain bytes, Services as ports)
//! ```
//!
//! A namespace list needs one watch per namespace, and a reflector store holds exactly one
//! watch (its re-list replaces the store's content), hence a `Vec<Store>` per kind.

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::runtime::reflector::Store;
use portico_crds::api::{ApiKey, Authorizer, RestApi, Stage, UsagePlan};
use portico_crds::{ServicePort, Snapshot};

/// The reflector stores of every watched kind.
#[derive(Clone, Default)]
pub struct Stores {
    /// RestApi stores.
    pub rest_apis: Vec<Store<RestApi>>,
    /// Stage stores.
    pub stages: Vec<Store<Stage>>,
    /// UsagePlan stores.
    pub usage_plans: Vec<Store<UsagePlan>>,
    /// ApiKey stores.
    pub api_keys: Vec<Store<ApiKey>>,
    /// Authorizer stores.
    pub authorizers: Vec<Store<Authorizer>>,
    /// Secret stores.
    pub secrets: Vec<Store<Secret>>,
    /// Service stores.
    pub services: Vec<Store<Service>>,
}

fn all<K: Clone + kube::Resource<DynamicType = ()> + 'static>(stores: &[Store<K>]) -> Vec<K> {
    stores
        .iter()
        .flat_map(|s| s.state())
        .map(|o| (*o).clone())
        .collect()
}

impl Stores {
    /// Waits until every store has seen its first full list.
    pub async fn wait_until_ready(
        &self,
    ) -> Result<(), kube::runtime::reflector::store::WriterDropped> {
        for s in &self.rest_apis {
            s.wait_until_ready().await?;
        }
        for s in &self.stages {
            s.wait_until_ready().await?;
        }
        for s in &self.usage_plans {
            s.wait_until_ready().await?;
        }
        for s in &self.api_keys {
            s.wait_until_ready().await?;
        }
        for s in &self.authorizers {
            s.wait_until_ready().await?;
        }
        for s in &self.secrets {
            s.wait_until_ready().await?;
        }
        for s in &self.services {
            s.wait_until_ready().await?;
        }
        Ok(())
    }

    /// Everything `compile` reads, as of now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            rest_apis: all(&self.rest_apis),
            stages: all(&self.stages),
            usage_plans: all(&self.usage_plans),
            api_keys: all(&self.api_keys),
            authorizers: all(&self.authorizers),
            secrets: all(&self.secrets).iter().map(secret).collect(),
            services: all(&self.services).iter().map(service).collect(),
        }
    }
}

/// A Secret as `compile` sees it: decoded bytes (compile hashes them; they are never logged).
pub fn secret(s: &Secret) -> portico_crds::Secret {
    portico_crds::Secret {
        namespace: s.metadata.namespace.clone().unwrap_or_default(),
        name: s.metadata.name.clone().unwrap_or_default(),
        data: crate::api_key::secret_data(s),
    }
}

/// A Service as `compile` sees it: its ports.
pub fn service(s: &Service) -> portico_crds::Service {
    portico_crds::Service {
        namespace: s.metadata.namespace.clone().unwrap_or_default(),
        name: s.metadata.name.clone().unwrap_or_default(),
        annotations: s.metadata.annotations.clone().unwrap_or_default(),
        ports: s
            .spec
            .as_ref()
            .and_then(|spec| spec.ports.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|p| ServicePort {
                name: p.name,
                port: p.port,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::TestObject;
    use kube::runtime::{reflector, watcher};

    #[test]
    fn the_snapshot_holds_every_store_and_keeps_creation_timestamps() {
        let (reader, mut writer) = reflector::store::<Stage>();
        let mut stage = Stage::test();
        stage.metadata.creation_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2024-01-01T00:00:00Z".parse().unwrap(),
            ));
        writer.apply_watcher_event(&watcher::Event::Apply(stage.clone()));
        let (sreader, mut swriter) = reflector::store::<Secret>();
        let mut sec = Secret::default();
        sec.metadata.name = Some("k".into());
        sec.metadata.namespace = Some("team-a".into());
        sec.data = Some([("value".to_string(), k8s_openapi::ByteString(b"v".to_vec()))].into());
        swriter.apply_watcher_event(&watcher::Event::Apply(sec));
        let stores = Stores {
            stages: vec![reader],
            secrets: vec![sreader],
            ..Default::default()
        };
        let snap = stores.snapshot();
        assert_eq!(snap.stages, vec![stage]);
        assert!(snap.stages[0].metadata.creation_timestamp.is_some());
        assert_eq!(snap.secrets[0].data["value"], b"v".to_vec());
    }
}
