//! Network counters from `/proc/net/dev`: per interface, and node totals over the
//! physical interfaces (those backed by a device in `/sys/class/net/<if>/device`), so
//! that a pod's traffic counted once on its veth and again on the NIC is not doubled.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Instant;

use fitsched_proto::metric;

use super::rates::Rates;
use super::{Collector, Sample, physical_devices};

/// One interface's cumulative counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IfCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_drops: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_drops: u64,
}

impl IfCounters {
    /// (metric, value) pairs; errors and drops are summed over both directions.
    fn by_metric(&self) -> [(&'static str, u64); 6] {
        [
            (metric::NET_RX_BYTES_PER_SECOND, self.rx_bytes),
            (metric::NET_TX_BYTES_PER_SECOND, self.tx_bytes),
            (metric::NET_RX_PACKETS_PER_SECOND, self.rx_packets),
            (metric::NET_TX_PACKETS_PER_SECOND, self.tx_packets),
            (metric::NET_DROPS_PER_SECOND, self.rx_drops.saturating_add(self.tx_drops)),
            (metric::NET_ERRORS_PER_SECOND, self.rx_errors.saturating_add(self.tx_errors)),
        ]
    }
}

/// Every metric this collector produces for the node total.
pub const METRICS: [&str; 6] = [
    metric::NET_RX_BYTES_PER_SECOND,
    metric::NET_TX_BYTES_PER_SECOND,
    metric::NET_RX_PACKETS_PER_SECOND,
    metric::NET_TX_PACKETS_PER_SECOND,
    metric::NET_DROPS_PER_SECOND,
    metric::NET_ERRORS_PER_SECOND,
];

/// Parses `/proc/net/dev`; malformed rows are skipped (the two header lines among them).
pub fn parse_net_dev(contents: &str) -> Vec<(String, IfCounters)> {
    contents
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let v: Vec<u64> = rest.split_ascii_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
            (v.len() >= 12).then(|| {
                (
                    name.trim().to_owned(),
                    IfCounters {
                        rx_bytes: v[0],
                        rx_packets: v[1],
                        rx_errors: v[2],
                        rx_drops: v[3],
                        tx_bytes: v[8],
                        tx_packets: v[9],
                        tx_errors: v[10],
                        tx_drops: v[11],
                    },
                )
            })
        })
        .collect()
}

pub struct NetCollector {
    proc_root: PathBuf,
    sys_root: PathBuf,
    rates: Rates,
}

impl NetCollector {
    pub fn new(proc_root: impl Into<PathBuf>, sys_root: impl Into<PathBuf>) -> Self {
        Self { proc_root: proc_root.into(), sys_root: sys_root.into(), rates: Rates::default() }
    }

    /// Turns one reading into rates. `physical` names the interfaces the totals sum.
    pub fn compute(
        &mut self,
        interfaces: &[(String, IfCounters)],
        physical: &BTreeSet<String>,
        now: Instant,
    ) -> Sample {
        let mut sample = Sample::default();
        let mut total = IfCounters::default();
        for (name, c) in interfaces {
            for (m, v) in c.by_metric() {
                if let Some(rate) = self.rates.rate(&metric::instance(m, name), v, now) {
                    sample.set(&metric::instance(m, name), rate);
                }
            }
            if physical.contains(name) {
                let add = |a: &mut u64, b: u64| *a = a.saturating_add(b);
                add(&mut total.rx_bytes, c.rx_bytes);
                add(&mut total.rx_packets, c.rx_packets);
                add(&mut total.rx_errors, c.rx_errors);
                add(&mut total.rx_drops, c.rx_drops);
                add(&mut total.tx_bytes, c.tx_bytes);
                add(&mut total.tx_packets, c.tx_packets);
                add(&mut total.tx_errors, c.tx_errors);
                add(&mut total.tx_drops, c.tx_drops);
            }
        }
        if physical.is_empty() {
            let none =
                Sample::all_missing(&METRICS, "no physical network interface (none in /sys/class/net has a device)");
            sample.missing.extend(none.missing);
        } else {
            for (m, v) in total.by_metric() {
                // A physical interface that appears or vanishes makes the sum jump down;
                // the rate helper skips that tick.
                if let Some(rate) = self.rates.rate(m, v, now) {
                    sample.set(m, rate);
                }
            }
        }
        let live: BTreeSet<String> = interfaces.iter().map(|(n, _)| n.clone()).collect();
        self.rates.retain(|k| k.split_once(':').is_none_or(|(_, inst)| live.contains(inst)));
        sample
    }
}

impl Collector for NetCollector {
    fn sample(&mut self, now: Instant) -> Sample {
        let path = self.proc_root.join("net/dev");
        match std::fs::read_to_string(&path) {
            Ok(contents) => {
                let interfaces = parse_net_dev(&contents);
                let physical =
                    physical_devices(&self.sys_root.join("class/net"), interfaces.iter().map(|(n, _)| n.as_str()));
                self.compute(&interfaces, &physical, now)
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

    const SAMPLE: &str = include_str!("testdata/net_dev");

    #[test]
    fn parses_this_machines_net_dev() {
        let ifs = parse_net_dev(SAMPLE);
        assert!(ifs.iter().any(|(n, _)| n == "lo"), "{ifs:?}");
        assert!(ifs.iter().all(|(n, _)| !n.contains('|')), "header lines are skipped");
    }

    #[test]
    fn totals_count_physical_interfaces_only() {
        let mut c = NetCollector::new("/nonexistent", "/nonexistent");
        let t0 = Instant::now();
        let eth = |bytes| IfCounters { rx_bytes: bytes, ..Default::default() };
        let physical = BTreeSet::from(["eth0".to_owned()]);
        let first = c.compute(&[("eth0".into(), eth(1000)), ("veth1".into(), eth(0))], &physical, t0);
        assert!(first.values.is_empty(), "no rates on the first reading: {first:?}");
        let s = c.compute(
            &[("eth0".into(), eth(3000)), ("veth1".into(), eth(2000))],
            &physical,
            t0 + Duration::from_secs(2),
        );
        assert_eq!(s.values[metric::NET_RX_BYTES_PER_SECOND], 1000.0);
        assert_eq!(s.values["net_rx_bytes_per_second:veth1"], 1000.0);
    }

    #[test]
    fn no_physical_interface_is_missing_not_zero() {
        let mut c = NetCollector::new("/nonexistent", "/nonexistent");
        let s = c.compute(&[("lo".into(), IfCounters::default())], &BTreeSet::new(), Instant::now());
        assert_eq!(s.missing.len(), METRICS.len());
        assert!(!s.values.contains_key(metric::NET_RX_BYTES_PER_SECOND));
    }

    #[test]
    fn reads_this_machine() {
        let mut c = NetCollector::new("/proc", "/sys");
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
