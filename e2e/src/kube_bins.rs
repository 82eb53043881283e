//! Where the control plane's binaries come from: kube-apiserver, kube-scheduler and
//! kube-controller-manager v1.36.2.
//!
//! In order, the first that has them:
//! 1. a folder given explicitly (`--kube-bin`) or in `FITSCHED_KUBE_BIN`;
//! 2. `../shared/kube` beside the checkout (gzipped, with `SHA256SUMS`);
//! 3. the official release binaries, downloaded from `FITSCHED_KUBE_DOWNLOAD_URL`
//!    (default [`OFFICIAL_URL`]) as envtest users get theirs: each file with the
//!    `<file>.sha256` published beside it, checked before it is used.
//!
//! A folder holds either the executables themselves, used as they are (the operator
//! chose them), or `<name>.gz` files with a `SHA256SUMS` of the unpacked binaries.
//! Unpacked and downloaded binaries are cached in `<target>/kube-bin/<version>` and
//! checked again on every use. A download is checked against the `.sha256` from the same
//! server, which catches a broken transfer, not a tampered server (the sums of the
//! official v1.36.2 binaries are not pinned here), and is fetched on every use, so that
//! path needs the network even with a full cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::{paths, progress, tools};

/// The Kubernetes version the fixtures were captured from and the tests run.
pub const KUBE_VERSION: &str = "v1.36.2";
/// The binaries the control plane needs.
pub const BINARIES: [&str; 3] = ["kube-apiserver", "kube-scheduler", "kube-controller-manager"];
/// The binaries a real node needs ([`crate::node`]).
pub const NODE_BINARIES: [&str; 2] = ["kubelet", "kube-proxy"];
/// Where Kubernetes publishes its release binaries (`<url>/<name>` and `<url>/<name>.sha256`).
pub const OFFICIAL_URL: &str = "https://dl.k8s.io/release/v1.36.2/bin/linux/amd64";

/// The folder holding verified executables of [`BINARIES`].
pub fn locate(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    locate_these(explicit, &BINARIES)
}

/// The folder holding verified executables of [`NODE_BINARIES`], found as [`locate`]
/// finds the control plane's.
pub fn locate_node(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    locate_these(explicit, &NODE_BINARIES)
}

fn locate_these(explicit: Option<&Path>, names: &[&str]) -> anyhow::Result<PathBuf> {
    let from_env = std::env::var_os("FITSCHED_KUBE_BIN").map(PathBuf::from);
    if let Some(dir) = explicit.map(Path::to_path_buf).or(from_env) {
        return from_folder(&dir, names)
            .with_context(|| format!("the kube binaries in {} (--kube-bin / FITSCHED_KUBE_BIN)", dir.display()));
    }
    let shared = paths::shared_dir().join("kube");
    if shared.join("SHA256SUMS").is_file() {
        return from_folder(&shared, names).with_context(|| format!("the kube binaries in {}", shared.display()));
    }
    let url = std::env::var("FITSCHED_KUBE_DOWNLOAD_URL").unwrap_or_else(|_| OFFICIAL_URL.to_owned());
    download_these(&url, &cache_dir(), names).with_context(|| {
        format!(
            "no {} {KUBE_VERSION}: none in --kube-bin / FITSCHED_KUBE_BIN, none in {}, and downloading them from \
             {url} failed",
            names.join(", "),
            shared.display()
        )
    })
}

fn cache_dir() -> PathBuf {
    paths::target_dir().join("kube-bin").join(KUBE_VERSION)
}

/// Plain executables are used as they are; gzipped ones are unpacked into the cache and
/// checked against the folder's `SHA256SUMS`.
fn from_folder(dir: &Path, names: &[&str]) -> anyhow::Result<PathBuf> {
    if names.iter().all(|b| dir.join(b).is_file()) {
        return Ok(dir.to_path_buf());
    }
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS"))
        .with_context(|| format!("{} has neither the executables nor SHA256SUMS", dir.display()))?;
    let cache = cache_dir();
    std::fs::create_dir_all(&cache)?;
    for &name in names {
        let want = expected_sum(&sums, name)?;
        let out = cache.join(name);
        if out.is_file() && sha256(&out)? == want {
            continue;
        }
        let gz = dir.join(format!("{name}.gz"));
        progress(format!("unpacking {}", gz.display()));
        let partial = cache.join(format!("{name}.partial"));
        let file = std::fs::File::create(&partial)?;
        let status = Command::new("gunzip").arg("-c").arg(&gz).stdout(file).status().context("starting gunzip")?;
        if !status.success() {
            bail!("gunzip -c {} failed ({status})", gz.display());
        }
        install(&partial, &out, &want)?;
    }
    Ok(cache)
}

/// The sha256 of `name` in a `sha256sum`-style list (`<hex>  <name>`).
fn expected_sum(sums: &str, name: &str) -> anyhow::Result<String> {
    sums.lines()
        .filter_map(|l| l.split_once(char::is_whitespace))
        .find(|(_, file)| file.trim().trim_start_matches('*') == name)
        .map(|(sum, _)| sum.to_ascii_lowercase())
        .with_context(|| format!("SHA256SUMS has no line for {name}"))
}

/// Makes `cache` hold verified executables of [`BINARIES`] from a release folder at `url`
/// laid out like [`OFFICIAL_URL`] (`<url>/<name>` and `<url>/<name>.sha256`), and returns
/// it. Each call fetches the published `.sha256` files; a binary is downloaded only when
/// the cache has none matching its sum. A download that does not match is deleted (and
/// so is the stale cached binary it was to replace) and the call fails. Needs `curl`,
/// installed through Debian when missing.
pub fn download_to(url: &str, cache: &Path) -> anyhow::Result<PathBuf> {
    download_these(url, cache, &BINARIES)
}

fn download_these(url: &str, cache: &Path, names: &[&str]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(cache)?;
    tools::ensure_debian_tools(&[("curl", "curl")])?;
    for &name in names {
        let out = cache.join(name);
        let sum_text = fetch_text(&format!("{url}/{name}.sha256"))?;
        let want = sum_text.split_whitespace().next().unwrap_or_default().to_ascii_lowercase();
        if want.len() != 64 || !want.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{url}/{name}.sha256 is not a sha256: {sum_text:?}");
        }
        if out.is_file() && sha256(&out)? == want {
            continue;
        }
        progress(format!("downloading {url}/{name}"));
        let partial = cache.join(format!("{name}.partial"));
        tools::run(
            Command::new("curl").args(["-fsSL", "--retry", "2", "-o"]).arg(&partial).arg(format!("{url}/{name}")),
        )
        .with_context(|| format!("downloading {url}/{name}"))?;
        install(&partial, &out, &want)?;
    }
    Ok(cache.to_path_buf())
}

fn fetch_text(url: &str) -> anyhow::Result<String> {
    tools::run(Command::new("curl").args(["-fsSL", "--retry", "2", url])).with_context(|| format!("fetching {url}"))
}

/// Moves a verified file into place as an executable; an unverified one is deleted, and
/// so is whatever `out` held (callers get here only when it does not match `want`).
fn install(partial: &Path, out: &Path, want: &str) -> anyhow::Result<()> {
    let got = sha256(partial)?;
    if got != want {
        let _ = std::fs::remove_file(partial);
        let _ = std::fs::remove_file(out);
        bail!("checksum mismatch for {}: expected {want}, got {got}", out.display());
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(partial, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(partial, out)?;
    Ok(())
}

fn sha256(path: &Path) -> anyhow::Result<String> {
    let out = tools::run(Command::new("sha256sum").arg(path))?;
    Ok(out.split_whitespace().next().unwrap_or_default().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sha256sum_lists() {
        let sums = "ab12  kube-apiserver\nCD34 *kube-scheduler\n";
        assert_eq!(expected_sum(sums, "kube-apiserver").unwrap(), "ab12");
        assert_eq!(expected_sum(sums, "kube-scheduler").unwrap(), "cd34");
        assert!(expected_sum(sums, "kube-controller-manager").is_err());
    }
}
