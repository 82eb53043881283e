//! Command-line and environment settings of the scorer.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::auth;
use crate::strategy::Strategy;

/// Whether the scorer watches the cluster's Pods and Nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterWatch {
    Auto,
    On,
    Off,
}

/// fitsched-scorer: keeps the latest window of every node, turns it into a fitness and
/// answers scoring requests over gRPC.
#[derive(Debug, Clone, clap::Parser)]
#[command(version, about)]
pub struct Args {
    /// gRPC listen address (ingest, scoring, reflection, health).
    #[arg(long, env = "FITSCHED_GRPC_LISTEN", default_value = "0.0.0.0:50051")]
    pub grpc_listen: SocketAddr,

    /// HTTP listen address for /health and /metrics.
    #[arg(long, env = "FITSCHED_HTTP_LISTEN", default_value = "0.0.0.0:9090")]
    pub http_listen: SocketAddr,

    /// The agents' window length; staleness is counted in windows.
    #[arg(long, env = "FITSCHED_WINDOW", default_value = "20s", value_parser = humantime::parse_duration)]
    pub window: Duration,

    /// A node whose last window arrived more than this many windows ago is stale.
    #[arg(long, env = "FITSCHED_STALE_AFTER_WINDOWS", default_value_t = 3)]
    pub stale_after_windows: u32,

    /// Strategy for pods without the `fitsched.io/strategy` annotation.
    #[arg(long, env = "FITSCHED_DEFAULT_STRATEGY", default_value = "balanced")]
    pub default_strategy: Strategy,

    /// Watch Pods and Nodes for replica and zone awareness: `auto` does when a Kubernetes
    /// configuration is found (in-cluster service account, KUBECONFIG or ~/.kube/config),
    /// `on` requires one, `off` never watches (replica awareness then rests on the
    /// scorer's own records).
    #[arg(long, env = "FITSCHED_CLUSTER_WATCH", value_enum, default_value = "auto")]
    pub cluster_watch: ClusterWatch,

    /// How long the top-scored node counts as an assumed placement of the pod, until a
    /// bind or the pod watch confirms it.
    #[arg(long, env = "FITSCHED_ASSUME_TTL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub assume_ttl: Duration,

    /// How long a bound placement counts for replica awareness until the pod watch shows
    /// the pod. Without a watch the scorer cannot see pods go away, so bound placements
    /// age out after this.
    #[arg(long, env = "FITSCHED_BOUND_TTL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub bound_ttl: Duration,

    /// Filter: drop nodes whose fitness is below this (off when absent).
    #[arg(long, env = "FITSCHED_FILTER_MIN_FITNESS")]
    pub filter_min_fitness: Option<f64>,

    /// Filter: drop nodes whose mean PSI memory `full` share exceeds this (off when absent).
    #[arg(long, env = "FITSCHED_FILTER_MAX_PSI_MEMORY_FULL")]
    pub filter_max_psi_memory_full: Option<f64>,

    /// PEM certificate chain for TLS on the gRPC port (with --tls-key); plaintext without.
    #[arg(long, env = "FITSCHED_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "FITSCHED_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// `ROLE=PATH`: callers presenting the bearer token held in PATH have ROLE (agent,
    /// scheduler or operator; see `auth`). Repeatable; the environment variable takes a
    /// comma-separated list. Re-read every 10 s, so a rotated Secret needs no restart. An
    /// agent with a token file may stream windows for any node.
    #[arg(long = "token-file", env = "FITSCHED_TOKEN_FILES", value_name = "ROLE=PATH", value_delimiter = ',', value_parser = auth::parse_token_file)]
    pub token_files: Vec<auth::TokenFile>,

    /// The same as `--token-file agent=PATH` (kept for existing installs).
    #[arg(long, env = "FITSCHED_INGEST_TOKEN_FILE")]
    pub ingest_token_file: Option<PathBuf>,

    /// Check bearer tokens with the API server's TokenReview (needs RBAC to create
    /// tokenreviews): service account tokens of the accounts named by
    /// --service-account, for the audience --token-audience.
    #[arg(long, env = "FITSCHED_TOKEN_REVIEW")]
    pub token_review: bool,

    /// The audience a reviewed token must be issued for.
    #[arg(long, env = "FITSCHED_TOKEN_AUDIENCE", default_value = "fitsched-scorer")]
    pub token_audience: String,

    /// `ROLE=NAMESPACE/NAME`: tokens of this service account have ROLE. An agent's
    /// token must be bound to its pod (projected), and it may stream its node's windows
    /// only. Repeatable; the environment variable takes a comma-separated list.
    #[arg(long = "service-account", env = "FITSCHED_SERVICE_ACCOUNTS", value_name = "ROLE=NAMESPACE/NAME", value_delimiter = ',', value_parser = auth::parse_service_account)]
    pub service_accounts: Vec<auth::ServiceAccountRole>,

    /// Serve callers without any token (the demo, tests). Without it the scorer refuses
    /// to start unless --token-file or --token-review says whom to let in.
    #[arg(long, env = "FITSCHED_ALLOW_UNAUTHENTICATED")]
    pub allow_unauthenticated: bool,

    /// Most nodes tracked; windows of further nodes are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "FITSCHED_MAX_NODES", default_value_t = crate::Limits::DEFAULT_MAX_NODES)]
    pub max_nodes: usize,

    /// A node not heard from for this long is forgotten (it was stale long before);
    /// a node deleted from the cluster is forgotten at once when the watch runs.
    #[arg(long, env = "FITSCHED_FORGET_AFTER", default_value = "10m", value_parser = humantime::parse_duration)]
    pub forget_after: Duration,

    /// ONNX fitness model (exported by `onnx/train.py`); needs ORT_DYLIB_PATH. Watched
    /// for changes and hot-reloaded. Without it the documented heuristic is used.
    #[arg(long, env = "FITSCHED_MODEL")]
    pub model: Option<PathBuf>,

    /// How often the model file is checked for changes.
    #[arg(long, env = "FITSCHED_MODEL_POLL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub model_poll: Duration,

    /// How long fitness computation waits to batch windows that arrive together.
    #[arg(long, env = "FITSCHED_BATCH_WINDOW", default_value = "20ms", value_parser = humantime::parse_duration)]
    pub batch_window: Duration,
}

impl Args {
    /// The age after which a node's last window no longer counts.
    pub fn stale_after(&self) -> Duration {
        self.window * self.stale_after_windows.max(1)
    }

    /// The Kubernetes client for the cluster watch, as `--cluster-watch` asks.
    pub async fn cluster_client(&self) -> anyhow::Result<Option<kube::Client>> {
        use anyhow::Context;
        let config = match self.cluster_watch {
            ClusterWatch::Off => return Ok(None),
            ClusterWatch::On => {
                kube::Config::infer().await.context("--cluster-watch on: no Kubernetes configuration")?
            }
            ClusterWatch::Auto => match kube::Config::infer().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::info!(error = %e, "--cluster-watch auto: no Kubernetes configuration found");
                    return Ok(None);
                }
            },
        };
        let server = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
        tracing::info!(%server, "Kubernetes API");
        Ok(Some(client))
    }

    /// Checks the settings clap cannot check on its own.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (name, v) in [
            ("--filter-min-fitness", self.filter_min_fitness),
            ("--filter-max-psi-memory-full", self.filter_max_psi_memory_full),
        ] {
            if let Some(v) = v {
                anyhow::ensure!((0.0..=1.0).contains(&v), "{name} must be within 0..=1, got {v}");
            }
        }
        anyhow::ensure!(!self.window.is_zero(), "--window must be longer than zero");
        anyhow::ensure!(
            self.allow_unauthenticated
                || !self.token_files.is_empty()
                || self.ingest_token_file.is_some()
                || self.token_review,
            "no caller could be authenticated: give --token-file ROLE=PATH or --token-review (with --service-account), \
             or --allow-unauthenticated to serve anyone who reaches the port"
        );
        anyhow::ensure!(
            !self.token_review || !self.service_accounts.is_empty(),
            "--token-review needs at least one --service-account ROLE=NAMESPACE/NAME"
        );
        Ok(())
    }

    /// Every static token file, `--ingest-token-file` included.
    pub fn all_token_files(&self) -> Vec<auth::TokenFile> {
        let ingest =
            self.ingest_token_file.iter().map(|path| auth::TokenFile { role: auth::Role::Agent, path: path.clone() });
        self.token_files.iter().cloned().chain(ingest).collect()
    }
}
