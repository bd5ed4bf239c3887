//! An integration's backend URI as one stage serves it: `${stageVariables.<name>}` replaced
//! by the stage's values ([`resolve_stage_variables`]), then split into scheme, authority,
//! literal path pieces, `{param}` slots and query ([`BackendUri::parse`]).
//!
//! Both sides use it: the compiler checks every stage's URIs with it, so a variable value that
//! makes one unusable is the Stage's condition (the stage is not served), and the proxy builds
//! its backend targets from the same parse.

use std::collections::BTreeMap;

/// A piece of a backend path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UriPiece {
    /// Literal text, sent as is.
    Lit(Box<str>),
    /// The method's path parameter with this index (in template order).
    Param(usize),
}

/// A parsed backend URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendUri {
    /// `https`.
    pub tls: bool,
    /// `host[:port]`, as written.
    pub authority: String,
    /// The path (`/` when empty), split around parameter slots.
    pub path: Vec<UriPiece>,
    /// The query, without `?`, when not empty.
    pub query: Option<Box<str>>,
}

/// Replaces `${stageVariables.<name>}` with `vars[name]`; an undefined variable or an
/// unterminated placeholder is an error.
pub fn resolve_stage_variables(
    uri: &str,
    vars: &BTreeMap<String, String>,
) -> Result<String, String> {
    const OPEN: &str = "${stageVariables.";
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(pos) = rest.find(OPEN) {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + OPEN.len()..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{stageVariables.…}} in {uri:?}"))?;
        let name = &after[..end];
        let value = vars
            .get(name)
            .ok_or_else(|| format!("stage variable {name:?} is not defined on this stage"))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl BackendUri {
    /// Parses `uri` (stage variables already resolved); `params` are the method's path
    /// parameter names in template order (`{proxy}` names a greedy `{proxy+}`; `{proxy+}`
    /// is accepted too).
    pub fn parse<S: AsRef<str>>(uri: &str, params: &[S]) -> Result<BackendUri, String> {
        let (scheme, rest) = uri
            .split_once("://")
            .ok_or_else(|| format!("integration uri {uri:?} has no scheme"))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            other => {
                return Err(format!(
                    "integration uri {uri:?}: unsupported scheme {other:?}"
                ));
            }
        };
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..auth_end];
        if authority.is_empty() || authority.contains(['{', '}', '@']) {
            return Err(format!("integration uri {uri:?} has an invalid host"));
        }
        http::HeaderValue::from_str(authority).map_err(|e| format!("host {authority:?}: {e}"))?;
        let (path, query) = match rest[auth_end..].split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (&rest[auth_end..], None),
        };
        let path = if path.is_empty() { "/" } else { path };
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut p = path;
        while let Some(open) = p.find('{') {
            lit.push_str(&p[..open]);
            let close = p[open..]
                .find('}')
                .ok_or_else(|| format!("integration uri {uri:?}: unterminated {{"))?;
            let name = &p[open + 1..open + close];
            let name = name.strip_suffix('+').unwrap_or(name);
            let idx = params
                .iter()
                .position(|n| n.as_ref() == name)
                .ok_or_else(|| {
                    format!("integration uri {uri:?} names unknown path parameter {name:?}")
                })?;
            if !lit.is_empty() {
                pieces.push(UriPiece::Lit(std::mem::take(&mut lit).into()));
            }
            pieces.push(UriPiece::Param(idx));
            p = &p[open + close + 1..];
        }
        lit.push_str(p);
        if !lit.is_empty() {
            pieces.push(UriPiece::Lit(lit.into()));
        }
        let parsed = BackendUri {
            tls,
            authority: authority.to_string(),
            path: pieces,
            query: query.filter(|q| !q.is_empty()).map(Into::into),
        };
        // The whole URI must be valid once the slots are filled (checked with `x`).
        let mut sample = format!("{}://{}", if tls { "https" } else { "http" }, authority);
        sample.push_str(&parsed.origin_form(|_| "x", None));
        http::Uri::try_from(sample.as_str())
            .map_err(|e| format!("integration uri {uri:?}: {e}"))?;
        Ok(parsed)
    }

    /// Whether the path has parameter slots.
    pub fn has_params(&self) -> bool {
        self.path.iter().any(|p| matches!(p, UriPiece::Param(_)))
    }

    /// The origin-form target (path and query): slots filled by `param`, the configured
    /// query first, then `req_query`.
    pub fn origin_form<'a>(
        &self,
        param: impl Fn(usize) -> &'a str,
        req_query: Option<&str>,
    ) -> String {
        let mut s = String::with_capacity(64);
        for p in &self.path {
            match p {
                UriPiece::Lit(l) => s.push_str(l),
                UriPiece::Param(i) => s.push_str(param(*i)),
            }
        }
        let mut sep = '?';
        for q in [self.query.as_deref(), req_query].into_iter().flatten() {
            if !q.is_empty() {
                s.push(sep);
                s.push_str(q);
                sep = '&';
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn stage_variables_resolve_or_say_which_is_missing() {
        let v = vars(&[("host", "backend:8080"), ("v", "v2")]);
        assert_eq!(
            resolve_stage_variables("http://${stageVariables.host}/${stageVariables.v}/x", &v)
                .unwrap(),
            "http://backend:8080/v2/x"
        );
        assert!(
            resolve_stage_variables("http://${stageVariables.nope}/", &v)
                .unwrap_err()
                .contains("\"nope\" is not defined")
        );
        assert!(resolve_stage_variables("http://${stageVariables.host/", &v).is_err());
    }

    #[test]
    fn uris_split_into_authority_pieces_and_query() {
        let u =
            BackendUri::parse("HTTPS://api.example:8443/v1/{id}/items?x=1#frag", &["id"]).unwrap();
        assert!(u.tls);
        assert_eq!(u.authority, "api.example:8443");
        assert_eq!(
            u.path,
            vec![
                UriPiece::Lit("/v1/".into()),
                UriPiece::Param(0),
                UriPiece::Lit("/items".into())
            ]
        );
        assert_eq!(u.query.as_deref(), Some("x=1"));
        assert_eq!(u.origin_form(|_| "42", Some("y=2")), "/v1/42/items?x=1&y=2");
        let u = BackendUri::parse("http://b/{proxy+}", &["proxy"]).unwrap();
        assert!(u.has_params());
        assert_eq!(
            BackendUri::parse("http://b", &[] as &[&str])
                .unwrap()
                .origin_form(|_| "", None),
            "/"
        );
    }

    /// What a stage variable's value can break, each refused with the reason.
    #[test]
    fn unusable_uris_are_refused_with_the_reason() {
        for (uri, why) in [
            ("backend/x", "no scheme"),
            ("ftp://b/", "unsupported scheme"),
            ("http:///x", "invalid host"),
            ("http://user@b/", "invalid host"),
            ("http://b/{id}", "unknown path parameter"),
            ("http://b/{id", "unterminated"),
            ("http://b/a b", "integration uri"),
            ("http://b\u{7f}/", "host"),
        ] {
            let e = BackendUri::parse(uri, &[] as &[&str]).unwrap_err();
            assert!(e.contains(why), "{uri}: {e}");
        }
    }
}
