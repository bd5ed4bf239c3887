//! `ApiKey`: an API key whose value lives in a Secret.

// Each `printcolumn(..)` repeats `type_`, which clippy mistakes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use super::common::{Condition, ObjectReference, SecretKeySelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of an `ApiKey`.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "portico.dev",
    version = "v1alpha1",
    kind = "ApiKey",
    plural = "apikeys",
    namespaced,
    status = "ApiKeyStatus",
    derive = "PartialEq",
    shortname = "apikey",
    category = "portico",
    doc = "An API key: its value comes from a Secret; it belongs to usage plans.",
    printcolumn(name = "Enabled", type_ = "boolean", json_path = ".spec.enabled"),
    printcolumn(name = "KeyId", type_ = "string", json_path = ".status.keyId"),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeySpec {
    /// Whether the key is accepted (default `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Free-form description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// AWS Marketplace customer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Where the key value is; the operator generates a Secret when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ApiKeyValueSource>,
    /// The usage plans the key belongs to; another namespace's only when the plan allows
    /// references from this one (annotation `portico.dev/allow-references-from`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usage_plan_refs: Vec<ObjectReference>,
}

/// Where an API key's value is stored.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyValueSource {
    /// A key of a Secret in the same namespace.
    pub secret_key_ref: SecretKeySelector,
}

/// Observed state of an `ApiKey`, written by the operator.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions (`Accepted`, `Ready`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Identifies the key without revealing it: the first 8 hex digits of the SHA-256 of its
    /// value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The Secret holding the value (`spec.valueFrom.secretKeyRef.name`, or the one the
    /// operator generated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}
