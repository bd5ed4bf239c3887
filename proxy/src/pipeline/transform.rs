//! Transform phase: the integration request and integration response of non-proxy
//! integrations (`HTTP`, `MOCK`) whose route has a [`Transform`]. Routes without one
//! (`HTTP_PROXY`, plain `HTTP`/`MOCK`) never enter this module: they stay streamed.
//!
//! [`request`] runs after the payload cap and before the integration. It buffers the body
//! (already bounded by the cap), selects the request template by Content-Type (default
//! `application/json`, as AWS), applies the passthrough behaviour (415
//! UNSUPPORTED_MEDIA_TYPE), renders the template, evaluates the parameter mappings
//! (`integration.request.{header,querystring,path}.*`) and `$context.requestOverride.*`.
//! Only mapped headers and query parameters reach the backend, as on AWS. For MOCK, the
//! rendered `{"statusCode": N}` picks the status.
//!
//! [`response`] runs after the integration. With no integration responses the backend
//! response passes through unchanged. Otherwise it selects the response whose
//! `selectionPattern` matches the whole status code (else the default one; none: 500),
//! checks the method response is declared (else 500, as AWS), buffers the backend body (at
//! most [`RESPONSE_CAP`]), renders the response template chosen by `Accept`, maps
//! `method.response.header.*` and applies `$context.responseOverride.*`.
//!
//! `contentHandling` (request and per integration response): `CONVERT_TO_TEXT` turns a
//! binary payload (its Content-Type matches the API's `binaryMediaTypes`) into base64 before
//! the template; `CONVERT_TO_BINARY` decodes the base64 text after it.
//!
//! Short-circuits: `UnsupportedMediaType` (passthrough), `BadRequestBody` (the template read
//! a malformed JSON payload), `ApiConfigurationError` (render error, no matching or
//! undeclared response), `IntegrationFailure` (backend body over the cap).
//! Templates were parsed once when the `Runtime` was built ([`CompiledTransform::build`]).

use super::ctx::RequestCtx;
use super::ctx::query_pairs;
use super::error::GatewayError;
use crate::body::ProxyBody;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use portico_config::{
    ContentHandling, MappingSource, MappingTarget, Passthrough, Transform, is_binary_media_type,
};
use portico_vtl::{RequestData, Template, VtlError};
use regex::Regex;
use std::collections::{BTreeMap, BTreeSet};

/// Largest backend body buffered for an integration response (AWS's payload limit).
pub const RESPONSE_CAP: usize = 10 * 1024 * 1024;

/// A route's [`Transform`] with its templates parsed and patterns compiled.
#[derive(Debug)]
pub struct CompiledTransform {
    content_handling: Option<ContentHandling>,
    request_params: Vec<(MappingTarget, MappingSource)>,
    request_templates: Vec<(String, Template)>,
    passthrough: Passthrough,
    responses: Vec<CompiledResponse>,
    method_responses: BTreeSet<u16>,
}

#[derive(Debug)]
struct CompiledResponse {
    content_handling: Option<ContentHandling>,
    pattern: Option<Regex>,
    status: StatusCode,
    params: Vec<(HeaderName, MappingSource)>,
    templates: Vec<(String, Template)>,
}

fn parse_templates(
    what: &str,
    m: &BTreeMap<String, String>,
) -> Result<Vec<(String, Template)>, String> {
    m.iter()
        .map(|(ct, src)| {
            Template::parse(src)
                .map(|t| (ct.to_ascii_lowercase(), t))
                .map_err(|e| format!("{what} template {ct:?}: {e}"))
        })
        .collect()
}

impl CompiledTransform {
    /// Parses the templates and patterns of `t`; an error makes the route fail closed.
    pub fn build(t: &Transform) -> Result<CompiledTransform, String> {
        let request_params = t
            .request_parameters
            .iter()
            .map(|(k, v)| Ok((MappingTarget::parse(k)?, MappingSource::parse(v)?)))
            .collect::<Result<_, String>>()?;
        let mut responses = Vec::new();
        for r in &t.integration_responses {
            let pattern = r
                .selection_pattern
                .as_deref()
                .filter(|p| !p.is_empty())
                .map(|p| {
                    Regex::new(&format!("^(?:{p})$"))
                        .map_err(|e| format!("selectionPattern {p:?}: {e}"))
                })
                .transpose()?;
            let mut params = Vec::new();
            for (k, v) in &r.response_parameters {
                let MappingTarget::ResponseHeader(h) = MappingTarget::parse(k)? else {
                    return Err(format!("{k:?} is not method.response.header.<name>"));
                };
                let name = HeaderName::from_bytes(h.as_bytes())
                    .map_err(|e| format!("response header {h:?}: {e}"))?;
                params.push((name, MappingSource::parse(v)?));
            }
            responses.push(CompiledResponse {
                content_handling: r.content_handling,
                pattern,
                status: StatusCode::from_u16(r.status_code)
                    .map_err(|e| format!("status {}: {e}", r.status_code))?,
                params,
                templates: parse_templates("response", &r.response_templates)?,
            });
        }
        Ok(CompiledTransform {
            content_handling: t.content_handling,
            request_params,
            request_templates: parse_templates("request", &t.request_templates)?,
            passthrough: t.passthrough,
            responses,
            method_responses: t.method_responses.iter().map(|m| m.status_code).collect(),
        })
    }
}

/// The integration request after mapping.
#[derive(Debug)]
pub struct Mapped {
    /// Headers for the backend (mapped ones and Content-Type only).
    pub headers: HeaderMap,
    /// Query parameters for the backend, in order.
    pub query: Vec<(String, String)>,
    /// Path parameter values replacing the method's (`integration.request.path.*`).
    pub path: BTreeMap<String, String>,
    /// The body for the backend.
    pub body: Bytes,
    /// MOCK: the status the request template picked (`None`: the configured one).
    pub mock_status: Option<u16>,
    /// The method request as templates see it (reused by the integration response).
    pub data: RequestData,
}

/// Maps a VTL error to the gateway response AWS gives.
fn vtl_error(e: VtlError, what: &str) -> GatewayError {
    if e.status_code() == 400 {
        GatewayError::BadRequestBody
    } else {
        GatewayError::ApiConfigurationError(format!("{what} template: {e}"))
    }
}

/// The media type of a Content-Type (lower case, no parameters).
fn media_type(v: &str) -> String {
    v.split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Decoded query parameters of the request (the first value of each name).
fn query_params(query: Option<&str>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in query_pairs(query.unwrap_or_default()) {
        out.entry(k).or_insert(v);
    }
    out
}

/// The method request's headers (values of a repeated header joined with `,`).
fn header_map(h: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in h {
        let v = String::from_utf8_lossy(v.as_bytes());
        out.entry(k.as_str().to_string())
            .and_modify(|e| {
                e.push(',');
                e.push_str(&v);
            })
            .or_insert_with(|| v.into_owned());
    }
    out
}

/// The value of a mapping source; `None` when the request has none (the mapping is
/// skipped, as on AWS).
fn source_value(
    src: &MappingSource,
    data: &RequestData,
    backend: Option<(&HeaderMap, &str)>,
) -> Option<String> {
    match src {
        MappingSource::Literal(s) => Some(s.clone()),
        MappingSource::MethodPath(n) => data.path_params.get(n).cloned(),
        MappingSource::MethodQuery(n) => data.query_params.get(n).cloned(),
        MappingSource::MethodHeader(n) => data
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone()),
        MappingSource::StageVariable(n) => data.stage_variables.get(n).cloned(),
        MappingSource::Context(path) => {
            let mut parts = path.split('.');
            let mut cur = data.context.get(parts.next()?)?;
            for p in parts {
                cur = cur.get(p)?;
            }
            match cur {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            }
        }
        MappingSource::IntegrationHeader(n) => backend?
            .0
            .get(n.as_str())
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        MappingSource::IntegrationBody => backend.map(|(_, b)| b.to_string()),
    }
}

fn insert_header(
    h: &mut HeaderMap,
    name: &str,
    value: &str,
    append: bool,
) -> Result<(), GatewayError> {
    let bad =
        |e: String| GatewayError::ApiConfigurationError(format!("mapped header {name:?}: {e}"));
    let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let v = HeaderValue::from_str(value).map_err(|e| bad(e.to_string()))?;
    if append {
        h.append(n, v);
    } else {
        h.insert(n, v);
    }
    Ok(())
}

/// Runs the integration request of `t` on the method request (`parts`, `body`).
pub async fn request(
    ctx: &RequestCtx,
    t: &CompiledTransform,
    headers: &HeaderMap,
    body: ProxyBody,
    max: u64,
    budget: &std::sync::Arc<crate::buffer::BufferBudget>,
    is_mock: bool,
) -> Result<Mapped, GatewayError> {
    let binary_types = ctx
        .api_config()
        .map_or(&[][..], |a| a.binary_media_types.as_slice());
    let body = crate::buffer::collect(body, None, max, budget).await?;
    // CONVERT_TO_TEXT: a binary payload becomes base64 before the template sees it.
    let is_binary = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| is_binary_media_type(binary_types, ct));
    let body = if is_binary && t.content_handling == Some(ContentHandling::ConvertToText) {
        Bytes::from(BASE64.encode(&body))
    } else {
        body
    };
    let data = RequestData {
        body: String::from_utf8_lossy(&body).into_owned(),
        path_params: ctx
            .path_parameters()
            .map(|(k, v)| (k.to_string(), v.into_owned()))
            .collect(),
        query_params: query_params(ctx.uri.query()),
        headers: header_map(headers),
        context: crate::context::json(ctx),
        stage_variables: ctx.stage_variables().cloned().unwrap_or_default(),
    };

    // Template selection and passthrough (AWS: a request without Content-Type is JSON).
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| "application/json".to_string(), media_type);
    // A WebSocket message: the template its route's templateSelectionExpression chose,
    // compiled under `$default` (AWS's WebSocket template selection, not by content type).
    let find = |key: &str| {
        t.request_templates
            .iter()
            .find(|(ct, _)| *ct == key)
            .map(|(_, tpl)| tpl)
    };
    let template = match &ctx.websocket {
        // The key the message selected, else `$default`'s.
        Some(w) => w
            .template_key
            .as_deref()
            .and_then(find)
            .or_else(|| find("$default")),
        None => find(&content_type),
    };
    if template.is_none() {
        let refuse = match t.passthrough {
            Passthrough::WhenNoMatch => false,
            Passthrough::WhenNoTemplates => !t.request_templates.is_empty(),
            Passthrough::Never => true,
        };
        if refuse {
            return Err(GatewayError::UnsupportedMediaType);
        }
    }

    let mut out = Mapped {
        headers: HeaderMap::new(),
        query: Vec::new(),
        path: BTreeMap::new(),
        body: body.clone(),
        mock_status: None,
        data,
    };
    let mut overrides = portico_vtl::Overrides::default();
    let mut sent_type = headers.get(header::CONTENT_TYPE).cloned();
    if let Some(tpl) = template {
        let rendered = tpl.render(&out.data).map_err(|e| vtl_error(e, "request"))?;
        out.body = Bytes::from(rendered.body);
        overrides = rendered.overrides;
        sent_type = HeaderValue::from_str(&content_type).ok();
    }
    if is_mock && template.is_some() {
        out.mock_status = Some(mock_status(&out.body)?);
    }
    if t.content_handling == Some(ContentHandling::ConvertToBinary) {
        out.body = decode_base64(&out.body).ok_or(GatewayError::BadRequestBody)?;
    }
    if let Some(ct) = sent_type
        && !out.body.is_empty()
    {
        out.headers.insert(header::CONTENT_TYPE, ct);
    }

    for (target, src) in &t.request_params {
        let Some(v) = source_value(src, &out.data, None) else {
            continue;
        };
        match target {
            MappingTarget::RequestHeader(n) => insert_header(&mut out.headers, n, &v, false)?,
            MappingTarget::RequestQuery(n) => out.query.push((n.clone(), v)),
            MappingTarget::RequestPath(n) => {
                out.path.insert(n.clone(), v);
            }
            MappingTarget::ResponseHeader(_) => {}
        }
    }
    for (n, vs) in &overrides.request_headers {
        for (i, v) in vs.iter().enumerate() {
            insert_header(&mut out.headers, n, v, i > 0)?;
        }
    }
    for (n, vs) in &overrides.request_querystring {
        out.query.retain(|(k, _)| k != n);
        out.query.extend(vs.iter().map(|v| (n.clone(), v.clone())));
    }
    out.path.extend(overrides.request_path);
    Ok(out)
}

/// Decodes base64 text (surrounding whitespace ignored).
fn decode_base64(b: &[u8]) -> Option<Bytes> {
    BASE64.decode(b.trim_ascii()).ok().map(Bytes::from)
}

/// The status a MOCK request template picked: `{"statusCode": N}`.
fn mock_status(body: &[u8]) -> Result<u16, GatewayError> {
    let bad =
        |m: String| GatewayError::ApiConfigurationError(format!("MOCK request template: {m}"));
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("output is not JSON with a statusCode: {e}")))?;
    let code = v
        .get("statusCode")
        .and_then(|c| {
            c.as_u64()
                .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
        })
        .ok_or_else(|| bad("output has no numeric statusCode".into()))?;
    u16::try_from(code)
        .ok()
        .filter(|c| (100..=599).contains(c))
        .ok_or_else(|| bad(format!("statusCode {code} is outside 100..599")))
}

/// Picks the response template for the request's `Accept` (else `application/json`, else
/// the first).
fn pick_template<'a>(
    templates: &'a [(String, Template)],
    accept: Option<&str>,
) -> Option<&'a (String, Template)> {
    let accepted = accept
        .unwrap_or_default()
        .split(',')
        .map(media_type)
        .find_map(|a| templates.iter().find(|(ct, _)| *ct == a));
    accepted
        .or_else(|| templates.iter().find(|(ct, _)| ct == "application/json"))
        .or_else(|| templates.first())
}

/// Runs the integration response of `t` on the backend (or MOCK) response.
pub async fn response(
    t: &CompiledTransform,
    binary_types: &[String],
    data: &mut RequestData,
    resp: Response<ProxyBody>,
) -> Result<Response<ProxyBody>, GatewayError> {
    if t.responses.is_empty() {
        return Ok(resp);
    }
    let status = resp.status().as_u16().to_string();
    let selected = t
        .responses
        .iter()
        .find(|r| r.pattern.as_ref().is_some_and(|p| p.is_match(&status)))
        .or_else(|| t.responses.iter().find(|r| r.pattern.is_none()))
        .ok_or_else(|| {
            GatewayError::ApiConfigurationError(format!(
                "no integration response matches status {status} and there is no default"
            ))
        })?;
    if !t.method_responses.contains(&selected.status.as_u16()) {
        return Err(GatewayError::ApiConfigurationError(format!(
            "integration response selected status {} which has no method response",
            selected.status.as_u16()
        )));
    }
    let (parts, body) = resp.into_parts();
    let body = match Limited::new(body, RESPONSE_CAP).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return Err(GatewayError::IntegrationFailure(format!(
                "reading backend body for the integration response: {e}"
            )));
        }
    };
    let backend_type = parts.headers.get(header::CONTENT_TYPE).cloned();
    let body = match selected.content_handling {
        Some(ContentHandling::ConvertToText)
            if backend_type
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| is_binary_media_type(binary_types, ct)) =>
        {
            Bytes::from(BASE64.encode(&body))
        }
        _ => body,
    };
    let backend_body = String::from_utf8_lossy(&body).into_owned();

    let mut headers = HeaderMap::new();
    let mut out_status = selected.status;
    let accept = data
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("accept"))
        .map(|(_, v)| v.clone());
    let out_body = match pick_template(&selected.templates, accept.as_deref()) {
        Some((ct, tpl)) => {
            data.body = backend_body.clone();
            let rendered = tpl.render(data).map_err(|e| {
                GatewayError::ApiConfigurationError(format!("response template: {e}"))
            })?;
            if let Ok(v) = HeaderValue::from_str(ct) {
                headers.insert(header::CONTENT_TYPE, v);
            }
            for (n, vs) in &rendered.overrides.response_headers {
                for (i, v) in vs.iter().enumerate() {
                    insert_header(&mut headers, n, v, i > 0)?;
                }
            }
            if let Some(s) = rendered.overrides.response_status {
                out_status = StatusCode::from_u16(s).map_err(|e| {
                    GatewayError::ApiConfigurationError(format!("responseOverride.status: {e}"))
                })?;
            }
            Bytes::from(rendered.body)
        }
        None => {
            let ct = match selected.content_handling {
                Some(ContentHandling::ConvertToText) => None,
                _ => backend_type,
            };
            headers.insert(
                header::CONTENT_TYPE,
                ct.unwrap_or_else(|| HeaderValue::from_static("application/json")),
            );
            body
        }
    };
    let out_body = match selected.content_handling {
        Some(ContentHandling::ConvertToBinary) => decode_base64(&out_body).ok_or_else(|| {
            GatewayError::ApiConfigurationError(
                "CONVERT_TO_BINARY: the integration response is not base64".into(),
            )
        })?,
        _ => out_body,
    };
    for (name, src) in &selected.params {
        if headers.contains_key(name) && *name != header::CONTENT_TYPE {
            // responseOverride wins over the mapping.
            continue;
        }
        if let Some(v) = source_value(src, data, Some((&parts.headers, &backend_body))) {
            insert_header(&mut headers, name.as_str(), &v, false)?;
        }
    }
    let mut resp = Response::new(ProxyBody::full(out_body));
    *resp.status_mut() = out_status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_config::{IntegrationResponse, MethodResponse};

    fn transform() -> Transform {
        Transform {
            integration_responses: vec![
                IntegrationResponse {
                    selection_pattern: Some("4\\d{2}".into()),
                    status_code: 404,
                    response_parameters: [(
                        "method.response.header.x-from".to_string(),
                        "integration.response.header.x-up".to_string(),
                    )]
                    .into(),
                    response_templates: [(
                        "application/json".to_string(),
                        "{\"missing\": \"$input.path('$.id')\"}".to_string(),
                    )]
                    .into(),
                    content_handling: None,
                },
                IntegrationResponse {
                    selection_pattern: None,
                    status_code: 200,
                    response_parameters: BTreeMap::new(),
                    response_templates: BTreeMap::new(),
                    content_handling: None,
                },
                IntegrationResponse {
                    selection_pattern: Some("5\\d{2}".into()),
                    status_code: 502,
                    response_parameters: BTreeMap::new(),
                    response_templates: BTreeMap::new(),
                    content_handling: None,
                },
            ],
            method_responses: vec![
                MethodResponse {
                    status_code: 200,
                    headers: Default::default(),
                },
                MethodResponse {
                    status_code: 404,
                    headers: Default::default(),
                },
            ],
            ..Default::default()
        }
    }

    fn backend(status: u16, body: &str) -> Response<ProxyBody> {
        let mut r = Response::new(ProxyBody::full(body.to_string()));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r.headers_mut()
            .insert("x-up", HeaderValue::from_static("v"));
        r
    }

    async fn body(r: Response<ProxyBody>) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn selection_by_whole_status_code_with_default_and_undeclared() {
        let t = CompiledTransform::build(&transform()).unwrap();
        let mut data = RequestData::default();
        let r = response(&t, &[], &mut data, backend(404, r#"{"id": "7"}"#))
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["x-from"], "v");
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(body(r).await, r#"{"missing": "7"}"#);
        // 201 matches no pattern: the default (200) answers, body as is.
        let r = response(&t, &[], &mut data, backend(201, "raw"))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(body(r).await, "raw");
        // 502 has no method response: 500 as AWS.
        let e = response(&t, &[], &mut data, backend(503, ""))
            .await
            .unwrap_err();
        assert!(matches!(e, GatewayError::ApiConfigurationError(_)));
    }

    #[tokio::test]
    async fn content_handling_converts_binary_and_base64() {
        let ir = |ch, tpl: Option<&str>| Transform {
            integration_responses: vec![IntegrationResponse {
                selection_pattern: None,
                status_code: 200,
                response_parameters: BTreeMap::new(),
                response_templates: tpl
                    .map(|t| [("application/json".to_string(), t.to_string())].into())
                    .unwrap_or_default(),
                content_handling: Some(ch),
            }],
            method_responses: vec![MethodResponse {
                status_code: 200,
                headers: Default::default(),
            }],
            ..Default::default()
        };
        let binary = vec!["image/*".to_string()];
        let mut data = RequestData::default();
        // CONVERT_TO_TEXT: a binary backend body is base64 when the template sees it.
        let t = CompiledTransform::build(&ir(
            ContentHandling::ConvertToText,
            Some("{\"img\": \"$input.body\"}"),
        ))
        .unwrap();
        let mut b = backend(200, "\u{1}\u{2}hi");
        b.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
        let r = response(&t, &binary, &mut data, b).await.unwrap();
        assert_eq!(body(r).await, r#"{"img": "AQJoaQ=="}"#);
        // CONVERT_TO_BINARY: base64 text is decoded; not base64 is a 500.
        let t = CompiledTransform::build(&ir(ContentHandling::ConvertToBinary, None)).unwrap();
        let r = response(&t, &binary, &mut data, backend(200, "aGVsbG8=\n"))
            .await
            .unwrap();
        assert_eq!(body(r).await, "hello");
        assert!(
            response(&t, &binary, &mut data, backend(200, "*not base64*"))
                .await
                .is_err()
        );
    }

    #[test]
    fn mock_status_comes_from_the_template_output() {
        assert_eq!(mock_status(br#"{"statusCode": 201}"#).unwrap(), 201);
        assert_eq!(mock_status(br#"{"statusCode": "404"}"#).unwrap(), 404);
        assert!(mock_status(b"{}").is_err());
        assert!(mock_status(br#"{"statusCode": 42}"#).is_err());
    }

    #[test]
    fn templates_are_picked_by_accept_then_json() {
        let ts = vec![
            (
                "application/json".to_string(),
                Template::parse("j").unwrap(),
            ),
            ("application/xml".to_string(), Template::parse("x").unwrap()),
        ];
        let pick = |a| pick_template(&ts, a).map(|(ct, _)| ct.as_str());
        assert_eq!(
            pick(Some("text/html, application/xml;q=0.9")),
            Some("application/xml")
        );
        assert_eq!(pick(Some("text/html")), Some("application/json"));
        assert_eq!(pick(None), Some("application/json"));
    }

    #[test]
    fn query_strings_decode_and_keep_the_first_value() {
        let q = query_params(Some("a=1&b=two%20words&a=3&c=x+y&d"));
        assert_eq!(q["a"], "1");
        assert_eq!(q["b"], "two words");
        assert_eq!(q["c"], "x y");
        assert_eq!(q["d"], "");
    }
}
