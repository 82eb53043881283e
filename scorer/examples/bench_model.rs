//! The Rust side of `cargo xtask bench model`: the scorer's own ONNX model code scoring
//! the rows `onnx/bench.py` wrote, in the batches the scorer's fitness worker uses.
//! Usage: `bench_model <model.onnx> <rows.f32> <repeat> <small batch>`; prints JSON.

use std::path::Path;
use std::time::Instant;

use fitsched_scorer::fitness::MAX_BATCH;
use fitsched_scorer::model::Model;
use fitsched_scorer::onnx::OnnxModel;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 5, "usage: bench_model <model.onnx> <rows.f32> <repeat> <small batch>");
    let model = OnnxModel::load(Path::new(&args[1]))?;
    let bytes = std::fs::read(&args[2])?;
    anyhow::ensure!(bytes.len() >= 8, "rows file too short");
    let word = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize;
    let (n, cols) = (word(0), word(4));
    anyhow::ensure!(cols == model.features().len(), "rows have {cols} features, the model {}", model.features().len());
    anyhow::ensure!(bytes.len() == 8 + n * cols * 4, "rows file size does not match its header");
    let rows: Vec<Vec<f64>> = bytes[8..]
        .chunks_exact(cols * 4)
        .map(|r| r.chunks_exact(4).map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))).collect())
        .collect();
    let repeat: usize = args[3].parse()?;
    let small: usize = args[4].parse()?;
    let time = |batch: usize| -> anyhow::Result<f64> {
        let mut best = f64::INFINITY;
        for _ in 0..repeat {
            let t = Instant::now();
            for chunk in rows.chunks(batch) {
                std::hint::black_box(model.predict(chunk)?);
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        Ok(best)
    };
    println!(
        "{}",
        serde_json::json!({"rows": n, "scorer_ort_s": time(MAX_BATCH)?, "scorer_ort_batched_s": time(small)?, "max_batch": MAX_BATCH})
    );
    Ok(())
}
