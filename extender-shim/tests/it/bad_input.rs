//! Bad input gets a clear JSON error with the right status, never a panic.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::common::*;

fn pod() -> serde_json::Value {
    json!({"metadata": {"name": "p", "namespace": "ns"}})
}

#[tokio::test]
async fn malformed_bodies_get_400_naming_the_problem() {
    let fake = FakeScorer::default();
    let app = app(&start_fake(fake.clone()).await);
    let cases: Vec<(&str, String, &str)> = vec![
        ("/filter", "{".into(), "invalid ExtenderArgs JSON"),
        ("/filter", "".into(), "the body is empty"),
        ("/filter", "[]".into(), "must be a JSON object"),
        ("/bind", " [\"p\", \"ns\", \"u\", \"n\"]".into(), "must be a JSON object"),
        ("/prioritize", "{}".into(), "Pod is missing"),
        ("/filter", json!({"NodeNames": ["a"]}).to_string(), "Pod is missing"),
        ("/prioritize", json!({"Pod": pod()}).to_string(), "neither Nodes nor NodeNames"),
        ("/filter", json!({"Pod": pod(), "Nodes": null, "NodeNames": null}).to_string(), "neither Nodes nor NodeNames"),
        ("/filter", json!({"Pod": "p", "NodeNames": ["a"]}).to_string(), "invalid type"),
        ("/filter", json!({"Pod": pod(), "NodeNames": [1, 2]}).to_string(), "invalid type"),
        ("/prioritize", json!({"Pod": pod(), "Nodes": {"items": "x"}}).to_string(), "invalid type"),
        ("/filter", json!({"Pod": pod(), "Nodes": {"items": [{"metadata": {}}]}}).to_string(), "metadata.name"),
        ("/filter", "{\"Pod\": {\"metadata\": {\"name\": \"p\"}}, \"NodeNames\": [\"a\"]} trailing".into(), "trailing"),
        ("/bind", "{}".into(), "PodName is missing"),
        ("/bind", json!({"PodName": 1}).to_string(), "invalid type"),
        ("/bind", "nope".into(), "invalid ExtenderBindingArgs JSON"),
    ];
    for (path, body, needle) in cases {
        let (status, answer) = post(&app, path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{path} {body}: {message:?} should mention {needle:?}");
    }
    assert_eq!(fake.calls(), 0, "bad input never reaches the scorer");
}

#[tokio::test]
async fn empty_candidate_lists_get_empty_answers_without_a_scorer_call() {
    let fake = FakeScorer::default();
    let app = app(&start_fake(fake.clone()).await);
    let names = json!({"Pod": pod(), "NodeNames": []}).to_string();
    let full = json!({"Pod": pod(), "Nodes": {"metadata": {}, "items": []}, "NodeNames": null}).to_string();
    let no_items = json!({"Pod": pod(), "Nodes": {"metadata": {}, "items": null}}).to_string();

    let (status, answer) = post(&app, "/filter", names.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer, json!({"NodeNames": [], "FailedNodes": {}, "FailedAndUnresolvableNodes": {}, "Error": ""}));
    for body in [&full, &no_items] {
        let (status, answer) = post(&app, "/filter", body.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer, json!({"Nodes": {"items": []}, "FailedNodes": {}, "Error": ""}));
    }
    for body in [names, full] {
        let (status, answer) = post(&app, "/prioritize", body).await;
        assert_eq!((status, answer), (StatusCode::OK, json!([])));
    }
    assert_eq!(fake.calls(), 0);
}

#[tokio::test]
async fn oversized_bodies_get_413_with_json() {
    let mut config = config(&closed_port_url().await, Duration::from_millis(100));
    config.limits.max_body_bytes = 1024;
    let app = fitsched_shim::router(&config).unwrap();
    let big = format!("{{\"Pod\": {{\"metadata\": {{\"name\": \"{}\"}}}}, \"NodeNames\": []}}", "x".repeat(2000));
    for path in ["/filter", "/prioritize", "/bind"] {
        let (status, answer) = post(&app, path, big.clone()).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}");
        assert!(answer["error"].as_str().unwrap().contains("larger than the limit of 1024 bytes"), "{answer}");
    }
    // A streamed body without Content-Length is cut off too.
    let chunks = vec![Ok::<_, std::io::Error>(vec![b' '; 800]), Ok(vec![b' '; 800])];
    let (status, _, body) =
        send(&app, Method::POST, "/filter", axum::body::Body::from_stream(futures_stream(chunks))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
}

fn futures_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl tokio_stream::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + 'static {
    tokio_stream::iter(chunks)
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_get_json_errors() {
    let app = app(&closed_port_url().await);
    let (status, answer) = post(&app, "/preempt", "{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(answer["error"].as_str().unwrap().contains("/preempt"), "{answer}");

    let (status, content_type, body) = send(&app, Method::GET, "/filter", "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(content_type, "application/json");
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(answer["error"].as_str().unwrap().contains("GET"), "{answer}");

    // Scrapers have a listener of their own: the verbs' port does not serve /metrics.
    let (status, ..) = send(&app, Method::GET, "/metrics", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, ..) = send(&fitsched_shim::metrics_router(None), Method::GET, "/metrics", "").await;
    assert_eq!(status, StatusCode::OK, "/metrics answers even without a recorder");
}
