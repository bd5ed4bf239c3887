//! Publishing the compiled `GatewayConfig` into ONE ConfigMap that the proxies watch.
//!
//! ```text
//!  GatewayConfig ─to_json─> JSON ─< gzip_above? ──yes──> gzip ─> binaryData["gateway-config.json.gz"]
//!                                        └──no───> data["gateway-config.json"]
//!  annotation portico.dev/config-version = content_hash   (server-side apply, field manager
//!  "portico-operator", forced)
//! ```
//!
//! Entry point: [`Publisher::publish`]. It is idempotent: it remembers the last published
//! hash (seeded from the live ConfigMap's annotation on first use) and makes no request when
//! the hash is unchanged. A config that does not fit even gzipped is refused with
//! [`Error::ConfigTooLarge`] and the previous ConfigMap is left alone.

use crate::{Error, MANAGER, Result};
use flate2::{Compression, write::GzEncoder};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use portico_config::GatewayConfig;
use std::collections::BTreeMap;
use std::io::Write;
use tokio::sync::Mutex;

/// `data` key holding the JSON document when it is small.
pub const DATA_KEY: &str = "gateway-config.json";
/// `binaryData` key holding the gzipped JSON document when it is large.
pub const GZIP_KEY: &str = "gateway-config.json.gz";
/// Annotation holding the config's content hash (`GatewayConfig::content_hash`).
pub const VERSION_ANNOTATION: &str = "portico.dev/config-version";
/// Default ConfigMap name.
pub const DEFAULT_CONFIG_MAP_NAME: &str = "portico-gateway-config";
/// JSON documents of this many bytes or more are gzipped.
pub const GZIP_THRESHOLD: usize = 512 * 1024;
/// The most a ConfigMap may hold (`data` + `binaryData`), as enforced by the API server.
pub const MAX_CONFIG_MAP_BYTES: usize = 1024 * 1024;

/// Size thresholds; tests use small ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// JSON of at least this many bytes is gzipped.
    pub gzip_above: usize,
    /// A payload over this many bytes is not published.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            gzip_above: GZIP_THRESHOLD,
            max_bytes: MAX_CONFIG_MAP_BYTES,
        }
    }
}

/// What goes into the ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// Plain JSON under `data`.
    Json(String),
    /// Gzipped JSON under `binaryData`.
    Gzip(Vec<u8>),
}

impl Payload {
    /// Stored size in bytes.
    pub fn len(&self) -> usize {
        match self {
            Payload::Json(s) => s.len(),
            Payload::Gzip(b) => b.len(),
        }
    }

    /// True for an empty payload (never produced by [`encode`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Chooses plain JSON or gzip and enforces the size limit.
pub fn encode(json: &str, limits: Limits) -> Result<Payload> {
    if json.len() < limits.gzip_above {
        return Ok(Payload::Json(json.to_string()));
    }
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(json.as_bytes())?;
    let bytes = gz.finish()?;
    if bytes.len() + GZIP_KEY.len() > limits.max_bytes {
        return Err(Error::ConfigTooLarge {
            json_bytes: json.len(),
            gzipped_bytes: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    Ok(Payload::Gzip(bytes))
}

/// The ConfigMap as applied (only the fields this operator owns).
pub fn config_map(namespace: &str, name: &str, version: &str, payload: Payload) -> ConfigMap {
    let (data, binary_data) = match payload {
        Payload::Json(s) => (Some(BTreeMap::from([(DATA_KEY.to_string(), s)])), None),
        Payload::Gzip(b) => (
            None,
            Some(BTreeMap::from([(GZIP_KEY.to_string(), ByteString(b))])),
        ),
    };
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            annotations: Some(BTreeMap::from([(
                VERSION_ANNOTATION.to_string(),
                version.to_string(),
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
        data,
        binary_data,
        ..Default::default()
    }
}

/// What [`Publisher::publish`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Published {
    /// The ConfigMap was written with this version.
    Written {
        /// Content hash.
        version: String,
        /// Stored bytes.
        bytes: usize,
    },
    /// The ConfigMap already holds this version; no request was made.
    Unchanged {
        /// Content hash.
        version: String,
    },
}

impl Published {
    /// The version the proxies serve after this publish.
    pub fn version(&self) -> &str {
        match self {
            Published::Written { version, .. } | Published::Unchanged { version } => version,
        }
    }
}

/// Writes the GatewayConfig ConfigMap, skipping unchanged versions.
pub struct Publisher {
    api: Api<ConfigMap>,
    namespace: String,
    name: String,
    limits: Limits,
    /// `None`: not looked at yet; `Some(None)`: no ConfigMap; `Some(Some(v))`: live version.
    last: Mutex<Option<Option<String>>>,
}

impl Publisher {
    /// A publisher of ConfigMap `namespace/name`.
    pub fn new(client: kube::Client, namespace: &str, name: &str, limits: Limits) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            limits,
            last: Mutex::new(None),
        }
    }

    /// Forgets the remembered version, so the next publish reads the live ConfigMap again
    /// (used when leadership is regained: another replica may have written meanwhile).
    pub async fn forget(&self) {
        *self.last.lock().await = None;
    }

    /// The version currently published, as far as this replica knows.
    pub async fn current_version(&self) -> Option<String> {
        self.last.lock().await.clone().flatten()
    }

    /// Publishes `config` unless the ConfigMap already holds its version.
    pub async fn publish(&self, config: &GatewayConfig) -> Result<Published> {
        let json = config.to_json();
        let version = config.content_hash();
        let mut last = self.last.lock().await;
        if last.is_none() {
            let live = self.api.get_opt(&self.name).await?;
            *last = Some(live.and_then(|cm| {
                cm.metadata
                    .annotations
                    .and_then(|mut a| a.remove(VERSION_ANNOTATION))
            }));
        }
        if last.as_ref().and_then(Option::as_deref) == Some(version.as_str()) {
            tracing::debug!(%version, "GatewayConfig unchanged; not publishing");
            return Ok(Published::Unchanged { version });
        }
        let payload = encode(&json, self.limits)?;
        let bytes = payload.len();
        let gzipped = matches!(payload, Payload::Gzip(_));
        let cm = config_map(&self.namespace, &self.name, &version, payload);
        self.api
            .patch(
                &self.name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&cm),
            )
            .await?;
        tracing::info!(%version, bytes, gzipped, configmap = %self.name, "published GatewayConfig");
        *last = Some(Some(version.clone()));
        Ok(Published::Written { version, bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{ApiServerVerifier, mk_config, timeout_after_1s};
    use flate2::read::GzDecoder;
    use http::Method;
    use std::io::Read;

    fn gunzip(b: &[u8]) -> String {
        let mut s = String::new();
        GzDecoder::new(b).read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn small_documents_stay_json_and_large_ones_are_gzipped() {
        let limits = Limits::default();
        assert_eq!(encode("{}", limits).unwrap(), Payload::Json("{}".into()));
        let big = format!("{{\"x\":\"{}\"}}", "a".repeat(GZIP_THRESHOLD));
        let Payload::Gzip(gz) = encode(&big, limits).unwrap() else {
            panic!("expected gzip");
        };
        assert!(gz.len() < 10_000, "repetitive JSON compresses well");
        assert_eq!(gunzip(&gz), big);
    }

    #[test]
    fn a_document_too_large_even_gzipped_is_refused() {
        use sha2::Digest;
        // Hex of a hash chain barely compresses: 4 KiB of it cannot fit in 1 KiB.
        let mut s = String::new();
        let mut h = [0u8; 32];
        while s.len() < 4096 {
            h = sha2::Sha256::digest(h).into();
            s.push_str(&hex::encode(h));
        }
        let limits = Limits {
            gzip_above: 100,
            max_bytes: 1024,
        };
        let err = encode(&s, limits).unwrap_err();
        assert!(
            matches!(err, Error::ConfigTooLarge { json_bytes, limit: 1024, .. } if json_bytes == s.len()),
            "{err}"
        );
        assert_eq!(err.metric_label(), "config_too_large");
    }

    fn publisher(client: kube::Client, limits: Limits) -> Publisher {
        Publisher::new(client, "portico-system", DEFAULT_CONFIG_MAP_NAME, limits)
    }

    const CM_PATH: &str = "/api/v1/namespaces/portico-system/configmaps/portico-gateway-config";

    #[tokio::test]
    async fn publish_applies_the_json_with_its_version_then_skips_the_same_version() {
        let (client, verifier) = ApiServerVerifier::new();
        let config = mk_config();
        let version = config.content_hash();
        let expected_json = config.to_json();
        let server = verifier.run(move |mut s| async move {
            s.expect(Method::GET, CM_PATH, "").await.not_found();
            let (body, reply) = s
                .expect(
                    Method::PATCH,
                    CM_PATH,
                    "?&force=true&fieldManager=portico-operator",
                )
                .await
                .json_body()
                .await;
            assert_eq!(body["kind"], "ConfigMap");
            assert_eq!(body["apiVersion"], "v1");
            assert_eq!(body["data"][DATA_KEY], expected_json);
            assert!(body.get("binaryData").is_none());
            assert_eq!(
                body["metadata"]["annotations"][VERSION_ANNOTATION],
                version.as_str()
            );
            reply.ok(&body);
            s
        });
        let p = publisher(client, Limits::default());
        timeout_after_1s(async {
            let first = p.publish(&config).await.unwrap();
            assert!(matches!(first, Published::Written { .. }));
            // Same config again: no request may reach the API server.
            let second = p.publish(&config).await.unwrap();
            assert_eq!(
                second,
                Published::Unchanged {
                    version: config.content_hash()
                }
            );
        })
        .await;
        server.finish().await;
    }

    #[tokio::test]
    async fn publish_makes_no_write_when_the_live_config_map_has_the_version() {
        let (client, verifier) = ApiServerVerifier::new();
        let config = mk_config();
        let live = config_map(
            "portico-system",
            DEFAULT_CONFIG_MAP_NAME,
            &config.content_hash(),
            Payload::Json(config.to_json()),
        );
        let server = verifier.run(move |mut s| async move {
            s.expect(Method::GET, CM_PATH, "").await.ok(&live);
            s
        });
        let p = publisher(client, Limits::default());
        timeout_after_1s(async {
            let out = p.publish(&config).await.unwrap();
            assert!(matches!(out, Published::Unchanged { .. }));
        })
        .await;
        server.finish().await;
    }

    #[tokio::test]
    async fn a_large_config_is_gzipped_into_binary_data() {
        let (client, verifier) = ApiServerVerifier::new();
        let config = mk_config();
        let expected_json = config.to_json();
        let server = verifier.run(move |mut s| async move {
            s.expect(Method::GET, CM_PATH, "").await.not_found();
            let (body, reply) = s
                .expect(
                    Method::PATCH,
                    CM_PATH,
                    "?&force=true&fieldManager=portico-operator",
                )
                .await
                .json_body()
                .await;
            assert!(body.get("data").is_none(), "{body}");
            let b64 = body["binaryData"][GZIP_KEY].as_str().unwrap();
            let gz: ByteString = serde_json::from_value(serde_json::json!(b64)).unwrap();
            assert_eq!(gunzip(&gz.0), expected_json);
            reply.ok(&body);
            s
        });
        let limits = Limits {
            gzip_above: 10,
            max_bytes: MAX_CONFIG_MAP_BYTES,
        };
        let p = publisher(client, limits);
        timeout_after_1s(async {
            let out = p.publish(&config).await.unwrap();
            assert!(matches!(out, Published::Written { .. }));
        })
        .await;
        server.finish().await;
    }

    #[tokio::test]
    async fn a_too_large_config_is_not_published_and_the_previous_version_is_kept() {
        let (client, verifier) = ApiServerVerifier::new();
        let config = mk_config();
        let server = verifier.run(move |mut s| async move {
            // Only the initial read; no PATCH may follow.
            s.expect(Method::GET, CM_PATH, "").await.not_found();
            s
        });
        let limits = Limits {
            gzip_above: 10,
            max_bytes: 20,
        };
        let p = publisher(client, limits);
        timeout_after_1s(async {
            let err = p.publish(&config).await.unwrap_err();
            assert!(
                matches!(err, Error::ConfigTooLarge { limit: 20, .. }),
                "{err}"
            );
            assert_eq!(p.current_version().await, None);
        })
        .await;
        server.finish().await;
    }
}
