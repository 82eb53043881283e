//! Every limit the agent enforces, in one place: built from its arguments
//! ([`Limits::from_args`]) and handed to each part that enforces one (the stream's resend
//! buffer, the PCM poller). The README's limits table is held against
//! [`Limits::default`] by a test here.

use std::time::Duration;

/// What the agent keeps and waits for, at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Unacknowledged windows kept per node for resending (`--buffer`); the oldest is
    /// dropped beyond it.
    pub buffer_windows: usize,
    /// One poll of pcm-sensor-server: it answers `/persecond` from memory within
    /// milliseconds, and a slower one must not pile up behind the next tick.
    pub pcm_fetch_timeout: Duration,
    /// One answer of pcm-sensor-server: a 2-socket server with 448 threads prints about
    /// 1.5 MB; more than this is not PCM.
    pub pcm_max_answer_bytes: usize,
    /// The HTTP listener's connections and request heads.
    pub serve: fitsched_runtime::http::ServeLimits,
}

impl Default for Limits {
    /// The flags' defaults.
    fn default() -> Self {
        Self {
            buffer_windows: 30,
            pcm_fetch_timeout: Duration::from_millis(500),
            pcm_max_answer_bytes: 16 << 20,
            serve: fitsched_runtime::http::ServeLimits::default(),
        }
    }
}

impl Limits {
    pub fn from_args(args: &crate::Args) -> Self {
        Self { buffer_windows: args.buffer, ..Self::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn row(limit: &str) -> String {
        fitsched_runtime::limits_table::row(include_str!("../../README.md"), limit)
    }

    #[test]
    fn the_defaults_are_the_flags_defaults_and_the_readme_says_them() {
        let args = crate::Args::try_parse_from(["fitsched-agent"]).unwrap();
        let l = Limits::from_args(&args);
        assert_eq!(l, Limits::default());
        assert_eq!(row("unacknowledged windows per node (agent)"), format!("`--buffer {}`", l.buffer_windows));
        assert_eq!(
            row("a pcm-sensor-server answer (agent)"),
            format!("{} MiB, {} ms", l.pcm_max_answer_bytes >> 20, l.pcm_fetch_timeout.as_millis())
        );
    }
}
