//! Lambda-style authorizers (TOKEN, REQUEST): POST the AWS authorizer event to the function's
//! HTTP endpoint, read the IAM policy (or the HTTP-API simple response), cache it per
//! identity-source values, and evaluate it against each request's method ARN.
//!
//! ```text
//!  identity sources ── missing ──> 401 (no call)      TOKEN regex mismatch ──> 401 (no call)
//!        │ values
//!  ResultCache[(authorizer id, values)] ── hit (within TTL) ──┐
//!        │ miss                                               │
//!  POST event (10 s) ── timeout / unreachable / 5xx ──> 500 AUTHORIZER_FAILURE
//!        │             ── 401 or errorMessage "Unauthorized" ──> 401
//!        │             ── not a policy / simple answer ──> 500 AUTHORIZER_CONFIGURATION_ERROR
//!        └─> Outcome ── cache ──> evaluate(method ARN): Deny wins -> 403; Allow -> ok; else 403
//! ```
//!
//! Method ARNs are `arn:aws:execute-api:{REGION}:{account}:{apiId}/{stage}/{METHOD}/{path}`
//! (`account`: `--account-id`)
//! with the request path after the stage's base path; `*` and `?` wildcards in policy
//! resources match as in IAM.

use super::AuthorizerOutput;
use crate::pipeline::ctx::RequestCtx;
use crate::pipeline::ctx::query_pairs;
use crate::pipeline::error::GatewayError;
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portico_config::FunctionAuthorizer;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// Region in method ARNs.
pub const REGION: &str = "portico";

/// Longest an authorizer call may take (then 500 AUTHORIZER_FAILURE).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_ANSWER_BYTES: usize = 1 << 20;
const MAX_CACHE_ENTRIES: usize = 100_000;

/// (authorizer id, identity-source values joined by NUL).
type CacheKey = (String, String);

/// Cached authorizer results by (authorizer id, identity values). Lives outside `Runtime`.
#[derive(Default)]
pub struct ResultCache {
    entries: Mutex<HashMap<CacheKey, (Instant, Arc<Outcome>)>>,
}

impl std::fmt::Debug for ResultCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultCache").finish_non_exhaustive()
    }
}

impl ResultCache {
    fn get(&self, key: &CacheKey) -> Option<Arc<Outcome>> {
        let entries = self.entries.lock().expect("authorizer cache lock");
        entries
            .get(key)
            .filter(|(until, _)| Instant::now() < *until)
            .map(|(_, o)| o.clone())
    }

    fn put(&self, key: CacheKey, ttl: Duration, outcome: Arc<Outcome>) {
        let mut entries = self.entries.lock().expect("authorizer cache lock");
        if entries.len() >= MAX_CACHE_ENTRIES {
            let now = Instant::now();
            entries.retain(|_, (until, _)| now < *until);
            if entries.len() >= MAX_CACHE_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now() + ttl, outcome));
    }
}

/// What the function answered (cached; evaluated per request).
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// IAM policy answer.
    Policy {
        /// `principalId`.
        principal_id: Option<String>,
        /// `execute-api:Invoke` statements: (allow, resource patterns).
        statements: Vec<(bool, Vec<String>)>,
        /// `execute-api:InvalidateCache` statements (may the caller invalidate the stage
        /// cache with `Cache-Control: max-age=0`): (allow, resource patterns).
        invalidate: Vec<(bool, Vec<String>)>,
        /// `context`.
        context: Map<String, Value>,
        /// `usageIdentifierKey` (the API key, for `apiKeySource: AUTHORIZER`).
        usage_identifier_key: Option<String>,
    },
    /// HTTP-API simple answer.
    Simple {
        /// `isAuthorized`.
        authorized: bool,
        /// `context`.
        context: Map<String, Value>,
    },
}

/// A TOKEN or REQUEST authorizer ready to call.
#[derive(Debug)]
pub struct FunctionVerifier {
    id: String,
    token: bool,
    uri: String,
    sources: Vec<String>,
    regex: Option<regex::Regex>,
    ttl: Duration,
    simple: bool,
    /// REQUEST on HTTP APIs: the event format.
    version: Option<portico_config::PayloadFormatVersion>,
    cache: Arc<ResultCache>,
}

/// `http://` and `https://` (trusting [`crate::tls::outbound`]).
fn client() -> &'static Client<HttpsConnector<HttpConnector>, Full<Bytes>> {
    static CLIENT: OnceLock<Client<HttpsConnector<HttpConnector>, Full<Bytes>>> = OnceLock::new();
    CLIENT.get_or_init(|| {
        Client::builder(TokioExecutor::new()).build(crate::tls::outbound_connector(CALL_TIMEOUT))
    })
}

impl FunctionVerifier {
    /// From the compiled settings; results are cached in `cache`.
    pub fn new(id: &str, token: bool, f: &FunctionAuthorizer, cache: Arc<ResultCache>) -> Self {
        FunctionVerifier {
            id: id.to_string(),
            token,
            uri: f.function_uri.clone(),
            sources: f.identity_sources.clone(),
            // Checked by compile; an invalid one (hand-written config) rejects every token.
            regex: f.identity_validation_expression.as_deref().map(|e| {
                regex::Regex::new(e).unwrap_or_else(|_| regex::Regex::new("$^").expect("valid"))
            }),
            ttl: Duration::from_secs(u64::from(f.result_ttl_seconds)),
            simple: f.simple_responses,
            version: f.payload_format_version,
            cache,
        }
    }

    /// Authorizes the request in `ctx` with `headers`.
    pub async fn authorize(
        &self,
        ctx: &RequestCtx,
        headers: &HeaderMap,
    ) -> Result<AuthorizerOutput, GatewayError> {
        let query = query_pairs(ctx.uri.query().unwrap_or(""));
        let mut values = Vec::with_capacity(self.sources.len());
        for s in &self.sources {
            let v = if let Some(h) = s.strip_prefix("header:") {
                super::identity_header(headers, h)?
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            } else if let Some(q) = s.strip_prefix("query:") {
                query
                    .iter()
                    .rev()
                    .find(|(k, _)| k == q)
                    .map(|(_, v)| v.clone())
            } else {
                None
            };
            match v {
                Some(v) if !v.is_empty() => values.push(v),
                _ => return Err(GatewayError::Unauthorized),
            }
        }
        if let (Some(re), Some(token)) = (&self.regex, values.first())
            && self.token
            && !re.is_match(token)
        {
            return Err(GatewayError::Unauthorized);
        }
        let arn = method_arn(ctx);
        let cacheable = !self.ttl.is_zero() && !values.is_empty();
        let key = (self.id.clone(), values.join("\u{0}"));
        let outcome = match cacheable.then(|| self.cache.get(&key)).flatten() {
            Some(o) => o,
            None => {
                let o = Arc::new(self.call(ctx, headers, &values, &arn).await?);
                if cacheable {
                    self.cache.put(key, self.ttl, o.clone());
                }
                o
            }
        };
        evaluate(&outcome, &arn)
    }

    async fn call(
        &self,
        ctx: &RequestCtx,
        headers: &HeaderMap,
        values: &[String],
        arn: &str,
    ) -> Result<Outcome, GatewayError> {
        let event = if self.token {
            json!({"type": "TOKEN", "authorizationToken": values[0], "methodArn": arn})
        } else {
            crate::events::authorizer_request(ctx, headers, values, arn, self.version)
        };
        let req = http::Request::post(self.uri.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(event.to_string())))
            .map_err(|e| GatewayError::AuthorizerConfigurationError(format!("request: {e}")))?;
        let fail = |m: String| GatewayError::AuthorizerFailure(format!("{}: {m}", self.id));
        let exchange = async {
            let resp = client()
                .request(req)
                .await
                .map_err(|e| fail(format!("call: {e}")))?;
            let status = resp.status();
            let function_error = resp.headers().contains_key("x-amz-function-error");
            let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| fail(format!("answer: {e}")))?
                .to_bytes();
            Ok::<_, GatewayError>((status, function_error, body))
        };
        let (status, function_error, body) =
            tokio::time::timeout(CALL_TIMEOUT, exchange)
                .await
                .map_err(|_| fail(format!("no answer within {CALL_TIMEOUT:?}")))??;
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        let error_message = json
            .as_ref()
            .and_then(|j| j.get("errorMessage"))
            .and_then(Value::as_str);
        if status == http::StatusCode::UNAUTHORIZED || error_message == Some("Unauthorized") {
            return Err(GatewayError::Unauthorized);
        }
        if !status.is_success() || function_error || error_message.is_some() {
            return Err(fail(format!("function answered {status}")));
        }
        let json = json.ok_or_else(|| {
            GatewayError::AuthorizerConfigurationError(format!("{}: answer is not JSON", self.id))
        })?;
        parse_outcome(&json, self.simple)
            .map_err(|m| GatewayError::AuthorizerConfigurationError(format!("{}: {m}", self.id)))
    }
}

/// `arn:aws:execute-api:{REGION}:{ACCOUNT}:{apiId}/{stage}/{METHOD}/{path after base path}`.
pub fn method_arn(ctx: &RequestCtx) -> String {
    let stage = ctx.stage_config();
    let base = stage.map_or("", |s| s.base_path.as_str());
    let path = ctx.path();
    let rel = path.strip_prefix(base).unwrap_or(path);
    format!(
        "arn:aws:execute-api:{REGION}:{}:{}/{}/{}/{}",
        crate::context::account_id(),
        ctx.api_config().map_or("", |a| a.name.as_str()),
        stage.map_or("", |s| s.name.as_str()),
        ctx.http_method.as_str(),
        rel.trim_start_matches('/'),
    )
}

fn string_or_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// Reads a function answer.
pub fn parse_outcome(v: &Value, simple: bool) -> Result<Outcome, String> {
    let context = match v.get("context") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err("context is not an object".into()),
    };
    if simple {
        let authorized = v
            .get("isAuthorized")
            .and_then(Value::as_bool)
            .ok_or("simple answer without a boolean isAuthorized")?;
        return Ok(Outcome::Simple {
            authorized,
            context,
        });
    }
    let doc = v
        .get("policyDocument")
        .and_then(Value::as_object)
        .ok_or("answer without a policyDocument")?;
    let statements = match doc.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        _ => return Err("policyDocument without Statement".into()),
    };
    let (mut out, mut invalidate) = (Vec::new(), Vec::new());
    for s in &statements {
        let allow = match s.get("Effect").and_then(Value::as_str) {
            Some(e) if e.eq_ignore_ascii_case("allow") => true,
            Some(e) if e.eq_ignore_ascii_case("deny") => false,
            _ => return Err("statement without Effect Allow or Deny".into()),
        };
        let actions = string_or_list(s.get("Action"));
        if actions.is_empty() {
            return Err("statement without Action".into());
        }
        let resources = string_or_list(s.get("Resource"));
        if resources.is_empty() {
            return Err("statement without Resource".into());
        }
        if actions
            .iter()
            .any(|a| wildcard_match(a, "execute-api:InvalidateCache"))
        {
            invalidate.push((allow, resources.clone()));
        }
        if actions
            .iter()
            .any(|a| wildcard_match(a, "execute-api:Invoke"))
        {
            out.push((allow, resources));
        }
    }
    let principal_id = match v.get("principalId") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => None,
        Some(other) => Some(other.to_string()),
    };
    Ok(Outcome::Policy {
        principal_id,
        statements: out,
        invalidate,
        context,
        usage_identifier_key: v
            .get("usageIdentifierKey")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// Evaluates an answer for `arn`: an explicit Deny wins, then an Allow is required.
pub fn evaluate(o: &Outcome, arn: &str) -> Result<AuthorizerOutput, GatewayError> {
    match o {
        Outcome::Simple {
            authorized,
            context,
        } => {
            if !authorized {
                return Err(GatewayError::AccessDenied);
            }
            Ok(AuthorizerOutput {
                context: context.clone(),
                ..Default::default()
            })
        }
        Outcome::Policy {
            principal_id,
            statements,
            invalidate,
            context,
            usage_identifier_key,
        } => {
            let matches = |statements: &[(bool, Vec<String>)], allow: bool| {
                statements
                    .iter()
                    .filter(|(a, _)| *a == allow)
                    .any(|(_, res)| res.iter().any(|r| wildcard_match(r, arn)))
            };
            if matches(statements, false) {
                return Err(GatewayError::PolicyDenied { explicit: true });
            }
            if !matches(statements, true) {
                return Err(GatewayError::PolicyDenied { explicit: false });
            }
            Ok(AuthorizerOutput {
                principal_id: principal_id.clone(),
                claims: Arc::default(),
                context: context.clone(),
                usage_identifier_key: usage_identifier_key.clone(),
                // The same rule for the cache: an explicit Deny wins, an Allow is needed.
                may_invalidate_cache: !matches(invalidate, false) && matches(invalidate, true),
            })
        }
    }
}

/// IAM-style wildcard match: `*` any run (also across `/` and `:`), `?` one character.
pub fn wildcard_match(pattern: &str, s: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:execute-api:portico:000000000000:mobile/dev/GET/profile/7";

    #[test]
    fn wildcards_match_as_in_iam() {
        assert!(wildcard_match("*", ARN));
        assert!(wildcard_match(
            "arn:aws:execute-api:*:*:mobile/dev/GET/*",
            ARN
        ));
        assert!(wildcard_match(
            "arn:aws:execute-api:portico:000000000000:mobile/*/GET/profile/?",
            ARN
        ));
        assert!(!wildcard_match(
            "arn:aws:execute-api:*:*:mobile/dev/DELETE/*",
            ARN
        ));
        assert!(!wildcard_match(
            "arn:aws:execute-api:portico:000000000000:mobile/dev/GET/profile/??",
            ARN
        ));
        assert!(wildcard_match("execute-api:*", "execute-api:Invoke"));
        assert!(!wildcard_match("", ARN));
    }

    fn policy(statements: Value) -> Outcome {
        parse_outcome(
            &json!({"principalId": "u1", "policyDocument": {"Version": "2012-10-17", "Statement": statements},
                    "context": {"tier": "gold"}, "usageIdentifierKey": "key-1"}),
            false,
        )
        .unwrap()
    }

    #[test]
    fn explicit_deny_wins_and_an_allow_is_required() {
        let p = policy(json!([
            {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "arn:aws:execute-api:*:*:mobile/dev/*"},
            {"Effect": "Deny", "Action": ["execute-api:Invoke"], "Resource": ["arn:aws:execute-api:*:*:mobile/dev/DELETE/*"]}
        ]));
        let ok = evaluate(&p, ARN).unwrap();
        assert_eq!(ok.principal_id.as_deref(), Some("u1"));
        assert_eq!(ok.context["tier"], "gold");
        assert_eq!(ok.usage_identifier_key.as_deref(), Some("key-1"));
        assert!(matches!(
            evaluate(&p, &ARN.replace("/GET/", "/DELETE/")),
            Err(GatewayError::PolicyDenied { explicit: true })
        ));
        assert!(matches!(
            evaluate(&p, &ARN.replace("/dev/", "/prod/")),
            Err(GatewayError::PolicyDenied { explicit: false })
        ));
        // A statement for another action grants nothing.
        let other = policy(json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}));
        assert!(evaluate(&other, ARN).is_err());
    }

    #[test]
    fn malformed_answers_are_rejected_and_simple_answers_read() {
        assert!(parse_outcome(&json!({"principalId": "x"}), false).is_err());
        assert!(
            parse_outcome(
                &json!({"policyDocument": {"Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}}),
                false
            )
            .is_err()
        );
        assert!(parse_outcome(&json!({"isAuthorized": "yes"}), true).is_err());
        let s = parse_outcome(&json!({"isAuthorized": true, "context": {"a": 1}}), true).unwrap();
        assert_eq!(evaluate(&s, ARN).unwrap().context["a"], 1);
        let s = parse_outcome(&json!({"isAuthorized": false}), true).unwrap();
        assert!(evaluate(&s, ARN).is_err());
    }

    #[test]
    fn query_strings_decode() {
        assert_eq!(
            query_pairs("a=1&b=two+words&c=%41&d"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "two words".into()),
                ("c".into(), "A".into()),
                ("d".into(), String::new())
            ]
        );
    }
}
