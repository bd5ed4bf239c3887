//! `--manifests DIR` (feature `standalone`): every `*.yaml`, `*.yml`, `*.json` directly in
//! DIR, parsed and compiled in-process with the same `compile` the operator runs.

use super::{LoadError, Loaded, manifest_files};
use std::path::Path;

/// Parses every manifest file, compiles the snapshot, refuses on any error diagnostic.
pub fn load(dir: &Path) -> Result<Loaded, LoadError> {
    let files = manifest_files(dir).map_err(|source| LoadError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut resources = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|source| LoadError::Read {
            path: f.clone(),
            source,
        })?;
        let origin = f.display().to_string();
        let parsed = portico_crds::parse_manifests(&origin, &text)
            .map_err(|e| LoadError::Decode(format!("{origin}: {e}")))?;
        resources.extend(parsed);
    }
    let snapshot = portico_crds::Snapshot::from_resources(resources);
    let compiled = portico_crds::compile(&snapshot);
    if compiled.diagnostics.iter().any(|d| d.is_error()) {
        return Err(LoadError::Rejected(compiled.diagnostics));
    }
    compiled
        .config
        .validate()
        .map_err(|e| LoadError::Decode(format!("compiled config: {e}")))?;
    Ok(Loaded {
        config: compiled.config,
        diagnostics: compiled.diagnostics,
    })
}
