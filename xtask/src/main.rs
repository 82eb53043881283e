//! `cargo xtask <task>`: fitsched's chores, in Rust so that they run wherever cargo does.
//! The lab's tasks (`fitsched-lab`: collect, train, evaluate, bench) are forwarded to it
//! unchanged, so one command line reaches every task.

mod chart;
mod demo;
mod demo_node;
mod drill;
mod fuzz;
mod images;
mod test;

use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fitsched_e2e::paths;

#[derive(Parser)]
#[command(about = "fitsched's developer and CI chores")]
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
    /// Outage drills with real processes, each printing its figures (the short versions
    /// run in `cargo xtask test`).
    Drill(drill::DrillArgs),
    /// Fuzzes what fitsched accepts from the network (extender JSON in both modes,
    /// bindings, windows, every scorer request) for a set time per target.
    Fuzz(fuzz::FuzzArgs),
    /// Writes an OCI image archive per image (agent, scorer, shim, bench, kube-scheduler),
    /// without a Docker daemon or a registry.
    Images(images::ImagesArgs),
    /// The lab: measures the model's training data (`fitsched-lab collect --help`).
    #[command(disable_help_flag = true)]
    Collect(Forwarded),
    /// The lab: trains the fitness model and exports it to ONNX (`fitsched-lab train --help`).
    #[command(disable_help_flag = true)]
    Train(Forwarded),
    /// The lab: fitsched against kube-scheduler's default profile on measured outcomes
    /// (`fitsched-lab evaluate --help`).
    #[command(disable_help_flag = true)]
    Evaluate(Forwarded),
    /// The lab: performance figures next to a baseline measured in the same run
    /// (`fitsched-lab bench --help`).
    #[command(disable_help_flag = true)]
    Bench(Forwarded),
}

/// A lab task's arguments, passed on as they are (`--help` included).
#[derive(clap::Args)]
struct Forwarded {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Demo(args) => demo::run(args),
        Task::Test(args) => test::run(args),
        Task::Drill(args) => drill::run(args),
        Task::Fuzz(args) => fuzz::run(args),
        Task::Images(args) => images::run(args),
        Task::Collect(f) => lab("collect", f),
        Task::Train(f) => lab("train", f),
        Task::Evaluate(f) => lab("evaluate", f),
        Task::Bench(f) => lab("bench", f),
    }
}

/// Becomes `cargo run -p fitsched-lab -- <task> <args>`: replacing this process, not
/// waiting on a child, so Ctrl-C and SIGTERM reach the lab itself (collect stops
/// cleanly on them) and its exit status is the command's.
fn lab(task: &str, f: Forwarded) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let err = Command::new(&cargo)
        .args(["run", "--quiet", "--package", "fitsched-lab", "--", task])
        .args(&f.args)
        .current_dir(paths::workspace_root())
        .exec();
    Err(err).with_context(|| format!("starting {cargo} run --package fitsched-lab"))
}
