//! Disk throughput and utilisation from `/proc/diskstats`, for physical whole disks
//! (those with `/sys/block/<disk>/device`): partitions, loop, zram and device-mapper
//! devices would count the same I/O twice.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use fitsched_proto::metric;

use super::rates::Rates;
use super::{Collector, Sample, physical_devices};

/// `/proc/diskstats` counts in 512-byte sectors whatever the device's sector size.
const SECTOR_BYTES: u64 = 512;

/// One disk's cumulative counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskCounters {
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Milliseconds with I/O in flight (`io_ticks`).
    pub io_ms: u64,
}

pub const METRICS: [&str; 3] =
    [metric::DISK_READ_BYTES_PER_SECOND, metric::DISK_WRITE_BYTES_PER_SECOND, metric::DISK_UTILIZATION];

/// Parses `/proc/diskstats`; malformed rows are skipped.
pub fn parse_diskstats(contents: &str) -> Vec<(String, DiskCounters)> {
    contents
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_ascii_whitespace().collect();
            let num = |i: usize| f.get(i)?.parse::<u64>().ok();
            // major minor name reads merged sectors_read ms writes merged sectors_written ms in_flight io_ms ...
            Some((
                (*f.get(2)?).to_owned(),
                DiskCounters {
                    read_bytes: num(5)?.saturating_mul(SECTOR_BYTES),
                    write_bytes: num(9)?.saturating_mul(SECTOR_BYTES),
                    io_ms: num(12)?,
                },
            ))
        })
        .collect()
}

pub struct DiskCollector {
    proc_root: PathBuf,
    sys_root: PathBuf,
    rates: Rates,
}

impl DiskCollector {
    pub fn new(proc_root: impl Into<PathBuf>, sys_root: impl Into<PathBuf>) -> Self {
        Self { proc_root: proc_root.into(), sys_root: sys_root.into(), rates: Rates::default() }
    }

    /// Rates for the `physical` disks among `disks`: per disk, summed throughput, and the
    /// busiest disk's utilisation.
    pub fn compute(&mut self, disks: &[(String, DiskCounters)], physical: &BTreeSet<String>, now: Instant) -> Sample {
        if physical.is_empty() {
            return Sample::all_missing(&METRICS, "no physical disk (none in /sys/block has a device)");
        }
        let mut sample = Sample::default();
        let (mut read, mut write, mut busiest): (Option<f64>, Option<f64>, Option<f64>) = (None, None, None);
        for (name, c) in disks.iter().filter(|(n, _)| physical.contains(n)) {
            let r = self.rates.rate(&metric::instance(metric::DISK_READ_BYTES_PER_SECOND, name), c.read_bytes, now);
            let w = self.rates.rate(&metric::instance(metric::DISK_WRITE_BYTES_PER_SECOND, name), c.write_bytes, now);
            // io_ticks in ms per second of wall time = busy share (×1000).
            let u = self
                .rates
                .rate(&metric::instance(metric::DISK_UTILIZATION, name), c.io_ms, now)
                .map(|ms_per_s| (ms_per_s / 1000.0).clamp(0.0, 1.0));
            for (m, v, acc) in [
                (metric::DISK_READ_BYTES_PER_SECOND, r, &mut read),
                (metric::DISK_WRITE_BYTES_PER_SECOND, w, &mut write),
            ] {
                if let Some(v) = v {
                    sample.set(&metric::instance(m, name), v);
                    *acc = Some(acc.unwrap_or(0.0) + v);
                }
            }
            if let Some(u) = u {
                sample.set(&metric::instance(metric::DISK_UTILIZATION, name), u);
                busiest = Some(busiest.map_or(u, |b: f64| b.max(u)));
            }
        }
        for (m, v) in [
            (metric::DISK_READ_BYTES_PER_SECOND, read),
            (metric::DISK_WRITE_BYTES_PER_SECOND, write),
            (metric::DISK_UTILIZATION, busiest),
        ] {
            if let Some(v) = v {
                sample.set(m, v);
            }
        }
        self.rates.retain(|k| k.split_once(':').is_some_and(|(_, d)| physical.contains(d)));
        sample
    }
}

impl Collector for DiskCollector {
    fn sample(&mut self, now: Instant) -> Sample {
        let path = self.proc_root.join("diskstats");
        match std::fs::read_to_string(&path) {
            Ok(contents) => {
                let disks = parse_diskstats(&contents);
                let physical = physical_devices(&self.sys_root.join("block"), disks.iter().map(|(n, _)| n.as_str()));
                self.compute(&disks, &physical, now)
            }
            Err(e) => {
                self.rates = Rates::default();
                Sample::all_missing(&METRICS, format!("cannot read {}: {e}", path.display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_this_machines_diskstats() {
        let disks = parse_diskstats(include_str!("testdata/diskstats"));
        assert!(disks.iter().any(|(n, _)| n == "vda"), "{disks:?}");
        assert!(disks.iter().all(|(_, c)| c.read_bytes % SECTOR_BYTES == 0));
    }

    #[test]
    fn throughput_sums_and_utilisation_takes_the_busiest() {
        let mut c = DiskCollector::new("/nonexistent", "/nonexistent");
        let t0 = Instant::now();
        let disk = |r: u64, ms: u64| DiskCounters { read_bytes: r, write_bytes: 0, io_ms: ms };
        let physical = BTreeSet::from(["sda".to_owned(), "sdb".to_owned()]);
        c.compute(
            &[("sda".into(), disk(0, 0)), ("sdb".into(), disk(0, 0)), ("sda1".into(), disk(0, 0))],
            &physical,
            t0,
        );
        let s = c.compute(
            &[("sda".into(), disk(4096, 500)), ("sdb".into(), disk(1024, 100)), ("sda1".into(), disk(4096, 500))],
            &physical,
            t0 + Duration::from_secs(1),
        );
        assert_eq!(s.values[metric::DISK_READ_BYTES_PER_SECOND], 5120.0, "partitions are not added again");
        assert_eq!(s.values[metric::DISK_UTILIZATION], 0.5);
        assert_eq!(s.values["disk_utilization:sdb"], 0.1);
    }

    #[test]
    fn reads_this_machine() {
        let mut c = DiskCollector::new("/proc", "/sys");
        c.sample(Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let s = c.sample(Instant::now());
        for m in METRICS {
            let present = s.values.get(m).is_some_and(|v| v.is_finite() && *v >= 0.0);
            let missing = s.missing.iter().any(|x| x.name == m && !x.reason.is_empty());
            assert!(present || missing, "{m}: neither a value nor a reason");
        }
    }
}
