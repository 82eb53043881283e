//! `cargo xtask bench scheduler`: pods per second through the real kube-scheduler, as
//! kube-scheduler counts them, and the CPU every process spends per scheduled pod.
//!
//! One control plane per cluster size (API-only nodes named after simulated ones, the
//! chart installed, fitsched in release builds). For each variant the same work: the
//! pods are created (ReplicaSets of 100) while kube-scheduler is down, then it starts
//! and places them all at once; the rate is read from its own
//! `scheduler_schedule_attempts_total{result="scheduled"}` between its first and its
//! last scheduled pod. Variants:
//! - `default`: the chart's configuration without the extender (kube-scheduler alone);
//! - `noop`: the extender entry pointed at a minimal no-op extender (`noop_extender`
//!   example: decodes each call and answers every node, nothing else), without bindVerb;
//! - `fitsched`: the chart's configuration as it is;
//! - `fitsched-nobind`: the same without bindVerb (kube-scheduler binds).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fitsched_e2e::cluster::{Cluster, Workload};
use fitsched_e2e::process::Processes;
use fitsched_e2e::stack::free_addr;
use fitsched_e2e::testbed::{Testbed, TestbedConfig};
use fitsched_e2e::{paths, progress};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use serde_json::Value;

use super::{Usage, usage};
use crate::cargo;

#[derive(Debug, clap::Args)]
pub struct SchedulerArgs {
    /// Cluster sizes (API-only nodes, each with simulated telemetry).
    #[arg(long, value_delimiter = ',', default_value = "500,5000")]
    nodes: Vec<u32>,
    /// Pods created while kube-scheduler is down, in ReplicaSets of 100.
    #[arg(long, default_value_t = 3000)]
    pods: u32,
    /// Variants, in the order run.
    #[arg(long, value_delimiter = ',', default_value = "default,noop,fitsched,fitsched-nobind")]
    variants: Vec<String>,
    /// Where kube-apiserver, kube-scheduler and kube-controller-manager are.
    #[arg(long)]
    kube_bin: Option<PathBuf>,
}

/// One variant's figures.
struct Run {
    variant: String,
    pods_per_second: f64,
    /// CPU milliseconds per scheduled pod, by process.
    cpu_ms_per_pod: BTreeMap<&'static str, f64>,
}

/// Processes whose CPU is counted, as the harness names them.
const CONTROL_PLANE: [&str; 4] = ["kube-scheduler", "kube-apiserver", "etcd", "kube-controller-manager"];
const FITSCHED: [&str; 3] = ["shim", "scorer", "agent-sim"];

pub fn run(args: SchedulerArgs) -> anyhow::Result<()> {
    cargo(&["build", "--release", "-p", "fitsched-scorer", "-p", "fitsched-shim", "-p", "fitsched-agent", "--bins"])?;
    cargo(&["build", "--release", "-p", "fitsched-e2e", "--example", "noop_extender"])?;
    let release = paths::target_dir().join("release");
    let mut all = Vec::new();
    for &nodes in &args.nodes {
        let runs = one_size(&args, nodes, &release)?;
        print_table(nodes, args.pods, &runs);
        all.push((nodes, runs));
    }
    if all.len() > 1 {
        println!("\n(every table above, in order)");
        for (nodes, runs) in &all {
            print_table(*nodes, args.pods, runs);
        }
    }
    Ok(())
}

fn one_size(args: &SchedulerArgs, nodes: u32, release: &Path) -> anyhow::Result<Vec<Run>> {
    progress(format!("bench scheduler: {nodes} nodes, {} pods per variant", args.pods));
    let config = TestbedConfig {
        window: "20s".into(),
        bin_dir: Some(release.to_path_buf()),
        kube_bin: args.kube_bin.clone(),
        ..TestbedConfig::new(&format!("bench-{nodes}"), nodes)
    };
    let mut tb = Testbed::start(config)?;
    let noop_addr = free_addr()?;
    let mut noop = Processes::new(tb.cluster.dir().join("logs"))?;
    let mut cmd = Command::new(release.join("examples/noop_extender"));
    cmd.arg(noop_addr.to_string());
    noop.spawn("noop-extender", cmd)?;

    let profile = tb.installed.profiles[0].clone();
    let mut runs = Vec::new();
    for variant in &args.variants {
        let mut config = tb.installed.scheduler_config.clone();
        match variant.as_str() {
            "default" => {
                config.as_object_mut().context("config")?.remove("extenders");
            }
            "noop" => {
                fitsched_e2e::cluster::point_extenders_at(&mut config, noop_addr);
                without_bind(&mut config);
            }
            "fitsched" => fitsched_e2e::cluster::point_extenders_at(&mut config, tb.stack.shim_http),
            "fitsched-nobind" => {
                fitsched_e2e::cluster::point_extenders_at(&mut config, tb.stack.shim_http);
                without_bind(&mut config);
            }
            other => bail!("unknown variant {other}: default, noop, fitsched, fitsched-nobind"),
        }
        runs.push(one_variant(&mut tb, &noop, variant, &config, &profile, args.pods)?);
    }
    Ok(runs)
}

fn without_bind(config: &mut Value) {
    if let Some(extenders) = config.get_mut("extenders").and_then(Value::as_array_mut) {
        for e in extenders {
            e.as_object_mut().map(|o| o.remove("bindVerb"));
        }
    }
}

fn one_variant(
    tb: &mut Testbed,
    noop: &Processes,
    variant: &str,
    config: &Value,
    profile: &str,
    pods: u32,
) -> anyhow::Result<Run> {
    let workloads: Vec<Workload> = (0..pods.div_ceil(100))
        .map(|i| Workload::new("bench", &format!("rs-{i:02}"), 100.min(pods - i * 100), profile))
        .collect();
    progress(format!("{variant}: creating {pods} pods while kube-scheduler is down"));
    for w in &workloads {
        tb.cluster.create_workload(w)?;
    }
    wait_pods(&tb.cluster, pods as usize, false, Duration::from_secs(300))?;

    let pids = |tb: &Testbed| -> BTreeMap<&'static str, u32> {
        CONTROL_PLANE
            .iter()
            .filter_map(|&n| Some((n, tb.cluster.pid(n)?)))
            .chain(FITSCHED.iter().filter_map(|&n| Some((n, tb.stack.pid(n)?))))
            .chain(noop.pid("noop-extender").map(|p| ("noop-extender", p)))
            .collect()
    };
    progress(format!("{variant}: kube-scheduler starts"));
    let mut config_path = tb.cluster.dir().to_path_buf();
    config_path.push(format!("scheduler-{variant}.json"));
    std::fs::write(&config_path, serde_json::to_vec_pretty(config)?)?;
    // kube-scheduler's own CPU is counted from its start; the others from just before.
    let before: BTreeMap<&str, _> = pids(tb).into_iter().filter_map(|(n, p)| Some((n, usage(p).ok()?))).collect();
    let kubeconfig = tb.installed.scheduler_kubeconfig.clone();
    tb.cluster.start_scheduler(config, &kubeconfig)?;

    let (mut first, mut last) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let scheduled = tb.cluster.scheduled_attempts().unwrap_or(0);
        let now = Instant::now();
        if scheduled > 0 && first.is_none() {
            first = Some((now, scheduled));
        }
        if scheduled >= u64::from(pods) {
            last = Some((now, scheduled));
            break;
        }
        if now > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let after: BTreeMap<&str, _> = pids(tb).into_iter().filter_map(|(n, p)| Some((n, usage(p).ok()?))).collect();
    let ((t0, c0), (t1, c1)) = match (first, last) {
        (Some(f), Some(l)) => (f, l),
        _ => bail!("{variant}: kube-scheduler did not schedule {pods} pods within 10 minutes"),
    };
    let pods_per_second = (c1 - c0) as f64 / t1.duration_since(t0).as_secs_f64().max(1e-3);
    let cpu_ms_per_pod = after
        .iter()
        .map(|(name, a)| {
            let cpu = before.get(name).unwrap_or(&Usage::ZERO).cpu_since(a);
            (*name, cpu.as_secs_f64() * 1e3 / f64::from(pods))
        })
        .collect();
    wait_pods(&tb.cluster, pods as usize, true, Duration::from_secs(120))?;
    progress(format!("{variant}: {pods_per_second:.0} pods/s"));

    tb.cluster.stop_scheduler()?;
    for w in &workloads {
        tb.cluster.delete_workload(w)?;
    }
    wait_pods(&tb.cluster, 0, false, Duration::from_secs(120))?;
    Ok(Run { variant: variant.to_owned(), pods_per_second, cpu_ms_per_pod })
}

/// Waits until the bench namespace holds exactly `count` pods (bound ones only, with
/// `bound`).
fn wait_pods(cluster: &Cluster, count: usize, bound: bool, timeout: Duration) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::namespaced(cluster.client(), "bench");
    let deadline = Instant::now() + timeout;
    loop {
        let list = cluster.block_on(api.list_metadata(&ListParams::default()));
        let n = match (list, bound) {
            (Ok(l), false) => l.items.len(),
            (Ok(_), true) => cluster
                .block_on(api.list(&ListParams::default()))?
                .items
                .iter()
                .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_some()))
                .count(),
            (Err(e), _) => return Err(e.into()),
        };
        if n == count || (bound && n >= count) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{n} pods in namespace bench after {timeout:?}, waiting for {count}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn print_table(nodes: u32, pods: u32, runs: &[Run]) {
    let rate = |v: &str| runs.iter().find(|r| r.variant == v).map(|r| r.pods_per_second);
    let (default, noop) = (rate("default"), rate("noop"));
    let names: Vec<&str> =
        ["kube-scheduler", "kube-apiserver", "etcd", "shim", "scorer", "noop-extender", "agent-sim"].into();
    println!("\n{nodes} nodes, {pods} pods created while kube-scheduler was down (release builds, one run each):");
    println!(
        "| variant | pods/s | × default | × no-op | {} | extender (shim+scorer or no-op) |",
        names.iter().map(|n| format!("{n} ms/pod")).collect::<Vec<_>>().join(" | ")
    );
    println!("|---|---|---|---|{}---|", "---|".repeat(names.len()));
    for r in runs {
        let ratio = |base: Option<f64>| base.map_or("-".into(), |b| format!("{:.2}", r.pods_per_second / b));
        let ms = |n: &str| r.cpu_ms_per_pod.get(n).copied().unwrap_or(0.0);
        let extender = match r.variant.as_str() {
            "noop" => ms("noop-extender"),
            v if v.starts_with("fitsched") => ms("shim") + ms("scorer"),
            _ => 0.0,
        };
        println!(
            "| {} | {:.0} | {} | {} | {} | {extender:.2} |",
            r.variant,
            r.pods_per_second,
            ratio(default),
            ratio(noop),
            names.iter().map(|n| format!("{:.2}", ms(n))).collect::<Vec<_>>().join(" | ")
        );
    }
}
