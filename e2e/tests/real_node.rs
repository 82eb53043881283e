//! A real node (kubelet, containerd, kube-proxy) joined to the control plane next to
//! API-only nodes, and the host as it was after it: no namespace, mount or cgroup left,
//! kubelet's sysctls restored.

use std::sync::Mutex;
use std::time::Duration;

use fitsched_e2e::cluster::{Cluster, NodeSpec, sum_metric};
use fitsched_e2e::node::{self, NODE_NAME, RealNode};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

/// One test at a time: each checks the host after its node is gone, which another
/// test's node would spoil (the lock on the machine only orders the nodes).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn sysctls() -> Vec<String> {
    node::KUBELET_SYSCTLS
        .iter()
        .map(|k| std::fs::read_to_string(format!("/proc/sys/{}", k.replace('.', "/"))).unwrap())
        .collect()
}

fn host_leftovers() -> Vec<String> {
    let mut found = Vec::new();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    found.extend(mounts.lines().filter(|l| l.contains(node::STATE)).map(String::from));
    if std::path::Path::new(&format!("/run/netns/{}", node::NETNS)).exists() {
        found.push(format!("network namespace {}", node::NETNS));
    }
    if std::path::Path::new("/sys/class/net/fsn-host").exists() {
        found.push("the host's end of the link, fsn-host".into());
    }
    for path in ["/var/lib/kubelet", "/var/log/containers"] {
        if std::path::Path::new(path).exists() {
            found.push(path.into());
        }
    }
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        if h.path().join("kubepods").exists() {
            found.push(format!("{}/kubepods", h.path().display()));
        }
    }
    if std::path::Path::new(node::STATE).exists() {
        found.push(node::STATE.into());
    }
    found
}

#[test]
#[ignore = "runs a real kubelet with containerd as root (../shared/kube, Debian packages): cargo xtask test"]
fn a_real_node_runs_pods_and_leaves_the_host_as_it_was() {
    let _turn = take_turn();
    let before = sysctls();
    {
        let prepared = node::prepare().expect("the node's network");
        let cluster = Cluster::start_with("real-node", None, prepared.cluster_options()).expect("control plane");
        cluster.create_nodes(&[NodeSpec::standard("api-only-1", "a")]).expect("an API-only node");
        let node = RealNode::start(prepared, &cluster, &[]).expect("the real node joins");
        run_pause_pod(&cluster, &node);
        drop(node);
    }
    assert_eq!(host_leftovers(), Vec::<String>::new(), "the real node left these behind");
    assert_eq!(sysctls(), before, "kubelet's sysctls were not restored");
}

/// Set in the child process of [`a_run_killed_halfway_is_recovered_by_the_next`].
const KILLED_CHILD: &str = "FITSCHED_REAL_NODE_KILLED_CHILD";

/// A run that dies with its node up (kubelet, containerd, a pod's containers, the
/// namespace, the sysctls kubelet rewrote) leaves all of it behind; the next run's
/// `prepare` undoes it before it starts its own.
#[test]
#[ignore = "runs a real kubelet with containerd as root (../shared/kube, Debian packages): cargo xtask test"]
fn a_run_killed_halfway_is_recovered_by_the_next() {
    if std::env::var_os(KILLED_CHILD).is_some() {
        // The child: a node with a running pod, then gone without its teardown (the
        // control plane is stopped, as a dying test's would be with its process group).
        let prepared = node::prepare().expect("the node's network");
        let cluster = Cluster::start_with("real-node-killed", None, prepared.cluster_options()).expect("control plane");
        let node = RealNode::start(prepared, &cluster, &[]).expect("the real node joins");
        run_pause_pod(&cluster, &node);
        std::mem::forget(node);
        drop(cluster);
        // containerd dies with the run's process group; the pods' shims and containers,
        // in sessions of their own, live on.
        let pid = std::fs::read_to_string(format!("{}/run/containerd.pid", node::STATE)).unwrap();
        std::process::Command::new("kill").args(["-KILL", pid.trim()]).status().unwrap();
        std::process::exit(3);
    }
    let _turn = take_turn();
    let before = sysctls();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_run_killed_halfway_is_recovered_by_the_next", "--include-ignored", "--nocapture"])
        .env(KILLED_CHILD, "1")
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3), "the child run did not get as far as its node");
    assert!(!host_leftovers().is_empty(), "the killed run left nothing behind: the test proves nothing");
    drop(node::prepare().expect("the next run prepares its node"));
    assert_eq!(host_leftovers(), Vec::<String>::new(), "left behind after the recovery");
    assert_eq!(sysctls(), before, "kubelet's sysctls were not restored");
    let orphans: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|p| std::fs::read(p.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(node::STATE) || c.starts_with("/pause"))
        .collect();
    assert_eq!(orphans, Vec::<String>::new(), "the killed node's processes, or its pod's, still run");
}

fn run_pause_pod(cluster: &Cluster, node: &RealNode) {
    let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "pause"},
        "spec": {"nodeName": NODE_NAME, "containers": [{
            "name": "pause", "image": "registry.k8s.io/pause:3.10", "imagePullPolicy": "Never"}]},
    }))
    .unwrap();
    cluster.block_on(pods.create(&PostParams::default(), &pod)).expect("pod created");
    let running = || {
        let phase = cluster.block_on(pods.get("pause")).ok().and_then(|p| p.status?.phase);
        phase.as_deref() == Some("Running")
    };
    fitsched_e2e::drill::wait_until("the pause pod to run", Duration::from_secs(60), running)
        .unwrap_or_else(|e| panic!("{e} (logs in {})", node.log_dir().display()));
}

/// The chart installed as users install it, its pods run by the kubelet from images
/// `cargo xtask images` builds: every workload Ready, the agent streaming what it reads
/// from the host's /proc and the pods' cgroups (v1 on this host), the scorer reached
/// through its Service with grpcurl, and a benchmark pod that the `fitsched-balanced`
/// profile placed serving requests.
#[test]
#[ignore = "runs a real kubelet with containerd as root, the chart's images built from the debug binaries: cargo xtask test"]
fn the_chart_runs_on_a_real_node() {
    use fitsched_e2e::node::install::{InstallOptions, NodeInstall};
    let _turn = take_turn();
    let before = sysctls();
    {
        let mut run = NodeInstall::start(&InstallOptions::new("chart-on-node")).expect("the chart runs on a real node");
        for component in ["agent", "scorer", "scheduler", "bench"] {
            let pods = run.pods(component).unwrap();
            assert!(!pods.is_empty(), "no {component} pod");
            for p in pods {
                let node = p.spec.and_then(|s| s.node_name);
                assert_eq!(node.as_deref(), Some(NODE_NAME), "{component} pod {:?}", p.metadata.name);
            }
        }

        // The agent's window of the real node, through the scorer: the kubepods figures
        // of the pods running there, read from the host's cgroup v1 hierarchies.
        let window = run
            .wait_for(Duration::from_secs(60), "the real node's window with kubepods figures", |r| {
                let nodes = r.grpcurl("fitsched.v1.Scorer/ListNodes", &json!({}))?;
                let window = nodes["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|n| n["name"] == NODE_NAME)
                    .map(|n| n["latest"].clone());
                Ok(window.filter(|w| w["metrics"].get("kubepods_cpu_cores").is_some()))
            })
            .unwrap();
        for metric in ["kubepods_cpu_cores", "kubepods_memory_bytes", "cpu_utilization"] {
            assert!(window["metrics"].get(metric).is_some(), "{metric} missing from {window:#}");
        }
        let memory = window["metrics"]["kubepods_memory_bytes"]["mean"].as_f64().unwrap_or_default();
        assert!(memory > 1e6, "the pods use {memory} bytes");

        // kube-scheduler, in its pod, asked the shim beside it, which asked the scorer. With
        // the API-only nodes tainted the real node is the one feasible node, and then
        // kube-scheduler skips scoring: the filter verb is what shows the path. The shim is
        // a native sidecar, up before kube-scheduler starts; the scorer may not be yet when
        // the chart's first benchmark pod is placed (a neutral answer, as designed), so a
        // replacement is placed once everything runs, and the shim counts its filter call
        // answered by the scorer.
        let scheduler = run.pods("scheduler").unwrap().remove(0);
        let ip = scheduler.status.and_then(|s| s.pod_ip).expect("the scheduler pod's address");
        let shim_url = format!("http://{ip}:9091/metrics");
        let shim_metrics = |run: &NodeInstall| run.http_get(&shim_url).expect("the shim's /metrics");
        let filters = |text: &str| sum_metric(text, "fitsched_shim_requests_total", "verb=\"filter\"");
        let fallbacks = |text: &str| sum_metric(text, "fitsched_shim_fallbacks_total", "");
        let before = shim_metrics(&run);
        let first = run.pods("bench").unwrap().remove(0).metadata.name.unwrap();
        let pods: Api<Pod> = Api::namespaced(run.cluster.client(), &run.installed.namespace);
        run.cluster.block_on(pods.delete(&first, &Default::default())).expect("benchmark pod deleted");
        let bench = run
            .wait_for(Duration::from_secs(60), "the replacement benchmark pod Ready", |r| {
                Ok(r.pods("bench")?.into_iter().find(|p| {
                    p.metadata.name.as_deref() != Some(first.as_str())
                        && p.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                }))
            })
            .unwrap();
        let name = bench.metadata.name.clone().unwrap();
        assert_eq!(bench.spec.and_then(|s| s.node_name).as_deref(), Some(NODE_NAME));
        let after = shim_metrics(&run);
        assert!(filters(&after) > filters(&before), "no filter call for {name}:\n{after}");
        assert_eq!(fallbacks(&after), fallbacks(&before), "the scorer did not answer {name}'s filter:\n{after}");

        // The benchmark serves: wrk's summary in its container's log.
        let log = run
            .wait_for(Duration::from_secs(60), "a wrk run in the benchmark's log", |r| {
                let log = r.logs(&name, "wrk")?;
                Ok(log.contains("Requests/sec:").then_some(log))
            })
            .unwrap();
        let rps: f64 = log
            .lines()
            .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        assert!(rps > 10.0, "nginx served {rps} requests/s:\n{log}");
        println!("stages: {:?}", run.timings.stages);
    }
    assert_eq!(host_leftovers(), Vec::<String>::new(), "the real node left these behind");
    assert_eq!(sysctls(), before, "kubelet's sysctls were not restored");
}
