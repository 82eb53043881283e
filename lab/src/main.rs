//! `fitsched-lab <task>`: the lab's tasks (`cargo lab`, or `cargo xtask <task>`).

use clap::{Parser, Subcommand};
use fitsched_lab::{bench, collect, evaluate, train};

#[derive(Parser)]
#[command(name = "fitsched-lab", about = "fitsched's lab: training data, the model, the evaluation and the benchmarks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Measures nginx + wrk under stress-ng interference next to the agent's windows
    /// (the model's training data); resumable.
    Collect(collect::CollectArgs),
    /// Trains the fitness model from the collected data and exports it to ONNX.
    Train(train::TrainArgs),
    /// fitsched against kube-scheduler's default profile on measured outcomes, through
    /// the real kube-scheduler; writes docs/evaluation.md and its plots.
    Evaluate(evaluate::EvaluateArgs),
    /// Performance figures next to a baseline measured in the same run.
    Bench(bench::BenchArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Collect(args) => collect::run(args),
        Task::Train(args) => train::run(args),
        Task::Evaluate(args) => evaluate::run(args),
        Task::Bench(args) => bench::run(args),
    }
}
