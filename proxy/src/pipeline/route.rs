//! Route phase: request path and host -> stage -> route (+ path parameters).
//!
//! Runs first. Reads the request's path and `Host`; writes `ctx.handle` (stage, deployment,
//! route) and the path parameters. Short-circuits with `MissingAuthenticationToken` (REST: no stage, no
//! resource, or no method on the resource) or `ResourceNotFound` (HTTP APIs).
//!
//! Everything here is a pure function over tables built once per `Runtime`:
//!
//! ```text
//!  raw path --normalise_path--> canonical path --StageTable::select(host)--> (stage, rest)
//!                                                  rest --RouteTable::find(method)--> route + params
//! ```
//!
//! The canonical path: percent-escapes of characters that may appear raw in a segment are
//! decoded (`%41` -> `A`, `%2e` -> `.`), everything else stays or becomes an upper-case escape
//! (`%2F` stays `%2F`, so a decoded `/` never creates a segment), `.`/`..` segments are
//! resolved (`..` above the root stays at the root), empty segments (`//`, a trailing `/`)
//! are dropped. Literal segments compare on this form; parameter values are kept in it, which
//! is already a valid encoded segment for the backend URI.

use super::ctx::RequestCtx;
use super::error::GatewayError;
use crate::runtime::RouteHandle;
use http::Method;
use portico_config::{Api, Protocol, RouteMatch, Segment, Stage};
use std::borrow::Cow;
use std::collections::HashMap;

/// True for bytes allowed raw in a path segment (RFC 3986 `pchar` less `%`).
const fn is_pchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

/// Canonical form of a request path (see the module header). Borrows when the path already
/// is canonical, which is the common case.
pub fn normalise_path(raw: &str) -> Cow<'_, str> {
    if is_canonical(raw) {
        return Cow::Borrowed(raw);
    }
    // A single trailing slash is the only defect: slice it off without allocating.
    if let Some(trimmed) = raw.strip_suffix('/')
        && trimmed.len() > 1
        && is_canonical(trimmed)
    {
        return Cow::Borrowed(trimmed);
    }
    Cow::Owned(normalise_slow(raw))
}

/// [`is_pchar`] of every byte, for the per-request path check.
static PCHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = is_pchar(i as u8);
        i += 1;
    }
    t
};

/// `/`, or `/`-separated segments, none empty, `.` or `..`, all of raw `pchar`s.
fn is_canonical(raw: &str) -> bool {
    let Some(rest) = raw.as_bytes().strip_prefix(b"/") else {
        return false;
    };
    rest.is_empty()
        || rest.split(|&c| c == b'/').all(|seg| {
            !seg.is_empty() && seg != b"." && seg != b".." && seg.iter().all(|&c| PCHAR[c as usize])
        })
}

fn normalise_slow(raw: &str) -> String {
    let mut segs: Vec<String> = Vec::new();
    for seg in raw.split('/') {
        let c = canonical_segment(seg);
        match c.as_str() {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            _ => segs.push(c),
        }
    }
    if segs.is_empty() {
        return "/".to_string();
    }
    let mut out = String::with_capacity(raw.len());
    for s in segs {
        out.push('/');
        out.push_str(&s);
    }
    out
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 15)] as char);
}

/// One segment in canonical form (decodes once: `%252e` stays `%252e`).
fn canonical_segment(seg: &str) -> String {
    let b = seg.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2]))
        {
            let v = h << 4 | l;
            if is_pchar(v) {
                out.push(v as char);
            } else {
                push_escape(&mut out, v);
            }
            i += 3;
        } else {
            if is_pchar(c) {
                out.push(c as char);
            } else {
                push_escape(&mut out, c);
            }
            i += 1;
        }
    }
    out
}

/// Fully decodes a canonical segment (or greedy value) for `$context`/`pathParameters`.
pub fn decode_value(canonical: &str) -> Cow<'_, str> {
    percent_encoding::percent_decode_str(canonical).decode_utf8_lossy()
}

/// Why a request whose resource exists but has no method for its verb is refused.
pub const NO_METHOD: &str = "no method for this verb on the resource";

/// Routing and the CORS preflight: [`apply`], then, right after it (before validation,
/// authorization and the integration, as AWS), a preflight answer on a resource without an
/// explicit OPTIONS method, which routing reports as no method for the verb, or as an ANY
/// route. Then routing's own refusal, if any.
pub fn phase(ex: &mut super::ctx::Exchange<'_>) -> Result<super::ctx::Flow, GatewayError> {
    let ctx = &mut *ex.ctx;
    let routed = route(ctx, &ex.head.headers);
    let resource_exists = match &routed {
        Ok(()) => true,
        Err(
            GatewayError::MissingAuthenticationToken(why) | GatewayError::ResourceNotFound(why),
        ) => ctx.handle.is_some() && *why == NO_METHOD,
        Err(_) => false,
    };
    if let Some(resp) = super::cors::preflight(ctx, &ex.head.headers, resource_exists) {
        return Ok(super::ctx::Flow::Answer(Box::new(resp)));
    }
    routed.map(|()| super::ctx::Flow::Continue)
}

/// Routing: fills `ctx.handle` (the stage's primary deployment; the route when one matches),
/// `ctx.params` (and `ctx.normalised_path` when normalising changed the path).
pub fn apply(ctx: &mut RequestCtx) -> Result<(), GatewayError> {
    route(ctx, &http::HeaderMap::new())
}

/// [`apply`] with the request's headers (a canary's sticky or forced assignment reads them).
pub fn route(ctx: &mut RequestCtx, headers: &http::HeaderMap) -> Result<(), GatewayError> {
    let runtime = ctx.runtime.clone();
    let norm = normalise_path(ctx.uri.path());
    let host = ctx
        .host
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .map(normalise_host);
    let selected = runtime.stage_table.select(host.as_deref(), &norm);
    let outcome = selected.map(|(stage, rest)| {
        // With a canary: its share of requests (see `pick_deployment`), the rest the
        // primary's.
        let st = &runtime.stages[stage];
        let deployment = if st.deployments.len() > 1 {
            pick_deployment(&runtime, st, ctx, headers, rest)
        } else {
            0
        };
        let api_index = st.deployments[deployment].api;
        let api = &runtime.apis[api_index];
        let handle = RouteHandle {
            stage: stage as u32,
            deployment: deployment as u32,
            api: api_index as u32,
            route: None,
        };
        // A WebSocket API: the handshake is its `$connect` route (when it has one), whatever
        // the path; the websocket module tells the handshake from `@connections`.
        let outcome = if runtime.config.apis[api_index].protocol == Protocol::WebSocket {
            match runtime.config.apis[api_index]
                .routes
                .iter()
                .position(|r| r.route_key == "$connect")
            {
                Some(route) => RouteOutcome::Matched {
                    route,
                    params: Vec::new(),
                },
                None => RouteOutcome::WebSocket,
            }
        } else {
            api.routes.find(&ctx.http_method, rest)
        };
        (handle, api.no_route, outcome)
    });
    let base = norm.as_ptr() as usize;
    let result = match outcome {
        None => Err(GatewayError::no_route(
            runtime.no_stage,
            "no stage serves this host and path",
        )),
        Some((handle, no_route, outcome)) => {
            ctx.handle = Some(handle);
            match outcome {
                RouteOutcome::Matched { route, params } => {
                    ctx.handle = Some(RouteHandle {
                        route: Some(route as u32),
                        ..handle
                    });
                    ctx.params = params
                        .iter()
                        .map(|p| {
                            let start = p.as_ptr() as usize - base;
                            start..start + p.len()
                        })
                        .collect();
                    Ok(())
                }
                RouteOutcome::NoMethod => Err(GatewayError::no_route(no_route, NO_METHOD)),
                RouteOutcome::WebSocket => Ok(()),
                RouteOutcome::NotFound => {
                    Err(GatewayError::no_route(no_route, "no resource matches"))
                }
            }
        }
    };
    if let Cow::Owned(p) = norm {
        ctx.normalised_path = Some(p.into());
    }
    result
}

/// A uniform draw in 0..1_000_000 (millionths, the unit of `CompiledStage::canary_ppm`).
fn canary_draw() -> u32 {
    (super::ctx::next_u64() % 1_000_000) as u32
}

/// Which deployment of a stage with a canary serves the request (1: the canary):
///
/// 1. the force header (`always` / `never`), when the stage has one, and, if it requires an
///    authorizer, only when the method it reaches on that side has one (the caller must pass
///    it);
/// 2. sticky: a stable hash of the caller in 0..1_000_000 against the share, so a caller
///    stays on one side and a larger share only moves callers to the canary;
/// 3. else a draw per request, as AWS.
fn pick_deployment(
    runtime: &crate::runtime::Runtime,
    st: &crate::runtime::CompiledStage,
    ctx: &RequestCtx,
    headers: &http::HeaderMap,
    rest: &str,
) -> usize {
    if let Some(f) = &st.canary_force {
        let forced = match headers.get(f.name.as_str()).map(|v| v.as_bytes()) {
            Some(b"always") => Some(1),
            Some(b"never") => Some(0),
            _ => None,
        };
        if let Some(d) = forced {
            let api = st.deployments[d].api;
            let allowed = !f.require_authorizer
                || match runtime.apis[api].routes.find(&ctx.http_method, rest) {
                    RouteOutcome::Matched { route, .. } => runtime.config.apis[api].routes[route]
                        .authorization
                        .is_some(),
                    _ => false,
                };
            if allowed {
                return d;
            }
        }
    }
    let point = match &st.canary_sticky {
        None => canary_draw(),
        Some(by) => match sticky_key(by, ctx, headers) {
            Some(key) => (stable_hash(&key) % 1_000_000) as u32,
            // No key (no such header, cookie or API key): a draw.
            None => canary_draw(),
        },
    };
    usize::from(point < st.canary_ppm)
}

/// The caller's identity for sticky assignment.
fn sticky_key(
    by: &portico_config::CanarySticky,
    ctx: &RequestCtx,
    headers: &http::HeaderMap,
) -> Option<Vec<u8>> {
    use portico_config::CanarySticky as S;
    match by {
        S::SourceIp => Some(ctx.source_ip.to_string().into_bytes()),
        S::ApiKey => headers.get("x-api-key").map(|v| v.as_bytes().to_vec()),
        S::Header(name) => headers.get(name.as_str()).map(|v| v.as_bytes().to_vec()),
        S::Cookie(name) => headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| {
                let (k, v) = c.trim().split_once('=')?;
                (k == name).then(|| v.as_bytes().to_vec())
            }),
    }
}

/// FNV-1a, 64 bits, with its high bits folded down: the same on every replica and across
/// restarts (sticky assignment must not depend on a per-process seed).
fn stable_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^ (h >> 29)
}

/// Host header value -> lower-case host without port or trailing dot.
pub fn normalise_host(h: &str) -> Cow<'_, str> {
    let host = if let Some(rest) = h.strip_prefix('[') {
        // [v6]:port
        match rest.find(']') {
            Some(end) => &h[..end + 2],
            None => h,
        }
    } else {
        match h.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => h,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// Stage selection: host-specific stages first, then stages without hostnames; within each,
/// the longest base path that is a prefix of the path on a segment boundary.
#[derive(Debug, Default)]
pub struct StageTable {
    by_host: HashMap<Box<str>, Bases>,
    any_host: Bases,
}

/// Stages by base path (one host's, or any host's): a request's stage is found with one
/// hash lookup per segment of its path (the longest base path that is a prefix at a segment
/// boundary), not a scan of the stages, so the last of 5,000 tenants routes as fast as the
/// first.
#[derive(Debug, Default)]
struct Bases(HashMap<Box<str>, usize>);

impl Bases {
    fn insert(&mut self, base: &str, i: usize) {
        // Unique per host (the config is validated); the first stays, as a scan would find it.
        self.0.entry(base.into()).or_insert(i);
    }

    fn select<'p>(&self, path: &'p str) -> Option<(usize, &'p str)> {
        if self.0.is_empty() {
            return None;
        }
        let mut end = path.len();
        loop {
            if let Some(&i) = self.0.get(&path[..end]) {
                let rest = &path[end..];
                return Some((i, if rest.is_empty() { "/" } else { rest }));
            }
            match path[..end].rfind('/') {
                Some(p) if p > 0 => end = p,
                _ => break,
            }
        }
        self.0.get("").map(|&i| (i, path))
    }
}

impl StageTable {
    /// Builds the table over `stages` (indices into that slice).
    pub fn new(stages: &[Stage]) -> Self {
        let mut t = StageTable::default();
        for (i, s) in stages.iter().enumerate() {
            if s.hosts.is_empty() {
                t.any_host.insert(&s.base_path, i);
            } else {
                for h in &s.hosts {
                    t.by_host
                        .entry(h.as_str().into())
                        .or_default()
                        .insert(&s.base_path, i);
                }
            }
        }
        t
    }

    /// The stage serving `path` (canonical) on `host` (normalised), and the path below its
    /// base path (starting with `/`).
    pub fn select<'p>(&self, host: Option<&str>, path: &'p str) -> Option<(usize, &'p str)> {
        host.and_then(|h| self.by_host.get(h))
            .and_then(|b| b.select(path))
            .or_else(|| self.any_host.select(path))
    }
}

/// Whether `ANY` covers `m`: API Gateway's methods are DELETE, GET, HEAD, OPTIONS, PATCH,
/// POST and PUT, and `ANY` stands for them. TRACE (which echoes the request, credentials
/// included, to the caller) and CONNECT never reach a backend through `ANY`.
fn any_covers(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET
            | Method::POST
            | Method::PUT
            | Method::PATCH
            | Method::DELETE
            | Method::HEAD
            | Method::OPTIONS
    )
}

/// Methods of one resource: exact verbs, then `ANY`.
#[derive(Debug, Default)]
struct Methods {
    exact: Vec<(Method, usize)>,
    any: Option<usize>,
}

impl Methods {
    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.any.is_none()
    }

    fn pick(&self, m: &Method) -> Option<usize> {
        self.exact
            .iter()
            .find(|(k, _)| k == m)
            .map(|(_, r)| *r)
            .or(self.any.filter(|_| any_covers(m)))
    }

    fn insert(&mut self, verb: &str, route: usize) {
        if verb == "ANY" {
            self.any.get_or_insert(route);
        } else if let Ok(m) = Method::from_bytes(verb.as_bytes())
            && !self.exact.iter().any(|(k, _)| *k == m)
        {
            self.exact.push((m, route));
        }
    }
}

#[derive(Debug, Default)]
struct Node {
    /// Sorted by segment for binary search.
    literals: Vec<(Box<str>, Node)>,
    param: Option<Box<Node>>,
    greedy: Option<Box<Methods>>,
    methods: Methods,
}

impl Node {
    fn literal(&mut self, seg: &str) -> &mut Node {
        let i = match self.literals.binary_search_by(|(k, _)| (**k).cmp(seg)) {
            Ok(i) => i,
            Err(i) => {
                self.literals.insert(i, (seg.into(), Node::default()));
                i
            }
        };
        &mut self.literals[i].1
    }
}

/// The outcome of matching a path and method against one API.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteOutcome<'p> {
    /// A route (index into `api.routes`) and its parameter values in template order
    /// (canonical form; a greedy value keeps its `/`).
    Matched {
        /// Index into `Api::routes`.
        route: usize,
        /// Parameter values, in the order the template names them.
        params: Vec<&'p str>,
    },
    /// REST: the resource exists but has no method for this verb.
    NoMethod,
    /// Nothing matched.
    NotFound,
    /// A WebSocket API without a `$connect` route: the stage, no route.
    WebSocket,
}

/// Per-API resource tree, built once per `Runtime`.
#[derive(Debug)]
pub struct RouteTable {
    root: Node,
    default_route: Option<usize>,
    protocol: Protocol,
}

impl RouteTable {
    /// Builds the tree from `api.routes` (first route wins on an exact duplicate).
    pub fn build(api: &Api) -> Self {
        let mut root = Node::default();
        let mut default_route = None;
        for (i, r) in api.routes.iter().enumerate() {
            match &r.matcher {
                RouteMatch::Default => {
                    default_route.get_or_insert(i);
                }
                // WebSocket routes are picked by the connection's lifecycle or the message.
                RouteMatch::Message => {}
                RouteMatch::Path(t) => {
                    let mut node = &mut root;
                    let mut greedy = false;
                    for seg in &t.segments {
                        match seg {
                            Segment::Literal(l) => node = node.literal(l),
                            Segment::Param(_) => {
                                node = node.param.get_or_insert_with(Default::default)
                            }
                            Segment::Greedy(_) => {
                                node.greedy
                                    .get_or_insert_with(Default::default)
                                    .insert(&r.http_method, i);
                                greedy = true;
                                break;
                            }
                        }
                    }
                    if !greedy {
                        node.methods.insert(&r.http_method, i);
                    }
                }
            }
        }
        RouteTable {
            root,
            default_route,
            protocol: api.protocol,
        }
    }

    /// Finds the route for `method` on `rest` (canonical, below the base path, starting
    /// with `/`). Most specific wins: literal beats `{param}` beats `{proxy+}` at each
    /// segment, with backtracking; an exact verb beats `ANY`.
    pub fn find<'p>(&self, method: &Method, rest: &'p str) -> RouteOutcome<'p> {
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        let mut params = Vec::new();
        match self.protocol {
            Protocol::Rest => {
                match walk(&self.root, rest, &mut params, &|m: &Methods| {
                    (!m.is_empty()).then_some(m)
                }) {
                    Some(methods) => match methods.pick(method) {
                        Some(route) => RouteOutcome::Matched { route, params },
                        None => RouteOutcome::NoMethod,
                    },
                    None => RouteOutcome::NotFound,
                }
            }
            Protocol::Http | Protocol::WebSocket => {
                match walk(&self.root, rest, &mut params, &|m: &Methods| m.pick(method)) {
                    Some(route) => RouteOutcome::Matched { route, params },
                    None => match self.default_route {
                        Some(route) => RouteOutcome::Matched {
                            route,
                            params: Vec::new(),
                        },
                        None => RouteOutcome::NotFound,
                    },
                }
            }
        }
    }
}

fn walk<'a, 'p, R>(
    node: &'a Node,
    rest: &'p str,
    params: &mut Vec<&'p str>,
    accept: &impl Fn(&'a Methods) -> Option<R>,
) -> Option<R> {
    if rest.is_empty() {
        return accept(&node.methods);
    }
    let (seg, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if let Ok(i) = node.literals.binary_search_by(|(k, _)| (**k).cmp(seg))
        && let Some(r) = walk(&node.literals[i].1, tail, params, accept)
    {
        return Some(r);
    }
    if let Some(p) = &node.param {
        params.push(seg);
        if let Some(r) = walk(p, tail, params, accept) {
            return Some(r);
        }
        params.pop();
    }
    if let Some(g) = &node.greedy
        && let Some(r) = accept(g)
    {
        params.push(rest);
        return Some(r);
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use portico_config::{
        DEFAULT_TIMEOUT_MS, Integration, MockIntegration, ObjectRef, PathTemplate, Route,
    };
    use std::collections::BTreeMap;

    pub(crate) fn mk_route(verb: &str, path: &str) -> Route {
        let matcher = if path == "$default" {
            RouteMatch::Default
        } else {
            RouteMatch::Path(PathTemplate::parse(path).unwrap())
        };
        Route {
            id: format!("restapi/default/t/resource/{path}/method/{verb}"),
            resource_path: path.into(),
            route_key: if path == "$default" {
                path.into()
            } else {
                format!("{verb} {path}")
            },
            http_method: verb.into(),
            matcher,
            integration: Integration::Mock(MockIntegration {
                status_code: 200,
                headers: BTreeMap::new(),
                body: format!("{verb} {path}"),
            }),
            timeout_ms: DEFAULT_TIMEOUT_MS,
            validation: None,
            fail_closed: None,
            transform: None,
            api_key_required: false,
            authorization: None,
            cache_key_parameters: Vec::new(),
            cache_namespace: None,
            two_way: false,
            template_selection: Vec::new(),
            model_selection: Vec::new(),
        }
    }

    pub(crate) fn mk_api(protocol: Protocol, routes: &[(&str, &str)]) -> Api {
        Api {
            id: "restapi/default/t".into(),
            source: ObjectRef::new("RestApi", "default", "t"),
            name: "t".into(),
            protocol,
            routes: routes.iter().map(|(v, p)| mk_route(v, p)).collect(),
            gateway_responses: BTreeMap::new(),
            max_payload_bytes: 1024,
            binary_media_types: Vec::new(),
            minimum_compression_size: None,
            models: BTreeMap::new(),
            cors: None,
            websocket: None,
            api_key_source: Default::default(),
            authorizers: Default::default(),
        }
    }

    fn find<'p>(api: &Api, verb: &str, path: &'p str) -> Option<(String, Vec<&'p str>)> {
        let t = RouteTable::build(api);
        match t.find(&Method::from_bytes(verb.as_bytes()).unwrap(), path) {
            RouteOutcome::Matched { route, params } => {
                let r = &api.routes[route];
                Some((format!("{} {}", r.http_method, r.resource_path), params))
            }
            _ => None,
        }
    }

    #[test]
    fn literal_beats_param_beats_greedy() {
        let api = mk_api(
            Protocol::Rest,
            &[
                ("GET", "/pets/{id}"),
                ("GET", "/pets/mine"),
                ("GET", "/pets/{proxy+}"),
                ("GET", "/{proxy+}"),
            ],
        );
        assert_eq!(find(&api, "GET", "/pets/mine").unwrap().0, "GET /pets/mine");
        let (r, p) = find(&api, "GET", "/pets/7").unwrap();
        assert_eq!((r.as_str(), p), ("GET /pets/{id}", vec!["7"]));
        let (r, p) = find(&api, "GET", "/pets/7/toys/2").unwrap();
        assert_eq!((r.as_str(), p), ("GET /pets/{proxy+}", vec!["7/toys/2"]));
        let (r, p) = find(&api, "GET", "/other/x").unwrap();
        assert_eq!((r.as_str(), p), ("GET /{proxy+}", vec!["other/x"]));
        // a greedy parameter needs at least one segment
        assert_eq!(find(&api, "GET", "/"), None);
    }

    #[test]
    fn matching_backtracks_when_a_literal_branch_dead_ends() {
        let api = mk_api(Protocol::Rest, &[("GET", "/a/b/c"), ("GET", "/a/{x}/d")]);
        let (r, p) = find(&api, "GET", "/a/b/d").unwrap();
        assert_eq!((r.as_str(), p), ("GET /a/{x}/d", vec!["b"]));
    }

    #[test]
    fn exact_method_beats_any_and_rest_reports_missing_methods() {
        let api = mk_api(
            Protocol::Rest,
            &[("ANY", "/items"), ("POST", "/items"), ("POST", "/orders")],
        );
        assert_eq!(find(&api, "POST", "/items").unwrap().0, "POST /items");
        assert_eq!(find(&api, "DELETE", "/items").unwrap().0, "ANY /items");
        let t = RouteTable::build(&api);
        assert_eq!(t.find(&Method::GET, "/orders"), RouteOutcome::NoMethod);
        // ANY is API Gateway's seven methods (AWS CDK `HttpMethod`: ANY, DELETE, GET, HEAD,
        // OPTIONS, PATCH, POST, PUT), not TRACE or CONNECT (issue 9.8).
        for m in [Method::TRACE, Method::CONNECT] {
            assert_eq!(t.find(&m, "/items"), RouteOutcome::NoMethod);
        }
        assert_eq!(t.find(&Method::GET, "/nope"), RouteOutcome::NotFound);
    }

    #[test]
    fn http_apis_fall_back_to_default_and_otherwise_not_found() {
        let api = mk_api(
            Protocol::Http,
            &[("GET", "/items/{id}"), ("POST", "/items/{id}")],
        );
        let t = RouteTable::build(&api);
        assert_eq!(t.find(&Method::DELETE, "/items/1"), RouteOutcome::NotFound);
        let api = mk_api(
            Protocol::Http,
            &[("GET", "/items/{id}"), ("ANY", "$default")],
        );
        assert_eq!(find(&api, "GET", "/items/1").unwrap().0, "GET /items/{id}");
        assert_eq!(find(&api, "DELETE", "/items/1").unwrap().0, "ANY $default");
        assert_eq!(find(&api, "GET", "/").unwrap().0, "ANY $default");
    }

    #[test]
    fn paths_are_case_sensitive_and_root_matches_root() {
        let api = mk_api(Protocol::Rest, &[("GET", "/"), ("GET", "/Pets")]);
        assert_eq!(find(&api, "GET", "/").unwrap().0, "GET /");
        assert_eq!(find(&api, "GET", "/Pets").unwrap().0, "GET /Pets");
        assert_eq!(find(&api, "GET", "/pets"), None);
    }

    #[test]
    fn canonical_paths_are_recognised_without_the_slow_path() {
        for yes in ["/", "/a", "/dev/pets/1", "/a..b/.x/~u@v:w"] {
            assert!(is_canonical(yes), "{yes}");
        }
        for no in [
            "", "a", "//", "/a/", "/a//b", "/./a", "/a/..", "/a%20b", "/a b", "/é",
        ] {
            assert!(!is_canonical(no), "{no}");
        }
    }

    #[test]
    fn normalisation_resolves_dots_and_collapses_slashes() {
        assert_eq!(normalise_path("/dev/pets"), "/dev/pets");
        assert!(matches!(normalise_path("/dev/pets"), Cow::Borrowed(_)));
        assert!(matches!(normalise_path("/dev/pets/"), Cow::Borrowed(_)));
        assert_eq!(normalise_path("/dev/pets/"), "/dev/pets");
        assert_eq!(normalise_path("/"), "/");
        assert_eq!(normalise_path(""), "/");
        assert_eq!(normalise_path("//dev///pets//"), "/dev/pets");
        assert_eq!(normalise_path("/dev/public/../admin"), "/dev/admin");
        assert_eq!(normalise_path("/dev/./a/."), "/dev/a");
        assert_eq!(normalise_path("/../../admin"), "/admin");
        assert_eq!(normalise_path("/dev/public/%2e%2e/admin"), "/dev/admin");
        assert_eq!(normalise_path("/dev/public/%2E./admin"), "/dev/admin");
        assert_eq!(normalise_path("/dev/public/.%2E/%2e"), "/dev");
    }

    #[test]
    fn percent_encoding_decodes_unreserved_but_never_splits_on_encoded_slash() {
        assert_eq!(normalise_path("/dev/%70ets"), "/dev/pets");
        assert_eq!(normalise_path("/dev/a%2fb"), "/dev/a%2Fb");
        assert_eq!(normalise_path("/dev/a%2F..%2Fadmin"), "/dev/a%2F..%2Fadmin");
        assert_eq!(normalise_path("/dev/a%20b"), "/dev/a%20b");
        assert_eq!(normalise_path("/dev/%252e%252e"), "/dev/%252e%252e");
        assert_eq!(normalise_path("/dev/100%"), "/dev/100%25");
        assert_eq!(normalise_path("/dev/%zz"), "/dev/%25zz");
        assert_eq!(decode_value("a%2Fb%20c"), "a/b c");

        let api = mk_api(
            Protocol::Rest,
            &[("GET", "/files/{name}"), ("GET", "/admin")],
        );
        let p = normalise_path("/files/a%2F..%2Fadmin");
        let (r, params) = find(&api, "GET", &p).unwrap();
        assert_eq!(r, "GET /files/{name}");
        assert_eq!(params, vec!["a%2F..%2Fadmin"]);
    }

    #[test]
    fn dot_segments_cannot_escape_into_another_stage_route_unless_the_path_really_is_it() {
        let stages = vec![
            mk_stage("stage/default/dev", "/dev", &[]),
            mk_stage("stage/default/admin", "/admin", &[]),
        ];
        let t = StageTable::new(&stages);
        let api = mk_api(Protocol::Rest, &[("GET", "/public/{x}"), ("GET", "/admin")]);
        let routes = RouteTable::build(&api);
        // /dev/public/../admin is really /dev/admin: the dev stage's /admin resource.
        for raw in ["/dev/public/../admin", "/dev/public/%2e%2e/admin"] {
            let p = normalise_path(raw);
            let (s, rest) = t.select(None, &p).unwrap();
            assert_eq!((s, rest), (0, "/admin"));
            assert!(matches!(
                routes.find(&Method::GET, rest),
                RouteOutcome::Matched { route: 1, .. }
            ));
        }
        // escaping the stage's base path lands on whatever the normalised path names
        let p = normalise_path("/dev/../admin");
        assert_eq!(t.select(None, &p).unwrap(), (1, "/"));
        // an encoded slash stays inside the parameter
        let p = normalise_path("/dev/public/..%2Fadmin");
        let (_, rest) = t.select(None, &p).unwrap();
        assert_eq!(
            routes.find(&Method::GET, rest),
            RouteOutcome::Matched {
                route: 0,
                params: vec!["..%2Fadmin"]
            }
        );
    }

    /// Issue 16: the stage is found by base path with a lookup per path segment, so among
    /// 5,000 stages the last is found as the first, at segment boundaries only, the longest
    /// base path first, a host's stages before any host's.
    #[test]
    fn stages_are_found_by_base_path_among_thousands() {
        let mut stages: Vec<Stage> = (0..5000)
            .map(|i| mk_stage(&format!("stage/default/t{i}"), &format!("/t{i}"), &[]))
            .collect();
        stages.push(mk_stage("stage/default/deep", "/t7/v2", &[]));
        stages.push(mk_stage("stage/default/host", "", &["api.example.com"]));
        let t = StageTable::new(&stages);
        assert_eq!(t.select(None, "/t4999/x/y"), Some((4999, "/x/y")));
        assert_eq!(t.select(None, "/t0"), Some((0, "/")));
        assert_eq!(t.select(None, "/t12/"), Some((12, "/")));
        assert_eq!(
            t.select(None, "/t49990/x"),
            None,
            "a prefix only at a segment boundary"
        );
        assert_eq!(
            t.select(None, "/t7/v2/z"),
            Some((5000, "/z")),
            "the longest base path"
        );
        assert_eq!(t.select(None, "/t7/v3"), Some((7, "/v3")));
        assert_eq!(
            t.select(Some("api.example.com"), "/t1/x"),
            Some((5001, "/t1/x"))
        );
        assert_eq!(
            t.select(Some("other.example.com"), "/t1/x"),
            Some((1, "/x"))
        );
        assert_eq!(t.select(None, "/"), None);
    }

    pub(crate) fn mk_stage(id: &str, base: &str, hosts: &[&str]) -> Stage {
        Stage {
            id: id.into(),
            source: ObjectRef::new("Stage", "default", id),
            api_id: "restapi/default/t".into(),
            name: id.rsplit('/').next().unwrap().into(),
            base_path: base.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            variables: BTreeMap::new(),
            access_log: None,
            throttle: None,
            method_throttles: BTreeMap::new(),
            canary: None,
            cache: None,
        }
    }

    #[test]
    fn stage_selection_prefers_host_then_longest_base_path_on_segment_boundary() {
        let stages = vec![
            mk_stage("stage/a/root", "", &[]),
            mk_stage("stage/a/v1", "/v1", &[]),
            mk_stage("stage/a/v1beta", "/v1/beta", &[]),
            mk_stage("stage/a/host", "", &["api.example.com"]),
        ];
        let t = StageTable::new(&stages);
        assert_eq!(t.select(None, "/v1/x"), Some((1, "/x")));
        assert_eq!(t.select(None, "/v1"), Some((1, "/")));
        assert_eq!(t.select(None, "/v1/beta/x"), Some((2, "/x")));
        assert_eq!(t.select(None, "/v1beta"), Some((0, "/v1beta")));
        assert_eq!(
            t.select(Some("api.example.com"), "/v1/x"),
            Some((3, "/v1/x"))
        );
        assert_eq!(
            t.select(Some("other.example.com"), "/v1/x"),
            Some((1, "/x"))
        );
        let t = StageTable::new(&stages[1..2]);
        assert_eq!(t.select(None, "/v2"), None);
    }

    #[test]
    fn hosts_lose_port_case_and_trailing_dot() {
        assert_eq!(normalise_host("API.Example.com:8443"), "api.example.com");
        assert_eq!(normalise_host("api.example.com."), "api.example.com");
        assert_eq!(normalise_host("[::1]:80"), "[::1]");
        assert_eq!(normalise_host("localhost"), "localhost");
    }
}
