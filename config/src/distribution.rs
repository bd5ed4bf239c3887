//! Distributing a [`GatewayConfig`] too large for one object: shards under a small index
//! (`docs/config-distribution.md`). Pure: no Kubernetes types; the operator publishes each
//! [`Shard`] and the [`Index`] as ConfigMaps, the proxy reads them back.
//!
//! ```text
//!  split(config, target) ─> Index { schemaVersion, version = config.content_hash(),
//!                                   shards: [{ name, kind, hash }] }
//!                           Shard "apis-<n>"  : the APIs whose id hashes to n, with their stages
//!                           Shard "keys-<n>"  : the API keys whose id hashes to n
//!                           Shard "plans-<n>" : the usage plans whose id hashes to n
//!  assemble(index, shards) ─> every listed shard present with its hash? ─> merge, sort by id
//!                           ─> content_hash == index.version? ─> the same GatewayConfig
//! ```
//!
//! A shard's document is a partial `GatewayConfig` (same JSON schema, only its part filled);
//! its hash is that document's [`GatewayConfig::content_hash`]. The partition is stable: an
//! object's shard is a SHA-256 of its id modulo the shard count of its kind, and each count is
//! a power of two chosen from the kind's JSON size (`ceil(bytes / target)` rounded up), so a
//! one-object change moves nothing else and the counts change only when a kind's size crosses a
//! power of two of the target (then that kind is re-partitioned once).
//!
//! Entry points: [`split`], [`assemble`], [`Shard::decode`].

use crate::{ApiKey, GatewayConfig, SCHEMA_VERSION, Stage, UsagePlan};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// The index schema version this build writes and reads.
pub const INDEX_SCHEMA_VERSION: u32 = 1;

/// Most shards of one kind (a bound on what an index may name).
pub const MAX_SHARDS_PER_KIND: usize = 4096;

/// What a shard holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardKind {
    /// APIs and the stages serving them.
    Apis,
    /// API keys (hashes only).
    Keys,
    /// Usage plans.
    Plans,
}

impl ShardKind {
    /// `apis`, `keys` or `plans`: the prefix of the shard names.
    pub fn as_str(self) -> &'static str {
        match self {
            ShardKind::Apis => "apis",
            ShardKind::Keys => "keys",
            ShardKind::Plans => "plans",
        }
    }

    /// The name of shard `n` of this kind, e.g. `keys-3`.
    pub fn shard_name(self, n: usize) -> String {
        format!("{}-{n}", self.as_str())
    }
}

/// The index: what a complete, consistent set of shards is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// [`INDEX_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The whole config's [`GatewayConfig::content_hash`] (the fleet version).
    pub version: String,
    /// The shards, sorted by name.
    pub shards: Vec<ShardRef>,
}

/// One shard as the index names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardRef {
    /// Name suffix (`apis-0`, `keys-12`, ...); the ConfigMap is `<index name>-<name>`.
    pub name: String,
    /// What it holds.
    pub kind: ShardKind,
    /// The shard document's content hash.
    pub hash: String,
}

/// One shard: a partial config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Name suffix, as in the index.
    pub name: String,
    /// What it holds.
    pub kind: ShardKind,
    /// Its part of the config (the other collections empty).
    pub config: GatewayConfig,
    /// `config.content_hash()`.
    pub hash: String,
}

/// Why an index or a set of shards cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DistributionError {
    /// The index names a shard that is not there.
    #[error("shard {name} named by the index is missing")]
    MissingShard {
        /// Shard name.
        name: String,
    },
    /// A shard is there but holds another version than the index names.
    #[error("shard {name} has hash {found}, the index names {expected}")]
    ShardHash {
        /// Shard name.
        name: String,
        /// What the index names.
        expected: String,
        /// What the shard holds.
        found: String,
    },
    /// A shard holds objects of another kind than its name says.
    #[error("shard {name} ({kind}) holds {what}")]
    ShardContent {
        /// Shard name.
        name: String,
        /// Its kind.
        kind: &'static str,
        /// What it should not hold.
        what: &'static str,
    },
    /// The merged shards are not the config the index names.
    #[error("the shards assemble to version {found}, the index names {expected}")]
    Version {
        /// The index's version.
        expected: String,
        /// The assembled config's content hash.
        found: String,
    },
    /// A document of another schema version.
    #[error("{what} schemaVersion {found} is not supported (this build reads {expected})")]
    SchemaVersion {
        /// `index` or `shard <name>`.
        what: String,
        /// Found.
        found: u32,
        /// Read by this build.
        expected: u32,
    },
    /// Not valid JSON of the schema.
    #[error("cannot decode {what}: {message}")]
    Decode {
        /// `index` or `shard <name>`.
        what: String,
        /// The JSON error.
        message: String,
    },
    /// The index is malformed (a duplicate name, a name not of its kind, too many shards).
    #[error("invalid index: {0}")]
    InvalidIndex(String),
}

impl Index {
    /// Canonical JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("the index serializes: strings and numbers only")
    }

    /// Decodes and checks the index: schema version, unique names of the form `<kind>-<n>`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DistributionError> {
        let index: Index =
            serde_json::from_slice(bytes).map_err(|e| DistributionError::Decode {
                what: "index".into(),
                message: e.to_string(),
            })?;
        if index.schema_version != INDEX_SCHEMA_VERSION {
            return Err(DistributionError::SchemaVersion {
                what: "index".into(),
                found: index.schema_version,
                expected: INDEX_SCHEMA_VERSION,
            });
        }
        let mut names = BTreeSet::new();
        for s in &index.shards {
            if !names.insert(s.name.as_str()) {
                return Err(DistributionError::InvalidIndex(format!(
                    "shard {} is listed twice",
                    s.name
                )));
            }
            let ok = s
                .name
                .strip_prefix(s.kind.as_str())
                .and_then(|r| r.strip_prefix('-'))
                .is_some_and(|n| n.parse::<usize>().is_ok_and(|n| n < MAX_SHARDS_PER_KIND));
            if !ok {
                return Err(DistributionError::InvalidIndex(format!(
                    "shard name {:?} is not {}-<n> with n < {MAX_SHARDS_PER_KIND}",
                    s.name,
                    s.kind.as_str()
                )));
            }
        }
        Ok(index)
    }
}

impl Shard {
    /// A shard of `config` (hash computed now).
    pub fn new(name: String, kind: ShardKind, config: GatewayConfig) -> Self {
        let hash = config.content_hash();
        Shard {
            name,
            kind,
            config,
            hash,
        }
    }

    /// The shard document (canonical JSON of its partial config).
    pub fn to_json(&self) -> String {
        self.config.to_json()
    }

    /// Decodes shard `name`'s document (its kind from its name) and hashes it. The content is
    /// not validated alone (a key names plans in another shard): [`assemble`] checks the whole.
    pub fn decode(name: &str, kind: ShardKind, bytes: &[u8]) -> Result<Self, DistributionError> {
        let what = || format!("shard {name}");
        let config: GatewayConfig =
            serde_json::from_slice(bytes).map_err(|e| DistributionError::Decode {
                what: what(),
                message: e.to_string(),
            })?;
        if config.schema_version != SCHEMA_VERSION {
            return Err(DistributionError::SchemaVersion {
                what: what(),
                found: config.schema_version,
                expected: SCHEMA_VERSION,
            });
        }
        let shard = Shard::new(name.to_string(), kind, config);
        shard.check_kind()?;
        Ok(shard)
    }

    /// Only the collections of its kind are filled.
    fn check_kind(&self) -> Result<(), DistributionError> {
        let c = &self.config;
        let stray = match self.kind {
            ShardKind::Apis => (!c.usage_plans.is_empty())
                .then_some("usage plans")
                .or((!c.api_keys.is_empty()).then_some("API keys")),
            ShardKind::Keys => (!c.apis.is_empty() || !c.stages.is_empty())
                .then_some("APIs or stages")
                .or((!c.usage_plans.is_empty()).then_some("usage plans")),
            ShardKind::Plans => (!c.apis.is_empty() || !c.stages.is_empty())
                .then_some("APIs or stages")
                .or((!c.api_keys.is_empty()).then_some("API keys")),
        };
        match stray {
            Some(what) => Err(DistributionError::ShardContent {
                name: self.name.clone(),
                kind: self.kind.as_str(),
                what,
            }),
            None => Ok(()),
        }
    }
}

/// The bucket of `id` among `n` (a power of two): the first 8 bytes of SHA-256(id).
pub fn bucket(id: &str, n: usize) -> usize {
    let d = Sha256::digest(id.as_bytes());
    let v = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
    (v % n as u64) as usize
}

/// The shard count for `bytes` of JSON at `target` bytes a shard: a power of two, at least 1.
pub fn shard_count(bytes: usize, target: usize) -> usize {
    bytes
        .div_ceil(target.max(1))
        .max(1)
        .next_power_of_two()
        .min(MAX_SHARDS_PER_KIND)
}

fn json_len<T: Serialize>(v: &T) -> usize {
    serde_json::to_string(v)
        .expect("config values serialize")
        .len()
}

/// Splits `config` into shards of about `target_shard_bytes` of JSON each (a kind with no
/// objects has no shard), and the index naming them. [`assemble`] rebuilds `config` exactly.
pub fn split(config: &GatewayConfig, target_shard_bytes: usize) -> (Index, Vec<Shard>) {
    let part = || GatewayConfig {
        schema_version: config.schema_version,
        ..GatewayConfig::default()
    };
    let mut shards = Vec::new();

    // APIs with their stages (by the stage's apiId; a stage naming no API of the config goes
    // where that API would).
    if !config.apis.is_empty() || !config.stages.is_empty() {
        let bytes = json_len(&config.apis) + json_len(&config.stages);
        let n = shard_count(bytes, target_shard_bytes);
        let mut parts: Vec<GatewayConfig> = (0..n).map(|_| part()).collect();
        for a in &config.apis {
            parts[bucket(&a.id, n)].apis.push(a.clone());
        }
        for s in &config.stages {
            parts[bucket(&s.api_id, n)].stages.push(s.clone());
        }
        push_parts(&mut shards, ShardKind::Apis, parts);
    }
    if !config.usage_plans.is_empty() {
        let n = shard_count(json_len(&config.usage_plans), target_shard_bytes);
        let mut parts: Vec<GatewayConfig> = (0..n).map(|_| part()).collect();
        for p in &config.usage_plans {
            parts[bucket(&p.id, n)].usage_plans.push(p.clone());
        }
        push_parts(&mut shards, ShardKind::Plans, parts);
    }
    if !config.api_keys.is_empty() {
        let n = shard_count(json_len(&config.api_keys), target_shard_bytes);
        let mut parts: Vec<GatewayConfig> = (0..n).map(|_| part()).collect();
        for k in &config.api_keys {
            parts[bucket(&k.id, n)].api_keys.push(k.clone());
        }
        push_parts(&mut shards, ShardKind::Keys, parts);
    }
    shards.sort_by(|a, b| a.name.cmp(&b.name));
    let index = Index {
        schema_version: INDEX_SCHEMA_VERSION,
        version: config.content_hash(),
        shards: shards
            .iter()
            .map(|s| ShardRef {
                name: s.name.clone(),
                kind: s.kind,
                hash: s.hash.clone(),
            })
            .collect(),
    };
    (index, shards)
}

/// Every bucket is a shard, empty ones too: the index then names every `n` below the count, so
/// a shard's name says where an object is without reading the others.
fn push_parts(out: &mut Vec<Shard>, kind: ShardKind, parts: Vec<GatewayConfig>) {
    for (i, p) in parts.into_iter().enumerate() {
        // The input was sorted by id and buckets keep that order.
        out.push(Shard::new(kind.shard_name(i), kind, p));
    }
}

/// Rebuilds the config `index` names from its shards (`shard` finds each listed one, `None`
/// when absent): every listed shard must be present with the listed hash, and the merged,
/// id-sorted config must have the index's version. The result is not `validate()`d here (the
/// caller's loader does).
pub fn assemble<'a>(
    index: &Index,
    shard: impl Fn(&ShardRef) -> Option<&'a Shard>,
) -> Result<GatewayConfig, DistributionError> {
    let mut config = GatewayConfig::empty();
    let mut apis = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    let mut plans: Vec<UsagePlan> = Vec::new();
    let mut keys: Vec<ApiKey> = Vec::new();
    for r in &index.shards {
        let s = shard(r).ok_or_else(|| DistributionError::MissingShard {
            name: r.name.clone(),
        })?;
        if s.hash != r.hash {
            return Err(DistributionError::ShardHash {
                name: r.name.clone(),
                expected: r.hash.clone(),
                found: s.hash.clone(),
            });
        }
        if s.kind != r.kind {
            return Err(DistributionError::ShardContent {
                name: r.name.clone(),
                kind: r.kind.as_str(),
                what: s.kind.as_str(),
            });
        }
        s.check_kind()?;
        apis.extend(s.config.apis.iter().cloned());
        stages.extend(s.config.stages.iter().cloned());
        plans.extend(s.config.usage_plans.iter().cloned());
        keys.extend(s.config.api_keys.iter().cloned());
    }
    apis.sort_by(|a, b| a.id.cmp(&b.id));
    stages.sort_by(|a, b| a.id.cmp(&b.id));
    plans.sort_by(|a, b| a.id.cmp(&b.id));
    keys.sort_by(|a, b| a.id.cmp(&b.id));
    config.apis = apis;
    config.stages = stages;
    config.usage_plans = plans;
    config.api_keys = keys;
    let found = config.content_hash();
    if found != index.version {
        return Err(DistributionError::Version {
            expected: index.version.clone(),
            found,
        });
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Api, ApiKeySource, KeyHash, ObjectRef, PlanStage, Protocol, Route};
    use std::collections::BTreeMap;

    fn api(i: usize) -> Api {
        let id = format!("restapi/t/a{i:04}");
        Api {
            id: id.clone(),
            source: ObjectRef::new("RestApi", "t", format!("a{i:04}")),
            name: format!("a{i:04}"),
            protocol: Protocol::Rest,
            routes: vec![Route {
                api_key_required: true,
                ..crate::document::tests::mock_get_route(&id, "/pets", "ok")
            }],
            gateway_responses: BTreeMap::new(),
            max_payload_bytes: 1024,
            authorizers: BTreeMap::new(),
            api_key_source: ApiKeySource::Header,
            binary_media_types: Vec::new(),
            minimum_compression_size: None,
            models: BTreeMap::new(),
            cors: None,
            websocket: None,
        }
    }

    fn stage(i: usize) -> Stage {
        Stage {
            id: format!("stage/t/s{i:04}"),
            source: ObjectRef::new("Stage", "t", format!("s{i:04}")),
            api_id: format!("restapi/t/a{i:04}"),
            name: "prod".into(),
            base_path: format!("/a{i:04}"),
            hosts: Vec::new(),
            variables: BTreeMap::from([("v".to_string(), "1".to_string())]),
            access_log: None,
            throttle: None,
            method_throttles: BTreeMap::new(),
            canary: None,
            cache: None,
        }
    }

    fn key(i: usize) -> ApiKey {
        ApiKey {
            id: format!("apikey/t/k{i:05}"),
            source: ObjectRef::new("ApiKey", "t", format!("k{i:05}")),
            hash: KeyHash::of(format!("value-{i}").as_bytes()),
            enabled: true,
            usage_plans: vec!["usageplan/t/p".into()],
        }
    }

    fn fleet(apis: usize, keys: usize) -> GatewayConfig {
        let mut c = GatewayConfig::empty();
        c.apis = (0..apis).map(api).collect();
        c.stages = (0..apis).map(stage).collect();
        if keys > 0 {
            c.usage_plans = vec![UsagePlan {
                id: "usageplan/t/p".into(),
                source: ObjectRef::new("UsagePlan", "t", "p"),
                throttle: None,
                quota: None,
                stages: c
                    .stages
                    .iter()
                    .map(|s| PlanStage {
                        stage_id: s.id.clone(),
                        method_throttles: BTreeMap::new(),
                    })
                    .collect(),
            }];
        }
        c.api_keys = (0..keys).map(key).collect();
        c.validate().unwrap();
        c
    }

    fn by_name(shards: Vec<Shard>) -> BTreeMap<String, Shard> {
        shards.into_iter().map(|s| (s.name.clone(), s)).collect()
    }

    fn hashes(index: &Index) -> BTreeMap<String, String> {
        index
            .shards
            .iter()
            .map(|s| (s.name.clone(), s.hash.clone()))
            .collect()
    }

    /// The shards whose hash differs (or that exist on one side only).
    fn changed(a: &Index, b: &Index) -> Vec<String> {
        let (a, b) = (hashes(a), hashes(b));
        let names: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        names
            .into_iter()
            .filter(|n| a.get(*n) != b.get(*n))
            .cloned()
            .collect()
    }

    #[test]
    fn a_split_config_assembles_to_exactly_the_input() {
        let c = fleet(40, 300);
        let (index, shards) = split(&c, 4096);
        assert_eq!(index.version, c.content_hash());
        let kinds: BTreeSet<ShardKind> = index.shards.iter().map(|s| s.kind).collect();
        assert_eq!(kinds.len(), 3, "{index:?}");
        let keys = index
            .shards
            .iter()
            .filter(|s| s.kind == ShardKind::Keys)
            .count();
        assert!(keys >= 8 && keys.is_power_of_two(), "{keys}");
        for s in &shards {
            assert!(
                s.to_json().len() < 2 * 4096,
                "{} is {}",
                s.name,
                s.to_json().len()
            );
        }
        // Through JSON, as published and read back.
        let index = Index::from_json(index.to_json().as_bytes()).unwrap();
        let shards: BTreeMap<String, Shard> = shards
            .iter()
            .map(|s| {
                let d = Shard::decode(&s.name, s.kind, s.to_json().as_bytes()).unwrap();
                (s.name.clone(), d)
            })
            .collect();
        let back = assemble(&index, |r| shards.get(&r.name)).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.content_hash(), c.content_hash());
        // Deterministic.
        assert_eq!(split(&c, 4096).0, index);
    }

    #[test]
    fn adding_one_key_changes_one_key_shard_and_the_index() {
        let c = fleet(40, 300);
        let mut more = c.clone();
        more.api_keys.push(key(300));
        let (a, _) = split(&c, 4096);
        let (b, shards) = split(&more, 4096);
        assert_eq!(a.shards.len(), b.shards.len(), "same shard counts");
        let changed = changed(&a, &b);
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert!(changed[0].starts_with("keys-"), "{changed:?}");
        assert_ne!(a.version, b.version);
        let shard = shards.iter().find(|s| s.name == changed[0]).unwrap();
        assert!(
            shard
                .config
                .api_keys
                .iter()
                .any(|k| k.id == "apikey/t/k00300")
        );
    }

    #[test]
    fn changing_a_stage_variable_changes_only_that_apis_shard() {
        let c = fleet(40, 300);
        let mut edited = c.clone();
        edited.stages[17].variables.insert("v".into(), "2".into());
        let (a, _) = split(&c, 4096);
        let (b, shards) = split(&edited, 4096);
        let changed = changed(&a, &b);
        assert_eq!(changed.len(), 1, "{changed:?}");
        let shard = shards.iter().find(|s| s.name == changed[0]).unwrap();
        assert_eq!(shard.kind, ShardKind::Apis);
        assert!(shard.config.stages.iter().any(|s| s.id == "stage/t/s0017"));
        assert!(shard.config.apis.iter().any(|a| a.id == "restapi/t/a0017"));
    }

    #[test]
    fn a_missing_or_stale_shard_is_an_error_naming_it() {
        let c = fleet(10, 50);
        let (index, shards) = split(&c, 1024);
        let mut shards = by_name(shards);
        let victim = index.shards[index.shards.len() / 2].name.clone();
        let good = shards.remove(&victim).unwrap();
        let e = assemble(&index, |r| shards.get(&r.name)).unwrap_err();
        assert_eq!(
            e,
            DistributionError::MissingShard {
                name: victim.clone()
            }
        );
        assert!(e.to_string().contains(&victim));

        // The shard of another version (its content changed; the index is the old one).
        let mut stale = good.config.clone();
        if stale.api_keys.is_empty() && stale.apis.is_empty() && stale.usage_plans.is_empty() {
            stale.api_keys.push(key(999));
        } else {
            stale.api_keys.clear();
            stale.apis.clear();
            stale.usage_plans.clear();
        }
        shards.insert(victim.clone(), Shard::new(victim.clone(), good.kind, stale));
        let e = assemble(&index, |r| shards.get(&r.name)).unwrap_err();
        assert!(
            matches!(&e, DistributionError::ShardHash { name, .. } if *name == victim),
            "{e}"
        );
        assert!(e.to_string().contains(&victim), "{e}");

        shards.insert(victim, good);
        assert_eq!(assemble(&index, |r| shards.get(&r.name)).unwrap(), c);
        // An index whose version is not what the shards make.
        let mut wrong = index.clone();
        wrong.version = "0".repeat(64);
        assert!(matches!(
            assemble(&wrong, |r| shards.get(&r.name)),
            Err(DistributionError::Version { .. })
        ));
    }

    #[test]
    fn empty_kinds_have_no_shard_and_still_round_trip() {
        for c in [GatewayConfig::empty(), fleet(5, 0), {
            let mut k = fleet(0, 0);
            k.api_keys = (0..20).map(key).collect();
            k.api_keys.iter_mut().for_each(|k| k.usage_plans.clear());
            k
        }] {
            let (index, shards) = split(&c, 1024);
            assert_eq!(
                index.shards.iter().any(|s| s.kind == ShardKind::Keys),
                !c.api_keys.is_empty()
            );
            assert_eq!(
                index.shards.iter().any(|s| s.kind == ShardKind::Apis),
                !c.apis.is_empty()
            );
            let shards = by_name(shards);
            assert_eq!(assemble(&index, |r| shards.get(&r.name)).unwrap(), c);
        }
    }

    #[test]
    fn shard_counts_are_powers_of_two_and_buckets_are_stable() {
        assert_eq!(shard_count(0, 100), 1);
        assert_eq!(shard_count(100, 100), 1);
        assert_eq!(shard_count(101, 100), 2);
        assert_eq!(shard_count(300, 100), 4);
        assert_eq!(shard_count(usize::MAX / 2, 1), MAX_SHARDS_PER_KIND);
        // Fixed vectors: a change of hash function would re-partition every fleet.
        assert_eq!(bucket("apikey/t/k00000", 1), 0);
        let b: Vec<usize> = (0..4)
            .map(|i| bucket(&format!("apikey/t/k{i:05}"), 16))
            .collect();
        assert_eq!(
            b,
            (0..4)
                .map(|i| {
                    let d = Sha256::digest(format!("apikey/t/k{i:05}").as_bytes());
                    (d[7] & 15) as usize
                })
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn bad_indexes_and_shards_are_refused_naming_what() {
        let (index, shards) = split(&fleet(2, 3), 100_000);
        let json = index.to_json();
        let e = Index::from_json(
            json.replace("\"schemaVersion\":1", "\"schemaVersion\":9")
                .as_bytes(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("index schemaVersion 9"), "{e}");
        let e = Index::from_json(json.replace("keys-0", "keys-x").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("\"keys-x\""), "{e}");
        let mut twice = index.clone();
        twice.shards.push(twice.shards[0].clone());
        let e = Index::from_json(twice.to_json().as_bytes()).unwrap_err();
        assert!(e.to_string().contains("listed twice"), "{e}");
        let keys = shards.iter().find(|s| s.kind == ShardKind::Keys).unwrap();
        let e = Shard::decode("apis-0", ShardKind::Apis, keys.to_json().as_bytes()).unwrap_err();
        assert!(
            e.to_string().contains("shard apis-0 (apis) holds API keys"),
            "{e}"
        );
        let e = Shard::decode("keys-0", ShardKind::Keys, b"{").unwrap_err();
        assert!(
            e.to_string().starts_with("cannot decode shard keys-0"),
            "{e}"
        );
    }
}
