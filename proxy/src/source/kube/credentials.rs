//! The credentials Secret the operator publishes next to the ConfigMap: the secret values the
//! config references (WebSocket APIs' `@connections` credentials), which the ConfigMap never
//! holds.
//!
//! ```text
//!  Secret "<configmap name>-credentials" (the ConfigMap's namespace)
//!    data[data_key(ref)] = base64(value)       one entry per SecretKeyRef the config names
//!    annotations["portico.dev/credentials-version"]  = the ConfigMap's annotation of that name
//!  config refs ──data_key──> data ──> Runtime.secrets (SecretKeyRef -> value)
//! ```
//!
//! Names and [`data_key`] follow `operator/src/credentials.rs` (the same test vectors):
//! `<namespace>.<name>.<key>`, each part with every byte but `[-a-zA-Z0-9]` written `_XX`
//! (upper-case hex), or `sha256.<hex>` when that is longer than 253 characters. Entry points:
//! [`secret_name`], [`resolve`].

use crate::runtime::Secrets;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use portico_config::{GatewayConfig, SecretKeyRef};
use serde::Deserialize;
use std::collections::BTreeMap;

use super::configmap::Meta;

/// Suffix of the credentials Secret's name (after the ConfigMap's name).
pub const SECRET_SUFFIX: &str = "-credentials";
/// Annotation (on the ConfigMap and on the Secret): the version of the Secret's data.
pub const VERSION_ANNOTATION: &str = "portico.dev/credentials-version";

/// The credentials Secret's name for ConfigMap `config_map_name`.
pub fn secret_name(config_map_name: &str) -> String {
    format!("{config_map_name}{SECRET_SUFFIX}")
}

/// The fields of a Secret the proxy reads.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Secret {
    /// Object metadata.
    #[serde(default)]
    pub metadata: Meta,
    /// Values, base64 in JSON.
    #[serde(default, deserialize_with = "null_as_default")]
    pub data: BTreeMap<String, String>,
}

/// Never prints the values.
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("metadata", &self.metadata)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl Secret {
    /// Its [`VERSION_ANNOTATION`].
    pub fn version(&self) -> Option<&str> {
        self.metadata
            .annotations
            .get(VERSION_ANNOTATION)
            .map(String::as_str)
    }
}

/// The data key holding the value of `r` (the operator's, from `portico_config`).
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

/// The values of the keys `config` names, from the credentials Secret's `data`, and the
/// references without a (decodable) value there.
pub fn resolve(
    config: &GatewayConfig,
    data: &BTreeMap<String, String>,
) -> (Secrets, Vec<SecretKeyRef>) {
    let mut secrets = Secrets::new();
    let mut missing = Vec::new();
    for r in refs(config) {
        let value = data
            .get(&data_key(r))
            .and_then(|b64| B64.decode(b64.trim()).ok());
        match value {
            Some(v) => {
                secrets.insert(r.clone(), String::from_utf8_lossy(&v).into_owned());
            }
            None => missing.push(r.clone()),
        }
    }
    (secrets, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(ns: &str, name: &str, key: &str) -> SecretKeyRef {
        SecretKeyRef {
            namespace: ns.into(),
            name: name.into(),
            key: key.into(),
        }
    }

    #[test]
    fn resolve_takes_the_named_keys_and_reports_the_missing_ones() {
        let mut config = GatewayConfig::empty();
        let json = serde_json::json!({
            "id": "restapi/team-a/chat",
            "source": {"kind": "RestApi", "namespace": "team-a", "name": "chat"},
            "name": "chat",
            "protocol": "WEBSOCKET",
            "routes": [],
            "maxPayloadBytes": 131072,
            "websocket": {
                "routeSelection": ["action"],
                "maxMessageBytes": 131072,
                "maxFrameBytes": 32768,
                "idleTimeoutSeconds": 600,
                "maxConnectionSeconds": 7200,
                "managementCredentials": [
                    {"accessKeyId": "AKIAPORTICOTEST00001", "secret": {"namespace": "team-a", "name": "m", "key": "a"}},
                    {"accessKeyId": "AKIAPORTICOTEST00002", "secret": {"namespace": "team-a", "name": "m", "key": "b"}}
                ]
            }
        });
        config.apis.push(serde_json::from_value(json).unwrap());
        let data = BTreeMap::from([
            ("team-a.m.a".to_string(), B64.encode("secret-a")),
            ("team-a.other.x".to_string(), B64.encode("not named")),
        ]);
        let (secrets, missing) = resolve(&config, &data);
        assert_eq!(
            secrets,
            Secrets::from([(r("team-a", "m", "a"), "secret-a".to_string())])
        );
        assert_eq!(missing, [r("team-a", "m", "b")]);
    }

    #[test]
    fn secrets_decode_and_never_print_their_values() {
        let s: Secret = serde_json::from_str(
            r#"{"kind":"Secret","metadata":{"name":"gw-credentials","resourceVersion":"4","annotations":{"portico.dev/credentials-version":"abc"}},"type":"Opaque","data":{"team-a.m.a":"c2VjcmV0LWE="}}"#,
        )
        .unwrap();
        assert_eq!(s.version(), Some("abc"));
        assert_eq!(s.data["team-a.m.a"], "c2VjcmV0LWE=");
        let printed = format!("{s:?}");
        assert!(printed.contains("team-a.m.a") && !printed.contains("c2VjcmV0LWE="));
        let empty: Secret = serde_json::from_str(r#"{"metadata":{},"data":null}"#).unwrap();
        assert!(empty.data.is_empty() && empty.version().is_none());
        assert_eq!(secret_name("gw"), "gw-credentials");
    }
}
