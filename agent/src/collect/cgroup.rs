//! The cgroup v2 collector: CPU, throttling, memory and pressure of the `kubepods`
//! cgroup, i.e. the load the pods cause and the load they suffer.
//!
//! Parsing is pure (`parse_*` take file contents) and apart from I/O
//! ([`CgroupCollector::read`]); the maths is tested on committed sample trees of both
//! kubelet cgroup drivers under `testdata/cgroup/`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use fitsched_proto::metric;
use tracing::{info, warn};

use super::procfs::{ParseError, Pressure, parse_pressure, stall_share};
use super::{Collector, Sample};

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

/// One line of `/proc/self/mountinfo`, as far as the collector cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mounted subtree of the filesystem (`/` for a whole hierarchy).
    pub root: String,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub super_options: String,
}

/// Parses `/proc/self/mountinfo`, skipping lines it does not understand.
pub fn parse_mountinfo(contents: &str) -> Vec<Mount> {
    contents.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<Mount> {
    // Fields before the ` - ` separator: id, parent, major:minor, root, mount point,
    // options, then any number of optional fields; after it: fstype, source, super options.
    // Spaces inside paths are escaped as \040, so splitting on ' ' is safe.
    let (before, after) = line.split_once(" - ")?;
    let mut before = before.split(' ');
    let root = unescape(before.nth(3)?);
    let mount_point = PathBuf::from(OsString::from_vec(unescape(before.next()?)));
    let mut after = after.split(' ');
    let fstype = after.next()?.to_owned();
    let super_options = after.nth(1).unwrap_or_default().to_owned();
    Some(Mount { root: String::from_utf8_lossy(&root).into_owned(), mount_point, fstype, super_options })
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\134` for a backslash).
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(digits) = bytes.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
            && let Ok(value) = u8::from_str_radix(std::str::from_utf8(digits).unwrap_or("x"), 8)
        {
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Where the cgroup v2 hierarchy is mounted: `/sys/fs/cgroup` on pure v2 hosts,
/// `/sys/fs/cgroup/unified` on hybrid ones. A mount of the whole hierarchy wins over
/// bind mounts of a subtree (containers' own `/sys/fs/cgroup`).
pub fn cgroup2_root(mounts: &[Mount]) -> Option<PathBuf> {
    let mut v2 = mounts.iter().filter(|m| m.fstype == "cgroup2");
    let first = v2.clone().next()?;
    Some(v2.find(|m| m.root == "/").unwrap_or(first).mount_point.clone())
}

/// The cgroup v1 hierarchy with the `cpu` controller, if any: where a kubelet on
/// cgroup v1 puts its pods.
pub fn cgroup1_cpu_root(mounts: &[Mount]) -> Option<PathBuf> {
    mounts
        .iter()
        .find(|m| m.fstype == "cgroup" && m.root == "/" && m.super_options.split(',').any(|o| o == "cpu"))
        .map(|m| m.mount_point.clone())
}

/// The kubelet's cgroup driver, which decides how the pods' cgroups are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// `kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice`.
    Systemd,
    /// `kubepods/burstable/pod<uid>`.
    Cgroupfs,
}

/// Where kubelets put the pods' cgroup, relative to the cgroup root, tried in order.
/// The `kubelet` ones are for `--cgroup-root=/kubelet` (kind and other nested setups).
pub const KUBEPODS_CANDIDATES: [(&str, Driver); 4] = [
    ("kubepods.slice", Driver::Systemd),
    ("kubepods", Driver::Cgroupfs),
    ("kubelet.slice/kubelet-kubepods.slice", Driver::Systemd),
    ("kubelet/kubepods", Driver::Cgroupfs),
];

impl Driver {
    /// The Burstable and BestEffort children of the kubepods cgroup named
    /// `kubepods_name`; Guaranteed pods sit directly in it.
    pub fn qos_dirs(self, kubepods_name: &str) -> [String; 2] {
        match self {
            Driver::Systemd => {
                let stem = kubepods_name.strip_suffix(".slice").unwrap_or(kubepods_name);
                [format!("{stem}-burstable.slice"), format!("{stem}-besteffort.slice")]
            }
            Driver::Cgroupfs => ["burstable".to_owned(), "besteffort".to_owned()],
        }
    }

    /// Whether a child cgroup's name is a pod's (not a QoS class or a container).
    pub fn is_pod(self, name: &str) -> bool {
        match self {
            Driver::Systemd => name
                .strip_suffix(".slice")
                .and_then(|s| s.rsplit_once('-'))
                .is_some_and(|(_, last)| last.len() > 3 && last.starts_with("pod")),
            Driver::Cgroupfs => name.strip_prefix("pod").is_some_and(|uid| !uid.is_empty()),
        }
    }
}

/// The kubepods cgroup found under a cgroup root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kubepods {
    pub path: PathBuf,
    pub driver: Driver,
}

/// Looks for the kubepods cgroup under `root` (one `stat` per candidate).
pub fn find_kubepods(root: &Path) -> Option<Kubepods> {
    KUBEPODS_CANDIDATES.iter().map(|(rel, driver)| (root.join(rel), *driver)).find_map(|(path, driver)| {
        std::fs::metadata(&path).is_ok_and(|m| m.is_dir()).then_some(Kubepods { path, driver })
    })
}

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
const PSI: [(&str, &str, Option<&str>); 3] = [
    ("cpu.pressure", metric::KUBEPODS_PSI_CPU_SOME, None),
    ("memory.pressure", metric::KUBEPODS_PSI_MEMORY_SOME, Some(metric::KUBEPODS_PSI_MEMORY_FULL)),
    ("io.pressure", metric::KUBEPODS_PSI_IO_SOME, None),
];

/// One tick's file contents of the kubepods tree, or why a file could not be read.
#[derive(Debug, Clone)]
pub struct CgroupReadings {
    pub kubepods: PathBuf,
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
    psi: [Option<Pressure>; 3],
    pods: Option<BTreeMap<String, Throttling>>,
}

/// Samples the kubepods cgroup and keeps the previous counters for rates.
#[derive(Debug)]
pub struct CgroupCollector {
    /// The cgroup v2 root, or why there is none.
    root: Result<PathBuf, String>,
    /// The cgroup v1 `cpu` hierarchy, to explain a kubelet that still uses v1.
    v1_cpu_root: Option<PathBuf>,
    prev: Option<Prev>,
    /// What the last tick found (kubepods path or why not), to log only changes.
    last_location: Option<Result<PathBuf, String>>,
}

impl CgroupCollector {
    /// Reads the cgroup v2 tree at `root_override`, or where `/proc/self/mountinfo`
    /// says cgroup2 is mounted. The kubepods cgroup is looked up every tick, so a
    /// kubelet that starts after the agent is picked up.
    pub fn new(root_override: Option<PathBuf>) -> Self {
        match root_override {
            Some(root) => Self::with_roots(Ok(root), None),
            None => match std::fs::read_to_string(MOUNTINFO) {
                Ok(mountinfo) => Self::from_mountinfo(&mountinfo),
                Err(e) => Self::with_roots(Err(format!("{NO_CGROUP2_REASON} (cannot read {MOUNTINFO}: {e})")), None),
            },
        }
    }

    /// Uses the cgroup v2 mount listed in `mountinfo` (the contents of
    /// `/proc/self/mountinfo`).
    pub fn from_mountinfo(mountinfo: &str) -> Self {
        let mounts = parse_mountinfo(mountinfo);
        // Logged by the first tick, with every later change of what is found.
        let root = cgroup2_root(&mounts).ok_or_else(|| NO_CGROUP2_REASON.to_owned());
        Self::with_roots(root, cgroup1_cpu_root(&mounts))
    }

    fn with_roots(root: Result<PathBuf, String>, v1_cpu_root: Option<PathBuf>) -> Self {
        Self { root, v1_cpu_root, prev: None, last_location: None }
    }

    /// The kubepods cgroup, or why there is none.
    pub fn locate(&self) -> Result<Kubepods, String> {
        let root = self.root.as_ref().map_err(Clone::clone)?;
        find_kubepods(root).ok_or_else(|| {
            let hint = match &self.v1_cpu_root {
                Some(v1) if find_kubepods(v1).is_some() => {
                    format!(": the kubelet uses cgroup v1 ({}), which this collector does not read", v1.display())
                }
                _ => " (not a Kubernetes node?)".to_owned(),
            };
            format!("no kubepods cgroup under {}{hint}", root.display())
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
        CgroupReadings {
            kubepods: dir.clone(),
            cpu_stat: read("cpu.stat", "not a cgroup v2 directory?"),
            memory_current: read("memory.current", "memory controller not enabled for kubepods"),
            pressure: PSI.map(|(file, _, _)| read(file, PSI_HINT)),
            pods,
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
                for name in METRICS {
                    sample.set_missing(name, reason.clone());
                }
                return sample;
            }
        };
        // Counters of another kubepods cgroup (the kubelet moved) are no baseline.
        let prev = self.prev.take().filter(|p| p.kubepods == raw.kubepods);
        let elapsed_us = prev.as_ref().map(|p| now.saturating_duration_since(p.at).as_secs_f64() * 1e6);
        let mut next = Prev { at: now, kubepods: raw.kubepods.clone(), usage_usec: None, psi: [None; 3], pods: None };
        let file = |name: &str| raw.kubepods.join(name).display().to_string();

        match raw
            .cpu_stat
            .and_then(|s| parse_cpu_stat(&s).map_err(|e| format!("cannot parse {}: {e}", file("cpu.stat"))))
        {
            Ok(stat) => {
                if let (Some(p), Some(us)) = (prev.as_ref().and_then(|p| p.usage_usec), elapsed_us)
                    && let Some(cores) = cpu_cores(p, stat.usage_usec, us)
                {
                    sample.set(metric::KUBEPODS_CPU_CORES, cores);
                }
                next.usage_usec = Some(stat.usage_usec);
            }
            Err(reason) => sample.set_missing(metric::KUBEPODS_CPU_CORES, reason),
        }

        match raw
            .memory_current
            .and_then(|s| parse_memory_current(&s).map_err(|e| format!("cannot parse {}: {e}", file("memory.current"))))
        {
            Ok(bytes) => sample.set(metric::KUBEPODS_MEMORY_BYTES, bytes as f64),
            Err(reason) => sample.set_missing(metric::KUBEPODS_MEMORY_BYTES, reason),
        }

        for (i, ((name, some, full), contents)) in PSI.into_iter().zip(raw.pressure).enumerate() {
            let cur = match contents
                .and_then(|s| parse_pressure(&s).map_err(|e| format!("cannot parse {}: {e}", file(name))))
            {
                Ok(cur) => cur,
                Err(reason) => {
                    sample.set_missing(some, reason.clone());
                    if let Some(full) = full {
                        sample.set_missing(full, reason);
                    }
                    continue;
                }
            };
            if let Some(full) = full
                && cur.full_total_us.is_none()
            {
                sample.set_missing(full, format!("no `full` line in {}", file(name)));
            }
            if let (Some(p), Some(us)) = (prev.as_ref().and_then(|p| p.psi[i]), elapsed_us) {
                if let Some(share) = stall_share(p.some_total_us, cur.some_total_us, us) {
                    sample.set(some, share);
                }
                if let (Some(full), Some(p), Some(c)) = (full, p.full_total_us, cur.full_total_us)
                    && let Some(share) = stall_share(p, c, us)
                {
                    sample.set(full, share);
                }
            }
            next.psi[i] = Some(cur);
        }

        match raw.pods {
            Err(reason) => {
                sample.set_missing(metric::KUBEPODS_CPU_THROTTLED, reason.clone());
                sample.set_missing(metric::KUBEPODS_THROTTLED_PERIODS_PER_SECOND, reason);
            }
            Ok(pods) => {
                let listed = pods.len();
                let mut cur = BTreeMap::new();
                let mut first_error = None;
                for (pod, contents) in pods {
                    let parsed = contents.and_then(|s| {
                        parse_cpu_stat(&s)
                            .map_err(|e| format!("cannot parse {}: {e}", file(&format!("{pod}/cpu.stat"))))
                    });
                    match parsed {
                        Ok(CpuStat { throttling: Some(t), .. }) => {
                            cur.insert(pod, t);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                if cur.is_empty() && listed > 0 {
                    let reason = first_error.unwrap_or_else(|| {
                        "no throttling counters in the pods' cpu.stat (cpu controller not enabled for pod cgroups)"
                            .to_owned()
                    });
                    sample.set_missing(metric::KUBEPODS_CPU_THROTTLED, reason.clone());
                    sample.set_missing(metric::KUBEPODS_THROTTLED_PERIODS_PER_SECOND, reason);
                } else if let (Some(p), Some(us)) = (prev.as_ref().and_then(|p| p.pods.as_ref()), elapsed_us)
                    && us > 0.0
                {
                    let d = throttling_delta(p, &cur);
                    sample.set(metric::KUBEPODS_CPU_THROTTLED, d.throttled_usec as f64 / us);
                    sample.set(metric::KUBEPODS_THROTTLED_PERIODS_PER_SECOND, d.nr_throttled as f64 / (us / 1e6));
                }
                next.pods = Some(cur);
            }
        }

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

impl Collector for CgroupCollector {
    fn sample(&mut self, now: Instant) -> Sample {
        let location = self.locate();
        self.log_location(&location);
        let readings = location.map(|k| self.read(&k));
        self.compute(readings, now)
    }
}

/// Pod cgroups as paths relative to the kubepods cgroup: Guaranteed pods directly under
/// it, the others under the QoS-class cgroups.
fn list_pods(kubepods: &Kubepods) -> Result<Vec<String>, String> {
    let mut pods = Vec::new();
    list_level(&kubepods.path, None, kubepods.driver, &mut pods)
        .map_err(|e| format!("cannot list pods in {}: {e}", kubepods.path.display()))?;
    let name = kubepods.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    for qos in kubepods.driver.qos_dirs(&name) {
        let dir = kubepods.path.join(&qos);
        match list_level(&dir, Some(&qos), kubepods.driver, &mut pods) {
            Ok(()) => {}
            // The kubelet creates the QoS cgroups lazily.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot list pods in {}: {e}", dir.display())),
        }
    }
    Ok(pods)
}

fn list_level(dir: &Path, prefix: Option<&str>, driver: Driver, out: &mut Vec<String>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        // An entry that vanished mid-listing is a pod that ended.
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if driver.is_pod(name) && entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.push(match prefix {
                Some(p) => format!("{p}/{name}"),
                None => name.to_owned(),
            });
        }
    }
    Ok(())
}

fn read_file(path: &Path, hint_if_absent: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| super::describe_read_error(path, &e, Some(hint_if_absent)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MOUNTINFO_HYBRID: &str = include_str!("testdata/cgroup/mountinfo_hybrid");
    const MOUNTINFO_V2: &str = include_str!("testdata/cgroup/mountinfo_v2");
    const CPU_STAT_NO_CONTROLLER: &str = include_str!("testdata/cgroup/cpu.stat.nocontroller");

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
        assert_eq!(cgroup1_cpu_root(&mounts), Some(PathBuf::from("/sys/fs/cgroup/cpu")));
    }

    #[test]
    fn finds_the_whole_hierarchy_on_a_pure_v2_host() {
        let mounts = parse_mountinfo(MOUNTINFO_V2);
        assert_eq!(mounts.len(), 14);
        // The container's bind mount of a subtree comes first but is not the hierarchy.
        assert_eq!(cgroup2_root(&mounts), Some(PathBuf::from("/sys/fs/cgroup")));
        assert_eq!(cgroup1_cpu_root(&mounts), None);
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
            cpu_stat: Ok(stat(usage, Some((0, 0)))),
            memory_current: Ok("1000\n".into()),
            pressure: psi.map(|(some, full)| Ok(pressure(some, full))),
            pods: Ok(pods.iter().map(|(name, t)| ((*name).to_owned(), Ok(stat(1, *t)))).collect()),
        }
    }

    #[test]
    fn rates_from_deltas_summed_over_pods_in_both_readings() {
        let mut c = CgroupCollector::with_roots(Err("unused".into()), None);
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
        let mut c = CgroupCollector::with_roots(Err("unused".into()), None);
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

        // A kubelet on cgroup v1 has its kubepods in the v1 cpu hierarchy.
        let c = CgroupCollector::with_roots(Ok(empty.clone()), Some(testdata("systemd")));
        assert!(c.locate().unwrap_err().contains("the kubelet uses cgroup v1"));
        let _ = std::fs::remove_dir_all(&empty);
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
