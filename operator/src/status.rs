//! The status writer: `Accepted` and `Ready` conditions (plus `observedGeneration`, a Stage's
//! `invokeUrls` and `configVersion`, an ApiKey's `keyId` and `secretName`) derived from the
//! compile diagnostics, written through the status subresource only when they changed.
//!
//! ```text
//!  diagnostics of the object ─┬─ errors   -> Accepted=False (first error's reason), Ready=False NotAccepted
//!                             ├─ warnings -> Accepted=True  (Accepted, warnings in the message)
//!                             └─ none     -> Accepted=True
//!  Programmed::Published  -> Ready=True  Published        (when accepted)
//!  Programmed::TooLarge   -> Ready=False ConfigTooLarge
//! ```
//!
//! Entry point: [`write_statuses`]. `lastTransitionTime` is kept when a condition's status
//! did not flip; each flip (or new reason) emits an Event ([`crate::events`]). Writes are
//! server-side apply on `/status` with field manager `portico-operator`.

use crate::api_key::KeyStatus;
use crate::context::Context;
use crate::{MANAGER, Result, events};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use portico_config::{Diagnostic, ObjectRef, Severity};
use portico_crds::api::{
    ApiKeyStatus, AuthorizerStatus, Condition, RestApiStatus, StageStatus, UsagePlanStatus,
};
use portico_crds::{Compiled, Snapshot, conditions, reasons};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;

/// Where the compiled config stands, for the `Ready` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Programmed {
    /// The config with this version is in the ConfigMap.
    Published {
        /// Content hash of the published config.
        version: String,
    },
    /// The config could not be published because it is too large; `message` says so.
    TooLarge {
        /// The error text.
        message: String,
    },
}

/// Longest condition message written.
const MAX_MESSAGE: usize = 4000;

/// Builds one condition, keeping `lastTransitionTime` from `current` when the status did not
/// flip.
fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    current: &[Condition],
    now: &str,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = current
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.to_string());
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message: events::truncate(&message, MAX_MESSAGE),
        last_transition_time,
        observed_generation: generation,
    }
}

/// `"<field>: <message>; ..."` for the given diagnostics.
fn describe(diags: &[&Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| {
            if d.field.is_empty() {
                d.message.clone()
            } else {
                format!("{}: {}", d.field, d.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The `Accepted` and `Ready` conditions of one object.
pub fn desired_conditions(
    generation: Option<i64>,
    current: &[Condition],
    diags: &[&Diagnostic],
    programmed: &Programmed,
    now: &str,
) -> Vec<Condition> {
    let errors: Vec<&Diagnostic> = diags
        .iter()
        .copied()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    let warnings: Vec<&Diagnostic> = diags
        .iter()
        .copied()
        .filter(|d| d.severity == Severity::Warning)
        .collect();
    let accepted = if let Some(first) = errors.first() {
        condition(
            conditions::ACCEPTED,
            false,
            &first.reason,
            describe(&errors),
            generation,
            current,
            now,
        )
    } else if warnings.is_empty() {
        condition(
            conditions::ACCEPTED,
            true,
            reasons::ACCEPTED,
            "compiled without findings".into(),
            generation,
            current,
            now,
        )
    } else {
        condition(
            conditions::ACCEPTED,
            true,
            reasons::ACCEPTED,
            format!("accepted with warnings: {}", describe(&warnings)),
            generation,
            current,
            now,
        )
    };
    let ready = match programmed {
        _ if !errors.is_empty() => condition(
            conditions::READY,
            false,
            reasons::NOT_ACCEPTED,
            "not served as written; see the Accepted condition".into(),
            generation,
            current,
            now,
        ),
        Programmed::Published { .. } => condition(
            conditions::READY,
            true,
            reasons::PUBLISHED,
            "the GatewayConfig containing this object is published to the proxies".into(),
            generation,
            current,
            now,
        ),
        Programmed::TooLarge { message } => condition(
            conditions::READY,
            false,
            reasons::CONFIG_TOO_LARGE,
            message.clone(),
            generation,
            current,
            now,
        ),
    };
    vec![accepted, ready]
}

/// `http://<host or *><basePath>/` for each host of a compiled stage.
pub fn invoke_urls(stage: &portico_config::Stage) -> Vec<String> {
    if stage.hosts.is_empty() {
        vec![format!("http://*{}/", stage.base_path)]
    } else {
        stage
            .hosts
            .iter()
            .map(|h| format!("http://{h}{}/", stage.base_path))
            .collect()
    }
}

/// Gives the generic writer access to a status' conditions.
pub trait HasConditions {
    /// The conditions of the status.
    fn conditions(&self) -> &[Condition];
}

macro_rules! has_conditions {
    ($($t:ty),*) => {$(
        impl HasConditions for $t {
            fn conditions(&self) -> &[Condition] {
                &self.conditions
            }
        }
    )*};
}
has_conditions!(
    RestApiStatus,
    StageStatus,
    UsagePlanStatus,
    ApiKeyStatus,
    AuthorizerStatus
);

/// Per-object inputs of [`write_statuses`] shared by every kind.
struct Inputs<'a> {
    by_object: BTreeMap<ObjectRef, Vec<&'a Diagnostic>>,
    programmed: &'a Programmed,
    now: &'a str,
}

impl Inputs<'_> {
    fn conditions<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        current: Option<&[Condition]>,
    ) -> Vec<Condition> {
        let key = ObjectRef::new(
            K::kind(&()),
            obj.meta().namespace.clone().unwrap_or_default(),
            obj.meta().name.clone().unwrap_or_default(),
        );
        let diags = self.by_object.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        desired_conditions(
            obj.meta().generation,
            current.unwrap_or_default(),
            diags,
            self.programmed,
            self.now,
        )
    }
}

/// Writes the status of every object in `snapshot` whose desired status differs from its
/// current one. A failed write is logged and the others still run; the first error is
/// returned so that the reconcile is retried.
pub async fn write_statuses(
    ctx: &Context,
    snapshot: &Snapshot,
    compiled: &Compiled,
    programmed: &Programmed,
    keys: &BTreeMap<(String, String), KeyStatus>,
    now: &str,
) -> Result<()> {
    let mut by_object: BTreeMap<ObjectRef, Vec<&Diagnostic>> = BTreeMap::new();
    for d in &compiled.diagnostics {
        by_object.entry(d.object.clone()).or_default().push(d);
    }
    let inputs = Inputs {
        by_object,
        programmed,
        now,
    };
    let mut first_error = None;
    let mut note = |r: Result<()>| {
        if let Err(e) = r {
            tracing::warn!(error = %e, "status write failed");
            first_error.get_or_insert(e);
        }
    };

    for o in &snapshot.rest_apis {
        let current = o.status.as_ref();
        let desired = RestApiStatus {
            observed_generation: o.metadata.generation,
            conditions: inputs.conditions(o, current.map(|s| s.conditions.as_slice())),
        };
        note(sync(ctx, o, current, desired).await);
    }
    let published = match programmed {
        Programmed::Published { version } => Some(version.as_str()),
        Programmed::TooLarge { .. } => None,
    };
    // Compiled stages by id (an index: thousands of stages), and each one's own version.
    let compiled_stages: BTreeMap<&str, &portico_config::Stage> = compiled
        .config
        .stages
        .iter()
        .map(|s| (s.id.as_str(), s))
        .collect();
    let stage_versions = compiled.config.stage_versions();
    for o in &snapshot.stages {
        let current = o.status.as_ref();
        let conditions = inputs.conditions(o, current.map(|s| s.conditions.as_slice()));
        let id = format!(
            "stage/{}/{}",
            o.namespace().unwrap_or_default(),
            o.name_any()
        );
        let compiled_stage = compiled_stages.get(id.as_str()).copied();
        let desired = match (published, compiled_stage) {
            (Some(_), Some(stage)) => StageStatus {
                observed_generation: o.metadata.generation,
                conditions,
                invoke_urls: invoke_urls(stage),
                // What serves this stage, not the whole fleet's config: a change to another
                // tenant's objects writes no status here.
                config_version: stage_versions.get(&stage.id).cloned(),
            },
            // Not served by the new config.
            (Some(_), None) => StageStatus {
                observed_generation: o.metadata.generation,
                conditions,
                ..Default::default()
            },
            // Nothing new was published: the proxies still serve what they served.
            (None, _) => StageStatus {
                observed_generation: o.metadata.generation,
                conditions,
                invoke_urls: current.map(|c| c.invoke_urls.clone()).unwrap_or_default(),
                config_version: current.and_then(|c| c.config_version.clone()),
            },
        };
        note(sync(ctx, o, current, desired).await);
    }
    for o in &snapshot.usage_plans {
        let current = o.status.as_ref();
        let desired = UsagePlanStatus {
            observed_generation: o.metadata.generation,
            conditions: inputs.conditions(o, current.map(|s| s.conditions.as_slice())),
        };
        note(sync(ctx, o, current, desired).await);
    }
    for o in &snapshot.api_keys {
        let current = o.status.as_ref();
        let key = keys
            .get(&(o.namespace().unwrap_or_default(), o.name_any()))
            .cloned()
            .unwrap_or_default();
        let desired = ApiKeyStatus {
            observed_generation: o.metadata.generation,
            conditions: inputs.conditions(o, current.map(|s| s.conditions.as_slice())),
            key_id: key.key_id,
            secret_name: key.secret_name,
        };
        note(sync(ctx, o, current, desired).await);
    }
    for o in &snapshot.authorizers {
        let current = o.status.as_ref();
        let desired = AuthorizerStatus {
            observed_generation: o.metadata.generation,
            conditions: inputs.conditions(o, current.map(|s| s.conditions.as_slice())),
        };
        note(sync(ctx, o, current, desired).await);
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Applies `desired` to `obj`'s status when it differs from `current`, then publishes an
/// Event per condition transition.
async fn sync<K, S>(ctx: &Context, obj: &K, current: Option<&S>, desired: S) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
    S: Serialize + PartialEq + HasConditions,
{
    if current == Some(&desired) {
        return Ok(());
    }
    let name = obj.meta().name.clone().unwrap_or_default();
    let namespace = obj.meta().namespace.clone().unwrap_or_default();
    // Untyped on purpose: the response is not decoded into the strict spec types, so an
    // object stored by another version of the CRD cannot fail the write.
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        &namespace,
        &ApiResource::erase::<K>(&()),
    );
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": desired,
    });
    match api
        .patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => {}
        // Deleted since the snapshot was taken: nothing to report on.
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    ctx.metrics.status_patches.inc();
    let old = current.map(HasConditions::conditions).unwrap_or_default();
    let evs = events::transitions(old, desired.conditions());
    if !evs.is_empty() {
        ctx.events.publish(&obj.object_ref(&()), &evs).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2025-01-02T03:04:05Z";

    #[test]
    fn errors_make_accepted_false_with_the_first_reason_and_the_field() {
        let obj = ObjectRef::new("RestApi", "a", "b");
        let e1 = Diagnostic::error(&obj, "spec.resources[0].path", "InvalidPath", "bad path");
        let w = Diagnostic::warning(&obj, "spec.cors", "NotYetSupported", "later");
        let conds = desired_conditions(
            Some(3),
            &[],
            &[&e1, &w],
            &Programmed::Published {
                version: "v".into(),
            },
            NOW,
        );
        assert_eq!(
            conds,
            vec![
                Condition {
                    type_: "Accepted".into(),
                    status: "False".into(),
                    reason: "InvalidPath".into(),
                    message: "spec.resources[0].path: bad path".into(),
                    last_transition_time: NOW.into(),
                    observed_generation: Some(3),
                },
                Condition {
                    type_: "Ready".into(),
                    status: "False".into(),
                    reason: "NotAccepted".into(),
                    message: "not served as written; see the Accepted condition".into(),
                    last_transition_time: NOW.into(),
                    observed_generation: Some(3),
                },
            ]
        );
    }

    #[test]
    fn warnings_are_accepted_and_transition_times_survive_when_nothing_flips() {
        let obj = ObjectRef::new("Stage", "a", "b");
        let w = Diagnostic::warning(&obj, "spec.throttle", "NotYetSupported", "later");
        let published = Programmed::Published {
            version: "v".into(),
        };
        let first = desired_conditions(Some(1), &[], &[&w], &published, "T1");
        assert_eq!(first[0].status, "True");
        assert_eq!(
            first[0].message,
            "accepted with warnings: spec.throttle: later"
        );
        assert_eq!(first[1].reason, "Published");
        let second = desired_conditions(Some(2), &first, &[], &published, "T2");
        assert_eq!(second[0].last_transition_time, "T1");
        assert_eq!(second[0].observed_generation, Some(2));
        let too_large = Programmed::TooLarge {
            message: "too big".into(),
        };
        let third = desired_conditions(Some(2), &second, &[], &too_large, "T3");
        assert_eq!(third[0].last_transition_time, "T1");
        assert_eq!(
            (third[1].status.as_str(), third[1].reason.as_str()),
            ("False", "ConfigTooLarge")
        );
        assert_eq!(third[1].last_transition_time, "T3");
    }

    #[test]
    fn invoke_urls_name_each_host_or_any_host() {
        let mut stage = crate::fixtures::mk_config().stages[0].clone();
        assert_eq!(invoke_urls(&stage), vec!["http://*/dev/"]);
        stage.hosts = vec!["api.example.com".into()];
        stage.base_path = String::new();
        assert_eq!(invoke_urls(&stage), vec!["http://api.example.com/"]);
    }
}
