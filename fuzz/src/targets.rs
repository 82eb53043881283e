//! The targets: each takes bytes as they would arrive from the network and must answer
//! or refuse them, never panic.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fitsched_proto::scorer_server::Scorer;
use fitsched_proto::{
    BindRequest, CandidateNode, ExplainRequest, FeatureRow, FilterRequest, ListNodesRequest, MetricSummary, Missing,
    ModelInfoRequest, NodeWindow, Owner, PodFacts, PredictRequest, ScoreRequest, metric,
};
use fitsched_scorer::fitness::{self, ModelSlot};
use fitsched_scorer::model::Heuristic;
use fitsched_scorer::{FilterRules, NodeStore, Placements, ScorerService, Strategy};
use fitsched_shim::{ProfileStrategies, ProfileStrategy, wire};
use prost::Message;

/// Every target, by name.
pub const TARGETS: [&str; 4] = ["extender-args", "binding-args", "window", "scorer-requests"];

/// What a target does with one input.
type Run = Box<dyn FnMut(&[u8])>;

/// A target with its seed inputs.
pub struct Target {
    pub name: &'static str,
    pub seeds: Vec<Vec<u8>>,
    run: Run,
}

impl Target {
    /// One input through the target.
    pub fn run(&mut self, input: &[u8]) {
        (self.run)(input)
    }

    /// The target named `name` (one of [`TARGETS`]), with its state set up.
    pub fn new(name: &str) -> Option<Target> {
        Some(match name {
            "extender-args" => extender_args(),
            "binding-args" => binding_args(),
            "window" => window_target(),
            "scorer-requests" => scorer_requests(),
            _ => return None,
        })
    }
}

/// kube-scheduler's `ExtenderArgs` in both modes (names and full Node objects), seeded
/// with the captured fixtures: bad input must be a `BadRequest`.
fn extender_args() -> Target {
    let profiles =
        ProfileStrategies::new([ProfileStrategy { scheduler_name: "fitsched-pack".into(), strategy: "pack".into() }])
            .expect("one profile");
    Target {
        name: "extender-args",
        seeds: fixtures(&["filter", "prioritize"]),
        run: Box::new(move |input| {
            if let Ok(args) = wire::decode_extender_args_for(input, &profiles) {
                std::hint::black_box(args.pod_display());
            }
        }),
    }
}

/// kube-scheduler's `ExtenderBindingArgs`, seeded with the captured fixtures.
fn binding_args() -> Target {
    Target {
        name: "binding-args",
        seeds: fixtures(&["bind"]),
        run: Box::new(|input| {
            std::hint::black_box(wire::decode_binding_args(input).ok());
        }),
    }
}

/// The captured kube-scheduler requests whose file names contain one of `verbs`.
fn fixtures(verbs: &[&str]) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../extender-shim/testdata/kube-scheduler-extender");
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

/// A scorer's store with three nodes' windows and their fitness, the model, and the
/// service over them.
fn scorer() -> (Arc<NodeStore>, ModelSlot, ScorerService) {
    let store = Arc::new(NodeStore::new(Duration::from_secs(600)));
    let model = ModelSlot::new(Arc::new(Heuristic::new()));
    for n in ["n1", "n2", "n3"] {
        store.insert(window(n));
    }
    fitness::compute(&store, model.get().as_ref(), ["n1".into(), "n2".into(), "n3".into()]);
    let placements =
        Arc::new(Placements::new(Duration::from_secs(30), Duration::from_secs(600), Duration::from_secs(40)));
    let svc = ScorerService::new(store.clone(), placements, model.clone(), Strategy::Balanced, FilterRules::default());
    (store, model, svc)
}

/// An ingested window: protobuf decode, validation, the store, fitness.
fn window_target() -> Target {
    let (store, model, _) = scorer();
    Target {
        name: "window",
        seeds: vec![window("n9").encode_to_vec()],
        run: Box::new(move |input| {
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
        }),
    }
}

/// Every `Scorer` request: the first byte picks the request type, the rest is its
/// encoding, through decode and the service's handler (an error status is a fine
/// answer, a panic is not).
fn scorer_requests() -> Target {
    let (_, _, svc) = scorer();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
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
    let tagged = |tag: u8, body: Vec<u8>| [vec![tag], body].concat();
    let seeds = vec![
        tagged(0, ScoreRequest { pod: Some(pod.clone()), nodes: nodes.clone(), scores_only: false }.encode_to_vec()),
        tagged(1, FilterRequest { pod: Some(pod.clone()), nodes }.encode_to_vec()),
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
    Target {
        name: "scorer-requests",
        seeds,
        run: Box::new(move |input| {
            let Some((&tag, body)) = input.split_first() else { return };
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
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_seeds_and_takes_them() {
        for name in TARGETS {
            let mut t = Target::new(name).unwrap();
            assert!(!t.seeds.is_empty(), "{name} has no seeds");
            for s in t.seeds.clone() {
                t.run(&s);
            }
        }
        assert!(Target::new("nope").is_none());
    }
}
