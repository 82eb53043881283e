//! Fuzz targets of the shim's wire format (`cargo xtask fuzz`): kube-scheduler's
//! `ExtenderArgs` in both modes (names and full Node objects) and `ExtenderBindingArgs`,
//! seeded with the captured fixtures. Bad input must be a `BadRequest`, never a panic.
//!
//! `fuzz_wire SECONDS CRASH_DIR`; prints one JSON line per target.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fitsched_e2e::fuzz;
use fitsched_shim::wire;
use fitsched_shim::{ProfileStrategies, ProfileStrategy};

fn seeds(verbs: &[&str]) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/kube-scheduler-extender");
    let mut out = Vec::new();
    for mode in ["names", "full"] {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(root.join(mode)).into_iter().flatten().flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            let name = f.file_name().unwrap_or_default().to_string_lossy().into_owned();
            if name.ends_with("-request.json") && verbs.iter().any(|v| name.contains(v)) {
                out.push(std::fs::read(&f).expect("fixture"));
            }
        }
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let crashes = PathBuf::from(args.get(2).cloned().unwrap_or_else(|| "target/fuzz-crashes".into()));
    let duration = Duration::from_secs(seconds);
    let profiles =
        ProfileStrategies::new([ProfileStrategy { scheduler_name: "fitsched-pack".into(), strategy: "pack".into() }])
            .unwrap();
    let reports = [
        fuzz::run("extender-args", &seeds(&["filter", "prioritize"]), duration, 1, &crashes, |input| {
            if let Ok(args) = wire::decode_extender_args_for(input, &profiles) {
                std::hint::black_box(args.pod_display());
            }
        }),
        fuzz::run("binding-args", &seeds(&["bind"]), duration, 2, &crashes, |input| {
            std::hint::black_box(wire::decode_binding_args(input).ok());
        }),
    ];
    for r in reports {
        println!(
            "{}",
            serde_json::json!({"target": r.target, "executions": r.executions, "crashes": r.crashes,
                "crash_file": r.crash_file.map(|p| p.display().to_string())})
        );
    }
}
