//! Score latency with and without fitness batches over every node: `cargo xtask bench
//! batch` runs it against a release scorer that already holds NODES nodes' windows
//! (`load-000000`...) and reloads MODEL every poll.
//!
//! Phase one scores for SECONDS with nothing else running; phase two scores for as long
//! while MODEL is replaced every 200 ms by an equivalent file (the same graph with a
//! different `doc_string`), so the scorer recomputes every node's fitness in one batch,
//! batch after batch. Prints a JSON line of both phases' latencies.
//!
//! `score_during_batch URL MODEL NODES SECONDS`

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use fitsched_proto::scorer_client::ScorerClient;
use fitsched_proto::{CandidateNode, Owner, PodFacts, ScoreRequest};

/// Candidates per Score call: kube-scheduler's share of a 10 000-node cluster at its
/// default percentageOfNodesToScore is a few hundred.
const CANDIDATES: usize = 500;

async fn phase(
    client: &mut ScorerClient<tonic::transport::Channel>,
    nodes: usize,
    seconds: f64,
) -> anyhow::Result<Vec<Duration>> {
    let pod = PodFacts {
        name: "bench".into(),
        namespace: "bench".into(),
        owner: Some(Owner { kind: "ReplicaSet".into(), name: "bench".into(), uid: "rs".into() }),
        strategy: "balanced".into(),
        ..Default::default()
    };
    let mut latencies = Vec::new();
    let started = Instant::now();
    let mut start = 0;
    while started.elapsed().as_secs_f64() < seconds {
        // A rotating start, as kube-scheduler's own node walk rotates.
        let candidates = (0..CANDIDATES)
            .map(|i| CandidateNode { name: format!("load-{:06}", (start + i) % nodes), ..Default::default() })
            .collect();
        start = (start + CANDIDATES) % nodes;
        let request = ScoreRequest { pod: Some(pod.clone()), nodes: candidates, scores_only: true };
        let t = Instant::now();
        client.score(request).await?;
        latencies.push(t.elapsed());
    }
    latencies.sort();
    Ok(latencies)
}

fn summary(l: &[Duration]) -> serde_json::Value {
    let q = |p: f64| l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1))).map_or(0.0, ms);
    serde_json::json!({"calls": l.len(), "p50_ms": q(0.5), "p99_ms": q(0.99), "max_ms": l.last().map_or(0.0, ms)})
}

fn ms(d: &Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Replaces `model` every 200 ms, alternating its content and the same with another
/// `doc_string` (ModelProto field 6, appended: a later field value wins in protobuf).
fn flip(model: &Path, stop: &AtomicBool, flips: &AtomicUsize) -> anyhow::Result<()> {
    let original = std::fs::read(model)?;
    let mut variant = original.clone();
    let doc = b"fitsched bench variant";
    variant.extend([0x32, doc.len() as u8]);
    variant.extend(doc);
    let tmp: PathBuf = model.with_extension("flip");
    let mut next = &variant;
    while !stop.load(Relaxed) {
        std::fs::write(&tmp, next)?;
        std::fs::rename(&tmp, model)?;
        flips.fetch_add(1, Relaxed);
        next = if std::ptr::eq(next, &variant) { &original } else { &variant };
        std::thread::sleep(Duration::from_millis(200));
    }
    std::fs::write(&tmp, &original)?;
    std::fs::rename(&tmp, model)?;
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 5, "usage: score_during_batch URL MODEL NODES SECONDS");
    let model = PathBuf::from(&args[2]);
    let (nodes, seconds): (usize, f64) = (args[3].parse()?, args[4].parse()?);
    let channel = tonic::transport::Endpoint::from_shared(args[1].clone())?.connect().await?;
    let mut client = ScorerClient::new(channel);

    phase(&mut client, nodes, 1.0).await?; // warm-up
    let idle = phase(&mut client, nodes, seconds).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let flips = Arc::new(AtomicUsize::new(0));
    let flipper = {
        let (stop, flips) = (stop.clone(), flips.clone());
        std::thread::spawn(move || flip(&model, &stop, &flips))
    };
    let during = phase(&mut client, nodes, seconds).await;
    stop.store(true, Relaxed);
    flipper.join().map_err(|_| anyhow::anyhow!("the model flipper panicked"))??;
    let during = during?;
    println!(
        "{}",
        serde_json::json!({
            "candidates": CANDIDATES,
            "idle": summary(&idle),
            "during": summary(&during),
            "model_replacements": flips.load(Relaxed),
        })
    );
    Ok(())
}
