//! Types shared by several custom resources: object references, throttle settings and the
//! status condition.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to another object of a known kind in the same namespace.
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Default,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalObjectReference {
    /// Name of the referenced object (same namespace as the referring object).
    pub name: String,
}

/// A reference to an object of a known kind, in the referring object's namespace unless
/// `namespace` is set. A reference into another namespace is refused (`RefNotPermitted`)
/// unless the target carries the annotation `portico.dev/allow-references-from` listing the
/// referring namespace (comma-separated, or `*` for every namespace).
#[derive(
    Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Default,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectReference {
    /// Name of the referenced object.
    pub name: String,
    /// Namespace of the referenced object; defaults to the referring object's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl ObjectReference {
    /// A reference to `name` in the referring object's namespace.
    pub fn local(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            namespace: None,
        }
    }
}

/// The annotation by which an object allows references from other namespaces: a
/// comma-separated list of namespaces, or `*`.
pub const ALLOW_REFERENCES_FROM: &str = "portico.dev/allow-references-from";

/// True when an object with `annotations` may be referenced from namespace `from`
/// (always true within its own namespace `own`).
pub fn reference_permitted(
    annotations: Option<&std::collections::BTreeMap<String, String>>,
    own: &str,
    from: &str,
) -> bool {
    own == from
        || annotations
            .and_then(|a| a.get(ALLOW_REFERENCES_FROM))
            .is_some_and(|list| {
                list.split(',')
                    .map(str::trim)
                    .any(|ns| ns == "*" || ns == from)
            })
}

/// A reference to one key of a Secret in the same namespace.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeySelector {
    /// Name of the Secret.
    pub name: String,
    /// Key inside the Secret's data.
    pub key: String,
}

/// Token-bucket throttle settings, as AWS `ThrottleSettings`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ThrottleSettings {
    /// Steady-state requests per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<f64>,
    /// Bucket size: the largest burst of requests accepted at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_limit: Option<i64>,
}

/// One status condition, shaped like `metav1.Condition`. Filled by the operator.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type: `Accepted` (compiled; `False` with the first error's reason) or
    /// `Ready` (the config containing the object is published to the proxies).
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason, e.g. `Accepted` or `UnknownReference`.
    pub reason: String,
    /// Human-readable message naming the field at fault.
    #[serde(default)]
    pub message: String,
    /// When the condition last changed status (RFC 3339).
    pub last_transition_time: String,
    /// The `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
