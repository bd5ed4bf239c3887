//! Phase "usage plans": Stage throttles (`throttle`, `methodSettings[..].throttle`),
//! UsagePlans and ApiKeys.
//!
//! Runs last: it needs the compiled stages (a plan's `apiStages[].stageRef` must name a
//! served stage) and their APIs' routes (method throttles are keyed `<path>/<VERB>`).
//!
//! ```text
//!  Stage.spec.throttle / methodSettings ─> Stage { throttle, method_throttles[route id] }
//!  UsagePlan ─> UsagePlan { throttle, quota, stages[{stage id, method_throttles}] }
//!  ApiKey + Secret ─> ApiKey { hash: SHA-256 of the value, enabled, usage_plans[] }
//! ```
//!
//! Fail closed: a plan with an invalid throttle or quota is not served (its keys are then
//! refused on its stages: 403); a key whose Secret is missing is not served. A bad stage
//! throttle is dropped with an error (the stage still serves: it protects backends, not
//! callers). The key value itself is hashed here and never leaves this function.

use super::Diags;
use super::normalise::{Inputs, permitted};
use crate::Snapshot;
use crate::api::ThrottleSettings;
use crate::api::usage_plan::QuotaPeriod as QuotaPeriodSpec;
use crate::reasons;
use crate::snapshot::Secret;
use portico_config::{
    Api, ApiKey, GatewayConfig, KeyHash, ObjectRef, PlanStage, Protocol, Quota, QuotaPeriod, Route,
    Throttle, UsagePlan,
};
use std::collections::BTreeMap;

/// `usageplan/<ns>/<name>`.
pub(crate) fn plan_id(namespace: &str, name: &str) -> String {
    format!("usageplan/{namespace}/{name}")
}

/// `apikey/<ns>/<name>`.
pub(crate) fn key_id(namespace: &str, name: &str) -> String {
    format!("apikey/{namespace}/{name}")
}

/// Compiles stage throttles into `config.stages`, then plans and keys into `config`.
pub(crate) fn compile_usage(
    inputs: &Inputs<'_>,
    snapshot: &Snapshot,
    config: &mut GatewayConfig,
    diags: &mut Diags,
) {
    stage_throttles(inputs, config, diags);
    config.usage_plans = compile_plans(inputs, snapshot, config, diags);
    config.api_keys = compile_keys(inputs, snapshot, config, diags);
}

/// A `ThrottleSettings` as a bucket; both limits are required and must be positive.
pub(crate) fn throttle(
    obj: &ObjectRef,
    field: &str,
    t: &ThrottleSettings,
    diags: &mut Diags,
) -> Option<Throttle> {
    match (t.rate_limit, t.burst_limit) {
        (Some(rate), Some(burst)) if rate.is_finite() && rate > 0.0 && burst >= 1 => {
            Some(Throttle {
                rate_limit: rate,
                burst_limit: u64::try_from(burst).expect("checked positive"),
            })
        }
        (rate, burst) => {
            diags.error(
                obj,
                field,
                reasons::INVALID_LIMIT,
                format!(
                    "throttle needs rateLimit > 0 and burstLimit >= 1 (got rateLimit {}, burstLimit {})",
                    rate.map_or("unset".into(), |r| r.to_string()),
                    burst.map_or("unset".into(), |b| b.to_string()),
                ),
            );
            None
        }
    }
}

/// The route of `<resource path>/<VERB>` (a `methodSettings` key) in `api`, if any; in a
/// WebSocket API the key is the route key (`$connect`, `sendmessage`).
pub(crate) fn route_for<'a>(api: &'a Api, key: &str) -> Option<&'a Route> {
    if api.protocol == Protocol::WebSocket {
        return api.routes.iter().find(|r| r.route_key == key);
    }
    let (path, verb) = key.rsplit_once('/')?;
    let path = if path.is_empty() { "/" } else { path };
    api.routes
        .iter()
        .find(|r| r.resource_path == path && r.http_method == verb)
}

/// The route id of `<resource path>/<VERB>` in `api`, if any.
fn route_of(api: &Api, key: &str) -> Option<String> {
    route_for(api, key).map(|r| r.id.clone())
}

/// The message of the `UnknownReference` error for a `methodSettings` (or usage plan
/// throttle) key that names no method of `api`.
pub(crate) fn unknown_method_message(key: &str, api: &Api) -> String {
    if api.protocol == Protocol::WebSocket {
        return format!(
            "{key} names no route of {} (expected a route key, e.g. $connect); ignored",
            api.source
        );
    }
    format!(
        "{key} names no method of {} (expected <resource path>/<METHOD>); ignored",
        api.source
    )
}

fn method_throttles<'a>(
    obj: &ObjectRef,
    field: &str,
    api: &Api,
    entries: impl Iterator<Item = (&'a String, &'a ThrottleSettings)>,
    diags: &mut Diags,
) -> BTreeMap<String, Throttle> {
    let mut out = BTreeMap::new();
    for (key, t) in entries {
        let f = format!("{field}[{key:?}]");
        let Some(route) = route_of(api, key) else {
            diags.error(
                obj,
                &f,
                reasons::UNKNOWN_REFERENCE,
                unknown_method_message(key, api),
            );
            continue;
        };
        if let Some(t) = throttle(obj, &f, t, diags) {
            out.insert(route, t);
        }
    }
    out
}

fn stage_throttles(inputs: &Inputs<'_>, config: &mut GatewayConfig, diags: &mut Diags) {
    let GatewayConfig { apis, stages, .. } = config;
    let by_id = super::StageIndex::new(inputs, apis);
    for stage in stages.iter_mut() {
        let Some((input, api)) = by_id.get(&stage.id, &stage.api_id) else {
            continue;
        };
        let obj = &input.obj;
        stage.throttle = input
            .spec
            .throttle
            .as_ref()
            .and_then(|t| throttle(obj, "spec.throttle", t, diags));
        stage.method_throttles = method_throttles(
            obj,
            "spec.methodSettings",
            api,
            input
                .spec
                .method_settings
                .iter()
                .filter_map(|(k, m)| m.throttle.as_ref().map(|t| (k, t))),
            diags,
        );
    }
}

fn compile_plans(
    inputs: &Inputs<'_>,
    snapshot: &Snapshot,
    config: &GatewayConfig,
    diags: &mut Diags,
) -> Vec<UsagePlan> {
    // Indexes, not scans: a plan may list thousands of stages.
    let stage_index: std::collections::HashMap<&str, usize> = config
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let api_index: std::collections::HashMap<&str, usize> = config
        .apis
        .iter()
        .enumerate()
        .map(|(i, a)| (a.id.as_str(), i))
        .collect();
    let mut out = Vec::new();
    for (obj, plan) in &inputs.usage_plans {
        let spec = &plan.spec;
        let throttle = spec
            .throttle
            .as_ref()
            .and_then(|t| throttle(obj, "spec.throttle", t, diags));
        let quota = spec.quota.as_ref().and_then(|q| {
            let offset = q.offset.unwrap_or(0);
            if q.limit < 1 || offset < 0 || offset >= q.limit {
                diags.error(
                    obj,
                    "spec.quota",
                    reasons::INVALID_LIMIT,
                    format!(
                        "quota needs limit >= 1 and 0 <= offset < limit (got limit {}, offset {offset})",
                        q.limit
                    ),
                );
                return None;
            }
            Some(Quota {
                limit: u64::try_from(q.limit).expect("checked positive"),
                period: match q.period {
                    QuotaPeriodSpec::Day => QuotaPeriod::Day,
                    QuotaPeriodSpec::Week => QuotaPeriod::Week,
                    QuotaPeriodSpec::Month => QuotaPeriod::Month,
                },
                offset: u64::try_from(offset).expect("checked non-negative"),
            })
        });
        let mut stages = Vec::new();
        for (i, api_stage) in spec.api_stages.iter().enumerate() {
            let field = format!("spec.apiStages[{i}]");
            let r = &api_stage.stage_ref;
            let target = ObjectRef::new(
                "Stage",
                r.namespace.as_deref().unwrap_or(&obj.namespace),
                &r.name,
            );
            if !permitted(&snapshot.stages, |s| &s.metadata, &target, &obj.namespace) {
                // Reported by normalise (RefNotPermitted); the stage is left out.
                continue;
            }
            let sid = super::stage_id(&target.namespace, &target.name);
            let Some(stage) = stage_index.get(sid.as_str()).map(|&i| &config.stages[i]) else {
                diags.error(
                    obj,
                    format!("{field}.stageRef.name"),
                    reasons::UNKNOWN_REFERENCE,
                    format!(
                        "{target} does not exist or is not served; the plan does not apply to it"
                    ),
                );
                continue;
            };
            let api = api_index
                .get(stage.api_id.as_str())
                .map(|&i| &config.apis[i])
                .expect("compiled stages serve compiled apis");
            stages.push(PlanStage {
                stage_id: sid,
                method_throttles: method_throttles(
                    obj,
                    &format!("{field}.throttle"),
                    api,
                    api_stage.throttle.iter(),
                    diags,
                ),
            });
        }
        let invalid = spec.throttle.is_some() && throttle.is_none()
            || spec.quota.is_some() && quota.is_none();
        if invalid {
            // Fail closed: serving the plan without its limits would let keys through
            // unmetered; without the plan, its keys are refused on its stages.
            diags.error(
                obj,
                "spec",
                reasons::INVALID_LIMIT,
                "the usage plan is not served; its API keys are refused (403) on its stages",
            );
            continue;
        }
        stages.sort_by(|a, b| a.stage_id.cmp(&b.stage_id));
        stages.dedup_by(|a, b| a.stage_id == b.stage_id);
        out.push(UsagePlan {
            id: plan_id(&obj.namespace, &obj.name),
            source: obj.clone(),
            throttle,
            quota,
            stages,
        });
    }
    out
}

/// Why a Secret key could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SecretLookup {
    /// No Secret of that name in the namespace.
    NoSecret,
    /// The Secret has no such key, or its value is empty.
    NoKey,
}

/// The non-empty value of `key` in Secret `namespace/name`.
pub(crate) fn find_secret_value<'s>(
    secrets: &SecretIndex<'s>,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<&'s [u8], SecretLookup> {
    let secret = secrets
        .0
        .get(&(namespace, name))
        .copied()
        .ok_or(SecretLookup::NoSecret)?;
    secret
        .data
        .get(key)
        .map(Vec::as_slice)
        .filter(|v| !v.is_empty())
        .ok_or(SecretLookup::NoKey)
}

/// Whether plans `a` and `b` share a stage (memoized per pair; `sets` holds each plan's
/// stage ids).
fn shares_stage(
    memo: &mut std::collections::HashMap<(String, String), bool>,
    sets: &mut std::collections::HashMap<String, std::collections::HashSet<String>>,
    a: &UsagePlan,
    b: &UsagePlan,
) -> bool {
    let pair = (a.id.clone(), b.id.clone());
    if let Some(&v) = memo.get(&pair) {
        return v;
    }
    let set = sets
        .entry(a.id.clone())
        .or_insert_with(|| a.stages.iter().map(|s| s.stage_id.clone()).collect());
    let v = b.stages.iter().any(|s| set.contains(&s.stage_id));
    memo.insert(pair, v);
    v
}

/// Secrets by namespace and name, built once per compile: every ApiKey (and WebSocket
/// credential) looks its Secret up here instead of scanning the list (a fleet has as many
/// Secrets as keys).
pub(crate) struct SecretIndex<'s>(std::collections::HashMap<(&'s str, &'s str), &'s Secret>);

impl<'s> SecretIndex<'s> {
    /// Indexes `secrets` (the first of duplicates wins, as a scan would find it).
    pub(crate) fn new(secrets: &'s [Secret]) -> Self {
        let mut map = std::collections::HashMap::with_capacity(secrets.len());
        for s in secrets {
            map.entry((s.namespace.as_str(), s.name.as_str()))
                .or_insert(s);
        }
        SecretIndex(map)
    }
}

/// The message of a `SecretNotFound` error (ApiKeys, WebSocket management credentials).
pub(crate) fn secret_not_found_message(
    namespace: &str,
    name: &str,
    origin: &str,
    key: &str,
    consequence: &str,
) -> String {
    format!("Secret {namespace}/{name} ({origin}) has no non-empty key {key:?}; {consequence}")
}

fn compile_keys(
    inputs: &Inputs<'_>,
    snapshot: &Snapshot,
    config: &GatewayConfig,
    diags: &mut Diags,
) -> Vec<ApiKey> {
    let plans: BTreeMap<&str, &UsagePlan> = config
        .usage_plans
        .iter()
        .map(|p| (p.id.as_str(), p))
        .collect();
    let mut seen_hashes: BTreeMap<KeyHash, ObjectRef> = BTreeMap::new();
    let secrets = SecretIndex::new(&snapshot.secrets);
    // Whether two plans share a stage, computed once per pair.
    let mut overlaps: std::collections::HashMap<(String, String), bool> =
        std::collections::HashMap::new();
    let mut stage_sets: std::collections::HashMap<String, std::collections::HashSet<String>> =
        std::collections::HashMap::new();
    let mut out = Vec::new();
    for (obj, key) in &inputs.api_keys {
        let spec = &key.spec;
        // The value: `valueFrom.secretKeyRef`, or the Secret the operator generates.
        let generated = format!("{}-value", obj.name);
        let (secret_name, secret_key, field) = match &spec.value_from {
            Some(v) => (
                v.secret_key_ref.name.as_str(),
                v.secret_key_ref.key.as_str(),
                "spec.valueFrom.secretKeyRef",
            ),
            None => (generated.as_str(), "value", "spec.valueFrom"),
        };
        let value = match find_secret_value(&secrets, &obj.namespace, secret_name, secret_key) {
            Ok(v) => v,
            Err(missing) => {
                let field = match (&spec.value_from, missing) {
                    (None, _) => field.to_string(),
                    (Some(_), SecretLookup::NoSecret) => format!("{field}.name"),
                    (Some(_), SecretLookup::NoKey) => format!("{field}.key"),
                };
                let origin = if spec.value_from.is_some() {
                    "named by the key"
                } else {
                    "generated by the operator"
                };
                diags.error(
                    obj,
                    field,
                    reasons::SECRET_NOT_FOUND,
                    secret_not_found_message(
                        &obj.namespace,
                        secret_name,
                        origin,
                        secret_key,
                        "the API key is not served",
                    ),
                );
                continue;
            }
        };
        let hash = KeyHash::of(value);
        if let Some(first) = seen_hashes.get(&hash) {
            diags.error(
                obj,
                "spec.valueFrom",
                reasons::DUPLICATE_KEY,
                format!("the key has the same value as {first}; it is not served"),
            );
            continue;
        }
        seen_hashes.insert(hash.clone(), obj.clone());

        let mut usage_plans: Vec<String> = Vec::new();
        // The plans this key is in so far: a further plan may not share a stage with one
        // (checked per pair of plans, once per compile: a key's stages are not enumerated,
        // which made 100,000 keys on a plan of 5,000 stages quadratic).
        let mut accepted: Vec<&UsagePlan> = Vec::new();
        for (i, r) in spec.usage_plan_refs.iter().enumerate() {
            let ns = r.namespace.as_deref().unwrap_or(&obj.namespace);
            let target = ObjectRef::new("UsagePlan", ns, &r.name);
            if !permitted(
                &snapshot.usage_plans,
                |p| &p.metadata,
                &target,
                &obj.namespace,
            ) {
                continue; // reported by normalise (RefNotPermitted)
            }
            let pid = plan_id(ns, &r.name);
            let Some(plan) = plans.get(pid.as_str()) else {
                diags.error(
                    obj,
                    format!("spec.usagePlanRefs[{i}].name"),
                    reasons::UNKNOWN_REFERENCE,
                    format!("{target} does not exist or is not served"),
                );
                continue;
            };
            // AWS: a key belongs to at most one plan per stage.
            if let Some(other) = accepted
                .iter()
                .find(|p| shares_stage(&mut overlaps, &mut stage_sets, p, plan))
                .map(|p| p.id.as_str())
            {
                diags.error(
                    obj,
                    format!("spec.usagePlanRefs[{i}].name"),
                    reasons::DUPLICATE_KEY,
                    format!(
                        "{target} shares a stage with {other}; a key may be in one plan per stage, the plan is ignored for this key"
                    ),
                );
                continue;
            }
            accepted.push(plan);
            usage_plans.push(pid);
        }
        usage_plans.sort();
        usage_plans.dedup();
        out.push(ApiKey {
            id: key_id(&obj.namespace, &obj.name),
            source: obj.clone(),
            hash,
            enabled: spec.enabled.unwrap_or(true),
            usage_plans,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::{Snapshot, compile, parse_manifests};

    #[test]
    fn the_config_holds_only_the_hash_of_a_key_value() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/golden/apikey-basic.yaml"
        ))
        .unwrap();
        let out = compile(&Snapshot::from_resources(
            parse_manifests("apikey-basic.yaml", &text).unwrap(),
        ));
        assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
        let json = out.config.to_json();
        let debug = format!("{:?}", out.config);
        for value in [
            "mobile-key-value-0123456789",
            "generated-key-value-0123456789",
            "old-key-value-0123456789",
        ] {
            assert!(
                !json.contains(value) && !debug.contains(value),
                "{value} leaked"
            );
            let hash = portico_config::KeyHash::of(value.as_bytes());
            assert!(json.contains(hash.as_hex()));
        }
        assert_eq!(out.config.api_keys.len(), 3);
        assert!(out.config.api_keys.iter().any(|k| !k.enabled));
    }
}
