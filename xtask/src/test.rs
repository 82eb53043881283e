//! `cargo xtask test`: what CI runs.

use std::time::Instant;

use fitsched_e2e::{progress, tools};

use crate::cargo;

pub fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    // The end-to-end tests start the real binaries; build them before the tests run.
    cargo(&["build", "--workspace", "--bins"])?;
    tools::ensure_venv()?;
    // The chart's tests start the real shim, so they come after the build.
    crate::chart::check()?;
    cargo(&["test", "--workspace", "--no-fail-fast"])?;
    progress(format!("all checks passed in {:.0?}", started.elapsed()));
    Ok(())
}
