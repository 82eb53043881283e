//! Streams one window for each of N nodes into a scorer, over S concurrent ingest
//! streams, as fast as the scorer acknowledges them, and prints a JSON line: windows,
//! seconds, windows per second, and the same windows' protobuf encode + decode rate in
//! this process (the baseline `cargo xtask bench store` reports next to it).
//!
//! `ingest_load URL TEMPLATE.json NODES STREAMS`; TEMPLATE is a replay window
//! (`{"metrics": {name: {mean, max, p95, last}}, "missing": {name: reason}}`).

use std::time::Instant;

use anyhow::Context;
use fitsched_proto::ingest_client::IngestClient;
use fitsched_proto::{MetricSummary, Missing, NodeWindow};
use prost::Message;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

fn template(v: &Value) -> anyhow::Result<NodeWindow> {
    let mut w = NodeWindow {
        agent_id: format!("load-{}", std::process::id()),
        sequence: 1,
        start_unix_ms: 0,
        end_unix_ms: fitsched_proto::now_unix_ms(),
        samples: 20,
        samples_expected: 20,
        ..Default::default()
    };
    for (name, s) in v["metrics"].as_object().context("no metrics")? {
        let stat = |k: &str| s[k].as_f64().with_context(|| format!("{name}.{k}"));
        let summary = MetricSummary {
            mean: stat("mean")?,
            max: stat("max")?,
            p95: stat("p95")?,
            last: stat("last")?,
            samples: 20,
        };
        w.metrics.insert(name.clone(), summary);
    }
    for (name, reason) in v["missing"].as_object().into_iter().flatten() {
        w.missing.push(Missing { name: name.clone(), reason: reason.as_str().unwrap_or_default().to_owned() });
    }
    Ok(w)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() == 5, "usage: ingest_load URL TEMPLATE.json NODES STREAMS");
    let base = template(&serde_json::from_slice(&std::fs::read(&args[2])?)?)?;
    let (nodes, streams): (usize, usize) = (args[3].parse()?, args[4].parse::<usize>()?.max(1));
    let channel = tonic::transport::Endpoint::from_shared(args[1].clone())?.connect().await?;

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..streams {
        let (mut client, base) = (IngestClient::new(channel.clone()), base.clone());
        tasks.spawn(async move {
            let names: Vec<String> = (s..nodes).step_by(streams).map(|i| format!("load-{i:06}")).collect();
            let expected = names.len();
            let (tx, rx) = mpsc::channel(1024);
            let sender = tokio::spawn(async move {
                for name in names {
                    let w = NodeWindow { node_name: name, ..base.clone() };
                    if tx.send(w).await.is_err() {
                        break;
                    }
                }
                // Keep the stream open until every ack is in.
                std::future::pending::<()>().await;
            });
            let mut acks = client.stream(ReceiverStream::new(rx)).await?.into_inner();
            let mut acked = 0;
            while acked < expected {
                acks.message().await?.context("stream ended early")?;
                acked += 1;
            }
            sender.abort();
            anyhow::Ok(acked)
        });
    }
    let mut windows = 0;
    while let Some(done) = tasks.join_next().await {
        windows += done??;
    }
    let seconds = started.elapsed().as_secs_f64();

    // Baseline: encoding and decoding the same windows, nothing else.
    let t = Instant::now();
    let mut bytes = 0;
    for i in 0..nodes {
        let w = NodeWindow { node_name: format!("load-{i:06}"), ..base.clone() };
        let buf = w.encode_to_vec();
        bytes += buf.len();
        std::hint::black_box(NodeWindow::decode(buf.as_slice())?);
    }
    let codec_seconds = t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "windows": windows,
            "seconds": seconds,
            "per_second": windows as f64 / seconds,
            "codec_per_second": nodes as f64 / codec_seconds,
            "encoded_bytes": bytes / nodes.max(1),
            "metrics": base.metrics.len(),
            "missing": base.missing.len(),
        })
    );
    Ok(())
}
