//! `fitsched.v1.Scorer`: scoring, filtering, binding and inspection.
//!
//! Every request is validated before it touches state: a bad request is answered with
//! `INVALID_ARGUMENT` naming the problem and changes nothing.

use std::sync::Arc;

use fitsched_proto::scorer_server::Scorer;
use fitsched_proto::{
    BindRequest, BindResponse, CandidateNode, Decision, ExplainRequest, FilterRequest, FilterResponse,
    ListNodesRequest, ListNodesResponse, ModelInfoRequest, ModelInfoResponse, NodeScore, PodFacts, PredictRequest,
    PredictResponse, ScoreBasis, ScoreRequest, ScoreResponse, unix_ms,
};
use tonic::{Request, Response, Status};

use crate::decisions::{self, Decisions};
use crate::fitness::ModelSlot;
use crate::ingest::node_name;
use crate::model;
use crate::placements::Placements;
use crate::store::{NodeStore, NodeView};
use crate::strategy::{self, Candidate, Strategy};

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
    /// `Predict` calls running; more are refused, each holds a blocking thread.
    predicting: Arc<tokio::sync::Semaphore>,
    limits: crate::Limits,
}

impl ScorerService {
    pub fn new(
        store: Arc<NodeStore>,
        placements: Arc<Placements>,
        model: ModelSlot,
        default_strategy: Strategy,
        filter: FilterRules,
    ) -> Self {
        Self {
            store,
            placements,
            model,
            default_strategy,
            filter,
            decisions: Decisions::default(),
            predicting: Arc::new(tokio::sync::Semaphore::new(0)),
            limits: crate::Limits::default(),
        }
        .with_limits(&crate::Limits::default())
    }

    /// Enforces `limits` (candidates and Predict rows per request, Predict calls at once).
    pub fn with_limits(mut self, limits: &crate::Limits) -> Self {
        self.predicting = Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent_predicts));
        self.limits = limits.clone();
        self
    }

    /// Scores `nodes` for `pod`: every candidate's score in request order, and the best
    /// nodes explained (all of them with `explain_all`). Records the best node as the
    /// pod's assumed placement.
    ///
    /// The integer scores span 0..=10 over the candidates ([`strategy::normalise`]); a
    /// node without a usable fitness is scored with the median fitness of the fresh nodes.
    ///
    /// This is the hot path of a 5 000-node request: one read lock for placements and
    /// zones, two short ones for the node store, no string formatting outside the
    /// explained nodes, and a partial selection instead of a sort.
    pub fn score(&self, pod: &PodFacts, nodes: &[CandidateNode], explain_all: bool) -> Result<Scoring, Status> {
        let strategy = self.strategy_of(pod)?;
        let pod_key = pod.key();
        let owner = pod.owner_key();
        self.placements.learn_zones(nodes.iter().map(|n| (n.name.as_str(), n.zone.as_str())));
        let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        let views = self.store.view(&names);

        let placed = self.placements.view(&owner, &pod_key);
        // The watch's zone when it knows the node, else the request's label.
        fn zone<'a>(placed: &'a crate::placements::View<'_>, n: &'a CandidateNode) -> &'a str {
            match placed.zone_of(&n.name) {
                "" => n.zone.as_str(),
                z => z,
            }
        }
        let fewest_in_any_zone = nodes
            .iter()
            .map(|n| zone(&placed, n))
            .filter(|z| !z.is_empty())
            .map(|z| placed.in_zone(z))
            .min()
            .unwrap_or(0);
        // A node without a usable fitness is scored under the same terms with the median
        // fitness of the fresh nodes: never a magnet, never a blacklist.
        let median = self.store.median_fitness();
        let request = strategy::request_cpus(pod.cpu_request_millis);
        let mut candidates: Vec<Candidate> = nodes
            .iter()
            .zip(&views)
            .map(|(node, view)| {
                let (fitness, cpu_count, shown_since_ms) = match *view {
                    NodeView::Fresh { fitness, cpu_count, since_ms, .. } => (fitness, cpu_count, Some(since_ms)),
                    _ => (median, None, None),
                };
                // Allocatable as kube-scheduler sent it (full-node mode), else as the node
                // watch shows it, else the CPUs the node's agent counted.
                let allocatable = (node.allocatable_cpu_millis > 0)
                    .then(|| node.allocatable_cpu_millis as f64 / 1000.0)
                    .or_else(|| placed.allocatable_on(&node.name));
                Candidate {
                    fitness,
                    recent: placed.recent_on(&node.name, shown_since_ms),
                    requested: placed.requested_on(&node.name),
                    cores: allocatable.or(cpu_count).unwrap_or(strategy::CORES_WHEN_UNKNOWN),
                    request,
                    siblings_on_node: placed.on_node(&node.name),
                    siblings_in_zone: placed.in_zone(zone(&placed, node)),
                    fewest_in_any_zone,
                    fullest_share: 0.0,
                }
            })
            .collect();
        let fullest_share = candidates.iter().filter_map(strategy::packing_share).fold(0.0, f64::max);
        for c in &mut candidates {
            c.fullest_share = fullest_share;
        }
        drop(placed);

        let mut scored: Vec<strategy::Scored> = candidates.iter().map(|c| strategy::score(strategy, c)).collect();
        strategy::normalise(&mut scored);
        let scores: Vec<i32> = scored.iter().map(|s| s.score).collect();
        let fitness = |i: usize| candidates[i].fitness;
        let detail = |i: usize| explain(strategy, &nodes[i].name, &views[i], &candidates[i], scored[i]);
        let top: Vec<NodeScore> = best(&scores, fitness, decisions::TOP).into_iter().map(detail).collect();
        count_bases(&views);
        let all = if explain_all { (0..nodes.len()).map(detail).collect() } else { Vec::new() };
        if let Some(first) = top.first() {
            self.placements.assume(&pod_key, &owner, &first.node, pod.cpu_request_millis);
        }
        Ok(Scoring { strategy, scores, top, all })
    }

    fn strategy_of(&self, pod: &PodFacts) -> Result<Strategy, Status> {
        if pod.strategy.is_empty() {
            return Ok(self.default_strategy);
        }
        pod.strategy.parse().map_err(|e| Status::invalid_argument(format!("pod {}: {e}", pod.display())))
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

/// What the candidates' scores rest on, counted per call so a batch costs at most four
/// counter updates.
fn count_bases(views: &[NodeView]) {
    const BASES: [(ScoreBasis, &str); 4] = [
        (ScoreBasis::Fitness, "fitness"),
        (ScoreBasis::Stale, "stale"),
        (ScoreBasis::UnknownNode, "unknown_node"),
        (ScoreBasis::NoFitness, "no_fitness"),
    ];
    for (b, label) in BASES {
        let n = views.iter().filter(|v| basis(v) == b).count();
        if n > 0 {
            metrics::counter!(crate::telemetry::series::SCORED_NODES, "basis" => label).increment(n as u64);
        }
    }
}

fn basis(view: &NodeView) -> ScoreBasis {
    match view {
        NodeView::Fresh { .. } => ScoreBasis::Fitness,
        NodeView::Stale { .. } => ScoreBasis::Stale,
        NodeView::NoFitness => ScoreBasis::NoFitness,
        NodeView::Unknown => ScoreBasis::UnknownNode,
    }
}

/// One candidate's score explained; `fitness` is set only for a node's own fitness.
fn explain(strategy: Strategy, node: &str, view: &NodeView, c: &Candidate, s: strategy::Scored) -> NodeScore {
    let (fitness, reason) = match view {
        NodeView::Fresh { .. } => (Some(c.fitness), strategy::reason(strategy, c, s)),
        NodeView::Stale { age } => (
            None,
            strategy::reason_without_fitness(strategy, &format!("stale: last window {}s ago", age.as_secs()), c, s),
        ),
        NodeView::NoFitness => {
            (None, strategy::reason_without_fitness(strategy, "window stored, fitness not computed yet", c, s))
        }
        NodeView::Unknown => (None, strategy::reason_without_fitness(strategy, "no window from this node yet", c, s)),
    };
    NodeScore { node: node.to_owned(), score: s.score, fitness, basis: basis(view) as i32, reason }
}

/// The indices of the `k` best candidates, best first: by score, then fitness, then
/// request order, so ties are broken deterministically (and the way kube-scheduler
/// breaks them among equal totals is not needed to predict ours).
fn best(scores: &[i32], fitness: impl Fn(usize) -> f64, k: usize) -> Vec<usize> {
    let order =
        |&a: &usize, &b: &usize| scores[b].cmp(&scores[a]).then(fitness(b).total_cmp(&fitness(a))).then(a.cmp(&b));
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    if k == 0 || idx.is_empty() {
        return Vec::new();
    }
    if idx.len() > k {
        idx.select_nth_unstable_by(k - 1, order);
        idx.truncate(k);
    }
    idx.sort_unstable_by(order);
    idx
}

/// One scoring answer: the strategy, every candidate's score in request order, the best
/// nodes explained (for the decision log and `Explain`), and, when asked for, every
/// candidate explained.
#[derive(Debug, Clone)]
pub struct Scoring {
    pub strategy: Strategy,
    pub scores: Vec<i32>,
    pub top: Vec<NodeScore>,
    pub all: Vec<NodeScore>,
}

fn check_pod(pod: Option<&PodFacts>) -> Result<&PodFacts, Status> {
    let pod = pod.ok_or_else(|| Status::invalid_argument("pod is missing"))?;
    if pod.name.is_empty() {
        return Err(Status::invalid_argument("pod.name is empty"));
    }
    if pod.cpu_request_millis < 0 || pod.memory_request_bytes < 0 {
        return Err(Status::invalid_argument(format!("pod {}: resource requests must not be negative", pod.display())));
    }
    Ok(pod)
}

fn check_nodes(nodes: &[CandidateNode], limits: &crate::Limits) -> Result<(), Status> {
    if nodes.len() > limits.max_candidates {
        let max = limits.max_candidates;
        return Err(Status::invalid_argument(format!("{} candidate nodes, at most {max}", nodes.len())));
    }
    for n in nodes {
        node_name(&n.name).map_err(|e| Status::invalid_argument(format!("candidate node: {e}")))?;
    }
    Ok(())
}

#[tonic::async_trait]
impl Scorer for ScorerService {
    async fn score(&self, request: Request<ScoreRequest>) -> Result<Response<ScoreResponse>, Status> {
        let req = request.into_inner();
        let pod = check_pod(req.pod.as_ref())?;
        check_nodes(&req.nodes, &self.limits)?;
        let scoring = self.score(pod, &req.nodes, !req.scores_only)?;
        let strategy = scoring.strategy;
        metrics::counter!(crate::telemetry::series::DECISIONS, "strategy" => strategy.as_str()).increment(1);
        tracing::info!(
            pod = %pod.display(),
            %strategy,
            candidates = req.nodes.len(),
            top = %scoring.top.iter().take(3).map(|s| format!("{}={} ({})", s.node, s.score, s.reason)).collect::<Vec<_>>().join("; "),
            chosen = scoring.top.first().map_or("", |s| s.node.as_str()),
            "score"
        );
        self.decisions.record(Decision {
            pod_namespace: pod.namespace.clone(),
            pod_name: pod.name.clone(),
            strategy: strategy.to_string(),
            decided_unix_ms: fitsched_proto::now_unix_ms(),
            candidates: u32::try_from(req.nodes.len()).unwrap_or(u32::MAX),
            top: scoring.top,
        });
        let response = if req.scores_only {
            ScoreResponse { strategy: strategy.to_string(), scores: Vec::new(), compact_scores: scoring.scores }
        } else {
            ScoreResponse { strategy: strategy.to_string(), scores: scoring.all, compact_scores: Vec::new() }
        };
        Ok(Response::new(response))
    }

    async fn filter(&self, request: Request<FilterRequest>) -> Result<Response<FilterResponse>, Status> {
        let req = request.into_inner();
        let pod = check_pod(req.pod.as_ref())?;
        check_nodes(&req.nodes, &self.limits)?;
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
        metrics::counter!(crate::telemetry::series::FILTERED_NODES).increment(out.failed.len() as u64);
        tracing::info!(pod = %pod.display(), candidates = names.len(), failed = out.failed.len(), "filter");
        Ok(Response::new(out))
    }

    async fn bind(&self, request: Request<BindRequest>) -> Result<Response<BindResponse>, Status> {
        let req = request.into_inner();
        if req.pod_name.is_empty() || req.pod_namespace.is_empty() {
            return Err(Status::invalid_argument("pod_name and pod_namespace are required"));
        }
        node_name(&req.node).map_err(|e| Status::invalid_argument(format!("node: {e}")))?;
        let watched = self.placements.bind(&req.pod_key(), &req.node);
        metrics::counter!(crate::telemetry::series::BINDS).increment(1);
        tracing::info!(pod = %req.pod_display(), node = %req.node, watched,
            "bind recorded");
        Ok(Response::new(BindResponse { watched }))
    }

    async fn predict(&self, request: Request<PredictRequest>) -> Result<Response<PredictResponse>, Status> {
        let req = request.into_inner();
        if req.rows.len() > self.limits.max_predict_rows {
            let max = self.limits.max_predict_rows;
            return Err(Status::invalid_argument(format!("{} rows, at most {max}", req.rows.len())));
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
        let _permit = self.predicting.clone().try_acquire_owned().map_err(|_| {
            let max = self.limits.max_concurrent_predicts;
            Status::resource_exhausted(format!("{max} Predict calls are running; retry"))
        })?;
        let started = std::time::Instant::now();
        let version = model.describe().version;
        // Off the async runtime: 10 000 rows through the model would stall ingest and
        // scoring on this worker thread.
        let fitness = tokio::task::spawn_blocking(move || model.predict(&rows))
            .await
            .map_err(|e| Status::internal(format!("prediction failed: {e}")))?
            .map_err(|e| Status::internal(e.to_string()))?;
        metrics::histogram!(crate::telemetry::series::INFERENCE_DURATION).record(started.elapsed().as_secs_f64());
        metrics::counter!(crate::telemetry::series::INFERENCE_PREDICTIONS).increment(fitness.len() as u64);
        Ok(Response::new(PredictResponse { fitness, model: version }))
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
            validation: d.validation,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Heuristic;
    use fitsched_proto::{MetricSummary, NodeWindow, Owner, metric, score};
    use std::time::Duration;

    fn service(filter: FilterRules) -> ScorerService {
        let store = Arc::new(NodeStore::new(Duration::from_secs(60)));
        let placements =
            Arc::new(Placements::new(Duration::from_secs(30), Duration::from_secs(600), Duration::from_secs(60)));
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
        let first = s.score(&pod("p1", "rs"), &nodes(&["n1", "n2"]), false).unwrap();
        assert_eq!(first.scores[0], first.scores[1]);
        assert_eq!(first.top[0].node, "n1", "full ties go to the first in request order");
        let second = s.score(&pod("p2", "rs"), &nodes(&["n1", "n2"]), false).unwrap();
        assert!(second.scores[1] > second.scores[0], "n1 holds p1's assumed placement: {second:?}");
        assert!(second.top[1].reason.contains("1 sibling(s) on node"), "{:?}", second.top);
    }

    #[tokio::test]
    async fn compact_answers_carry_the_same_scores_in_request_order() {
        let s = service(FilterRules::default());
        for (i, n) in ["a", "b", "c", "d"].iter().enumerate() {
            feed(&s, n, 0.2 * i as f64, 0.0);
        }
        let ask = |scores_only| ScoreRequest {
            pod: Some(PodFacts { uid: String::new(), owner: None, ..pod("bare", "rs") }),
            nodes: nodes(&["d", "ghost", "a", "c", "b"]),
            scores_only,
        };
        let full = Scorer::score(&s, Request::new(ask(false))).await.unwrap().into_inner();
        let compact = Scorer::score(&s, Request::new(ask(true))).await.unwrap().into_inner();
        assert!(compact.scores.is_empty() && full.compact_scores.is_empty());
        assert_eq!(compact.compact_scores, full.scores.iter().map(|n| n.score).collect::<Vec<_>>());
        assert_eq!(full.scores.iter().map(|n| n.node.as_str()).collect::<Vec<_>>(), ["d", "ghost", "a", "c", "b"]);
        assert!(full.scores.iter().all(|n| !n.reason.is_empty()));
    }

    proptest::proptest! {
        #[test]
        fn best_is_the_head_of_a_full_ranking(
            scores in proptest::collection::vec(0i32..=10, 0..60),
            fits in proptest::collection::vec(0u8..4, 60),
            k in 0usize..20,
        ) {
            let fitness = |i: usize| f64::from(fits[i]) / 4.0;
            let mut all: Vec<usize> = (0..scores.len()).collect();
            all.sort_by(|&a, &b| scores[b].cmp(&scores[a]).then(fitness(b).total_cmp(&fitness(a))).then(a.cmp(&b)));
            all.truncate(k);
            proptest::prop_assert_eq!(best(&scores, fitness, k), all);
        }
    }

    #[tokio::test]
    async fn explain_returns_the_latest_decision() {
        let s = service(FilterRules::default());
        feed(&s, "n1", 0.1, 0.0);
        let req = ScoreRequest { pod: Some(pod("p1", "rs")), nodes: nodes(&["n1", "ghost"]), scores_only: false };
        Scorer::score(&s, Request::new(req)).await.unwrap();
        let ask = |name: &str| ExplainRequest { pod_namespace: "ns".into(), pod_name: name.into() };
        let d = Scorer::explain(&s, Request::new(ask("p1"))).await.unwrap().into_inner();
        assert_eq!((d.strategy.as_str(), d.candidates, d.top[0].node.as_str()), ("spread", 2, "n1"));
        let missing = Scorer::explain(&s, Request::new(ask("nobody"))).await.unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound);
    }

    #[tokio::test]
    async fn without_fresh_nodes_unknown_and_unscored_nodes_are_neutral() {
        let s = service(FilterRules::default());
        s.store.insert(NodeWindow {
            node_name: "fresh".into(),
            agent_id: "a".into(),
            sequence: 1,
            ..Default::default()
        });
        let scores = s.score(&pod("p", "rs"), &nodes(&["ghost", "fresh"]), true).unwrap().all;
        assert_eq!((scores[0].score, scores[0].basis), (score::NEUTRAL, ScoreBasis::UnknownNode as i32));
        assert_eq!((scores[1].score, scores[1].basis), (score::NEUTRAL, ScoreBasis::NoFitness as i32));
        assert!(scores[0].reason.starts_with("no window from this node yet: median fitness 0.50, spread: "));
        assert_eq!((scores[0].fitness, scores[1].fitness), (None, None));
    }

    #[tokio::test]
    async fn unknown_nodes_get_the_median_fitness_and_the_same_penalties() {
        let s = service(FilterRules::default());
        // Three fitness values; the middle one is the median.
        for (n, cpu) in [("low", 0.9), ("mid", 0.5), ("high", 0.1)] {
            feed(&s, n, cpu, 0.0);
        }
        let fit = |name: &str| match s.store.view(&[name])[0] {
            NodeView::Fresh { fitness, .. } => fitness,
            ref v => panic!("{name}: {v:?}"),
        };
        let median = fit("mid");
        assert!(fit("low") < median && median < fit("high"));
        assert_eq!(s.store.median_fitness(), median);

        // Without siblings an unknown node scores exactly like the median node.
        let alone = s.score(&pod("p0", "solo"), &nodes(&["ghost", "mid", "low", "high"]), true).unwrap();
        assert_eq!(alone.scores[0], alone.scores[1], "{:?}", alone.all);
        let ghost = &alone.all[0];
        assert_eq!((ghost.basis, ghost.fitness), (ScoreBasis::UnknownNode as i32, None));
        assert!(
            ghost.reason.starts_with(&format!("no window from this node yet: median fitness {median:.2}, spread: 0 ")),
            "{}",
            ghost.reason
        );

        // Two siblings on the unknown node: the sibling penalty applies to it too, so it
        // falls below the empty median node.
        s.placements.assume("uid-a", "uid-rs", "ghost", 0);
        s.placements.assume("uid-b", "uid-rs", "ghost", 0);
        let next = s.score(&pod("p3", "rs"), &nodes(&["ghost", "mid"]), true).unwrap();
        assert!(next.scores[0] < next.scores[1], "{:?}", next.all);
        assert_eq!(next.scores, [0, 10], "two candidates span the whole range");
        assert!(next.all[0].reason.contains("2 sibling(s) on node"), "{}", next.all[0].reason);
        assert_eq!(next.top[0].node, "mid");
    }

    #[tokio::test]
    async fn scores_span_the_range_with_the_raw_in_the_reason() {
        let s = service(FilterRules::default());
        for (n, cpu) in [("a", 0.2), ("b", 0.3), ("c", 0.4)] {
            feed(&s, n, cpu, 0.0);
        }
        let p = PodFacts { strategy: "spread".into(), ..pod("p", "rs") };
        let out = s.score(&p, &nodes(&["a", "b", "c"]), true).unwrap();
        assert_eq!(out.scores.iter().max(), Some(&10));
        assert_eq!(out.scores.iter().min(), Some(&0));
        for n in &out.all {
            assert!(n.reason.ends_with(&format!(" -> {}", n.score)), "{}", n.reason);
            assert!(n.reason.contains(", raw 0."), "{}", n.reason);
        }
        let single = s.score(&p, &nodes(&["b"]), true).unwrap();
        let raw: f64 = single.all[0].reason.split(", raw ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        assert_eq!(single.scores, [strategy::scale(raw)], "one candidate keeps scale(raw)");
    }

    #[tokio::test]
    async fn bad_requests_are_refused_without_state_change() {
        let s = service(FilterRules::default());
        feed(&s, "n1", 0.1, 0.0);
        let before = s.placements.counts();
        let mut bad = pod("p", "rs");
        bad.strategy = "sideways".into();
        let cases = [
            ScoreRequest { pod: None, nodes: nodes(&["n1"]), scores_only: false },
            ScoreRequest { pod: Some(bad), nodes: nodes(&["n1"]), scores_only: false },
            ScoreRequest { pod: Some(pod("p", "rs")), nodes: nodes(&["n1", ""]), scores_only: false },
            ScoreRequest {
                pod: Some(PodFacts { cpu_request_millis: -1, ..pod("p", "rs") }),
                nodes: nodes(&["n1"]),
                scores_only: false,
            },
        ];
        for req in cases {
            let err = Scorer::score(&s, Request::new(req)).await.unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
        }
        assert_eq!(s.placements.counts(), before);
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
        assert!(!Scorer::bind(&s, Request::new(req)).await.unwrap().into_inner().watched);
        assert_eq!(s.placements.view("", "other").recent_on("n9", None), 1);
        let bad =
            BindRequest { pod_name: "p".into(), pod_namespace: "ns".into(), pod_uid: "u".into(), node: String::new() };
        assert_eq!(Scorer::bind(&s, Request::new(bad)).await.unwrap_err().code(), tonic::Code::InvalidArgument);
    }
}
