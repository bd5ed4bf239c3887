//! Cache phase: the stage's response cache in front of the integration, after every check
//! (authorizer, API key, throttle and quota, validation), so a cached answer is never served
//! to a caller the method would refuse and usage plans count cached requests alike.
//!
//! ```text
//!  route cached? ── no ──> integrate::call
//!     │ yes
//!  Cache-Control: max-age=0? ── allowed to invalidate ──> refresh (skip the read)
//!     │                      └─ not allowed: FAIL_WITH_403 (403) | ignored (+ Warning)
//!  key = stage, flush token, namespace, method, key parameters' values
//!  lookup ── hit ──> the entry (CacheHitCount)
//!     │ miss (CacheMissCount)
//!  first to miss this key? ── no ──> wait for that one (at most the integration timeout),
//!     │ yes                          then look again; still a miss: call without filling
//!  integrate::call ── 2XX, body <= 1 MiB ──> the body is copied as it streams to the client
//!                                            and stored once complete (Fill)
//! ```
//!
//! The pure parts ([`max_age_zero`], [`invalidation`], [`RouteCache::key`]) are tested here;
//! the stores live in `crate::cache`.

use super::ctx::{Exchange, RequestCtx};
use super::error::GatewayError;
use super::integrate;
use crate::body::{BodyError, ProxyBody};
use crate::cache::{Entry, FillGuard, Key, Lookup, MAX_ENTRY_BYTES, ResponseCache, Slot, Turn};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame};
use portico_config::{
    MethodCache, ParameterLocation, RequiredParameter, Route, StageCache, UnauthorizedCacheControl,
};
use prometheus::IntCounter;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// The `Warning` sent with SUCCEED_WITH_RESPONSE_HEADER.
const IGNORED_WARNING: &str =
    "199 portico \"Cache-Control: max-age=0 ignored: the caller may not invalidate the cache\"";

/// One route's use of its stage's cache, resolved when the runtime is built.
#[derive(Debug)]
pub struct RouteCache {
    /// The stage id (where entries live).
    pub stage: Arc<str>,
    /// The stage's budget in bytes.
    pub budget: u64,
    flush_token: Box<str>,
    deployment: Box<str>,
    namespace: Box<str>,
    params: Vec<RequiredParameter>,
    /// The method's settings.
    pub settings: MethodCache,
    hits: IntCounter,
    misses: IntCounter,
}

impl RouteCache {
    /// `route`'s cache use on a stage with `cache`, when the method is cached; `counters`
    /// makes its hit and miss series (only cached methods have them). `deployment` tells the
    /// stage's own deployment from its canary: their entries are kept apart (AWS keys entries
    /// per deployment; a canary with `useStageCache` shares the stage's cache, not its
    /// entries).
    pub fn build(
        stage_id: &str,
        deployment: &str,
        cache: &StageCache,
        route: &Route,
        counters: impl FnOnce() -> (IntCounter, IntCounter),
    ) -> Option<RouteCache> {
        let settings = cache.method(&route.route_key, &route.http_method)?.clone();
        let (hits, misses) = counters();
        Some(RouteCache {
            stage: Arc::from(stage_id),
            budget: cache.budget_bytes,
            flush_token: cache.flush_token.as_str().into(),
            deployment: deployment.into(),
            namespace: route.cache_namespace.as_deref().unwrap_or(&route.id).into(),
            params: route.cache_key_parameters.clone(),
            settings,
            hits,
            misses,
        })
    }

    /// The key of a request: the stage, the flush token, the deployment, the namespace, the
    /// request's
    /// method (an `ANY` route keeps GET and POST apart), then each key parameter's location,
    /// name and values (path parameters as matched; query values percent-decoded, in order;
    /// every value of a header).
    pub fn key(
        &self,
        method: &str,
        path_param: impl Fn(&str) -> Option<String>,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Key {
        let mut owned: Vec<Vec<u8>> = Vec::new();
        for p in &self.params {
            let (tag, values): (&[u8], Vec<Vec<u8>>) = match p.location {
                ParameterLocation::Path => (
                    b"path",
                    path_param(&p.name)
                        .map(String::into_bytes)
                        .into_iter()
                        .collect(),
                ),
                ParameterLocation::Querystring => (
                    b"query",
                    query
                        .unwrap_or("")
                        .split('&')
                        .filter_map(|kv| {
                            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                            (decode(k) == p.name).then(|| decode(v).into_bytes())
                        })
                        .collect(),
                ),
                ParameterLocation::Header => (
                    b"header",
                    headers
                        .get_all(p.name.as_str())
                        .iter()
                        .map(|v| v.as_bytes().to_vec())
                        .collect(),
                ),
            };
            owned.push(tag.to_vec());
            owned.push(p.name.as_bytes().to_vec());
            owned.push((values.len() as u64).to_be_bytes().to_vec());
            owned.extend(values);
        }
        let fixed = [
            self.stage.as_bytes(),
            self.flush_token.as_bytes(),
            self.deployment.as_bytes(),
            self.namespace.as_bytes(),
            method.as_bytes(),
        ];
        crate::cache::key(fixed.into_iter().chain(owned.iter().map(Vec::as_slice)))
    }
}

fn decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

/// Whether the request asks to invalidate its entry: a `Cache-Control` directive
/// `max-age=0` (AWS's invalidation request).
pub fn max_age_zero(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| {
            let Some((name, value)) = d.split_once('=') else {
                return false;
            };
            name.trim().eq_ignore_ascii_case("max-age") && value.trim().trim_matches('"') == "0"
        })
}

/// What a request does with the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// No invalidation asked: a lookup as usual.
    No,
    /// Invalidate: call the integration and replace the entry.
    Refresh,
    /// Not allowed to: 403.
    Refuse,
    /// Not allowed to: served as without the header, with a `Warning`.
    IgnoreWithWarning,
    /// Not allowed to: served as without the header.
    Ignore,
}

/// AWS's rule: `max-age=0` invalidates when authorization is not required or the caller's
/// authorizer allows `execute-api:InvalidateCache`; else the method's strategy decides.
pub fn invalidation(asked: bool, settings: &MethodCache, allowed: bool) -> Invalidation {
    if !asked {
        return Invalidation::No;
    }
    if !settings.require_authorization || allowed {
        return Invalidation::Refresh;
    }
    match settings.unauthorized {
        UnauthorizedCacheControl::FailWith403 => Invalidation::Refuse,
        UnauthorizedCacheControl::SucceedWithResponseHeader => Invalidation::IgnoreWithWarning,
        UnauthorizedCacheControl::SucceedWithoutResponseHeader => Invalidation::Ignore,
    }
}

/// The request's key, from its route's parameters, query and headers.
fn request_key(ctx: &RequestCtx, rc: &RouteCache, names: &[Arc<str>], headers: &HeaderMap) -> Key {
    let path = ctx.path();
    rc.key(
        ctx.http_method.as_str(),
        |name| {
            let i = names.iter().position(|n| &**n == name)?;
            let raw = path.get(ctx.params.get(i)?.clone())?;
            Some(decode(raw))
        },
        ctx.uri.query(),
        headers,
    )
}

fn from_entry(e: &Entry, warn: bool) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(e.body.clone()));
    *resp.status_mut() = e.status;
    *resp.headers_mut() = e.headers.clone();
    if warn {
        resp.headers_mut()
            .insert(header::WARNING, HeaderValue::from_static(IGNORED_WARNING));
    }
    resp
}

/// Whether the request's route uses the stage cache (`run` calls [`call`] then, else the
/// integration directly: the cache phase's future stays out of every other request's).
pub fn applies(ex: &Exchange<'_>) -> bool {
    ex.ctx
        .handle
        .and_then(|h| ex.ctx.runtime.stage_route(h))
        .is_some_and(|r| r.cache.is_some())
}

/// The integration, behind the route's cache when it has one.
pub async fn call(ex: Exchange<'_>) -> Result<Response<ProxyBody>, GatewayError> {
    let runtime = ex.ctx.runtime.clone();
    let route = ex
        .ctx
        .handle
        .and_then(|h| runtime.stage_route(h))
        .expect("the cache runs after a route matched");
    let Some(rc) = &route.cache else {
        return Box::pin(integrate::call(ex)).await;
    };
    let cache = ex.shared.cache.clone();
    let allowed = ex
        .ctx
        .authorizer
        .as_ref()
        .is_some_and(|a| a.may_invalidate_cache);
    let how = invalidation(max_age_zero(&ex.head.headers), &rc.settings, allowed);
    let warn = match how {
        Invalidation::Refuse => return Err(GatewayError::AccessDenied),
        Invalidation::IgnoreWithWarning => true,
        _ => false,
    };
    let key = request_key(ex.ctx, rc, &route.param_names, &ex.head.headers);
    let (found, mut slot) = split(cache.lookup(&rc.stage, rc.budget, &key).await);
    let refresh = how == Invalidation::Refresh;
    if let (false, Some(e)) = (refresh, &found) {
        rc.hits.inc();
        return Ok(from_entry(e, warn));
    }
    // One integration call per key at a time (a refresh is not held up by a fill).
    let mut guard = None;
    let mut fill = true;
    if !refresh {
        match cache.turn(key) {
            Turn::Lead(g) => guard = Some(g),
            Turn::Wait(mut rx) => {
                let _ = tokio::time::timeout(route.timeout, rx.changed()).await;
                let (found, again) = split(cache.lookup(&rc.stage, rc.budget, &key).await);
                if let Some(e) = found {
                    rc.hits.inc();
                    return Ok(from_entry(&e, warn));
                }
                // The leader stored nothing (an error, a large answer): call without filling,
                // so that a key that is never cached does not make its callers queue.
                slot = again;
                fill = false;
            }
        }
    }
    rc.misses.inc();
    // Boxed on a miss (which goes to the backend anyway), so the cache phase adds nothing to
    // the size of every request's future.
    let resp = Box::pin(integrate::call(ex)).await?;
    let resp = if fill {
        filling(resp, &cache, slot, rc, guard)
    } else {
        resp
    };
    Ok(add_warning(resp, warn))
}

fn add_warning(mut resp: Response<ProxyBody>, warn: bool) -> Response<ProxyBody> {
    if warn {
        resp.headers_mut()
            .insert(header::WARNING, HeaderValue::from_static(IGNORED_WARNING));
    }
    resp
}

fn split(l: Lookup) -> (Option<Arc<Entry>>, Slot) {
    match l {
        Lookup::Hit(e, s) => (Some(e), s),
        Lookup::Miss(s) => (None, s),
    }
}

/// Whether an integration answer is stored: 2XX (AWS is silent; errors and 429s are not
/// replayed for the TTL) with a body that may fit [`MAX_ENTRY_BYTES`].
fn cacheable(resp: &Response<ProxyBody>) -> bool {
    resp.status().is_success()
        && resp
            .body()
            .size_hint()
            .exact()
            .is_none_or(|n| n <= MAX_ENTRY_BYTES as u64)
}

/// `resp` with its body copied into the cache as it streams, when it is cacheable.
fn filling(
    resp: Response<ProxyBody>,
    cache: &Arc<ResponseCache>,
    slot: Slot,
    rc: &RouteCache,
    guard: Option<FillGuard>,
) -> Response<ProxyBody> {
    if !cacheable(&resp) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let declared = body.size_hint().exact();
    let pending = Pending {
        cache: cache.clone(),
        slot,
        status: parts.status,
        headers: parts.headers.clone(),
        ttl: Duration::from_secs(u64::from(rc.settings.ttl_seconds)),
        encrypted: rc.settings.encrypted,
        guard,
    };
    let fill = Fill {
        inner: body,
        buf: Vec::with_capacity(declared.unwrap_or(0) as usize),
        declared,
        pending: Some(pending),
    };
    if declared == Some(0) {
        // Nothing will stream: stored now.
        let mut fill = fill;
        fill.finish();
        return Response::from_parts(parts, fill.inner);
    }
    Response::from_parts(parts, ProxyBody::Filling(Box::new(fill)))
}

/// What a fill stores once the body is complete.
#[derive(Debug)]
struct Pending {
    cache: Arc<ResponseCache>,
    slot: Slot,
    status: StatusCode,
    headers: HeaderMap,
    ttl: Duration,
    encrypted: bool,
    guard: Option<FillGuard>,
}

/// A response body copied into the cache as it streams to the client. The entry is stored
/// as the last bytes pass (before the client can see the end), so a caller that got the
/// whole answer finds it cached. A body that breaks, or grows past the limit, stores
/// nothing; either way the requests waiting on the key are woken.
#[derive(Debug)]
pub struct Fill {
    inner: ProxyBody,
    buf: Vec<u8>,
    declared: Option<u64>,
    pending: Option<Pending>,
}

impl Fill {
    fn finish(&mut self) {
        let Some(p) = self.pending.take() else {
            return;
        };
        let entry = Entry {
            status: p.status,
            headers: p.headers,
            body: Bytes::from(std::mem::take(&mut self.buf)),
        };
        p.cache.put(p.slot, entry, p.ttl, p.encrypted, p.guard);
    }

    /// [`Body::poll_frame`] of the wrapped body, copying its data.
    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), true) = (frame.data_ref(), self.pending.is_some()) {
                    if self.buf.len() + data.len() > MAX_ENTRY_BYTES {
                        self.pending = None;
                        self.buf = Vec::new();
                    } else {
                        self.buf.extend_from_slice(data);
                        if self.declared == Some(self.buf.len() as u64) {
                            self.finish();
                        }
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => self.pending = None,
            Poll::Ready(None) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    /// The wrapped body's.
    pub fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    /// The wrapped body's.
    pub fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(require: bool, unauthorized: UnauthorizedCacheControl) -> MethodCache {
        MethodCache {
            enabled: true,
            ttl_seconds: 300,
            encrypted: false,
            require_authorization: require,
            unauthorized,
        }
    }

    /// AWS developer guide, "Invalidate an API Gateway cache entry"
    /// (api-gateway-caching.html#invalidate-method-caching): `Cache-Control: max-age=0`
    /// reloads the entry from the integration when the caller is authorized (or
    /// authorization is not required); otherwise the unauthorized strategy decides: 403,
    /// or the request is served as usual with or without a warning header.
    #[test]
    fn max_age_zero_invalidates_only_when_allowed() {
        use UnauthorizedCacheControl::*;
        let s = settings(true, FailWith403);
        assert_eq!(invalidation(false, &s, false), Invalidation::No);
        assert_eq!(invalidation(true, &s, true), Invalidation::Refresh);
        assert_eq!(invalidation(true, &s, false), Invalidation::Refuse);
        let s = settings(true, SucceedWithResponseHeader);
        assert_eq!(
            invalidation(true, &s, false),
            Invalidation::IgnoreWithWarning
        );
        let s = settings(true, SucceedWithoutResponseHeader);
        assert_eq!(invalidation(true, &s, false), Invalidation::Ignore);
        // Without required authorization anyone may invalidate (AWS's warning).
        let s = settings(false, FailWith403);
        assert_eq!(invalidation(true, &s, false), Invalidation::Refresh);
    }

    #[test]
    fn the_max_age_directive_is_found_among_others() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
            m
        };
        assert!(max_age_zero(&h("max-age=0")));
        assert!(max_age_zero(&h("no-transform, Max-Age = \"0\"")));
        assert!(!max_age_zero(&h("max-age=10")));
        assert!(!max_age_zero(&h("s-maxage=0")));
        assert!(!max_age_zero(&h("no-cache")));
        assert!(!max_age_zero(&HeaderMap::new()));
    }

    fn rc(params: Vec<RequiredParameter>, namespace: Option<&str>, token: &str) -> RouteCache {
        let cache = StageCache {
            budget_bytes: 1 << 20,
            flush_token: token.into(),
            defaults: settings(true, UnauthorizedCacheControl::SucceedWithResponseHeader),
            methods: Default::default(),
        };
        let mut route = crate::pipeline::route::tests::mk_route("GET", "/items/{id}");
        route.cache_key_parameters = params;
        route.cache_namespace = namespace.map(str::to_string);
        let c = || IntCounter::new("c", "c").unwrap();
        RouteCache::build("stage/default/prod", "prod", &cache, &route, || (c(), c())).unwrap()
    }

    fn param(location: ParameterLocation, name: &str) -> RequiredParameter {
        RequiredParameter {
            location,
            name: name.into(),
        }
    }

    /// The key is the stage, flush token, namespace and method plus the listed parameters
    /// only: an unlisted query string or header does not tell answers apart (AWS: "the
    /// cache key parameters" of the integration).
    #[test]
    fn keys_differ_by_the_listed_parameters_only() {
        let h = |pairs: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.append(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            m
        };
        let id = |v: &'static str| move |n: &str| (n == "id").then(|| v.to_string());
        let plain = rc(vec![], None, "");
        // No parameters: every id, query and header shares one entry (as AWS).
        assert_eq!(
            plain.key("GET", id("1"), Some("a=1"), &h(&[("x", "1")])),
            plain.key("GET", id("2"), None, &HeaderMap::new())
        );
        let keyed = rc(
            vec![
                param(ParameterLocation::Path, "id"),
                param(ParameterLocation::Querystring, "lang"),
                param(ParameterLocation::Header, "authorization"),
            ],
            None,
            "",
        );
        let base = keyed.key(
            "GET",
            id("1"),
            Some("lang=en&x=1"),
            &h(&[("authorization", "a")]),
        );
        assert_eq!(
            base,
            keyed.key(
                "GET",
                id("1"),
                Some("x=2&lang=en"),
                &h(&[("authorization", "a"), ("y", "2")])
            )
        );
        assert_eq!(
            base,
            keyed.key(
                "GET",
                id("1"),
                Some("lang=%65n"),
                &h(&[("authorization", "a")])
            )
        );
        for other in [
            keyed.key(
                "GET",
                id("2"),
                Some("lang=en"),
                &h(&[("authorization", "a")]),
            ),
            keyed.key(
                "GET",
                id("1"),
                Some("lang=de"),
                &h(&[("authorization", "a")]),
            ),
            keyed.key(
                "GET",
                id("1"),
                Some("lang=en"),
                &h(&[("authorization", "b")]),
            ),
            keyed.key("GET", id("1"), None, &h(&[("authorization", "a")])),
            keyed.key(
                "GET",
                id("1"),
                Some("lang=en&lang=de"),
                &h(&[("authorization", "a")]),
            ),
        ] {
            assert_ne!(base, other);
        }
        // Another namespace, or a new flush token, is another key.
        let k = |r: &RouteCache| r.key("GET", id("1"), None, &HeaderMap::new());
        assert_ne!(k(&plain), k(&rc(vec![], Some("shared"), "")));
        assert_ne!(k(&plain), k(&rc(vec![], None, "2026-12-05")));
        // Another request method (an ANY route): another key.
        assert_ne!(
            k(&plain),
            plain.key("POST", id("1"), None, &HeaderMap::new())
        );
    }
}
