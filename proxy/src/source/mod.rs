//! Config sources: where a `GatewayConfig` comes from, how it is (re)loaded, and the watcher
//! that swaps in new versions.
//!
//! ```text
//!  --config FILE     file.rs       GatewayConfig JSON (from_json: decode + validate)
//!  --manifests DIR   manifests.rs  *.yaml|*.yml|*.json -> parse_manifests -> Snapshot -> compile
//!                    watch.rs      notify + 1 s mtime poll, 200 ms debounce
//!                                  -> load -> Runtime::build -> one ArcSwap::store
//!  --kube-configmap  kube/         list + watch one ConfigMap through the Kubernetes API
//!    NS/NAME                       -> decode -> watch::apply (the same swap)
//! ```
//!
//! Entry points: [`Configured`] (what the server starts), [`Source::load`], [`watch::spawn`],
//! [`kube::KubeSource::spawn`].

mod file;
pub mod kube;
#[cfg(feature = "standalone")]
mod manifests;
pub mod watch;

use crate::admin::Health;
use crate::cli::ServeArgs;
use crate::metrics::Metrics;
use crate::pool::Pools;
use crate::runtime::Runtime;
use arc_swap::ArcSwap;
use portico_config::{Diagnostic, GatewayConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// The source chosen on the command line, before it starts.
#[derive(Debug)]
pub enum Configured {
    /// A file or a directory: loaded before serving (an error ends startup), then watched.
    Files(Source),
    /// The published ConfigMap: serving starts empty and not ready; the first load from the
    /// API makes the proxy ready.
    Kube(Box<kube::KubeSource>),
}

impl Configured {
    /// The source named by `--config`, `--manifests` or `--kube-configmap`.
    pub fn from_args(args: &ServeArgs) -> Result<Self, LoadError> {
        if let Some(target) = &args.kube_configmap {
            let src = kube::KubeSource::new(
                target.clone(),
                args.kubeconfig.as_deref(),
                args.kube_context.as_deref(),
            )?;
            return Ok(Configured::Kube(Box::new(src)));
        }
        Ok(Configured::Files(match (&args.config, &args.manifests) {
            (Some(f), _) => Source::ConfigFile(f.clone()),
            (None, Some(d)) => Source::Manifests(d.clone(), ParseCache::default()),
            (None, None) => unreachable!("clap requires one config source"),
        }))
    }

    /// The config served first: files are loaded now; the Kubernetes source starts with an
    /// empty config (answering 403/404) while `/readyz` says 503.
    pub async fn initial(&self) -> Result<Loaded, LoadError> {
        match self {
            Configured::Files(source) => {
                let source = source.clone();
                tokio::task::spawn_blocking(move || source.load())
                    .await
                    .expect("the load task does not panic")
            }
            Configured::Kube(_) => Ok(Loaded {
                config: GatewayConfig::empty(),
                diagnostics: Vec::new(),
                secrets: Default::default(),
                version: None,
            }),
        }
    }

    /// Whether the initial config makes the proxy ready.
    pub fn ready_at_start(&self) -> bool {
        matches!(self, Configured::Files(_))
    }

    /// Starts watching for changes (and, for the Kubernetes source, the first load).
    pub fn spawn(
        self,
        state: Arc<ArcSwap<Runtime>>,
        metrics: Arc<Metrics>,
        pools: Arc<Pools>,
        health: Arc<Health>,
    ) {
        match self {
            Configured::Files(source) => {
                metrics.source_up.set(1);
                watch::spawn(source, state, metrics, pools);
            }
            Configured::Kube(src) => {
                src.spawn(state, metrics, pools, health);
            }
        }
    }
}

/// Where the config comes from.
#[derive(Clone, Debug)]
pub enum Source {
    /// A GatewayConfig JSON file.
    ConfigFile(PathBuf),
    /// A directory of manifests, compiled in-process, and what its files parsed to.
    Manifests(PathBuf, ParseCache),
}

/// What each manifest file parsed to, by path, with a hash of the text it was parsed from:
/// a reload re-reads every file but parses only those whose text changed (parsing is most
/// of a load: 55 MB of YAML for 5,000 APIs and 100,000 keys).
#[derive(Clone, Default)]
pub struct ParseCache(
    #[cfg(feature = "standalone")] pub(crate) Arc<std::sync::Mutex<manifests::Parsed>>,
);

impl std::fmt::Debug for ParseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ParseCache")
    }
}

/// A successfully loaded config and the (warning-only) diagnostics that came with it.
#[derive(Debug)]
pub struct Loaded {
    /// The document, validated.
    pub config: GatewayConfig,
    /// Warnings from compile (never errors: those reject the load).
    pub diagnostics: Vec<Diagnostic>,
    /// Values of the Secrets the config names (WebSocket APIs' `@connections` credentials),
    /// never part of the config itself.
    pub secrets: crate::runtime::Secrets,
    /// `config.content_hash()`, when the source computed it already (it serializes and
    /// hashes the whole document: 0.1-0.2 s at 100,000 routes, so it is done once per load).
    pub version: Option<String>,
}

impl Loaded {
    /// The config's content hash: the one the source computed, else computed now.
    pub fn version(&mut self) -> String {
        self.version
            .take()
            .unwrap_or_else(|| self.config.content_hash())
    }
}

/// Why a load was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file could not be decoded, or the document is invalid.
    #[error("{0}")]
    Decode(String),
    /// Compile reported errors (all diagnostics attached).
    #[error("compile reported {} error(s); the config was not loaded", .0.iter().filter(|d| d.is_error()).count())]
    Rejected(Vec<Diagnostic>),
    /// This build cannot read this source.
    #[error("{0}")]
    Unsupported(&'static str),
}

/// Stat-level fingerprint of the watched files (name, mtime, length), for the poll fallback.
pub type Fingerprint = Vec<(PathBuf, Option<SystemTime>, u64)>;

impl Source {
    /// Loads and validates the config.
    pub fn load(&self) -> Result<Loaded, LoadError> {
        match self {
            Source::ConfigFile(p) => file::load(p),
            #[cfg(feature = "standalone")]
            Source::Manifests(dir, cache) => manifests::load(dir, cache),
            #[cfg(not(feature = "standalone"))]
            Source::Manifests(..) => Err(LoadError::Unsupported(
                "--manifests needs a build with the `standalone` feature",
            )),
        }
    }

    /// The directory to watch.
    pub fn watch_dir(&self) -> PathBuf {
        match self {
            Source::ConfigFile(p) => match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            },
            Source::Manifests(d, _) => d.clone(),
        }
    }

    /// Whether a change to `path` concerns this source.
    pub fn concerns(&self, path: &Path) -> bool {
        match self {
            Source::ConfigFile(p) => path.file_name() == p.file_name(),
            Source::Manifests(..) => is_manifest_file(path),
        }
    }

    /// Stat-level fingerprint of the source's files.
    pub fn fingerprint(&self) -> Fingerprint {
        let files = match self {
            Source::ConfigFile(p) => vec![p.clone()],
            Source::Manifests(d, _) => manifest_files(d).unwrap_or_default(),
        };
        files
            .into_iter()
            .map(|p| {
                let meta = std::fs::metadata(&p).ok();
                let mtime = meta.as_ref().and_then(|m| m.modified().ok());
                let len = meta.map_or(0, |m| m.len());
                (p, mtime, len)
            })
            .collect()
    }
}

/// `*.yaml`, `*.yml`, `*.json`, not hidden.
pub fn is_manifest_file(p: &Path) -> bool {
    let hidden = p
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    !hidden
        && matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        )
}

/// The manifest files directly in `dir`, sorted by name.
pub fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
        .map(|e| e.path())
        .filter(|p| is_manifest_file(p))
        .collect();
    files.sort();
    Ok(files)
}

/// Logs each diagnostic on its own line (errors at error level, warnings at warn).
pub fn log_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        if d.is_error() {
            tracing::error!(object = %d.object, field = %d.field, reason = %d.reason, "{}", d.message);
        } else {
            tracing::warn!(object = %d.object, field = %d.field, reason = %d.reason, "{}", d.message);
        }
    }
}

/// Logs why a load failed (each diagnostic when compile rejected it), at startup.
pub fn log_load_error(e: &LoadError) {
    log_refusal(e, "config not loaded");
}

/// Logs why a load failed, then `outcome` (what is served instead) with the error.
///
/// A load that compile rejected serves nothing of it, so each error diagnostic is logged
/// without the consequence its message ends with (`; the method answers 500`, `; this stage
/// is not served`): those say what happens where a config with errors is published (the
/// operator), not here.
pub fn log_refusal(e: &LoadError, outcome: &str) {
    if let LoadError::Rejected(diags) = e {
        for d in diags {
            if d.is_error() {
                let message = without_consequence(&d.message);
                tracing::error!(object = %d.object, field = %d.field, reason = %d.reason, "{message}");
            } else {
                tracing::warn!(object = %d.object, field = %d.field, reason = %d.reason, "{}", d.message);
            }
        }
    }
    tracing::error!(error = %e, "{outcome}");
}

/// `message` without the trailing clauses in which compile says what it does about an error
/// (what is served instead). A clause is the text after a `"; "`.
fn without_consequence(message: &str) -> &str {
    const CONSEQUENCES: &[&str] = &[
        "answer 500",
        "answers 500",
        "not served",
        "does not apply",
        "are refused",
        "ignored",
        "is off",
        "is used",
    ];
    let mut m = message;
    while let Some((cause, clause)) = m.rsplit_once("; ") {
        if !CONSEQUENCES.iter().any(|c| clause.contains(c)) {
            break;
        }
        m = cause;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_files_are_filtered_by_extension_and_sorted() {
        let dir = std::env::temp_dir().join(format!("portico-src-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for f in [
            "b.yaml",
            "a.yml",
            "c.json",
            "d.txt",
            ".e.yaml",
            "sub/f.yaml",
        ] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let names: Vec<String> = manifest_files(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.yml", "b.yaml", "c.json"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_refused_load_logs_the_cause_without_what_the_operator_would_serve() {
        for (message, cause) in [
            (
                "request validator \"nope\" is not defined in spec.requestValidators; the method answers 500",
                "request validator \"nope\" is not defined in spec.requestValidators",
            ),
            (
                "jwt.issuer is empty; the method answers 500 rather than being served unprotected",
                "jwt.issuer is empty",
            ),
            (
                "bad key; methods using this authorizer answer 500",
                "bad key",
            ),
            (
                "RestApi default/x does not exist; this stage is not served",
                "RestApi default/x does not exist",
            ),
            (
                "the usage plan is not served; its API keys are refused (403) on its stages",
                "the usage plan is not served",
            ),
            (
                "minimumCompressionSize -1 is outside 0..10485760; compression is off",
                "minimumCompressionSize -1 is outside 0..10485760",
            ),
            (
                "RestApi default/a is defined more than once; the first definition is used",
                "RestApi default/a is defined more than once",
            ),
            // Not a consequence: kept whole.
            (
                "stage variable v is 600 characters long; at most 512 are allowed",
                "stage variable v is 600 characters long; at most 512 are allowed",
            ),
            ("no clause at all", "no clause at all"),
        ] {
            assert_eq!(without_consequence(message), cause);
        }
    }
}
