//! `cargo xtask <task>`: every developer and CI chore of fitsched, in Rust so that it
//! runs wherever cargo does.

mod bench;
mod chart;
mod collect;
mod demo;
mod drill;
mod evaluate;
mod fuzz;
mod test;
mod train;

use std::ffi::OsStr;
use std::process::Command;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "fitsched's developer and CI tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Runs the whole stack on localhost and schedules pods through the extender.
    Demo(demo::DemoArgs),
    /// Runs every check: fmt, clippy -D warnings, unit, integration and end-to-end tests.
    Test(test::TestArgs),
    /// Performance figures next to a baseline measured in the same run.
    Bench(bench::BenchArgs),
    /// Measures nginx + wrk under stress-ng interference next to the agent's windows
    /// (the model's training data); resumable.
    Collect(collect::CollectArgs),
    /// Trains the fitness model from the collected data and exports it to ONNX.
    Train(train::TrainArgs),
    /// fitsched against kube-scheduler's default profile on measured outcomes, through
    /// the real kube-scheduler; writes docs/evaluation.md and its plots.
    Evaluate(evaluate::EvaluateArgs),
    /// Outage drills with real processes, each printing its figures (the short versions
    /// run in `cargo xtask test`).
    Drill(drill::DrillArgs),
    /// Fuzzes what fitsched accepts from the network (extender JSON in both modes,
    /// bindings, windows, every scorer request) for a set time per target.
    Fuzz(fuzz::FuzzArgs),
    /// Prints fitsched's kube-scheduler extender policy (the chart's `extenders:` entry;
    /// --full: a whole KubeSchedulerConfiguration).
    Policy(chart::PolicyArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Demo(args) => demo::run(args),
        Task::Test(args) => test::run(args),
        Task::Bench(args) => bench::run(args),
        Task::Collect(args) => collect::run(args),
        Task::Train(args) => train::run(args),
        Task::Evaluate(args) => evaluate::run(args),
        Task::Policy(args) => chart::policy(args),
        Task::Drill(args) => drill::run(args),
        Task::Fuzz(args) => fuzz::run(args),
    }
}

/// Runs the pytest suite in `dir` (relative to the workspace) with the project venv's
/// Python and `env`; `what` names it in the error.
pub fn pytest(dir: &str, env: &[(&str, &OsStr)], what: &str) -> anyhow::Result<()> {
    let venv = fitsched_e2e::tools::ensure_venv()?;
    let status = Command::new(venv.python())
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", dir])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .envs(env.iter().copied())
        .current_dir(fitsched_e2e::paths::workspace_root())
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
    fitsched_e2e::progress(format!("cargo {}", args.join(" ")));
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(fitsched_e2e::paths::workspace_root())
        .status()
        .with_context(|| format!("starting {cargo}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
