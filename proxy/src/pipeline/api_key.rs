//! API key phase: `apiKeyRequired` methods need a valid, enabled key that belongs to a usage
//! plan of the stage.
//!
//! Runs after routing (the requirement is per method) and after the authorizer (source
//! AUTHORIZER reads [`RequestCtx::usage_identifier_key`]), before `throttle`. Reads the
//! `x-api-key` header (source HEADER, the default) and the runtime's key index (SHA-256
//! hashes only: the presented key is hashed, never stored or logged). Sets
//! [`RequestCtx::api_key`]. Short-circuits with `InvalidApiKey` (403 `Forbidden`, as AWS)
//! when the key is missing, unknown, disabled or in no plan of the stage.

use super::ctx::RequestCtx;
use super::error::GatewayError;
use http::HeaderMap;
use portico_config::{ApiKeySource, KeyHash};

/// `x-api-key`.
pub const X_API_KEY: &str = "x-api-key";

/// The key a request is metered on: indices into `config.api_keys` / `config.usage_plans`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyMatch {
    /// Index of the key.
    pub key: usize,
    /// Index of the plan that covers the stage.
    pub plan: usize,
}

/// The API key phase: [`apply`] on the exchange.
pub fn phase(ex: &mut super::ctx::Exchange<'_>) -> Result<super::ctx::Flow, GatewayError> {
    apply(ex.ctx, &ex.head.headers)?;
    Ok(super::ctx::Flow::Continue)
}

/// Checks the key of a method that requires one.
pub fn apply(ctx: &mut RequestCtx, headers: &HeaderMap) -> Result<(), GatewayError> {
    if !ctx.route_config().is_some_and(|r| r.api_key_required) {
        return Ok(());
    }
    let source = ctx
        .api_config()
        .map_or(ApiKeySource::Header, |a| a.api_key_source);
    let hash = match source {
        // Two keys: which one is metered must not be the client's choice.
        ApiKeySource::Header => super::ctx::one_value(headers, X_API_KEY)
            .map_err(|_| GatewayError::InvalidApiKey)?
            .map(|v| KeyHash::digest_of(v.as_bytes())),
        // Filled by the Lambda authorizer phase (usageIdentifierKey); until it runs, `None`.
        ApiKeySource::Authorizer => ctx
            .usage_identifier_key
            .as_deref()
            .map(|k| KeyHash::digest_of(k.as_bytes())),
    };
    let Some(hash) = hash else {
        return Err(GatewayError::InvalidApiKey);
    };
    let rt = &ctx.runtime;
    let Some(&key) = rt.keys.get(&hash) else {
        return Err(GatewayError::InvalidApiKey);
    };
    let k = &rt.config.api_keys[key];
    if !k.enabled {
        return Err(GatewayError::InvalidApiKey);
    }
    let stage_id = ctx.stage_config().map_or("", |s| s.id.as_str());
    // AWS: a key is accepted on a stage only through a usage plan of that stage.
    let plan = rt.key_plans[key]
        .iter()
        .find_map(|&(i, _)| rt.plan_stages[i].contains_key(stage_id).then_some(i));
    let Some(plan) = plan else {
        return Err(GatewayError::InvalidApiKey);
    };
    ctx.api_key = Some(KeyMatch { key, plan });
    Ok(())
}
