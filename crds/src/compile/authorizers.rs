//! Phase "authorizers": each `Authorizer` object to a [`portico_config::Authorizer`], and each
//! method's `authorizationType` / `authorizerRef` / `authorizationScopes` to a
//! [`RouteAuthorization`] (or to the reason the method fails closed).
//!
//! ```text
//!  Authorizer (JWT) ── compile_authorizers ──> Ok(Authorizer::Jwt { keys | jwks_uri, .. })
//!  Authorizer (TOKEN | REQUEST)             ──> Ok(Authorizer::Token | Request { function_uri, .. })
//!  (invalid)                                ──> Err(reason): methods using it fail closed
//!  method { authorizationType, authorizerRef, authorizationScopes }
//!                    ── resolve_method ──> Some(RouteAuthorization) | None | Err(fail closed)
//! ```
//!
//! Compile does no I/O: an inline `jwks` is parsed and checked here; a `jwksUri` (`http://` or
//! `https://`) is passed on and fetched by the proxy. TOKEN / REQUEST: `functionUri` (`http://`
//! or `https://`), identity sources, the validation regex (compiled here to check it) and the
//! result TTL (default 300, 0..=3600) are checked. JWT methods (`JWT`, `COGNITO_USER_POOLS`)
//! need a JWT authorizer, `CUSTOM` methods a TOKEN / REQUEST one.

use super::Diags;
use crate::api::authorizer::{AuthorizerType, JwtConfiguration};
use crate::api::rest_api::AuthorizationType;
use crate::api::{Authorizer as AuthorizerCr, LocalObjectReference};
use crate::reasons;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portico_config::{
    Authorizer, FunctionAuthorizer, Jwk, JwtAuthorizer, ObjectRef, PayloadFormatVersion,
    RouteAuthorization,
};
use std::collections::BTreeMap;

/// Algorithms a JWT authorizer may accept: asymmetric only (never `none`, never `HS*`, so a
/// public key can never be used as an HMAC secret).
pub(crate) const JWT_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// The algorithm list used when `jwt.algorithms` is empty (Cognito and most OIDC issuers).
pub(crate) const DEFAULT_JWT_ALGORITHMS: &[&str] = &["RS256"];

/// The default identity source (AWS's for JWT and TOKEN authorizers).
pub(crate) const DEFAULT_IDENTITY_SOURCE: &str = "$request.header.Authorization";

/// An authorizer, or why methods using it fail closed; keyed by (namespace, name).
pub(crate) type CompiledAuthorizers = BTreeMap<(String, String), Compiled>;

/// One compiled authorizer.
pub(crate) struct Compiled {
    pub id: String,
    pub obj: ObjectRef,
    pub result: Result<Authorizer, String>,
}

/// `authorizer/<ns>/<name>`.
pub(crate) fn authorizer_id(namespace: &str, name: &str) -> String {
    format!("authorizer/{namespace}/{name}")
}

/// Compiles every Authorizer object (inputs are sorted and unique).
pub(crate) fn compile_authorizers(
    inputs: &[(ObjectRef, &AuthorizerCr)],
    diags: &mut Diags,
) -> CompiledAuthorizers {
    let mut out = BTreeMap::new();
    for (obj, cr) in inputs {
        let result = compile_one(obj, cr, diags);
        out.insert(
            (obj.namespace.clone(), obj.name.clone()),
            Compiled {
                id: authorizer_id(&obj.namespace, &obj.name),
                obj: obj.clone(),
                result,
            },
        );
    }
    out
}

fn compile_one(
    obj: &ObjectRef,
    cr: &AuthorizerCr,
    diags: &mut Diags,
) -> Result<Authorizer, String> {
    let spec = &cr.spec;
    if spec.type_ != AuthorizerType::Jwt {
        return compile_function(obj, cr, diags);
    }
    let mut errors: Vec<String> = Vec::new();
    let mut invalid = |field: &str, reason: &str, msg: String, diags: &mut Diags| {
        diags.error(
            obj,
            field,
            reason,
            format!("{msg}; methods using this authorizer answer 500"),
        );
        errors.push(format!("{field}: {msg}"));
    };
    let header = match identity_header(&spec.identity_source) {
        Ok(h) => h,
        Err(msg) => {
            invalid(
                "spec.identitySource",
                reasons::INVALID_AUTHORIZER,
                msg,
                diags,
            );
            String::new()
        }
    };
    for (field, set) in [
        ("spec.functionUri", spec.function_uri.is_some()),
        (
            "spec.identityValidationExpression",
            spec.identity_validation_expression.is_some(),
        ),
        (
            "spec.resultTtlInSeconds",
            spec.result_ttl_in_seconds.is_some(),
        ),
        (
            "spec.enableSimpleResponses",
            spec.enable_simple_responses.is_some(),
        ),
        (
            "spec.authorizerPayloadFormatVersion",
            spec.authorizer_payload_format_version.is_some(),
        ),
    ] {
        if set {
            diags.warn(
                obj,
                field,
                reasons::INVALID_AUTHORIZER,
                format!("{field} applies to TOKEN / REQUEST authorizers only; ignored for JWT"),
            );
        }
    }
    let Some(jwt) = &spec.jwt else {
        invalid(
            "spec.jwt",
            reasons::INVALID_AUTHORIZER,
            "a JWT authorizer needs spec.jwt".into(),
            diags,
        );
        return Err(errors.join("; "));
    };
    let compiled = compile_jwt(jwt, &mut |f, r, m, d| invalid(f, r, m, d), diags);
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let (algorithms, keys, jwks_uri) =
        compiled.ok_or_else(|| "invalid JWT settings".to_string())?;
    Ok(Authorizer::Jwt(JwtAuthorizer {
        source: obj.clone(),
        header,
        issuer: jwt.issuer.clone(),
        audiences: jwt.audiences.clone(),
        algorithms,
        keys,
        jwks_uri,
    }))
}

/// Longest result TTL (AWS's).
pub(crate) const MAX_RESULT_TTL: i64 = 3600;
/// Default result TTL (AWS's).
pub(crate) const DEFAULT_RESULT_TTL: i64 = 300;

/// TOKEN / REQUEST authorizers.
fn compile_function(
    obj: &ObjectRef,
    cr: &AuthorizerCr,
    diags: &mut Diags,
) -> Result<Authorizer, String> {
    let spec = &cr.spec;
    let token = spec.type_ == AuthorizerType::Token;
    let mut errors: Vec<String> = Vec::new();
    let mut fail_nys: Option<String> = None;
    let mut invalid = |field: &str, msg: String, diags: &mut Diags| {
        diags.error(
            obj,
            field,
            reasons::INVALID_AUTHORIZER,
            format!("{msg}; methods using this authorizer answer 500"),
        );
        errors.push(format!("{field}: {msg}"));
    };
    let function_uri = match spec.function_uri.as_deref() {
        None => {
            invalid(
                "spec.functionUri",
                "a TOKEN / REQUEST authorizer needs functionUri".into(),
                diags,
            );
            String::new()
        }
        Some(u) => {
            if let Err((reason, msg)) = check_http_uri(u, "functionUri") {
                if reason == reasons::NOT_YET_SUPPORTED {
                    diags.error(
                        obj,
                        "spec.functionUri",
                        reason,
                        format!("{msg}; methods using this authorizer answer 500"),
                    );
                    fail_nys = Some(msg);
                } else {
                    invalid("spec.functionUri", msg, diags);
                }
            }
            u.to_string()
        }
    };
    let mut sources = Vec::new();
    let raw: Vec<String> = if spec.identity_source.is_empty() && token {
        vec![DEFAULT_IDENTITY_SOURCE.to_string()]
    } else {
        spec.identity_source.clone()
    };
    for (i, src) in raw.iter().enumerate() {
        match identity_source(src) {
            Some(s) if !token || s.starts_with("header:") => sources.push(s),
            _ => invalid(
                &format!("spec.identitySource[{i}]"),
                format!(
                    "identity source {src:?} is not supported ({})",
                    if token {
                        "TOKEN: one $request.header.<Name>"
                    } else {
                        "$request.header.<Name> or $request.querystring.<name>"
                    }
                ),
                diags,
            ),
        }
    }
    if token && raw.len() > 1 {
        invalid(
            "spec.identitySource",
            "a TOKEN authorizer takes exactly one identity source".into(),
            diags,
        );
    }
    let expr = spec.identity_validation_expression.clone();
    if let Some(e) = &expr {
        if !token {
            diags.warn(
                obj,
                "spec.identityValidationExpression",
                reasons::INVALID_AUTHORIZER,
                "identityValidationExpression applies to TOKEN authorizers only; ignored",
            );
        } else if let Err(err) = regex::Regex::new(e) {
            invalid(
                "spec.identityValidationExpression",
                format!("not a valid regular expression: {err}"),
                diags,
            );
        }
    }
    let ttl = spec.result_ttl_in_seconds.unwrap_or(DEFAULT_RESULT_TTL);
    if !(0..=MAX_RESULT_TTL).contains(&ttl) {
        invalid(
            "spec.resultTtlInSeconds",
            format!("resultTtlInSeconds {ttl} must be between 0 and {MAX_RESULT_TTL}"),
            diags,
        );
    }
    if spec.jwt.is_some() {
        diags.warn(
            obj,
            "spec.jwt",
            reasons::INVALID_AUTHORIZER,
            "spec.jwt applies to JWT authorizers only; ignored",
        );
    }
    let payload_format_version = match spec.authorizer_payload_format_version.as_deref() {
        None => None,
        Some("1.0") if spec.enable_simple_responses == Some(true) => {
            invalid(
                "spec.enableSimpleResponses",
                "simple responses need authorizerPayloadFormatVersion \"2.0\" (as on AWS)".into(),
                diags,
            );
            None
        }
        Some("1.0") => Some(PayloadFormatVersion::V1),
        Some("2.0") => Some(PayloadFormatVersion::V2),
        Some(v) => {
            invalid(
                "spec.authorizerPayloadFormatVersion",
                format!("authorizerPayloadFormatVersion {v:?} is not \"1.0\" or \"2.0\""),
                diags,
            );
            None
        }
    };
    if token && payload_format_version.is_some() {
        diags.warn(
            obj,
            "spec.authorizerPayloadFormatVersion",
            reasons::INVALID_AUTHORIZER,
            "TOKEN authorizers have one event format; authorizerPayloadFormatVersion is ignored",
        );
    }
    errors.extend(fail_nys);
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let f = FunctionAuthorizer {
        payload_format_version: if token { None } else { payload_format_version },
        source: obj.clone(),
        function_uri,
        identity_sources: sources,
        identity_validation_expression: if token { expr } else { None },
        result_ttl_seconds: u32::try_from(ttl).expect("checked 0..=3600"),
        simple_responses: spec.enable_simple_responses == Some(true),
    };
    Ok(if token {
        Authorizer::Token(f)
    } else {
        Authorizer::Request(f)
    })
}

/// `$request.header.X` / `method.request.header.X` / `route.request.header.X` (WebSocket
/// APIs' spelling) -> `header:x`; `$request.querystring.x` / `method.request.querystring.x` /
/// `route.request.querystring.x` -> `query:x`.
fn identity_source(src: &str) -> Option<String> {
    let rest = src
        .strip_prefix("$request.")
        .or_else(|| src.strip_prefix("method.request."))
        .or_else(|| src.strip_prefix("route.request."))?;
    if let Some(h) = rest.strip_prefix("header.") {
        return (!h.is_empty() && http_token(h).is_some())
            .then(|| format!("header:{}", h.to_ascii_lowercase()));
    }
    let q = rest.strip_prefix("querystring.")?;
    (!q.is_empty()).then(|| format!("query:{q}"))
}

type Invalid<'f> = dyn FnMut(&str, &str, String, &mut Diags) + 'f;

fn compile_jwt(
    jwt: &JwtConfiguration,
    invalid: &mut Invalid<'_>,
    diags: &mut Diags,
) -> Option<(Vec<String>, Vec<Jwk>, Option<String>)> {
    let mut ok = true;
    if jwt.issuer.trim().is_empty() {
        invalid(
            "spec.jwt.issuer",
            reasons::INVALID_AUTHORIZER,
            "issuer must not be empty".into(),
            diags,
        );
        ok = false;
    }
    let algorithms: Vec<String> = if jwt.algorithms.is_empty() {
        DEFAULT_JWT_ALGORITHMS
            .iter()
            .map(|a| a.to_string())
            .collect()
    } else {
        jwt.algorithms.clone()
    };
    for (i, a) in algorithms.iter().enumerate() {
        if !JWT_ALGORITHMS.contains(&a.as_str()) {
            invalid(
                &format!("spec.jwt.algorithms[{i}]"),
                reasons::INVALID_AUTHORIZER,
                format!(
                    "algorithm {a:?} is not accepted (only asymmetric algorithms: {})",
                    JWT_ALGORITHMS.join(", ")
                ),
                diags,
            );
            ok = false;
        }
    }
    let mut jwks_uri = None;
    let keys = match (&jwt.jwks, &jwt.jwks_uri) {
        (Some(_), Some(_)) => {
            invalid(
                "spec.jwt.jwksUri",
                reasons::INVALID_AUTHORIZER,
                "set either spec.jwt.jwks or spec.jwt.jwksUri, not both".into(),
                diags,
            );
            ok = false;
            Vec::new()
        }
        (Some(text), None) => match parse_jwks(text) {
            Ok(keys) => keys,
            Err(msg) => {
                invalid("spec.jwt.jwks", reasons::INVALID_AUTHORIZER, msg, diags);
                ok = false;
                Vec::new()
            }
        },
        (None, Some(uri)) => {
            match check_jwks_uri(uri) {
                Ok(()) => jwks_uri = Some(uri.clone()),
                Err((reason, msg)) => {
                    invalid("spec.jwt.jwksUri", reason, msg, diags);
                    ok = false;
                }
            }
            Vec::new()
        }
        (None, None) => {
            invalid(
                "spec.jwt.jwks",
                reasons::INVALID_AUTHORIZER,
                "a JWT authorizer needs a key set (spec.jwt.jwks or spec.jwt.jwksUri)".into(),
                diags,
            );
            ok = false;
            Vec::new()
        }
    };
    ok.then_some((algorithms, keys, jwks_uri))
}

/// A `jwksUri` the proxy can fetch: `http://` or `https://host[:port]/path` (https trusts
/// Mozilla's roots and the proxy's `--ca-file`).
fn check_jwks_uri(uri: &str) -> Result<(), (&'static str, String)> {
    check_http_uri(uri, "jwksUri")
}

/// An `http://` or `https://host[:port]/path` URL.
fn check_http_uri(uri: &str, what: &str) -> Result<(), (&'static str, String)> {
    let rest = uri
        .strip_prefix("https://")
        .or_else(|| uri.strip_prefix("http://"))
        .ok_or((
            reasons::INVALID_AUTHORIZER,
            format!("{what} {uri:?} must be an http:// or https:// URL"),
        ))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty()
        || host.contains('@')
        || uri.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err((
            reasons::INVALID_AUTHORIZER,
            format!("{what} {uri:?} is not a valid URL"),
        ));
    }
    Ok(())
}

/// The header named by the identity source: `$request.header.X` (HTTP API form) or
/// `method.request.header.X` (REST form); default `Authorization`. Lower-cased.
fn identity_header(sources: &[String]) -> Result<String, String> {
    let source = match sources {
        [] => DEFAULT_IDENTITY_SOURCE,
        [one] => one.as_str(),
        _ => return Err("a JWT authorizer takes exactly one identity source".into()),
    };
    let name = source
        .strip_prefix("$request.header.")
        .or_else(|| source.strip_prefix("method.request.header."))
        .or_else(|| source.strip_prefix("route.request.header."))
        .ok_or_else(|| {
            format!(
                "identity source {source:?} must be $request.header.<Name> for a JWT authorizer"
            )
        })?;
    if name.is_empty() || http_token(name).is_none() {
        return Err(format!("identity source {source:?} names no valid header"));
    }
    Ok(name.to_ascii_lowercase())
}

fn http_token(s: &str) -> Option<&str> {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        .then_some(s)
}

/// Parses and checks an inline JWKS: every signing key must be complete and decodable; at
/// least one must be usable.
pub(crate) fn parse_jwks(text: &str) -> Result<Vec<Jwk>, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set =
        serde_json::from_str(text).map_err(|e| format!("the key set is not a JWKS: {e}"))?;
    let mut keys = Vec::new();
    for (i, raw) in set.keys.into_iter().enumerate() {
        if raw.get("d").is_some() || raw.get("k").is_some() {
            return Err(format!(
                "keys[{i}] holds private or symmetric key material; publish public keys only"
            ));
        }
        let key: Jwk =
            serde_json::from_value(raw).map_err(|e| format!("keys[{i}] is not a JWK: {e}"))?;
        if key.use_.as_deref() == Some("enc") {
            continue;
        }
        check_jwk(&key).map_err(|e| format!("keys[{i}]: {e}"))?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err("the key set has no signing key".into());
    }
    Ok(keys)
}

fn check_jwk(k: &Jwk) -> Result<(), String> {
    let b64 = |name: &str, v: &Option<String>| -> Result<Vec<u8>, String> {
        let v = v.as_deref().ok_or_else(|| format!("missing {name:?}"))?;
        URL_SAFE_NO_PAD
            .decode(v.trim_end_matches('='))
            .map_err(|_| format!("{name:?} is not base64url"))
    };
    let alg_ok = |allowed: &[&str]| match &k.alg {
        Some(a) if !allowed.contains(&a.as_str()) => {
            Err(format!("alg {a:?} does not fit kty {:?}", k.kty))
        }
        _ => Ok(()),
    };
    match k.kty.as_str() {
        "RSA" => {
            alg_ok(&["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"])?;
            let n = b64("n", &k.n)?;
            b64("e", &k.e)?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < 2048 {
                return Err(format!(
                    "RSA key of {bits} bits; at least 2048 are required"
                ));
            }
            Ok(())
        }
        "EC" => {
            let (alg, len) = match k.crv.as_deref() {
                Some("P-256") => ("ES256", 32),
                Some("P-384") => ("ES384", 48),
                other => return Err(format!("unsupported EC curve {other:?}")),
            };
            alg_ok(&[alg])?;
            if b64("x", &k.x)?.len() != len || b64("y", &k.y)?.len() != len {
                return Err("EC coordinates have the wrong length".into());
            }
            Ok(())
        }
        "OKP" => {
            if k.crv.as_deref() != Some("Ed25519") {
                return Err(format!("unsupported OKP curve {:?}", k.crv));
            }
            alg_ok(&["EdDSA"])?;
            if b64("x", &k.x)?.len() != 32 {
                return Err("Ed25519 key has the wrong length".into());
            }
            Ok(())
        }
        other => Err(format!("unsupported key type {other:?} (RSA, EC, OKP)")),
    }
}

/// A method's security settings, as `resolve_method` reads them.
#[derive(Default)]
pub(crate) struct MethodAuth<'a> {
    pub authorization_type: Option<AuthorizationType>,
    pub authorizer_ref: Option<&'a LocalObjectReference>,
    pub scopes: &'a [String],
}

/// Resolves one method's authorization. `Ok(None)`: open. `Err(reason)`: the method fails
/// closed (diagnostics recorded). Used authorizers are added to `used`.
pub(crate) fn resolve_method(
    obj: &ObjectRef,
    field: &str,
    m: &MethodAuth<'_>,
    authorizers: &CompiledAuthorizers,
    used: &mut BTreeMap<String, Authorizer>,
    diags: &mut Diags,
) -> Result<Option<RouteAuthorization>, String> {
    let ty = m.authorization_type.unwrap_or_default();
    let fail = |diags: &mut Diags, sub: &str, reason: &str, msg: String| {
        let f = format!("{field}.{sub}");
        diags.error(
            obj,
            &f,
            reason,
            format!("{msg}; the method answers 500 rather than being served unprotected"),
        );
        Err(format!("{f}: {msg}"))
    };
    match ty {
        AuthorizationType::None => {
            if m.authorizer_ref.is_some() || !m.scopes.is_empty() {
                return fail(
                    diags,
                    "authorizationType",
                    reasons::AUTHORIZER_TYPE_MISMATCH,
                    "authorizerRef or authorizationScopes are set but authorizationType is NONE"
                        .into(),
                );
            }
            Ok(None)
        }
        AuthorizationType::Custom
        | AuthorizationType::Jwt
        | AuthorizationType::CognitoUserPools => {
            let Some(r) = m.authorizer_ref else {
                return fail(
                    diags,
                    "authorizerRef",
                    reasons::UNKNOWN_REFERENCE,
                    "a method with an authorizationType other than NONE needs authorizerRef".into(),
                );
            };
            let Some(c) = authorizers.get(&(obj.namespace.clone(), r.name.clone())) else {
                return fail(
                    diags,
                    "authorizerRef.name",
                    reasons::UNKNOWN_REFERENCE,
                    format!("Authorizer {}/{} does not exist", obj.namespace, r.name),
                );
            };
            let a = match &c.result {
                Ok(a) => a,
                Err(_) => {
                    return fail(
                        diags,
                        "authorizerRef.name",
                        reasons::REFERENCE_NOT_ACCEPTED,
                        format!("{} is not valid (see its diagnostics)", c.obj),
                    );
                }
            };
            let jwt = matches!(a, Authorizer::Jwt(_));
            if jwt == (ty == AuthorizationType::Custom) {
                return fail(
                    diags,
                    "authorizationType",
                    reasons::AUTHORIZER_TYPE_MISMATCH,
                    format!(
                        "authorizationType {} does not fit {} (JWT and COGNITO_USER_POOLS need a JWT authorizer, CUSTOM a TOKEN or REQUEST one)",
                        match ty {
                            AuthorizationType::Custom => "CUSTOM",
                            AuthorizationType::Jwt => "JWT",
                            _ => "COGNITO_USER_POOLS",
                        },
                        c.obj
                    ),
                );
            }
            if !jwt && !m.scopes.is_empty() {
                diags.warn(
                    obj,
                    format!("{field}.authorizationScopes"),
                    reasons::AUTHORIZER_TYPE_MISMATCH,
                    "authorizationScopes apply to JWT authorizers only; ignored",
                );
            }
            used.insert(c.id.clone(), a.clone());
            Ok(Some(RouteAuthorization {
                authorizer_id: c.id.clone(),
                scopes: if jwt { m.scopes.to_vec() } else { Vec::new() },
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_sources_name_a_lower_case_header() {
        assert_eq!(identity_header(&[]).unwrap(), "authorization");
        assert_eq!(
            identity_header(&["method.request.header.X-Token".into()]).unwrap(),
            "x-token"
        );
        assert!(identity_header(&["$request.querystring.t".into()]).is_err());
        assert!(identity_header(&["$request.header.".into()]).is_err());
    }

    #[test]
    fn key_sets_refuse_private_symmetric_short_and_mismatched_keys() {
        let ec = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"a","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
        assert_eq!(parse_jwks(ec).unwrap().len(), 1);
        assert!(parse_jwks(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).is_err());
        assert!(parse_jwks(r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}"#).is_err());
        let mismatched = ec.replace(r#""kid":"a""#, r#""kid":"a","alg":"RS256""#);
        assert!(parse_jwks(&mismatched).is_err());
        assert!(parse_jwks(r#"{"keys":[]}"#).is_err());
        assert!(parse_jwks("not json").is_err());
    }
}
