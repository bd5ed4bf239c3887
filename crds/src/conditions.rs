//! Status condition types written by the operator, shared with the CRD printer columns.

/// The object was compiled without errors (it may still carry warnings).
pub const ACCEPTED: &str = "Accepted";
/// The object is served as written: it was accepted without errors and the GatewayConfig
/// that contains it is published to the proxies (the `Ready` printer column). Written on every
/// kind; false with the reason when the object has errors or the config could not be published.
pub const READY: &str = "Ready";
