//! The baselines of `cargo xtask bench scheduler`: the least an extender can do, and the
//! least the design's contract (one gRPC request to the scorer per extender call) adds
//! to it. It speaks the same wire format as fitsched's shim (decodes `ExtenderArgs`,
//! answers every candidate: `/filter` passes them all, `/prioritize` scores them) and does
//! nothing else.
//!
//! - `noop_extender <listen>`: scores every candidate 0.
//! - `noop_extender <listen> --hop <scorer address>`: for each `/prioritize`, one `Score`
//!   request naming the pod and its candidates (`scores_only`), answered with its scores.
//! - `noop_extender --null-scorer <listen>`: a `Scorer` gRPC server whose `Score` answers
//!   0 for every candidate and computes nothing; the other methods are unimplemented.
//!
//! The two together are the contract's floor: any shim and scorer that keep it spend at
//! least what they spend.

use std::borrow::Cow;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use fitsched_proto::scorer_client::ScorerClient;
use fitsched_proto::scorer_server::{Scorer, ScorerServer};
use fitsched_proto::{
    BindRequest, BindResponse, CandidateNode, Decision, ExplainRequest, FilterRequest, FilterResponse,
    ListNodesRequest, ListNodesResponse, ModelInfoRequest, ModelInfoResponse, PodFacts, PredictRequest,
    PredictResponse, ScoreRequest, ScoreResponse,
};
use serde::Deserialize;
use serde_json::json;
use tonic::transport::Channel;
use tonic::{Request, Status};

#[derive(Deserialize)]
struct Args<'a> {
    #[serde(rename = "Pod", borrow, default)]
    pod: Option<Pod<'a>>,
    #[serde(rename = "NodeNames", borrow)]
    node_names: Option<Vec<Cow<'a, str>>>,
}

#[derive(Deserialize, Default)]
struct Pod<'a> {
    #[serde(borrow, default)]
    metadata: Meta<'a>,
}

#[derive(Deserialize, Default)]
struct Meta<'a> {
    #[serde(borrow, default)]
    name: Cow<'a, str>,
    #[serde(borrow, default)]
    namespace: Cow<'a, str>,
    #[serde(borrow, default)]
    uid: Cow<'a, str>,
}

fn args(body: &[u8]) -> Result<Args<'_>, serde_json::Error> {
    serde_json::from_slice::<Args<'_>>(body)
}

fn bad_request(e: impl ToString) -> Response {
    (StatusCode::BAD_REQUEST, e.to_string()).into_response()
}

async fn filter(body: Bytes) -> Response {
    match args(&body) {
        Ok(a) => axum::Json(json!({"NodeNames": a.node_names.unwrap_or_default(), "FailedNodes": {}, "Error": ""}))
            .into_response(),
        Err(e) => bad_request(e),
    }
}

async fn prioritize(State(hop): State<Option<ScorerClient<Channel>>>, body: Bytes) -> Response {
    let a = match args(&body) {
        Ok(a) => a,
        Err(e) => return bad_request(e),
    };
    let names = a.node_names.unwrap_or_default();
    let scores = match hop {
        None => vec![0; names.len()],
        Some(mut client) => {
            let meta = a.pod.unwrap_or_default().metadata;
            let request = ScoreRequest {
                pod: Some(PodFacts {
                    name: meta.name.into_owned(),
                    namespace: meta.namespace.into_owned(),
                    uid: meta.uid.into_owned(),
                    ..Default::default()
                }),
                nodes: names.iter().map(|n| CandidateNode { name: n.to_string(), ..Default::default() }).collect(),
                scores_only: true,
            };
            match client.score(request).await {
                Ok(r) => r.into_inner().compact_scores,
                Err(e) => return bad_request(e.message()),
            }
        }
    };
    let body: Vec<_> = names.iter().zip(scores).map(|(h, s)| json!({"Host": h, "Score": s})).collect();
    axum::Json(body).into_response()
}

/// Answers every `Score` with zeros, computing nothing.
struct NullScorer;

#[tonic::async_trait]
impl Scorer for NullScorer {
    async fn score(&self, request: Request<ScoreRequest>) -> Result<tonic::Response<ScoreResponse>, Status> {
        let n = request.get_ref().nodes.len();
        Ok(tonic::Response::new(ScoreResponse { compact_scores: vec![0; n], ..Default::default() }))
    }
    async fn filter(&self, _: Request<FilterRequest>) -> Result<tonic::Response<FilterResponse>, Status> {
        Err(Status::unimplemented("null scorer"))
    }
    async fn bind(&self, _: Request<BindRequest>) -> Result<tonic::Response<BindResponse>, Status> {
        Err(Status::unimplemented("null scorer"))
    }
    async fn predict(&self, _: Request<PredictRequest>) -> Result<tonic::Response<PredictResponse>, Status> {
        Err(Status::unimplemented("null scorer"))
    }
    async fn list_nodes(&self, _: Request<ListNodesRequest>) -> Result<tonic::Response<ListNodesResponse>, Status> {
        Err(Status::unimplemented("null scorer"))
    }
    async fn explain(&self, _: Request<ExplainRequest>) -> Result<tonic::Response<Decision>, Status> {
        Err(Status::unimplemented("null scorer"))
    }
    async fn model_info(&self, _: Request<ModelInfoRequest>) -> Result<tonic::Response<ModelInfoResponse>, Status> {
        Err(Status::unimplemented("null scorer"))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match argv.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["--null-scorer", listen] => {
            tonic::transport::Server::builder()
                .add_service(ScorerServer::new(NullScorer))
                .serve(listen.parse()?)
                .await?;
        }
        [listen] | [listen, "--hop", _] => {
            let hop = match argv.get(2) {
                Some(scorer) => {
                    Some(ScorerClient::new(Channel::from_shared(format!("http://{scorer}"))?.connect_lazy()))
                }
                None => None,
            };
            let app =
                Router::new().route("/filter", post(filter)).route("/prioritize", post(prioritize)).with_state(hop);
            let listener = tokio::net::TcpListener::bind(listen).await?;
            axum::serve(listener, app).await?;
        }
        _ => anyhow::bail!("usage: noop_extender <listen> [--hop <scorer>] | noop_extender --null-scorer <listen>"),
    }
    Ok(())
}
