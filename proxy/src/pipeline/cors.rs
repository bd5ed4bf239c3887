//! CORS phase: automatic preflight answers and CORS headers on every response of an API
//! with a `cors` policy.
//!
//! [`preflight`] runs right after routing (as AWS answers preflight before authorization):
//! an `OPTIONS` request with `Origin` and `Access-Control-Request-Method` on an existing
//! resource that has no explicit `OPTIONS` method is answered 204 by the gateway. A resource
//! with an explicit `OPTIONS` method runs it. [`decorate`] runs on every response, gateway
//! responses included (a 403 or 429 still carries `Access-Control-Allow-Origin`), from
//! `pipeline::handle`. Reads the API's [`CorsPolicy`] (header values built once at `Runtime`
//! build) and the request's `Origin`; never fails.

use super::ctx::RequestCtx;
use crate::body::ProxyBody;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use portico_config::Cors;

/// An API's CORS policy with its header values ready.
#[derive(Debug)]
pub struct CorsPolicy {
    any_origin: bool,
    origins: Vec<String>,
    allow_methods: Option<HeaderValue>,
    any_method: bool,
    allow_headers: Option<HeaderValue>,
    any_header: bool,
    expose_headers: Option<HeaderValue>,
    max_age: Option<HeaderValue>,
    credentials: bool,
}

fn joined(list: &[String]) -> Option<HeaderValue> {
    let v: Vec<&str> = list
        .iter()
        .map(String::as_str)
        .filter(|s| *s != "*")
        .collect();
    if v.is_empty() {
        return None;
    }
    HeaderValue::from_str(&v.join(",")).ok()
}

impl CorsPolicy {
    /// Prepares `cors`'s header values.
    pub fn build(cors: &Cors) -> CorsPolicy {
        let star = |l: &[String]| l.iter().any(|x| x == "*");
        CorsPolicy {
            any_origin: star(&cors.allow_origins),
            origins: cors.allow_origins.clone(),
            allow_methods: joined(&cors.allow_methods),
            any_method: star(&cors.allow_methods),
            allow_headers: joined(&cors.allow_headers),
            any_header: star(&cors.allow_headers),
            expose_headers: if star(&cors.expose_headers) {
                Some(HeaderValue::from_static("*"))
            } else {
                joined(&cors.expose_headers)
            },
            max_age: cors.max_age.map(HeaderValue::from),
            credentials: cors.allow_credentials,
        }
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, and whether it echoes it (then
    /// the response varies by Origin). `None`: not an allowed origin.
    fn allow_origin(&self, origin: &HeaderValue) -> Option<(HeaderValue, bool)> {
        if self.any_origin && !self.credentials {
            return Some((HeaderValue::from_static("*"), false));
        }
        let o = origin.to_str().ok()?.to_ascii_lowercase();
        let o = o.trim_end_matches('/');
        self.origins
            .iter()
            .any(|x| x == o)
            .then(|| (origin.clone(), true))
    }

    fn origin_headers(&self, origin: &HeaderValue, h: &mut HeaderMap) -> bool {
        let Some((allow, echoed)) = self.allow_origin(origin) else {
            return false;
        };
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if echoed && !vary_has_origin(h) {
            h.append(header::VARY, HeaderValue::from_static("Origin"));
        }
        true
    }
}

fn vary_has_origin(h: &HeaderMap) -> bool {
    h.get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("origin") || t.trim() == "*")
}

/// The API's policy, once a stage matched.
fn policy(ctx: &RequestCtx) -> Option<&CorsPolicy> {
    ctx.api().and_then(|a| a.cors.as_ref())
}

/// True for a CORS preflight request.
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Answers a preflight for an API with a policy, unless the matched route is an explicit
/// `OPTIONS` method. `resource_exists`: routing found the resource (any method).
pub fn preflight(
    ctx: &RequestCtx,
    headers: &HeaderMap,
    resource_exists: bool,
) -> Option<Response<ProxyBody>> {
    let p = policy(ctx)?;
    if !resource_exists || !is_preflight(&ctx.http_method, headers) {
        return None;
    }
    if ctx
        .route_config()
        .is_some_and(|r| r.http_method == "OPTIONS")
    {
        return None;
    }
    let mut resp = Response::new(ProxyBody::Empty);
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    let origin = headers
        .get(header::ORIGIN)
        .expect("checked by is_preflight");
    if p.origin_headers(origin, h) {
        let requested = |name: HeaderName| headers.get(name).cloned();
        let methods = if p.any_method {
            requested(header::ACCESS_CONTROL_REQUEST_METHOD)
        } else {
            p.allow_methods.clone()
        };
        if let Some(m) = methods {
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, m);
        }
        let allowed_headers = if p.any_header {
            requested(header::ACCESS_CONTROL_REQUEST_HEADERS)
        } else {
            p.allow_headers.clone()
        };
        if let Some(v) = allowed_headers {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        if let Some(m) = &p.max_age {
            h.insert(header::ACCESS_CONTROL_MAX_AGE, m.clone());
        }
    }
    Some(resp)
}

/// Adds the CORS headers of an actual (non-preflight) response for an allowed `origin`.
pub fn decorate(ctx: &RequestCtx, origin: Option<&HeaderValue>, resp: &mut Response<ProxyBody>) {
    let (Some(p), Some(origin)) = (policy(ctx), origin) else {
        return;
    };
    let h = resp.headers_mut();
    // Preflight answers already carry theirs.
    if h.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) && ctx.http_method == Method::OPTIONS {
        return;
    }
    if p.origin_headers(origin, h)
        && let Some(e) = &p.expose_headers
    {
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_policy(origins: &[&str], credentials: bool) -> CorsPolicy {
        CorsPolicy::build(&Cors {
            allow_origins: origins.iter().map(|s| s.to_string()).collect(),
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["content-type".into()],
            expose_headers: vec!["x-id".into()],
            max_age: Some(600),
            allow_credentials: credentials,
        })
    }

    #[test]
    fn a_wildcard_origin_answers_star_without_vary() {
        let p = mk_policy(&["*"], false);
        let mut h = HeaderMap::new();
        assert!(p.origin_headers(&HeaderValue::from_static("https://x.com"), &mut h));
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        assert!(!h.contains_key(header::VARY));
        assert!(!h.contains_key(header::ACCESS_CONTROL_ALLOW_CREDENTIALS));
    }

    #[test]
    fn listed_origins_are_echoed_with_vary_and_others_get_nothing() {
        let p = mk_policy(&["https://app.example.com"], true);
        let mut h = HeaderMap::new();
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        assert!(p.origin_headers(&HeaderValue::from_static("https://App.example.com"), &mut h));
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://App.example.com"
        );
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        let vary: Vec<_> = h.get_all(header::VARY).iter().collect();
        assert_eq!(vary, ["accept-encoding", "Origin"]);
        // Vary: Origin is not repeated.
        assert!(p.origin_headers(&HeaderValue::from_static("https://app.example.com"), &mut h));
        assert_eq!(h.get_all(header::VARY).iter().count(), 2);

        let mut h = HeaderMap::new();
        assert!(!p.origin_headers(&HeaderValue::from_static("https://evil.com"), &mut h));
        assert!(h.is_empty());
    }

    #[test]
    fn preflight_requests_need_origin_and_a_requested_method() {
        let mut h = HeaderMap::new();
        assert!(!is_preflight(&Method::OPTIONS, &h));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://a.com"));
        assert!(!is_preflight(&Method::OPTIONS, &h));
        h.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("PUT"),
        );
        assert!(is_preflight(&Method::OPTIONS, &h));
        assert!(!is_preflight(&Method::GET, &h));
    }
}
