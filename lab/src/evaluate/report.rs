//! `docs/evaluation.md`, its plots and `docs/evaluation/results.json`, from the runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use super::stats::{Estimate, RatioEstimate, paired_diff, paired_ratio, per_seed, run_to_run};
use super::world::Metrics;
use super::{EvaluateArgs, LEVER_ROWS, Lever, Run, SCHEDULERS, Split, plot};

/// balanced's p10 throughput over default's, at least (and the interval above 1.0).
const P10_GOAL: f64 = 1.2;
/// balanced's mean throughput minus default's, at least.
const MEAN_GOAL: f64 = 0.05;

/// One goal of the issue, checked on the confidence interval, not only the mean.
struct Goal {
    text: String,
    measured: String,
    met: String,
}

/// The verdict of a goal `ok` on an estimate's (low, mean, high).
fn verdict((low, mean, high): (f64, f64, f64), ok: &dyn Fn(f64) -> bool) -> String {
    match (ok(low), ok(mean), ok(high)) {
        (true, true, true) => "met".to_owned(),
        (_, true, _) => "met on the mean, not across the interval".to_owned(),
        (_, false, true) => "not met on the mean; within the interval".to_owned(),
        _ => "not met".to_owned(),
    }
}

/// The goals for `balanced` against `default` (two report rows on the same
/// timelines).
fn goals(runs: &[Run], nodes: usize, balanced: &str, default: &str) -> Vec<Goal> {
    let p10 = |m: &Metrics| m.throughput_p10;
    let mean = |m: &Metrics| m.throughput_mean;
    let coloc = |m: &Metrics| m.replicas_colocated_share;
    let ratio = RatioEstimate::of(&paired_ratio(runs, nodes, balanced, default, p10));
    let gain = Estimate::of(&paired_diff(runs, nodes, balanced, default, mean));
    let spread = Estimate::of(&paired_diff(runs, nodes, balanced, default, coloc));
    let worse_seeds = paired_diff(runs, nodes, balanced, default, coloc).iter().filter(|d| **d > 1e-9).count();
    let short = |mean: f64, goal: f64, unit: &str| {
        if mean >= goal { String::new() } else { format!(" (short by {:.3}{unit} on the mean)", goal - mean) }
    };
    vec![
        Goal {
            text: format!(
                "balanced p10 throughput ≥ {P10_GOAL} × default's, the interval's lower bound above 1.0 (geometric \
                 mean of the per-seed ratios)"
            ),
            measured: ratio.show(3),
            met: match (verdict((ratio.low, ratio.mean, ratio.high), &|v| v >= P10_GOAL), ratio.low > 1.0) {
                (v, true) => format!("{v}{}", short(ratio.mean, P10_GOAL, "×")),
                (v, false) => format!("{v}{}; lower bound not above 1.0", short(ratio.mean, P10_GOAL, "×")),
            },
        },
        Goal {
            text: format!("balanced mean throughput ≥ default's + {MEAN_GOAL} (difference per seed)"),
            measured: gain.show(3),
            met: format!("{}{}", verdict(gain.bounds(), &|v| v >= MEAN_GOAL), short(gain.mean, MEAN_GOAL, "")),
        },
        Goal {
            text: format!(
                "balanced never worse than default on replica spread (co-located share, balanced − default; worse in \
                 {worse_seeds} of {} seeds)",
                spread.n
            ),
            measured: spread.show(3),
            met: if worse_seeds == 0 { "met".to_owned() } else { "not met".to_owned() },
        },
    ]
}

/// What would close the goals balanced misses at `nodes`, from this run's own rows: the
/// room placement leaves (the oracle's gain over default on the same arrivals), the share
/// of it balanced takes, where their picks differ, and what the lever rows say the gain
/// rests on. Nothing when the goals are met or a row is missing.
fn closing(md: &mut String, runs: &[Run], nodes: usize, levers_at: &[usize]) -> std::fmt::Result {
    let (balanced, default, oracle) = ("fitsched-balanced", "default", "oracle");
    let has = |row: &str| runs.iter().any(|r| r.nodes == nodes && r.scheduler == row);
    if ![balanced, default, oracle].into_iter().all(has) {
        return Ok(());
    }
    let mean = |m: &Metrics| m.throughput_mean;
    let p10 = |m: &Metrics| m.throughput_p10;
    let gain = Estimate::of(&paired_diff(runs, nodes, balanced, default, mean));
    let ratio = RatioEstimate::of(&paired_ratio(runs, nodes, balanced, default, p10));
    if gain.mean >= MEAN_GOAL && ratio.mean >= P10_GOAL && ratio.low > 1.0 {
        return Ok(());
    }
    let room = Estimate::of(&paired_diff(runs, nodes, oracle, default, mean));
    let room_p10 = RatioEstimate::of(&paired_ratio(runs, nodes, oracle, default, p10));
    let reach = |v: f64, goal: f64| if v >= goal { "within reach of placement" } else { "beyond placement alone" };
    writeln!(md, "What would close it, from this run's own rows:")?;
    writeln!(md)?;
    writeln!(
        md,
        "- **Room.** The oracle (each condition's expected outcome known, the same arrivals) gains {} on the mean and \
         {} on p10 over default: the mean goal is {}, the p10 goal {}.",
        room.show(3),
        room_p10.show(3),
        reach(room.mean, MEAN_GOAL),
        reach(room_p10.mean, P10_GOAL),
    )?;
    if room.mean > 1e-9 {
        writeln!(
            md,
            "- **Taken.** balanced takes {:.0} % of the oracle's gain on the mean; the mean goal needs {:.0} %.",
            100.0 * gain.mean / room.mean,
            100.0 * MEAN_GOAL / room.mean
        )?;
    }
    let empty = |row: &str| Estimate::of(&per_seed(runs, nodes, row, |m| m.nodes_empty_share)).mean;
    writeln!(
        md,
        "- **Where the picks differ.** Nodes left empty: default {:.2}, balanced {:.2}, oracle {:.2}. Where balanced \
         leaves about as many empty as the oracle yet fares worse, the fault is which nodes it picks, not how many.",
        empty(default),
        empty(balanced),
        empty(oracle)
    )?;
    let lever = |l: Lever| {
        let row = |s: &str| LEVER_ROWS.iter().find(|&&(_, r, x)| x == l && r == s).map(|&(row, _, _)| row);
        let (b, d) = (row(balanced)?, row(default)?);
        (has(b) && has(d)).then(|| Estimate::of(&paired_diff(runs, nodes, b, d, mean)).mean)
    };
    match (lever(Lever::NoOutsideLoad), lever(Lever::UsageIsRequests)) {
        (Some(no_outside), Some(as_requests)) => writeln!(
            md,
            "- **What the gain rests on.** Without outside load balanced − default is {no_outside:+.3} ({}). With \
             usage equal to requests it is {as_requests:+.3}, so seeing usage below requests is worth {:+.3} here.",
            if no_outside < gain.mean {
                "less: part of the gain comes from load kube-scheduler cannot see"
            } else {
                "no less: the gain does not come from outside load"
            },
            gain.mean - as_requests
        )?,
        _ => writeln!(
            md,
            "- **What the gain rests on.** The lever rows run at {levers_at:?} nodes only (`--levers-at`)."
        )?,
    }
    writeln!(
        md,
        "- **Levers in fitsched's hands.** A fitness that ranks nodes as their outcomes do (the model's nested \
         Spearman, `onnx/MODEL_CARD.md`), and the weight the extender's score carries against kube-scheduler's own \
         plugins (`extender.weight` in the chart). Neither was tuned on these seeds."
    )?;
    writeln!(md)
}

fn goal_table(md: &mut String, goals: Vec<Goal>) -> std::fmt::Result {
    writeln!(md, "| goal | estimate (95 % CI over seeds) | verdict |")?;
    writeln!(md, "|---|---|---|")?;
    for g in goals {
        writeln!(md, "| {} | {} | {} |", g.text, g.measured, g.met)?;
    }
    writeln!(md)
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
         regenerate this page, its plots and `evaluation/results.json`. Seeds {seeds:?}; nothing was tuned on \
         seeds of 200 or more (development runs seeds below 200).",
        elapsed.as_secs_f64()
    )?;
    writeln!(md)?;
    writeln!(md, "## Result")?;
    writeln!(md)?;
    for &n in &sizes {
        writeln!(md, "### {n} nodes: the goals")?;
        writeln!(md)?;
        goal_table(&mut md, goals(runs, n, "fitsched-balanced", "default"))?;
        closing(&mut md, runs, n, &args.levers_at)?;
        writeln!(
            md,
            "| scheduler | mean | run-to-run sd of the mean | p10 | p1 | p99 latency of the median pod (× baseline) | regret vs oracle | most replicas on a node | replicas co-located | zone imbalance | nodes empty | outcome windows matched exactly | heavier stand-in | worst-fared stand-in | scorer's windows matched exactly | outcomes from unseen conditions | outcome was the shown sample | match distance |"
        )?;
        writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")?;
        let rows = SCHEDULERS.iter().copied().chain(LEVER_ROWS.iter().map(|&(r, _, _)| r));
        for s in rows.filter(|s| runs.iter().any(|r| r.nodes == n && r.scheduler == *s)) {
            let e = |f: fn(&Metrics) -> f64| Estimate::of(&per_seed(runs, n, s, f)).show(3);
            let oracle = if SCHEDULERS.contains(&s) { "oracle" } else { s };
            let regret = if oracle == s && s != "oracle" {
                "n/a".to_owned()
            } else {
                Estimate::of(&paired_diff(runs, n, oracle, s, |m| m.throughput_mean)).show(3)
            };
            writeln!(
                md,
                "| {s} | {} | {:.3} | {} | {} | {} | {regret} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                e(|m| m.throughput_mean),
                run_to_run(runs, n, s, |m| m.throughput_mean),
                e(|m| m.throughput_p10),
                e(|m| m.throughput_p1),
                e(|m| m.latency_p99_median),
                e(|m| m.replicas_most_on_one_node),
                e(|m| m.replicas_colocated_share),
                e(|m| m.zone_imbalance),
                e(|m| m.nodes_empty_share),
                e(|m| m.exact_share),
                e(|m| m.heavier_share),
                e(|m| m.worst_share),
                e(|m| m.window_exact_share),
                e(|m| m.unseen_share),
                e(|m| m.coincided_share),
                e(|m| m.match_distance),
            )?;
        }
        writeln!(md)?;
        let gain = |a: &str, b: &str| Estimate::of(&paired_diff(runs, n, a, b, |m| m.throughput_mean));
        let row = |lever: Lever, scheduler: &str| {
            LEVER_ROWS.iter().find(|&&(_, s, l)| l == lever && s == scheduler).map_or("", |&(r, _, _)| r)
        };
        let has = |r: &str| runs.iter().any(|x| x.nodes == n && x.scheduler == r);
        writeln!(md, "Balanced − default mean throughput, paired per seed:")?;
        writeln!(md)?;
        writeln!(md, "- {}, as measured", gain("fitsched-balanced", "default").show(3))?;
        for (lever, what) in [
            (
                Lever::UsageIsRequests,
                "where background pods use exactly their requests (what telemetry gains from seeing usage that requests do not show is the difference)",
            ),
            (
                Lever::NoOutsideLoad,
                "without load from outside Kubernetes (what rests on that load, which no published figure sizes, is the difference)",
            ),
        ] {
            let (b, d) = (row(lever, "fitsched-balanced"), row(lever, "default"));
            if has(b) && has(d) {
                writeln!(md, "- {}, {what}", gain(b, d).show(3))?;
            }
        }
        writeln!(md)?;
        let (b, d) = (row(Lever::NoOutsideLoad, "fitsched-balanced"), row(Lever::NoOutsideLoad, "default"));
        if has(b) && has(d) {
            writeln!(md, "The goals without load from outside Kubernetes:")?;
            writeln!(md)?;
            goal_table(&mut md, goals(runs, n, b, d))?;
        }
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
             {} on a node), in {} zones. No kubelet runs: a pod's outcome comes from measurements, not from running it. \
             Every held-out sample comes from one machine (below), the one with the most samples: a class drawn from \
             two machines would describe neither (one benchmark neighbour cost about a third of the throughput on \
             the AMD EPYC VM the first samples came from, about 6 % on the Intel Xeon VM of the later ones). The \
             other machine's samples only train the model.",
            p.node_millicores,
            p.pod_millicores,
            p.node_millicores / p.pod_millicores,
            p.zones
        ),
        format!(
            "- **Telemetry**: `fitsched-agent --replay` streams every node's window to the scorer, which runs the \
             seed's model on it. A node's window is a held-out sample matched to its condition (below) during the \
             step before, as an agent reports the window that just ended: outside load ({:.0} % of draws idle, the \
             rest a held-out sample's interference without its benchmark units, changing with probability 1/{} per \
             step; the rows `no outside load` replay the same arrivals without it) plus the pods on it; before the \
             first step, the outside load alone. A window and an outcome are drawn independently from their classes, \
             so a window says no more about the outcome than its condition does (the column `outcome was the shown \
             sample` counts, as a diagnostic, the outcome windows that happened to draw the sample the node's window \
             showed; `scorer's windows matched exactly` counts the windows fitsched was shown). One step is one window: at least {} of wall time \
             standing for the measured 20 s, so emulated time runs up to 20 s / {} faster than the measurements'; the \
             model and the scorer only ever see whole windows, and no outcome depends on wall time. The agent reports \
             each step's windows once, in the first window begun after they were written, and the scorer keeps nodes \
             fresh across a step: a step's burst, however long it takes, is scored as arriving within one window, and \
             no window claims to show the pods it placed (with a window every second, a 500-node burst of five seconds \
             lost the scorer's count of its pods after two).",
            100.0 * p.idle_share,
            p.dwell,
            args.window,
            args.window
        ),
        "- **Background pods request one thing and use another**: each requests its CPU, which is all \
         kube-scheduler sees, and uses a measured sample's interference (its kinds, scaled so its CPU is the request \
         times a ratio drawn per ReplicaSet: the median of three uniform draws, mean 0.5). The ratio follows Rzadca \
         et al., *Autopilot: workload autoscaling at Google*, EuroSys 2020, §4.2 and Fig. 3a: manually limited jobs \
         on Google's fleet have an average slack of 46-60 %, i.e. use 40-54 % of what they reserve (memory there; \
         here it scales the interference a pod causes). A kind a pod's use leaves below half the lowest intensity \
         measured of it counts as the CPU it keeps busy, since the nearest sample would be a whole stress-ng worker \
         (an approximation, the same for every scheduler: it changes the node's outcome and its window alike). The rows `usage = requests` replay the \
         same arrivals with every background pod using exactly its request, as CPU. The rule is the same for every \
         scheduler."
            .to_owned(),
        format!(
            "- **Arrivals**: per step, on average {} benchmark pods (nginx + wrk ReplicaSets of 1 to 8) and {} \
             background pods per node, each living {} to {} steps, for {} steps up to 50 nodes and {} above \
             (`--steps`); the run then goes on without arrivals until the last pod has ended, so every pod lives its \
             whole life inside it. A step's ReplicaSets are created together, 16 requests at a time, once the \
             scorer holds every node's window of that step (the default profile, which never asks the scorer, does \
             not wait for windows), so kube-scheduler sees them as a burst.",
            p.bench_per_node_step,
            p.background_per_node_step,
            p.lifetime.0,
            p.lifetime.1,
            super::steps(args, 50),
            super::steps(args, 51)
        ),
        format!(
            "- **Lever rows** (`usage = requests`, `no outside load`) run at {:?} nodes only (`--levers-at`): they say \
             what the gain rests on, which one size shows; at 500 nodes they would add three quarters of an hour.",
            args.levers_at
        ),
        "- **Outcomes over a pod's life**: a benchmark pod's throughput and p99-latency ratios are the means, over \
         every window it lives, of the outcome for its node's condition in that window, with the other benchmark \
         pods there as its neighbours: pods that arrive or leave later count."
            .to_owned(),
        "- **Matching a condition**: the number of benchmark neighbours and the set of interference kinds must match \
         exactly (a class); within the class the outcome is drawn, by a key that is the same for every scheduler, \
         among the samples of the class within half a worker of the nearest in intensity (so no draw mixes a \
         class's low and high intensities). Where the held-out pool lacks the class, only a heavier one stands in (as \
         many neighbours or more, a superset of the kinds), so a loaded node is never matched to an idle sample. \
         Where no class covers it, the class that fared worst among those with at least as many neighbours stands \
         in (`worst-fared stand-in`): of the classes with the nearest neighbour count at or above the node's, the \
         one that fared worst; heavier by outcome, if not by kinds. The stand-in columns count outcome windows."
            .to_owned(),
        "- **The oracle** knows the expected outcome of each condition (the mean over the samples the outcome is \
         drawn from), never which of them a pod will get (where a class holds one sample near, that is the \
         outcome: this raises regret, never fitsched's figures); it places greedily, one pod at a time, and ignores \
         spread."
            .to_owned(),
        "- **Held out**: for each seed, `onnx/train.py --eval-split` trains the shipped kind of model without a \
         third of the pool machine's interference groups of each benchmark-neighbour count (conditions it never \
         saw, on any machine: the other machine's samples of them are left out of training too), a third of the \
         samples (one at least) of every other group of two or more (conditions it saw, samples it did not: exact \
         matching needs every class in the pool) and a third of each of the pool machine's sessions' baselines \
         (keeping the three a session needs); only those held-out samples feed windows and outcomes."
            .to_owned(),
        format!(
            "- **Metrics**: throughput ratio (mean, p10, p1 over benchmark pods), the median pod's p99-latency ratio, \
             regret (oracle's mean − the scheduler's, per seed), for ReplicaSets of two or more the most replicas on \
             one node, the share of replicas sharing a node with a sibling and the zone imbalance (most − fewest), \
             and the share of nodes without pods. Each seed runs {} time(s) per scheduler; a seed's value is the mean \
             of its runs, intervals are 95 % Student t over seeds (so they carry the run-to-run noise, also shown as \
             its own column), and ratios and differences are paired per seed.",
            args.repeats
        ),
    ] {
        writeln!(md, "{line}")?;
    }
    writeln!(md)?;
    writeln!(md, "Model splits:")?;
    writeln!(md)?;
    for (seed, s) in splits {
        writeln!(
            md,
            "- seed {seed}: `{}` trained on {} samples; {} held out, all measured on the {}, from groups {}",
            s.kind,
            s.trained_on,
            s.samples.len(),
            s.machine,
            s.held_out_groups.join(", ")
        )?;
    }
    writeln!(md)?;
    writeln!(
        md,
        "Conditions the held-out pools lacked most often (benchmark pods' windows over every run; the \
                  classes a collection plan should measure next):"
    )?;
    writeln!(md)?;
    let mut lacking: BTreeMap<&str, usize> = BTreeMap::new();
    for r in runs {
        for (c, n) in &r.lacking {
            *lacking.entry(c.as_str()).or_default() += n;
        }
    }
    let mut lacking: Vec<(&str, usize)> = lacking.into_iter().collect();
    lacking.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (c, n) in lacking.iter().take(15) {
        writeln!(md, "- `{c}`: {n} windows")?;
    }
    writeln!(md)?;
    writeln!(md, "## Limits")?;
    writeln!(md)?;
    for line in [
        "- The samples come from two 2-core VMs, and the emulated nodes are one of them, many times over: a \
         cluster of one kind of machine. Nothing here shows how the model or the strategies do on other hardware, \
         or on a cluster that mixes machines.",
        "- A class the held-out pool lacks gets a heavier stand-in, or the worst-faring one with as many \
         neighbours; both are meant to make that node's outcome no better than it would be, for every scheduler \
         alike, but a stand-in is not the condition: the stand-in columns say how often, per scheduler.",
        "- Outside load is no published figure: it stands for load kube-scheduler cannot see (other schedulers' \
         pods, daemons, noisy tenants). The `no outside load` rows and goals show the result without it.",
        "- Most outcomes come from conditions the model trained on (other samples of the same group); the column \
         `outcomes from unseen conditions` says how many come from groups held out whole.",
        "- The usage ratio comes from memory slack on Google's fleet; applied to interference it is an approximation, \
         and the `usage = requests` rows bound how much of the result rests on it.",
        "- The oracle is greedy and ignores spread: a bound on what placing one pod at a time with perfect expected \
         knowledge gives, not an optimum. It also ignores the harm a new pod does to the pods already on a node.",
    ] {
        writeln!(md, "{line}")?;
    }
    std::fs::write(out.join("evaluation.md"), md)?;

    let results = json!({
        "seeds": seeds,
        "elapsed_seconds": elapsed.as_secs_f64(),
        "runs": runs.iter().map(|r| json!({
            "nodes": r.nodes, "seed": r.seed, "repeat": r.repeat, "scheduler": r.scheduler, "metrics": r.metrics,
            "seconds": r.seconds,
        })).collect::<Vec<_>>(),
    });
    std::fs::write(plots.join("results.json"), serde_json::to_vec_pretty(&results)?)?;
    Ok(())
}
