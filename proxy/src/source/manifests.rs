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
        // The parser's errors name the file already.
        let parsed = portico_crds::parse_manifests(&f.display().to_string(), &text)
            .map_err(|e| LoadError::Decode(e.to_string()))?;
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
    // The values of the Secrets the config names (`@connections` credentials): held by the
    // runtime, never written into the config.
    let mut secrets = crate::runtime::Secrets::new();
    for api in &compiled.config.apis {
        let creds = api.websocket.iter().flat_map(|w| &w.management_credentials);
        for c in creds {
            let r = &c.secret;
            let value = snapshot
                .secrets
                .iter()
                .find(|s| s.namespace == r.namespace && s.name == r.name)
                .and_then(|s| s.data.get(&r.key));
            if let Some(v) = value {
                secrets.insert(r.clone(), String::from_utf8_lossy(v).into_owned());
            }
        }
    }
    Ok(Loaded {
        config: compiled.config,
        diagnostics: compiled.diagnostics,
        secrets,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_yaml_error_names_its_file_once() {
        let dir = std::env::temp_dir().join(format!("portico-manifests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.yaml");
        std::fs::write(&file, "kind: [\n").unwrap();
        let err = load(&dir).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        let name = file.display().to_string();
        assert_eq!(err.matches(&name).count(), 1, "{err}");
        assert!(err.starts_with(&format!("{name}: document 1: ")), "{err}");
    }
}
