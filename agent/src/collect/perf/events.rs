//! The events the collector counts, and the arithmetic on their counts: multiplexing
//! scale, deltas with wrap and hot-plug handling, per-second rates, derived ratios. Pure.

use std::collections::BTreeMap;

use fitsched_proto::metric;

use super::MAX_EVENTS_PER_CPU_SECOND;

/// An event the collector counts on every CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PerfEvent {
    Cycles,
    Instructions,
    CacheReferences,
    CacheMisses,
    BranchMisses,
    StalledCyclesFrontend,
    StalledCyclesBackend,
    /// Last-level-cache read misses (`LL / READ / MISS`).
    LlcReadMisses,
    ContextSwitches,
    CpuMigrations,
    PageFaults,
}

/// Where an event comes from, which decides how a failure to open it is explained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Hardware,
    Cache,
    Software,
}

impl PerfEvent {
    pub const ALL: [PerfEvent; 11] = [
        PerfEvent::Cycles,
        PerfEvent::Instructions,
        PerfEvent::CacheReferences,
        PerfEvent::CacheMisses,
        PerfEvent::BranchMisses,
        PerfEvent::StalledCyclesFrontend,
        PerfEvent::StalledCyclesBackend,
        PerfEvent::LlcReadMisses,
        PerfEvent::ContextSwitches,
        PerfEvent::CpuMigrations,
        PerfEvent::PageFaults,
    ];

    /// The per-second metric of this event.
    pub fn metric(self) -> &'static str {
        match self {
            PerfEvent::Cycles => metric::PERF_CYCLES_PER_SECOND,
            PerfEvent::Instructions => metric::PERF_INSTRUCTIONS_PER_SECOND,
            PerfEvent::CacheReferences => metric::PERF_CACHE_REFERENCES_PER_SECOND,
            PerfEvent::CacheMisses => metric::PERF_CACHE_MISSES_PER_SECOND,
            PerfEvent::BranchMisses => metric::PERF_BRANCH_MISSES_PER_SECOND,
            PerfEvent::StalledCyclesFrontend => metric::PERF_STALLED_CYCLES_FRONTEND_PER_SECOND,
            PerfEvent::StalledCyclesBackend => metric::PERF_STALLED_CYCLES_BACKEND_PER_SECOND,
            PerfEvent::LlcReadMisses => metric::PERF_LLC_LOAD_MISSES_PER_SECOND,
            PerfEvent::ContextSwitches => metric::PERF_CONTEXT_SWITCHES_PER_SECOND,
            PerfEvent::CpuMigrations => metric::PERF_CPU_MIGRATIONS_PER_SECOND,
            PerfEvent::PageFaults => metric::PERF_PAGE_FAULTS_PER_SECOND,
        }
    }

    /// The kernel's name of the event (`PERF_COUNT_HW_<name>` and friends).
    pub fn kernel_name(self) -> &'static str {
        match self {
            PerfEvent::Cycles => "CPU_CYCLES",
            PerfEvent::Instructions => "INSTRUCTIONS",
            PerfEvent::CacheReferences => "CACHE_REFERENCES",
            PerfEvent::CacheMisses => "CACHE_MISSES",
            PerfEvent::BranchMisses => "BRANCH_MISSES",
            PerfEvent::StalledCyclesFrontend => "STALLED_CYCLES_FRONTEND",
            PerfEvent::StalledCyclesBackend => "STALLED_CYCLES_BACKEND",
            PerfEvent::LlcReadMisses => "LL/READ/MISS",
            PerfEvent::ContextSwitches => "CONTEXT_SWITCHES",
            PerfEvent::CpuMigrations => "CPU_MIGRATIONS",
            PerfEvent::PageFaults => "PAGE_FAULTS",
        }
    }

    pub fn kind(self) -> EventKind {
        match self {
            PerfEvent::LlcReadMisses => EventKind::Cache,
            PerfEvent::ContextSwitches | PerfEvent::CpuMigrations | PerfEvent::PageFaults => EventKind::Software,
            _ => EventKind::Hardware,
        }
    }

    /// Whether the event needs the CPU's PMU (as opposed to a kernel software counter).
    pub fn needs_pmu(self) -> bool {
        self.kind() != EventKind::Software
    }

    /// E.g. `hardware event INSTRUCTIONS`.
    pub fn describe(self) -> String {
        let kind = match self.kind() {
            EventKind::Hardware => "hardware",
            EventKind::Cache => "cache",
            EventKind::Software => "software",
        };
        format!("{kind} event {}", self.kernel_name())
    }
}

/// One reading of a counter: its value and, for multiplexing, how long it was enabled
/// and how long it actually ran on the PMU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawCount {
    pub value: u64,
    pub enabled_ns: u64,
    pub running_ns: u64,
}

/// What two readings of one counter say about the tick between them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Delta {
    /// Events counted in between, scaled up for the time the counter was multiplexed out.
    Count(f64),
    /// No trustworthy estimate this tick (counter went backwards, never got onto the PMU,
    /// or an implausible rate); the new reading is the next baseline.
    Skip,
    /// The counter stopped counting although time passed: its CPU went offline (and
    /// maybe came back). It has to be reopened.
    Stopped,
}

/// The events counted between `prev` and `cur`, `elapsed_secs` apart.
///
/// Scales the *delta* by the delta of enabled over running time, as `perf stat -I` does:
/// scaling the cumulative counts instead would let a change in the multiplexing ratio
/// make a delta negative.
pub fn counter_delta(prev: RawCount, cur: RawCount, elapsed_secs: f64) -> Delta {
    let (Some(value), Some(enabled), Some(running)) = (
        cur.value.checked_sub(prev.value),
        cur.enabled_ns.checked_sub(prev.enabled_ns),
        cur.running_ns.checked_sub(prev.running_ns),
    ) else {
        return Delta::Skip;
    };
    if elapsed_secs.is_nan() || elapsed_secs <= 0.0 {
        return Delta::Skip;
    }
    if enabled == 0 {
        return Delta::Stopped;
    }
    if running == 0 {
        return Delta::Skip;
    }
    let count = if running >= enabled { value as f64 } else { value as f64 * (enabled as f64 / running as f64) };
    if !count.is_finite() || count / elapsed_secs > MAX_EVENTS_PER_CPU_SECOND {
        return Delta::Skip;
    }
    Delta::Count(count)
}

/// One tick's event counts, by event and CPU. Only CPUs with a usable delta appear.
pub type TickDeltas = BTreeMap<PerfEvent, BTreeMap<u32, f64>>;

/// The ratios derived from two events: metric, numerator, denominator, factor.
pub const DERIVED: [(&str, PerfEvent, PerfEvent, f64); 4] = [
    (metric::PERF_IPC, PerfEvent::Instructions, PerfEvent::Cycles, 1.0),
    (metric::PERF_CPI, PerfEvent::Cycles, PerfEvent::Instructions, 1.0),
    (metric::PERF_LLC_MPKI, PerfEvent::LlcReadMisses, PerfEvent::Instructions, 1000.0),
    (metric::PERF_BRANCH_MPKI, PerfEvent::BranchMisses, PerfEvent::Instructions, 1000.0),
];

/// `factor × Σ num / Σ den` over the CPUs that have both, so a CPU skipped for one event
/// does not skew the ratio; `None` without common CPUs or when the denominator is 0.
pub fn ratio(num: &BTreeMap<u32, f64>, den: &BTreeMap<u32, f64>, factor: f64) -> Option<f64> {
    let (mut n, mut d) = (0.0, 0.0);
    for (cpu, x) in num {
        if let Some(y) = den.get(cpu) {
            n += x;
            d += y;
        }
    }
    let r = factor * n / d;
    (d > 0.0 && r.is_finite()).then_some(r)
}

/// The metrics of one tick: a per-second rate for every event with at least one CPU's
/// delta, and the derived ratios whose inputs are both there.
pub fn tick_metrics(deltas: &TickDeltas, elapsed_secs: f64) -> BTreeMap<&'static str, f64> {
    let mut out = BTreeMap::new();
    if elapsed_secs.is_nan() || elapsed_secs <= 0.0 {
        return out;
    }
    for (event, per_cpu) in deltas {
        if !per_cpu.is_empty() {
            out.insert(event.metric(), per_cpu.values().sum::<f64>() / elapsed_secs);
        }
    }
    for (name, num, den, factor) in DERIVED {
        if let (Some(n), Some(d)) = (deltas.get(&num), deltas.get(&den))
            && let Some(r) = ratio(n, d, factor)
        {
            out.insert(name, r);
        }
    }
    out
}

/// The missing metrics given the events that cannot be counted (with why): each event's
/// own metric, and every derived metric with such an input.
pub fn missing_metrics(down: &BTreeMap<PerfEvent, String>) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> =
        PerfEvent::ALL.iter().filter_map(|e| down.get(e).map(|why| (e.metric(), why.clone()))).collect();
    for (name, num, den, _) in DERIVED {
        let reasons: Vec<&str> = [num, den].iter().filter_map(|e| down.get(e).map(String::as_str)).collect();
        if !reasons.is_empty() {
            out.push((name, reasons.join("; ")));
        }
    }
    out
}
