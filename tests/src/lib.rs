//! Runs fitsched's real binaries together on loopback.
//!
//! - [`paths`]: where the workspace, the built binaries and `../shared` are.
//! - [`tools`]: the project-local Python venv with the real `grpcurl`.
//! - [`stack`]: starts scorer, shim and agents as processes and stops them on drop.
//! - [`sim`]: a kube-scheduler simulator that speaks the extender wire format.
//!
//! `cargo xtask demo` and the end-to-end tests in `tests/` use these.

pub mod paths;
pub mod sim;
pub mod stack;
pub mod tools;

/// Prints a progress line for long jobs, on stderr so tables on stdout stay clean.
pub fn progress(msg: impl std::fmt::Display) {
    eprintln!("==> {msg}");
}
