//! `UsagePlan`: throttle and quota applied to API keys on stages.

// Each `printcolumn(..)` repeats `type_`, which clippy mistakes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use super::common::{Condition, ObjectReference, ThrottleSettings};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Desired state of a `UsagePlan`.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "portico.dev",
    version = "v1alpha1",
    kind = "UsagePlan",
    plural = "usageplans",
    namespaced,
    status = "UsagePlanStatus",
    derive = "PartialEq",
    shortname = "uplan",
    category = "portico",
    doc = "A usage plan: throttle and quota for the API keys that belong to it.",
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
pub struct UsagePlanSpec {
    /// Free-form description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Plan-wide throttle per API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<ThrottleSettings>,
    /// Request quota per API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaSettings>,
    /// The stages the plan applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_stages: Vec<ApiStage>,
}

/// Quota period.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaPeriod {
    /// Calendar day (UTC).
    #[serde(rename = "DAY")]
    Day,
    /// Calendar week (UTC).
    #[serde(rename = "WEEK")]
    Week,
    /// Calendar month (UTC).
    #[serde(rename = "MONTH")]
    Month,
}

/// Request quota, as AWS `QuotaSettings`.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuotaSettings {
    /// Requests allowed per period.
    pub limit: i64,
    /// `DAY`, `WEEK` or `MONTH`.
    pub period: QuotaPeriod,
    /// Requests already used in the first period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

/// One stage a usage plan applies to.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiStage {
    /// The Stage; another namespace's only when it allows references from this one
    /// (annotation `portico.dev/allow-references-from`).
    pub stage_ref: ObjectReference,
    /// Per-method throttles keyed by `<resource path>/<METHOD>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub throttle: BTreeMap<String, ThrottleSettings>,
}

/// Observed state of a `UsagePlan`, written by the operator.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct UsagePlanStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions (`Accepted`, `Ready`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
