//! compile (stub)
use crate::Snapshot;
use portico_config::{Diagnostic, GatewayConfig};
/// Output.
#[derive(Clone, Debug, PartialEq)]
pub struct Compiled {
    /// Config.
    pub config: GatewayConfig,
    /// Diagnostics.
    pub diagnostics: Vec<Diagnostic>,
}
/// Compile.
pub fn compile(_s: &Snapshot) -> Compiled {
    Compiled {
        config: GatewayConfig::empty(),
        diagnostics: vec![],
    }
}
