//! The chart as users install it, running for real: images built by
//! [`images`](crate::images) and imported into the real node's containerd, the chart
//! installed with every workload created, and its pods (the agent DaemonSet, the scorer,
//! kube-scheduler with the shim beside it, a benchmark Deployment) run by the kubelet.
//!
//! The test has no cluster DNS, so the scorer gets a fixed cluster IP and the chart's
//! `scorer.address` points agents and the shim at it. The API-only nodes beside the real
//! one are tainted, so that only pods that tolerate everything (the agent DaemonSet) are
//! even considered for them, and the agent is kept to the real node by its nodeSelector:
//! its pods on API-only nodes would stay Pending.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use kube::api::{Api, ListParams, LogParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::{NETNS, NODE_NAME, RealNode};
use crate::chart::{self, Installed};
use crate::cluster::{Cluster, NodeSpec};
use crate::images::{self, Inputs};
use crate::tools::{self, Venv};
use crate::{kube_bins, paths, progress};

/// The scorer Service's fixed cluster IP (in the API server's Service range).
pub const SCORER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 100, 100);
/// The operator account grpcurl calls the scorer as (`auth.operators`).
pub const OPERATOR: (&str, &str) = ("fitsched-ops", "grpcurl");
/// The taint on the API-only nodes.
pub const API_ONLY_TAINT: &str = "fitsched.io/api-only";

/// How long each stage took, for the reader of a run.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub stages: Vec<(String, Duration)>,
}

impl Timings {
    fn record(&mut self, stage: &str, since: Instant) -> Instant {
        let took = since.elapsed();
        progress(format!("{stage}: {took:.1?}"));
        self.stages.push((stage.to_owned(), took));
        Instant::now()
    }
}

/// What [`NodeInstall::start`] sets up.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// The control plane's name (its folder under the target dir).
    pub name: String,
    /// The fitsched binaries the images are built from.
    pub bin_dir: PathBuf,
    /// API-only nodes beside the real one.
    pub api_only_nodes: u32,
    /// Window length of agents and scorer.
    pub window: String,
    /// Benchmark replicas placed by the `fitsched-balanced` profile.
    pub bench_replicas: u32,
}

impl InstallOptions {
    pub fn new(name: &str) -> Self {
        Self { name: name.into(), bin_dir: paths::bin_dir(), api_only_nodes: 2, window: "5s".into(), bench_replicas: 1 }
    }

    /// The chart's values: the defaults but for what this test bed lacks (DNS) or
    /// shortens (the window, the wrk runs).
    pub fn values(&self) -> Value {
        json!({
            "window": self.window,
            "scorer": {
                // Turns the filter verb on: with the API-only nodes tainted the real node is
                // the one feasible node, and kube-scheduler skips scoring when only one is.
                "filter": {"maxPsiMemoryFull": 0.5},
                "address": format!("{SCORER_IP}:50051"),
                "service": {"clusterIP": SCORER_IP.to_string()},
            },
            "agent": {"nodeSelector": {"kubernetes.io/hostname": NODE_NAME}},
            // Its /metrics on the pod's address (and its probes on), for the test to read.
            "shim": {"exposeMetrics": true},
            "auth": {"operators": [format!("{}/{}", OPERATOR.0, OPERATOR.1)]},
            "bench": {
                "enabled": true,
                "schedulerNames": ["fitsched-balanced"],
                "replicas": self.bench_replicas,
                "wrk": {"threads": 1, "connections": 8, "duration": "5s"},
            },
        })
    }
}

/// The chart running on a real node. Dropping it tears the node down, then the
/// control plane.
pub struct NodeInstall {
    // Declared first: dropped first, while the API server still answers.
    pub node: RealNode,
    pub cluster: Cluster,
    pub installed: Installed,
    pub venv: Venv,
    pub timings: Timings,
}

impl NodeInstall {
    /// Builds the images, brings up the control plane and the real node, installs the
    /// chart and waits until every workload of it is Ready.
    pub fn start(options: &InstallOptions) -> anyhow::Result<NodeInstall> {
        let mut timings = Timings::default();
        let mut t = Instant::now();
        let venv = tools::ensure_venv()?;
        tools::ensure_debian_tools(&[("curl", "curl")])?;
        let kube = kube_bins::locate(None)?;
        let inputs = Inputs::from_checkout(options.bin_dir.clone(), kube)?;
        let out = paths::target_dir().join("images").join(&options.name);
        let mut archives = Vec::new();
        for image in images::definitions(&inputs, &[])? {
            archives.push(images::write_archive(&image, &out)?.path);
        }
        t = timings.record("images written", t);

        let prepared = super::prepare()?;
        let mut cluster = Cluster::start_with(&options.name, None, prepared.cluster_options())?;
        // The cluster's own scheduler (default-scheduler), which places the chart's pods;
        // the chart's kube-scheduler, in its pod, places the pods of fitsched's profiles.
        let admin = cluster.kubeconfig("default-scheduler", cluster.admin_token())?;
        let config = json!({
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            "leaderElection": {"leaderElect": false},
        });
        cluster.start_scheduler(&config, &admin)?;
        t = timings.record("control plane up", t);
        let nodes: Vec<NodeSpec> = (1..=options.api_only_nodes)
            .map(|i| NodeSpec::standard(format!("api-only-{i}"), ["a", "b", "c"][i as usize % 3]))
            .collect();
        cluster.create_nodes(&nodes)?;
        let api: Api<Node> = Api::all(cluster.client());
        for n in &nodes {
            let taint = json!({"spec": {"taints": [{"key": API_ONLY_TAINT, "value": "true", "effect": "NoSchedule"}]}});
            cluster.block_on(api.patch(&n.name, &PatchParams::default(), &Patch::Merge(&taint)))?;
        }
        let node = RealNode::start(prepared, &cluster, &archives)?;
        t = timings.record("real node Ready (images imported)", t);

        cluster.create_namespace(OPERATOR.0)?;
        let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": OPERATOR.1}}))?;
        let _ = cluster.block_on(Api::namespaced(cluster.client(), OPERATOR.0).create(&PostParams::default(), &sa));
        let installed = chart::install_for_real(&cluster, &venv, &options.values())?;
        t = timings.record("chart installed", t);
        let mut me = NodeInstall { node, cluster, installed, venv, timings };
        me.wait_workloads_ready(Duration::from_secs(180))?;
        me.timings.record("every workload Ready", t);
        Ok(me)
    }

    /// Waits until every Deployment and DaemonSet of the release has all its pods Ready.
    pub fn wait_workloads_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let ns = self.installed.namespace.clone();
        let deployments: Api<Deployment> = Api::namespaced(self.cluster.client(), &ns);
        let daemonsets: Api<DaemonSet> = Api::namespaced(self.cluster.client(), &ns);
        let deadline = Instant::now() + timeout;
        loop {
            self.node.check_alive()?;
            let mut waiting = Vec::new();
            for d in self.cluster.block_on(deployments.list(&ListParams::default()))? {
                let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let ready = d.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
                if ready < want {
                    waiting.push(format!("Deployment {} {ready}/{want}", d.metadata.name.unwrap_or_default()));
                }
            }
            for d in self.cluster.block_on(daemonsets.list(&ListParams::default()))? {
                let s = d.status.unwrap_or_default();
                if s.desired_number_scheduled == 0 || s.number_ready < s.desired_number_scheduled {
                    waiting.push(format!(
                        "DaemonSet {} {}/{}",
                        d.metadata.name.unwrap_or_default(),
                        s.number_ready,
                        s.desired_number_scheduled
                    ));
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "after {timeout:?} still waiting for {}; pods:\n{}",
                    waiting.join(", "),
                    self.describe_pods().unwrap_or_else(|e| format!("{e:#}"))
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Each pod of the release: phase, node, and each container's state.
    pub fn describe_pods(&self) -> anyhow::Result<String> {
        let pods: Api<Pod> = Api::namespaced(self.cluster.client(), &self.installed.namespace);
        let mut out = String::new();
        for p in self.cluster.block_on(pods.list(&ListParams::default()))? {
            let status = p.status.unwrap_or_default();
            out.push_str(&format!(
                "{} {} on {}\n",
                p.metadata.name.unwrap_or_default(),
                status.phase.unwrap_or_default(),
                p.spec.and_then(|s| s.node_name).unwrap_or_else(|| "(unscheduled)".into())
            ));
            for c in status.container_statuses.unwrap_or_default() {
                out.push_str(&format!("  {} ready={} state={:?}\n", c.name, c.ready, c.state));
            }
        }
        Ok(out)
    }

    /// The release's pods whose names start with `<release>-<component>`.
    pub fn pods(&self, component: &str) -> anyhow::Result<Vec<Pod>> {
        let pods: Api<Pod> = Api::namespaced(self.cluster.client(), &self.installed.namespace);
        let all = self.cluster.block_on(pods.list(&ListParams::default()))?;
        Ok(all
            .items
            .into_iter()
            .filter(|p| p.metadata.name.as_deref().is_some_and(|n| n.contains(&format!("-{component}"))))
            .collect())
    }

    /// A container's log, through the API server and the kubelet.
    pub fn logs(&self, pod: &str, container: &str) -> anyhow::Result<String> {
        let pods: Api<Pod> = Api::namespaced(self.cluster.client(), &self.installed.namespace);
        let params = LogParams { container: Some(container.into()), ..LogParams::default() };
        Ok(self.cluster.block_on(pods.logs(pod, &params))?)
    }

    /// Calls the scorer with the real grpcurl as an operator would from a node: through
    /// the Service's cluster IP, with an operator's ServiceAccount token. `data`: the
    /// request as JSON.
    pub fn grpcurl(&self, method: &str, data: &Value) -> anyhow::Result<Value> {
        let token = self.cluster.token_request(
            OPERATOR.0,
            OPERATOR.1,
            json!({"audiences": ["fitsched-scorer"], "expirationSeconds": 600}),
        )?;
        let out = tools::run(
            Command::new("nsenter")
                .arg(format!("--net=/run/netns/{NETNS}"))
                .arg(self.venv.grpcurl())
                .args(["-plaintext", "-max-time", "10", "-H"])
                .arg(format!("authorization: Bearer {token}"))
                .args(["-d", &data.to_string()])
                .arg(format!("{SCORER_IP}:50051"))
                .arg(method),
        )
        .with_context(|| format!("grpcurl {method}"))?;
        serde_json::from_str(&out).with_context(|| format!("grpcurl {method} printed no JSON: {out}"))
    }

    /// `GET url` from inside the node's network namespace (pod and Service addresses).
    pub fn http_get(&self, url: &str) -> anyhow::Result<String> {
        tools::run(Command::new("nsenter").arg(format!("--net=/run/netns/{NETNS}")).args([
            "curl",
            "-fsS",
            "--max-time",
            "10",
            url,
        ]))
    }

    /// Waits until `check` holds (it returns `Some`), polling every half second.
    pub fn wait_for<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&Self) -> anyhow::Result<Option<T>>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            self.node.check_alive()?;
            if let Some(t) = check(self)? {
                return Ok(t);
            }
            ensure!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}
