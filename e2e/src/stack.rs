//! Starts fitsched's binaries as real processes on free loopback ports, waits until they
//! answer, and stops them when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::bail;
use fitsched_proto::ListNodesRequest;
use fitsched_proto::scorer_client::ScorerClient;

use crate::paths;
use crate::process::Processes;
pub use crate::process::http_agent;

/// How to run the stack.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// Window length given to agents and scorer (`20s`, `2s`...).
    pub window: String,
    /// Agents' sampling tick.
    pub tick: String,
    /// One real agent per name (this machine's /proc, reported under that node name);
    /// `None` lets the agent use the hostname.
    pub real_agents: Vec<Option<String>>,
    /// Simulated nodes, all in one agent process (0 = none).
    pub simulated: u32,
    pub sim_seed: u64,
    /// An agent replaying the windows of this file for the nodes it names
    /// (`fitsched-agent --replay`).
    pub replay: Option<PathBuf>,
    pub scorer_args: Vec<String>,
    pub shim_args: Vec<String>,
    /// Extra arguments of every agent process.
    pub agent_args: Vec<String>,
    /// Environment variables of every process (e.g. `ORT_DYLIB_PATH` for the scorer).
    pub env: Vec<(String, String)>,
    /// Where the binaries are (default: [`paths::bin_dir`]), e.g. a release build for
    /// benchmarks.
    pub bin_dir: Option<PathBuf>,
    /// Where each process's output goes (`<name>.log`; a restarted process gets
    /// `<name>-2.log` and so on).
    pub log_dir: PathBuf,
    /// `RUST_LOG` of every process.
    pub log_filter: String,
    /// Serve the scorer's gRPC over TLS with these files; agents and shim verify it.
    pub tls: Option<TlsFiles>,
    /// The scorer's gRPC address (default: a free port), e.g. for a proxy set up first.
    pub scorer_grpc: Option<SocketAddr>,
    /// The URL agents dial instead of the scorer's (e.g. a [`crate::proxy::Proxy`]).
    pub agent_scorer: Option<String>,
    /// The URL the shim dials instead of the scorer's.
    pub shim_scorer: Option<String>,
    /// Serve every caller without a token (`--allow-unauthenticated`). Without it, as
    /// installed, the stack writes a token per role ([`Stack::token`]) and every process
    /// presents its own.
    pub open: bool,
    /// A real API server: the scorer watches it and the shim creates Bindings in it.
    /// Without one the shim only tells the scorer (`--binder scorer-only`).
    pub cluster: Option<ClusterAccess>,
}

/// Kubeconfigs of a real cluster, one per identity, as the chart's ServiceAccounts.
#[derive(Debug, Clone)]
pub struct ClusterAccess {
    /// The scorer's: it lists and watches pods and nodes.
    pub scorer_kubeconfig: PathBuf,
    /// The shim's: the scheduler pod's account, which may create Bindings.
    pub shim_kubeconfig: PathBuf,
}

/// PEM files for a TLS scorer whose certificate is valid for `localhost`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Writes a fresh CA (`ca.pem`) and a server certificate it signed for `localhost` and
    /// 127.0.0.1 (`server.pem`, `server-key.pem`) into `dir`.
    pub fn generate(dir: &std::path::Path) -> anyhow::Result<Self> {
        Self::generate_for(dir, &[])
    }

    /// [`TlsFiles::generate`] with more names (DNS names or IP addresses) in the server
    /// certificate, and a client certificate the same CA signed (`client.pem`,
    /// `client-key.pem`, [`TlsFiles::client`]) for `system:masters`: what the API server
    /// shows a kubelet that trusts this CA.
    pub fn generate_for(dir: &std::path::Path, extra_names: &[&str]) -> anyhow::Result<Self> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        std::fs::create_dir_all(dir)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate()?;
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate()?;
        let names = ["localhost", "127.0.0.1"].iter().chain(extra_names).map(|n| n.to_string()).collect::<Vec<_>>();
        let cert = CertificateParams::new(names)?.signed_by(&key, &issuer)?;
        let files = Self { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server-key.pem") };
        std::fs::write(&files.ca, ca.pem())?;
        std::fs::write(&files.cert, cert.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        let client_key = KeyPair::generate()?;
        let mut client = CertificateParams::new(Vec::<String>::new())?;
        client.distinguished_name.push(DnType::CommonName, "fitsched-test-client");
        client.distinguished_name.push(DnType::OrganizationName, "system:masters");
        let (client_cert, client_key_path) = files.client();
        std::fs::write(client_cert, client.signed_by(&client_key, &issuer)?.pem())?;
        std::fs::write(client_key_path, client_key.serialize_pem())?;
        Ok(files)
    }

    /// The client certificate and key [`TlsFiles::generate_for`] wrote.
    pub fn client(&self) -> (PathBuf, PathBuf) {
        let dir = self.ca.parent().unwrap_or(std::path::Path::new("."));
        (dir.join("client.pem"), dir.join("client-key.pem"))
    }
}

impl StackConfig {
    /// Runs the scorer with the committed ONNX model and the venv's ONNX Runtime.
    pub fn with_committed_model(self, venv: &crate::tools::Venv) -> anyhow::Result<Self> {
        self.with_model(venv, &paths::workspace_root().join("onnx/fitness.onnx"))
    }

    /// Runs the scorer with the ONNX model at `model` (hot-reloaded when the file
    /// changes) and the venv's ONNX Runtime.
    pub fn with_model(mut self, venv: &crate::tools::Venv, model: &std::path::Path) -> anyhow::Result<Self> {
        self.scorer_args.extend(["--model".to_owned(), model.display().to_string()]);
        self.env.push(("ORT_DYLIB_PATH".to_owned(), venv.onnxruntime_library()?.display().to_string()));
        Ok(self)
    }
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            window: "2s".into(),
            tick: "200ms".into(),
            real_agents: vec![None],
            simulated: 0,
            sim_seed: 1,
            replay: None,
            scorer_args: Vec::new(),
            shim_args: Vec::new(),
            agent_args: Vec::new(),
            env: Vec::new(),
            bin_dir: None,
            log_dir: paths::target_dir().join("fitsched-logs"),
            log_filter: "info".into(),
            tls: None,
            scorer_grpc: None,
            agent_scorer: None,
            shim_scorer: None,
            open: false,
            cluster: None,
        }
    }
}

/// The running stack. Dropping it kills every process it started.
pub struct Stack {
    pub scorer_grpc: SocketAddr,
    pub scorer_http: SocketAddr,
    pub shim_http: SocketAddr,
    /// The shim's `/metrics` and `/health` (`--metrics-listen`).
    pub shim_metrics: SocketAddr,
    pub agent_http: Vec<SocketAddr>,
    procs: Processes,
    config: StackConfig,
}

/// The scorer's roles (see `fitsched_scorer::auth`).
const ROLES: [&str; 3] = ["agent", "scheduler", "operator"];

/// A channel whose calls carry a bearer token.
pub type AuthChannel = tonic::service::interceptor::InterceptedService<tonic::transport::Channel, BearerInterceptor>;

/// Adds `authorization: Bearer …` to every call, when there is a token.
#[derive(Clone)]
pub struct BearerInterceptor(Option<tonic::metadata::AsciiMetadataValue>);

impl tonic::service::Interceptor for BearerInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut().insert("authorization", t.clone());
        }
        Ok(req)
    }
}

/// A free TCP port on loopback. The port is released before use, so another process
/// could take it in between; on this test machine nothing else races for ports.
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl Stack {
    /// Starts the scorer, the shim and the agents, and waits until each answers
    /// `/health`.
    pub fn start(config: StackConfig) -> anyhow::Result<Stack> {
        let mut stack = Stack {
            scorer_grpc: match config.scorer_grpc {
                Some(addr) => addr,
                None => free_addr()?,
            },
            scorer_http: free_addr()?,
            shim_http: free_addr()?,
            shim_metrics: free_addr()?,
            agent_http: Vec::new(),
            procs: Processes::new(&config.log_dir)?,
            config,
        };
        if !stack.config.open {
            for role in ROLES {
                let token = format!("{role}-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
                std::fs::create_dir_all(stack.config.log_dir.join("tokens"))?;
                std::fs::write(stack.token_path(role), token)?;
            }
        }
        stack.start_scorer()?;
        let scorer_url = stack.config.shim_scorer.clone().unwrap_or_else(|| stack.scorer_url());
        let shim_http = stack.shim_http.to_string();
        // Without an API server there is nothing to create Bindings in.
        let binder = if stack.config.cluster.is_some() { "kubernetes" } else { "scorer-only" };
        let mut shim_args = vec![
            "--listen".to_owned(),
            shim_http,
            "--scorer".to_owned(),
            scorer_url,
            "--binder".to_owned(),
            binder.into(),
        ];
        if let Some(tls) = &stack.config.tls {
            shim_args.extend(["--tls-ca".to_owned(), tls.ca.display().to_string()]);
        }
        if !stack.config.open {
            shim_args.extend(["--token-file".to_owned(), stack.token_path("scheduler").display().to_string()]);
        }
        shim_args.extend(["--metrics-listen".to_owned(), stack.shim_metrics.to_string()]);
        shim_args.extend(stack.config.shim_args.clone());
        let kubeconfig = stack.config.cluster.as_ref().map(|c| c.shim_kubeconfig.clone());
        stack.spawn("shim", "fitsched-shim", &shim_args, kubeconfig)?;
        stack.procs.wait_healthy(stack.shim_http)?;

        let agents = stack.config.real_agents.clone();
        for (i, node) in agents.iter().enumerate() {
            let mut args = stack.agent_args()?;
            if let Some(node) = node {
                args.extend(["--node-name".to_owned(), node.clone()]);
            }
            stack.spawn(&format!("agent-{i}"), "fitsched-agent", &args, None)?;
        }
        if stack.config.simulated > 0 {
            let mut args = stack.agent_args()?;
            args.extend([
                "--simulate".to_owned(),
                stack.config.simulated.to_string(),
                "--seed".to_owned(),
                stack.config.sim_seed.to_string(),
            ]);
            stack.spawn("agent-sim", "fitsched-agent", &args, None)?;
        }
        if let Some(file) = stack.config.replay.clone() {
            let mut args = stack.agent_args()?;
            args.extend(["--replay".to_owned(), file.display().to_string()]);
            stack.spawn("agent-replay", "fitsched-agent", &args, None)?;
        }
        for addr in stack.agent_http.clone() {
            stack.procs.wait_healthy(addr)?;
        }
        Ok(stack)
    }

    /// The scorer's gRPC address as a URL (`https://localhost:…` with TLS, since the
    /// certificate names `localhost`).
    pub fn scorer_url(&self) -> String {
        match self.config.tls {
            Some(_) => format!("https://localhost:{}", self.scorer_grpc.port()),
            None => format!("http://{}", self.scorer_grpc),
        }
    }

    /// A client of the scorer as an operator (`ListNodes`, `Predict`, `Explain`,
    /// `ModelInfo`), over TLS when the stack uses it.
    pub async fn scorer_client(&self) -> anyhow::Result<ScorerClient<AuthChannel>> {
        self.scorer_client_as("operator").await
    }

    /// A client of the scorer presenting the token of `role` (`agent`, `scheduler`,
    /// `operator`); no token when the stack is open.
    pub async fn scorer_client_as(&self, role: &str) -> anyhow::Result<ScorerClient<AuthChannel>> {
        // ListNodes carries every node's latest window: 11 MB at 5 000 simulated nodes,
        // past tonic's default 4 MiB.
        Ok(ScorerClient::new(self.channel_as(role).await?).max_decoding_message_size(256 << 20))
    }

    /// An ingest client presenting the agents' token.
    pub async fn ingest_client(&self) -> anyhow::Result<fitsched_proto::ingest_client::IngestClient<AuthChannel>> {
        Ok(fitsched_proto::ingest_client::IngestClient::new(self.channel_as("agent").await?))
    }

    /// A channel to the scorer whose calls carry the token of `role`.
    async fn channel_as(&self, role: &str) -> anyhow::Result<AuthChannel> {
        self.channel_with(self.token(role).as_deref()).await
    }

    /// A channel to the scorer whose calls carry `token` (e.g. a service account's).
    pub async fn channel_with(&self, token: Option<&str>) -> anyhow::Result<AuthChannel> {
        let channel = self.scorer_endpoint()?.connect().await?;
        let token = token.map(|t| format!("Bearer {t}").parse()).transpose()?;
        Ok(tonic::service::interceptor::InterceptedService::new(channel, BearerInterceptor(token)))
    }

    /// The token of `role` (`agent`, `scheduler`, `operator`), or `None` when the stack
    /// is open.
    pub fn token(&self, role: &str) -> Option<String> {
        (!self.config.open).then(|| std::fs::read_to_string(self.token_path(role)).ok()).flatten()
    }

    /// The file holding the token of `role` (written whether or not the stack is open).
    pub fn token_path(&self, role: &str) -> PathBuf {
        self.config.log_dir.join("tokens").join(role)
    }

    /// The scorer's endpoint, with the stack's TLS settings.
    pub fn scorer_endpoint(&self) -> anyhow::Result<tonic::transport::Endpoint> {
        fitsched_runtime::scorer_endpoint(&self.scorer_url(), self.config.tls.as_ref().map(|t| t.ca.as_path()), None)
    }

    /// The shim's base URL.
    pub fn shim_url(&self) -> String {
        format!("http://{}", self.shim_http)
    }

    /// Starts (or restarts) the scorer on its addresses.
    pub fn start_scorer(&mut self) -> anyhow::Result<()> {
        let mut args = vec![
            "--grpc-listen".to_owned(),
            self.scorer_grpc.to_string(),
            "--http-listen".to_owned(),
            self.scorer_http.to_string(),
            "--window".to_owned(),
            self.config.window.clone(),
            // Without a test cluster, nothing to watch, even where a kubeconfig exists.
            "--cluster-watch".to_owned(),
            if self.config.cluster.is_some() { "on" } else { "off" }.to_owned(),
        ];
        if let Some(tls) = &self.config.tls {
            args.extend([
                "--tls-cert".into(),
                tls.cert.display().to_string(),
                "--tls-key".into(),
                tls.key.display().to_string(),
            ]);
        }
        match self.config.open {
            true => args.push("--allow-unauthenticated".into()),
            false => {
                for role in ROLES {
                    args.extend(["--token-file".into(), format!("{role}={}", self.token_path(role).display())]);
                }
            }
        }
        args.extend(self.config.scorer_args.clone());
        let kubeconfig = self.config.cluster.as_ref().map(|c| c.scorer_kubeconfig.clone());
        self.spawn("scorer", "fitsched-scorer", &args, kubeconfig)?;
        self.procs.wait_healthy(self.scorer_http)
    }

    fn agent_args(&mut self) -> anyhow::Result<Vec<String>> {
        let http = free_addr()?;
        self.agent_http.push(http);
        let mut extra = Vec::new();
        if let Some(tls) = &self.config.tls {
            extra.extend(["--tls-ca".to_owned(), tls.ca.display().to_string()]);
        }
        if !self.config.open {
            extra.extend(["--token-file".to_owned(), self.token_path("agent").display().to_string()]);
        }
        Ok(extra
            .into_iter()
            .chain([
                "--scorer".to_owned(),
                self.config.agent_scorer.clone().unwrap_or_else(|| self.scorer_url()),
                "--listen".to_owned(),
                http.to_string(),
                "--window".to_owned(),
                self.config.window.clone(),
                "--tick".to_owned(),
                self.config.tick.clone(),
            ])
            .chain(self.config.agent_args.iter().cloned())
            .collect())
    }

    /// Starts a fitsched binary; `kubeconfig` is the identity it reaches the API server with.
    fn spawn(&mut self, name: &str, bin: &str, args: &[String], kubeconfig: Option<PathBuf>) -> anyhow::Result<()> {
        let path = self.config.bin_dir.clone().unwrap_or_else(paths::bin_dir).join(bin);
        if !path.exists() {
            bail!(
                "{} is not built: run `cargo xtask test` (or `cargo build --workspace --bins`) first",
                path.display()
            );
        }
        let mut cmd = Command::new(&path);
        cmd.args(args).env("RUST_LOG", &self.config.log_filter).envs(self.config.env.iter().map(|(k, v)| (k, v)));
        if let Some(k) = kubeconfig {
            cmd.env("KUBECONFIG", k);
        }
        self.procs.spawn(name, cmd)
    }

    /// Fails, with the tail of its log, when a process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.procs.check_alive()
    }

    /// Kills one process by name (`scorer`, `shim`, `agent-0`...).
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        self.procs.kill(name)
    }

    /// Every log `name` wrote so far (all its restarts), in start order.
    pub fn log(&self, name: &str) -> String {
        self.procs.log(name)
    }

    /// The OS process id of a running process, for CPU accounting.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.procs.pid(name)
    }

    /// Waits until the scorer has a fitness for each named node (`None` = at least `n`
    /// nodes of any name), so scores reflect real windows.
    pub fn wait_for_nodes(
        &mut self,
        names: &[&str],
        at_least: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let scored = self.scored_nodes()?;
            if names.iter().all(|n| scored.iter().any(|s| s == n)) && scored.len() >= at_least {
                return Ok(scored);
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "after {timeout:?} the scorer has fitness for {scored:?}, waiting for {names:?} and {at_least} nodes"
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The agents' and the scorer's window.
    pub fn window(&self) -> anyhow::Result<Duration> {
        Ok(humantime::parse_duration(&self.config.window)?)
    }

    /// Nodes the scorer holds a fitness for.
    pub fn scored_nodes(&self) -> anyhow::Result<Vec<String>> {
        let nodes = block_on(async {
            let mut c = self.scorer_client().await?;
            anyhow::Ok(c.list_nodes(ListNodesRequest {}).await?.into_inner().nodes)
        })?;
        Ok(nodes.into_iter().filter(|n| n.fitness.is_some() && !n.stale).map(|n| n.name).collect())
    }
}

/// Runs a future on a private single-threaded runtime (the harness is synchronous).
pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime").block_on(f)
}
