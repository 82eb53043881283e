//! A real node (kubelet, containerd, kube-proxy) joined to the control plane next to
//! API-only nodes, and the host as it was after it: no namespace, mount or cgroup left,
//! kubelet's sysctls restored.

use std::time::Duration;

use fitsched_e2e::cluster::{Cluster, NodeSpec};
use fitsched_e2e::node::{self, NODE_NAME, RealNode};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

fn sysctls() -> Vec<String> {
    ["vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops"]
        .iter()
        .map(|k| std::fs::read_to_string(format!("/proc/sys/{}", k.replace('.', "/"))).unwrap())
        .collect()
}

fn host_leftovers() -> Vec<String> {
    let mut found = Vec::new();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    found.extend(mounts.lines().filter(|l| l.contains(node::STATE) || l.contains("/run/netns/cni-")).map(String::from));
    if std::path::Path::new(&format!("/run/netns/{}", node::NETNS)).exists() {
        found.push(format!("network namespace {}", node::NETNS));
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
    let before = sysctls();
    {
        let prepared = node::prepare().expect("the node's network");
        let cluster = Cluster::start_with("real-node", None, prepared.cluster_options()).expect("control plane");
        cluster.create_nodes(&[NodeSpec::standard("api-only-1", "a")]).expect("an API-only node");
        let node = RealNode::start(prepared, &cluster, &[]).expect("the real node joins");
        let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "pause"},
            "spec": {"nodeName": NODE_NAME, "containers": [{
                "name": "pause", "image": "registry.k8s.io/pause:3.10", "imagePullPolicy": "Never"}]},
        }))
        .unwrap();
        cluster.block_on(pods.create(&PostParams::default(), &pod)).expect("pod created");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let p = cluster.block_on(pods.get("pause")).unwrap();
            let phase = p.status.and_then(|s| s.phase).unwrap_or_default();
            if phase == "Running" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the pod is {phase} after 60 s (logs in {})",
                node.log_dir().display()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        drop(node);
    }
    assert_eq!(host_leftovers(), Vec::<String>::new(), "the real node left these behind");
    assert_eq!(sysctls(), before, "kubelet's sysctls were not restored");
}
