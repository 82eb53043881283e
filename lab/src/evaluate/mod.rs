//! `cargo xtask evaluate`: fitsched against kube-scheduler's default profile on measured
//! outcomes, through the real kube-scheduler with the chart's configuration.
//!
//! For every seed, `onnx/train.py --eval-split` trains the model without a third of the
//! interference groups and hands back the samples it never saw. On a real control plane
//! with API-only nodes of the measured machine's size, `fitsched-agent --replay` reports
//! each node's window: a held-out sample matched to the node's condition during the
//! last step (its outside load, which comes and goes, and the pods on it). Every
//! scheduler gets the same timeline of pod arrivals: kube-scheduler's default profile,
//! fitsched's spread, pack and balanced profiles, offline a random scheduler and a greedy
//! oracle that knows each condition's expected outcome, and default and balanced again
//! with one lever removed ([`LEVER_ROWS`]). A benchmark pod's outcome is the mean, over
//! every window it lives, of the measured throughput and latency of a held-out sample
//! matched to its node's condition in that window, the other pods there as its
//! neighbours (see `world`).
//!
//! One step of the timeline is one agent window. The measured windows are 20 s; the
//! emulation runs them at `--window` (1 s by default), so its time runs 20 times faster
//! than the measurements': the model and the scorer only ever see whole windows, and
//! nothing in the outcome depends on wall time.

mod plot;
mod report;
mod stats;
pub mod world;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fitsched_e2e::cluster::{NodeSpec, Placement, Workload};
use fitsched_e2e::stack::block_on;
use fitsched_e2e::testbed::{ReplayNodes, Testbed, TestbedConfig, ZONES};
use fitsched_e2e::tools::cargo;
use fitsched_e2e::{paths, progress};
use fitsched_proto::{ListNodesRequest, ModelInfoRequest};
use serde_json::{Value, json};

use crate::variants::{Baselines, variant_config};
use world::{Metrics, Offline, Params, Pool, Sample, Timeline, Usage, World};

#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// Cluster sizes.
    #[arg(long, value_delimiter = ',', default_value = "50,500")]
    nodes: Vec<usize>,
    /// Seeds per size (each its own model split and timeline).
    #[arg(long, default_value_t = 10)]
    seeds: u64,
    /// The first seed. The report's seeds are 201..=210, run once, at the end, with the
    /// emulation's parameters frozen before; development runs seeds below 200 (`--quick`
    /// runs 1 and 2), and others will run seeds nobody here has seen.
    #[arg(long, default_value_t = 201)]
    first_seed: u64,
    /// Runs of each seed per scheduler, so the intervals carry run-to-run noise (the real
    /// kube-scheduler breaks ties at random; the offline schedulers repeat exactly).
    #[arg(long, default_value_t = 2)]
    repeats: u32,
    /// A development run in minutes: 50 nodes, seeds 1 and 2, one run each, written to
    /// target/evaluate-quick unless --out says otherwise.
    #[arg(long)]
    quick: bool,
    /// Sizes that also run the lever rows ([`LEVER_ROWS`]). They explain where the gain
    /// comes from, which the smallest size shows; at 500 nodes they would add 43 minutes
    /// and put the report past two hours from a fresh clone.
    #[arg(long, value_delimiter = ',', default_value = "50")]
    levers_at: Vec<usize>,
    /// Steps (agent windows) per run; default 10 up to 50 nodes, 4 above.
    #[arg(long)]
    steps: Option<usize>,
    /// The agent's and scorer's window: one step of the timeline.
    #[arg(long, default_value = "1s")]
    window: String,
    /// Where the report (`evaluation.md`) and its plots (`evaluation/`) go (default: docs,
    /// or target/evaluate-quick with --quick).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The dataset.
    #[arg(long, default_value = "onnx/data/samples.jsonl")]
    data: PathBuf,
    /// kube-apiserver, kube-scheduler and kube-controller-manager (see `cargo xtask test`).
    #[arg(long)]
    kube_bin: Option<PathBuf>,
}

/// The schedulers, in report order, with background pods using what measured samples
/// use (see `world::Usage`).
pub const SCHEDULERS: [&str; 6] =
    ["default", "fitsched-spread", "fitsched-pack", "fitsched-balanced", "random", "oracle"];

/// What a lever row changes in the emulation, to show how much of the result rests on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lever {
    /// Background pods use exactly their requests: the gain left when telemetry sees
    /// nothing that requests do not already say.
    UsageIsRequests,
    /// No load from outside Kubernetes: every node's outside load is idle, so only pods
    /// (and what they use beyond their requests) load nodes.
    NoOutsideLoad,
}

impl Lever {
    pub fn params(self, p: &Params) -> Params {
        match self {
            Lever::UsageIsRequests => Params { usage: Usage::Requests, ..p.clone() },
            Lever::NoOutsideLoad => Params { idle_share: 1.0, ..p.clone() },
        }
    }
}

/// The lever rows: default and balanced again, on the same arrivals with one lever
/// removed. (row, scheduler, lever)
pub const LEVER_ROWS: [(&str, &str, Lever); 4] = [
    ("default, usage = requests", "default", Lever::UsageIsRequests),
    ("fitsched-balanced, usage = requests", "fitsched-balanced", Lever::UsageIsRequests),
    ("default, no outside load", "default", Lever::NoOutsideLoad),
    ("fitsched-balanced, no outside load", "fitsched-balanced", Lever::NoOutsideLoad),
];

/// One scheduler's run on one seed at one size.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Run {
    /// Classes of condition the held-out pool lacked, with how many windows asked.
    #[serde(skip)]
    pub lacking: BTreeMap<String, usize>,
    pub nodes: usize,
    pub seed: u64,
    pub repeat: u32,
    /// The report row: a scheduler, or one of [`LEVER_ROWS`].
    pub scheduler: &'static str,
    pub metrics: Metrics,
    /// Per benchmark pod, for the distribution plot.
    pub throughputs: Vec<f64>,
    pub seconds: f64,
}

pub fn run(mut args: EvaluateArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    if args.quick {
        args.nodes = vec![50];
        args.seeds = 2;
        args.first_seed = 1;
        args.repeats = 1;
    }
    anyhow::ensure!(args.repeats >= 1, "--repeats must be at least 1");
    anyhow::ensure!(args.seeds >= 1 && !args.nodes.is_empty(), "nothing to evaluate");
    cargo(&["build", "-p", "fitsched-scorer", "-p", "fitsched-shim", "-p", "fitsched-agent", "--bins"])?;
    let work = paths::target_dir().join("evaluate");
    std::fs::create_dir_all(&work)?;
    let seeds: Vec<u64> = (args.first_seed..args.first_seed + args.seeds).collect();
    let mut splits = BTreeMap::new();
    for &seed in &seeds {
        splits.insert(seed, split(&args.data, seed, &work)?);
    }
    let mut runs = Vec::new();
    for &nodes in &args.nodes {
        runs.extend(one_size(&args, nodes, &seeds, &splits, &work)?);
    }
    let elapsed = started.elapsed();
    let out = paths::workspace_root().join(args.out.clone().unwrap_or_else(|| {
        if args.quick { paths::target_dir().join("evaluate-quick") } else { PathBuf::from("docs") }
    }));
    report::write(&out, &runs, &splits, &args, elapsed)?;
    progress(format!("evaluation written to {} in {:.0?}", out.join("evaluation.md").display(), elapsed));
    Ok(())
}

/// A seed's model and held-out samples.
pub struct Split {
    pub model: PathBuf,
    /// The version the model reports, so the scorer can be seen to run it.
    pub version: String,
    pub kind: String,
    pub trained_on: u64,
    pub held_out_groups: Vec<String>,
    /// The machine (CPU model) the held-out samples come from: the emulated nodes'.
    pub machine: String,
    pub samples: Vec<Sample>,
}

fn split(data: &Path, seed: u64, work: &Path) -> anyhow::Result<Split> {
    let dir = work.join(format!("split-{seed}"));
    progress(format!("model split {seed}: training without a third of the interference groups"));
    let data = paths::workspace_root().join(data);
    let seed_arg = seed.to_string();
    crate::train::train_py(&[
        OsStr::new("--data"),
        data.as_os_str(),
        OsStr::new("--eval-split"),
        OsStr::new(&seed_arg),
        OsStr::new("--eval-out"),
        dir.as_os_str(),
    ])?;
    let held: Value = serde_json::from_slice(&std::fs::read(dir.join("heldout.json"))?)?;
    Ok(Split {
        model: dir.join("fitness.onnx"),
        version: held["version"].as_str().context("heldout.json has no model version")?.to_owned(),
        kind: held["kind"].as_str().unwrap_or("?").to_owned(),
        trained_on: held["trained_on"].as_u64().unwrap_or(0),
        held_out_groups: serde_json::from_value(held["held_out_groups"].clone())?,
        machine: held["machine"].as_str().unwrap_or("unknown").to_owned(),
        samples: serde_json::from_value(held["samples"].clone()).context("heldout.json samples")?,
    })
}

/// Steps per run at `nodes`: `--steps`, else 10 up to 50 nodes and 4 above (the
/// 500-node runs are most of the evaluation's time, which must stay under 20 minutes
/// from a fresh clone on two cores, build included).
pub fn steps(args: &EvaluateArgs, nodes: usize) -> usize {
    args.steps.unwrap_or(if nodes <= 50 { 10 } else { 4 })
}

fn node_name(i: usize) -> String {
    format!("eval-node-{:03}", i + 1)
}

fn one_size(
    args: &EvaluateArgs,
    nodes: usize,
    seeds: &[u64],
    splits: &BTreeMap<u64, Split>,
    work: &Path,
) -> anyhow::Result<Vec<Run>> {
    let params = Params { steps: steps(args, nodes), ..Params::for_nodes(nodes) };
    let dir = work.join(format!("nodes-{nodes}"));
    std::fs::create_dir_all(&dir)?;
    let replay = dir.join("replay.json");
    let model = dir.join("fitness.onnx");
    let first = &splits[&seeds[0]];
    // The agent learns its nodes from the file it starts with.
    let pool = Pool::new(first.samples.clone())?;
    let idle = Timeline::new(Params { idle_share: 1.0, ..params.clone() }, &pool, 0);
    write_replay(&replay, &World::new(&idle, &pool))?;
    install_model(&first.model, &model)?;
    let specs: Vec<NodeSpec> = (0..nodes)
        .map(|i| NodeSpec {
            cpu: format!("{}m", params.node_millicores),
            memory: "24Gi".into(),
            ..NodeSpec::standard(node_name(i), ZONES[i % params.zones])
        })
        .collect();
    let config = TestbedConfig {
        window: args.window.clone(),
        kube_bin: args.kube_bin.clone(),
        replay: Some(ReplayNodes { nodes: specs, file: replay.clone() }),
        model: Some(model.clone()),
        values: json!({ "scorer": { "staleAfterWindows": STALE_AFTER_WINDOWS } }),
        ..TestbedConfig::new(&format!("evaluate-{nodes}"), 0)
    };
    progress(format!("{nodes} nodes: starting the control plane and fitsched"));
    let mut tb = Testbed::start(config)?;
    let window = humantime::parse_duration(&args.window)?;
    let mut runs = Vec::new();
    for &seed in seeds {
        let split = &splits[&seed];
        install_model(&split.model, &model)?;
        wait_model(&tb, &split.version)?;
        let pool = Pool::new(split.samples.clone())?;
        let measured = Timeline::new(params.clone(), &pool, seed);
        let lever_rows = if args.levers_at.contains(&nodes) { &LEVER_ROWS[..] } else { &[] };
        let levers: Vec<Timeline> =
            lever_rows.iter().map(|&(_, _, lever)| Timeline::new(lever.params(&params), &pool, seed)).collect();
        let rows = SCHEDULERS
            .iter()
            .map(|&s| (s, s, &measured))
            .chain(lever_rows.iter().zip(&levers).map(|(&(r, s, _), t)| (r, s, t)));
        let rows: Vec<(&'static str, &'static str, &Timeline)> = rows.collect();
        for repeat in 0..args.repeats {
            for (i, &(row, scheduler, timeline)) in rows.iter().enumerate() {
                let t0 = Instant::now();
                progress(format!("{nodes} nodes, seed {seed}, run {}: {row}", repeat + 1));
                let world = match scheduler {
                    "random" => world::run_offline(timeline, &pool, Offline::Random),
                    "oracle" => world::run_offline(timeline, &pool, Offline::Oracle),
                    _ => {
                        let namespace = format!("eval-{scheduler}-{seed}-{repeat}-{i}");
                        run_real(&mut tb, scheduler, timeline, &pool, &replay, window, &namespace)?
                    }
                };
                let metrics = Metrics::of(&world);
                progress(format!(
                    "  {} benchmark pods: throughput mean {:.3}, p10 {:.3}; co-located replicas {:.0} %; {:.0} % of windows matched exactly",
                    metrics.benchmark_pods,
                    metrics.throughput_mean,
                    metrics.throughput_p10,
                    100.0 * metrics.replicas_colocated_share,
                    100.0 * metrics.exact_share
                ));
                runs.push(Run {
                    lacking: world.lacking.iter().map(|(c, n)| (c.name(), *n)).collect(),
                    nodes,
                    seed,
                    repeat,
                    scheduler: row,
                    throughputs: world.placed.iter().filter_map(|p| p.throughput()).collect(),
                    metrics,
                    seconds: t0.elapsed().as_secs_f64(),
                });
            }
        }
    }
    Ok(runs)
}

/// Replaces the scorer's model file in one rename, as a ConfigMap update would.
fn install_model(from: &Path, to: &Path) -> anyhow::Result<()> {
    let tmp = to.with_extension("onnx.tmp");
    std::fs::copy(from, &tmp).with_context(|| format!("copying {}", from.display()))?;
    std::fs::rename(&tmp, to)?;
    Ok(())
}

fn wait_model(tb: &Testbed, version: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = block_on(async {
            anyhow::Ok(tb.stack.scorer_client().await?.model_info(ModelInfoRequest {}).await?.into_inner().version)
        })?;
        if got == version {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the scorer still runs model {got}, not {version}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Writes every node's window for this step, replacing the file in one rename, and
/// returns the time it holds from (unix ms).
///
/// A step is one window of the emulated timeline however long its burst takes here: the
/// agent reports the file once, in the first window begun after it was written, so no
/// window claims to show the pods placed during the step (a window per second did, and
/// a 500-node burst of five seconds lost the scorer's count of them after two); the
/// scorer then keeps each node fresh for the whole step (`STALE_AFTER_WINDOWS`).
fn write_replay(path: &Path, world: &World<'_>) -> anyhow::Result<i64> {
    let nodes: serde_json::Map<String, Value> =
        (0..world.timeline.params.nodes).map(|n| (node_name(n), world.window(n).clone())).collect();
    let as_of = fitsched_proto::now_unix_ms();
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&json!({ "nodes": nodes, "as_of_unix_ms": as_of }))?)?;
    std::fs::rename(&tmp, path)?;
    Ok(as_of)
}

/// The scorer's staleness in the evaluation, in windows: longer than any step and any
/// pause between runs, since the agent reports once per step (see [`write_replay`]).
const STALE_AFTER_WINDOWS: u32 = 86_400;

/// Runs the timeline through the real kube-scheduler: `default` is the chart's
/// configuration without the extender, the others the chart's profile of that strategy.
fn run_real<'a>(
    tb: &mut Testbed,
    scheduler: &str,
    timeline: &'a Timeline,
    pool: &'a Pool,
    replay: &Path,
    window: Duration,
    namespace: &str,
) -> anyhow::Result<World<'a>> {
    let unused = Baselines::none()?;
    let profile_uses_scorer = scheduler.starts_with("fitsched-");
    let (config, profile) = match scheduler.strip_prefix("fitsched-") {
        None => variant_config(tb, "default", unused)?,
        Some(strategy) => (variant_config(tb, "fitsched", unused)?.0, tb.profile(strategy)),
    };
    let kubeconfig = tb.installed.scheduler_kubeconfig.clone();
    tb.cluster.start_scheduler(&config, &kubeconfig)?;
    tb.cluster.create_namespace(namespace)?;
    let index: HashMap<String, usize> = (0..timeline.params.nodes).map(|n| (node_name(n), n)).collect();
    let window_ms = window.as_millis() as i64;
    let mut world = World::new(timeline, pool);
    let mut workloads: HashMap<String, Workload> = HashMap::new();
    // Pods this kube-scheduler has bound, once the step's are.
    let mut scheduled = 0;
    let result = (|| -> anyhow::Result<()> {
        for step in 0..timeline.total_steps() {
            let ended: Vec<Workload> =
                world.begin_step(step).into_iter().filter_map(|name| workloads.remove(&name)).collect();
            tb.cluster.delete_workloads(&ended)?;
            let arrivals = &timeline.arrivals[step];
            if arrivals.is_empty() {
                // Nothing to schedule (the run drains): outcomes need no scheduler.
                world.end_step();
                continue;
            }
            let as_of = write_replay(replay, &world)?;
            if profile_uses_scorer {
                world.note_shown();
            }
            // The agent reports in the first window begun after the file was written; the
            // scorer has the fitness a moment after that window ends. Pods arrive then,
            // scored on this step's windows. The default profile never asks the scorer:
            // its pods need not wait.
            if profile_uses_scorer {
                let boundary = (as_of + window_ms - 1).div_euclid(window_ms) * window_ms + window_ms;
                wait_windows(tb, timeline.params.nodes, boundary, Duration::from_secs(30))?;
            }
            let created: Vec<Workload> = arrivals
                .iter()
                .map(|a| Workload {
                    cpu: format!("{}m", timeline.params.pod_millicores),
                    ..Workload::new(namespace, &a.name, a.replicas, &profile)
                })
                .collect();
            tb.cluster.create_workloads(&created)?;
            workloads.extend(created.into_iter().map(|w| (w.name.clone(), w)));
            scheduled += arrivals.iter().map(|a| u64::from(a.replicas)).sum::<u64>();
            let placed = wait_bound(tb, namespace, arrivals, scheduled, Duration::from_secs(120))?;
            for a in arrivals {
                for node in &placed[&a.name] {
                    let n = *index.get(node).with_context(|| format!("pod bound to unknown node {node}"))?;
                    // kube-scheduler and the emulation count the same CPU requests; if
                    // they ever disagreed, outcomes would be computed for a node fuller
                    // than the emulation allows.
                    anyhow::ensure!(
                        world.fits(n),
                        "kube-scheduler bound a pod of {} to {node}, full by the emulation's count",
                        a.name
                    );
                    world.place(a, n);
                }
            }
            world.end_step();
        }
        Ok(())
    })();
    // Stopped first, kube-scheduler does not spend the two cores on the deletions' events.
    tb.cluster.stop_scheduler()?;
    let cleanup = tb.cluster.clear_namespace(namespace);
    result?;
    cleanup?;
    Ok(world)
}

/// Waits until the scorer holds, with a fitness, every node's window that ends at
/// `boundary`: the pods of a step are scored on that step's windows, never on the last.
fn wait_windows(tb: &Testbed, nodes: usize, boundary: i64, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    // No window ends at the boundary before the boundary.
    let until = boundary - fitsched_proto::now_unix_ms();
    std::thread::sleep(Duration::from_millis(until.clamp(0, 60_000) as u64));
    loop {
        let listed = block_on(async {
            anyhow::Ok(tb.stack.scorer_client().await?.list_nodes(ListNodesRequest {}).await?.into_inner().nodes)
        })?;
        let current = listed
            .iter()
            .filter(|n| n.fitness.is_some() && n.latest.as_ref().is_some_and(|w| w.end_unix_ms >= boundary))
            .count();
        if current >= nodes {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{current} of {nodes} nodes have a scored window ending at {boundary} after {timeout:?}");
        }
        // Not faster: listing 500 nodes' windows from a debug scorer takes CPU that
        // kube-scheduler, on the same two cores, needs.
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until every pod of `arrivals` is bound; their nodes by arrival, in pod-name
/// order (kube-scheduler's order within a step is not observable here, and the order
/// only decides which of a step's pods count the others as neighbours). Pods are listed
/// only once kube-scheduler counts `scheduled` pods: listing a namespace of a thousand
/// pods four times a second took CPU from kube-scheduler and the API server.
fn wait_bound(
    tb: &Testbed,
    namespace: &str,
    arrivals: &[world::Arrival],
    scheduled: u64,
    timeout: Duration,
) -> anyhow::Result<HashMap<String, Vec<String>>> {
    let deadline = Instant::now() + timeout;
    loop {
        if tb.cluster.scheduled_attempts()? < scheduled && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let mut bound: HashMap<String, Vec<Placement>> = HashMap::new();
        for (app, p) in tb.cluster.bound_pods(namespace, None)? {
            bound.entry(app).or_default().push(p);
        }
        let missing: u32 =
            arrivals.iter().map(|a| a.replicas.saturating_sub(bound.get(&a.name).map_or(0, |b| b.len() as u32))).sum();
        if missing == 0 {
            return Ok(arrivals
                .iter()
                .map(|a| {
                    let mut pods = bound.remove(&a.name).unwrap_or_default();
                    pods.sort_by(|x, y| x.pod.cmp(&y.pod));
                    (a.name.clone(), pods.into_iter().take(a.replicas as usize).map(|p| p.node).collect())
                })
                .collect());
        }
        if Instant::now() > deadline {
            bail!("{missing} pods in {namespace} not bound after {timeout:?} (logs in {})", tb.cluster.dir().display());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
