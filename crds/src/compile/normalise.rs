//! Phase 1, normalise: every default is resolved here and nowhere else, and objects are
//! sorted by namespace/name so that every later phase iterates deterministically.

use super::{Diags, api_id, stage_id};
use crate::Snapshot;
use crate::api::rest_api::ApiProtocol;
use crate::api::{
    ALLOW_REFERENCES_FROM, Authorizer, FLUSH_CACHE_ANNOTATION, RestApiSpec, StageSpec,
    reference_permitted,
};
use crate::reasons;
use kube::core::ObjectMeta;
use portico_config::{AccessLog, DEFAULT_ACCESS_LOG_FORMAT, ObjectRef};

/// The normalised input of the later phases.
pub(crate) struct Inputs<'a> {
    /// RestApis, sorted by namespace/name, duplicates removed.
    pub apis: Vec<ApiInput<'a>>,
    /// Stages, sorted by namespace/name, duplicates removed.
    pub stages: Vec<StageInput<'a>>,
    /// UsagePlans, sorted by namespace/name, duplicates removed.
    pub usage_plans: Vec<(ObjectRef, &'a crate::api::UsagePlan)>,
    /// ApiKeys, sorted by namespace/name, duplicates removed.
    pub api_keys: Vec<(ObjectRef, &'a crate::api::ApiKey)>,
    /// Authorizers, sorted by namespace/name, duplicates removed.
    pub authorizers: Vec<(ObjectRef, &'a Authorizer)>,
}

/// A RestApi with its defaults resolved.
pub(crate) struct ApiInput<'a> {
    pub obj: ObjectRef,
    pub id: String,
    /// `spec.displayName`, default `metadata.name`.
    pub display_name: String,
    /// `spec.protocol`, default REST.
    pub protocol: ApiProtocol,
    pub spec: &'a RestApiSpec,
}

/// A Stage with its defaults resolved.
pub(crate) struct StageInput<'a> {
    pub obj: ObjectRef,
    pub id: String,
    /// The RestApi it references (its own namespace unless `restApiRef.namespace` is set).
    pub api: ObjectRef,
    /// False for a reference into another namespace whose RestApi does not allow it (or does
    /// not exist: a refusal does not reveal whether another namespace's object exists).
    pub api_ref_permitted: bool,
    /// `spec.stageName`, default `metadata.name`.
    pub stage_name: String,
    /// `spec.basePath`, default `/<stageName>` (not yet validated).
    pub base_path: String,
    /// `metadata.creationTimestamp`: the older stage wins a conflict.
    pub created: Option<k8s_openapi::jiff::Timestamp>,
    /// Access log: default format, `None` when `enabled: false`.
    pub access_log: Option<AccessLog>,
    /// The `portico.dev/flush-cache` annotation (`""` when absent): its change flushes the
    /// stage's response cache.
    pub flush_token: String,
    pub spec: &'a StageSpec,
}

fn ns_name(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace
            .clone()
            .unwrap_or_else(|| crate::manifest::DEFAULT_NAMESPACE.to_string()),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Sorts objects by namespace/name and drops later copies of the same object with an error.
fn sorted_unique<'a, T>(
    kind: &str,
    objects: &'a [T],
    meta: impl Fn(&T) -> &ObjectMeta,
    diags: &mut Diags,
) -> Vec<(ObjectRef, &'a T)> {
    let mut out: Vec<(ObjectRef, &T)> = objects
        .iter()
        .map(|o| {
            let (ns, name) = ns_name(meta(o));
            (ObjectRef::new(kind, ns, name), o)
        })
        .collect();
    // Stable sort: among copies, the first one in input order is kept.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|(obj, _)| {
        if seen.insert(obj.clone()) {
            true
        } else {
            diags.error(
                obj,
                "metadata.name",
                reasons::DUPLICATE_OBJECT,
                format!("{obj} is defined more than once; the first definition is used"),
            );
            false
        }
    });
    out
}

/// Whether an object in namespace `from` may reference `target` (an object of `objects`).
/// Same-namespace references always may; cross-namespace ones need the target's
/// `portico.dev/allow-references-from` annotation to list `from` (or `*`).
pub(crate) fn permitted<T>(
    objects: &[T],
    meta: impl Fn(&T) -> &ObjectMeta,
    target: &ObjectRef,
    from: &str,
) -> bool {
    if target.namespace == from {
        return true;
    }
    objects.iter().map(&meta).any(|m| {
        let (ns, name) = ns_name(m);
        ns == target.namespace
            && name == target.name
            && reference_permitted(m.annotations.as_ref(), &ns, from)
    })
}

/// Cross-namespace references of ApiKey `usagePlanRefs` and UsagePlan
/// `apiStages[].stageRef`: refused unless the target allows them. Existence is checked by the
/// `usage_plans` phase, which also leaves refused references out.
fn check_later_references(snapshot: &Snapshot, diags: &mut Diags) {
    for key in &snapshot.api_keys {
        let (ns, name) = ns_name(&key.metadata);
        let obj = ObjectRef::new("ApiKey", &ns, &name);
        for (i, r) in key.spec.usage_plan_refs.iter().enumerate() {
            let target = ObjectRef::new(
                "UsagePlan",
                r.namespace.clone().unwrap_or_else(|| ns.clone()),
                &r.name,
            );
            if !permitted(&snapshot.usage_plans, |p| &p.metadata, &target, &ns) {
                diags.error(
                    &obj,
                    format!("spec.usagePlanRefs[{i}].namespace"),
                    reasons::REF_NOT_PERMITTED,
                    not_permitted_message(&target, &ns),
                );
            }
        }
    }
    for plan in &snapshot.usage_plans {
        let (ns, name) = ns_name(&plan.metadata);
        let obj = ObjectRef::new("UsagePlan", &ns, &name);
        for (i, s) in plan.spec.api_stages.iter().enumerate() {
            let target = ObjectRef::new(
                "Stage",
                s.stage_ref.namespace.clone().unwrap_or_else(|| ns.clone()),
                &s.stage_ref.name,
            );
            if !permitted(&snapshot.stages, |p| &p.metadata, &target, &ns) {
                diags.error(
                    &obj,
                    format!("spec.apiStages[{i}].stageRef.namespace"),
                    reasons::REF_NOT_PERMITTED,
                    not_permitted_message(&target, &ns),
                );
            }
        }
    }
}

/// The message of a `RefNotPermitted` diagnostic.
pub(crate) fn not_permitted_message(target: &ObjectRef, from: &str) -> String {
    format!(
        "{target} does not allow references from namespace {from} (annotation {ALLOW_REFERENCES_FROM} on the target must list {from} or *)"
    )
}

/// Resolves defaults and orders the snapshot.
pub(crate) fn normalise<'a>(snapshot: &'a Snapshot, diags: &mut Diags) -> Inputs<'a> {
    let apis = sorted_unique("RestApi", &snapshot.rest_apis, |o| &o.metadata, diags)
        .into_iter()
        .map(|(obj, o)| ApiInput {
            id: api_id(&obj.namespace, &obj.name),
            display_name: o
                .spec
                .display_name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| obj.name.clone()),
            protocol: o.spec.protocol.unwrap_or_default(),
            spec: &o.spec,
            obj,
        })
        .collect();

    let stages = sorted_unique("Stage", &snapshot.stages, |o| &o.metadata, diags)
        .into_iter()
        .map(|(obj, o)| {
            let stage_name = o
                .spec
                .stage_name
                .clone()
                .unwrap_or_else(|| obj.name.clone());
            let access_log = match &o.spec.access_log_settings {
                Some(s) if s.enabled == Some(false) => None,
                Some(s) => match s.format.as_deref() {
                    Some("") => {
                        diags.warn(
                            &obj,
                            "spec.accessLogSettings.format",
                            reasons::INVALID_ACCESS_LOG,
                            "empty access log format; the default format is used",
                        );
                        Some(DEFAULT_ACCESS_LOG_FORMAT.to_string())
                    }
                    Some(f) => Some(f.to_string()),
                    None => Some(DEFAULT_ACCESS_LOG_FORMAT.to_string()),
                },
                None => Some(DEFAULT_ACCESS_LOG_FORMAT.to_string()),
            };
            let api_ns = o
                .spec
                .rest_api_ref
                .namespace
                .clone()
                .filter(|ns| !ns.is_empty())
                .unwrap_or_else(|| obj.namespace.clone());
            let api = ObjectRef::new("RestApi", api_ns, &o.spec.rest_api_ref.name);
            StageInput {
                id: stage_id(&obj.namespace, &obj.name),
                api_ref_permitted: permitted(
                    &snapshot.rest_apis,
                    |a| &a.metadata,
                    &api,
                    &obj.namespace,
                ),
                api,
                base_path: o.spec.base_path.clone().unwrap_or_else(|| {
                    match stage_name.as_str() {
                        // An HTTP API's `$default` stage is served at the root.
                        super::stages::DEFAULT_STAGE => "/".to_string(),
                        name => format!("/{name}"),
                    }
                }),
                stage_name,
                created: o.metadata.creation_timestamp.as_ref().map(|t| t.0),
                access_log: access_log.map(|format| AccessLog { format }),
                flush_token: o
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(FLUSH_CACHE_ANNOTATION))
                    .cloned()
                    .unwrap_or_default(),
                spec: &o.spec,
                obj,
            }
        })
        .collect();

    check_later_references(snapshot, diags);
    let authorizers = sorted_unique("Authorizer", &snapshot.authorizers, |o| &o.metadata, diags);
    let usage_plans = sorted_unique("UsagePlan", &snapshot.usage_plans, |o| &o.metadata, diags);
    let api_keys = sorted_unique("ApiKey", &snapshot.api_keys, |o| &o.metadata, diags);
    Inputs {
        apis,
        stages,
        usage_plans,
        api_keys,
        authorizers,
    }
}
