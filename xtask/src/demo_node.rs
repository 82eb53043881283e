//! `cargo xtask demo --real-node`: the chart as a user installs it, on a real kubelet
//! node ([`fitsched_e2e::node`]): images built offline and imported, every pod of the
//! chart running, a benchmark Deployment that the `fitsched-balanced` profile placed
//! serving requests, and the scorer asked with grpcurl through its Service.

use std::time::{Duration, Instant};

use anyhow::Context;
use fitsched_e2e::node::NODE_NAME;
use fitsched_e2e::node::install::{InstallOptions, NodeInstall};
use fitsched_e2e::{paths, progress, tools};
use serde_json::json;

pub fn run(hold: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    tools::cargo(&["build", "--bin", "fitsched-agent", "--bin", "fitsched-scorer", "--bin", "fitsched-shim"])?;
    let options = InstallOptions { bench_replicas: 2, ..InstallOptions::new("demo-real-node") };
    progress(format!(
        "images from {}, a control plane, a real node ({NODE_NAME}) and the chart on it",
        paths::bin_dir().display()
    ));
    let mut run = NodeInstall::start(&options)?;

    println!();
    println!("{:<58} {:<8} {:<14} containers", "pod", "phase", "node");
    for line in run.describe_pods()?.lines().filter(|l| !l.starts_with(' ')) {
        let mut f = line.split(' ');
        let (pod, phase) = (f.next().unwrap_or_default(), f.next().unwrap_or_default());
        let node = line.rsplit(' ').next().unwrap_or_default();
        println!("{pod:<58} {phase:<8} {node:<14}");
    }

    let window = run.wait_for(Duration::from_secs(60), "the real node's window", |r| {
        let nodes = r.grpcurl("fitsched.v1.Scorer/ListNodes", &json!({}))?;
        Ok(nodes["nodes"].as_array().into_iter().flatten().find(|n| n["name"] == NODE_NAME).cloned())
    })?;
    println!();
    println!(
        "the scorer's view of {NODE_NAME} (grpcurl ListNodes through the Service), fitness {}:",
        window["fitness"]
    );
    let metrics = &window["latest"]["metrics"];
    use fitsched_proto::metric;
    for name in [
        metric::CPU_UTILIZATION,
        metric::MEMORY_AVAILABLE_RATIO,
        metric::PSI_CPU_SOME,
        metric::KUBEPODS_CPU_CORES,
        metric::KUBEPODS_MEMORY_BYTES,
    ] {
        println!("  {name:<24} {}", metrics[name]["mean"]);
    }
    let missing = window["latest"]["missing"].as_array().map_or(0, Vec::len);
    println!("  ({missing} metrics reported missing with a reason, e.g. perf counters without a PMU)");

    println!();
    for pod in run.pods("bench")? {
        let name = pod.metadata.name.clone().context("a pod without a name")?;
        let log = run.wait_for(Duration::from_secs(60), "a wrk run", |r| {
            let log = r.logs(&name, "wrk")?;
            Ok(log.contains("Requests/sec:").then_some(log))
        })?;
        let rps = log.lines().filter_map(|l| l.trim().strip_prefix("Requests/sec:")).next_back().unwrap_or("?").trim();
        println!(
            "benchmark {name} on {}: nginx served {rps} requests/s to wrk",
            pod.spec.and_then(|s| s.node_name).unwrap_or_default()
        );
    }
    println!();
    for (stage, took) in &run.timings.stages {
        println!("  {stage:<36} {took:>8.1?}");
    }
    progress(format!("demo done in {:.0?}", started.elapsed()));
    if hold {
        println!(
            "\nholding until Ctrl-C; try, from the node's network namespace:\n  nsenter --net=/run/netns/{} {} -plaintext -H 'authorization: Bearer <token>' {}:50051 list",
            fitsched_e2e::node::NETNS,
            run.venv.grpcurl().display(),
            fitsched_e2e::node::install::SCORER_IP,
        );
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::SeqCst))?;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}
