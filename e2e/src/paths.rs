//! Where things are, from the workspace's point of view.

use std::path::PathBuf;

/// The workspace root (this crate sits in `<root>/e2e`).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"))
}

/// Where the fitsched binaries are: `FITSCHED_BIN_DIR`, else the dev profile's output.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("FITSCHED_BIN_DIR").map(PathBuf::from).unwrap_or_else(|| target_dir().join("debug"))
}

/// The project's `shared/` folder (design, the Kubernetes binaries of `kube/`), beside
/// the checkout unless `FITSCHED_SHARED` says otherwise.
pub fn shared_dir() -> PathBuf {
    std::env::var_os("FITSCHED_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().parent().map(|p| p.join("shared")).unwrap_or_default())
}

/// The captured kube-scheduler extender bodies, carried in the repository at
/// `extender-shim/testdata/kube-scheduler-extender/`.
pub fn fixtures_dir() -> PathBuf {
    workspace_root().join("extender-shim/testdata/kube-scheduler-extender")
}

/// Project-local state that is not committed (the venv, logs).
pub fn state_dir() -> PathBuf {
    workspace_root().join(".fitsched")
}
