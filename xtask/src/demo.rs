//! `cargo xtask demo`: fitsched as a cluster runs it, on localhost. A real control plane
//! (etcd, kube-apiserver, kube-controller-manager, kube-scheduler v1.36.2) with the Helm
//! chart installed, API-only nodes, one real agent reading this machine and one agent
//! process simulating the rest of a cluster; kube-scheduler, with the chart's
//! configuration, places one Deployment per strategy profile through the shim, and the
//! demo prints where each pod went and the scorer's reason.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use fitsched_e2e::cluster::{Placement, Workload};
use fitsched_e2e::stack::{Stack, block_on};
use fitsched_e2e::testbed::{Testbed, TestbedConfig};
use fitsched_e2e::{progress, tools};
use fitsched_proto::{CandidateNode, Decision, ExplainRequest, FilterRequest, PodFacts};
use serde_json::json;

use fitsched_e2e::tools::cargo;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Simulated nodes beside this machine.
    #[arg(long, default_value_t = 15)]
    nodes: u32,
    /// Replicas per Deployment (one Deployment per strategy profile: fitsched-spread,
    /// fitsched-pack, fitsched-balanced).
    #[arg(long, default_value_t = 10)]
    replicas: u32,
    /// Window length for agents and scorer (production default: 20s).
    #[arg(long, default_value = "4s")]
    window: String,
    /// Keep everything running after the tables until Ctrl-C, to try the grpcurl commands.
    #[arg(long)]
    hold: bool,
    /// Seed of the simulated nodes' telemetry (kube-scheduler breaks its ties at random).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Where kube-apiserver, kube-scheduler and kube-controller-manager are.
    #[arg(long)]
    kube_bin: Option<PathBuf>,
    /// The chart as users install it, on a real kubelet node: images built offline and
    /// imported, every pod of the chart running (root; containerd, runc and the CNI
    /// plugins from Debian).
    #[arg(long)]
    real_node: bool,
}

/// The namespace of the demo's Deployments.
const NAMESPACE: &str = "demo";
/// Deployment name and strategy, in the order they are placed.
const WORKLOADS: [(&str, &str); 3] = [("web", "spread"), ("batch", "pack"), ("api", "balanced")];
/// Nodes thrashing on memory (PSI memory full above 8 %) are dropped by /filter.
const MAX_PSI_MEMORY_FULL: f64 = 0.08;

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.real_node {
        return crate::demo_node::run(args.hold);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("installing the Ctrl-C handler")?;

    let started = Instant::now();
    cargo(&["build", "--workspace", "--bins"])?;
    let venv = tools::ensure_venv()?;
    let host = node_name(&hostname());
    progress(format!(
        "starting the control plane, the chart, scorer, shim, a real agent for {host} and {} simulated nodes \
         (windows of {})",
        args.nodes, args.window
    ));
    let config = TestbedConfig {
        window: args.window.clone(),
        real_agent: Some(host.clone()),
        sim_seed: args.seed,
        // The chart renders the extender's filterVerb, and the scorer's flag, only while a
        // filter rule is set.
        values: json!({"scorer": {"filter": {"maxPsiMemoryFull": MAX_PSI_MEMORY_FULL}}}),
        // Where the chart's PCM sidecar listens: the agent then says why PCM is
        // unavailable on this machine (no MSR, not Intel, no server) instead of "disabled".
        agent_args: vec!["--pcm-url".into(), "http://127.0.0.1:9738".into()],
        kube_bin: args.kube_bin.clone(),
        ..TestbedConfig::new("demo", args.nodes)
    };
    let mut tb = Testbed::start(config)?;
    anyhow::ensure!(
        tb.installed.scorer_args.iter().any(|a| a.starts_with("--filter-max-psi-memory-full")),
        "the chart gave the scorer no --filter-max-psi-memory-full: {:?}",
        tb.installed.scorer_args
    );
    let extenders = tb.installed.scheduler_config["extenders"].as_array().cloned().unwrap_or_default();
    anyhow::ensure!(
        extenders.iter().any(|e| e["filterVerb"].as_str().is_some_and(|v| !v.is_empty())),
        "the chart's KubeSchedulerConfiguration has no extender with a filterVerb: {extenders:?}"
    );
    progress("starting kube-scheduler with the chart's configuration");
    tb.start_scheduler()?;
    let logs = tb.cluster.dir().join("logs");

    let filtered = filtered_nodes(&tb)?;
    let mut placed: Vec<(&str, String, Vec<Placement>)> = Vec::new();
    for (name, strategy) in WORKLOADS {
        let profile = tb.profile(strategy);
        let w = Workload::new(NAMESPACE, name, args.replicas, &profile);
        progress(format!("Deployment {NAMESPACE}/{name}: {} pods, schedulerName {profile}", args.replicas));
        tb.cluster.create_workload(&w)?;
        let pods = tb.cluster.wait_scheduled(&w, Duration::from_secs(120))?;
        placed.push((strategy, profile, pods));
    }
    let pods: Vec<String> = placed.iter().flat_map(|(_, _, p)| p.iter().map(|p| p.pod.clone())).collect();
    let decisions = decisions(&tb.stack, &pods);

    println!();
    if filtered.is_empty() {
        println!("/filter (PSI memory full above {MAX_PSI_MEMORY_FULL}) drops no node right now");
    } else {
        println!("/filter drops {} node(s) for every pod:", filtered.len());
        for (node, why) in &filtered {
            println!("  {node:<14} {why}");
        }
    }
    println!();
    println!(
        "{:<24} {:<18} {:<14} {:<7} {:>5}  why (the scorer's words for the chosen node)",
        "pod", "profile", "node", "zone", "rank"
    );
    for (strategy, profile, pods) in &placed {
        // In the order they were scored.
        let mut rows: Vec<(&Placement, Option<&Decision>)> =
            pods.iter().map(|p| (p, decisions.get(&p.pod).and_then(|d| d.as_ref().ok()))).collect();
        rows.sort_by_key(|(p, d)| (d.map_or(i64::MAX, |d| d.decided_unix_ms), p.pod.clone()));
        for (p, _) in rows {
            let (rank, why) = match decisions.get(&p.pod) {
                Some(Ok(d)) => explain(d, strategy, &p.node),
                Some(Err(e)) => ("-".to_owned(), format!("(no explanation: {e})")),
                None => ("-".to_owned(), "(no explanation)".to_owned()),
            };
            let z = tb.zone_of(&p.node).unwrap_or("?");
            println!("{:<24} {:<18} {:<14} {:<7} {:>5}  {}", p.pod, profile, p.node, z, rank, why);
        }
    }
    println!();
    for (strategy, profile, pods) in &placed {
        let spread = tb.spread(pods);
        println!(
            "{strategy:<9} ({profile}) {} pods on {} node(s), most on one node {}; per zone {:?}",
            pods.len(),
            spread.per_node.len(),
            spread.most_on_one_node(),
            spread.per_zone
        );
    }

    print_real_node(&tb.stack, &host)?;
    let info = block_on(async {
        let mut c = tb.stack.scorer_client().await?;
        anyhow::Ok(c.model_info(fitsched_proto::ModelInfoRequest {}).await?.into_inner())
    })?;
    println!("\nfitness model: {} {} ({} features) from {}", info.kind, info.version, info.features.len(), info.source);

    let g = venv.grpcurl();
    let a = tb.stack.scorer_grpc;
    let example = pods.first().map_or("web", String::as_str);
    // The scorer lets no one in without a token, as installed: the commands read the
    // operator's and the shim's from the files the stack wrote.
    let bearer = |role: &str| format!("-H \"authorization: Bearer $(cat {})\"", tb.stack.token_path(role).display());
    let (op, shim) = (bearer("operator"), bearer("scheduler"));
    println!("\nTry the scorer (reflection: no .proto needed; every call but health needs a token):");
    println!("  {} -plaintext {op} {a} list", g.display());
    println!("  {} -plaintext {a} grpc.health.v1.Health/Check", g.display());
    println!("  {} -plaintext {op} {a} fitsched.v1.Scorer/ModelInfo", g.display());
    println!("  {} -plaintext {op} {a} fitsched.v1.Scorer/ListNodes", g.display());
    println!(
        "  {} -plaintext {shim} -d '{{\"pod\":{{\"name\":\"p\",\"namespace\":\"default\",\"strategy\":\"spread\"}},\"nodes\":[{{\"name\":\"{host}\"}},{{\"name\":\"sim-node-01\"}}]}}' {a} fitsched.v1.Scorer/Score",
        g.display()
    );
    println!(
        "  {} -plaintext {op} -d '{{\"pod_namespace\":\"{NAMESPACE}\",\"pod_name\":\"{example}\"}}' {a} fitsched.v1.Scorer/Explain",
        g.display()
    );
    println!("  curl -s http://{}/metrics | grep -E '^(inference|fitsched)_'", tb.stack.scorer_http);
    println!("  curl -s http://{}/metrics | grep -E '^fitsched_shim_'", tb.stack.shim_metrics);
    println!(
        "API server: {} (admin kubeconfig {})",
        tb.cluster.api_url(),
        tb.cluster.dir().join("admin.kubeconfig").display()
    );
    println!("Logs: {}", logs.display());
    progress(format!("demo done in {:.0?}", started.elapsed()));

    if args.hold {
        println!("\nEverything keeps running; Ctrl-C stops every process.");
        let held = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
            if let Err(e) = tb.stack.check_alive().and_then(|()| tb.cluster.check_alive()) {
                // Ctrl-C reaches the children too: one may exit before the flag is seen.
                std::thread::sleep(Duration::from_millis(300));
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                return Err(e);
            }
        }
        progress(format!("stopping after {:.0?}", held.elapsed()));
    }
    Ok(())
}

/// The chosen node's rank in the scorer's decision (`>16` outside its top list), and the
/// scorer's words for it.
fn explain(d: &Decision, strategy: &str, node: &str) -> (String, String) {
    let (rank, mut why) = match d.top.iter().position(|s| s.node == node) {
        Some(i) => ((i + 1).to_string(), d.top[i].reason.clone()),
        None => (
            format!(">{}", d.top.len()),
            format!(
                "outside the scorer's top {} of {} nodes: kube-scheduler's own plugins outweighed the extender",
                d.top.len(),
                d.candidates
            ),
        ),
    };
    if !d.strategy.is_empty() && d.strategy != strategy {
        why = format!("[scored as {}] {why}", d.strategy);
    }
    (rank, why)
}

/// The scorer's latest decision for each pod of the demo.
fn decisions(stack: &Stack, pods: &[String]) -> HashMap<String, anyhow::Result<Decision>> {
    block_on(async {
        let mut c = match stack.scorer_client().await {
            Ok(c) => c,
            Err(e) => return pods.iter().map(|p| (p.clone(), Err(anyhow::anyhow!("{e}")))).collect(),
        };
        let mut out = HashMap::new();
        for p in pods {
            let req = ExplainRequest { pod_namespace: NAMESPACE.into(), pod_name: p.clone() };
            let d =
                c.explain(req).await.map(tonic::Response::into_inner).map_err(|s| anyhow::anyhow!("{}", s.message()));
            out.insert(p.clone(), d);
        }
        out
    })
}

/// What the scorer's Filter drops among all nodes, with its reasons (the same answer the
/// shim's /filter gives kube-scheduler).
fn filtered_nodes(tb: &Testbed) -> anyhow::Result<BTreeMap<String, String>> {
    let nodes: Vec<CandidateNode> =
        tb.nodes.iter().map(|n| CandidateNode { name: n.name.clone(), ..Default::default() }).collect();
    let pod = PodFacts { name: "probe".into(), namespace: NAMESPACE.into(), ..Default::default() };
    let failed = block_on(async {
        let mut c = tb.stack.scorer_client().await?;
        anyhow::Ok(c.filter(FilterRequest { pod: Some(pod), nodes }).await?.into_inner().failed)
    })?;
    Ok(failed.into_iter().collect())
}

/// What the real agent measured on this machine, and what it could not measure and why
/// (no PMU in a VM, no PCM, not a Kubernetes node...).
fn print_real_node(stack: &Stack, host: &str) -> anyhow::Result<()> {
    let nodes = block_on(async {
        let mut c = stack.scorer_client().await?;
        anyhow::Ok(c.list_nodes(fitsched_proto::ListNodesRequest {}).await?.into_inner())
    })?;
    let Some(w) = nodes.nodes.into_iter().find(|n| n.name == host).and_then(|n| n.latest) else {
        println!("\n{host}: no window yet");
        return Ok(());
    };
    let node_totals: Vec<&String> = w.metrics.keys().filter(|k| !k.contains(':')).collect();
    println!(
        "\n{host} (the real agent, window of {} samples): {} node metrics measured, {} per device; {} missing:",
        w.samples,
        node_totals.len(),
        w.metrics.len() - node_totals.len(),
        w.missing.len()
    );
    let show = |names: &[&str]| {
        names
            .iter()
            .filter_map(|m| w.metrics.get(*m).map(|s| format!("{m}={:.3}", s.mean)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "  measured: {}",
        show(&[
            "cpu_utilization",
            "cpu_steal",
            "run_queue_per_cpu",
            "memory_available_ratio",
            "psi_cpu_some",
            "psi_io_some"
        ])
    );
    println!(
        "            {}",
        show(&[
            "perf_context_switches_per_second",
            "perf_page_faults_per_second",
            "net_rx_bytes_per_second",
            "disk_utilization",
            "stream_rtt_seconds"
        ])
    );
    let mut by_reason = BTreeMap::<&str, Vec<&str>>::new();
    for m in &w.missing {
        by_reason.entry(m.reason.as_str()).or_default().push(m.name.as_str());
    }
    for (reason, names) in by_reason {
        println!("  missing {}: {reason}", names.join(", "));
    }
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

/// A Node name for `host`: a DNS-1123 subdomain (lowercase letters, digits, `-`, `.`).
fn node_name(host: &str) -> String {
    let name: String = host
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' })
        .collect();
    let name = name.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if name.is_empty() { "localhost".to_owned() } else { name.chars().take(253).collect() }
}
