//! Scheduling never stops: with the scorer down, slow or refusing, filter and
//! prioritize still answer 200 neutrally; bind reports the failure.

use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode};
use fitsched_proto::score;
use serde_json::{Value, json};
use tonic::Code;

use crate::common::*;

fn all_pass_names() -> Value {
    json!({"NodeNames": ["worker-1", "worker-2", "worker-3", "worker-4"], "FailedNodes": {},
        "FailedAndUnresolvableNodes": {}, "Error": ""})
}

fn neutral(hosts: &[&str]) -> Value {
    hosts.iter().map(|h| json!({"Host": h, "Score": score::NEUTRAL})).collect()
}

async fn health(app: &Router) -> Value {
    let (status, _, body) = send(app, Method::GET, "/health", "").await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_slice(&body).unwrap()
}

/// Filter and prioritize in both modes give the neutral answers.
async fn assert_neutral(app: &Router) {
    let (status, answer) = post(app, "/filter", fixture("names", "001-filter-request.json")).await;
    assert_eq!((status, answer), (StatusCode::OK, all_pass_names()));

    let (status, answer) = post(app, "/prioritize", fixture("names", "002-prioritize-request.json")).await;
    assert_eq!((status, answer), (StatusCode::OK, neutral(&["worker-1", "worker-2", "worker-4"])));

    let request: Value = serde_json::from_slice(&fixture("full", "001-filter-request.json")).unwrap();
    let (status, answer) = post(app, "/filter", fixture("full", "001-filter-request.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"Nodes": {"items": request["Nodes"]["items"]}, "FailedNodes": {}, "Error": ""}));

    let (status, answer) = post(app, "/prioritize", fixture("full", "002-prioritize-request.json")).await;
    assert_eq!((status, answer), (StatusCode::OK, neutral(&["worker-1", "worker-2", "worker-4"])));
}

#[tokio::test]
async fn scorer_down_gives_neutral_answers() {
    let app = fitsched_shim::router(&config(&closed_port_url().await, Duration::from_millis(300))).unwrap();
    assert_eq!(health(&app).await, json!({"status": "ok", "scorer": "unknown"}));
    assert_neutral(&app).await;
    assert_eq!(health(&app).await, json!({"status": "ok", "scorer": "unreachable"}));

    // A bind cannot be faked: kube-scheduler must hear that it failed.
    let (status, answer) = post(&app, "/bind", fixture("names", "003-bind-request.json")).await;
    assert_eq!(status, StatusCode::OK);
    let error = answer["Error"].as_str().unwrap();
    assert!(error.contains("bench/nginx-bench-names-1") && error.contains("worker-4"), "{error}");
}

#[tokio::test]
async fn slow_scorer_gives_neutral_answers() {
    let fake = FakeScorer { delay: Duration::from_secs(5), ..Default::default() };
    let app = fitsched_shim::router(&config(&start_fake(fake.clone()).await, Duration::from_millis(100))).unwrap();
    assert_neutral(&app).await;
    assert_eq!(fake.calls(), 4, "one scorer call per request");
    assert_eq!(health(&app).await["scorer"], "unreachable");
}

#[tokio::test]
async fn scorer_refusal_gives_neutral_answers() {
    for code in [Code::InvalidArgument, Code::Internal, Code::Unavailable] {
        let fake = FakeScorer { fail_with: Some(code), ..Default::default() };
        let app = fitsched_shim::router(&config(&start_fake(fake.clone()).await, Duration::from_secs(5))).unwrap();
        assert_neutral(&app).await;
        let expected = if code == Code::Unavailable { "unreachable" } else { "reachable" };
        assert_eq!(health(&app).await["scorer"], expected, "{code:?}");

        let (status, answer) = post(&app, "/bind", fixture("full", "006-bind-request.json")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(answer["Error"].as_str().unwrap().contains("fake scorer told to fail"), "{answer}");
    }
}

#[tokio::test]
async fn healthy_scorer_is_reported_reachable() {
    let app = app(&start_fake(FakeScorer::default()).await);
    post(&app, "/prioritize", fixture("names", "002-prioritize-request.json")).await;
    assert_eq!(health(&app).await, json!({"status": "ok", "scorer": "reachable"}));
}
