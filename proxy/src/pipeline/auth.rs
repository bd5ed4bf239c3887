//! Phase "auth": runs right after routing, before the API key, throttle, validation and
//! integration phases (AWS's order). Entry point: [`apply`].
//!
//! ```text
//!  route.authorization ── None ──────────────────────────────> Continue (open method)
//!        │ Some { authorizer_id, scopes }
//!        ▼
//!  runtime.authorizers[authorizer_id]  (TOKEN / REQUEST: see `function`; JWT below)
//!        │ token from the identity header ("Bearer " stripped)
//!        ├─ missing / malformed / bad signature / wrong iss, aud / expired  -> 401 UNAUTHORIZED
//!        ├─ none of the route's scopes in `scope` / `scp`                    -> 403 ACCESS_DENIED
//!        └─ ok: ctx.authorizer = claims ($context.authorizer.claims.*)      -> Continue
//! ```
//!
//! Verification (with `ring`): the header's `alg` must be in the authorizer's allowed list
//! (asymmetric algorithms only, compile refuses `none` and `HS*`) and must fit the key's `kty`,
//! curve and `alg`, so a public key can never act as an HMAC secret. `exp` is required;
//! `exp`, `nbf` and `iat` are checked with [`LEEWAY`] of clock skew.
//!
//! A token whose signature verified is remembered (at most [`VERIFIED_CAP`] per authorizer,
//! with the key set that verified it): the next request with the same token skips the
//! signature and the JSON decoding, but its claims (`exp`, `nbf`, `iat`, `iss`, `aud`) are
//! checked again every time. A new key set (rotation) or a config reload starts afresh;
//! rejected tokens are never remembered.

pub mod function;
pub mod jwks;

use super::ctx::RequestCtx;
use super::error::GatewayError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use portico_config::{Authorizer, Jwk, JwtAuthorizer};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Clock skew tolerated on `exp`, `nbf` and `iat` (AWS does not document one; 60 s is the
/// usual OIDC library default).
pub const LEEWAY: Duration = Duration::from_secs(60);

/// Most verified tokens one JWT authorizer remembers; when full it starts over.
pub const VERIFIED_CAP: usize = 10_000;

/// What a successful authorizer leaves in the request context.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AuthorizerOutput {
    /// The principal (`sub`), `$context.authorizer.principalId`.
    pub principal_id: Option<String>,
    /// The token's claims, `$context.authorizer.claims.*` (JWT); shared with the verifier's
    /// memory of verified tokens, so a request does not copy them.
    pub claims: Arc<Map<String, Value>>,
    /// The function's `context`, `$context.authorizer.<key>` (TOKEN / REQUEST).
    pub context: Map<String, Value>,
    /// The function's `usageIdentifierKey` (for the API key phase, `apiKeySource: AUTHORIZER`).
    pub usage_identifier_key: Option<String>,
    /// Whether the function's policy allows `execute-api:InvalidateCache` on the method
    /// (`Cache-Control: max-age=0` then refreshes the stage cache's entry). JWT: never.
    pub may_invalidate_cache: bool,
}

/// One compiled authorizer.
#[derive(Debug)]
pub enum CompiledAuthorizer {
    /// JWT.
    Jwt(JwtVerifier),
    /// TOKEN or REQUEST function.
    Function(function::FunctionVerifier),
}

/// Authorizers of one runtime, by id.
pub type Authorizers = BTreeMap<String, Arc<CompiledAuthorizer>>;

/// Builds the verifiers of every authorizer used by `apis`; fetched key sets come from
/// `store`, which outlives the runtime.
pub fn build(
    apis: &[portico_config::Api],
    store: &jwks::JwksStore,
    results: &Arc<function::ResultCache>,
) -> Authorizers {
    let mut out = BTreeMap::new();
    for api in apis {
        for (id, a) in &api.authorizers {
            out.entry(id.clone()).or_insert_with(|| match a {
                Authorizer::Jwt(j) => {
                    let mut v = JwtVerifier::new(j);
                    v.jwks = j.jwks_uri.as_deref().map(|uri| store.entry(id, uri));
                    tracing::debug!(authorizer = %id, jwks_uri = ?j.jwks_uri, keys = j.keys.len(), "JWT authorizer built");
                    Arc::new(CompiledAuthorizer::Jwt(v))
                }
                Authorizer::Token(f) => Arc::new(CompiledAuthorizer::Function(
                    function::FunctionVerifier::new(id, true, f, results.clone()),
                )),
                Authorizer::Request(f) => Arc::new(CompiledAuthorizer::Function(
                    function::FunctionVerifier::new(id, false, f, results.clone()),
                )),
            });
        }
    }
    out
}

/// The authorizer phase: [`apply`] on the exchange.
pub async fn phase(ex: &mut super::ctx::Exchange<'_>) -> Result<super::ctx::Flow, GatewayError> {
    apply(ex.ctx, &ex.head.headers).await?;
    Ok(super::ctx::Flow::Continue)
}

/// Runs the route's authorizer, if any. Reads the route and the request headers; sets
/// `ctx.authorizer`; short-circuits with 401 UNAUTHORIZED or 403 ACCESS_DENIED.
pub async fn apply(ctx: &mut RequestCtx, headers: &HeaderMap) -> Result<(), GatewayError> {
    let Some(auth) = ctx.route_config().and_then(|r| r.authorization.clone()) else {
        return Ok(());
    };
    let Some(verifier) = ctx.runtime.authorizers.get(&auth.authorizer_id).cloned() else {
        // validate() guarantees the id exists; fail closed anyway.
        return Err(GatewayError::AuthorizerConfigurationError(format!(
            "unknown authorizer {}",
            auth.authorizer_id
        )));
    };
    let verifier = match &*verifier {
        CompiledAuthorizer::Jwt(v) => v,
        CompiledAuthorizer::Function(f) => {
            let out = f.authorize(ctx, headers).await.inspect_err(|e| {
                tracing::debug!(authorizer = %auth.authorizer_id, error = %e, "authorizer refused");
            })?;
            // API key source AUTHORIZER: the function's usageIdentifierKey is the key.
            ctx.usage_identifier_key = out.usage_identifier_key.clone();
            ctx.authorizer = Some(out);
            return Ok(());
        }
    };
    let token = identity_header(headers, verifier.header.as_str())?
        .and_then(|v| v.to_str().ok())
        .map(strip_bearer)
        .filter(|t| !t.is_empty())
        .ok_or(GatewayError::Unauthorized)?;
    let claims = verifier.verify_now(token).await.map_err(|e| {
        tracing::debug!(authorizer = %auth.authorizer_id, error = %e, "JWT rejected");
        GatewayError::Unauthorized
    })?;
    if !has_any_scope(&claims, &auth.scopes) {
        return Err(GatewayError::AccessDenied);
    }
    ctx.authorizer = Some(AuthorizerOutput {
        principal_id: claims
            .get("sub")
            .and_then(Value::as_str)
            .map(str::to_string),
        claims,
        ..Default::default()
    });
    Ok(())
}

/// The one value of an identity-source header. A request that sends the header twice is
/// refused (401) rather than authorized by one value while the backend may read the other
/// (an unsigned token behind a verified one).
pub fn identity_header<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<Option<&'a http::HeaderValue>, GatewayError> {
    super::ctx::one_value(headers, name).map_err(|_| GatewayError::Unauthorized)
}

fn strip_bearer(v: &str) -> &str {
    let v = v.trim();
    match v.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => v[7..].trim_start(),
        _ => v,
    }
}

/// True when `required` is empty or the token's `scope` (space separated) or `scp` (list or
/// string) holds at least one of them (AWS: any one of the route's scopes).
pub fn has_any_scope(claims: &Map<String, Value>, required: &[String]) -> bool {
    if required.is_empty() {
        return true;
    }
    let mut granted: Vec<&str> = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => granted.extend(s.split_whitespace()),
            Some(Value::Array(a)) => granted.extend(a.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    required.iter().any(|r| granted.contains(&r.as_str()))
}

/// Why a token was rejected (logged at debug, never sent).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url parts of JSON.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg` not allowed (includes `none` and `HS*`).
    #[error("algorithm {0:?} not allowed")]
    Algorithm(String),
    /// No key fits the `kid` and `alg`.
    #[error("no key for kid {0:?}")]
    NoKey(Option<String>),
    /// Signature does not verify.
    #[error("bad signature")]
    Signature,
    /// A claim check failed.
    #[error("claim {0} rejected")]
    Claim(&'static str),
}

/// A JWT authorizer ready to verify tokens.
#[derive(Debug)]
pub struct JwtVerifier {
    /// Lower-case header the token is read from.
    pub header: String,
    issuer: String,
    audiences: Vec<String>,
    algorithms: Vec<String>,
    keys: Vec<Jwk>,
    /// The fetched key set, when the authorizer names a `jwksUri`.
    pub jwks: Option<Arc<jwks::JwksEntry>>,
    /// Tokens whose signature verified, by [`memo_key`]: the token, its claims and the
    /// fetched key set that verified it (`None`: the inline keys).
    verified: Mutex<HashMap<Box<str>, Verified>>,
}

#[derive(Debug)]
struct Verified {
    token: Box<str>,
    claims: Arc<Map<String, Value>>,
    /// Its time claims: all that can change from valid to invalid for the same verifier
    /// (issuer and audience were checked when it was verified).
    times: ClaimTimes,
    key_set: Option<Arc<Vec<Jwk>>>,
}

/// The time claims of a token, in seconds since the epoch.
#[derive(Clone, Copy, Debug)]
struct ClaimTimes {
    exp: f64,
    nbf: Option<f64>,
    iat: Option<f64>,
}

impl ClaimTimes {
    /// `exp` (required), `nbf`, `iat`: numbers when present.
    fn of(c: &Map<String, Value>) -> Result<Self, JwtError> {
        let num = |name: &'static str| -> Result<Option<f64>, JwtError> {
            match c.get(name) {
                None => Ok(None),
                Some(v) => v.as_f64().map(Some).ok_or(JwtError::Claim(name)),
            }
        };
        Ok(ClaimTimes {
            exp: num("exp")?.ok_or(JwtError::Claim("exp"))?,
            nbf: num("nbf")?,
            iat: num("iat")?,
        })
    }

    /// Valid at `now`, with [`LEEWAY`] either side.
    fn check(&self, now: SystemTime) -> Result<(), JwtError> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let leeway = LEEWAY.as_secs_f64();
        if now > self.exp + leeway {
            return Err(JwtError::Claim("exp"));
        }
        if self.nbf.is_some_and(|nbf| now + leeway < nbf) {
            return Err(JwtError::Claim("nbf"));
        }
        if self.iat.is_some_and(|iat| now + leeway < iat) {
            return Err(JwtError::Claim("iat"));
        }
        Ok(())
    }
}

/// The key a verified token is remembered under: its last 43 characters (the end of the
/// signature, 256 bits of base64url), so a lookup hashes 43 bytes rather than the whole token;
/// the entry holds the whole token, which must be equal for a hit.
fn memo_key(token: &str) -> &str {
    let start = token.len().saturating_sub(43);
    token.get(start..).unwrap_or(token)
}

impl JwtVerifier {
    /// From the compiled settings (keys were checked by compile; bad ones never verify).
    pub fn new(j: &JwtAuthorizer) -> Self {
        JwtVerifier {
            header: j.header.clone(),
            issuer: j.issuer.clone(),
            audiences: j.audiences.clone(),
            algorithms: j.algorithms.clone(),
            keys: j.keys.clone(),
            jwks: None,
            verified: Mutex::default(),
        }
    }

    /// Verifies `token` now, with the inline keys or the fetched key set (refetched once,
    /// rate limited, when the token names a key the set does not hold).
    pub async fn verify_now(&self, token: &str) -> Result<Arc<Map<String, Value>>, JwtError> {
        let Some(entry) = &self.jwks else {
            return self.verify_remembered(None, token, SystemTime::now());
        };
        let keys = entry.keys().await;
        match self.verify_remembered(Some(&keys), token, SystemTime::now()) {
            Err(JwtError::NoKey(_)) => {
                let keys = entry.refetch().await;
                self.verify_remembered(Some(&keys), token, SystemTime::now())
            }
            other => other,
        }
    }

    /// Verifies `token` at `now` with the inline keys; returns its claims.
    pub fn verify(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<Arc<Map<String, Value>>, JwtError> {
        self.verify_remembered(None, token, now)
    }

    /// [`Self::verify_with`] the fetched `key_set` (or the inline keys), skipping the
    /// signature when this token was verified with the same key set before.
    fn verify_remembered(
        &self,
        key_set: Option<&Arc<Vec<Jwk>>>,
        token: &str,
        now: SystemTime,
    ) -> Result<Arc<Map<String, Value>>, JwtError> {
        let same_set = |v: &Verified| match (&v.key_set, key_set) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        let known = self
            .verified
            .lock()
            .expect("verified-token map poisoned")
            .get(memo_key(token))
            .filter(|v| *v.token == *token && same_set(v))
            .map(|v| (v.claims.clone(), v.times));
        if let Some((claims, times)) = known {
            times.check(now)?;
            return Ok(claims);
        }
        let keys = key_set.map_or(self.keys.as_slice(), |k| k.as_slice());
        let (claims, times) = self.verify_with(keys, token, now)?;
        let claims = Arc::new(claims);
        let mut verified = self.verified.lock().expect("verified-token map poisoned");
        if verified.len() >= VERIFIED_CAP {
            verified.clear();
        }
        verified.insert(
            memo_key(token).into(),
            Verified {
                token: token.into(),
                claims: claims.clone(),
                times,
                key_set: key_set.cloned(),
            },
        );
        Ok(claims)
    }

    /// The number of remembered tokens (tests).
    pub fn remembered(&self) -> usize {
        self.verified
            .lock()
            .expect("verified-token map poisoned")
            .len()
    }

    fn verify_with(
        &self,
        keys: &[Jwk],
        token: &str,
        now: SystemTime,
    ) -> Result<(Map<String, Value>, ClaimTimes), JwtError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed("expected three parts"));
        };
        let header: Map<String, Value> = decode_json(h)?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(JwtError::Malformed("no alg"))?;
        if !self.algorithms.iter().any(|a| a == alg) {
            return Err(JwtError::Algorithm(alg.to_string()));
        }
        if header.contains_key("crit") {
            return Err(JwtError::Malformed("crit header not understood"));
        }
        let kid = header.get("kid").and_then(Value::as_str);
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| JwtError::Malformed("signature is not base64url"))?;
        let signed = &token[..h.len() + 1 + p.len()];
        let mut candidates = keys
            .iter()
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .filter(|k| key_fits(k, alg))
            .peekable();
        if candidates.peek().is_none() {
            return Err(JwtError::NoKey(kid.map(str::to_string)));
        }
        if !candidates.any(|k| verify_signature(k, alg, signed.as_bytes(), &sig)) {
            return Err(JwtError::Signature);
        }
        let claims: Map<String, Value> = decode_json(p)?;
        let times = self.check_claims(&claims, now)?;
        Ok((claims, times))
    }

    /// The claims a verified token must carry (times first, then issuer and audience); its
    /// time claims, for later checks of the same token.
    fn check_claims(
        &self,
        c: &Map<String, Value>,
        now: SystemTime,
    ) -> Result<ClaimTimes, JwtError> {
        let times = ClaimTimes::of(c)?;
        times.check(now)?;
        if c.get("iss").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(JwtError::Claim("iss"));
        }
        if !self.audiences.is_empty() {
            let mut presented: Vec<&str> = match c.get("aud") {
                Some(Value::String(s)) => vec![s.as_str()],
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            // Cognito access tokens carry the app client in `client_id` instead of `aud`.
            if let Some(Value::String(id)) = c.get("client_id") {
                presented.push(id);
            }
            if !presented
                .iter()
                .any(|a| self.audiences.iter().any(|x| x == a))
            {
                return Err(JwtError::Claim("aud"));
            }
        }
        Ok(times)
    }
}

fn decode_json(part: &str) -> Result<Map<String, Value>, JwtError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtError::Malformed("part is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed("part is not a JSON object"))
}

/// Whether key `k` may verify a token signed with `alg`: kty and curve must fit, and the key's
/// own `alg`, when set, must be the same.
fn key_fits(k: &Jwk, alg: &str) -> bool {
    if k.use_.as_deref().is_some_and(|u| u != "sig") {
        return false;
    }
    if k.alg.as_deref().is_some_and(|a| a != alg) {
        return false;
    }
    match alg {
        "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => k.kty == "RSA",
        "ES256" => k.kty == "EC" && k.crv.as_deref() == Some("P-256"),
        "ES384" => k.kty == "EC" && k.crv.as_deref() == Some("P-384"),
        "EdDSA" => k.kty == "OKP" && k.crv.as_deref() == Some("Ed25519"),
        _ => false,
    }
}

fn b64(v: &Option<String>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(v.as_deref()?.trim_end_matches('='))
        .ok()
}

fn verify_signature(k: &Jwk, alg: &str, msg: &[u8], sig: &[u8]) -> bool {
    let rsa = |params: &'static signature::RsaParameters| {
        let (Some(n), Some(e)) = (b64(&k.n), b64(&k.e)) else {
            return false;
        };
        RsaPublicKeyComponents { n: &n, e: &e }
            .verify(params, msg, sig)
            .is_ok()
    };
    let ec = |params: &'static signature::EcdsaVerificationAlgorithm| {
        let (Some(x), Some(y)) = (b64(&k.x), b64(&k.y)) else {
            return false;
        };
        let mut point = Vec::with_capacity(1 + x.len() + y.len());
        point.push(4);
        point.extend_from_slice(&x);
        point.extend_from_slice(&y);
        UnparsedPublicKey::new(params, point)
            .verify(msg, sig)
            .is_ok()
    };
    match alg {
        "RS256" => rsa(&signature::RSA_PKCS1_2048_8192_SHA256),
        "RS384" => rsa(&signature::RSA_PKCS1_2048_8192_SHA384),
        "RS512" => rsa(&signature::RSA_PKCS1_2048_8192_SHA512),
        "PS256" => rsa(&signature::RSA_PSS_2048_8192_SHA256),
        "PS384" => rsa(&signature::RSA_PSS_2048_8192_SHA384),
        "PS512" => rsa(&signature::RSA_PSS_2048_8192_SHA512),
        "ES256" => ec(&signature::ECDSA_P256_SHA256_FIXED),
        "ES384" => ec(&signature::ECDSA_P384_SHA384_FIXED),
        "EdDSA" => b64(&k.x).is_some_and(|x| {
            UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(msg, sig)
                .is_ok()
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
