//! [`Runtime`]: a loaded `GatewayConfig` plus everything derived from it, built once per
//! config version off the hot path and swapped in with one `ArcSwap::store`.
//!
//! ```text
//!  Runtime
//!   ├─ config: Arc<GatewayConfig>      (indices below match config.apis / config.stages)
//!   ├─ stage_table                     host + base path -> stage
//!   ├─ apis[i]: route tree, gateway responses resolved under the API's overrides,
//!   │           per route its mappings (VTL templates parsed once, here)
//!   │           request validators (JSON Schema compiled once per model)
//!   └─ stages[j]: per route of its API: compiled integration (stage variables substituted),
//!                 timeout, metric handles; access log template
//! ```

use crate::metrics::{Metrics, RouteMetrics};
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
    /// Compiled APIs, same order as `config.apis`.
    pub apis: Vec<CompiledApi>,
    /// Compiled stages, same order as `config.stages`.
    pub stages: Vec<CompiledStage>,
    /// Stage selection.
    pub stage_table: StageTable,
    /// Gateway responses when no stage matched (no overrides).
    pub default_responses: GatewayResponses,
    /// Metrics of requests no stage matched.
    pub unmatched: RouteMetrics,
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
}

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
    /// Per route (same order as `api.routes`): its mappings with templates parsed once
    /// here, or why they cannot be served (the route fails closed).
    pub transforms: Vec<Option<Result<CompiledTransform, Arc<str>>>>,
    /// Request validation per route (same order as `api.routes`); `None`: nothing checked.
    pub validation: Vec<Option<RouteValidation>>,
    /// CORS policy, when the API has one.
    pub cors: Option<CorsPolicy>,
}

/// One stage's derived tables.
#[derive(Debug)]
pub struct CompiledStage {
    /// Index of its API in `apis` / `config.apis`.
    pub api: usize,
    /// One per route of the API, same order as `api.routes`.
    pub routes: Vec<StageRoute>,
    /// Metrics of requests on this stage that matched no route.
    pub unmatched: RouteMetrics,
    /// Access log format, when logging is on.
    pub access_log: Option<Template>,
}

/// One route as served by one stage.
#[derive(Debug)]
pub struct StageRoute {
    /// The backend call.
    pub integration: CompiledIntegration,
    /// Integration timeout.
    pub timeout: Duration,
    /// Metric handles (labels resolved once, here).
    pub metrics: RouteMetrics,
    /// Path parameter names in template order.
    pub param_names: Vec<Arc<str>>,
}

impl Runtime {
    /// Derives the tables for `config` (assumed validated); backend pools come from `pools`
    /// so that connections survive reloads. Routes that cannot be served are
    /// logged and fail closed; nothing here fails.
    pub fn build(config: GatewayConfig, metrics: &Metrics, pools: &Pools) -> Runtime {
        let version = config.content_hash();
        let index: BTreeMap<&str, usize> = config
            .apis
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.as_str(), i))
            .collect();
        let apis = config
            .apis
            .iter()
            .map(|api| CompiledApi {
                routes: RouteTable::build(api),
                responses: GatewayResponses::build(&api.gateway_responses),
                no_route: match api.protocol {
                    Protocol::Rest => GatewayResponseType::MissingAuthenticationToken,
                    Protocol::Http | Protocol::WebSocket => GatewayResponseType::ResourceNotFound,
                },
                transforms: api
                    .routes
                    .iter()
                    .map(|route| {
                        route.transform.as_ref().map(|t| {
                            CompiledTransform::build(t).map_err(|reason| {
                                tracing::warn!(
                                    route = %route.id,
                                    %reason,
                                    "route fails closed (answers 500 API_CONFIGURATION_ERROR)"
                                );
                                Arc::from(reason)
                            })
                        })
                    })
                    .collect(),
                validation: validate::build(api),
                cors: api.cors.as_ref().map(CorsPolicy::build),
            })
            .collect();
        let stages = config
            .stages
            .iter()
            .map(|stage| {
                let api_idx = *index
                    .get(stage.api_id.as_str())
                    .expect("validated: every stage names an existing api");
                let api = &config.apis[api_idx];
                let routes = api
                    .routes
                    .iter()
                    .map(|route| {
                        let param_names = integrate::param_names(route);
                        let integration = integrate::compile(route, stage, &param_names, pools);
                        if let CompiledIntegration::FailClosed(reason) = &integration {
                            tracing::warn!(
                                stage = %stage.id,
                                route = %route.id,
                                %reason,
                                "route fails closed (answers 500 API_CONFIGURATION_ERROR)"
                            );
                        }
                        StageRoute {
                            integration,
                            timeout: Duration::from_millis(route.timeout_ms),
                            metrics: metrics.route(
                                &api.id,
                                &stage.name,
                                &route.resource_path,
                                &route.http_method,
                            ),
                            param_names,
                        }
                    })
                    .collect();
                CompiledStage {
                    api: api_idx,
                    routes,
                    unmatched: metrics.route(&api.id, &stage.name, "", ""),
                    access_log: stage
                        .access_log
                        .as_ref()
                        .map(|l| Template::parse(&l.format)),
                }
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
        Runtime {
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
            default_responses: GatewayResponses::build(&BTreeMap::new()),
            unmatched: metrics.route("", "", "", ""),
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
