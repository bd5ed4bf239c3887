//! Mappings of non-proxy integrations (`HTTP`, `MOCK`): parameter mappings, request and
//! response mapping templates (VTL source text; the proxy parses them once per config),
//! passthrough behaviour, integration responses and method responses.
//!
//! Also the parsers of the mapping expressions that compile and the proxy share:
//! [`MappingTarget::parse`] (`integration.request.header.x`, `method.response.header.x`) and
//! [`MappingSource::parse`] (`method.request.path.id`, `context.requestId`, `'literal'`, ...).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The mapping settings of one route (only set on `HTTP` and `MOCK` integrations that use
/// at least one of them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transform {
    /// `integration.request.{header,querystring,path}.<name>` -> source expression.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_parameters: BTreeMap<String, String>,
    /// Request mapping templates (VTL source) by lower-case content type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_templates: BTreeMap<String, String>,
    /// What to do with a request whose content type has no template.
    #[serde(default, skip_serializing_if = "is_default")]
    pub passthrough: Passthrough,
    /// Integration responses in declaration order. Empty: the backend response passes
    /// through unchanged (streamed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub integration_responses: Vec<IntegrationResponse>,
    /// Declared method responses, sorted by status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub method_responses: Vec<MethodResponse>,
    /// Conversion of the integration request payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_handling: Option<ContentHandling>,
}

/// AWS's `contentHandling`: how a payload is converted between binary and text. Whether a
/// payload is binary is decided by the API's `binaryMediaTypes` ([`is_binary_media_type`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContentHandling {
    /// A binary payload becomes base64 text (before the template sees it).
    #[serde(rename = "CONVERT_TO_TEXT")]
    ConvertToText,
    /// A base64 text payload (after the template) is decoded to binary.
    #[serde(rename = "CONVERT_TO_BINARY")]
    ConvertToBinary,
}

/// True when `content_type` (a Content-Type or Accept entry; parameters ignored) matches
/// one of `patterns` (`binaryMediaTypes`: `image/png`, `image/*`, `*/*`), case-insensitively.
pub fn is_binary_media_type(patterns: &[String], content_type: &str) -> bool {
    let mt = content_type.split(';').next().unwrap_or_default().trim();
    let Some((ty, sub)) = mt.split_once('/') else {
        return false;
    };
    patterns.iter().any(|p| {
        let Some((pty, psub)) = p.trim().split_once('/') else {
            return false;
        };
        (pty == "*" || pty.eq_ignore_ascii_case(ty))
            && (psub == "*" || psub.eq_ignore_ascii_case(sub))
    })
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// AWS's `passthroughBehavior`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Passthrough {
    /// Unmapped content types pass through unchanged (default).
    #[default]
    #[serde(rename = "WHEN_NO_MATCH")]
    WhenNoMatch,
    /// Pass through only when the method has no template at all; else 415.
    #[serde(rename = "WHEN_NO_TEMPLATES")]
    WhenNoTemplates,
    /// Never pass through: unmapped content types get 415.
    #[serde(rename = "NEVER")]
    Never,
}

/// One integration response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationResponse {
    /// Regular expression that must match the whole backend status code; `None` for the
    /// default response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selection_pattern: Option<String>,
    /// Method response status.
    pub status_code: u16,
    /// `method.response.header.<name>` -> source expression.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub response_parameters: BTreeMap<String, String>,
    /// Response mapping templates (VTL source) by lower-case content type.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub response_templates: BTreeMap<String, String>,
    /// Conversion of the integration response payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_handling: Option<ContentHandling>,
}

/// One declared method response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MethodResponse {
    /// Status code.
    pub status_code: u16,
    /// Declared `method.response.header.<name>` names (lower case).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub headers: BTreeSet<String>,
}

/// Where a mapping writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MappingTarget {
    /// `integration.request.header.<name>`.
    RequestHeader(String),
    /// `integration.request.querystring.<name>`.
    RequestQuery(String),
    /// `integration.request.path.<name>`.
    RequestPath(String),
    /// `method.response.header.<name>`.
    ResponseHeader(String),
}

impl MappingTarget {
    /// Parses a mapping key.
    pub fn parse(key: &str) -> Result<MappingTarget, String> {
        let split = |prefix: &str| {
            key.strip_prefix(prefix)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
        };
        if let Some(n) = split("integration.request.header.") {
            Ok(MappingTarget::RequestHeader(n))
        } else if let Some(n) = split("integration.request.querystring.") {
            Ok(MappingTarget::RequestQuery(n))
        } else if let Some(n) = split("integration.request.path.") {
            Ok(MappingTarget::RequestPath(n))
        } else if let Some(n) = split("method.response.header.") {
            Ok(MappingTarget::ResponseHeader(n))
        } else {
            Err(format!(
                "{key:?} is not integration.request.{{header,querystring,path}}.<name> or method.response.header.<name>"
            ))
        }
    }
}

/// Where a mapping reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MappingSource {
    /// `'literal'`.
    Literal(String),
    /// `method.request.path.<name>`.
    MethodPath(String),
    /// `method.request.querystring.<name>`.
    MethodQuery(String),
    /// `method.request.header.<name>`.
    MethodHeader(String),
    /// `context.<a.b>`.
    Context(String),
    /// `stageVariables.<name>`.
    StageVariable(String),
    /// `integration.response.header.<name>` (response mappings only).
    IntegrationHeader(String),
    /// `integration.response.body` (response mappings only).
    IntegrationBody,
}

impl MappingSource {
    /// Parses a mapping value.
    pub fn parse(value: &str) -> Result<MappingSource, String> {
        let v = value.trim();
        if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
            return Ok(MappingSource::Literal(v[1..v.len() - 1].to_string()));
        }
        if v == "integration.response.body" {
            return Ok(MappingSource::IntegrationBody);
        }
        type Make = fn(String) -> MappingSource;
        let forms: [(&str, Make); 6] = [
            ("method.request.path.", MappingSource::MethodPath),
            ("method.request.querystring.", MappingSource::MethodQuery),
            ("method.request.header.", MappingSource::MethodHeader),
            ("context.", MappingSource::Context),
            ("stageVariables.", MappingSource::StageVariable),
            (
                "integration.response.header.",
                MappingSource::IntegrationHeader,
            ),
        ];
        for (prefix, make) in forms {
            if let Some(n) = v.strip_prefix(prefix).filter(|n| !n.is_empty()) {
                return Ok(make(n.to_string()));
            }
        }
        Err(format!(
            "{value:?} is not 'literal', method.request.{{path,querystring,header}}.<name>, context.<name>, stageVariables.<name>, integration.response.header.<name> or integration.response.body"
        ))
    }

    /// True for the sources only an integration response can read.
    pub fn is_response_only(&self) -> bool {
        matches!(
            self,
            MappingSource::IntegrationHeader(_) | MappingSource::IntegrationBody
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_sources_parse() {
        assert_eq!(
            MappingTarget::parse("integration.request.header.x-id"),
            Ok(MappingTarget::RequestHeader("x-id".into()))
        );
        assert_eq!(
            MappingTarget::parse("method.response.header.X"),
            Ok(MappingTarget::ResponseHeader("X".into()))
        );
        assert!(MappingTarget::parse("integration.request.header.").is_err());
        assert!(MappingTarget::parse("integration.request.body").is_err());
        assert_eq!(
            MappingSource::parse("'a b'"),
            Ok(MappingSource::Literal("a b".into()))
        );
        assert_eq!(
            MappingSource::parse("method.request.path.id"),
            Ok(MappingSource::MethodPath("id".into()))
        );
        assert_eq!(
            MappingSource::parse("context.identity.sourceIp"),
            Ok(MappingSource::Context("identity.sourceIp".into()))
        );
        assert_eq!(
            MappingSource::parse("integration.response.body"),
            Ok(MappingSource::IntegrationBody)
        );
        assert!(MappingSource::parse("method.request.body").is_err());
        assert!(MappingSource::parse("'").is_err());
    }

    #[test]
    fn binary_media_types_match_with_wildcards() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_binary_media_type(&p(&["image/*"]), "image/png"));
        assert!(is_binary_media_type(&p(&["IMAGE/PNG"]), "image/png; q=1"));
        assert!(is_binary_media_type(&p(&["*/*"]), "application/json"));
        assert!(!is_binary_media_type(
            &p(&["image/*"]),
            "application/octet-stream"
        ));
        assert!(!is_binary_media_type(&p(&["image/*"]), "image"));
        assert!(!is_binary_media_type(&[], "image/png"));
    }

    #[test]
    fn defaults_serialize_to_nothing() {
        let t = Transform::default();
        assert_eq!(serde_json::to_string(&t).unwrap(), "{}");
    }
}
