//! Diagnostics: what `compile` says about an object, naming the object and the field path.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A reference to the Kubernetes object an element or a diagnostic comes from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    /// Kind, e.g. `RestApi`.
    pub kind: String,
    /// Namespace of the object.
    pub namespace: String,
    /// Name of the object.
    pub name: String,
}

impl ObjectRef {
    /// Builds a reference from its parts.
    pub fn new(
        kind: impl Into<String>,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Severity {
    /// The object (or the named part of it) is not served as written: it is dropped or fails
    /// closed. The operator sets `Accepted=False`; the standalone proxy refuses the change and
    /// keeps its last good config.
    Error,
    /// Served, but something deserves attention (e.g. a field that is accepted but not yet
    /// supported by this version of Portico, or a conflict this object won).
    Warning,
}

/// One finding of `compile` about one object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The object at fault.
    pub object: ObjectRef,
    /// Field path inside the object, e.g. `spec.resources[2].methods.GET.integration.uri`.
    pub field: String,
    /// Machine-readable CamelCase reason, e.g. `UnknownReference`, `DuplicateRoute`.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl Diagnostic {
    /// An error diagnostic.
    pub fn error(
        object: &ObjectRef,
        field: impl Into<String>,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Error,
            object: object.clone(),
            field: field.into(),
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    /// A warning diagnostic.
    pub fn warning(
        object: &ObjectRef,
        field: impl Into<String>,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(object, field, reason, message)
        }
    }

    /// True for [`Severity::Error`].
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{sev}: {} {}: {} ({})",
            self.object, self.field, self.message, self.reason
        )
    }
}
