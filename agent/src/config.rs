//! Command-line and environment configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;

/// fitsched node agent: samples procfs/PSI every tick, summarises the samples in
/// wall-clock-aligned windows and streams them to the fitsched scorer.
#[derive(Debug, Clone, Parser)]
#[command(name = "fitsched-agent", version, about)]
pub struct Args {
    /// Name of the Kubernetes node this agent reports for [default: the hostname].
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,

    /// gRPC address of the scorer's Ingest service.
    #[arg(long, env = "FITSCHED_SCORER", default_value = "http://127.0.0.1:50051")]
    pub scorer: String,

    /// Address of the HTTP server for /health and /metrics.
    #[arg(long, env = "FITSCHED_AGENT_LISTEN", default_value = "0.0.0.0:9100")]
    pub listen: SocketAddr,

    /// Window length (e.g. 20s, 500ms, 1m); windows are aligned to wall-clock multiples of it.
    #[arg(long, env = "FITSCHED_WINDOW", default_value = "20s", value_parser = humantime::parse_duration)]
    pub window: Duration,

    /// Sampling tick inside a window.
    #[arg(long, env = "FITSCHED_TICK", default_value = "1s", value_parser = humantime::parse_duration)]
    pub tick: Duration,

    /// Maximum number of unacknowledged windows kept for resending; the oldest is dropped beyond it.
    #[arg(long, env = "FITSCHED_BUFFER", default_value_t = 30)]
    pub buffer: usize,

    /// Simulate N nodes instead of reading this machine (0 = real collector).
    #[arg(long, env = "FITSCHED_SIMULATE", default_value_t = 0)]
    pub simulate: u32,

    /// Name prefix of simulated nodes (`sim-node-01`, `sim-node-02`, ...).
    #[arg(long, env = "FITSCHED_SIMULATE_PREFIX", default_value = crate::simulate::PREFIX)]
    pub simulate_prefix: String,

    /// PEM CA that signed the scorer's certificate; needed for an `https://` --scorer.
    #[arg(long, env = "FITSCHED_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// Name to check in the scorer's certificate, when it differs from --scorer's host.
    #[arg(long, env = "FITSCHED_TLS_DOMAIN")]
    pub tls_domain: Option<String>,

    /// File holding the bearer token the scorer expects on the ingest stream.
    #[arg(long, env = "FITSCHED_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Where procfs is mounted (a host's /proc mounted elsewhere in a container, or test fixtures).
    #[arg(long, env = "FITSCHED_PROC_ROOT", default_value = "/proc")]
    pub proc_root: PathBuf,

    /// Where sysfs is mounted (a container mounts the host's elsewhere).
    #[arg(long, env = "FITSCHED_SYS_ROOT", default_value = "/sys")]
    pub sys_root: PathBuf,

    /// Base URL of the node's pcm-sensor-server (Intel PCM; in the chart a privileged
    /// sidecar on http://127.0.0.1:9738). Without it the PCM metrics are reported missing.
    #[arg(long, env = "FITSCHED_PCM_URL")]
    pub pcm_url: Option<String>,

    /// The host's cgroup root to read the kubepods cgroup from: a cgroup v2 mount, or a
    /// v1 or hybrid host's /sys/fs/cgroup with its hierarchies (cpu, cpuacct, memory,
    /// unified) inside (default: found in /proc/self/mountinfo).
    #[arg(long, env = "FITSCHED_CGROUP_ROOT")]
    pub cgroup_root: Option<PathBuf>,

    /// Replays the windows this JSON file holds for the nodes it names, read again at
    /// every window boundary, instead of measuring (evaluations; see `replay`).
    #[arg(long, env = "FITSCHED_REPLAY", conflicts_with = "simulate")]
    pub replay: Option<PathBuf>,

    /// Seed of the simulation; the same seed gives the same simulated values.
    #[arg(long, env = "FITSCHED_SEED", default_value_t = 1)]
    pub seed: u64,
}

impl Args {
    /// Checks the combinations clap cannot express.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.tick < Duration::from_millis(1) {
            bail!("--tick must be at least 1ms (got {:?})", self.tick);
        }
        if self.window < self.tick {
            bail!("--window ({:?}) must not be shorter than --tick ({:?})", self.window, self.tick);
        }
        if !self.window.subsec_nanos().is_multiple_of(1_000_000) {
            // Windows are aligned and reported in whole milliseconds.
            bail!("--window must be a whole number of milliseconds (got {:?})", self.window);
        }
        if self.buffer == 0 {
            bail!("--buffer must be at least 1");
        }
        if self.scorer.trim().is_empty() {
            bail!("--scorer must not be empty");
        }
        if let Some(name) = &self.node_name
            && name.trim().is_empty()
        {
            bail!("--node-name / NODE_NAME is set but empty");
        }
        Ok(())
    }

    /// The node name to report: `--node-name`, else the kernel's hostname, else `$HOSTNAME`.
    pub fn resolve_node_name(&self) -> anyhow::Result<String> {
        if let Some(name) = &self.node_name {
            return Ok(name.trim().to_owned());
        }
        let from_kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
        let from_env = std::env::var("HOSTNAME").ok();
        from_kernel
            .into_iter()
            .chain(from_env)
            .map(|s| s.trim().to_owned())
            .find(|s| !s.is_empty())
            .context("cannot determine the node name: pass --node-name or set NODE_NAME")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let args = Args::try_parse_from(["fitsched-agent", "--node-name", "n1"]).unwrap();
        assert_eq!(args.window, Duration::from_secs(20));
        assert_eq!(args.tick, Duration::from_secs(1));
        assert_eq!(args.buffer, 30);
        assert_eq!(args.simulate, 0);
        assert_eq!(args.listen.port(), 9100);
        args.validate().unwrap();
        assert_eq!(args.resolve_node_name().unwrap(), "n1");

        let args = Args::try_parse_from(["fitsched-agent", "--window", "500ms", "--tick", "1s"]).unwrap();
        assert!(args.validate().is_err());
        let args = Args::try_parse_from(["fitsched-agent", "--buffer", "0"]).unwrap();
        assert!(args.validate().is_err());
        assert!(Args::try_parse_from(["fitsched-agent", "--window", "20"]).is_err());
    }
}
