//! Where the API server is and how to authenticate: a kubeconfig file or the in-cluster
//! service account.
//!
//! ```text
//!  --kubeconfig F | $KUBECONFIG (a:b:c, merged first-wins) ─> current-context (or --kube-context)
//!        └─> cluster { server, certificate-authority(-data), insecure-skip-tls-verify }
//!            user    { token | tokenFile | client-certificate/key(-data) | username/password }
//!  else $KUBERNETES_SERVICE_HOST/PORT ─> https://host:port, token file (re-read), ca.crt
//!  else ~/.kube/config
//! ```
//!
//! Entry point: [`Settings::infer`]. `exec` and `auth-provider` users are refused: the proxy
//! runs in-cluster, where the service-account token is the credential.

use crate::tls::{self, TlsOptions};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The service-account mount of every pod.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Why the API server settings could not be determined.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The kubeconfig is not valid YAML of the expected shape.
    #[error("kubeconfig {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The kubeconfig names something it does not define, or uses an unsupported feature.
    #[error("kubeconfig: {0}")]
    Invalid(String),
    /// Neither a kubeconfig nor an in-cluster environment was found.
    #[error(
        "no Kubernetes API settings: pass --kubeconfig, set KUBECONFIG, or run in a pod (KUBERNETES_SERVICE_HOST)"
    )]
    NotFound,
    /// TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// How requests authenticate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// No `Authorization` header (client certificates, or an open test server).
    None,
    /// A fixed bearer token.
    Token(String),
    /// A bearer token read from this file before each request (bound tokens rotate).
    TokenFile(PathBuf),
    /// HTTP basic auth.
    Basic {
        /// User.
        username: String,
        /// Password.
        password: String,
    },
}

impl Auth {
    /// The `Authorization` header value, if any (reads the token file now).
    pub fn header(&self) -> Result<Option<String>, ConfigError> {
        Ok(match self {
            Auth::None => None,
            Auth::Token(t) => Some(format!("Bearer {t}")),
            Auth::TokenFile(p) => {
                let t = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?;
                Some(format!("Bearer {}", t.trim()))
            }
            Auth::Basic { username, password } => Some(format!(
                "Basic {}",
                B64.encode(format!("{username}:{password}"))
            )),
        })
    }
}

/// Everything needed to talk to one API server.
#[derive(Debug)]
pub struct Settings {
    /// `https://host:port` or `http://host:port` (tests), no trailing slash.
    pub server: String,
    /// TLS trust and client identity (unused for `http://`).
    pub tls: TlsOptions,
    /// Credentials.
    pub auth: Auth,
}

impl Settings {
    /// `--kubeconfig` if given, else `$KUBECONFIG`, else in-cluster, else `~/.kube/config`.
    pub fn infer(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<Self, ConfigError> {
        if let Some(p) = kubeconfig {
            return Self::from_kubeconfig(&[p.to_path_buf()], context);
        }
        if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
            let paths: Vec<PathBuf> = std::env::split_paths(&list)
                .filter(|p| !p.as_os_str().is_empty())
                .collect();
            return Self::from_kubeconfig(&paths, context);
        }
        if let (Ok(host), Ok(port)) = (
            std::env::var("KUBERNETES_SERVICE_HOST"),
            std::env::var("KUBERNETES_SERVICE_PORT"),
        ) {
            return Self::in_cluster(&host, &port, Path::new(SERVICE_ACCOUNT_DIR));
        }
        if let Some(home) = std::env::var_os("HOME") {
            let p = Path::new(&home).join(".kube/config");
            if p.exists() {
                return Self::from_kubeconfig(&[p], context);
            }
        }
        Err(ConfigError::NotFound)
    }

    /// In-cluster: `https://host:port`, the mounted CA, the mounted (rotating) token.
    pub fn in_cluster(host: &str, port: &str, sa_dir: &Path) -> Result<Self, ConfigError> {
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let ca_path = sa_dir.join("ca.crt");
        let ca = read(&ca_path)?;
        Ok(Settings {
            server: format!("https://{host}:{port}"),
            tls: TlsOptions {
                roots: tls::parse_certs(&ca_path.display().to_string(), &ca)?,
                ..Default::default()
            },
            auth: Auth::TokenFile(sa_dir.join("token")),
        })
    }

    /// Reads and merges kubeconfig files (first definition of a name wins, as kubectl).
    pub fn from_kubeconfig(paths: &[PathBuf], context: Option<&str>) -> Result<Self, ConfigError> {
        let mut merged = Kubeconfig::default();
        let mut any = false;
        for p in paths {
            if !p.exists() && paths.len() > 1 {
                continue;
            }
            let text = read(p)?;
            let mut kc: Kubeconfig =
                serde_yaml::from_slice(&text).map_err(|e| ConfigError::Parse {
                    path: p.clone(),
                    message: e.to_string(),
                })?;
            let base = p.parent().unwrap_or(Path::new(".")).to_path_buf();
            kc.rebase(&base);
            merged.merge(kc);
            any = true;
        }
        if !any {
            return Err(ConfigError::NotFound);
        }
        merged.settings(context)
    }
}

fn read(p: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(p).map_err(|source| ConfigError::Read {
        path: p.to_path_buf(),
        source,
    })
}

/// The subset of a kubeconfig the proxy reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Kubeconfig {
    /// Context used when none is asked for.
    #[serde(default)]
    pub current_context: Option<String>,
    /// Named clusters.
    #[serde(default)]
    pub clusters: Vec<Named<Cluster>>,
    /// Named users.
    #[serde(default, rename = "users")]
    pub users: Vec<Named<User>>,
    /// Named contexts.
    #[serde(default)]
    pub contexts: Vec<Named<Context>>,
}

/// `{name, <kind>: {...}}` entries.
#[derive(Debug, Deserialize)]
pub struct Named<T> {
    /// Entry name.
    pub name: String,
    /// Entry body (`cluster`, `user` or `context`).
    #[serde(alias = "cluster", alias = "user", alias = "context", default)]
    pub value: Option<T>,
}

/// A cluster entry.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Cluster {
    /// API server URL.
    pub server: Option<String>,
    /// CA file.
    pub certificate_authority: Option<PathBuf>,
    /// CA PEM, base64.
    pub certificate_authority_data: Option<String>,
    /// Accept any server certificate.
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
}

/// A user entry.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct User {
    /// Bearer token.
    pub token: Option<String>,
    /// File holding a bearer token.
    #[serde(rename = "tokenFile")]
    pub token_file: Option<PathBuf>,
    /// Client certificate file.
    pub client_certificate: Option<PathBuf>,
    /// Client certificate PEM, base64.
    pub client_certificate_data: Option<String>,
    /// Client key file.
    pub client_key: Option<PathBuf>,
    /// Client key PEM, base64.
    pub client_key_data: Option<String>,
    /// Basic auth user.
    pub username: Option<String>,
    /// Basic auth password.
    pub password: Option<String>,
    /// Credential plugin (not supported).
    pub exec: Option<serde_yaml::Value>,
    /// Legacy auth provider (not supported).
    pub auth_provider: Option<serde_yaml::Value>,
}

/// A context entry.
#[derive(Debug, Default, Deserialize)]
pub struct Context {
    /// Cluster name.
    pub cluster: String,
    /// User name.
    #[serde(default)]
    pub user: Option<String>,
}

impl Kubeconfig {
    /// Makes relative file references relative to the kubeconfig's directory (as kubectl).
    fn rebase(&mut self, base: &Path) {
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(path) = p.as_mut().filter(|p| p.is_relative()) {
                *path = base.join(&*path);
            }
        };
        for c in self.clusters.iter_mut().filter_map(|c| c.value.as_mut()) {
            fix(&mut c.certificate_authority);
        }
        for u in self.users.iter_mut().filter_map(|u| u.value.as_mut()) {
            fix(&mut u.token_file);
            fix(&mut u.client_certificate);
            fix(&mut u.client_key);
        }
    }

    fn merge(&mut self, other: Kubeconfig) {
        if self.current_context.is_none() {
            self.current_context = other.current_context.filter(|c| !c.is_empty());
        }
        fn extend<T>(into: &mut Vec<Named<T>>, from: Vec<Named<T>>) {
            for e in from {
                if !into.iter().any(|x| x.name == e.name) {
                    into.push(e);
                }
            }
        }
        extend(&mut self.clusters, other.clusters);
        extend(&mut self.users, other.users);
        extend(&mut self.contexts, other.contexts);
    }

    /// Resolves the context into connection settings.
    pub fn settings(&self, context: Option<&str>) -> Result<Settings, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(m);
        let ctx_name = context
            .map(str::to_string)
            .or_else(|| self.current_context.clone())
            .ok_or_else(|| invalid("no current-context (pass --kube-context)".into()))?;
        let ctx = find(&self.contexts, &ctx_name)
            .ok_or_else(|| invalid(format!("context {ctx_name:?} not found")))?;
        let cluster = find(&self.clusters, &ctx.cluster)
            .ok_or_else(|| invalid(format!("cluster {:?} not found", ctx.cluster)))?;
        let default_user = User::default();
        let user = match &ctx.user {
            Some(u) if !u.is_empty() => {
                find(&self.users, u).ok_or_else(|| invalid(format!("user {u:?} not found")))?
            }
            _ => &default_user,
        };
        let server = cluster
            .server
            .as_deref()
            .ok_or_else(|| invalid(format!("cluster {:?} has no server", ctx.cluster)))?
            .trim_end_matches('/')
            .to_string();
        if !(server.starts_with("https://") || server.starts_with("http://")) {
            return Err(invalid(format!("server {server:?} is not an http(s) URL")));
        }
        if user.exec.is_some() || user.auth_provider.is_some() {
            return Err(invalid(
                "exec and auth-provider credentials are not supported; use a token, a tokenFile or a client certificate".into(),
            ));
        }

        let mut tls = TlsOptions {
            insecure_skip_verify: cluster.insecure_skip_tls_verify,
            ..Default::default()
        };
        if let Some(pem) = data_or_file(
            "certificate-authority",
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
        )? {
            tls.roots = tls::parse_certs("certificate-authority", &pem)?;
        }
        let cert = data_or_file(
            "client-certificate",
            &user.client_certificate_data,
            &user.client_certificate,
        )?;
        let key = data_or_file("client-key", &user.client_key_data, &user.client_key)?;
        match (cert, key) {
            (Some(c), Some(k)) => {
                let chain: Vec<CertificateDer<'static>> =
                    tls::parse_certs("client-certificate", &c)?;
                let key: PrivateKeyDer<'static> = tls::parse_key("client-key", &k)?;
                tls.client_auth = Some((chain, key));
            }
            (None, None) => {}
            _ => {
                return Err(invalid(
                    "client-certificate and client-key must be given together".into(),
                ));
            }
        }
        if server.starts_with("https://") && tls.roots.is_empty() && !tls.insecure_skip_verify {
            return Err(invalid(format!(
                "cluster {:?}: https server without certificate-authority(-data) or insecure-skip-tls-verify",
                ctx.cluster
            )));
        }

        let auth = if let Some(t) = &user.token {
            Auth::Token(t.clone())
        } else if let Some(p) = &user.token_file {
            Auth::TokenFile(p.clone())
        } else if let (Some(u), Some(p)) = (&user.username, &user.password) {
            Auth::Basic {
                username: u.clone(),
                password: p.clone(),
            }
        } else {
            Auth::None
        };
        Ok(Settings { server, tls, auth })
    }
}

fn find<'a, T>(entries: &'a [Named<T>], name: &str) -> Option<&'a T> {
    entries
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_ref())
}

/// `*-data` (base64 PEM) wins over the file reference.
fn data_or_file(
    what: &str,
    data: &Option<String>,
    file: &Option<PathBuf>,
) -> Result<Option<Vec<u8>>, ConfigError> {
    if let Some(d) = data.as_deref().filter(|d| !d.is_empty()) {
        let clean: String = d.split_whitespace().collect();
        return B64
            .decode(clean)
            .map(Some)
            .map_err(|e| ConfigError::Invalid(format!("{what}-data is not base64: {e}")));
    }
    match file {
        Some(p) => read(p).map(Some),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("portico-kc-{}-{name}", std::process::id()))
    }

    const KC: &str = r#"
apiVersion: v1
kind: Config
current-context: test
clusters:
  - name: local
    cluster:
      server: http://127.0.0.1:6443/
  - name: secure
    cluster:
      server: https://10.0.0.1:6443
      insecure-skip-tls-verify: true
  - name: noca
    cluster:
      server: https://10.0.0.1:6443
users:
  - name: tok
    user:
      token: abc
  - name: file
    user:
      tokenFile: tok.txt
  - name: basic
    user:
      username: u
      password: p
  - name: plugin
    user:
      exec:
        command: aws
contexts:
  - name: test
    context:
      cluster: local
      user: tok
      namespace: default
  - name: f
    context: {cluster: secure, user: file}
  - name: b
    context: {cluster: local, user: basic}
  - name: anon
    context: {cluster: local}
  - name: x
    context: {cluster: local, user: plugin}
  - name: n
    context: {cluster: noca, user: tok}
  - name: missing
    context: {cluster: nope, user: tok}
"#;

    #[test]
    fn kubeconfig_contexts_resolve_to_settings() {
        let dir = tmp("ctx");
        let p = write(&dir, "config", KC);
        write(&dir, "tok.txt", "rotated-1\n");
        let s = Settings::from_kubeconfig(std::slice::from_ref(&p), None).unwrap();
        assert_eq!(s.server, "http://127.0.0.1:6443");
        assert_eq!(s.auth, Auth::Token("abc".into()));
        assert_eq!(s.auth.header().unwrap().as_deref(), Some("Bearer abc"));

        let s = Settings::from_kubeconfig(std::slice::from_ref(&p), Some("f")).unwrap();
        assert!(s.tls.insecure_skip_verify);
        // Relative token files are relative to the kubeconfig, and re-read on every request.
        assert_eq!(s.auth, Auth::TokenFile(dir.join("tok.txt")));
        assert_eq!(
            s.auth.header().unwrap().as_deref(),
            Some("Bearer rotated-1")
        );
        write(&dir, "tok.txt", "rotated-2");
        assert_eq!(
            s.auth.header().unwrap().as_deref(),
            Some("Bearer rotated-2")
        );

        let s = Settings::from_kubeconfig(std::slice::from_ref(&p), Some("b")).unwrap();
        assert_eq!(s.auth.header().unwrap().as_deref(), Some("Basic dTpw"));
        let s = Settings::from_kubeconfig(std::slice::from_ref(&p), Some("anon")).unwrap();
        assert_eq!(s.auth, Auth::None);

        for (ctx, msg) in [
            ("x", "exec"),
            ("n", "without certificate-authority"),
            ("missing", "cluster \"nope\" not found"),
            ("nope", "context \"nope\" not found"),
        ] {
            let e = Settings::from_kubeconfig(std::slice::from_ref(&p), Some(ctx))
                .unwrap_err()
                .to_string();
            assert!(e.contains(msg), "{ctx}: {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kubeconfig_files_merge_first_wins() {
        let dir = tmp("merge");
        let a = write(
            &dir,
            "a",
            "clusters: [{name: c, cluster: {server: 'http://a:1'}}]\ncontexts: [{name: k, context: {cluster: c}}]\n",
        );
        let b = write(
            &dir,
            "b",
            "current-context: k\nclusters: [{name: c, cluster: {server: 'http://b:1'}}]\n",
        );
        let s = Settings::from_kubeconfig(&[a, dir.join("absent"), b], None).unwrap();
        assert_eq!(s.server, "http://a:1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_kubeconfigs_are_refused() {
        let dir = tmp("bad");
        let p = write(&dir, "config", "clusters: 7\n");
        assert!(matches!(
            Settings::from_kubeconfig(std::slice::from_ref(&p), None),
            Err(ConfigError::Parse { .. })
        ));
        let p = write(
            &dir,
            "config2",
            "current-context: k\nclusters: [{name: c, cluster: {server: 'https://a', certificate-authority-data: '!!'}}]\ncontexts: [{name: k, context: {cluster: c}}]\n",
        );
        let e = Settings::from_kubeconfig(&[p], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not base64"), "{e}");
        assert!(matches!(
            Settings::from_kubeconfig(&[dir.join("absent")], None),
            Err(ConfigError::Read { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn in_cluster_needs_the_ca_and_brackets_ipv6() {
        let dir = tmp("sa");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(matches!(
            Settings::in_cluster("10.96.0.1", "443", &dir),
            Err(ConfigError::Read { .. })
        ));
        write(&dir, "ca.crt", "not a pem");
        assert!(matches!(
            Settings::in_cluster("fd00::1", "443", &dir),
            Err(ConfigError::Tls(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
