//! The emulated cluster of `cargo xtask evaluate`, without any process: measured
//! samples, node conditions, the timeline of background load and pod arrivals, the
//! outcome a pod gets, the two offline schedulers (random and an oracle), and the
//! metrics. Pure and deterministic from a seed, so the same world is replayed for every
//! scheduler.
//!
//! A node's *condition* is the interference on it, as an intensity per kind (the kinds
//! `cargo xtask collect` measures): background load from outside Kubernetes that comes
//! and goes, plus the pods placed on it. Each benchmark pod is one `bench` unit. Each
//! background pod adds what it *uses*, which is not what it requests: a measured
//! sample's interference (its kinds; its intensity scaled so the pod's CPU is its
//! request times a usage ratio drawn per ReplicaSet, see [`Usage`]). The rule is the same
//! for every scheduler; kube-scheduler sees only the requests, fitsched the windows.
//!
//! Everything the emulation reports for a condition comes from the held-out measured
//! samples, matched by [`Pool::matching`]: the same number of benchmark neighbours and the
//! same set of interference kinds exactly (a *class*), the nearest intensities within it.
//! Where the pool lacks the class, only a heavier one stands in (as many neighbours or
//! more, a superset of the kinds), else the worst-faring class with as many neighbours,
//! and every stand-in is counted. A benchmark pod's outcome is the mean, over every
//! window it lives, of the outcome for its node's condition in that window with the
//! other pods there as its neighbours: pods that arrive or leave later count. The window
//! a node reports is its condition's during the step before, as a real agent's is.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::Value;

use crate::interference::Kind;

/// Intensity per interference kind, in `Kind::ALL` order.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Condition(pub [f64; Kind::ALL.len()]);

fn index(kind: Kind) -> usize {
    Kind::ALL.iter().position(|&k| k == kind).unwrap_or(0)
}

/// Below this an intensity is none (sums of scaled floats are not exactly zero).
const PRESENT: f64 = 1e-9;

/// The CPUs `intensity` of `kind` keeps busy: each worker about one CPU at its load;
/// memory pressure is one worker.
fn cpus_of(kind: Kind, intensity: f64) -> f64 {
    if kind == Kind::MemoryPressure { intensity.min(1.0) } else { intensity }
}

impl Condition {
    /// From a collected row's `interference.components`: CPU workers weighted by their
    /// load, memory pressure by its share (15 % = 1), every other kind by its workers.
    pub fn from_components(components: &[Component]) -> anyhow::Result<Condition> {
        let mut c = Condition::default();
        for comp in components {
            let kind = Kind::from_name(&comp.kind)
                .ok_or_else(|| anyhow::anyhow!("unknown interference kind {:?}", comp.kind))?;
            let workers = f64::from(comp.workers);
            c.0[index(kind)] += match kind {
                Kind::Cpu => workers * f64::from(comp.load_percent.unwrap_or(100)) / 100.0,
                Kind::MemoryPressure => workers * f64::from(comp.memory_percent.unwrap_or(15)) / 15.0,
                _ => workers,
            };
        }
        Ok(c)
    }

    pub fn add(&mut self, kind: Kind, amount: f64) {
        self.0[index(kind)] += amount;
    }

    pub fn get(&self, kind: Kind) -> f64 {
        self.0[index(kind)]
    }

    fn plus(mut self, other: &Condition) -> Condition {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
        self
    }

    fn minus(mut self, other: &Condition) -> Condition {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a = (*a - b).max(0.0);
        }
        self
    }

    fn scaled(mut self, by: f64) -> Condition {
        for a in &mut self.0 {
            *a *= by;
        }
        self
    }

    /// The CPUs the condition's stress-ng workers keep busy, for scaling a sample to a
    /// pod's usage.
    fn cpus(&self) -> f64 {
        Kind::ALL.iter().filter(|&&k| k != Kind::Benchmark).map(|&k| cpus_of(k, self.get(k))).sum()
    }

    /// L1 distance over the intensities of everything but benchmark units (which the
    /// class matches exactly).
    fn distance(&self, other: &Condition) -> f64 {
        self.0
            .iter()
            .zip(other.0)
            .enumerate()
            .filter(|(i, _)| *i != index(Kind::Benchmark))
            .map(|(_, (a, b))| (a - b).abs())
            .sum()
    }

    fn without(mut self, kind: Kind) -> Condition {
        self.0[index(kind)] = 0.0;
        self
    }

    /// What must match exactly: the benchmark neighbours and the set of kinds present.
    pub fn class(&self) -> Class {
        let kinds = Kind::ALL
            .iter()
            .enumerate()
            .filter(|&(_, &k)| k != Kind::Benchmark)
            .filter(|&(i, _)| self.0[i] > PRESENT)
            .fold(0u16, |acc, (i, _)| acc | (1 << i));
        Class { bench: self.get(Kind::Benchmark).round().max(0.0) as u32, kinds }
    }
}

/// A condition's exact part: benchmark neighbours and the set of interference kinds
/// (a bit per kind, in `Kind::ALL` order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Class {
    pub bench: u32,
    pub kinds: u16,
}

impl Class {
    /// `cpu+hdd+bench:2`, or `none`: as a collection plan names a condition.
    pub fn name(&self) -> String {
        let mut parts: Vec<String> = Kind::ALL
            .iter()
            .enumerate()
            .filter(|&(i, _)| self.kinds & (1 << i) != 0)
            .map(|(_, k)| k.name().to_owned())
            .collect();
        if self.bench > 0 {
            parts.push(format!("bench:{}", self.bench));
        }
        if parts.is_empty() { "none".into() } else { parts.join("+") }
    }

    /// Whether `self` is at least as heavy as `other`: as many neighbours or more, and
    /// every kind of `other`.
    fn covers(&self, other: &Class) -> bool {
        self.bench >= other.bench && self.kinds & other.kinds == other.kinds
    }

    fn is_idle(&self) -> bool {
        self.bench == 0 && self.kinds == 0
    }
}

/// One interference component as `collect` writes it.
#[derive(Debug, Clone, Deserialize)]
pub struct Component {
    pub kind: String,
    pub workers: u32,
    pub load_percent: Option<u32>,
    pub memory_percent: Option<u32>,
}

/// A held-out measured sample (`onnx/train.py --eval-split` writes them).
#[derive(Debug, Clone, Deserialize)]
pub struct Sample {
    pub baseline: bool,
    pub components: Vec<Component>,
    pub throughput_ratio: f64,
    pub latency_ratio: f64,
    /// The window as the replay file carries it (`metrics`, `missing`).
    pub window: Value,
    /// Its condition was held out whole: the model never trained on it.
    #[serde(default)]
    pub unseen: bool,
}

/// How a condition was matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// The pool holds the condition's class.
    Exact,
    /// It does not; a heavier class stood in (as many neighbours or more, every kind).
    Heavier,
    /// No class covers it: of the classes with the fewest neighbours at least as many as
    /// its own (or, when none has, the most there are), the one whose samples fared
    /// worst stood in. Heavy by outcome, not by kinds; counted apart.
    Worst,
}

/// What matching a condition to the pool found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    /// The sample whose outcome and window the condition gets (drawn by a key among the
    /// nearest of its class).
    pub sample: usize,
    /// L1 distance between the condition's intensities and the sample's.
    pub distance: f64,
    pub fit: Fit,
    /// The mean throughput over the samples it was drawn from: what the oracle knows.
    pub expected_throughput: f64,
    /// The class the condition asked for (see [`Pool::resolved`]).
    pub asked: Class,
}

/// The samples a condition's outcome is drawn from: every sample of its class as near as
/// the nearest give or take this much (half a stress-ng worker), so that a draw never
/// mixes a class's low and high intensities, and knowing the expected outcome is not
/// knowing the exact one where the pool holds more than one.
const NEAR: f64 = 0.5;

/// The held-out samples, their conditions and their classes.
pub struct Pool {
    pub samples: Vec<Sample>,
    conditions: Vec<Condition>,
    classes: BTreeMap<Class, Vec<usize>>,
    /// Per kind, the lowest intensity any sample measured (0 for a kind none has).
    floors: Condition,
}

impl Pool {
    pub fn new(samples: Vec<Sample>) -> anyhow::Result<Pool> {
        anyhow::ensure!(samples.iter().any(|s| s.baseline), "no baseline among the held-out samples");
        anyhow::ensure!(
            samples.iter().any(|s| !s.baseline && !s.components.is_empty()),
            "no held-out sample names its interference (schema-1 data cannot be evaluated)"
        );
        let conditions: Vec<Condition> =
            samples.iter().map(|s| Condition::from_components(&s.components)).collect::<anyhow::Result<_>>()?;
        let mut classes: BTreeMap<Class, Vec<usize>> = BTreeMap::new();
        let mut floors = Condition::default();
        for (i, c) in conditions.iter().enumerate() {
            classes.entry(c.class()).or_default().push(i);
            for (f, &v) in floors.0.iter_mut().zip(&c.0) {
                if v > PRESENT && (*f == 0.0 || v < *f) {
                    *f = v;
                }
            }
        }
        Ok(Pool { samples, conditions, classes, floors })
    }

    /// `c` as the pool can measure it: a kind other than CPU used at less than half the
    /// lowest intensity measured of it counts as the CPU it keeps busy (each worker one
    /// CPU), since its nearest measured sample would be a whole stress-ng worker at the
    /// least: a background pod using a tenth of a disk worker is not a disk worker.
    /// CPU has the finest measured levels and stays whatever it is.
    fn resolved(&self, c: &Condition) -> Condition {
        let mut out = *c;
        for (i, &kind) in Kind::ALL.iter().enumerate() {
            if matches!(kind, Kind::Cpu | Kind::Benchmark) || out.0[i] <= PRESENT || out.0[i] >= self.floors.0[i] / 2.0
            {
                continue;
            }
            let cpus = cpus_of(kind, out.0[i]);
            out.0[i] = 0.0;
            out.add(Kind::Cpu, cpus);
        }
        out
    }

    /// The class that answers for `want`: itself when the pool holds it; else the
    /// lightest heavier one (fewest extra neighbours, then fewest extra kinds); else the
    /// worst-faring class with the nearest neighbour count at or above its own (never idle
    /// for a loaded node).
    fn class_for(&self, want: Class) -> (Class, Fit) {
        if self.classes.contains_key(&want) {
            return (want, Fit::Exact);
        }
        let heavier = self
            .classes
            .keys()
            .filter(|k| k.covers(&want))
            .min_by_key(|k| (k.bench - want.bench, (k.kinds & !want.kinds).count_ones(), **k));
        if let Some(k) = heavier {
            return (*k, Fit::Heavier);
        }
        let mean = |k: &Class| {
            let s = &self.classes[k];
            s.iter().map(|&i| self.samples[i].throughput_ratio).sum::<f64>() / s.len() as f64
        };
        let loaded = || self.classes.keys().filter(|k| !k.is_idle() || want.is_idle());
        // As few neighbours as it has, or the fewest above; else the most there are: a
        // stand-in with many more neighbours would make the node look (and fare) far
        // worse than it is, a difference only a scheduler that sees windows could avoid.
        let bench = loaded()
            .map(|k| k.bench)
            .filter(|&b| b >= want.bench)
            .min()
            .or_else(|| loaded().map(|k| k.bench).max())
            .unwrap_or(want.bench);
        let worst = loaded()
            .filter(|k| k.bench == bench)
            .min_by(|a, b| mean(a).total_cmp(&mean(b)).then(a.cmp(b)))
            .copied()
            .unwrap_or(want);
        (worst, Fit::Worst)
    }

    /// The outcome of condition `c`: among the samples of its class nearest in intensity
    /// (within [`NEAR`] of the nearest), the one `key` picks, so the
    /// same node in the same condition at the same step gets the same sample under every
    /// scheduler. A window and an outcome are drawn independently: whatever sample a
    /// window showed, the outcome's expectation is the class's, so knowing the window
    /// neither helps nor hurts beyond what the condition says (leaving the shown sample
    /// out would make a better window predict a worse outcome).
    pub fn matching(&self, c: &Condition, key: u64) -> Match {
        let c = self.resolved(c);
        let asked = c.class();
        let (class, fit) = self.class_for(asked);
        let mut near: Vec<(f64, usize)> =
            self.classes[&class].iter().map(|&i| (c.distance(&self.conditions[i]), i)).collect();
        near.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let nearest = near[0].0;
        near.retain(|&(d, _)| d <= nearest + NEAR);
        let expected_throughput =
            near.iter().map(|&(_, i)| self.samples[i].throughput_ratio).sum::<f64>() / near.len() as f64;
        let (distance, sample) = near[(mix(key) % near.len() as u64) as usize];
        Match { sample, distance, fit, expected_throughput, asked }
    }

    /// Background conditions for a node's load from outside Kubernetes, and the usage
    /// profiles of background pods: every sample's interference without its benchmark
    /// neighbours (placed pods bring those) and without a persistence change (held-out
    /// samples never carry one).
    fn backgrounds(&self) -> Vec<Condition> {
        self.samples
            .iter()
            .zip(&self.conditions)
            .filter(|(s, _)| !s.baseline)
            .map(|(_, c)| c.without(Kind::Benchmark))
            .filter(|c| c.class().kinds != 0)
            .collect()
    }
}

/// SplitMix64's finaliser: a well-mixed hash of a key.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn key(parts: &[u64]) -> u64 {
    parts.iter().fold(0x5eed, |acc, &p| mix(acc ^ p))
}

/// What a background pod uses, next to the CPU it requests.
///
/// `Measured` (the default): each background ReplicaSet takes a measured sample's
/// interference (its kinds, at an intensity scaled so that its CPU is the pod's request
/// times a usage ratio) and keeps it for its life. The ratio is drawn per ReplicaSet as
/// the median of three uniform draws on [0, 1] (a Beta(2, 2): mean 0.5, most pods between
/// 0.2 and 0.8), after Rzadca et al., "Autopilot: workload autoscaling at Google",
/// EuroSys 2020, §4.2 and Fig. 3a: manually limited serving jobs on Google's fleet have
/// an average relative slack of 46 % (soft limits) to 60 % (hard limits), i.e. they use
/// 40-54 % of what they reserve. (That figure is memory; the emulation applies it to
/// the interference a pod causes, an approximation it states in the report.)
///
/// `Requests`: every background pod uses exactly its request, as CPU. This is what
/// kube-scheduler assumes; the report shows it as a row of its own, so the share of
/// fitsched's gain that comes from telemetry seeing usage is visible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Measured,
    Requests,
}

/// The shape of one emulated run.
#[derive(Debug, Clone)]
pub struct Params {
    pub nodes: usize,
    /// Steps in which pods arrive. The run goes on without arrivals until every pod has
    /// ended, so every pod's whole life is inside it.
    pub steps: usize,
    /// Benchmark pods arriving per node per step, on average.
    pub bench_per_node_step: f64,
    /// Background pods arriving per node per step, on average.
    pub background_per_node_step: f64,
    /// Steps a pod runs (counting its first), drawn uniformly from this range.
    pub lifetime: (usize, usize),
    /// Mean steps a node's outside load lasts before it changes.
    pub dwell: f64,
    /// Share of outside-load draws that leave a node idle.
    pub idle_share: f64,
    /// Allocatable CPU of a node and requests of a pod, in millicores: the nodes are the
    /// size of the machine the samples were measured on.
    pub node_millicores: u32,
    pub pod_millicores: u32,
    pub zones: usize,
    pub usage: Usage,
}

impl Params {
    pub fn for_nodes(nodes: usize) -> Params {
        Params {
            nodes,
            steps: 12,
            bench_per_node_step: 0.30,
            background_per_node_step: 0.15,
            lifetime: (3, 6),
            dwell: 4.0,
            idle_share: 0.35,
            node_millicores: 2000,
            pod_millicores: 400,
            zones: 3,
            usage: Usage::Measured,
        }
    }

    /// Arrival steps, then as many as the longest life takes to end.
    pub fn total_steps(&self) -> usize {
        self.steps + self.lifetime.1.saturating_sub(1)
    }
}

/// Benchmark pods (nginx + wrk, what is measured) or background pods (load).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodKind {
    Benchmark,
    Background,
}

/// A ReplicaSet arriving at a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    pub name: String,
    pub kind: PodKind,
    pub replicas: u32,
    /// The last step its pods run.
    pub ends: usize,
    /// What each of its pods adds to a node's condition (background pods; none for
    /// benchmark pods, which count as `bench` units).
    pub uses: Condition,
}

/// Everything that happens regardless of placement.
pub struct Timeline {
    pub params: Params,
    pub seed: u64,
    /// Outside load of each node at each step (every step of the run, drain included).
    pub background: Vec<Vec<Condition>>,
    /// Outside load of each node in the window before the first step: what the nodes
    /// report when the first pods arrive.
    pub before: Vec<Condition>,
    /// Arrivals at each step of the run (none after `params.steps`).
    pub arrivals: Vec<Vec<Arrival>>,
}

impl Timeline {
    pub fn new(params: Params, pool: &Pool, seed: u64) -> Timeline {
        let mut rng = fastrand::Rng::with_seed(key(&[seed, 1]));
        // Outside load from a stream of its own, so the arrivals are the same with or
        // without it (the `no outside load` rows).
        let mut outside = fastrand::Rng::with_seed(key(&[seed, 6]));
        let choices = pool.backgrounds();
        let draw = |rng: &mut fastrand::Rng| {
            if choices.is_empty() || rng.f64() < params.idle_share {
                Condition::default()
            } else {
                choices[rng.usize(..choices.len())]
            }
        };
        let total = params.total_steps();
        let mut current: Vec<Condition> = (0..params.nodes).map(|_| draw(&mut outside)).collect();
        let before = current.clone();
        let mut background = Vec::with_capacity(total);
        for _ in 0..total {
            for c in &mut current {
                if outside.f64() < 1.0 / params.dwell {
                    *c = draw(&mut outside);
                }
            }
            background.push(current.clone());
        }
        // Usage draws from a stream of their own, so the arrivals are the same under
        // either usage rule.
        let mut usage_rng = fastrand::Rng::with_seed(key(&[seed, 5]));
        let pod_cpus = f64::from(params.pod_millicores) / 1000.0;
        let mut uses = |kind: PodKind| -> Condition {
            let mut c = Condition::default();
            match (kind, params.usage) {
                (PodKind::Benchmark, _) => {}
                (PodKind::Background, Usage::Requests) => c.add(Kind::Cpu, pod_cpus),
                (PodKind::Background, Usage::Measured) => {
                    let ratio = usage_ratio(&mut usage_rng);
                    match choices.get(usage_rng.usize(..choices.len().max(1))) {
                        Some(profile) if profile.cpus() > 0.0 => {
                            c = profile.scaled(ratio * pod_cpus / profile.cpus());
                        }
                        _ => c.add(Kind::Cpu, ratio * pod_cpus),
                    }
                }
            }
            c
        };
        let sizes = [1, 2, 3, 4, 6, 8];
        let mut arrivals = Vec::with_capacity(total);
        let mut n = 0;
        for step in 0..total {
            let mut now = Vec::new();
            if step < params.steps {
                for (kind, rate) in [
                    (PodKind::Benchmark, params.bench_per_node_step),
                    (PodKind::Background, params.background_per_node_step),
                ] {
                    let mut budget = poisson(&mut rng, rate * params.nodes as f64);
                    while budget > 0 {
                        let replicas = sizes[rng.usize(..sizes.len())].min(budget);
                        budget -= replicas;
                        n += 1;
                        let prefix = if kind == PodKind::Benchmark { "bench" } else { "bg" };
                        now.push(Arrival {
                            name: format!("{prefix}-{n:04}"),
                            kind,
                            replicas: replicas as u32,
                            ends: step + rng.usize(params.lifetime.0..=params.lifetime.1) - 1,
                            uses: uses(kind),
                        });
                    }
                }
            }
            arrivals.push(now);
        }
        Timeline { params, seed, background, before, arrivals }
    }

    pub fn zone(&self, node: usize) -> usize {
        node % self.params.zones
    }

    pub fn total_steps(&self) -> usize {
        self.background.len()
    }
}

/// A usage/request ratio: the median of three uniform draws, a Beta(2, 2) (see [`Usage`]).
fn usage_ratio(rng: &mut fastrand::Rng) -> f64 {
    let mut u = [rng.f64(), rng.f64(), rng.f64()];
    u.sort_by(f64::total_cmp);
    u[1]
}

fn poisson(rng: &mut fastrand::Rng, mean: f64) -> usize {
    // Knuth's method would underflow at the 500-node rates; a normal approximation with
    // the Poisson variance is plenty for arrival counts.
    if mean > 30.0 {
        let z = (-2.0 * rng.f64().max(1e-12).ln()).sqrt() * (std::f64::consts::TAU * rng.f64()).cos();
        return (mean + z * mean.sqrt()).round().max(0.0) as usize;
    }
    let (limit, mut p, mut k) = ((-mean).exp(), 1.0, 0);
    loop {
        p *= rng.f64();
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

/// One pod placed.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub arrival: String,
    pub kind: PodKind,
    pub node: usize,
    pub step: usize,
    pub ends: usize,
    /// What it adds to its node's condition (background pods).
    uses: Condition,
    /// Benchmark pods only: the outcomes of every window it lived, summed.
    lived: Lived,
}

/// A benchmark pod's outcomes, summed over the windows it lived.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Lived {
    windows: u32,
    throughput: f64,
    latency: f64,
    distance: f64,
}

impl Placed {
    /// The mean throughput over the windows it lived (benchmark pods).
    pub fn throughput(&self) -> Option<f64> {
        (self.lived.windows > 0).then(|| self.lived.throughput / f64::from(self.lived.windows))
    }

    pub fn latency(&self) -> Option<f64> {
        (self.lived.windows > 0).then(|| self.lived.latency / f64::from(self.lived.windows))
    }

    fn distance(&self) -> Option<f64> {
        (self.lived.windows > 0).then(|| self.lived.distance / f64::from(self.lived.windows))
    }
}

/// The cluster as placements leave it, step by step: the one bookkeeping every scheduler,
/// real or offline, goes through.
pub struct World<'a> {
    pub timeline: &'a Timeline,
    pub pool: &'a Pool,
    pub step: usize,
    /// Indices into `placed` of the pods running now.
    running: Vec<usize>,
    /// Benchmark pods on each node, and what the background pods there use.
    benchmark_on: Vec<u32>,
    background_on: Vec<u32>,
    background_use: Vec<Condition>,
    pub placed: Vec<Placed>,
    /// Pods no node had room for until their life was over (the offline schedulers retry
    /// a pod that found no room at every step, as kube-scheduler keeps it pending; the
    /// real runs wait for every pod).
    pub unplaced: usize,
    /// Pods that found no room at their arrival and waited at least a step.
    pub waited: usize,
    /// Share of nodes without any pod, after each arrival step's placements.
    pub empty_share: Vec<f64>,
    /// How benchmark pods' outcome windows were matched: exact, heavier, worst.
    pub fits: [usize; 3],
    /// How the windows the scorer was shown were matched, the same way ([`World::note_shown`]).
    pub window_fits: [usize; 3],
    /// Outcome windows drawn from a sample the model never trained on.
    pub unseen: usize,
    /// Outcome windows drawn from the very sample the node's window showed (chance, or a
    /// class with one sample near): a diagnostic.
    pub coincided: usize,
    /// The sample each node's window shows this step (the condition it was in during
    /// the last step, as an agent reports the window that just ended), and how it matched.
    shown: Vec<usize>,
    shown_fits: Vec<Fit>,
    /// The classes benchmark pods' windows asked for that the pool lacked, and how often:
    /// what the next collection plan should measure.
    pub lacking: BTreeMap<Class, usize>,
}

impl<'a> World<'a> {
    pub fn new(timeline: &'a Timeline, pool: &'a Pool) -> World<'a> {
        let nodes = timeline.params.nodes;
        let mut world = World {
            timeline,
            pool,
            step: 0,
            running: Vec::new(),
            benchmark_on: vec![0; nodes],
            background_on: vec![0; nodes],
            background_use: vec![Condition::default(); nodes],
            placed: Vec::new(),
            unplaced: 0,
            waited: 0,
            empty_share: Vec::new(),
            fits: [0; 3],
            window_fits: [0; 3],
            unseen: 0,
            coincided: 0,
            shown: Vec::new(),
            shown_fits: Vec::new(),
            lacking: BTreeMap::new(),
        };
        // The first pods meet the nodes' reports of the window before: outside load alone.
        world.show(&timeline.before, 0);
        world
    }

    /// Draws the samples the nodes' windows show at `step`, from their conditions during
    /// the step before.
    fn show(&mut self, last: &[Condition], step: usize) {
        let (pool, seed) = (self.pool, self.timeline.seed);
        let matched: Vec<Match> = last
            .iter()
            .enumerate()
            .map(|(node, c)| pool.matching(c, key(&[seed, 2, step as u64, node as u64])))
            .collect();
        self.shown = matched.iter().map(|m| m.sample).collect();
        self.shown_fits = matched.iter().map(|m| m.fit).collect();
    }

    /// Counts this step's windows as shown to the scorer (a run through fitsched that
    /// wrote them for its agent).
    pub fn note_shown(&mut self) {
        for &f in &self.shown_fits {
            self.window_fits[f as usize] += 1;
        }
    }

    /// Moves to `step`: pods whose lifetime ended are gone. Returns the arrivals that
    /// ended (their workloads are deleted).
    pub fn begin_step(&mut self, step: usize) -> Vec<String> {
        if step > 0 {
            let last: Vec<Condition> = (0..self.timeline.params.nodes).map(|n| self.condition(n)).collect();
            self.show(&last, step);
        }
        self.step = step;
        let mut ended = Vec::new();
        let (gone, still): (Vec<usize>, Vec<usize>) = self.running.iter().partition(|&&i| self.placed[i].ends < step);
        for i in gone {
            let p = &self.placed[i];
            ended.push(p.arrival.clone());
            match p.kind {
                PodKind::Benchmark => self.benchmark_on[p.node] -= 1,
                PodKind::Background => {
                    self.background_on[p.node] -= 1;
                    self.background_use[p.node] = self.background_use[p.node].minus(&p.uses);
                }
            }
        }
        self.running = still;
        ended.sort();
        ended.dedup();
        ended
    }

    /// A node's condition now: its outside load plus the pods on it.
    pub fn condition(&self, node: usize) -> Condition {
        let mut c = self.timeline.background[self.step][node].plus(&self.background_use[node]);
        c.add(Kind::Benchmark, f64::from(self.benchmark_on[node]));
        c
    }

    /// The window a node's agent reports for this step: the last step's, not this one's,
    /// so the scorer never sees the load its pods will meet before they meet it.
    pub fn window(&self, node: usize) -> &Value {
        &self.pool.samples[self.shown[node]].window
    }

    /// The throughput a benchmark pod placed on `node` now would get on average, with
    /// the pods there as its neighbours: what the oracle knows.
    pub fn expected(&self, node: usize) -> f64 {
        self.pool.matching(&self.condition(node), 0).expected_throughput
    }

    pub fn used_millicores(&self, node: usize) -> u32 {
        (self.benchmark_on[node] + self.background_on[node]) * self.timeline.params.pod_millicores
    }

    pub fn fits(&self, node: usize) -> bool {
        self.used_millicores(node) + self.timeline.params.pod_millicores <= self.timeline.params.node_millicores
    }

    /// Records a pod of `arrival` on `node`.
    pub fn place(&mut self, arrival: &Arrival, node: usize) {
        let p = Placed {
            arrival: arrival.name.clone(),
            kind: arrival.kind,
            node,
            step: self.step,
            ends: arrival.ends,
            uses: arrival.uses,
            lived: Lived::default(),
        };
        match arrival.kind {
            PodKind::Benchmark => self.benchmark_on[node] += 1,
            PodKind::Background => {
                self.background_on[node] += 1;
                self.background_use[node] = self.background_use[node].plus(&arrival.uses);
            }
        }
        self.running.push(self.placed.len());
        self.placed.push(p);
    }

    /// Closes the step: every running benchmark pod gets this window's outcome for its
    /// node's condition, the other pods there as its neighbours.
    pub fn end_step(&mut self) {
        for i in self.running.clone() {
            let p = &self.placed[i];
            if p.kind != PodKind::Benchmark {
                continue;
            }
            let mut c = self.condition(p.node);
            c.add(Kind::Benchmark, -1.0);
            let m = self.pool.matching(&c, key(&[self.timeline.seed, 3, i as u64, self.step as u64]));
            let s = &self.pool.samples[m.sample];
            self.unseen += usize::from(s.unseen);
            self.coincided += usize::from(m.sample == self.shown[p.node]);
            let lived = &mut self.placed[i].lived;
            lived.windows += 1;
            lived.throughput += s.throughput_ratio;
            lived.latency += s.latency_ratio;
            lived.distance += m.distance;
            self.fits[m.fit as usize] += 1;
            if m.fit != Fit::Exact {
                *self.lacking.entry(m.asked).or_default() += 1;
            }
        }
        if self.step < self.timeline.params.steps {
            let empty =
                (0..self.timeline.params.nodes).filter(|&n| self.benchmark_on[n] + self.background_on[n] == 0).count();
            self.empty_share.push(empty as f64 / self.timeline.params.nodes as f64);
        }
    }
}

/// The schedulers the evaluation computes offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offline {
    /// A uniformly random node with room.
    Random,
    /// Greedy with knowledge of the expected outcomes (each condition's mean over the
    /// samples its outcome is drawn from, never the sample a pod will get): each
    /// benchmark pod on the node where it expects the most throughput, each background
    /// pod where a benchmark pod would expect the least (so it harms the fewest). Not a
    /// global optimum: placing pods one at a time cannot see later arrivals, and it
    /// ignores spread.
    Oracle,
}

/// Runs an offline scheduler over the whole timeline.
pub fn run_offline<'a>(timeline: &'a Timeline, pool: &'a Pool, which: Offline) -> World<'a> {
    let mut world = World::new(timeline, pool);
    let mut rng = fastrand::Rng::with_seed(key(&[timeline.seed, 4]));
    // Pods still waiting for room, one replica each, first come first served.
    let mut waiting: Vec<Arrival> = Vec::new();
    for step in 0..timeline.total_steps() {
        world.begin_step(step);
        let retried = std::mem::take(&mut waiting);
        for (arrival, first_try) in
            retried.iter().map(|a| (a, false)).chain(timeline.arrivals[step].iter().map(|a| (a, true)))
        {
            for _ in 0..arrival.replicas {
                let fits: Vec<usize> = (0..timeline.params.nodes).filter(|&n| world.fits(n)).collect();
                if fits.is_empty() {
                    if arrival.ends > step {
                        world.waited += usize::from(first_try);
                        waiting.push(Arrival { replicas: 1, ..arrival.clone() });
                    } else {
                        world.unplaced += 1;
                    }
                    continue;
                }
                let node = match which {
                    Offline::Random => fits[rng.usize(..fits.len())],
                    Offline::Oracle => {
                        // (expected throughput of a benchmark pod there, free millicores, node)
                        let options: Vec<(f64, u32, usize)> = fits
                            .iter()
                            .map(|&n| {
                                let free = timeline.params.node_millicores - world.used_millicores(n);
                                (world.expected(n), free, n)
                            })
                            .collect();
                        let best = match arrival.kind {
                            // The most throughput; among equals the emptiest node.
                            PodKind::Benchmark => options
                                .iter()
                                .max_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(b.2.cmp(&a.2))),
                            // Where a benchmark pod would fare worst; among equals the fullest.
                            PodKind::Background => options
                                .iter()
                                .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2))),
                        };
                        best.map_or(fits[0], |o| o.2)
                    }
                };
                world.place(arrival, node);
            }
        }
        world.end_step();
    }
    world
}

/// The figures of one run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Metrics {
    pub benchmark_pods: usize,
    /// Pods no node had room for in their life, and pods that waited for room (offline
    /// schedulers only).
    pub unplaced: usize,
    pub waited: usize,
    /// Over benchmark pods, each the mean over the windows it lived.
    pub throughput_mean: f64,
    pub throughput_p10: f64,
    pub throughput_p1: f64,
    /// The median benchmark pod's p99 latency, as a multiple of the baseline's (a mean
    /// would be one pod's: a UDP flood puts a p99 at thousands of times the baseline).
    pub latency_p99_median: f64,
    /// Mean over ReplicaSets of two or more of the most replicas on one node.
    pub replicas_most_on_one_node: f64,
    /// Share of replicas (of ReplicaSets of two or more) sharing a node with a sibling.
    pub replicas_colocated_share: f64,
    /// Mean over ReplicaSets of two or more of (most − fewest replicas in a zone).
    pub zone_imbalance: f64,
    /// Mean share of nodes without any pod after an arrival step's placements.
    pub nodes_empty_share: f64,
    /// Mean distance between a pod's condition and its matched sample.
    pub match_distance: f64,
    /// Shares of benchmark pods' outcome windows whose class the pool held (exact), stood
    /// in for by a heavier class, or by the worst-faring one (see [`Fit`]).
    pub exact_share: f64,
    pub heavier_share: f64,
    pub worst_share: f64,
    /// Share of the windows the scorer was shown whose class the pool held.
    pub window_exact_share: f64,
    /// Share of outcome windows from samples of conditions the model never trained on.
    pub unseen_share: f64,
    /// Share of outcome windows drawn from the sample the node's window showed.
    pub coincided_share: f64,
}

/// The `q`-quantile (0..1) by linear interpolation, as numpy's default.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let h = q * (v.len() - 1) as f64;
    let (lo, hi) = (v[h.floor() as usize], v[h.ceil() as usize]);
    lo + (h - h.floor()) * (hi - lo)
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() { f64::NAN } else { values.iter().sum::<f64>() / values.len() as f64 }
}

impl Metrics {
    pub fn of(world: &World<'_>) -> Metrics {
        let bench: Vec<&Placed> = world.placed.iter().filter(|p| p.kind == PodKind::Benchmark).collect();
        let thr: Vec<f64> = bench.iter().filter_map(|p| p.throughput()).collect();
        let lat: Vec<f64> = bench.iter().filter_map(|p| p.latency()).collect();
        let dist: Vec<f64> = bench.iter().filter_map(|p| p.distance()).collect();
        let mut sets: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for p in &bench {
            sets.entry(p.arrival.as_str()).or_default().push(p.node);
        }
        let (mut most, mut zone_gap, mut colocated, mut in_sets) = (Vec::new(), Vec::new(), 0usize, 0usize);
        for nodes in sets.values().filter(|n| n.len() >= 2) {
            let mut per_node: HashMap<usize, usize> = HashMap::new();
            let mut per_zone = vec![0usize; world.timeline.params.zones];
            for &n in nodes {
                *per_node.entry(n).or_default() += 1;
                per_zone[world.timeline.zone(n)] += 1;
            }
            most.push(per_node.values().copied().max().unwrap_or(0) as f64);
            colocated += per_node.values().filter(|&&c| c > 1).sum::<usize>();
            in_sets += nodes.len();
            let (lo, hi) = (per_zone.iter().min().unwrap_or(&0), per_zone.iter().max().unwrap_or(&0));
            zone_gap.push((hi - lo) as f64);
        }
        let windows = world.fits.iter().sum::<usize>().max(1) as f64;
        let shown = world.window_fits.iter().sum::<usize>() as f64;
        Metrics {
            benchmark_pods: bench.len(),
            unplaced: world.unplaced,
            waited: world.waited,
            throughput_mean: mean(&thr),
            throughput_p10: quantile(&thr, 0.10),
            throughput_p1: quantile(&thr, 0.01),
            latency_p99_median: quantile(&lat, 0.5),
            replicas_most_on_one_node: mean(&most),
            replicas_colocated_share: if in_sets == 0 { 0.0 } else { colocated as f64 / in_sets as f64 },
            zone_imbalance: mean(&zone_gap),
            nodes_empty_share: mean(&world.empty_share),
            match_distance: mean(&dist),
            exact_share: world.fits[Fit::Exact as usize] as f64 / windows,
            heavier_share: world.fits[Fit::Heavier as usize] as f64 / windows,
            worst_share: world.fits[Fit::Worst as usize] as f64 / windows,
            // NaN (n/a) for a run that showed the scorer nothing.
            window_exact_share: world.window_fits[Fit::Exact as usize] as f64 / shown,
            unseen_share: world.unseen as f64 / windows,
            coincided_share: world.coincided as f64 / windows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(id: u64, components: Value, thr: f64) -> Sample {
        serde_json::from_value(json!({
            "sample": id, "group": "g", "baseline": components == json!([]), "components": components,
            "throughput_ratio": thr, "latency_ratio": 1.0 / thr.max(0.01), "window": {"metrics": {}, "id": id},
        }))
        .unwrap()
    }

    fn pool() -> Pool {
        Pool::new(vec![
            sample(1, json!([]), 1.0),
            sample(2, json!([]), 0.98),
            sample(3, json!([{"kind": "cpu", "workers": 2, "load_percent": 100}]), 0.4),
            sample(4, json!([{"kind": "cpu", "workers": 1, "load_percent": 50}]), 0.8),
            sample(5, json!([{"kind": "bench", "workers": 1}]), 0.6),
            sample(6, json!([{"kind": "bench", "workers": 2}]), 0.45),
            sample(7, json!([{"kind": "hdd", "workers": 1}, {"kind": "bench", "workers": 1}]), 0.5),
            sample(8, json!([{"kind": "cpu", "workers": 1, "load_percent": 25}]), 0.9),
            sample(9, json!([{"kind": "cpu", "workers": 2, "load_percent": 75}]), 0.5),
        ])
        .unwrap()
    }

    fn condition(parts: &[(Kind, f64)]) -> Condition {
        let mut c = Condition::default();
        for &(k, v) in parts {
            c.add(k, v);
        }
        c
    }

    fn id(p: &Pool, m: &Match) -> Value {
        p.samples[m.sample].window["id"].clone()
    }

    #[test]
    fn neighbours_and_kinds_match_exactly_and_only_heavier_classes_stand_in() {
        let p = pool();
        let one = p.matching(&condition(&[(Kind::Benchmark, 1.0)]), 1);
        assert_eq!((id(&p, &one), one.fit), (json!(5), Fit::Exact));
        // No disk-only sample: disk with a neighbour stands in, never the idle ones.
        let disk = p.matching(&condition(&[(Kind::Disk, 1.0)]), 1);
        assert_eq!((id(&p, &disk), disk.fit), (json!(7), Fit::Heavier));
        // Nothing holds three neighbours: the most there is, counted apart.
        let three = p.matching(&condition(&[(Kind::Benchmark, 3.0)]), 1);
        assert_eq!((id(&p, &three), three.fit), (json!(6), Fit::Worst));
        // Nothing covers disk with two neighbours: of the classes with two, the worst.
        let crowded = p.matching(&condition(&[(Kind::Disk, 1.0), (Kind::Benchmark, 2.0)]), 1);
        assert_eq!((id(&p, &crowded), crowded.fit), (json!(6), Fit::Worst));
        // Nor UDP at all: the worst-faring loaded class with as few neighbours as it has,
        // none (CPU), never one with more.
        let udp = p.matching(&condition(&[(Kind::Udp, 1.0)]), 1);
        assert_eq!(udp.fit, Fit::Worst);
        assert!(["4", "8"].contains(&id(&p, &udp).to_string().as_str()), "{udp:?}");
        // A tenth of a disk worker is no disk worker: it counts as the CPU it keeps busy.
        assert_eq!(p.matching(&condition(&[(Kind::Disk, 0.1)]), 1).asked, condition(&[(Kind::Cpu, 0.1)]).class());
        assert_eq!(
            p.matching(&condition(&[(Kind::Disk, 0.6), (Kind::Benchmark, 1.0)]), 1).asked,
            condition(&[(Kind::Disk, 1.0), (Kind::Benchmark, 1.0)]).class()
        );
        // A loaded node is never matched to an idle sample, however light its load.
        for kind in [Kind::Udp, Kind::Cpu, Kind::MemoryBandwidth] {
            let m = p.matching(&condition(&[(kind, 0.01)]), 1);
            assert!(!p.samples[m.sample].baseline, "{kind:?} matched to idle");
        }
        let idle = p.matching(&Condition::default(), 1);
        assert_eq!(idle.fit, Fit::Exact);
        assert!(p.samples[idle.sample].baseline);
        let bad = Component { kind: "gpu".into(), workers: 1, load_percent: None, memory_percent: None };
        assert!(Condition::from_components(&[bad]).is_err());
    }

    #[test]
    fn outcomes_are_drawn_among_the_nearest_and_the_oracle_knows_only_their_mean() {
        let p = pool();
        // Four CPU samples at 0.25, 0.5, 1.5 and 2 CPUs: 0.6 is nearest 0.5, and 0.25 is
        // within half a worker of it; 1.5 is not.
        let c = condition(&[(Kind::Cpu, 0.6)]);
        let picks: std::collections::BTreeSet<String> =
            (0..60).map(|k| id(&p, &p.matching(&c, k)).to_string()).collect();
        assert_eq!(picks.into_iter().collect::<Vec<_>>(), ["4", "8"]);
        let m = p.matching(&c, 7);
        assert!((m.expected_throughput - (0.8 + 0.9) / 2.0).abs() < 1e-12, "{m:?}");
        assert_eq!(p.matching(&c, 7), m, "the same key, the same sample");
    }

    #[test]
    fn the_timeline_is_deterministic_and_usage_rules_change_only_what_pods_use() {
        let p = pool();
        let a = Timeline::new(Params::for_nodes(20), &p, 7);
        let b = Timeline::new(Params::for_nodes(20), &p, 7);
        let c = Timeline::new(Params::for_nodes(20), &p, 8);
        assert_eq!(a.arrivals, b.arrivals);
        assert_eq!(a.background, b.background);
        assert_ne!(a.arrivals, c.arrivals);
        let pods: u32 = a.arrivals.iter().flatten().map(|x| x.replicas).sum();
        assert!((30..150).contains(&pods), "about 0.45 pods per node per step over 12 steps: {pods}");
        assert!(a.arrivals.iter().flatten().all(|x| x.ends > 0 && x.replicas > 0));
        // Arrivals stop after the arrival steps; the run lasts until the longest life ends.
        assert_eq!(a.total_steps(), 12 + 5);
        assert!(a.arrivals[12..].iter().all(Vec::is_empty));
        assert!(a.arrivals.iter().flatten().all(|x| x.ends < a.total_steps()));
        let r = Timeline::new(Params { usage: Usage::Requests, ..Params::for_nodes(20) }, &p, 7);
        let shape = |t: &Timeline| {
            t.arrivals.iter().flatten().map(|x| (x.name.clone(), x.replicas, x.ends)).collect::<Vec<_>>()
        };
        assert_eq!(shape(&a), shape(&r));
        // Without outside load: the same arrivals, every node idle of it.
        let quiet = Timeline::new(Params { idle_share: 1.0, ..Params::for_nodes(20) }, &p, 7);
        assert_eq!(shape(&a), shape(&quiet));
        assert!(quiet.background.iter().chain([&quiet.before]).flatten().all(|c| *c == Condition::default()));
        assert!(a.before.iter().any(|c| *c != Condition::default()), "the window before the first step has load too");
        for (m, q) in a.arrivals.iter().flatten().zip(r.arrivals.iter().flatten()) {
            match m.kind {
                PodKind::Benchmark => assert_eq!((m.uses, q.uses), (Condition::default(), Condition::default())),
                PodKind::Background => {
                    assert_eq!(q.uses, condition(&[(Kind::Cpu, 0.4)]), "a request of 400m, used");
                    assert!(m.uses.cpus() > 0.0 && m.uses.cpus() <= 0.4 + 1e-9, "{:?}", m.uses);
                }
            }
        }
    }

    #[test]
    fn a_pod_lives_its_neighbours_arrivals_and_departures() {
        let p = pool();
        let t = Timeline::new(Params { idle_share: 1.0, ..Params::for_nodes(2) }, &p, 1);
        let mut w = World::new(&t, &p);
        let first = Arrival {
            name: "bench-1".into(),
            kind: PodKind::Benchmark,
            replicas: 1,
            ends: 2,
            uses: Condition::default(),
        };
        let second = Arrival {
            name: "bench-2".into(),
            kind: PodKind::Benchmark,
            replicas: 1,
            ends: 1,
            uses: Condition::default(),
        };
        w.begin_step(0);
        w.place(&first, 0);
        w.end_step();
        w.begin_step(1);
        w.place(&second, 0);
        assert_eq!(w.window(0)["id"], 5, "the node reports the last step's window: one benchmark unit");
        w.end_step();
        assert_eq!(w.begin_step(2), vec!["bench-2".to_owned()]);
        w.end_step();
        assert!(w.begin_step(3).contains(&"bench-1".to_owned()));
        assert_eq!(w.condition(0), Condition::default());
        // Idle, then with a neighbour, then idle again: the neighbour counts while it ran.
        let thr = w.placed[0].throughput().unwrap();
        assert_eq!(w.placed[0].lived.windows, 3);
        assert!((0.85..0.87).contains(&thr), "two idle windows (0.98 or 1.0) and one at 0.6: {thr}");
        assert_eq!(w.placed[1].throughput(), Some(0.6), "one window, with the first as its neighbour");
        let m = Metrics::of(&w);
        assert_eq!((m.benchmark_pods, m.exact_share), (2, 1.0));
    }

    #[test]
    fn background_pods_bring_what_they_use_and_take_it_away() {
        let p = pool();
        let t = Timeline::new(Params { idle_share: 1.0, ..Params::for_nodes(1) }, &p, 1);
        let mut w = World::new(&t, &p);
        let uses = condition(&[(Kind::Cpu, 0.3)]);
        let bg = Arrival { name: "bg-1".into(), kind: PodKind::Background, replicas: 2, ends: 0, uses };
        w.begin_step(0);
        w.place(&bg, 0);
        w.place(&bg, 0);
        assert!((w.condition(0).get(Kind::Cpu) - 0.6).abs() < 1e-12);
        assert_eq!(w.used_millicores(0), 800, "kube-scheduler counts requests, not use");
        w.end_step();
        w.begin_step(1);
        assert_eq!(w.condition(0).class(), Condition::default().class());
    }

    #[test]
    fn the_oracle_beats_random_and_respects_capacity() {
        let p = pool();
        let t = Timeline::new(Params::for_nodes(30), &p, 3);
        let oracle = run_offline(&t, &p, Offline::Oracle);
        let random = run_offline(&t, &p, Offline::Random);
        let (o, r) = (Metrics::of(&oracle), Metrics::of(&random));
        assert_eq!(o.benchmark_pods, r.benchmark_pods);
        assert!(o.throughput_mean > r.throughput_mean, "{o:?} vs {r:?}");
        for world in [&oracle, &random] {
            for step in 0..t.total_steps() {
                let mut per_node = HashMap::<usize, u32>::new();
                for pl in world.placed.iter().filter(|pl| pl.step <= step && pl.ends >= step) {
                    *per_node.entry(pl.node).or_default() += t.params.pod_millicores;
                }
                assert!(per_node.values().all(|&m| m <= t.params.node_millicores));
            }
            // Every benchmark pod lived its whole life inside the run.
            for pl in world.placed.iter().filter(|pl| pl.kind == PodKind::Benchmark) {
                assert_eq!(pl.lived.windows as usize, pl.ends - pl.step + 1);
            }
        }
        let m = Metrics::of(&oracle);
        assert!((m.exact_share + m.heavier_share + m.worst_share - 1.0).abs() < 1e-9);
    }

    #[test]
    fn offline_pods_without_room_wait_instead_of_vanishing() {
        let p = pool();
        let params = Params { idle_share: 1.0, ..Params::for_nodes(1) };
        let total = params.total_steps();
        let bench = |name: &str, replicas, ends| Arrival {
            name: name.into(),
            kind: PodKind::Benchmark,
            replicas,
            ends,
            uses: Condition::default(),
        };
        let mut arrivals = vec![Vec::new(); total];
        // Six pods of 400 m on a node of 2000 m: one must wait for the first four to end.
        arrivals[0] = vec![bench("bench-a", 4, 0), bench("bench-b", 2, 3)];
        let t = Timeline {
            params,
            seed: 1,
            background: vec![vec![Condition::default()]; total],
            before: vec![Condition::default()],
            arrivals,
        };
        let w = run_offline(&t, &p, Offline::Random);
        let m = Metrics::of(&w);
        assert_eq!((m.benchmark_pods, m.waited, m.unplaced), (6, 1, 0));
        let late = w.placed.iter().find(|pl| pl.step == 1).expect("the pod that waited starts at step 1");
        assert_eq!(late.lived.windows, 3);
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), 3.0);
        assert!((quantile(&[0.0, 10.0], 0.1) - 1.0).abs() < 1e-12);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
