//! The published ConfigMap and its decoding into a `GatewayConfig`, or into the index of a
//! sharded config and its shards (`docs/config-distribution.md`).
//!
//! ```text
//!  data["gateway-config.json"]                 JSON text
//!  binaryData["gateway-config.json.gz"]        base64(gzip(JSON))   (large configs)
//!  data["gateway-config-index.json"]           the index (sharded configs) instead of both
//!  annotations["portico.dev/config-version"]   content hash (checked, informational)
//!
//!  shard ConfigMap <name>-<kind>-<n>, label portico.dev/config-of=<name>:
//!  binaryData["gateway-config-shard.json.gz"]  base64(gzip(partial GatewayConfig JSON))
//!  annotations["portico.dev/shard-version"]    its hash (as the index names it)
//! ```
//!
//! Names follow `operator/src/publish.rs`. Entry points: [`decode`], [`index`],
//! [`decode_shard`].

use crate::source::{LoadError, Loaded};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use portico_config::GatewayConfig;
use portico_config::distribution::{Index, Shard, ShardRef};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read as _;

/// `data` key holding the JSON document (as `operator::publish::DATA_KEY`).
pub const DATA_KEY: &str = "gateway-config.json";
/// `binaryData` key holding the gzipped document (as `operator::publish::GZIP_KEY`).
pub const GZIP_KEY: &str = "gateway-config.json.gz";
/// Annotation holding the content hash (as `operator::publish::VERSION_ANNOTATION`).
pub const VERSION_ANNOTATION: &str = "portico.dev/config-version";
/// `data` key of the index, when the config is sharded (as `operator::publish::INDEX_KEY`).
pub const INDEX_KEY: &str = "gateway-config-index.json";
/// `binaryData` key of a shard's gzipped document (as `operator::publish::SHARD_KEY`).
pub const SHARD_KEY: &str = "gateway-config-shard.json.gz";
/// Label naming the index ConfigMap of a shard (as `operator::publish::CONFIG_OF_LABEL`).
pub const CONFIG_OF_LABEL: &str = "portico.dev/config-of";
/// Annotation holding a shard's hash (as `operator::publish::SHARD_VERSION_ANNOTATION`).
pub const SHARD_VERSION_ANNOTATION: &str = "portico.dev/shard-version";
/// Largest decompressed document accepted (a ConfigMap holds at most 1 MiB compressed).
pub const MAX_DECOMPRESSED_BYTES: u64 = 64 * 1024 * 1024;

/// The fields of a ConfigMap the proxy reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    /// Object metadata.
    #[serde(default)]
    pub metadata: Meta,
    /// String data.
    #[serde(default, deserialize_with = "null_as_default")]
    pub data: BTreeMap<String, String>,
    /// Binary data, base64 in JSON.
    #[serde(default, deserialize_with = "null_as_default")]
    pub binary_data: BTreeMap<String, String>,
}

/// The metadata fields the proxy reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// Object name.
    #[serde(default)]
    pub name: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: String,
    /// Version of this object (changes on every write).
    #[serde(default)]
    pub resource_version: String,
    /// Annotations.
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, String>,
    /// Labels.
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
}

/// `null` reads as empty (merge-patching servers and hand-written objects produce it).
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Extracts the JSON document (gunzipping `binaryData`), decodes it, checks the schema
/// version and `validate()`s it.
pub fn decode(cm: &ConfigMap) -> Result<Loaded, LoadError> {
    let what = format!(
        "ConfigMap {}/{} (resourceVersion {})",
        cm.metadata.namespace, cm.metadata.name, cm.metadata.resource_version
    );
    let err = |m: String| LoadError::Decode(format!("{what}: {m}"));
    let json: Vec<u8> = match (cm.data.get(DATA_KEY), cm.binary_data.get(GZIP_KEY)) {
        (Some(_), Some(_)) => {
            return Err(err(format!(
                "both data[{DATA_KEY}] and binaryData[{GZIP_KEY}] are set; refusing to guess"
            )));
        }
        (Some(text), None) => text.as_bytes().to_vec(),
        (None, Some(b64)) => {
            let gz = B64
                .decode(b64.trim())
                .map_err(|e| err(format!("binaryData[{GZIP_KEY}] is not base64: {e}")))?;
            gunzip(&gz).map_err(|e| err(format!("binaryData[{GZIP_KEY}]: {e}")))?
        }
        (None, None) => {
            return Err(err(format!(
                "neither data[{DATA_KEY}] nor binaryData[{GZIP_KEY}] is set"
            )));
        }
    };
    let config = GatewayConfig::from_json(&json).map_err(|e| err(e.to_string()))?;
    let version = cm.metadata.annotations.get(VERSION_ANNOTATION).map(|v| {
        let hash = config.content_hash();
        if *v != hash {
            // Informational: the content decides. A hand-edited ConfigMap can be stale here.
            tracing::warn!(annotation = %v, content_hash = %hash, "{what}: {VERSION_ANNOTATION} does not match the content");
        }
        hash
    });
    Ok(Loaded {
        config,
        diagnostics: Vec::new(),
        secrets: Default::default(),
        version,
    })
}

/// The index, when `cm` holds one (`None`: the whole config, or nothing).
pub fn index(cm: &ConfigMap) -> Option<Result<Index, LoadError>> {
    let json = cm.data.get(INDEX_KEY)?;
    Some(Index::from_json(json.as_bytes()).map_err(|e| {
        LoadError::Decode(format!(
            "ConfigMap {}/{} (resourceVersion {}): data[{INDEX_KEY}]: {e}",
            cm.metadata.namespace, cm.metadata.name, cm.metadata.resource_version
        ))
    }))
}

/// The hash a shard ConfigMap says it holds ([`SHARD_VERSION_ANNOTATION`]; empty when absent).
pub fn shard_version(cm: &ConfigMap) -> &str {
    cm.metadata
        .annotations
        .get(SHARD_VERSION_ANNOTATION)
        .map_or("", String::as_str)
}

/// Decodes shard `r` of the index from its ConfigMap (gunzip, JSON, kind; its hash computed).
pub fn decode_shard(cm: &ConfigMap, r: &ShardRef) -> Result<Shard, String> {
    let what = format!(
        "shard ConfigMap {}/{} (resourceVersion {})",
        cm.metadata.namespace, cm.metadata.name, cm.metadata.resource_version
    );
    let b64 = cm
        .binary_data
        .get(SHARD_KEY)
        .ok_or_else(|| format!("{what}: binaryData[{SHARD_KEY}] is not set"))?;
    let gz = B64
        .decode(b64.trim())
        .map_err(|e| format!("{what}: binaryData[{SHARD_KEY}] is not base64: {e}"))?;
    let json = gunzip(&gz).map_err(|e| format!("{what}: binaryData[{SHARD_KEY}]: {e}"))?;
    Shard::decode(&r.name, r.kind, &json).map_err(|e| format!("{what}: {e}"))
}

fn gunzip(gz: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .take(MAX_DECOMPRESSED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("not gzip: {e}"))?;
    if out.len() as u64 > MAX_DECOMPRESSED_BYTES {
        return Err(format!(
            "decompresses to more than {MAX_DECOMPRESSED_BYTES} bytes"
        ));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::{Compression, write::GzEncoder};
    use std::io::Write as _;

    pub(crate) fn cm(data: &[(&str, &str)], binary: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            metadata: Meta {
                name: "gw".into(),
                namespace: "ns".into(),
                resource_version: "7".into(),
                annotations: BTreeMap::new(),
                labels: BTreeMap::new(),
            },
            data: data
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            binary_data: binary
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn gz_b64(text: &str) -> String {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(text.as_bytes()).unwrap();
        B64.encode(gz.finish().unwrap())
    }

    #[test]
    fn plain_and_gzip_configmaps_decode_to_the_same_config() {
        let json = GatewayConfig::empty().to_json();
        let plain = decode(&cm(&[(DATA_KEY, &json)], &[])).unwrap();
        let gz = decode(&cm(&[("other", "x")], &[(GZIP_KEY, &gz_b64(&json))])).unwrap();
        assert_eq!(plain.config, gz.config);
        assert_eq!(plain.config, GatewayConfig::empty());
    }

    #[test]
    fn unusable_configmaps_are_refused_with_a_reason() {
        let json = GatewayConfig::empty().to_json();
        let other_version = json.replace("\"schemaVersion\":1", "\"schemaVersion\":99");
        assert_ne!(json, other_version);
        let mut invalid = GatewayConfig::empty();
        invalid.stages.push(portico_config::Stage {
            id: "stage/ns/s".into(),
            source: portico_config::ObjectRef::new("Stage", "ns", "s"),
            api_id: "restapi/ns/missing".into(),
            name: "s".into(),
            base_path: "/s".into(),
            hosts: Vec::new(),
            variables: BTreeMap::new(),
            access_log: None,
            throttle: None,
            method_throttles: BTreeMap::new(),
            canary: None,
            cache: None,
        });
        let cases = [
            (cm(&[], &[]), "neither"),
            (cm(&[(DATA_KEY, &json)], &[(GZIP_KEY, "x")]), "both"),
            (cm(&[(DATA_KEY, "{not json")], &[]), "cannot decode"),
            (cm(&[(DATA_KEY, &other_version)], &[]), "schemaVersion 99"),
            (cm(&[(DATA_KEY, &invalid.to_json())], &[]), "invalid"),
            (cm(&[], &[(GZIP_KEY, "%%%")]), "not base64"),
            (cm(&[], &[(GZIP_KEY, &B64.encode(b"plain"))]), "not gzip"),
        ];
        for (cm, want) in cases {
            let e = decode(&cm).unwrap_err().to_string();
            assert!(e.contains(want), "want {want:?} in {e}");
            assert!(e.contains("ConfigMap ns/gw (resourceVersion 7)"), "{e}");
        }
    }

    #[test]
    fn configmap_json_decodes_with_missing_fields() {
        let cm: ConfigMap = serde_json::from_str(
            r#"{"kind":"ConfigMap","metadata":{"name":"a","resourceVersion":"3","annotations":{"x":"y"}},"binaryData":{"k":"AA=="}}"#,
        )
        .unwrap();
        assert_eq!(cm.metadata.resource_version, "3");
        assert_eq!(cm.binary_data["k"], "AA==");
        assert!(cm.data.is_empty());
        let cm: ConfigMap = serde_json::from_str(
            r#"{"metadata":{"annotations":null},"data":null,"binaryData":null}"#,
        )
        .unwrap();
        assert_eq!(cm, ConfigMap::default());
    }
}
