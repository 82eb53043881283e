//! Command line and environment.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::binder::{Binder, BinderKind};
use crate::client::ClientConfig;
use crate::fallback::Deadlines;
use fitsched_proto::quantity;

/// fitsched's kube-scheduler extender: answers `filter`, `prioritize` and `bind` by
/// asking the scorer over gRPC, and answers neutrally when the scorer cannot.
#[derive(Debug, Clone, Parser)]
#[command(name = "fitsched-shim", version, about)]
pub struct Args {
    /// HTTP address kube-scheduler posts to. Loopback by default: whoever reaches this
    /// port can have pods bound with kube-scheduler's identity (`--binder kubernetes`), so
    /// only the kube-scheduler beside the shim should. Widen it only behind a
    /// NetworkPolicy, with HTTPS.
    #[arg(long, env = "FITSCHED_SHIM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// HTTP address of `/metrics` and `/health`, apart from the verbs so that scrapers
    /// and probes can be let in without letting them bind pods.
    #[arg(long, env = "FITSCHED_SHIM_METRICS_LISTEN", default_value = "127.0.0.1:9091")]
    pub metrics_listen: SocketAddr,

    /// Longest time a client may take to send a request head; then the connection is
    /// closed.
    #[arg(long, env = "FITSCHED_SHIM_HEADER_READ_TIMEOUT", default_value = "5s", value_parser = parse_deadline)]
    pub header_read_timeout: Duration,

    /// Longest time a client may take to send a request body; then it is answered 408.
    #[arg(long, env = "FITSCHED_SHIM_BODY_READ_TIMEOUT", default_value = "10s", value_parser = parse_deadline)]
    pub body_read_timeout: Duration,

    /// Most open connections per listener; more wait in the listen backlog.
    #[arg(long, env = "FITSCHED_SHIM_MAX_CONNECTIONS", default_value_t = 256)]
    pub max_connections: usize,

    /// Most request-body bytes held at once, over all requests (bytes or a quantity). A
    /// request whose body would exceed it is answered 503 at once; with the default, two
    /// largest bodies fit, and any number of the usual few-KB ones.
    #[arg(long, env = "FITSCHED_SHIM_MAX_BODY_BYTES_IN_FLIGHT", default_value = "128Mi", value_parser = parse_body_limit)]
    pub max_body_bytes_in_flight: usize,

    /// gRPC URL of the scorer.
    #[arg(long, env = "FITSCHED_SCORER", default_value = "http://127.0.0.1:50051")]
    pub scorer: String,

    /// Longest wait for the scorer's Filter/Score answer (`300ms`, `1s`); past it the
    /// shim answers neutrally.
    #[arg(long, env = "FITSCHED_SHIM_DEADLINE", default_value = "300ms", value_parser = parse_deadline)]
    pub deadline: Duration,

    /// Longest time for a whole `/bind`: creating the Binding and telling the scorer. A
    /// Binding not created within it is reported failed (kube-scheduler binds the pod
    /// itself when the extender is ignorable); a notice cut short is not (the Binding
    /// exists). Keep it at least 500 ms under kube-scheduler's `httpTimeout`, as the chart
    /// does, so the shim's answer arrives before kube-scheduler stops waiting for it.
    #[arg(long, env = "FITSCHED_SHIM_BIND_DEADLINE", default_value = "1s", value_parser = parse_deadline)]
    pub bind_deadline: Duration,

    /// PEM CA that signed the scorer's certificate; needed for an `https://` --scorer.
    #[arg(long, env = "FITSCHED_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,

    /// File with the bearer token the scorer knows the shim by (role `scheduler`): a
    /// projected service account token or a Secret; re-read every 10 s.
    #[arg(long, env = "FITSCHED_SHIM_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,

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

    /// `NAME=STRATEGY`: the strategy (spread, pack or balanced) for pods whose
    /// `spec.schedulerName` is NAME, a kube-scheduler profile, when the pod has no
    /// `fitsched.io/strategy` annotation. Repeatable; the environment variable takes a
    /// comma-separated list. Without a match the scorer's default strategy applies.
    #[arg(
        long = "profile-strategy",
        env = "FITSCHED_SHIM_PROFILE_STRATEGY",
        value_name = "NAME=STRATEGY",
        value_delimiter = ',',
        value_parser = parse_profile_strategy
    )]
    pub profile_strategy: Vec<ProfileStrategy>,
}

impl Args {
    /// The router settings these arguments describe.
    /// Refuses a profile mapped to two different strategies.
    pub fn shim_config(&self) -> Result<ShimConfig, String> {
        let mut client = ClientConfig::new(self.scorer.clone());
        client.tls_ca = self.tls_ca.clone();
        client.tls_domain = self.tls_domain.clone();
        client.token_file = self.token_file.clone();
        let profiles = ProfileStrategies::new(self.profile_strategy.iter().cloned())?;
        let all = crate::Limits::from_args(self)?;
        client.max_message_bytes = all.max_grpc_message;
        let limits = all.body;
        let deadlines = Deadlines { verb: self.deadline, bind: self.bind_deadline };
        Ok(ShimConfig { client, limits, deadlines, binder: Binder::ScorerOnly, profiles })
    }
}

/// What a request body may be: its size, the time to read it, and the bytes all bodies
/// being read may hold together (the shim's memory bound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    pub max_body_bytes: usize,
    pub read_timeout: Duration,
    pub max_in_flight_bytes: usize,
}

impl Default for BodyLimits {
    /// 64 MiB a body, 10 s to read it, 128 MiB in flight.
    fn default() -> Self {
        Self { max_body_bytes: 64 << 20, read_timeout: Duration::from_secs(10), max_in_flight_bytes: 128 << 20 }
    }
}

/// One `--profile-strategy NAME=STRATEGY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileStrategy {
    /// A kube-scheduler profile's `schedulerName`.
    pub scheduler_name: String,
    /// A [`fitsched_proto::Strategy`]'s name, as `PodFacts.strategy` carries it.
    pub strategy: String,
}

/// The strategy of each kube-scheduler profile, by the pod's `spec.schedulerName`. A
/// handful of entries: looked up by a linear scan, no hashing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileStrategies(Vec<ProfileStrategy>);

impl ProfileStrategies {
    /// Refuses a profile named twice with different strategies (the same pair twice is
    /// harmless, as when a flag and a chart value repeat each other).
    pub fn new(entries: impl IntoIterator<Item = ProfileStrategy>) -> Result<Self, String> {
        let mut out: Vec<ProfileStrategy> = Vec::new();
        for e in entries {
            match out.iter().find(|o| o.scheduler_name == e.scheduler_name) {
                Some(o) if o.strategy != e.strategy => {
                    return Err(format!(
                        "--profile-strategy: profile {:?} is mapped to both {:?} and {:?}",
                        e.scheduler_name, o.strategy, e.strategy
                    ));
                }
                Some(_) => {}
                None => out.push(e),
            }
        }
        Ok(Self(out))
    }

    /// The strategy for pods of the profile `scheduler_name`, if one is configured.
    pub fn get(&self, scheduler_name: &str) -> Option<&str> {
        self.0.iter().find(|e| e.scheduler_name == scheduler_name).map(|e| e.strategy.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Everything [`crate::router`] needs.
#[derive(Debug, Clone)]
pub struct ShimConfig {
    pub client: ClientConfig,
    pub limits: BodyLimits,
    /// When the scorer's answer is given up on and the answer is neutral.
    pub deadlines: Deadlines,
    /// Who creates Bindings; [`Args::shim_config`] leaves `ScorerOnly`, [`crate::run`]
    /// sets what `--binder` asks for (it needs a Kubernetes client, built async).
    pub binder: Binder,
    /// `--profile-strategy`: the strategy of a pod without the annotation, by profile.
    pub profiles: ProfileStrategies,
}

impl ShimConfig {
    /// Defaults (300 ms deadline, [`BodyLimits::default`], no Binding created) against
    /// the scorer at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            client: ClientConfig::new(url),
            limits: BodyLimits::default(),
            deadlines: Deadlines::default(),
            binder: Binder::ScorerOnly,
            profiles: ProfileStrategies::default(),
        }
    }
}

fn parse_deadline(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (write e.g. 300ms or 1s)"))?;
    if d.is_zero() {
        return Err("a deadline of zero would make every call fall back".into());
    }
    Ok(d)
}

fn parse_profile_strategy(s: &str) -> Result<ProfileStrategy, String> {
    let (name, strategy) =
        s.split_once('=').ok_or_else(|| format!("{s:?}: expected NAME=STRATEGY, e.g. fitsched-pack=pack"))?;
    let (name, strategy) = (name.trim(), strategy.trim());
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("{s:?}: the profile name (a pod's spec.schedulerName) must be non-empty, without spaces"));
    }
    let strategy: fitsched_proto::Strategy = strategy.parse().map_err(|e| format!("{s:?}: {e}"))?;
    Ok(ProfileStrategy { scheduler_name: name.to_owned(), strategy: strategy.as_str().to_owned() })
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
        assert_eq!(a.listen, "127.0.0.1:8080".parse().unwrap(), "the verbs are closed to the network by default");
        assert_eq!(a.metrics_listen, "127.0.0.1:9091".parse().unwrap());
        assert_eq!(a.deadline, Duration::from_millis(300));
        assert_eq!(a.bind_deadline, Duration::from_secs(1));
        assert_eq!(a.max_body_bytes, 64 << 20);
        assert_eq!(a.binder, BinderKind::Kubernetes);
        assert!(a.tls_cert.is_none());
        assert!(a.profile_strategy.is_empty());
        let c = a.shim_config().unwrap();
        assert!(c.profiles.is_empty());
        assert_eq!(c.deadlines.verb, Duration::from_millis(300));
        assert_eq!(c.limits, BodyLimits::default());
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
        assert_eq!(a.shim_config().unwrap().client.url, "http://scorer:50051");
        assert!(Args::try_parse_from(["fitsched-shim", "--deadline", "0s"]).is_err());
        assert!(Args::try_parse_from(["fitsched-shim", "--tls-cert", "c.pem"]).is_err(), "a cert needs its key");
        assert!(Args::try_parse_from(["fitsched-shim", "--binder", "magic"]).is_err());
        let b = Args::try_parse_from(["fitsched-shim", "--binder", "scorer-only"]).unwrap();
        assert_eq!(b.binder, BinderKind::ScorerOnly);
        assert!(Args::try_parse_from(["fitsched-shim", "--deadline", "soon"]).is_err());
        assert!(Args::try_parse_from(["fitsched-shim", "--max-body-bytes", "0"]).is_err());
        assert!(Args::try_parse_from(["fitsched-shim", "--max-body-bytes", "lots"]).is_err());
    }

    #[test]
    fn profile_strategies_map_scheduler_names() {
        let a = Args::try_parse_from([
            "fitsched-shim",
            "--profile-strategy",
            "fitsched-pack=pack",
            "--profile-strategy",
            "fitsched-spread=spread,fitsched=balanced",
        ])
        .unwrap();
        let profiles = a.shim_config().unwrap().profiles;
        assert_eq!(
            (profiles.get("fitsched-pack"), profiles.get("fitsched-spread"), profiles.get("fitsched")),
            (Some("pack"), Some("spread"), Some("balanced"))
        );
        assert_eq!(profiles.get("default-scheduler"), None);
    }

    #[test]
    fn unknown_strategies_and_conflicting_profiles_are_refused() {
        for bad in ["fitsched-fast=quick", "fitsched-pack", "=pack", "fitsched-pack=Pack"] {
            let err = Args::try_parse_from(["fitsched-shim", "--profile-strategy", bad]).unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
        let err = Args::try_parse_from(["fitsched-shim", "--profile-strategy", "x=quick"]).unwrap_err().to_string();
        assert!(err.contains("unknown strategy \"quick\": expected spread, pack or balanced"), "{err}");
        let twice =
            Args::try_parse_from(["fitsched-shim", "--profile-strategy", "p=pack,p=spread,q=pack,q=pack"]).unwrap();
        let err = twice.shim_config().unwrap_err();
        assert!(err.contains("\"p\" is mapped to both \"pack\" and \"spread\""), "{err}");
    }
}
