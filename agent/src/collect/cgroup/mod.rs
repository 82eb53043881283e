//! The cgroup collector: CPU, throttling, memory and pressure of the `kubepods`
//! cgroup, i.e. the load the pods cause and the load they suffer.
//!
//! cgroup v2 is read where the kubelet uses it. A kubelet on cgroup v1 (many production
//! nodes still are, and hybrid hosts, whose unified hierarchy holds no controllers) is
//! read from the v1 hierarchies for the same metrics: `cpuacct.usage` for CPU, the pods'
//! v1 `cpu.stat` for throttling, `memory.usage_in_bytes` for memory (like v2's
//! `memory.current`, it counts the page cache). v1 has no pressure files: on a hybrid host
//! they come from the unified hierarchy's kubepods cgroup, which holds the same
//! processes; on a pure v1 host they are reported missing.
//!
//! Where the hierarchies are mounted is [`mountinfo`]'s concern, how the kubelet names
//! the pods' cgroups [`driver`]'s; this module reads and computes. Parsing is pure
//! (`parse_*` take file contents) and apart from I/O ([`CgroupCollector::read`]); the maths
//! is tested on committed sample trees of both kubelet cgroup drivers under
//! `testdata/cgroup/`.

mod driver;
mod mountinfo;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use fitsched_proto::metric;
use tracing::{info, warn};

use super::procfs::ParseError;
use super::psi::{PsiFile, PsiTracker};
use super::{Collector, Sample};
#[cfg(test)]
use driver::Driver;
use driver::list_pods;
pub use driver::{Kubepods, V1Files, find_kubepods};
#[cfg(test)]
use mountinfo::unescape;
pub use mountinfo::{V1Roots, cgroup2_root, parse_mountinfo};

/// Reason given for every metric when no cgroup v2 hierarchy is mounted.
pub const NO_CGROUP2_REASON: &str = "no cgroup v2 mount";
/// Where the collector learns where cgroup v2 is mounted.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

/// Every metric this collector produces.
pub const METRICS: [&str; 8] = [
    metric::KUBEPODS_CPU_CORES,
    metric::KUBEPODS_CPU_THROTTLED,
    metric::KUBEPODS_THROTTLED_PERIODS_PER_SECOND,
    metric::KUBEPODS_MEMORY_BYTES,
    metric::KUBEPODS_PSI_CPU_SOME,
    metric::KUBEPODS_PSI_MEMORY_SOME,
    metric::KUBEPODS_PSI_MEMORY_FULL,
    metric::KUBEPODS_PSI_IO_SOME,
];

/// What the collector uses from a `cpu.stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuStat {
    pub usage_usec: u64,
    /// Present only where the `cpu` controller is enabled.
    pub throttling: Option<Throttling>,
}

/// Cumulative CFS bandwidth throttling of one cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Throttling {
    pub nr_throttled: u64,
    pub throttled_usec: u64,
}

pub fn parse_cpu_stat(contents: &str) -> Result<CpuStat, ParseError> {
    let (mut usage, mut nr_throttled, mut throttled_usec) = (None, None, None);
    for line in contents.lines() {
        let Some((key, value)) = line.split_once(' ') else { continue };
        let slot = match key {
            "usage_usec" => &mut usage,
            "nr_throttled" => &mut nr_throttled,
            "throttled_usec" => &mut throttled_usec,
            _ => continue,
        };
        *slot = Some(
            value
                .trim()
                .parse::<u64>()
                .map_err(|_| ParseError::Malformed { what: "cpu.stat line", line: line.to_owned() })?,
        );
    }
    let throttling = match (nr_throttled, throttled_usec) {
        (Some(nr_throttled), Some(throttled_usec)) => Some(Throttling { nr_throttled, throttled_usec }),
        _ => None,
    };
    Ok(CpuStat { usage_usec: usage.ok_or(ParseError::MissingField("usage_usec"))?, throttling })
}

/// A cgroup v1 `cpu.stat`'s throttling (`throttled_time` is in nanoseconds).
pub fn parse_cpu_stat_v1(contents: &str) -> Result<Throttling, ParseError> {
    let (mut nr_throttled, mut throttled_ns) = (None, None);
    for line in contents.lines() {
        let Some((key, value)) = line.split_once(' ') else { continue };
        let slot = match key {
            "nr_throttled" => &mut nr_throttled,
            "throttled_time" => &mut throttled_ns,
            _ => continue,
        };
        *slot = Some(
            value
                .trim()
                .parse::<u64>()
                .map_err(|_| ParseError::Malformed { what: "cpu.stat line", line: line.to_owned() })?,
        );
    }
    Ok(Throttling {
        nr_throttled: nr_throttled.ok_or(ParseError::MissingField("nr_throttled"))?,
        throttled_usec: throttled_ns.ok_or(ParseError::MissingField("throttled_time"))? / 1000,
    })
}

/// A v1 `cpuacct.usage` (nanoseconds) in microseconds, as v2's `usage_usec`.
pub fn parse_cpuacct_usage(contents: &str) -> Result<u64, ParseError> {
    contents
        .trim()
        .parse::<u64>()
        .map(|ns| ns / 1000)
        .map_err(|_| ParseError::Malformed { what: "cpuacct.usage", line: contents.trim().to_owned() })
}

pub fn parse_memory_current(contents: &str) -> Result<u64, ParseError> {
    contents
        .trim()
        .parse()
        .map_err(|_| ParseError::Malformed { what: "memory.current", line: contents.trim().to_owned() })
}

/// Cores used between two `usage_usec` readings; `None` on reset or when no time passed.
pub fn cpu_cores(prev_usec: u64, cur_usec: u64, elapsed_us: f64) -> Option<f64> {
    let delta = cur_usec.checked_sub(prev_usec)?;
    (elapsed_us > 0.0).then(|| delta as f64 / elapsed_us)
}

/// Throttling between two readings, summed over the pods present in both: a pod that
/// started or ended in between has no delta, and one whose counters went backwards (its
/// cgroup was recreated under the same name) is left out rather than made negative.
pub fn throttling_delta(prev: &BTreeMap<String, Throttling>, cur: &BTreeMap<String, Throttling>) -> Throttling {
    let mut sum = Throttling::default();
    for (pod, c) in cur {
        if let Some(p) = prev.get(pod)
            && let (Some(nr), Some(usec)) =
                (c.nr_throttled.checked_sub(p.nr_throttled), c.throttled_usec.checked_sub(p.throttled_usec))
        {
            sum.nr_throttled = sum.nr_throttled.saturating_add(nr);
            sum.throttled_usec = sum.throttled_usec.saturating_add(usec);
        }
    }
    sum
}

/// The pressure files and the metrics each one feeds (`some`, `full`).
const PSI: [PsiFile; 3] = [
    PsiFile { resource: "cpu.pressure", some: metric::KUBEPODS_PSI_CPU_SOME, full: None },
    PsiFile {
        resource: "memory.pressure",
        some: metric::KUBEPODS_PSI_MEMORY_SOME,
        full: Some(metric::KUBEPODS_PSI_MEMORY_FULL),
    },
    PsiFile { resource: "io.pressure", some: metric::KUBEPODS_PSI_IO_SOME, full: None },
];

/// One tick's file contents of the kubepods tree, or why a file could not be read.
#[derive(Debug, Clone)]
pub struct CgroupReadings {
    pub kubepods: PathBuf,
    /// The files are cgroup v1's (`cpu_stat` holds `cpuacct.usage`, `memory_current`
    /// `memory.usage_in_bytes`, the pods' `cpu.stat` v1's format).
    pub v1: bool,
    pub cpu_stat: Result<String, String>,
    pub memory_current: Result<String, String>,
    /// `cpu.pressure`, `memory.pressure`, `io.pressure` in that order.
    pub pressure: [Result<String, String>; 3],
    /// `cpu.stat` of every pod cgroup by path relative to the kubepods cgroup, or why
    /// the pods could not be listed. Pods deleted between listing and reading are left out.
    pub pods: Result<BTreeMap<String, Result<String, String>>, String>,
}

#[derive(Debug, Clone)]
struct Prev {
    at: Instant,
    kubepods: PathBuf,
    usage_usec: Option<u64>,
    pods: Option<BTreeMap<String, Throttling>>,
}

/// Samples the kubepods cgroup and keeps the previous counters for rates.
#[derive(Debug)]
pub struct CgroupCollector {
    /// The cgroup v2 root, or why there is none.
    root: Result<PathBuf, String>,
    /// The cgroup v1 hierarchies, for a kubelet that uses v1.
    v1: V1Roots,
    prev: Option<Prev>,
    psi: PsiTracker,
    /// What the last tick found (kubepods path or why not), to log only changes.
    last_location: Option<Result<PathBuf, String>>,
}

impl CgroupCollector {
    /// Reads the cgroup tree at `root_override` (a cgroup v2 root, or a v1 or hybrid
    /// host's `/sys/fs/cgroup` mounted there, its v2 hierarchy in `unified/`), or where
    /// `/proc/self/mountinfo` says the hierarchies are mounted. The kubepods cgroup is
    /// looked up every tick, so a kubelet that starts after the agent is picked up.
    pub fn new(root_override: Option<PathBuf>) -> Self {
        match root_override {
            Some(root) => {
                let unified = root.join("unified");
                let v2 =
                    if !root.join("cgroup.controllers").exists() && unified.is_dir() { unified } else { root.clone() };
                Self::with_roots(Ok(v2), V1Roots::under(&root))
            }
            None => match std::fs::read_to_string(MOUNTINFO) {
                Ok(mountinfo) => Self::from_mountinfo(&mountinfo),
                Err(e) => Self::with_roots(
                    Err(format!("{NO_CGROUP2_REASON} (cannot read {MOUNTINFO}: {e})")),
                    V1Roots::default(),
                ),
            },
        }
    }

    /// Uses the cgroup v2 mount listed in `mountinfo` (the contents of
    /// `/proc/self/mountinfo`).
    pub fn from_mountinfo(mountinfo: &str) -> Self {
        let mounts = parse_mountinfo(mountinfo);
        // Logged by the first tick, with every later change of what is found.
        let root = cgroup2_root(&mounts).ok_or_else(|| NO_CGROUP2_REASON.to_owned());
        Self::with_roots(root, V1Roots::from_mounts(&mounts))
    }

    fn with_roots(root: Result<PathBuf, String>, v1: V1Roots) -> Self {
        Self { root, v1, prev: None, psi: PsiTracker::default(), last_location: None }
    }

    /// The kubepods cgroup, or why there is none: cgroup v1's when the kubelet put the
    /// pods in the v1 memory and cpuacct hierarchies, else cgroup v2's.
    pub fn locate(&self) -> Result<Kubepods, String> {
        if let Some(v1) = self.locate_v1() {
            return Ok(v1);
        }
        let root = self.root.as_ref().map_err(Clone::clone)?;
        find_kubepods(root)
            .ok_or_else(|| format!("no kubepods cgroup under {} (not a Kubernetes node?)", root.display()))
    }

    fn locate_v1(&self) -> Option<Kubepods> {
        let memory = find_kubepods(self.v1.memory.as_deref()?)?;
        let cpuacct = find_kubepods(self.v1.cpuacct.as_deref()?)?;
        let cpu = self.v1.cpu.as_deref().and_then(find_kubepods).unwrap_or_else(|| cpuacct.clone());
        let pressure = self.root.as_deref().ok().and_then(find_kubepods).map(|k| k.path);
        Some(Kubepods {
            path: cpu.path,
            driver: cpuacct.driver,
            v1: Some(V1Files { cpuacct: cpuacct.path, memory: memory.path, pressure }),
        })
    }

    /// Reads the files. Blocking, but cgroupfs reads are served from kernel memory, so
    /// the tick task does them inline: five files, one readdir per QoS level, and one
    /// `cpu.stat` per pod.
    pub fn read(&self, kubepods: &Kubepods) -> CgroupReadings {
        let dir = &kubepods.path;
        let read = |name: &str, hint: &str| read_file(&dir.join(name), hint);
        let pods = list_pods(kubepods).map(|pods| {
            pods.into_iter()
                .filter_map(|pod| {
                    let path = dir.join(&pod).join("cpu.stat");
                    match std::fs::read_to_string(&path) {
                        Ok(s) => Some((pod, Ok(s))),
                        // The pod ended between the readdir and now.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                        Err(e) => Some((pod, Err(format!("cannot read {}: {e}", path.display())))),
                    }
                })
                .collect()
        });
        const PSI_HINT: &str = "kernel without PSI, or cgroup.pressure set to 0";
        match &kubepods.v1 {
            None => CgroupReadings {
                kubepods: dir.clone(),
                v1: false,
                cpu_stat: read("cpu.stat", "not a cgroup v2 directory?"),
                memory_current: read("memory.current", "memory controller not enabled for kubepods"),
                pressure: PSI.map(|f| read(f.resource, PSI_HINT)),
                pods,
            },
            Some(v1) => CgroupReadings {
                kubepods: dir.clone(),
                v1: true,
                cpu_stat: read_file(&v1.cpuacct.join("cpuacct.usage"), "no cpuacct controller?"),
                memory_current: read_file(&v1.memory.join("memory.usage_in_bytes"), "no memory controller?"),
                pressure: PSI.map(|f| match &v1.pressure {
                    Some(p) => read_file(&p.join(f.resource), PSI_HINT),
                    None => Err("cgroup v1 has no pressure files, and no cgroup v2 hierarchy holds kubepods".into()),
                }),
                pods,
            },
        }
    }

    /// Turns one tick's readings (or why there are none) into a sample, updating the
    /// previous counters.
    pub fn compute(&mut self, readings: Result<CgroupReadings, String>, now: Instant) -> Sample {
        let mut sample = Sample::default();
        let raw = match readings {
            Ok(raw) => raw,
            Err(reason) => {
                self.prev = None;
                self.psi.reset();
                for name in METRICS {
                    sample.set_missing(name, reason.clone());
                }
                return sample;
            }
        };
        // Counters of another kubepods cgroup (the kubelet moved) are no baseline.
        let prev = self.prev.take().filter(|p| p.kubepods == raw.kubepods);
        let elapsed_us = prev.as_ref().map(|p| now.saturating_duration_since(p.at).as_secs_f64() * 1e6);
        let mut next = Prev { at: now, kubepods: raw.kubepods.clone(), usage_usec: None, pods: None };
        let file = |name: &str| raw.kubepods.join(name).display().to_string();

        let v1 = raw.v1;
        let prev_usage = prev.as_ref().and_then(|p| p.usage_usec);
        next.usage_usec = cpu_usage(raw.cpu_stat, v1, prev_usage, elapsed_us, &file, &mut sample);
        memory(raw.memory_current, &file, &mut sample);
        if prev.is_none() {
            self.psi.reset();
        }
        self.psi.compute(&PSI, raw.pressure, file, now, &mut sample);
        let prev_pods = prev.as_ref().and_then(|p| p.pods.as_ref());
        next.pods = throttling(raw.pods, v1, prev_pods, elapsed_us, &file, &mut sample);
        self.prev = Some(next);
        sample
    }

    fn log_location(&mut self, location: &Result<Kubepods, String>) {
        let now = location.as_ref().map(|k| k.path.clone()).map_err(Clone::clone);
        if self.last_location.as_ref() == Some(&now) {
            return;
        }
        match location {
            Ok(k) => info!(path = %k.path.display(), driver = ?k.driver, "reading the kubepods cgroup"),
            Err(reason) => warn!(%reason, "kubepods metrics are reported missing"),
        }
        self.last_location = Some(now);
    }
}

/// The pods' CPU use from the kubepods cgroup's cumulative usage (v2 `cpu.stat`, or v1
/// `cpuacct.usage`); returns the reading for the next tick.
fn cpu_usage(
    contents: Result<String, String>,
    v1: bool,
    prev_usec: Option<u64>,
    elapsed_us: Option<f64>,
    file: &impl Fn(&str) -> String,
    sample: &mut Sample,
) -> Option<u64> {
    let usage = contents.and_then(|s| {
        if v1 {
            parse_cpuacct_usage(&s).map_err(|e| format!("cannot parse cpuacct.usage: {e}"))
        } else {
            parse_cpu_stat(&s).map(|c| c.usage_usec).map_err(|e| format!("cannot parse {}: {e}", file("cpu.stat")))
        }
    });
    match usage {
        Ok(usage_usec) => {
            if let (Some(p), Some(us)) = (prev_usec, elapsed_us)
                && let Some(cores) = cpu_cores(p, usage_usec, us)
            {
                sample.set(metric::KUBEPODS_CPU_CORES, cores);
            }
            Some(usage_usec)
        }
        Err(reason) => {
            sample.set_missing(metric::KUBEPODS_CPU_CORES, reason);
            None
        }
    }
}

/// The pods' memory (v2 `memory.current`, or v1 `memory.usage_in_bytes`: both count the
/// page cache).
fn memory(contents: Result<String, String>, file: &impl Fn(&str) -> String, sample: &mut Sample) {
    match contents
        .and_then(|s| parse_memory_current(&s).map_err(|e| format!("cannot parse {}: {e}", file("memory.current"))))
    {
        Ok(bytes) => sample.set(metric::KUBEPODS_MEMORY_BYTES, bytes as f64),
        Err(reason) => sample.set_missing(metric::KUBEPODS_MEMORY_BYTES, reason),
    }
}

/// CFS throttling summed over the pods present in this tick and the last; returns the
/// pods' counters for the next tick.
fn throttling(
    pods: Result<BTreeMap<String, Result<String, String>>, String>,
    v1: bool,
    prev: Option<&BTreeMap<String, Throttling>>,
    elapsed_us: Option<f64>,
    file: &impl Fn(&str) -> String,
    sample: &mut Sample,
) -> Option<BTreeMap<String, Throttling>> {
    let pods = match pods {
        Err(reason) => {
            sample.set_missing(metric::KUBEPODS_CPU_THROTTLED, reason.clone());
            sample.set_missing(metric::KUBEPODS_THROTTLED_PERIODS_PER_SECOND, reason);
            return None;
        }
        Ok(pods) => pods,
    };
    let listed = pods.len();
    let mut cur = BTreeMap::new();
    let mut first_error = None;
    for (pod, contents) in pods {
        let parsed = contents.and_then(|s| {
            let throttling =
                if v1 { parse_cpu_stat_v1(&s).map(Some) } else { parse_cpu_stat(&s).map(|c| c.throttling) };
            throttling.map_err(|e| format!("cannot parse {}: {e}", file(&format!("{pod}/cpu.stat"))))
        });
        match parsed {
            Ok(Some(t)) => {
                cur.insert(pod, t);
            }
            Ok(None) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if cur.is_empty() && listed > 0 {
        let reason = first_error.unwrap_or_else(|| {
            "no throttling counters in the pods' cpu.stat (cpu controller not enabled for pod cgroups)".to_owned()
        });
        sample.set_missing(metric::KUBEPODS_CPU_THROTTLED, reason.clone());
        sample.set_missing(metric::KUBEPODS_THROTTLED_PERIODS_PER_SECOND, reason);
    } else if let (Some(p), Some(us)) = (prev, elapsed_us)
        && us > 0.0
    {
        let d = throttling_delta(p, &cur);
        sample.set(metric::KUBEPODS_CPU_THROTTLED, d.throttled_usec as f64 / us);
        sample.set(metric::KUBEPODS_THROTTLED_PERIODS_PER_SECOND, d.nr_throttled as f64 / (us / 1e6));
    }
    Some(cur)
}

impl Collector for CgroupCollector {
    fn sample(&mut self, now: Instant) -> Sample {
        let location = self.locate();
        self.log_location(&location);
        let readings = location.map(|k| self.read(&k));
        self.compute(readings, now)
    }
}

fn read_file(path: &Path, hint_if_absent: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| super::describe_read_error(path, &e, Some(hint_if_absent)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MOUNTINFO_HYBRID: &str = include_str!("../testdata/cgroup/mountinfo_hybrid");
    const MOUNTINFO_V2: &str = include_str!("../testdata/cgroup/mountinfo_v2");
    const CPU_STAT_NO_CONTROLLER: &str = include_str!("../testdata/cgroup/cpu.stat.nocontroller");

    fn testdata(driver: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/collect/testdata/cgroup").join(driver)
    }

    fn missing(s: &Sample) -> BTreeMap<&str, &str> {
        s.missing.iter().map(|m| (m.name.as_str(), m.reason.as_str())).collect()
    }

    fn stat(usage: u64, throttling: Option<(u64, u64)>) -> String {
        let mut s = format!("usage_usec {usage}\nuser_usec {usage}\nsystem_usec 0\nnice_usec 0\n");
        if let Some((nr, usec)) = throttling {
            s.push_str(&format!(
                "nr_periods {}\nnr_throttled {nr}\nthrottled_usec {usec}\nnr_bursts 0\nburst_usec 0\n",
                nr * 2
            ));
        }
        s
    }

    fn pressure(some: u64, full: u64) -> String {
        format!(
            "some avg10=0.00 avg60=0.00 avg300=0.00 total={some}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total={full}\n"
        )
    }

    /// Copies a committed tree to a scratch directory that a test may modify.
    fn scratch_copy(from: &Path, name: &str) -> PathBuf {
        fn copy(from: &Path, to: &Path) {
            std::fs::create_dir_all(to).unwrap();
            for entry in std::fs::read_dir(from).unwrap() {
                let entry = entry.unwrap();
                let target = to.join(entry.file_name());
                if entry.file_type().unwrap().is_dir() {
                    copy(&entry.path(), &target);
                } else {
                    std::fs::copy(entry.path(), target).unwrap();
                }
            }
        }
        let to = std::env::temp_dir().join(format!("fitsched-agent-cgroup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&to);
        copy(from, &to);
        to
    }

    #[test]
    fn finds_the_unified_mount_on_a_hybrid_host() {
        let mounts = parse_mountinfo(MOUNTINFO_HYBRID);
        assert_eq!(mounts.len(), 19);
        assert_eq!(cgroup2_root(&mounts), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let v1 = V1Roots::from_mounts(&mounts);
        assert_eq!(v1.cpu, Some(PathBuf::from("/sys/fs/cgroup/cpu")));
        assert!(v1.memory.is_some() && v1.cpuacct.is_some(), "{v1:?}");
    }

    #[test]
    fn finds_the_whole_hierarchy_on_a_pure_v2_host() {
        let mounts = parse_mountinfo(MOUNTINFO_V2);
        assert_eq!(mounts.len(), 14);
        // The container's bind mount of a subtree comes first but is not the hierarchy.
        assert_eq!(cgroup2_root(&mounts), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(V1Roots::from_mounts(&mounts), V1Roots::default());
        let escaped = mounts.iter().find(|m| m.mount_point.ends_with("cgroup v2")).unwrap();
        assert_eq!(escaped.mount_point, PathBuf::from("/mnt/cgroup v2"));
        let bind = mounts.iter().find(|m| m.root != "/" && m.fstype == "cgroup2").unwrap();
        assert_eq!(bind.root, "/kubepods.slice/kubepods-burstable.slice");
        assert_eq!(bind.super_options, "rw,nsdelegate,memory_recursiveprot");
    }

    #[test]
    fn no_cgroup2_line_means_no_root_and_garbage_is_skipped() {
        let v1_only: String =
            MOUNTINFO_HYBRID.lines().filter(|l| !l.contains("cgroup2")).map(|l| l.to_owned() + "\n").collect();
        assert_eq!(cgroup2_root(&parse_mountinfo(&v1_only)), None);
        assert!(parse_mountinfo("garbage\n1 2 3\n\n").is_empty());
        assert_eq!(unescape(r"a\040b\134c\9"), b"a b\\c\\9");
        let mut c = CgroupCollector::from_mountinfo(&v1_only);
        for i in 0..2 {
            let s = c.sample(Instant::now() + Duration::from_secs(i));
            assert!(s.values.is_empty());
            assert_eq!(s.missing.len(), METRICS.len());
            assert!(s.missing.iter().all(|m| m.reason == NO_CGROUP2_REASON));
        }
    }

    #[test]
    fn parses_cpu_stat_with_and_without_the_cpu_controller() {
        // Captured: the cgroup v2 root of a hybrid host, no cpu controller.
        let s = parse_cpu_stat(CPU_STAT_NO_CONTROLLER).unwrap();
        assert_eq!(s, CpuStat { usage_usec: 1_776_676_719, throttling: None });
        let pod = std::fs::read_to_string(
            testdata("systemd").join(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0c4e8a12_77d3_4e2b_9a1f_5b6c7d8e9f01.slice/cpu.stat",
            ),
        )
        .unwrap();
        assert_eq!(
            parse_cpu_stat(&pod).unwrap(),
            CpuStat {
                usage_usec: 20_554_109_237,
                throttling: Some(Throttling { nr_throttled: 40, throttled_usec: 1_203_377 })
            }
        );
        assert_eq!(parse_cpu_stat("user_usec 1\n"), Err(ParseError::MissingField("usage_usec")));
        assert!(parse_cpu_stat("usage_usec lots\n").is_err());
        assert_eq!(parse_memory_current("2874130432\n"), Ok(2_874_130_432));
        assert!(parse_memory_current("max\n").is_err());
    }

    #[test]
    fn recognises_pod_and_qos_cgroups() {
        let s = Driver::Systemd;
        assert!(s.is_pod("kubepods-pod6b1c2d9e_1f3a_4b5c_8d7e_0a1b2c3d4e5f.slice"));
        assert!(s.is_pod("kubepods-besteffort-pod9d2f1b3a_4c5e.slice"));
        assert!(s.is_pod("kubelet-kubepods-burstable-pod12.slice"));
        assert!(!s.is_pod("kubepods-burstable.slice"));
        assert!(!s.is_pod("cri-containerd-3f9a1c77.scope"));
        assert!(!s.is_pod("kubepods-pod.slice"));
        assert_eq!(s.qos_dirs("kubepods.slice"), ["kubepods-burstable.slice", "kubepods-besteffort.slice"]);
        assert_eq!(s.qos_dirs("kubelet-kubepods.slice")[0], "kubelet-kubepods-burstable.slice");
        let f = Driver::Cgroupfs;
        assert!(f.is_pod("pod5a7b9c1d-2e3f-4a5b-8c6d-7e8f9a0b1c2d"));
        assert!(!f.is_pod("pod") && !f.is_pod("burstable") && !f.is_pod("8e2d4f6a8c0e"));
        assert_eq!(f.qos_dirs("kubepods"), ["burstable", "besteffort"]);
    }

    #[test]
    fn reads_both_driver_trees() {
        for (driver, kind, memory, pods) in [
            (
                "systemd",
                Driver::Systemd,
                2_874_130_432.0,
                vec![
                    "kubepods-besteffort.slice/kubepods-besteffort-pod9d2f1b3a_4c5e_4f60_8a7b_1c2d3e4f5a6b.slice",
                    "kubepods-burstable.slice/kubepods-burstable-pod0c4e8a12_77d3_4e2b_9a1f_5b6c7d8e9f01.slice",
                    "kubepods-pod6b1c2d9e_1f3a_4b5c_8d7e_0a1b2c3d4e5f.slice",
                ],
            ),
            (
                "cgroupfs",
                Driver::Cgroupfs,
                1_048_576_000.0,
                vec![
                    "besteffort/pod7c8d9e0f-1a2b-4c3d-9e4f-5a6b7c8d9e0f",
                    "burstable/pod1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b",
                    "pod5a7b9c1d-2e3f-4a5b-8c6d-7e8f9a0b1c2d",
                ],
            ),
        ] {
            let mut c = CgroupCollector::new(Some(testdata(driver)));
            let kp = c.locate().unwrap();
            assert_eq!(kp.driver, kind);
            let raw = c.read(&kp);
            let listed: Vec<&str> = raw.pods.as_ref().unwrap().keys().map(String::as_str).collect();
            assert_eq!(listed, pods, "{driver}: pods only, no QoS or container cgroups");
            let s = c.sample(Instant::now());
            assert!(s.missing.is_empty(), "{driver}: {:?}", s.missing);
            assert_eq!(s.values.len(), 1, "{driver}: first tick has the gauge only: {:?}", s.values);
            assert_eq!(s.values[metric::KUBEPODS_MEMORY_BYTES], memory);
            // Unchanged files a second later: real zeros, not missing.
            let s = c.sample(Instant::now() + Duration::from_secs(1));
            assert!(s.missing.is_empty());
            assert_eq!(s.values.len(), METRICS.len(), "{driver}: {:?}", s.values);
            for name in METRICS.iter().filter(|n| **n != metric::KUBEPODS_MEMORY_BYTES) {
                assert_eq!(s.values[*name], 0.0, "{driver}: {name}");
            }
        }
    }

    fn readings(usage: u64, pods: &[(&str, Option<(u64, u64)>)], psi: [(u64, u64); 3]) -> CgroupReadings {
        CgroupReadings {
            kubepods: PathBuf::from("/sys/fs/cgroup/kubepods.slice"),
            v1: false,
            cpu_stat: Ok(stat(usage, Some((0, 0)))),
            memory_current: Ok("1000\n".into()),
            pressure: psi.map(|(some, full)| Ok(pressure(some, full))),
            pods: Ok(pods.iter().map(|(name, t)| ((*name).to_owned(), Ok(stat(1, *t)))).collect()),
        }
    }

    #[test]
    fn rates_from_deltas_summed_over_pods_in_both_readings() {
        let mut c = CgroupCollector::with_roots(Err("unused".into()), V1Roots::default());
        let t0 = Instant::now();
        let first = readings(
            10_000_000,
            &[("a", Some((10, 1_000_000))), ("b", Some((5, 500_000))), ("gone", Some((1, 1)))],
            [(0, 0); 3],
        );
        let s = c.compute(Ok(first), t0);
        assert_eq!(s.values.len(), 1);
        // Over 2 s: 3 cores; pod a throttled +1.5 s / +30 periods, b +0.5 s / +10 periods,
        // `new` appeared (its counters are its whole life: not a delta), `gone` ended.
        let second = readings(
            16_000_000,
            &[("a", Some((40, 2_500_000))), ("b", Some((15, 1_000_000))), ("new", Some((99, 9_000_000)))],
            [(500_000, 0), (1_000_000, 200_000), (3_000_000, 0)],
        );
        let s = c.compute(Ok(second), t0 + Duration::from_secs(2));
        assert!(s.missing.is_empty(), "{:?}", s.missing);
        let v = |n: &str| s.values[n];
        assert!((v(metric::KUBEPODS_CPU_CORES) - 3.0).abs() < 1e-12);
        assert!((v(metric::KUBEPODS_CPU_THROTTLED) - 1.0).abs() < 1e-12, "(1.5 + 0.5) s / 2 s");
        assert!((v(metric::KUBEPODS_THROTTLED_PERIODS_PER_SECOND) - 20.0).abs() < 1e-12);
        assert!((v(metric::KUBEPODS_PSI_CPU_SOME) - 0.25).abs() < 1e-12);
        assert!((v(metric::KUBEPODS_PSI_MEMORY_SOME) - 0.5).abs() < 1e-12);
        assert!((v(metric::KUBEPODS_PSI_MEMORY_FULL) - 0.1).abs() < 1e-12);
        assert_eq!(v(metric::KUBEPODS_PSI_IO_SOME), 1.0, "clamped");
        assert_eq!(v(metric::KUBEPODS_MEMORY_BYTES), 1000.0);

        // Next tick `new` has a baseline; `a` was recreated (counters went back): skipped.
        let third = readings(
            16_000_000,
            &[("a", Some((1, 1))), ("b", Some((15, 1_000_000))), ("new", Some((109, 9_400_000)))],
            [(500_000, 0), (1_000_000, 200_000), (3_000_000, 0)],
        );
        let s = c.compute(Ok(third), t0 + Duration::from_secs(3));
        assert!((s.values[metric::KUBEPODS_CPU_THROTTLED] - 0.4).abs() < 1e-12);
        assert!((s.values[metric::KUBEPODS_THROTTLED_PERIODS_PER_SECOND] - 10.0).abs() < 1e-12);
        assert_eq!(s.values[metric::KUBEPODS_CPU_CORES], 0.0);
    }

    #[test]
    fn pod_churn_on_disk_between_ticks() {
        let root = scratch_copy(&testdata("cgroupfs"), "churn");
        let kubepods = root.join("kubepods");
        let mut c = CgroupCollector::new(Some(root.clone()));
        let t0 = Instant::now();
        c.sample(t0);
        // The Guaranteed pod ends, a new Burstable one starts, the existing Burstable one
        // is throttled for another 0.5 s over 2 periods.
        std::fs::remove_dir_all(kubepods.join("pod5a7b9c1d-2e3f-4a5b-8c6d-7e8f9a0b1c2d")).unwrap();
        std::fs::create_dir_all(kubepods.join("burstable/podnew")).unwrap();
        std::fs::write(kubepods.join("burstable/podnew/cpu.stat"), stat(5, Some((1_000, 90_000_000)))).unwrap();
        std::fs::write(
            kubepods.join("burstable/pod1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b/cpu.stat"),
            stat(3_301_998_321, Some((14, 910_233))),
        )
        .unwrap();
        let s = c.sample(t0 + Duration::from_secs(1));
        assert!(s.missing.is_empty(), "{:?}", s.missing);
        assert!((s.values[metric::KUBEPODS_CPU_THROTTLED] - 0.5).abs() < 1e-12);
        assert!((s.values[metric::KUBEPODS_THROTTLED_PERIODS_PER_SECOND] - 2.0).abs() < 1e-12);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn unreadable_files_make_only_their_metrics_missing() {
        let root = scratch_copy(&testdata("systemd"), "missing");
        let kubepods = root.join("kubepods.slice");
        std::fs::remove_file(kubepods.join("memory.current")).unwrap();
        std::fs::remove_file(kubepods.join("io.pressure")).unwrap();
        let mut c = CgroupCollector::new(Some(root.clone()));
        let t0 = Instant::now();
        for i in 0..2 {
            let s = c.sample(t0 + Duration::from_secs(i));
            let m = missing(&s);
            assert_eq!(
                m.keys().copied().collect::<Vec<_>>(),
                [metric::KUBEPODS_MEMORY_BYTES, metric::KUBEPODS_PSI_IO_SOME]
            );
            assert!(
                m[metric::KUBEPODS_MEMORY_BYTES]
                    .contains("memory.current: no such file (memory controller not enabled")
            );
            assert!(m[metric::KUBEPODS_PSI_IO_SOME].contains("io.pressure"));
            if i == 1 {
                assert_eq!(s.values.len(), METRICS.len() - 2);
            }
        }

        // Pods without the cpu controller have no throttling counters.
        for pod in c.read(&c.locate().unwrap()).pods.unwrap().keys() {
            std::fs::write(kubepods.join(pod).join("cpu.stat"), CPU_STAT_NO_CONTROLLER).unwrap();
        }
        let s = c.sample(t0 + Duration::from_secs(2));
        let m = missing(&s);
        assert!(m[metric::KUBEPODS_CPU_THROTTLED].contains("cpu controller not enabled"));
        assert!(m.contains_key(metric::KUBEPODS_THROTTLED_PERIODS_PER_SECOND));
        assert!(s.values.contains_key(metric::KUBEPODS_CPU_CORES));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn unparsable_or_unlisted_inputs_are_missing_with_reasons() {
        let mut c = CgroupCollector::with_roots(Err("unused".into()), V1Roots::default());
        let mut raw = readings(1, &[], [(0, 0); 3]);
        raw.cpu_stat = Ok("garbage".into());
        raw.memory_current = Ok("lots".into());
        raw.pressure[1] = Ok("some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n".into());
        raw.pods = Err("cannot list pods in /x: permission denied".into());
        let s = c.compute(Ok(raw), Instant::now());
        let m = missing(&s);
        assert!(m[metric::KUBEPODS_CPU_CORES].contains("usage_usec"));
        assert!(m[metric::KUBEPODS_MEMORY_BYTES].contains("memory.current"));
        assert!(m[metric::KUBEPODS_PSI_MEMORY_FULL].contains("no `full` line"));
        assert!(m[metric::KUBEPODS_CPU_THROTTLED].contains("permission denied"));
        assert!(!m.contains_key(metric::KUBEPODS_PSI_MEMORY_SOME));
    }

    #[test]
    fn no_kubepods_is_explained() {
        let empty = std::env::temp_dir().join(format!("fitsched-agent-cgroup-empty-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        let mut c = CgroupCollector::new(Some(empty.clone()));
        let s = c.sample(Instant::now());
        assert_eq!(s.missing.len(), METRICS.len());
        let want = format!("no kubepods cgroup under {} (not a Kubernetes node?)", empty.display());
        assert!(s.missing.iter().all(|m| m.reason == want), "{:?}", s.missing);

        let _ = std::fs::remove_dir_all(&empty);
    }

    /// A v1 host's `/sys/fs/cgroup` as a container sees it, with the kubelet's cgroupfs
    /// tree (`cpu` and `cpuacct` apart, as on the hybrid host the real-node test runs
    /// on), and with `unified` when `hybrid`.
    fn v1_tree(name: &str, hybrid: bool) -> PathBuf {
        let root = std::env::temp_dir().join(format!("fitsched-agent-cgroup-v1-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let write = |rel: &str, text: &str| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        let v1_stat = |nr: u64, ns: u64| format!("nr_periods 100\nnr_throttled {nr}\nthrottled_time {ns}\n");
        write("cpu/kubepods/cpu.stat", &v1_stat(0, 0));
        write("cpu/kubepods/burstable/pod1f2e3d4c/cpu.stat", &v1_stat(10, 1_000_000_000));
        write("cpu/kubepods/pod5a7b9c1d/cpu.stat", &v1_stat(0, 0));
        write("cpuacct/kubepods/cpuacct.usage", "5000000000\n");
        write("memory/kubepods/memory.usage_in_bytes", "734003200\n");
        if hybrid {
            write("unified/cgroup.controllers", "hugetlb\n");
            for f in ["cpu.pressure", "memory.pressure", "io.pressure"] {
                write(&format!("unified/kubepods/{f}"), &pressure(1_000_000, 0));
            }
        }
        root
    }

    #[test]
    fn a_kubelet_on_cgroup_v1_is_read_from_the_v1_hierarchies() {
        for hybrid in [true, false] {
            let root = v1_tree(if hybrid { "hybrid" } else { "v1" }, hybrid);
            let mut c = CgroupCollector::new(Some(root.clone()));
            let kp = c.locate().unwrap();
            assert_eq!(kp.path, root.join("cpu/kubepods"));
            let v1 = kp.v1.clone().expect("read as v1");
            assert_eq!(v1.memory, root.join("memory/kubepods"));
            assert_eq!(v1.pressure.is_some(), hybrid);

            let t0 = Instant::now();
            let s = c.sample(t0);
            assert_eq!(s.values[metric::KUBEPODS_MEMORY_BYTES], 734_003_200.0);
            // A second later: 0.5 s more CPU, 5 more throttled periods and 0.2 s throttled.
            std::fs::write(root.join("cpuacct/kubepods/cpuacct.usage"), "5500000000\n").unwrap();
            std::fs::write(
                root.join("cpu/kubepods/burstable/pod1f2e3d4c/cpu.stat"),
                "nr_periods 110\nnr_throttled 15\nthrottled_time 1200000000\n",
            )
            .unwrap();
            if hybrid {
                std::fs::write(root.join("unified/kubepods/cpu.pressure"), pressure(1_100_000, 0)).unwrap();
            }
            let s = c.sample(t0 + Duration::from_secs(1));
            let near = |name: &str, want: f64| {
                let got = s.values[name];
                assert!((got - want).abs() < 1e-9, "{name}: {got}, want {want}");
            };
            near(metric::KUBEPODS_CPU_CORES, 0.5);
            near(metric::KUBEPODS_THROTTLED_PERIODS_PER_SECOND, 5.0);
            near(metric::KUBEPODS_CPU_THROTTLED, 0.2);
            if hybrid {
                near(metric::KUBEPODS_PSI_CPU_SOME, 0.1);
                assert!(s.missing.iter().all(|m| m.name == metric::KUBEPODS_PSI_MEMORY_FULL), "{:?}", s.missing);
            } else {
                // Missing, never zero: v1 has no pressure files.
                let psi: Vec<&str> = s.missing.iter().map(|m| m.name.as_str()).collect();
                assert_eq!(psi.len(), 4, "{psi:?}");
                assert!(s.missing.iter().all(|m| m.reason.contains("cgroup v1 has no pressure files")));
            }
            let _ = std::fs::remove_dir_all(&root);
        }
    }

    #[test]
    fn v1_cpu_stat_and_cpuacct_usage_parse() {
        let t = parse_cpu_stat_v1("nr_periods 7\nnr_throttled 3\nthrottled_time 4500\nnr_bursts 0\n").unwrap();
        assert_eq!(t, Throttling { nr_throttled: 3, throttled_usec: 4 });
        assert!(parse_cpu_stat_v1("nr_periods 7\n").is_err());
        assert_eq!(parse_cpuacct_usage("123456789\n").unwrap(), 123_456);
        assert!(parse_cpuacct_usage("x").is_err());
    }

    #[test]
    fn throttling_delta_ignores_new_gone_and_reset_pods() {
        let t = |nr, usec| Throttling { nr_throttled: nr, throttled_usec: usec };
        let prev: BTreeMap<String, Throttling> =
            [("a".into(), t(1, 10)), ("b".into(), t(5, 50)), ("c".into(), t(1, 1))].into();
        let cur: BTreeMap<String, Throttling> =
            [("a".into(), t(3, 40)), ("b".into(), t(4, 60)), ("d".into(), t(9, 9))].into();
        assert_eq!(throttling_delta(&prev, &cur), t(2, 30));
        assert_eq!(cpu_cores(10, 5, 1.0), None);
        assert_eq!(cpu_cores(5, 10, 0.0), None);
    }

    /// On the real machine: kubepods metrics are missing with a reason (or, on a
    /// Kubernetes node, sane), and nothing panics.
    #[test]
    fn live_machine() {
        let mut c = CgroupCollector::new(None);
        let t0 = Instant::now();
        c.sample(t0);
        std::thread::sleep(Duration::from_millis(50));
        let s = c.sample(Instant::now());
        println!("cgroup on this machine: root {:?}, values {:?}, missing {:?}", c.root, s.values, s.missing);
        if c.locate().is_ok() {
            for (name, v) in &s.values {
                assert!(v.is_finite() && *v >= 0.0, "{name} = {v}");
            }
            return;
        }
        assert!(s.values.is_empty());
        assert_eq!(s.missing.len(), METRICS.len());
        for m in &s.missing {
            assert!(
                m.reason.starts_with("no kubepods cgroup under") || m.reason.starts_with(NO_CGROUP2_REASON),
                "{m:?}"
            );
        }
    }
}
