//! Pressure stall information, one tracker for every place the kernel reports it: the
//! node's `/proc/pressure/{cpu,memory,io}` and a cgroup v2 directory's `*.pressure`
//! files share a format and are turned into stall shares the same way.

use std::time::Instant;

use super::Sample;
use super::procfs::ParseError;

/// Cumulative stall time of one pressure file, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pressure {
    pub some_total_us: u64,
    /// Absent for `cpu` before Linux 5.13.
    pub full_total_us: Option<u64>,
}

pub fn parse_pressure(contents: &str) -> Result<Pressure, ParseError> {
    let mut some = None;
    let mut full = None;
    for line in contents.lines() {
        let mut tokens = line.split_ascii_whitespace();
        let slot = match tokens.next() {
            Some("some") => &mut some,
            Some("full") => &mut full,
            _ => continue,
        };
        let total = tokens
            .find_map(|t| t.strip_prefix("total="))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| ParseError::Malformed { what: "pressure line", line: line.to_owned() })?;
        *slot = Some(total);
    }
    Ok(Pressure { some_total_us: some.ok_or(ParseError::MissingField("some"))?, full_total_us: full })
}

/// Share of `elapsed_us` spent stalled, from two cumulative counters; `None` on reset or
/// when no time passed.
pub fn stall_share(prev_us: u64, cur_us: u64, elapsed_us: f64) -> Option<f64> {
    let delta = cur_us.checked_sub(prev_us)?;
    // Readings of different files are a few microseconds apart, so a share can
    // overshoot 1 slightly.
    (elapsed_us > 0.0).then(|| (delta as f64 / elapsed_us).clamp(0.0, 1.0))
}

/// One pressure file and the metrics it feeds.
#[derive(Debug, Clone, Copy)]
pub struct PsiFile {
    /// The file's path for messages (`/proc/pressure/cpu`, `<cgroup>/cpu.pressure`) is
    /// made from this by the caller.
    pub resource: &'static str,
    pub some: &'static str,
    /// `None` where the metric set has no `full` share for the resource.
    pub full: Option<&'static str>,
}

/// The previous counters of three pressure files (cpu, memory, io), for shares.
#[derive(Debug, Default)]
pub struct PsiTracker {
    prev: [Option<(Pressure, Instant)>; 3],
}

impl PsiTracker {
    /// Forgets the previous counters: the next tick is a first reading again.
    pub fn reset(&mut self) {
        self.prev = [None; 3];
    }

    /// Reports every metric of `files` missing with `reason`, and forgets the counters.
    pub fn missing(&mut self, files: &[PsiFile; 3], reason: &str, sample: &mut Sample) {
        self.reset();
        for f in files {
            sample.set_missing(f.some, reason);
            if let Some(full) = f.full {
                sample.set_missing(full, reason);
            }
        }
    }

    /// One tick's contents of `files` (or why each could not be read) into stall shares
    /// since the previous tick; `path` names a file in messages.
    pub fn compute(
        &mut self,
        files: &[PsiFile; 3],
        contents: [Result<String, String>; 3],
        path: impl Fn(&str) -> String,
        now: Instant,
        sample: &mut Sample,
    ) {
        for (i, (f, contents)) in files.iter().zip(contents).enumerate() {
            let parsed = contents
                .and_then(|s| parse_pressure(&s).map_err(|e| format!("cannot parse {}: {e}", path(f.resource))));
            let cur = match parsed {
                Ok(cur) => cur,
                Err(reason) => {
                    self.prev[i] = None;
                    sample.set_missing(f.some, reason.clone());
                    if let Some(full) = f.full {
                        sample.set_missing(full, reason);
                    }
                    continue;
                }
            };
            if let Some(full) = f.full
                && cur.full_total_us.is_none()
            {
                sample.set_missing(full, format!("no `full` line in {}", path(f.resource)));
            }
            if let Some((prev, at)) = self.prev[i] {
                let elapsed_us = now.saturating_duration_since(at).as_secs_f64() * 1e6;
                if let Some(share) = stall_share(prev.some_total_us, cur.some_total_us, elapsed_us) {
                    sample.set(f.some, share);
                }
                if let (Some(full), Some(p), Some(c)) = (f.full, prev.full_total_us, cur.full_total_us)
                    && let Some(share) = stall_share(p, c, elapsed_us)
                {
                    sample.set(full, share);
                }
            }
            self.prev[i] = Some((cur, now));
        }
    }
}
