//! Integrate phase: call the backend (HTTP_PROXY, HTTP), invoke a function (AWS_PROXY, in
//! `lambda`) or answer from config (MOCK).
//!
//! Runs last, once the route is known and the body has passed the payload cap. Reads the
//! stage route's [`CompiledIntegration`] (built per (stage, route) at `Runtime` build: stage
//! variables substituted, URI split into literal pieces and parameter slots) and the path
//! parameters; writes `integration_latency` and `integration_status`. Short-circuits with
//! `ApiConfigurationError` (fail-closed route), `IntegrationTimeout` (no response head within
//! the route's timeout) or `IntegrationFailure` (connect or protocol error).
//!
//! ```text
//!  request head --strip hop-by-hop, Host=backend, X-Forwarded-*--> pooled keep-alive client
//!  backend head --strip hop-by-hop--> response (body streamed both ways)
//! ```

use super::ctx::{ConnInfo, Exchange, Flow, RequestCtx, Shared};
use super::error::GatewayError;
use super::transform::{self, CompiledTransform};
use crate::body::ProxyBody;
use crate::hop_by_hop;
use crate::pool::{Forwarded, HostPool, Pools};
use crate::runtime::StageRoute;
use bytes::Bytes;
use http::header::HeaderName;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use portico_config::{
    BackendUri, Integration, MappingSource, MappingTarget, Route, resolve_stage_variables,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// An integration compiled for one (deployment, route). One that cannot be served is not
/// one of these: the route holds the reason instead (see [`served`]).
#[derive(Debug)]
pub enum CompiledIntegration {
    /// Forward to an HTTP endpoint (`HTTP_PROXY`, or `HTTP` without mappings).
    Http(HttpTarget),
    /// Answer from config.
    Mock(MockResponse),
    /// Invoke a function (AWS_PROXY), see `lambda`.
    Lambda(Box<super::lambda::LambdaTarget>),
    /// `HTTP` or `MOCK` with mappings: the integration request and response of
    /// `transform` around the inner call.
    Mapped(Box<Mapped>),
}

/// A route with mappings: its transform (templates parsed once per API route, shared by
/// the stages) and what it wraps.
#[derive(Debug)]
pub struct Mapped {
    /// The integration request and response.
    pub transform: Arc<CompiledTransform>,
    /// The call between them.
    pub inner: MappedCall,
}

/// What a mapped route calls.
#[derive(Debug)]
pub enum MappedCall {
    /// An HTTP endpoint, with the mapped request.
    Http(HttpTarget),
    /// A MOCK answer (a request template may pick its status).
    Mock(MockResponse),
}

/// A MOCK response, ready to clone.
#[derive(Debug)]
pub struct MockResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl MockResponse {
    /// The response, with `status` instead of the configured one when given (a MOCK request
    /// template's `statusCode`).
    pub fn response(&self, status: Option<u16>) -> Result<Response<ProxyBody>, GatewayError> {
        let mut resp = Response::new(ProxyBody::full(self.body.clone()));
        *resp.status_mut() = match status {
            None => self.status,
            Some(s) => StatusCode::from_u16(s)
                .map_err(|e| GatewayError::ApiConfigurationError(format!("MOCK status: {e}")))?,
        };
        *resp.headers_mut() = self.headers.clone();
        Ok(resp)
    }
}

/// A backend endpoint with its path split into pieces.
#[derive(Debug)]
pub struct HttpTarget {
    /// Keep-alive connections to the backend.
    pub(crate) pool: Arc<HostPool>,
    /// The Host header to send.
    pub(crate) host: HeaderValue,
    uri: BackendUri,
    /// The origin-form URI when it has no parameters (cloned, not rebuilt, per request).
    fixed: Option<Uri>,
    method: Option<Method>,
    /// `HTTP_PROXY` parameter mappings, applied to the streamed request ([`map_params`]).
    params: Vec<(MappingTarget, MappingSource)>,
}

/// Parameter names of a route's template, in order (`{proxy+}` is named `proxy`).
pub fn param_names(route: &Route) -> Vec<Arc<str>> {
    route.matcher.param_names().map(Arc::from).collect()
}

/// Compiles `route`'s integration with a deployment's stage `variables`, around the route's
/// `transform` when it has mappings (built once per API route). `Err` is why the route
/// cannot be served: it fails closed.
pub fn compile(
    route: &Route,
    variables: &BTreeMap<String, String>,
    params: &[Arc<str>],
    transform: Option<Result<Arc<CompiledTransform>, Arc<str>>>,
    pools: &Pools,
) -> Result<CompiledIntegration, Arc<str>> {
    if let Some(reason) = &route.fail_closed {
        return Err(reason.as_str().into());
    }
    let plain = compile_plain(route, variables, params, pools).map_err(Arc::<str>::from)?;
    let Some(transform) = transform else {
        return Ok(plain);
    };
    let transform = transform?;
    let inner = match plain {
        CompiledIntegration::Http(t) => MappedCall::Http(t),
        CompiledIntegration::Mock(m) => MappedCall::Mock(m),
        // compile attaches mappings to HTTP and MOCK integrations only.
        CompiledIntegration::Lambda(_) | CompiledIntegration::Mapped(_) => {
            return Err("mappings on an AWS_PROXY integration".into());
        }
    };
    Ok(CompiledIntegration::Mapped(Box::new(Mapped {
        transform,
        inner,
    })))
}

/// The integration of a route without its mappings.
fn compile_plain(
    route: &Route,
    variables: &BTreeMap<String, String>,
    params: &[Arc<str>],
    pools: &Pools,
) -> Result<CompiledIntegration, String> {
    match &route.integration {
        Integration::Mock(m) => compile_mock(m.status_code, &m.headers, &m.body),
        Integration::HttpProxy(h) | Integration::Http(h) => {
            compile_http(&h.uri, h.http_method.as_deref(), variables, params, pools).and_then(
                |mut t| {
                    t.params = h
                        .request_parameters
                        .iter()
                        .map(|(k, v)| Ok((MappingTarget::parse(k)?, MappingSource::parse(v)?)))
                        .collect::<Result<_, String>>()?;
                    Ok(CompiledIntegration::Http(t))
                },
            )
        }
        Integration::AwsProxy(l) => {
            compile_http(&l.uri, Some("POST"), variables, &[], pools).map(|http| {
                CompiledIntegration::Lambda(Box::new(super::lambda::LambdaTarget {
                    http,
                    version: l.payload_format_version,
                }))
            })
        }
    }
}

fn compile_mock(
    status: u16,
    headers: &std::collections::BTreeMap<String, String>,
    body: &str,
) -> Result<CompiledIntegration, String> {
    let status = StatusCode::from_u16(status).map_err(|e| format!("mock status {status}: {e}"))?;
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name =
            HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("mock header {k:?}: {e}"))?;
        let value =
            HeaderValue::from_str(v).map_err(|e| format!("mock header {k:?} value: {e}"))?;
        map.append(name, value);
    }
    Ok(CompiledIntegration::Mock(MockResponse {
        status,
        headers: map,
        body: Bytes::copy_from_slice(body.as_bytes()),
    }))
}

fn compile_http(
    template: &str,
    method: Option<&str>,
    vars: &BTreeMap<String, String>,
    params: &[Arc<str>],
    pools: &Pools,
) -> Result<HttpTarget, String> {
    let uri = resolve_stage_variables(template, vars)?;
    let parsed = BackendUri::parse(&uri, params)?;
    let method = method
        .map(|m| Method::from_bytes(m.as_bytes()).map_err(|e| format!("httpMethod {m:?}: {e}")))
        .transpose()?;
    let authority = parsed.authority.as_str();
    let host = HeaderValue::from_str(authority).map_err(|e| format!("host {authority:?}: {e}"))?;
    let pool = if parsed.tls {
        pools
            .host_tls(authority)
            .map_err(|e| format!("integration uri {uri:?}: {e}"))?
    } else {
        pools.host(authority)
    };
    // A URI without parameters is kept whole (cloned, not rebuilt, per request).
    let fixed = (!parsed.has_params()).then(|| {
        Uri::try_from(parsed.origin_form(|_| "", None)).expect("checked by BackendUri::parse")
    });
    Ok(HttpTarget {
        pool,
        host,
        uri: parsed,
        fixed,
        method,
        params: Vec::new(),
    })
}

impl HttpTarget {
    fn build<'a>(&self, param: &dyn Fn(usize) -> &'a str, req_query: Option<&str>) -> String {
        self.uri.origin_form(param, req_query)
    }

    /// The backend URI of a mapped integration request: path parameters from `path` (by
    /// name, percent-encoded) or else the method's, and `query` (instead of the request's)
    /// appended to the configured query.
    pub fn uri_mapped(
        &self,
        ctx: &RequestCtx,
        names: &[Arc<str>],
        path: &std::collections::BTreeMap<String, String>,
        query: &[(String, String)],
    ) -> Result<Uri, GatewayError> {
        self.uri_with(ctx, names, path, None, query)
    }

    /// [`Self::uri_mapped`], with `keep` (raw, already encoded) before the mapped query.
    fn uri_with(
        &self,
        ctx: &RequestCtx,
        names: &[Arc<str>],
        path: &std::collections::BTreeMap<String, String>,
        keep: Option<&str>,
        query: &[(String, String)],
    ) -> Result<Uri, GatewayError> {
        use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
        // RFC 3986 path segment / query component: encode what would change the structure.
        const SEGMENT: &AsciiSet = &CONTROLS
            .add(b' ')
            .add(b'"')
            .add(b'#')
            .add(b'%')
            .add(b'/')
            .add(b'<')
            .add(b'>')
            .add(b'?')
            .add(b'`')
            .add(b'{')
            .add(b'}');
        const COMPONENT: &AsciiSet = &SEGMENT.add(b'&').add(b'=').add(b'+');
        let encoded: Vec<Option<String>> = names
            .iter()
            .map(|n| {
                path.get(&**n)
                    .map(|v| utf8_percent_encode(v, SEGMENT).to_string())
            })
            .collect();
        let q = keep
            .into_iter()
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .chain(query.iter().map(|(k, v)| {
                format!(
                    "{}={}",
                    utf8_percent_encode(k, COMPONENT),
                    utf8_percent_encode(v, COMPONENT)
                )
            }))
            .collect::<Vec<_>>()
            .join("&");
        let s = self.build(
            &|i| match encoded.get(i) {
                Some(Some(v)) => v.as_str(),
                _ => ctx.param(i),
            },
            Some(q.as_str()),
        );
        Uri::try_from(s).map_err(|e| GatewayError::Default4xx(format!("backend uri: {e}")))
    }

    /// The whole origin-form URI when the target has no parameter slots.
    pub(crate) fn fixed_uri(&self) -> Option<&Uri> {
        self.fixed.as_ref()
    }

    /// The backend URI (origin form) for this request: parameters substituted, the request's query
    /// appended to the configured one.
    pub fn uri(&self, ctx: &RequestCtx) -> Result<Uri, GatewayError> {
        let query = ctx.uri.query().filter(|q| !q.is_empty());
        if let (Some(fixed), None) = (&self.fixed, query) {
            return Ok(fixed.clone());
        }
        let s = self.build(&|i| ctx.param(i), query);
        Uri::try_from(s).map_err(|e| GatewayError::Default4xx(format!("backend uri: {e}")))
    }
}

/// The client's protocol as `X-Forwarded-Proto` says it (the gateway listens on plain HTTP).
pub(crate) const FORWARDED_PROTO: HeaderValue = HeaderValue::from_static("http");

/// The integration of a matched route, or the refusal (500 API_CONFIGURATION_ERROR, the
/// reason logged, never sent) when it cannot be served as configured. The one place that
/// decides fail-closed: [`check_served`] asks it before any authorizer, key or limit runs,
/// and [`call`] gets the integration from it.
pub fn served(route: &StageRoute) -> Result<&CompiledIntegration, GatewayError> {
    route
        .integration
        .as_ref()
        .map_err(|reason| GatewayError::ApiConfigurationError(reason.to_string()))
}

/// The fail-closed phase: refuses a matched route that cannot be served (see [`served`]).
pub fn check_served(ex: &mut Exchange<'_>) -> Result<Flow, GatewayError> {
    if let Some(route) = ex.ctx.stage_route() {
        served(route)?;
    }
    Ok(Flow::Continue)
}

/// The integration phase, last: the one dispatch on the matched route's integration. It
/// consumes the exchange (head and body) and gives the response.
pub async fn call(ex: Exchange<'_>) -> Result<Response<ProxyBody>, GatewayError> {
    let Exchange {
        shared,
        conn,
        ctx,
        head: mut parts,
        body,
    } = ex;
    let runtime = ctx.runtime.clone();
    let route = ctx
        .handle
        .and_then(|h| runtime.stage_route(h))
        .expect("integrate runs after a route matched");
    let target = match served(route)? {
        CompiledIntegration::Mock(m) => return m.response(None),
        CompiledIntegration::Lambda(l) => {
            // Boxed, as the mapped call below: only the pass-through stays inline, so the
            // request's future (held per connection by hyper) stays small.
            return Box::pin(super::lambda::call(
                shared,
                conn,
                ctx,
                l,
                route.timeout,
                parts,
                body,
            ))
            .await;
        }
        CompiledIntegration::Mapped(m) => {
            return Box::pin(call_mapped(shared, conn, ctx, route, m, parts, body)).await;
        }
        CompiledIntegration::Http(t) => t,
    };
    parts.uri = if target.params.is_empty() {
        target.uri(ctx)?
    } else {
        let uri = map_params(ctx, target, &route.param_names, &mut parts.headers)?;
        // A mapping may name a hop-by-hop header; the client's went as the request entered.
        hop_by_hop::strip(&mut parts.headers);
        uri
    };
    forward(shared, conn, ctx, target, route.timeout, parts, body).await
}

/// A route with mappings: the integration request (parameters, request template,
/// passthrough: 400/415/500) after the cap and validation (the body it buffers is bounded by
/// the cap) and before the backend sees anything, then the inner call (HTTP or MOCK), then
/// the integration response (selection, parameters, template, method response: 500).
async fn call_mapped(
    shared: &Shared,
    conn: &ConnInfo,
    ctx: &mut RequestCtx,
    route: &StageRoute,
    m: &Mapped,
    parts: Parts,
    body: ProxyBody,
) -> Result<Response<ProxyBody>, GatewayError> {
    let runtime = ctx.runtime.clone();
    let api = ctx.deployment().map(|d| d.api).expect("a route matched");
    let api = &runtime.config.apis[api];
    let binary_types = &api.binary_media_types;
    let max = api.max_payload_bytes;
    let is_mock = matches!(m.inner, MappedCall::Mock(_));
    let t = &*m.transform;
    let mut mapped =
        transform::request(ctx, t, &parts.headers, body, max, &shared.buffers, is_mock).await?;
    let resp = match &m.inner {
        MappedCall::Http(target) => {
            let mut parts = parts;
            parts.uri = target.uri_mapped(ctx, &route.param_names, &mapped.path, &mapped.query)?;
            parts.headers = std::mem::take(&mut mapped.headers);
            // A mapping may name a hop-by-hop header.
            hop_by_hop::strip(&mut parts.headers);
            let body = ProxyBody::full(std::mem::take(&mut mapped.body));
            forward(shared, conn, ctx, target, route.timeout, parts, body).await?
        }
        MappedCall::Mock(m) => m.response(mapped.mock_status)?,
    };
    transform::response(t, binary_types, &mut mapped.data, resp).await
}

/// Applies an `HTTP_PROXY` route's parameter mappings to the streamed request: mapped headers
/// replace the client's of that name, mapped query parameters replace the client's of that
/// name, mapped path parameters replace the method's in the integration uri. A source the
/// request does not have skips its mapping (as on AWS), but a mapped header or query name
/// never carries the client's value: `x-user-id: context.authorizer.claims.sub` cannot be
/// spoofed with a token that lacks `sub`. Returns the backend URI.
fn map_params(
    ctx: &RequestCtx,
    target: &HttpTarget,
    names: &[Arc<str>],
    headers: &mut HeaderMap,
) -> Result<Uri, GatewayError> {
    let mut path = std::collections::BTreeMap::new();
    let mut query = Vec::new();
    let mut header_values = Vec::new();
    for (to, from) in &target.params {
        let v = proxy_source(ctx, headers, from);
        if let (MappingTarget::RequestHeader(n), None) = (to, &v) {
            header_values.push((n, None));
        }
        let Some(v) = v else {
            continue;
        };
        match to {
            MappingTarget::RequestHeader(n) => header_values.push((n, Some(v))),
            MappingTarget::RequestQuery(n) => query.push((n.clone(), v)),
            MappingTarget::RequestPath(n) => {
                path.insert(n.clone(), v);
            }
            // Refused by compile for request mappings.
            MappingTarget::ResponseHeader(_) => {}
        }
    }
    for (n, v) in header_values {
        let bad =
            |e: String| GatewayError::ApiConfigurationError(format!("mapped header {n:?}: {e}"));
        let name = HeaderName::from_bytes(n.as_bytes()).map_err(|e| bad(e.to_string()))?;
        match v {
            Some(v) => {
                let value = HeaderValue::from_str(&v).map_err(|e| bad(e.to_string()))?;
                headers.insert(name, value);
            }
            None => {
                headers.remove(name);
            }
        }
    }
    let query_names: Vec<&str> = target
        .params
        .iter()
        .filter_map(|(t, _)| match t {
            MappingTarget::RequestQuery(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    if path.is_empty() && query_names.is_empty() {
        return target.uri(ctx);
    }
    // The client's query, less the names a mapping owns.
    let keep = ctx.uri.query().map(|q| {
        q.split('&')
            .filter(|pair| {
                let k = pair.split_once('=').map_or(*pair, |(k, _)| k);
                let k = percent_encoding::percent_decode_str(k).decode_utf8_lossy();
                !query_names.contains(&&*k)
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    target.uri_with(ctx, names, &path, keep.as_deref(), &query)
}

/// The value of a request mapping's source on a streamed request (no body).
fn proxy_source(ctx: &RequestCtx, headers: &HeaderMap, src: &MappingSource) -> Option<String> {
    match src {
        MappingSource::Literal(s) => Some(s.clone()),
        MappingSource::MethodPath(n) => ctx
            .path_parameters()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.into_owned()),
        MappingSource::MethodQuery(n) => super::ctx::query_pairs(ctx.uri.query()?)
            .into_iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v),
        MappingSource::MethodHeader(n) => {
            let mut all = headers.get_all(n.as_str()).iter().peekable();
            all.peek()?;
            Some(
                all.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .collect::<Vec<_>>()
                    .join(","),
            )
        }
        MappingSource::StageVariable(n) => ctx.stage_variables()?.get(n).cloned(),
        MappingSource::Context(name) => crate::context::value(ctx, name),
        // Response mappings only (refused by compile for requests).
        MappingSource::IntegrationHeader(_) | MappingSource::IntegrationBody => None,
    }
}

/// Sends the request (`parts.uri` already set to the backend's origin form; hop-by-hop headers
/// already stripped, the client's as it entered, mapped ones after mapping) to `target`:
/// Host and `X-Forwarded-*` set (written by the pool's head
/// encoder: [`Forwarded`]), the response head awaited within `timeout`.
pub async fn forward(
    shared: &Shared,
    conn: &ConnInfo,
    ctx: &mut RequestCtx,
    target: &HttpTarget,
    timeout: std::time::Duration,
    mut parts: Parts,
    body: ProxyBody,
) -> Result<Response<ProxyBody>, GatewayError> {
    if let Some(m) = &target.method {
        parts.method = m.clone();
    }
    parts.version = Version::HTTP_11;
    parts.extensions.clear();
    let fwd = Forwarded {
        host: &target.host,
        client_ip: &conn.source_ip_header,
        proto: &FORWARDED_PROTO,
        port: &shared.forwarded_port,
        trace: ctx.trace_id.as_bytes(),
    };

    let started = Instant::now();
    let sent = conn
        .timer
        .timeout(
            timeout,
            target
                .pool
                .send(Request::from_parts(parts, body), Some(fwd)),
        )
        .await;
    ctx.integration_latency = Some(started.elapsed());
    let resp = match sent {
        Err(_) => return Err(GatewayError::IntegrationTimeout(timeout)),
        // The client's body failed (too slow: 408) while it was being sent.
        Ok(Err(crate::pool::SendError::Body(e))) => return Err(GatewayError::from_body_error(&*e)),
        Ok(Err(e)) => return Err(GatewayError::IntegrationFailure(error_chain(&e))),
        Ok(Ok(resp)) => resp,
    };
    ctx.integration_status = Some(resp.status().as_u16());
    // The client's connection has its own version; an HTTP/1.0 backend must not downgrade it
    // (hyper would then close the client's keep-alive connection after every response). The
    // backend's hop-by-hop headers are already gone (the pool drops them as it parses).
    let mut resp = resp;
    *resp.version_mut() = Version::HTTP_11;
    Ok(resp)
}

/// `error: cause: cause` for logs (a cause the message already ends with is not repeated).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let cause = c.to_string();
        if !s.ends_with(&cause) {
            s.push_str(": ");
            s.push_str(&cause);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::route::tests::mk_route;
    use portico_config::HttpIntegration;

    fn http_route(path: &str, uri: &str) -> Route {
        let mut r = mk_route("GET", path);
        r.integration = Integration::HttpProxy(HttpIntegration {
            uri: uri.into(),
            http_method: None,
            request_parameters: Default::default(),
        });
        r
    }

    fn target(path: &str, uri: &str, vars: &[(&str, &str)]) -> Result<HttpTarget, Arc<str>> {
        let route = http_route(path, uri);
        let variables = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match compile(
            &route,
            &variables,
            &param_names(&route),
            None,
            &Pools::default(),
        )? {
            CompiledIntegration::Http(t) => Ok(t),
            other => panic!("an HTTP_PROXY route compiled to {other:?}"),
        }
    }

    #[test]
    fn error_chains_do_not_repeat_a_cause_the_message_already_gives() {
        let io = || std::io::Error::new(std::io::ErrorKind::BrokenPipe, "Broken pipe");
        assert_eq!(
            error_chain(&crate::pool::SendError::Io(io())),
            "backend connection: Broken pipe"
        );
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        assert_eq!(error_chain(&Outer(io())), "outer: Broken pipe");
    }

    #[test]
    fn stage_variables_are_substituted_at_build_time() {
        let t = target(
            "/a",
            "http://${stageVariables.backend}/v1/a",
            &[("backend", "10.0.0.1:9000")],
        )
        .unwrap();
        assert_eq!(t.fixed.as_ref().unwrap().to_string(), "/v1/a");
        assert_eq!(t.host.to_str().unwrap(), "10.0.0.1:9000");
        let err = target("/a", "http://${stageVariables.nope}/a", &[]).unwrap_err();
        assert!(err.contains("\"nope\" is not defined"), "{err}");
    }

    #[test]
    fn uri_pieces_take_params_and_greedy_values() {
        let t = target(
            "/items/{id}/{proxy+}",
            "http://b:1/x/{id}/y/{proxy}?v=1",
            &[],
        )
        .unwrap();
        assert!(t.fixed.is_none());
        let vals = ["a%2Fb", "c/d%20e"];
        assert_eq!(
            t.build(&|i| vals[i], Some("q=2")),
            "/x/a%2Fb/y/c/d%20e?v=1&q=2"
        );
        assert_eq!(t.build(&|i| vals[i], None), "/x/a%2Fb/y/c/d%20e?v=1");
        let t = target("/items/{id}", "http://b:1", &[]).unwrap();
        assert_eq!(t.build(&|_| "z", Some("q")), "/?q");
    }

    #[test]
    fn bad_integration_uris_fail_closed() {
        assert!(target("/a", "https://b/a", &[]).is_ok());
        assert!(
            target("/a", "ftp://b/a", &[])
                .unwrap_err()
                .contains("scheme")
        );
        assert!(target("/a", "b/a", &[]).unwrap_err().contains("no scheme"));
        assert!(
            target("/a", "http://b/{id}", &[])
                .unwrap_err()
                .contains("unknown path parameter")
        );
        assert!(
            target("/a", "http:///a", &[])
                .unwrap_err()
                .contains("invalid host")
        );
    }
}
