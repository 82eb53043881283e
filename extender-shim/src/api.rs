//! The extender's HTTP API: `POST /filter`, `/prioritize`, `/bind`; `GET /health`. On a
//! listener of their own ([`metrics_router`]): `GET /metrics`, `/health`.
//!
//! The handlers translate: kube-scheduler's JSON to one gRPC request, the scorer's answer
//! back. When the scorer gives no usable answer, what they answer and when comes from
//! [`crate::fallback`] (the deadlines and the neutral answers); every answer is counted by
//! the [`crate::observe`] layer; request bodies are bounded by [`read_body`].
//!
//! # How kube-scheduler reads the answers
//!
//! As kubernetes/kubernetes does it (`pkg/scheduler/extender.go` at 0285030,
//! `pkg/scheduler/schedule_one.go` at 003b446):
//!
//! - `HTTPExtender.send`, for every verb: a status other than 200 is an error, and so are
//!   a body that does not decode, a transport failure and no answer within the extender's
//!   `httpTimeout` (default 5 s).
//! - `HTTPExtender.Filter` and `HTTPExtender.Bind`: a 200 with a non-empty `Error` is an
//!   error too. A filter answer naming a node it was not sent is an error; one without
//!   `NodeNames` (`nodeCacheCapable`) or `Nodes` passes no node.
//! - `findNodesThatPassExtenders`: a filter error fails the scheduling attempt (the pod is
//!   requeued with back-off) unless the extender is `ignorable`; then the extender is
//!   skipped for that attempt. `FailedNodes` become `Unschedulable` statuses,
//!   `FailedAndUnresolvableNodes` `UnschedulableAndUnresolvable` ones, which preemption
//!   does not try; the second map wins when a node is in both.
//! - `prioritizeNodes`: a prioritize error is only logged (V(5)), `ignorable` or not; the
//!   pod is scored without the extender. A score s adds s × `weight` × 10 (`MaxNodeScore`
//!   / `MaxExtenderPriority`) to the node's total.
//! - `Scheduler.extendersBinding`: a bind error of an `ignorable` extender skips it, and
//!   the profile's bind plugin (`DefaultBinder`) binds the pod; otherwise the binding
//!   cycle fails and `handleBindingCycleError` un-reserves and requeues the pod (unless
//!   the informer already shows it bound).
//!
//! What the shim answers, per verb:
//!
//! | verb | the scorer answers | it is down, slow or refuses | malformed body | too large |
//! |---|---|---|---|---|
//! | filter | 200, passing nodes, rejections in `FailedNodes` | 200, every node passes | 400 | 413 |
//! | prioritize | 200, scores 0..=10 | 200, `score::NEUTRAL` everywhere | 400 | 413 |
//! | bind | 200, `Error` empty | see below | 400 | 413 |
//!
//! The scorer's rejections are never `FailedAndUnresolvableNodes`: a node's load changes,
//! and preemption may relieve it. 400 and 413 (over `--max-body-bytes`) are errors to
//! kube-scheduler: an `ignorable` extender is skipped (a bind falls to `DefaultBinder`),
//! otherwise the attempt fails.
//!
//! `/bind` ([`crate::binder`]) with `--binder kubernetes`: the shim creates the Binding.
//! Refused (409 already bound elsewhere, 404, 403, ...) or not created within
//! `--bind-deadline`, it answers 200 with `Error` and counts
//! `fitsched_shim_bind_errors_total{reason}`. Created, or found already on the requested
//! node after a refusal or silence (`fitsched_shim_binds_found_bound_total`), it answers
//! 200 with an empty `Error`, even when the scorer's notice then fails
//! (`fitsched_shim_bind_notice_failures_total`; the scorer's pod watch catches up). With
//! `--binder scorer-only` the scorer's `Bind` is the whole bind and its failure the
//! `Error`. `--bind-deadline` bounds the whole `/bind`; keep it under `httpTimeout`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fitsched_proto::{CandidateNode, FilterRequest, FilterResponse, ScoreRequest, ScoreResponse, score};
use http_body_util::BodyExt;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::binder::{Binder, Bound};
use crate::client::{CallError, Scorer};
use crate::config::{BodyLimits, ProfileStrategies, ShimConfig};
use crate::fallback::{self, Deadlines};
use crate::observe::{self, Arrived, series};
use crate::wire::{
    self, BadRequest, ErrorBody, ExtenderBindingResult, ExtenderFilterResult, FailedNodes, HostPriority, SchedulingArgs,
};

// Above this size, decoding and encoding run through `block_in_place`, so a 30 MB
// full-mode body does not stall the other tasks on its worker thread.
const LARGE_BODY_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Filter,
    Prioritize,
    Bind,
}

impl Verb {
    pub(crate) fn from_path(path: &str) -> Option<Self> {
        match path {
            "/filter" => Some(Self::Filter),
            "/prioritize" => Some(Self::Prioritize),
            "/bind" => Some(Self::Bind),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Filter => "filter",
            Self::Prioritize => "prioritize",
            Self::Bind => "bind",
        }
    }
}

#[derive(Clone)]
struct AppState {
    scorer: Scorer,
    binder: Binder,
    limits: BodyLimits,
    deadlines: Deadlines,
    /// Request-body bytes being read or held, in KiB: the shim's memory bound.
    in_flight: Arc<Semaphore>,
    profiles: Arc<ProfileStrategies>,
}

/// The extender's HTTP router. Must be called inside a Tokio runtime, because the scorer
/// channel is created here (lazily).
pub fn router(config: &ShimConfig) -> anyhow::Result<Router> {
    let state = AppState {
        scorer: Scorer::connect_lazy(&config.client)?,
        binder: config.binder.clone(),
        limits: config.limits,
        deadlines: config.deadlines,
        in_flight: Arc::new(Semaphore::new(kib(config.limits.max_in_flight_bytes) as usize)),
        profiles: Arc::new(config.profiles.clone()),
    };
    Ok(Router::new()
        .route("/filter", post(verb))
        .route("/prioritize", post(verb))
        .route("/bind", post(verb))
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(config.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), read_body))
        // Outermost: it stamps the arrival every deadline counts from and records every
        // answer, refusals included.
        .layer(middleware::from_fn_with_state(config.deadlines, observe::observe))
        .with_state(state))
}

/// `/metrics` (Prometheus text rendered by `metrics`; without it, as in tests where no
/// global recorder is installed, an empty exposition) and `/health`, for the shim's
/// metrics listener: scrapers and probes reach these and nothing else.
pub fn metrics_router(metrics: Option<PrometheusHandle>) -> Router {
    let text = move || {
        let text = metrics.as_ref().map(PrometheusHandle::render).unwrap_or_default();
        async move { ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], text) }
    };
    Router::new().route("/metrics", get(text)).route("/health", get(|| async { r#"{"status":"ok"}"# }))
}

/// KiB, rounded up: the unit of the in-flight budget (a `Semaphore` counts in `u32`).
fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX).min(Semaphore::MAX_PERMITS as u32)
}

/// Reads a verb's body before the handler runs, within [`BodyLimits`], and counts every
/// answer, the handler's included ([`record`]):
///
/// - declared larger than `max_body_bytes`: 413 at once, from the header; what the client
///   sends meanwhile is read and dropped for up to the read timeout, so a client that
///   writes its whole body before reading sees the 413, not a reset connection;
/// - no room in the in-flight budget for the declared size (for the largest body when
///   undeclared): 503 at once, nothing read;
/// - not received within `read_timeout`: 408 (a client declaring 100 bytes and sending
///   2 no longer holds a connection and its budget);
/// - larger than declared or than the limit while streaming: 413.
///
/// Refusals close the connection: the rest of the body may still be in flight.
async fn read_body(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(verb) = Verb::from_path(req.uri().path()) else { return next.run(req).await };
    let limits = state.limits;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let (parts, mut body) = req.into_parts();
    let refused = refuse_with(verb);
    if let Some(len) = declared.filter(|&len| len > limits.max_body_bytes as u64) {
        // Answered at once; the body is read and dropped for up to the read time
        // meanwhile, so a client that writes its whole body before reading gets this
        // answer and not a reset connection. None of it is kept.
        tokio::spawn(async move {
            let drain = async { while let Some(Ok(_)) = body.frame().await {} };
            let _ = tokio::time::timeout(limits.read_timeout, drain).await;
        });
        let message = format!(
            "request body of {len} bytes is larger than the limit of {} bytes (--max-body-bytes)",
            limits.max_body_bytes
        );
        return refused(StatusCode::PAYLOAD_TOO_LARGE, message);
    }
    let reserve = declared.map_or(limits.max_body_bytes, |len| len as usize);
    let Ok(_permit) = state.in_flight.clone().try_acquire_many_owned(kib(reserve)) else {
        let message = format!(
            "the shim holds its limit of {} bytes of request bodies (--max-body-bytes-in-flight); retry",
            limits.max_in_flight_bytes
        );
        return refused(StatusCode::SERVICE_UNAVAILABLE, message);
    };
    let read = http_body_util::Limited::new(body, limits.max_body_bytes).collect();
    let bytes = match tokio::time::timeout(limits.read_timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            let message =
                format!("request body is larger than the limit of {} bytes (--max-body-bytes)", limits.max_body_bytes);
            return refused(StatusCode::PAYLOAD_TOO_LARGE, message);
        }
        Ok(Err(e)) => return refused(StatusCode::BAD_REQUEST, format!("could not read the request body: {e}")),
        Err(_) => {
            let message = format!("request body not received within {:?} (--body-read-timeout)", limits.read_timeout);
            return refused(StatusCode::REQUEST_TIMEOUT, message);
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

fn refuse_with(verb: Verb) -> impl Fn(StatusCode, String) -> Response {
    move |status, message| refuse(verb, status, message)
}

/// A request refused before it was understood: counted, logged, answered with a JSON
/// error, connection closed (the rest of its body may still be on the way).
fn refuse(verb: Verb, status: StatusCode, message: String) -> Response {
    metrics::counter!(series::BAD_REQUESTS, "verb" => verb.as_str(), "code" => status.as_str().to_owned()).increment(1);
    warn!(verb = verb.as_str(), status = status.as_u16(), message, "request refused");
    let mut response = error(status, message);
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The three verbs: one handler, the body already read and the answer recorded by
/// [`read_body`].
async fn verb(
    State(state): State<AppState>,
    uri: Uri,
    arrived: Option<Extension<Arrived>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(verb) = Verb::from_path(uri.path()) else { return not_found(Method::POST, uri).await };
    let arrived = Arrived::of(arrived);
    match body {
        Ok(body) => match verb {
            Verb::Filter => filter_body(&state, &body, arrived).await,
            Verb::Prioritize => prioritize_body(&state, &body, arrived).await,
            Verb::Bind => bind_body(&state, &body, arrived).await,
        },
        Err(rejection) => refuse_body(verb, &state, &rejection),
    }
}

async fn filter_body(state: &AppState, body: &[u8], arrived: Instant) -> Response {
    let verb = Verb::Filter;
    let args = match cpu_heavy(body.len(), || wire::decode_extender_args_for(body, &state.profiles)) {
        Ok(args) => args,
        Err(e) => return bad_request(verb, &e),
    };
    let pod = args.pod_display();
    let candidates = args.nodes.len();
    if candidates == 0 {
        info!(pod, verb = verb.as_str(), candidates, failed = 0, "no candidates: empty answer");
        return json(body.len(), StatusCode::OK, &ExtenderFilterResult::new(&args, &[], FailedNodes::default()));
    }
    let request = FilterRequest { pod: Some(args.pod.clone()), nodes: args.nodes.clone() };
    let (passing, failed) = match state.scorer.filter(request, state.deadlines.until(verb, arrived)).await {
        Ok(answer) => {
            let (passing, failed, unaccounted) = apply_filter(&args.nodes, answer);
            if unaccounted > 0 {
                warn!(pod, unaccounted, "scorer's Filter answer left candidates out; they pass");
            }
            info!(pod, verb = verb.as_str(), candidates, failed = failed.0.len(), "filter decision");
            (passing, failed)
        }
        Err(e) => {
            fallback::answered_neutrally(verb, &pod, &e);
            fallback::every_node_passes(candidates)
        }
    };
    json(body.len(), StatusCode::OK, &ExtenderFilterResult::new(&args, &passing, failed))
}

async fn prioritize_body(state: &AppState, body: &[u8], arrived: Instant) -> Response {
    let verb = Verb::Prioritize;
    let args: SchedulingArgs<'_> = match cpu_heavy(body.len(), || wire::decode_extender_args_for(body, &state.profiles))
    {
        Ok(args) => args,
        Err(e) => return bad_request(verb, &e),
    };
    let pod = args.pod_display();
    let candidates = args.nodes.len();
    if candidates == 0 {
        info!(pod, verb = verb.as_str(), candidates, "no candidates: empty answer");
        return json(0, StatusCode::OK, &Vec::<HostPriority<'_>>::new());
    }
    // Scores only: kube-scheduler's answer has no room for reasons, and 5 000 formatted
    // reasons cost more than the rest of the call. The scorer keeps the best nodes'
    // reasons for its log and `Explain`.
    let request = ScoreRequest { pod: Some(args.pod.clone()), nodes: args.nodes.clone(), scores_only: true };
    let priorities = match state.scorer.score(request, state.deadlines.until(verb, arrived)).await {
        Ok(answer) => {
            let strategy = answer.strategy.clone();
            let (priorities, unscored) = apply_scores(&args.nodes, answer);
            if unscored > 0 {
                warn!(pod, unscored, "scorer's Score answer left candidates out; they get the neutral score");
            }
            // First best in request order, as kube-scheduler would break the tie.
            let top = priorities.iter().rev().max_by_key(|p| p.score);
            info!(
                pod,
                verb = verb.as_str(),
                candidates,
                strategy,
                top_node = top.map(|p| p.host),
                top_score = top.map(|p| p.score),
                "prioritize decision"
            );
            priorities
        }
        Err(e) => {
            fallback::answered_neutrally(verb, &pod, &e);
            fallback::neutral_scores(&args.nodes)
        }
    };
    json(0, StatusCode::OK, &priorities)
}

async fn bind_body(state: &AppState, body: &[u8], arrived: Instant) -> Response {
    let verb = Verb::Bind;
    let request = match wire::decode_binding_args(body) {
        Ok(r) => r,
        Err(e) => return bad_request(verb, &e),
    };
    let pod = format!("{}/{}", request.pod_namespace, request.pod_name);
    let node = request.node.clone();
    let deadline = state.deadlines.bind;
    let failed = |reason: &'static str, error: &dyn std::fmt::Display| {
        metrics::counter!(series::BIND_ERRORS, "reason" => reason).increment(1);
        warn!(pod, verb = verb.as_str(), node, reason, error = %error,
            "bind failed; kube-scheduler retries the pod (binds it itself if the extender is ignorable)");
        json(
            0,
            StatusCode::OK,
            &ExtenderBindingResult { error: format!("fitsched: binding {pod} to {node} failed: {error}") },
        )
    };
    let bound = match state.binder.bind(&request, deadline, arrived).await {
        Ok(bound) => bound,
        Err(e) => return failed(e.reason(), &e),
    };
    if bound == Bound::AlreadyThere {
        metrics::counter!(series::BINDS_FOUND_BOUND).increment(1);
    }
    let until = state.deadlines.notice_until(arrived);
    let notice = if until <= Instant::now() {
        Err(CallError::Timeout(deadline))
    } else {
        state.scorer.bind(request, until).await
    };
    match (notice, &state.binder) {
        (Ok(answer), _) => info!(
            pod,
            verb = verb.as_str(),
            node,
            watched = answer.watched,
            already_there = bound == Bound::AlreadyThere,
            "bind decision"
        ),
        // Without a Binding, the scorer's record is the whole bind.
        (Err(e), Binder::ScorerOnly) => return failed(e.reason(), &e),
        (Err(e), Binder::Kubernetes(_)) => {
            metrics::counter!(series::BIND_NOTICE_FAILURES).increment(1);
            warn!(pod, verb = verb.as_str(), node, reason = e.reason(), error = %e,
                "bound, but the scorer was not told; its pod watch will show the pod");
        }
    }
    json(0, StatusCode::OK, &ExtenderBindingResult { error: String::new() })
}

/// Maps the scorer's Filter answer onto the candidates, in request order: returns the
/// passing indices, the failed nodes with reasons, and how many candidates the answer
/// did not mention (they pass: a scorer omission must never hide a node).
fn apply_filter(nodes: &[CandidateNode], answer: FilterResponse) -> (Vec<usize>, FailedNodes, usize) {
    let passed: HashSet<&str> = answer.passed.iter().map(String::as_str).collect();
    let mut passing = Vec::with_capacity(nodes.len());
    let mut failed = Vec::with_capacity(answer.failed.len());
    let mut unaccounted = 0;
    for (i, node) in nodes.iter().enumerate() {
        if passed.contains(node.name.as_str()) {
            passing.push(i);
        } else if let Some(reason) = answer.failed.get(&node.name) {
            failed.push((node.name.clone(), reason.clone()));
        } else {
            unaccounted += 1;
            passing.push(i);
        }
    }
    (passing, FailedNodes(failed), unaccounted)
}

/// Maps the scorer's Score answer onto the candidates, in request order, clamped to
/// `0..=score::MAX`; returns the list and how many candidates had no score (they get
/// the neutral one).
fn apply_scores(nodes: &[CandidateNode], answer: ScoreResponse) -> (Vec<HostPriority<'_>>, usize) {
    let clamp = |s: i32| i64::from(s.clamp(0, score::MAX));
    if answer.compact_scores.len() == nodes.len() {
        let list =
            nodes.iter().zip(&answer.compact_scores).map(|(n, &s)| HostPriority { host: &n.name, score: clamp(s) });
        return (list.collect(), 0);
    }
    // A named answer (a scorer that ignored `scores_only`) is in request order too;
    // only a different order costs a map.
    let in_order = answer.scores.len() == nodes.len() && answer.scores.iter().zip(nodes).all(|(s, n)| s.node == n.name);
    if in_order {
        let list = nodes.iter().zip(&answer.scores).map(|(n, s)| HostPriority { host: &n.name, score: clamp(s.score) });
        return (list.collect(), 0);
    }
    let by_name: HashMap<&str, i32> = answer.scores.iter().map(|s| (s.node.as_str(), s.score)).collect();
    let mut unscored = 0;
    let list = nodes
        .iter()
        .map(|n| {
            let score = by_name.get(n.name.as_str()).copied().unwrap_or_else(|| {
                unscored += 1;
                score::NEUTRAL
            });
            HostPriority { host: &n.name, score: clamp(score) }
        })
        .collect();
    (list, unscored)
}

async fn health(State(state): State<AppState>) -> Response {
    #[derive(Serialize)]
    struct Health {
        status: &'static str,
        scorer: &'static str,
    }
    json(0, StatusCode::OK, &Health { status: "ok", scorer: state.scorer.state() })
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!(
            "no route for {method} {}: the extender serves POST /filter, /prioritize, /bind and GET /health",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, format!("method {method} is not allowed on {}", uri.path()))
}

fn refuse_body(verb: Verb, state: &AppState, rejection: &BytesRejection) -> Response {
    let status = rejection.status();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("request body is larger than the limit of {} bytes (--max-body-bytes)", state.limits.max_body_bytes)
    } else {
        format!("could not read the request body: {}", rejection.body_text())
    };
    refuse(verb, status, message)
}

fn bad_request(verb: Verb, e: &BadRequest) -> Response {
    metrics::counter!(series::BAD_REQUESTS, "verb" => verb.as_str(), "code" => "400").increment(1);
    warn!(verb = verb.as_str(), error = %e, "bad request");
    error(StatusCode::BAD_REQUEST, e.0.clone())
}

fn error(status: StatusCode, message: String) -> Response {
    json(0, status, &ErrorBody { error: message })
}

/// A JSON response; `size_hint` is the request size, which bounds the answer's size
/// and decides whether encoding counts as heavy.
fn json<T: Serialize>(size_hint: usize, status: StatusCode, value: &T) -> Response {
    match cpu_heavy(size_hint, || serde_json::to_vec(value)) {
        Ok(bytes) => {
            (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], bytes).into_response()
        }
        Err(e) => {
            // Only a non-string map key or a failing Serialize impl can get here; none exist.
            tracing::error!(error = %e, "could not encode an answer");
            let body = r#"{"error":"internal error: could not encode the answer"}"#;
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                body,
            )
                .into_response()
        }
    }
}

/// Runs CPU-bound work on a large body without starving the worker's other tasks.
/// `block_in_place` exists only on the multi-threaded runtime, so elsewhere (tests on a
/// current-thread runtime) the work simply runs inline.
fn cpu_heavy<T>(len: usize, f: impl FnOnce() -> T) -> T {
    let multi_thread = Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if len >= LARGE_BODY_BYTES && multi_thread { tokio::task::block_in_place(f) } else { f() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fitsched_proto::NodeScore;

    fn nodes(names: &[&str]) -> Vec<CandidateNode> {
        names.iter().map(|n| CandidateNode { name: (*n).into(), ..Default::default() }).collect()
    }

    #[test]
    fn filter_keeps_request_order_and_passes_unmentioned_nodes() {
        let answer = FilterResponse {
            passed: vec!["c".into(), "a".into(), "stranger".into()],
            failed: [("b".to_string(), "hot".to_string())].into(),
        };
        let (passing, failed, unaccounted) = apply_filter(&nodes(&["a", "b", "c", "d"]), answer);
        assert_eq!(passing, [0, 2, 3]);
        assert_eq!(failed, FailedNodes(vec![("b".into(), "hot".into())]));
        assert_eq!(unaccounted, 1);
    }

    #[test]
    fn scores_are_clamped_and_reordered() {
        let s = |node: &str, score| NodeScore { node: node.into(), score, ..Default::default() };
        let ns = nodes(&["a", "b", "c"]);
        let named = |scores| ScoreResponse { strategy: "spread".into(), scores, compact_scores: vec![] };
        let (list, unscored) = apply_scores(&ns, named(vec![s("a", -3), s("b", 4), s("c", 99)]));
        assert_eq!(list.iter().map(|p| p.score).collect::<Vec<_>>(), [0, 4, 10]);
        assert_eq!(unscored, 0);
        let compact = ScoreResponse { strategy: "spread".into(), scores: vec![], compact_scores: vec![-3, 4, 99] };
        assert_eq!(apply_scores(&ns, compact).0, list);
        // A compact answer of the wrong length is not trusted: everything is neutral.
        let short = ScoreResponse { strategy: "spread".into(), scores: vec![], compact_scores: vec![1] };
        assert_eq!(apply_scores(&ns, short).1, 3);
        let (list, unscored) = apply_scores(&ns, named(vec![s("c", 1), s("a", 2)]));
        assert_eq!(
            list,
            [
                HostPriority { host: "a", score: 2 },
                HostPriority { host: "b", score: i64::from(score::NEUTRAL) },
                HostPriority { host: "c", score: 1 }
            ]
        );
        assert_eq!(unscored, 1);
    }
}
