//! Command line and environment.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::binder::{Binder, BinderKind};
use crate::client::ClientConfig;
use crate::quantity;

/// fitsched's kube-scheduler extender: answers `filter`, `prioritize` and `bind` by
/// asking the scorer over gRPC, and answers neutrally when the scorer cannot.
#[derive(Debug, Clone, Parser)]
#[command(name = "fitsched-shim", version, about)]
pub struct Args {
    /// HTTP address kube-scheduler posts to.
    #[arg(long, env = "FITSCHED_SHIM_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// gRPC URL of the scorer.
    #[arg(long, env = "FITSCHED_SCORER", default_value = "http://127.0.0.1:50051")]
    pub scorer: String,

    /// Longest wait for the scorer's Filter/Score answer (`300ms`, `1s`); past it the
    /// shim answers neutrally.
    #[arg(long, env = "FITSCHED_SHIM_DEADLINE", default_value = "300ms", value_parser = parse_deadline)]
    pub deadline: Duration,

    /// Longest time for a whole `/bind`: creating the Binding and telling the scorer. A
    /// Binding not created within it is reported failed (kube-scheduler retries the pod);
    /// a notice cut short is not (the Binding exists).
    #[arg(long, env = "FITSCHED_SHIM_BIND_DEADLINE", default_value = "2s", value_parser = parse_deadline)]
    pub bind_deadline: Duration,

    /// PEM CA that signed the scorer's certificate; needed for an `https://` --scorer.
    #[arg(long, env = "FITSCHED_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,

    /// Name to check in the scorer's certificate, when it differs from --scorer's host.
    #[arg(long, env = "FITSCHED_TLS_DOMAIN")]
    pub tls_domain: Option<String>,

    /// Who creates the Binding on `/bind`: `kubernetes` (the API server, with the
    /// in-cluster service account or KUBECONFIG; needed at start) or `scorer-only`
    /// (nobody: for scheduler simulators without an API server, the scorer is told only).
    #[arg(long, env = "FITSCHED_SHIM_BINDER", value_enum, default_value = "kubernetes")]
    pub binder: BinderKind,

    /// PEM certificate chain for HTTPS on --listen (with --tls-key), for an extender
    /// entry with `enableHTTPS: true`; plain HTTP without.
    #[arg(long, env = "FITSCHED_SHIM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "FITSCHED_SHIM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// Largest accepted request body, in bytes or as a quantity (`64Mi`). A full-mode
    /// body for 5 000 nodes is 20-40 MB.
    #[arg(long, env = "FITSCHED_SHIM_MAX_BODY_BYTES", default_value = "64Mi", value_parser = parse_body_limit)]
    pub max_body_bytes: usize,
}

impl Args {
    /// The router settings these arguments describe.
    pub fn shim_config(&self) -> ShimConfig {
        let mut client = ClientConfig::new(self.scorer.clone());
        client.deadline = self.deadline;
        client.bind_deadline = self.bind_deadline;
        client.tls_ca = self.tls_ca.clone();
        client.tls_domain = self.tls_domain.clone();
        ShimConfig { client, max_body_bytes: self.max_body_bytes, binder: Binder::ScorerOnly }
    }
}

/// Everything [`crate::router`] needs.
#[derive(Debug, Clone)]
pub struct ShimConfig {
    pub client: ClientConfig,
    pub max_body_bytes: usize,
    /// Who creates Bindings; [`Args::shim_config`] leaves `ScorerOnly`, [`crate::run`]
    /// sets what `--binder` asks for (it needs a Kubernetes client, built async).
    pub binder: Binder,
}

impl ShimConfig {
    /// Defaults (300 ms deadline, 64 MiB body limit, no Binding created) against the
    /// scorer at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self { client: ClientConfig::new(url), max_body_bytes: 64 << 20, binder: Binder::ScorerOnly }
    }
}

fn parse_deadline(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (write e.g. 300ms or 1s)"))?;
    if d.is_zero() {
        return Err("a deadline of zero would make every call fall back".into());
    }
    Ok(d)
}

fn parse_body_limit(s: &str) -> Result<usize, String> {
    let n = quantity::bytes(s).map_err(|e| e.to_string())?;
    usize::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| format!("{s:?}: must be a positive number of bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let a = Args::try_parse_from(["fitsched-shim"]).unwrap();
        assert_eq!(a.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(a.deadline, Duration::from_millis(300));
        assert_eq!(a.bind_deadline, Duration::from_secs(2));
        assert_eq!(a.max_body_bytes, 64 << 20);
        assert_eq!(a.binder, BinderKind::Kubernetes);
        assert!(a.tls_cert.is_none());
        let c = a.shim_config();
        assert_eq!(c.client.deadline, Duration::from_millis(300));
        assert_eq!(c.max_body_bytes, 64 << 20);
    }

    #[test]
    fn flags() {
        let a = Args::try_parse_from([
            "fitsched-shim",
            "--listen",
            "127.0.0.1:9",
            "--scorer",
            "http://scorer:50051",
            "--deadline",
            "1s",
            "--max-body-bytes",
            "1048576",
        ])
        .unwrap();
        assert_eq!(a.deadline, Duration::from_secs(1));
        assert_eq!(a.max_body_bytes, 1 << 20);
        assert_eq!(a.shim_config().client.url, "http://scorer:50051");
        assert!(Args::try_parse_from(["fitsched-shim", "--deadline", "0s"]).is_err());
        assert!(Args::try_parse_from(["fitsched-shim", "--tls-cert", "c.pem"]).is_err(), "a cert needs its key");
        assert!(Args::try_parse_from(["fitsched-shim", "--binder", "magic"]).is_err());
        let b = Args::try_parse_from(["fitsched-shim", "--binder", "scorer-only"]).unwrap();
        assert_eq!(b.binder, BinderKind::ScorerOnly);
        assert!(Args::try_parse_from(["fitsched-shim", "--deadline", "soon"]).is_err());
        assert!(Args::try_parse_from(["fitsched-shim", "--max-body-bytes", "0"]).is_err());
        assert!(Args::try_parse_from(["fitsched-shim", "--max-body-bytes", "lots"]).is_err());
    }
}
