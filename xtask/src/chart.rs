//! The Helm chart's checks, run by `cargo xtask test`. (The kube-scheduler policy for
//! operators who extend their own scheduler comes from the chart's templates, through
//! `helm template --show-only templates/policy.yaml`: no toolchain needed.)

use anyhow::bail;
use fitsched_e2e::{paths, progress, tools};

/// Runs the chart tests with pytest (render with Helm's Go SDK, `helm lint`, strict
/// Kubernetes schema validation, the KubeSchedulerConfiguration against its schema and
/// against what the real shim serves, values.schema.json refusals).
pub fn check() -> anyhow::Result<()> {
    progress("pytest charts/tests: render, helm lint, Kubernetes schemas, extender policy, values schema");
    // The tests start the shim from the workspace build that `cargo xtask test` has just made.
    let bin_dir = paths::bin_dir();
    if !bin_dir.join("fitsched-shim").exists() {
        bail!("{} has no fitsched-shim: run `cargo build --workspace --bins` first", bin_dir.display());
    }
    tools::pytest("charts/tests", &[("FITSCHED_BIN_DIR", bin_dir.as_os_str())], "chart tests")
}
