//! [`GatewayError`]: why the gateway answers by itself. One variant per AWS gateway response
//! type; `respond::gateway_response` is the one place that turns them into responses. The
//! payload of a variant is internal detail: logged, never sent.

use portico_config::GatewayResponseType;
use std::time::Duration;

/// An error that ends the pipeline with a gateway response.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// ACCESS_DENIED.
    #[error("access denied")]
    AccessDenied,
    /// ACCESS_DENIED by an authorizer's IAM policy, with AWS's message for an explicit Deny
    /// or for no matching Allow.
    #[error("access denied by the authorizer's policy (explicit deny: {explicit})")]
    PolicyDenied {
        /// A Deny statement matched (else: no Allow did).
        explicit: bool,
    },
    /// API_CONFIGURATION_ERROR: the method cannot be served as configured.
    #[error("API configuration error: {0}")]
    ApiConfigurationError(String),
    /// AUTHORIZER_CONFIGURATION_ERROR.
    #[error("authorizer configuration error: {0}")]
    AuthorizerConfigurationError(String),
    /// AUTHORIZER_FAILURE.
    #[error("authorizer failure: {0}")]
    AuthorizerFailure(String),
    /// BAD_REQUEST_PARAMETERS.
    #[error("bad request parameters")]
    BadRequestParameters,
    /// BAD_REQUEST_BODY.
    #[error("bad request body")]
    BadRequestBody,
    /// DEFAULT_4XX.
    #[error("client error: {0}")]
    Default4xx(String),
    /// DEFAULT_5XX.
    #[error("server error: {0}")]
    Default5xx(String),
    /// EXPIRED_TOKEN.
    #[error("expired token")]
    ExpiredToken,
    /// INTEGRATION_FAILURE: the backend could not be reached or answered unusably.
    #[error("integration failure: {0}")]
    IntegrationFailure(String),
    /// INTEGRATION_TIMEOUT: no response head within the route's timeout.
    #[error("integration timed out after {0:?}")]
    IntegrationTimeout(Duration),
    /// INVALID_API_KEY.
    #[error("invalid API key")]
    InvalidApiKey,
    /// INVALID_SIGNATURE.
    #[error("invalid signature")]
    InvalidSignature,
    /// MISSING_AUTHENTICATION_TOKEN: REST APIs' answer for an unknown route.
    #[error("no route: {0}")]
    MissingAuthenticationToken(&'static str),
    /// QUOTA_EXCEEDED.
    #[error("quota exceeded")]
    QuotaExceeded,
    /// REQUEST_TOO_LARGE: the body is larger than the API's payload limit.
    #[error("request body larger than {limit} bytes")]
    RequestTooLarge {
        /// The API's limit.
        limit: u64,
    },
    /// RESOURCE_NOT_FOUND: HTTP APIs' answer for an unknown route.
    #[error("no route: {0}")]
    ResourceNotFound(&'static str),
    /// THROTTLED.
    #[error("throttled")]
    Throttled,
    /// UNAUTHORIZED.
    #[error("unauthorized")]
    Unauthorized,
    /// UNSUPPORTED_MEDIA_TYPE.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// WAF_FILTERED.
    #[error("WAF filtered")]
    WafFiltered,
    /// REQUEST_HEADER_FIELDS_TOO_LARGE.
    #[error("request header fields too large")]
    RequestHeaderFieldsTooLarge,
    /// A DEFAULT_5XX answered with 502: a Lambda function failed or returned a malformed
    /// result (AWS: 502 `{"message": "Internal server error"}`).
    #[error("bad gateway: {0}")]
    BadGateway(String),
    /// A REST API's function failed (`X-Amz-Function-Error`) or its invoke endpoint refused:
    /// INTEGRATION_FAILURE answered 502 (AWS logs `INTEGRATION_FAILURE` with status 502 for
    /// a Lambda customer function error: DataBiosphere/azul#6624, #3886).
    #[error("function failed: {0}")]
    FunctionFailure(String),
    /// An HTTP API's function failed or returned a malformed result (AWS: 500
    /// `{"message":"Internal Server Error"}`; LocalStack's AWS-validated HTTP API tests).
    #[error("function error: {0}")]
    HttpApiFunctionError(String),
    /// A DEFAULT_4XX answered with 400: the request itself is malformed (RFC 9112 3.2: an
    /// HTTP/1.1 request without `Host`, or with two).
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// A DEFAULT_4XX answered with 414: a request target longer than hyper accepts.
    #[error("request target too long")]
    UriTooLong,
    /// A DEFAULT_4XX answered with 408: the client sent its body too slowly
    /// ([`crate::body::BodyTimeouts`]).
    #[error("request timeout: {0}")]
    RequestTimeout(String),
    /// A DEFAULT_5XX answered with 503: buffering this body would pass the budget of all
    /// buffered request bodies ([`crate::buffer::BufferBudget`]).
    #[error("service unavailable: {0}")]
    Overloaded(String),
}

impl From<crate::buffer::CollectError> for GatewayError {
    fn from(e: crate::buffer::CollectError) -> Self {
        use crate::buffer::CollectError as C;
        match e {
            C::TooLarge(limit) => GatewayError::RequestTooLarge { limit },
            C::Budget(_) => GatewayError::Overloaded(e.to_string()),
            C::Body(b) => GatewayError::from_body_error(&*b),
        }
    }
}

impl GatewayError {
    /// The AWS gateway response type this error answers with.
    pub fn response_type(&self) -> GatewayResponseType {
        use GatewayError as E;
        use GatewayResponseType as T;
        match self {
            E::AccessDenied | E::PolicyDenied { .. } => T::AccessDenied,
            E::ApiConfigurationError(_) => T::ApiConfigurationError,
            E::AuthorizerConfigurationError(_) => T::AuthorizerConfigurationError,
            E::AuthorizerFailure(_) => T::AuthorizerFailure,
            E::BadRequestParameters => T::BadRequestParameters,
            E::BadRequestBody => T::BadRequestBody,
            E::Default4xx(_) => T::Default4xx,
            E::Default5xx(_) => T::Default5xx,
            E::ExpiredToken => T::ExpiredToken,
            E::IntegrationFailure(_) => T::IntegrationFailure,
            E::IntegrationTimeout(_) => T::IntegrationTimeout,
            E::InvalidApiKey => T::InvalidApiKey,
            E::InvalidSignature => T::InvalidSignature,
            E::MissingAuthenticationToken(_) => T::MissingAuthenticationToken,
            E::QuotaExceeded => T::QuotaExceeded,
            E::RequestTooLarge { .. } => T::RequestTooLarge,
            E::ResourceNotFound(_) => T::ResourceNotFound,
            E::Throttled => T::Throttled,
            E::Unauthorized => T::Unauthorized,
            E::UnsupportedMediaType => T::UnsupportedMediaType,
            E::WafFiltered => T::WafFiltered,
            E::RequestHeaderFieldsTooLarge => T::RequestHeaderFieldsTooLarge,
            E::BadGateway(_) | E::Overloaded(_) | E::HttpApiFunctionError(_) => T::Default5xx,
            E::FunctionFailure(_) => T::IntegrationFailure,
            E::BadRequest(_) | E::RequestTimeout(_) | E::UriTooLong => T::Default4xx,
        }
    }

    /// `$context.error.message` when it is not the response type's default one.
    pub fn message(&self) -> Option<&'static str> {
        match self {
            GatewayError::PolicyDenied { explicit: true } => {
                Some("User is not authorized to access this resource with an explicit deny")
            }
            GatewayError::PolicyDenied { explicit: false } => {
                Some("User is not authorized to access this resource")
            }
            GatewayError::BadRequest(_) => Some("Bad Request"),
            GatewayError::UriTooLong => Some("Request-URI Too Long"),
            GatewayError::RequestTimeout(_) => Some("Request Timeout"),
            GatewayError::Overloaded(_) => Some("Service Unavailable"),
            GatewayError::HttpApiFunctionError(_) => Some("Internal Server Error"),
            _ => None,
        }
    }

    /// The status when it is not the response type's (resolved) one.
    pub fn status_override(&self) -> Option<http::StatusCode> {
        match self {
            GatewayError::BadGateway(_) => Some(http::StatusCode::BAD_GATEWAY),
            GatewayError::BadRequest(_) => Some(http::StatusCode::BAD_REQUEST),
            GatewayError::UriTooLong => Some(http::StatusCode::URI_TOO_LONG),
            GatewayError::RequestTimeout(_) => Some(http::StatusCode::REQUEST_TIMEOUT),
            GatewayError::Overloaded(_) => Some(http::StatusCode::SERVICE_UNAVAILABLE),
            GatewayError::HttpApiFunctionError(_) => Some(http::StatusCode::INTERNAL_SERVER_ERROR),
            GatewayError::FunctionFailure(_) => Some(http::StatusCode::BAD_GATEWAY),
            _ => None,
        }
    }

    /// The answer to a client body that failed while being read: 408 when it was too slow,
    /// else a 400 (the client broke the framing or went away; it rarely sees the answer).
    pub fn from_body_error(e: &(dyn std::error::Error + 'static)) -> Self {
        if crate::body::is_timeout(e) {
            GatewayError::RequestTimeout(e.to_string())
        } else {
            GatewayError::Default4xx(format!("reading request body: {e}"))
        }
    }

    /// The "no route" error for `ty` (MISSING_AUTHENTICATION_TOKEN or RESOURCE_NOT_FOUND).
    pub fn no_route(ty: GatewayResponseType, why: &'static str) -> Self {
        match ty {
            GatewayResponseType::ResourceNotFound => GatewayError::ResourceNotFound(why),
            _ => GatewayError::MissingAuthenticationToken(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn variants_map_one_to_one_onto_gateway_response_types() {
        let all = [
            GatewayError::AccessDenied,
            GatewayError::ApiConfigurationError(String::new()),
            GatewayError::AuthorizerConfigurationError(String::new()),
            GatewayError::AuthorizerFailure(String::new()),
            GatewayError::BadRequestParameters,
            GatewayError::BadRequestBody,
            GatewayError::Default4xx(String::new()),
            GatewayError::Default5xx(String::new()),
            GatewayError::ExpiredToken,
            GatewayError::IntegrationFailure(String::new()),
            GatewayError::IntegrationTimeout(Duration::ZERO),
            GatewayError::InvalidApiKey,
            GatewayError::InvalidSignature,
            GatewayError::MissingAuthenticationToken(""),
            GatewayError::QuotaExceeded,
            GatewayError::RequestTooLarge { limit: 1 },
            GatewayError::ResourceNotFound(""),
            GatewayError::Throttled,
            GatewayError::Unauthorized,
            GatewayError::UnsupportedMediaType,
            GatewayError::WafFiltered,
            GatewayError::RequestHeaderFieldsTooLarge,
        ];
        let types: BTreeSet<_> = all.iter().map(GatewayError::response_type).collect();
        assert_eq!(types.len(), all.len());
        // The one variant that shares a type (DEFAULT_5XX) differs by status.
        let bad = GatewayError::BadGateway(String::new());
        assert_eq!(bad.response_type(), GatewayResponseType::Default5xx);
        assert_eq!(bad.status_override(), Some(http::StatusCode::BAD_GATEWAY));
        // As do the gateway's own HTTP-level answers, each with its status and message.
        for (e, ty, status) in [
            (
                GatewayError::BadRequest(""),
                GatewayResponseType::Default4xx,
                400,
            ),
            (
                GatewayError::RequestTimeout(String::new()),
                GatewayResponseType::Default4xx,
                408,
            ),
            (
                GatewayError::Overloaded(String::new()),
                GatewayResponseType::Default5xx,
                503,
            ),
            (
                GatewayError::HttpApiFunctionError(String::new()),
                GatewayResponseType::Default5xx,
                500,
            ),
        ] {
            assert_eq!(e.response_type(), ty);
            assert_eq!(e.status_override().map(|s| s.as_u16()), Some(status));
            assert!(e.message().is_some());
        }
        // A REST function's failure is INTEGRATION_FAILURE answered 502.
        let failed = GatewayError::FunctionFailure(String::new());
        assert_eq!(
            failed.response_type(),
            GatewayResponseType::IntegrationFailure
        );
        assert_eq!(
            failed.status_override(),
            Some(http::StatusCode::BAD_GATEWAY)
        );
        // So does a policy's denial (ACCESS_DENIED), which differs by message.
        for explicit in [true, false] {
            let denied = GatewayError::PolicyDenied { explicit };
            assert_eq!(denied.response_type(), GatewayResponseType::AccessDenied);
            assert!(denied.message().is_some());
        }
        assert_eq!(GatewayError::AccessDenied.message(), None);
        assert_eq!(types.len(), GatewayResponseType::ALL.len());
    }
}
