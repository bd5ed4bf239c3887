//! `--manifests DIR` (feature `standalone`): every `*.yaml`, `*.yml`, `*.json` directly in
//! DIR, parsed and compiled in-process with the same `compile` the operator runs.
//!
//! ```text
//!  load: every file read ─> hash of its text same as in the ParseCache? ─yes─> its resources
//!                                                     └─no─> parse (errors name the file)
//!        ─> Snapshot ─> compile ─> validate ─> Loaded (+ the values of the Secrets it names)
//! ```

use super::{LoadError, Loaded, ParseCache, manifest_files};
use portico_crds::Resource;
use std::collections::HashMap;
use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Per file: the hash of the text last parsed, and its resources.
pub type Parsed = HashMap<PathBuf, (u64, Arc<[Resource]>)>;

/// Parses every manifest file (unchanged ones come from `cache`), compiles the snapshot,
/// refuses on any error diagnostic.
pub fn load(dir: &Path, cache: &ParseCache) -> Result<Loaded, LoadError> {
    let files = manifest_files(dir).map_err(|source| LoadError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut cache = cache.0.lock().expect("parse cache lock");
    // Files gone from the directory leave the cache.
    cache.retain(|path, _| files.contains(path));
    let mut resources = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|source| LoadError::Read {
            path: f.clone(),
            source,
        })?;
        let mut hasher = std::hash::DefaultHasher::new();
        text.hash(&mut hasher);
        let hash = hasher.finish();
        let parsed = match cache.get(&f) {
            Some((h, parsed)) if *h == hash => parsed.clone(),
            _ => {
                // The parser's errors name the file already.
                let parsed: Arc<[Resource]> =
                    portico_crds::parse_manifests(&f.display().to_string(), &text)
                        .map_err(|e| LoadError::Decode(e.to_string()))?
                        .into();
                cache.insert(f, (hash, parsed.clone()));
                parsed
            }
        };
        resources.extend(parsed.iter().cloned());
    }
    drop(cache);
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
        version: None,
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
        let err = load(&dir, &ParseCache::default()).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        let name = file.display().to_string();
        assert_eq!(err.matches(&name).count(), 1, "{err}");
        assert!(err.starts_with(&format!("{name}: document 1: ")), "{err}");
    }

    #[test]
    fn a_reload_parses_only_the_files_whose_text_changed() {
        let dir = std::env::temp_dir().join(format!("portico-parse-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mobile-backend");
        for f in [
            "restapi.yaml",
            "restapi-v2.yaml",
            "stages.yaml",
            "usage-plan.yaml",
            "authorizer.yaml",
        ] {
            std::fs::copy(example.join(f), dir.join(f)).unwrap();
        }
        let cache = ParseCache::default();
        let first = load(&dir, &cache).unwrap();
        let parsed = |name: &str| cache.0.lock().unwrap()[&dir.join(name)].1.clone();
        let (api_before, stages_before) = (parsed("restapi.yaml"), parsed("stages.yaml"));

        // One file changes (a comment is enough): it alone is parsed again.
        let stages = std::fs::read_to_string(dir.join("stages.yaml")).unwrap();
        std::fs::write(dir.join("stages.yaml"), format!("# edited\n{stages}")).unwrap();
        let second = load(&dir, &cache).unwrap();
        assert!(Arc::ptr_eq(&api_before, &parsed("restapi.yaml")));
        assert!(!Arc::ptr_eq(&stages_before, &parsed("stages.yaml")));
        assert_eq!(first.config, second.config);

        // A removed file leaves the cache and the config.
        std::fs::remove_file(dir.join("usage-plan.yaml")).unwrap();
        let third = load(&dir, &cache).unwrap();
        assert!(
            !cache
                .0
                .lock()
                .unwrap()
                .contains_key(&dir.join("usage-plan.yaml"))
        );
        assert!(third.config.usage_plans.is_empty());
        assert!(!first.config.usage_plans.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
