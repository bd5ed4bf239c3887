//! [`Runtime`]: a loaded `GatewayConfig` plus everything derived from it, built once per
//! config version off the hot path and swapped in with one `ArcSwap::store`.
//!
//! ```text
//!  Runtime
//!   ├─ config: Arc<GatewayConfig>      (indices below match config.apis / config.stages)
//!   ├─ stage_table                     host + base path -> stage
//!   ├─ apis[i]: route tree, gateway responses resolved under the API's overrides, CORS
//!   └─ stages[j]: access log template, metrics of unmatched requests, and its deployments
//!        └─ deployments[0] (the primary; a canary is a second one): the API it serves, the
//!           variables, and per route of that API a StageRoute: the integration compiled
//!           with the variables substituted (mappings and templates parsed once, shared by
//!           the stages of the API), request validation, timeout, metric handles
//! ```
//!
//! A request reaches what it runs on through one [`RouteHandle`] (stage, deployment, route),
//! set by routing and resolved by the accessors of `RequestCtx`.

use crate::metrics::{LazyRouteMetrics, Metrics, RouteFamilies, RouteMetrics};
use crate::pipeline::cors::CorsPolicy;
use crate::pipeline::integrate::{self, CompiledIntegration};
use crate::pipeline::respond::GatewayResponses;
use crate::pipeline::route::{RouteTable, StageTable};
use crate::pipeline::transform::CompiledTransform;
use crate::pipeline::validate::{self, RouteValidation};
use crate::pool::Pools;
use crate::template::Template;
use portico_config::{GatewayConfig, GatewayResponseType, Protocol};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// A config and its derived tables.
#[derive(Debug)]
pub struct Runtime {
    /// The document.
    pub config: Arc<GatewayConfig>,
    /// `content_hash()` of the document.
    pub version: String,
    /// Compiled APIs, same order as `config.apis` (shared with the next runtime when the
    /// API is unchanged: [`Runtime::rebuild`]).
    pub apis: Vec<Arc<CompiledApi>>,
    /// Compiled stages, same order as `config.stages` (shared likewise).
    pub stages: Vec<Arc<CompiledStage>>,
    /// Stage selection.
    pub stage_table: StageTable,
    /// Gateway responses when no stage matched (no overrides).
    pub default_responses: GatewayResponses,
    /// Metrics of requests no stage matched.
    pub unmatched: RouteMetrics,
    /// The per-route metric families, from which a route's series are made on its first
    /// request ([`LazyRouteMetrics`]).
    pub route_families: RouteFamilies,
    /// JWT verifiers by authorizer id (key sets derived from the config).
    pub authorizers: crate::pipeline::auth::Authorizers,
    /// What a request no stage matches answers: RESOURCE_NOT_FOUND when every API is an
    /// HTTP API, else MISSING_AUTHENTICATION_TOKEN (as AWS's REST endpoints do).
    pub no_stage: GatewayResponseType,
    /// Whether any API sets `minimumCompressionSize` (else requests skip the
    /// `Accept-Encoding` check).
    pub compression: bool,
    /// API keys by the SHA-256 of their value: index into `config.api_keys`.
    pub keys: HashMap<[u8; 32], usize>,
    /// Per API key (index into `config.api_keys`): the usage plans it is in, in its order, as
    /// (index into `config.usage_plans`, the key's counter id in that plan).
    pub key_plans: Vec<Vec<(usize, Arc<str>)>>,
    /// Per stage (index into `config.stages`): the counter id of its stage-wide bucket.
    pub stage_bucket_ids: Vec<Arc<str>>,
    /// Per usage plan (index into `config.usage_plans`): its stages by id, as indices into
    /// its `stages` (a plan may cover thousands: a lookup, not a scan, per request).
    pub plan_stages: Vec<HashMap<Box<str>, usize>>,
    /// Whether some function gets request headers in a REST-style event (a 1.0 Lambda proxy
    /// event, a REQUEST authorizer), whose names keep the client's spelling: connections
    /// then capture their raw request heads.
    pub header_spelling: bool,
    /// Values of the Secrets the config names (`@connections` credentials), set by the
    /// config source after the build.
    pub secrets: Secrets,
}

/// Secret values by reference.
pub type Secrets = BTreeMap<portico_config::SecretKeyRef, String>;

/// One API's derived tables.
#[derive(Debug)]
pub struct CompiledApi {
    /// Resource tree.
    pub routes: RouteTable,
    /// Gateway responses under this API's overrides.
    pub responses: GatewayResponses,
    /// What an unmatched route answers (REST: MISSING_AUTHENTICATION_TOKEN, HTTP:
    /// RESOURCE_NOT_FOUND).
    pub no_route: GatewayResponseType,
    /// CORS policy, when the API has one.
    pub cors: Option<CorsPolicy>,
}

/// Per route of one API (same order as `api.routes`): its mappings (templates parsed), or
/// why they cannot be served, and its request validation; shared by the API's stages.
type PerApiRoutes = (
    Vec<Option<Result<Arc<CompiledTransform>, Arc<str>>>>,
    Vec<Option<Arc<RouteValidation>>>,
);

/// One stage's derived tables.
#[derive(Debug)]
pub struct CompiledStage {
    /// What the stage serves: the primary, then the canary when the stage has one.
    pub deployments: Vec<Deployment>,
    /// The canary's share of requests, in millionths (0 without a canary).
    pub canary_ppm: u32,
    /// Sticky assignment: what identifies a caller (else a draw per request).
    pub canary_sticky: Option<portico_config::CanarySticky>,
    /// Forced assignment: the header that picks the side.
    pub canary_force: Option<portico_config::CanaryForceHeader>,
    /// Metrics of requests on this stage that matched no route (labels: the primary's API
    /// id and the stage name, empty resource and method), made on first use.
    pub unmatched: LazyRouteMetrics,
    /// Access log format, when logging is on.
    pub access_log: Option<Template>,
}

/// What a stage serves (AWS: a deployment): one API, the variables its integrations were
/// compiled with, and that API's routes as this deployment runs them.
#[derive(Debug)]
pub struct Deployment {
    /// Index of its API in `apis` / `config.apis`.
    pub api: usize,
    /// `stageVariables` of requests it serves.
    pub variables: BTreeMap<String, String>,
    /// The `stage` label of its routes' metrics: the stage name, `<stage>/Canary` for a
    /// canary.
    pub metrics_stage: Box<str>,
    /// One per route of the API, same order as `api.routes`.
    pub routes: Vec<StageRoute>,
}

/// Where a request was routed: indices into one `Runtime` (stage, its deployment, and the
/// route once one matched), so the request context carries one `Copy` value and resolves
/// the rest through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteHandle {
    /// Index into `stages` / `config.stages`.
    pub stage: u32,
    /// Index into the stage's `deployments`.
    pub deployment: u32,
    /// Index into `apis` / `config.apis`: the deployment's API (kept here so that the API
    /// and its routes, read by most phases, are one index away).
    pub api: u32,
    /// Index into the deployment's `routes` (its API's `routes`), when a route matched.
    pub route: Option<u32>,
}

/// One route as served by one deployment.
#[derive(Debug)]
pub struct StageRoute {
    /// The integration, or why the route cannot be served as configured (it fails closed:
    /// 500 API_CONFIGURATION_ERROR, decided by `integrate::served`).
    pub integration: Result<CompiledIntegration, Arc<str>>,
    /// Request validation; `None`: nothing checked (shared by the stages of the API).
    pub validation: Option<Arc<RouteValidation>>,
    /// Integration timeout.
    pub timeout: Duration,
    /// Metric handles, made on the route's first request (labels: the API's id, the
    /// deployment's `metrics_stage`, the route's resource path and method).
    pub metrics: LazyRouteMetrics,
    /// Path parameter names in template order.
    pub param_names: Vec<Arc<str>>,
    /// The stage cache, when this method of this deployment uses it.
    pub cache: Option<crate::pipeline::cache::RouteCache>,
}

impl Runtime {
    /// The deployment `h` names.
    #[inline]
    pub fn deployment(&self, h: RouteHandle) -> &Deployment {
        &self.stages[h.stage as usize].deployments[h.deployment as usize]
    }

    /// The series a request counts in: its route's, its stage's unmatched ones when no
    /// route matched, the gateway's when no stage did. A route's and a stage's series are
    /// made on their first request.
    pub fn metrics(&self, h: Option<RouteHandle>) -> &RouteMetrics {
        let Some(h) = h else {
            return &self.unmatched;
        };
        let stage = &self.stages[h.stage as usize];
        let deployment = &stage.deployments[h.deployment as usize];
        match h.route {
            Some(r) => {
                let api = &self.config.apis[deployment.api];
                let route = &api.routes[r as usize];
                deployment.routes[r as usize]
                    .metrics
                    .get(&self.route_families, || {
                        [
                            &api.id,
                            &deployment.metrics_stage,
                            &route.resource_path,
                            &route.http_method,
                        ]
                    })
            }
            None => stage.unmatched.get(&self.route_families, || {
                [
                    &self.config.apis[stage.deployments[0].api].id,
                    &self.config.stages[h.stage as usize].name,
                    "",
                    "",
                ]
            }),
        }
    }

    /// The route `h` names, when it names one.
    #[inline]
    pub fn stage_route(&self, h: RouteHandle) -> Option<&StageRoute> {
        Some(&self.deployment(h).routes[h.route? as usize])
    }

    /// Derives the tables for `config` (assumed validated); backend pools come from `pools`
    /// so that connections survive reloads. Routes that cannot be served are
    /// logged and fail closed; nothing here fails.
    pub fn build(config: GatewayConfig, metrics: &Metrics, pools: &Pools) -> Runtime {
        let version = config.content_hash();
        Self::build_hashed(config, version, metrics, pools)
    }

    /// [`Runtime::build`] for a config whose `content_hash()` the caller has computed
    /// already (it serializes and hashes the whole document: 0.1-0.2 s at 100,000 routes).
    pub fn build_hashed(
        config: GatewayConfig,
        version: String,
        metrics: &Metrics,
        pools: &Pools,
    ) -> Runtime {
        Self::build_from(config, version, None, metrics, pools)
    }

    /// [`Runtime::build_hashed`] that takes from `previous` (the runtime serving now) every
    /// API and every stage whose config is unchanged, instead of compiling them again: a
    /// one-object change to a fleet of 5,000 APIs rebuilds what that object touches, plus the
    /// fleet-wide tables (keys, plans, stage selection). A stage is taken when it, the APIs
    /// it deploys, and their positions in `config.apis` are all unchanged; its routes keep
    /// their metric handles and their backend pools.
    pub fn rebuild(
        config: GatewayConfig,
        version: String,
        previous: &Runtime,
        metrics: &Metrics,
        pools: &Pools,
    ) -> Runtime {
        Self::build_from(config, version, Some(previous), metrics, pools)
    }

    fn build_from(
        config: GatewayConfig,
        version: String,
        previous: Option<&Runtime>,
        metrics: &Metrics,
        pools: &Pools,
    ) -> Runtime {
        debug_assert_eq!(version, config.content_hash());
        let index: HashMap<&str, usize> = config
            .apis
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.as_str(), i))
            .collect();
        let reuse = previous.map(|p| Reuse::new(p, &config));
        let apis = config
            .apis
            .iter()
            .enumerate()
            .map(|(i, api)| match reuse.as_ref().and_then(|r| r.api(i)) {
                Some(same) => same,
                None => Arc::new(CompiledApi {
                    routes: RouteTable::build(api),
                    responses: GatewayResponses::build(&api.gateway_responses, api.protocol),
                    no_route: match api.protocol {
                        Protocol::Rest => GatewayResponseType::MissingAuthenticationToken,
                        Protocol::Http | Protocol::WebSocket => {
                            GatewayResponseType::ResourceNotFound
                        }
                    },
                    cors: api.cors.as_ref().map(CorsPolicy::build),
                }),
            })
            .collect();
        // The stages taken as they are; the others are compiled below.
        let reused: Vec<Option<Arc<CompiledStage>>> = config
            .stages
            .iter()
            .map(|stage| reuse.as_ref().and_then(|r| r.stage(stage, &index)))
            .collect();
        // Per API, per route: what every stage of the API shares (mappings with their
        // templates parsed, validators compiled), built once here, for the APIs of the
        // stages compiled.
        let mut per_api: Vec<Option<PerApiRoutes>> = (0..config.apis.len()).map(|_| None).collect();
        for (stage, _) in config
            .stages
            .iter()
            .zip(&reused)
            .filter(|(_, r)| r.is_none())
        {
            let canary = stage.canary.as_ref().map(|c| c.api_id.as_str());
            for api_id in std::iter::once(stage.api_id.as_str()).chain(canary) {
                let i = *index
                    .get(api_id)
                    .expect("validated: a stage names an existing api");
                if per_api[i].is_none() {
                    per_api[i] = Some(per_api_routes(&config.apis[i]));
                }
            }
        }
        let stages = config
            .stages
            .iter()
            .zip(reused)
            .map(|(stage, reused)| {
                if let Some(same) = reused {
                    return same;
                }
                let api_idx = *index
                    .get(stage.api_id.as_str())
                    .expect("validated: every stage names an existing api");
                // A canary's metrics carry the stage label `<stage>/Canary`, as AWS names the
                // canary's CloudWatch stage dimension, so one query compares both sides.
                let canary_stage = format!("{}/Canary", stage.name);
                // The stage's cache serves the primary, and the canary when it uses the stage
                // cache (`useStageCache`; else canary requests are not cached, as AWS).
                let deploy =
                    |api_idx: usize,
                     variables: &BTreeMap<String, String>,
                     metrics_stage: &str,
                     cache: Option<&portico_config::StageCache>| {
                        let api = &config.apis[api_idx];
                        let (transforms, validation) = per_api[api_idx]
                            .as_ref()
                            .expect("built above for every API of a stage compiled");
                        let routes = api
                            .routes
                            .iter()
                            .enumerate()
                            .map(|(r, route)| {
                                let param_names = integrate::param_names(route);
                                let integration = integrate::compile(
                                    route,
                                    variables,
                                    &param_names,
                                    transforms[r].clone(),
                                    pools,
                                );
                                if let Err(reason) = &integration {
                                    tracing::warn!(
                                        stage = %stage.id,
                                        route = %route.id,
                                        %reason,
                                        "route fails closed (answers 500 API_CONFIGURATION_ERROR)"
                                    );
                                }
                                StageRoute {
                                    integration,
                                    validation: validation[r].clone(),
                                    timeout: Duration::from_millis(route.timeout_ms),
                                    metrics: LazyRouteMetrics::default(),
                                    param_names,
                                    cache: cache.and_then(|c| {
                                        crate::pipeline::cache::RouteCache::build(
                                            &stage.id,
                                            metrics_stage,
                                            c,
                                            route,
                                            || {
                                                metrics.cache(
                                                    &api.id,
                                                    metrics_stage,
                                                    &route.resource_path,
                                                    &route.http_method,
                                                )
                                            },
                                        )
                                    }),
                                }
                            })
                            .collect();
                        Deployment {
                            api: api_idx,
                            variables: variables.clone(),
                            metrics_stage: metrics_stage.into(),
                            routes,
                        }
                    };
                let stage_cache = stage.cache.as_ref();
                let mut deployments =
                    vec![deploy(api_idx, &stage.variables, &stage.name, stage_cache)];
                let mut canary_ppm = 0;
                let (mut canary_sticky, mut canary_force) = (None, None);
                if let Some(c) = &stage.canary {
                    let canary_idx = *index
                        .get(c.api_id.as_str())
                        .expect("validated: a canary names an existing api");
                    let cache = stage_cache.filter(|_| c.use_stage_cache);
                    deployments.push(deploy(canary_idx, &c.variables, &canary_stage, cache));
                    canary_ppm = (c.percent_traffic * 10_000.0).round() as u32;
                    canary_sticky = c.sticky.clone();
                    canary_force = c.force_header.clone();
                }
                Arc::new(CompiledStage {
                    deployments,
                    canary_ppm,
                    canary_sticky,
                    canary_force,
                    unmatched: LazyRouteMetrics::default(),
                    access_log: stage
                        .access_log
                        .as_ref()
                        .map(|l| Template::parse(&l.format)),
                })
            })
            .collect();
        let all_http =
            !config.apis.is_empty() && config.apis.iter().all(|a| a.protocol == Protocol::Http);
        let keys = config
            .api_keys
            .iter()
            .enumerate()
            // A malformed hash (refused when the config is checked) matches no key.
            .filter_map(|(i, k)| Some((k.hash.digest()?, i)))
            .collect();
        let plans: HashMap<String, usize> = config
            .usage_plans
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i))
            .collect();
        let key_plans = config
            .api_keys
            .iter()
            .map(|k| {
                k.usage_plans
                    .iter()
                    .filter_map(|p| {
                        let i = *plans.get(p)?;
                        let id = crate::usage_plan::plan_bucket_id(
                            &config.usage_plans[i].id,
                            k.hash.as_hex(),
                            None,
                        );
                        Some((i, Arc::from(id)))
                    })
                    .collect()
            })
            .collect();
        let stage_bucket_ids = config
            .stages
            .iter()
            .map(|s| Arc::from(s.id.as_str()))
            .collect();
        let header_spelling = config.apis.iter().any(|a| {
            a.routes.iter().any(|r| {
                matches!(&r.integration, portico_config::Integration::AwsProxy(l)
                    if l.payload_format_version == portico_config::PayloadFormatVersion::V1)
            }) || a
                .authorizers
                .values()
                .any(|z| matches!(z, portico_config::Authorizer::Request(_)))
        });
        let plan_stages = config
            .usage_plans
            .iter()
            .map(|p| {
                p.stages
                    .iter()
                    .enumerate()
                    .map(|(j, s)| (Box::<str>::from(s.stage_id.as_str()), j))
                    .collect()
            })
            .collect();
        Runtime {
            plan_stages,
            secrets: Secrets::new(),
            header_spelling,
            compression: config
                .apis
                .iter()
                .any(|a| a.minimum_compression_size.is_some()),
            keys,
            key_plans,
            stage_bucket_ids,
            authorizers: crate::pipeline::auth::build(
                &config.apis,
                &pools.jwks,
                &pools.authorizer_results,
            ),
            stage_table: StageTable::new(&config.stages),
            default_responses: GatewayResponses::build(&BTreeMap::new(), Protocol::Rest),
            unmatched: metrics.route("", "", "", ""),
            route_families: metrics.routes.clone(),
            no_stage: if all_http {
                GatewayResponseType::ResourceNotFound
            } else {
                GatewayResponseType::MissingAuthenticationToken
            },
            config: Arc::new(config),
            version,
            apis,
            stages,
        }
    }
}

/// One API's per-route pieces shared by its stages: mappings (templates parsed) and
/// validators.
fn per_api_routes(api: &portico_config::Api) -> PerApiRoutes {
    let transforms = api
        .routes
        .iter()
        .map(|route| {
            route
                .transform
                .as_ref()
                .map(|t| CompiledTransform::build(t).map(Arc::new).map_err(Arc::from))
        })
        .collect();
    let validation = validate::build(api)
        .into_iter()
        .map(|v| v.map(Arc::new))
        .collect();
    (transforms, validation)
}

/// What [`Runtime::rebuild`] may take from the runtime serving now.
struct Reuse<'p> {
    previous: &'p Runtime,
    /// Per API of the new config: whether the previous config has it unchanged at the same
    /// position (a stage's deployments name APIs by position).
    same_api: Vec<bool>,
    /// The previous config's stages by id.
    stages: HashMap<&'p str, usize>,
}

impl<'p> Reuse<'p> {
    fn new(previous: &'p Runtime, config: &GatewayConfig) -> Self {
        let old = &previous.config.apis;
        let same_api = config
            .apis
            .iter()
            .enumerate()
            .map(|(i, api)| old.get(i).is_some_and(|o| o == api))
            .collect();
        let stages = previous
            .config
            .stages
            .iter()
            .enumerate()
            .map(|(j, s)| (s.id.as_str(), j))
            .collect();
        Reuse {
            previous,
            same_api,
            stages,
        }
    }

    /// The compiled API at position `i`, when unchanged there.
    fn api(&self, i: usize) -> Option<Arc<CompiledApi>> {
        self.same_api[i].then(|| self.previous.apis[i].clone())
    }

    /// The compiled stage, when it and the APIs it deploys are unchanged.
    fn stage(
        &self,
        stage: &portico_config::Stage,
        index: &HashMap<&str, usize>,
    ) -> Option<Arc<CompiledStage>> {
        let j = *self.stages.get(stage.id.as_str())?;
        if self.previous.config.stages[j] != *stage {
            return None;
        }
        let canary = stage.canary.as_ref().map(|c| c.api_id.as_str());
        let apis_same = std::iter::once(stage.api_id.as_str())
            .chain(canary)
            .all(|id| index.get(id).is_some_and(|&i| self.same_api[i]));
        apis_same.then(|| self.previous.stages[j].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::route::tests::{mk_api, mk_stage};
    use portico_config::SCHEMA_VERSION;

    /// `n` APIs `t0..`, each with two routes and one stage `/t<i>` with a variable.
    fn fleet(names: &[&str]) -> GatewayConfig {
        let mut apis = Vec::new();
        let mut stages = Vec::new();
        for name in names {
            let mut api = mk_api(Protocol::Rest, &[("GET", "/a"), ("POST", "/b")]);
            api.id = format!("restapi/default/{name}");
            apis.push(api);
            let mut stage = mk_stage(&format!("stage/default/{name}"), &format!("/{name}"), &[]);
            stage.api_id = format!("restapi/default/{name}");
            stage.variables.insert("v".into(), "1".into());
            stages.push(stage);
        }
        apis.sort_by(|a, b| a.id.cmp(&b.id));
        stages.sort_by(|a, b| a.id.cmp(&b.id));
        GatewayConfig {
            schema_version: SCHEMA_VERSION,
            apis,
            stages,
            ..GatewayConfig::empty()
        }
    }

    fn build(config: GatewayConfig, m: &Metrics, p: &Pools) -> Runtime {
        Runtime::build(config, m, p)
    }

    fn rebuild(config: GatewayConfig, previous: &Runtime, m: &Metrics, p: &Pools) -> Runtime {
        let version = config.content_hash();
        Runtime::rebuild(config, version, previous, m, p)
    }

    /// Which of `next`'s stages are `previous`'s (by id), shared rather than compiled again.
    fn shared_stages(previous: &Runtime, next: &Runtime) -> Vec<String> {
        next.config
            .stages
            .iter()
            .zip(&next.stages)
            .filter(|(s, compiled)| {
                previous
                    .config
                    .stages
                    .iter()
                    .position(|o| o.id == s.id)
                    .is_some_and(|j| Arc::ptr_eq(&previous.stages[j], compiled))
            })
            .map(|(s, _)| s.name.clone())
            .collect()
    }

    /// Whether `next` took every compiled API from `previous`.
    fn shares_every_api(previous: &Runtime, next: &Runtime) -> bool {
        previous.apis.len() == next.apis.len()
            && previous
                .apis
                .iter()
                .zip(&next.apis)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }

    /// Every stage's deployments name the API its config names, and carry its variables.
    fn assert_consistent(r: &Runtime) {
        for (stage, compiled) in r.config.stages.iter().zip(&r.stages) {
            let d = &compiled.deployments[0];
            assert_eq!(r.config.apis[d.api].id, stage.api_id, "{}", stage.id);
            assert_eq!(d.variables, stage.variables, "{}", stage.id);
            assert_eq!(d.routes.len(), r.config.apis[d.api].routes.len());
        }
        assert_eq!(r.apis.len(), r.config.apis.len());
    }

    #[test]
    fn a_rebuild_of_the_same_config_shares_every_api_and_stage() {
        let (m, p) = (Metrics::new(), Pools::new());
        let first = build(fleet(&["t0", "t1", "t2"]), &m, &p);
        let next = rebuild(fleet(&["t0", "t1", "t2"]), &first, &m, &p);
        assert_eq!(shared_stages(&first, &next), ["t0", "t1", "t2"]);
        assert!(shares_every_api(&first, &next));
        assert_consistent(&next);
    }

    #[test]
    fn a_changed_stage_variable_recompiles_that_stage_only() {
        let (m, p) = (Metrics::new(), Pools::new());
        let first = build(fleet(&["t0", "t1", "t2"]), &m, &p);
        let mut changed = fleet(&["t0", "t1", "t2"]);
        changed.stages[1].variables.insert("v".into(), "2".into());
        let next = rebuild(changed, &first, &m, &p);
        assert_eq!(shared_stages(&first, &next), ["t0", "t2"]);
        assert_eq!(next.stages[1].deployments[0].variables["v"], "2");
        assert!(shares_every_api(&first, &next));
        assert_consistent(&next);
    }

    #[test]
    fn a_changed_api_recompiles_it_and_its_stages() {
        let (m, p) = (Metrics::new(), Pools::new());
        let first = build(fleet(&["t0", "t1", "t2"]), &m, &p);
        let mut changed = fleet(&["t0", "t1", "t2"]);
        let mut route = changed.apis[2].routes[0].clone();
        route.id = format!("{}/resource/~1c/method/GET", changed.apis[2].id);
        route.resource_path = "/c".into();
        changed.apis[2].routes.push(route);
        let next = rebuild(changed, &first, &m, &p);
        assert_eq!(shared_stages(&first, &next), ["t0", "t1"]);
        assert!(!Arc::ptr_eq(&first.apis[2], &next.apis[2]));
        assert_eq!(next.stages[2].deployments[0].routes.len(), 3);
        assert_consistent(&next);
    }

    #[test]
    fn apis_moved_by_an_insertion_are_recompiled_with_their_new_positions() {
        // Deployments name their API by position: an API added before others moves them, so
        // their stages cannot be shared; the ones before the insertion can.
        let (m, p) = (Metrics::new(), Pools::new());
        let first = build(fleet(&["t0", "t2", "t3"]), &m, &p);
        let next = rebuild(fleet(&["t0", "t1", "t2", "t3"]), &first, &m, &p);
        assert_eq!(shared_stages(&first, &next), ["t0"]);
        assert_consistent(&next);
        // Removing it again moves them back.
        let back = rebuild(fleet(&["t0", "t2", "t3"]), &next, &m, &p);
        assert_eq!(shared_stages(&next, &back), ["t0"]);
        assert_consistent(&back);
        // An API added last moves nothing.
        let last = rebuild(fleet(&["t0", "t2", "t3", "t9"]), &back, &m, &p);
        assert_eq!(shared_stages(&back, &last), ["t0", "t2", "t3"]);
        assert_consistent(&last);
    }

    #[test]
    fn a_shared_route_keeps_its_metric_series() {
        let (m, p) = (Metrics::new(), Pools::new());
        let first = build(fleet(&["t0", "t1"]), &m, &p);
        let h = RouteHandle {
            stage: 0,
            deployment: 0,
            api: 0,
            route: Some(0),
        };
        first
            .metrics(Some(h))
            .record(200, Duration::from_millis(1), None);
        let next = rebuild(fleet(&["t0", "t1"]), &first, &m, &p);
        assert!(next.stages[0].deployments[0].routes[0].metrics.is_created());
        assert!(!next.stages[1].deployments[0].routes[0].metrics.is_created());
    }
}
