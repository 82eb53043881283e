//! `cargo xtask test`: what CI runs.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use fitsched_e2e::tools::{cargo_with_env, pytest};
use fitsched_e2e::{kube_bins, progress, tools};

#[derive(Args)]
pub struct TestArgs {
    /// A folder with kube-apiserver, kube-scheduler and kube-controller-manager v1.36.2
    /// (the executables, or `<name>.gz` with a `SHA256SUMS`) for the end-to-end tests'
    /// control plane; passed to them as FITSCHED_KUBE_BIN. Default: ../shared/kube, else
    /// the official release, downloaded and checked against its published sha256.
    #[arg(long, value_name = "DIR", env = "FITSCHED_KUBE_BIN")]
    pub kube_bin: Option<PathBuf>,
}

pub fn run(args: TestArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    // Absolute: the tests run in their crate's folder, not where this was started.
    let kube_bin = args.kube_bin.as_deref().map(std::path::absolute).transpose()?;
    let env: Vec<(&str, &OsStr)> = kube_bin.iter().map(|dir| ("FITSCHED_KUBE_BIN", dir.as_os_str())).collect();
    cargo_with_env(&["fmt", "--all", "--check"], &env)?;
    cargo_with_env(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], &env)?;
    // The end-to-end tests start the real binaries; build them before the tests run.
    cargo_with_env(&["build", "--workspace", "--bins"], &env)?;
    tools::ensure_venv()?;
    // The end-to-end tests run a real control plane: install etcd and fetch, unpack and
    // verify the kube binaries here, with progress, rather than silently inside a test.
    fitsched_e2e::cluster::ensure_etcd()?;
    let kube = kube_bins::locate(kube_bin.as_deref())?;
    progress(format!(
        "kube-apiserver, kube-scheduler, kube-controller-manager {}: {}",
        kube_bins::KUBE_VERSION,
        kube.display()
    ));
    // The chart's tests start the real shim, so they come after the build.
    crate::chart::check()?;
    progress("pytest onnx/tests: labels, transferable features, grouped validation, export, evaluation split");
    pytest("onnx/tests", &[], "onnx tests")?;
    // What needs more than the repository (the built binaries, the venv, a control
    // plane) is `#[ignore]`d for a plain `cargo test`; everything it needs is here now.
    cargo_with_env(&["test", "--workspace", "--no-fail-fast", "--", "--include-ignored"], &env)?;
    progress(format!("all checks passed in {:.0?}", started.elapsed()));
    Ok(())
}
