//! The emulated cluster of `cargo xtask evaluate`, without any process: measured
//! samples, node conditions, the timeline of background load and pod arrivals, the
//! outcome a pod gets, the two offline schedulers (random and an oracle), and the
//! metrics. Pure and deterministic from a seed, so the same world is replayed for every
//! scheduler.
//!
//! A node's *condition* is the interference on it, as an intensity per kind (the kinds
//! `cargo xtask collect` measures): background load that comes and goes, plus the pods
//! placed on it (each benchmark pod counts as one `bench` unit, each background pod as
//! half a CPU). Everything the emulation reports for a condition comes from the held-out
//! measured sample nearest to it: the window the agent replays, and the throughput and
//! latency a benchmark pod placed there gets (measured with the other benchmark pods on
//! the node as neighbours).

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

impl Condition {
    /// From a collected row's `interference.components`: CPU workers weighted by their
    /// load, memory pressure by its share (15 % = 1), every other kind by its workers.
    pub fn from_components(components: &[Component]) -> anyhow::Result<Condition> {
        let mut c = Condition::default();
        for comp in components {
            let kind = Kind::ALL
                .into_iter()
                .find(|k| k.name() == comp.kind)
                .ok_or_else(|| anyhow::anyhow!("unknown interference kind {:?}", comp.kind))?;
            let workers = comp.workers as f64;
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

    #[cfg(test)]
    pub fn get(&self, kind: Kind) -> f64 {
        self.0[index(kind)]
    }

    fn distance(&self, other: &Condition) -> f64 {
        self.0.iter().zip(other.0).map(|(a, b)| (a - b).abs()).sum()
    }

    fn without(mut self, kind: Kind) -> Condition {
        self.0[index(kind)] = 0.0;
        self
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
}

/// The held-out samples and their conditions.
pub struct Pool {
    pub samples: Vec<Sample>,
    conditions: Vec<Condition>,
}

/// What matching a condition to the pool found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    pub sample: usize,
    /// L1 distance between the condition and the sample's: how approximate the answer is.
    pub distance: f64,
}

impl Pool {
    pub fn new(samples: Vec<Sample>) -> anyhow::Result<Pool> {
        anyhow::ensure!(samples.iter().any(|s| s.baseline), "no baseline among the held-out samples");
        anyhow::ensure!(
            samples.iter().any(|s| !s.baseline && !s.components.is_empty()),
            "no held-out sample names its interference (schema-1 data cannot be evaluated)"
        );
        let conditions =
            samples.iter().map(|s| Condition::from_components(&s.components)).collect::<anyhow::Result<_>>()?;
        Ok(Pool { samples, conditions })
    }

    /// The sample nearest to `c`; among equally near ones, the one `key` picks (so the
    /// same node in the same condition at the same step gets the same sample under every
    /// scheduler).
    pub fn nearest(&self, c: &Condition, key: u64) -> Match {
        let mut best = f64::INFINITY;
        let mut ties = Vec::new();
        for (i, sc) in self.conditions.iter().enumerate() {
            let d = c.distance(sc);
            if d < best - 1e-9 {
                best = d;
                ties.clear();
            }
            if d <= best + 1e-9 {
                ties.push(i);
            }
        }
        Match { sample: ties[(mix(key) % ties.len() as u64) as usize], distance: best }
    }

    /// Background conditions to draw from: every non-baseline sample's, less its
    /// benchmark neighbours (placed pods bring those).
    fn backgrounds(&self) -> Vec<Condition> {
        self.samples
            .iter()
            .zip(&self.conditions)
            .filter(|(s, _)| !s.baseline)
            .map(|(_, c)| c.without(Kind::Benchmark))
            .filter(|c| c.0.iter().any(|&v| v > 0.0))
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

/// The shape of one emulated run.
#[derive(Debug, Clone)]
pub struct Params {
    pub nodes: usize,
    pub steps: usize,
    /// Benchmark pods arriving per node per step, on average.
    pub bench_per_node_step: f64,
    /// Background pods arriving per node per step, on average.
    pub background_per_node_step: f64,
    /// Steps a pod runs (counting its first), drawn uniformly from this range.
    pub lifetime: (usize, usize),
    /// Mean steps a node's background load lasts before it changes.
    pub dwell: f64,
    /// Share of background draws that leave a node idle.
    pub idle_share: f64,
    /// Allocatable CPU of a node and requests of a pod, in millicores: the nodes are the
    /// size of the machine the samples were measured on.
    pub node_millicores: u32,
    pub pod_millicores: u32,
    pub zones: usize,
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
        }
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
}

/// Everything that happens regardless of placement.
pub struct Timeline {
    pub params: Params,
    pub seed: u64,
    /// Background condition of each node at each step.
    pub background: Vec<Vec<Condition>>,
    pub arrivals: Vec<Vec<Arrival>>,
}

impl Timeline {
    pub fn new(params: Params, pool: &Pool, seed: u64) -> Timeline {
        let mut rng = fastrand::Rng::with_seed(key(&[seed, 1]));
        let choices = pool.backgrounds();
        let draw = |rng: &mut fastrand::Rng| {
            if choices.is_empty() || rng.f64() < params.idle_share {
                Condition::default()
            } else {
                choices[rng.usize(..choices.len())]
            }
        };
        let mut current: Vec<Condition> = (0..params.nodes).map(|_| draw(&mut rng)).collect();
        let mut background = Vec::with_capacity(params.steps);
        for _ in 0..params.steps {
            for c in &mut current {
                if rng.f64() < 1.0 / params.dwell {
                    *c = draw(&mut rng);
                }
            }
            background.push(current.clone());
        }
        let sizes = [1, 2, 3, 4, 6, 8];
        let mut arrivals = Vec::with_capacity(params.steps);
        let mut n = 0;
        for step in 0..params.steps {
            let mut now = Vec::new();
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
                    });
                }
            }
            arrivals.push(now);
        }
        Timeline { params, seed, background, arrivals }
    }

    pub fn zone(&self, node: usize) -> usize {
        node % self.params.zones
    }
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
    /// Benchmark pods only: the outcome of the sample matched at placement.
    pub throughput: Option<f64>,
    pub latency: Option<f64>,
    pub distance: Option<f64>,
}

/// The cluster as placements leave it, step by step: the one bookkeeping every scheduler,
/// real or offline, goes through.
pub struct World<'a> {
    pub timeline: &'a Timeline,
    pub pool: &'a Pool,
    pub step: usize,
    running: Vec<Placed>,
    /// Benchmark and background pods running on each node.
    benchmark_on: Vec<u32>,
    background_on: Vec<u32>,
    pub placed: Vec<Placed>,
    /// Pods no node had room for (the offline schedulers leave them, as kube-scheduler
    /// would leave them pending; the real runs wait for every pod instead).
    pub unplaced: usize,
    /// Share of nodes without any pod, after each step's placements.
    pub empty_share: Vec<f64>,
}

impl<'a> World<'a> {
    pub fn new(timeline: &'a Timeline, pool: &'a Pool) -> World<'a> {
        let nodes = timeline.params.nodes;
        World {
            timeline,
            pool,
            step: 0,
            running: Vec::new(),
            benchmark_on: vec![0; nodes],
            background_on: vec![0; nodes],
            placed: Vec::new(),
            unplaced: 0,
            empty_share: Vec::new(),
        }
    }

    /// Moves to `step`: pods whose lifetime ended are gone. Returns the arrivals that
    /// ended (their workloads are deleted).
    pub fn begin_step(&mut self, step: usize) -> Vec<String> {
        self.step = step;
        let mut ended = Vec::new();
        for p in self.running.iter().filter(|p| p.ends < step) {
            ended.push(p.arrival.clone());
            match p.kind {
                PodKind::Benchmark => self.benchmark_on[p.node] -= 1,
                PodKind::Background => self.background_on[p.node] -= 1,
            }
        }
        ended.sort();
        ended.dedup();
        self.running.retain(|p| p.ends >= step);
        ended
    }

    /// A node's condition now: its background plus the pods on it.
    pub fn condition(&self, node: usize) -> Condition {
        let mut c = self.timeline.background[self.step][node];
        c.add(Kind::Benchmark, f64::from(self.benchmark_on[node]));
        c.add(Kind::Cpu, 0.5 * f64::from(self.background_on[node]));
        c
    }

    /// The window a node's agent reports for this step.
    pub fn window(&self, node: usize) -> &Value {
        let m = self.pool.nearest(&self.condition(node), key(&[self.timeline.seed, 2, self.step as u64, node as u64]));
        &self.pool.samples[m.sample].window
    }

    /// What a benchmark pod placed on `node` now would get.
    pub fn outcome(&self, node: usize, pod: u64) -> (Match, &Sample) {
        let m = self.pool.nearest(&self.condition(node), key(&[self.timeline.seed, 3, pod, node as u64]));
        (m, &self.pool.samples[m.sample])
    }

    pub fn used_millicores(&self, node: usize) -> u32 {
        (self.benchmark_on[node] + self.background_on[node]) * self.timeline.params.pod_millicores
    }

    pub fn fits(&self, node: usize) -> bool {
        self.used_millicores(node) + self.timeline.params.pod_millicores <= self.timeline.params.node_millicores
    }

    /// Records a pod of `arrival` on `node`.
    pub fn place(&mut self, arrival: &Arrival, node: usize) {
        let pod = self.placed.len() as u64;
        let (throughput, latency, distance) = match arrival.kind {
            PodKind::Benchmark => {
                let (m, s) = self.outcome(node, pod);
                (Some(s.throughput_ratio), Some(s.latency_ratio), Some(m.distance))
            }
            PodKind::Background => (None, None, None),
        };
        let p = Placed {
            arrival: arrival.name.clone(),
            kind: arrival.kind,
            node,
            step: self.step,
            ends: arrival.ends,
            throughput,
            latency,
            distance,
        };
        match arrival.kind {
            PodKind::Benchmark => self.benchmark_on[node] += 1,
            PodKind::Background => self.background_on[node] += 1,
        }
        self.running.push(p.clone());
        self.placed.push(p);
    }

    pub fn end_step(&mut self) {
        let empty =
            (0..self.timeline.params.nodes).filter(|&n| self.benchmark_on[n] + self.background_on[n] == 0).count();
        self.empty_share.push(empty as f64 / self.timeline.params.nodes as f64);
    }
}

/// The schedulers the evaluation computes offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offline {
    /// A uniformly random node with room.
    Random,
    /// Greedy with knowledge of the outcomes: each benchmark pod on the node where it
    /// gets the most throughput, each background pod where a benchmark pod would get the
    /// least (so it harms the fewest). Not a global optimum: placing pods one at a time
    /// cannot see how a pod will hurt later arrivals.
    Oracle,
}

/// Runs an offline scheduler over the whole timeline.
pub fn run_offline<'a>(timeline: &'a Timeline, pool: &'a Pool, which: Offline) -> World<'a> {
    let mut world = World::new(timeline, pool);
    let mut rng = fastrand::Rng::with_seed(key(&[timeline.seed, 4]));
    for step in 0..timeline.params.steps {
        world.begin_step(step);
        for arrival in &timeline.arrivals[step] {
            for _ in 0..arrival.replicas {
                let fits: Vec<usize> = (0..timeline.params.nodes).filter(|&n| world.fits(n)).collect();
                if fits.is_empty() {
                    world.unplaced += 1;
                    continue;
                }
                let node = match which {
                    Offline::Random => fits[rng.usize(..fits.len())],
                    Offline::Oracle => {
                        let pod = world.placed.len() as u64;
                        // (throughput a benchmark pod would get, free millicores, node)
                        let options: Vec<(f64, u32, usize)> = fits
                            .iter()
                            .map(|&n| {
                                let free = timeline.params.node_millicores - world.used_millicores(n);
                                (world.outcome(n, pod).1.throughput_ratio, free, n)
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
    /// Pods no node had room for (offline schedulers only).
    pub unplaced: usize,
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
    /// Mean share of nodes without any pod after a step's placements.
    pub nodes_empty_share: f64,
    /// Mean distance between a pod's condition and its matched sample.
    pub match_distance: f64,
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
        let thr: Vec<f64> = bench.iter().filter_map(|p| p.throughput).collect();
        let lat: Vec<f64> = bench.iter().filter_map(|p| p.latency).collect();
        let dist: Vec<f64> = bench.iter().filter_map(|p| p.distance).collect();
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
        Metrics {
            benchmark_pods: bench.len(),
            unplaced: world.unplaced,
            throughput_mean: mean(&thr),
            throughput_p10: quantile(&thr, 0.10),
            throughput_p1: quantile(&thr, 0.01),
            latency_p99_median: quantile(&lat, 0.5),
            replicas_most_on_one_node: mean(&most),
            replicas_colocated_share: if in_sets == 0 { 0.0 } else { colocated as f64 / in_sets as f64 },
            zone_imbalance: mean(&zone_gap),
            nodes_empty_share: mean(&world.empty_share),
            match_distance: mean(&dist),
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
        ])
        .unwrap()
    }

    #[test]
    fn conditions_weigh_cpu_by_load_and_match_the_nearest_sample() {
        let p = pool();
        let c = Condition::from_components(&p.samples[3].components).unwrap();
        assert_eq!(c.get(Kind::Cpu), 0.5);
        let mut idle = Condition::default();
        assert!(p.samples[p.nearest(&idle, 1).sample].baseline);
        // Equally near samples are picked by the key, both of them over many keys.
        let picks: std::collections::BTreeSet<usize> = (0..50).map(|k| p.nearest(&idle, k).sample).collect();
        assert_eq!(picks.len(), 2);
        idle.add(Kind::Benchmark, 2.0);
        let m = p.nearest(&idle, 1);
        assert_eq!((p.samples[m.sample].window["id"].clone(), m.distance), (json!(6), 0.0));
        idle.add(Kind::Benchmark, 3.0);
        assert_eq!(p.nearest(&idle, 1).distance, 3.0, "five units are three from the nearest measured two");
        assert!(
            Condition::from_components(&[Component {
                kind: "gpu".into(),
                workers: 1,
                load_percent: None,
                memory_percent: None
            }])
            .is_err()
        );
    }

    #[test]
    fn backgrounds_leave_benchmark_neighbours_to_placed_pods() {
        let b = pool().backgrounds();
        assert!(b.iter().all(|c| c.get(Kind::Benchmark) == 0.0));
        assert_eq!(b.len(), 3, "two CPU conditions and the disk one without its neighbour: {b:?}");
    }

    #[test]
    fn the_timeline_is_deterministic_from_its_seed() {
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
            for step in 0..t.params.steps {
                let mut per_node = HashMap::<usize, u32>::new();
                for pl in world.placed.iter().filter(|pl| pl.step <= step && pl.ends >= step) {
                    *per_node.entry(pl.node).or_default() += t.params.pod_millicores;
                }
                assert!(per_node.values().all(|&m| m <= t.params.node_millicores));
            }
        }
    }

    #[test]
    fn placed_pods_change_the_condition_and_leave_when_they_end() {
        let p = pool();
        let t = Timeline::new(Params { idle_share: 1.0, ..Params::for_nodes(2) }, &p, 1);
        let mut w = World::new(&t, &p);
        w.begin_step(0);
        let a = Arrival { name: "bench-1".into(), kind: PodKind::Benchmark, replicas: 2, ends: 0 };
        w.place(&a, 0);
        assert_eq!(w.placed[0].throughput.map(|t| t >= 0.98), Some(true), "first pod on an idle node");
        w.place(&a, 0);
        assert_eq!(w.placed[1].throughput, Some(0.6), "the second has the first as its neighbour");
        assert_eq!(w.window(0)["id"], 6, "the node reports two benchmark units");
        w.end_step();
        assert_eq!(w.empty_share, vec![0.5]);
        assert_eq!(w.begin_step(1), vec!["bench-1".to_owned()]);
        assert_eq!(w.condition(0), Condition::default());
        let m = Metrics::of(&w);
        assert_eq!((m.benchmark_pods, m.replicas_most_on_one_node, m.replicas_colocated_share), (2, 2.0, 1.0));
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), 3.0);
        assert!((quantile(&[0.0, 10.0], 0.1) - 1.0).abs() < 1e-12);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
