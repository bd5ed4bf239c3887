//! Key sets fetched from a `jwksUri`: [`JwksStore`] (one per process, held by `Pools`, so a
//! config reload keeps fetched keys) hands out one [`JwksEntry`] per (authorizer id, URL).
//!
//! ```text
//!  JwtVerifier ─ keys() ──> JwksEntry ─ fresh? ── yes ──> cached keys
//!                               │ no (never fetched, or past max-age)
//!                               └─ fetch (single flight; a failure keeps the last good set,
//!                                         and is retried at most once per MIN_REFETCH)
//!  unknown kid ─ refetch() ─> at most once per MIN_REFETCH, whatever the tokens say
//! ```
//!
//! Freshness: `Cache-Control: max-age` of the answer, else [`DEFAULT_MAX_AGE`], clamped to
//! [`MIN_REFETCH`] .. one day.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portico_config::Jwk;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// Freshness of a key set whose answer carries no `max-age`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);
/// Least time between two fetches of the same key set caused by unknown `kid`s or by failures.
pub const MIN_REFETCH: Duration = Duration::from_secs(30);
/// Longest a fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_JWKS_BYTES: usize = 1 << 20;

/// Fetched key sets by (authorizer id, URL). Lives outside `Runtime`.
pub struct JwksStore {
    entries: Mutex<HashMap<(String, String), Arc<JwksEntry>>>,
    min_refetch: Duration,
}

impl Default for JwksStore {
    fn default() -> Self {
        Self::with_min_refetch(MIN_REFETCH)
    }
}

impl std::fmt::Debug for JwksStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksStore").finish_non_exhaustive()
    }
}

impl JwksStore {
    /// A store whose entries refetch at most once per `min_refetch` (tests use a short one).
    pub fn with_min_refetch(min_refetch: Duration) -> Self {
        JwksStore {
            entries: Mutex::default(),
            min_refetch,
        }
    }

    /// The entry for `id` fetching from `uri` (created empty on first use).
    pub fn entry(&self, id: &str, uri: &str) -> Arc<JwksEntry> {
        let mut entries = self.entries.lock().expect("jwks store lock");
        entries
            .entry((id.to_string(), uri.to_string()))
            .or_insert_with(|| Arc::new(JwksEntry::new(uri, self.min_refetch)))
            .clone()
    }
}

/// One fetched key set.
pub struct JwksEntry {
    uri: String,
    min_refetch: Duration,
    state: Mutex<State>,
    // Single flight: one fetch at a time per entry; waiters then see its result.
    fetching: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for JwksEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksEntry")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    keys: Arc<Vec<Jwk>>,
    fresh_until: Option<Instant>,
    last_attempt: Option<Instant>,
    fetches: u64,
}

/// `http://` and `https://` (trusting [`crate::tls::outbound`]).
fn client() -> &'static Client<HttpsConnector<HttpConnector>, Empty<Bytes>> {
    static CLIENT: OnceLock<Client<HttpsConnector<HttpConnector>, Empty<Bytes>>> = OnceLock::new();
    CLIENT.get_or_init(|| {
        Client::builder(TokioExecutor::new()).build(crate::tls::outbound_connector(FETCH_TIMEOUT))
    })
}

impl JwksEntry {
    fn new(uri: &str, min_refetch: Duration) -> Self {
        JwksEntry {
            uri: uri.to_string(),
            min_refetch,
            state: Mutex::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    /// How many fetches were attempted (tests and debugging).
    pub fn fetch_count(&self) -> u64 {
        self.state.lock().expect("jwks lock").fetches
    }

    /// The current keys, fetching first when the set is missing or stale (and the last
    /// attempt is older than [`MIN_REFETCH`]). Never fails: a failed fetch keeps the last
    /// good set (possibly empty).
    pub async fn keys(&self) -> Arc<Vec<Jwk>> {
        let now = Instant::now();
        {
            let s = self.state.lock().expect("jwks lock");
            let stale = s.fresh_until.is_none_or(|t| now >= t);
            if !stale || !self.may_attempt(&s, now) {
                return s.keys.clone();
            }
        }
        self.fetch_if(|s, now| s.fresh_until.is_none_or(|t| now >= t) && self.may_attempt(s, now))
            .await
    }

    /// Refetches because a token named an unknown `kid`, at most once per [`MIN_REFETCH`];
    /// returns the (possibly unchanged) keys.
    pub async fn refetch(&self) -> Arc<Vec<Jwk>> {
        self.fetch_if(|s, now| self.may_attempt(s, now)).await
    }

    fn may_attempt(&self, s: &State, now: Instant) -> bool {
        s.last_attempt
            .is_none_or(|t| now.duration_since(t) >= self.min_refetch)
    }

    async fn fetch_if(&self, wanted: impl Fn(&State, Instant) -> bool) -> Arc<Vec<Jwk>> {
        let _guard = self.fetching.lock().await;
        let now = Instant::now();
        {
            let mut s = self.state.lock().expect("jwks lock");
            // Re-check under the single-flight lock: a concurrent fetch may have done it.
            if !wanted(&s, now) {
                return s.keys.clone();
            }
            s.last_attempt = Some(now);
            s.fetches += 1;
        }
        let result = tokio::time::timeout(FETCH_TIMEOUT, fetch(&self.uri)).await;
        let mut s = self.state.lock().expect("jwks lock");
        match result {
            Ok(Ok((keys, max_age))) => {
                s.keys = Arc::new(keys);
                s.fresh_until = Some(Instant::now() + max_age);
            }
            Ok(Err(e)) => {
                tracing::warn!(uri = %self.uri, error = %e, "JWKS fetch failed; keeping the last key set")
            }
            Err(_) => {
                tracing::warn!(uri = %self.uri, "JWKS fetch timed out; keeping the last key set")
            }
        }
        s.keys.clone()
    }
}

async fn fetch(uri: &str) -> Result<(Vec<Jwk>, Duration), String> {
    let uri: http::Uri = uri.parse().map_err(|e| format!("bad URL: {e}"))?;
    let resp = client()
        .get(uri)
        .await
        .map_err(|e| format!("request: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    let max_age = resp
        .headers()
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age)
        .unwrap_or(DEFAULT_MAX_AGE)
        .clamp(MIN_REFETCH, Duration::from_secs(86_400));
    let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((parse(&body)?, max_age))
}

/// `max-age=N` of a Cache-Control value.
pub fn max_age(v: &str) -> Option<Duration> {
    v.split(',')
        .filter_map(|d| d.trim().strip_prefix("max-age="))
        .find_map(|n| n.trim_matches('"').parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Parses a JWKS document; keys that are not usable public signing keys never fit a token's
/// `alg` (see `key_fits`), private members are ignored.
pub fn parse(body: &[u8]) -> Result<Vec<Jwk>, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
    Ok(set
        .keys
        .into_iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k).ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=3600, must-revalidate"),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(max_age("no-cache"), None);
    }

    #[test]
    fn key_sets_parse_and_skip_unreadable_keys() {
        let keys =
            parse(br#"{"keys":[{"kty":"EC","crv":"P-256","x":"a","y":"b"},{"kty":7}]}"#).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(parse(b"[]").is_err());
    }
}
