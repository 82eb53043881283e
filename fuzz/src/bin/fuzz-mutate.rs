//! The mutation engine over every target (or those named), for SECONDS each; prints one
//! JSON line per target. `fuzz-mutate --seeds DIR` writes each target's seeds to
//! `DIR/<target>/` instead (AFL++'s input corpus); `--list` prints the targets' names.
//!
//! `fuzz-mutate SECONDS CRASH_DIR [TARGET...]`

use std::path::PathBuf;
use std::time::Duration;

use fitsched_fuzz::{TARGETS, Target, mutate};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--list") {
        TARGETS.iter().for_each(|t| println!("{t}"));
        return Ok(());
    }
    if args.first().map(String::as_str) == Some("--seeds") {
        let dir = PathBuf::from(args.get(1).ok_or("usage: fuzz-mutate --seeds DIR")?);
        for name in TARGETS {
            let t = Target::new(name).ok_or(name)?;
            let out = dir.join(name);
            std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            for (i, seed) in t.seeds.iter().enumerate() {
                std::fs::write(out.join(format!("seed-{i:03}")), seed).map_err(|e| e.to_string())?;
            }
        }
        return Ok(());
    }
    let seconds: u64 =
        args.first().and_then(|s| s.parse().ok()).ok_or("usage: fuzz-mutate SECONDS CRASH_DIR [TARGET...]")?;
    let crashes = PathBuf::from(args.get(1).ok_or("no CRASH_DIR")?);
    let names: Vec<&str> =
        if args.len() > 2 { args[2..].iter().map(String::as_str).collect() } else { TARGETS.to_vec() };
    for (i, name) in names.into_iter().enumerate() {
        let mut t = Target::new(name).ok_or_else(|| format!("no target {name}; targets: {}", TARGETS.join(", ")))?;
        let seeds = std::mem::take(&mut t.seeds);
        let r = mutate::run(name, &seeds, Duration::from_secs(seconds), i as u64 + 1, &crashes, |input| t.run(input));
        println!(
            "{}",
            serde_json::json!({"target": r.target, "executions": r.executions, "crashes": r.crashes,
                "crash_file": r.crash_file.map(|p| p.display().to_string())})
        );
    }
    Ok(())
}
