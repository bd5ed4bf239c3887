//! Gateway responses: the AWS response types the gateway itself answers with, their default
//! status codes and messages, and per-API overrides.
//!
//! Resolution follows AWS: a specific override for the type, else the `DEFAULT_4XX` /
//! `DEFAULT_5XX` override for its class, else the built-in default. The default body is
//! `{"message":$context.error.messageString}`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The body template AWS uses when no override is configured.
pub const DEFAULT_BODY_TEMPLATE: &str = "{\"message\":$context.error.messageString}";

macro_rules! response_types {
    ($( $(#[$doc:meta])* $variant:ident = $aws:literal, $status:expr, $msg:literal; )*) => {
        /// An AWS gateway response type. Serialized with its AWS name (`THROTTLED`, ...).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum GatewayResponseType {
            $( $(#[$doc])* #[serde(rename = $aws)] $variant, )*
        }

        impl GatewayResponseType {
            /// Every type, in declaration order.
            pub const ALL: &'static [GatewayResponseType] = &[$(GatewayResponseType::$variant,)*];

            /// The AWS name, e.g. `INTEGRATION_TIMEOUT`.
            pub fn as_str(self) -> &'static str {
                match self { $(GatewayResponseType::$variant => $aws,)* }
            }

            /// The default status code AWS answers with.
            pub fn default_status(self) -> u16 {
                match self { $(GatewayResponseType::$variant => $status,)* }
            }

            /// The default `message` AWS puts in the body.
            pub fn default_message(self) -> &'static str {
                match self { $(GatewayResponseType::$variant => $msg,)* }
            }
        }

        impl std::str::FromStr for GatewayResponseType {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($aws => Ok(GatewayResponseType::$variant),)*
                    other => Err(format!("unknown gateway response type {other:?}")),
                }
            }
        }
    };
}

response_types! {
    /// Authorization denied (authorizer policy Deny, missing scope).
    AccessDenied = "ACCESS_DENIED", 403, "User is not authorized to access this resource";
    /// The API or method is misconfigured (a method that failed to compile, a bad template).
    ApiConfigurationError = "API_CONFIGURATION_ERROR", 500, "Internal server error";
    /// The authorizer answered something that is not a valid authorizer response.
    AuthorizerConfigurationError = "AUTHORIZER_CONFIGURATION_ERROR", 500, "Internal server error";
    /// The authorizer could not be reached or timed out.
    AuthorizerFailure = "AUTHORIZER_FAILURE", 500, "Internal server error";
    /// Request parameters failed validation.
    BadRequestParameters = "BAD_REQUEST_PARAMETERS", 400, "Invalid request parameters";
    /// The request body failed validation.
    BadRequestBody = "BAD_REQUEST_BODY", 400, "Invalid request body";
    /// Any 4XX without a more specific type.
    Default4xx = "DEFAULT_4XX", 400, "Bad Request";
    /// Any 5XX without a more specific type.
    Default5xx = "DEFAULT_5XX", 500, "Internal server error";
    /// The token has expired.
    ExpiredToken = "EXPIRED_TOKEN", 403, "The security token included in the request is expired";
    /// The integration could not be reached or answered unusably.
    IntegrationFailure = "INTEGRATION_FAILURE", 504, "Internal server error";
    /// The integration did not answer within the method's timeout.
    IntegrationTimeout = "INTEGRATION_TIMEOUT", 504, "Endpoint request timed out";
    /// Missing, unknown or disabled API key.
    InvalidApiKey = "INVALID_API_KEY", 403, "Forbidden";
    /// A request signature did not verify.
    InvalidSignature = "INVALID_SIGNATURE", 403, "Invalid signature";
    /// No route matched (REST APIs answer this rather than 404, as AWS does).
    MissingAuthenticationToken = "MISSING_AUTHENTICATION_TOKEN", 403, "Missing Authentication Token";
    /// The usage plan quota is exhausted.
    QuotaExceeded = "QUOTA_EXCEEDED", 429, "Limit Exceeded";
    /// The request is larger than the payload limit.
    RequestTooLarge = "REQUEST_TOO_LARGE", 413, "Request Too Long";
    /// No route matched (HTTP APIs).
    ResourceNotFound = "RESOURCE_NOT_FOUND", 404, "Not Found";
    /// A throttle limit was hit.
    Throttled = "THROTTLED", 429, "Too Many Requests";
    /// No or invalid credentials.
    Unauthorized = "UNAUTHORIZED", 401, "Unauthorized";
    /// No template and passthrough refused for the request's content type.
    UnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE", 415, "Unsupported Media Type";
    /// Blocked by a web application firewall rule.
    WafFiltered = "WAF_FILTERED", 403, "Forbidden";
    /// The request headers are larger than the header limit (Portico addition; AWS answers 431
    /// with its own body).
    RequestHeaderFieldsTooLarge = "REQUEST_HEADER_FIELDS_TOO_LARGE", 431, "Request Header Fields Too Large";
}

/// A per-API override of one gateway response type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayResponseOverride {
    /// Status code to answer with instead of the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Extra response headers (literal values).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Body template (`application/json`); `$context.error.message`,
    /// `$context.error.messageString`, `$context.requestId`, `$context.stage` and
    /// `$context.error.responseType` are substituted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_template: Option<String>,
}

/// A fully resolved gateway response: what to send for a type under an API's overrides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedGatewayResponse {
    /// Status code to send.
    pub status: u16,
    /// Headers to add.
    pub headers: BTreeMap<String, String>,
    /// Body template to render.
    pub body_template: String,
}

/// Resolves the response for `ty` under `overrides`, as AWS does: the type's own override,
/// then its class default (`DEFAULT_4XX` / `DEFAULT_5XX`), then the built-in default. Fields
/// an override leaves unset fall through to the next level.
pub fn resolve(
    ty: GatewayResponseType,
    overrides: &BTreeMap<GatewayResponseType, GatewayResponseOverride>,
) -> ResolvedGatewayResponse {
    let status = ty.default_status();
    let class = if status >= 500 {
        GatewayResponseType::Default5xx
    } else {
        GatewayResponseType::Default4xx
    };
    let specific = overrides.get(&ty);
    let general = if class == ty {
        None
    } else {
        overrides.get(&class)
    };
    let mut headers = general.map(|o| o.headers.clone()).unwrap_or_default();
    if let Some(o) = specific {
        headers.extend(o.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    ResolvedGatewayResponse {
        // "Changing the status code of this fallback gateway response changes the status codes
        // of all other 4XX responses to the new value" (AWS developer guide, "Gateway response
        // types", DEFAULT_4XX; likewise DEFAULT_5XX): a type's own override first, then its
        // class default's, then its built-in status.
        status: specific
            .and_then(|o| o.status_code)
            .or_else(|| general.and_then(|o| o.status_code))
            .unwrap_or(status),
        headers,
        body_template: specific
            .and_then(|o| o.body_template.clone())
            .or_else(|| general.and_then(|o| o.body_template.clone()))
            .unwrap_or_else(|| DEFAULT_BODY_TEMPLATE.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_from_str_and_serde() {
        for ty in GatewayResponseType::ALL {
            assert_eq!(ty.as_str().parse::<GatewayResponseType>().unwrap(), *ty);
            let json = serde_json::to_string(ty).unwrap();
            assert_eq!(json, format!("\"{}\"", ty.as_str()));
        }
    }

    #[test]
    fn defaults_match_aws() {
        use GatewayResponseType::*;
        assert_eq!(MissingAuthenticationToken.default_status(), 403);
        assert_eq!(
            MissingAuthenticationToken.default_message(),
            "Missing Authentication Token"
        );
        assert_eq!(Throttled.default_status(), 429);
        assert_eq!(QuotaExceeded.default_message(), "Limit Exceeded");
        assert_eq!(IntegrationTimeout.default_status(), 504);
        assert_eq!(RequestTooLarge.default_status(), 413);
        assert_eq!(InvalidApiKey.default_message(), "Forbidden");
    }

    #[test]
    fn specific_override_beats_class_default_which_beats_builtin() {
        use GatewayResponseType::*;
        let mut overrides = BTreeMap::new();
        overrides.insert(
            Default4xx,
            GatewayResponseOverride {
                status_code: None,
                headers: [("x-class".to_string(), "4xx".to_string())].into(),
                body_template: Some("{\"error\":\"class\"}".into()),
            },
        );
        overrides.insert(
            Throttled,
            GatewayResponseOverride {
                status_code: Some(503),
                headers: BTreeMap::new(),
                body_template: None,
            },
        );
        let throttled = resolve(Throttled, &overrides);
        assert_eq!(throttled.status, 503);
        assert_eq!(throttled.body_template, "{\"error\":\"class\"}");
        assert_eq!(
            throttled.headers.get("x-class").map(String::as_str),
            Some("4xx")
        );

        let timeout = resolve(IntegrationTimeout, &overrides);
        assert_eq!(timeout.status, 504);
        assert_eq!(timeout.body_template, DEFAULT_BODY_TEMPLATE);
        assert!(timeout.headers.is_empty());

        // A class default's status reaches every type of the class without a status of its
        // own (AWS developer guide, "Gateway response types": DEFAULT_4XX "changes the status
        // codes of all other 4XX responses to the new value").
        overrides.get_mut(&Default4xx).unwrap().status_code = Some(418);
        assert_eq!(resolve(Unauthorized, &overrides).status, 418);
        assert_eq!(resolve(Default4xx, &overrides).status, 418);
        assert_eq!(resolve(Throttled, &overrides).status, 503, "its own wins");
        assert_eq!(
            resolve(IntegrationTimeout, &overrides).status,
            504,
            "other class"
        );
    }
}
