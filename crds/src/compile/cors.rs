//! Phase "cors": a RestApi's `spec.cors` to the compiled [`Cors`] policy.
//!
//! Called by `apis` once per API. Origins are normalised to lower-case
//! `scheme://host[:port]`, methods to upper case, headers to lower case. `*` together with
//! `allowCredentials: true` is an error (browsers refuse it): the policy is dropped, so the API
//! answers without CORS headers (browsers then refuse cross-origin calls, the safe side) while
//! the rest of the API keeps serving. Other bad entries are dropped with an error each.

use super::{Diags, METHODS};
use crate::api::rest_api::Cors as CorsSpec;
use crate::reasons;
use portico_config::{Cors, ObjectRef};

/// Compiles `spec.cors`; `None` when it is absent, empty or unusable.
pub(crate) fn compile_cors(
    obj: &ObjectRef,
    spec: Option<&CorsSpec>,
    diags: &mut Diags,
) -> Option<Cors> {
    let spec = spec?;
    let err = |diags: &mut Diags, field: String, msg: String| {
        diags.error(obj, field, reasons::INVALID_CORS, msg);
    };
    let mut out = Cors {
        allow_credentials: spec.allow_credentials == Some(true),
        ..Default::default()
    };
    for (i, o) in spec.allow_origins.iter().enumerate() {
        match normalise_origin(o) {
            Ok(o) => out.allow_origins.push(o),
            Err(e) => err(diags, format!("spec.cors.allowOrigins[{i}]"), e),
        }
    }
    for (i, m) in spec.allow_methods.iter().enumerate() {
        let up = m.trim().to_ascii_uppercase();
        if up == "*" || (METHODS.contains(&up.as_str()) && up != "ANY") {
            out.allow_methods.push(up);
        } else {
            err(
                diags,
                format!("spec.cors.allowMethods[{i}]"),
                format!("{m:?} is not an HTTP method or *"),
            );
        }
    }
    let token = |h: &str| {
        h == "*"
            || (!h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)))
    };
    for (field, list, target) in [
        ("allowHeaders", &spec.allow_headers, &mut out.allow_headers),
        (
            "exposeHeaders",
            &spec.expose_headers,
            &mut out.expose_headers,
        ),
    ] {
        for (i, h) in list.iter().enumerate() {
            let h = h.trim().to_ascii_lowercase();
            if token(&h) {
                target.push(h);
            } else {
                err(
                    diags,
                    format!("spec.cors.{field}[{i}]"),
                    format!("{h:?} is not a header name or *"),
                );
            }
        }
    }
    match spec.max_age {
        None => {}
        Some(n) if n >= 0 => out.max_age = u64::try_from(n).ok(),
        Some(n) => err(
            diags,
            "spec.cors.maxAge".into(),
            format!("maxAge {n} must not be negative"),
        ),
    }
    for list in [
        &mut out.allow_origins,
        &mut out.allow_methods,
        &mut out.allow_headers,
        &mut out.expose_headers,
    ] {
        list.sort();
        list.dedup();
    }
    if out.allow_credentials {
        let wildcard = [
            ("allowOrigins", &out.allow_origins),
            ("allowMethods", &out.allow_methods),
            ("allowHeaders", &out.allow_headers),
            ("exposeHeaders", &out.expose_headers),
        ]
        .into_iter()
        .find(|(_, l)| l.iter().any(|x| x == "*"));
        if let Some((field, _)) = wildcard {
            err(
                diags,
                format!("spec.cors.{field}"),
                format!(
                    "{field} \"*\" cannot be used with allowCredentials: browsers reject it; list the values instead (CORS is off for this API until fixed)"
                ),
            );
            return None;
        }
    }
    if out.allow_origins.is_empty() {
        if spec != &CorsSpec::default() {
            diags.warn(
                obj,
                "spec.cors.allowOrigins",
                reasons::INVALID_CORS,
                "no allowed origin: CORS is off for this API",
            );
        }
        return None;
    }
    Some(out)
}

/// `*`, or `scheme://host[:port]` in lower case (no path, no trailing slash).
fn normalise_origin(o: &str) -> Result<String, String> {
    let o = o.trim();
    if o == "*" {
        return Ok(o.into());
    }
    let lower = o.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(|| format!("origin {o:?} must be * or scheme://host[:port]"))?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ', '*']) {
        return Err(format!(
            "origin {o:?} must be * or scheme://host[:port] (no path, no wildcard in the host)"
        ));
    }
    Ok(lower.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_and_bad_ones_rejected() {
        assert_eq!(
            normalise_origin("HTTPS://App.Example.com/").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(
            normalise_origin("http://localhost:3000").unwrap(),
            "http://localhost:3000"
        );
        assert_eq!(normalise_origin("*").unwrap(), "*");
        assert!(normalise_origin("app.example.com").is_err());
        assert!(normalise_origin("https://a.com/path").is_err());
        assert!(normalise_origin("https://*.a.com").is_err());
    }

    #[test]
    fn a_wildcard_with_credentials_is_an_error_and_turns_cors_off() {
        let obj = ObjectRef::new("RestApi", "default", "a");
        let spec = CorsSpec {
            allow_origins: vec!["*".into()],
            allow_credentials: Some(true),
            ..Default::default()
        };
        let mut diags = Diags::default();
        assert_eq!(compile_cors(&obj, Some(&spec), &mut diags), None);
        assert_eq!(diags.0.len(), 1);
        assert_eq!(diags.0[0].field, "spec.cors.allowOrigins");

        let spec = CorsSpec {
            allow_origins: vec!["https://b.com".into(), "https://A.com".into()],
            allow_methods: vec!["get".into(), "POST".into()],
            allow_headers: vec!["Content-Type".into(), "X-Api-Key".into()],
            max_age: Some(600),
            allow_credentials: Some(true),
            ..Default::default()
        };
        let mut diags = Diags::default();
        assert_eq!(
            compile_cors(&obj, Some(&spec), &mut diags),
            Some(Cors {
                allow_origins: vec!["https://a.com".into(), "https://b.com".into()],
                allow_methods: vec!["GET".into(), "POST".into()],
                allow_headers: vec!["content-type".into(), "x-api-key".into()],
                expose_headers: vec![],
                max_age: Some(600),
                allow_credentials: true,
            })
        );
        assert!(diags.0.is_empty());
    }
}
