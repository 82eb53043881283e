//! Collectors: what a node looks like at one tick.
//!
//! A collector never fails as a whole: whatever it cannot read becomes a `missing`
//! entry with a reason, so a window always goes out and consumers can tell "not
//! measured" from "zero".

pub mod cgroup;
pub mod disk;
pub mod net;
pub mod pcm;
pub mod perf;
pub mod procfs;
pub mod psi;
pub mod rates;

use std::collections::BTreeMap;
use std::time::Instant;

pub use cgroup::CgroupCollector;
pub use disk::DiskCollector;
pub use net::NetCollector;
pub use pcm::PcmCollector;
pub use perf::PerfCollector;
pub use procfs::ProcfsCollector;

/// A metric or collector that could not be read during a tick, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingMetric {
    pub name: String,
    pub reason: String,
}

impl MissingMetric {
    pub fn new(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { name: name.into(), reason: reason.into() }
    }
}

/// One tick's readings: metric name -> value, plus what could not be read.
///
/// A metric can also be simply absent without being missing: rates need two readings,
/// so the first tick after start (or after a counter reset) has none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub values: BTreeMap<String, f64>,
    pub missing: Vec<MissingMetric>,
}

impl Sample {
    pub fn set(&mut self, name: &str, value: f64) {
        self.values.insert(name.to_owned(), value);
    }

    pub fn set_missing(&mut self, name: &str, reason: impl Into<String>) {
        self.missing.push(MissingMetric::new(name, reason));
    }

    /// A sample in which every one of `metrics` is missing for `reason`.
    pub fn all_missing(metrics: &[&str], reason: impl Into<String>) -> Sample {
        let reason = reason.into();
        let mut sample = Sample::default();
        for m in metrics {
            sample.set_missing(m, reason.clone());
        }
        sample
    }
}

/// Why a file under /proc or a cgroup could not be read, in words for `missing`.
/// `hint_if_absent` says what a missing file usually means there.
pub fn describe_read_error(path: &std::path::Path, err: &std::io::Error, hint_if_absent: Option<&str>) -> String {
    // EOPNOTSUPP from a pressure file: PSI is compiled in but the kernel booted with psi=0.
    if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
        return format!("PSI disabled on this kernel (psi=0): cannot read {}", path.display());
    }
    match hint_if_absent {
        Some(hint) if err.kind() == std::io::ErrorKind::NotFound => {
            format!("cannot read {}: no such file ({hint})", path.display())
        }
        _ => format!("cannot read {}: {err}", path.display()),
    }
}

/// The names among `names` that are physical devices: those whose sysfs entry in
/// `class_dir` (`/sys/class/net`, `/sys/block`) links to a `device`. Virtual devices
/// (veth, bridges, loop, zram, device-mapper) and partitions have none, and counting
/// them too would count the same traffic twice.
pub fn physical_devices<'a>(
    class_dir: &std::path::Path,
    names: impl Iterator<Item = &'a str>,
) -> std::collections::BTreeSet<String> {
    names.filter(|n| class_dir.join(n).join("device").exists()).map(str::to_owned).collect()
}

/// Something that can be sampled once per tick.
pub trait Collector: Send {
    /// Takes one sample; `now` is the tick's monotonic time, used for rates.
    fn sample(&mut self, now: Instant) -> Sample;
}

/// Several collectors sampled as one: the node's full picture for a tick. Each part
/// reports its own missing metrics; one failing part never hides the others.
pub struct Composite {
    parts: Vec<Box<dyn Collector>>,
}

impl Composite {
    pub fn new(parts: Vec<Box<dyn Collector>>) -> Self {
        Self { parts }
    }
}

impl Collector for Composite {
    fn sample(&mut self, now: Instant) -> Sample {
        let mut out = Sample::default();
        for part in &mut self.parts {
            let s = part.sample(now);
            out.values.extend(s.values);
            out.missing.extend(s.missing);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str, Option<&'static str>);

    impl Collector for Fixed {
        fn sample(&mut self, _: Instant) -> Sample {
            let mut s = Sample::default();
            match self.1 {
                None => s.set(self.0, 1.0),
                Some(why) => s.set_missing(self.0, why),
            }
            s
        }
    }

    #[test]
    fn composite_merges_values_and_missing() {
        let mut c = Composite::new(vec![Box::new(Fixed("a", None)), Box::new(Fixed("b", Some("no PMU")))]);
        let s = c.sample(Instant::now());
        assert_eq!(s.values.get("a"), Some(&1.0));
        assert_eq!(s.missing, vec![MissingMetric::new("b", "no PMU")]);
    }
}
