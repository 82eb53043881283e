//! `cargo xtask demo`: the whole stack on localhost. One real agent reads this
//! machine, one agent process simulates the rest of a cluster, and a kube-scheduler
//! simulator schedules ReplicaSets through the shim, printing where each pod went and
//! why.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use fitsched_e2e::sim::{Mode, SimNode, SimPod, Simulator};
use fitsched_e2e::stack::{Stack, StackConfig, block_on};
use fitsched_e2e::{paths, progress, tools};
use fitsched_proto::ExplainRequest;
use fitsched_proto::scorer_client::ScorerClient;

use crate::cargo;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Simulated nodes beside this machine.
    #[arg(long, default_value_t = 15)]
    nodes: u32,
    /// Replicas per ReplicaSet (one ReplicaSet per strategy: spread, pack, balanced).
    #[arg(long, default_value_t = 10)]
    replicas: usize,
    /// Window length for agents and scorer (production default: 20s).
    #[arg(long, default_value = "4s")]
    window: String,
    /// Extender mode: `full` (whole Node objects, zones visible) or `names`
    /// (nodeCacheCapable).
    #[arg(long, default_value = "full")]
    mode: String,
    /// Keep the stack running after the table until Ctrl-C, to try the grpcurl commands.
    #[arg(long)]
    hold: bool,
    /// Seed of the simulated nodes and of kube-scheduler's tie-breaking.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let mode = match args.mode.as_str() {
        "full" => Mode::Full,
        "names" => Mode::Names,
        other => anyhow::bail!("--mode must be full or names, not {other:?}"),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("installing the Ctrl-C handler")?;

    cargo(&["build", "--workspace", "--bins"])?;
    let venv = tools::ensure_venv()?;
    let host = hostname();
    progress(format!("starting scorer, shim, a real agent for {host} and {} simulated nodes", args.nodes));
    let config = StackConfig {
        window: args.window.clone(),
        tick: "500ms".into(),
        real_agents: vec![Some(host.clone())],
        simulated: args.nodes,
        sim_seed: args.seed,
        // Nodes thrashing on memory (PSI full above 8 %) are dropped by /filter.
        scorer_args: vec!["--filter-max-psi-memory-full".into(), "0.08".into()],
        log_dir: paths::state_dir().join("demo-logs"),
        // Where the chart's PCM sidecar listens: the agent then says why PCM is
        // unavailable on this machine (no MSR, not Intel, no server) instead of "disabled".
        agent_args: vec!["--pcm-url".into(), "http://127.0.0.1:9738".into()],
        ..StackConfig::default()
    };
    let config = config.with_committed_model(&venv)?;
    let mut stack = Stack::start(config)?;
    let sims: Vec<String> = (1..=args.nodes).map(|i| format!("sim-node-{i:02}")).collect();
    let mut wanted: Vec<&str> = sims.iter().map(String::as_str).collect();
    wanted.push(&host);
    progress(format!("waiting for the first windows ({} each)", args.window));
    stack.wait_for_nodes(&wanted, wanted.len(), Duration::from_secs(120))?;

    let mut nodes = vec![SimNode::new(&host, ZONES[0], this_machine_cpu_millis(), this_machine_memory_bytes())];
    nodes.extend(sims.iter().enumerate().map(|(i, n)| SimNode::new(n, ZONES[(i + 1) % 3], 16_000, 64 << 30)));
    let mut sim = Simulator::new(&stack.shim_url(), mode, nodes, args.seed);

    println!();
    println!(
        "{:<14} {:<9} {:<14} {:<7} {:>3} {:>4} {:>5}  why (scorer)",
        "pod", "strategy", "node", "zone", "ext", "fit", "total"
    );
    let mut placed = Vec::new();
    for (rs, strategy) in [("web", "spread"), ("batch", "pack"), ("api", "balanced")] {
        for i in 1..=args.replicas {
            let pod = SimPod::replica(rs, i, Some(strategy));
            let p = sim.schedule(&pod).with_context(|| format!("scheduling {}", pod.name))?;
            let why = reason(&stack.scorer_url(), &pod, &p.node).unwrap_or_else(|e| format!("(no explanation: {e})"));
            println!(
                "{:<14} {:<9} {:<14} {:<7} {:>3} {:>4} {:>5}  {}",
                p.pod, strategy, p.node, p.zone, p.extender_score, p.plugin_score, p.total, why
            );
            if !p.filtered.is_empty() && i == 1 {
                for (node, why) in &p.filtered {
                    println!("{:<14} {:<9} {node:<14} filtered: {why}", "", "");
                }
            }
            placed.push((rs, p));
        }
    }
    println!();
    for rs in ["web", "batch", "api"] {
        let mine: Vec<_> = placed.iter().filter(|(r, _)| *r == rs).map(|(_, p)| p).collect();
        let mut per_node = std::collections::BTreeMap::<&str, usize>::new();
        let mut per_zone = std::collections::BTreeMap::<&str, usize>::new();
        for p in &mine {
            *per_node.entry(&p.node).or_default() += 1;
            *per_zone.entry(&p.zone).or_default() += 1;
        }
        println!(
            "{rs:<6} {} pods on {} node(s), most on one node {}; per zone {:?}",
            mine.len(),
            per_node.len(),
            per_node.values().max().unwrap_or(&0),
            per_zone
        );
    }

    print_real_node(&stack, &host)?;
    let url = stack.scorer_url();
    let info = block_on(async move {
        anyhow::Ok(
            ScorerClient::connect(url).await?.model_info(fitsched_proto::ModelInfoRequest {}).await?.into_inner(),
        )
    })?;
    println!("\nfitness model: {} {} ({} features) from {}", info.kind, info.version, info.features.len(), info.source);

    let g = venv.grpcurl();
    let a = stack.scorer_grpc;
    println!("\nTry the scorer (reflection: no .proto needed):");
    println!("  {} -plaintext {a} list", g.display());
    println!("  {} -plaintext {a} grpc.health.v1.Health/Check", g.display());
    println!("  {} -plaintext {a} fitsched.v1.Scorer/ModelInfo", g.display());
    println!("  {} -plaintext {a} fitsched.v1.Scorer/ListNodes", g.display());
    println!(
        "  {} -plaintext -d '{{\"pod\":{{\"name\":\"p\",\"namespace\":\"default\",\"strategy\":\"spread\"}},\"nodes\":[{{\"name\":\"{host}\"}},{{\"name\":\"sim-node-01\"}}]}}' {a} fitsched.v1.Scorer/Score",
        g.display()
    );
    println!(
        "  {} -plaintext -d '{{\"pod_namespace\":\"bench\",\"pod_name\":\"web-01\"}}' {a} fitsched.v1.Scorer/Explain",
        g.display()
    );
    println!("  curl -s http://{}/metrics | grep -E '^(inference|fitsched)_'", stack.scorer_http);
    println!("Logs: {}", paths::state_dir().join("demo-logs").display());

    if args.hold {
        println!("\nThe stack keeps running; Ctrl-C stops every process.");
        let started = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
            stack.check_alive()?;
        }
        progress(format!("stopping after {:.0?}", started.elapsed()));
    }
    Ok(())
}

/// What the real agent measured on this machine, and what it could not measure and why
/// (no PMU in a VM, no PCM, not a Kubernetes node...).
fn print_real_node(stack: &Stack, host: &str) -> anyhow::Result<()> {
    let url = stack.scorer_url();
    let nodes = block_on(async move {
        anyhow::Ok(
            ScorerClient::connect(url).await?.list_nodes(fitsched_proto::ListNodesRequest {}).await?.into_inner(),
        )
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
    let mut by_reason = std::collections::BTreeMap::<&str, Vec<&str>>::new();
    for m in &w.missing {
        by_reason.entry(m.reason.as_str()).or_default().push(m.name.as_str());
    }
    for (reason, names) in by_reason {
        println!("  missing {}: {reason}", names.join(", "));
    }
    Ok(())
}

/// The scorer's reason for the chosen node, from its latest decision for the pod.
fn reason(scorer: &str, pod: &SimPod, node: &str) -> anyhow::Result<String> {
    let req = ExplainRequest { pod_namespace: pod.namespace.clone(), pod_name: pod.name.clone() };
    let url = scorer.to_owned();
    let d = block_on(async move { anyhow::Ok(ScorerClient::connect(url).await?.explain(req).await?.into_inner()) })?;
    Ok(d.top
        .iter()
        .find(|s| s.node == node)
        .map_or_else(|| "not among the scorer's top 16".to_owned(), |s| s.reason.clone()))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

fn this_machine_cpu_millis() -> i64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as i64) * 1000
}

fn this_machine_memory_bytes() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<i64>().ok())
        })
        .map_or(8 << 30, |kib| kib * 1024)
}
