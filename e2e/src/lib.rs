//! fitsched's end-to-end harness: runs the real binaries together on loopback, next to
//! a real Kubernetes control plane.
//!
//! - [`paths`]: where the workspace, the built binaries and `../shared` are.
//! - [`tools`]: the project-local Python venv with the real `grpcurl`; Debian packages;
//!   the cargo and pytest runners the chores share.
//! - [`process`]: a group of child processes with a log each, stopped on drop.
//! - [`stack`]: starts scorer, shim and agents as processes and stops them on drop.
//! - [`proxy`]: a TCP proxy a test can cut or slow.
//! - [`kube_bins`]: finds (or fetches and verifies) kube-apiserver, kube-scheduler and
//!   kube-controller-manager v1.36.2.
//! - [`cluster`]: a real control plane without kubelets: etcd, kube-apiserver,
//!   kube-controller-manager, kube-scheduler; API-only nodes.
//! - [`node`]: a real node (kubelet, containerd, kube-proxy) in a network namespace of
//!   its own, joined to such a control plane; the host restored after it.
//! - [`chart`]: the Helm chart rendered and installed into such a cluster.
//! - [`testbed`]: fitsched as users run it on such a cluster, with simulated nodes.
//! - [`drill`]: outage drills, each returning its figures.
//! - [`extender`]: kube-scheduler's extender request bodies, for the shim benchmark.
//! - [`images`]: the container images as OCI archives, built without a Docker daemon.
//!
//! `cargo xtask demo` and `drill`, the lab (`fitsched-lab`) and the end-to-end tests in
//! `tests/` use these. Those tests need what is outside the repository (etcd and Debian
//! packages, the PyPI venv, the Kubernetes binaries), so they are `#[ignore]`d with the
//! reason, kube-rs style: a plain `cargo test` builds them and runs none of them, and
//! `cargo xtask test` installs what they need and runs them with `--include-ignored`.

pub mod chart;
pub mod cluster;
pub mod drill;
pub mod extender;
pub mod images;
pub mod kube_bins;
pub mod node;
pub mod paths;
pub mod process;
pub mod proxy;
pub mod stack;
pub mod testbed;
pub mod tools;

/// Prints a progress line for long jobs, on stderr so tables on stdout stay clean.
pub fn progress(msg: impl std::fmt::Display) {
    eprintln!("==> {msg}");
}
