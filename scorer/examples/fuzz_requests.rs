//! Fuzz targets of everything the scorer accepts from the network (`cargo xtask
//! fuzz`): an ingested window (protobuf decode, validation, the store, fitness), and
//! every `Scorer` request (protobuf decode, then the service's handler, which must answer
//! `INVALID_ARGUMENT` to what it cannot use, never panic). Seeds are valid encodings.
//!
//! `fuzz_requests SECONDS CRASH_DIR`; prints one JSON line per target.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fitsched_e2e::fuzz;
use fitsched_proto::scorer_server::Scorer;
use fitsched_proto::{
    BindRequest, CandidateNode, ExplainRequest, FeatureRow, FilterRequest, ListNodesRequest, MetricSummary, Missing,
    ModelInfoRequest, NodeWindow, Owner, PodFacts, PredictRequest, ScoreRequest, metric,
};
use fitsched_scorer::NodeStore;
use fitsched_scorer::Placements;
use fitsched_scorer::Strategy;
use fitsched_scorer::fitness::{self, ModelSlot};
use fitsched_scorer::model::Heuristic;
use fitsched_scorer::{FilterRules, ScorerService};
use prost::Message;

fn window(node: &str) -> NodeWindow {
    let mut w = NodeWindow {
        node_name: node.into(),
        agent_id: "a1".into(),
        sequence: 3,
        start_unix_ms: 1_700_000_000_000,
        end_unix_ms: 1_700_000_020_000,
        samples: 20,
        samples_expected: 20,
        ..Default::default()
    };
    for (m, v) in [(metric::CPU_UTILIZATION, 0.4), (metric::MEMORY_AVAILABLE_RATIO, 0.7), (metric::CPU_COUNT, 8.0)] {
        w.metrics.insert(m.into(), MetricSummary { mean: v, max: v, p95: v, last: v, samples: 20 });
    }
    w.missing.push(Missing { name: "perf_ipc".into(), reason: "no PMU".into() });
    w
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let crashes = PathBuf::from(args.get(2).cloned().unwrap_or_else(|| "target/fuzz-crashes".into()));
    let duration = Duration::from_secs(seconds);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let store = Arc::new(NodeStore::new(Duration::from_secs(600)));
    let model = ModelSlot::new(Arc::new(Heuristic::new()));
    for n in ["n1", "n2", "n3"] {
        store.insert(window(n));
    }
    fitness::compute(&store, model.get().as_ref(), ["n1".into(), "n2".into(), "n3".into()]);
    let placements =
        Arc::new(Placements::new(Duration::from_secs(30), Duration::from_secs(600), Duration::from_secs(40)));
    let svc = ScorerService::new(store.clone(), placements, model.clone(), Strategy::Balanced, FilterRules::default());

    let ingest = fuzz::run("window", &[window("n9").encode_to_vec()], duration, 3, &crashes, |input| {
        let Ok(w) = NodeWindow::decode(input) else { return };
        if fitsched_proto::validate::window(&w).is_ok() {
            let node = w.node_name.clone();
            store.insert(w);
            fitness::compute(&store, model.get().as_ref(), [node.clone()]);
            // Keep the store small: every input is a new node otherwise.
            if !["n1", "n2", "n3"].contains(&node.as_str()) {
                store.remove(&node);
            }
        }
    });

    let pod = PodFacts {
        name: "p".into(),
        namespace: "ns".into(),
        uid: "u".into(),
        strategy: "spread".into(),
        owner: Some(Owner { kind: "ReplicaSet".into(), name: "rs".into(), uid: "rs-u".into() }),
        ..Default::default()
    };
    let nodes: Vec<CandidateNode> =
        ["n1", "n2", "ghost"].iter().map(|n| CandidateNode { name: (*n).into(), ..Default::default() }).collect();
    // The first byte picks the request type; the rest is its encoding.
    let tagged = |tag: u8, body: Vec<u8>| [vec![tag], body].concat();
    let seeds = vec![
        tagged(0, ScoreRequest { pod: Some(pod.clone()), nodes: nodes.clone(), scores_only: false }.encode_to_vec()),
        tagged(1, FilterRequest { pod: Some(pod.clone()), nodes: nodes.clone() }.encode_to_vec()),
        tagged(
            2,
            BindRequest { pod_name: "p".into(), pod_namespace: "ns".into(), pod_uid: "u".into(), node: "n1".into() }
                .encode_to_vec(),
        ),
        tagged(
            3,
            PredictRequest { rows: vec![FeatureRow { features: [("cpu_utilization_mean".to_owned(), 0.5)].into() }] }
                .encode_to_vec(),
        ),
        tagged(4, ExplainRequest { pod_namespace: "ns".into(), pod_name: "p".into() }.encode_to_vec()),
        tagged(5, ListNodesRequest {}.encode_to_vec()),
        tagged(6, ModelInfoRequest {}.encode_to_vec()),
    ];
    let requests = fuzz::run("scorer-requests", &seeds, duration, 4, &crashes, |input| {
        let Some((&tag, body)) = input.split_first() else { return };
        // Answers are dropped: an error status is a fine answer, a panic is not.
        macro_rules! call {
            ($request:ty, $method:path) => {
                if let Ok(m) = <$request>::decode(body) {
                    let _ = rt.block_on($method(&svc, tonic::Request::new(m)));
                }
            };
        }
        match tag % 7 {
            0 => call!(ScoreRequest, Scorer::score),
            1 => call!(FilterRequest, Scorer::filter),
            2 => call!(BindRequest, Scorer::bind),
            3 => call!(PredictRequest, Scorer::predict),
            4 => call!(ExplainRequest, Scorer::explain),
            5 => call!(ListNodesRequest, Scorer::list_nodes),
            _ => call!(ModelInfoRequest, Scorer::model_info),
        }
    });
    for r in [ingest, requests] {
        println!(
            "{}",
            serde_json::json!({"target": r.target, "executions": r.executions, "crashes": r.crashes,
                "crash_file": r.crash_file.map(|p| p.display().to_string())})
        );
    }
}
