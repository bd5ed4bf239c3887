//! CamelCase reasons used in [`portico_config::Diagnostic::reason`] and status conditions.
//!
//! One constant per finding; the golden tests show each in context.

/// The condition holds (positive reason for `Accepted`, `ResolvedRefs`, ...).
pub const ACCEPTED: &str = "Accepted";
/// A field or a whole kind is accepted by the schema but not implemented yet.
pub const NOT_YET_SUPPORTED: &str = "NotYetSupported";
/// A reference names an object that does not exist (e.g. `Stage.spec.restApiRef`).
pub const UNKNOWN_REFERENCE: &str = "UnknownReference";
/// A reference names an object that exists but was not accepted (it is not served).
pub const REFERENCE_NOT_ACCEPTED: &str = "ReferenceNotAccepted";
/// Two methods (or HTTP route keys) match the same method and path shape, or two WebSocket
/// routes have the same route key.
pub const DUPLICATE_ROUTE: &str = "DuplicateRoute";
/// Two stages claim the same host and base path.
pub const STAGE_CONFLICT: &str = "StageConflict";
/// A resource path template is invalid.
pub const INVALID_PATH: &str = "InvalidPath";
/// A method name is not an HTTP verb Portico serves (or `ANY`).
pub const INVALID_METHOD: &str = "InvalidMethod";
/// An HTTP API route key is not `"<METHOD> <path>"` or `$default`; a WebSocket API route key
/// is empty, too long, starts with `$` without being `$connect`, `$disconnect` or `$default`,
/// or is an HTTP route key.
pub const INVALID_ROUTE_KEY: &str = "InvalidRouteKey";
/// `resources` on an HTTP or WebSocket API, or `routes` on a REST API.
pub const PROTOCOL_MISMATCH: &str = "ProtocolMismatch";
/// An integration is missing or unusable (bad uri, MOCK without `mockResponse`, ...).
pub const INVALID_INTEGRATION: &str = "InvalidIntegration";
/// A `{param}` placeholder in an integration uri is not a path parameter of the method.
pub const UNKNOWN_PATH_PARAMETER: &str = "UnknownPathParameter";
/// A stage variable name or value (or a `${stageVariables.x}` reference) is invalid.
pub const INVALID_STAGE_VARIABLE: &str = "InvalidStageVariable";
/// `canarySettings` cannot be served (percentage, API, overrides): the canary is dropped,
/// the stage's API keeps all of its traffic.
pub const INVALID_CANARY: &str = "InvalidCanary";
/// A method uses `${stageVariables.x}` but a stage serving it does not define `x`.
pub const UNDEFINED_STAGE_VARIABLE: &str = "UndefinedStageVariable";
/// An integration timeout is outside 1..300000 ms.
pub const INVALID_TIMEOUT: &str = "InvalidTimeout";
/// `maxPayloadBytes` is not positive.
pub const INVALID_PAYLOAD_LIMIT: &str = "InvalidPayloadLimit";
/// A gateway response type or status code is invalid.
pub const INVALID_GATEWAY_RESPONSE: &str = "InvalidGatewayResponse";
/// A response template for a content type other than `application/json`.
pub const UNSUPPORTED_CONTENT_TYPE: &str = "UnsupportedContentType";
/// A stage name is not `[A-Za-z0-9_-]+`.
pub const INVALID_STAGE_NAME: &str = "InvalidStageName";
/// A base path is not `/` or `/seg[/seg...]` of valid literal segments.
pub const INVALID_BASE_PATH: &str = "InvalidBasePath";
/// A hostname is not a valid DNS name (wildcards and ports are rejected).
pub const INVALID_HOSTNAME: &str = "InvalidHostname";
/// Access log settings are unusable (empty format).
pub const INVALID_ACCESS_LOG: &str = "InvalidAccessLog";
/// The same kind, namespace and name appear more than once in the snapshot.
pub const DUPLICATE_OBJECT: &str = "DuplicateObject";
/// A cross-namespace reference whose target does not allow references from the referring
/// object's namespace (annotation `portico.dev/allow-references-from`).
pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
/// `Ready=True`: the config containing the object was published to the proxies.
pub const PUBLISHED: &str = "Published";
/// `Ready=False`: the object has errors (see its `Accepted` condition).
pub const NOT_ACCEPTED: &str = "NotAccepted";
/// `Ready=False`: the compiled config is too large for its ConfigMap; the previous one serves.
pub const CONFIG_TOO_LARGE: &str = "ConfigTooLarge";
/// A mapping template (VTL) does not parse.
pub const INVALID_TEMPLATE: &str = "InvalidTemplate";
/// A parameter mapping's key or value is not a supported expression.
pub const INVALID_MAPPING: &str = "InvalidMapping";
/// An integration response's `selectionPattern` is not a valid regular expression, or two
/// responses are the default.
pub const INVALID_SELECTION_PATTERN: &str = "InvalidSelectionPattern";
/// An integration response or method response status code is outside 100..599.
pub const INVALID_STATUS_CODE: &str = "InvalidStatusCode";
/// An integration response maps to a status no method response declares (requests selecting
/// it answer 500, as AWS), or maps a header the method response does not declare.
pub const UNDECLARED_METHOD_RESPONSE: &str = "UndeclaredMethodResponse";
/// A field that has no effect on this integration type (AWS ignores it there too).
pub const IGNORED_FIELD: &str = "IgnoredField";
/// A `binaryMediaTypes` entry is not `type/subtype` (with `*` wildcards).
pub const INVALID_MEDIA_TYPE: &str = "InvalidMediaType";
/// A model's schema is not a valid JSON Schema draft-04 document, or refers to something
/// other than a model of the same API.
pub const INVALID_MODEL: &str = "InvalidModel";
/// `requestModels` names a model the API does not define.
pub const UNKNOWN_MODEL: &str = "UnknownModel";
/// `requestValidator` names a validator the API does not define.
pub const UNKNOWN_VALIDATOR: &str = "UnknownValidator";
/// A `requestParameters` key is not `method.request.<path|querystring|header>.<name>`, or
/// names a path parameter the resource does not have.
pub const INVALID_REQUEST_PARAMETER: &str = "InvalidRequestParameter";
/// `spec.cors` has an invalid entry, or `*` together with `allowCredentials`.
pub const INVALID_CORS: &str = "InvalidCors";
/// A throttle or quota with a missing, zero or negative limit, or an offset not below the
/// limit; a WebSocket limit (`spec.websocket.*`) outside its range.
pub const INVALID_LIMIT: &str = "InvalidLimit";
/// An ApiKey (or a WebSocket management credential) whose Secret (or the Secret's key) does
/// not exist, or is empty.
pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
/// Two ApiKeys have the same value, or a key is in two plans that share a stage.
pub const DUPLICATE_KEY: &str = "DuplicateKey";
/// An Authorizer's settings cannot be honoured (no issuer, bad key set, weak algorithm, ...).
pub const INVALID_AUTHORIZER: &str = "InvalidAuthorizer";
/// A method's authorization type does not match its authorizer's type.
pub const AUTHORIZER_TYPE_MISMATCH: &str = "AuthorizerTypeMismatch";
/// A stage's cache settings cannot be honoured (`cacheClusterSize`, `cacheClusterSizeBytes`,
/// a `cacheTtlInSeconds` outside 0..=3600): the stage, or the method entry, is served without
/// them.
pub const INVALID_CACHE_SETTINGS: &str = "InvalidCacheSettings";
/// Caching fields set on a stage whose `cacheClusterEnabled` is not `true`: they do nothing.
pub const CACHE_NOT_ENABLED: &str = "CacheNotEnabled";
/// A `cacheKeyParameters` entry is not `method.request.<path|querystring|header>.<name>`, or
/// names a path parameter the resource does not have: the entry is dropped.
pub const INVALID_CACHE_KEY_PARAMETER: &str = "InvalidCacheKeyParameter";
/// A setting the API's protocol does not have on AWS: ignored. The response cache on HTTP
/// and WebSocket APIs; CORS, binary media types, compression, models and validators on
/// WebSocket APIs; `spec.websocket` and `templateSelectionExpression` on REST and HTTP APIs.
pub const NOT_SUPPORTED_BY_PROTOCOL: &str = "NotSupportedByProtocol";
/// A cached method has an authorizer or requires an API key, but its cache key holds no
/// caller identity: one caller's answer would be served to another.
pub const CACHED_PRIVATE_RESPONSE: &str = "CachedPrivateResponse";
/// A cached method has a path parameter that is not in its cache key: every value of it
/// shares one cached answer (AWS's behaviour).
pub const CACHE_KEY_MISSES_PATH_PARAMETER: &str = "CacheKeyMissesPathParameter";
/// A selection expression Portico cannot evaluate (`routeSelectionExpression`,
/// `apiKeySelectionExpression`, `routeResponseSelectionExpression`), or one that disagrees
/// with `apiKeySource`.
pub const INVALID_SELECTION_EXPRESSION: &str = "InvalidSelectionExpression";
/// Authorization a route cannot have: an authorizer on a WebSocket route other than
/// `$connect`, a TOKEN authorizer on a WebSocket API, `apiKeyRequired` on a WebSocket route
/// other than `$connect` or on an HTTP API. The route fails closed.
pub const INVALID_AUTHORIZATION: &str = "InvalidAuthorization";
/// A WebSocket management credential whose access key id is malformed or repeated: the
/// credential is dropped.
pub const INVALID_CREDENTIAL: &str = "InvalidCredential";
