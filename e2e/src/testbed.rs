//! fitsched as a user runs it, on a test control plane: the chart installed
//! ([`chart::install`]), API-only nodes, one agent process simulating the nodes' windows
//! under the same names, the scorer watching the API server and the shim binding through
//! it with the chart's ServiceAccounts, and kube-scheduler with the chart's rendered
//! configuration (only its kubeconfig and ports adapted).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::chart::{self, Installed};
use crate::cluster::{Cluster, ClusterOptions, NodeSpec, Placement, point_extenders_at};
use crate::stack::{ClusterAccess, Stack, StackConfig};
use crate::tools;
use fitsched_agent::SimulatedProfile;

/// The zones nodes are spread over, by index.
pub const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

/// The name `fitsched-agent --simulate` gives its node `i` (0-based): `sim-node-01`...
pub fn sim_node_name(i: usize) -> String {
    fitsched_agent::simulated_node_name(fitsched_agent::SIMULATED_PREFIX, i)
}

/// The name of API node `i` (0-based) that no agent reports for.
pub fn dark_node_name(i: usize) -> String {
    format!("dark-node-{:02}", i + 1)
}

/// Whether a node is one no agent reports for.
pub fn is_without_telemetry(node: &str) -> bool {
    node.starts_with("dark-node-")
}

/// Whether a simulated node carries load the measurements call harmless to a new pod
/// ([`SimulatedProfile::is_healthy`]); `false` for a node the simulator does not run.
pub fn is_healthy(node: &str) -> bool {
    SimulatedProfile::of_node(fitsched_agent::SIMULATED_PREFIX, node).is_some_and(SimulatedProfile::is_healthy)
}

#[derive(Debug, Clone)]
pub struct TestbedConfig {
    /// Names the cluster's folder under `<target>/fitsched-cluster/`.
    pub name: String,
    /// Nodes with telemetry: API nodes and simulated windows of the same names.
    pub simulated: u32,
    /// Nodes no agent reports for (a new node, or one whose agent crashed).
    pub without_telemetry: u32,
    /// Helm values for the chart.
    pub values: Value,
    /// Window length of agents and scorer (the chart's 20 s would make tests wait).
    pub window: String,
    /// Where the fitsched binaries are (default: the dev build).
    pub bin_dir: Option<PathBuf>,
    /// `RUST_LOG` of the fitsched processes.
    pub log_filter: String,
    /// The shim's identity instead of the scheduler pod's (to test a refused bind).
    pub shim_kubeconfig: Option<fn(&Installed) -> PathBuf>,
    pub kube_bin: Option<PathBuf>,
    /// A real agent reading this machine's `/proc` and reporting under this node name,
    /// and an API node of that name with this machine's CPUs and memory (zoned like the
    /// others, after them).
    pub real_agent: Option<String>,
    /// Extra arguments of every agent process (e.g. `--pcm-url`).
    pub agent_args: Vec<String>,
    /// Seed of the simulated nodes' telemetry.
    pub sim_seed: u64,
    /// Nodes whose windows an agent replays from a file (`fitsched-agent --replay`),
    /// which must name each of them before the start.
    pub replay: Option<ReplayNodes>,
    /// The scorer's model file (default: the committed `onnx/fitness.onnx`); replacing
    /// the file swaps the model while the scorer runs.
    pub model: Option<PathBuf>,
    /// The control plane's options (an etcd proxy for a slow API server).
    pub cluster: ClusterOptions,
}

/// API nodes and the replay file an agent reports their windows from.
#[derive(Debug, Clone)]
pub struct ReplayNodes {
    pub nodes: Vec<NodeSpec>,
    pub file: PathBuf,
}

impl TestbedConfig {
    pub fn new(name: &str, simulated: u32) -> Self {
        Self {
            name: name.into(),
            simulated,
            without_telemetry: 0,
            values: Value::Object(Default::default()),
            window: "2s".into(),
            bin_dir: None,
            log_filter: "info".into(),
            shim_kubeconfig: None,
            kube_bin: None,
            real_agent: None,
            agent_args: Vec::new(),
            sim_seed: StackConfig::default().sim_seed,
            replay: None,
            model: None,
            cluster: ClusterOptions::default(),
        }
    }
}

/// An API node for this machine: its CPU count and memory (`MemTotal` of `/proc/meminfo`).
fn this_machine(name: &str, zone: &str) -> NodeSpec {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    });
    NodeSpec {
        cpu: cpus.to_string(),
        memory: memory_kib.map_or_else(|| "8Gi".to_owned(), |kib| format!("{kib}Ki")),
        ..NodeSpec::standard(name, zone)
    }
}

/// Where a workload's pods went, counted per node and per zone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spread {
    pub per_node: BTreeMap<String, usize>,
    /// By zone label; `?` for a node the testbed did not create.
    pub per_zone: BTreeMap<String, usize>,
}

impl Spread {
    /// The most pods any one node got.
    pub fn most_on_one_node(&self) -> usize {
        self.per_node.values().copied().max().unwrap_or(0)
    }
}

/// The running testbed; fields drop in order, fitsched before the control plane.
pub struct Testbed {
    pub stack: Stack,
    pub installed: Installed,
    pub nodes: Vec<NodeSpec>,
    pub cluster: Cluster,
}

impl Testbed {
    /// Starts everything but kube-scheduler ([`Testbed::start_scheduler`]), and waits until
    /// the scorer has a fitness for every simulated node.
    pub fn start(config: TestbedConfig) -> anyhow::Result<Testbed> {
        let venv = tools::ensure_venv()?;
        let cluster = Cluster::start_with(&config.name, config.kube_bin.as_deref(), config.cluster)?;
        let installed = chart::install(&cluster, &venv, &config.values)?;
        let simulated = (0..config.simulated as usize).map(sim_node_name);
        let dark = (0..config.without_telemetry as usize).map(dark_node_name);
        let mut nodes: Vec<NodeSpec> =
            simulated.chain(dark).enumerate().map(|(i, n)| NodeSpec::standard(n, ZONES[i % ZONES.len()])).collect();
        if let Some(name) = &config.real_agent {
            nodes.push(this_machine(name, ZONES[nodes.len() % ZONES.len()]));
        }
        let replayed = config.replay.as_ref().map_or(0, |r| r.nodes.len());
        nodes.extend(config.replay.iter().flat_map(|r| r.nodes.iter().cloned()));
        cluster.create_nodes(&nodes)?;

        let access = ClusterAccess {
            scorer_kubeconfig: installed.scorer_kubeconfig.clone(),
            shim_kubeconfig: config
                .shim_kubeconfig
                .map_or_else(|| installed.scheduler_kubeconfig.clone(), |f| f(&installed)),
        };
        let stack_config = StackConfig {
            window: config.window.clone(),
            tick: "200ms".into(),
            real_agents: config.real_agent.iter().map(|n| Some(n.clone())).collect(),
            simulated: config.simulated,
            sim_seed: config.sim_seed,
            replay: config.replay.as_ref().map(|r| r.file.clone()),
            agent_args: config.agent_args.clone(),
            scorer_args: installed.scorer_args.clone(),
            shim_args: installed.shim_args.clone(),
            bin_dir: config.bin_dir.clone(),
            log_dir: cluster.dir().join("logs"),
            log_filter: config.log_filter.clone(),
            cluster: Some(access),
            ..StackConfig::default()
        };
        let stack_config = match &config.model {
            Some(model) => stack_config.with_model(&venv, model)?,
            None => stack_config.with_committed_model(&venv)?,
        };
        let mut stack = Stack::start(stack_config)?;
        let real: Vec<&str> = config.real_agent.iter().map(String::as_str).collect();
        stack.wait_for_nodes(&real, config.simulated as usize + real.len() + replayed, Duration::from_secs(120))?;
        Ok(Testbed { stack, installed, nodes, cluster })
    }

    /// Starts kube-scheduler with the chart's configuration, its extender pointed at the
    /// shim.
    pub fn start_scheduler(&mut self) -> anyhow::Result<()> {
        let mut config = self.installed.scheduler_config.clone();
        point_extenders_at(&mut config, self.stack.shim_http);
        self.cluster.start_scheduler(&config, &self.installed.scheduler_kubeconfig)
    }

    /// The zone of a node the testbed created.
    pub fn zone_of(&self, node: &str) -> Option<&str> {
        self.nodes.iter().find(|n| n.name == node).map(|n| n.zone.as_str())
    }

    /// Where `placed` went, per node and per zone.
    pub fn spread(&self, placed: &[Placement]) -> Spread {
        let zones: HashMap<&str, &str> = self.nodes.iter().map(|n| (n.name.as_str(), n.zone.as_str())).collect();
        let mut spread = Spread::default();
        for p in placed {
            *spread.per_node.entry(p.node.clone()).or_default() += 1;
            *spread.per_zone.entry(zones.get(p.node.as_str()).unwrap_or(&"?").to_string()).or_default() += 1;
        }
        spread
    }

    /// The profile of a strategy (`fitsched-pack`...), as the chart names it.
    pub fn profile(&self, strategy: &str) -> String {
        let main = &self.installed.profiles[0];
        let name = format!("{main}-{strategy}");
        assert!(
            self.installed.profiles.contains(&name),
            "the chart rendered no profile {name}: {:?}",
            self.installed.profiles
        );
        name
    }
}
