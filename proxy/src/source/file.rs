//! `--config FILE`: a GatewayConfig JSON document.

use super::{LoadError, Loaded};
use portico_config::GatewayConfig;
use std::path::Path;

/// Reads, decodes and validates the document.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let config = GatewayConfig::from_json(&bytes)
        .map_err(|e| LoadError::Decode(format!("{}: {e}", path.display())))?;
    Ok(Loaded {
        config,
        diagnostics: Vec::new(),
        secrets: Default::default(),
        version: None,
    })
}
