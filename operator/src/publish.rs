//! Publishing the compiled `GatewayConfig` into ConfigMaps that the proxies watch: ONE
//! ConfigMap while it is small, shards under an index past `Limits::shard_bytes`
//! (`docs/config-distribution.md`); and the secret values it references into ONE Secret next to
//! it ([`crate::credentials`]).
//!
//! ```text
//!  GatewayConfig ─to_json─> stored size (gzipped when large) <= shard_bytes?
//!   ├─yes─ ONE ConfigMap <name>: ─< gzip_above? ──yes──> gzip ─> binaryData["gateway-config.json.gz"]
//!   │                                   └──no───> data["gateway-config.json"]
//!   │       then delete the shard ConfigMaps this replica knows of (a fleet that shrank)
//!   └─no── distribution::split ─> shards + index
//!           1. ConfigMap <name>-<kind>-<n> per shard whose hash changed:
//!              binaryData["gateway-config-shard.json.gz"], label portico.dev/config-of=<name>,
//!              annotation portico.dev/shard-version = the shard's hash
//!           2. ConfigMap <name>: data["gateway-config-index.json"] (the index)
//!           3. delete the shard ConfigMaps the index no longer names
//!  annotation portico.dev/config-version = content_hash   (on <name>, both ways; server-side
//!  apply, field manager "portico-operator", forced)
//!  annotation portico.dev/credentials-version = credentials::version   (only with credentials)
//!
//!  referenced secret values ─> Secret "<name>-credentials"   (same apply, written FIRST)
//! ```
//!
//! Entry point: [`Publisher::publish`]. It is idempotent: it remembers the last published
//! hashes (seeded from the live ConfigMap's annotations, its index and, when it holds one, one
//! list of the shard ConfigMaps by label, and the live Secret's content, on first use) and makes
//! no request when they are unchanged. A config (or one shard) that does not fit even gzipped is
//! refused with [`Error::ConfigTooLarge`] and the previous ConfigMaps (and Secret) are left
//! alone. No secret value is ever written into a ConfigMap.

use crate::credentials;
use crate::{Error, MANAGER, Result};
use flate2::{Compression, write::GzEncoder};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams};
use portico_config::GatewayConfig;
use portico_config::distribution::{self, Index, Shard};
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
/// `data` key of the index, in the named ConfigMap, when the config is sharded.
pub const INDEX_KEY: &str = "gateway-config-index.json";
/// `binaryData` key of a shard's gzipped JSON document.
pub const SHARD_KEY: &str = "gateway-config-shard.json.gz";
/// Label on every shard ConfigMap: the name of the index ConfigMap it belongs to.
pub const CONFIG_OF_LABEL: &str = "portico.dev/config-of";
/// Annotation holding a shard's content hash (as its index entry names it).
pub const SHARD_VERSION_ANNOTATION: &str = "portico.dev/shard-version";
/// Default of `--config-shard-bytes`: a config stored larger is sharded, into shards of about
/// this many bytes of JSON.
pub const DEFAULT_SHARD_BYTES: usize = 256 * 1024;

/// Size thresholds; tests use small ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// JSON of at least this many bytes is gzipped.
    pub gzip_above: usize,
    /// A payload over this many bytes is not published.
    pub max_bytes: usize,
    /// A config stored larger than this (gzipped when large) is published as shards of about
    /// this many bytes of JSON under an index.
    pub shard_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            gzip_above: GZIP_THRESHOLD,
            max_bytes: MAX_CONFIG_MAP_BYTES,
            shard_bytes: DEFAULT_SHARD_BYTES,
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
    gzip(json, GZIP_KEY, limits)
}

/// Gzips `json` (stored under `key`) and enforces the size limit.
fn gzip(json: &str, key: &str, limits: Limits) -> Result<Payload> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::best());
    gz.write_all(json.as_bytes())?;
    let bytes = gz.finish()?;
    if bytes.len() + key.len() > limits.max_bytes {
        return Err(Error::ConfigTooLarge {
            json_bytes: json.len(),
            gzipped_bytes: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    Ok(Payload::Gzip(bytes))
}

/// True when `json` is published as one ConfigMap: its stored size (gzipped when at least
/// `gzip_above`; the fast level decides, the stored one is at least as small) is at most
/// `shard_bytes`.
pub fn fits_one(json: &str, limits: Limits) -> Result<bool> {
    if json.len() <= limits.shard_bytes {
        return Ok(true);
    }
    if json.len() < limits.gzip_above {
        return Ok(false);
    }
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(json.as_bytes())?;
    Ok(gz.finish()?.len() <= limits.shard_bytes)
}

/// What the named ConfigMap holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// The whole config.
    Whole(Payload),
    /// The index of the shards (JSON).
    Index(String),
}

/// The named ConfigMap as applied (only the fields this operator owns).
/// `credentials_version`: [`credentials::version`] of the credentials Secret's data, when the
/// config references credentials.
pub fn config_map(
    namespace: &str,
    name: &str,
    version: &str,
    credentials_version: Option<&str>,
    payload: Payload,
) -> ConfigMap {
    named_config_map(
        namespace,
        name,
        version,
        credentials_version,
        Content::Whole(payload),
    )
}

/// The named ConfigMap holding `content`.
pub fn named_config_map(
    namespace: &str,
    name: &str,
    version: &str,
    credentials_version: Option<&str>,
    content: Content,
) -> ConfigMap {
    let (data, binary_data) = match content {
        Content::Whole(Payload::Json(s)) => {
            (Some(BTreeMap::from([(DATA_KEY.to_string(), s)])), None)
        }
        Content::Whole(Payload::Gzip(b)) => (
            None,
            Some(BTreeMap::from([(GZIP_KEY.to_string(), ByteString(b))])),
        ),
        Content::Index(json) => (Some(BTreeMap::from([(INDEX_KEY.to_string(), json)])), None),
    };
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            annotations: Some(
                [
                    (VERSION_ANNOTATION, Some(version)),
                    (credentials::VERSION_ANNOTATION, credentials_version),
                ]
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_string(), v?.to_string())))
                .collect(),
            ),
            labels: Some(labels()),
            ..Default::default()
        },
        data,
        binary_data,
        ..Default::default()
    }
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_string(),
            MANAGER.to_string(),
        ),
        (
            "app.kubernetes.io/part-of".to_string(),
            "portico".to_string(),
        ),
    ])
}

/// The ConfigMap name of shard `shard` (`keys-3`) of index `name`.
pub fn shard_config_map_name(name: &str, shard: &str) -> String {
    format!("{name}-{shard}")
}

/// Shard `shard`'s ConfigMap (`<index>-<shard>`): its gzipped document, labelled
/// [`CONFIG_OF_LABEL`]` = index`, annotated with its hash.
pub fn shard_config_map(
    namespace: &str,
    index: &str,
    shard: &str,
    hash: &str,
    gzipped: Vec<u8>,
) -> ConfigMap {
    let mut labels = labels();
    labels.insert(CONFIG_OF_LABEL.to_string(), index.to_string());
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(shard_config_map_name(index, shard)),
            namespace: Some(namespace.to_string()),
            annotations: Some(BTreeMap::from([(
                SHARD_VERSION_ANNOTATION.to_string(),
                hash.to_string(),
            )])),
            labels: Some(labels),
            ..Default::default()
        },
        binary_data: Some(BTreeMap::from([(
            SHARD_KEY.to_string(),
            ByteString(gzipped),
        )])),
        ..Default::default()
    }
}

/// What [`Publisher::publish`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Published {
    /// The ConfigMap (or the changed shards and the index) was written with this version.
    Written {
        /// Content hash.
        version: String,
        /// Bytes written: the ConfigMap's payload, or the changed shards' and the index's.
        bytes: usize,
        /// Shard ConfigMaps written (0 for one ConfigMap).
        shards: usize,
    },
    /// The ConfigMap already holds this version and was not written (the credentials Secret
    /// may have been, when it had been deleted or edited).
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

/// What this replica knows of the live objects (seeded from the API server on first use).
#[derive(Clone, Debug, Default)]
struct Live {
    /// The ConfigMap's [`VERSION_ANNOTATION`] (`None`: no ConfigMap, or not annotated).
    config_version: Option<String>,
    /// The ConfigMap's [`credentials::VERSION_ANNOTATION`].
    credentials_annotation: Option<String>,
    /// [`credentials::version`] of the live credentials Secret's data: `None` not read yet,
    /// `Some(None)` no such Secret.
    secret: Option<Option<String>>,
    /// The ConfigMap's index (`None`: it holds the whole config, or nothing).
    index: Option<Index>,
    /// The live shard ConfigMaps, name -> [`SHARD_VERSION_ANNOTATION`]: listed on seeding when
    /// the ConfigMap holds an index, then kept as written and deleted (`None`: not listed).
    shards: Option<BTreeMap<String, String>>,
}

impl Live {
    /// The live shards are exactly those the live index names, with its hashes (true when the
    /// ConfigMap holds the whole config and no shard is known).
    fn shards_consistent(&self, name: &str) -> bool {
        let known = self.shards.as_ref();
        match &self.index {
            None => known.is_none_or(BTreeMap::is_empty),
            Some(index) => known.is_some_and(|live| {
                live.len() == index.shards.len()
                    && index
                        .shards
                        .iter()
                        .all(|s| live.get(&shard_config_map_name(name, &s.name)) == Some(&s.hash))
            }),
        }
    }
}

/// What a sharded publish writes: the pure decision from the split and the live shards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardPlan {
    /// Shards (by index name) whose ConfigMap is missing or holds another hash.
    pub write: Vec<String>,
    /// Shard ConfigMaps (by ConfigMap name) the index no longer names.
    pub delete: Vec<String>,
}

/// The shards to write and the ConfigMaps to delete for `index` (of ConfigMap `name`), given the
/// live shard ConfigMaps (name -> hash).
pub fn plan_shards(name: &str, index: &Index, live: &BTreeMap<String, String>) -> ShardPlan {
    let wanted: BTreeMap<String, &str> = index
        .shards
        .iter()
        .map(|s| (shard_config_map_name(name, &s.name), s.hash.as_str()))
        .collect();
    ShardPlan {
        write: index
            .shards
            .iter()
            .filter(|s| {
                live.get(&shard_config_map_name(name, &s.name))
                    .map(String::as_str)
                    != Some(s.hash.as_str())
            })
            .map(|s| s.name.clone())
            .collect(),
        delete: live
            .keys()
            .filter(|n| !wanted.contains_key(*n))
            .cloned()
            .collect(),
    }
}

/// Writes the credentials Secret and the GatewayConfig ConfigMap(s), skipping unchanged ones.
pub struct Publisher {
    api: Api<ConfigMap>,
    secrets: Api<Secret>,
    namespace: String,
    name: String,
    secret_name: String,
    limits: Limits,
    /// `None`: not looked at yet.
    last: Mutex<Option<Live>>,
}

impl Publisher {
    /// A publisher of ConfigMap `namespace/name` (its shards `namespace/name-<kind>-<n>`, and
    /// Secret `namespace/name-credentials`).
    pub fn new(client: kube::Client, namespace: &str, name: &str, limits: Limits) -> Self {
        Self {
            api: Api::namespaced(client.clone(), namespace),
            secrets: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            secret_name: credentials::secret_name(name),
            limits,
            last: Mutex::new(None),
        }
    }

    /// Forgets what was remembered, so the next publish reads the live ConfigMap (and
    /// credentials Secret) again (used when leadership is regained: another replica may have
    /// written meanwhile, and by the periodic resync: someone may have deleted them).
    pub async fn forget(&self) {
        *self.last.lock().await = None;
    }

    /// The version currently published, as far as this replica knows.
    pub async fn current_version(&self) -> Option<String> {
        self.last
            .lock()
            .await
            .as_ref()
            .and_then(|l| l.config_version.clone())
    }

    /// The live shard ConfigMaps (one list by label): name -> hash annotation.
    async fn list_shards(&self) -> Result<BTreeMap<String, String>> {
        let lp = ListParams::default().labels(&format!("{CONFIG_OF_LABEL}={}", self.name));
        let list = self.api.list(&lp).await?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|cm| {
                let name = cm.metadata.name?;
                let hash = cm
                    .metadata
                    .annotations
                    .and_then(|mut a| a.remove(SHARD_VERSION_ANNOTATION))
                    .unwrap_or_default();
                Some((name, hash))
            })
            .collect())
    }

    /// Publishes `config` unless the ConfigMap(s) already hold its version, and the credentials
    /// Secret (the values of the keys `config` references, from `secrets`) before it unless
    /// it already holds them. The ConfigMap's [`credentials::VERSION_ANNOTATION`] names the
    /// values' version, so a change of the values alone (a rotated secret) is a ConfigMap
    /// change too, and proxies read the Secret again.
    pub async fn publish(
        &self,
        config: &GatewayConfig,
        secrets: &[portico_crds::Secret],
    ) -> Result<Published> {
        let version = config.content_hash();
        let data = credentials::collect(config, secrets);
        // No credentials: no annotation, and no Secret unless one was written before.
        let creds_version = (!data.is_empty()).then(|| credentials::version(&data));
        let mut guard = self.last.lock().await;
        if guard.is_none() {
            let live = self.api.get_opt(&self.name).await?;
            let index = live
                .as_ref()
                .and_then(|cm| cm.data.as_ref()?.get(INDEX_KEY))
                .and_then(|json| Index::from_json(json.as_bytes()).ok());
            let mut annotations = live
                .and_then(|cm| cm.metadata.annotations)
                .unwrap_or_default();
            // The shards are listed only when the live ConfigMap is an index.
            let shards = match index {
                Some(_) => Some(self.list_shards().await?),
                None => None,
            };
            *guard = Some(Live {
                config_version: annotations.remove(VERSION_ANNOTATION),
                credentials_annotation: annotations.remove(credentials::VERSION_ANNOTATION),
                secret: None,
                index,
                shards,
            });
        }
        let live = guard.as_mut().expect("seeded above");
        // The Secret is read only when credentials are wanted: the ConfigMap's annotation
        // alone would not notice a deleted or edited Secret.
        if creds_version.is_some() && live.secret.is_none() {
            let s = self.secrets.get_opt(&self.secret_name).await?;
            live.secret = Some(s.map(|s| credentials::version(&credentials::live_data(&s))));
        }
        let write_secret = match &creds_version {
            Some(v) => live.secret.as_ref().and_then(Option::as_ref) != Some(v),
            // The last credential went away: empty the Secret (it is kept, never deleted).
            None => {
                live.credentials_annotation.is_some()
                    || live
                        .secret
                        .as_ref()
                        .and_then(Option::as_ref)
                        .is_some_and(|v| *v != credentials::version(&data))
            }
        };
        let write_config_map = live.config_version.as_deref() != Some(version.as_str())
            || live.credentials_annotation != creds_version
            || !live.shards_consistent(&self.name);
        if !write_secret && !write_config_map {
            tracing::debug!(%version, "GatewayConfig and credentials unchanged; not publishing");
            return Ok(Published::Unchanged { version });
        }
        // Refused before anything is written: a too large config (or shard) publishes nothing.
        let content = if write_config_map {
            let json = config.to_json();
            Some(if fits_one(&json, self.limits)? {
                Prepared::Whole(encode(&json, self.limits)?)
            } else {
                self.prepare_shards(config, live).await?
            })
        } else {
            None
        };
        if write_secret {
            // Before the ConfigMap: a proxy that sees the new config finds its secrets.
            let secret = credentials::secret(&self.namespace, &self.secret_name, &data);
            self.secrets
                .patch(
                    &self.secret_name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(&secret),
                )
                .await?;
            live.secret = Some(Some(credentials::version(&data)));
            tracing::info!(secret = %self.secret_name, keys = data.len(), "published the credentials Secret");
        }
        let Some(content) = content else {
            // Only the Secret was off (deleted or edited by hand): the ConfigMap stays as is.
            return Ok(Published::Unchanged { version });
        };
        let (named, mut bytes, shards, delete) = match content {
            Prepared::Whole(payload) => {
                let bytes = payload.len();
                let gzipped = matches!(payload, Payload::Gzip(_));
                tracing::info!(%version, bytes, gzipped, configmap = %self.name, "publishing GatewayConfig");
                let delete: Vec<String> = live
                    .shards
                    .as_ref()
                    .map(|s| s.keys().cloned().collect())
                    .unwrap_or_default();
                (Content::Whole(payload), bytes, 0, delete)
            }
            Prepared::Sharded {
                index,
                write,
                delete,
            } => {
                // 1. The changed shards, before the index that names them.
                let mut bytes = 0;
                let count = write.len();
                for (shard, hash, gz) in write {
                    bytes += gz.len();
                    let cm_name = shard_config_map_name(&self.name, &shard);
                    let cm = shard_config_map(&self.namespace, &self.name, &shard, &hash, gz);
                    self.api
                        .patch(
                            &cm_name,
                            &PatchParams::apply(MANAGER).force(),
                            &Patch::Apply(&cm),
                        )
                        .await?;
                    live.shards
                        .get_or_insert_with(BTreeMap::new)
                        .insert(cm_name, hash);
                }
                let json = index.to_json();
                tracing::info!(%version, shards = index.shards.len(), written = count, bytes, configmap = %self.name, "publishing GatewayConfig shards and index");
                live.index = Some(index);
                (Content::Index(json), bytes, count, delete)
            }
        };
        if let Content::Index(json) = &named {
            bytes += json.len();
        }
        let sharded = matches!(named, Content::Index(_));
        // 2. The named ConfigMap: the whole config, or the index.
        let cm = named_config_map(
            &self.namespace,
            &self.name,
            &version,
            creds_version.as_deref(),
            named,
        );
        self.api
            .patch(
                &self.name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&cm),
            )
            .await?;
        tracing::info!(%version, bytes, sharded, configmap = %self.name, "published GatewayConfig");
        live.config_version = Some(version.clone());
        live.credentials_annotation = creds_version;
        if !sharded {
            live.index = None;
        }
        // 3. Shards no longer named: after the ConfigMap, so a proxy never misses one it needs.
        for cm_name in delete {
            match self.api.delete(&cm_name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            tracing::info!(configmap = %cm_name, "deleted a shard the index no longer names");
            if let Some(s) = live.shards.as_mut() {
                s.remove(&cm_name);
            }
        }
        Ok(Published::Written {
            version,
            bytes,
            shards,
        })
    }

    /// Splits `config`, lists the live shards when not known yet, and gzips the changed ones
    /// (refusing any over the size limit before anything is written).
    async fn prepare_shards(&self, config: &GatewayConfig, live: &mut Live) -> Result<Prepared> {
        let (index, shards) = distribution::split(config, self.limits.shard_bytes);
        if live.shards.is_none() {
            live.shards = Some(self.list_shards().await?);
        }
        let plan = plan_shards(
            &self.name,
            &index,
            live.shards.as_ref().expect("listed above"),
        );
        let by_name: BTreeMap<&str, &Shard> = shards.iter().map(|s| (s.name.as_str(), s)).collect();
        let mut write = Vec::with_capacity(plan.write.len());
        for n in &plan.write {
            let shard = by_name[n.as_str()];
            let Payload::Gzip(gz) = gzip(&shard.to_json(), SHARD_KEY, self.limits)? else {
                unreachable!("gzip() returns Gzip")
            };
            write.push((n.clone(), shard.hash.clone(), gz));
        }
        Ok(Prepared::Sharded {
            index,
            write,
            delete: plan.delete,
        })
    }
}

/// What a publish writes, ready (encoded, size-checked).
enum Prepared {
    /// One ConfigMap.
    Whole(Payload),
    /// Shards (shard name, hash, gzipped document) then the index, then deletions.
    Sharded {
        index: Index,
        write: Vec<(String, String, Vec<u8>)>,
        delete: Vec<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{
        APPLY_QUERY, ApiServerVerifier, mk_config, mk_websocket_config, timeout_after_1s,
    };
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
            ..Limits::default()
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
    const SECRET_PATH: &str =
        "/api/v1/namespaces/portico-system/secrets/portico-gateway-config-credentials";

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
            let first = p.publish(&config, &[]).await.unwrap();
            assert!(matches!(first, Published::Written { .. }));
            // Same config again: no request may reach the API server.
            let second = p.publish(&config, &[]).await.unwrap();
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
            None,
            Payload::Json(config.to_json()),
        );
        let server = verifier.run(move |mut s| async move {
            s.expect(Method::GET, CM_PATH, "").await.ok(&live);
            s
        });
        let p = publisher(client, Limits::default());
        timeout_after_1s(async {
            let out = p.publish(&config, &[]).await.unwrap();
            assert!(matches!(out, Published::Unchanged { .. }));
        })
        .await;
        server.finish().await;
    }

    /// Seeded from a live ConfigMap and credentials Secret that match: nothing is written.
    /// The last credential removed: the Secret is emptied (kept), then the ConfigMap loses its
    /// credentials annotation; the next pass writes nothing.
    #[tokio::test]
    async fn matching_live_credentials_are_kept_and_removed_ones_empty_the_secret() {
        let (client, verifier) = ApiServerVerifier::new();
        let (ws_config, secrets) = mk_websocket_config("s3cret-value-0123456789");
        let data = credentials::collect(&ws_config, &secrets);
        assert_eq!(data.len(), 1);
        let creds_version = credentials::version(&data);
        let live_cm = config_map(
            "portico-system",
            DEFAULT_CONFIG_MAP_NAME,
            &ws_config.content_hash(),
            Some(&creds_version),
            Payload::Json(ws_config.to_json()),
        );
        let live_secret = credentials::secret(
            "portico-system",
            "portico-gateway-config-credentials",
            &data,
        );
        let plain = mk_config();
        let plain_json = plain.to_json();
        let server = verifier.run(move |mut s| async move {
            s.expect(Method::GET, CM_PATH, "").await.ok(&live_cm);
            s.expect(Method::GET, SECRET_PATH, "")
                .await
                .ok(&live_secret);
            // The second publish: no credentials any more.
            let (secret, reply) = s
                .expect(Method::PATCH, SECRET_PATH, APPLY_QUERY)
                .await
                .json_body()
                .await;
            reply.ok(&secret);
            assert_eq!(secret["data"], serde_json::json!({}));
            assert_eq!(
                secret["metadata"]["annotations"][credentials::VERSION_ANNOTATION],
                credentials::version(&BTreeMap::new())
            );
            let (cm, reply) = s
                .expect(Method::PATCH, CM_PATH, APPLY_QUERY)
                .await
                .json_body()
                .await;
            reply.ok(&cm);
            assert_eq!(cm["data"][DATA_KEY], plain_json);
            let annotations = cm["metadata"]["annotations"].as_object().unwrap();
            assert_eq!(annotations.keys().collect::<Vec<_>>(), [VERSION_ANNOTATION]);
            s
        });
        let p = publisher(client, Limits::default());
        timeout_after_1s(async {
            let out = p.publish(&ws_config, &secrets).await.unwrap();
            assert!(matches!(out, Published::Unchanged { .. }), "{out:?}");
            let out = p.publish(&plain, &secrets).await.unwrap();
            assert!(matches!(out, Published::Written { .. }), "{out:?}");
            let out = p.publish(&plain, &secrets).await.unwrap();
            assert!(matches!(out, Published::Unchanged { .. }), "{out:?}");
        })
        .await;
        server.finish().await;
    }

    /// The ConfigMap is current but its credentials Secret was deleted: only the Secret is
    /// written again (the proxies' retry finds it), the ConfigMap is left alone.
    #[tokio::test]
    async fn a_deleted_credentials_secret_is_written_again_without_the_config_map() {
        let (client, verifier) = ApiServerVerifier::new();
        let (ws_config, secrets) = mk_websocket_config("s3cret-value-0123456789");
        let data = credentials::collect(&ws_config, &secrets);
        let live_cm = config_map(
            "portico-system",
            DEFAULT_CONFIG_MAP_NAME,
            &ws_config.content_hash(),
            Some(&credentials::version(&data)),
            Payload::Json(ws_config.to_json()),
        );
        let server = verifier.run(move |mut s| async move {
            s.expect(Method::GET, CM_PATH, "").await.ok(&live_cm);
            s.expect(Method::GET, SECRET_PATH, "").await.not_found();
            let (secret, reply) = s
                .expect(Method::PATCH, SECRET_PATH, APPLY_QUERY)
                .await
                .json_body()
                .await;
            reply.ok(&secret);
            assert_eq!(
                secret["data"]["team-a.chat-management.secretAccessKey"],
                "czNjcmV0LXZhbHVlLTAxMjM0NTY3ODk="
            );
            s
        });
        let p = publisher(client, Limits::default());
        timeout_after_1s(async {
            let out = p.publish(&ws_config, &secrets).await.unwrap();
            assert!(matches!(out, Published::Unchanged { .. }), "{out:?}");
            let out = p.publish(&ws_config, &secrets).await.unwrap();
            assert!(matches!(out, Published::Unchanged { .. }), "{out:?}");
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
            ..Limits::default()
        };
        let p = publisher(client, limits);
        timeout_after_1s(async {
            let out = p.publish(&config, &[]).await.unwrap();
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
            ..Limits::default()
        };
        let p = publisher(client, limits);
        timeout_after_1s(async {
            let err = p.publish(&config, &[]).await.unwrap_err();
            assert!(
                matches!(err, Error::ConfigTooLarge { limit: 20, .. }),
                "{err}"
            );
            assert_eq!(p.current_version().await, None);
        })
        .await;
        server.finish().await;
    }

    fn fleet_config(apis: usize, keys: usize) -> GatewayConfig {
        let out = portico_crds::compile(&crate::fixtures::fleet(apis, keys));
        assert!(
            !out.diagnostics.iter().any(|d| d.is_error()),
            "{:?}",
            out.diagnostics
        );
        out.config
    }

    /// `fleet_config(apis, keys)` with one more key, `k9999`.
    fn fleet_config_plus_one(apis: usize, keys: usize) -> GatewayConfig {
        let mut snap = crate::fixtures::fleet(apis, keys);
        let (k, secret) = crate::fixtures::fleet_key("k9999");
        snap.api_keys.push(k);
        snap.secrets.push(secret);
        portico_crds::compile(&snap).config
    }

    const SHARDED: Limits = Limits {
        gzip_above: GZIP_THRESHOLD,
        max_bytes: MAX_CONFIG_MAP_BYTES,
        shard_bytes: 2048,
    };
    const LIST_QUERY: &str = "?&labelSelector=portico.dev%2Fconfig-of%3Dportico-gateway-config";
    const CMS_PATH: &str = "/api/v1/namespaces/portico-system/configmaps";

    fn shard_path(shard: &str) -> String {
        format!("{CM_PATH}-{shard}")
    }

    /// Expects the apply of `shard` holding `want`; checks its labels and annotation.
    async fn expect_shard(s: &mut ApiServerVerifier, want: &Shard) {
        let (body, reply) = s
            .expect(Method::PATCH, &shard_path(&want.name), APPLY_QUERY)
            .await
            .json_body()
            .await;
        reply.ok(&body);
        let md = &body["metadata"];
        assert_eq!(md["labels"][CONFIG_OF_LABEL], DEFAULT_CONFIG_MAP_NAME);
        assert_eq!(
            md["annotations"][SHARD_VERSION_ANNOTATION],
            want.hash.as_str()
        );
        assert!(body.get("data").is_none(), "{body}");
        let gz: ByteString = serde_json::from_value(body["binaryData"][SHARD_KEY].clone()).unwrap();
        assert_eq!(gunzip(&gz.0), want.to_json());
    }

    /// Expects the apply of the index ConfigMap naming `index`.
    async fn expect_index(s: &mut ApiServerVerifier, index: &Index) {
        let (body, reply) = s
            .expect(Method::PATCH, CM_PATH, APPLY_QUERY)
            .await
            .json_body()
            .await;
        reply.ok(&body);
        assert_eq!(body["data"][INDEX_KEY], index.to_json());
        assert!(body["data"].get(DATA_KEY).is_none(), "{body}");
        assert!(body.get("binaryData").is_none(), "{body}");
        assert_eq!(
            body["metadata"]["annotations"][VERSION_ANNOTATION],
            index.version.as_str()
        );
    }

    #[test]
    fn plan_shards_writes_what_changed_and_deletes_what_the_index_no_longer_names() {
        let (index, _) = distribution::split(&fleet_config(4, 40), 2048);
        assert!(index.shards.len() > 2, "{index:?}");
        let name = "gw";
        let mut live: BTreeMap<String, String> = index
            .shards
            .iter()
            .map(|s| (format!("gw-{}", s.name), s.hash.clone()))
            .collect();
        assert_eq!(
            plan_shards(name, &index, &live),
            ShardPlan {
                write: vec![],
                delete: vec![]
            }
        );
        let first = &index.shards[0].name;
        live.insert(format!("gw-{first}"), "stale".into());
        live.insert("gw-keys-999".into(), "gone".into());
        let second = live.remove(&format!("gw-{}", index.shards[1].name));
        assert!(second.is_some());
        assert_eq!(
            plan_shards(name, &index, &live),
            ShardPlan {
                write: vec![first.clone(), index.shards[1].name.clone()],
                delete: vec!["gw-keys-999".into()]
            }
        );
    }

    #[test]
    fn a_config_is_one_config_map_while_its_stored_size_fits_the_shard_bytes() {
        let json = fleet_config(4, 40).to_json();
        let at = |shard_bytes| Limits {
            shard_bytes,
            ..Limits::default()
        };
        assert!(fits_one(&json, at(json.len())).unwrap());
        assert!(
            !fits_one(&json, at(json.len() - 1)).unwrap(),
            "plain JSON under gzip_above"
        );
        let gz = Limits {
            gzip_above: 100,
            shard_bytes: json.len() / 2,
            ..Limits::default()
        };
        assert!(fits_one(&json, gz).unwrap(), "repetitive routes compress");
        assert!(
            !fits_one(
                &json,
                Limits {
                    shard_bytes: 64,
                    ..gz
                }
            )
            .unwrap()
        );
    }

    /// Sharded: the first publish lists the (absent) shards, writes every shard, then the index;
    /// one key added rewrites one key shard and the index; unchanged writes nothing; a config
    /// that fits again is one ConfigMap, and then every shard is deleted.
    #[tokio::test]
    async fn a_large_config_is_published_as_shards_then_only_what_changed() {
        let (client, verifier) = ApiServerVerifier::new();
        let config = fleet_config(8, 60);
        let more = fleet_config_plus_one(8, 60);
        let (index, shards) = distribution::split(&config, SHARDED.shard_bytes);
        let (index2, shards2) = distribution::split(&more, SHARDED.shard_bytes);
        assert_eq!(index.shards.len(), index2.shards.len());
        let changed: Vec<&Shard> = shards2.iter().filter(|s| !shards.contains(s)).collect();
        assert_eq!(changed.len(), 1);
        assert!(changed[0].name.starts_with("keys-"));
        let changed = changed[0].clone();
        let small = mk_config();
        let small_json = small.to_json();
        let names: Vec<String> = index.shards.iter().map(|s| s.name.clone()).collect();
        let (idx, idx2) = (index.clone(), index2.clone());
        let server = verifier.run(move |mut s| async move {
            s.expect(Method::GET, CM_PATH, "").await.not_found();
            s.expect(Method::GET, CMS_PATH, LIST_QUERY)
                .await
                .ok(&serde_json::json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": "1"}, "items": []}));
            for shard in &shards {
                expect_shard(&mut s, shard).await;
            }
            expect_index(&mut s, &idx).await;
            // One key added.
            expect_shard(&mut s, &changed).await;
            expect_index(&mut s, &idx2).await;
            // Small again: one ConfigMap, then the shards go.
            let cm = s.expect_apply(CM_PATH).await;
            assert_eq!(cm["data"], serde_json::json!({DATA_KEY: small_json}));
            for n in &names {
                s.expect(Method::DELETE, &shard_path(n), "?")
                    .await
                    .ok(&serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}));
            }
            s
        });
        let p = publisher(client, SHARDED);
        timeout_after_1s(async {
            let out = p.publish(&config, &[]).await.unwrap();
            assert!(
                matches!(out, Published::Written { shards, .. } if shards == index.shards.len()),
                "{out:?}"
            );
            assert!(matches!(
                p.publish(&config, &[]).await.unwrap(),
                Published::Unchanged { .. }
            ));
            let out = p.publish(&more, &[]).await.unwrap();
            let Published::Written {
                shards: 1, bytes, ..
            } = out
            else {
                panic!("{out:?}")
            };
            assert!(bytes < more.to_json().len() / 4, "{bytes}");
            assert!(matches!(
                p.publish(&more, &[]).await.unwrap(),
                Published::Unchanged { .. }
            ));
            let out = p.publish(&small, &[]).await.unwrap();
            assert!(
                matches!(out, Published::Written { shards: 0, .. }),
                "{out:?}"
            );
            assert!(matches!(
                p.publish(&small, &[]).await.unwrap(),
                Published::Unchanged { .. }
            ));
        })
        .await;
        server.finish().await;
    }

    /// Another replica (or a resync) seeds from the live index and one list of its shards:
    /// all current, nothing is written; one edited by hand is written again (with the index).
    #[tokio::test]
    async fn seeded_from_a_live_index_nothing_is_written_and_an_edited_shard_is_repaired() {
        let config = fleet_config(8, 60);
        let (index, shards) = distribution::split(&config, SHARDED.shard_bytes);
        let live_cm = named_config_map(
            "portico-system",
            DEFAULT_CONFIG_MAP_NAME,
            &index.version,
            None,
            Content::Index(index.to_json()),
        );
        let live_shards: Vec<ConfigMap> = shards
            .iter()
            .map(|s| {
                shard_config_map(
                    "portico-system",
                    DEFAULT_CONFIG_MAP_NAME,
                    &s.name,
                    &s.hash,
                    vec![],
                )
            })
            .collect();
        let list = |items: &[ConfigMap]| serde_json::json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": "1"}, "items": items});
        for edited in [false, true] {
            let (client, verifier) = ApiServerVerifier::new();
            let mut items = live_shards.clone();
            if edited {
                items[1]
                    .metadata
                    .annotations
                    .as_mut()
                    .unwrap()
                    .insert(SHARD_VERSION_ANNOTATION.into(), "edited".into());
            }
            let (live_cm, list, repaired, idx) = (
                live_cm.clone(),
                list(&items),
                shards[1].clone(),
                index.clone(),
            );
            let server = verifier.run(move |mut s| async move {
                s.expect(Method::GET, CM_PATH, "").await.ok(&live_cm);
                s.expect(Method::GET, CMS_PATH, LIST_QUERY).await.ok(&list);
                if edited {
                    expect_shard(&mut s, &repaired).await;
                    expect_index(&mut s, &idx).await;
                }
                s
            });
            let p = publisher(client, SHARDED);
            timeout_after_1s(async {
                let out = p.publish(&config, &[]).await.unwrap();
                assert_eq!(
                    matches!(out, Published::Written { shards: 1, .. }),
                    edited,
                    "{out:?}"
                );
                assert!(matches!(
                    p.publish(&config, &[]).await.unwrap(),
                    Published::Unchanged { .. }
                ));
            })
            .await;
            server.finish().await;
        }
    }

    /// A shard too large even gzipped refuses the whole publish: nothing is written.
    #[tokio::test]
    async fn a_too_large_shard_publishes_nothing() {
        let (client, verifier) = ApiServerVerifier::new();
        let config = fleet_config(8, 60);
        let server = verifier.run(move |mut s| async move {
            s.expect(Method::GET, CM_PATH, "").await.not_found();
            s.expect(Method::GET, CMS_PATH, LIST_QUERY)
                .await
                .ok(&serde_json::json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {}, "items": []}));
            s
        });
        let p = publisher(
            client,
            Limits {
                max_bytes: 200,
                ..SHARDED
            },
        );
        timeout_after_1s(async {
            let err = p.publish(&config, &[]).await.unwrap_err();
            assert!(
                matches!(err, Error::ConfigTooLarge { limit: 200, .. }),
                "{err}"
            );
        })
        .await;
        server.finish().await;
    }

    /// Published bytes of a one-key change against the whole config, on a fleet generated by
    /// `bench/scale/gen.py fleet ... --out DIR` (the figures in docs/config-distribution.md).
    #[test]
    #[ignore = "measurement: PORTICO_MEASURE_DIR=<a bench/scale/gen.py fleet directory>"]
    #[expect(
        clippy::print_stdout,
        reason = "a measurement: its output is the point"
    )]
    fn measure_published_bytes_of_a_one_key_change() {
        let dir = std::env::var("PORTICO_MEASURE_DIR").expect("PORTICO_MEASURE_DIR");
        let mut resources = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            resources
                .extend(portico_crds::parse_manifests(&f.display().to_string(), &text).unwrap());
        }
        let mut snap = portico_crds::Snapshot::from_resources(resources);
        let before = portico_crds::compile(&snap).config;
        let (mut k, secret) = crate::fixtures::fleet_key("key-new-0");
        k.metadata.namespace = Some("default".into());
        k.spec.usage_plan_refs = vec![portico_crds::api::ObjectReference::local("plan-0")];
        snap.api_keys.push(k);
        snap.secrets.push(portico_crds::Secret {
            namespace: "default".into(),
            ..secret
        });
        let after = portico_crds::compile(&snap).config;
        assert_eq!(after.api_keys.len(), before.api_keys.len() + 1);
        let limits = Limits::default();
        let gz = |json: &str| {
            gzip(
                json,
                SHARD_KEY,
                Limits {
                    max_bytes: usize::MAX,
                    ..limits
                },
            )
            .unwrap()
            .len()
        };
        let whole_json = after.to_json();
        let whole = gz(&whole_json);
        let (i1, s1) = distribution::split(&before, limits.shard_bytes);
        let (i2, s2) = distribution::split(&after, limits.shard_bytes);
        let changed: Vec<&Shard> = s2.iter().filter(|s| !s1.contains(s)).collect();
        let changed_bytes: usize = changed.iter().map(|s| gz(&s.to_json())).sum();
        let all_shards: usize = s2.iter().map(|s| gz(&s.to_json())).sum();
        let index = i2.to_json().len();
        let kinds = |i: &Index, k| i.shards.iter().filter(|s| s.kind == k).count();
        println!(
            "apis {} stages {} keys {}: whole config {} B JSON, {} B gzipped; sharded at {} B: {} shards (apis {}, keys {}, plans {}), {} B gzipped in all, index {} B; one key added: {} shard(s) {:?} = {} B + index {} B = {} B published ({:.2}% of the whole gzipped); shard counts unchanged: {}",
            after.apis.len(),
            after.stages.len(),
            after.api_keys.len(),
            whole_json.len(),
            whole,
            limits.shard_bytes,
            i2.shards.len(),
            kinds(&i2, distribution::ShardKind::Apis),
            kinds(&i2, distribution::ShardKind::Keys),
            kinds(&i2, distribution::ShardKind::Plans),
            all_shards,
            index,
            changed.len(),
            changed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            changed_bytes,
            index,
            changed_bytes + index,
            100.0 * (changed_bytes + index) as f64 / whole as f64,
            i1.shards.len() == i2.shards.len(),
        );
    }
}
