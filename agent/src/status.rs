//! Per-node progress shared between the tick loop, the stream client and `/health`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct NodeProgress {
    pub node_name: String,
    pub agent_id: String,
    last_window_sequence: AtomicU64,
    last_acked_sequence: AtomicU64,
    buffered: AtomicU64,
    connected: AtomicBool,
    /// Latest send-to-acknowledgement time in microseconds; 0 = none measured yet.
    rtt_us: AtomicU64,
}

impl NodeProgress {
    pub fn new(node_name: impl Into<String>, agent_id: impl Into<String>) -> Self {
        Self { node_name: node_name.into(), agent_id: agent_id.into(), ..Default::default() }
    }

    pub fn last_window_sequence(&self) -> u64 {
        self.last_window_sequence.load(Ordering::Relaxed)
    }

    pub fn set_last_window_sequence(&self, sequence: u64) {
        self.last_window_sequence.store(sequence, Ordering::Relaxed);
    }

    pub fn last_acked_sequence(&self) -> u64 {
        self.last_acked_sequence.load(Ordering::Relaxed)
    }

    pub fn set_last_acked_sequence(&self, sequence: u64) {
        self.last_acked_sequence.fetch_max(sequence, Ordering::Relaxed);
    }

    pub fn buffered(&self) -> u64 {
        self.buffered.load(Ordering::Relaxed)
    }

    pub fn set_buffered(&self, n: usize) {
        self.buffered.store(n as u64, Ordering::Relaxed);
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
    }

    /// The latest stream round-trip time, while the stream is up.
    pub fn rtt(&self) -> Option<Duration> {
        let us = self.rtt_us.load(Ordering::Relaxed);
        (self.connected() && us > 0).then(|| Duration::from_micros(us))
    }

    pub fn set_rtt(&self, rtt: Duration) {
        // At least 1 µs, since 0 means "none measured".
        self.rtt_us.store(u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1), Ordering::Relaxed);
    }
}
