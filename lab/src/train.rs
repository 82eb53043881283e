//! `cargo xtask train`: trains the fitness model from `onnx/data/samples.jsonl` with
//! `onnx/train.py` in the project venv and writes `onnx/fitness.onnx`, `onnx/parity.json`
//! and `onnx/MODEL_CARD.md`.

use std::ffi::OsStr;
use std::process::Command;

use anyhow::{Context, bail};
use fitsched_e2e::{paths, progress, tools};

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Trees in the forest.
    #[arg(long, default_value_t = 100)]
    trees: u32,
    /// Maximum depth of each tree.
    #[arg(long, default_value_t = 8)]
    max_depth: u32,
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    progress("training with onnx/train.py");
    train_py(&["--trees", &args.trees.to_string(), "--max-depth", &args.max_depth.to_string()])
}

/// Runs `onnx/train.py` with `args` in the project venv.
pub fn train_py<S: AsRef<OsStr>>(args: &[S]) -> anyhow::Result<()> {
    let venv = tools::ensure_venv()?;
    let script = paths::workspace_root().join("onnx/train.py");
    let status = Command::new(venv.python())
        .arg(&script)
        .args(args)
        .status()
        .with_context(|| format!("starting {}", venv.python().display()))?;
    if !status.success() {
        bail!("{} failed ({status})", script.display());
    }
    Ok(())
}
