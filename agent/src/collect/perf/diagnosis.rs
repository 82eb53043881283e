//! Why an event could not be opened, in words an operator can act on (no PMU in a VM,
//! `perf_event_paranoid` without `CAP_PERFMON`, an event the CPU lacks), and the host
//! facts those words need. Pure, but for reading the two files.

use std::io;

use super::{PERF_EVENT_PARANOID, PerfEvent};

/// Why `perf_event_open` failed, as far as the collector's reaction is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenFailure {
    /// The event does not exist here: no PMU, or this PMU lacks it (ENOENT, EOPNOTSUPP,
    /// EINVAL, ENXIO — the set `perf stat` shows as `<not supported>`).
    Unsupported,
    /// EACCES/EPERM: perf_event_paranoid, a missing capability, or seccomp.
    Denied,
    /// ENOSYS: a kernel without perf events.
    NoPerfEvents,
    /// EMFILE/ENFILE: one descriptor per event and CPU exceeded the limit.
    TooManyFiles,
    /// ENODEV, EBUSY, EINTR, EAGAIN: the CPU went offline meanwhile or the PMU is busy;
    /// worth another try next tick.
    Transient,
    /// Anything else; not retried, so an unexpected error does not cost syscalls every tick.
    Other,
}

impl OpenFailure {
    pub fn classify(err: &io::Error) -> Self {
        match err.raw_os_error() {
            Some(libc::ENOENT | libc::EOPNOTSUPP | libc::EINVAL | libc::ENXIO) => OpenFailure::Unsupported,
            Some(libc::EACCES | libc::EPERM) => OpenFailure::Denied,
            Some(libc::ENOSYS) => OpenFailure::NoPerfEvents,
            Some(libc::EMFILE | libc::ENFILE) => OpenFailure::TooManyFiles,
            Some(libc::ENODEV | libc::EBUSY | libc::EINTR | libc::EAGAIN) => OpenFailure::Transient,
            _ => OpenFailure::Other,
        }
    }
}

/// What the explanation of an open failure depends on besides the error itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReasonContext {
    /// `/proc/sys/kernel/perf_event_paranoid`, if readable.
    pub paranoid: Option<i64>,
    /// Whether any PMU event could be opened on any CPU; if none could, "not supported"
    /// means there is no PMU at all.
    pub pmu_seen: bool,
    /// Events × CPUs: the descriptors the collector needs.
    pub descriptors: usize,
}

/// Why `event` cannot be counted, as a sentence fragment following the event's name:
/// `hardware event INSTRUCTIONS` + ` not supported: no PMU (VM?)`.
pub fn failure_cause(event: PerfEvent, failure: OpenFailure, cpu: u32, err: &str, ctx: &ReasonContext) -> String {
    match failure {
        OpenFailure::Unsupported if event.needs_pmu() && !ctx.pmu_seen => "not supported: no PMU (VM?)".to_owned(),
        OpenFailure::Unsupported if event.needs_pmu() => format!("not supported by the PMU of CPU {cpu} ({err})"),
        OpenFailure::Unsupported => format!("not supported by this kernel ({err})"),
        OpenFailure::Denied => match ctx.paranoid {
            Some(p) if p > 0 => {
                format!("denied: perf_event_paranoid={p} forbids system-wide events without CAP_PERFMON")
            }
            Some(p) => format!(
                "denied ({err}) although perf_event_paranoid={p}: perf_event_open blocked by seccomp or an LSM?"
            ),
            None => format!("denied ({err}): system-wide events need CAP_PERFMON ({PERF_EVENT_PARANOID} unreadable)"),
        },
        OpenFailure::NoPerfEvents => format!("unavailable: kernel without perf events ({err})"),
        OpenFailure::TooManyFiles => format!(
            "cannot be opened: out of file descriptors ({err}); perf needs one per event and CPU ({}), raise the nofile limit",
            ctx.descriptors
        ),
        OpenFailure::Transient | OpenFailure::Other => format!("cannot be opened on CPU {cpu}: {err}"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed CPU list {0:?}")]
pub struct CpuListError(pub String);

/// Parses a kernel CPU list (`0-3,6`, or empty) into sorted, distinct CPU numbers.
pub fn parse_cpu_list(contents: &str) -> Result<Vec<u32>, CpuListError> {
    // Far above any NR_CPUS; bounds the work a corrupt file can cause.
    const LIMIT: usize = 1 << 16;
    let bad = || CpuListError(contents.trim().to_owned());
    let mut cpus = Vec::new();
    for part in contents.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo, hi),
            None => (part, part),
        };
        let lo: u32 = lo.trim().parse().map_err(|_| bad())?;
        let hi: u32 = hi.trim().parse().map_err(|_| bad())?;
        if hi < lo || (hi - lo) as usize >= LIMIT || cpus.len() + ((hi - lo) as usize) >= LIMIT {
            return Err(bad());
        }
        cpus.extend(lo..=hi);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Reads `/proc/sys/kernel/perf_event_paranoid`.
pub fn read_paranoid() -> Option<i64> {
    std::fs::read_to_string(PERF_EVENT_PARANOID).ok()?.trim().parse().ok()
}
