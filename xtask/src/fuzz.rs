//! `cargo xtask fuzz`: the fuzz targets of `fitsched-fuzz` for a set time each, with the
//! stable mutation engine (default) or AFL++ (coverage-guided, `--engine afl`); prints
//! executions and crashes per target and fails when any target crashed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use fitsched_e2e::{paths, progress};

use fitsched_e2e::tools::cargo;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// Random edits of the seeds; nothing but the stable toolchain.
    Mutate,
    /// AFL++ through afl.rs (installs `cargo-afl` when missing), coverage-guided; its
    /// corpus carries over from run to run in `.fitsched/afl`.
    Afl,
}

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Time per target.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    time: Duration,
    #[arg(long, value_enum, default_value = "mutate")]
    engine: Engine,
    /// The targets to run (default: all; `extender-args`, `binding-args`, `window`,
    /// `scorer-requests`).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

pub fn run(args: FuzzArgs) -> anyhow::Result<()> {
    cargo(&["build", "--release", "-p", "fitsched-fuzz", "--bin", "fuzz-mutate"])?;
    let targets: Vec<String> = if args.only.is_empty() {
        let out = Command::new(mutate_binary()).arg("--list").output().context("running fuzz-mutate --list")?;
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
    } else {
        args.only.clone()
    };
    let crashed = match args.engine {
        Engine::Mutate => mutate(args.time, &targets)?,
        Engine::Afl => afl(args.time, &targets)?,
    };
    anyhow::ensure!(crashed.is_empty(), "crashes: {}", crashed.join(", "));
    Ok(())
}

fn mutate_binary() -> std::path::PathBuf {
    paths::target_dir().join("release/fuzz-mutate")
}

/// Crashed targets, with where their inputs were kept.
fn mutate(time: Duration, targets: &[String]) -> anyhow::Result<Vec<String>> {
    let crashes = paths::target_dir().join("fuzz-crashes");
    progress(format!("mutation engine: {time:?} per target"));
    let out = Command::new(mutate_binary())
        .arg(time.as_secs().max(1).to_string())
        .arg(&crashes)
        .args(targets)
        .output()
        .context("running fuzz-mutate")?;
    anyhow::ensure!(out.status.success(), "fuzz-mutate failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut crashed = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let r: serde_json::Value = serde_json::from_str(line)?;
        println!(
            "  {:<16} {:>12} executions, {} crashes",
            r["target"].as_str().unwrap_or("?"),
            r["executions"],
            r["crashes"]
        );
        if r["crashes"].as_u64() != Some(0) {
            crashed.push(format!("{} ({})", r["target"], r["crash_file"]));
        }
    }
    Ok(crashed)
}

fn afl(time: Duration, targets: &[String]) -> anyhow::Result<Vec<String>> {
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let installed = Command::new(&cargo_bin).args(["afl", "--version"]).output().is_ok_and(|o| o.status.success());
    if !installed {
        // Its build script builds AFL++ from the source the crate carries.
        cargo(&["install", "cargo-afl", "--version", "0.18.2", "--locked"])?;
    }
    let state = paths::state_dir().join("afl");
    let seeds = state.join("seeds");
    let status = Command::new(mutate_binary()).arg("--seeds").arg(&seeds).status()?;
    anyhow::ensure!(status.success(), "writing the seeds failed");
    // Instrumented builds of every dependency: a target directory of their own.
    let target_dir = paths::target_dir().join("afl");
    progress("cargo afl build (every dependency instrumented, once; minutes)");
    let status = Command::new(&cargo_bin)
        .args(["afl", "build", "--release", "-p", "fitsched-fuzz", "--features", "afl", "--bin", "fuzz-afl"])
        .env("CARGO_TARGET_DIR", &target_dir)
        .current_dir(paths::workspace_root())
        .status()?;
    anyhow::ensure!(status.success(), "cargo afl build failed");
    let binary = target_dir.join("release/fuzz-afl");
    std::fs::create_dir_all(state.join("out"))?;
    let mut crashed = Vec::new();
    for t in targets {
        let out = state.join("out").join(t);
        progress(format!("AFL++ on {t} for {time:?} (log: {})", state.join(format!("{t}.log")).display()));
        let log = std::fs::File::create(state.join(format!("{t}.log")))?;
        let status = Command::new(&cargo_bin)
            .args(["afl", "fuzz", "-V", &time.as_secs().max(1).to_string(), "-i"])
            .arg(seeds.join(t))
            .arg("-o")
            .arg(&out)
            .arg("--")
            .arg(&binary)
            .arg(t)
            // No terminal UI; continue a previous run's corpus; this VM's CPU governor,
            // core pattern and affinity are not AFL++'s to set.
            .envs([
                ("AFL_NO_UI", "1"),
                ("AFL_AUTORESUME", "1"),
                ("AFL_SKIP_CPUFREQ", "1"),
                ("AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES", "1"),
                ("AFL_NO_AFFINITY", "1"),
            ])
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()?;
        anyhow::ensure!(status.success(), "afl-fuzz on {t} failed: see {}", state.join(format!("{t}.log")).display());
        let stats = stats(&out.join("default/fuzzer_stats"))?;
        let get = |k: &str| stats.iter().find(|(key, _)| key == k).map_or("?", |(_, v)| v.as_str());
        println!(
            "  {t:<16} {:>12} executions ({}/s), {} inputs in the corpus, {} of the branch map covered \
             ({} edges), {} crashes",
            get("execs_done"),
            get("execs_per_sec"),
            get("corpus_count"),
            get("bitmap_cvg"),
            get("edges_found"),
            get("saved_crashes")
        );
        if get("saved_crashes") != "0" {
            crashed.push(format!("{t} ({})", out.join("default/crashes").display()));
        }
    }
    Ok(crashed)
}

/// AFL++'s `fuzzer_stats`: `key : value` lines.
fn stats(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}
