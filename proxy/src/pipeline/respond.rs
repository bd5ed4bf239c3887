//! Respond phase: gateway responses for [`GatewayError`]s, and the end of every request
//! (request id header, metrics, access log).
//!
//! [`gateway_response`] is the one function that turns an error into a response: it resolves
//! the type under the API's overrides (pre-resolved per API at `Runtime` build, see
//! [`GatewayResponses`]), renders the body template (`$context.error.messageString`,
//! `$context.error.message`, `$context.requestId`, `$context.stage`,
//! `$context.error.responseType`, ...) and logs the internal detail, which is never sent.

use super::ctx::{RequestCtx, Shared};
use super::error::GatewayError;
use crate::body::ProxyBody;
use crate::template::{Mode, Template};
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::Body as _;
use portico_config::gateway_response::resolve;
use portico_config::{GatewayResponseOverride, GatewayResponseType};
use std::collections::BTreeMap;

/// `x-amzn-RequestId`, on every response.
pub const X_AMZN_REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");
/// The request id header of HTTP APIs.
pub const APIGW_REQUEST_ID: HeaderName = HeaderName::from_static("apigw-requestid");
/// `x-amzn-ErrorType`, on gateway responses.
pub const X_AMZN_ERROR_TYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");

/// One gateway response type resolved under an API's overrides.
#[derive(Debug)]
pub struct ResolvedResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Template,
}

/// Every gateway response type, resolved for one API (indexed by type).
#[derive(Debug)]
pub struct GatewayResponses(Vec<ResolvedResponse>);

impl GatewayResponses {
    /// Resolves every type under `overrides` (invalid override headers are logged and skipped).
    pub fn build(
        overrides: &BTreeMap<GatewayResponseType, GatewayResponseOverride>,
        protocol: portico_config::Protocol,
    ) -> Self {
        let all = GatewayResponseType::ALL
            .iter()
            .map(|&ty| {
                let r = resolve(ty, overrides);
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                // REST APIs name the error type; AWS's HTTP APIs send no `x-amzn-ErrorType`
                // (recorded HTTP API error responses: aws-lambda-dotnet's snapshots).
                if protocol != portico_config::Protocol::Http {
                    headers.insert(X_AMZN_ERROR_TYPE, HeaderValue::from_static(error_type(ty)));
                }
                for (k, v) in &r.headers {
                    match (
                        HeaderName::from_bytes(k.as_bytes()),
                        HeaderValue::from_str(v),
                    ) {
                        (Ok(k), Ok(v)) => {
                            headers.insert(k, v);
                        }
                        _ => {
                            tracing::warn!(header = %k, "skipping invalid gateway response header")
                        }
                    }
                }
                let status = StatusCode::from_u16(r.status).unwrap_or_else(|_| {
                    StatusCode::from_u16(ty.default_status()).expect("defaults are valid")
                });
                ResolvedResponse {
                    status,
                    headers,
                    body: Template::parse(&r.body_template),
                }
            })
            .collect();
        GatewayResponses(all)
    }

    /// The resolved response for `ty`.
    pub fn get(&self, ty: GatewayResponseType) -> &ResolvedResponse {
        // Built from ALL in declaration order, which is the enum's discriminant order.
        &self.0[ty as usize]
    }
}

/// AWS's `x-amzn-ErrorType` values. Recorded AWS answers for: MISSING_AUTHENTICATION_TOKEN
/// (brain-power/Brain-Power-Amazon-Fidgetology#29), QUOTA_EXCEEDED `LimitExceededException`
/// (massif-press/compcon#2237), REQUEST_TOO_LARGE `BadRequestException`
/// (koki-develop/lgtm-generator#10), INVALID_SIGNATURE `InvalidSignatureException`
/// (rpgreen/apigateway-generic-java-sdk#11), INTEGRATION_FAILURE (DataBiosphere/azul#3886),
/// and, validated against AWS in LocalStack's gateway-response tests, THROTTLED, UNAUTHORIZED,
/// INVALID_API_KEY, BAD_REQUEST_*, UNSUPPORTED_MEDIA_TYPE (`BadRequestException`) and
/// INTEGRATION_TIMEOUT. The others are Portico's choice (docs/manifest-spec.md).
pub fn error_type(ty: GatewayResponseType) -> &'static str {
    use GatewayResponseType as T;
    match ty {
        T::MissingAuthenticationToken => "MissingAuthenticationTokenException",
        T::AccessDenied => "AccessDeniedException",
        T::InvalidApiKey | T::WafFiltered => "ForbiddenException",
        T::Throttled => "TooManyRequestsException",
        T::QuotaExceeded => "LimitExceededException",
        T::Unauthorized => "UnauthorizedException",
        T::ResourceNotFound => "NotFoundException",
        T::RequestTooLarge
        | T::BadRequestBody
        | T::BadRequestParameters
        | T::UnsupportedMediaType
        | T::Default4xx => "BadRequestException",
        T::InvalidSignature => "InvalidSignatureException",
        T::ExpiredToken => "ForbiddenException",
        T::RequestHeaderFieldsTooLarge => "BadRequestException",
        T::IntegrationTimeout | T::IntegrationFailure => "InternalServerErrorException",
        T::AuthorizerConfigurationError => "AuthorizerConfigurationException",
        T::ApiConfigurationError | T::AuthorizerFailure | T::Default5xx => {
            "InternalServerErrorException"
        }
    }
}

/// Answers `err` with the API's gateway response (the built-in defaults when no stage matched).
pub fn gateway_response(ctx: &mut RequestCtx, err: GatewayError) -> Response<ProxyBody> {
    let ty = err.response_type();
    if ty.default_status() >= 500 {
        tracing::warn!(
            request_id = %ctx.request_id,
            response_type = ty.as_str(),
            route = ctx.route_config().map_or("-", |r| r.id.as_str()),
            error = %err,
            "gateway response"
        );
    } else {
        tracing::debug!(
            request_id = %ctx.request_id,
            response_type = ty.as_str(),
            error = %err,
            "gateway response"
        );
    }
    ctx.error = Some(ty);
    if let Some(m) = err.message() {
        ctx.error_message.get_or_insert_with(|| m.into());
    }
    let status_override = err.status_override();
    let responses = ctx
        .api()
        .map_or(&ctx.runtime.default_responses, |a| &a.responses);
    let r = responses.get(ty);
    let mut body = String::with_capacity(64);
    r.body.render(ctx, Mode::GatewayResponse, &mut body);
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = status_override.unwrap_or(r.status);
    *resp.headers_mut() = r.headers.clone();
    resp
}

/// Ends a request: `x-amzn-RequestId`, `$context.status`/`responseLength`/`responseLatency`,
/// metrics, and the access log line (the context moves to the writer).
pub fn finish(
    shared: &Shared,
    mut ctx: RequestCtx,
    mut resp: Response<ProxyBody>,
) -> Response<ProxyBody> {
    // HTTP APIs name the request id `apigw-requestid` (recorded AWS HTTP API responses:
    // aws-lambda-dotnet's test tool snapshots); REST APIs `x-amzn-RequestId`.
    let id_header = match ctx.api_config() {
        Some(a) if a.protocol == portico_config::Protocol::Http => APIGW_REQUEST_ID,
        _ => X_AMZN_REQUEST_ID,
    };
    resp.headers_mut()
        .insert(id_header, ctx.request_id.header_value());
    ctx.status = resp.status().as_u16();
    // The body's exact size is known for buffered bodies and for backend bodies with a
    // Content-Length (hyper checks it), and is cheaper than parsing the header again.
    ctx.response_length = resp
        .body()
        .size_hint()
        .exact()
        .or_else(|| super::limits::content_length(resp.headers()));
    ctx.response_latency = ctx.start.elapsed();
    ctx.runtime.metrics(ctx.handle).record(
        ctx.status,
        ctx.response_latency,
        ctx.integration_latency,
    );
    if crate::access_log::wants_line(&ctx) {
        shared.access_log.log(ctx);
    }
    resp
}
