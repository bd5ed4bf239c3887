//! Status condition types written by the operator, shared with the CRD printer columns.

/// The object was compiled without errors (it may still carry warnings).
pub const ACCEPTED: &str = "Accepted";
/// Every reference of the object (RestApi, Authorizer, Secret, ...) resolved.
pub const RESOLVED_REFS: &str = "ResolvedRefs";
/// The compiled config that contains the object was published to the proxies.
pub const PROGRAMMED: &str = "Programmed";
/// A Stage is accepted, programmed and reachable (the `Ready` printer column).
pub const READY: &str = "Ready";
