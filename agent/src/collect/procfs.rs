//! The procfs/PSI collector: CPU, memory and load from `/proc`, stall shares from
//! `/proc/pressure` (through the PSI tracker every pressure file shares, [`super::psi`]).
//!
//! Parsing is pure (`parse_*` take file contents) and apart from I/O
//! ([`ProcfsCollector::read`]), so the maths is tested on real samples without a
//! particular kernel.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use fitsched_proto::metric;

use super::psi::{PsiFile, PsiTracker};
use super::rates::Rates;
use super::{Collector, Sample};

/// Reason given for every PSI metric on kernels without `/proc/pressure`.
pub const NO_PSI_REASON: &str = "no /proc/pressure (kernel without PSI)";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("no aggregate `cpu` line")]
    NoCpuLine,
    #[error("malformed {what}: {line:?}")]
    Malformed { what: &'static str, line: String },
    #[error("no `{0}` entry")]
    MissingField(&'static str),
}

/// Cumulative CPU time of the aggregate `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    fn fields(&self) -> [u64; 8] {
        [self.user, self.nice, self.system, self.idle, self.iowait, self.irq, self.softirq, self.steal]
    }
}

/// What the collector uses from `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub cpu: CpuTimes,
    /// Number of `cpuN` lines, i.e. online CPUs.
    pub cpu_count: u32,
    /// Runnable tasks right now (`procs_running`), since Linux 2.5.45.
    pub procs_running: Option<u64>,
    /// Tasks blocked on I/O right now (`procs_blocked`).
    pub procs_blocked: Option<u64>,
}

pub fn parse_stat(contents: &str) -> Result<ProcStat, ParseError> {
    let mut cpu = None;
    let mut cpu_count = 0u32;
    let (mut procs_running, mut procs_blocked) = (None, None);
    for line in contents.lines() {
        let mut tokens = line.split_ascii_whitespace();
        let Some(label) = tokens.next() else { continue };
        if label == "procs_running" || label == "procs_blocked" {
            let value = tokens
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| ParseError::Malformed { what: "procs line", line: line.to_owned() })?;
            *(if label == "procs_running" { &mut procs_running } else { &mut procs_blocked }) = Some(value);
        } else if label == "cpu" {
            let values = tokens
                .map(str::parse::<u64>)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| ParseError::Malformed { what: "cpu line", line: line.to_owned() })?;
            // Kernels before 2.6.11 stop after iowait/irq/softirq; the first four are always there.
            if values.len() < 4 {
                return Err(ParseError::Malformed { what: "cpu line", line: line.to_owned() });
            }
            let at = |i: usize| values.get(i).copied().unwrap_or(0);
            // guest and guest_nice (fields 9 and 10) are already counted in user and nice.
            cpu = Some(CpuTimes {
                user: at(0),
                nice: at(1),
                system: at(2),
                idle: at(3),
                iowait: at(4),
                irq: at(5),
                softirq: at(6),
                steal: at(7),
            });
        } else if label.strip_prefix("cpu").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
            cpu_count += 1;
        }
    }
    Ok(ProcStat { cpu: cpu.ok_or(ParseError::NoCpuLine)?, cpu_count, procs_running, procs_blocked })
}

/// Busy and iowait shares of the CPU time between two readings, or `None` when no time
/// passed or a counter went backwards (wrap, reset, or the kernel's non-monotonic iowait).
pub fn cpu_shares(prev: &CpuTimes, cur: &CpuTimes) -> Option<CpuShares> {
    let mut deltas = [0u64; 8];
    for (d, (p, c)) in deltas.iter_mut().zip(prev.fields().into_iter().zip(cur.fields())) {
        *d = c.checked_sub(p)?;
    }
    let total: u64 = deltas.iter().sum();
    if total == 0 {
        return None;
    }
    let [user, nice, system, idle, iowait, irq, softirq, steal] = deltas.map(|d| d as f64);
    let total = total as f64;
    Some(CpuShares {
        utilization: (total - (idle + iowait)) / total,
        user: (user + nice) / total,
        system: (system + irq + softirq) / total,
        iowait: iowait / total,
        steal: steal / total,
    })
}

/// Shares of CPU time by mode between two readings; each in 0..1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuShares {
    pub utilization: f64,
    pub user: f64,
    pub system: f64,
    pub iowait: f64,
    pub steal: f64,
}

/// What the collector uses from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    pub total_bytes: u64,
    /// `MemAvailable` exists since Linux 3.14.
    pub available_bytes: Option<u64>,
    /// `Cached`: the page cache.
    pub cached_bytes: Option<u64>,
}

pub fn parse_meminfo(contents: &str) -> Result<MemInfo, ParseError> {
    let mut total = None;
    let mut available = None;
    let mut cached = None;
    for line in contents.lines() {
        let Some((key, rest)) = line.split_once(':') else { continue };
        let slot = match key.trim() {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut available,
            "Cached" => &mut cached,
            _ => continue,
        };
        let mut tokens = rest.split_ascii_whitespace();
        let value: u64 = tokens
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ParseError::Malformed { what: "meminfo line", line: line.to_owned() })?;
        let multiplier = match tokens.next() {
            Some("kB") => 1024,
            None => 1,
            Some(_) => return Err(ParseError::Malformed { what: "meminfo unit", line: line.to_owned() }),
        };
        *slot = Some(value.saturating_mul(multiplier));
    }
    Ok(MemInfo {
        total_bytes: total.ok_or(ParseError::MissingField("MemTotal"))?,
        available_bytes: available,
        cached_bytes: cached,
    })
}

/// The `/proc/vmstat` counters the collector turns into rates, and the metric each feeds.
pub const VMSTAT: [(&str, &str); 3] = [
    ("pswpin", metric::SWAP_IN_PAGES_PER_SECOND),
    ("pswpout", metric::SWAP_OUT_PAGES_PER_SECOND),
    ("pgmajfault", metric::MAJOR_FAULTS_PER_SECOND),
];

/// The [`VMSTAT`] counters present in `/proc/vmstat`, by name.
pub fn parse_vmstat(contents: &str) -> Vec<(&str, u64)> {
    contents
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            let name = VMSTAT.iter().find(|(k, _)| *k == key)?.0;
            Some((name, value.trim().parse().ok()?))
        })
        .collect()
}

/// The 1-minute load average from `/proc/loadavg`.
pub fn parse_loadavg(contents: &str) -> Result<f64, ParseError> {
    contents
        .split_ascii_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| ParseError::Malformed { what: "loadavg", line: contents.trim().to_owned() })
}

/// The PSI resources and the metrics each one feeds (`some`, `full`).
const PSI: [PsiFile; 3] = [
    PsiFile { resource: "cpu", some: metric::PSI_CPU_SOME, full: None },
    PsiFile { resource: "memory", some: metric::PSI_MEMORY_SOME, full: Some(metric::PSI_MEMORY_FULL) },
    PsiFile { resource: "io", some: metric::PSI_IO_SOME, full: Some(metric::PSI_IO_FULL) },
];

/// One tick's file contents, or why a file could not be read.
#[derive(Debug, Clone)]
pub struct RawReadings {
    pub stat: Result<String, String>,
    pub meminfo: Result<String, String>,
    pub vmstat: Result<String, String>,
    pub loadavg: Result<String, String>,
    /// `None` when the kernel has no `/proc/pressure`; else cpu, memory, io in that order.
    pub pressure: Option<[Result<String, String>; 3]>,
}

/// Samples `/proc` and keeps the previous counters for rates.
#[derive(Debug)]
pub struct ProcfsCollector {
    root: PathBuf,
    prev_cpu: Option<CpuTimes>,
    psi: PsiTracker,
    vmstat: Rates,
}

impl ProcfsCollector {
    pub fn new(proc_root: impl Into<PathBuf>) -> Self {
        Self { root: proc_root.into(), prev_cpu: None, psi: PsiTracker::default(), vmstat: Rates::default() }
    }

    /// Reads the files. Blocking, but procfs reads are served from kernel memory in
    /// microseconds, so the tick task does them inline.
    pub fn read(&self) -> RawReadings {
        let read = |path: &Path| std::fs::read_to_string(path).map_err(|e| super::describe_read_error(path, &e, None));
        let pressure_dir = self.root.join("pressure");
        let pressure = match std::fs::metadata(&pressure_dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            _ => Some(PSI.map(|f| read(&pressure_dir.join(f.resource)))),
        };
        RawReadings {
            stat: read(&self.root.join("stat")),
            meminfo: read(&self.root.join("meminfo")),
            vmstat: read(&self.root.join("vmstat")),
            loadavg: read(&self.root.join("loadavg")),
            pressure,
        }
    }

    /// Turns one tick's readings into a sample, updating the previous counters.
    pub fn compute(&mut self, raw: RawReadings, now: Instant) -> Sample {
        let mut sample = Sample::default();
        let cpu_count = self.cpu(raw.stat, &mut sample);
        load(raw.loadavg, cpu_count, &mut sample);
        memory(raw.meminfo, &mut sample);
        self.vmstat(raw.vmstat, now, &mut sample);
        match raw.pressure {
            None => self.psi.missing(&PSI, NO_PSI_REASON, &mut sample),
            Some(files) => self.psi.compute(&PSI, files, |r| format!("/proc/pressure/{r}"), now, &mut sample),
        }
        sample
    }

    /// CPU shares, run queue and blocked tasks from `/proc/stat`; the CPU count, when known.
    fn cpu(&mut self, stat: Result<String, String>, sample: &mut Sample) -> Option<u32> {
        let stat = stat.and_then(|s| parse_stat(&s).map_err(|e| format!("cannot parse /proc/stat: {e}")));
        let mut cpu_count = None;
        match stat {
            Ok(stat) => {
                if let Some(prev) = self.prev_cpu
                    && let Some(shares) = cpu_shares(&prev, &stat.cpu)
                {
                    sample.set(metric::CPU_UTILIZATION, shares.utilization);
                    sample.set(metric::CPU_USER, shares.user);
                    sample.set(metric::CPU_SYSTEM, shares.system);
                    sample.set(metric::CPU_IOWAIT, shares.iowait);
                    sample.set(metric::CPU_STEAL, shares.steal);
                }
                match stat.procs_running {
                    Some(running) if stat.cpu_count > 0 => {
                        sample.set(metric::RUN_QUEUE_PER_CPU, running as f64 / f64::from(stat.cpu_count));
                    }
                    _ => sample.set_missing(metric::RUN_QUEUE_PER_CPU, "no procs_running or cpuN lines in /proc/stat"),
                }
                match stat.procs_blocked {
                    Some(blocked) => sample.set(metric::PROCS_BLOCKED, blocked as f64),
                    None => sample.set_missing(metric::PROCS_BLOCKED, "no procs_blocked line in /proc/stat"),
                }
                self.prev_cpu = Some(stat.cpu);
                if stat.cpu_count > 0 {
                    sample.set(metric::CPU_COUNT, f64::from(stat.cpu_count));
                    cpu_count = Some(stat.cpu_count);
                } else {
                    sample.set_missing(metric::CPU_COUNT, "no cpuN lines in /proc/stat");
                    sample.set_missing(metric::LOAD1_PER_CPU, "no cpuN lines in /proc/stat");
                }
            }
            Err(reason) => {
                self.prev_cpu = None;
                for name in [
                    metric::CPU_UTILIZATION,
                    metric::CPU_USER,
                    metric::CPU_SYSTEM,
                    metric::CPU_IOWAIT,
                    metric::CPU_STEAL,
                    metric::CPU_COUNT,
                    metric::LOAD1_PER_CPU,
                    metric::RUN_QUEUE_PER_CPU,
                    metric::PROCS_BLOCKED,
                ] {
                    sample.set_missing(name, reason.clone());
                }
            }
        }
        cpu_count
    }

    /// Swap and fault rates from `/proc/vmstat` counters.
    fn vmstat(&mut self, vmstat: Result<String, String>, now: Instant, sample: &mut Sample) {
        match vmstat {
            Ok(contents) => {
                let counters = parse_vmstat(&contents);
                for (key, name) in VMSTAT {
                    match counters.iter().find(|(k, _)| *k == key) {
                        Some(&(_, value)) => {
                            if let Some(rate) = self.vmstat.rate(key, value, now) {
                                sample.set(name, rate);
                            }
                        }
                        None => sample.set_missing(name, format!("no {key} in /proc/vmstat")),
                    }
                }
            }
            Err(reason) => {
                self.vmstat = Rates::default();
                for (_, name) in VMSTAT {
                    sample.set_missing(name, reason.clone());
                }
            }
        }
    }
}

/// The 1-minute load per CPU from `/proc/loadavg` (needs the CPU count).
fn load(loadavg: Result<String, String>, cpu_count: Option<u32>, sample: &mut Sample) {
    if let Some(count) = cpu_count {
        match loadavg.and_then(|s| parse_loadavg(&s).map_err(|e| format!("cannot parse /proc/loadavg: {e}"))) {
            Ok(load1) => sample.set(metric::LOAD1_PER_CPU, load1 / f64::from(count)),
            Err(reason) => sample.set_missing(metric::LOAD1_PER_CPU, reason),
        }
    }
}

/// Total, available and page-cache memory from `/proc/meminfo`.
fn memory(meminfo: Result<String, String>, sample: &mut Sample) {
    match meminfo.and_then(|s| parse_meminfo(&s).map_err(|e| format!("cannot parse /proc/meminfo: {e}"))) {
        Ok(mem) => {
            sample.set(metric::MEMORY_TOTAL_BYTES, mem.total_bytes as f64);
            match mem.cached_bytes {
                Some(cached) => sample.set(metric::MEMORY_PAGE_CACHE_BYTES, cached as f64),
                None => sample.set_missing(metric::MEMORY_PAGE_CACHE_BYTES, "no Cached line in /proc/meminfo"),
            }
            match mem.available_bytes {
                Some(available) => {
                    sample.set(metric::MEMORY_AVAILABLE_BYTES, available as f64);
                    if mem.total_bytes > 0 {
                        let ratio = (available as f64 / mem.total_bytes as f64).clamp(0.0, 1.0);
                        sample.set(metric::MEMORY_AVAILABLE_RATIO, ratio);
                    } else {
                        sample.set_missing(metric::MEMORY_AVAILABLE_RATIO, "MemTotal is 0 in /proc/meminfo");
                    }
                }
                None => {
                    let reason = "no MemAvailable in /proc/meminfo (kernel older than 3.14)";
                    sample.set_missing(metric::MEMORY_AVAILABLE_BYTES, reason);
                    sample.set_missing(metric::MEMORY_AVAILABLE_RATIO, reason);
                }
            }
        }
        Err(reason) => {
            for name in [
                metric::MEMORY_TOTAL_BYTES,
                metric::MEMORY_AVAILABLE_BYTES,
                metric::MEMORY_AVAILABLE_RATIO,
                metric::MEMORY_PAGE_CACHE_BYTES,
            ] {
                sample.set_missing(name, reason.clone());
            }
        }
    }
}

impl Collector for ProcfsCollector {
    fn sample(&mut self, now: Instant) -> Sample {
        let raw = self.read();
        self.compute(raw, now)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::super::psi::{Pressure, parse_pressure};
    use super::*;

    // Captured from a real machine (2 CPUs, Linux 6.18).
    const STAT: &str = include_str!("testdata/stat");
    const MEMINFO: &str = include_str!("testdata/meminfo");
    const LOADAVG: &str = include_str!("testdata/loadavg");
    const PSI_CPU: &str = include_str!("testdata/pressure_cpu");
    const PSI_MEMORY: &str = include_str!("testdata/pressure_memory");
    const PSI_IO: &str = include_str!("testdata/pressure_io");

    // Kernels before 5.13 print no `full` line for cpu.
    const PSI_CPU_OLD: &str = "some avg10=1.50 avg60=0.80 avg300=0.20 total=123456\n";

    const VMSTAT_SAMPLE: &str = include_str!("testdata/vmstat");

    #[test]
    fn parses_the_vmstat_counters_it_needs() {
        let counters = parse_vmstat(VMSTAT_SAMPLE);
        for (key, _) in VMSTAT {
            assert!(counters.iter().any(|(k, _)| *k == key), "{key} missing from this machine's /proc/vmstat");
        }
        assert_eq!(parse_vmstat("pswpin 5\npgmajfault x\nother 3\n"), vec![("pswpin", 5)]);
    }

    #[test]
    fn cpu_modes_and_run_queue() {
        let stat = "cpu 100 0 50 800 50 0 0 0 0 0\ncpu0 1 1 1 1\ncpu1 1 1 1 1\nprocs_running 3\nprocs_blocked 1\n";
        let parsed = parse_stat(stat).unwrap();
        assert_eq!((parsed.procs_running, parsed.procs_blocked, parsed.cpu_count), (Some(3), Some(1), 2));
        let later = CpuTimes { user: 200, system: 100, idle: 1600, iowait: 70, steal: 30, ..parsed.cpu };
        let shares = cpu_shares(&parsed.cpu, &later).unwrap();
        let total = 100.0 + 50.0 + 800.0 + 20.0 + 30.0;
        assert!((shares.user - 100.0 / total).abs() < 1e-12);
        assert!((shares.steal - 30.0 / total).abs() < 1e-12);
        assert!((shares.user + shares.system + shares.iowait + shares.steal + 800.0 / total - 1.0).abs() < 1e-12);
    }

    fn fixtures() -> RawReadings {
        RawReadings {
            stat: Ok(STAT.into()),
            meminfo: Ok(MEMINFO.into()),
            vmstat: Ok(VMSTAT_SAMPLE.into()),
            loadavg: Ok(LOADAVG.into()),
            pressure: Some([Ok(PSI_CPU.into()), Ok(PSI_MEMORY.into()), Ok(PSI_IO.into())]),
        }
    }

    fn pressure_text(some: u64, full: Option<u64>) -> String {
        let mut s = format!("some avg10=0.00 avg60=0.00 avg300=0.00 total={some}\n");
        if let Some(full) = full {
            s.push_str(&format!("full avg10=0.00 avg60=0.00 avg300=0.00 total={full}\n"));
        }
        s
    }

    fn names(sample: &Sample) -> Vec<&str> {
        sample.missing.iter().map(|m| m.name.as_str()).collect()
    }

    #[test]
    fn parses_real_stat() {
        let stat = parse_stat(STAT).unwrap();
        assert_eq!(stat.cpu_count, 2);
        assert_eq!(
            stat.cpu,
            CpuTimes { user: 8578, nice: 0, system: 2791, idle: 105120, iowait: 332, irq: 0, softirq: 22, steal: 17 }
        );
    }

    #[test]
    fn parses_real_meminfo_loadavg_and_pressure() {
        let mem = parse_meminfo(MEMINFO).unwrap();
        assert_eq!(mem.total_bytes, 24_684_084 * 1024);
        assert_eq!(mem.available_bytes, Some(24_445_976 * 1024));
        assert!((parse_loadavg(LOADAVG).unwrap() - 0.04).abs() < 1e-9);
        assert_eq!(parse_pressure(PSI_CPU).unwrap(), Pressure { some_total_us: 6_530_257, full_total_us: Some(0) });
        assert_eq!(parse_pressure(PSI_MEMORY).unwrap(), Pressure { some_total_us: 0, full_total_us: Some(0) });
        assert_eq!(
            parse_pressure(PSI_IO).unwrap(),
            Pressure { some_total_us: 2_811_558, full_total_us: Some(2_639_331) }
        );
        assert_eq!(parse_pressure(PSI_CPU_OLD).unwrap(), Pressure { some_total_us: 123_456, full_total_us: None });
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_stat("intr 1 2 3\n"), Err(ParseError::NoCpuLine));
        assert!(parse_stat("cpu 1 2 x 4\n").is_err());
        assert!(parse_stat("cpu 1 2\n").is_err());
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), Err(ParseError::MissingField("MemTotal")));
        assert!(parse_meminfo("MemTotal: lots\n").is_err());
        assert!(parse_loadavg("").is_err());
        assert!(parse_loadavg("NaN 1 1").is_err());
        assert!(parse_pressure("full avg10=0 total=1\n").is_err());
        assert!(parse_pressure("some avg10=0.00\n").is_err());
    }

    #[test]
    fn old_stat_without_steal_fields() {
        let stat = parse_stat("cpu 10 20 30 40\ncpu0 10 20 30 40\n").unwrap();
        assert_eq!(stat.cpu.idle, 40);
        assert_eq!(stat.cpu.steal, 0);
        assert_eq!(stat.cpu_count, 1);
    }

    #[test]
    fn cpu_shares_count_idle_and_iowait_as_idle() {
        let prev = CpuTimes { user: 100, idle: 100, ..Default::default() };
        let cur = CpuTimes { user: 130, system: 10, idle: 150, iowait: 10, ..prev };
        let s = cpu_shares(&prev, &cur).unwrap();
        // delta total 100 = 30 user + 10 system + 50 idle + 10 iowait.
        assert!((s.utilization - 0.4).abs() < 1e-12);
        assert!((s.iowait - 0.1).abs() < 1e-12);
        assert_eq!(cpu_shares(&cur, &prev), None, "counters went backwards");
        assert_eq!(cpu_shares(&cur, &cur), None, "no time passed");
    }

    #[test]
    fn first_tick_has_gauges_but_no_rates() {
        let mut c = ProcfsCollector::new("/nonexistent");
        let s = c.compute(fixtures(), Instant::now());
        assert!(s.missing.is_empty(), "{:?}", s.missing);
        let expect: BTreeMap<&str, f64> = [
            (metric::CPU_COUNT, 2.0),
            (metric::LOAD1_PER_CPU, 0.02),
            (metric::MEMORY_TOTAL_BYTES, 24_684_084.0 * 1024.0),
            (metric::MEMORY_AVAILABLE_BYTES, 24_445_976.0 * 1024.0),
            (metric::MEMORY_AVAILABLE_RATIO, 24_445_976.0 / 24_684_084.0),
            (metric::MEMORY_PAGE_CACHE_BYTES, 16_128.0 * 1024.0),
            (metric::RUN_QUEUE_PER_CPU, 0.5),
            (metric::PROCS_BLOCKED, 0.0),
        ]
        .into();
        assert_eq!(s.values.len(), expect.len(), "{:?}", s.values);
        for (name, want) in expect {
            assert!((s.values[name] - want).abs() < 1e-9, "{name}: {} != {want}", s.values[name]);
        }
    }

    #[test]
    fn second_tick_has_rates_from_counter_deltas() {
        let mut c = ProcfsCollector::new("/nonexistent");
        let t0 = Instant::now();
        c.compute(fixtures(), t0);

        let mut raw = fixtures();
        // +100 ticks: 60 user, 30 idle, 10 iowait.
        raw.stat = Ok(STAT.replacen("cpu  8578 0 2791 105120 332", "cpu  8638 0 2791 105150 342", 1));
        // Over 2 s: cpu some +500 ms, memory some +1 s / full +200 ms, io some +3 s (clamped).
        raw.pressure = Some([
            Ok(pressure_text(6_530_257 + 500_000, Some(0))),
            Ok(pressure_text(1_000_000, Some(200_000))),
            Ok(pressure_text(2_811_558 + 3_000_000, Some(2_639_331))),
        ]);
        let s = c.compute(raw, t0 + Duration::from_secs(2));
        let v = |name: &str| s.values.get(name).copied().unwrap_or(f64::NAN);
        assert!((v(metric::CPU_UTILIZATION) - 0.6).abs() < 1e-12);
        assert!((v(metric::CPU_IOWAIT) - 0.1).abs() < 1e-12);
        assert!((v(metric::PSI_CPU_SOME) - 0.25).abs() < 1e-12);
        assert!((v(metric::PSI_MEMORY_SOME) - 0.5).abs() < 1e-12);
        assert!((v(metric::PSI_MEMORY_FULL) - 0.1).abs() < 1e-12);
        assert_eq!(v(metric::PSI_IO_SOME), 1.0);
        assert_eq!(v(metric::PSI_IO_FULL), 0.0);
        assert!(s.missing.is_empty());
    }

    #[test]
    fn counter_reset_skips_the_rate_for_one_tick() {
        let mut c = ProcfsCollector::new("/nonexistent");
        let t0 = Instant::now();
        c.compute(fixtures(), t0);
        let mut raw = fixtures();
        raw.stat = Ok("cpu  1 0 1 1 0 0 0 0 0 0\ncpu0 1 0 1 1 0 0 0 0 0 0\nprocs_running 1\nprocs_blocked 0\n".into());
        raw.vmstat = Ok("pswpin 0\npswpout 0\npgmajfault 0\n".into());
        raw.pressure = Some([Ok(pressure_text(1, Some(0))), Ok(PSI_MEMORY.into()), Ok(PSI_IO.into())]);
        let s = c.compute(raw, t0 + Duration::from_secs(1));
        assert!(!s.values.contains_key(metric::CPU_UTILIZATION));
        assert!(!s.values.contains_key(metric::PSI_CPU_SOME));
        assert_eq!(s.values[metric::PSI_MEMORY_SOME], 0.0, "unchanged counters are a real zero");
        assert!(s.missing.is_empty(), "a reset is not a missing collector");
        // The counters after the reset are the new baseline.
        let s = c.compute(fixtures(), t0 + Duration::from_secs(2));
        assert!(s.values.contains_key(metric::CPU_UTILIZATION));
        assert!(s.values.contains_key(metric::PSI_CPU_SOME));
    }

    #[test]
    fn kernel_without_psi_reports_missing_not_zero() {
        let mut c = ProcfsCollector::new("/nonexistent");
        let t0 = Instant::now();
        for i in 0..2 {
            let mut raw = fixtures();
            raw.pressure = None;
            let s = c.compute(raw, t0 + Duration::from_secs(i));
            assert_eq!(
                names(&s),
                [
                    metric::PSI_CPU_SOME,
                    metric::PSI_MEMORY_SOME,
                    metric::PSI_MEMORY_FULL,
                    metric::PSI_IO_SOME,
                    metric::PSI_IO_FULL
                ]
            );
            assert!(s.missing.iter().all(|m| m.reason == NO_PSI_REASON));
            assert!(s.values.keys().all(|k| !k.starts_with("psi_")));
        }
    }

    #[test]
    fn cpu_pressure_without_full_line_is_fine_but_memory_without_it_is_missing() {
        let mut c = ProcfsCollector::new("/nonexistent");
        let t0 = Instant::now();
        let old = || Some([Ok(PSI_CPU_OLD.to_owned()), Ok(pressure_text(10, None)), Ok(PSI_IO.to_owned())]);
        let mut raw = fixtures();
        raw.pressure = old();
        c.compute(raw, t0);
        let mut raw = fixtures();
        raw.pressure = old();
        let s = c.compute(raw, t0 + Duration::from_secs(1));
        assert_eq!(names(&s), [metric::PSI_MEMORY_FULL]);
        assert!(s.missing[0].reason.contains("no `full` line"));
        assert_eq!(s.values[metric::PSI_CPU_SOME], 0.0);
        assert_eq!(s.values[metric::PSI_MEMORY_SOME], 0.0);
    }

    #[test]
    fn unreadable_files_become_missing_entries() {
        let mut c = ProcfsCollector::new("/nonexistent");
        let raw = RawReadings {
            stat: Err("cannot read /proc/stat: gone".into()),
            meminfo: Ok("garbage".into()),
            vmstat: Err("cannot read /proc/vmstat: gone".into()),
            loadavg: Ok(LOADAVG.into()),
            pressure: Some([Err("cannot read cpu".into()), Ok(PSI_MEMORY.into()), Ok(PSI_IO.into())]),
        };
        let s = c.compute(raw, Instant::now());
        assert!(s.values.is_empty(), "{:?}", s.values);
        let missing = names(&s);
        for name in [
            metric::CPU_UTILIZATION,
            metric::CPU_COUNT,
            metric::LOAD1_PER_CPU,
            metric::MEMORY_TOTAL_BYTES,
            metric::MEMORY_AVAILABLE_RATIO,
            metric::PSI_CPU_SOME,
        ] {
            assert!(missing.contains(&name), "{name} not in {missing:?}");
        }
        assert!(!missing.contains(&metric::PSI_MEMORY_SOME));
    }

    #[test]
    fn reads_a_proc_tree_from_disk() {
        let root = std::env::temp_dir().join(format!("fitsched-agent-procfs-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        for (name, contents) in [("stat", STAT), ("meminfo", MEMINFO), ("loadavg", LOADAVG), ("vmstat", VMSTAT_SAMPLE)]
        {
            std::fs::write(root.join(name), contents).unwrap();
        }
        let mut c = ProcfsCollector::new(&root);
        let s = c.sample(Instant::now());
        assert_eq!(s.values[metric::CPU_COUNT], 2.0);
        assert_eq!(s.missing.len(), 5);
        assert!(s.missing.iter().all(|m| m.reason == NO_PSI_REASON));

        std::fs::create_dir_all(root.join("pressure")).unwrap();
        for (name, contents) in [("cpu", PSI_CPU), ("memory", PSI_MEMORY), ("io", PSI_IO)] {
            std::fs::write(root.join("pressure").join(name), contents).unwrap();
        }
        let s = c.sample(Instant::now());
        assert!(s.missing.is_empty(), "{:?}", s.missing);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn live_proc_yields_sane_values() {
        if !Path::new("/proc/stat").exists() {
            return;
        }
        let mut c = ProcfsCollector::new("/proc");
        let t0 = Instant::now();
        c.sample(t0);
        std::thread::sleep(Duration::from_millis(50));
        let s = c.sample(Instant::now());
        assert!(s.values[metric::CPU_COUNT] >= 1.0);
        for (name, v) in &s.values {
            assert!(v.is_finite() && *v >= 0.0, "{name} = {v}");
        }
    }
}
