//! Command line: `portico-proxy (--manifests DIR | --config FILE | --kube-configmap NS/NAME)
//! [options]`.
//!
//! The serve options are flattened at the top level so that the plain invocation serves;
//! subcommands (`vtl`) do not need them.

use crate::source::kube::Target;
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Portico data plane.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "portico-proxy",
    version,
    about,
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Options of the (default) serve mode.
    #[command(flatten)]
    pub serve: ServeArgs,
    /// A tool instead of serving.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Render a mapping template offline (as API Gateway's console test does) and print the
    /// result; errors go to stderr with line and column, exit status 1.
    Vtl(VtlArgs),
}

/// Options of `vtl`.
#[derive(Debug, Clone, Args)]
pub struct VtlArgs {
    /// The template (VTL) file.
    #[arg(long, value_name = "FILE")]
    pub template: PathBuf,
    /// The payload (`$input.body`) file; default empty.
    #[arg(long, value_name = "FILE")]
    pub body: Option<PathBuf>,
    /// The request as JSON: `{"params": {"path": {}, "querystring": {}, "header": {}},
    /// "context": {...}, "stageVariables": {...}}`.
    #[arg(long, value_name = "JSON")]
    pub input: Option<String>,
}

/// Log line format on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

/// Options of the serve mode.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["manifests", "config", "kube_configmap"])))]
pub struct ServeArgs {
    /// Directory of manifests (*.yaml, *.yml, *.json), compiled in-process and watched.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    /// A GatewayConfig JSON file, watched.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The ConfigMap the operator publishes, read and watched through the Kubernetes API
    /// (needs get/list/watch on it). Serving starts once it has been loaded (/readyz).
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub kube_configmap: Option<Target>,
    /// Kubeconfig for --kube-configmap (default: $KUBECONFIG, else the in-cluster service
    /// account, else ~/.kube/config).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["config", "manifests"])]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: its current-context).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["config", "manifests"])]
    pub kube_context: Option<String>,
    /// Public listener (`127.0.0.1:0` binds an ephemeral port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Admin listener (/metrics, /healthz, /readyz).
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub admin_listen: SocketAddr,
    /// Serve WebSocket APIs' `@connections` management API only on this listener (e.g. a
    /// cluster-internal port), not on `--listen`. Without it, `@connections` is on `--listen`,
    /// as AWS serves it on the API's own endpoint.
    #[arg(long, value_name = "ADDR")]
    pub management_listen: Option<SocketAddr>,
    /// Tokio worker threads (default: number of CPUs); 1 runs a current-thread runtime.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Largest request head (start line + headers) accepted; larger ones get 431.
    #[arg(long, default_value_t = 16384)]
    pub max_header_bytes: usize,
    /// A client connection that has not sent a complete request head this long after it
    /// opened or after its last response is closed: idle keep-alive connections, and clients
    /// that send a head slowly (slowloris).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub client_header_timeout_seconds: u64,
    /// The longest a client may pause while sending a request body; also the grace period
    /// before --client-body-min-rate applies. A body that breaks either gets 408 (the bytes
    /// already forwarded to a backend are abandoned with the connection).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub client_body_timeout_seconds: u64,
    /// The lowest average rate, in bytes per second, of a request body once
    /// --client-body-timeout-seconds have passed since it began (0: no minimum). Stops a
    /// body trickled slowly enough to never pause for long.
    #[arg(long, default_value_t = 500)]
    pub client_body_min_rate: u64,
    /// What the request bodies being buffered (validation, mapping templates, Lambda events,
    /// chunked bodies checked against the payload cap) may hold in memory together; a body
    /// that would pass it gets 503. Streamed bodies are not counted.
    #[arg(long, default_value_t = 256 * 1024 * 1024)]
    pub max_buffered_request_bytes: u64,
    /// How long in-flight requests may run after SIGTERM/SIGINT.
    #[arg(long, default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "json")]
    pub log_format: LogFormat,
    /// Once serving, write `{"listen":"ADDR","admin":"ADDR"}` (the bound addresses) here.
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// Keep rate-limit and quota counters in this Redis (`redis://HOST:PORT[/DB]`), shared by
    /// every replica pointed at it; without it, counters are per process.
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// PEM bundle of extra CA certificates trusted by `https://` backends and authorizer URLs
    /// (jwksUri, functionUri), besides the bundled Mozilla roots (e.g. a private PKI's root).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// The account id in Lambda events (`requestContext.accountId`) and authorizer method
    /// ARNs: twelve digits, as AWS account ids are.
    #[arg(long, value_name = "ID", default_value = crate::context::DEFAULT_ACCOUNT_ID, value_parser = parse_account_id)]
    pub account_id: String,
    /// Key that seals stage-cache entries in Redis for methods with `cacheDataEncrypted`
    /// (AES-256-GCM): a file holding 64 hex digits (`openssl rand -hex 32`), the same for
    /// every replica. Without it each process seals with a random key of its own (a replica
    /// then cannot read another's encrypted entries: those are misses).
    #[arg(long, value_name = "FILE")]
    pub cache_encryption_key_file: Option<PathBuf>,
    /// When Redis cannot be reached: `open` admits the request (counted in
    /// `portico_shared_state_errors_total{user="ratelimit"}`, logged), `closed` answers 500
    /// DEFAULT_5XX.
    #[arg(long, value_enum, default_value = "open")]
    pub redis_failure_mode: RedisFailureMode,
    /// How many replicas of this proxy may run at once (the Helm chart passes its replica count,
    /// or the HPA's maximum). Used only to warn at start-up when more than one runs without
    /// --redis-url: each replica then counts rate limits and quotas on its own.
    #[arg(
        long,
        env = "PORTICO_EXPECTED_REPLICAS",
        value_name = "N",
        default_value_t = 1
    )]
    pub expected_replicas: u32,
}

impl ServeArgs {
    /// The body read rules these options set.
    pub fn body_timeouts(&self) -> crate::body::BodyTimeouts {
        crate::body::BodyTimeouts {
            idle: std::time::Duration::from_secs(self.client_body_timeout_seconds),
            min_rate: self.client_body_min_rate,
        }
    }

    /// The start-up warning for replicas that would each count limits alone, if it applies.
    pub fn per_replica_limits_warning(&self) -> Option<String> {
        (self.expected_replicas > 1 && self.redis_url.is_none()).then(|| {
            format!(
                "up to {n} replicas and no --redis-url: every replica counts rate limits and \
                 quotas on its own, so usage plans and throttles admit up to {n} times their \
                 limits; point all replicas at one Redis (--redis-url)",
                n = self.expected_replicas
            )
        })
    }
}

/// What a request gets when the Redis counters cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RedisFailureMode {
    /// Admit (limits are not enforced while Redis is down).
    Open,
    /// Refuse with 500 DEFAULT_5XX.
    Closed,
}

fn parse_account_id(s: &str) -> Result<String, String> {
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_string())
    } else {
        Err(format!("{s:?} is not twelve digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_is_required_and_defaults_apply() {
        assert!(Cli::try_parse_from(["portico-proxy"]).is_err());
        assert!(
            Cli::try_parse_from(["portico-proxy", "--config", "a", "--manifests", "b"]).is_err()
        );
        let cli = Cli::try_parse_from(["portico-proxy", "--config", "c.json"]).unwrap();
        assert_eq!(cli.serve.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(cli.serve.admin_listen.to_string(), "127.0.0.1:9901");
        assert_eq!(cli.serve.max_header_bytes, 16384);
        assert_eq!(cli.serve.shutdown_grace_seconds, 30);
        assert_eq!(cli.serve.log_format, LogFormat::Json);
        assert_eq!(cli.serve.redis_url, None);
        assert_eq!(cli.serve.redis_failure_mode, RedisFailureMode::Open);
        assert_eq!(cli.serve.expected_replicas, 1);
        let cli = Cli::try_parse_from([
            "portico-proxy",
            "--manifests",
            "d",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--log-format",
            "text",
            "--ready-file",
            "r.json",
        ])
        .unwrap();
        assert_eq!(cli.serve.workers, Some(1));
        assert_eq!(cli.serve.listen.port(), 0);
    }

    #[test]
    fn replicas_without_redis_warn() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["portico-proxy", "--config", "c.json"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args).unwrap().serve
        };
        assert_eq!(parse(&[]).per_replica_limits_warning(), None);
        let warning = parse(&["--expected-replicas", "10"])
            .per_replica_limits_warning()
            .unwrap();
        assert!(warning.contains("up to 10 times"), "{warning}");
        let shared = parse(&["--expected-replicas", "10", "--redis-url", "redis://r:6379"]);
        assert_eq!(shared.per_replica_limits_warning(), None);
    }

    #[test]
    fn vtl_is_a_subcommand_without_a_source() {
        let cli = Cli::try_parse_from([
            "portico-proxy",
            "vtl",
            "--template",
            "t.vm",
            "--input",
            "{}",
        ])
        .unwrap();
        let Some(Command::Vtl(a)) = cli.command else {
            panic!("expected vtl");
        };
        assert_eq!(a.template.to_str(), Some("t.vm"));
        assert_eq!(a.input.as_deref(), Some("{}"));
        assert!(a.body.is_none());
        assert!(Cli::try_parse_from(["portico-proxy", "vtl"]).is_err());
        assert!(
            Cli::try_parse_from(["portico-proxy", "--config", "c", "vtl", "--template", "t"])
                .is_err()
        );
    }

    #[test]
    fn kube_configmap_is_a_third_source() {
        let cli = Cli::try_parse_from([
            "portico-proxy",
            "--kube-configmap",
            "portico-system/portico-gateway-config",
            "--kubeconfig",
            "kc.yaml",
            "--kube-context",
            "kind",
        ])
        .unwrap();
        let t = cli.serve.kube_configmap.unwrap();
        assert_eq!(
            (t.namespace.as_str(), t.name.as_str()),
            ("portico-system", "portico-gateway-config")
        );
        assert_eq!(cli.serve.kubeconfig.unwrap().to_str(), Some("kc.yaml"));
        assert_eq!(cli.serve.kube_context.as_deref(), Some("kind"));
        for bad in [
            &["portico-proxy", "--kube-configmap", "no-slash"][..],
            &[
                "portico-proxy",
                "--kube-configmap",
                "a/b",
                "--config",
                "c.json",
            ],
            &[
                "portico-proxy",
                "--config",
                "c.json",
                "--kubeconfig",
                "kc.yaml",
            ],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
