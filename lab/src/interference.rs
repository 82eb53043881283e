//! What interference is: the kinds the lab measures benchmark units under, one
//! component's stress-ng arguments and a sample's mix. `collect` draws and runs it; the
//! evaluation reads the kinds back from the samples.

use serde_json::{Value, json};

/// Benchmark units besides the measured one.
pub const MAX_NEIGHBOURS: usize = 4;

/// A kind of interference and the stress-ng arguments for one component of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Cpu,
    Cache,
    MemoryBandwidth,
    MemoryPressure,
    Disk,
    IoMix,
    Sockets,
    Udp,
    /// Other nginx + wrk benchmark units on the node: what two benchmark pods do to
    /// each other.
    Benchmark,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::Cpu,
        Kind::Cache,
        Kind::MemoryBandwidth,
        Kind::MemoryPressure,
        Kind::Disk,
        Kind::IoMix,
        Kind::Sockets,
        Kind::Udp,
        Kind::Benchmark,
    ];

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Cpu => "cpu",
            Kind::Cache => "cache",
            Kind::MemoryBandwidth => "membw",
            Kind::MemoryPressure => "vm",
            Kind::Disk => "hdd",
            Kind::IoMix => "iomix",
            Kind::Sockets => "sock",
            Kind::Udp => "udp",
            Kind::Benchmark => "bench",
        }
    }
}

/// One component of a sample's interference at its intensity.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    pub kind: Kind,
    /// stress-ng workers, or benchmark units.
    pub workers: usize,
    /// Per-worker CPU load in percent (CPU only; 100 otherwise).
    pub load: u32,
    /// Memory per worker as a share of the available memory in percent (memory pressure).
    pub memory_percent: u32,
    /// Memory pressure toward a share of the machine's memory left available: the
    /// target, and the bytes that leave it, kept mapped (measured when the sample starts).
    pub target_available: Option<(f64, u64)>,
}

impl Component {
    pub fn stress_args(&self) -> Vec<String> {
        let w = self.workers.to_string();
        let flag = |f: &str| vec![format!("--{f}"), w.clone()];
        match self.kind {
            Kind::Cpu => [flag("cpu"), vec!["--cpu-load".into(), self.load.to_string()]].concat(),
            Kind::Cache => flag("cache"),
            Kind::MemoryBandwidth => flag("stream"),
            Kind::MemoryPressure => match self.target_available {
                Some((_, bytes)) => {
                    [flag("vm"), vec!["--vm-bytes".into(), format!("{}K", bytes / 1024), "--vm-keep".into()]].concat()
                }
                None => [flag("vm"), vec!["--vm-bytes".into(), format!("{}%", self.memory_percent)]].concat(),
            },
            Kind::Disk => [flag("hdd"), vec!["--hdd-bytes".into(), "128M".into()]].concat(),
            Kind::IoMix => flag("iomix"),
            Kind::Sockets => flag("sock"),
            Kind::Udp => flag("udp"),
            Kind::Benchmark => Vec::new(),
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({"kind": self.kind.name(), "workers": self.workers});
        if self.kind == Kind::Cpu {
            v["load_percent"] = json!(self.load);
        }
        if self.kind == Kind::MemoryPressure {
            v["memory_percent"] = json!(self.memory_percent);
        }
        if let Some((target, bytes)) = self.target_available {
            v["target_available"] = json!(target);
            v["bytes"] = json!(bytes);
        }
        v
    }

    /// `workers` of `kind` at full load (benchmark units, or stress-ng workers).
    pub fn new(kind: Kind, workers: usize) -> Component {
        Component { kind, workers, load: 100, memory_percent: 0, target_available: None }
    }

    /// `kind` at `level` on a machine of `cpus`: CPU workers by load (half the CPUs at
    /// 25 %, every CPU at 50 %, every CPU at 100 %); other stress-ng kinds by workers (one,
    /// one per CPU, two per CPU). Memory pressure has levels of its own
    /// ([`Component::memory`]).
    pub fn at(kind: Kind, level: Level, cpus: usize) -> Component {
        let cpus = cpus.max(1);
        match (kind, level) {
            (Kind::Cpu, Level::Low) => Component { load: 25, ..Component::new(kind, cpus.div_ceil(2)) },
            (Kind::Cpu, Level::Mid) => Component { load: 50, ..Component::new(kind, cpus) },
            (Kind::Cpu, Level::High) => Component::new(kind, cpus),
            (_, Level::Low) => Component::new(kind, 1),
            (_, Level::Mid) => Component::new(kind, cpus),
            (_, Level::High) => Component::new(kind, 2 * cpus),
        }
    }

    /// One memory worker that keeps mapped what leaves `target` of the machine's memory
    /// available, given `total` and `available` bytes now (none when less is already
    /// available).
    pub fn memory(target: f64, total: u64, available: u64) -> Component {
        let bytes = available.saturating_sub((target * total as f64) as u64);
        let percent = (100 * bytes).checked_div(available).unwrap_or(0) as u32;
        Component {
            memory_percent: percent,
            target_available: Some((target, bytes)),
            ..Component::new(Kind::MemoryPressure, 1)
        }
    }
}

/// An intensity a collection plan names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Low,
    Mid,
    High,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Low => "low",
            Level::Mid => "mid",
            Level::High => "high",
        }
    }
}

/// A sample's interference: no component is the baseline.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Interference(pub Vec<Component>);

impl Interference {
    /// Draws one to three distinct kinds (half of the draws one kind: the intensity
    /// sweeps; the rest random mixes), each at a random intensity scaled to `cpus`. A
    /// fifth of the draws are other benchmark units alone: what pods of one kind stacked
    /// on a node do to each other is what a scheduler's choices change most.
    pub fn draw(rng: &mut fastrand::Rng, cpus: usize) -> Interference {
        if rng.u32(0..100) < 20 {
            let workers = rng.usize(1..=Self::max_workers(Kind::Benchmark, cpus));
            return Interference(vec![Component::new(Kind::Benchmark, workers)]);
        }
        let n = match rng.u32(0..100) {
            0..50 => 1,
            50..85 => 2,
            _ => 3,
        };
        let mut kinds = Kind::ALL.to_vec();
        rng.shuffle(&mut kinds);
        let mut parts: Vec<Component> = kinds[..n]
            .iter()
            .map(|&kind| Component {
                load: if kind == Kind::Cpu { [10, 25, 50, 75, 100][rng.usize(..5)] } else { 100 },
                memory_percent: if kind == Kind::MemoryPressure { [5, 15, 30][rng.usize(..3)] } else { 0 },
                ..Component::new(kind, rng.usize(1..=Self::max_workers(kind, cpus)))
            })
            .collect();
        parts.sort_by_key(|c| c.kind);
        Interference(parts)
    }

    /// stress-ng workers up to the CPU count; benchmark neighbours up to two per CPU (as
    /// many as a node of pods requesting half a CPU each holds, less the measured one).
    fn max_workers(kind: Kind, cpus: usize) -> usize {
        match kind {
            Kind::Benchmark => MAX_NEIGHBOURS.min(2 * cpus.max(1)),
            _ => cpus.max(1),
        }
    }

    pub fn is_baseline(&self) -> bool {
        self.0.is_empty()
    }

    /// The kinds present, sorted and joined by `+` (`none` for the baseline): the group
    /// a held-out validation leaves out.
    pub fn group(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        self.0.iter().map(|c| c.kind.name()).collect::<Vec<_>>().join("+")
    }

    pub fn stress_args(&self) -> Vec<String> {
        self.0.iter().flat_map(Component::stress_args).collect()
    }

    pub fn benchmark_units(&self) -> usize {
        self.0.iter().filter(|c| c.kind == Kind::Benchmark).map(|c| c.workers).sum()
    }

    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            return "none".into();
        }
        let part = |c: &Component| match c.kind {
            Kind::Cpu => format!("cpu {}x{}%", c.workers, c.load),
            Kind::MemoryPressure => format!("vm {}x{}%", c.workers, c.memory_percent),
            k => format!("{} x{}", k.name(), c.workers),
        };
        self.0.iter().map(part).collect::<Vec<_>>().join(" + ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interference_draws_cover_every_kind_within_the_machine() {
        let mut rng = fastrand::Rng::with_seed(7);
        let draws: Vec<Interference> = (0..500).map(|_| Interference::draw(&mut rng, 2)).collect();
        for kind in Kind::ALL {
            assert!(draws.iter().any(|d| d.0.iter().any(|c| c.kind == kind)), "{kind:?} never drawn");
        }
        for d in &draws {
            assert!((1..=3).contains(&d.0.len()) && !d.is_baseline(), "{d:?}");
            let most = |c: &Component| if c.kind == Kind::Benchmark { 4 } else { 2 };
            assert!(d.0.iter().all(|c| (1..=most(c)).contains(&c.workers)), "never more workers than CPUs: {d:?}");
            let kinds: std::collections::BTreeSet<_> = d.0.iter().map(|c| c.kind).collect();
            assert_eq!(kinds.len(), d.0.len(), "kinds are distinct: {d:?}");
        }
        let mixes = draws.iter().filter(|d| d.0.len() > 1).count();
        assert!((130..270).contains(&mixes), "about 40 % are mixes: {mixes}");
        let stacked = draws.iter().filter(|d| d.group() == "bench").count();
        assert!((70..150).contains(&stacked), "about a fifth are benchmark units alone: {stacked}");
        assert!(draws.iter().any(|d| d.0.iter().any(|c| c.kind == Kind::Benchmark && c.workers == 4)));
        let loads: std::collections::BTreeSet<u32> =
            draws.iter().flat_map(|d| &d.0).filter(|c| c.kind == Kind::Cpu).map(|c| c.load).collect();
        assert_eq!(loads.len(), 5, "the CPU load is swept: {loads:?}");
    }

    #[test]
    fn interference_becomes_stress_ng_arguments_and_a_group() {
        let i = Interference(vec![
            Component { load: 25, ..Component::new(Kind::Cpu, 2) },
            Component { memory_percent: 15, ..Component::new(Kind::MemoryPressure, 1) },
            Component::new(Kind::Benchmark, 1),
        ]);
        assert_eq!(i.stress_args(), ["--cpu", "2", "--cpu-load", "25", "--vm", "1", "--vm-bytes", "15%"]);
        assert_eq!((i.group(), i.benchmark_units()), ("cpu+vm+bench".to_owned(), 1));
        assert_eq!(Interference::default().group(), "none");
        assert!(Interference::default().stress_args().is_empty());
    }
}
