//! A collection plan: the strata `collect --plan FILE` fills, each a grid of conditions
//! with a number of samples per condition (a *cell*), so that the dataset covers what
//! the evaluation and the model need instead of what random draws happened to give.
//!
//! ```yaml
//! strata:
//!   - name: alone          # cells are named `alone/cpu:high` and so on
//!     each: 3              # samples per cell
//!     kinds: [cpu, cache]  # crossed with levels, available and bench
//!     levels: [low, mid, high]
//!   - name: memory
//!     each: 4
//!     available: [0.2, 0.4] # memory pressure: the share of memory left available
//!     bench: [0, 1]         # other benchmark units beside the measured one
//!   - name: pairs
//!     each: 2
//!     kinds: [hdd]
//!     levels: [mid]
//!     with: {kind: cpu, level: low} # a second stress-ng kind in every cell
//!   - name: stops           # persistence: the label window runs under other interference
//!     each: 2
//!     kinds: [cpu]
//!     levels: [high]
//!     label: {}             # ...here none at all
//! ```
//!
//! Every row records its cell, so a run resumes where the dataset stands: a cell is done
//! when the file holds `each` rows of it, whichever session measured them.

use std::collections::BTreeMap;

use anyhow::{Context, bail, ensure};

use crate::interference::{Component, Interference, Kind, Level, MAX_NEIGHBOURS};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub strata: Vec<Stratum>,
}

/// A grid of conditions for the features' window, `each` samples per condition. (The
/// axes are spelt out rather than flattened from [`Axes`]: serde cannot refuse unknown
/// keys through a flatten, and a misspelt axis would silently drop out of the grid.)
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stratum {
    pub name: String,
    pub each: usize,
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub levels: Vec<Level>,
    #[serde(default)]
    pub bench: Vec<usize>,
    #[serde(default)]
    pub available: Vec<f64>,
    /// A second stress-ng kind beside each of `kinds`: what a node with a pod's load on
    /// top of another load is.
    pub with: Option<Stress>,
    /// The label window's interference, when it differs from the features' window's.
    pub label: Option<Axes>,
}

/// One stress-ng kind at one level.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stress {
    pub kind: String,
    pub level: Level,
}

impl Stratum {
    fn features(&self) -> Axes {
        Axes {
            kinds: self.kinds.clone(),
            levels: self.levels.clone(),
            bench: self.bench.clone(),
            available: self.available.clone(),
            with: self.with.clone(),
        }
    }
}

/// The axes of a grid of conditions; an empty axis is "none of it".
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Axes {
    /// stress-ng kinds (not `vm`, which `available` sets, nor `bench`, which `bench` sets).
    pub kinds: Vec<String>,
    pub levels: Vec<Level>,
    /// Benchmark units beside the measured one.
    pub bench: Vec<usize>,
    /// Memory pressure: the share of the machine's memory left available.
    pub available: Vec<f64>,
    /// A second stress-ng kind beside each of `kinds`.
    pub with: Option<Stress>,
}

/// One condition of a grid.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Spec {
    pub stress: Option<(Kind, Level)>,
    /// A second stress-ng kind.
    pub with: Option<(Kind, Level)>,
    pub available: Option<f64>,
    pub bench: usize,
}

/// A condition (and, for persistence, the label's) with the samples it wants.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub key: String,
    pub each: usize,
    pub features: Spec,
    pub label: Option<Spec>,
}

impl Plan {
    pub fn read(path: &std::path::Path) -> anyhow::Result<Plan> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_saphyr::from_str(&text).with_context(|| format!("{}", path.display()))
    }

    /// Every cell of every stratum; cell names are unique.
    pub fn cells(&self) -> anyhow::Result<Vec<Cell>> {
        let mut cells = Vec::new();
        for s in &self.strata {
            ensure!(s.each > 0, "stratum {}: each must be at least 1", s.name);
            let features = s.features().specs().with_context(|| format!("stratum {}", s.name))?;
            let labels: Vec<Option<Spec>> = match &s.label {
                None => vec![None],
                Some(axes) => {
                    axes.specs().with_context(|| format!("stratum {} label", s.name))?.into_iter().map(Some).collect()
                }
            };
            for f in &features {
                for l in &labels {
                    let key = match l {
                        None => format!("{}/{}", s.name, f.key()),
                        Some(l) => format!("{}/{}->{}", s.name, f.key(), l.key()),
                    };
                    cells.push(Cell { key, each: s.each, features: f.clone(), label: l.clone() });
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &cells {
            ensure!(seen.insert(&c.key), "cell {} appears twice", c.key);
        }
        Ok(cells)
    }
}

impl Axes {
    fn specs(&self) -> anyhow::Result<Vec<Spec>> {
        let mut stress: Vec<Option<(Kind, Level)>> = Vec::new();
        for name in &self.kinds {
            let kind = stress_kind(name)?;
            ensure!(!self.levels.is_empty(), "kinds need levels");
            stress.extend(self.levels.iter().map(|&l| Some((kind, l))));
        }
        if stress.is_empty() {
            ensure!(self.levels.is_empty(), "levels without kinds");
            stress.push(None);
        }
        let with = match &self.with {
            None => None,
            Some(w) => {
                let kind = stress_kind(&w.kind).context("with")?;
                ensure!(
                    stress.iter().all(|s| s.is_some_and(|(k, _)| k != kind)),
                    "with: {} needs kinds, none of them {0}",
                    w.kind
                );
                Some((kind, w.level))
            }
        };
        for &a in &self.available {
            ensure!((0.05..=0.95).contains(&a), "available {a} is outside 0.05..0.95");
        }
        for &b in &self.bench {
            ensure!(b <= MAX_NEIGHBOURS, "bench {b}: at most {MAX_NEIGHBOURS} neighbours");
        }
        let available: Vec<Option<f64>> =
            if self.available.is_empty() { vec![None] } else { self.available.iter().copied().map(Some).collect() };
        let bench = if self.bench.is_empty() { vec![0] } else { self.bench.clone() };
        let mut out = Vec::new();
        for s in &stress {
            for a in &available {
                for &b in &bench {
                    out.push(Spec { stress: *s, with, available: *a, bench: b });
                }
            }
        }
        Ok(out)
    }
}

/// A kind stress-ng runs by name: not `vm` (which `available` sets) nor `bench` (which
/// `bench` sets).
fn stress_kind(name: &str) -> anyhow::Result<Kind> {
    let kind = Kind::from_name(name).with_context(|| format!("unknown kind {name:?}"))?;
    ensure!(
        kind != Kind::Benchmark && kind != Kind::MemoryPressure,
        "{name} is set by `bench` and `available`, not as a stress-ng kind"
    );
    Ok(kind)
}

impl Spec {
    /// `cpu:high+available:0.3+bench:2`, or `none`.
    pub fn key(&self) -> String {
        let mut parts = Vec::new();
        for (k, l) in self.stress.iter().chain(&self.with) {
            parts.push(format!("{}:{}", k.name(), l.name()));
        }
        if let Some(a) = self.available {
            parts.push(format!("available:{a}"));
        }
        if self.bench > 0 {
            parts.push(format!("bench:{}", self.bench));
        }
        if parts.is_empty() { "none".into() } else { parts.join("+") }
    }

    /// The interference on a machine of `cpus` whose memory is `total` bytes with
    /// `available` available now.
    pub fn interference(&self, cpus: usize, total: u64, available: u64) -> Interference {
        let mut parts = Vec::new();
        for &(kind, level) in self.stress.iter().chain(&self.with) {
            parts.push(Component::at(kind, level, cpus));
        }
        if let Some(target) = self.available {
            parts.push(Component::memory(target, total, available));
        }
        if self.bench > 0 {
            parts.push(Component::new(Kind::Benchmark, self.bench));
        }
        parts.sort_by_key(|c| c.kind);
        Interference(parts)
    }
}

/// What is left of each cell after the rows already in the dataset (`cell` per row).
pub fn deficits<'a>(cells: &'a [Cell], done: &BTreeMap<String, usize>) -> Vec<(&'a Cell, usize)> {
    cells
        .iter()
        .filter_map(|c| {
            let left = c.each.saturating_sub(done.get(&c.key).copied().unwrap_or(0));
            (left > 0).then_some((c, left))
        })
        .collect()
}

/// A cell drawn with weight by what it still lacks, so the strata interleave over a
/// session instead of following the machine's drift one after another.
pub fn draw<'a>(left: &[(&'a Cell, usize)], rng: &mut fastrand::Rng) -> Option<&'a Cell> {
    let total: usize = left.iter().map(|(_, n)| n).sum();
    if total == 0 {
        return None;
    }
    let mut pick = rng.usize(..total);
    for (c, n) in left {
        if pick < *n {
            return Some(c);
        }
        pick -= n;
    }
    None
}

/// `(MemTotal, MemAvailable)` in bytes from `/proc/meminfo`.
pub fn meminfo() -> anyhow::Result<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    let field = |key: &str| -> anyhow::Result<u64> {
        let kib: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .with_context(|| format!("no {key} in /proc/meminfo"))?
            .parse()?;
        Ok(kib * 1024)
    };
    let (total, available) = (field("MemTotal:")?, field("MemAvailable:")?);
    if total == 0 {
        bail!("/proc/meminfo reports no memory");
    }
    Ok((total, available))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(yaml: &str) -> anyhow::Result<Vec<Cell>> {
        serde_saphyr::from_str::<Plan>(yaml).map_err(anyhow::Error::from)?.cells()
    }

    #[test]
    fn strata_expand_to_named_cells() {
        let cells = plan(
            "strata:\n\
             - {name: bench, each: 10, bench: [1, 2]}\n\
             - {name: alone, each: 3, kinds: [cpu, hdd], levels: [low, high], bench: [0, 1]}\n\
             - {name: memory, each: 4, available: [0.2, 0.6]}\n\
             - {name: stops, each: 2, kinds: [udp], levels: [high], label: {}}\n\
             - {name: starts, each: 2, label: {kinds: [cache], levels: [mid]}}\n",
        )
        .unwrap();
        let keys: Vec<&str> = cells.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys.len(), 2 + 8 + 2 + 1 + 1);
        for k in [
            "bench/bench:1",
            "alone/cpu:low",
            "alone/hdd:high+bench:1",
            "memory/available:0.2",
            "stops/udp:high->none",
            "starts/none->cache:mid",
        ] {
            assert!(keys.contains(&k), "{k} in {keys:?}");
        }
        let stops = cells.iter().find(|c| c.key.starts_with("stops/")).unwrap();
        assert_eq!(stops.label, Some(Spec::default()));
    }

    #[test]
    fn the_committed_plan_reads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../onnx/data/plan.yaml");
        let cells = Plan::read(&path).unwrap().cells().unwrap();
        assert!(cells.iter().any(|c| c.key == "pairs/hdd:mid+cpu:low+bench:1"), "{} cells", cells.len());
    }

    #[test]
    fn plans_that_cannot_be_measured_are_refused() {
        assert!(plan("strata: [{name: a, each: 1, kinds: [gpu], levels: [low]}]").is_err());
        assert!(plan("strata: [{name: a, each: 1, kinds: [cpu]}]").is_err(), "kinds need levels");
        assert!(plan("strata: [{name: a, each: 1, kinds: [vm], levels: [low]}]").is_err());
        assert!(plan("strata: [{name: a, each: 1, bench: [5]}]").is_err());
        assert!(plan("strata: [{name: a, each: 1, available: [0.01]}]").is_err());
        assert!(plan("strata: [{name: a, each: 0}]").is_err());
        assert!(plan("strata: [{name: a, each: 1}, {name: a, each: 2}]").is_err(), "a cell twice");
        assert!(plan("strata: [{name: a, each: 1, label: {kinds: [cpu], levels: [low], typo: 1}}]").is_err());
        assert!(plan("strata: [{name: a, each: 1, avaliable: [0.3]}]").is_err(), "a misspelt axis");
        assert!(plan("strata: [{name: a, each: 1, with: {kind: cpu, level: low}}]").is_err(), "with needs kinds");
        assert!(
            plan("strata: [{name: a, each: 1, kinds: [cpu], levels: [mid], with: {kind: cpu, level: low}}]").is_err(),
            "with: another kind"
        );
        assert!(
            plan("strata: [{name: a, each: 1, kinds: [hdd], levels: [mid], with: {kind: vm, level: low}}]").is_err()
        );
    }

    #[test]
    fn specs_become_interference_on_this_machine() {
        let spec = Spec { stress: Some((Kind::Cpu, Level::Mid)), with: None, available: Some(0.25), bench: 2 };
        let i = spec.interference(4, 16 << 30, 12 << 30);
        assert_eq!(i.group(), "cpu+vm+bench");
        let vm = i.0.iter().find(|c| c.kind == Kind::MemoryPressure).unwrap();
        // 12 GiB available, 4 of 16 to be left: 8 GiB kept mapped, two thirds of what was there.
        assert_eq!((vm.target_available, vm.memory_percent), (Some((0.25, 8 << 30)), 66));
        assert_eq!(i.benchmark_units(), 2);
        assert!(i.stress_args().windows(2).any(|w| w == ["--vm-bytes", "8388608K"]));
        assert!(Spec::default().interference(2, 1, 1).is_baseline());
        let pair = Spec {
            stress: Some((Kind::Disk, Level::Mid)),
            with: Some((Kind::Cpu, Level::Low)),
            bench: 1,
            ..Spec::default()
        };
        assert_eq!(pair.key(), "hdd:mid+cpu:low+bench:1");
        assert_eq!(pair.interference(2, 1, 1).group(), "cpu+hdd+bench");
    }

    #[test]
    fn draws_follow_what_each_cell_lacks_and_finish() {
        let cells = plan("strata: [{name: b, each: 3, bench: [1, 2]}]").unwrap();
        let mut done = BTreeMap::from([("b/bench:1".to_owned(), 3)]);
        let mut rng = fastrand::Rng::with_seed(1);
        let left = deficits(&cells, &done);
        assert_eq!(left.len(), 1);
        assert_eq!(draw(&left, &mut rng).unwrap().key, "b/bench:2");
        done.insert("b/bench:2".into(), 5);
        assert!(draw(&deficits(&cells, &done), &mut rng).is_none());
    }
}
