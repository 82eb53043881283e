//! A fake scorer and helpers to drive the real router.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Method, Request, StatusCode, header};
use fitsched_proto::scorer_server::{Scorer, ScorerServer};
use fitsched_proto::*;
use fitsched_shim::ShimConfig;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Response, Status};
use tower::ServiceExt;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/kube-scheduler-extender");

/// `names` or `full` fixture folder; fails clearly when the fixtures are absent.
pub fn fixture_dir(mode: &str) -> PathBuf {
    let dir = Path::new(FIXTURES).join(mode);
    assert!(
        dir.is_dir(),
        "kube-scheduler extender fixtures not found at {}: they belong in extender-shim/testdata/",
        dir.display()
    );
    dir
}

/// Request fixtures of a mode, sorted: (file name, verb, body).
pub fn requests(mode: &str) -> Vec<(String, String, Vec<u8>)> {
    let dir = fixture_dir(mode);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with("-request.json"))
        .map(|n| {
            let verb = n.split('-').nth(1).unwrap().to_owned();
            let body = std::fs::read(dir.join(&n)).unwrap();
            (n, verb, body)
        })
        .collect();
    out.sort();
    assert!(out.len() >= 6, "expected at least 6 request fixtures in {}", dir.display());
    out
}

pub fn fixture(mode: &str, name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir(mode).join(name)).unwrap()
}

/// Behaves like the capture extender: drops `worker-3`, scores `(index*3) % 11`.
#[derive(Default, Clone)]
pub struct FakeScorer {
    pub delay: Duration,
    pub fail_with: Option<Code>,
    pub calls: Arc<AtomicUsize>,
    pub filters: Arc<Mutex<Vec<FilterRequest>>>,
    pub scores: Arc<Mutex<Vec<ScoreRequest>>>,
    pub binds: Arc<Mutex<Vec<BindRequest>>>,
}

impl FakeScorer {
    async fn enter(&self) -> Result<(), Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        match self.fail_with {
            Some(code) => Err(Status::new(code, "fake scorer told to fail")),
            None => Ok(()),
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[tonic::async_trait]
impl Scorer for FakeScorer {
    async fn score(&self, request: tonic::Request<ScoreRequest>) -> Result<Response<ScoreResponse>, Status> {
        self.enter().await?;
        let req = request.into_inner();
        let scores = req
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| NodeScore {
                node: n.name.clone(),
                score: i32::try_from(i * 3 % 11).unwrap(),
                basis: ScoreBasis::Fitness.into(),
                ..Default::default()
            })
            .collect();
        self.scores.lock().unwrap().push(req);
        Ok(Response::new(ScoreResponse { strategy: "balanced".into(), scores, ..Default::default() }))
    }

    async fn filter(&self, request: tonic::Request<FilterRequest>) -> Result<Response<FilterResponse>, Status> {
        self.enter().await?;
        let req = request.into_inner();
        let mut out = FilterResponse::default();
        for n in &req.nodes {
            if n.name == "worker-3" {
                out.failed.insert(n.name.clone(), "capture: rejected by test extender".into());
            } else {
                out.passed.push(n.name.clone());
            }
        }
        self.filters.lock().unwrap().push(req);
        Ok(Response::new(out))
    }

    async fn bind(&self, request: tonic::Request<BindRequest>) -> Result<Response<BindResponse>, Status> {
        self.enter().await?;
        self.binds.lock().unwrap().push(request.into_inner());
        Ok(Response::new(BindResponse { watched: false }))
    }

    async fn predict(&self, _: tonic::Request<PredictRequest>) -> Result<Response<PredictResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_nodes(&self, _: tonic::Request<ListNodesRequest>) -> Result<Response<ListNodesResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn explain(&self, _: tonic::Request<ExplainRequest>) -> Result<Response<Decision>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn model_info(&self, _: tonic::Request<ModelInfoRequest>) -> Result<Response<ModelInfoResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// Serves `fake` on 127.0.0.1:0 and returns its URL.
pub async fn start_fake(fake: FakeScorer) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(ScorerServer::new(fake))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}

/// A URL where nothing listens: connections are refused.
pub async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

pub fn config(url: &str, deadline: Duration) -> ShimConfig {
    let mut c = ShimConfig::new(url);
    c.deadlines = fitsched_shim::Deadlines { verb: deadline, bind: deadline };
    c
}

pub fn app(url: &str) -> Router {
    fitsched_shim::router(&config(url, Duration::from_secs(5))).unwrap()
}

/// Sends one request through the router: status, content type and body.
pub async fn send(app: &Router, method: Method, path: &str, body: impl Into<Body>) -> (StatusCode, String, Bytes) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type =
        response.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
    (status, content_type, body)
}

/// POSTs and decodes the JSON answer.
pub async fn post(app: &Router, path: &str, body: impl Into<Body>) -> (StatusCode, serde_json::Value) {
    let (status, content_type, body) = send(app, Method::POST, path, body).await;
    assert_eq!(content_type, "application/json", "{path} answered {status} without a JSON content type");
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{path} answered {status} with a body that is not JSON ({e}): {body:?}"));
    (status, value)
}
