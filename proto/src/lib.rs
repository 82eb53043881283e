//! fitsched's gRPC contract (package `fitsched.v1`).
//!
//! The Rust code under `generated/` is produced from `fitsched/v1/fitsched.proto` and
//! committed; `tests/codegen.rs` regenerates it and fails on a difference, so building
//! fitsched needs no `protoc`.
//!
//! Besides the messages, this crate owns the few names every part must agree on: the
//! metric names agents put in windows ([`metric`]), the score scale ([`score`]), the
//! strategies ([`Strategy`]) and the pod annotation that picks one
//! ([`STRATEGY_ANNOTATION`]).

#[allow(clippy::all, clippy::pedantic, missing_docs)]
mod generated {
    include!("generated/fitsched.v1.rs");
}

pub use generated::*;

pub mod features;
pub mod pod;
pub mod quantity;
pub mod time;
pub use time::{now_unix_ms, unix_ms};
pub mod validate;

/// The encoded `FileDescriptorSet` of `fitsched.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("generated/fitsched_v1_descriptor.bin");

/// Pod annotation that chooses the scoring strategy (`spread`, `pack`, `balanced`).
pub const STRATEGY_ANNOTATION: &str = "fitsched.io/strategy";

/// A scoring strategy, as pods (the annotation, `PodFacts.strategy`), the scorer's
/// `--default-strategy`, the shim's `--profile-strategy` and the chart spell it.
///
/// ```
/// use fitsched_proto::Strategy;
/// assert_eq!("pack".parse::<Strategy>().unwrap(), Strategy::Pack);
/// assert_eq!(Strategy::Spread.as_str(), "spread");
/// assert!("Pack".parse::<Strategy>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    Spread,
    Pack,
    Balanced,
}

impl Strategy {
    /// Every strategy, in the order the chart's strategy profiles are listed.
    pub const ALL: [Strategy; 3] = [Strategy::Spread, Strategy::Pack, Strategy::Balanced];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Spread => "spread",
            Strategy::Pack => "pack",
            Strategy::Balanced => "balanced",
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A strategy name that is none of [`Strategy::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStrategy(pub String);

impl std::fmt::Display for UnknownStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown strategy {:?}: expected spread, pack or balanced", self.0)
    }
}

impl std::error::Error for UnknownStrategy {}

impl std::str::FromStr for Strategy {
    type Err = UnknownStrategy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::ALL.into_iter().find(|k| k.as_str() == s.trim()).ok_or_else(|| UnknownStrategy(s.to_owned()))
    }
}

/// Node label kube-scheduler and fitsched use for the node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// kube-scheduler's extender score scale.
pub mod score {
    /// `MaxExtenderPriority`: extender scores are integers in `0..=MAX`.
    pub const MAX: i32 = 10;
    /// The score that neither favours nor hides a node: given to every node by the shim
    /// when the scorer cannot answer.
    pub const NEUTRAL: i32 = 5;
}

/// Metric names agents put into [`NodeWindow::metrics`]. A name's unit is part of its
/// meaning; consumers look metrics up by these names only.
///
/// Rates are per second over the tick; shares are 0..1 of the tick's wall time.
/// Per-instance metrics (one network interface, one disk) are named
/// `<metric>:<instance>`, e.g. `net_rx_bytes_per_second:eth0`; the name without an
/// instance is the node total. A metric a collector cannot read is listed in
/// [`NodeWindow::missing`] under its own name, never sent as zero.
pub mod metric {
    // --- procfs: CPU -----------------------------------------------------------------
    /// Share of CPU time not idle (idle and iowait count as idle), from `/proc/stat`.
    pub const CPU_UTILIZATION: &str = "cpu_utilization";
    /// Share of CPU time in user mode (user + nice).
    pub const CPU_USER: &str = "cpu_user";
    /// Share of CPU time in kernel mode (system + irq + softirq).
    pub const CPU_SYSTEM: &str = "cpu_system";
    /// Share of CPU time in iowait.
    pub const CPU_IOWAIT: &str = "cpu_iowait";
    /// Share of CPU time stolen by the hypervisor.
    pub const CPU_STEAL: &str = "cpu_steal";
    /// Number of online CPUs.
    pub const CPU_COUNT: &str = "cpu_count";
    /// 1-minute load average divided by the CPU count.
    pub const LOAD1_PER_CPU: &str = "load1_per_cpu";
    /// Runnable tasks (`procs_running`) per CPU: the run-queue length.
    pub const RUN_QUEUE_PER_CPU: &str = "run_queue_per_cpu";
    /// Tasks blocked on I/O (`procs_blocked`).
    pub const PROCS_BLOCKED: &str = "procs_blocked";

    // --- procfs: memory --------------------------------------------------------------
    /// `MemTotal` in bytes.
    pub const MEMORY_TOTAL_BYTES: &str = "memory_total_bytes";
    /// `MemAvailable` in bytes.
    pub const MEMORY_AVAILABLE_BYTES: &str = "memory_available_bytes";
    /// `MemAvailable / MemTotal`.
    pub const MEMORY_AVAILABLE_RATIO: &str = "memory_available_ratio";
    /// Page cache (`Cached`) in bytes.
    pub const MEMORY_PAGE_CACHE_BYTES: &str = "memory_page_cache_bytes";
    /// Pages swapped in per second (`pswpin`, `/proc/vmstat`).
    pub const SWAP_IN_PAGES_PER_SECOND: &str = "swap_in_pages_per_second";
    /// Pages swapped out per second (`pswpout`).
    pub const SWAP_OUT_PAGES_PER_SECOND: &str = "swap_out_pages_per_second";
    /// Major page faults per second (`pgmajfault`).
    pub const MAJOR_FAULTS_PER_SECOND: &str = "major_faults_per_second";

    // --- procfs: pressure stall information ---------------------------------------------
    /// Share of the tick some task stalled on CPU (PSI `some`, from the `total` counter).
    pub const PSI_CPU_SOME: &str = "psi_cpu_some";
    /// Share of the tick some task stalled on memory.
    pub const PSI_MEMORY_SOME: &str = "psi_memory_some";
    /// Share of the tick all tasks stalled on memory.
    pub const PSI_MEMORY_FULL: &str = "psi_memory_full";
    /// Share of the tick some task stalled on I/O.
    pub const PSI_IO_SOME: &str = "psi_io_some";
    /// Share of the tick all tasks stalled on I/O.
    pub const PSI_IO_FULL: &str = "psi_io_full";

    // --- procfs: network (`/proc/net/dev`; totals exclude loopback) ----------------------
    pub const NET_RX_BYTES_PER_SECOND: &str = "net_rx_bytes_per_second";
    pub const NET_TX_BYTES_PER_SECOND: &str = "net_tx_bytes_per_second";
    pub const NET_RX_PACKETS_PER_SECOND: &str = "net_rx_packets_per_second";
    pub const NET_TX_PACKETS_PER_SECOND: &str = "net_tx_packets_per_second";
    /// Received plus transmitted packets dropped per second.
    pub const NET_DROPS_PER_SECOND: &str = "net_drops_per_second";
    /// Receive plus transmit errors per second.
    pub const NET_ERRORS_PER_SECOND: &str = "net_errors_per_second";

    // --- procfs: disks (`/proc/diskstats`, whole disks only) ----------------------------
    pub const DISK_READ_BYTES_PER_SECOND: &str = "disk_read_bytes_per_second";
    pub const DISK_WRITE_BYTES_PER_SECOND: &str = "disk_write_bytes_per_second";
    /// Share of the tick the busiest disk had I/O in flight (`io_ticks`); per disk with
    /// an instance.
    pub const DISK_UTILIZATION: &str = "disk_utilization";

    // --- perf events (system-wide, summed over CPUs) -------------------------------------
    pub const PERF_CYCLES_PER_SECOND: &str = "perf_cycles_per_second";
    pub const PERF_INSTRUCTIONS_PER_SECOND: &str = "perf_instructions_per_second";
    pub const PERF_CACHE_REFERENCES_PER_SECOND: &str = "perf_cache_references_per_second";
    pub const PERF_CACHE_MISSES_PER_SECOND: &str = "perf_cache_misses_per_second";
    pub const PERF_LLC_LOAD_MISSES_PER_SECOND: &str = "perf_llc_load_misses_per_second";
    pub const PERF_BRANCH_MISSES_PER_SECOND: &str = "perf_branch_misses_per_second";
    pub const PERF_STALLED_CYCLES_FRONTEND_PER_SECOND: &str = "perf_stalled_cycles_frontend_per_second";
    pub const PERF_STALLED_CYCLES_BACKEND_PER_SECOND: &str = "perf_stalled_cycles_backend_per_second";
    /// Instructions per cycle.
    pub const PERF_IPC: &str = "perf_ipc";
    /// Cycles per instruction.
    pub const PERF_CPI: &str = "perf_cpi";
    /// Last-level-cache load misses per thousand instructions.
    pub const PERF_LLC_MPKI: &str = "perf_llc_mpki";
    /// Branch misses per thousand instructions.
    pub const PERF_BRANCH_MPKI: &str = "perf_branch_mpki";
    /// Software events: always available where perf events are.
    pub const PERF_CONTEXT_SWITCHES_PER_SECOND: &str = "perf_context_switches_per_second";
    pub const PERF_CPU_MIGRATIONS_PER_SECOND: &str = "perf_cpu_migrations_per_second";
    pub const PERF_PAGE_FAULTS_PER_SECOND: &str = "perf_page_faults_per_second";

    // --- Intel PCM (pcm-sensor-server) ----------------------------------------------------
    pub const PCM_MEMORY_READ_BYTES_PER_SECOND: &str = "pcm_memory_read_bytes_per_second";
    pub const PCM_MEMORY_WRITE_BYTES_PER_SECOND: &str = "pcm_memory_write_bytes_per_second";
    /// L3 cache occupancy summed over sockets, bytes.
    pub const PCM_L3_OCCUPANCY_BYTES: &str = "pcm_l3_occupancy_bytes";
    /// L3 hit ratio, 0..1.
    pub const PCM_L3_HIT_RATIO: &str = "pcm_l3_hit_ratio";
    /// Mean UPI/QPI link utilisation, 0..1.
    pub const PCM_UPI_UTILIZATION: &str = "pcm_upi_utilization";
    /// Mean share of core time in C0 (active), and in C6 (index 6 of PCM's residencies;
    /// client CPUs with deeper states report those apart).
    pub const PCM_CORE_C0_RESIDENCY: &str = "pcm_core_c0_residency";
    pub const PCM_CORE_C6_RESIDENCY: &str = "pcm_core_c6_residency";
    /// Package and DRAM power, watts (energy per second).
    pub const PCM_PACKAGE_WATTS: &str = "pcm_package_watts";
    pub const PCM_DRAM_WATTS: &str = "pcm_dram_watts";

    // --- cgroup v2: the `kubepods` slices (load pods cause, and load they suffer) ------
    /// CPU the pods used, in cores.
    pub const KUBEPODS_CPU_CORES: &str = "kubepods_cpu_cores";
    /// Share of the tick the pods were CPU-throttled (`throttled_usec` delta / wall time,
    /// summed over pod cgroups; can exceed 1 with several throttled pods).
    pub const KUBEPODS_CPU_THROTTLED: &str = "kubepods_cpu_throttled";
    /// Throttled periods per second.
    pub const KUBEPODS_THROTTLED_PERIODS_PER_SECOND: &str = "kubepods_throttled_periods_per_second";
    /// Memory the pods use (`memory.current`), bytes.
    pub const KUBEPODS_MEMORY_BYTES: &str = "kubepods_memory_bytes";
    /// PSI of the kubepods cgroup: shares of the tick.
    pub const KUBEPODS_PSI_CPU_SOME: &str = "kubepods_psi_cpu_some";
    pub const KUBEPODS_PSI_MEMORY_SOME: &str = "kubepods_psi_memory_some";
    pub const KUBEPODS_PSI_MEMORY_FULL: &str = "kubepods_psi_memory_full";
    pub const KUBEPODS_PSI_IO_SOME: &str = "kubepods_psi_io_some";

    // --- the stream itself -------------------------------------------------------------
    /// Round-trip time from sending a window to its acknowledgement, seconds.
    pub const STREAM_RTT_SECONDS: &str = "stream_rtt_seconds";

    /// The instance-qualified name of a per-instance metric.
    ///
    /// ```
    /// use fitsched_proto::metric;
    /// assert_eq!(metric::instance(metric::NET_RX_BYTES_PER_SECOND, "eth0"), "net_rx_bytes_per_second:eth0");
    /// ```
    pub fn instance(metric: &str, instance: &str) -> String {
        format!("{metric}:{instance}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn descriptor_set_names_the_services() {
        // The descriptor is protobuf; the names' bytes appear verbatim in it, which is
        // enough to catch an empty or foreign file.
        let has = |needle: &str| FILE_DESCRIPTOR_SET.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(has("fitsched.v1") && has("Scorer") && has("Ingest"));
    }

    #[test]
    fn window_round_trips() {
        let mut w = NodeWindow { node_name: "n1".into(), sequence: 7, ..Default::default() };
        w.metrics.insert(metric::CPU_UTILIZATION.into(), MetricSummary { mean: 0.5, max: 0.9, ..Default::default() });
        let back = NodeWindow::decode(w.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back, w);
    }
}
