//! `Stage`: serves one `RestApi` at a base path and/or on hostnames, with stage variables.

// Each `printcolumn(..)` repeats `type_`, which clippy mistakes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use super::common::{Condition, LocalObjectReference, ObjectReference, ThrottleSettings};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Desired state of a `Stage`.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "portico.dev",
    version = "v1alpha1",
    kind = "Stage",
    plural = "stages",
    namespaced,
    status = "StageStatus",
    derive = "PartialEq",
    shortname = "stg",
    category = "portico",
    doc = "A deployment stage of a RestApi: base path, hostnames and stage variables.",
    printcolumn(name = "API", type_ = "string", json_path = ".spec.restApiRef.name"),
    printcolumn(name = "Stage", type_ = "string", json_path = ".spec.stageName"),
    printcolumn(name = "BasePath", type_ = "string", json_path = ".spec.basePath"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.invokeUrls[0]"),
    printcolumn(
        name = "Canary",
        type_ = "string",
        json_path = ".spec.canarySettings.restApiRef.name"
    ),
    printcolumn(
        name = "Canary%",
        type_ = "number",
        json_path = ".spec.canarySettings.percentTraffic"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StageSpec {
    /// The RestApi this stage serves; another namespace's only when it allows references
    /// from this one (annotation `portico.dev/allow-references-from`).
    pub rest_api_ref: ObjectReference,
    /// Stage name (`$context.stage`), `[A-Za-z0-9_-]+`, or `$default` for an HTTP API (served
    /// at the root); defaults to `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_name: Option<String>,
    /// Base path the API is served under; defaults to `/<stageName>` (`/` for `$default`); `/`
    /// is the root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_path: Option<String>,
    /// Hostnames the stage answers on; empty means any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Stage variables: names `[A-Za-z0-9_]+`, values at most 512 characters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// Free-form description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Access log settings; default: AWS-like JSON lines, enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log_settings: Option<AccessLogSettings>,
    /// Stage-wide throttle for every caller (a token bucket; both limits required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<ThrottleSettings>,
    /// Per-method settings keyed by `<resource path>/<METHOD>` (e.g. `/content/{id}/GET`), or
    /// `*/*` for the stage-wide caching defaults; `throttle` is enforced for every caller; the
    /// caching fields apply when `cacheClusterEnabled` is `true` (only GET methods are cached
    /// unless their own entry sets `cachingEnabled: true`); `metricsEnabled` is not supported
    /// yet (a warning; ignored).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub method_settings: BTreeMap<String, MethodSetting>,
    /// Whether the stage has a response cache (REST APIs only; default `false`). Flush it on
    /// every replica with `kubectl annotate stage <name> portico.dev/flush-cache="$(date +%s)"
    /// --overwrite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_cluster_enabled: Option<bool>,
    /// The cache's size in GB, as AWS names it: `"0.5"` (default), `"1.6"`, `"6.1"`, `"13.5"`,
    /// `"28.4"`, `"58.2"`, `"118"` or `"237"` (a string). It is the memory budget of the
    /// stage's cache in each proxy process (without Redis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_cluster_size: Option<String>,
    /// The cache's memory budget in bytes (65536..=1099511627776), instead of
    /// `cacheClusterSize` (e.g. for a laptop or a test).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_cluster_size_bytes: Option<i64>,
    /// A canary release: a share of the stage's requests served by another RestApi (or the
    /// same one with other stage variables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_settings: Option<CanarySettings>,
}

/// Access log settings of a stage.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessLogSettings {
    /// Line format with `$context.*` variables; defaults to an AWS-like JSON line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// `false` turns access logging off for the stage (default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// Settings of one method (or `*/*`, the caching defaults) in a stage: `throttle` and the
/// caching fields are enforced, `metricsEnabled` is not supported yet.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MethodSetting {
    /// Method throttle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<ThrottleSettings>,
    /// Whether the method's answers are cached (needs `cacheClusterEnabled`). Default: `*/*`'s
    /// (itself default `true`) for GET methods, `false` for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caching_enabled: Option<bool>,
    /// Seconds an answer is cached, 0..=3600 (default: `*/*`'s, else 300); 0 caches nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_ttl_in_seconds: Option<i64>,
    /// Whether cached answers are encrypted at rest in the shared store (default `false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_data_encrypted: Option<bool>,
    /// Whether `Cache-Control: max-age=0` invalidates only for callers whose authorizer allows
    /// `execute-api:InvalidateCache` (default `true`); `false`: any caller may invalidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_authorization_for_cache_control: Option<bool>,
    /// What a caller that may not invalidate gets for `Cache-Control: max-age=0`:
    /// `FAIL_WITH_403`, `SUCCEED_WITH_RESPONSE_HEADER` (default: the cached answer plus a
    /// `Warning` header) or `SUCCEED_WITHOUT_RESPONSE_HEADER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unauthorized_cache_control_header_strategy: Option<UnauthorizedCacheControlHeaderStrategy>,
    /// Whether per-method metrics are recorded: not supported yet (a warning; ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_enabled: Option<bool>,
}

impl MethodSetting {
    /// True when any caching field is set.
    pub fn sets_caching(&self) -> bool {
        self.caching_enabled.is_some()
            || self.cache_ttl_in_seconds.is_some()
            || self.cache_data_encrypted.is_some()
            || self.require_authorization_for_cache_control.is_some()
            || self.unauthorized_cache_control_header_strategy.is_some()
    }
}

/// What a caller that may not invalidate the cache gets for `Cache-Control: max-age=0`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnauthorizedCacheControlHeaderStrategy {
    /// 403 Forbidden.
    #[serde(rename = "FAIL_WITH_403")]
    FailWith403,
    /// The cached answer, plus a `Warning` response header (AWS's default).
    #[serde(rename = "SUCCEED_WITH_RESPONSE_HEADER")]
    SucceedWithResponseHeader,
    /// The cached answer.
    #[serde(rename = "SUCCEED_WITHOUT_RESPONSE_HEADER")]
    SucceedWithoutResponseHeader,
}

/// The annotation whose change flushes a stage's response cache on every replica (any value;
/// e.g. `kubectl annotate stage <name> portico.dev/flush-cache="$(date +%s)" --overwrite`).
pub const FLUSH_CACHE_ANNOTATION: &str = "portico.dev/flush-cache";

/// Canary settings of a stage: not supported yet (a warning; ignored).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanarySettings {
    /// Percentage of requests (0.0..100.0, decimals allowed) sent to the canary, drawn per
    /// request; default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent_traffic: Option<f64>,
    /// Stage variables overridden for canary requests (each must be a variable of the
    /// stage).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stage_variable_overrides: BTreeMap<String, String>,
    /// Whether canary requests use the stage's response cache (default `false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_stage_cache: Option<bool>,
    /// The RestApi the canary serves (same namespace and protocol); defaults to the stage's
    /// own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest_api_ref: Option<LocalObjectReference>,
    /// Sticky assignment (past AWS): a hash of the caller picks the side, so a caller stays on
    /// one side, and raising `percentTraffic` only moves callers from the base to the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stickiness: Option<CanaryStickiness>,
    /// Forced assignment for testing (past AWS): a request header whose value `always` or
    /// `never` picks the side regardless of the percentage. Off unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_header: Option<CanaryForceHeader>,
}

/// What identifies a caller for sticky canary assignment.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryStickiness {
    /// `sourceIp`, `apiKey` (the `x-api-key` header), `header` or `cookie` (named by `name`).
    pub by: String,
    /// The header or cookie name (`by: header` / `cookie`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The header that forces a request to one side.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanaryForceHeader {
    /// Header name, e.g. `x-portico-canary`; values `always` (canary) or `never` (base).
    pub name: String,
    /// Honour it only on methods that have an authorizer (the caller must pass it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_authorizer: Option<bool>,
}

/// Observed state of a `Stage`, written by the operator.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StageStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions (`Accepted`, `Ready`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// URLs the stage is reachable at, e.g. `http://api.example.com/dev`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invoke_urls: Vec<String>,
    /// Content hash of what serves this stage: its compiled Stage, its API (and its canary's),
    /// and the usage plans naming it with their keys. It changes when, and only when, this
    /// stage's served config changes, so another tenant's change writes no status here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<String>,
}
