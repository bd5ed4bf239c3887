//! The credentials Secret: the secret values the published config references (WebSocket
//! APIs' `@connections` credentials), published next to the ConfigMap so that proxies on
//! Kubernetes can verify signatures without any secret value in the ConfigMap.
//!
//! ```text
//!  config.apis[*].websocket.managementCredentials[*].secret   SecretKeyRef{namespace,name,key}
//!        │ value from the snapshot's Secrets (compile checked it is there)
//!        v
//!  Secret "<configmap name>-credentials" (the ConfigMap's namespace)
//!    data[data_key(ref)] = the key's bytes                 one entry per referenced key
//!    annotation portico.dev/credentials-version = version(data)
//!  ConfigMap annotation portico.dev/credentials-version = the same version
//! ```
//!
//! Data keys ([`data_key`]): `<namespace>.<name>.<key>`, each part escaped so that only
//! `[-a-zA-Z0-9]` stays as is and every other byte becomes `_XX` (upper-case hex: `.` is
//! `_2E`, `_` is `_5F`); the parts are joined with `.`, so the mapping is one-to-one. A result
//! longer than 253 characters (the API server's limit for a data key) is
//! `sha256.<hex of SHA-256 of namespace NUL name NUL key NUL>` instead (one `.` only: it cannot
//! collide with an escaped key, which has two). `proxy/src/source/kube/credentials.rs` has the
//! same function.
//!
//! Lifecycle: written only when some API names a credential (no WebSocket credentials, no
//! Secret); once written it stays, and is emptied (not deleted) when the last credential
//! goes away. Entry points: [`collect`], [`version`], [`secret`].

use crate::MANAGER;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use portico_config::{GatewayConfig, SecretKeyRef};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Suffix of the credentials Secret's name (after the ConfigMap's name).
pub const SECRET_SUFFIX: &str = "-credentials";
/// Annotation (on the ConfigMap and on the Secret) holding [`version`] of the Secret's data.
pub const VERSION_ANNOTATION: &str = "portico.dev/credentials-version";
/// The longest data key the API server accepts.
pub const MAX_KEY_LEN: usize = portico_config::MAX_SECRET_DATA_KEY_LEN;

/// The credentials Secret's name for ConfigMap `config_map_name`.
pub fn secret_name(config_map_name: &str) -> String {
    format!("{config_map_name}{SECRET_SUFFIX}")
}

/// The data key holding the value of `r` (see the module docs; one definition, in
/// `portico_config`, shared with the proxies that read it).
pub fn data_key(r: &SecretKeyRef) -> String {
    r.data_key()
}

/// Every SecretKeyRef the config names.
pub fn refs(config: &GatewayConfig) -> impl Iterator<Item = &SecretKeyRef> {
    config
        .apis
        .iter()
        .flat_map(|a| a.websocket.iter())
        .flat_map(|w| &w.management_credentials)
        .map(|c| &c.secret)
}

/// The Secret's data: the value of every key the config references, by [`data_key`]. A
/// reference without a value in `secrets` is left out (compile drops such credentials).
pub fn collect(
    config: &GatewayConfig,
    secrets: &[portico_crds::Secret],
) -> BTreeMap<String, Vec<u8>> {
    refs(config)
        .filter_map(|r| {
            let value = secrets
                .iter()
                .find(|s| s.namespace == r.namespace && s.name == r.name)?
                .data
                .get(&r.key)?;
            Some((data_key(r), value.clone()))
        })
        .collect()
}

/// Content hash of the Secret's data (hex SHA-256 over each key and value, length-prefixed,
/// in key order). Never reveals a value.
pub fn version(data: &BTreeMap<String, Vec<u8>>) -> String {
    let mut h = Sha256::new();
    for (k, v) in data {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_be_bytes());
        h.update(v);
    }
    hex::encode(h.finalize())
}

/// The data of a live Secret, decoded.
pub fn live_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    crate::api_key::secret_data(s)
}

/// The credentials Secret as applied: labels as the ConfigMap's, [`VERSION_ANNOTATION`].
pub fn secret(namespace: &str, name: &str, data: &BTreeMap<String, Vec<u8>>) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            annotations: Some(BTreeMap::from([(
                VERSION_ANNOTATION.to_string(),
                version(data),
            )])),
            labels: Some(BTreeMap::from([
                (
                    "app.kubernetes.io/managed-by".to_string(),
                    MANAGER.to_string(),
                ),
                (
                    "app.kubernetes.io/part-of".to_string(),
                    "portico".to_string(),
                ),
            ])),
            ..Default::default()
        },
        type_: Some("Opaque".to_string()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone())))
                .collect(),
        ),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_changes_with_any_key_or_value_and_reveals_neither() {
        let a = BTreeMap::from([("k".to_string(), b"v".to_vec())]);
        let b = BTreeMap::from([("k".to_string(), b"w".to_vec())]);
        let c = BTreeMap::from([("kv".to_string(), Vec::new())]);
        let versions = [
            version(&a),
            version(&b),
            version(&c),
            version(&BTreeMap::new()),
        ];
        for (i, x) in versions.iter().enumerate() {
            assert_eq!(x.len(), 64);
            for y in &versions[i + 1..] {
                assert_ne!(x, y);
            }
        }
        assert_eq!(version(&a), version(&a.clone()));
    }
}
