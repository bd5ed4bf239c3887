//! `Authorizer`: JWT validation, or a Lambda-style TOKEN / REQUEST function; used by the
//! methods and routes that name it in `authorizerRef`.

// Each `printcolumn(..)` repeats `type_`, which clippy mistakes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use super::common::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of an `Authorizer`.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "portico.dev",
    version = "v1alpha1",
    kind = "Authorizer",
    plural = "authorizers",
    namespaced,
    status = "AuthorizerStatus",
    derive = "PartialEq",
    shortname = "authz",
    category = "portico",
    doc = "An authorizer: JWT validation, or a TOKEN / REQUEST authorizer function.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
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
pub struct AuthorizerSpec {
    /// `JWT`, `TOKEN` or `REQUEST`.
    #[serde(rename = "type")]
    pub type_: AuthorizerType,
    /// Where the identity is read from, e.g. `$request.header.Authorization`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity_source: Vec<String>,
    /// JWT settings (type `JWT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfiguration>,
    /// URL of the authorizer function (types `TOKEN` and `REQUEST`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_uri: Option<String>,
    /// Regular expression the token must match before the function is called (`TOKEN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_validation_expression: Option<String>,
    /// Seconds an answer is cached per identity, 0..3600 (default 300; 0 disables caching).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_ttl_in_seconds: Option<i64>,
    /// Whether the function answers the simple `{"isAuthorized": bool}` format (HTTP APIs,
    /// payload format `2.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_simple_responses: Option<bool>,
    /// `REQUEST` authorizers of HTTP APIs: the event format, `"1.0"` or `"2.0"` (default
    /// `"2.0"`), as AWS's `authorizerPayloadFormatVersion`. REST APIs always get the REST
    /// event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorizer_payload_format_version: Option<String>,
}

/// Kind of authorizer.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AuthorizerType {
    /// Validates a JWT against an issuer's keys.
    #[default]
    #[serde(rename = "JWT")]
    Jwt,
    /// Calls a function with the bearer token.
    #[serde(rename = "TOKEN")]
    Token,
    /// Calls a function with the request's identity sources.
    #[serde(rename = "REQUEST")]
    Request,
}

/// JWT validation settings.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtConfiguration {
    /// Expected `iss` claim.
    pub issuer: String,
    /// Accepted `aud` values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// `http://` or `https://` URL the proxy fetches the key set from (never compile).
    /// Exactly one of `jwks` and `jwksUri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Inline key set (JSON text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<String>,
    /// Accepted signature algorithms, e.g. `RS256`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub algorithms: Vec<String>,
}

/// Observed state of an `Authorizer`, written by the operator.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions (`Accepted`, `Ready`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
