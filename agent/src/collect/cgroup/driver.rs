//! How the kubelet names the pods' cgroups: its cgroup driver, where it puts the
//! `kubepods` cgroup, and the pods in it.

use std::io;
use std::path::{Path, PathBuf};

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
    /// Where the pods are listed and their `cpu.stat` read (for v1, in the `cpu`
    /// hierarchy).
    pub path: PathBuf,
    pub driver: Driver,
    /// The v1 files, when the kubelet uses cgroup v1.
    pub v1: Option<V1Files>,
}

/// A v1 kubepods cgroup's other hierarchies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Files {
    /// The kubepods cgroup in the `cpuacct` hierarchy.
    pub cpuacct: PathBuf,
    /// The kubepods cgroup in the `memory` hierarchy.
    pub memory: PathBuf,
    /// The kubepods cgroup of a cgroup v2 hierarchy beside them, for pressure.
    pub pressure: Option<PathBuf>,
}

/// Looks for the kubepods cgroup under `root` (one `stat` per candidate).
pub fn find_kubepods(root: &Path) -> Option<Kubepods> {
    KUBEPODS_CANDIDATES.iter().map(|(rel, driver)| (root.join(rel), *driver)).find_map(|(path, driver)| {
        std::fs::metadata(&path).is_ok_and(|m| m.is_dir()).then_some(Kubepods { path, driver, v1: None })
    })
}

/// Pod cgroups as paths relative to the kubepods cgroup: Guaranteed pods directly under
/// it, the others under the QoS-class cgroups.
pub(super) fn list_pods(kubepods: &Kubepods) -> Result<Vec<String>, String> {
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
