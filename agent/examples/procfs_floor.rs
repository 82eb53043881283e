//! The floor for `cargo xtask bench agent`: reads the files the agent's collectors read,
//! once per tick, and does nothing else (what a node_exporter-style reader costs at
//! least). Usage: `procfs_floor [tick_ms]`; runs until killed.

use std::time::Duration;

const FILES: [&str; 10] = [
    "/proc/stat",
    "/proc/meminfo",
    "/proc/loadavg",
    "/proc/vmstat",
    "/proc/pressure/cpu",
    "/proc/pressure/memory",
    "/proc/pressure/io",
    "/proc/net/dev",
    "/proc/diskstats",
    "/proc/self/mountinfo",
];

fn main() {
    let tick =
        std::env::args().nth(1).and_then(|a| a.parse().ok()).map_or(Duration::from_secs(1), Duration::from_millis);
    let mut bytes = 0usize;
    loop {
        for f in FILES {
            // Absent files (no PSI) cost their failed open, as they do in the agent.
            bytes = bytes.wrapping_add(std::fs::read_to_string(f).map_or(0, |s| s.len()));
        }
        std::hint::black_box(bytes);
        std::thread::sleep(tick);
    }
}
