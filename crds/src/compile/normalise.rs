//! Phase 1, normalise: every default is resolved here and nowhere else, and objects are
//! sorted by namespace/name so that every later phase iterates deterministically.

use super::{Diags, api_id, stage_id};
use crate::Snapshot;
use crate::api::rest_api::ApiProtocol;
use crate::api::{RestApiSpec, StageSpec};
use crate::reasons;
use kube::core::ObjectMeta;
use portico_config::{AccessLog, DEFAULT_ACCESS_LOG_FORMAT, ObjectRef};

/// The normalised input of the later phases.
pub(crate) struct Inputs<'a> {
    /// RestApis, sorted by namespace/name, duplicates removed.
    pub apis: Vec<ApiInput<'a>>,
    /// Stages, sorted by namespace/name, duplicates removed.
    pub stages: Vec<StageInput<'a>>,
    /// Objects of kinds that compile to nothing yet (Authorizer, UsagePlan, ApiKey).
    pub later_kinds: Vec<ObjectRef>,
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
    /// The RestApi it references (same namespace).
    pub api: ObjectRef,
    /// `spec.stageName`, default `metadata.name`.
    pub stage_name: String,
    /// `spec.basePath`, default `/<stageName>` (not yet validated).
    pub base_path: String,
    /// `metadata.creationTimestamp`: the older stage wins a conflict.
    pub created: Option<k8s_openapi::jiff::Timestamp>,
    /// Access log: default format, `None` when `enabled: false`.
    pub access_log: Option<AccessLog>,
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
            StageInput {
                id: stage_id(&obj.namespace, &obj.name),
                api: ObjectRef::new("RestApi", &obj.namespace, &o.spec.rest_api_ref.name),
                base_path: o
                    .spec
                    .base_path
                    .clone()
                    .unwrap_or_else(|| format!("/{stage_name}")),
                stage_name,
                created: o.metadata.creation_timestamp.as_ref().map(|t| t.0),
                access_log: access_log.map(|format| AccessLog { format }),
                spec: &o.spec,
                obj,
            }
        })
        .collect();

    let mut later_kinds = Vec::new();
    later_kinds.extend(
        sorted_unique("Authorizer", &snapshot.authorizers, |o| &o.metadata, diags)
            .into_iter()
            .map(|(obj, _)| obj),
    );
    later_kinds.extend(
        sorted_unique("UsagePlan", &snapshot.usage_plans, |o| &o.metadata, diags)
            .into_iter()
            .map(|(obj, _)| obj),
    );
    later_kinds.extend(
        sorted_unique("ApiKey", &snapshot.api_keys, |o| &o.metadata, diags)
            .into_iter()
            .map(|(obj, _)| obj),
    );
    Inputs {
        apis,
        stages,
        later_kinds,
    }
}
