//! Runs fitsched's real binaries together on loopback.
//!
//! - [`paths`]: where the workspace, the built binaries and `../shared` are.
//! - [`tools`]: the project-local Python venv with the real `grpcurl`; Debian packages.
//! - [`process`]: a group of child processes with a log each, stopped on drop.
//! - [`stack`]: starts scorer, shim and agents as processes and stops them on drop.
//! - [`kube_bins`]: finds (or fetches and verifies) kube-apiserver, kube-scheduler and
//!   kube-controller-manager v1.36.2.
//! - [`cluster`]: a real control plane without kubelets: etcd, kube-apiserver,
//!   kube-controller-manager, kube-scheduler; API-only nodes.
//! - [`chart`]: the Helm chart rendered and installed into such a cluster.
//! - [`testbed`]: fitsched as users run it on such a cluster, with simulated nodes.
//! - [`sim`]: a kube-scheduler simulator that speaks the extender wire format.
//!
//! `cargo xtask demo`, the benchmarks and the end-to-end tests in `tests/` use these.

pub mod chart;
pub mod cluster;
pub mod drill;
pub mod kube_bins;
pub mod paths;
pub mod process;
pub mod proxy;
pub mod sim;
pub mod stack;
pub mod testbed;
pub mod tools;

/// Prints a progress line for long jobs, on stderr so tables on stdout stay clean.
pub fn progress(msg: impl std::fmt::Display) {
    eprintln!("==> {msg}");
}
