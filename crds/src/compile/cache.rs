//! Phase "cache": the stage response cache (`cacheClusterEnabled`, `cacheClusterSize`,
//! `methodSettings` caching fields, the `portico.dev/flush-cache` annotation) and each
//! method's cache key (`integration.cacheKeyParameters`, `integration.cacheNamespace`).
//!
//! ```text
//!  method integration.cacheKeyParameters / cacheNamespace
//!        ── compile_cache_key (called by `apis`) ──> Route { cache_key_parameters, cache_namespace }
//!  Stage cacheCluster* + methodSettings["*/*"] + methodSettings["<path>/<VERB>"] + annotation
//!        ── compile_stage_caches (after `stages`) ──> Stage { cache: Some(StageCache) }
//!                                                     + CachedPrivateResponse /
//!                                                       CacheKeyMissesPathParameter warnings
//! ```
//!
//! AWS semantics: with the cache on, only GET methods are cached by default (`*/*` holds the
//! stage-wide defaults, `cachingEnabled` default `true`); any other method only when its own
//! entry says `cachingEnabled: true`. A bad cache setting never drops a stage: a bad size
//! serves the stage without a cache, a bad method entry is ignored.

use super::Diags;
use super::normalise::{Inputs, StageInput};
use super::usage_plans::{route_for, unknown_method_message};
use crate::api::rest_api::Integration as IntegrationSpec;
use crate::api::stage::{MethodSetting, UnauthorizedCacheControlHeaderStrategy};
use crate::reasons;
use portico_config::{
    Api, ApiKeySource, Authorizer, GatewayConfig, MethodCache, ObjectRef, ParameterLocation,
    Protocol, RequiredParameter, Route, StageCache, UnauthorizedCacheControl,
};
use std::collections::BTreeMap;

/// The `methodSettings` key of the stage-wide defaults.
pub(crate) const ALL_METHODS: &str = "*/*";

/// AWS's cache sizes (`cacheClusterSize`, GB) and the byte budgets they name.
pub(crate) const CACHE_SIZES: &[(&str, u64)] = &[
    ("0.5", 500_000_000),
    ("1.6", 1_600_000_000),
    ("6.1", 6_100_000_000),
    ("13.5", 13_500_000_000),
    ("28.4", 28_400_000_000),
    ("58.2", 58_200_000_000),
    ("118", 118_000_000_000),
    ("237", 237_000_000_000),
];

/// The size used when `cacheClusterSize` is unset (AWS's default).
pub(crate) const DEFAULT_CACHE_SIZE: &str = "0.5";

/// Smallest `cacheClusterSizeBytes` accepted.
pub(crate) const MIN_CACHE_BYTES: i64 = 65_536;

/// Largest `cacheClusterSizeBytes` accepted (1 TiB).
pub(crate) const MAX_CACHE_BYTES: i64 = 1 << 40;

/// Largest `cacheTtlInSeconds` (AWS's).
const MAX_CACHE_TTL_SECONDS: i64 = portico_config::MAX_CACHE_TTL_SECONDS as i64;

/// AWS's `cacheTtlInSeconds` default.
pub(crate) const DEFAULT_CACHE_TTL_SECONDS: u32 = 300;

/// The header carrying the API key (`apiKeySource: HEADER`).
const API_KEY_HEADER: &str = "x-api-key";

/// The cache key of one method.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct CacheKey {
    pub parameters: Vec<RequiredParameter>,
    pub namespace: Option<String>,
}

/// `integration.cacheKeyParameters` and `integration.cacheNamespace` of the method at `field`
/// (e.g. `spec.resources[0].methods.GET`), whose path parameters are `params`. An invalid
/// entry is an error and is dropped; on an HTTP API both fields are ignored with a warning.
pub(crate) fn compile_cache_key(
    obj: &ObjectRef,
    field: &str,
    spec: Option<&IntegrationSpec>,
    params: &[String],
    protocol: Protocol,
    diags: &mut Diags,
) -> CacheKey {
    let mut out = CacheKey::default();
    let Some(spec) = spec else { return out };
    let ifield = format!("{field}.integration");
    if protocol != Protocol::Rest {
        for (sub, set) in [
            ("cacheKeyParameters", !spec.cache_key_parameters.is_empty()),
            ("cacheNamespace", spec.cache_namespace.is_some()),
        ] {
            if set {
                diags.warn(
                    obj,
                    format!("{ifield}.{sub}"),
                    reasons::NOT_SUPPORTED_BY_PROTOCOL,
                    format!(
                        "{sub} has no effect: {} APIs have no response cache (REST APIs only, as on AWS); ignored",
                        if protocol == Protocol::WebSocket { "WebSocket" } else { "HTTP" }
                    ),
                );
            }
        }
        return out;
    }
    for (j, key) in spec.cache_key_parameters.iter().enumerate() {
        let f = format!("{ifield}.cacheKeyParameters[{j}]");
        match parse_cache_key_parameter(key, params) {
            Ok(p) if out.parameters.contains(&p) => diags.warn(
                obj,
                f,
                reasons::INVALID_CACHE_KEY_PARAMETER,
                format!("{key} is listed more than once; the repeat is ignored"),
            ),
            Ok(p) => out.parameters.push(p),
            Err(e) => diags.error(
                obj,
                f,
                reasons::INVALID_CACHE_KEY_PARAMETER,
                format!("{e}; the entry is ignored (the method is served with the others)"),
            ),
        }
    }
    out.namespace = spec.cache_namespace.clone().filter(|n| !n.is_empty());
    out
}

/// `method.request.<path|querystring|header>.<name>`; a path name must be one of `params`,
/// a header name is lower-cased.
fn parse_cache_key_parameter(key: &str, params: &[String]) -> Result<RequiredParameter, String> {
    let rest = key.strip_prefix("method.request.").ok_or_else(|| {
        format!(
            "{key:?} must be method.request.path.<name>, method.request.querystring.<name> or method.request.header.<name>"
        )
    })?;
    let (loc, name) = rest.split_once('.').ok_or_else(|| {
        format!(
            "{key:?} must be method.request.path.<name>, method.request.querystring.<name> or method.request.header.<name>"
        )
    })?;
    if name.is_empty() {
        return Err(format!("{key:?} has no parameter name"));
    }
    let location = match loc {
        "path" => ParameterLocation::Path,
        "querystring" => ParameterLocation::Querystring,
        "header" => ParameterLocation::Header,
        other => {
            return Err(format!(
                "{key:?}: unknown location {other:?} (expected path, querystring or header)"
            ));
        }
    };
    let name = match location {
        ParameterLocation::Path if !params.iter().any(|p| p == name) => {
            return Err(format!(
                "{key}: the resource path has no parameter {{{name}}}"
            ));
        }
        ParameterLocation::Header => {
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            {
                return Err(format!("{key:?}: {name:?} is not a valid header name"));
            }
            name.to_ascii_lowercase()
        }
        _ => name.to_string(),
    };
    Ok(RequiredParameter { location, name })
}

/// Compiles the response cache of every compiled stage (`config.stages`), with the safety
/// warnings about what its cached methods' keys miss.
pub(crate) fn compile_stage_caches(
    inputs: &Inputs<'_>,
    config: &mut GatewayConfig,
    diags: &mut Diags,
) {
    let GatewayConfig { apis, stages, .. } = config;
    let by_id = super::StageIndex::new(inputs, apis);
    for stage in stages.iter_mut() {
        let Some((input, api)) = by_id.get(&stage.id, &stage.api_id) else {
            continue;
        };
        let Some((cache, origin)) = stage_cache(input, api, diags) else {
            continue;
        };
        let field_of = |route_key: &str| match origin.get(route_key) {
            Some(key) => format!("spec.methodSettings[{key:?}]"),
            None if input.spec.method_settings.contains_key(ALL_METHODS) => {
                format!("spec.methodSettings[{ALL_METHODS:?}]")
            }
            None => "spec.cacheClusterEnabled".to_string(),
        };
        check_cached_routes(&input.obj, &cache, api, &field_of, diags);
        // Canary requests that use the stage cache share its entries.
        if let Some(c) = &stage.canary
            && c.use_stage_cache
            && c.api_id != api.id
            && let Some(canary_api) = by_id.api(&c.api_id)
        {
            check_cached_routes(&input.obj, &cache, canary_api, &field_of, diags);
        }
        stage.cache = Some(cache);
    }
}

/// The settings of the stage's cache, and for each `methods` entry the `methodSettings` key
/// it came from; `None` when the stage has no cache.
fn stage_cache(
    input: &StageInput<'_>,
    api: &Api,
    diags: &mut Diags,
) -> Option<(StageCache, BTreeMap<String, String>)> {
    let obj = &input.obj;
    let spec = input.spec;
    let enabled = spec.cache_cluster_enabled == Some(true);
    let mut set: Vec<String> = Vec::new();
    if spec.cache_cluster_size.is_some() {
        set.push("spec.cacheClusterSize".into());
    }
    if spec.cache_cluster_size_bytes.is_some() {
        set.push("spec.cacheClusterSizeBytes".into());
    }
    for (key, m) in &spec.method_settings {
        if m.sets_caching() {
            set.push(format!("spec.methodSettings[{key:?}]"));
        }
    }
    if api.protocol != Protocol::Rest {
        if enabled {
            set.insert(0, "spec.cacheClusterEnabled".into());
        }
        for field in set {
            diags.warn(
                obj,
                &field,
                reasons::NOT_SUPPORTED_BY_PROTOCOL,
                format!(
                    "{field} has no effect: {} is {kind} API, and {kinds} APIs have no response cache (REST APIs only, as on AWS); ignored",
                    api.source,
                    kind = if api.protocol == Protocol::WebSocket { "a WebSocket" } else { "an HTTP" },
                    kinds = if api.protocol == Protocol::WebSocket { "WebSocket" } else { "HTTP" },
                ),
            );
        }
        return None;
    }
    if !enabled {
        for field in set {
            diags.warn(
                obj,
                &field,
                reasons::CACHE_NOT_ENABLED,
                format!("{field} has no effect: spec.cacheClusterEnabled is not true"),
            );
        }
        return None;
    }

    let budget = budget_bytes(obj, spec, diags)?;
    let aws_defaults = MethodCache {
        enabled: true,
        ttl_seconds: DEFAULT_CACHE_TTL_SECONDS,
        encrypted: false,
        require_authorization: true,
        unauthorized: UnauthorizedCacheControl::SucceedWithResponseHeader,
    };
    let defaults = match spec.method_settings.get(ALL_METHODS) {
        Some(m) if m.sets_caching() => {
            resolve(obj, ALL_METHODS, m, &aws_defaults, true, diags).unwrap_or(aws_defaults)
        }
        _ => aws_defaults,
    };
    let mut methods = BTreeMap::new();
    let mut origin = BTreeMap::new();
    for (key, m) in &spec.method_settings {
        if key == ALL_METHODS || !m.sets_caching() {
            continue;
        }
        let Some(route) = route_for(api, key) else {
            // The same text as for a throttle of the same key, so the two merge.
            diags.error(
                obj,
                format!("spec.methodSettings[{key:?}]"),
                reasons::UNKNOWN_REFERENCE,
                unknown_method_message(key, api),
            );
            continue;
        };
        let by_default = defaults.enabled && route.http_method == "GET";
        if let Some(c) = resolve(obj, key, m, &defaults, by_default, diags) {
            methods.insert(route.route_key.clone(), c);
            origin.insert(route.route_key.clone(), key.clone());
        }
    }
    Some((
        StageCache {
            budget_bytes: budget,
            flush_token: input.flush_token.clone(),
            defaults,
            methods,
        },
        origin,
    ))
}

/// `cacheClusterSizeBytes` when set, else the bytes `cacheClusterSize` names; `None` (with an
/// error) when either is invalid.
fn budget_bytes(obj: &ObjectRef, spec: &crate::api::StageSpec, diags: &mut Diags) -> Option<u64> {
    let size = spec
        .cache_cluster_size
        .as_deref()
        .unwrap_or(DEFAULT_CACHE_SIZE);
    let named = CACHE_SIZES
        .iter()
        .find(|(name, _)| *name == size)
        .map(|(_, bytes)| *bytes);
    if named.is_none() {
        let names: Vec<String> = CACHE_SIZES.iter().map(|(n, _)| format!("{n:?}")).collect();
        diags.error(
            obj,
            "spec.cacheClusterSize",
            reasons::INVALID_CACHE_SETTINGS,
            format!(
                "cacheClusterSize {size:?} is not one of {} (GB); the stage is served without a cache",
                names.join(", ")
            ),
        );
    }
    let bytes = match spec.cache_cluster_size_bytes {
        None => named,
        Some(b) if (MIN_CACHE_BYTES..=MAX_CACHE_BYTES).contains(&b) => {
            Some(u64::try_from(b).expect("checked positive"))
        }
        Some(b) => {
            diags.error(
                obj,
                "spec.cacheClusterSizeBytes",
                reasons::INVALID_CACHE_SETTINGS,
                format!(
                    "cacheClusterSizeBytes {b} is not within {MIN_CACHE_BYTES}..={MAX_CACHE_BYTES}; the stage is served without a cache"
                ),
            );
            None
        }
    };
    named.and(bytes)
}

/// One `methodSettings` entry's caching fields over `base`; `enabled_by_default` is used when
/// it does not set `cachingEnabled`. `None` (with an error) when it is invalid.
fn resolve(
    obj: &ObjectRef,
    key: &str,
    m: &MethodSetting,
    base: &MethodCache,
    enabled_by_default: bool,
    diags: &mut Diags,
) -> Option<MethodCache> {
    let ttl_seconds = match m.cache_ttl_in_seconds {
        None => base.ttl_seconds,
        Some(t) if (0..=MAX_CACHE_TTL_SECONDS).contains(&t) => {
            u32::try_from(t).expect("checked within 0..=3600")
        }
        Some(t) => {
            let what = if key == ALL_METHODS {
                "AWS's defaults apply to the stage's methods"
            } else {
                "the method is cached as the stage's defaults say"
            };
            diags.error(
                obj,
                format!("spec.methodSettings[{key:?}].cacheTtlInSeconds"),
                reasons::INVALID_CACHE_SETTINGS,
                format!(
                    "cacheTtlInSeconds {t} is not within 0..={MAX_CACHE_TTL_SECONDS}; this entry's caching settings are ignored ({what})"
                ),
            );
            return None;
        }
    };
    Some(MethodCache {
        enabled: m.caching_enabled.unwrap_or(enabled_by_default),
        ttl_seconds,
        encrypted: m.cache_data_encrypted.unwrap_or(base.encrypted),
        require_authorization: m
            .require_authorization_for_cache_control
            .unwrap_or(base.require_authorization),
        unauthorized: m
            .unauthorized_cache_control_header_strategy
            .map_or(base.unauthorized, |s| match s {
                UnauthorizedCacheControlHeaderStrategy::FailWith403 => {
                    UnauthorizedCacheControl::FailWith403
                }
                UnauthorizedCacheControlHeaderStrategy::SucceedWithResponseHeader => {
                    UnauthorizedCacheControl::SucceedWithResponseHeader
                }
                UnauthorizedCacheControlHeaderStrategy::SucceedWithoutResponseHeader => {
                    UnauthorizedCacheControl::SucceedWithoutResponseHeader
                }
            }),
    })
}

/// `method.request.<location>.<name>`, with AWS's spelling of `Authorization`.
fn parameter_text(p: &RequiredParameter) -> String {
    let loc = match p.location {
        ParameterLocation::Path => "path",
        ParameterLocation::Querystring => "querystring",
        ParameterLocation::Header => "header",
    };
    let name = if p.location == ParameterLocation::Header && p.name == "authorization" {
        "Authorization"
    } else {
        &p.name
    };
    format!("method.request.{loc}.{name}")
}

fn header(name: &str) -> RequiredParameter {
    RequiredParameter {
        location: ParameterLocation::Header,
        name: name.to_string(),
    }
}

/// The request values that identify the caller of `route`, the one to suggest first.
fn caller_identities(route: &Route, api: &Api) -> Vec<RequiredParameter> {
    let mut out = Vec::new();
    if let Some(a) = &route.authorization {
        match api.authorizers.get(&a.authorizer_id) {
            Some(Authorizer::Jwt(j)) => out.push(header(&j.header)),
            Some(Authorizer::Token(f) | Authorizer::Request(f)) => {
                for s in &f.identity_sources {
                    if let Some(h) = s.strip_prefix("header:") {
                        out.push(header(h));
                    } else if let Some(q) = s.strip_prefix("query:") {
                        out.push(RequiredParameter {
                            location: ParameterLocation::Querystring,
                            name: q.to_string(),
                        });
                    }
                }
            }
            None => {}
        }
    }
    if route.api_key_required && api.api_key_source == ApiKeySource::Header {
        out.push(header(API_KEY_HEADER));
    }
    let authorization = header("authorization");
    if !out.contains(&authorization) {
        out.push(authorization);
    }
    out
}

/// Warns about each cached route of `api` whose cache key lets callers share answers they
/// should not: a private answer without the caller's identity, or path parameters left out.
fn check_cached_routes(
    obj: &ObjectRef,
    cache: &StageCache,
    api: &Api,
    field_of: &dyn Fn(&str) -> String,
    diags: &mut Diags,
) {
    for route in &api.routes {
        if route.fail_closed.is_some() {
            continue;
        }
        // As the proxy decides: by the route's own method (an `ANY` route is cached only
        // when its own entry enables it).
        let Some(m) = cache.method(&route.route_key, &route.http_method) else {
            continue;
        };
        let key = &route.cache_key_parameters;
        let field = field_of(&route.route_key);
        if route.authorization.is_some() || route.api_key_required {
            let ids = caller_identities(route, api);
            if !key.iter().any(|p| ids.contains(p)) {
                let why = match (route.authorization.is_some(), route.api_key_required) {
                    (true, true) => "has an authorizer and requires an API key",
                    (true, false) => "has an authorizer",
                    _ => "requires an API key",
                };
                diags.warn(
                    obj,
                    &field,
                    reasons::CACHED_PRIVATE_RESPONSE,
                    format!(
                        "{} of {} is cached and {why}, but its cache key holds no caller identity: one caller's answer is served to others for up to {} s; add {} to the method's integration.cacheKeyParameters, or set cachingEnabled: false for it",
                        route.route_key,
                        api.source,
                        m.ttl_seconds,
                        parameter_text(&ids[0]),
                    ),
                );
            }
        }
        let missing: Vec<&str> = route
            .matcher
            .param_names()
            .filter(|n| {
                !key.iter()
                    .any(|p| p.location == ParameterLocation::Path && p.name == *n)
            })
            .collect();
        if !missing.is_empty() {
            let braced: Vec<String> = missing.iter().map(|n| format!("{{{n}}}")).collect();
            let add: Vec<String> = missing
                .iter()
                .map(|n| format!("method.request.path.{n}"))
                .collect();
            diags.warn(
                obj,
                &field,
                reasons::CACHE_KEY_MISSES_PATH_PARAMETER,
                format!(
                    "{} of {} is cached, but its cache key leaves out {}: every {} shares one cached answer (as on AWS); add {} to the method's integration.cacheKeyParameters",
                    route.route_key,
                    api.source,
                    braced.join(", "),
                    braced.join(", "),
                    add.join(", "),
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn cache_key_parameters_parse_and_lower_case_headers() {
        let p = params(&["id"]);
        assert_eq!(
            parse_cache_key_parameter("method.request.header.X-Tenant", &p).unwrap(),
            header("x-tenant")
        );
        assert_eq!(
            parse_cache_key_parameter("method.request.path.id", &p)
                .unwrap()
                .location,
            ParameterLocation::Path
        );
        assert_eq!(
            parse_cache_key_parameter("method.request.querystring.Page", &p)
                .unwrap()
                .name,
            "Page"
        );
        for bad in [
            "method.request.path.nope",
            "method.request.body",
            "method.request.multivaluequerystring.a",
            "integration.request.header.a",
            "method.request.header.",
            "method.request.header.a b",
        ] {
            assert!(
                parse_cache_key_parameter(bad, &p).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn every_named_size_is_its_gigabytes_in_bytes() {
        for (name, bytes) in CACHE_SIZES {
            let gb: f64 = name.parse().unwrap();
            assert_eq!((gb * 1e9).round() as u64, *bytes, "{name}");
        }
    }
}
