//! The scorer's own share of a `Score` call, in process and warm: protobuf decode of a
//! request naming N candidates, the handler (validation, lookups, strategy, decision
//! record), protobuf encode of the compact answer. `cargo xtask bench shim` measures the
//! whole path over sockets; this separates the scorer's part of it, to profile.
//!
//! `cargo run --release -p fitsched-scorer --example score_path [N] [R]`: N candidates
//! (default 5 000), R placement records awaiting the pod watch (default 3 000, as in a
//! burst: kube-scheduler scores pods faster than their binds show in the watch).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fitsched_proto::scorer_server::Scorer;
use fitsched_proto::{CandidateNode, MetricSummary, NodeWindow, Owner, PodFacts, ScoreRequest, metric};
use fitsched_scorer::NodeStore;
use fitsched_scorer::Placements;
use fitsched_scorer::Strategy;
use fitsched_scorer::fitness::ModelSlot;
use fitsched_scorer::model::Heuristic;
use fitsched_scorer::{FilterRules, ScorerService};
use prost::Message;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args().nth(1).map_or(5000, |a| a.parse().expect("N: a number of nodes"));
    let records: usize = std::env::args().nth(2).map_or(3000, |a| a.parse().expect("R: a number of records"));
    let store = Arc::new(NodeStore::new(Duration::from_secs(600)));
    let model = ModelSlot::new(Arc::new(Heuristic::new()));
    let names: Vec<String> = (0..n).map(|i| format!("node-{i:05}")).collect();
    for (i, name) in names.iter().enumerate() {
        let mut w = NodeWindow { node_name: name.clone(), agent_id: "a".into(), sequence: 1, ..Default::default() };
        for m in [metric::CPU_UTILIZATION, metric::MEMORY_AVAILABLE_RATIO] {
            let v = (i % 10) as f64 / 10.0;
            w.metrics.insert(m.into(), MetricSummary { mean: v, max: v, p95: v, last: v, samples: 1 });
        }
        store.insert(w);
    }
    fitsched_scorer::fitness::compute(&store, model.get().as_ref(), names.clone());
    let placements =
        Arc::new(Placements::new(Duration::from_secs(30), Duration::from_secs(600), Duration::from_secs(40)));
    for i in 0..records {
        // A tenth of them siblings of the pod scored, the rest of ten other owners.
        let owner = if i % 10 == 0 { "rs".to_owned() } else { format!("rs-{}", i % 10) };
        placements.assume(&format!("pod-{i}"), &owner, &names[i % n], 100);
    }
    let svc = ScorerService::new(store, placements, model, Strategy::Spread, FilterRules::default());
    let req = ScoreRequest {
        pod: Some(PodFacts {
            name: "p".into(),
            namespace: "ns".into(),
            uid: "u".into(),
            owner: Some(Owner { kind: "ReplicaSet".into(), name: "rs".into(), uid: "rs".into() }),
            ..Default::default()
        }),
        nodes: names.iter().map(|n| CandidateNode { name: n.clone(), ..Default::default() }).collect(),
        scores_only: true,
    };
    let bytes = req.encode_to_vec();
    let (mut dec, mut sc, mut enc) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..300 {
        let t = Instant::now();
        let r = ScoreRequest::decode(&bytes[..]).unwrap();
        dec.push(t.elapsed());
        let t = Instant::now();
        let resp = Scorer::score(&svc, tonic::Request::new(r)).await.unwrap().into_inner();
        sc.push(t.elapsed());
        let t = Instant::now();
        std::hint::black_box(resp.encode_to_vec());
        enc.push(t.elapsed());
    }
    for (what, v) in [("decode", &mut dec), ("score", &mut sc), ("encode", &mut enc)] {
        v.sort();
        println!("{n} nodes, {records} records, {what}: p50 {:?} p99 {:?}", v[v.len() / 2], v[v.len() * 99 / 100]);
    }
}
