//! Simulated nodes for demos and tests: `--simulate N` runs N of them in one process.
//!
//! Each node follows one of four profiles (by index modulo 4, so any N ≥ 4 shows all
//! of them) and moves as a mean-reverting random walk, deterministic from the seed and
//! the node index, with every value kept in its valid range.
//!
//! The profiles are the medians of measured conditions in `onnx/data/samples.jsonl` (the
//! windows the model was trained on), so a simulated node looks to the model like a node
//! it has seen: a simulated idle node that no measured idle node resembles would be
//! scored by extrapolation, and could rank below a loaded one. The derived metrics follow
//! the same data (see [`SimNode::derived`]); a test keeps them in step with it.

use std::time::Instant;

use fitsched_proto::metric;

use crate::collect::{Collector, Sample};
use crate::rng::{SplitMix64, mix};

/// What kind of load a simulated node carries, each the median of one measured group
/// (benchmark alone, on a 2-CPU VM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Nothing besides the system: the idle baselines (`none`).
    Idle,
    /// CPU-bound work on most CPUs: stress-ng `--cpu` with one worker per CPU (`cpu` x2).
    Busy,
    /// Little available memory: a stress-ng `--vm` worker holding 60 % (`vm` x1).
    MemoryPressure,
    /// Writes that keep the disk busy: high iowait and I/O pressure (`hdd` x2).
    IoPressure,
}

/// The default name prefix of simulated nodes (`--simulate-prefix`).
pub const PREFIX: &str = "sim-node-";

/// The name of simulated node `index` (0-based) under `prefix`: `{prefix}{index+1:02}`.
pub fn node_name(prefix: &str, index: usize) -> String {
    format!("{prefix}{:02}", index + 1)
}

impl Profile {
    /// The profile of simulated node `index` (0-based): the four in turn.
    pub fn for_index(index: usize) -> Self {
        match index % 4 {
            0 => Self::Idle,
            1 => Self::Busy,
            2 => Self::MemoryPressure,
            _ => Self::IoPressure,
        }
    }

    /// The profile of the simulated node named `name` under `prefix`, or `None` for a
    /// name the simulator does not give.
    pub fn of_node(prefix: &str, name: &str) -> Option<Self> {
        let number: usize = name.strip_prefix(prefix)?.parse().ok()?;
        Some(Self::for_index(number.checked_sub(1)?))
    }

    /// Whether the measurements call this load harmless to a new pod: idle, or memory
    /// held without stalls (a stress-ng `vm` worker holding 60 % cost nginx about 7 %),
    /// not a busy CPU or a busy disk (each a quarter of the throughput or more).
    pub fn is_healthy(self) -> bool {
        matches!(self, Self::Idle | Self::MemoryPressure)
    }

    /// Long-run means of utilisation, iowait, available ratio, run queue per CPU, and
    /// the PSI shares cpu some, memory some, memory full, io some, io full.
    fn means(self) -> [f64; STATE] {
        match self {
            Self::Idle => [0.0035, 0.0, 0.98, 0.50, 0.0012, 0.0, 0.0, 0.0, 0.0],
            Self::Busy => [0.75, 0.0, 0.98, 1.30, 0.006, 0.0, 0.0, 0.0, 0.0],
            Self::MemoryPressure => [0.51, 0.0, 0.40, 1.03, 0.0001, 0.0, 0.0, 0.0, 0.0],
            Self::IoPressure => [0.59, 0.38, 0.98, 1.23, 0.045, 0.0, 0.0, 0.41, 0.39],
        }
    }
}

const STATE: usize = 9;
// Indices into the state vector.
const UTIL: usize = 0;
const IOWAIT: usize = 1;
const AVAIL: usize = 2;
const LOAD: usize = 3;
const PSI_CPU: usize = 4;
const PSI_MEM_SOME: usize = 5;
const PSI_MEM_FULL: usize = 6;
const PSI_IO_SOME: usize = 7;
const PSI_IO_FULL: usize = 8;

/// Per-tick noise: a share of the mean plus a floor. Proportional, so an idle node's
/// near-zero shares stay near zero (clamped noise would raise their mean) while a busy
/// node still moves.
const NOISE_SHARE: f64 = 0.05;
const NOISE_FLOOR: [f64; STATE] = [0.002, 0.001, 0.005, 0.02, 0.001, 0.001, 0.0005, 0.002, 0.001];
/// Pull back toward the mean per tick: about a 10-tick memory.
const REVERSION: f64 = 0.1;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Every metric a simulated node reports (the stream adds its round-trip time).
pub const METRICS: [&str; 32] = [
    metric::CPU_UTILIZATION,
    metric::CPU_IOWAIT,
    metric::CPU_COUNT,
    metric::LOAD1_PER_CPU,
    metric::MEMORY_TOTAL_BYTES,
    metric::MEMORY_AVAILABLE_BYTES,
    metric::MEMORY_AVAILABLE_RATIO,
    metric::PSI_CPU_SOME,
    metric::PSI_MEMORY_SOME,
    metric::PSI_MEMORY_FULL,
    metric::PSI_IO_SOME,
    metric::PSI_IO_FULL,
    metric::CPU_USER,
    metric::CPU_SYSTEM,
    metric::CPU_STEAL,
    metric::RUN_QUEUE_PER_CPU,
    metric::PROCS_BLOCKED,
    metric::MEMORY_PAGE_CACHE_BYTES,
    metric::SWAP_IN_PAGES_PER_SECOND,
    metric::SWAP_OUT_PAGES_PER_SECOND,
    metric::MAJOR_FAULTS_PER_SECOND,
    metric::NET_RX_BYTES_PER_SECOND,
    metric::NET_TX_BYTES_PER_SECOND,
    metric::DISK_UTILIZATION,
    metric::DISK_READ_BYTES_PER_SECOND,
    metric::DISK_WRITE_BYTES_PER_SECOND,
    metric::PERF_IPC,
    metric::PERF_CPI,
    metric::PERF_LLC_MPKI,
    metric::PERF_CONTEXT_SWITCHES_PER_SECOND,
    metric::PERF_CPU_MIGRATIONS_PER_SECOND,
    metric::PERF_PAGE_FAULTS_PER_SECOND,
];

/// One simulated node.
#[derive(Debug, Clone)]
pub struct SimNode {
    name: String,
    profile: Profile,
    cpu_count: u32,
    memory_total_bytes: f64,
    rng: SplitMix64,
    state: [f64; STATE],
}

impl SimNode {
    /// The node at `index` (0-based) of a simulation; named `{prefix}{index+1:02}`.
    pub fn new(prefix: &str, index: usize, seed: u64) -> Self {
        let profile = Profile::for_index(index);
        let mut rng = SplitMix64::new(mix(seed) ^ mix(index as u64 + 1));
        // Sizes vary independently of the profile, so the model sees big idle nodes and
        // small busy ones alike.
        let size = (index / 4) % 4;
        let cpu_count = 4u32 << size;
        let memory_total_bytes = f64::from(8u32 << size) * GIB;
        let means = profile.means();
        let mut state = [0.0; STATE];
        for (i, s) in state.iter_mut().enumerate() {
            *s = means[i] + noise(&means, i) * rng.next_gaussian();
        }
        let mut node = Self { name: node_name(prefix, index), profile, cpu_count, memory_total_bytes, rng, state };
        node.constrain();
        node
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Advances one tick and returns the node's metrics.
    pub fn step(&mut self) -> Sample {
        let means = self.profile.means();
        for i in 0..STATE {
            self.state[i] += REVERSION * (means[i] - self.state[i]) + noise(&means, i) * self.rng.next_gaussian();
        }
        self.constrain();
        let s = &self.state;
        let mut sample = Sample::default();
        sample.set(metric::CPU_UTILIZATION, s[UTIL]);
        sample.set(metric::CPU_IOWAIT, s[IOWAIT]);
        sample.set(metric::CPU_COUNT, f64::from(self.cpu_count));
        sample.set(metric::MEMORY_TOTAL_BYTES, self.memory_total_bytes);
        sample.set(metric::MEMORY_AVAILABLE_BYTES, (s[AVAIL] * self.memory_total_bytes).round());
        sample.set(metric::MEMORY_AVAILABLE_RATIO, s[AVAIL]);
        sample.set(metric::PSI_CPU_SOME, s[PSI_CPU]);
        sample.set(metric::PSI_MEMORY_SOME, s[PSI_MEM_SOME]);
        sample.set(metric::PSI_MEMORY_FULL, s[PSI_MEM_FULL]);
        sample.set(metric::PSI_IO_SOME, s[PSI_IO_SOME]);
        sample.set(metric::PSI_IO_FULL, s[PSI_IO_FULL]);
        self.derived(&mut sample);
        sample
    }

    /// Metrics a real node also reports, derived from the state so they move with it
    /// (and add no randomness of their own). The factors reproduce the measured groups'
    /// medians: system time from iowait and memory held (hdd: 0.30, vm: 0.03), context
    /// switches and migrations from iowait (hdd: 400 and 30 a second per core, else 40
    /// and 0-1.7), disk utilisation and traffic from I/O pressure. The load average's
    /// one-minute memory carried the previous sample's load into the measured windows;
    /// here it follows the run queue. The PMU's counters (IPC, cache misses) were never
    /// measured here (no PMU in the VMs) and only follow the pressures.
    fn derived(&self, sample: &mut Sample) {
        let s = &self.state;
        let cpus = f64::from(self.cpu_count);
        let system = (0.002 + 0.78 * s[IOWAIT] + 0.05 * (1.0 - s[AVAIL])).min(s[UTIL]);
        sample.set(metric::CPU_USER, s[UTIL] - system);
        sample.set(metric::CPU_SYSTEM, system);
        sample.set(metric::CPU_STEAL, 0.0);
        sample.set(metric::LOAD1_PER_CPU, s[LOAD]);
        sample.set(metric::RUN_QUEUE_PER_CPU, s[LOAD]);
        sample.set(metric::PROCS_BLOCKED, (1.1 * s[IOWAIT] * cpus).round());
        sample.set(metric::MEMORY_PAGE_CACHE_BYTES, (0.5 * s[AVAIL] * self.memory_total_bytes).round());
        sample.set(metric::SWAP_IN_PAGES_PER_SECOND, 4000.0 * s[PSI_MEM_FULL]);
        sample.set(metric::SWAP_OUT_PAGES_PER_SECOND, 6000.0 * s[PSI_MEM_FULL]);
        sample.set(metric::MAJOR_FAULTS_PER_SECOND, 2000.0 * s[PSI_MEM_SOME]);
        sample.set(metric::NET_RX_BYTES_PER_SECOND, 40e6 * s[UTIL]);
        sample.set(metric::NET_TX_BYTES_PER_SECOND, 25e6 * s[UTIL]);
        let disk_util = (1.4 * s[PSI_IO_SOME]).clamp(0.0, 1.0);
        sample.set(metric::DISK_UTILIZATION, disk_util);
        sample.set(metric::DISK_READ_BYTES_PER_SECOND, 2.5e4 * disk_util * cpus);
        sample.set(metric::DISK_WRITE_BYTES_PER_SECOND, 1.25e9 * disk_util * cpus);
        sample.set(metric::PERF_CONTEXT_SWITCHES_PER_SECOND, cpus * (40.0 + 950.0 * s[IOWAIT] + 150.0 * s[PSI_CPU]));
        // Idle CPUs invite migrations; a worker holding most of memory measured almost none.
        let room = (1.0 - s[UTIL]) * ((s[AVAIL] - 0.4) / 0.58).clamp(0.0, 1.0);
        sample.set(metric::PERF_CPU_MIGRATIONS_PER_SECOND, cpus * (75.0 * s[IOWAIT] + 1.7 * room));
        sample.set(metric::PERF_PAGE_FAULTS_PER_SECOND, cpus * 0.5);
        // Memory stalls and CPU contention lower IPC and raise cache misses.
        let ipc = (2.2 - 1.5 * s[PSI_MEM_SOME] - 1.0 * s[PSI_CPU]).max(0.2);
        sample.set(metric::PERF_IPC, ipc);
        sample.set(metric::PERF_CPI, 1.0 / ipc);
        sample.set(metric::PERF_LLC_MPKI, 1.0 + 20.0 * s[PSI_MEM_SOME]);
    }

    /// Keeps the state physically possible: shares in [0, 1], iowait within the idle
    /// share, `full` stalls within `some`, load non-negative.
    fn constrain(&mut self) {
        let s = &mut self.state;
        for i in [UTIL, AVAIL, PSI_CPU, PSI_MEM_SOME, PSI_IO_SOME] {
            s[i] = s[i].clamp(0.0, 1.0);
        }
        s[IOWAIT] = s[IOWAIT].clamp(0.0, 1.0 - s[UTIL]);
        s[PSI_MEM_FULL] = s[PSI_MEM_FULL].clamp(0.0, s[PSI_MEM_SOME]);
        s[PSI_IO_FULL] = s[PSI_IO_FULL].clamp(0.0, s[PSI_IO_SOME]);
        s[LOAD] = s[LOAD].clamp(0.0, 64.0);
    }
}

/// The per-tick noise of state variable `i` under a profile's `means`.
fn noise(means: &[f64; STATE], i: usize) -> f64 {
    NOISE_SHARE * means[i] + NOISE_FLOOR[i]
}

impl Collector for SimNode {
    fn sample(&mut self, _now: Instant) -> Sample {
        self.step()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn mean_of(node: &mut SimNode, name: &str, steps: usize) -> f64 {
        (0..steps).map(|_| node.step().values[name]).sum::<f64>() / steps as f64
    }

    #[test]
    fn names_and_profiles_by_index() {
        let nodes: Vec<_> = (0..5).map(|i| SimNode::new("sim-node-", i, 1)).collect();
        assert_eq!(nodes[0].name(), "sim-node-01");
        assert_eq!(nodes[4].name(), "sim-node-05");
        let profiles: Vec<_> = nodes.iter().map(|n| n.profile).collect();
        assert_eq!(
            profiles,
            [Profile::Idle, Profile::Busy, Profile::MemoryPressure, Profile::IoPressure, Profile::Idle]
        );
        let named: Vec<_> = nodes.iter().map(|n| Profile::of_node("sim-node-", n.name())).collect();
        assert_eq!(named, profiles.into_iter().map(Some).collect::<Vec<_>>());
        for name in ["sim-node-00", "sim-node-x", "dark-node-01", "sim-node-"] {
            assert_eq!(Profile::of_node("sim-node-", name), None, "{name}");
        }
    }

    #[test]
    fn values_stay_in_range_over_many_steps() {
        let all: BTreeSet<&str> = METRICS.into_iter().collect();
        for index in 0..16 {
            let mut node = SimNode::new("n", index, 99);
            for _ in 0..5_000 {
                let s = node.step();
                assert!(s.missing.is_empty());
                assert_eq!(s.values.keys().map(String::as_str).collect::<BTreeSet<_>>(), all);
                let v = |name: &str| s.values[name];
                for (name, value) in &s.values {
                    assert!(value.is_finite() && *value >= 0.0, "{name} = {value}");
                }
                for share in [
                    metric::CPU_UTILIZATION,
                    metric::CPU_IOWAIT,
                    metric::MEMORY_AVAILABLE_RATIO,
                    metric::PSI_CPU_SOME,
                    metric::PSI_MEMORY_SOME,
                    metric::PSI_IO_SOME,
                ] {
                    assert!(v(share) <= 1.0, "{share} = {}", v(share));
                }
                assert!(v(metric::CPU_UTILIZATION) + v(metric::CPU_IOWAIT) <= 1.0 + 1e-12);
                assert!(v(metric::PSI_MEMORY_FULL) <= v(metric::PSI_MEMORY_SOME));
                assert!(v(metric::PSI_IO_FULL) <= v(metric::PSI_IO_SOME));
                assert!(v(metric::MEMORY_AVAILABLE_BYTES) <= v(metric::MEMORY_TOTAL_BYTES));
                assert!(v(metric::CPU_COUNT) >= 1.0);
            }
        }
    }

    #[test]
    fn profiles_differ() {
        let steps = 2_000;
        let mut idle = SimNode::new("n", 0, 7);
        let mut busy = SimNode::new("n", 1, 7);
        let mut mem = SimNode::new("n", 2, 7);
        let mut io = SimNode::new("n", 3, 7);
        let idle_cpu = mean_of(&mut idle.clone(), metric::CPU_UTILIZATION, steps);
        assert!(mean_of(&mut busy.clone(), metric::CPU_UTILIZATION, steps) > idle_cpu + 0.5);
        assert!(
            mean_of(&mut busy, metric::PSI_CPU_SOME, steps) > mean_of(&mut idle.clone(), metric::PSI_CPU_SOME, steps)
        );
        assert!(
            mean_of(&mut mem, metric::MEMORY_AVAILABLE_RATIO, steps)
                < mean_of(&mut idle.clone(), metric::MEMORY_AVAILABLE_RATIO, steps) - 0.5
        );
        assert!(mean_of(&mut io, metric::PSI_IO_SOME, steps) > mean_of(&mut idle, metric::PSI_IO_SOME, steps) + 0.3);
    }

    #[test]
    fn deterministic_from_seed_and_index() {
        let run = |index, seed| {
            let mut n = SimNode::new("n", index, seed);
            (0..50).map(|_| n.step().values[metric::CPU_UTILIZATION].to_bits()).collect::<Vec<_>>()
        };
        assert_eq!(run(0, 5), run(0, 5));
        assert_ne!(run(0, 5), run(4, 5), "same profile, different index");
        assert_ne!(run(0, 5), run(0, 6));
    }

    /// The measured samples of one condition (no benchmark neighbours; `kind` with
    /// `workers`, or nothing): their median of each window mean.
    fn measured_medians(kind: Option<(&str, u64)>) -> impl Fn(&str) -> f64 {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../onnx/data/samples.jsonl");
        let text = std::fs::read_to_string(path).unwrap();
        let rows: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["neighbours"].as_array().is_none_or(Vec::is_empty))
            .filter(|r| {
                let parts = r["interference"]["components"].as_array().unwrap();
                match kind {
                    None => parts.is_empty(),
                    Some((k, w)) => parts.len() == 1 && parts[0]["kind"] == k && parts[0]["workers"] == w,
                }
            })
            .collect();
        assert!(rows.len() >= 5, "{kind:?}: {} samples", rows.len());
        move |feature: &str| {
            let mut v: Vec<f64> = rows.iter().filter_map(|r| r["features"][feature].as_f64()).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        }
    }

    /// Each profile stays the measured condition it stands for: the long-run mean of
    /// every metric the model reads is near the measured median.
    #[test]
    fn profiles_follow_the_measured_conditions() {
        let conditions = [(0, None), (1, Some(("cpu", 2))), (2, Some(("vm", 1))), (3, Some(("hdd", 2)))];
        let shares = [
            metric::CPU_UTILIZATION,
            metric::CPU_IOWAIT,
            metric::CPU_USER,
            metric::CPU_SYSTEM,
            metric::MEMORY_AVAILABLE_RATIO,
            metric::RUN_QUEUE_PER_CPU,
            metric::PSI_CPU_SOME,
            metric::PSI_IO_SOME,
            metric::PSI_IO_FULL,
            metric::DISK_UTILIZATION,
        ];
        let per_core = [
            metric::PROCS_BLOCKED,
            metric::PERF_CONTEXT_SWITCHES_PER_SECOND,
            metric::PERF_CPU_MIGRATIONS_PER_SECOND,
            metric::DISK_WRITE_BYTES_PER_SECOND,
        ];
        let measured: Vec<_> = conditions.iter().map(|&(_, kind)| measured_medians(kind)).collect();
        let named = shares.iter().map(|&m| (m, format!("{m}_mean"), false));
        let scaled = per_core.iter().map(|&m| (m, format!("{m}_per_core_mean"), true));
        for (name, feature, is_per_core) in named.chain(scaled) {
            // Within a quarter of the measured value, or 2 % of the metric's largest
            // measured value (bytes and switches a second are not shares).
            let floor = 0.02 * measured.iter().map(|m| m(&feature)).fold(0.1_f64, f64::max);
            for (&(index, _), measured) in conditions.iter().zip(&measured) {
                let node = SimNode::new("n", index, 3);
                let divisor = if is_per_core { f64::from(node.cpu_count) } else { 1.0 };
                let simulated = mean_of(&mut node.clone(), name, 2_000) / divisor;
                let want = measured(&feature);
                assert!(
                    (simulated - want).abs() <= floor + 0.25 * want.abs(),
                    "{:?} {feature}: simulated {simulated}, measured {want}",
                    node.profile
                );
            }
        }
    }
}
