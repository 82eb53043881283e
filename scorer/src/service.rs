//! `fitsched.v1.Scorer`: scoring, filtering, binding and inspection.
//!
//! Every request is validated before it touches state: a bad request is answered with
//! `INVALID_ARGUMENT` naming the problem and changes nothing.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use fitsched_proto::scorer_server::Scorer;
use fitsched_proto::{
    BindRequest, BindResponse, CandidateNode, Decision, ExplainRequest, FilterRequest, FilterResponse,
    ListNodesRequest, ListNodesResponse, ModelInfoRequest, ModelInfoResponse, NodeScore, PodFacts, PredictRequest,
    PredictResponse, ScoreBasis, ScoreRequest, ScoreResponse, score,
};
use tonic::{Request, Response, Status};

use crate::decisions::{self, Decisions};
use crate::fitness::ModelSlot;
use crate::ingest::node_name;
use crate::model;
use crate::placements::Placements;
use crate::store::{NodeStore, NodeView};
use crate::strategy::{self, Candidate, Strategy};

/// Most candidate nodes one request may name.
pub const MAX_CANDIDATES: usize = 100_000;
/// Most rows one `Predict` may carry.
pub const MAX_PREDICT_ROWS: usize = 10_000;

/// Hardware reasons the operator enabled for dropping nodes in `Filter`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FilterRules {
    pub min_fitness: Option<f64>,
    pub max_psi_memory_full: Option<f64>,
}

pub struct ScorerService {
    store: Arc<NodeStore>,
    placements: Arc<Placements>,
    model: ModelSlot,
    default_strategy: Strategy,
    filter: FilterRules,
    decisions: Decisions,
}

impl ScorerService {
    pub fn new(
        store: Arc<NodeStore>,
        placements: Arc<Placements>,
        model: ModelSlot,
        default_strategy: Strategy,
        filter: FilterRules,
    ) -> Self {
        Self { store, placements, model, default_strategy, filter, decisions: Decisions::default() }
    }

    /// The scores of `nodes` for `pod`, in request order, and the strategy used. Records
    /// the best node as the pod's assumed placement.
    pub fn score(&self, pod: &PodFacts, nodes: &[CandidateNode]) -> Result<(Strategy, Vec<NodeScore>), Status> {
        let strategy = self.strategy_of(pod)?;
        let pod_key = pod_key(pod);
        let owner = owner_key(pod);
        for n in nodes {
            self.placements.learn_zone(&n.name, &n.zone);
        }
        let zones: Vec<String> =
            nodes
                .iter()
                .map(|n| {
                    if n.zone.is_empty() {
                        self.placements.zone_of(&n.name).unwrap_or_default()
                    } else {
                        n.zone.clone()
                    }
                })
                .collect();
        let siblings = self.placements.siblings(&owner, &pod_key);
        let fewest_in_any_zone = zones.iter().filter(|z| !z.is_empty()).map(|z| siblings.in_zone(z)).min().unwrap_or(0);
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        let views = self.store.view(&names);

        let scores: Vec<NodeScore> = nodes
            .iter()
            .zip(&views)
            .zip(&zones)
            .map(|((node, view), zone)| match *view {
                NodeView::Fresh { fitness, cpu_utilization, .. } => {
                    let c = Candidate {
                        fitness,
                        occupancy: strategy::occupancy(cpu_utilization, siblings.placed_on(&node.name)),
                        siblings_on_node: siblings.on_node(&node.name),
                        siblings_in_zone: siblings.in_zone(zone),
                        fewest_in_any_zone,
                    };
                    let s = strategy::score(strategy, &c);
                    NodeScore {
                        node: node.name.clone(),
                        score: s.score,
                        fitness: Some(fitness),
                        basis: ScoreBasis::Fitness as i32,
                        reason: s.reason,
                    }
                }
                ref other => neutral(&node.name, other),
            })
            .collect();

        if let Some(best) = ranked(&scores).first() {
            self.placements.assume(
                &pod_key,
                &owner,
                &best.node,
                &self.placements.zone_of(&best.node).unwrap_or_default(),
            );
        }
        Ok((strategy, scores))
    }

    fn strategy_of(&self, pod: &PodFacts) -> Result<Strategy, Status> {
        if pod.strategy.is_empty() {
            return Ok(self.default_strategy);
        }
        pod.strategy.parse().map_err(|e| Status::invalid_argument(format!("pod {}: {e}", pod_name(pod))))
    }

    /// The filter verdict for one node: `None` passes, `Some(reason)` drops it.
    fn verdict(&self, view: &NodeView) -> Option<String> {
        // Only fresh data can drop a node: missing data never hides one.
        let NodeView::Fresh { fitness, psi_memory_full, .. } = *view else { return None };
        if let Some(min) = self.filter.min_fitness
            && fitness < min
        {
            return Some(format!("fitsched: fitness {fitness:.2} below the minimum {min:.2}"));
        }
        if let (Some(limit), Some(full)) = (self.filter.max_psi_memory_full, psi_memory_full)
            && full > limit
        {
            return Some(format!(
                "fitsched: memory pressure (PSI full {:.0}%) above the limit {:.0}%",
                full * 100.0,
                limit * 100.0
            ));
        }
        None
    }
}

/// The score of a node fitsched has no usable fitness for.
fn neutral(node: &str, view: &NodeView) -> NodeScore {
    let (basis, reason) = match view {
        NodeView::Stale { age } => (ScoreBasis::Stale, format!("stale: last window {}s ago, neutral", age.as_secs())),
        NodeView::NoFitness => (ScoreBasis::NoFitness, "window stored, fitness not computed yet: neutral".to_owned()),
        _ => (ScoreBasis::UnknownNode, "no window from this node yet: neutral".to_owned()),
    };
    if matches!(view, NodeView::Stale { .. }) {
        metrics::counter!("fitsched_scorer_stale_scores_total").increment(1);
    }
    NodeScore { node: node.to_owned(), score: score::NEUTRAL, fitness: None, basis: basis as i32, reason }
}

/// Scores best first: by score, then by fitness; a stable sort keeps request order among
/// full ties, so the assumed placement is deterministic.
fn ranked(scores: &[NodeScore]) -> Vec<&NodeScore> {
    let mut ranked: Vec<&NodeScore> = scores.iter().collect();
    ranked.sort_by(|a, b| b.score.cmp(&a.score).then(b.fitness.unwrap_or(-1.0).total_cmp(&a.fitness.unwrap_or(-1.0))));
    ranked
}

/// Identifies a pod across Score and Bind: its UID, or namespace/name without one.
fn pod_key(pod: &PodFacts) -> String {
    if pod.uid.is_empty() { format!("{}/{}", pod.namespace, pod.name) } else { pod.uid.clone() }
}

fn owner_key(pod: &PodFacts) -> String {
    match &pod.owner {
        Some(o) if !o.uid.is_empty() => o.uid.clone(),
        Some(o) if !o.name.is_empty() => format!("{}/{}/{}", o.kind, pod.namespace, o.name),
        _ => String::new(),
    }
}

fn pod_name(pod: &PodFacts) -> String {
    format!("{}/{}", pod.namespace, pod.name)
}

fn check_pod(pod: Option<&PodFacts>) -> Result<&PodFacts, Status> {
    let pod = pod.ok_or_else(|| Status::invalid_argument("pod is missing"))?;
    if pod.name.is_empty() {
        return Err(Status::invalid_argument("pod.name is empty"));
    }
    if pod.cpu_request_millis < 0 || pod.memory_request_bytes < 0 {
        return Err(Status::invalid_argument(format!("pod {}: resource requests must not be negative", pod_name(pod))));
    }
    Ok(pod)
}

fn check_nodes(nodes: &[CandidateNode]) -> Result<(), Status> {
    if nodes.len() > MAX_CANDIDATES {
        return Err(Status::invalid_argument(format!("{} candidate nodes, at most {MAX_CANDIDATES}", nodes.len())));
    }
    for n in nodes {
        node_name(&n.name).map_err(|e| Status::invalid_argument(format!("candidate node: {e}")))?;
    }
    Ok(())
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

#[tonic::async_trait]
impl Scorer for ScorerService {
    async fn score(&self, request: Request<ScoreRequest>) -> Result<Response<ScoreResponse>, Status> {
        let req = request.into_inner();
        let pod = check_pod(req.pod.as_ref())?;
        check_nodes(&req.nodes)?;
        let (strategy, scores) = self.score(pod, &req.nodes)?;
        metrics::counter!("fitsched_scorer_decisions_total", "strategy" => strategy.as_str()).increment(1);
        let decision = decision(pod, strategy, &scores);
        tracing::info!(
            pod = %pod_name(pod),
            %strategy,
            candidates = scores.len(),
            top = %decision.top.iter().take(3).map(|s| format!("{}={} ({})", s.node, s.score, s.reason)).collect::<Vec<_>>().join("; "),
            "score"
        );
        self.decisions.record(decision);
        Ok(Response::new(ScoreResponse { strategy: strategy.to_string(), scores }))
    }

    async fn filter(&self, request: Request<FilterRequest>) -> Result<Response<FilterResponse>, Status> {
        let req = request.into_inner();
        let pod = check_pod(req.pod.as_ref())?;
        check_nodes(&req.nodes)?;
        let names: Vec<&str> = req.nodes.iter().map(|n| n.name.as_str()).collect();
        let mut out = FilterResponse::default();
        for (name, view) in names.iter().zip(self.store.view(&names)) {
            match self.verdict(&view) {
                None => out.passed.push((*name).to_owned()),
                Some(reason) => {
                    out.failed.insert((*name).to_owned(), reason);
                }
            }
        }
        metrics::counter!("fitsched_scorer_filtered_nodes_total").increment(out.failed.len() as u64);
        tracing::info!(pod = %pod_name(pod), candidates = names.len(), failed = out.failed.len(), "filter");
        Ok(Response::new(out))
    }

    async fn bind(&self, request: Request<BindRequest>) -> Result<Response<BindResponse>, Status> {
        let req = request.into_inner();
        if req.pod_name.is_empty() || req.pod_namespace.is_empty() {
            return Err(Status::invalid_argument("pod_name and pod_namespace are required"));
        }
        node_name(&req.node).map_err(|e| Status::invalid_argument(format!("node: {e}")))?;
        let key = if req.pod_uid.is_empty() { format!("{}/{}", req.pod_namespace, req.pod_name) } else { req.pod_uid };
        self.placements.bind(&key, &req.node);
        metrics::counter!("fitsched_scorer_binds_total").increment(1);
        tracing::info!(pod = %format!("{}/{}", req.pod_namespace, req.pod_name), node = %req.node,
            "bind recorded (no Kubernetes API configured: placement recorded for replica awareness only)");
        Ok(Response::new(BindResponse { bound_in_cluster: false }))
    }

    async fn predict(&self, request: Request<PredictRequest>) -> Result<Response<PredictResponse>, Status> {
        let req = request.into_inner();
        if req.rows.len() > MAX_PREDICT_ROWS {
            return Err(Status::invalid_argument(format!("{} rows, at most {MAX_PREDICT_ROWS}", req.rows.len())));
        }
        let model = self.model.get();
        let wanted = model.features();
        let mut rows = Vec::with_capacity(req.rows.len());
        for (i, r) in req.rows.iter().enumerate() {
            let mut unknown: Vec<&str> =
                r.features.keys().filter(|k| !wanted.contains(k)).map(String::as_str).collect();
            if !unknown.is_empty() {
                unknown.sort_unstable();
                return Err(Status::invalid_argument(format!(
                    "row {i}: unknown feature(s) {unknown:?}; the model reads {wanted:?}"
                )));
            }
            rows.push(
                wanted
                    .iter()
                    .enumerate()
                    .map(|(j, f)| r.features.get(f).copied().unwrap_or(model.fallback(j)))
                    .collect(),
            );
        }
        model::check_rows(model.as_ref(), &rows).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let started = std::time::Instant::now();
        let fitness = model.predict(&rows).map_err(|e| Status::internal(e.to_string()))?;
        metrics::histogram!("inference_prediction_duration_seconds").record(started.elapsed().as_secs_f64());
        metrics::counter!("inference_predictions_total").increment(fitness.len() as u64);
        Ok(Response::new(PredictResponse { fitness, model: model.describe().version }))
    }

    async fn list_nodes(&self, _: Request<ListNodesRequest>) -> Result<Response<ListNodesResponse>, Status> {
        Ok(Response::new(ListNodesResponse { nodes: self.store.list() }))
    }

    async fn explain(&self, request: Request<ExplainRequest>) -> Result<Response<Decision>, Status> {
        let req = request.into_inner();
        self.decisions.get(&req.pod_namespace, &req.pod_name).map(Response::new).ok_or_else(|| {
            Status::not_found(format!("no recent decision for pod {}/{}", req.pod_namespace, req.pod_name))
        })
    }

    async fn model_info(&self, _: Request<ModelInfoRequest>) -> Result<Response<ModelInfoResponse>, Status> {
        let model = self.model.get();
        let d = model.describe();
        Ok(Response::new(ModelInfoResponse {
            kind: d.kind.to_owned(),
            version: d.version,
            features: model.features().to_vec(),
            source: d.source,
            loaded_unix_ms: unix_ms(d.loaded_at),
            description: d.summary,
        }))
    }
}

/// The decision record: the pod, the strategy and the best nodes, best first.
fn decision(pod: &PodFacts, strategy: Strategy, scores: &[NodeScore]) -> Decision {
    Decision {
        pod_namespace: pod.namespace.clone(),
        pod_name: pod.name.clone(),
        strategy: strategy.to_string(),
        decided_unix_ms: unix_ms(SystemTime::now()),
        candidates: u32::try_from(scores.len()).unwrap_or(u32::MAX),
        top: ranked(scores).into_iter().take(decisions::TOP).cloned().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Heuristic;
    use fitsched_proto::{MetricSummary, NodeWindow, Owner, metric};
    use std::time::Duration;

    fn service(filter: FilterRules) -> ScorerService {
        let store = Arc::new(NodeStore::new(Duration::from_secs(60)));
        let placements = Arc::new(Placements::new(Duration::from_secs(30), Duration::from_secs(600)));
        ScorerService::new(store, placements, ModelSlot::new(Arc::new(Heuristic::new())), Strategy::Spread, filter)
    }

    fn feed(s: &ScorerService, node: &str, cpu: f64, psi_mem_full: f64) {
        let mut w = NodeWindow { node_name: node.into(), agent_id: "a".into(), sequence: 1, ..Default::default() };
        for (m, v) in [
            (metric::CPU_UTILIZATION, cpu),
            (metric::MEMORY_AVAILABLE_RATIO, 0.8),
            (metric::PSI_MEMORY_FULL, psi_mem_full),
        ] {
            w.metrics.insert(m.into(), MetricSummary { mean: v, max: v, p95: v, last: v, samples: 1 });
        }
        s.store.insert(w);
        crate::fitness::compute(&s.store, s.model.get().as_ref(), [node.to_owned()]);
    }

    fn pod(name: &str, owner: &str) -> PodFacts {
        PodFacts {
            name: name.into(),
            namespace: "ns".into(),
            uid: format!("uid-{name}"),
            owner: Some(Owner { kind: "ReplicaSet".into(), name: owner.into(), uid: format!("uid-{owner}") }),
            ..Default::default()
        }
    }

    fn nodes(names: &[&str]) -> Vec<CandidateNode> {
        names.iter().map(|n| CandidateNode { name: (*n).into(), ..Default::default() }).collect()
    }

    #[tokio::test]
    async fn spread_moves_the_next_replica_away() {
        let s = service(FilterRules::default());
        feed(&s, "n1", 0.1, 0.0);
        feed(&s, "n2", 0.1, 0.0);
        let (_, first) = s.score(&pod("p1", "rs"), &nodes(&["n1", "n2"])).unwrap();
        assert_eq!(first[0].score, first[1].score);
        let (_, second) = s.score(&pod("p2", "rs"), &nodes(&["n1", "n2"])).unwrap();
        assert!(second[1].score > second[0].score, "n1 holds p1's assumed placement: {second:?}");
    }

    #[tokio::test]
    async fn explain_returns_the_latest_decision() {
        let s = service(FilterRules::default());
        feed(&s, "n1", 0.1, 0.0);
        let req = ScoreRequest { pod: Some(pod("p1", "rs")), nodes: nodes(&["n1", "ghost"]) };
        Scorer::score(&s, Request::new(req)).await.unwrap();
        let ask = |name: &str| ExplainRequest { pod_namespace: "ns".into(), pod_name: name.into() };
        let d = Scorer::explain(&s, Request::new(ask("p1"))).await.unwrap().into_inner();
        assert_eq!((d.strategy.as_str(), d.candidates, d.top[0].node.as_str()), ("spread", 2, "n1"));
        let missing = Scorer::explain(&s, Request::new(ask("nobody"))).await.unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound);
    }

    #[tokio::test]
    async fn unknown_and_unscored_nodes_are_neutral() {
        let s = service(FilterRules::default());
        s.store.insert(NodeWindow {
            node_name: "fresh".into(),
            agent_id: "a".into(),
            sequence: 1,
            ..Default::default()
        });
        let (_, scores) = s.score(&pod("p", "rs"), &nodes(&["ghost", "fresh"])).unwrap();
        assert_eq!((scores[0].score, scores[0].basis), (score::NEUTRAL, ScoreBasis::UnknownNode as i32));
        assert_eq!(scores[1].basis, ScoreBasis::NoFitness as i32);
    }

    #[tokio::test]
    async fn bad_requests_are_refused_without_state_change() {
        let s = service(FilterRules::default());
        feed(&s, "n1", 0.1, 0.0);
        let before = s.placements.siblings("uid-rs", "x");
        let mut bad = pod("p", "rs");
        bad.strategy = "sideways".into();
        let cases = [
            ScoreRequest { pod: None, nodes: nodes(&["n1"]) },
            ScoreRequest { pod: Some(bad), nodes: nodes(&["n1"]) },
            ScoreRequest { pod: Some(pod("p", "rs")), nodes: nodes(&["n1", ""]) },
            ScoreRequest { pod: Some(PodFacts { cpu_request_millis: -1, ..pod("p", "rs") }), nodes: nodes(&["n1"]) },
        ];
        for req in cases {
            let err = Scorer::score(&s, Request::new(req)).await.unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
        }
        assert_eq!(s.placements.siblings("uid-rs", "x"), before);
        let err = Scorer::predict(
            &s,
            Request::new(PredictRequest {
                rows: vec![fitsched_proto::FeatureRow { features: [("nope".to_string(), 1.0)].into() }],
            }),
        )
        .await
        .unwrap_err();
        assert!(err.message().contains("nope"), "{}", err.message());
    }

    #[tokio::test]
    async fn filter_drops_only_for_enabled_hardware_reasons() {
        let s = service(FilterRules { min_fitness: None, max_psi_memory_full: Some(0.1) });
        feed(&s, "calm", 0.1, 0.0);
        feed(&s, "thrashing", 0.1, 0.4);
        let req = FilterRequest { pod: Some(pod("p", "rs")), nodes: nodes(&["calm", "thrashing", "unknown"]) };
        let out = Scorer::filter(&s, Request::new(req)).await.unwrap().into_inner();
        assert_eq!(out.passed, vec!["calm", "unknown"]);
        assert!(out.failed["thrashing"].contains("memory pressure"));
    }

    #[tokio::test]
    async fn bind_confirms_the_placement() {
        let s = service(FilterRules::default());
        let req =
            BindRequest { pod_name: "p".into(), pod_namespace: "ns".into(), pod_uid: "u".into(), node: "n9".into() };
        assert!(!Scorer::bind(&s, Request::new(req)).await.unwrap().into_inner().bound_in_cluster);
        assert_eq!(s.placements.siblings("", "other").placed_on("n9"), 1);
        let bad =
            BindRequest { pod_name: "p".into(), pod_namespace: "ns".into(), pod_uid: "u".into(), node: String::new() };
        assert_eq!(Scorer::bind(&s, Request::new(bad)).await.unwrap_err().code(), tonic::Code::InvalidArgument);
    }
}
