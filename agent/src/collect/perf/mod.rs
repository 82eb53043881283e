//! The perf-events collector: hardware and software counters of the whole node, counted
//! per CPU with `perf_event_open(pid = -1, cpu = N)` and summed over CPUs.
//!
//! By concern: [`events`] names the events and does the arithmetic (multiplexing scale,
//! deltas, wrap and hot-plug handling, rates, derived ratios), [`diagnosis`] says why an
//! event could not be opened, and this module is the collector. The syscalls sit behind
//! [`PerfOpener`] / [`PerfCounter`], so the failure paths (no PMU, no permission,
//! hot-plug) are tested without a kernel.
//!
//! Every event is opened on its own rather than in one group: a group is scheduled
//! all-or-nothing, so one event the PMU lacks (stalled cycles on most Intel parts) would
//! take the others with it.

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::time::Instant;

#[cfg(test)]
use fitsched_proto::metric;
use perf_event::events::{Cache, CacheId, CacheOp, CacheResult, Hardware, Software};
use perf_event::{Builder, ReadFormat};
use tracing::{debug, warn};

use super::{Collector, Sample};

mod diagnosis;
mod events;

pub use diagnosis::*;
pub use events::*;

/// Where the kernel lists the online CPUs, e.g. `0-3,6`.
pub const ONLINE_CPUS: &str = "/sys/devices/system/cpu/online";
/// The sysctl that decides who may open system-wide events without `CAP_PERFMON`.
pub const PERF_EVENT_PARANOID: &str = "/proc/sys/kernel/perf_event_paranoid";

/// No real counter moves faster than this per CPU (6 GHz × 8-wide retire is 5e10
/// instructions/s), so a larger per-CPU rate is a reset or a garbage scale factor.
pub const MAX_EVENTS_PER_CPU_SECOND: f64 = 1e11;

/// Every metric this collector produces.
#[cfg(test)]
pub const METRICS: [&str; 15] = [
    metric::PERF_CYCLES_PER_SECOND,
    metric::PERF_INSTRUCTIONS_PER_SECOND,
    metric::PERF_CACHE_REFERENCES_PER_SECOND,
    metric::PERF_CACHE_MISSES_PER_SECOND,
    metric::PERF_LLC_LOAD_MISSES_PER_SECOND,
    metric::PERF_BRANCH_MISSES_PER_SECOND,
    metric::PERF_STALLED_CYCLES_FRONTEND_PER_SECOND,
    metric::PERF_STALLED_CYCLES_BACKEND_PER_SECOND,
    metric::PERF_IPC,
    metric::PERF_CPI,
    metric::PERF_LLC_MPKI,
    metric::PERF_BRANCH_MPKI,
    metric::PERF_CONTEXT_SWITCHES_PER_SECOND,
    metric::PERF_CPU_MIGRATIONS_PER_SECOND,
    metric::PERF_PAGE_FAULTS_PER_SECOND,
];

/// An open counter.
pub trait PerfCounter: Send {
    fn read(&mut self) -> io::Result<RawCount>;
}

/// Opens counters: the only part of the collector that talks to the kernel.
pub trait PerfOpener: Send {
    /// An enabled counter of `event` for every process on `cpu`, counting from zero.
    fn open(&mut self, event: PerfEvent, cpu: u32) -> io::Result<Box<dyn PerfCounter>>;
}

/// [`PerfOpener`] of real `perf_event_open` counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct KernelOpener;

impl PerfOpener for KernelOpener {
    fn open(&mut self, event: PerfEvent, cpu: u32) -> io::Result<Box<dyn PerfCounter>> {
        let mut builder = match event {
            PerfEvent::Cycles => Builder::new(Hardware::CPU_CYCLES),
            PerfEvent::Instructions => Builder::new(Hardware::INSTRUCTIONS),
            PerfEvent::CacheReferences => Builder::new(Hardware::CACHE_REFERENCES),
            PerfEvent::CacheMisses => Builder::new(Hardware::CACHE_MISSES),
            PerfEvent::BranchMisses => Builder::new(Hardware::BRANCH_MISSES),
            PerfEvent::StalledCyclesFrontend => Builder::new(Hardware::STALLED_CYCLES_FRONTEND),
            PerfEvent::StalledCyclesBackend => Builder::new(Hardware::STALLED_CYCLES_BACKEND),
            PerfEvent::LlcReadMisses => {
                Builder::new(Cache { which: CacheId::LL, operation: CacheOp::READ, result: CacheResult::MISS })
            }
            PerfEvent::ContextSwitches => Builder::new(Software::CONTEXT_SWITCHES),
            PerfEvent::CpuMigrations => Builder::new(Software::CPU_MIGRATIONS),
            PerfEvent::PageFaults => Builder::new(Software::PAGE_FAULTS),
        };
        let cpu = usize::try_from(cpu).map_err(io::Error::other)?;
        builder
            .any_pid()
            .one_cpu(cpu)
            // The node's load includes the kernel's work (syscalls, softirqs, page faults);
            // whoever may open system-wide events may count kernel mode too.
            .exclude_kernel(false)
            .read_format(ReadFormat::TOTAL_TIME_ENABLED | ReadFormat::TOTAL_TIME_RUNNING)
            .enabled(true);
        Ok(Box::new(KernelCounter(builder.build()?)))
    }
}

struct KernelCounter(perf_event::Counter);

impl PerfCounter for KernelCounter {
    fn read(&mut self) -> io::Result<RawCount> {
        let data = self.0.read_full()?;
        let nanos = |d: Option<std::time::Duration>| {
            d.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                .ok_or_else(|| io::Error::other("counter read without time_enabled/time_running"))
        };
        Ok(RawCount {
            value: data.count(),
            enabled_ns: nanos(data.time_enabled())?,
            running_ns: nanos(data.time_running())?,
        })
    }
}

enum CpuSource {
    Sysfs(PathBuf),
    /// A CPU set the tests choose.
    #[cfg(test)]
    Fixed(Vec<u32>),
}

struct CpuCounter {
    counter: Box<dyn PerfCounter>,
    prev: RawCount,
}

struct EventState {
    event: PerfEvent,
    /// Why the event can never be counted here (not supported, not allowed). Set once;
    /// never retried.
    unavailable: Option<String>,
    /// Why the latest attempt to open it on some CPU failed, for when no CPU has it.
    last_error: Option<String>,
    counters: BTreeMap<u32, CpuCounter>,
}

/// System-wide perf counters on every online CPU, summed into node rates.
pub struct PerfCollector {
    opener: Box<dyn PerfOpener>,
    cpus: CpuSource,
    paranoid: Option<i64>,
    pmu_seen: bool,
    events: Vec<EventState>,
    prev_tick: Option<Instant>,
}

impl std::fmt::Debug for PerfCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unavailable: Vec<_> = self.events.iter().filter_map(|s| s.unavailable.as_deref()).collect();
        f.debug_struct("PerfCollector").field("paranoid", &self.paranoid).field("unavailable", &unavailable).finish()
    }
}

impl PerfCollector {
    /// Opens the counters on every online CPU of this machine. The online list is re-read
    /// every tick, so CPUs that come and go (hot-plug) are followed. Events that cannot be
    /// opened are logged once here and reported missing every tick.
    pub fn system_wide() -> Self {
        let mut c = Self::build(CpuSource::Sysfs(PathBuf::from(ONLINE_CPUS)), Box::new(KernelOpener), read_paranoid());
        let online = c.online_cpus();
        c.open_missing(&online);
        c
    }

    /// Counters on `cpus` through `opener`, with `paranoid` as the sysctl's value for
    /// explaining permission failures. The CPU set stays `cpus` unless ticks go through
    /// [`PerfCollector::sample_cpus`].
    #[cfg(test)]
    pub fn with_opener(cpus: Vec<u32>, opener: Box<dyn PerfOpener>, paranoid: Option<i64>) -> Self {
        let mut c = Self::build(CpuSource::Fixed(cpus), opener, paranoid);
        let online = c.online_cpus();
        c.open_missing(&online);
        c
    }

    fn build(cpus: CpuSource, opener: Box<dyn PerfOpener>, paranoid: Option<i64>) -> Self {
        let events = PerfEvent::ALL
            .into_iter()
            .map(|event| EventState { event, unavailable: None, last_error: None, counters: BTreeMap::new() })
            .collect();
        Self { opener, cpus, paranoid, pmu_seen: false, events, prev_tick: None }
    }

    fn online_cpus(&self) -> Result<Vec<u32>, String> {
        match &self.cpus {
            #[cfg(test)]
            CpuSource::Fixed(cpus) => {
                let mut cpus = cpus.clone();
                cpus.sort_unstable();
                cpus.dedup();
                Ok(cpus)
            }
            CpuSource::Sysfs(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
                .and_then(|s| parse_cpu_list(&s).map_err(|e| format!("{}: {e}", path.display()))),
        }
    }

    /// Opens a counter for every online CPU of every usable event that lacks one; marks
    /// events that cannot be opened for good as unavailable and logs them once.
    fn open_missing(&mut self, online: &Result<Vec<u32>, String>) {
        let online = match online {
            Ok(cpus) => cpus,
            Err(why) => {
                for state in self.events.iter_mut().filter(|s| s.unavailable.is_none() && s.counters.is_empty()) {
                    state.last_error = Some(why.clone());
                }
                return;
            }
        };
        let mut failures = Vec::new();
        for state in self.events.iter_mut().filter(|s| s.unavailable.is_none()) {
            for &cpu in online {
                if state.counters.contains_key(&cpu) {
                    continue;
                }
                match self.opener.open(state.event, cpu) {
                    Ok(counter) => {
                        // A new counter starts at zero now, so zero is its baseline and
                        // the next tick already has its delta.
                        state.counters.insert(cpu, CpuCounter { counter, prev: RawCount::default() });
                    }
                    Err(err) => match OpenFailure::classify(&err) {
                        OpenFailure::Transient => {
                            debug!(event = state.event.kernel_name(), cpu, error = %err, "cannot open perf counter; retrying next tick");
                            state.last_error = Some(format!("cannot be opened on CPU {cpu}: {err}"));
                        }
                        failure => {
                            failures.push((state.event, failure, cpu, err.to_string()));
                            state.counters.clear();
                            break;
                        }
                    },
                }
            }
            if online.is_empty() && state.counters.is_empty() {
                state.last_error = Some("cannot be opened: no online CPUs listed".to_owned());
            }
        }
        self.pmu_seen |= self.events.iter().any(|s| s.event.needs_pmu() && !s.counters.is_empty());
        if failures.is_empty() {
            return;
        }
        let ctx = ReasonContext {
            paranoid: self.paranoid,
            pmu_seen: self.pmu_seen,
            descriptors: PerfEvent::ALL.len() * online.len(),
        };
        // One log line per cause rather than per event: a VM without a PMU is one fact.
        let mut by_cause: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (event, failure, cpu, err) in failures {
            let cause = failure_cause(event, failure, cpu, &err, &ctx);
            if let Some(state) = self.events.iter_mut().find(|s| s.event == event) {
                state.unavailable = Some(format!("{} {cause}", event.describe()));
            }
            by_cause.entry(cause).or_default().push(event.describe());
        }
        for (cause, events) in by_cause {
            warn!(events = %events.join(", "), %cause, "perf events unavailable; their metrics are reported missing");
        }
    }

    /// Takes one tick's sample with `online` as the online CPUs (tests simulate hot-plug
    /// with it; [`Collector::sample`] reads the list from sysfs).
    #[cfg(test)]
    pub fn sample_cpus(&mut self, online: &[u32], now: Instant) -> Sample {
        let mut cpus = online.to_vec();
        cpus.sort_unstable();
        cpus.dedup();
        self.tick(Ok(cpus), now)
    }

    fn tick(&mut self, online: Result<Vec<u32>, String>, now: Instant) -> Sample {
        let elapsed = self.prev_tick.map(|t| now.saturating_duration_since(t).as_secs_f64());
        self.prev_tick = Some(now);

        // A CPU that went offline keeps its counters frozen; drop them before reading so
        // they contribute nothing, and reopen if it comes back.
        if let Ok(cpus) = &online {
            for state in &mut self.events {
                state.counters.retain(|cpu, _| cpus.binary_search(cpu).is_ok());
            }
        }

        let mut deltas = TickDeltas::new();
        for state in &mut self.events {
            let mut per_cpu = BTreeMap::new();
            let mut dead = Vec::new();
            for (&cpu, c) in &mut state.counters {
                match c.counter.read() {
                    Ok(cur) => {
                        if let Some(secs) = elapsed {
                            match counter_delta(c.prev, cur, secs) {
                                Delta::Count(d) => {
                                    per_cpu.insert(cpu, d);
                                }
                                Delta::Skip => {}
                                Delta::Stopped => dead.push(cpu),
                            }
                        }
                        c.prev = cur;
                    }
                    Err(err) => {
                        debug!(event = state.event.kernel_name(), cpu, error = %err, "cannot read perf counter; reopening");
                        state.last_error = Some(format!("cannot be read on CPU {cpu}: {err}"));
                        dead.push(cpu);
                    }
                }
            }
            for cpu in dead {
                state.counters.remove(&cpu);
            }
            if !per_cpu.is_empty() {
                deltas.insert(state.event, per_cpu);
            }
        }

        self.open_missing(&online);

        let mut sample = Sample::default();
        if let Some(secs) = elapsed {
            for (name, value) in tick_metrics(&deltas, secs) {
                sample.set(name, value);
            }
        }
        let mut down = BTreeMap::new();
        for state in &self.events {
            if let Some(why) = &state.unavailable {
                down.insert(state.event, why.clone());
            } else if state.counters.is_empty() && !deltas.contains_key(&state.event) {
                let why = state.last_error.as_deref().unwrap_or("cannot be opened on any online CPU");
                down.insert(state.event, format!("{} {why}", state.event.describe()));
            }
        }
        for (name, why) in missing_metrics(&down) {
            sample.set_missing(name, why);
        }
        sample
    }
}

impl Collector for PerfCollector {
    fn sample(&mut self, now: Instant) -> Sample {
        let online = self.online_cpus();
        if let Err(why) = &online {
            debug!(%why, "cannot list online CPUs; keeping the current perf counters");
        }
        self.tick(online, now)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    /// A kernel stand-in: counters whose readings the test sets, and open/read failures.
    #[derive(Default)]
    struct FakeState {
        counts: HashMap<(PerfEvent, u32), RawCount>,
        open_errors: HashMap<PerfEvent, i32>,
        cpu_open_errors: HashMap<(PerfEvent, u32), i32>,
        read_errors: BTreeSet<(PerfEvent, u32)>,
        opens: usize,
    }

    #[derive(Clone, Default)]
    struct Fake(Arc<Mutex<FakeState>>);

    impl Fake {
        fn failing(events: impl IntoIterator<Item = PerfEvent>, errno: i32) -> Self {
            let fake = Fake::default();
            fake.0.lock().unwrap().open_errors.extend(events.into_iter().map(|e| (e, errno)));
            fake
        }

        /// Every counter on `cpus` counts `per_sec[event]` per second for `secs`, running
        /// `running` of the time it is enabled.
        fn advance(&self, cpus: &[u32], secs: f64, running: f64, per_sec: impl Fn(PerfEvent) -> f64) {
            let mut s = self.0.lock().unwrap();
            for event in PerfEvent::ALL {
                for &cpu in cpus {
                    if let Some(c) = s.counts.get_mut(&(event, cpu)) {
                        let ns = (secs * 1e9) as u64;
                        c.value += (per_sec(event) * secs * running) as u64;
                        c.enabled_ns += ns;
                        c.running_ns += (ns as f64 * running) as u64;
                    }
                }
            }
        }

        fn opens(&self) -> usize {
            self.0.lock().unwrap().opens
        }
    }

    struct FakeCounter(Fake, PerfEvent, u32);

    impl PerfCounter for FakeCounter {
        fn read(&mut self) -> io::Result<RawCount> {
            let s = (self.0).0.lock().unwrap();
            if s.read_errors.contains(&(self.1, self.2)) {
                return Err(io::Error::from_raw_os_error(libc::ENODEV));
            }
            Ok(s.counts.get(&(self.1, self.2)).copied().unwrap_or_default())
        }
    }

    impl PerfOpener for Fake {
        fn open(&mut self, event: PerfEvent, cpu: u32) -> io::Result<Box<dyn PerfCounter>> {
            let mut s = self.0.lock().unwrap();
            if let Some(&errno) = s.open_errors.get(&event).or_else(|| s.cpu_open_errors.get(&(event, cpu))) {
                return Err(io::Error::from_raw_os_error(errno));
            }
            s.opens += 1;
            s.counts.insert((event, cpu), RawCount::default());
            Ok(Box::new(FakeCounter(self.clone(), event, cpu)))
        }
    }

    fn rates(event: PerfEvent) -> f64 {
        match event {
            PerfEvent::Cycles => 2e9,
            PerfEvent::Instructions => 3e9,
            PerfEvent::LlcReadMisses => 6e6,
            PerfEvent::BranchMisses => 1.5e7,
            PerfEvent::ContextSwitches => 1000.0,
            _ => 1e6,
        }
    }

    fn missing(s: &Sample) -> BTreeMap<&str, &str> {
        s.missing.iter().map(|m| (m.name.as_str(), m.reason.as_str())).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn parses_cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,6\n").unwrap(), [0, 1, 2, 3, 6]);
        assert_eq!(parse_cpu_list("0\n").unwrap(), [0]);
        assert_eq!(parse_cpu_list("\n").unwrap(), Vec::<u32>::new());
        assert_eq!(parse_cpu_list("4-5,0-1,1").unwrap(), [0, 1, 4, 5]);
        for bad in ["a", "3-1", "1-", "-1", "0-4294967295", "1,,x"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn live_online_cpus_parse() {
        if let Ok(s) = std::fs::read_to_string(ONLINE_CPUS) {
            assert!(!parse_cpu_list(&s).unwrap().is_empty());
        }
    }

    #[test]
    fn deltas_scale_multiplexed_counts_and_refuse_nonsense() {
        let prev = RawCount { value: 1_000, enabled_ns: 1_000_000_000, running_ns: 500_000_000 };
        let full = RawCount { value: 3_000, enabled_ns: 2_000_000_000, running_ns: 1_500_000_000 };
        assert_eq!(counter_delta(prev, full, 1.0), Delta::Count(2_000.0), "ran the whole tick: no scaling");
        let half = RawCount { value: 2_000, enabled_ns: 2_000_000_000, running_ns: 1_000_000_000 };
        assert_eq!(counter_delta(prev, half, 1.0), Delta::Count(2_000.0), "ran half the tick: doubled");
        let down = RawCount { value: 10, ..full };
        assert_eq!(counter_delta(prev, down, 1.0), Delta::Skip, "went backwards");
        assert_eq!(counter_delta(prev, RawCount { running_ns: 500_000_000, ..half }, 1.0), Delta::Skip, "never ran");
        assert_eq!(counter_delta(prev, prev, 1.0), Delta::Stopped, "enabled time froze: CPU offline");
        assert_eq!(counter_delta(prev, prev, 0.0), Delta::Skip, "no time passed");
        let absurd = RawCount { value: u64::MAX / 2, ..full };
        assert_eq!(counter_delta(prev, absurd, 1.0), Delta::Skip, "implausible rate");
    }

    #[test]
    fn rates_and_ratios_use_common_cpus() {
        let mut d = TickDeltas::new();
        d.insert(PerfEvent::Cycles, [(0, 4e9), (1, 4e9)].into());
        d.insert(PerfEvent::Instructions, [(0, 2e9)].into());
        d.insert(PerfEvent::BranchMisses, [(0, 1e6), (1, 5e6)].into());
        let m = tick_metrics(&d, 2.0);
        assert_eq!(m[metric::PERF_CYCLES_PER_SECOND], 4e9);
        assert_eq!(m[metric::PERF_INSTRUCTIONS_PER_SECOND], 1e9);
        assert_eq!(m[metric::PERF_IPC], 0.5, "CPU 1 has no instructions delta, so its cycles do not count");
        assert_eq!(m[metric::PERF_CPI], 2.0);
        assert_eq!(m[metric::PERF_BRANCH_MPKI], 0.5);
        assert!(!m.contains_key(metric::PERF_LLC_MPKI));
        d.insert(PerfEvent::Instructions, [(0, 0.0)].into());
        let m = tick_metrics(&d, 2.0);
        assert!(!m.contains_key(metric::PERF_CPI) && !m.contains_key(metric::PERF_BRANCH_MPKI), "denominator 0");
        assert_eq!(m[metric::PERF_IPC], 0.0);
        assert!(tick_metrics(&d, 0.0).is_empty());
    }

    #[test]
    fn derived_metrics_are_missing_with_their_inputs() {
        let down: BTreeMap<_, _> =
            [(PerfEvent::LlcReadMisses, "cache event LL/READ/MISS not supported".to_owned())].into();
        let m: BTreeMap<_, _> = missing_metrics(&down).into_iter().collect();
        assert_eq!(m.len(), 2);
        assert_eq!(m[metric::PERF_LLC_MPKI], "cache event LL/READ/MISS not supported");
        assert!(m.contains_key(metric::PERF_LLC_LOAD_MISSES_PER_SECOND));
    }

    #[test]
    fn classifies_errors() {
        let c = |e| OpenFailure::classify(&io::Error::from_raw_os_error(e));
        assert_eq!(c(libc::ENOENT), OpenFailure::Unsupported);
        assert_eq!(c(libc::EOPNOTSUPP), OpenFailure::Unsupported);
        assert_eq!(c(libc::EACCES), OpenFailure::Denied);
        assert_eq!(c(libc::EPERM), OpenFailure::Denied);
        assert_eq!(c(libc::ENODEV), OpenFailure::Transient);
        assert_eq!(c(libc::EMFILE), OpenFailure::TooManyFiles);
        assert_eq!(c(libc::ENOSYS), OpenFailure::NoPerfEvents);
        assert_eq!(OpenFailure::classify(&io::Error::other("x")), OpenFailure::Other);
    }

    #[test]
    fn first_tick_has_no_rates_second_has_all() {
        let fake = Fake::default();
        let mut c = PerfCollector::with_opener(vec![0, 1], Box::new(fake.clone()), Some(2));
        assert_eq!(fake.opens(), 22);
        let t0 = Instant::now();
        fake.advance(&[0, 1], 1.0, 1.0, rates);
        let s = c.sample(t0);
        assert!(s.values.is_empty() && s.missing.is_empty(), "{s:?}");
        fake.advance(&[0, 1], 2.0, 1.0, rates);
        let s = c.sample(t0 + Duration::from_secs(2));
        assert!(s.missing.is_empty(), "{:?}", s.missing);
        assert_eq!(s.values.len(), METRICS.len());
        let v = |n: &str| s.values[n];
        assert!(close(v(metric::PERF_CYCLES_PER_SECOND), 4e9), "2 CPUs × 2e9");
        assert!(close(v(metric::PERF_INSTRUCTIONS_PER_SECOND), 6e9));
        assert!(close(v(metric::PERF_CONTEXT_SWITCHES_PER_SECOND), 2000.0));
        assert!(close(v(metric::PERF_IPC), 1.5));
        assert!(close(v(metric::PERF_CPI), 2.0 / 3.0));
        assert!(close(v(metric::PERF_LLC_MPKI), 2.0));
        assert!(close(v(metric::PERF_BRANCH_MPKI), 5.0));
    }

    #[test]
    fn multiplexed_counters_are_scaled() {
        let fake = Fake::default();
        let mut c = PerfCollector::with_opener(vec![0], Box::new(fake.clone()), Some(2));
        let t0 = Instant::now();
        c.sample(t0);
        // The PMU ran each counter a quarter of the time: counts are a quarter of the truth.
        fake.advance(&[0], 1.0, 0.25, rates);
        let s = c.sample(t0 + Duration::from_secs(1));
        assert!(close(s.values[metric::PERF_CYCLES_PER_SECOND], 2e9));
        assert!(close(s.values[metric::PERF_IPC], 1.5));
    }

    #[test]
    fn vm_without_pmu_reports_pmu_metrics_missing_and_software_ones_work() {
        let fake = Fake::failing(PerfEvent::ALL.into_iter().filter(|e| e.needs_pmu()), libc::ENOENT);
        let mut c = PerfCollector::with_opener(vec![0, 1], Box::new(fake.clone()), Some(2));
        let t0 = Instant::now();
        for i in 0..3 {
            fake.advance(&[0, 1], 1.0, 1.0, rates);
            let s = c.sample(t0 + Duration::from_secs(i));
            let m = missing(&s);
            assert_eq!(m.len(), 12, "8 events + 4 derived, every tick: {m:?}");
            assert_eq!(
                m[metric::PERF_INSTRUCTIONS_PER_SECOND],
                "hardware event INSTRUCTIONS not supported: no PMU (VM?)"
            );
            assert_eq!(
                m[metric::PERF_LLC_LOAD_MISSES_PER_SECOND],
                "cache event LL/READ/MISS not supported: no PMU (VM?)"
            );
            assert!(m[metric::PERF_IPC].contains("INSTRUCTIONS") && m[metric::PERF_IPC].contains("CPU_CYCLES"));
            if i > 0 {
                assert_eq!(s.values.len(), 3, "{:?}", s.values);
                assert!(close(s.values[metric::PERF_CONTEXT_SWITCHES_PER_SECOND], 2000.0));
            }
        }
        assert_eq!(fake.opens(), 6, "unsupported events are not retried");
    }

    #[test]
    fn one_unsupported_event_does_not_take_the_others_with_it() {
        let fake = Fake::failing([PerfEvent::StalledCyclesFrontend, PerfEvent::StalledCyclesBackend], libc::ENOENT);
        let mut c = PerfCollector::with_opener(vec![0], Box::new(fake.clone()), Some(2));
        let t0 = Instant::now();
        c.sample(t0);
        fake.advance(&[0], 1.0, 1.0, rates);
        let s = c.sample(t0 + Duration::from_secs(1));
        let m = missing(&s);
        assert_eq!(m.len(), 2);
        assert!(m[metric::PERF_STALLED_CYCLES_FRONTEND_PER_SECOND].contains("not supported by the PMU of CPU 0"));
        assert!(s.values.contains_key(metric::PERF_IPC));
        assert_eq!(s.values.len(), METRICS.len() - 2);
    }

    #[test]
    fn permission_failures_explain_paranoid_or_seccomp() {
        let fake = Fake::failing(PerfEvent::ALL, libc::EACCES);
        let mut c = PerfCollector::with_opener(vec![0, 1], Box::new(fake), Some(2));
        let s = c.sample(Instant::now());
        assert!(s.values.is_empty());
        let m = missing(&s);
        assert_eq!(m.len(), METRICS.len());
        assert_eq!(
            m[metric::PERF_CONTEXT_SWITCHES_PER_SECOND],
            "software event CONTEXT_SWITCHES denied: perf_event_paranoid=2 forbids system-wide events without CAP_PERFMON"
        );
        assert!(m.values().all(|r| r.contains("perf_event_paranoid=2")));

        let mut c = PerfCollector::with_opener(vec![0], Box::new(Fake::failing(PerfEvent::ALL, libc::EPERM)), Some(-1));
        let s = c.sample(Instant::now());
        assert!(missing(&s)[metric::PERF_PAGE_FAULTS_PER_SECOND].contains("seccomp"));

        let mut c = PerfCollector::with_opener(vec![0], Box::new(Fake::failing(PerfEvent::ALL, libc::EPERM)), None);
        let s = c.sample(Instant::now());
        assert!(missing(&s)[metric::PERF_CYCLES_PER_SECOND].contains("CAP_PERFMON"));
    }

    #[test]
    fn descriptor_exhaustion_and_no_perf_events_are_explained() {
        let mut c = PerfCollector::with_opener(
            vec![0, 1, 2, 3],
            Box::new(Fake::failing(PerfEvent::ALL, libc::EMFILE)),
            Some(0),
        );
        let m = missing(&c.sample(Instant::now()))
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<BTreeMap<_, _>>();
        assert!(
            m[metric::PERF_CYCLES_PER_SECOND].contains("nofile") && m[metric::PERF_CYCLES_PER_SECOND].contains("(44)")
        );
        let mut c = PerfCollector::with_opener(vec![0], Box::new(Fake::failing(PerfEvent::ALL, libc::ENOSYS)), None);
        assert!(
            missing(&c.sample(Instant::now()))[metric::PERF_CYCLES_PER_SECOND].contains("kernel without perf events")
        );
    }

    #[test]
    fn hot_plug_skips_the_cpu_and_reopens_it() {
        let fake = Fake::default();
        let mut c = PerfCollector::with_opener(vec![0, 1], Box::new(fake.clone()), Some(2));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        c.sample_cpus(&[0, 1], at(0));

        // CPU 1 goes offline: only CPU 0 counts, and no metric is missing.
        fake.advance(&[0, 1], 1.0, 1.0, rates);
        let s = c.sample_cpus(&[0], at(1));
        assert!(close(s.values[metric::PERF_CYCLES_PER_SECOND], 2e9));
        assert!(s.missing.is_empty());

        // It comes back: reopened from zero at this tick, so the next tick has its delta.
        fake.advance(&[0], 1.0, 1.0, rates);
        let opens = fake.opens();
        let s = c.sample_cpus(&[0, 1], at(2));
        assert_eq!(fake.opens(), opens + PerfEvent::ALL.len());
        assert!(close(s.values[metric::PERF_CYCLES_PER_SECOND], 2e9), "CPU 1 just reopened: CPU 0 only");
        fake.advance(&[0, 1], 1.0, 1.0, rates);
        let s = c.sample_cpus(&[0, 1], at(3));
        assert!(close(s.values[metric::PERF_CYCLES_PER_SECOND], 4e9));

        // Offline and back within one tick: the kernel stopped the counter (enabled time
        // froze); skip it this tick and reopen.
        fake.advance(&[0], 1.0, 1.0, rates);
        let opens = fake.opens();
        let s = c.sample_cpus(&[0, 1], at(4));
        assert!(close(s.values[metric::PERF_CYCLES_PER_SECOND], 2e9));
        assert_eq!(fake.opens(), opens + PerfEvent::ALL.len());
        fake.advance(&[0, 1], 1.0, 1.0, rates);
        let s = c.sample_cpus(&[0, 1], at(5));
        assert!(close(s.values[metric::PERF_CYCLES_PER_SECOND], 4e9));
    }

    #[test]
    fn counter_reset_and_read_errors_never_go_negative() {
        let fake = Fake::default();
        let mut c = PerfCollector::with_opener(vec![0, 1], Box::new(fake.clone()), Some(2));
        let t0 = Instant::now();
        fake.advance(&[0, 1], 1.0, 1.0, rates);
        c.sample(t0);
        // CPU 1's cycles counter goes backwards; CPU 0's instructions cannot be read.
        fake.advance(&[0, 1], 1.0, 1.0, rates);
        fake.0.lock().unwrap().counts.get_mut(&(PerfEvent::Cycles, 1)).unwrap().value = 5;
        fake.0.lock().unwrap().read_errors.insert((PerfEvent::Instructions, 0));
        let s = c.sample(t0 + Duration::from_secs(1));
        assert!(close(s.values[metric::PERF_CYCLES_PER_SECOND], 2e9), "only CPU 0");
        assert!(close(s.values[metric::PERF_INSTRUCTIONS_PER_SECOND], 3e9), "only CPU 1");
        assert!(s.values.values().all(|v| v.is_finite() && *v >= 0.0));
        assert!(s.missing.is_empty());
        // The unreadable counter was reopened, the reset one resumes from its new value.
        fake.0.lock().unwrap().read_errors.clear();
        fake.advance(&[0, 1], 1.0, 1.0, rates);
        let s = c.sample(t0 + Duration::from_secs(2));
        assert!(close(s.values[metric::PERF_CYCLES_PER_SECOND], 4e9));
        assert!(close(s.values[metric::PERF_INSTRUCTIONS_PER_SECOND], 6e9));
    }

    #[test]
    fn transient_open_failure_is_retried_and_missing_only_without_any_cpu() {
        let fake = Fake::default();
        fake.0.lock().unwrap().cpu_open_errors.insert((PerfEvent::PageFaults, 1), libc::ENODEV);
        fake.0.lock().unwrap().cpu_open_errors.insert((PerfEvent::CpuMigrations, 0), libc::EBUSY);
        fake.0.lock().unwrap().cpu_open_errors.insert((PerfEvent::CpuMigrations, 1), libc::EBUSY);
        let mut c = PerfCollector::with_opener(vec![0, 1], Box::new(fake.clone()), Some(2));
        let t0 = Instant::now();
        let s = c.sample(t0);
        let m = missing(&s);
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), [metric::PERF_CPU_MIGRATIONS_PER_SECOND]);
        assert!(m[metric::PERF_CPU_MIGRATIONS_PER_SECOND].contains("CPU 1"));
        fake.0.lock().unwrap().cpu_open_errors.clear();
        fake.advance(&[0, 1], 1.0, 1.0, rates);
        let s = c.sample(t0 + Duration::from_secs(1));
        assert!(s.missing.is_empty());
        assert!(close(s.values[metric::PERF_PAGE_FAULTS_PER_SECOND], 1e6), "CPU 1 only reopened now");
        fake.advance(&[0, 1], 1.0, 1.0, rates);
        let s = c.sample(t0 + Duration::from_secs(2));
        assert!(close(s.values[metric::PERF_PAGE_FAULTS_PER_SECOND], 2e6));
        assert!(close(s.values[metric::PERF_CPU_MIGRATIONS_PER_SECOND], 2e6));
    }

    #[test]
    fn no_cpus_means_missing_not_zero() {
        let mut c = PerfCollector::with_opener(vec![], Box::new(Fake::default()), Some(2));
        let s = c.sample(Instant::now());
        assert_eq!(s.missing.len(), METRICS.len());
        assert!(s.missing.iter().all(|m| !m.reason.is_empty()));
    }

    fn raw() -> impl Strategy<Value = RawCount> {
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(value, enabled_ns, running_ns)| RawCount {
            value,
            enabled_ns,
            running_ns,
        })
    }

    proptest! {
        #[test]
        fn deltas_are_never_negative_or_absurd(prev in raw(), cur in raw(), secs in 0.0f64..100.0) {
            if let Delta::Count(d) = counter_delta(prev, cur, secs) {
                prop_assert!(d.is_finite() && d >= 0.0);
                prop_assert!(d / secs <= MAX_EVENTS_PER_CPU_SECOND);
                prop_assert!(d >= cur.value.saturating_sub(prev.value) as f64 * (1.0 - 1e-12), "scaling only scales up");
            }
        }

        #[test]
        fn monotonic_unmultiplexed_counters_give_exact_deltas(
            v in 0u64..1 << 50, dv in 0u64..1 << 30, t in 0u64..1 << 50, dt in 1u64..1 << 40,
        ) {
            let prev = RawCount { value: v, enabled_ns: t, running_ns: t };
            let cur = RawCount { value: v + dv, enabled_ns: t + dt, running_ns: t + dt };
            prop_assert_eq!(counter_delta(prev, cur, 1.0), Delta::Count(dv as f64));
        }

        #[test]
        fn tick_metrics_are_finite_and_non_negative(
            counts in proptest::collection::vec((0usize..11, 0u32..4, 0.0f64..1e12), 0..40),
            secs in 0.001f64..100.0,
        ) {
            let mut d = TickDeltas::new();
            for (e, cpu, x) in counts {
                d.entry(PerfEvent::ALL[e]).or_default().insert(cpu, x);
            }
            for (name, v) in tick_metrics(&d, secs) {
                prop_assert!(v.is_finite() && v >= 0.0, "{} = {}", name, v);
            }
        }

        #[test]
        fn cpu_lists_round_trip(cpus in proptest::collection::btree_set(0u32..512, 0..64)) {
            let text = cpus.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
            prop_assert_eq!(parse_cpu_list(&text).unwrap(), cpus.into_iter().collect::<Vec<_>>());
        }
    }

    /// On the real machine: every metric is either a sane value or missing with a reason,
    /// and software events work wherever the process may open them.
    #[test]
    fn live_kernel_values_or_reasons() {
        let mut c = PerfCollector::system_wide();
        let t0 = Instant::now();
        c.sample(t0);
        std::thread::sleep(Duration::from_millis(200));
        let s = c.sample(Instant::now());
        let m = missing(&s);
        println!("perf on this machine: values {:?}\nmissing {m:#?}", s.values);
        for name in METRICS {
            match (s.values.get(name), m.get(name)) {
                (Some(v), None) => assert!(v.is_finite() && *v >= 0.0, "{name} = {v}"),
                (None, Some(why)) => assert!(!why.is_empty(), "{name} missing without reason"),
                other => panic!("{name}: neither exactly a value nor missing: {other:?}"),
            }
        }
        let probe = KernelOpener.open(PerfEvent::ContextSwitches, 0);
        match probe {
            Err(e) if OpenFailure::classify(&e) == OpenFailure::Denied => {
                println!("NOTE: not allowed to open system-wide software events ({e}); skipping that assertion");
            }
            _ => {
                for event in [PerfEvent::ContextSwitches, PerfEvent::CpuMigrations, PerfEvent::PageFaults] {
                    assert!(s.values.contains_key(event.metric()), "{} should have a value: {m:?}", event.metric());
                }
            }
        }
    }
}
