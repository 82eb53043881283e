//! The agent's own Prometheus metrics: names, descriptions, and the missing-metrics gauge.

use std::collections::BTreeSet;

use fitsched_proto::NodeWindow;

pub const WINDOWS: &str = "fitsched_agent_windows_total";
pub const WINDOWS_ACKED: &str = "fitsched_agent_windows_acked_total";
pub const WINDOWS_DROPPED: &str = "fitsched_agent_windows_dropped_total";
pub const WINDOWS_REJECTED: &str = "fitsched_agent_windows_rejected_total";
pub const BUFFERED_WINDOWS: &str = "fitsched_agent_buffered_windows";
pub const STREAM_RECONNECTS: &str = "fitsched_agent_stream_reconnects_total";
pub const SAMPLES_INVALID: &str = "fitsched_agent_samples_invalid_total";
pub const MISSING_METRICS: &str = "fitsched_agent_missing_metrics";

/// Registers help texts; harmless without a recorder.
pub fn describe() {
    metrics::describe_counter!(WINDOWS, "Windows closed and queued for the scorer, per node.");
    metrics::describe_counter!(WINDOWS_ACKED, "Windows the scorer acknowledged as stored, per node.");
    metrics::describe_counter!(
        WINDOWS_DROPPED,
        "Unacknowledged windows dropped because the resend buffer was full, per node."
    );
    metrics::describe_counter!(WINDOWS_REJECTED, "Windows the scorer rejected as invalid (never resent), per node.");
    metrics::describe_gauge!(BUFFERED_WINDOWS, "Windows sent or queued but not yet acknowledged, per node.");
    metrics::describe_counter!(STREAM_RECONNECTS, "Ingest stream (re)connection attempts after a failure, per node.");
    metrics::describe_counter!(SAMPLES_INVALID, "Non-finite sample values dropped before aggregation.");
    metrics::describe_gauge!(
        MISSING_METRICS,
        "1 while a metric or collector is missing from the node's latest window, with the reason; 0 once it is back."
    );
}

/// Publishes a node's missing metrics as a gauge, so operators see absent collectors.
#[derive(Debug, Default)]
pub struct MissingGauge {
    node: String,
    current: BTreeSet<(String, String)>,
}

impl MissingGauge {
    pub fn new(node: impl Into<String>) -> Self {
        Self { node: node.into(), current: BTreeSet::new() }
    }

    pub fn update(&mut self, window: &NodeWindow) {
        let now: BTreeSet<(String, String)> =
            window.missing.iter().map(|m| (m.name.clone(), m.reason.clone())).collect();
        // The recorder cannot forget a series, so a recovered one is set to 0.
        for (name, reason) in self.current.difference(&now) {
            self.set(name, reason, 0.0);
        }
        for (name, reason) in &now {
            self.set(name, reason, 1.0);
        }
        self.current = now;
    }

    fn set(&self, name: &str, reason: &str, value: f64) {
        metrics::gauge!(MISSING_METRICS, "node" => self.node.clone(), "name" => name.to_owned(), "reason" => reason.to_owned())
            .set(value);
    }
}
