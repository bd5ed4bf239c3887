//! Manifest decoding: YAML (multi-document) or JSON text into typed [`Resource`]s.
//!
//! Entry point: [`parse_manifests`]. Decoding is strict: spec types deny unknown fields, and
//! every error names the file, the document (1-based) and, once known, the object and the
//! field path, e.g.
//! `examples/x.yaml document 2 (RestApi default/foo): spec.resources[0].methods.GET: unknown field `integraton``.
//!
//! Pure: no I/O; the caller reads the files.

// Errors are cold and carry the whole context (file, document, object, field) on purpose.
#![allow(clippy::result_large_err)]

use crate::api::{API_VERSION, ApiKey, Authorizer, RestApi, Stage, UsagePlan};
use crate::snapshot::ServicePort;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// The namespace given to objects that do not name one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// One decoded manifest object.
#[derive(Clone, PartialEq)]
pub enum Resource {
    /// A `portico.dev/v1alpha1` RestApi.
    RestApi(RestApi),
    /// A `portico.dev/v1alpha1` Stage.
    Stage(Stage),
    /// A `portico.dev/v1alpha1` UsagePlan.
    UsagePlan(UsagePlan),
    /// A `portico.dev/v1alpha1` ApiKey.
    ApiKey(ApiKey),
    /// A `portico.dev/v1alpha1` Authorizer.
    Authorizer(Authorizer),
    /// A `v1` Secret (`Debug` never prints its values).
    Secret {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// `data` (base64-decoded) with `stringData` on top.
        data: BTreeMap<String, Vec<u8>>,
    },
    /// A `v1` Service.
    Service {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Declared ports.
        ports: Vec<ServicePort>,
        /// Annotations.
        annotations: BTreeMap<String, String>,
    },
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::RestApi(o) => f.debug_tuple("RestApi").field(o).finish(),
            Resource::Stage(o) => f.debug_tuple("Stage").field(o).finish(),
            Resource::UsagePlan(o) => f.debug_tuple("UsagePlan").field(o).finish(),
            Resource::ApiKey(o) => f.debug_tuple("ApiKey").field(o).finish(),
            Resource::Authorizer(o) => f.debug_tuple("Authorizer").field(o).finish(),
            Resource::Secret {
                namespace,
                name,
                data,
            } => f
                .debug_struct("Secret")
                .field("namespace", namespace)
                .field("name", name)
                .field("keys", &data.keys().collect::<Vec<_>>())
                .finish(),
            Resource::Service {
                namespace,
                name,
                ports,
                annotations,
            } => f
                .debug_struct("Service")
                .field("namespace", namespace)
                .field("name", name)
                .field("ports", ports)
                .field("annotations", annotations)
                .finish(),
        }
    }
}

/// Why a manifest file could not be decoded. Every variant names the file (`origin`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The text is not valid YAML / JSON.
    #[error("{origin}: {message}")]
    Syntax {
        /// File name (or other origin) given by the caller.
        origin: String,
        /// Parser message.
        message: String,
    },
    /// A document is not an object, or lacks `kind`, `apiVersion` or `metadata.name`.
    #[error("{origin} document {index}: {message}")]
    Malformed {
        /// File name given by the caller.
        origin: String,
        /// 1-based document (or List item) index.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// The `kind` / `apiVersion` pair is not one Portico reads.
    #[error(
        "{origin} document {index}: unknown kind {kind:?} with apiVersion {api_version:?} (expected RestApi, Stage, UsagePlan, ApiKey or Authorizer of portico.dev/v1alpha1, or v1 Secret or Service)"
    )]
    UnknownKind {
        /// File name given by the caller.
        origin: String,
        /// 1-based document (or List item) index.
        index: usize,
        /// The document's `kind`.
        kind: String,
        /// The document's `apiVersion`.
        api_version: String,
    },
    /// The object does not match its kind's schema (unknown field, wrong type, ...).
    #[error("{origin} document {index} ({kind} {namespace}/{name}): {}{message}", field_prefix(.field))]
    Decode {
        /// File name given by the caller.
        origin: String,
        /// 1-based document (or List item) index.
        index: usize,
        /// The object's kind.
        kind: String,
        /// The object's namespace.
        namespace: String,
        /// The object's name.
        name: String,
        /// Field path, e.g. `spec.resources[0].methods.GET`.
        field: String,
        /// Decoder message, e.g. ``unknown field `integraton` ``.
        message: String,
    },
}

/// `"<field>: "`, or nothing for an error about the whole object.
fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

/// Decodes a manifest file: multi-document YAML, or JSON holding one object, an array, or a
/// `{"kind": "List", "items": [...]}`. Empty documents are skipped; a missing namespace is
/// [`DEFAULT_NAMESPACE`]. `origin` (usually the file path) is only used in errors.
pub fn parse_manifests(origin: &str, text: &str) -> Result<Vec<Resource>, ManifestError> {
    let syntax = |message: String| ManifestError::Syntax {
        origin: origin.to_string(),
        message,
    };
    let trimmed = text.trim_start();
    let documents: Vec<Value> = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        match serde_json::from_str::<Value>(text).map_err(|e| syntax(e.to_string()))? {
            Value::Array(items) => items,
            Value::Object(mut o) if o.get("kind").and_then(Value::as_str) == Some("List") => {
                match o.remove("items") {
                    Some(Value::Array(items)) => items,
                    Some(Value::Null) | None => Vec::new(),
                    Some(_) => return Err(syntax("List items must be an array".into())),
                }
            }
            other => vec![other],
        }
    } else {
        let mut docs = Vec::new();
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let v =
                Value::deserialize(doc).map_err(|e| syntax(format!("document {}: {e}", i + 1)))?;
            docs.push(v);
        }
        docs
    };
    let mut out = Vec::new();
    for (i, doc) in documents.into_iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        out.push(decode_document(origin, i + 1, doc)?);
    }
    Ok(out)
}

/// Decodes one document, already known to be non-empty.
fn decode_document(origin: &str, index: usize, mut doc: Value) -> Result<Resource, ManifestError> {
    let malformed = |message: &str| ManifestError::Malformed {
        origin: origin.to_string(),
        index,
        message: message.to_string(),
    };
    let Some(obj) = doc.as_object_mut() else {
        return Err(malformed(
            "expected an object with apiVersion, kind and metadata",
        ));
    };
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("missing kind"))?
        .to_string();
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("missing apiVersion"))?
        .to_string();
    let metadata = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(metadata) = metadata.as_object_mut() else {
        return Err(malformed("metadata must be an object"));
    };
    let name = metadata
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| malformed("missing metadata.name"))?
        .to_string();
    let namespace = match metadata.get("namespace").and_then(Value::as_str) {
        Some(ns) if !ns.is_empty() => ns.to_string(),
        _ => {
            metadata.insert("namespace".into(), DEFAULT_NAMESPACE.into());
            DEFAULT_NAMESPACE.to_string()
        }
    };
    let decode_error = |field: String, message: String| ManifestError::Decode {
        origin: origin.to_string(),
        index,
        kind: kind.clone(),
        namespace: namespace.clone(),
        name: name.clone(),
        field,
        message,
    };
    let is_portico = api_version == API_VERSION;
    let core = api_version == "v1";
    if is_portico {
        // The generated root types accept unknown top-level keys; be as strict there as in spec.
        for key in obj.keys() {
            if !matches!(
                key.as_str(),
                "apiVersion" | "kind" | "metadata" | "spec" | "status"
            ) {
                return Err(decode_error(
                    key.clone(),
                    format!(
                        "unknown field `{key}`, expected one of apiVersion, kind, metadata, spec, status"
                    ),
                ));
            }
        }
    }
    let resource = match (is_portico, core, kind.as_str()) {
        (true, _, "RestApi") => Resource::RestApi(strict(doc, &decode_error)?),
        (true, _, "Stage") => Resource::Stage(strict(doc, &decode_error)?),
        (true, _, "UsagePlan") => Resource::UsagePlan(strict(doc, &decode_error)?),
        (true, _, "ApiKey") => Resource::ApiKey(strict(doc, &decode_error)?),
        (true, _, "Authorizer") => Resource::Authorizer(strict(doc, &decode_error)?),
        (_, true, "Secret") => {
            let s: k8s_openapi::api::core::v1::Secret = strict(doc, &decode_error)?;
            let mut data: BTreeMap<String, Vec<u8>> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            // Kubernetes merges stringData over data on write; do the same.
            for (k, v) in s.string_data.unwrap_or_default() {
                data.insert(k, v.into_bytes());
            }
            Resource::Secret {
                namespace,
                name,
                data,
            }
        }
        (_, true, "Service") => {
            let s: k8s_openapi::api::core::v1::Service = strict(doc, &decode_error)?;
            let annotations = s.metadata.annotations.clone().unwrap_or_default();
            let ports = s
                .spec
                .and_then(|spec| spec.ports)
                .unwrap_or_default()
                .into_iter()
                .map(|p| ServicePort {
                    name: p.name,
                    port: p.port,
                })
                .collect();
            Resource::Service {
                namespace,
                name,
                ports,
                annotations,
            }
        }
        _ => {
            return Err(ManifestError::UnknownKind {
                origin: origin.to_string(),
                index,
                kind,
                api_version,
            });
        }
    };
    Ok(resource)
}

/// Deserializes with the failing field's path, e.g. `spec.resources[0].methods.GET`.
fn strict<T: DeserializeOwned>(
    doc: Value,
    err: &dyn Fn(String, String) -> ManifestError,
) -> Result<T, ManifestError> {
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // For an unknown field the path ends with the field itself; name its parent, as the
        // message already names the field.
        let field = match message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
        {
            Some(unknown) if path == unknown => String::new(),
            Some(unknown) => path
                .strip_suffix(&format!(".{unknown}"))
                .map(str::to_string)
                .unwrap_or(path),
            None if path == "." => String::new(),
            None => path,
        };
        err(field, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_documents_are_decoded_and_empty_ones_skipped() {
        let text = "---\n---\napiVersion: portico.dev/v1alpha1\nkind: RestApi\nmetadata: {name: a}\nspec: {}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: ns}\ndata: {k: aGk=}\nstringData: {t: yo}\n";
        let got = parse_manifests("x.yaml", text).unwrap();
        assert_eq!(got.len(), 2);
        let Resource::RestApi(api) = &got[0] else {
            panic!("expected a RestApi, got {:?}", got[0]);
        };
        assert_eq!(api.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(
            got[1],
            Resource::Secret {
                namespace: "ns".into(),
                name: "s".into(),
                data: [
                    ("k".to_string(), b"hi".to_vec()),
                    ("t".to_string(), b"yo".to_vec())
                ]
                .into(),
            }
        );
        assert!(!format!("{:?}", got[1]).contains("hi"));
    }

    #[test]
    fn json_lists_and_single_objects_are_read() {
        let list = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"b"},"spec":{"ports":[{"name":"http","port":80}]}}]}"#;
        let got = parse_manifests("x.json", list).unwrap();
        assert_eq!(
            got,
            vec![Resource::Service {
                namespace: "default".into(),
                name: "b".into(),
                ports: vec![ServicePort {
                    name: Some("http".into()),
                    port: 80
                }],
                annotations: BTreeMap::new(),
            }]
        );
        let one = r#"{"apiVersion":"portico.dev/v1alpha1","kind":"Stage","metadata":{"name":"dev"},"spec":{"restApiRef":{"name":"a"}}}"#;
        assert!(matches!(
            parse_manifests("y.json", one).unwrap()[..],
            [Resource::Stage(_)]
        ));
    }

    #[test]
    fn typos_name_the_file_document_object_and_field() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\n---\napiVersion: portico.dev/v1alpha1\nkind: RestApi\nmetadata: {name: foo}\nspec:\n  resources:\n    - path: /a\n      methods:\n        GET:\n          integraton: {type: MOCK}\n";
        let err = parse_manifests("examples/x.yaml", text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "examples/x.yaml document 2 (RestApi default/foo): spec.resources[0].methods.GET: unknown field `integraton`, expected one of `authorizationType`, `authorizerRef`, `authorizationScopes`, `apiKeyRequired`, `requestParameters`, `requestModels`, `requestValidator`, `methodResponses`, `integration`"
        );
    }

    #[test]
    fn unknown_kinds_and_versions_are_errors() {
        let err = parse_manifests(
            "k.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
        )
        .unwrap_err();
        assert!(
            matches!(err, ManifestError::UnknownKind { index: 1, ref kind, .. } if kind == "Deployment")
        );
        let err = parse_manifests(
            "k.yaml",
            "apiVersion: portico.dev/v1\nkind: RestApi\nmetadata: {name: d}\nspec: {}\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("k.yaml document 1: unknown kind \"RestApi\""),
            "{err}"
        );
    }

    #[test]
    fn wrong_types_and_top_level_typos_are_errors() {
        let err = parse_manifests(
            "t.yaml",
            "apiVersion: portico.dev/v1alpha1\nkind: Stage\nmetadata: {name: s}\nspec: {restApiRef: {name: a}, variables: {a: [1]}}\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("t.yaml document 1 (Stage default/s): spec.variables.a: invalid type"),
            "{err}"
        );
        let err = parse_manifests(
            "t.yaml",
            "apiVersion: portico.dev/v1alpha1\nkind: Stage\nmetadata: {name: s}\nspce: {}\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("spce: unknown field `spce`"),
            "{err}"
        );
    }
}
