//! Replayed nodes for evaluations: `--replay FILE` reports, for every node the file
//! names, the window the file holds for it, once per window, through the same stream as
//! measured windows. The file is read again at every window boundary, so whoever writes
//! it (`cargo xtask evaluate`) changes a node's condition from one window to the next;
//! it is replaced atomically (write, then rename), never edited in place.
//!
//! ```json
//! {"nodes": {"node-1": {
//!     "metrics": {"cpu_utilization": {"mean": 0.5, "max": 0.9, "p95": 0.8, "last": 0.6}},
//!     "missing": {"perf_ipc": "no PMU"}}}}
//! ```
//!
//! With `"as_of_unix_ms": T` at the top, the file says its conditions hold from `T` on
//! and nothing newer is known: each node's window is reported once, for the first window
//! that begins at or after `T`, and none after it until a file with a new `T` arrives.
//! A window that claims a later interval would tell the scorer that pods placed since
//! `T` are in it, which the file cannot know.
//!
//! A node missing from the file, a node whose window the scorer would refuse
//! (`fitsched_proto::validate`), or every node when the file is unreadable, gets no
//! window that time: the scorer then sees it go stale, as it would a silent agent.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use fitsched_proto::{MetricSummary, Missing};
use serde::Deserialize;

/// The replay file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayFile {
    pub nodes: BTreeMap<String, ReplayWindow>,
    /// Since when the conditions hold; `None`: report them every window.
    #[serde(default)]
    pub as_of_unix_ms: Option<i64>,
}

impl ReplayFile {
    /// Whether the window `[start, start + window)` reports this file, given the `as_of`
    /// of the last file reported (see the module doc).
    pub fn reported_in(&self, start_unix_ms: i64, last_reported: Option<i64>) -> bool {
        match self.as_of_unix_ms {
            None => true,
            Some(t) => start_unix_ms >= t && last_reported != Some(t),
        }
    }
}

/// What one node reports for one window.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayWindow {
    pub metrics: BTreeMap<String, Stats>,
    #[serde(default)]
    pub missing: BTreeMap<String, String>,
}

/// A metric's window statistics, as `fitsched_proto::MetricSummary` holds them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stats {
    pub mean: f64,
    pub max: f64,
    pub p95: f64,
    pub last: f64,
}

impl ReplayFile {
    pub fn read(path: &Path) -> anyhow::Result<ReplayFile> {
        let text = std::fs::read(path).with_context(|| format!("reading the replay file {}", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("parsing the replay file {}", path.display()))
    }
}

impl ReplayWindow {
    /// The window's metrics and missing list as the stream carries them.
    pub fn into_parts(self, samples: u32) -> (BTreeMap<String, MetricSummary>, Vec<Missing>) {
        let metrics = self
            .metrics
            .into_iter()
            .map(|(name, s)| (name, MetricSummary { mean: s.mean, max: s.max, p95: s.p95, last: s.last, samples }))
            .collect();
        let missing = self.missing.into_iter().map(|(name, reason)| Missing { name, reason }).collect();
        (metrics, missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(test: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("fitsched-replay-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write(dir: &Path, text: &str) -> std::path::PathBuf {
        let p = dir.join("replay.json");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_nodes_windows_and_missing_metrics() {
        let dir = dir("reads");
        let p = write(
            &dir,
            r#"{"nodes": {"n1": {"metrics": {"cpu_utilization": {"mean": 0.5, "max": 0.9, "p95": 0.8, "last": 0.6}},
                "missing": {"perf_ipc": "no PMU"}}, "n2": {"metrics": {}}}}"#,
        );
        let f = ReplayFile::read(&p).unwrap();
        assert_eq!(f.nodes.keys().collect::<Vec<_>>(), ["n1", "n2"]);
        let (metrics, missing) = f.nodes.into_iter().next().unwrap().1.into_parts(20);
        assert_eq!(metrics["cpu_utilization"], MetricSummary { mean: 0.5, max: 0.9, p95: 0.8, last: 0.6, samples: 20 });
        assert_eq!(missing, vec![Missing { name: "perf_ipc".into(), reason: "no PMU".into() }]);
    }

    #[test]
    fn a_file_as_of_a_time_is_reported_once_by_the_first_window_begun_after_it() {
        let dir = dir("as-of");
        let every = ReplayFile::read(&write(&dir, r#"{"nodes": {}}"#)).unwrap();
        assert!(every.reported_in(0, None) && every.reported_in(0, Some(0)), "no as_of: every window");
        let f = ReplayFile::read(&write(&dir, r#"{"nodes": {}, "as_of_unix_ms": 5000}"#)).unwrap();
        assert!(!f.reported_in(4000, None), "a window begun before the conditions held");
        assert!(f.reported_in(5000, None) && f.reported_in(6000, Some(4000)));
        assert!(!f.reported_in(7000, Some(5000)), "reported already");
    }

    #[test]
    fn refuses_files_of_another_shape() {
        let dir = dir("refuses");
        for bad in [
            r#"{"nodes": {"n1": {"metrics": {"x": {"mean": 1.0, "max": 1.0, "p95": 1.0}}}}}"#,
            r#"{"nodes": {"n1": {"metrics": {"x": {"mean": 1.0, "max": 1.0, "p95": 1.0, "last": 1.0, "min": 0.0}}}}}"#,
            r#"{"nodes": {}, "extra": 1}"#,
            "not json",
        ] {
            assert!(ReplayFile::read(&write(&dir, bad)).is_err(), "{bad}");
        }
        assert!(ReplayFile::read(&dir.join("absent.json")).is_err());
    }
}
