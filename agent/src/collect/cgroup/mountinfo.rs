//! Where the cgroup hierarchies are mounted: `/proc/self/mountinfo`, or the layout of a
//! host's `/sys/fs/cgroup` mounted elsewhere.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

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
pub(super) fn unescape(field: &str) -> Vec<u8> {
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

/// The cgroup v1 hierarchies the collector reads, where mounted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V1Roots {
    /// With the `cpu` controller: the pods' throttling.
    pub cpu: Option<PathBuf>,
    /// With `cpuacct`: CPU usage (often the same hierarchy as `cpu`).
    pub cpuacct: Option<PathBuf>,
    pub memory: Option<PathBuf>,
}

impl V1Roots {
    /// The hierarchies `mountinfo` lists (whole hierarchies only).
    pub fn from_mounts(mounts: &[Mount]) -> V1Roots {
        let with = |controller: &str| {
            mounts
                .iter()
                .find(|m| m.fstype == "cgroup" && m.root == "/" && m.super_options.split(',').any(|o| o == controller))
                .map(|m| m.mount_point.clone())
        };
        V1Roots { cpu: with("cpu"), cpuacct: with("cpuacct"), memory: with("memory") }
    }

    /// The hierarchies under a v1 cgroup root mounted elsewhere (a container's view of
    /// the host's `/sys/fs/cgroup`), by the names the kernel and init systems give them.
    pub fn under(root: &Path) -> V1Roots {
        let first = |names: &[&str]| names.iter().map(|n| root.join(n)).find(|p| p.is_dir());
        V1Roots {
            cpu: first(&["cpu", "cpu,cpuacct", "cpuacct,cpu"]),
            cpuacct: first(&["cpuacct", "cpu,cpuacct", "cpuacct,cpu"]),
            memory: first(&["memory"]),
        }
    }
}
