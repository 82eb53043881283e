//! `cargo xtask drill`: outage drills with real processes, each printing its figures
//! (`fitsched_e2e::drill` runs them; `cargo xtask test` runs short versions).

use std::time::Duration;

use fitsched_e2e::cluster::Workload;
use fitsched_e2e::drill;
use fitsched_e2e::testbed::{Testbed, TestbedConfig};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Drill {
    /// The agent's connection to the scorer cut, then restored.
    Cut,
    /// The scorer slowed past the shim's deadline.
    Slow,
    /// The scorer killed twice during a burst through the real kube-scheduler.
    Restart,
    /// Broken model files pushed while the shim answers a steady load.
    Model,
    /// Binds the API server refuses, through the real kube-scheduler.
    Bind,
    /// Bursts of replicas at 500 nodes (scale-up and parallel creates): spread keeps them
    /// apart, balanced stacks no more than kube-scheduler alone.
    Bursts,
    /// A slow control plane (etcd 150-700 ms away each way: bindings of about 0.5-3 s):
    /// fitsched against the no-op extender and kube-scheduler alone through `bench
    /// scheduler`, three interleaved rounds of 2 000 pods, judged on the medians.
    SlowApiserver,
}

#[derive(clap::Args)]
pub struct DrillArgs {
    /// The drills to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Drill>,
    /// How long the agent's connection to the scorer is cut.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    cut: Duration,
    /// How long the slowed scorer holds every chunk of bytes.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    slow: Duration,
    /// `/prioritize` calls against the slowed scorer.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Pods in the burst the scorer is killed during.
    #[arg(long, default_value_t = 1000)]
    pods: u32,
    /// How long the scorer stays down each time it is killed.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    down: Duration,
    /// Runs of the restart and bursts drills; each run must pass.
    #[arg(long, default_value_t = 1)]
    runs: u32,
}

pub fn run(args: DrillArgs) -> anyhow::Result<()> {
    fitsched_e2e::tools::cargo(&[
        "build",
        "-p",
        "fitsched-scorer",
        "-p",
        "fitsched-shim",
        "-p",
        "fitsched-agent",
        "--bins",
    ])?;
    let wanted = |d: Drill| args.only.is_empty() || args.only.contains(&d);
    if wanted(Drill::Cut) {
        cut(args.cut)?;
    }
    if wanted(Drill::Slow) {
        slow(args.slow, args.requests)?;
    }
    if wanted(Drill::Restart) {
        let mut late = Vec::new();
        for run in 1..=args.runs {
            late.push(restart(args.pods, args.down, run)?);
        }
        let clean = late.iter().filter(|&&l| l == 0).count();
        println!(
            "
restart drill: every call within its deadline + 50 ms in {clean} of {} runs",
            args.runs
        );
        anyhow::ensure!(clean == late.len(), "calls answered late in {} of {} runs", late.len() - clean, late.len());
    }
    if wanted(Drill::Bursts) {
        for run in 1..=args.runs {
            bursts(run)?;
        }
    }
    if wanted(Drill::SlowApiserver) {
        // The comparison needs the no-op extender and the bench's per-variant runs: the
        // lab has both.
        fitsched_e2e::tools::cargo(&[
            "run",
            "--release",
            "-p",
            "fitsched-lab",
            "--",
            "bench",
            "scheduler",
            "--nodes",
            "100",
            "--pods",
            "2000",
            // One round judges noise: on this control plane kube-scheduler alone ran at
            // 20 to 59 pods/s from one round to the next.
            "--rounds",
            "3",
            "--variants",
            "default,noop,fitsched",
            "--etcd-latency",
            "150ms..700ms",
            "--require-vs-noop",
            "0.9",
        ])?;
    }
    if wanted(Drill::Model) {
        model()?;
    }
    if wanted(Drill::Bind) {
        bind()?;
    }
    Ok(())
}

fn cut(cut: Duration) -> anyhow::Result<()> {
    let f = drill::network_cut("drill-cut", cut)?;
    println!(
        "\nagent <-> scorer cut for {:?} (1-s windows): {} windows resent after it, {} lost, {} resends refused as \
         already stored (a node's windows are stored once each, in order, by construction); caught up {:.1} s after \
         the restore",
        f.cut,
        f.resent,
        f.lost,
        f.refused_duplicates,
        f.caught_up.as_secs_f64()
    );
    anyhow::ensure!(f.lost == 0, "the stream broke its promise: {f:?}");
    Ok(())
}

fn slow(delay: Duration, requests: usize) -> anyhow::Result<()> {
    let s = drill::slow_scorer("drill-slow", delay, requests)?;
    println!(
        "\nscorer slowed by {:?} behind a {:?} deadline, {} /prioritize calls one after another: {} neutral, \
         p50 {:.0} ms, max {:.0} ms; shim RSS {} -> {} KiB",
        s.delay,
        s.deadline,
        s.requests,
        s.neutral,
        s.p50.as_secs_f64() * 1e3,
        s.max.as_secs_f64() * 1e3,
        s.rss_kib.0,
        s.rss_kib.1
    );
    anyhow::ensure!(s.neutral == s.requests && s.max < s.delay, "the shim waited on a slow scorer: {s:?}");
    Ok(())
}

/// One run of the restart drill; returns the calls answered late.
fn restart(pods: u32, down: Duration, run: u32) -> anyhow::Result<u64> {
    let config = TestbedConfig { window: "5s".into(), ..TestbedConfig::new(&format!("drill-restart-{run}"), 20) };
    let mut tb = Testbed::start(config)?;
    tb.start_scheduler()?;
    let w = Workload::new("apps", "burst", pods, &tb.profile("spread"));
    let f = drill::scorer_restarts(&mut tb, &w, 2, down)?;
    let recovered: Vec<String> = f.recovered.iter().map(|d| format!("{:.1} s", d.as_secs_f64())).collect();
    println!(
        "\nscorer killed twice (down {:?} each, with {:?} of {} pods scheduled) in a burst through kube-scheduler: \
         {} of {} pods placed in {:.1} s; extender calls (answered later than the verb's deadline + 50 ms): {}; \
         {} answered neutrally by the shim; every node scored on a fresh fitness again {} after each \
         restart ({:?} windows); the last scorer scored {} candidates on fitness, {} on the median",
        f.down,
        f.scheduled_at_kill,
        f.pods,
        f.placed,
        f.pods,
        f.burst.as_secs_f64(),
        f.calls.iter().map(|c| format!("{} {} ({} late)", c.verb, c.calls, c.late)).collect::<Vec<_>>().join(", "),
        f.fallbacks,
        recovered.join(" and "),
        f.window,
        f.scored_on_fitness,
        f.scored_on_median
    );
    anyhow::ensure!(f.placed == f.pods, "pods left unplaced: {f:?}");
    anyhow::ensure!(f.recovered.iter().all(|d| *d <= f.window), "not back within one window: {f:?}");
    Ok(f.late())
}

fn bursts(run: u32) -> anyhow::Result<()> {
    let nodes = 500;
    let config = TestbedConfig { window: "5s".into(), ..TestbedConfig::new(&format!("drill-bursts-{run}"), nodes) };
    let mut tb = Testbed::start(config)?;
    let bursts = drill::bursts(&mut tb, &[100, 1000])?;
    println!("\nbursts at {nodes} nodes, run {run}");
    println!("| profile | how | replicas | most on a node | nodes left empty |");
    println!("|---|---|---|---|---|");
    for ((profile, how, replicas), b) in &bursts {
        println!("| {profile} | {how} | {replicas} | {} | {} |", b.most, b.empty);
    }
    let failures = drill::burst_failures(&bursts, nodes);
    anyhow::ensure!(failures.is_empty(), "bursts: {}", failures.join("; "));
    Ok(())
}

fn model() -> anyhow::Result<()> {
    let venv = fitsched_e2e::tools::ensure_venv()?;
    let f = drill::bad_model("drill-model", &venv, 2)?;
    println!(
        "\nbroken model files pushed under load (2 callers): {} /prioritize calls, {} failed, {} neutral; {} files \
         refused ({}); model version {} before and {} after; {} candidates scored on the old model's fitness after \
         the refusals; the good file {} when pushed back",
        f.calls,
        f.failed,
        f.neutral,
        f.refused,
        f.reasons
            .iter()
            .map(|r| r.rsplit("is not a usable ONNX model: ").next().unwrap_or(r))
            .collect::<Vec<_>>()
            .join("; "),
        f.version.0,
        f.version.1,
        f.scored_on_fitness_after,
        if f.good_reloaded { "loaded" } else { "was NOT loaded" }
    );
    anyhow::ensure!(
        f.failed == 0 && f.neutral == 0 && f.version.0 == f.version.1 && f.good_reloaded,
        "the bad model disturbed scoring: {f:?}"
    );
    Ok(())
}

fn bind() -> anyhow::Result<()> {
    let config = TestbedConfig {
        shim_kubeconfig: Some(|installed| installed.scorer_kubeconfig.clone()),
        values: serde_json::json!({"extender": {"bindVerb": "bind"}}),
        ..TestbedConfig::new("drill-bind", 6)
    };
    let mut tb = Testbed::start(config)?;
    tb.start_scheduler()?;
    let w = Workload::new("apps", "refused", 50, &tb.profile("balanced"));
    let f = drill::refused_bind(&tb, &w)?;
    println!(
        "\nbinds refused by the API server (the shim without RBAC to bind): {} of {} pods' binds refused, {} errors \
         in kube-scheduler's log with the API server's reason, {} pods bound by kube-scheduler itself, the scorer \
         told of {} binds",
        f.refused, f.pods, f.reported_to_scheduler, f.placed, f.scorer_told,
    );
    anyhow::ensure!(
        f.placed == f.pods && f.scorer_told == 0 && f.reported_to_scheduler >= f.pods,
        "a refused bind left something half-done: {f:?}"
    );
    drop(tb);
    let tb = Testbed::start(TestbedConfig::new("drill-replaced-pod", 3))?;
    let r = drill::replaced_pod_bind(&tb, "apps")?;
    println!(
        "a bind for a pod deleted and re-created under its name (the old UID): kube-scheduler got \"{}\"; the new pod \
         bound: {}; the scorer told: {}",
        r.error, r.bound, r.scorer_told
    );
    anyhow::ensure!(!r.bound && !r.error.is_empty() && r.scorer_told == 0, "a bind reached the wrong pod: {r:?}");
    Ok(())
}
