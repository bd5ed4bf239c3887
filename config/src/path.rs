//! Path templates: `/content/{id}`, `/files/{proxy+}`.
//!
//! [`PathTemplate::parse`] is the one place that decides what a valid template is; the
//! compiler calls it and the proxy matches on the parsed [`Segment`]s.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One segment of a resource path.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Segment {
    /// A literal segment, matched exactly (case-sensitive, as AWS).
    Literal(String),
    /// `{name}`: matches one non-empty segment.
    Param(String),
    /// `{name+}`: greedy, matches one or more remaining segments; only last.
    Greedy(String),
}

/// A parsed resource path template.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PathTemplate {
    /// Segments in order; empty for the root `/`.
    pub segments: Vec<Segment>,
}

/// Why a path template is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathTemplateError {
    /// Does not start with `/`.
    #[error("path {0:?} must start with '/'")]
    NoLeadingSlash(String),
    /// Contains an empty segment (`//` or a trailing `/`).
    #[error("path {0:?} has an empty segment ('//' or a trailing '/')")]
    EmptySegment(String),
    /// A `{...}` segment is malformed.
    #[error(
        "path segment {0:?} is not a valid parameter: use {{name}} or {{name+}} with letters, digits, '_', '-' or '.'"
    )]
    BadParam(String),
    /// A literal segment has characters AWS does not allow.
    #[error("path segment {0:?} may contain only letters, digits and -._~:@!$&'()*,;=")]
    BadLiteral(String),
    /// A greedy parameter that is not the last segment.
    #[error("greedy parameter {0:?} must be the last segment")]
    GreedyNotLast(String),
    /// The same parameter name twice.
    #[error("parameter {0:?} appears more than once")]
    DuplicateParam(String),
    /// `.` or `..` as a segment.
    #[error("path {0:?} contains a dot segment")]
    DotSegment(String),
}

fn valid_param_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn valid_literal(seg: &str) -> bool {
    seg.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~:@!$&'()*,;=".contains(c))
}

impl PathTemplate {
    /// Parses a template such as `/content/{id}`. `/` is the root (no segments).
    pub fn parse(path: &str) -> Result<Self, PathTemplateError> {
        let Some(rest) = path.strip_prefix('/') else {
            return Err(PathTemplateError::NoLeadingSlash(path.to_string()));
        };
        if rest.is_empty() {
            return Ok(Self {
                segments: Vec::new(),
            });
        }
        let raw: Vec<&str> = rest.split('/').collect();
        let mut segments = Vec::with_capacity(raw.len());
        let mut names: Vec<&str> = Vec::new();
        for (i, seg) in raw.iter().enumerate() {
            if seg.is_empty() {
                return Err(PathTemplateError::EmptySegment(path.to_string()));
            }
            if *seg == "." || *seg == ".." {
                return Err(PathTemplateError::DotSegment(path.to_string()));
            }
            if let Some(inner) = seg.strip_prefix('{') {
                let Some(inner) = inner.strip_suffix('}') else {
                    return Err(PathTemplateError::BadParam(seg.to_string()));
                };
                let (name, greedy) = match inner.strip_suffix('+') {
                    Some(n) => (n, true),
                    None => (inner, false),
                };
                if !valid_param_name(name) {
                    return Err(PathTemplateError::BadParam(seg.to_string()));
                }
                if names.contains(&name) {
                    return Err(PathTemplateError::DuplicateParam(name.to_string()));
                }
                names.push(name);
                if greedy {
                    if i + 1 != raw.len() {
                        return Err(PathTemplateError::GreedyNotLast(seg.to_string()));
                    }
                    segments.push(Segment::Greedy(name.to_string()));
                } else {
                    segments.push(Segment::Param(name.to_string()));
                }
            } else if seg.contains(['{', '}']) || !valid_literal(seg) {
                return Err(if seg.contains(['{', '}']) {
                    PathTemplateError::BadParam(seg.to_string())
                } else {
                    PathTemplateError::BadLiteral(seg.to_string())
                });
            } else {
                segments.push(Segment::Literal(seg.to_string()));
            }
        }
        Ok(Self { segments })
    }

    /// Path parameter names in template order (a greedy `{proxy+}` is `proxy`): the names an
    /// integration uri may use as `{name}`.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) | Segment::Greedy(n) => Some(n.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Shape key used to detect duplicate routes: parameter names do not matter, so
    /// `/a/{x}` and `/a/{y}` collide, as they do in AWS.
    pub fn shape(&self) -> String {
        if self.segments.is_empty() {
            return "/".to_string();
        }
        let mut out = String::new();
        for s in &self.segments {
            out.push('/');
            match s {
                Segment::Literal(l) => out.push_str(l),
                Segment::Param(_) => out.push_str("{}"),
                Segment::Greedy(_) => out.push_str("{+}"),
            }
        }
        out
    }
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for s in &self.segments {
            match s {
                Segment::Literal(l) => write!(f, "/{l}")?,
                Segment::Param(p) => write!(f, "/{{{p}}}")?,
                Segment::Greedy(p) => write!(f, "/{{{p}+}}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_literals_params_and_greedy() {
        let t = PathTemplate::parse("/content/{id}/{proxy+}").unwrap();
        assert_eq!(
            t.segments,
            vec![
                Segment::Literal("content".into()),
                Segment::Param("id".into()),
                Segment::Greedy("proxy".into())
            ]
        );
        assert_eq!(t.to_string(), "/content/{id}/{proxy+}");
        assert_eq!(PathTemplate::parse("/").unwrap().segments, vec![]);
    }

    #[test]
    fn rejects_invalid_templates() {
        use PathTemplateError::*;
        assert!(matches!(
            PathTemplate::parse("content"),
            Err(NoLeadingSlash(_))
        ));
        assert!(matches!(PathTemplate::parse("/a//b"), Err(EmptySegment(_))));
        assert!(matches!(PathTemplate::parse("/a/"), Err(EmptySegment(_))));
        assert!(matches!(
            PathTemplate::parse("/{proxy+}/x"),
            Err(GreedyNotLast(_))
        ));
        assert!(matches!(
            PathTemplate::parse("/{a}/{a}"),
            Err(DuplicateParam(_))
        ));
        assert!(matches!(PathTemplate::parse("/{a"), Err(BadParam(_))));
        assert!(matches!(PathTemplate::parse("/x{a}"), Err(BadParam(_))));
        assert!(matches!(PathTemplate::parse("/{}"), Err(BadParam(_))));
        assert!(matches!(PathTemplate::parse("/a b"), Err(BadLiteral(_))));
        assert!(matches!(PathTemplate::parse("/a/../b"), Err(DotSegment(_))));
    }

    #[test]
    fn shape_ignores_parameter_names() {
        let a = PathTemplate::parse("/a/{x}").unwrap();
        let b = PathTemplate::parse("/a/{y}").unwrap();
        assert_eq!(a.shape(), b.shape());
        assert_ne!(a.shape(), PathTemplate::parse("/a/{x+}").unwrap().shape());
    }
}
