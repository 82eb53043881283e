//! fitsched's gRPC contract (package `fitsched.v1`).
//!
//! The Rust code under `generated/` is produced from `fitsched/v1/fitsched.proto` and
//! committed; `tests/codegen.rs` regenerates it and fails on a difference, so building
//! fitsched needs no `protoc`.
//!
//! Besides the messages, this crate owns the few names every part must agree on: the
//! metric names agents put in windows ([`metric`]), the score scale ([`score`]) and the
//! pod annotation that picks a strategy ([`STRATEGY_ANNOTATION`]).

#[allow(clippy::all, clippy::pedantic, missing_docs)]
mod generated {
    include!("generated/fitsched.v1.rs");
}

pub use generated::*;

/// The encoded `FileDescriptorSet` of `fitsched.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("generated/fitsched_v1_descriptor.bin");

/// Pod annotation that chooses the scoring strategy (`spread`, `pack`, `balanced`).
pub const STRATEGY_ANNOTATION: &str = "fitsched.io/strategy";

/// Node label kube-scheduler and fitsched use for the node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// kube-scheduler's extender score scale.
pub mod score {
    /// `MaxExtenderPriority`: extender scores are integers in `0..=MAX`.
    pub const MAX: i32 = 10;
    /// The score that neither favours nor hides a node: given to stale and unknown nodes
    /// by the scorer, and to every node by the shim when the scorer cannot answer.
    pub const NEUTRAL: i32 = 5;
}

/// Metric names agents put into [`NodeWindow::metrics`]. A name's unit is part of its
/// meaning; consumers look metrics up by these names only.
pub mod metric {
    /// Share of CPU time not idle over the tick, 0..1 (from `/proc/stat`).
    pub const CPU_UTILIZATION: &str = "cpu_utilization";
    /// Share of CPU time in iowait, 0..1.
    pub const CPU_IOWAIT: &str = "cpu_iowait";
    /// Number of online CPUs.
    pub const CPU_COUNT: &str = "cpu_count";
    /// 1-minute load average divided by the CPU count.
    pub const LOAD1_PER_CPU: &str = "load1_per_cpu";
    /// `MemTotal` in bytes.
    pub const MEMORY_TOTAL_BYTES: &str = "memory_total_bytes";
    /// `MemAvailable` in bytes.
    pub const MEMORY_AVAILABLE_BYTES: &str = "memory_available_bytes";
    /// `MemAvailable / MemTotal`, 0..1.
    pub const MEMORY_AVAILABLE_RATIO: &str = "memory_available_ratio";
    /// Share of the tick some task stalled on CPU (PSI `some`, from the `total` counter), 0..1.
    pub const PSI_CPU_SOME: &str = "psi_cpu_some";
    /// Share of the tick some task stalled on memory, 0..1.
    pub const PSI_MEMORY_SOME: &str = "psi_memory_some";
    /// Share of the tick all tasks stalled on memory, 0..1.
    pub const PSI_MEMORY_FULL: &str = "psi_memory_full";
    /// Share of the tick some task stalled on I/O, 0..1.
    pub const PSI_IO_SOME: &str = "psi_io_some";
    /// Share of the tick all tasks stalled on I/O, 0..1.
    pub const PSI_IO_FULL: &str = "psi_io_full";
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
