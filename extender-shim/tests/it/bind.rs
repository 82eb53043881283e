//! `/bind` with the shim as the binder: the captured kube-scheduler body in, a Binding
//! to the (mock) API server, then the scorer's notice; kube-scheduler hears of every
//! failure through `Error`.

use std::time::Duration;

use axum::http::StatusCode;
use fitsched_shim::Binder;
use kube::client::Body as KubeBody;
use serde_json::{Value, json};
use tower_test::mock;

use crate::common::*;

/// A mock API server answering every request with `code`; returns what it was sent.
fn api(code: u16) -> (Binder, tokio::sync::mpsc::UnboundedReceiver<(String, Value)>) {
    let (service, handle) = mock::pair::<http::Request<KubeBody>, http::Response<KubeBody>>();
    let (seen_tx, seen) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut handle = std::pin::pin!(handle);
        while let Some((request, send)) = handle.next_request().await {
            let path = request.uri().path().to_owned();
            let bytes = http_body_util::BodyExt::collect(request.into_body()).await.unwrap().to_bytes();
            let _ = seen_tx.send((path, serde_json::from_slice(&bytes).unwrap()));
            let status = json!({"apiVersion": "v1", "kind": "Status", "code": code,
                                "status": if code < 300 { "Success" } else { "Failure" },
                                "reason": if code == 409 { "Conflict" } else { "" },
                                "message": if code == 409 { "pod is already assigned to a node" } else { "" }});
            let mut response = http::Response::new(KubeBody::from(serde_json::to_vec(&status).unwrap()));
            *response.status_mut() = http::StatusCode::from_u16(code).unwrap();
            send.send_response(response);
        }
    });
    (Binder::Kubernetes(kube::Client::new(service, "default")), seen)
}

fn app_with(url: &str, binder: Binder) -> axum::Router {
    let mut config = config(url, Duration::from_secs(2));
    config.binder = binder;
    fitsched_shim::router(&config).unwrap()
}

#[tokio::test]
async fn the_shim_creates_the_binding_then_tells_the_scorer() {
    let fake = FakeScorer::default();
    let url = start_fake(fake.clone()).await;
    let (binder, mut seen) = api(201);
    let body = fixture("names", "003-bind-request.json");
    let args: Value = serde_json::from_slice(&body).unwrap();
    let (status, answer) = post(&app_with(&url, binder), "/bind", body).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"Error": ""})));
    let (path, binding) = seen.recv().await.unwrap();
    assert_eq!(
        path,
        format!(
            "/api/v1/namespaces/{}/pods/{}/binding",
            args["PodNamespace"].as_str().unwrap(),
            args["PodName"].as_str().unwrap()
        )
    );
    assert_eq!(binding["target"]["name"], args["Node"]);
    assert_eq!(binding["metadata"]["uid"], args["PodUID"]);
    let told = fake.binds.lock().unwrap().clone();
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].node, args["Node"].as_str().unwrap());
}

#[tokio::test]
async fn a_refused_binding_is_an_error_and_the_scorer_is_not_told() {
    let fake = FakeScorer::default();
    let url = start_fake(fake.clone()).await;
    let (binder, _seen) = api(409);
    let (status, answer) = post(&app_with(&url, binder), "/bind", fixture("names", "003-bind-request.json")).await;
    assert_eq!(status, StatusCode::OK, "kube-scheduler reads bind failures from Error");
    let error = answer["Error"].as_str().unwrap();
    assert!(error.contains("409") && error.contains("already assigned"), "{error}");
    assert!(fake.binds.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_bound_pod_stays_bound_when_the_scorer_is_down() {
    let (binder, mut seen) = api(201);
    let (status, answer) =
        post(&app_with(&closed_port_url().await, binder), "/bind", fixture("full", "006-bind-request.json")).await;
    assert_eq!((status, answer), (StatusCode::OK, json!({"Error": ""})), "the Binding exists: success");
    assert!(seen.recv().await.is_some());
}

/// A mock API server that takes every request and never answers.
fn silent_api() -> Binder {
    let (service, handle) = mock::pair::<http::Request<KubeBody>, http::Response<KubeBody>>();
    tokio::spawn(async move {
        let mut handle = std::pin::pin!(handle);
        let mut unanswered = Vec::new(); // dropping a sender would answer with an error
        while let Some((_, send)) = handle.next_request().await {
            unanswered.push(send);
        }
    });
    Binder::Kubernetes(kube::Client::new(service, "default"))
}

#[tokio::test]
async fn a_silent_api_server_fails_the_bind_within_the_deadline() {
    let fake = FakeScorer::default();
    let url = start_fake(fake.clone()).await;
    let mut config = config(&url, Duration::from_millis(300));
    config.binder = silent_api();
    let app = fitsched_shim::router(&config).unwrap();
    let started = std::time::Instant::now();
    let (status, answer) = post(&app, "/bind", fixture("names", "003-bind-request.json")).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK, "kube-scheduler reads bind failures from Error");
    let error = answer["Error"].as_str().unwrap();
    assert!(error.contains("no answer from the API server within 300ms"), "{error}");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(2), "took {took:?}");
    assert!(fake.binds.lock().unwrap().is_empty(), "no Binding, no notice");
}

#[tokio::test]
async fn a_slow_scorer_does_not_stretch_the_bind_past_its_deadline() {
    let fake = FakeScorer { delay: Duration::from_secs(3), ..FakeScorer::default() };
    let url = start_fake(fake.clone()).await;
    let (binder, _seen) = api(201);
    let mut config = config(&url, Duration::from_secs(5));
    config.deadlines.bind = Duration::from_millis(300);
    config.binder = binder;
    let app = fitsched_shim::router(&config).unwrap();
    let started = std::time::Instant::now();
    let (status, answer) = post(&app, "/bind", fixture("names", "003-bind-request.json")).await;
    let took = started.elapsed();
    assert_eq!((status, answer), (StatusCode::OK, json!({"Error": ""})), "the Binding exists: success");
    assert!(took < Duration::from_secs(2), "--bind-deadline bounds the whole /bind, took {took:?}");
}
