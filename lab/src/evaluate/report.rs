//! `docs/evaluation.md`, its plots and `docs/evaluation/results.json`, from the runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::stats::{Estimate, paired_diff, paired_ratio, per_seed};
use super::world::Metrics;
use super::{EvaluateArgs, Run, SCHEDULERS, Split, plot};

/// One goal of the issue, checked on the confidence interval, not only the mean.
struct Goal {
    text: String,
    estimate: Estimate,
    met: &'static str,
}

fn goals(runs: &[Run], nodes: usize) -> Vec<Goal> {
    let p10 = |m: &Metrics| m.throughput_p10;
    let mean = |m: &Metrics| m.throughput_mean;
    let coloc = |m: &Metrics| m.replicas_colocated_share;
    let verdict = |e: &Estimate, ok: &dyn Fn(f64) -> bool| match (ok(e.mean - e.ci95), ok(e.mean), ok(e.mean + e.ci95))
    {
        (true, true, true) => "met",
        (_, true, _) => "met on the mean, not across the interval",
        (_, false, true) => "not met on the mean; within the interval",
        _ => "not met",
    };
    let ratio = Estimate::of(&paired_ratio(runs, nodes, "fitsched-balanced", "default", p10));
    let of_oracle = Estimate::of(&paired_ratio(runs, nodes, "fitsched-balanced", "oracle", mean));
    let spread = Estimate::of(&paired_diff(runs, nodes, "fitsched-balanced", "default", coloc));
    let worse_seeds =
        paired_diff(runs, nodes, "fitsched-balanced", "default", coloc).iter().filter(|d| **d > 1e-9).count();
    vec![
        Goal {
            text: "balanced p10 throughput ≥ 1.2 × default's (ratio per seed)".into(),
            met: verdict(&ratio, &|v| v >= 1.2),
            estimate: ratio,
        },
        Goal {
            text: "balanced mean throughput within 10 % of the oracle's (ratio per seed ≥ 0.9)".into(),
            met: verdict(&of_oracle, &|v| v >= 0.9),
            estimate: of_oracle,
        },
        Goal {
            text: format!(
                "balanced never worse than default on replica spread (co-located share, balanced − default; worse in {worse_seeds} of {} seeds)",
                spread.n
            ),
            met: if worse_seeds == 0 { "met" } else { "not met" },
            estimate: spread,
        },
    ]
}

pub fn write(
    out: &Path,
    runs: &[Run],
    splits: &BTreeMap<u64, Split>,
    args: &EvaluateArgs,
    elapsed: Duration,
) -> anyhow::Result<()> {
    let plots = out.join("evaluation");
    std::fs::create_dir_all(&plots)?;
    let sizes: Vec<usize> = {
        let mut s: Vec<usize> = runs.iter().map(|r| r.nodes).collect();
        s.dedup();
        s
    };
    plot::estimates(&plots.join("throughput-p10.png"), runs, &sizes, "p10 normalised throughput", |m| {
        m.throughput_p10
    })?;
    plot::estimates(&plots.join("throughput-mean.png"), runs, &sizes, "mean normalised throughput", |m| {
        m.throughput_mean
    })?;
    plot::estimates(&plots.join("colocated.png"), runs, &sizes, "replicas sharing a node (share)", |m| {
        m.replicas_colocated_share
    })?;
    for &n in &sizes {
        plot::distribution(&plots.join(format!("throughput-cdf-{n}.png")), runs, n)?;
    }

    let mut md = String::new();
    let seeds: Vec<u64> = splits.keys().copied().collect();
    writeln!(md, "# Evaluation: fitsched against kube-scheduler's default profile")?;
    writeln!(md)?;
    writeln!(
        md,
        "Written by `cargo xtask evaluate` (`lab/src/evaluate/`) in {:.0} s on this machine; run it again to \
         regenerate this page, its plots and `evaluation/results.json`. Seeds {seeds:?}; nothing was tuned on them (development used seeds 1 and 2).",
        elapsed.as_secs_f64()
    )?;
    writeln!(md)?;
    writeln!(md, "## Result")?;
    writeln!(md)?;
    for &n in &sizes {
        writeln!(md, "### {n} nodes: the goals")?;
        writeln!(md)?;
        writeln!(md, "| goal | measured (mean ± 95 % CI over seeds) | verdict |")?;
        writeln!(md, "|---|---|---|")?;
        for g in goals(runs, n) {
            writeln!(md, "| {} | {} | {} |", g.text, g.estimate.show(3), g.met)?;
        }
        writeln!(md)?;
        writeln!(
            md,
            "| scheduler | mean | p10 | p1 | p99 latency of the median pod (× baseline) | regret vs oracle | most replicas on a node | replicas co-located | zone imbalance | nodes empty | match distance |"
        )?;
        writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|")?;
        for s in SCHEDULERS {
            let e = |f: fn(&Metrics) -> f64| Estimate::of(&per_seed(runs, n, s, f)).show(3);
            let regret = Estimate::of(&paired_diff(runs, n, "oracle", s, |m| m.throughput_mean)).show(3);
            writeln!(
                md,
                "| {s} | {} | {} | {} | {} | {regret} | {} | {} | {} | {} | {} |",
                e(|m| m.throughput_mean),
                e(|m| m.throughput_p10),
                e(|m| m.throughput_p1),
                e(|m| m.latency_p99_median),
                e(|m| m.replicas_most_on_one_node),
                e(|m| m.replicas_colocated_share),
                e(|m| m.zone_imbalance),
                e(|m| m.nodes_empty_share),
                e(|m| m.match_distance),
            )?;
        }
        writeln!(md)?;
        writeln!(md, "![p10 throughput](evaluation/throughput-p10.png)")?;
        writeln!(md, "![throughput distribution at {n} nodes](evaluation/throughput-cdf-{n}.png)")?;
        writeln!(md)?;
    }
    writeln!(md, "![mean throughput](evaluation/throughput-mean.png)")?;
    writeln!(md, "![co-located replicas](evaluation/colocated.png)")?;
    writeln!(md)?;
    writeln!(md, "## How it was measured")?;
    writeln!(md)?;
    let p = super::world::Params::for_nodes(0);
    for line in [
        "- **Control plane**: the real kube-apiserver, kube-controller-manager and kube-scheduler v1.36.2, with the \
         chart's rendered KubeSchedulerConfiguration. `default` is that configuration without the extender (the \
         main profile's plugins as kube-scheduler ships them); `fitsched-*` are the chart's strategy profiles with \
         the extender, the real shim and scorer. `random` and `oracle` are computed offline on the same timeline."
            .to_owned(),
        format!(
            "- **Nodes**: API-only nodes of the measured machine's size ({} millicores; pods request {} m, so at most \
             {} on a node), in {} zones. No kubelet runs: a pod's outcome comes from measurements, not from running it.",
            p.node_millicores,
            p.pod_millicores,
            p.node_millicores / p.pod_millicores,
            p.zones
        ),
        format!(
            "- **Telemetry**: `fitsched-agent --replay` streams every node's window to the scorer, which runs the \
             seed's model on it. A node's window is the held-out sample nearest (L1 over interference intensities) \
             to its condition: background load ({:.0} % of draws idle, the rest a held-out sample's interference, \
             changing with probability 1/{} per step) plus the pods on it (a benchmark pod is one `bench` unit, a \
             background pod half a CPU). One step is one window: {} of wall time standing for the measured 20 s.",
            100.0 * p.idle_share,
            p.dwell,
            args.window
        ),
        format!(
            "- **Arrivals**: per step, on average {} benchmark pods (nginx + wrk ReplicaSets of 1 to 8) and {} \
             background pods per node, each living {} to {} steps; {} steps up to 50 nodes, {} above (`--steps`). \
             A step's ReplicaSets are created together, 16 requests at a time, once the scorer holds every node's \
             window of that step (the default profile, which never asks the scorer, does not wait for windows), so \
             kube-scheduler sees them as a burst.",
            p.bench_per_node_step,
            p.background_per_node_step,
            p.lifetime.0,
            p.lifetime.1,
            super::steps(args, 50),
            super::steps(args, 51)
        ),
        "- **Outcomes**: a benchmark pod gets the measured throughput ratio and p99-latency ratio of the held-out \
         sample nearest to its node's condition when it is placed, with the benchmark pods already there counted as \
         its neighbours (`cargo xtask collect` measures benchmark units next to each other). `match distance` says \
         how far those samples were from the condition asked for."
            .to_owned(),
        "- **Held out**: for each seed, `onnx/train.py --eval-split` trains the shipped kind of model without a \
         third of the interference groups and half of the baselines; only those held-out samples feed windows and \
         outcomes."
            .to_owned(),
        "- **Metrics**: throughput ratio (mean, p10, p1 over benchmark pods), the median pod's p99-latency ratio, regret \
         (oracle's mean − the scheduler's, per seed), for ReplicaSets of two or more the most replicas on one node, \
         the share of replicas sharing a node with a sibling and the zone imbalance (most − fewest), and the share \
         of nodes without pods. Intervals are 95 % Student t over seeds; ratios are paired per seed."
            .to_owned(),
    ] {
        writeln!(md, "{line}")?;
    }
    writeln!(md)?;
    writeln!(md, "Model splits:")?;
    writeln!(md)?;
    for (seed, s) in splits {
        writeln!(
            md,
            "- seed {seed}: `{}` trained on {} samples; {} held out, from groups {}",
            s.kind,
            s.trained_on,
            s.samples.len(),
            s.held_out_groups.join(", ")
        )?;
    }
    writeln!(md)?;
    writeln!(md, "## Limits")?;
    writeln!(md)?;
    for line in [
        "- Every sample comes from one 2-core VM; the emulated nodes are that machine, many times over. Nothing here \
         shows how the model or the strategies do on other hardware.",
        "- Conditions the data never measured (say five benchmark pods on a node) get the nearest measured one; the \
         match distance column says how often that happened.",
        "- A pod's outcome is fixed at placement: pods placed later on its node do not lower it.",
        "- The oracle is greedy: it knows every outcome but places pods one at a time.",
    ] {
        writeln!(md, "{line}")?;
    }
    std::fs::write(out.join("evaluation.md"), md)?;

    let results = json!({
        "seeds": seeds,
        "elapsed_seconds": elapsed.as_secs_f64(),
        "runs": runs.iter().map(|r| json!({
            "nodes": r.nodes, "seed": r.seed, "scheduler": r.scheduler, "metrics": r.metrics, "seconds": r.seconds,
        })).collect::<Vec<_>>(),
    });
    std::fs::write(plots.join("results.json"), serde_json::to_vec_pretty(&results)?)?;
    Ok(())
}
