//! Command-line and environment settings of the scorer.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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

    /// File holding the bearer token agents must present on `Ingest/Stream`; re-read
    /// for every new stream, so a rotated Secret takes effect without a restart. Without
    /// it any client may stream windows (rely on a NetworkPolicy then).
    #[arg(long, env = "FITSCHED_INGEST_TOKEN_FILE")]
    pub ingest_token_file: Option<PathBuf>,

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
        Ok(())
    }
}
